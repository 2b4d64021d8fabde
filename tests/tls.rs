//! TLS, with verification always on: `wss://` to Zoom, `https://` to Zoom's token endpoint
//! and to LogScale, trusted through `RELAY_CA_FILE`; refused without it; and the webhook
//! endpoint serving TLS itself. Certificates come from a test CA made here (rcgen).

mod common;

use common::*;
use qss_relay::net::http::{Body, HttpClient};
use qss_relay::sim::logscale::{FakeLogScale, SinkOptions};
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn server_tls(dir: &Path) -> Arc<rustls::ServerConfig> {
    Arc::new(
        qss_relay::net::tls::server_config(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_with_a_custom_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink) = tls_fakes(dir.path()).await;
    assert!(zoom.wss_url().starts_with("wss://") && sink.base_url().starts_with("https://"));

    // Without the CA: the certificates are not trusted, nothing connects, nothing is sent.
    let mut env = base_env(dir.path(), &sink.base_url());
    env.extend(zoom.env_pairs());
    let relay = Relay::start(dir.path(), &env);
    assert!(
        eventually(Duration::from_secs(20), || {
            let log = relay.log_text();
            log.contains("certificate") || log.contains("UnknownIssuer")
        })
        .await,
        "the TLS failure is logged:\n{}",
        relay.log_text()
    );
    assert_eq!(zoom.stats().tokens_issued, 0);
    relay.kill9();
    // LogScale over https without the CA: refused too (`relay check` ships nothing but
    // makes the request).
    let out = command(&env).arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("✗ LogScale HEC"))
        .unwrap_or_else(|| panic!("LogScale over https without the CA fails:\n{text}"));
    assert!(
        line.contains("certificate") || line.contains("UnknownIssuer"),
        "{line}"
    );

    // With RELAY_CA_FILE: everything works.
    env.insert(
        "RELAY_CA_FILE".into(),
        dir.path().join("ca.pem").display().to_string(),
    );
    let _relay = Relay::start(dir.path(), &env);
    assert!(
        zoom.wait_until(Duration::from_secs(20), |z| z.connections == 1)
            .await
    );
    zoom.send(100);
    assert!(
        sink.wait_for_distinct(100, Duration::from_secs(20)).await,
        "{:?}",
        sink.stats()
    );
}

/// A webhook-only relay with its spool in `dir`, serving TLS with `cert.pem` and
/// `key.pem` from `certs`.
fn webhook_tls_env(
    dir: &Path,
    sink: &FakeLogScale,
    certs: &Path,
) -> std::collections::BTreeMap<String, String> {
    let mut env = base_env(dir, &sink.base_url());
    env.insert("ZOOM_WEBHOOK_SECRET_TOKEN".into(), "secret".into());
    env.insert("RELAY_WEBHOOK_ADDR".into(), "127.0.0.1:0".into());
    for (name, file) in [
        ("RELAY_WEBHOOK_TLS_CERT", "cert.pem"),
        ("RELAY_WEBHOOK_TLS_KEY", "key.pem"),
    ] {
        env.insert(name.into(), certs.join(file).display().to_string());
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_endpoint_serves_tls() {
    let dir = tempfile::tempdir().unwrap();
    test_certs(dir.path());
    let sink = FakeLogScale::start(TOKEN, SinkOptions::default())
        .await
        .unwrap();
    let env = webhook_tls_env(dir.path(), &sink, dir.path());
    let relay = Relay::start(dir.path(), &env);
    let client = HttpClient::new(Some(&dir.path().join("ca.pem"))).unwrap();
    let body = br#"{"event":"endpoint.url_validation","payload":{"plainToken":"abc"}}"#;
    let req = hyper::Request::post(format!("https://{}/zoom/webhook", relay.webhook_addr()))
        .body(Body::new(bytes::Bytes::from_static(body)))
        .unwrap();
    let reply = client.send(req, Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["plainToken"], "abc");
    // A client without the CA refuses the endpoint's certificate.
    let strict = HttpClient::new(None).unwrap();
    let req = hyper::Request::post(format!("https://{}/zoom/webhook", relay.webhook_addr()))
        .body(Body::new(bytes::Bytes::from_static(body)))
        .unwrap();
    assert!(strict.send(req, Duration::from_secs(10)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_used_when_logscale_offers_it() {
    let dir = tempfile::tempdir().unwrap();
    test_certs(dir.path());
    let mut tls = (*server_tls(dir.path())).clone();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let sink = FakeLogScale::start_with_tls(
        "127.0.0.1:0".parse().unwrap(),
        TOKEN,
        SinkOptions::default(),
        Some(Arc::new(tls)),
    )
    .await
    .unwrap();
    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let mut env = base_env(dir.path(), &sink.base_url());
    env.extend(zoom.env_pairs());
    env.insert(
        "RELAY_CA_FILE".into(),
        dir.path().join("ca.pem").display().to_string(),
    );
    let _relay = Relay::start(dir.path(), &env);
    zoom.send(50);
    assert!(sink.wait_for_distinct(50, Duration::from_secs(20)).await);
    assert_eq!(sink.last_http_version(), Some(hyper::Version::HTTP_2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_webhook_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    for d in [&first, &second] {
        std::fs::create_dir(d).unwrap();
        test_certs(d);
    }
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(first.join(f), live.join(f)).unwrap();
    }
    let sink = FakeLogScale::start(TOKEN, SinkOptions::default())
        .await
        .unwrap();
    let env = webhook_tls_env(dir.path(), &sink, &live);
    let relay = Relay::start(dir.path(), &env);
    let addr = relay.webhook_addr();
    let validate = |ca: std::path::PathBuf| async move {
        let client = HttpClient::new(Some(&ca)).unwrap();
        let req = hyper::Request::post(format!("https://{addr}/zoom/webhook"))
            .body(Body::new(bytes::Bytes::from_static(
                br#"{"event":"endpoint.url_validation","payload":{"plainToken":"p"}}"#,
            )))
            .unwrap();
        client.send(req, Duration::from_secs(10)).await.is_ok()
    };
    assert!(validate(first.join("ca.pem")).await);
    assert!(!validate(second.join("ca.pem")).await);
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(second.join(f), live.join(f)).unwrap();
    }
    std::process::Command::new("kill")
        .args(["-HUP", &relay.child.id().to_string()])
        .status()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || relay
            .log_text()
            .contains("certificate reloaded"))
        .await
    );
    assert!(
        validate(second.join("ca.pem")).await,
        "new connections get the new certificate"
    );
    assert!(!validate(first.join("ca.pem")).await);
}
