//! Every metric moves when it must, with the value it must have: the real binary with both
//! sources (WebSocket and webhooks) and both destinations, through a LogScale outage, its
//! recovery, a dropped WebSocket and a burst the spool's writer queue cannot hold at once.
//! The other metrics are checked where their scenario lives (the metrics table of docs/operations.md
//! says which test): dropped and disk-full in `disk_full.rs`/`small_disk.rs`, reclaims in
//! `small_disk.rs`, dead letters in `sentinel.rs`/`shipper_outage.rs`, the failed spool in
//! `spool::room_tests` (the last failure's time in `storage_errors.rs`), the webhook connection
//! gauges in `webhook_flood.rs`.

mod common;

use common::*;
use qss_relay::net::http::HttpClient;
use qss_relay::sim::events::FrameFactory;
use qss_relay::sim::logscale::Mode;
use qss_relay::sim::sentinel::FakeSentinel;
use std::time::Duration;

const SECRET: &str = "metrics-test-secret";
const FRAMES: u64 = 2_000;
const HOOKS: u64 = 100;

/// A metric's value: a counter (with `_total`), a gauge, or a histogram's `_count`/`_sum`.
fn value(text: &str, series: &str) -> f64 {
    metric_value(text, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_moves_with_the_value_it_must_have() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, logscale, mut env) = fakes_and_env(dir.path()).await;
    let sentinel = FakeSentinel::start(false).await.unwrap();
    env.extend(sentinel.env_pairs());
    env.insert("SENTINEL_SOURCES".into(), "webhook,websocket".into());
    env.insert("ZOOM_WEBHOOK_SECRET_TOKEN".into(), SECRET.into());
    env.insert("RELAY_WEBHOOK_ADDR".into(), "127.0.0.1:0".into());
    env.insert("ZOOM_HEARTBEAT_INTERVAL_SECS".into(), "1".into());
    logscale.set_mode(Mode::Status {
        code: 503,
        retry_after: Some(1),
    });
    // A disk that syncs slowly when asked to (200 ms per fdatasync), for the burst below.
    let shim = match common::syscall_shim::build_shim(dir.path()) {
        Ok(s) => s,
        Err(why) => {
            skip_unless_ci(&why);
            return;
        }
    };
    let slow_disk = dir.path().join("slow-syncs-now");
    let relay = Relay::start_with(dir.path(), &env, |cmd| {
        cmd.env("LD_PRELOAD", &shim)
            .env("SLOW_SYNC_TRIGGER", &slow_disk);
    });
    let admin = relay.admin_addr();
    assert!(
        zoom.wait_until(Duration::from_secs(20), |z| z.open_connections == 1)
            .await
    );

    // LogScale down; Sentinel takes everything.
    zoom.send(FRAMES);
    let client = HttpClient::new(None).unwrap();
    let bodies = FrameFactory::webhook();
    for n in 0..HOOKS {
        let (status, _) = post_signed(
            &client,
            relay.webhook_addr(),
            SECRET,
            bodies.frame(1_000_000 + n),
        )
        .await;
        assert_eq!(status, 200);
    }
    assert!(
        sentinel
            .wait_for_distinct(FRAMES + HOOKS, Duration::from_secs(60))
            .await
    );
    assert!(
        eventually(Duration::from_secs(20), || zoom.heartbeat_times().len()
            >= 2)
        .await,
        "heartbeats"
    );
    let total = (FRAMES + HOOKS) as f64;
    let m = metrics_text(admin).await;
    let v = |s: &str| value(&m, s);
    // Received, spooled, the writer's commits.
    assert_eq!(
        v(r#"relay_events_received_total{source="websocket"}"#),
        FRAMES as f64,
        "{m}"
    );
    assert_eq!(
        v(r#"relay_events_received_total{source="webhook"}"#),
        HOOKS as f64
    );
    assert_eq!(v("relay_events_spooled_total"), total);
    let commits = v("relay_spool_commits_total");
    assert!(commits >= 1.0);
    assert_eq!(v("relay_spool_commit_duration_seconds_count"), commits);
    // Held for LogScale: the spool's gauges.
    assert_eq!(v("relay_spool_pending_events"), total);
    assert!(v("relay_spool_pending_bytes") > total * 100.0, "{m}");
    let stored = v("relay_spool_stored_bytes");
    assert!(
        stored > 0.0 && stored < v("relay_spool_pending_bytes"),
        "compressed: {m}"
    );
    assert!(v("relay_spool_disk_bytes") >= stored, "{m}");
    assert!(v("relay_spool_disk_free_bytes") > 0.0, "{m}");
    assert!(v("relay_spool_oldest_pending_age_seconds") > 0.0, "{m}");
    assert_eq!(v(r#"relay_sink_pending_events{sink="logscale"}"#), total);
    assert_eq!(v(r#"relay_sink_pending_events{sink="sentinel"}"#), 0.0);
    // LogScale's refusals and retries; Sentinel's deliveries, batches and latencies.
    assert!(
        v(r#"relay_ship_requests_total{sink="logscale",class="5xx"}"#) >= 1.0,
        "{m}"
    );
    assert!(
        v(r#"relay_ship_retries_total{sink="logscale"}"#) >= 1.0,
        "{m}"
    );
    assert_eq!(v(r#"relay_events_shipped_total{sink="sentinel"}"#), total);
    assert_eq!(v(r#"relay_events_shipped_total{sink="logscale"}"#), 0.0);
    let se_requests = v(r#"relay_ship_requests_total{sink="sentinel",class="2xx"}"#);
    assert!(se_requests >= 1.0, "{m}");
    assert_eq!(
        v(r#"relay_ship_request_duration_seconds_count{sink="sentinel"}"#),
        se_requests
    );
    assert_eq!(v(r#"relay_ship_batch_events_sum{sink="sentinel"}"#), total);
    assert!(v(r#"relay_ship_batch_bytes_sum{sink="sentinel"}"#) > total * 100.0);
    assert_eq!(
        v(r#"relay_ship_receive_to_ack_seconds_count{sink="sentinel"}"#),
        total
    );
    // The WebSocket: one connection, its frames, heartbeats, one token.
    assert_eq!(
        v(r#"relay_ws_connects_total{subscription="sim-subscription"}"#),
        1.0
    );
    assert_eq!(
        v(r#"relay_ws_frames_total{subscription="sim-subscription",kind="event"}"#),
        FRAMES as f64
    );
    assert!(
        v(r#"relay_ws_frames_total{subscription="sim-subscription",kind="heartbeat"}"#) >= 1.0,
        "{m}"
    );
    assert!(v("relay_ws_heartbeat_rtt_seconds_count") >= 1.0, "{m}");
    assert_eq!(v(r#"relay_zoom_token_requests_total{result="ok"}"#), 1.0);
    assert_eq!(
        v(r#"relay_webhook_requests_total{result="accepted"}"#),
        HOOKS as f64
    );

    // LogScale back: it gets everything; the gauges go back to zero.
    logscale.set_mode(Mode::Accept);
    assert!(
        logscale
            .wait_for_distinct(FRAMES + HOOKS, Duration::from_secs(60))
            .await
    );
    assert!(
        eventually(Duration::from_secs(20), || relay
            .inspect()
            .spool
            .pending_events
            == 0)
        .await
    );
    let m = metrics_text(admin).await;
    let v = |s: &str| value(&m, s);
    assert_eq!(
        v(r#"relay_events_shipped_total{sink="logscale"}"#),
        total,
        "{m}"
    );
    assert_eq!(
        v(r#"relay_ship_receive_to_ack_seconds_count{sink="logscale"}"#),
        total
    );
    assert!(v(r#"relay_ship_batch_events_sum{sink="logscale"}"#) >= total);
    assert_eq!(v("relay_spool_pending_events"), 0.0);
    assert_eq!(v("relay_spool_pending_bytes"), 0.0);
    assert_eq!(v("relay_spool_oldest_pending_age_seconds"), 0.0);
    assert_eq!(v(r#"relay_sink_pending_events{sink="logscale"}"#), 0.0);

    // Zoom closes the socket: a disconnect with its reason, and a second connection.
    zoom.close_connections();
    assert!(
        zoom.wait_until(Duration::from_secs(30), |z| z.connections >= 2
            && z.open_connections == 1)
            .await
    );
    let m = metrics_text(admin).await;
    let disconnects: f64 = m
        .lines()
        .filter(|l| l.starts_with("relay_ws_disconnects_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(disconnects, 1.0, "{m}");
    assert_eq!(
        value(
            &m,
            r#"relay_ws_connects_total{subscription="sim-subscription"}"#
        ),
        2.0
    );

    // A burst larger than the writer's 16 MiB queue on a disk that takes 200 ms a commit:
    // the WebSocket reader waits for room, and says how long.
    std::fs::write(&slow_disk, b"").unwrap();
    zoom.send(40_000);
    assert!(
        logscale
            .wait_for_distinct(FRAMES + HOOKS + 40_000, Duration::from_secs(120))
            .await
    );
    let m = metrics_text(admin).await;
    let waited = value(
        &m,
        r#"relay_spool_append_wait_seconds_total{source="websocket"}"#,
    );
    println!("the 40,000-frame burst waited {waited:.3} s for room in the writer's queue");
    assert!(waited > 0.1, "{m}");
    std::fs::remove_file(&slow_disk).unwrap();
    let (ok, log) = relay.terminate();
    assert!(ok, "{log}");
}
