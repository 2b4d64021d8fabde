//! Metrics: every counter, gauge and histogram the relay keeps, in one registry.
//!
//! Components receive an `Arc<Metrics>` and update the handles they own; the admin
//! endpoint renders the registry in the Prometheus text format (`/metrics`). Spool gauges
//! are refreshed from [`crate::spool::SpoolStats`] right before each scrape, so they are
//! never stale.
//!
//! Names follow Prometheus conventions: `relay_` prefix, base units (seconds, bytes),
//! counters end in `_total` (added by `prometheus-client`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// A label set with one label, e.g. `[("source", "websocket")]`.
pub type Label = [(&'static str, &'static str); 1];

/// A label set with two labels, e.g. `[("sink", "logscale"), ("class", "2xx")]`.
pub type Labels2 = [(&'static str, &'static str); 2];

/// A histogram family (one histogram per label set, all with the same buckets).
pub type HistogramFamily = Family<Label, Histogram, fn() -> Histogram>;

/// A float counter (seconds spent).
pub type SecondsCounter = Counter<f64, AtomicU64>;

/// A float gauge.
pub type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_buckets() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn batch_event_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

fn batch_byte_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1024.0, 2.0, 14))
}

/// All metric handles. Cloning a handle shares the underlying value.
pub struct Metrics {
    registry: Registry,
    /// Every registered name (with the `relay_` prefix), for the check of docs/operations.md.
    names: Vec<String>,

    pub events_received: Family<Label, Counter>,
    pub events_spooled: Counter,
    pub events_shipped: Family<Label, Counter>,
    pub events_dropped: Family<Label, Counter>,
    pub events_dead_lettered: Family<Label, Counter>,

    pub spool_pending_events: Gauge,
    pub spool_pending_bytes: Gauge,
    pub spool_stored_bytes: Gauge,
    pub spool_disk_bytes: Gauge,
    pub spool_disk_free_bytes: Gauge,
    pub spool_disk_full: Gauge,
    pub spool_failed: Gauge,
    pub spool_last_failure_timestamp: FloatGauge,
    pub spool_oldest_pending_age: FloatGauge,
    pub spool_commits: Counter,
    pub spool_reclaims: Counter,
    pub spool_commit_duration: Histogram,
    pub spool_append_wait: Family<Label, SecondsCounter>,

    pub sink_pending_events: Family<Label, Gauge>,
    pub sink_oldest_pending_age: Family<Label, FloatGauge>,
    pub ship_dead_lettered: Family<Label, Counter>,

    pub ship_requests: Family<Labels2, Counter>,
    pub ship_retries: Family<Label, Counter>,
    pub ship_request_duration: HistogramFamily,
    pub ship_batch_events: HistogramFamily,
    pub ship_batch_bytes: HistogramFamily,
    pub ship_receive_to_ack: HistogramFamily,

    pub ws_connects: Family<Label, Counter>,
    pub ws_disconnects: Family<Labels2, Counter>,
    pub ws_frames: Family<Labels2, Counter>,
    pub events_deduplicated: Counter,
    pub ws_heartbeat_rtt: Histogram,
    pub token_refreshes: Family<Label, Counter>,

    pub ha_leader: Gauge,

