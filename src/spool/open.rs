//! Opening a spool directory: the state database, every generation's index, recovery
//! after a crash (blocks below the floor removed, undecodable ones dead-lettered), and
//! the lock that keeps a second relay out.

use super::disk::{self, is_lock_error, open_retrying_lock, Ballast, SyncedFile};
use super::generation::Gen;
use super::{
    DeadId, DeadKind, Inner, Spool, SpoolError, State, LEGACY_SINK, META_DROPPED, META_FLOOR,
    META_NEXT_SEQ, META_SINK_DROPPED, META_SINK_FLOOR, META_SPOOL_ID,
};
use super::{Fit, LastFailure, SpoolSettings};
use crate::logging::LogThrottle;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

impl Spool {
    /// Opens (creating if needed) the spool in `settings.dir`. Fails at once if another
    /// process holds it.
    pub fn open(settings: &SpoolSettings, metrics: Arc<Metrics>) -> Result<Spool, SpoolError> {
        let dir = settings.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| SpoolError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        // Held by a running relay: say so before touching anything in it (the reserve
        // below is the daemon's, and `relay spool` asks the daemon instead).
        if held_by_another_process(&dir.join("state").join("db")) {
            return Err(SpoolError::InUse(dir));
        }
        // On a nearly full disk the reserve goes before sled opens anything (recovery may
        // need to write); the same rule as at every commit (`Ballast::adjust`).
        let ballast = Ballast::new(&dir);
        let fit = Fit::new(
            disk::fs_bytes(&dir).ok(),
            settings.min_free_bytes,
            settings.rotate_bytes,
        );
        if fit.floor > 0 {
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
        // Each destination's position; a spool from before there were several has only
        // `floor`, which is LogScale's.
        for (prefix, into_floors) in [(META_SINK_FLOOR, true), (META_SINK_DROPPED, false)] {
            for item in meta.scan_prefix(prefix.as_bytes()) {
                let (k, v) = item.map_err(db_err)?;
                let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                let value = v
                    .as_ref()
                    .try_into()
                    .map(u64::from_be_bytes)
                    .unwrap_or_default();
                if into_floors {
                    state.sink_floors.insert(name, value.max(state.floor));
                } else {
                    state.sink_dropped.insert(name, value);
                }
            }
        }
        if state.sink_floors.is_empty() {
            state
                .sink_floors
                .insert(LEGACY_SINK.to_string(), state.floor);
        }
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
            let gen = Gen::open(&dir, id, gen_cache, fit.segment_size).map_err(db_err)?;
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

        let last_failure = LastFailure::read(&dir);
        if let Some(f) = &last_failure {
            metrics.spool_last_failure_timestamp.set(f.unix_seconds());
            tracing::warn!(
                at = %crate::time::rfc3339_ms(f.at_ms),
                reason = %f.reason,
                "spool: the last storage failure of this spool (a run that failed a write or fsync exits for a restart; check the disk with dmesg and SMART if this time is recent)"
            );
        }
        let spool = Spool {
            inner: Arc::new(Inner {
                state_db,
                meta,
                dead,
                gens: RwLock::new(gens),
                dir: dir.clone(),
                id,
                settings: settings.clone(),
                fit,
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
                last_failure: Mutex::new(last_failure),
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
        spool.retire_generations(&spool.lock_commits());
        spool.trim_open_generations(None);
        Ok(spool)
    }
}

fn meta_u64(meta: &sled::Tree, k: &[u8]) -> sled::Result<u64> {
    Ok(meta
        .get(k)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Whether another process holds sled's lock on the database file `db` (sled takes an
/// exclusive `flock` on it for as long as the database is open), for half a second as
/// `disk::open_retrying_lock` waits. A file that does not exist yet is held by nobody.
fn held_by_another_process(db: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::File::open(db) else {
        return false;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        // SAFETY: flock on a descriptor we own; closing the file releases our lock.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let held =
            rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK);
        if !held || std::time::Instant::now() >= deadline {
            return held;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
