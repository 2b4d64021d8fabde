//! Storage errors end to end, on the real binary (invariant 6b, "fsyncgate"):
//!
//! - a failed `fdatasync` while running: the webhook waiting on it is not answered 200,
//!   `relay run` exits with status 74 (`EX_IOERR`, for systemd to restart it), the
//!   restarted relay reports the failure (`relay_spool_last_failure_timestamp_seconds`,
//!   `inspect`'s `last failure`, a line in its log), and every webhook answered 200 before
//!   is delivered. `relay_spool_failed` is 1 only in the failing run, which is gone within
//!   milliseconds, before a scrape can see it: that gauge is unit-tested (`room_tests`). The fault
//!   is real at the system-call boundary: a small shared library, built with the C
//!   compiler and loaded with `LD_PRELOAD` (`tests/common/syscall_shim.rs`), makes
//!   `fdatasync`/`fsync` fail with EIO once a trigger file exists (no device-mapper
//!   `dm-flakey` on these machines);
//! - an I/O error from sled at start (the spool on a read-only file system): `relay run`
//!   exits non-zero at once with an error that names the directory and what to check.
//!
//! The read-only case needs root to mount a tmpfs; both say so and pass as skipped where
//! they cannot run (a failure in CI).

mod common;

use common::syscall_shim::build_shim;
use common::tmpfs::Tmpfs;
use common::*;
use qss_relay::net::http::HttpClient;
use qss_relay::sim::events::FrameFactory;
use qss_relay::sim::logscale::{FakeLogScale, Mode, SinkOptions};
use std::process::Command;
use std::time::{Duration, Instant};

const SECRET: &str = "storage-errors-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fdatasync_answers_no_200_fails_the_spool_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let shim = match build_shim(dir.path()) {
        Ok(s) => s,
        Err(why) => {
            skip_unless_ci(&why);
            return;
        }
    };
    let trigger = dir.path().join("fail-syncs-now");
    let (_zoom, sink, mut env) = fakes_and_env(dir.path()).await;
    env.remove("ZOOM_WSS_URL");
    env.insert("ZOOM_WEBHOOK_SECRET_TOKEN".into(), SECRET.into());
    env.insert("RELAY_WEBHOOK_ADDR".into(), "127.0.0.1:0".into());
    sink.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    let preload = |cmd: &mut Command| {
        cmd.env("LD_PRELOAD", &shim)
            .env("FAIL_SYNC_TRIGGER", &trigger);
    };
    let mut relay = Relay::start_with(dir.path(), &env, preload);
    let client = HttpClient::new(None).unwrap();
    let bodies = FrameFactory::webhook();
    let mut answered_200 = Vec::new();
    for n in 0..50 {
        let (status, _) = post_signed(&client, relay.webhook_addr(), SECRET, bodies.frame(n)).await;
        assert_eq!(status, 200);
        answered_200.push(n);
    }
    let m = metrics_text(relay.admin_addr()).await;
    assert_eq!(metric_value(&m, "relay_spool_failed"), 0.0);

    // The disk starts failing its syncs: the next webhook is not acknowledged.
    let failed_after = qss_relay::time::now_ms();
    std::fs::write(&trigger, b"").unwrap();
    let (status, _) = post_signed(&client, relay.webhook_addr(), SECRET, bodies.frame(50)).await;
    assert_ne!(status, 200, "a webhook answered 200 on a failed fdatasync");
    // It exits with EX_IOERR, by itself and cleanly (no panic from sled's destructors,
    // which would sync once more). The relay is gone within milliseconds, too soon to
    // scrape `relay_spool_failed` (set by `Spool::fail`, unit-tested in `room_tests`).
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = relay.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not exit:\n{}",
            relay.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = relay.log_text();
    let exited_by = qss_relay::time::now_ms();
    assert_eq!(
        status.code(),
        Some(74),
        "relay run exited with {status}, not EX_IOERR:\n{log}"
    );
    assert!(
        log.contains("storage failure") && !log.contains("panicked"),
        "{log}"
    );

    // The disk is fixed; systemd would restart the relay: everything answered 200 arrives.
    std::fs::remove_file(&trigger).unwrap();
    sink.set_mode(Mode::Accept);
    let relay = Relay::start_with(dir.path(), &env, preload);
    // The restarted relay says when the last failure was: in its metrics, `inspect` and log.
    let m = metrics_text(relay.admin_addr()).await;
    let at_ms =
        (metric_value(&m, "relay_spool_last_failure_timestamp_seconds") * 1000.0).round() as u64;
    assert!(
        (failed_after..=exited_by).contains(&at_ms),
        "last failure at {at_ms}; syncs began to fail at {failed_after} and the relay exited by {exited_by}"
    );
    assert_eq!(metric_value(&m, "relay_spool_failed"), 0.0);
    let last = relay
        .inspect()
        .spool
        .last_failure
        .expect("inspect shows the last storage failure");
    assert_eq!(last.at_ms, at_ms);
    assert!(last.reason.contains("I/O error"), "{last:?}");
    let text = command(&env).args(["spool", "inspect"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("last failure"), "{text}");
    let mut check_env = env.clone();
    check_env.remove("ZOOM_WSS_URL");
    let checked = command(&check_env).arg("check").output().unwrap();
    let checked = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.contains("! spool storage: the last storage failure was at"),
        "{checked}"
    );
    assert!(
        relay
            .log_text()
            .contains("the last storage failure of this spool"),
        "{}",
        relay.log_text()
    );
    assert!(
        sink.wait_for_distinct(answered_200.len() as u64, Duration::from_secs(60))
            .await,
        "{:?}\n{}",
        sink.stats(),
        relay.log_text()
    );
    let counts = sink.sim_counts();
    let lost: Vec<_> = answered_200
        .iter()
        .filter(|n| !counts.contains_key(n))
        .collect();
    assert!(lost.is_empty(), "answered 200, then lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_at_start_exits_at_once_naming_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(dir.path(), "64m") {
        Ok(d) => d,
        Err(why) => {
            skip_unless_ci(&why);
            return;
        }
    };
    let sink = FakeLogScale::start(TOKEN, SinkOptions::default())
        .await
        .unwrap();
    let spool = disk.mnt.join("spool");
    let mut env = base_env(dir.path(), &sink.base_url());
    env.insert("RELAY_SPOOL_DIR".into(), spool.display().to_string());
    env.insert("ZOOM_WEBHOOK_SECRET_TOKEN".into(), SECRET.into());
    env.insert("RELAY_WEBHOOK_ADDR".into(), "127.0.0.1:0".into());
    // A spool made, then its file system turned read-only (as a failing disk is).
    let (ok, log) = Relay::start(dir.path(), &env).terminate();
    assert!(ok, "{log}");
    let out = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&disk.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    let out = command(&env).arg("run").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "relay run on a read-only spool: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it gave up at once"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("an error line: {stderr}"));
    assert!(
        line.contains(&spool.display().to_string()) && line.contains("Read-only file system"),
        "{line}"
    );
}
