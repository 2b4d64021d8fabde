//! Making room before a commit. Two limits, one policy:
//!
//! - the size cap, `RELAY_SPOOL_MAX_BYTES`, on the stored (compressed) blocks;
//! - the free-space floor, `RELAY_SPOOL_MIN_FREE_BYTES` fitted to the volume
//!   ([`super::fit`]), on the file system (statvfs before every commit), so that the
//!   effective cap is the smaller of the configured one and what the disk can hold, and a
//!   full disk behaves like a full cap instead of failing writes.
//!
//! Below the floor the spool first gives back what it holds and does not need: a
//! generation being written that holds nothing pending is replaced by a fresh one and
//! deleted (sled keeps the space of removed blocks). Only then does the policy apply, so a
//! full disk made by the spool's own drained files never costs an event.
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

use super::block::BlockMeta;
use super::disk::{self, Reserve, BALLAST_BYTES};
use super::FullPolicy;
use super::{key, CommitGuard, Spool, SpoolError, META_DROPPED};
use crate::metrics::label;
use std::sync::atomic::Ordering;

/// A drained generation larger than this is replaced when the disk is below the floor.
pub(super) const RECLAIM_ABOVE: u64 = 128 << 10;

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
        let min_free = i.fit.floor;
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
        let full =
            free < i.fit.floor || (last != 0 && now.saturating_sub(last) < DISK_FULL_HOLD_MS);
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
    ///
    /// Below the floor, in this order: give back a drained generation ([`Self::reclaim`]);
    /// with `drop-oldest`, drop whole generations, oldest first, re-reading the free space
    /// after each (deleting one gives its space back at once; a commit never goes ahead
    /// on the hope that it did); then, when only the generation being written holds
    /// pending events, drop about twice the incoming size from it (sled reuses that
    /// space). `reject-new`, or nothing left to drop: the commit is refused.
    pub(super) fn make_room(
        &self,
        commits: &CommitGuard<'_>,
        incoming: u64,
        incoming_events: u64,
    ) -> Result<(), SpoolError> {
        let i = &self.inner;
        let (max, min_free) = (i.settings.max_bytes, i.fit.floor);
        let check = || {
            let free = (min_free > 0).then(|| self.check_disk()).flatten();
            (
                free,
                free.is_some_and(|f| f < min_free.saturating_add(incoming)),
            )
        };
        let (mut free, mut disk_low) = check();
        if disk_low && self.reclaim(commits) {
            (free, disk_low) = check();
        }
        if disk_low && i.settings.full_policy == FullPolicy::DropOldest {
            for _ in 0..self.gens().len() {
                let Some(victims) = self.oldest_generation_unless_active() else {
                    break;
                };
                self.set_disk_full(true, free.unwrap_or(0));
                self.drop_victims(commits, Limit::Disk, victims, free)?;
                (free, disk_low) = check();
                if !disk_low {
                    break;
                }
            }
        }
        if disk_low {
            self.set_disk_full(true, free.unwrap_or(0));
        }
        let (victims, limit) = {
            let st = self.state();
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
                // Only the generation being written holds pending blocks: sled reuses
                // what is removed from it; drop twice what comes.
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
            };
            if victims.is_empty() {
                let mut st = st;
                st.dropped_events += incoming_events;
                let (stored, total) = (st.stored_bytes, st.dropped_events);
                drop(st);
                return Err(self.reject(limit, incoming_events, total, stored, free));
            }
            (victims, limit)
        };
        self.drop_victims(commits, limit, victims, free)
    }

    /// The blocks of the oldest generation holding pending blocks, unless it is the one
    /// being written.
    fn oldest_generation_unless_active(&self) -> Option<Vec<(u64, BlockMeta)>> {
        let active = self.active().id;
        let st = self.state();
        let oldest = st.blocks.values().next().map(|m| m.gen)?;
        (oldest != active).then(|| {
            st.blocks
                .iter()
                .filter(|(_, m)| m.gen == oldest)
                .map(|(f, m)| (*f, *m))
                .collect()
        })
    }

    /// Drops `victims` (pending blocks) to make room at `limit`: counted per reason and
    /// destination, logged, the counts synced, the blocks removed and drained generations
    /// deleted.
    fn drop_victims(
        &self,
        commits: &CommitGuard<'_>,
        limit: Limit,
        victims: Vec<(u64, BlockMeta)>,
        free: Option<u64>,
    ) -> Result<(), SpoolError> {
        let (removed, dropped_events, total) = {
            let mut st = self.state();
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
            (removed, dropped, st.dropped_events)
        };
        self.inner
            .metrics
            .events_dropped
            .get_or_create(&label("reason", limit.dropped_reason()))
            .inc_by(dropped_events);
        self.log_limit(limit, true, dropped_events, total, free);
        self.record_floor(Some(total), &[])?;
        super::crash::point("drop:counts_synced");
        // A generation left without blocks is deleted whole below: writing removals into
        // it first would take room on a full disk for nothing.
        let emptied =
            |g: u64| g != self.active().id && !self.state().blocks.values().any(|m| m.gen == g);
        let partial: Vec<(u64, u64)> = removed.into_iter().filter(|(_, g)| !emptied(*g)).collect();
        self.remove_blocks(&partial)?;
        self.retire_generations(commits);
        Ok(())
    }

    /// Gives back space the spool holds and does not need: the generation being written,
    /// when it holds no pending block and is larger than a fresh one, is replaced by a
    /// fresh one and deleted (closed first: its files' space returns only once no handle
    /// is left). Returns whether it did. The caller holds the commit lock.
    fn reclaim(&self, commits: &CommitGuard<'_>) -> bool {
        let active = self.active();
        let holds_pending = self.state().blocks.values().any(|m| m.gen == active.id);
        // A fresh database takes 8 to 40 KiB; more is worth giving back.
        if holds_pending || active.size_on_disk() <= RECLAIM_ABOVE {
            return false;
        }
        self.start_generation(&active);
        if self.active().id == active.id {
            return false;
        }
        let bytes = active.size_on_disk();
        active.close();
        drop(active);
        self.retire_generations(commits);
        self.inner.metrics.spool_reclaims.inc();
        tracing::info!(
            freed_bytes = bytes,
            free_bytes = disk::free_bytes(&self.inner.dir).unwrap_or(0),
            "spool: free space below the floor; replaced the drained block database instead of dropping events"
        );
        true
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
            min_free_bytes = i.fit.floor,
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
        let (max, min_free) = (i.settings.max_bytes, i.fit.floor);
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
