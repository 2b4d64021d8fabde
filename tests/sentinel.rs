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
use qss_relay::sim::logscale::Mode;
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
    // The per-destination gauges say the same: Sentinel behind, LogScale caught up.
    let m = metrics_text(relay.admin_addr()).await;
    let gauge = |series: &str| metric_value(&m, series);
    assert!(
        gauge(r#"relay_sink_pending_events{sink="sentinel"}"#) >= HOOKS as f64
            && gauge(r#"relay_sink_oldest_pending_age_seconds{sink="sentinel"}"#) > 0.0,
        "{m}"
    );
    assert_eq!(
        gauge(r#"relay_sink_pending_events{sink="logscale"}"#),
        0.0,
        "{m}"
    );
    assert!(
        gauge(r#"relay_ship_requests_total{sink="sentinel",class="5xx"}"#) > 0.0,
        "{m}"
    );

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

/// The other way round: LogScale down (503), then refusing its ingest token (401), while
/// Sentinel goes on delivering; LogScale gets everything once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logscale_outage_or_refused_token_costs_sentinel_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_zoom, logscale, base) = fakes_and_env(dir.path()).await;
    let sentinel = FakeSentinel::start(false).await.unwrap();
    let env = env_for(base, &sentinel);
    let relay = Relay::start(dir.path(), &env);
    for (phase, mode, sent) in [
        (
            "LogScale down",
            Mode::Status {
                code: 503,
                retry_after: Some(1),
            },
            0..100,
        ),
        (
            "LogScale refuses its token",
            Mode::Status {
                code: 401,
                retry_after: None,
            },
            100..150,
        ),
    ] {
        logscale.set_mode(mode);
        post_webhooks(&relay, sent.clone()).await;
        assert!(
            sentinel
                .wait_for_distinct(sent.end, Duration::from_secs(30))
                .await,
            "{phase}: Sentinel got {:?}\n{}",
            sentinel.stats(),
            relay.log_text()
        );
        let r = relay.inspect();
        let ls = destination(&r, "logscale");
        assert!(ls.spool.pending_events >= sent.end - 100, "{phase}: {ls:?}");
        assert_eq!(
            destination(&r, "sentinel").spool.pending_events,
            0,
            "{phase}"
        );
    }
    assert_eq!(logscale.stats().distinct, 0);
    let text = command(&env).args(["spool", "inspect"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("LOGSCALE_INGEST_TOKEN"),
        "inspect says what to fix:\n{text}"
    );
    logscale.set_mode(Mode::Accept);
    assert!(
        logscale
            .wait_for_distinct(150, Duration::from_secs(60))
            .await,
        "LogScale back: {:?}",
        logscale.stats()
    );
    let counts = logscale.sim_counts();
    assert!((0..150).all(|n| counts.contains_key(&(WEBHOOK_BASE + n))));
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
    let m = metrics_text(relay.admin_addr()).await;
    assert_eq!(
        metric_value(&m, r#"relay_ship_dead_lettered_total{sink="sentinel"}"#),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, r#"relay_ship_dead_lettered_total{sink="logscale"}"#),
        0.0
    );
}

/// Runs `relay spool ARGS` with `env`; stdout, and stderr when it failed.
fn spool_cmd(env: &BTreeMap<String, String>, args: &[&str]) -> (bool, String, String) {
    let out = command(env).arg("spool").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `peek`, `export` and `dead` with `--sink NAME` show and act on one destination's view:
/// through the running relay and on the stopped spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_commands_take_one_destination_with_sink() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, logscale, base) = fakes_and_env(dir.path()).await;
    let sentinel = FakeSentinel::start(true).await.unwrap();
    sentinel.set_mode(SentinelMode::Status {
        code: 503,
        retry_after: None,
    });
    let env = env_for(base.clone(), &sentinel);
    let relay = Relay::start(dir.path(), &env);
    const HOOKS: u64 = 30;
    zoom.send(200);
    post_webhooks(&relay, 0..HOOKS).await;
    assert!(
        logscale
            .wait_for_distinct(200 + HOOKS, Duration::from_secs(60))
            .await
    );

    // Through the daemon: Sentinel's pending records are the webhooks, as rows.
    let (ok, peek, err) = spool_cmd(
        &env,
        &["peek", "--sink", "sentinel", "-n", "1000", "--json"],
    );
    assert!(ok, "{err}");
    let peeked: Vec<serde_json::Value> = peek
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(peeked.len() as u64, HOOKS, "{peek}");
    assert!(peeked.iter().all(|r| r["source"] == "webhook"), "{peek}");
    let (ok, rows, err) = spool_cmd(&env, &["export", "--sink", "sentinel"]);
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, HOOKS);
    let columns: Vec<&str> = qss_relay::ship::sentinel::record::COLUMNS
        .iter()
        .map(|(c, _)| *c)
        .collect();
    for row in &rows {
        let row = row.as_object().expect("a row is an object");
        assert!(row.keys().all(|k| columns.contains(&k.as_str())), "{row:?}");
        assert_eq!(row["Source"], "zoom_webhook");
        assert!(row["TimeGenerated"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        assert!(row["Payload"].is_object());
    }
    // LogScale has everything: nothing pending for it, though the spool still holds it.
    let (ok, hec, err) = spool_cmd(&env, &["export", "--sink", "logscale"]);
    assert!(ok, "{err}");
    assert_eq!(hec, "", "LogScale has nothing pending");
    let (_, all, _) = spool_cmd(&env, &["export"]);
    assert!(all.lines().count() as u64 >= HOOKS);

    // A poison row: dead-lettered for Sentinel, listed under it only.
    sentinel.set_mode(SentinelMode::RejectContaining("POISON-ROW".into()));
    assert!(
        sentinel
            .wait_for_distinct(HOOKS, Duration::from_secs(60))
            .await
    );
    let poison = format!(
        r#"{{"event":"meeting.created","event_ts":{},"payload":{{"account_id":"acc","object":{{"id":1,"topic":"POISON-ROW"}}}}}}"#,
        qss_relay::time::now_ms()
    );
    let client = HttpClient::new(None).unwrap();
    let (status, _) = post_signed(&client, relay.webhook_addr(), SECRET, poison.into()).await;
    assert_eq!(status, 200);
    let dead = eventually(Duration::from_secs(30), || {
        relay.inspect().spool.dead_letter_events == 1
    })
    .await;
    assert!(dead, "no dead letter:\n{}", relay.log_text());
    let list = |sink: &str| -> serde_json::Value {
        let (ok, out, err) = spool_cmd(&env, &["dead", "list", "--json", "--sink", sink]);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    assert_eq!(list("logscale"), serde_json::json!([]));
    assert_eq!(list("sentinel").as_array().unwrap().len(), 1);
    let ls_events = logscale.stats().events;

    // Retried for Sentinel only: Sentinel gets it, LogScale (which has it) does not again.
    sentinel.set_mode(SentinelMode::Accept);
    let (ok, out, err) = spool_cmd(
        &env,
        &["dead", "retry", "--all", "--yes", "--sink", "sentinel"],
    );
    assert!(ok && out.contains("retried 1"), "{out}{err}");
    assert!(
        sentinel
            .wait_for_distinct(HOOKS + 1, Duration::from_secs(30))
            .await,
        "{:?}",
        sentinel.stats()
    );
    assert!(sentinel
        .rows()
        .iter()
        .any(|r| r["Payload"]["object"]["topic"] == "POISON-ROW"));
    let drained = eventually(Duration::from_secs(20), || {
        let r = relay.inspect();
        destination(&r, "logscale").spool.pending_events == 0
            && destination(&r, "sentinel").spool.pending_events == 0
    })
    .await;
    assert!(drained, "{:#?}", relay.inspect().destinations);
    assert_eq!(
        logscale.stats().events,
        ls_events,
        "the retry for Sentinel went to LogScale too"
    );
    assert_eq!(list("sentinel"), serde_json::json!([]));

    // The stopped spool: the same answers, and a destination that is not configured is
    // named as such.
    let (clean, log) = relay.terminate();
    assert!(clean, "{log}");
    let (ok, out, err) = spool_cmd(&env, &["peek", "--sink", "sentinel"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "nothing pending");
    let (ok, _, err) = spool_cmd(&base, &["export", "--sink", "sentinel"]);
    assert!(!ok);
    assert!(
        err.contains("no sentinel destination is configured"),
        "{err}"
    );
    let (ok, _, err) = spool_cmd(&env, &["peek", "--sink", "splunk"]);
    assert!(!ok && err.contains("logscale, sentinel"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_size_limit_is_split_and_every_row_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let (_zoom, logscale, base) = fakes_and_env(dir.path()).await;
    let sentinel = FakeSentinel::start(false).await.unwrap();
    // Sentinel is down while a backlog forms, so that the first request after it is back
    // is a large one; it then takes no more than 16 kB a request, while the relay may
    // send up to 64 kB.
    sentinel.set_mode(SentinelMode::Status {
        code: 503,
        retry_after: Some(1),
    });
    const LIMIT: usize = 16_000;
    const CONFIGURED: usize = 64_000;
    sentinel.set_max_body(LIMIT);
    let mut env = env_for(base, &sentinel);
    env.insert("SENTINEL_MAX_BODY_BYTES".into(), CONFIGURED.to_string());
    let relay = Relay::start(dir.path(), &env);
    const HOOKS: u64 = 300;
    post_webhooks(&relay, 0..HOOKS).await;
    assert!(
        logscale
            .wait_for_distinct(HOOKS, Duration::from_secs(30))
            .await
    );
    sentinel.set_mode(SentinelMode::Accept);
    assert!(
        sentinel
            .wait_for_distinct(HOOKS, Duration::from_secs(60))
            .await,
        "{:?}\n{}",
        sentinel.stats(),
        relay.log_text()
    );
    let answers = sentinel.answers();
    let too_large: Vec<_> = answers.iter().filter(|a| a.status == 413).collect();
    assert!(
        !too_large.is_empty(),
        "no request was over the limit: {answers:?}"
    );
    assert!(
        answers.iter().all(|a| a.body_bytes <= CONFIGURED),
        "a request over SENTINEL_MAX_BODY_BYTES: {answers:?}"
    );
    assert!(answers
        .iter()
        .filter(|a| a.status == 204)
        .all(|a| a.body_bytes <= LIMIT));
    assert_eq!(relay.inspect().spool.dead_letter_events, 0);
    assert!(
        relay.log_text().contains("too large (HTTP 413"),
        "the 413 was not taken for what it is"
    );
    println!(
        "{} requests, {} answered 413, {} rows in the largest accepted",
        answers.len(),
        too_large.len(),
        answers
            .iter()
            .filter(|a| a.status == 204)
            .map(|a| a.rows)
            .max()
            .unwrap_or(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_from_a_429_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let (_zoom, _logscale, base) = fakes_and_env(dir.path()).await;
    let sentinel = FakeSentinel::start(false).await.unwrap();
    const WAIT_SECS: u64 = 2;
    sentinel.set_mode(SentinelMode::Status {
        code: 429,
        retry_after: Some(WAIT_SECS),
    });
    let mut env = env_for(base, &sentinel);
    env.insert("RELAY_SHIP_CONCURRENCY".into(), "1".into());
    let relay = Relay::start(dir.path(), &env);
    post_webhooks(&relay, 0..1).await;
    // Without Retry-After the first retries would come after at most 0.5 s and 1 s.
    assert!(
        eventually(Duration::from_secs(30), || sentinel.answers().len() >= 4).await,
        "{:?}",
        sentinel.answers()
    );
    let answers = sentinel.answers();
    for pair in answers.windows(2).take(3) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(WAIT_SECS * 1000 - 100),
            "retried after {gap:?} although Sentinel said Retry-After: {WAIT_SECS}: {answers:?}"
        );
    }
    let r = relay.inspect();
    let se = destination(&r, "sentinel").shipper.as_ref().unwrap();
    assert!(
        se.last_error
            .as_ref()
            .is_some_and(|e| e.status == Some(429)),
        "{se:?}"
    );
    sentinel.set_mode(SentinelMode::Accept);
    assert!(sentinel.wait_for_distinct(1, Duration::from_secs(30)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_before_they_expire_and_after_a_401_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (_zoom, logscale, base) = fakes_and_env(dir.path()).await;
    let sentinel = FakeSentinel::start(false).await.unwrap();
    // Tokens live 4 s: the relay renews them at 2 s.
    sentinel.set_token_lifetime(Duration::from_secs(4));
    let env = env_for(base, &sentinel);
    let relay = Relay::start(dir.path(), &env);
    let mut sent = 0;
    let started = std::time::Instant::now();
    let renewed = {
        loop {
            post_webhooks(&relay, sent..sent + 10).await;
            sent += 10;
            tokio::time::sleep(Duration::from_millis(300)).await;
            if sentinel.token_requests() >= 3 || started.elapsed() > Duration::from_secs(30) {
                break sentinel.token_requests() >= 3;
            }
        }
    };
    assert!(renewed, "tokens requested: {}", sentinel.token_requests());
    // At most one token per renewal period (half the 4 s life) and one to start: not a
    // token per request (there were one or more requests every 300 ms).
    let bound = started.elapsed().as_secs() / 2 + 2;
    assert!(
        sentinel.token_requests() <= bound,
        "{} token requests in {:?}: at most {bound}",
        sentinel.token_requests(),
        started.elapsed()
    );
    assert!(
        sentinel
            .wait_for_distinct(sent, Duration::from_secs(30))
            .await,
        "{:?}",
        sentinel.stats()
    );
    // Renewed early, never used expired: no 401 so far.
    assert!(
        sentinel.answers().iter().all(|a| a.status == 204),
        "{:?}",
        sentinel.answers()
    );

    // Azure revokes the token early: the relay is answered 401, fetches a new one, and
    // delivers.
    sentinel.set_token_lifetime(Duration::from_secs(3600));
    sentinel.expire_tokens();
    post_webhooks(&relay, sent..sent + 20).await;
    sent += 20;
    assert!(
        sentinel
            .wait_for_distinct(sent, Duration::from_secs(30))
            .await,
        "{:?}\n{}",
        sentinel.stats(),
        relay.log_text()
    );
    assert!(
        sentinel.answers().iter().any(|a| a.status == 401),
        "the expired token was never refused: {:?}",
        sentinel.answers()
    );
    assert!(
        logscale
            .wait_for_distinct(sent, Duration::from_secs(30))
            .await
    );
    assert_eq!(relay.inspect().spool.dead_letter_events, 0);
    let log = relay.log_text();
    assert!(!log.contains("sim-entra-"), "a token reached the log");
    assert!(
        !log.contains("sim-azure-client-secret"),
        "the secret reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_both_destinations_stream_loses_nothing_for_either() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, logscale, base) = fakes_and_env(dir.path()).await;
    let sentinel = FakeSentinel::start(false).await.unwrap();
    let mut env = env_for(base, &sentinel);
    env.insert("SENTINEL_SOURCES".into(), "webhook,websocket".into());
    let relay = Relay::start(dir.path(), &env);
    const QSS: u64 = 40_000;
    const HOOKS: u64 = 200;
    let total = QSS + HOOKS;
    zoom.send(QSS);
    post_webhooks(&relay, 0..HOOKS).await;
    // Killed mid-stream: both have some, neither has all (else this is a plain restart).
    let midway = eventually(Duration::from_secs(30), || {
        sentinel.stats().distinct > 1_000 && logscale.stats().distinct > 1_000
    })
    .await;
    assert!(midway, "{:?} {:?}", sentinel.stats(), logscale.stats());
    relay.kill9();
    let at_kill = (logscale.stats().distinct, sentinel.stats().distinct);
    assert!(
        at_kill.0 < total && at_kill.1 < total,
        "the kill came after everything was delivered: {at_kill:?} of {total}"
    );
    let relay = Relay::start(dir.path(), &env);
    for (name, ok) in [
        (
            "LogScale",
            logscale
                .wait_for_distinct(total, Duration::from_secs(90))
                .await,
        ),
        (
            "Sentinel",
            sentinel
                .wait_for_distinct(total, Duration::from_secs(90))
                .await,
        ),
    ] {
        assert!(
            ok,
            "{name} short: LogScale {:?}, Sentinel {:?}\n{}",
            logscale.stats(),
            sentinel.stats(),
            relay.log_text()
        );
    }
    let counts = sentinel.sim_counts();
    let lost: Vec<u64> = (0..QSS)
        .chain((0..HOOKS).map(|n| WEBHOOK_BASE + n))
        .filter(|n| !counts.contains_key(n))
        .collect();
    assert!(
        lost.is_empty(),
        "lost for Sentinel: {} e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    println!(
        "at the kill: LogScale {} Sentinel {}; after: LogScale {:?}, Sentinel {:?}",
        at_kill.0,
        at_kill.1,
        logscale.stats(),
        sentinel.stats()
    );
}

/// A spool written by the version before Sentinel (commit fb9eb9d): 100 webhooks
/// delivered to LogScale, then LogScale down and 150 webhooks (100..250) and 300 QSS
/// frames (0..300) left pending; stopped with SIGTERM. Made by
/// `make_the_spool_of_the_version_before_sentinel` below.
const OLD_SPOOL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/spool-before-sentinel"
);

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_of_the_version_before_sentinel_opens_and_drains_to_both() {
    let dir = tempfile::tempdir().unwrap();
    let (_zoom, logscale, base) = fakes_and_env(dir.path()).await;
    copy_dir(std::path::Path::new(OLD_SPOOL), &dir.path().join("spool"));
    let sentinel = FakeSentinel::start(false).await.unwrap();
    let env = env_for(base, &sentinel);
    let relay = Relay::start(dir.path(), &env);
    // LogScale resumes where the old version stopped; Sentinel, new to this spool, starts
    // at the oldest pending event, so it gets at least the webhooks LogScale had not.
    assert!(
        logscale
            .wait_for_distinct(450, Duration::from_secs(60))
            .await,
        "{:?}\n{}",
        logscale.stats(),
        relay.log_text()
    );
    assert!(
        sentinel
            .wait_for_distinct(150, Duration::from_secs(60))
            .await,
        "{:?}\n{}",
        sentinel.stats(),
        relay.log_text()
    );
    let at_logscale = logscale.sim_counts();
    let at_sentinel = sentinel.sim_counts();
    let pending_webhooks = (100..250).map(|n| WEBHOOK_BASE + n);
    let lost_logscale: Vec<u64> = (0..300)
        .chain(pending_webhooks.clone())
        .filter(|n| !at_logscale.contains_key(n))
        .collect();
    assert!(
        lost_logscale.is_empty(),
        "lost for LogScale: {lost_logscale:?}"
    );
    let lost_sentinel: Vec<u64> = pending_webhooks
        .filter(|n| !at_sentinel.contains_key(n))
        .collect();
    assert!(
        lost_sentinel.is_empty(),
        "lost for Sentinel: {lost_sentinel:?}"
    );
    // What LogScale had taken before the upgrade is not sent to it again (all but what
    // shared a block with the pending ones is deleted).
    let resent = (0..100)
        .filter(|n| at_logscale.contains_key(&(WEBHOOK_BASE + n)))
        .count();
    assert_eq!(
        resent, 0,
        "LogScale resumes at its own position: nothing it had is sent again"
    );
    let log = relay.log_text();
    assert!(
        log.contains("new destination: it starts at the oldest pending event"),
        "{log}"
    );
    let settled = eventually(Duration::from_secs(20), || {
        relay
            .inspect()
            .destinations
            .iter()
            .all(|d| d.spool.pending_events == 0)
    })
    .await;
    assert!(settled, "{:#?}", relay.inspect().destinations);
    println!(
        "old spool drained: LogScale {:?} ({resent} of the 100 delivered before sent again), Sentinel {:?}",
        logscale.stats(),
        sentinel.stats()
    );
}

/// Writes [`OLD_SPOOL`] with the `relay` of the version before Sentinel:
/// `git worktree add /tmp/old fb9eb9d && (cd /tmp/old && cargo build --release)`, then
/// `OLD_RELAY=/tmp/old/target/release/relay cargo test --test sentinel -- --ignored make_the_spool`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OLD_RELAY, a build of the version before Sentinel"]
async fn make_the_spool_of_the_version_before_sentinel() {
    let old = std::env::var("OLD_RELAY").expect("OLD_RELAY=path to the old relay");
    let dir = tempfile::tempdir().unwrap();
    let (zoom, logscale, base) = fakes_and_env(dir.path()).await;
    let mut env = base;
    env.insert("ZOOM_WEBHOOK_SECRET_TOKEN".into(), SECRET.into());
    env.insert("RELAY_WEBHOOK_ADDR".into(), "127.0.0.1:0".into());
    let relay = Relay::start_program(&old, dir.path(), &env, |_| {});
    post_webhooks(&relay, 0..100).await;
    assert!(
        logscale
            .wait_for_distinct(100, Duration::from_secs(30))
            .await
    );
    logscale.set_mode(qss_relay::sim::logscale::Mode::Status {
        code: 503,
        retry_after: None,
    });
    post_webhooks(&relay, 100..250).await;
    zoom.send(300);
    let spooled = eventually(Duration::from_secs(30), || {
        std::process::Command::new(&old)
            .args(["spool", "inspect", "--json"])
            .env("RELAY_SPOOL_DIR", &env["RELAY_SPOOL_DIR"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v["pending_events"].as_u64())
            == Some(450)
    })
    .await;
    assert!(spooled, "{}", relay.log_text());
    let (clean, log) = relay.terminate();
    assert!(clean, "{log}");
    assert_eq!(logscale.stats().distinct, 100);
    let spool = dir.path().join("spool");
    // The runtime note and the 16 MiB emergency reserve are made anew at each start.
    let _ = std::fs::remove_file(spool.join("relay.json"));
    let _ = std::fs::remove_file(spool.join("reserve.ballast"));
    let _ = std::fs::remove_dir_all(OLD_SPOOL);
    copy_dir(&spool, std::path::Path::new(OLD_SPOOL));
}

/// The `STATUS=` line systemd shows names every destination, not only the first: read from
/// the relay's own notifications on a `NOTIFY_SOCKET` the test listens on, as systemd does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_status_line_names_every_destination() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, logscale, base) = fakes_and_env(dir.path()).await;
    let sentinel = FakeSentinel::start(false).await.unwrap();
    let env = env_for(base, &sentinel);
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let relay = Relay::start_with(dir.path(), &env, |cmd| {
        cmd.env("NOTIFY_SOCKET", &socket_path);
    });
    zoom.send(100);
    assert!(
        logscale
            .wait_for_distinct(100, Duration::from_secs(30))
            .await
    );
    let mut buf = [0u8; 4096];
    let mut status = None;
    for _ in 0..20 {
        let n = socket.recv(&mut buf).expect("a notification");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if let Some(line) = text.lines().find_map(|l| l.strip_prefix("STATUS=pending")) {
            if line.contains("100 delivered") {
                status = Some(line.to_string());
                break;
            }
        }
    }
    let status = status
        .unwrap_or_else(|| panic!("no STATUS line with the deliveries:\n{}", relay.log_text()));
    assert!(
        status.contains("logscale ") && status.contains("sentinel "),
        "STATUS names every destination: {status}"
    );
}
