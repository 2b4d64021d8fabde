//! The admin surfaces with the real `relay` binary: the TCP endpoint serves metrics and
//! health only and refuses browsers and foreign host names; the spool's state and
//! operations are on the operator socket in the spool directory, mode 0600.

mod common;

use common::*;
use qss_relay::admin::ReadFrom;
use qss_relay::net::http::{Body, HttpClient};
use qss_relay::sim::logscale::Mode;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

async fn get(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let client = HttpClient::new(None).unwrap();
    let mut req = hyper::Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let reply = client
        .send(
            req.body(Body::new(bytes::Bytes::new())).unwrap(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    (
        reply.status.as_u16(),
        String::from_utf8_lossy(&reply.body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_port_serves_no_spool_route_and_refuses_browsers() {
    let dir = tempfile::tempdir().unwrap();
    let (_zoom, _sink, mut env) = fakes_and_env(dir.path()).await;
    env.insert(
        "RELAY_ADMIN_ALLOWED_HOSTS".into(),
        "prometheus-target".into(),
    );
    let relay = Relay::start(dir.path(), &env);
    let admin = relay.admin_addr();

    for path in [
        "/spool/inspect",
        "/spool/peek",
        "/spool/export",
        "/spool/dead",
        "/spool/dead/show?id=event:1",
    ] {
        let (status, _) = get(admin, path, &[]).await;
        assert_eq!(status, 404, "{path} is not on the metrics port");
    }
    let client = HttpClient::new(None).unwrap();
    let post = hyper::Request::post(format!("http://{admin}/spool/dead/purge?ids=all"))
        .body(Body::new(bytes::Bytes::new()))
        .unwrap();
    let reply = client.send(post, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        reply.status, 405,
        "nothing is changed through the metrics port"
    );

    let (status, body) = get(admin, "/metrics", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("relay_spool_pending_events"));
    assert_eq!(
        get(admin, "/healthz", &[("host", "localhost:9464")])
            .await
            .0,
        200
    );
    assert_eq!(
        get(admin, "/metrics", &[("host", "prometheus-target:9464")])
            .await
            .0,
        200,
        "a listed host name is served"
    );
    // A page on another site (CSRF), or a DNS-rebinding name pointing at 127.0.0.1.
    let (status, body) = get(admin, "/metrics", &[("origin", "http://evil.example")]).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = get(admin, "/metrics", &[("host", "rebind.evil.example:9464")]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("RELAY_ADMIN_ALLOWED_HOSTS"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_commands_use_the_operator_socket_which_only_the_relays_user_may_open() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink, mut env) = fakes_and_env(dir.path()).await;
    sink.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    // No TCP admin endpoint at all: the spool commands do not need one.
    env.insert("RELAY_ADMIN_ADDR".into(), "off".into());
    let spool = std::path::PathBuf::from(&env["RELAY_SPOOL_DIR"]);
    let log = dir.path().join("relay.log");
    let mut child = KillOnDrop(
        command(&env)
            .arg("run")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let socket = spool.join("relay.sock");
    assert!(
        eventually(Duration::from_secs(20), || socket.exists()).await,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the operator socket is mode 0600");

    zoom.send(50);
    assert!(
        eventually(Duration::from_secs(20), || inspect(&env)
            .spool
            .pending_events
            == 50)
        .await,
        "{:?}",
        inspect(&env)
    );
    let report = inspect(&env);
    assert_eq!(
        report.read_from,
        ReadFrom::Daemon,
        "asked the running relay"
    );

    let out = command(&env)
        .args(["spool", "peek", "-n", "2", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    // A dead letter that does not exist is "not found", not an error of the transport.
    let out = command(&env)
        .args(["spool", "dead", "show", "event:12345"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no dead letter event:12345"), "{err}");

    // Another user is refused by the socket's mode, even with the directory open to all.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        for d in [dir.path(), spool.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(relay_bin())
            .args(["spool", "inspect"])
            .env_clear()
            .env("RELAY_SPOOL_DIR", &spool)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Permission denied") && err.contains("relay.sock"),
            "{err}"
        );
    } else {
        println!("not root: the other-user check is skipped");
    }

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    assert!(child.0.wait().unwrap().success());
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

/// A child process killed if the test fails before it stops it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
