//! The write-ahead spool: every event the relay receives is on disk before anything else
//! happens to it, and stays there until every destination has acknowledged it.
//!
//! ```text
//!  sources ──Appender──▶ writer task ──(group commit: zstd blocks, sled insert, flush)──▶ sled
//!                                                                                         │
//!  shipper ◀──read_block(pos)── blocks with seq < durable_end ◀────────────────────────────┘
//!  shipper ──ack(up_to)──▶ floor := up_to (flushed), then blocks below it removed
//! ```
//!
//! On disk, a spool directory holds `state/` (a small sled database: the spool's id, the
//! delivered position, counters, notes, the dead-letter area) and one or more
//! `blocks-NNNNNNNN/` generations (sled databases of blocks, see [`generation`]).
//!
//! The invariants are listed once, in ARCHITECTURE.md ("Invariants", 1–9 and 6a–6b). In
//! short: a record is durable once its block is flushed *and* `fdatasync`ed ([`disk`]);
//! the shipper reads only durable records; the delivered position (`floor`) is synced
//! before blocks below it are removed; nothing is dropped silently ([`room`]); a failed
//! write or sync stops the spool for good ([`Spool::failed`]). Nothing outside this module
//! touches sled.

mod block;
mod crash;
mod dead;
mod disk;
mod fit;
mod generation;
mod last_failure;
mod open;
mod positions;
mod record;
mod room;
mod settings;
mod stats;
mod writer;

pub use block::{decode as decode_block, encode as encode_block, BlockError, BlockHeader};
pub use dead::{DeadId, DeadKind, DeadLetter, DeadSummary};
pub use disk::{free_bytes, BALLAST_BYTES, BALLAST_FILE};
pub use fit::{Fit, MIN_USEFUL_BYTES};
pub use generation::dir_size;
pub use last_failure::LastFailure;
pub use record::{flags, sink_bit, sink_name, targets_of, NewRecord, Record, SourceKind, SINKS};
pub use settings::{FullPolicy, SpoolSettings};
pub use stats::{SinkStats, SpoolStats};
pub use writer::{AppendError, Appender};

use crate::logging::LogThrottle;
use crate::metrics::Metrics;
use block::BlockMeta;
use disk::{Ballast, SyncedFile};
use generation::{key, Gen};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::Ordering;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Largest group the writer commits at once.
pub const MAX_GROUP_RECORDS: usize = 16_384;
/// Largest uncompressed group the writer commits at once (possibly as several blocks).
pub const MAX_GROUP_BYTES: usize = 8 << 20;
/// Uncompressed bytes aimed at per block: at QSS JSON's 11:1 (zstd level 1) about 23 KiB
/// stored, under [`MAX_BLOCK_STORED`] for anything that compresses better than 5:1.
pub const BLOCK_RAW_TARGET: usize = 256 << 10;
/// sled segment size of the block databases this version creates. It is also the size of
/// each of sled's write buffers, which sled allocates afresh each time it fills one: with
/// 16 MiB segments they were 135 MiB of a 356 MiB heap peak under overload (heaptrack).
/// Fixed when a generation is created: older generations keep theirs (see
/// `generation::segment_size_of`).
pub const SEGMENT_SIZE: usize = 4 << 20;
/// Largest stored (compressed) block, unless a single record is larger by itself.
///
/// Why: sled 0.34 writes a leaf node larger than a quarter of a segment as a separate
/// "blob" file, and in an insert-then-remove workload those files are never removed (we
/// measured the blob directory growing without bound while the live data stayed at 7 MB).
/// A leaf holds up to 17 values (sled splits it past 16), so blocks under 1/80 of a
/// segment (52 KiB with 4 MiB segments) keep 18 of them, keys and headers inside a quarter.
pub const MAX_BLOCK_STORED: usize = SEGMENT_SIZE / 80;
/// A generation larger than this on disk is closed for writing; a new one starts, and the
/// old one is deleted once drained. An empty generation larger than 3/8 of it (24 MiB) is
/// replaced by a fresh one: the space comes back after a backlog drained. Only the
/// generation being written and the one being read are kept open, which bounds memory.
pub const ROTATE_BYTES: u64 = 64 << 20;

