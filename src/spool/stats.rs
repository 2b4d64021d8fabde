//! What the spool tells operators: the figures of `relay spool inspect` and the metrics
//! gauges ([`SpoolStats`]), pending records for `peek` and `export`, and small notes kept
//! in the state database (the shipper's last error, readable while the daemon is down).

use super::{FullPolicy, Record, Spool, SpoolError};
use crate::time::now_ms;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

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
    pub full_policy: FullPolicy,
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
    /// The free-space floor applied: `RELAY_SPOOL_MIN_FREE_BYTES` fitted to the volume
    /// (see `spool::fit`).
    #[serde(default)]
    pub min_free_bytes: u64,
    /// Why the floor differs from `RELAY_SPOOL_MIN_FREE_BYTES`, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_adjusted: Option<String>,
    /// Size of the spool's file system (`None`: it does not say).
    #[serde(default)]
    pub fs_bytes: Option<u64>,
    /// What the spool can hold on this file system now: what it holds plus what is free,
    /// less the floor (others' files on a shared disk count against it).
    #[serde(default)]
    pub holdable_bytes: Option<u64>,
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
    /// The last storage failure of this spool, kept across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<super::LastFailure>,
    /// Each destination's own position in the spool (in `inspect`, under `destinations`
    /// with its shipper's state).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sink_positions: Vec<SinkStats>,
}

/// One destination's position in the spool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkStats {
    /// `logscale` or `sentinel`.
    pub name: String,
    /// Every record below it is delivered to this destination (or dead-lettered for it).
    pub delivered_position: u64,
    /// Records at or above its position. For a destination that takes only some sources
    /// (Sentinel takes webhooks by default) this counts the others too: they are passed
    /// over, not sent, when it gets there.
    pub pending_events: u64,
    pub oldest_pending_received_ms: Option<u64>,
    /// 0 when nothing is pending.
    pub oldest_pending_age_secs: f64,
    /// Events dropped (size cap, full disk) before this destination had them.
    pub dropped_events: u64,
}

impl Spool {
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

    /// The receive time (ms) up to which every record is delivered to every destination:
    /// just before the oldest pending block's first record, or, with nothing pending, one
    /// second ago (what arrived since may still wait in the writer's queue). Conservative:
    /// records of that block below the floor count as not delivered. What a leader publishes
    /// for hot standbys (`role::Role::delivered_up_to_ms`).
    pub fn delivered_mark_ms(&self) -> u64 {
        let st = self.state();
        match st.blocks.values().find(|m| m.count > 0) {
            Some(m) => m.first_ms.saturating_sub(1),
            None => now_ms().saturating_sub(1_000),
        }
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
        let sink_positions = st
            .sink_floors
            .iter()
            .map(|(name, &f)| {
                let mut pending = 0u64;
                let mut oldest = None;
                for (&first, m) in st.blocks.range(..).rev() {
                    if m.end(first) <= f {
                        break;
                    }
                    pending += super::pending_above(first, m, f);
                    if m.count > 0 {
                        oldest = Some(m.first_ms);
                    }
                }
                SinkStats {
                    name: name.clone(),
                    delivered_position: f,
                    pending_events: pending,
                    oldest_pending_received_ms: oldest,
                    oldest_pending_age_secs: oldest
                        .map_or(0.0, |o| now.saturating_sub(o) as f64 / 1000.0),
                    dropped_events: st.sink_dropped.get(name).copied().unwrap_or(0),
                }
            })
            .collect();
        SpoolStats {
            spool_dir: self.inner.dir.display().to_string(),
            spool_id: self.inner.id.clone(),
            pending_events,
            pending_bytes,
            stored_bytes: st.stored_bytes,
            disk_bytes,
            max_bytes: self.inner.settings.max_bytes,
            full_policy: self.inner.settings.full_policy,
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
            min_free_bytes: self.inner.fit.floor,
            floor_adjusted: self.inner.fit.adjustment(),
            fs_bytes: self.inner.fit.fs_bytes,
            holdable_bytes: self.holdable(disk_bytes),
            disk_full: self.inner.disk_full.load(Ordering::Relaxed),
            reserve_present: self.inner.ballast.is_present(),
            failure: self.failure(),
            last_failure: self
                .inner
                .last_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            sink_positions,
        }
    }

    /// What the spool can hold now, given `disk_bytes` of its own: those plus the free
    /// space, less the floor. `None` when the file system gives no figures.
    fn holdable(&self, disk_bytes: u64) -> Option<u64> {
        let free = self.inner.disk_free.load(Ordering::Relaxed);
        (free != u64::MAX && self.inner.fit.fs_bytes.is_some())
            .then(|| (free + disk_bytes).saturating_sub(self.inner.fit.floor))
    }

    /// Pending records from `from` on, at most `limit` of them (peek, export).
    pub fn pending(
        &self,
        from: u64,
        limit: usize,
        to: Option<u64>,
    ) -> Result<Vec<Record>, SpoolError> {
        self.pending_where(from, limit, to, |_| true)
    }

    /// [`Spool::pending`], counting only the records `keep` takes (`peek --sink`).
    pub fn pending_where(
        &self,
        from: u64,
        limit: usize,
        to: Option<u64>,
        keep: impl Fn(&Record) -> bool,
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
                if keep(&r) {
                    out.push(r);
                }
            }
            pos = b.end;
        }
        Ok(out)
    }
}
