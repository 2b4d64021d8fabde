//! The write-ahead spool: every event the relay receives is on disk before anything else
//! happens to it, and stays there until LogScale has acknowledged it.
//!
//! ```text
//!  sources ──Appender──▶ writer task ──(group commit: zstd block, sled insert, flush)──▶ sled
//!                                                                                        │
//!  shipper ◀──read_block(pos)── blocks with seq < durable_end ◀───────────────────────────┘
//!  shipper ──ack(up_to)──▶ floor := up_to, blocks below it removed
//! ```
//!
//! Invariants (see ARCHITECTURE.md):
//! - A record gets its sequence number when its group is committed; numbers only grow,
//!   across restarts too (`next_seq` is persisted with every block).
//! - A producer awaiting [`Appender::send_durable`] hears back only after the block holding
//!   its record has been flushed by sled.
//! - The shipper reads only blocks below `durable_end`, so nothing leaves the relay that a
//!   crash could take back (and a sequence number is never reused).
//! - `floor` is the delivered position: every record below it is delivered, dead-lettered
//!   or dropped under the size cap. It is persisted, and a restart resumes exactly there,
//!   mid-block if need be.
//! - A block that fails to decode is moved to the dead-letter area, counted and logged; it
//!   never stops the reader.
//!
//! Nothing outside this module touches sled.

mod block;
mod dead;
mod record;
mod writer;

pub use block::{decode as decode_block, encode as encode_block, BlockError, BlockHeader};
pub use dead::{DeadId, DeadKind, DeadLetter, DeadSummary};
pub use record::{flags, now_ms, NewRecord, Record, SourceKind};
pub use writer::{AppendError, Appender};

use crate::config::{FullPolicy, SpoolSettings};
use crate::metrics::{label, Metrics};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// Largest group the writer commits as one block.
pub const MAX_GROUP_RECORDS: usize = 16_384;
/// Largest uncompressed group the writer commits as one block.
pub const MAX_GROUP_BYTES: usize = 8 << 20;

const META_SPOOL_ID: &[u8] = b"spool_id";
const META_FLOOR: &[u8] = b"floor";
const META_NEXT_SEQ: &[u8] = b"next_seq";
const META_DROPPED: &[u8] = b"dropped_events";

/// Why the spool could not do something.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool at {0} is in use by another relay process: stop that process first, or set RELAY_SPOOL_DIR to another directory")]
    InUse(PathBuf),
    #[error("cannot create the spool directory {dir}: {source} (check that it exists and the relay's user may write to it, or set RELAY_SPOOL_DIR)")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("spool database error in {dir}: {source}")]
    Db { dir: PathBuf, source: sled::Error },
    #[error("the spool is full ({stored} of {max} bytes stored) and RELAY_SPOOL_FULL_POLICY is reject-new")]
    Full { stored: u64, max: u64 },
}

/// Sizes of one stored block, kept in memory (and in the `index` tree) so that stats and
/// the size cap never read block bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlockMeta {
    count: u32,
    raw_len: u32,
    stored_len: u32,
    first_ms: u64,
    last_ms: u64,
}

