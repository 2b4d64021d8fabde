//! The write-ahead spool: every event the relay receives is on disk before anything else
//! happens to it, and stays there until LogScale has acknowledged it.
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
mod generation;
mod record;
mod room;
mod writer;

pub use block::{decode as decode_block, encode as encode_block, BlockError, BlockHeader};
pub use dead::{DeadId, DeadKind, DeadLetter, DeadSummary};
pub use disk::{free_bytes, BALLAST_BYTES, BALLAST_FILE};
pub use generation::dir_size;
pub use record::{flags, now_ms, NewRecord, Record, SourceKind};
pub use writer::{AppendError, Appender};

use crate::config::{FullPolicy, SpoolSettings};
use crate::logging::LogThrottle;
use crate::metrics::{label, Metrics};
use disk::{Ballast, SyncedFile};
use generation::{key, seq_of, BlockMeta, Gen};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Largest group the writer commits at once.
pub const MAX_GROUP_RECORDS: usize = 16_384;
/// Largest uncompressed group the writer commits at once (possibly as several blocks).
pub const MAX_GROUP_BYTES: usize = 8 << 20;
/// Uncompressed bytes aimed at per block.
pub const BLOCK_RAW_TARGET: usize = 1 << 20;
/// Largest stored (compressed) block, unless a single record is larger by itself.
///
/// Why: sled 0.34 writes a leaf node larger than a quarter of a segment as a separate
/// "blob" file, and in an insert-then-remove workload those files are never removed (we
/// measured the blob directory growing without bound while the live data stayed at 7 MB).
/// A leaf holds up to 17 values, so with 16 MiB segments (the most sled allows) keeping
/// blocks under 192 KiB keeps every leaf inline.
pub const MAX_BLOCK_STORED: usize = 192 << 10;
/// sled segment size of the block databases (fixed when a generation is created).
pub const SEGMENT_SIZE: usize = 16 << 20;
/// A generation larger than this on disk is closed for writing; a new one starts, and the
/// old one is deleted once drained. An empty generation larger than 3/8 of it (24 MiB) is
/// replaced by a fresh one: the space comes back after a backlog drained. Only the
/// generation being written and the one being read are kept open, which bounds memory.
pub const ROTATE_BYTES: u64 = 64 << 20;

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
    floor: u64,
    next_seq: u64,
    stored_bytes: u64,
    dropped_events: u64,
    dead_events: u64,
    dead_blocks: u64,
    commits: u64,
    /// One past the last block handed to the shipper ([`Spool::read_for_shipping`]).
    read_end: u64,
}

