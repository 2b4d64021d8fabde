//! TLS, with verification always on: `wss://` to Zoom, `https://` to Zoom's token endpoint
//! and to LogScale, trusted through `RELAY_CA_FILE`; refused without it; and the webhook
//! endpoint serving TLS itself. Certificates come from a test CA made here (rcgen).

mod common;

use common::*;
use qss_relay::net::http::{Body, HttpClient};
use qss_relay::sim::logscale::{FakeLogScale, SinkOptions};
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Writes `ca.pem`, `cert.pem` and `key.pem` (for 127.0.0.1) into `dir`.
fn make_certs(dir: &Path) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

fn server_tls(dir: &Path) -> Arc<rustls::ServerConfig> {
    Arc::new(
        qss_relay::net::tls::server_config(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_with_a_custom_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let zoom = FakeZoom::start_with_tls(ZoomOptions::default(), Some(server_tls(dir.path())))
        .await
        .unwrap();
    let sink = FakeLogScale::start_with_tls(
        "127.0.0.1:0".parse().unwrap(),
        TOKEN,
        SinkOptions::default(),
        Some(server_tls(dir.path())),
    )
    .await
    .unwrap();
    assert!(zoom.wss_url().starts_with("wss://") && sink.base_url().starts_with("https://"));

    // Without the CA: the certificates are not trusted, nothing connects, nothing is sent.
    let mut env = base_env(dir.path(), &sink.base_url());
    env.extend(zoom.env_pairs());
    let relay = Relay::start(dir.path(), &env);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(zoom.stats().tokens_issued, 0);
    let log = relay.kill9();
    assert!(
        log.contains("certificate") || log.contains("UnknownIssuer"),
        "the TLS failure is logged:\n{log}"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_endpoint_serves_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let sink = FakeLogScale::start(TOKEN, SinkOptions::default())
        .await
        .unwrap();
    let mut env = base_env(dir.path(), &sink.base_url());
    env.insert("ZOOM_WEBHOOK_SECRET_TOKEN".into(), "secret".into());
    env.insert("RELAY_WEBHOOK_ADDR".into(), "127.0.0.1:0".into());
    env.insert(
        "RELAY_WEBHOOK_TLS_CERT".into(),
        dir.path().join("cert.pem").display().to_string(),
    );
    env.insert(
        "RELAY_WEBHOOK_TLS_KEY".into(),
        dir.path().join("key.pem").display().to_string(),
    );
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
