//! Making room before a commit. Two limits, one policy:
//!
//! - the size cap, `RELAY_SPOOL_MAX_BYTES`, on the stored (compressed) blocks;
//! - the free-space floor, `RELAY_SPOOL_MIN_FREE_BYTES`, on the file system (statvfs before
//!   every commit), so that the effective cap is the smaller of the configured one and what
//!   the disk can hold, and a full disk behaves like a full cap instead of failing writes.
//!
//! At either limit `RELAY_SPOOL_FULL_POLICY` decides: `reject-new` refuses the commit
//! (webhooks get 503), `drop-oldest` drops the oldest pending blocks. On a low disk the
//! oldest *generation* is dropped whole when there is more than one, because deleting its
//! directory is what gives space back to the file system at once; within one generation
//! sled reuses the space of removed blocks for new ones. Every drop is counted per reason
//! and logged (at most one line per 10 s per condition, with the count of lines held back).
//!
//! Recording the delivered position needs a little room in sled's log. The floor keeps it,
//! and when something else fills the disk anyway the emergency reserve (see [`super::disk`])
//! is released. The spool resumes by itself when space comes back: the check runs at every
//! commit.

use super::disk::{self, Reserve, BALLAST_BYTES};
use super::FullPolicy;
use super::{key, CommitGuard, Spool, SpoolError, META_DROPPED};
use crate::metrics::label;
use std::sync::atomic::Ordering;

/// How long the "disk full" state lasts after the disk last limited a commit.
pub(super) const DISK_FULL_HOLD_MS: u64 = 30_000;

/// Which limit a commit ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// `RELAY_SPOOL_MAX_BYTES`.
    Cap,
    /// `RELAY_SPOOL_MIN_FREE_BYTES`.
    Disk,
}

impl Limit {
    /// The `reason` label of events dropped to make room.
    fn dropped_reason(self) -> &'static str {
        match self {
            Limit::Cap => "spool_full_oldest",
            Limit::Disk => "disk_full_oldest",
        }
    }

    /// The `reason` label of events refused.
    fn rejected_reason(self) -> &'static str {
        match self {
            Limit::Cap => "spool_full_rejected",
            Limit::Disk => "disk_full_rejected",
        }
    }
}

