//! Delivery under failure, with the real `relay` binary: LogScale down, kill -9 during the
//! outage, restart, recovery; poisoned events; oversized requests; refused tokens;
//! hanging and dropped connections.

mod common;

use common::*;
use qss_relay::ship::status::ShipPhase;
use qss_relay::sim::logscale::{FakeLogScale, Mode, SinkOptions};
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use std::time::Duration;

async fn fakes() -> (FakeZoom, FakeLogScale) {
    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let sink = FakeLogScale::start(TOKEN, SinkOptions::default())
        .await
        .unwrap();
    (zoom, sink)
}

fn env_for(
    dir: &std::path::Path,
    zoom: &FakeZoom,
    sink: &FakeLogScale,
) -> std::collections::BTreeMap<String, String> {
    let mut env = base_env(dir, &sink.base_url());
    env.extend(zoom.env_pairs());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_then_kill9_then_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink) = fakes().await;
    let env = env_for(dir.path(), &zoom, &sink);
    let relay = Relay::start(dir.path(), &env);

    // Some events go through while LogScale is up.
    zoom.send(2_000);
    assert!(
        sink.wait_for_distinct(2_000, Duration::from_secs(30)).await,
        "first 2000 delivered"
    );

    // LogScale goes down; events pile up in the spool.
    sink.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    zoom.send(8_000);
    assert!(
        zoom.wait_until(Duration::from_secs(30), |s| s.events_sent == 10_000)
            .await
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            let r = relay.inspect();
            r.spool.pending_events == 8_000 && r.last_ship_error.is_some()
        })
        .await,
        "the 8000 events of the outage wait in the spool: {:?}",
        relay.inspect()
    );
    let report = relay.inspect();
    assert_eq!(report.read_from, qss_relay::admin::ReadFrom::Daemon);
    let ws = report
        .websockets
        .first()
        .expect("the WebSocket source is shown");
    assert!(ws.connected && ws.events_received == 10_000, "{ws:?}");
    let err = report.last_ship_error.expect("the 503 is shown");
    assert_eq!(err.status, Some(503));
    assert!(err.body_excerpt.unwrap().contains("failing on purpose"));
    assert!(report.spool.oldest_pending_age_secs > 0.0);
    // What operators alert on says the same.
    let m = metrics_text(relay.admin_addr()).await;
    assert_eq!(
        metric_value(&m, "relay_spool_pending_events"),
        8_000.0,
        "{m}"
    );
    assert!(metric_value(&m, "relay_spool_oldest_pending_age_seconds") > 0.0);
    assert!(
        metric_value(
            &m,
            "relay_ship_requests_total{sink=\"logscale\",class=\"5xx\"}"
        ) >= 1.0
    );
    assert!(
        metric_value(
            &m,
            "relay_ship_requests_total{sink=\"logscale\",class=\"2xx\"}"
        ) >= 1.0
    );
    assert!(metric_value(&m, "relay_ship_retries_total{sink=\"logscale\"}") >= 1.0);

    // kill -9 in the middle of the outage.
    relay.kill9();
    zoom.close_connections();

    // Restart; LogScale comes back; everything arrives.
    sink.set_mode(Mode::Accept);
    let relay = Relay::start(dir.path(), &env);
    zoom.send(1_000);
    assert!(
        sink.wait_for_distinct(11_000, Duration::from_secs(60))
            .await,
        "all 11000 delivered, got {:?}\n{}",
        sink.stats(),
        relay.log_text()
    );
    let counts = sink.sim_counts();
    let missing: Vec<u64> = (0..11_000).filter(|n| !counts.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "lost events: {:?}",
        &missing[..missing.len().min(20)]
    );
    let stats = sink.stats();
    println!(
        "delivered {} distinct, {} duplicates",
        stats.distinct, stats.duplicates
    );
    assert!(
        eventually(Duration::from_secs(10), || relay
            .inspect()
            .spool
            .pending_events
            == 0)
        .await
    );
    let m = metrics_text(relay.admin_addr()).await;
    assert_eq!(metric_value(&m, "relay_spool_pending_events"), 0.0, "{m}");
    assert_eq!(
        metric_value(&m, "relay_spool_oldest_pending_age_seconds"),
        0.0
    );
    assert!(
        !m.contains("relay_events_dropped_total{"),
        "nothing dropped: {m}"
    );
    let (ok, log) = relay.terminate();
    assert!(ok, "SIGTERM exits 0:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_event_is_dead_lettered_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink) = fakes().await;
    let mut env = env_for(dir.path(), &zoom, &sink);
    env.insert("RELAY_BATCH_TIMEOUT_MS".into(), "300".into());
    // Event number 1234 carries event_ts 1700000001234: LogScale refuses any request holding it.
    sink.set_mode(Mode::RejectContaining("1700000001234".into()));
    let relay = Relay::start(dir.path(), &env);
    zoom.send(3_000);
    assert!(
        sink.wait_for_distinct(2_999, Duration::from_secs(60)).await,
        "{:?}",
        sink.stats()
    );
    let counts = sink.sim_counts();
    assert!(!counts.contains_key(&1234));
    assert_eq!((0..3_000).filter(|n| !counts.contains_key(n)).count(), 1);
    assert!(
        eventually(Duration::from_secs(10), || relay
            .inspect()
            .spool
            .dead_letter_events
            == 1)
        .await
    );
    let m = metrics_text(relay.admin_addr()).await;
    assert_eq!(
        metric_value(&m, "relay_events_dead_lettered_total{reason=\"rejected\"}"),
        1.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "relay_ship_requests_total{sink=\"logscale\",class=\"4xx\"}"
        ) >= 1.0
    );
    assert!(
        metric_value(
            &m,
            "relay_ship_requests_total{sink=\"logscale\",class=\"2xx\"}"
        ) >= 1.0
    );

    let out = command(&env)
        .args(["spool", "dead", "list", "--json"])
        .output()
        .unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert!(
        list[0]["reason"].as_str().unwrap().contains("HTTP 400"),
        "{list:?}"
    );
    let id = list[0]["id"].as_str().unwrap().to_string();
    let out = command(&env)
        .args(["spool", "dead", "show", &id])
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(shown["json"]["content"]
        .as_str()
        .unwrap()
        .contains("1700000001234"));

    // Retry after LogScale is fixed: the event arrives.
    sink.set_mode(Mode::Accept);
    let out = command(&env)
        .args(["spool", "dead", "retry", "--all", "--yes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        eventually(Duration::from_secs(20), || sink
            .sim_counts()
            .contains_key(&1234))
        .await
    );
    assert_eq!(relay.inspect().spool.dead_letter_events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_splits_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink) = fakes().await;
    let mut env = env_for(dir.path(), &zoom, &sink);
    env.insert("RELAY_BATCH_TIMEOUT_MS".into(), "1000".into());
    sink.set_mode(Mode::MaxEvents(100));
    let _relay = Relay::start(dir.path(), &env);
    zoom.send(2_000);
    assert!(
        sink.wait_for_distinct(2_000, Duration::from_secs(60)).await,
        "{:?}",
        sink.stats()
    );
    assert_eq!(sink.stats().duplicates, 0);
    assert!(
        sink.requests_seen() > 20,
        "requests were split: {}",
        sink.requests_seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_drops_nothing_and_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink) = fakes().await;
    let mut env = env_for(dir.path(), &zoom, &sink);
    env.insert("LOGSCALE_INGEST_TOKEN".into(), "wrong-token".into());
    let relay = Relay::start(dir.path(), &env);
    zoom.send(500);
    assert!(
        eventually(Duration::from_secs(20), || {
            let r = relay.inspect();
            r.spool.pending_events == 500
                && r.shipper
                    .as_ref()
                    .is_some_and(|s| s.state == ShipPhase::TokenRefused)
        })
        .await
    );
    let out = command(&env).args(["spool", "inspect"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("refuses the ingest token"), "{text}");
    assert!(
        !relay.log_text().contains("wrong-token"),
        "the token never reaches the logs"
    );
    let (ok, _) = relay.terminate();
    assert!(ok);

    // A new token and a restart drain the backlog.
    env.insert("LOGSCALE_INGEST_TOKEN".into(), TOKEN.into());
    let _relay = Relay::start(dir.path(), &env);
    assert!(sink.wait_for_distinct(500, Duration::from_secs(30)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_hangs_and_broken_connections_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink) = fakes().await;
    let mut env = env_for(dir.path(), &zoom, &sink);
    env.insert("RELAY_SHIP_TIMEOUT_SECS".into(), "1".into());
    env.insert("LOGSCALE_COMPRESSION".into(), "zstd".into());
    let relay = Relay::start(dir.path(), &env);
    for (i, mode) in [
        Mode::Status {
            code: 429,
            retry_after: Some(1),
        },
        Mode::Hang,
        Mode::Close,
        Mode::Status {
            code: 500,
            retry_after: None,
        },
    ]
    .into_iter()
    .enumerate()
    {
        sink.set_mode(mode.clone());
        zoom.send(100);
        let before = sink.requests_seen();
        assert!(
            eventually(Duration::from_secs(10), || sink.requests_seen()
                >= before + 2)
            .await,
            "retried under {mode:?}"
        );
        sink.set_mode(Mode::Accept);
        let want = 100 * (i as u64 + 1);
        assert!(
            sink.wait_for_distinct(want, Duration::from_secs(60)).await,
            "after {mode:?}: {:?}\n{}",
            sink.stats(),
            relay.log_text()
        );
    }
    let metrics = metrics_text(relay.admin_addr()).await;
    assert!(
        metric_value(&metrics, "relay_ship_retries_total{sink=\"logscale\"}") > 0.0,
        "{metrics}"
    );
}

/// `Retry-After` is honoured, in seconds and as an HTTP date: after the answer, no request
/// reaches LogScale before the time it named, and delivery resumes after it. Both times
/// are taken at the fake (when the refused request and the next one arrived), so a slow
/// test process cannot widen or narrow the window; one request in flight at a time, so
/// none was already on its way when the answer came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_in_seconds_or_as_a_date_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink) = fakes().await;
    let mut env = env_for(dir.path(), &zoom, &sink);
    env.insert("RELAY_SHIP_CONCURRENCY".into(), "1".into());
    let relay = Relay::start(dir.path(), &env);
    zoom.send(100);
    assert!(sink.wait_for_distinct(100, Duration::from_secs(30)).await);

    for (round, (mode, wait)) in [
        (
            Mode::Status {
                code: 429,
                retry_after: Some(4),
            },
            Duration::from_secs(4),
        ),
        (
            Mode::StatusUntil { code: 503, secs: 5 },
            // An HTTP date has whole seconds: the wait is between 4 and 5 s.
            Duration::from_secs(4),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        sink.set_mode(mode.clone());
        let before = sink.answers().len();
        zoom.send(100);
        // The refused request, then the next one (refused again or not): timed at the fake.
        assert!(
            eventually(Duration::from_secs(30), || sink.answers().len()
                >= before + 2)
            .await,
            "{mode:?}: a retry came: {:?}",
            sink.answers()
        );
        let answers = sink.answers();
        let (refused_at, status) = answers[before];
        assert!(status == 429 || status == 503, "{mode:?}: {answers:?}");
        let gap = answers[before + 1].0 - refused_at;
        assert!(
            gap >= wait,
            "{mode:?}: the next request came {gap:?} after the refused one, before its Retry-After"
        );
        sink.set_mode(Mode::Accept);
        let want = 100 * (round as u64 + 2);
        assert!(
            sink.wait_for_distinct(want, Duration::from_secs(30)).await,
            "{mode:?}: delivery resumes after the wait: {:?}\n{}",
            sink.stats(),
            relay.log_text()
        );
    }
}

/// A re-sent event keeps its `relay_id`: what makes de-duplication at query time work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_again_after_a_restart_keeps_its_relay_id() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink) = fakes().await;
    let env = env_for(dir.path(), &zoom, &sink);
    // LogScale takes the events but never answers: the relay must send them again.
    sink.set_mode(Mode::Hang);
    let relay = Relay::start(dir.path(), &env);
    zoom.send(50);
    assert!(
        eventually(Duration::from_secs(20), || sink.requests_seen() >= 1).await,
        "the first attempt reached LogScale"
    );
    let first_ids = {
        // Hang mode keeps nothing: ask the spool what it will send instead.
        let out = command(&env).args(["spool", "export"]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["time"].as_f64().unwrap().to_string(),
                    v["fields"]["relay_id"].as_str().unwrap().to_string(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(first_ids.len(), 50);
    relay.kill9();
    zoom.close_connections();
    sink.set_mode(Mode::Accept);
    let _relay = Relay::start(dir.path(), &env);
    assert!(sink.wait_for_distinct(50, Duration::from_secs(30)).await);
    let delivered: std::collections::BTreeMap<String, String> = sink
        .events()
        .iter()
        .map(|e| {
            (
                e["time"].as_f64().unwrap().to_string(),
                e["fields"]["relay_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        delivered, first_ids,
        "the same events carry the same relay_id after the restart"
    );
}