impl BlockMeta {
    fn encode(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[0..4].copy_from_slice(&self.count.to_le_bytes());
        b[4..8].copy_from_slice(&self.raw_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.stored_len.to_le_bytes());
        b[12..20].copy_from_slice(&self.first_ms.to_le_bytes());
        b[20..28].copy_from_slice(&self.last_ms.to_le_bytes());
        b
    }
    fn decode(b: &[u8]) -> Option<BlockMeta> {
        if b.len() != 28 {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(BlockMeta {
            count: u32_at(0),
            raw_len: u32_at(4),
            stored_len: u32_at(8),
            first_ms: u64_at(12),
            last_ms: u64_at(20),
        })
    }
    fn from_header(h: &BlockHeader, stored_len: usize) -> BlockMeta {
        BlockMeta {
            count: h.count,
            raw_len: h.raw_len,
            stored_len: stored_len as u32,
            first_ms: h.first_received_ms,
            last_ms: h.last_received_ms,
        }
    }
}

/// The spool's mutable state. Held briefly; sled I/O happens outside the lock.
#[derive(Debug, Default)]
struct State {
    /// Stored blocks by first sequence number.
    blocks: BTreeMap<u64, BlockMeta>,
    floor: u64,
    next_seq: u64,
    stored_bytes: u64,
    dropped_events: u64,
    dead_events: u64,
    dead_blocks: u64,
}

impl State {
    /// Events in the block at `first` that are still pending.
    fn pending_in(&self, first: u64, m: &BlockMeta) -> u64 {
        let end = first + u64::from(m.count);
        end.saturating_sub(self.floor.max(first))
    }
}

struct Inner {
    db: sled::Db,
    blocks: sled::Tree,
    index: sled::Tree,
    meta: sled::Tree,
    dead: sled::Tree,
    dir: PathBuf,
    id: String,
    settings: SpoolSettings,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// Serializes commits (the writer task, and `dead retry`), which assign sequences.
    commit_lock: Mutex<()>,
    /// One past the last durable sequence number.
    durable_end: watch::Sender<u64>,
}

/// A handle to an open spool. Cheap to clone; the directory stays locked until the last
/// handle is dropped.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

/// What a read returns: the records of one block at or after the asked position, and the
/// range of sequence numbers the read covered (gaps included), so that the shipper can
/// acknowledge contiguously.
#[derive(Debug, Clone)]
pub struct ReadBlock {
    /// The position asked for (or the floor, if that was higher).
    pub start: u64,
    /// One past the block's last sequence number.
    pub end: u64,
    pub records: Vec<Record>,
}

/// A snapshot of the spool's figures, as `relay spool inspect` shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpoolStats {
    pub spool_dir: String,
    pub spool_id: String,
    pub pending_events: u64,
    /// Uncompressed bytes of the pending events.
    pub pending_bytes: u64,
    /// Compressed bytes of the stored blocks (what `RELAY_SPOOL_MAX_BYTES` caps).
    pub stored_bytes: u64,
    /// Bytes of the sled database on disk.
    pub disk_bytes: u64,
    pub max_bytes: u64,
    pub full_policy: String,
    pub oldest_pending_received_ms: Option<u64>,
    pub newest_pending_received_ms: Option<u64>,
    /// 0 when nothing is pending.
    pub oldest_pending_age_secs: f64,
    /// Every record below this sequence number is delivered, dead-lettered or dropped.
    pub delivered_position: u64,
    pub next_seq: u64,
    pub dead_letter_events: u64,
    pub dead_letter_blocks: u64,
    pub dropped_events: u64,
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

fn meta_u64(meta: &sled::Tree, k: &[u8]) -> sled::Result<u64> {
    Ok(meta
        .get(k)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes))
}

