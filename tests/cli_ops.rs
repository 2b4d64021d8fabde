//! The operator's commands with the real binary: `relay check`, `relay demo`,
//! `relay spool peek/export`, with the daemon running and stopped.

mod common;

use common::*;
use qss_relay::sim::logscale::{FakeLogScale, Mode, SinkOptions};
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use std::time::Duration;

async fn fakes() -> (FakeZoom, FakeLogScale) {
    (
        FakeZoom::start(ZoomOptions::default()).await.unwrap(),
        FakeLogScale::start(TOKEN, SinkOptions::default())
            .await
            .unwrap(),
    )
}

async fn output(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_against_the_fakes_and_names_the_fix_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink) = fakes().await;
    let mut env = base_env(dir.path(), &sink.base_url());
    env.extend(zoom.env_pairs());
    let mut cmd = command(&env);
    cmd.arg("check");
    let out = output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for item in [
        "✓ configuration",
        "✓ spool directory",
        "✓ Zoom token",
        "✓ Zoom WebSocket",
        "✓ LogScale HEC",
    ] {
        assert!(text.contains(item), "{item} missing:\n{text}");
    }
    assert!(
        !text.contains("sim-secret") && !text.contains("sim-token"),
        "no secrets printed:\n{text}"
    );
    assert_eq!(zoom.stats().events_sent, 0);
    assert_eq!(sink.stats().events, 0, "check ships nothing");

    env.insert("ZOOM_CLIENT_SECRET".into(), "wrong-secret".into());
    env.insert("LOGSCALE_INGEST_TOKEN".into(), "wrong-token".into());
    let mut cmd = command(&env);
    cmd.arg("check");
    let out = output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("✗ Zoom token"), "{text}");
    assert!(
        text.contains("fix: check ZOOM_ACCOUNT_ID, ZOOM_CLIENT_ID, ZOOM_CLIENT_SECRET"),
        "{text}"
    );
    assert!(
        text.contains("✗ LogScale HEC") && text.contains("LOGSCALE_INGEST_TOKEN"),
        "{text}"
    );
    assert!(
        !text.contains("wrong-secret") && !text.contains("wrong-token"),
        "{text}"
    );
}

#[test]
fn demo_runs_with_piped_output_and_loses_nothing() {
    let out = std::process::Command::new(relay_bin())
        .args(["demo", "--duration", "6", "--rate", "1500"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("LogScale is DOWN"), "{text}");
    assert!(
        text.contains("lost                             0"),
        "{text}"
    );
    // The three counts agree: everything the fake sent was received and delivered.
    let count = |label: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"));
        line[label.len() + 2..]
            .split_whitespace()
            .next()
            .unwrap()
            .replace(',', "")
            .parse()
            .unwrap()
    };
    // The rate is the fake's aim, not a promise on a busy machine (runs under load sent
    // 8,910 of 9,000): what matters is that the counts below agree.
    let sent = count("sent by simulated Zoom");
    assert!(
        sent >= 6 * 1500 / 2,
        "the demo streamed for its duration: {text}"
    );
    assert_eq!(count("received by the relay"), sent, "{text}");
    assert_eq!(count("delivered (distinct)"), sent, "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no terminal escapes when piped:\n{text}"
    );
}

