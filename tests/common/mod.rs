//! Helpers for the integration tests: run the real `relay` binary against the simulator's
//! fake Zoom and fake LogScale (loopback, port 0), kill it, restart it, ask it things.
//!
//! The fakes are the library's `qss_relay::sim` (the same ones `relay demo` and the
//! benchmarks use); the spool is always a real sled directory in a temp dir.

#![allow(dead_code)]

pub mod golden;
pub mod syscall_shim;
pub mod tmpfs;

use qss_relay::admin::InspectReport;
use qss_relay::pipeline::RuntimeInfo;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-ingest-token";

/// A relay child process with its own spool directory and log file.
pub struct Relay {
    pub child: Child,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub env: BTreeMap<String, String>,
}

/// The environment of a relay shipping to `logscale_url`, with its spool in `dir`.
pub fn base_env(dir: &Path, logscale_url: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("LOGSCALE_HOST".into(), logscale_url.to_string());
    env.insert("LOGSCALE_INGEST_TOKEN".into(), TOKEN.into());
    env.insert("LOGSCALE_REPOSITORY".into(), "zoom".into());
    env.insert(
        "RELAY_SPOOL_DIR".into(),
        dir.join("spool").display().to_string(),
    );
    env.insert("RELAY_ADMIN_ADDR".into(), "127.0.0.1:0".into());
    env.insert("RELAY_BATCH_TIMEOUT_MS".into(), "100".into());
    env.insert("RELAY_SHUTDOWN_TIMEOUT_SECS".into(), "3".into());
    env.insert("RUST_LOG".into(), "info".into());
    env
}

pub fn relay_bin() -> &'static str {
    env!("CARGO_BIN_EXE_relay")
}

/// A `relay` command with exactly `env` (nothing inherited but PATH).
pub fn command(env: &BTreeMap<String, String>) -> Command {
    command_for(relay_bin(), env)
}

/// [`command`] for the `relay` at `program`.
pub fn command_for(program: &str, env: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env);
    cmd
}

impl Relay {
    /// Starts `relay run` and waits until it is ready.
    pub fn start(dir: &Path, env: &BTreeMap<String, String>) -> Relay {
        Relay::start_with(dir, env, |_| {})
    }

    /// [`start`](Self::start), with `configure` applied to the command first.
    pub fn start_with(
        dir: &Path,
        env: &BTreeMap<String, String>,
        configure: impl FnOnce(&mut Command),
    ) -> Relay {
        Relay::start_program(relay_bin(), dir, env, configure)
    }

