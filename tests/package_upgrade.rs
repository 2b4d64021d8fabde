//! An upgrade through the Debian package keeps the spool: `.ci/package` installs the
//! package, runs [`package_fill_spool_before_upgrade`] against the installed `/usr/bin/relay`
//! (LogScale down: every event waits in the spool), installs the next package revision over
//! it, then runs [`package_drain_spool_after_upgrade`] against the upgraded binary (the spool
//! opens and everything drains). Both are `#[ignore]`d: they need the installed package and
//! a spool in the package's state directory, which only `.ci/package` sets up (as root).
//!
//! The spool is where the unit's `StateDirectory=` puts it with `DynamicUser=yes`
//! (`/var/lib/private/qss-relay/spool`, which `/var/lib/qss-relay` links to under systemd);
//! `QSS_PACKAGE_SPOOL` overrides it.

mod common;

use common::*;
use std::time::Duration;

/// Events spooled before the upgrade.
const EVENTS: u64 = 2_000;

fn installed_relay() -> String {
    std::env::var("RELAY_UNDER_TEST").unwrap_or_else(|_| "/usr/bin/relay".into())
}

fn package_spool() -> String {
    std::env::var("QSS_PACKAGE_SPOOL").unwrap_or_else(|_| "/var/lib/private/qss-relay/spool".into())
}

/// `relay spool inspect --json` of the installed binary on the (stopped) spool.
fn pending_on_disk(relay: &str, spool: &str) -> Option<u64> {
    let out = std::process::Command::new(relay)
        .args(["spool", "inspect", "--json"])
        .env("RELAY_SPOOL_DIR", spool)
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["pending_events"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by .ci/package around a package upgrade (needs the installed package, as root)"]
async fn package_fill_spool_before_upgrade() {
    let relay_bin = installed_relay();
    let spool = package_spool();
    assert!(
        !std::path::Path::new(&spool).exists(),
        "{spool} exists: the test starts from an empty spool"
    );
    let dir = tempfile::tempdir().unwrap();
    let (zoom, logscale, mut env) = fakes_and_env(dir.path()).await;
    env.insert("RELAY_SPOOL_DIR".into(), spool.clone());
    logscale.set_mode(qss_relay::sim::logscale::Mode::Status {
        code: 503,
        retry_after: None,
    });
    let relay = Relay::start_program(&relay_bin, dir.path(), &env, |_| {});
    zoom.send(EVENTS);
    let spooled = eventually(Duration::from_secs(60), || {
        relay.inspect().spool.pending_events == EVENTS
    })
    .await;
    assert!(
        spooled,
        "{:#?}\n{}",
        relay.inspect().spool,
        relay.log_text()
    );
    let (clean, log) = relay.terminate();
    assert!(clean, "{log}");
    assert_eq!(logscale.stats().distinct, 0, "LogScale was down throughout");
    assert_eq!(pending_on_disk(&relay_bin, &spool), Some(EVENTS));
    println!("{EVENTS} events wait in {spool}, written by {relay_bin}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by .ci/package around a package upgrade (needs the installed package, as root)"]
async fn package_drain_spool_after_upgrade() {
    let relay_bin = installed_relay();
    let spool = package_spool();
    assert_eq!(
        pending_on_disk(&relay_bin, &spool),
        Some(EVENTS),
        "the upgraded relay reads the spool the package's previous version left"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_zoom, logscale, mut env) = fakes_and_env(dir.path()).await;
    env.insert("RELAY_SPOOL_DIR".into(), spool.clone());
    let relay = Relay::start_program(&relay_bin, dir.path(), &env, |_| {});
    let delivered = logscale
        .wait_for_distinct(EVENTS, Duration::from_secs(60))
        .await;
    assert!(delivered, "{:?}\n{}", logscale.stats(), relay.log_text());
    let drained = eventually(Duration::from_secs(30), || {
        relay.inspect().spool.pending_events == 0
    })
    .await;
    assert!(drained, "{:#?}", relay.inspect().spool);
    let (clean, log) = relay.terminate();
    assert!(clean, "{log}");
    let stats = logscale.stats();
    assert_eq!(stats.distinct, EVENTS, "{stats:?}");
    println!(
        "after the upgrade {relay_bin} delivered the {EVENTS} spooled events ({} duplicates)",
        stats.duplicates
    );
}