impl Spool {
    /// Reads the free space of the spool's file system, updates the disk figures, and
    /// keeps the emergency reserve: released when less than its size is left, re-created
    /// once there is room again. Returns the free bytes (`None` if statvfs failed).
    pub(super) fn check_disk(&self) -> Option<u64> {
        let i = &self.inner;
        let min_free = i.settings.min_free_bytes;
        let mut free = match disk::free_bytes(&i.dir) {
            Ok(f) => f,
            Err(e) => {
                i.disk_free.store(u64::MAX, Ordering::Relaxed);
                if !i.statvfs_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, dir = %i.dir.display(), "spool: cannot read the free space of the spool's file system; RELAY_SPOOL_MIN_FREE_BYTES is not applied");
                }
                return None;
            }
        };
        if min_free > 0 {
            match i.ballast.adjust(free, min_free) {
                Reserve::Released => {
                    tracing::warn!(
                        free_bytes = free,
                        "spool: the disk is nearly full; released the emergency reserve so that deliveries can still be recorded and space given back"
                    );
                    free = disk::free_bytes(&i.dir).unwrap_or(free);
                }
                Reserve::Created => {
                    tracing::info!(bytes = BALLAST_BYTES, "spool: emergency reserve in place");
                    free = free.saturating_sub(BALLAST_BYTES);
                }
                Reserve::Unchanged => {}
            }
        }
        i.disk_free.store(free, Ordering::Relaxed);
        i.metrics.spool_disk_free_bytes.set(free as i64);
        if min_free > 0 {
            self.set_disk_full(false, free);
        }
        Some(free)
    }

    /// Tracks the "disk full" state operators see: free space below the floor now, or the
    /// disk limited a commit in the last [`DISK_FULL_HOLD_MS`]. Dropping a generation frees
    /// much at once, so free space alone would flicker while the disk is in fact the limit.
    fn set_disk_full(&self, limited_now: bool, free: u64) {
        let i = &self.inner;
        let now = crate::time::now_ms();
        if limited_now {
            i.disk_limited_ms.store(now, Ordering::Relaxed);
        }
        let last = i.disk_limited_ms.load(Ordering::Relaxed);
        let full = free < i.settings.min_free_bytes
            || (last != 0 && now.saturating_sub(last) < DISK_FULL_HOLD_MS);
        let was = i.disk_full.swap(full, Ordering::Relaxed);
        i.metrics.spool_disk_full.set(i64::from(full));
        if was && !full {
            tracing::info!(
                free_bytes = free,
                "spool: free space is back above RELAY_SPOOL_MIN_FREE_BYTES; the disk is no longer the limit"
            );
        }
    }

    /// Applies the size cap and the free-space floor before `incoming` stored bytes
    /// (`incoming_events` events) are committed. The caller holds the commit lock.
    pub(super) fn make_room(
        &self,
        commits: &CommitGuard<'_>,
        incoming: u64,
        incoming_events: u64,
    ) -> Result<(), SpoolError> {
        let i = &self.inner;
        let (max, min_free) = (i.settings.max_bytes, i.settings.min_free_bytes);
        let free = if min_free > 0 {
            self.check_disk()
        } else {
            None
        };
        let disk_low = free.is_some_and(|f| f < min_free.saturating_add(incoming));
        if disk_low {
            self.set_disk_full(true, free.unwrap_or(0));
        }
        let active = self.active().id;
        let (removed, dropped_events, total, limit) = {
            let mut st = self.state();
            let over_cap = st.stored_bytes + incoming > max && !st.blocks.is_empty();
            let limit = match (disk_low, over_cap) {
                (true, _) => Limit::Disk,
                (false, true) => Limit::Cap,
                (false, false) => return Ok(()),
            };
            let victims = if i.settings.full_policy == FullPolicy::RejectNew {
                Vec::new()
            } else if limit == Limit::Cap {
                // Drop the oldest blocks until the new ones fit: first those the shipper
                // has not read yet (what is in flight is still delivered from memory, so
                // dropping it would count as lost what arrives), then the rest.
                let read_end = st.read_end.max(st.floor);
                let mut victims = Vec::new();
                let mut freed = 0u64;
                let unread = st.blocks.range(read_end..);
                let in_flight = st.blocks.range(..read_end);
                for (&first, m) in unread.chain(in_flight) {
                    if st.stored_bytes - freed + incoming <= max {
                        break;
                    }
                    freed += u64::from(m.stored_len);
                    victims.push((first, *m));
                }
                victims
            } else {
                // A low disk: only deleting a whole generation gives space back at once.
                let oldest_gen = st.blocks.values().next().map(|m| m.gen);
                match oldest_gen {
                    Some(g) if g != active => st
                        .blocks
                        .iter()
                        .filter(|(_, m)| m.gen == g)
                        .map(|(f, m)| (*f, *m))
                        .collect(),
                    // One generation: sled reuses what is removed; drop twice what comes.
                    _ => {
                        let mut freed = 0u64;
                        st.blocks
                            .iter()
                            .take_while(|(_, m)| {
                                let more = freed < 2 * incoming;
                                freed += u64::from(m.stored_len);
                                more
                            })
                            .map(|(f, m)| (*f, *m))
                            .collect()
                    }
                }
            };
            if victims.is_empty() {
                st.dropped_events += incoming_events;
                let (stored, total) = (st.stored_bytes, st.dropped_events);
                drop(st);
                return Err(self.reject(limit, incoming_events, total, stored, free));
            }
            let mut dropped = 0u64;
            let mut removed = Vec::with_capacity(victims.len());
            for (first, m) in victims {
                dropped += st.pending_in(first, &m);
                let per_sink: Vec<(String, u64)> = st
                    .sink_floors
                    .iter()
                    .map(|(sink, f)| (sink.clone(), super::pending_above(first, &m, *f)))
                    .collect();
                for (sink, n) in per_sink {
                    *st.sink_dropped.entry(sink).or_default() += n;
                }
                st.blocks.remove(&first);
                st.stored_bytes -= u64::from(m.stored_len);
                removed.push((first, m.gen));
            }
            st.dropped_events += dropped;
            (removed, dropped, st.dropped_events, limit)
        };
        i.metrics
            .events_dropped
            .get_or_create(&label("reason", limit.dropped_reason()))
            .inc_by(dropped_events);
        self.log_limit(limit, true, dropped_events, total, free);
        self.record_floor(Some(total), &[])?;
        super::crash::point("drop:counts_synced");
        self.remove_blocks(&removed)?;
        self.retire_generations(commits);
        Ok(())
    }

    /// The error line of a limit reached (at most one per 10 s, with the number held back):
    /// what happened, the figures, and what to do.
    fn log_limit(&self, limit: Limit, dropped: bool, events: u64, total: u64, free: Option<u64>) {
        let i = &self.inner;
        let Some(held_back) = i.full_log.allow() else {
            return;
        };
        let policy = i.settings.full_policy.name();
        let (what, fix) = match limit {
            Limit::Cap => (
                format!("spool full (RELAY_SPOOL_FULL_POLICY={policy})"),
                "LogScale is not keeping up or is unreachable",
            ),
            Limit::Disk => (
                format!("disk full (free space below RELAY_SPOOL_MIN_FREE_BYTES, RELAY_SPOOL_FULL_POLICY={policy})"),
                "free space on the spool's file system, or set RELAY_SPOOL_MAX_BYTES below what it can hold",
            ),
        };
        let done = if dropped {
            "dropped the oldest pending events to make room"
        } else {
            "new events refused"
        };
        tracing::error!(
            events,
            dropped_total = total,
            stored_bytes = self.state().stored_bytes,
            max_bytes = i.settings.max_bytes,
            free_bytes = free,
            min_free_bytes = i.settings.min_free_bytes,
            similar_lines_held_back = held_back,
            "{what}: {done}; {fix}; see `relay spool inspect`"
        );
    }

    /// Refuses a commit at `limit` (`reject-new`, or nothing left to drop): counted and
    /// logged (rate-limited); returns the error the writer turns into 503s.
    fn reject(
        &self,
        limit: Limit,
        events: u64,
        total: u64,
        stored: u64,
        free: Option<u64>,
    ) -> SpoolError {
        let i = &self.inner;
        let (max, min_free) = (i.settings.max_bytes, i.settings.min_free_bytes);
        i.metrics
            .events_dropped
            .get_or_create(&label("reason", limit.rejected_reason()))
            .inc_by(events);
        // Not synced: the count is also in the log line and the metric.
        let _ = i.meta.insert(META_DROPPED, &key(total));
        self.log_limit(limit, false, events, total, free);
        match limit {
            Limit::Cap => SpoolError::Full { stored, max },
            Limit::Disk => SpoolError::DiskFull {
                free: free.unwrap_or(0),
                min_free,
            },
        }
    }
}