    /// [`start_with`](Self::start_with) for another build of `relay` at `program` (an
    /// older version, to make a spool in its format).
    pub fn start_program(
        program: &str,
        dir: &Path,
        env: &BTreeMap<String, String>,
        configure: impl FnOnce(&mut Command),
    ) -> Relay {
        let log = dir.join(format!(
            "relay-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let spool = PathBuf::from(&env["RELAY_SPOOL_DIR"]);
        let _ = std::fs::remove_file(spool.join("relay.json"));
        let mut cmd = command_for(program, env);
        cmd.arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        configure(&mut cmd);
        let child = cmd.spawn().expect("spawn relay");
        let mut relay = Relay {
            child,
            dir: spool,
            log,
            env: env.clone(),
        };
        relay.wait_ready(Duration::from_secs(30));
        relay
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "relay exited with {status} before it was ready; log:\n{}",
                    self.log_text()
                );
            }
            if let Some(info) = self.info() {
                if let (true, Some(admin)) = (info.pid == self.child.id(), info.admin_addr) {
                    let ok = std::process::Command::new(relay_bin())
                        .args(["health", "--admin-addr", &admin.to_string()])
                        .output()
                        .map(|o| o.status.success())
                        .unwrap_or(false);
                    if ok {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "relay not ready within {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn info(&self) -> Option<RuntimeInfo> {
        RuntimeInfo::read(&self.dir)
    }

    pub fn webhook_addr(&self) -> std::net::SocketAddr {
        self.info()
            .and_then(|i| i.webhook_addr)
            .expect("webhook endpoint is configured")
    }

    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.info()
            .and_then(|i| i.admin_addr)
            .expect("admin endpoint is configured")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill9(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.log_text()
    }

    /// SIGTERM, and wait for the exit; returns (success, log).
    pub fn terminate(mut self) -> (bool, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), self.log_text());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return (false, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `relay spool inspect --json` against this relay's spool (asks the daemon).
    pub fn inspect(&self) -> InspectReport {
        inspect(&self.env)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `relay spool inspect --json` with `env`.
pub fn inspect(env: &BTreeMap<String, String>) -> InspectReport {
    let out = command(env)
        .args(["spool", "inspect", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "inspect output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Polls `f` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Fetches `/metrics` with the library's own client.
pub async fn metrics_text(addr: std::net::SocketAddr) -> String {
    let client = qss_relay::net::http::HttpClient::new(None).unwrap();
    let req = hyper::Request::get(format!("http://{addr}/metrics"))
        .body(qss_relay::net::http::Body::new(bytes::Bytes::new()))
        .unwrap();
    let reply = client.send(req, Duration::from_secs(5)).await.unwrap();
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The value of the sample `series` (name with its labels, as printed) in a Prometheus
/// text; 0 when absent (counters not yet incremented are not printed).
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// A test that needs a tool or privilege this machine lacks: skipped with a message on a
/// developer's machine, a failure in CI (`CI` set), where `.ci/run` installs everything.
pub fn skip_unless_ci(why: &str) {
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(!in_ci, "cannot run here: {why} (CI must provide it)");
    println!("skipped: {why}");
}

/// A fake Zoom and a fake LogScale on loopback, and the environment of a relay using both
/// with its spool in `dir`.
pub async fn fakes_and_env(
    dir: &Path,
) -> (
    qss_relay::sim::zoom::FakeZoom,
    qss_relay::sim::logscale::FakeLogScale,
    BTreeMap<String, String>,
) {
    let zoom = qss_relay::sim::zoom::FakeZoom::start(Default::default())
        .await
        .unwrap();
    let sink = qss_relay::sim::logscale::FakeLogScale::start(TOKEN, Default::default())
        .await
        .unwrap();
    let mut env = base_env(dir, &sink.base_url());
    env.extend(zoom.env_pairs());
    (zoom, sink, env)
}

/// Posts `body` to the webhook endpoint at `addr`, signed with `secret` and stamped now, on
/// a connection of its own. Returns the status (0 when no answer came) and how long it
/// took.
pub async fn post_signed(
    client: &qss_relay::net::http::HttpClient,
    addr: std::net::SocketAddr,
    secret: &str,
    body: bytes::Bytes,
) -> (u16, Duration) {
    let ts = (qss_relay::time::now_ms() / 1000).to_string();
    let req = hyper::Request::post(format!("http://{addr}/zoom/webhook"))
        .header("content-type", "application/json")
        .header("connection", "close")
        .header(
            "x-zm-signature",
            qss_relay::source::signature::sign(secret.as_bytes(), &ts, &body),
        )
        .header("x-zm-request-timestamp", ts)
        .body(qss_relay::net::http::Body::new(body))
        .unwrap();
    let started = Instant::now();
    let status = client
        .send(req, Duration::from_secs(30))
        .await
        .map(|r| r.status.as_u16())
        .unwrap_or(0);
    (status, started.elapsed())
}

/// Writes a test CA (`ca.pem`) and a certificate for 127.0.0.1 signed by it (`cert.pem`,
/// `key.pem`) into `dir`; returns the server configuration serving that certificate.
pub fn test_certs(dir: &Path) -> std::sync::Arc<rustls::ServerConfig> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
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
    std::sync::Arc::new(
        qss_relay::net::tls::server_config(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap(),
    )
}

/// A fake Zoom (wss, https) and a fake LogScale (https) serving the certificate of
/// [`test_certs`], which it writes into `dir` (`ca.pem` is what `RELAY_CA_FILE` needs).
pub async fn tls_fakes(
    dir: &Path,
) -> (
    qss_relay::sim::zoom::FakeZoom,
    qss_relay::sim::logscale::FakeLogScale,
) {
    let server = test_certs(dir);
    let zoom =
        qss_relay::sim::zoom::FakeZoom::start_with_tls(Default::default(), Some(server.clone()))
            .await
            .unwrap();
    let sink = qss_relay::sim::logscale::FakeLogScale::start_with_tls(
        "127.0.0.1:0".parse().unwrap(),
        TOKEN,
        Default::default(),
        Some(server),
    )
    .await
    .unwrap();
    (zoom, sink)
}

/// Waits until `pending()` reaches 0, for as long as it keeps going down: fails only when
/// it has not moved for `stall` (a slow, loaded machine drains slowly; a stuck relay does
/// not drain at all). Returns whether it reached 0.
pub async fn drained(stall: Duration, mut pending: impl FnMut() -> u64) -> bool {
    let mut last = u64::MAX;
    let mut moved = Instant::now();
    loop {
        let now = pending();
        if now == 0 {
            return true;
        }
        if now < last {
            last = now;
            moved = Instant::now();
        } else if moved.elapsed() > stall {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