    pub webhook_requests: Family<Label, Counter>,
    pub webhook_connections_open: Gauge,
    pub webhook_connections_refused: Counter,
    pub webhook_connections_closed_idle: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("relay");
        let mut names = Vec::new();
        macro_rules! reg {
            ($name:literal, $help:literal, $metric:expr) => {{
                let m = $metric;
                registry.register($name, $help, m.clone());
                names.push(concat!("relay_", $name).to_string());
                m
            }};
        }
        Metrics {
            events_received: reg!("events_received", "Events received, by source (websocket, webhook).", Family::default()),
            events_spooled: reg!("events_spooled", "Events made durable in the spool.", Counter::default()),
            events_shipped: reg!("events_shipped", "Events acknowledged by a destination (LogScale 2xx, Sentinel 204), by sink.", Family::default()),
            events_dropped: reg!("events_dropped", "Events dropped, by reason (spool_full_oldest, spool_full_rejected, disk_full_oldest, disk_full_rejected, spool_error).", Family::default()),
            events_dead_lettered: reg!("events_dead_lettered", "Events moved to the dead-letter area, by reason (rejected, corrupt_block).", Family::default()),

            spool_pending_events: reg!("spool_pending_events", "Events in the spool some destination has not yet acknowledged.", Gauge::default()),
            spool_pending_bytes: reg!("spool_pending_bytes", "Uncompressed bytes of the pending events.", Gauge::default()),
            spool_stored_bytes: reg!("spool_stored_bytes", "Compressed bytes of the spool's blocks (what RELAY_SPOOL_MAX_BYTES caps).", Gauge::default()),
            spool_disk_bytes: reg!("spool_disk_bytes", "Bytes the spool's sled database takes on disk.", Gauge::default()),
            spool_disk_free_bytes: reg!("spool_disk_free_bytes", "Free bytes on the spool's file system (statvfs, as the relay's user).", Gauge::default()),
            spool_disk_full: reg!("spool_disk_full", "1 while free space is below the floor (RELAY_SPOOL_MIN_FREE_BYTES fitted to the volume) and the full policy applies.", Gauge::default()),
            spool_failed: reg!("spool_failed", "1 once a write or fsync of the spool failed: nothing more is acknowledged and the relay exits for its service manager to restart it.", Gauge::default()),
            spool_last_failure_timestamp: reg!("spool_last_failure_timestamp_seconds", "Unix time of the spool's last storage failure, in this run or an earlier one (0: none recorded); the failing run exits at once, so this is what a scrape sees after the restart.", FloatGauge::default()),
            spool_oldest_pending_age: reg!("spool_oldest_pending_age_seconds", "Age of the oldest pending event (0 when none).", FloatGauge::default()),
            spool_commits: reg!("spool_commits", "Group commits (one flushed block each).", Counter::default()),
            spool_reclaims: reg!("spool_reclaims", "Drained block databases replaced because free space fell below the floor (space given back instead of dropping events).", Counter::default()),
            spool_commit_duration: reg!("spool_commit_duration_seconds", "Time to compress, store and flush one block.", latency_buckets()),
            spool_append_wait: reg!("spool_append_wait_seconds", "Time producers waited for room in the spool writer's queue (backpressure), by source.", Family::default()),

            sink_pending_events: reg!("sink_pending_events", "Events in the spool a destination has not yet delivered (or dead-lettered), by sink. Events of a source the destination does not take count until it passes over them.", Family::default()),
            sink_oldest_pending_age: reg!("sink_oldest_pending_age_seconds", "Age of the oldest event a destination has not yet delivered (0 when none), by sink: how far behind it is.", Family::default()),
            ship_dead_lettered: reg!("ship_dead_lettered", "Events a destination refused (400-class, isolated by bisecting) and the relay dead-lettered for it, by sink.", Family::default()),

            ship_requests: reg!("ship_requests", "Ingest requests by sink and outcome class (2xx, 4xx, 5xx, error).", Family::default()),
            ship_retries: reg!("ship_retries", "Ingest requests retried, by sink.", Family::default()),
            ship_request_duration: reg!("ship_request_duration_seconds", "Duration of one ingest request, by sink.", Family::new_with_constructor(latency_buckets as fn() -> Histogram)),
            ship_batch_events: reg!("ship_batch_events", "Events per ingest request, by sink.", Family::new_with_constructor(batch_event_buckets as fn() -> Histogram)),
            ship_batch_bytes: reg!("ship_batch_bytes", "Uncompressed bytes per ingest request, by sink.", Family::new_with_constructor(batch_byte_buckets as fn() -> Histogram)),
            ship_receive_to_ack: reg!("ship_receive_to_ack_seconds", "From receipt of an event to the destination's acknowledgement, for every delivered event, by sink.", Family::new_with_constructor(latency_buckets as fn() -> Histogram)),

            ws_connects: reg!("ws_connects", "WebSocket connections to Zoom that completed build_connection, by subscription.", Family::default()),
            ws_disconnects: reg!("ws_disconnects", "WebSocket disconnects, by subscription and reason.", Family::default()),
            ws_frames: reg!("ws_frames", "WebSocket frames received, by subscription and kind (event, heartbeat, control, malformed).", Family::default()),
            events_deduplicated: reg!("events_deduplicated", "WebSocket events dropped as copies of one another subscription brought first (several subscriptions of the same events).", Counter::default()),
            ws_heartbeat_rtt: reg!("ws_heartbeat_rtt_seconds", "Round trip of Zoom's application heartbeat.", latency_buckets()),
            token_refreshes: reg!("zoom_token_requests", "Zoom OAuth token requests, by result (ok, rejected, error).", Family::default()),

            ha_leader: reg!("ha_leader", "1 while this relay is the leader of its election (RELAY_HA_ETCD_ENDPOINTS), 0 otherwise.", Gauge::default()),

            webhook_requests: reg!("webhook_requests", "Webhook requests, by result.", Family::default()),
            webhook_connections_open: reg!("webhook_connections_open", "Open connections to the webhook endpoint.", Gauge::default()),
            webhook_connections_refused: reg!("webhook_connections_refused", "Connections to the webhook endpoint closed at once because RELAY_WEBHOOK_MAX_CONNECTIONS were open.", Counter::default()),
            webhook_connections_closed_idle: reg!("webhook_connections_closed_idle", "Webhook connections closed after RELAY_WEBHOOK_IDLE_TIMEOUT_SECS without a byte moving.", Counter::default()),
            registry,
            names,
        }
    }

    /// The names of every registered metric (`relay_...`, without the `_total` counters
    /// get when rendered).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Shorthand for a one-label set.
pub fn label(key: &'static str, value: &'static str) -> Label {
    [(key, value)]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// A metric's base name: without labels and without the `_total` counters get.
    fn base(name: &str) -> String {
        let name = name.split('{').next().unwrap_or(name).trim();
        name.strip_suffix("_total").unwrap_or(name).to_string()
    }

    /// The metrics table of docs/operations.md and the registry name the same metrics: a metric added
    /// without documentation, or documented and gone, fails here.
    #[test]
    fn the_docs_list_exactly_the_registered_metrics() {
        let registered: BTreeSet<String> = super::Metrics::new()
            .names()
            .iter()
            .map(|n| base(n))
            .collect();
        let readme = include_str!("../docs/operations.md");
        let section = readme
            .split("\n## Metrics")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("docs/operations.md has a Metrics section");
        let documented: BTreeSet<String> = section
            .lines()
            .filter(|l| l.starts_with("| `relay_"))
            .filter_map(|l| l.split('|').nth(1))
            .flat_map(|cell| cell.split(", ").map(|n| base(n.trim().trim_matches('`'))))
            .collect();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let gone: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty() && gone.is_empty(),
            "docs/operations.md metrics table out of date: not documented {undocumented:?}, documented but not registered {gone:?}"
        );
    }
}