const META_SPOOL_ID: &[u8] = b"spool_id";
const META_FLOOR: &[u8] = b"floor";
const META_NEXT_SEQ: &[u8] = b"next_seq";
const META_DROPPED: &[u8] = b"dropped_events";
/// Prefix of a destination's delivered position (`floor:logscale`); `floor` is their minimum.
const META_SINK_FLOOR: &str = "floor:";
/// Prefix of a destination's count of events dropped before it had them.
const META_SINK_DROPPED: &str = "dropped:";
/// The destination of a spool made before there were several: its `floor` is LogScale's.
pub const LEGACY_SINK: &str = "logscale";

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
    #[error("the disk holding the spool is full ({free} bytes free, RELAY_SPOOL_MIN_FREE_BYTES is {min_free}): free space on it, or lower RELAY_SPOOL_MAX_BYTES")]
    DiskFull { free: u64, min_free: u64 },
    #[error("the spool stopped taking writes after a storage failure ({0}); restart the relay (systemd does) once the cause is fixed")]
    Failed(String),
}

impl SpoolError {
    /// The relay's files could not be opened for lack of permission.
    pub fn is_permission_denied(&self) -> bool {
        match self {
            SpoolError::CreateDir { source, .. } => {
                source.kind() == std::io::ErrorKind::PermissionDenied
            }
            SpoolError::Db {
                source: sled::Error::Io(e),
                ..
            } => e.kind() == std::io::ErrorKind::PermissionDenied,
            _ => false,
        }
    }
}

/// The spool's mutable state. Held briefly; sled I/O happens outside the lock.
#[derive(Debug, Default)]
struct State {
    /// Stored blocks by first sequence number.
    blocks: BTreeMap<u64, BlockMeta>,
    /// Every record below it is done with for every destination: the minimum of
    /// `sink_floors`. Blocks entirely below it are removed.
    floor: u64,
    /// Each destination's delivered position (delivered or dead-lettered below it).
    sink_floors: BTreeMap<String, u64>,
    /// Per destination, events dropped (size cap, full disk) before it had them.
    sink_dropped: BTreeMap<String, u64>,
    next_seq: u64,
    stored_bytes: u64,
    dropped_events: u64,
    dead_events: u64,
    dead_blocks: u64,
    commits: u64,
    /// Stored bytes committed since the active generation's size was last read.
    written_since_size_check: u64,
    /// One past the last block handed to the shipper ([`Spool::read_for_shipping`]).
    read_end: u64,
}

impl State {
    /// Events in the block at `first` that are still pending (for some destination).
    fn pending_in(&self, first: u64, m: &BlockMeta) -> u64 {
        pending_above(first, m, self.floor)
    }

    /// The minimum of the destinations' positions (the global floor's candidate).
    fn min_sink_floor(&self) -> Option<u64> {
        self.sink_floors.values().copied().min()
    }

    /// Advances the floor to `to` and takes every block now entirely below it.
    fn advance_floor(&mut self, to: u64) -> Vec<(u64, u64)> {
        self.floor = self.floor.max(to);
        let mut removed = Vec::new();
        while let Some((&first, m)) = self.blocks.first_key_value() {
            if m.end(first) > self.floor {
                break;
            }
            let m = *m;
            self.blocks.remove(&first);
            self.stored_bytes -= u64::from(m.stored_len);
            removed.push((first, m.gen));
        }
        removed
    }
}

/// Events in the block at `first` at or above `floor`.
fn pending_above(first: u64, m: &BlockMeta, floor: u64) -> u64 {
    m.end(first).saturating_sub(floor.max(first))
}

