//! Crash tests of the spool and the operator commands, with real processes.

mod common;

use common::*;
use qss_relay::config::{FullPolicy, SpoolSettings};
use qss_relay::metrics::Metrics;
use qss_relay::spool::Spool;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

fn open(dir: &std::path::Path) -> Spool {
    let s = SpoolSettings {
        dir: dir.to_path_buf(),
        min_free_bytes: 0,
        max_bytes: u64::MAX,
        full_policy: FullPolicy::DropOldest,
        commit_interval: Duration::from_millis(10),
        cache_bytes: 16 << 20,
        rotate_bytes: qss_relay::spool::ROTATE_BYTES,
    };
    Spool::open(&s, Arc::new(Metrics::new())).unwrap()
}

/// Spawns a process appending to a spool, kill -9s it mid-append, reopens, and finds
/// every record whose durability had been confirmed.
#[test]
fn kill9_mid_append_keeps_every_confirmed_record() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let mut child = std::process::Command::new(relay_bin())
            .args(["debug", "spool-append", "--spool-dir"])
            .arg(&spool_dir)
            .args(["--count", "10000000", "--producers", "64"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut confirmed: HashMap<u64, u64> = HashMap::new();
        let target = 20_000 + round * 15_000;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let mut parts = line.split_whitespace();
            assert_eq!(parts.next(), Some("durable"));
            let seq: u64 = parts.next().unwrap().parse().unwrap();
            let n: u64 = parts.next().unwrap().parse().unwrap();
            confirmed.insert(seq, n);
            if confirmed.len() as u64 >= target {
                // Mid-append: the writer is busy committing more groups right now.
                std::process::Command::new("kill")
                    .args(["-9", &child.id().to_string()])
                    .status()
                    .unwrap();
                break;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            confirmed.len() as u64 >= target,
            "the appender stopped early ({status}) after {} confirmations: the kill never happened mid-append",
            confirmed.len()
        );
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "killed by the test, not exited by itself"
        );

        let spool = open(&spool_dir);
        let records = spool.pending(0, usize::MAX, None).unwrap();
        let found: HashMap<u64, u64> = records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
                (r.seq, v["n"].as_u64().unwrap())
            })
            .collect();
        let lost: Vec<_> = confirmed
            .iter()
            .filter(|(seq, n)| found.get(seq) != Some(n))
            .take(10)
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: confirmed records missing after kill -9: {lost:?}"
        );
        // In order, each once.
        assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
        println!(
            "round {round}: {} confirmed before kill -9, {} found after reopening (the rest were in flight)",
            confirmed.len(),
            records.len()
        );
        // Numbering goes on past everything that was ever handed out.
        let max_seen = records.iter().map(|r| r.seq).max().unwrap_or(0);
        let next = spool
            .commit(&[qss_relay::spool::NewRecord::new(
                qss_relay::spool::SourceKind::WebSocket,
                bytes::Bytes::from_static(b"{}"),
            )])
            .unwrap();
        assert!(next.start > max_seen);
    }
}

#[test]
fn inspect_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = command(&BTreeMap::new())
        .args(["spool", "inspect", "--json", "--spool-dir"])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pending_events"], 0);
    for key in [
        "pending_bytes",
        "disk_bytes",
        "oldest_pending_age_secs",
        "dead_letter_events",
        "dropped_events",
        "last_ship_error",
    ] {
        assert!(v.get(key).is_some(), "key {key} missing: {v}");
    }
    assert_eq!(v["read_from"], "disk");
}

#[test]
fn a_second_relay_on_the_same_spool_fails_at_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = rt
        .block_on(qss_relay::sim::logscale::FakeLogScale::start(
            TOKEN,
            Default::default(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(dir.path(), &sink.base_url());
    env.insert("ZOOM_WEBHOOK_SECRET_TOKEN".into(), "s".into());
    env.insert("RELAY_WEBHOOK_ADDR".into(), "127.0.0.1:0".into());
    let _first = Relay::start(dir.path(), &env);
    let out = command(&env).arg("run").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another relay process"), "{err}");
}

#[test]
fn bad_configuration_exits_before_doing_anything_with_one_line_per_problem() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = BTreeMap::new();
    env.insert("LOGSCALE_HOST".to_string(), "ftp://x".to_string());
    env.insert(
        "LOGSCALE_INGEST_TOKEN".to_string(),
        "super-secret-token".to_string(),
    );
    env.insert(
        "ZOOM_WSS_URL".to_string(),
        "wss://ws.zoom.us/ws?subscriptionId=x".to_string(),
    );
    env.insert(
        "ZOOM_CLIENT_SECRET".to_string(),
        "client-secret-value".to_string(),
    );
    env.insert(
        "RELAY_SPOOL_DIR".to_string(),
        dir.path().join("spool").display().to_string(),
    );
    env.insert("RELAY_SPOOL_COMMIT_MS".to_string(), "soon".to_string());
    let out = command(&env).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for var in [
        "LOGSCALE_HOST",
        "ZOOM_ACCOUNT_ID",
        "ZOOM_CLIENT_ID",
        "RELAY_SPOOL_COMMIT_MS",
    ] {
        assert!(err.contains(var), "{var} not named: {err}");
    }
    assert!(
        !err.contains("super-secret-token") && !err.contains("client-secret-value"),
        "{err}"
    );
    assert!(!dir.path().join("spool").exists(), "nothing was done");
}

#[test]
fn the_old_scripts_env_file_works_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.vars");
    std::fs::write(
        &file,
        "# written for the old qss2logscale container\nLOGSCALE_HOST=cloud.community.humio.com\nLOGSCALE_INGEST_TOKEN=abc-123\nLOGSCALE_REPOSITORY=zoom\nZOOM_ACCOUNT_ID=acc\nZOOM_CLIENT_ID=cid\nZOOM_CLIENT_SECRET=sec\nZOOM_WSS_URL=wss://ws.zoom.us/ws?subscriptionId=sub\n",
    )
    .unwrap();
    let mut env = BTreeMap::new();
    env.insert(
        "RELAY_SPOOL_DIR".to_string(),
        dir.path().join("spool").display().to_string(),
    );
    // `spool inspect` reads the same configuration: it must accept the file.
    let out = command(&env)
        .arg("--env-file")
        .arg(&file)
        .args(["spool", "inspect", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And reads it: the settings came from the file (an empty spool in the given place).
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pending_events"], 0);
    assert_eq!(
        report["spool_dir"],
        dir.path().join("spool").display().to_string()
    );
    assert_eq!(report["read_from"], "disk");
}
