//! Two destinations from one spool, against the real binary and the simulated Zoom,
//! LogScale and Microsoft Entra ID + Logs Ingestion: an outage of Sentinel never holds
//! LogScale back, a `kill -9` during it loses nothing for either, records Sentinel does
//! not take (QSS, with the default `SENTINEL_SOURCES=webhook`) are passed over without
//! holding its position, a refused token keeps everything and `inspect` says why, and a
//! row Sentinel refuses is dead-lettered for Sentinel only.

mod common;

use common::*;
use qss_relay::admin::InspectReport;
use qss_relay::net::http::HttpClient;
use qss_relay::ship::status::ShipPhase;
use qss_relay::sim::events::FrameFactory;
use qss_relay::sim::sentinel::{FakeSentinel, SentinelMode};
use std::collections::BTreeMap;
use std::time::Duration;

const SECRET: &str = "sentinel-test-webhook-secret";
/// Webhook events are numbered from here, QSS frames from 0.
const WEBHOOK_BASE: u64 = 1_000_000;

fn destination<'a>(r: &'a InspectReport, name: &str) -> &'a qss_relay::admin::DestinationReport {
    r.destinations
        .iter()
        .find(|d| d.spool.name == name)
        .unwrap_or_else(|| panic!("no destination {name} in {:?}", r.destinations))
}

async fn post_webhooks(relay: &Relay, range: std::ops::Range<u64>) {
    let client = HttpClient::new(None).unwrap();
    let bodies = FrameFactory::webhook();
    for n in range {
        let (status, _) = post_signed(
            &client,
            relay.webhook_addr(),
            SECRET,
            bodies.frame(WEBHOOK_BASE + n),
        )
        .await;
        assert_eq!(status, 200, "webhook {n}:\n{}", relay.log_text());
    }
}

