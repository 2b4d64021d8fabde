//! The webhook source with the real `relay` binary: validation, signatures, freshness,
//! size limits, durability before the 200, and kill -9 right after the last 200.

mod common;

use common::*;
use qss_relay::net::http::{Body, HttpClient, Reply};
use qss_relay::sim::events::FrameFactory;
use qss_relay::sim::logscale::{FakeLogScale, Mode, SinkOptions};
use qss_relay::source::signature;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

const SECRET: &str = "webhook-secret-token";

fn env(dir: &std::path::Path, sink: &FakeLogScale) -> BTreeMap<String, String> {
    let mut env = base_env(dir, &sink.base_url());
    env.insert("ZOOM_WEBHOOK_SECRET_TOKEN".into(), SECRET.into());
    env.insert("RELAY_WEBHOOK_ADDR".into(), "127.0.0.1:0".into());
    env.insert("RELAY_WEBHOOK_MAX_BODY_BYTES".into(), "64KiB".into());
    env
}

fn now_secs() -> i64 {
    (qss_relay::time::now_ms() / 1000) as i64
}

async fn post(
    client: &HttpClient,
    addr: SocketAddr,
    body: &[u8],
    headers: &[(&str, String)],
) -> Reply {
    let mut req = hyper::Request::post(format!("http://{addr}/zoom/webhook"))
        .header("content-type", "application/json")
        .header("user-agent", "Zoom Marketplace/1.0a");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(Body::new(bytes::Bytes::copy_from_slice(body)))
        .unwrap();
    client
        .send(req, Duration::from_secs(30))
        .await
        .expect("an answer")
}

