//! Small volumes, for real: the spool on a tmpfs of 8 MiB or 32 MiB (a small container
//! volume, a nearly full root disk), with the default floor and with low ones. Issue #26's
//! three cases, each of which failed before the spool fitted itself to the volume
//! (`spool::fit`) and gave back its drained generation:
//!
//! - 8 MiB, default floor (128 MiB): every event was refused from the start, forever;
//! - 8 MiB, `RELAY_SPOOL_MIN_FREE_BYTES=1MiB`: sled hit ENOSPC seconds after the disk
//!   filled, the spool failed and the relay exited;
//! - 32 MiB, 12 MiB floor: after an outage drained, the empty generation kept 20 MiB and
//!   every new event was dropped.
//!
//! Each scenario: LogScale down until the disk is the limit (drops counted), more events
//! on the full disk, LogScale back, the backlog drained, new events all delivered with no
//! new drop; then another process fills the disk (new events refused, counted) and frees
//! it again (events flow by themselves). Throughout: the relay never exits, sled never
//! sees ENOSPC, and every event not delivered is counted as dropped.
//!
//! Needs root to mount the tmpfs (CI runs as root); otherwise the tests say so and pass as
//! skipped.

mod common;

use common::tmpfs::Tmpfs;
use common::*;
use qss_relay::sim::logscale::{FakeLogScale, Mode, SinkOptions};
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use std::time::Duration;

/// Sends `n` events and waits until the relay has taken them all from the fake Zoom.
async fn send_all(zoom: &FakeZoom, relay: &Relay, sent: &mut u64, n: u64) {
    zoom.send(n);
    *sent += n;
    let want = *sent;
    assert!(
        zoom.wait_until(Duration::from_secs(60), |s| s.events_sent == want)
            .await,
        "the relay keeps taking events from Zoom: {:?}\n{}",
        zoom.stats(),
        relay.log_text()
    );
}

fn alive(relay: &mut Relay) {
    if let Some(status) = relay.child.try_wait().unwrap() {
        panic!("the relay exited ({status}):\n{}", relay.log_text());
    }
}

/// The spool's figures from the running relay (which must still be running: `inspect`
/// would otherwise open the spool itself).
fn spool(relay: &mut Relay) -> qss_relay::spool::SpoolStats {
    alive(relay);
    let out = command(&relay.env)
        .args(["spool", "inspect", "--json"])
        .output()
        .unwrap();
    match serde_json::from_slice::<qss_relay::admin::InspectReport>(&out.stdout) {
        Ok(r) => r.spool,
        Err(_) => panic!(
            "inspect failed: {}\nrelay log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            relay.log_text()
        ),
    }
}

