//! Secrets never reach the logs, at the most verbose level (`RUST_LOG=trace`, every
//! dependency included), across every source and destination: the Zoom client secret and
//! the access tokens it buys, the webhook secret token, the LogScale ingest token.

mod common;

use common::*;
use qss_relay::net::http::HttpClient;
use qss_relay::sim::events::FrameFactory;
use qss_relay::sim::logscale::Mode;
use std::time::Duration;

const WEBHOOK_SECRET: &str = "whsec-Very-Secret-42";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_the_logs_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink, mut env) = fakes_and_env(dir.path()).await;
    env.insert("ZOOM_WEBHOOK_SECRET_TOKEN".into(), WEBHOOK_SECRET.into());
    env.insert("RELAY_WEBHOOK_ADDR".into(), "127.0.0.1:0".into());
    env.insert("RUST_LOG".into(), "trace".into());
    let client_secret = env["ZOOM_CLIENT_SECRET"].clone();
    let relay = Relay::start(dir.path(), &env);

    // Every path that carries a secret: token requests (and a renewal after a rejection),
    // the WebSocket URL with its access token, webhooks, ingest requests, a 401 from
    // LogScale.
    zoom.send(200);
    zoom.invalidate_token();
    zoom.send(200);
    let addr = relay.webhook_addr();
    let http = HttpClient::new(None).unwrap();
    let body = FrameFactory::webhook().frame(5);
    assert_eq!(post_signed(&http, addr, WEBHOOK_SECRET, body).await.0, 200);
    assert!(
        sink.wait_for_distinct(400, Duration::from_secs(60)).await,
        "{:?}",
        sink.stats()
    );
    sink.set_mode(Mode::Status {
        code: 401,
        retry_after: None,
    });
    zoom.send(10);
    assert!(
        eventually(Duration::from_secs(20), || relay
            .inspect()
            .last_ship_error
            .is_some_and(|e| e.status == Some(401)))
        .await
    );
    let issued = zoom.stats().tokens_issued;
    assert!(issued >= 2, "a token was renewed: {issued}");
    let (_, log) = relay.terminate();
    assert!(log.lines().count() > 100, "trace logging is on");

    for (what, secret) in [
        ("ZOOM_CLIENT_SECRET", client_secret.as_str()),
        ("ZOOM_WEBHOOK_SECRET_TOKEN", WEBHOOK_SECRET),
        ("LOGSCALE_INGEST_TOKEN", TOKEN),
    ] {
        assert!(!log.contains(secret), "{what} appears in the log");
    }
    // Access tokens: whatever their value, never after `access_token=` or `Bearer `.
    for line in log.lines() {
        if let Some(i) = line.find("access_token=") {
            let rest = &line[i + "access_token=".len()..];
            assert!(rest.starts_with("***"), "an access token in: {line}");
        }
        assert!(
            !line.contains("\"access_token\":\""),
            "a token response in: {line}"
        );
        assert!(
            !line.contains("Bearer ") && !line.contains("Basic "),
            "credentials in: {line}"
        );
    }
}