struct Inner {
    state_db: sled::Db,
    meta: sled::Tree,
    dead: sled::Tree,
    /// Block databases, oldest first; the last one takes new blocks.
    gens: RwLock<Vec<Arc<Gen>>>,
    dir: PathBuf,
    id: String,
    settings: SpoolSettings,
    /// The sizes fitted to the file system (floor, segments, rotation).
    fit: Fit,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// Serializes commits (the writer task, and `dead retry`), which assign sequences,
    /// and generation changes.
    commit_lock: Mutex<()>,
    /// One past the last durable sequence number.
    durable_end: watch::Sender<u64>,
    /// sled's log file of `state/`, synced after each flush that promises something.
    state_log: SyncedFile,
    /// The emergency reserve (see [`disk`]).
    ballast: Ballast,
    /// Free bytes on the spool's file system at the last check (`u64::MAX`: unknown).
    disk_free: AtomicU64,
    /// The file system reports no size; said once.
    statvfs_warned: AtomicBool,
    /// The disk is the limit (see `room`).
    disk_full: AtomicBool,
    /// When the free-space floor last limited a commit (ms since the epoch; 0: never).
    disk_limited_ms: AtomicU64,
    /// Cancelled once a write or sync failed: nothing more is committed ([`Spool::failed`]).
    failed: CancellationToken,
    failure: Mutex<Option<String>>,
    /// The last storage failure recorded in the directory, this run's or an earlier one's.
    last_failure: Mutex<Option<LastFailure>>,
    /// Rate limit of the "spool full" / "disk full" error lines.
    full_log: LogThrottle,
    /// Tests: the next commits' sync fails with EIO.
    #[cfg(test)]
    fail_syncs: AtomicBool,
}

/// Proof that the holder has the commit lock ([`Spool::lock_commits`]); what needs the
/// lock takes a reference to one instead of a flag saying it is held.
pub(super) struct CommitGuard<'a> {
    _held: MutexGuard<'a, ()>,
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

impl Spool {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug; the state itself stays valid
        // (every update is a few assignments), so keep serving rather than cascade.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The error for a failed sled operation. An I/O error also fails the spool: sled
    /// refuses every later write of a database once one failed, and a failed `fsync` may
    /// have lost what the page cache held (PostgreSQL's "fsyncgate"), so nothing more is
    /// acknowledged and the relay restarts on what is really on disk.
    fn db_err(&self, source: sled::Error) -> SpoolError {
        if let sled::Error::Io(e) = &source {
            self.fail(&format!("I/O error in {}: {e}", self.inner.dir.display()));
        }
        SpoolError::Db {
            dir: self.inner.dir.clone(),
            source,
        }
    }

    /// Stops the spool from committing or acknowledging anything more (see
    /// [`db_err`](Self::db_err)); [`failed`](Self::failed) tells the daemon to exit.
    fn fail(&self, reason: &str) {
        let mut failure = self.inner.failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_some() {
            return;
        }
        *failure = Some(reason.to_string());
        drop(failure);
        self.inner.metrics.spool_failed.set(1);
        let (record, written) = LastFailure::record(&self.inner.dir, reason);
        self.inner
            .metrics
            .spool_last_failure_timestamp
            .set(record.unix_seconds());
        if !written {
            tracing::warn!("spool: could not record the failure in the spool directory (the next run will not report it)");
        }
        *self
            .inner
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(record);
        tracing::error!(
            %reason,
            "spool: storage failure; nothing more is acknowledged (webhooks get 503) and the relay exits so that its service manager restarts it on what is really on disk"
        );
        self.inner.failed.cancel();
    }

    /// Tests elsewhere in the crate: make the next commits' sync fail with EIO.
    #[cfg(test)]
    pub(crate) fn fail_syncs_for_tests(&self, on: bool) {
        self.inner.fail_syncs.store(on, Ordering::Relaxed);
    }

    /// Why the spool stopped taking writes, if it did.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Completes once the spool has failed (the daemon then exits to be restarted).
    pub async fn failed(&self) {
        self.inner.failed.cancelled().await
    }

    /// Flushes the state database and `fdatasync`s it (`with_blobs`: sled's blob files
    /// too, where large dead letters go).
    fn sync_state(&self, with_blobs: bool) -> Result<(), SpoolError> {
        let i = &self.inner;
        i.state_db.flush().map_err(|e| self.db_err(e))?;
        let synced = if with_blobs {
            i.state_log.sync_with_blobs()
        } else {
            i.state_log.sync()
        };
        synced.map_err(|e| self.db_err(e.into()))
    }

