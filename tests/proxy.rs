//! Outbound proxies with a real proxy: tinyproxy (from the system's packages; CI installs
//! it), started by the test on loopback. Zoom's token endpoint, the Zoom WebSocket and
//! LogScale are all reached through `CONNECT` tunnels with TLS verified inside them; proxy
//! authentication works and its password never reaches the logs; a refused `CONNECT` is
//! reported and retried without loss.
//!
//! Without tinyproxy on the PATH the tests say so and pass as skipped.

mod common;

use common::*;
use qss_relay::sim::logscale::FakeLogScale;
use qss_relay::sim::zoom::FakeZoom;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PROXY_USER: &str = "relay";
const PROXY_PASSWORD: &str = "proxy-pa55word";

/// A tinyproxy process on a free loopback port; killed on drop.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Tinyproxy {
    /// `extra`: more configuration lines (BasicAuth, ConnectPort).
    fn start(dir: &Path, extra: &str) -> Option<Tinyproxy> {
        let bin = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join(format!("tinyproxy-{port}.log"));
        let conf = dir.join(format!("tinyproxy-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 50\nLogLevel Connect\nLogFile \"{}\"\nPidFile \"{}\"\n{extra}\n",
                log.display(),
                dir.join(format!("tinyproxy-{port}.pid")).display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Tinyproxy { child, port, log });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tinyproxy did not start on port {port}");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_through(
    dir: &Path,
    zoom: &FakeZoom,
    sink: &FakeLogScale,
    proxy_url: &str,
) -> BTreeMap<String, String> {
    let mut env = base_env(dir, &sink.base_url());
    env.extend(zoom.env_pairs());
    env.insert(
        "RELAY_CA_FILE".into(),
        dir.join("ca.pem").display().to_string(),
    );
    env.insert("https_proxy".into(), proxy_url.to_string());
    env.insert("RUST_LOG".into(), "debug".into());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoom_and_logscale_through_an_authenticating_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let Some(proxy) = Tinyproxy::start(
        dir.path(),
        &format!("BasicAuth {PROXY_USER} {PROXY_PASSWORD}"),
    ) else {
        skip_unless_ci("tinyproxy is not installed (apt-get install tinyproxy)");
        return;
    };
    let (zoom, sink) = tls_fakes(dir.path()).await;
    let url = format!(
        "http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{}",
        proxy.port
    );
    let env = env_through(dir.path(), &zoom, &sink, &url);

    // `relay check` goes through the proxy and says so for each check.
    let out = command(&env).arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let via = format!("through proxy http://***@127.0.0.1:{}", proxy.port);
    for check in ["✓ Zoom token", "✓ Zoom WebSocket", "✓ LogScale HEC"] {
        let line = text.lines().find(|l| l.starts_with(check)).unwrap_or("");
        assert!(line.contains(&via), "{check} names the proxy: {text}");
    }
    assert!(!text.contains(PROXY_PASSWORD), "{text}");

    let relay = Relay::start(dir.path(), &env);
    zoom.send(500);
    assert!(
        sink.wait_for_distinct(500, Duration::from_secs(60)).await,
        "{:?}\n{}",
        sink.stats(),
        relay.log_text()
    );
    let tunnels = proxy.log_text();
    let zoom_port = zoom
        .wss_url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let sink_port = sink.base_url().rsplit(':').next().unwrap().to_string();
    for port in [&zoom_port, &sink_port] {
        assert!(
            tunnels.contains(&format!("CONNECT 127.0.0.1:{port}")),
            "a CONNECT tunnel to port {port} in the proxy's log:\n{tunnels}"
        );
    }
    let (ok, log) = relay.terminate();
    assert!(ok, "{log}");
    assert!(
        !log.contains(PROXY_PASSWORD),
        "the proxy password is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_refuses_is_reported_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    // Only port 443 may be tunnelled to: the fake LogScale's port is refused.
    let Some(proxy) = Tinyproxy::start(dir.path(), "ConnectPort 443") else {
        skip_unless_ci("tinyproxy is not installed (apt-get install tinyproxy)");
        return;
    };
    let (zoom, sink) = tls_fakes(dir.path()).await;
    let mut env = env_through(
        dir.path(),
        &zoom,
        &sink,
        &format!("http://127.0.0.1:{}", proxy.port),
    );
    let relay = Relay::start(dir.path(), &env);
    let out = command(&env).arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("✗ LogScale HEC"))
        .unwrap_or("");
    assert!(
        line.contains(&format!("through proxy http://127.0.0.1:{}", proxy.port)),
        "{text}"
    );
    // The WebSocket's tunnel is refused too: Zoom has nobody to send to, and the relay
    // keeps trying and says which proxy refused.
    assert!(
        eventually(Duration::from_secs(20), || relay.log_text().contains(
            &format!("through proxy http://127.0.0.1:{}", proxy.port)
        ))
        .await,
        "the log names the proxy that refused:\n{}",
        relay.log_text()
    );
    assert_eq!(zoom.stats().connections, 0);
    let _ = relay.kill9();

    // With a proxy that lets it through, the same spool delivers everything.
    drop(proxy);
    let Some(open) = Tinyproxy::start(dir.path(), "") else {
        unreachable!("tinyproxy started a moment ago")
    };
    env.insert(
        "https_proxy".into(),
        format!("http://127.0.0.1:{}", open.port),
    );
    let relay = Relay::start(dir.path(), &env);
    zoom.send(200);
    assert!(
        sink.wait_for_distinct(200, Duration::from_secs(60)).await,
        "{:?}\n{}",
        sink.stats(),
        relay.log_text()
    );
}
