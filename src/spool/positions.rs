//! Delivery positions: one per destination (`floor:NAME` in `state/`), their minimum the
//! floor below which blocks are removed; how destinations are added and forgotten, and the
//! one place all positions are persisted. Acknowledging is in `mod.rs` ([`Spool::ack_for`]).

use super::crash;
use super::generation::key;
use super::{Spool, SpoolError, META_DROPPED, META_FLOOR, META_SINK_DROPPED, META_SINK_FLOOR};

/// Delivery positions per destination.
impl Spool {
    /// The delivered position of the destination `sink` (the global floor for one the
    /// spool does not track).
    pub fn sink_floor(&self, sink: &str) -> u64 {
        let st = self.state();
        st.sink_floors.get(sink).copied().unwrap_or(st.floor)
    }

    /// The destinations the spool keeps a delivered position for.
    pub fn sinks(&self) -> Vec<String> {
        self.state().sink_floors.keys().cloned().collect()
    }

    /// Events dropped (size cap, full disk) before the destination `sink` had them.
    pub fn sink_dropped(&self, sink: &str) -> u64 {
        self.state().sink_dropped.get(sink).copied().unwrap_or(0)
    }

    /// Makes `sinks` the spool's destinations (`relay run` calls it with the configured
    /// ones). A destination new to the spool starts at the oldest pending event; one no
    /// longer configured is forgotten, and what only it still held is released. Both are
    /// logged.
    pub fn set_destinations(&self, sinks: &[&str]) -> Result<(), SpoolError> {
        if sinks.is_empty() {
            return Ok(());
        }
        let (removed, gone, added) = {
            let mut st = self.state();
            let floor = st.floor;
            let mut added = false;
            for &sink in sinks {
                if !st.sink_floors.contains_key(sink) {
                    tracing::info!(
                        destination = sink,
                        position = floor,
                        "new destination: it starts at the oldest pending event in the spool (what was delivered elsewhere before it was added is not sent to it)"
                    );
                    st.sink_floors.insert(sink.to_string(), floor);
                    added = true;
                }
            }
            let gone: Vec<String> = st
                .sink_floors
                .keys()
                .filter(|k| !sinks.contains(&k.as_str()))
                .cloned()
                .collect();
            for sink in &gone {
                let at = st.sink_floors.remove(sink).unwrap_or(floor);
                st.sink_dropped.remove(sink);
                tracing::warn!(
                    destination = %sink,
                    position = at,
                    "destination no longer configured: its delivery position is forgotten, and events only it still waited for are released"
                );
            }
            let min = st.min_sink_floor().unwrap_or(floor);
            let removed = if min > st.floor {
                st.advance_floor(min)
            } else {
                Vec::new()
            };
            (removed, gone, added)
        };
        if added || !gone.is_empty() {
            self.record_floor(None, &gone)?;
            self.remove_blocks(&removed)?;
            self.retire_generations(&self.lock_commits());
        }
        Ok(())
    }

    /// Writes the delivered positions (each destination's and their minimum, the floor)
    /// and, after a drop, the dropped counts, in one batch, and syncs it. The one place the
    /// positions are persisted: by [`ack_for`](Self::ack_for), by the size cap and by
    /// [`set_destinations`](Self::set_destinations), always before the blocks below the
    /// floor are removed (invariant 5). `forgotten`: destinations whose keys go.
    pub(super) fn record_floor(
        &self,
        dropped_total: Option<u64>,
        forgotten: &[String],
    ) -> Result<(), SpoolError> {
        let mut batch = sled::Batch::default();
        {
            let st = self.state();
            batch.insert(META_FLOOR, &key(st.floor));
            for (sink, f) in &st.sink_floors {
                batch.insert(format!("{META_SINK_FLOOR}{sink}").as_bytes(), &key(*f));
            }
            if let Some(total) = dropped_total {
                batch.insert(META_DROPPED, &key(total));
                for (sink, d) in &st.sink_dropped {
                    batch.insert(format!("{META_SINK_DROPPED}{sink}").as_bytes(), &key(*d));
                }
            }
        }
        for sink in forgotten {
            batch.remove(format!("{META_SINK_FLOOR}{sink}").as_bytes());
            batch.remove(format!("{META_SINK_DROPPED}{sink}").as_bytes());
        }
        self.inner
            .meta
            .apply_batch(batch)
            .map_err(|e| self.db_err(e))?;
        crash::point("floor:written");
        self.sync_state(false)
    }
}