    fn gens(&self) -> Vec<Arc<Gen>> {
        self.inner
            .gens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn gen(&self, id: u64) -> Option<Arc<Gen>> {
        self.gens().into_iter().find(|g| g.id == id)
    }

    fn active(&self) -> Arc<Gen> {
        self.gens()
            .last()
            .cloned()
            .expect("a spool always has a generation")
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

    /// The sizes fitted to the spool's file system: the floor applied, what it can hold.
    pub fn fit(&self) -> &Fit {
        &self.inner.fit
    }

    /// The delivered position of every destination: every record below it is done with.
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
    /// after committing what it holds. `queue_bytes` bounds the records waiting for it.
    pub fn start_writer(&self, queue_bytes: usize) -> (Appender, tokio::task::JoinHandle<()>) {
        writer::start(self.clone(), queue_bytes)
    }

    /// Commits `records`: numbers them, compresses them into blocks, stores, flushes.
    /// Called by the writer task (off the async threads) and by `dead retry`.
    pub fn commit(&self, records: &[NewRecord]) -> Result<std::ops::Range<u64>, SpoolError> {
        let i = &self.inner;
        let commits = self.lock_commits();
        if let Some(reason) = self.failure() {
            return Err(SpoolError::Failed(reason));
        }
        let first = self.state().next_seq;
        let n = records.len() as u64;
        if n == 0 {
            return Ok(first..first);
        }
        let started = std::time::Instant::now();
        let mut gen = self.active();
        let mut blocks = block::encode_blocks(gen.id, gen.block_limits(), first, records);
        let total: u64 = blocks.iter().map(|(_, b, _)| b.len() as u64).sum();
        self.make_room(&commits, total, n)?;
        // Making room may have replaced the generation being written.
        let now = self.active();
        if now.id != gen.id {
            if now.block_limits() == gen.block_limits() {
                for (_, _, m) in &mut blocks {
                    m.gen = now.id;
                }
            } else {
                blocks = block::encode_blocks(now.id, now.block_limits(), first, records);
            }
            gen = now;
        }
        let stored = (|| {
            for (seq, encoded, m) in &blocks {
                gen.insert(*seq, encoded, m)?;
            }
            #[cfg(test)]
            if i.fail_syncs.load(Ordering::Relaxed) {
                return Err(sled::Error::Io(std::io::Error::from_raw_os_error(
                    libc::EIO,
                )));
            }
            gen.sync()
        })();
        let check_size = {
            // The sequence numbers are used up even if the write failed: a number that
            // might be on disk is never handed out twice.
            let mut st = self.state();
            st.next_seq = first + n;
            if stored.is_ok() {
                for (seq, _, m) in &blocks {
                    st.blocks.insert(*seq, *m);
                    st.stored_bytes += u64::from(m.stored_len);
                }
            }
            st.commits += 1;
            // The size is read every 16 commits, or sooner when a 16th of the rotation
            // size (at least 256 KiB) was written since: small volumes rotate at a few MiB.
            st.written_since_size_check += total;
            let check = st.commits.is_multiple_of(16)
                || st.written_since_size_check > (i.fit.rotate_bytes / 16).max(256 << 10);
            if check {
                st.written_since_size_check = 0;
            }
            check
        };
        // Not flushed here: `next_seq` is also recovered from the blocks and the floor.
        let _ = i.meta.insert(META_NEXT_SEQ, &key(first + n));
        stored.map_err(|e| self.db_err(e))?;
        i.durable_end.send_replace(first + n);
        i.metrics.events_spooled.inc_by(n);
        i.metrics.spool_commits.inc();
        i.metrics
            .spool_commit_duration
            .observe(started.elapsed().as_secs_f64());
        if check_size && gen.size_on_disk() > i.fit.rotate_bytes {
            self.start_generation(&gen);
        }
        Ok(first..first + n)
    }

    /// [`read_block`](Self::read_block) for the shipper: also records how far it has read,
    /// so that the size cap drops blocks not yet in flight first.
    pub fn read_for_shipping(&self, from: u64) -> Result<Option<ReadBlock>, SpoolError> {
        let block = self.read_block(from)?;
        if let Some(b) = &block {
            let mut st = self.state();
            st.read_end = st.read_end.max(b.end);
        }
        Ok(block)
    }

    /// Reads the first block holding a durable record at or after `from`.
    ///
    /// Returns `None` when nothing durable is there yet. A block that does not decode is
    /// moved to the dead-letter area and the read goes on with the next one.
    pub fn read_block(&self, from: u64) -> Result<Option<ReadBlock>, SpoolError> {
        loop {
            let durable_end = self.durable_end();
            let (pos, candidate) = {
                let st = self.state();
                let pos = from.max(st.floor);
                let containing = st
                    .blocks
                    .range(..=pos)
                    .next_back()
                    .filter(|(f, m)| m.end(**f) > pos)
                    .map(|(f, m)| (*f, *m));
                let next = || st.blocks.range(pos + 1..).next().map(|(f, m)| (*f, *m));
                (pos, containing.or_else(next))
            };
            if pos >= durable_end {
                return Ok(None);
            }
            let Some((first, m)) = candidate.filter(|(f, _)| *f < durable_end) else {
                return Ok(None);
            };
            let gen = self.gen(m.gen);
            let value = match &gen {
                Some(g) => g.get(first).map_err(|e| self.db_err(e))?,
                None => None,
            };
            if gen.is_some() {
                self.trim_open_generations(Some(m.gen));
            }
            let (Some(gen), Some(value)) = (gen, value) else {
                let mut st = self.state();
                if !st.blocks.contains_key(&first) {
                    // Dropped or delivered (and its generation deleted) since we looked.
                    continue;
                }
                // Indexed but not stored: nothing to read; forget it, loudly.
                tracing::error!(
                    block = first,
                    generation = m.gen,
                    "spool block listed in the index is missing from its database; skipped"
                );
                if st.blocks.remove(&first).is_some() {
                    st.stored_bytes -= u64::from(m.stored_len);
                }
                continue;
            };
            let decoded = block::decode(&value).and_then(|(h, recs)| {
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
                Err(e) => self.dead_letter_block(&gen, &key(first), &value, e.to_string())?,
            }
        }
    }

    /// [`ack_for`](Self::ack_for) for every destination (a spool with one destination,
    /// and tests).
    pub fn ack(&self, up_to: u64) -> Result<(), SpoolError> {
        for sink in self.sinks() {
            self.ack_for(&sink, up_to)?;
        }
        Ok(())
    }

    /// Records that every record below `up_to` is done with for the destination `sink`
    /// (delivered or dead-lettered), then removes the blocks now behind every destination.
    /// The new positions are synced first, so a crash never loses track of what was
    /// delivered (and numbers are never reused).
    pub fn ack_for(&self, sink: &str, up_to: u64) -> Result<(), SpoolError> {
        let removed = {
            let mut st = self.state();
            let current = st.sink_floors.get(sink).copied().unwrap_or(st.floor);
            if up_to <= current {
                return Ok(());
            }
            st.sink_floors.insert(sink.to_string(), up_to);
            let min = st.min_sink_floor().unwrap_or(up_to);
            if min > st.floor {
                st.advance_floor(min)
            } else {
                Vec::new()
            }
        };
        crash::point("ack:floor_advanced_in_memory");
        if let Some(reason) = self.failure() {
            return Err(SpoolError::Failed(reason));
        }
        self.record_floor(None, &[])?;
        crash::point("ack:floor_synced");
        self.remove_blocks(&removed)?;
        self.retire_generations(&self.lock_commits());
        Ok(())
    }

    /// Takes the commit lock: commits, generation changes and retirement decisions are
    /// serialized by it.
    fn lock_commits(&self) -> CommitGuard<'_> {
        CommitGuard {
            _held: self
                .inner
                .commit_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Flushes everything to disk (shutdown).
    pub fn flush(&self) -> Result<(), SpoolError> {
        for g in self.gens() {
            g.sync().map_err(|e| self.db_err(e))?;
        }
        self.sync_state(true)
    }

    /// Test hook: overwrite a stored block's bytes (to simulate corruption).
    #[cfg(test)]
    pub(crate) fn corrupt_block_for_tests(
        &self,
        first_seq: u64,
        bytes: &[u8],
    ) -> Result<(), SpoolError> {
        let gen = self.state().blocks.get(&first_seq).map(|m| m.gen);
        let gen = gen
            .and_then(|g| self.gen(g))
            .unwrap_or_else(|| self.active());
        gen.overwrite(first_seq, bytes).map_err(|e| self.db_err(e))
    }

    /// First sequence numbers of the stored blocks (tests).
    #[cfg(test)]
    pub(crate) fn block_starts(&self) -> Vec<u64> {
        self.state().blocks.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests;
