//! Zoom's `Authorization` header never leaves the host: the real relay at `RUST_LOG=trace`
//! receives Zoom's sample frame with its full `header` (and a webhook carrying an
//! `authorization` request header), ships to the simulated LogScale and Sentinel, and the
//! credential's bytes appear in no request either received, in no `relay spool` output
//! (export as HEC, as Sentinel rows and raw, peek, dead show) and in no log line.
//! `--unredacted` shows it: the same checks would see a leak.

mod common;

use common::golden::{frame_with_header, SAMPLE_CREDENTIAL};
use common::*;
use qss_relay::net::http::{Body, HttpClient};
use qss_relay::sim::logscale::Mode;
use qss_relay::sim::sentinel::{FakeSentinel, SentinelMode};
use std::collections::BTreeMap;
use std::time::Duration;

const SECRET: &str = "redaction-test-webhook-secret";
/// A webhook's `authorization` request header (Zoom sends one when the app has a token).
const WEBHOOK_CREDENTIAL: &str = "Bearer webhook-credential-0000";

fn spool_cmd(env: &BTreeMap<String, String>, args: &[&str]) -> String {
    let out = command(env).arg("spool").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "relay spool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A signed webhook with an `authorization` request header.
async fn post_webhook_with_authorization(relay: &Relay) {
    let body = bytes::Bytes::from_static(
        br#"{"event":"user.signed_in","event_ts":1700000000000,"payload":{"account_id":"A","object":{"id":"u1"}}}"#,
    );
    let ts = (qss_relay::time::now_ms() / 1000).to_string();
    let req = hyper::Request::post(format!("http://{}/zoom/webhook", relay.webhook_addr()))
        .header("content-type", "application/json")
        .header("authorization", WEBHOOK_CREDENTIAL)
        .header(
            "x-zm-signature",
            qss_relay::source::signature::sign(SECRET.as_bytes(), &ts, &body),
        )
        .header("x-zm-request-timestamp", ts)
        .body(Body::new(body))
        .unwrap();
    let reply = HttpClient::new(None)
        .unwrap()
        .send(req, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_header_reaches_no_destination_no_export_and_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, logscale, base) = fakes_and_env(dir.path()).await;
    let sentinel = FakeSentinel::start(true).await.unwrap();
    let mut env = base;
    env.extend(sentinel.env_pairs());
    env.insert("SENTINEL_SOURCES".into(), "webhook,websocket".into());
    env.insert("ZOOM_WEBHOOK_SECRET_TOKEN".into(), SECRET.into());
    env.insert("RELAY_WEBHOOK_ADDR".into(), "127.0.0.1:0".into());
    env.insert("RUST_LOG".into(), "trace".into());
    let needles = [SAMPLE_CREDENTIAL, WEBHOOK_CREDENTIAL];
    // The fakes watch for the frame's credential; the webhook's request header is looked
    // for in the exports and the log (the rows and events are checked below).
    logscale.watch_for(SAMPLE_CREDENTIAL.as_bytes());
    sentinel.watch_for(SAMPLE_CREDENTIAL.as_bytes());
    // Sentinel down first: the frames stay pending for it, so the exports have them.
    sentinel.set_mode(SentinelMode::Status {
        code: 503,
        retry_after: Some(1),
    });
    let relay = Relay::start(dir.path(), &env);
    assert!(
        zoom.wait_until(Duration::from_secs(20), |s| s.open_connections >= 1)
            .await
    );

    let (frame, _) = frame_with_header();
    zoom.inject(frame.clone());
    zoom.send(20);
    post_webhook_with_authorization(&relay).await;
    assert!(
        eventually(Duration::from_secs(30), || logscale.stats().distinct >= 22).await,
        "LogScale got {:?}:\n{}",
        logscale.stats(),
        relay.log_text()
    );
    let shipped = logscale.events();
    let header = shipped
        .iter()
        .find_map(|e| e["event"]["header"].get("Authorization"))
        .expect("the frame with the header was shipped");
    assert_eq!(header, "[REDACTED]");

    // Every form `relay spool` writes, through the running daemon. Sentinel rows carry no
    // header at all; the other forms show it redacted.
    let outputs = [
        (true, spool_cmd(&env, &["export"])),
        (false, spool_cmd(&env, &["export", "--sink", "sentinel"])),
        (true, spool_cmd(&env, &["export", "--raw"])),
        (true, spool_cmd(&env, &["peek", "-n", "100", "--json"])),
        (true, spool_cmd(&env, &["peek", "-n", "100"])),
    ];
    for (with_header, out) in &outputs {
        assert!(out.lines().count() >= 22, "{out}");
        assert_eq!(out.contains("[REDACTED]"), *with_header, "{out}");
        for n in needles {
            assert!(!out.contains(n), "{n} in:\n{out}");
        }
    }
    // Asked for, it is there: the checks above can see a leak.
    let raw = spool_cmd(&env, &["export", "--raw", "--unredacted"]);
    assert!(raw.contains(SAMPLE_CREDENTIAL), "{raw}");
    let peeked = spool_cmd(&env, &["peek", "-n", "100", "--json", "--unredacted"]);
    assert!(peeked.contains(SAMPLE_CREDENTIAL), "{peeked}");

    // Sentinel back: it gets the rows, none with the credential.
    sentinel.set_mode(SentinelMode::Accept);
    assert!(
        sentinel
            .wait_for_distinct(22, Duration::from_secs(30))
            .await,
        "Sentinel got {:?}:\n{}",
        sentinel.stats(),
        relay.log_text()
    );

    // A frame LogScale refuses is dead-lettered; `dead show` redacts it too.
    logscale.set_mode(Mode::RejectContaining("SampleClientId0000".into()));
    zoom.inject(frame);
    let id = {
        let mut id = None;
        let found = eventually(Duration::from_secs(30), || {
            let list: Vec<serde_json::Value> =
                serde_json::from_str(&spool_cmd(&env, &["dead", "list", "--json"])).unwrap();
            id = list.first().map(|d| d["id"].as_str().unwrap().to_string());
            id.is_some()
        })
        .await;
        assert!(found, "nothing dead-lettered:\n{}", relay.log_text());
        id.unwrap()
    };
    let shown = spool_cmd(&env, &["dead", "show", &id]);
    assert!(
        shown.contains("[REDACTED]") && !shown.contains(SAMPLE_CREDENTIAL),
        "{shown}"
    );
    let shown = spool_cmd(&env, &["dead", "show", &id, "--unredacted"]);
    assert!(shown.contains(SAMPLE_CREDENTIAL), "{shown}");

    let (ok, log) = relay.terminate();
    assert!(ok, "{log}");
    assert!(log.contains("TRACE"), "the log is at trace level");
    for n in needles {
        assert!(!log.contains(n), "{n} in the log");
    }
    for (name, (requests, hits)) in [
        ("LogScale", logscale.needle_counts()),
        ("Sentinel", sentinel.needle_counts()),
    ] {
        assert!(requests > 0, "{name} was sent nothing");
        assert_eq!(hits, 0, "{name} received the credential in {hits} requests");
    }
}