impl Spool {
    /// Opens (creating if needed) the spool in `settings.dir`. Fails at once if another
    /// process holds it.
    pub fn open(settings: &SpoolSettings, metrics: Arc<Metrics>) -> Result<Spool, SpoolError> {
        let dir = settings.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| SpoolError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        let db_err = |source: sled::Error| SpoolError::Db {
            dir: dir.clone(),
            source,
        };
        let db = sled::Config::new()
            .path(&dir)
            .cache_capacity(settings.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match &e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    SpoolError::InUse(dir.clone())
                }
                _ => db_err(e),
            })?;
        let blocks = db.open_tree("blocks").map_err(db_err)?;
        let index = db.open_tree("index").map_err(db_err)?;
        let meta = db.open_tree("meta").map_err(db_err)?;
        let dead = db.open_tree("dead").map_err(db_err)?;

        let id = match meta.get(META_SPOOL_ID).map_err(db_err)? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => {
                let id = format!("{:016x}", fastrand::u64(..));
                meta.insert(META_SPOOL_ID, id.as_bytes()).map_err(db_err)?;
                id
            }
        };

        let mut state = State {
            floor: meta_u64(&meta, META_FLOOR).map_err(db_err)?,
            next_seq: meta_u64(&meta, META_NEXT_SEQ).map_err(db_err)?,
            dropped_events: meta_u64(&meta, META_DROPPED).map_err(db_err)?,
            ..State::default()
        };
        for item in index.iter() {
            let (k, v) = item.map_err(db_err)?;
            if let (Some(seq), Some(m)) = (seq_of(&k), BlockMeta::decode(&v)) {
                state.blocks.insert(seq, m);
            }
        }
        for item in dead.iter().keys() {
            match DeadId::from_key(&item.map_err(db_err)?).and_then(|id| id.kind()) {
                Some(DeadKind::Event) => state.dead_events += 1,
                Some(DeadKind::Block) => state.dead_blocks += 1,
                None => {}
            }
        }

        let inner = Inner {
            db,
            blocks,
            index,
            meta,
            dead,
            dir: dir.clone(),
            id,
            settings: settings.clone(),
            metrics,
            state: Mutex::new(state),
            commit_lock: Mutex::new(()),
            durable_end: watch::Sender::new(0),
        };
        let spool = Spool {
            inner: Arc::new(inner),
        };
        spool.reconcile().map_err(db_err)?;
        let next = spool.state().next_seq;
        spool.inner.durable_end.send_replace(next);
        Ok(spool)
    }

    /// Repairs the two windows a crash can leave between the `blocks` and `index` trees
    /// (sled keeps the order of operations, so only these two exist): a block stored
    /// without its index entry (crash during a commit), and a block whose index entry was
    /// removed but not the block (crash during an acknowledgement).
    fn reconcile(&self) -> sled::Result<()> {
        let i = &self.inner;
        let (first_indexed, last_indexed) = {
            let st = self.state();
            (
                st.blocks.keys().next().copied(),
                st.blocks.keys().next_back().copied(),
            )
        };
        let mut orphans = Vec::new();
        let before = match first_indexed {
            Some(f) => i.blocks.range(..key(f)),
            None => i.blocks.iter(),
        };
        for item in before {
            orphans.push(item?);
        }
        if let Some(l) = last_indexed {
            for item in i.blocks.range(key(l.saturating_add(1))..) {
                orphans.push(item?);
            }
        }
        for (k, v) in orphans {
            let Some(seq) = seq_of(&k) else { continue };
            match block::decode_header(&v) {
                Ok(h) => {
                    let floor = self.state().floor;
                    if h.end_seq() <= floor {
                        i.blocks.remove(&k)?;
                    } else {
                        let m = BlockMeta::from_header(&h, v.len());
                        i.index.insert(&k, &m.encode())?;
                        self.state().blocks.insert(seq, m);
                    }
                }
                Err(e) => {
                    self.dead_letter_block(&k, &v, e.to_string())
                        .map_err(|e| sled::Error::Unsupported(e.to_string()))?;
                }
            }
        }
        // Blocks entirely below the floor, and the stored total.
        let mut st = self.state();
        let floor = st.floor;
        let done: Vec<u64> = st
            .blocks
            .iter()
            .filter(|(first, m)| *first + u64::from(m.count) <= floor && m.count > 0)
            .map(|(f, _)| *f)
            .collect();
        for f in &done {
            st.blocks.remove(f);
        }
        st.stored_bytes = st.blocks.values().map(|m| u64::from(m.stored_len)).sum();
        let last_end = st
            .blocks
            .iter()
            .next_back()
            .map_or(0, |(f, m)| f + u64::from(m.count));
        st.next_seq = st.next_seq.max(last_end).max(st.floor);
        drop(st);
        for f in done {
            i.index.remove(key(f))?;
            i.blocks.remove(key(f))?;
        }
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug; the state itself stays valid
        // (every update is a few assignments), so keep serving rather than cascade.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn db_err(&self, source: sled::Error) -> SpoolError {
        SpoolError::Db {
            dir: self.inner.dir.clone(),
            source,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// A random id made when the spool was created; with a sequence number it names an
    /// event uniquely (`relay_id`).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn settings(&self) -> &SpoolSettings {
        &self.inner.settings
    }

    /// The delivered position: every record below it is done with.
    pub fn floor(&self) -> u64 {
        self.state().floor
    }

    /// One past the last durable sequence number.
    pub fn durable_end(&self) -> u64 {
        *self.inner.durable_end.borrow()
    }

    /// Watches `durable_end` (the shipper waits on it when it has caught up).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.durable_end.subscribe()
    }

    /// Starts the group-commit writer task (on the current tokio runtime) and returns the
    /// handle producers append through. The task ends when every `Appender` is dropped,
    /// after committing what it holds.
    pub fn start_writer(&self, queue_capacity: usize) -> (Appender, tokio::task::JoinHandle<()>) {
        writer::start(self.clone(), queue_capacity)
    }

    /// Commits `records` as one block: numbers them, compresses, stores, flushes. Called
    /// by the writer task (off the async threads) and by `dead retry`.
    pub fn commit(&self, records: &[NewRecord]) -> Result<std::ops::Range<u64>, SpoolError> {
        let i = &self.inner;
        let _guard = i.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let first = self.state().next_seq;
        let n = records.len() as u64;
        if n == 0 {
            return Ok(first..first);
        }
        let started = std::time::Instant::now();
        let encoded = block::encode(first, records);
        self.make_room(encoded.len() as u64, n)?;
        let h = block::decode_header(&encoded).expect("a block just encoded has a valid header");
        let m = BlockMeta::from_header(&h, encoded.len());
        let k = key(first);
        let stored = (|| {
            i.blocks.insert(k, encoded.as_slice())?;
            i.index.insert(k, &m.encode())?;
            i.meta.insert(META_NEXT_SEQ, &key(first + n))?;
            i.db.flush()
        })();
        {
            // The sequence numbers are used up even if the write failed: a number that
            // might be on disk is never handed out twice.
            let mut st = self.state();
            st.next_seq = first + n;
            if stored.is_ok() {
                st.blocks.insert(first, m);
                st.stored_bytes += u64::from(m.stored_len);
            }
        }
        stored.map_err(|e| self.db_err(e))?;
        i.durable_end.send_replace(first + n);
        i.metrics.events_spooled.inc_by(n);
        i.metrics.spool_commits.inc();
        i.metrics
            .spool_commit_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(first..first + n)
    }

    /// Applies the size cap before a block of `incoming` bytes is stored.
    fn make_room(&self, incoming: u64, incoming_events: u64) -> Result<(), SpoolError> {
        let max = self.inner.settings.max_bytes;
        let mut dropped_blocks = Vec::new();
        let mut dropped_events = 0u64;
        {
            let mut st = self.state();
            if st.stored_bytes + incoming <= max || st.blocks.is_empty() {
                return Ok(());
            }
            if self.inner.settings.full_policy == FullPolicy::RejectNew {
                st.dropped_events += incoming_events;
                let (stored, total) = (st.stored_bytes, st.dropped_events);
                drop(st);
                self.inner
                    .metrics
                    .events_dropped
                    .get_or_create(&label("reason", "spool_full_rejected"))
                    .inc_by(incoming_events);
                let _ = self.inner.meta.insert(META_DROPPED, &key(total));
                tracing::error!(
                    events = incoming_events,
                    dropped_total = total,
                    stored_bytes = stored,
                    max_bytes = max,
                    "spool full (RELAY_SPOOL_FULL_POLICY=reject-new): new events refused; LogScale is not keeping up or is unreachable, see `relay spool inspect`"
                );
                return Err(SpoolError::Full { stored, max });
            }
            while st.stored_bytes + incoming > max {
                let Some((first, m)) = st.blocks.pop_first() else {
                    break;
                };
                let pending = st.pending_in(first, &m);
                dropped_events += pending;
                st.stored_bytes -= u64::from(m.stored_len);
                st.floor = st.floor.max(first + u64::from(m.count));
                dropped_blocks.push(first);
            }
            st.dropped_events += dropped_events;
        }
        let (floor, total) = {
            let st = self.state();
            (st.floor, st.dropped_events)
        };
        let i = &self.inner;
        let result = (|| {
            i.meta.insert(META_FLOOR, &key(floor))?;
            i.meta.insert(META_DROPPED, &key(total))?;
            for f in &dropped_blocks {
                i.index.remove(key(*f))?;
                i.blocks.remove(key(*f))?;
            }
            Ok(())
        })();
        i.metrics
            .events_dropped
            .get_or_create(&label("reason", "spool_full_oldest"))
            .inc_by(dropped_events);
        tracing::error!(
            events = dropped_events,
            dropped_total = total,
            max_bytes = max,
            "spool full (RELAY_SPOOL_FULL_POLICY=drop-oldest): dropped the oldest pending events to make room; LogScale is not keeping up or is unreachable, see `relay spool inspect`"
        );
        result.map_err(|e| self.db_err(e))
    }

    /// Reads the first block holding a durable record at or after `from`.
    ///
    /// Returns `None` when nothing durable is there yet. A block that does not decode is
    /// moved to the dead-letter area and the read goes on with the next one.
    pub fn read_block(&self, from: u64) -> Result<Option<ReadBlock>, SpoolError> {
        let i = &self.inner;
        loop {
            let pos = from.max(self.floor());
            let durable_end = self.durable_end();
            if pos >= durable_end {
                return Ok(None);
            }
            // The block containing `pos`, if its range reaches it; else the next one.
            let containing = i.blocks.get_lt(key(pos + 1)).map_err(|e| self.db_err(e))?;
            let candidate = match containing {
                Some((k, v)) if block::decode_header(&v).map_or(true, |h| h.end_seq() > pos) => {
                    Some((k, v))
                }
                _ => i.blocks.get_gt(key(pos)).map_err(|e| self.db_err(e))?,
            };
            let Some((k, v)) = candidate else {
                return Ok(None);
            };
            let Some(first) = seq_of(&k) else {
                self.dead_letter_block(&k, &v, "block key is not a sequence number".into())?;
                continue;
            };
            if first >= durable_end {
                return Ok(None);
            }
            let decoded = block::decode(&v).and_then(|(h, recs)| {
                if h.first_seq == first {
                    Ok((h, recs))
                } else {
                    Err(BlockError::KeyMismatch {
                        key: first,
                        header: h.first_seq,
                    })
                }
            });
            match decoded {
                Ok((h, mut records)) => {
                    records.retain(|r| r.seq >= pos);
                    return Ok(Some(ReadBlock {
                        start: pos,
                        end: h.end_seq(),
                        records,
                    }));
                }
                Err(e) => self.dead_letter_block(&k, &v, e.to_string())?,
            }
        }
    }

    fn dead_letter_block(&self, k: &[u8], v: &[u8], reason: String) -> Result<(), SpoolError> {
        let i = &self.inner;
        let seq = seq_of(k).unwrap_or(0);
        let entry = DeadLetter {
            id: DeadId::new(DeadKind::Block, seq),
            kind: DeadKind::Block,
            at_ms: now_ms(),
            received_ms: 0,
            source: None,
            flags: 0,
            reason: reason.clone(),
            payload: bytes::Bytes::copy_from_slice(v),
        };
        let result = (|| {
            i.dead.insert(entry.id.key(), entry.encode())?;
            i.index.remove(k)?;
            i.blocks.remove(k)?;
            i.db.flush()
        })();
        {
            let mut st = self.state();
            if let Some(m) = st.blocks.remove(&seq) {
                st.stored_bytes -= u64::from(m.stored_len);
            }
            st.dead_blocks += 1;
        }
        i.metrics
            .events_dead_lettered
            .get_or_create(&label("reason", "corrupt_block"))
            .inc();
        tracing::error!(
            block = seq,
            bytes = v.len(),
            %reason,
            "corrupt spool block moved to the dead-letter area (see `relay spool dead list`); shipping goes on with the next block"
        );
        result.map(|_| ()).map_err(|e| self.db_err(e))
    }

    /// Records that every record below `up_to` is done with (delivered or dead-lettered),
    /// and removes the blocks that are now entirely behind. Persisted within sled's flush
    /// interval (500 ms) or the next commit; losing it in a crash only re-sends.
    pub fn ack(&self, up_to: u64) -> Result<(), SpoolError> {
        let i = &self.inner;
        let removed: Vec<u64> = {
            let mut st = self.state();
            if up_to <= st.floor {
                return Ok(());
            }
            st.floor = up_to;
            let mut removed = Vec::new();
            while let Some((&first, m)) = st.blocks.first_key_value() {
                if first + u64::from(m.count) > up_to {
                    break;
                }
                let m = *m;
                st.blocks.remove(&first);
                st.stored_bytes -= u64::from(m.stored_len);
                removed.push(first);
            }
            removed
        };
        let result = (|| {
            i.meta.insert(META_FLOOR, &key(up_to))?;
            for f in removed {
                i.index.remove(key(f))?;
                i.blocks.remove(key(f))?;
            }
            Ok(())
        })();
        result.map_err(|e| self.db_err(e))
    }

    /// Moves events LogScale refused to the dead-letter area. The caller acknowledges
    /// them afterwards, like delivered ones.
    pub fn dead_letter_events(&self, events: &[(Record, String)]) -> Result<(), SpoolError> {
        let i = &self.inner;
        for (r, reason) in events {
            let entry = DeadLetter {
                id: DeadId::new(DeadKind::Event, r.seq),
                kind: DeadKind::Event,
                at_ms: now_ms(),
                received_ms: r.received_ms,
                source: Some(r.kind),
                flags: r.flags,
                reason: reason.clone(),
                payload: r.payload.clone(),
            };
            let previous = i
                .dead
                .insert(entry.id.key(), entry.encode())
                .map_err(|e| self.db_err(e))?;
            if previous.is_none() {
                self.state().dead_events += 1;
            }
            i.metrics
                .events_dead_lettered
                .get_or_create(&label("reason", "rejected"))
                .inc();
        }
        i.db.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Every dead letter, oldest first (without payloads).
    pub fn dead_list(&self) -> Result<Vec<DeadSummary>, SpoolError> {
        let mut out = Vec::new();
        for item in self.inner.dead.iter() {
            let (_, v) = item.map_err(|e| self.db_err(e))?;
            if let Some(d) = DeadLetter::decode(&v) {
                out.push(d.summary());
            }
        }
        out.sort_by_key(|d| (d.at_ms, d.id));
        Ok(out)
    }

    pub fn dead_get(&self, id: DeadId) -> Result<Option<DeadLetter>, SpoolError> {
        let v = self.inner.dead.get(id.key()).map_err(|e| self.db_err(e))?;
        Ok(v.and_then(|v| DeadLetter::decode(&v)))
    }

    /// Puts dead-lettered events back into the spool as new records (new sequence
    /// numbers) and removes them from the dead-letter area. Corrupt blocks cannot be
    /// retried and are skipped. `ids = None` means all. Returns the retried ids.
    pub fn dead_retry(&self, ids: Option<&[DeadId]>) -> Result<Vec<DeadId>, SpoolError> {
        let entries = self.dead_select(ids)?;
        let events: Vec<DeadLetter> = entries
            .into_iter()
            .filter(|d| d.kind == DeadKind::Event)
            .collect();
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<NewRecord> = events
            .iter()
            .map(|d| NewRecord {
                received_ms: d.received_ms,
                kind: d.source.unwrap_or(SourceKind::WebSocket),
                flags: d.flags,
                payload: d.payload.clone(),
            })
            .collect();
        for chunk in records.chunks(MAX_GROUP_RECORDS) {
            self.commit(chunk)?;
        }
        let ids: Vec<DeadId> = events.iter().map(|d| d.id).collect();
        self.dead_remove(&ids)?;
        Ok(ids)
    }

    /// Deletes dead letters for good. `ids = None` means all. Returns the purged ids.
    pub fn dead_purge(&self, ids: Option<&[DeadId]>) -> Result<Vec<DeadId>, SpoolError> {
        let ids: Vec<DeadId> = self.dead_select(ids)?.iter().map(|d| d.id).collect();
        self.dead_remove(&ids)?;
        Ok(ids)
    }

    fn dead_select(&self, ids: Option<&[DeadId]>) -> Result<Vec<DeadLetter>, SpoolError> {
        match ids {
            Some(ids) => {
                let mut out = Vec::new();
                for id in ids {
                    if let Some(d) = self.dead_get(*id)? {
                        out.push(d);
                    }
                }
                Ok(out)
            }
            None => {
                let mut out = Vec::new();
                for item in self.inner.dead.iter() {
                    let (_, v) = item.map_err(|e| self.db_err(e))?;
                    out.extend(DeadLetter::decode(&v));
                }
                Ok(out)
            }
        }
    }

    fn dead_remove(&self, ids: &[DeadId]) -> Result<(), SpoolError> {
        for id in ids {
            if self
                .inner
                .dead
                .remove(id.key())
                .map_err(|e| self.db_err(e))?
                .is_some()
            {
                let mut st = self.state();
                match id.kind() {
                    Some(DeadKind::Event) => st.dead_events = st.dead_events.saturating_sub(1),
                    Some(DeadKind::Block) => st.dead_blocks = st.dead_blocks.saturating_sub(1),
                    None => {}
                }
            }
        }
        self.inner.db.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Stores a small operator-facing note (the shipper's last error, so that `spool
    /// inspect` can say why nothing moves even while the daemon is stopped).
    pub fn set_note(&self, name: &str, value: &[u8]) {
        let k = format!("note:{name}");
        if let Err(e) = self.inner.meta.insert(k.as_bytes(), value) {
            tracing::warn!(error = %e, "could not store a note in the spool");
        }
    }

    pub fn note(&self, name: &str) -> Option<Vec<u8>> {
        let k = format!("note:{name}");
        self.inner
            .meta
            .get(k.as_bytes())
            .ok()
            .flatten()
            .map(|v| v.to_vec())
    }

    /// Flushes everything to disk (shutdown).
    pub fn flush(&self) -> Result<(), SpoolError> {
        self.inner
            .db
            .flush()
            .map(|_| ())
            .map_err(|e| self.db_err(e))
    }

    /// The figures `relay spool inspect` shows.
    pub fn stats(&self) -> SpoolStats {
        let disk_bytes = self.inner.db.size_on_disk().unwrap_or(0);
        let st = self.state();
        let mut pending_events = 0u64;
        let mut pending_bytes = 0u64;
        for (&first, m) in &st.blocks {
            let p = st.pending_in(first, m);
            pending_events += p;
            if m.count > 0 {
                pending_bytes += u64::from(m.raw_len) * p / u64::from(m.count);
            }
        }
        let oldest = st.blocks.values().find(|m| m.count > 0).map(|m| m.first_ms);
        let newest = st
            .blocks
            .values()
            .rev()
            .find(|m| m.count > 0)
            .map(|m| m.last_ms);
        let now = now_ms();
        SpoolStats {
            spool_dir: self.inner.dir.display().to_string(),
            spool_id: self.inner.id.clone(),
            pending_events,
            pending_bytes,
            stored_bytes: st.stored_bytes,
            disk_bytes,
            max_bytes: self.inner.settings.max_bytes,
            full_policy: match self.inner.settings.full_policy {
                FullPolicy::DropOldest => "drop-oldest".into(),
                FullPolicy::RejectNew => "reject-new".into(),
            },
            oldest_pending_received_ms: oldest,
            newest_pending_received_ms: newest,
            oldest_pending_age_secs: oldest.map_or(0.0, |o| now.saturating_sub(o) as f64 / 1000.0),
            delivered_position: st.floor,
            next_seq: st.next_seq,
            dead_letter_events: st.dead_events,
            dead_letter_blocks: st.dead_blocks,
            dropped_events: st.dropped_events,
        }
    }

    /// Pending records from `from` on, at most `limit` of them (peek, export).
    pub fn pending(
        &self,
        from: u64,
        limit: usize,
        to: Option<u64>,
    ) -> Result<Vec<Record>, SpoolError> {
        let mut out = Vec::new();
        let mut pos = from;
        while out.len() < limit {
            let Some(b) = self.read_block(pos)? else {
                break;
            };
            for r in b.records {
                if to.is_some_and(|t| r.seq >= t) || out.len() >= limit {
                    return Ok(out);
                }
                out.push(r);
            }
            pos = b.end;
        }
        Ok(out)
    }

    /// Test and fuzz hook: overwrite a stored block's bytes (to simulate corruption).
    #[doc(hidden)]
    pub fn corrupt_block_for_tests(&self, first_seq: u64, bytes: &[u8]) -> Result<(), SpoolError> {
        self.inner
            .blocks
            .insert(key(first_seq), bytes)
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// First sequence numbers of the stored blocks (tests).
    #[doc(hidden)]
    pub fn block_starts(&self) -> Vec<u64> {
        self.state().blocks.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests;