impl State {
    /// Events in the block at `first` that are still pending.
    fn pending_in(&self, first: u64, m: &BlockMeta) -> u64 {
        m.end(first).saturating_sub(self.floor.max(first))
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

struct Inner {
    state_db: sled::Db,
    meta: sled::Tree,
    dead: sled::Tree,
    /// Block databases, oldest first; the last one takes new blocks.
    gens: RwLock<Vec<Arc<Gen>>>,
    dir: PathBuf,
    id: String,
    settings: SpoolSettings,
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
    /// Rate limit of the "spool full" / "disk full" error lines.
    full_log: LogThrottle,
    /// Tests: the next commits' sync fails with EIO.
    #[cfg(test)]
    fail_syncs: AtomicBool,
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
    /// Bytes the spool's sled databases take on disk.
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
    /// sled databases of blocks currently on disk (see `generation`).
    pub generations: u64,
    /// Free bytes on the spool's file system (`None`: it does not say).
    #[serde(default)]
    pub disk_free_bytes: Option<u64>,
    /// `RELAY_SPOOL_MIN_FREE_BYTES`.
    #[serde(default)]
    pub min_free_bytes: u64,
    /// The disk is the limit: free space is below `min_free_bytes`, or was in the last
    /// 30 s; the full policy applies as at the size cap.
    #[serde(default)]
    pub disk_full: bool,
    /// Whether the emergency reserve file is in place (released on a nearly full disk).
    #[serde(default)]
    pub reserve_present: bool,
    /// Why the spool stopped taking writes, after a storage failure.
    #[serde(default)]
    pub failure: Option<String>,
}

/// Splits `records` (numbered from `first`) into blocks of about [`BLOCK_RAW_TARGET`]
/// uncompressed bytes, halving any whose compressed size exceeds [`MAX_BLOCK_STORED`].
fn encode_blocks(gen: u64, first: u64, records: &[NewRecord]) -> Vec<(u64, Vec<u8>, BlockMeta)> {
    let mut chunks: Vec<(usize, usize)> = Vec::new();
    let mut chunk_start = 0;
    let mut raw = 0;
    for (idx, r) in records.iter().enumerate() {
        raw += r.payload.len();
        if raw >= BLOCK_RAW_TARGET || idx + 1 == records.len() {
            chunks.push((chunk_start, idx + 1));
            chunk_start = idx + 1;
            raw = 0;
        }
    }
    let encode = |(a, b): (usize, usize)| ((a, b), block::encode(first + a as u64, &records[a..b]));
    // Compression is most of a commit's CPU: blocks of one group compress in parallel.
    let mut encoded: Vec<((usize, usize), Vec<u8>)> = if chunks.len() > 1 {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(chunks.len());
        let per = chunks.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .chunks(per)
                .map(|part| {
                    scope.spawn(move || part.iter().map(|c| encode(*c)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("block encoding does not panic"))
                .collect()
        })
    } else {
        chunks.into_iter().map(encode).collect()
    };
    let mut out = Vec::with_capacity(encoded.len());
    while let Some(((a, b), block)) = encoded.pop() {
        if block.len() > MAX_BLOCK_STORED && b - a > 1 {
            let mid = a + (b - a) / 2;
            encoded.push(encode((mid, b)));
            encoded.push(encode((a, mid)));
            continue;
        }
        let h = block::decode_header(&block).expect("a block just encoded has a valid header");
        let m = BlockMeta::from_header(gen, &h, block.len());
        out.push((first + a as u64, block, m));
    }
    out.sort_unstable_by_key(|b| b.0);
    out
}

fn meta_u64(meta: &sled::Tree, k: &[u8]) -> sled::Result<u64> {
    Ok(meta
        .get(k)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Opens a sled database, retrying for half a second while its lock is held: in one
/// process, sled's background threads may hold a just-dropped database for a moment. A
/// lock held by another process is still reported within that half second.
pub(super) fn open_retrying_lock<T>(mut open: impl FnMut() -> sled::Result<T>) -> sled::Result<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        match open() {
            Err(e) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
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
        // On a nearly full disk the reserve goes before sled opens anything (recovery may
        // need to write); the same rule as at every commit (`Ballast::adjust`).
        let ballast = Ballast::new(&dir);
        if settings.min_free_bytes > 0 {
            if let Ok(free) = disk::free_bytes(&dir) {
                if ballast.adjust(free, u64::MAX) == disk::Reserve::Released {
                    tracing::warn!(free_bytes = free, "spool: the disk is nearly full; released the emergency reserve so that the backlog can be delivered and removed");
                }
            }
        }
        let db_err = |source: sled::Error| {
            if is_lock_error(&source) {
                SpoolError::InUse(dir.clone())
            } else {
                SpoolError::Db {
                    dir: dir.clone(),
                    source,
                }
            }
        };
        let state_db = open_retrying_lock(|| {
            sled::Config::new()
                .path(dir.join("state"))
                .cache_capacity(4 << 20)
                .flush_every_ms(Some(500))
                .open()
        })
        .map_err(db_err)?;
        let meta = state_db.open_tree("meta").map_err(db_err)?;
        let dead = state_db.open_tree("dead").map_err(db_err)?;
        let state_log = SyncedFile::open(&dir.join("state")).map_err(|e| db_err(e.into()))?;

        let id = match meta.get(META_SPOOL_ID).map_err(db_err)? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => {
                let id = format!("{:016x}", fastrand::u64(..));
                meta.insert(META_SPOOL_ID, id.as_bytes()).map_err(db_err)?;
                state_db.flush().map_err(db_err)?;
                id
            }
        };
        let mut state = State {
            floor: meta_u64(&meta, META_FLOOR).map_err(db_err)?,
            next_seq: meta_u64(&meta, META_NEXT_SEQ).map_err(db_err)?,
            dropped_events: meta_u64(&meta, META_DROPPED).map_err(db_err)?,
            ..State::default()
        };
        for item in dead.iter().keys() {
            match DeadId::from_key(&item.map_err(db_err)?).and_then(|id| id.kind()) {
                Some(DeadKind::Event) => state.dead_events += 1,
                Some(DeadKind::Block) => state.dead_blocks += 1,
                None => {}
            }
        }

        let gen_cache = (settings.cache_bytes / 2).max(4 << 20);
        let mut ids = Gen::list(&dir).map_err(|source| SpoolError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        if ids.is_empty() {
            ids.push(1);
        }
        let mut gens = Vec::new();
        let mut corrupt = Vec::new();
        let newest = ids.last().copied();
        for id in ids {
            let gen = Gen::open(&dir, id, gen_cache).map_err(db_err)?;
            let loaded = gen.load(state.floor).map_err(db_err)?;
            if Some(id) != newest {
                // Opened to read its index; reopened when the reader gets there.
                gen.close();
            }
            for (seq, m) in loaded.blocks {
                state.stored_bytes += u64::from(m.stored_len);
                state.blocks.insert(seq, m);
            }
            corrupt.extend(loaded.corrupt.into_iter().map(|c| (id, c)));
            gens.push(Arc::new(gen));
        }
        let last_end = state
            .blocks
            .iter()
            .next_back()
            .map_or(0, |(f, m)| m.end(*f));
        state.next_seq = state.next_seq.max(last_end).max(state.floor);
        let next = state.next_seq;

        let spool = Spool {
            inner: Arc::new(Inner {
                state_db,
                meta,
                dead,
                gens: RwLock::new(gens),
                dir: dir.clone(),
                id,
                settings: settings.clone(),
                metrics,
                state: Mutex::new(state),
                commit_lock: Mutex::new(()),
                durable_end: watch::Sender::new(next),
                state_log,
                ballast,
                disk_free: AtomicU64::new(u64::MAX),
                statvfs_warned: AtomicBool::new(false),
                disk_full: AtomicBool::new(false),
                disk_limited_ms: AtomicU64::new(0),
                failed: CancellationToken::new(),
                failure: Mutex::new(None),
                full_log: LogThrottle::new(std::time::Duration::from_secs(10)),
                #[cfg(test)]
                fail_syncs: AtomicBool::new(false),
            }),
        };
        spool.check_disk();
        for (gen_id, (k, v, reason)) in corrupt {
            if let Some(gen) = spool.gen(gen_id) {
                spool.dead_letter_block(&gen, &k, &v, reason)?;
            }
        }
        spool.retire_generations();
        spool.trim_open_generations(None);
        Ok(spool)
    }

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

    /// Commits `records`: numbers them, compresses them into blocks, stores, flushes.
    /// Called by the writer task (off the async threads) and by `dead retry`.
    pub fn commit(&self, records: &[NewRecord]) -> Result<std::ops::Range<u64>, SpoolError> {
        let i = &self.inner;
        let _guard = i.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = self.failure() {
            return Err(SpoolError::Failed(reason));
        }
        let first = self.state().next_seq;
        let n = records.len() as u64;
        if n == 0 {
            return Ok(first..first);
        }
        let started = std::time::Instant::now();
        let gen = self.active();
        let blocks = encode_blocks(gen.id, first, records);
        let total: u64 = blocks.iter().map(|(_, b, _)| b.len() as u64).sum();
        self.make_room(total, n)?;
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
            st.commits.is_multiple_of(16)
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
        if check_size && gen.size_on_disk() > i.settings.rotate_bytes {
            self.start_generation(&gen);
        }
        Ok(first..first + n)
    }

    /// Starts a new generation after `current` (the caller holds the commit lock).
    fn start_generation(&self, current: &Gen) {
        let id = current.id + 1;
        let cache = (self.inner.settings.cache_bytes / 2).max(4 << 20);
        match Gen::open(&self.inner.dir, id, cache) {
            Ok(g) => {
                tracing::info!(generation = id, previous_bytes = current.size_on_disk(), "spool: new block database generation (the previous one is deleted once drained)");
                self.inner
                    .gens
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Arc::new(g));
                self.trim_open_generations(None);
            }
            Err(e) => {
                tracing::warn!(error = %e, "spool: cannot start a new generation; going on with the current one")
            }
        }
    }

    /// Closes the databases of generations that are neither written (the newest), nor
    /// being read (the one holding the oldest pending block, or `also_keep`).
    fn trim_open_generations(&self, also_keep: Option<u64>) {
        let oldest = self.state().blocks.values().next().map(|m| m.gen);
        let gens = self.gens();
        let active = gens.last().map(|g| g.id);
        for g in &gens {
            let keep = [active, oldest, also_keep].contains(&Some(g.id));
            if !keep && g.is_open() {
                g.close();
            }
        }
    }

    /// Deletes generations that hold no block any more (all but the active one), and
    /// replaces an empty active generation that has grown large.
    fn retire_generations(&self) {
        let _guard = self
            .inner
            .commit_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.retire_generations_locked();
    }

    /// [`retire_generations`](Self::retire_generations) for a caller holding the commit
    /// lock: no commit (which may add blocks to a generation) and no rotation (which makes
    /// a generation eligible) can interleave with the decision.
    fn retire_generations_locked(&self) {
        let in_use: std::collections::HashSet<u64> =
            self.state().blocks.values().map(|m| m.gen).collect();
        let gens = self.gens();
        let Some(active) = gens.last().cloned() else {
            return;
        };
        if !in_use.contains(&active.id)
            && active.size_on_disk() > self.inner.settings.rotate_bytes * 3 / 8
        {
            self.start_generation(&active);
        }
        let gens = self.gens();
        let active_id = gens.last().map(|g| g.id);
        let retire: Vec<Arc<Gen>> = gens
            .iter()
            .filter(|g| Some(g.id) != active_id && !in_use.contains(&g.id))
            .cloned()
            .collect();
        if retire.is_empty() {
            self.trim_open_generations(None);
            return;
        }
        {
            let mut all = self.inner.gens.write().unwrap_or_else(|p| p.into_inner());
            all.retain(|g| !retire.iter().any(|r| r.id == g.id));
        }
        for g in retire {
            let (id, dir, bytes) = (g.id, g.dir.clone(), g.size_on_disk());
            drop(g);
            crash::point("retire:before_delete");
            // Readers may still hold the database open for a moment: unlinked files stay
            // readable until closed, so removing now is safe.
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(
                    generation = id,
                    freed_bytes = bytes,
                    "spool: drained block database deleted"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, dir = %dir.display(), "spool: cannot delete a drained block database")
                }
            }
        }
    }

    /// Removes blocks from their generations (the floor covering them is already durable).
    /// `locked`: the caller holds the commit lock.
    fn remove_blocks(&self, removed: &[(u64, u64)], locked: bool) -> Result<(), SpoolError> {
        if removed.is_empty() {
            return Ok(());
        }
        let gens = self.gens();
        for (seq, gen_id) in removed {
            if let Some(g) = gens.iter().find(|g| g.id == *gen_id) {
                g.remove(*seq).map_err(|e| self.db_err(e))?;
            }
            crash::point("remove:first_block_removed");
        }
        drop(gens);
        crash::point("remove:blocks_removed");
        if locked {
            self.retire_generations_locked();
        } else {
            self.retire_generations();
        }
        Ok(())
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
                // Indexed but not stored: nothing to read; forget it, loudly.
                tracing::error!(
                    block = first,
                    generation = m.gen,
                    "spool block listed in the index is missing from its database; skipped"
                );
                let mut st = self.state();
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

    fn dead_letter_block(
        &self,
        gen: &Gen,
        k: &[u8],
        v: &[u8],
        reason: String,
    ) -> Result<(), SpoolError> {
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
        let result = i
            .dead
            .insert(entry.id.key(), entry.encode())
            .map_err(|e| self.db_err(e))
            .and_then(|_| self.sync_state(true))
            .and_then(|_| gen.remove_raw(k).map_err(|e| self.db_err(e)));
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
        result
    }

    /// Records that every record below `up_to` is done with (delivered or dead-lettered),
    /// then removes the blocks now entirely behind it. The new floor is flushed first, so
    /// a crash never loses track of what was delivered (and numbers are never reused).
    pub fn ack(&self, up_to: u64) -> Result<(), SpoolError> {
        let removed = {
            let mut st = self.state();
            if up_to <= st.floor {
                return Ok(());
            }
            st.advance_floor(up_to)
        };
        crash::point("ack:floor_advanced_in_memory");
        if let Some(reason) = self.failure() {
            return Err(SpoolError::Failed(reason));
        }
        self.inner
            .meta
            .insert(META_FLOOR, &key(up_to))
            .map_err(|e| self.db_err(e))?;
        crash::point("ack:floor_written");
        self.sync_state(false)?;
        crash::point("ack:floor_synced");
        self.remove_blocks(&removed, false)
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
        self.sync_state(true)
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
        self.sync_state(false)
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
        for g in self.gens() {
            g.sync().map_err(|e| self.db_err(e))?;
        }
        self.sync_state(true)
    }

    /// The figures `relay spool inspect` shows.
    pub fn stats(&self) -> SpoolStats {
        self.check_disk();
        let gens = self.gens();
        let disk_bytes = self.inner.state_db.size_on_disk().unwrap_or(0)
            + gens.iter().map(|g| g.size_on_disk()).sum::<u64>();
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
            generations: gens.len() as u64,
            disk_free_bytes: Some(self.inner.disk_free.load(Ordering::Relaxed))
                .filter(|f| *f != u64::MAX),
            min_free_bytes: self.inner.settings.min_free_bytes,
            disk_full: self.inner.disk_full.load(Ordering::Relaxed),
            reserve_present: self.inner.ballast.is_present(),
            failure: self.failure(),
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

    /// Test hook: overwrite a stored block's bytes (to simulate corruption).
    #[doc(hidden)]
    pub fn corrupt_block_for_tests(&self, first_seq: u64, bytes: &[u8]) -> Result<(), SpoolError> {
        let gen = self.state().blocks.get(&first_seq).map(|m| m.gen);
        let gen = gen
            .and_then(|g| self.gen(g))
            .unwrap_or_else(|| self.active());
        gen.overwrite(first_seq, bytes).map_err(|e| self.db_err(e))
    }

    /// First sequence numbers of the stored blocks (tests).
    #[doc(hidden)]
    pub fn block_starts(&self) -> Vec<u64> {
        self.state().blocks.keys().copied().collect()
    }
}

#[cfg(test)]
mod ack_crash_tests;
#[cfg(test)]
mod tests;