async fn fill_drain_and_recover(size: &str, floor: Option<&str>) {
    let label = format!("{size} volume, floor {}", floor.unwrap_or("default"));
    let dir = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(dir.path(), size) {
        Ok(d) => d,
        Err(why) => {
            skip_unless_ci(&why);
            return;
        }
    };
    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let sink = FakeLogScale::start(TOKEN, SinkOptions::default())
        .await
        .unwrap();
    let mut env = base_env(dir.path(), &sink.base_url());
    env.extend(zoom.env_pairs());
    env.insert(
        "RELAY_SPOOL_DIR".into(),
        disk.mnt.join("spool").display().to_string(),
    );
    if let Some(f) = floor {
        env.insert("RELAY_SPOOL_MIN_FREE_BYTES".into(), f.into());
    }
    sink.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    let mut relay = Relay::start(dir.path(), &env);

    // The floor fits the volume, and the spool says what it can hold.
    let s = spool(&mut relay);
    let fs = s.fs_bytes.expect("tmpfs reports its size");
    assert!(s.min_free_bytes < fs / 2, "{label}: floor {s:?}");
    let holdable = s.holdable_bytes.expect("what the spool can hold");
    assert!(holdable > fs / 2, "{label}: {s:?}");
    let mut check_env = env.clone();
    check_env.remove("ZOOM_WSS_URL");
    let out = command(&check_env).arg("check").output().unwrap();
    let checked = String::from_utf8_lossy(&out.stdout).into_owned();
    if holdable < qss_relay::spool::MIN_USEFUL_BYTES {
        let line = checked
            .lines()
            .find(|l| l.starts_with("✗ spool disk: too small to be useful"))
            .unwrap_or_else(|| panic!("{label}: relay check says it is too small:\n{checked}"));
        assert!(line.contains("can hold"), "{line}");
        assert!(checked.contains("fix: give RELAY_SPOOL_DIR a file system with at least"));
    } else {
        assert!(
            checked.contains("✓ spool directory") && checked.contains("it can hold"),
            "{label}:\n{checked}"
        );
    }

    // LogScale down: fill the disk until it is the limit and events are dropped.
    let mut sent = 0u64;
    let mut full = false;
    while sent < 2_000_000 && !full {
        send_all(&zoom, &relay, &mut sent, 10_000).await;
        let s = spool(&mut relay);
        full = s.disk_full && s.dropped_events > 0;
    }
    assert!(full, "{label}: {sent} events did not fill the volume");
    // More on the full disk: still taken, the relay still up.
    send_all(&zoom, &relay, &mut sent, 20_000).await;
    alive(&mut relay);
    let m = metrics_text(relay.admin_addr()).await;
    assert!(
        metric_value(
            &m,
            r#"relay_events_dropped_total{reason="disk_full_oldest"}"#
        ) > 0.0,
        "{label}: {m}"
    );

    // LogScale back: the backlog drains and new events are all delivered, none dropped.
    sink.set_mode(Mode::Accept);
    assert!(
        drained(Duration::from_secs(60), || spool(&mut relay).pending_events).await,
        "{label}: the backlog drains (it stopped going down for 60 s): {:?}\n{}",
        spool(&mut relay),
        relay.log_text()
    );
    let dropped = spool(&mut relay).dropped_events;
    let before = sink.stats().distinct;
    send_all(&zoom, &relay, &mut sent, 5_000).await;
    assert!(
        sink.wait_for_distinct(before + 5_000, Duration::from_secs(60))
            .await,
        "{label}: new events after the drain: {:?}, spool {:?}\n{}",
        sink.stats(),
        spool(&mut relay),
        relay.log_text()
    );
    assert_eq!(
        spool(&mut relay).dropped_events,
        dropped,
        "{label}: nothing dropped once drained"
    );

    // Drained, and the disk just under the floor because of the spool's own files (the
    // drained generation keeps what sled took): new events are still taken, none dropped,
    // the space given back (issue #26 §1). sled grows its file a segment at a time, and the
    // fresh generation takes one at its first commit: the case is built where the drained
    // one holds well over a segment (the 32 MiB volume: about 2.4 MiB, 2 MiB segments).
    // On 8 MiB a drained generation is replaced at an acknowledgement once past 3/8 of the
    // 1.25 MiB rotation size, so it never holds more than about a segment: checked.
    assert!(
        eventually(Duration::from_secs(30), || spool(&mut relay).pending_events
            == 0)
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let newest_generation = || {
        let mut dirs: Vec<_> = std::fs::read_dir(disk.mnt.join("spool"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("blocks-"))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        qss_relay::spool::dir_size(dirs.last().unwrap())
    };
    let active = newest_generation();
    if active < 3 << 19 {
        assert!(
            active <= 1 << 20,
            "{label}: a drained generation keeps {active} bytes"
        );
        println!("{label}: the drained generation keeps {active} bytes (given back at the next acknowledgement past 3/8 of the rotation size)");
    } else {
        let floor_bytes = spool(&mut relay).min_free_bytes;
        let reclaims = |m: &str| metric_value(m, "relay_spool_reclaims_total");
        let reclaimed = reclaims(&metrics_text(relay.admin_addr()).await);
        // 16 KiB short of the floor; the drained generation gives back over 100 KiB.
        disk.fill("own-files", disk.free() - (floor_bytes - (16 << 10)));
        assert!(disk.free() < floor_bytes, "{label}: just under the floor");
        let before = sink.stats().distinct;
        send_all(&zoom, &relay, &mut sent, 2_000).await;
        assert!(
            sink.wait_for_distinct(before + 2_000, Duration::from_secs(60))
                .await,
            "{label}: the spool's own drained files refused events: {:?}\n{}",
            spool(&mut relay),
            relay.log_text()
        );
        assert_eq!(
            spool(&mut relay).dropped_events,
            dropped,
            "{label}: dropped with nothing pending\n{}",
            relay.log_text()
        );
        assert!(
            reclaims(&metrics_text(relay.admin_addr()).await) > reclaimed,
            "{label}: the drained generation ({active} bytes) was given back"
        );
        println!("{label}: a drained generation of {active} bytes given back on a disk just under the floor");
        std::fs::remove_file(disk.mnt.join("own-files")).unwrap();
    }

    // Another process fills the disk: new events are refused (nothing pending to drop),
    // counted; it frees the disk: events flow again without a restart.
    let free = disk.free();
    let floor_bytes = spool(&mut relay).min_free_bytes;
    disk.fill("filler", free.saturating_sub(floor_bytes / 2));
    send_all(&zoom, &relay, &mut sent, 2_000).await;
    assert!(
        eventually(Duration::from_secs(20), || spool(&mut relay).dropped_events
            > dropped)
        .await,
        "{label}: events refused on a disk filled by someone else are counted: {:?}",
        spool(&mut relay)
    );
    std::fs::remove_file(disk.mnt.join("filler")).unwrap();
    let before = sink.stats().distinct;
    let dropped = spool(&mut relay).dropped_events;
    send_all(&zoom, &relay, &mut sent, 5_000).await;
    assert!(
        sink.wait_for_distinct(before + 5_000, Duration::from_secs(60))
            .await,
        "{label}: events flow again once space is back: {:?}\n{}",
        spool(&mut relay),
        relay.log_text()
    );
    let r = spool(&mut relay);
    assert_eq!(r.dropped_events, dropped, "{label}");
    alive(&mut relay);

    // Every event not delivered is counted as dropped.
    let counts = sink.sim_counts();
    let lost = (0..sent).filter(|n| !counts.contains_key(n)).count() as u64;
    println!(
        "{label}: floor {} KiB, holds {} KiB; {sent} sent, {} delivered ({} duplicates), {lost} not delivered, {} counted as dropped",
        r.min_free_bytes >> 10,
        holdable >> 10,
        sink.stats().distinct,
        sink.stats().duplicates,
        r.dropped_events
    );
    assert!(
        lost <= r.dropped_events,
        "{label}: {lost} lost, {} counted",
        r.dropped_events
    );
    let (ok, log) = relay.terminate();
    assert!(ok, "{label}: {log}");
    assert!(
        !log.contains("No space left on device") && !log.contains("storage failure"),
        "{label}: sled never hit ENOSPC:\n{log}"
    );
}

/// Old code: "disk full" on an empty 8 MiB disk, every event refused, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_mib_volume_with_the_default_floor() {
    fill_drain_and_recover("8m", None).await;
}

/// Old code: sled hit ENOSPC within seconds of the disk filling and the relay exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_mib_volume_with_a_1_mib_floor() {
    fill_drain_and_recover("8m", Some("1MiB")).await;
}

/// Old code: drained, `pending 0`, 20 MiB on disk, and every new event dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_mib_volume_with_a_12_mib_floor() {
    fill_drain_and_recover("32m", Some("12MiB")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_mib_volume_with_the_default_floor() {
    fill_drain_and_recover("32m", None).await;
}