fn env_for(base: BTreeMap<String, String>, sentinel: &FakeSentinel) -> BTreeMap<String, String> {
    let mut env = base;
    env.extend(sentinel.env_pairs());
    env.insert("ZOOM_WEBHOOK_SECRET_TOKEN".into(), SECRET.into());
    env.insert("RELAY_WEBHOOK_ADDR".into(), "127.0.0.1:0".into());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_outage_costs_logscale_nothing_and_sentinel_nothing_but_delay() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, logscale, base) = fakes_and_env(dir.path()).await;
    let sentinel = FakeSentinel::start(true).await.unwrap();
    sentinel.set_mode(SentinelMode::Status {
        code: 503,
        retry_after: Some(1),
    });
    let env = env_for(base, &sentinel);
    let relay = Relay::start(dir.path(), &env);

    const QSS: u64 = 2_000;
    const HOOKS: u64 = 100;
    zoom.send(QSS);
    post_webhooks(&relay, 0..HOOKS).await;
    // LogScale gets everything while Sentinel is down.
    assert!(
        logscale
            .wait_for_distinct(QSS + HOOKS, Duration::from_secs(60))
            .await,
        "LogScale got {:?} during the Sentinel outage:\n{}",
        logscale.stats(),
        relay.log_text()
    );
    assert_eq!(sentinel.stats().distinct, 0);
    assert!(
        sentinel.requests_seen() > 0,
        "the relay kept trying Sentinel"
    );
    let r = relay.inspect();
    let se = destination(&r, "sentinel");
    assert!(se.spool.pending_events >= HOOKS, "{se:?}");
    assert_eq!(se.shipper.as_ref().unwrap().state, ShipPhase::BackingOff);
    assert_eq!(destination(&r, "logscale").spool.pending_events, 0);

    // kill -9 during the outage, restart, Sentinel comes back: it gets every webhook.
    relay.kill9();
    sentinel.set_mode(SentinelMode::Accept);
    let relay = Relay::start(dir.path(), &env);
    post_webhooks(&relay, HOOKS..HOOKS + 10).await;
    zoom.send(500);
    assert!(
        sentinel
            .wait_for_distinct(HOOKS + 10, Duration::from_secs(60))
            .await,
        "Sentinel got {:?}:\n{}",
        sentinel.stats(),
        relay.log_text()
    );
    assert!(
        logscale
            .wait_for_distinct(QSS + HOOKS + 10 + 500, Duration::from_secs(60))
            .await
    );
    let counts = sentinel.sim_counts();
    let missing: Vec<u64> = (0..HOOKS + 10)
        .filter(|n| !counts.contains_key(&(WEBHOOK_BASE + n)))
        .collect();
    assert!(missing.is_empty(), "lost for Sentinel: {missing:?}");
    assert!(
        counts.keys().all(|n| *n >= WEBHOOK_BASE),
        "QSS frames reached Sentinel, which takes webhooks only by default"
    );
    // Sentinel's position passes the QSS records it does not take: nothing is left
    // pending for it once the last frame is in.
    let settled = eventually(Duration::from_secs(20), || {
        let r = relay.inspect();
        destination(&r, "sentinel").spool.pending_events == 0
            && destination(&r, "logscale").spool.pending_events == 0
    })
    .await;
    assert!(settled, "{:#?}", relay.inspect().destinations);
    // QSS frames arriving after the last webhook: Sentinel's position passes them too (a
    // batch of records it does not take is still acknowledged).
    let end_before = relay.inspect().spool.next_seq;
    zoom.send(300);
    let passed = eventually(Duration::from_secs(20), || {
        let r = relay.inspect();
        r.spool.next_seq >= end_before + 300
            && destination(&r, "sentinel").spool.delivered_position == r.spool.next_seq
    })
    .await;
    assert!(passed, "{:#?}", relay.inspect().destinations);
    println!(
        "LogScale {:?}; Sentinel {:?} ({} token requests)",
        logscale.stats(),
        sentinel.stats(),
        sentinel.token_requests()
    );

    let row = sentinel
        .rows()
        .into_iter()
        .find(|r| r["Source"] == "zoom_webhook")
        .expect("a webhook row");
    for column in ["TimeGenerated", "Event", "RelayId", "Payload"] {
        assert!(!row[column].is_null(), "{column} missing in {row}");
    }
    assert!(row["Payload"].is_object(), "{row}");
    assert!(sentinel.last_request_id().is_some_and(|id| id.len() == 36));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_keep_everything_and_a_poison_row_is_sentinels_dead_letter_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_zoom, logscale, base) = fakes_and_env(dir.path()).await;
    let sentinel = FakeSentinel::start(false).await.unwrap();
    sentinel.refuse_tokens(true);
    let env = env_for(base, &sentinel);
    let relay = Relay::start(dir.path(), &env);
    post_webhooks(&relay, 0..20).await;
    assert!(
        logscale
            .wait_for_distinct(20, Duration::from_secs(30))
            .await
    );

    let refused = eventually(Duration::from_secs(20), || {
        let r = relay.inspect();
        destination(&r, "sentinel")
            .shipper
            .as_ref()
            .is_some_and(|s| s.state == ShipPhase::TokenRefused)
    })
    .await;
    assert!(refused, "{:#?}", relay.inspect().destinations);
    let text = command(&env).args(["spool", "inspect"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("AZURE_CLIENT_SECRET") && text.contains("Sentinel"),
        "inspect does not say what to fix:\n{text}"
    );
    assert_eq!(sentinel.stats().distinct, 0);

    // The credentials are fixed (a new secret): everything is delivered, then a poison
    // row is dead-lettered for Sentinel only.
    sentinel.refuse_tokens(false);
    assert!(
        sentinel
            .wait_for_distinct(20, Duration::from_secs(60))
            .await,
        "{:?}\n{}",
        sentinel.stats(),
        relay.log_text()
    );
    sentinel.set_mode(SentinelMode::RejectContaining("POISON-ROW".into()));
    let poison = format!(
        r#"{{"event":"meeting.created","event_ts":{},"payload":{{"account_id":"acc","object":{{"id":1,"topic":"POISON-ROW"}}}}}}"#,
        qss_relay::time::now_ms()
    );
    let client = HttpClient::new(None).unwrap();
    let (status, _) = post_signed(&client, relay.webhook_addr(), SECRET, poison.into()).await;
    assert_eq!(status, 200);
    assert!(
        logscale
            .wait_for_distinct(21, Duration::from_secs(30))
            .await
    );
    let dead = eventually(Duration::from_secs(30), || {
        relay.inspect().spool.dead_letter_events == 1
    })
    .await;
    assert!(dead, "no dead letter:\n{}", relay.log_text());
    let list = command(&env)
        .args(["spool", "dead", "list", "--json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(
        list[0]["destinations"],
        serde_json::json!(["sentinel"]),
        "{list}"
    );
    assert_eq!(sentinel.stats().distinct, 20);
}