/// `relay demo --sinks logscale,sentinel`: Sentinel goes down, LogScale goes on, and the
/// summary has a column per destination in which everything sent was delivered.
#[test]
fn demo_with_both_destinations_takes_one_down_and_loses_nothing_for_either() {
    let out = std::process::Command::new(relay_bin())
        .args([
            "demo",
            "--duration",
            "6",
            "--rate",
            "800",
            "--sinks",
            "logscale,sentinel",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Sentinel is DOWN"), "{text}");
    assert!(text.contains("LogScale: delivered") && text.contains("Sentinel: delivered"));
    let columns = |label: &str| -> Vec<u64> {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"));
        line.trim_start()[label.len()..]
            .split_whitespace()
            .map_while(|w| w.replace(',', "").parse().ok())
            .collect()
    };
    let sent = columns("sent by simulated Zoom")[0];
    assert!(sent >= 6 * 800 / 2, "{text}");
    assert_eq!(columns("delivered (distinct)"), vec![sent, sent], "{text}");
    assert_eq!(columns("lost"), vec![0, 0], "{text}");
    let refused = columns("refused (outage)");
    assert!(refused[1] > 0, "Sentinel refused during its outage: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_and_export_with_the_daemon_running_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink) = fakes().await;
    sink.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    let mut env = base_env(dir.path(), &sink.base_url());
    env.extend(zoom.env_pairs());
    let relay = Relay::start(dir.path(), &env);
    zoom.send(300);
    assert!(
        eventually(Duration::from_secs(20), || relay
            .inspect()
            .spool
            .pending_events
            == 300)
        .await
    );

    let check = |running: bool, env: std::collections::BTreeMap<String, String>| async move {
        // peek: decoded, oldest first.
        let mut cmd = command(&env);
        cmd.args(["spool", "peek", "-n", "3", "--json"]);
        let out = output(cmd).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["seq"], 0);
        assert!(
            lines[0]["event"].as_str().unwrap().contains('.'),
            "{}",
            lines[0]
        );
        assert!(
            lines[0]["json"]["content"].is_object(),
            "content decoded for reading"
        );
        // export: HEC lines, all 300, ready to re-ingest.
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = command(&env);
        cmd.args(["spool", "export", "-o"]).arg(file.path());
        let out = output(cmd).await;
        assert!(
            out.status.success(),
            "running={running}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(file.path()).unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 300, "running={running}");
        assert!(events
            .iter()
            .all(|e| e["sourcetype"] == "zoom_qss" && e["fields"]["relay_id"].is_string()));
        // --from/--to select a range; --raw gives the records as spooled.
        let mut cmd = command(&env);
        cmd.args(["spool", "export", "--raw", "--from", "10", "--to", "20"]);
        let out = output(cmd).await;
        let raw: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(raw.len(), 10);
        assert_eq!(raw[0]["seq"], 10);
        assert!(raw[0]["payload"]
            .as_str()
            .unwrap()
            .starts_with("{\"module\":\"message\""));
    };
    check(true, env.clone()).await;
    let (ok, _) = relay.terminate();
    assert!(ok);
    check(false, env.clone()).await;
    let report = inspect(&env);
    assert_eq!(report.read_from, qss_relay::admin::ReadFrom::Disk);
    assert_eq!(
        report.spool.pending_events, 300,
        "the commands changed nothing"
    );
    assert_eq!(
        report.last_ship_error.unwrap().status,
        Some(503),
        "the last error is remembered across a stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notification_json_logs_and_no_secrets_in_them() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink) = fakes().await;
    let mut env = base_env(dir.path(), &sink.base_url());
    env.extend(zoom.env_pairs());
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    env.insert("NOTIFY_SOCKET".into(), socket_path.display().to_string());
    env.insert("WATCHDOG_USEC".into(), "2000000".into());
    env.insert("RELAY_LOG_FORMAT".into(), "json".into());
    let relay = Relay::start(dir.path(), &env);
    zoom.send(10);
    assert!(sink.wait_for_distinct(10, Duration::from_secs(20)).await);

    let messages = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while seen
            .iter()
            .filter(|m: &&String| m.contains("WATCHDOG=1"))
            .count()
            < 2
        {
            let n = socket.recv(&mut buf).expect("notifications arrive");
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        seen
    })
    .await
    .unwrap();
    assert!(
        messages.iter().any(|m| m.contains("READY=1")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("STATUS=pending")),
        "{messages:?}"
    );

    let (ok, log) = relay.terminate();
    assert!(ok);
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
    }
    assert!(
        log.contains("access_token=***"),
        "the WebSocket URL is logged, redacted"
    );
    for secret in ["sim-token-", "sim-secret", TOKEN] {
        assert!(!log.contains(secret), "{secret} reached the logs");
    }
}

/// `relay --help` says what the relay is for: both destinations by name.
#[test]
fn help_names_both_destinations() {
    let out = std::process::Command::new(common::relay_bin())
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("LogScale") && text.contains("Sentinel"),
        "{text}"
    );
}

/// `relay --version` names the version and the commit it was built from.
#[test]
fn version_names_the_commit() {
    let out = std::process::Command::new(common::relay_bin())
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = format!("relay {} (", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    let commit = text
        .trim()
        .trim_start_matches(&expected)
        .trim_end_matches(')');
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
    if std::path::Path::new(".git").exists() {
        assert_ne!(commit, "unknown", "built in a git checkout: {text}");
    }
}