fn signed(secret: &str, ts: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = ts.to_string();
    vec![
        (
            "x-zm-signature",
            signature::sign(secret.as_bytes(), &ts, body),
        ),
        ("x-zm-request-timestamp", ts),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_signatures_freshness_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeLogScale::start(TOKEN, SinkOptions::default())
        .await
        .unwrap();
    let relay = Relay::start(dir.path(), &env(dir.path(), &sink));
    let addr = relay.webhook_addr();
    let client = HttpClient::new(None).unwrap();

    // URL validation, exactly as Zoom's sample body.
    let body = br#"{"event":"endpoint.url_validation","event_ts":1654503849680,"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}"#;
    let r = post(&client, addr, body, &[]).await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        v["encryptedToken"],
        signature::url_validation_token(SECRET.as_bytes(), "qgg8vlvZRS6UYooatFL8Aw")
    );

    let event = br#"{"event":"user.signed_in","event_ts":1626230691572,"payload":{"account_id":"A","object":{"id":"u","email":"user@example.com"}}}"#;
    // Forged signature, wrong secret, stale timestamp, no headers: 401, never shipped.
    let mut forged = signed(SECRET, now_secs(), event);
    forged[0].1 = format!("v0={}", "0".repeat(64));
    let refusals = [
        forged,
        signed("not-the-secret", now_secs(), event),
        // Outside the 5-minute window by half a minute, either way (and far outside).
        signed(SECRET, now_secs() - 330, event),
        signed(SECRET, now_secs() + 330, event),
        signed(SECRET, now_secs() - 3600, event),
        vec![],
    ];
    for headers in &refusals {
        let r = post(&client, addr, event, headers).await;
        assert_eq!(r.status, 401, "{headers:?}");
    }
    // Oversized: 413.
    let big = format!(r#"{{"event":"x","pad":"{}"}}"#, "a".repeat(70_000));
    let r = post(
        &client,
        addr,
        big.as_bytes(),
        &signed(SECRET, now_secs(), big.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 413);

    // A valid one is stored, then shipped with the webhook sourcetype.
    let r = post(&client, addr, event, &signed(SECRET, now_secs(), event)).await;
    assert_eq!(r.status, 200);
    assert!(sink.wait_for_distinct(1, Duration::from_secs(20)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = sink.events();
    assert_eq!(
        events.len(),
        1,
        "only the valid event was shipped: {events:?}"
    );
    assert_eq!(events[0]["sourcetype"], "zoom_webhook");
    assert_eq!(events[0]["source"], "zoom_webhook");
    assert_eq!(events[0]["event"]["event"], "user.signed_in");
    assert_eq!(events[0]["time"], serde_json::json!(1626230691.572));
    let report = relay.inspect();
    assert_eq!(
        report.spool.next_seq, 1,
        "refused requests never reached the spool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_posts_during_an_outage_then_kill9_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeLogScale::start(TOKEN, SinkOptions::default())
        .await
        .unwrap();
    sink.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    let env = env(dir.path(), &sink);
    let relay = Relay::start(dir.path(), &env);
    let addr = relay.webhook_addr();
    let client = HttpClient::new(None).unwrap();
    let bodies = FrameFactory::webhook();

    let mut tasks = Vec::new();
    for n in 0..1000u64 {
        let (client, body) = (client.clone(), bodies.frame(n));
        tasks.push(tokio::spawn(async move {
            let r = post(&client, addr, &body, &signed(SECRET, now_secs(), &body)).await;
            (n, r.status.as_u16())
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        let (n, status) = t.await.unwrap();
        assert_eq!(status, 200, "event {n}");
        ok.push(n);
    }
    // kill -9 right after the last 200.
    relay.kill9();

    sink.set_mode(Mode::Accept);
    let relay = Relay::start(dir.path(), &env);
    assert!(
        sink.wait_for_distinct(1000, Duration::from_secs(60)).await,
        "{:?}\n{}",
        sink.stats(),
        relay.log_text()
    );
    let counts = sink.sim_counts();
    let missing: Vec<_> = ok.iter().filter(|n| !counts.contains_key(n)).collect();
    assert!(missing.is_empty(), "answered 200 but lost: {missing:?}");
    // QSS events that came by webhook leave like WebSocket ones.
    let events = sink.events();
    let qss = events
        .iter()
        .find(|e| e["sourcetype"] == "zoom_qss")
        .expect("QSS events among the bodies");
    assert_eq!(qss["source"], "zoom_webhook");
    assert_eq!(qss["event"]["module"], "message");
    assert!(qss["event"]["content"]["event"].is_string());
    println!(
        "delivered {} distinct, {} duplicates",
        sink.stats().distinct,
        sink.stats().duplicates
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_with_reject_new_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeLogScale::start(TOKEN, SinkOptions::default())
        .await
        .unwrap();
    sink.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    let mut env = env(dir.path(), &sink);
    env.insert("RELAY_SPOOL_MAX_BYTES".into(), "1MiB".into());
    env.insert("RELAY_SPOOL_FULL_POLICY".into(), "reject-new".into());
    let relay = Relay::start(dir.path(), &env);
    let addr = relay.webhook_addr();
    let client = HttpClient::new(None).unwrap();
    // Incompressible bodies fill 1 MiB quickly.
    let mut statuses = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for n in 0..200u64 {
        let noise: String = (0..30_000).map(|_| rng.alphanumeric()).collect();
        let body = format!(r#"{{"event":"meeting.started","event_ts":{n},"noise":"{noise}"}}"#);
        let r = post(
            &client,
            addr,
            body.as_bytes(),
            &signed(SECRET, now_secs(), body.as_bytes()),
        )
        .await;
        statuses.push(r.status.as_u16());
    }
    assert!(statuses.contains(&200));
    assert!(statuses.contains(&503), "{statuses:?}");
    let report = relay.inspect();
    let refused = statuses.iter().filter(|s| **s == 503).count() as u64;
    assert_eq!(
        report.spool.dropped_events, refused,
        "every refusal is counted"
    );
    assert_eq!(
        report.spool.pending_events as usize,
        statuses.iter().filter(|s| **s == 200).count()
    );
    // Counted where operators alert, and said in the log, rate-limited.
    let metrics = metrics_text(relay.admin_addr()).await;
    assert_eq!(
        metric_value(
            &metrics,
            "relay_events_dropped_total{reason=\"spool_full_rejected\"}"
        ),
        refused as f64,
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "relay_webhook_requests_total{result=\"spool_full\"}"
        ),
        refused as f64
    );
    let log = relay.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("spool full (RELAY_SPOOL_FULL_POLICY=reject-new)"))
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} spool-full lines for {refused} refusals: logged, at most one per 10 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sources_together() {
    use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeLogScale::start(TOKEN, SinkOptions::default())
        .await
        .unwrap();
    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let mut env = env(dir.path(), &sink);
    env.extend(zoom.env_pairs());
    let relay = Relay::start(dir.path(), &env);
    zoom.send(100);
    let client = HttpClient::new(None).unwrap();
    let body =
        br#"{"event":"user.signed_in","event_ts":1626230691572,"payload":{"object":{"id":"u"}}}"#;
    let r = post(
        &client,
        relay.webhook_addr(),
        body,
        &signed(SECRET, now_secs(), body),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(sink.wait_for_distinct(101, Duration::from_secs(20)).await);
    let events = sink.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e["source"] == "zoom_websocket")
            .count(),
        100
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["source"] == "zoom_webhook")
            .count(),
        1
    );
}
