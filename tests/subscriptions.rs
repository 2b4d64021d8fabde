//! Several subscriptions in one relay (issue #25 §1), against the simulated Zoom in live
//! mode: two subscriptions carry the same events, each in frames with a header of its own;
//! an event emitted while a subscription has no open connection is lost for it. The fake
//! closes the two connections in turn every 3 s while 2,000 events/s stream: every event
//! that reached at least one open connection must be delivered, duplicates at most 0.5%.

mod common;

use common::*;
use qss_relay::sim::logscale::{FakeLogScale, SinkOptions};
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscriptions_closed_in_turn_lose_nothing_and_ship_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let zoom = FakeZoom::start(ZoomOptions {
        subscriptions: vec!["sim-subscription-2".into()],
        live: true,
        ..ZoomOptions::default()
    })
    .await
    .unwrap();
    let sink = FakeLogScale::start(TOKEN, SinkOptions::default())
        .await
        .unwrap();
    let mut env = base_env(dir.path(), &sink.base_url());
    env.extend(zoom.env_pairs());
    assert!(env["ZOOM_WSS_URL"].contains(','), "both subscriptions");
    let relay = Relay::start(dir.path(), &env);
    assert!(
        zoom.wait_until(Duration::from_secs(20), |z| z.open_connections == 2)
            .await,
        "one connection per subscription: {:?}",
        zoom.stats()
    );

    zoom.set_rate(Some(2_000.0));
    let subs = ["sim-subscription", "sim-subscription-2"];
    for round in 0..6 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        zoom.close_subscription(subs[round % 2]);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    zoom.set_rate(None);
    let emitted = zoom.stats().events_queued;
    // The connections write what was emitted to them: wait until they have (a debug
    // relay on a loaded machine can read a whole second behind the stream).
    assert!(
        zoom.wait_until(Duration::from_secs(120), |z| z.live_backlog == 0)
            .await,
        "the connections wrote what they were given: {:?}",
        zoom.stats()
    );
    let reached = zoom.reached();
    // Wait for every event that reached a connection to arrive (or a minute), then compare.
    let settled = eventually(Duration::from_secs(60), || {
        let counts = sink.sim_counts();
        reached.iter().all(|n| counts.contains_key(n))
    })
    .await;
    let counts = sink.sim_counts();
    let missing: Vec<u64> = reached
        .iter()
        .filter(|n| !counts.contains_key(n))
        .copied()
        .collect();
    let delivered = counts.len() as u64;
    let duplicates: u64 = counts
        .values()
        .map(|c| u64::from(c.saturating_sub(1)))
        .sum();
    // Every copy the relay received is counted, spooled or dropped.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m = metrics_text(relay.admin_addr()).await;
    let dropped_copies = metric_value(&m, "relay_events_deduplicated_total");
    println!(
        "{emitted} emitted, {} reached an open connection, {delivered} delivered, {} missing, {duplicates} duplicates ({:.3}%), {dropped_copies} copies dropped by the relay",
        reached.len(),
        missing.len(),
        duplicates as f64 * 100.0 / delivered.max(1) as f64
    );
    assert!(
        settled && missing.is_empty(),
        "{} events reached an open connection and were not delivered, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        relay.log_text()
    );
    assert!(
        reached.len() as u64 >= emitted * 95 / 100,
        "the two subscriptions covered each other's gaps: {} of {emitted}\n{}",
        reached.len(),
        relay.log_text()
    );
    assert!(
        duplicates * 200 <= delivered,
        "duplicates at most 0.5%: {duplicates} of {delivered}"
    );
    // Every event frame received is either spooled or counted as a dropped copy; with
    // both connections up most of the time, many were copies.
    let frames: f64 = subs
        .iter()
        .map(|s| {
            metric_value(
                &m,
                &format!(r#"relay_ws_frames_total{{subscription="{s}",kind="event"}}"#),
            )
        })
        .sum();
    assert_eq!(
        frames,
        metric_value(&m, "relay_events_spooled_total") + dropped_copies,
        "{m}"
    );
    assert!(
        dropped_copies > 1_000.0,
        "copies were dropped: {dropped_copies}"
    );
    let r = relay.inspect();
    assert_eq!(r.websockets.len(), 2, "{:?}", r.websockets);
    assert!(
        r.websockets.iter().all(|w| w.connected),
        "{:?}",
        r.websockets
    );
    let (ok, log) = relay.terminate();
    assert!(ok, "{log}");
}
