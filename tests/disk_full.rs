//! A full disk, for real: the spool on a small tmpfs mounted by the test, LogScale down
//! until the file system fills, then back. The relay must keep working (drop the oldest
//! events, counted, or refuse new ones with 503), never wedge on "No space left on
//! device", deliver what it kept, and take events normally again once space is back,
//! without a restart.
//!
//! Needs root to mount the tmpfs (CI runs as root); otherwise the tests say so and pass as
//! skipped.

mod common;

use common::tmpfs::Tmpfs;
use common::*;
use qss_relay::sim::logscale::{FakeLogScale, Mode, SinkOptions};
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn env_on(
    dir: &Path,
    spool: &Path,
    zoom: &FakeZoom,
    sink: &FakeLogScale,
) -> BTreeMap<String, String> {
    let mut env = base_env(dir, &sink.base_url());
    env.extend(zoom.env_pairs());
    env.insert("RELAY_SPOOL_DIR".into(), spool.display().to_string());
    env.insert("RELAY_SPOOL_MIN_FREE_BYTES".into(), "40MiB".into());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filled_during_an_outage_drops_the_oldest_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(dir.path(), "200m") {
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
    sink.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    // The default cap (10 GiB) is far larger than this disk: the disk is the limit.
    let env = env_on(dir.path(), &disk.mnt.join("spool"), &zoom, &sink);
    let relay = Relay::start(dir.path(), &env);
    let started = Instant::now();

    // Fill the disk: batches of events until the relay says the disk is full and has
    // dropped events to make room.
    let mut sent = 0u64;
    let mut full_seen = false;
    while sent < 3_000_000 {
        zoom.send(100_000);
        sent += 100_000;
        assert!(
            zoom.wait_until(Duration::from_secs(60), |s| s.events_sent == sent)
                .await,
            "the relay keeps taking events from Zoom: {:?}\n{}",
            zoom.stats(),
            relay.log_text()
        );
        let r = relay.inspect();
        if r.spool.dropped_events > 0 && r.spool.disk_full {
            full_seen = true;
            break;
        }
    }
    assert!(full_seen, "{sent} events did not fill a 200 MiB disk");
    // Keep going a while past full: the relay must keep taking events.
    zoom.send(200_000);
    sent += 200_000;
    assert!(
        zoom.wait_until(Duration::from_secs(60), |s| s.events_sent == sent)
            .await,
        "still taking events on a full disk"
    );
    assert!(
        eventually(Duration::from_secs(20), || relay
            .inspect()
            .spool
            .pending_events
            + relay.inspect().spool.dropped_events
            >= sent)
        .await,
        "every event is pending or counted as dropped: {:?}",
        relay.inspect().spool
    );
    let full = relay.inspect();
    println!(
        "filled: {sent} events sent, {} pending, {} dropped, {} free of the disk, {} generations, {:.1} s",
        full.spool.pending_events,
        full.spool.dropped_events,
        full.spool.disk_free_bytes.unwrap_or(0),
        full.spool.generations,
        started.elapsed().as_secs_f64()
    );
    assert!(full.spool.disk_full, "inspect says the disk is full");
    assert!(full.spool.disk_free_bytes.is_some());
    let metrics = metrics_text(relay.admin_addr()).await;
    let dropped_metric = metric_value(
        &metrics,
        "relay_events_dropped_total{reason=\"disk_full_oldest\"}",
    );
    assert!(dropped_metric > 0.0, "{metrics}");
    assert_eq!(metric_value(&metrics, "relay_spool_disk_full"), 1.0);
    // The human summary says why and what to do.
    let text = command(&env).args(["spool", "inspect"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("DISK FULL"), "{text}");
    // `relay check` asks the running relay and fails the spool check, with the fix (the
    // Zoom check is left out: it would open a second WebSocket).
    let mut check_env = env.clone();
    check_env.remove("ZOOM_WSS_URL");
    let out = command(&check_env).arg("check").output().unwrap();
    let checked = String::from_utf8_lossy(&out.stdout);
    let line = checked
        .lines()
        .find(|l| l.starts_with("✗ spool disk: disk full"))
        .unwrap_or_else(|| panic!("relay check says the disk is full:\n{checked}"));
    assert!(line.contains("free on the file system"), "{line}");

    // LogScale comes back: everything kept is delivered, and the disk empties.
    let back = Instant::now();
    sink.set_mode(Mode::Accept);
    assert!(
        drained(Duration::from_secs(60), || relay
            .inspect()
            .spool
            .pending_events)
        .await,
        "the backlog drains (it stopped going down for 60 s): {:?}\n{}",
        relay.inspect().spool,
        relay.log_text()
    );
    let drained = back.elapsed();
    assert!(
        eventually(Duration::from_secs(60), || !relay.inspect().spool.disk_full).await,
        "free space is back: {:?}",
        relay.inspect().spool
    );
    let recovered = back.elapsed();

    // And it takes events normally again, without a restart.
    let before = sink.stats().distinct;
    zoom.send(10_000);
    sent += 10_000;
    assert!(
        sink.wait_for_distinct(before + 10_000, Duration::from_secs(60))
            .await,
        "new events flow after the recovery: {:?}",
        sink.stats()
    );
    let r = relay.inspect();
    let counts = sink.sim_counts();
    let lost = (0..sent).filter(|n| !counts.contains_key(n)).count() as u64;
    println!(
        "recovery: backlog drained {:.1} s after LogScale came back, the disk no longer the limit after {:.1} s; {} delivered ({} duplicates), {} not delivered, {} counted as dropped",
        drained.as_secs_f64(),
        recovered.as_secs_f64(),
        sink.stats().distinct,
        sink.stats().duplicates,
        lost,
        r.spool.dropped_events
    );
    assert!(
        lost <= r.spool.dropped_events,
        "{lost} events missing but only {} counted as dropped",
        r.spool.dropped_events
    );
    let last_10k_lost = (sent - 10_000..sent)
        .filter(|n| !counts.contains_key(n))
        .count();
    assert_eq!(
        last_10k_lost, 0,
        "events after the recovery are all delivered"
    );

    // The emergency reserve, on the real file system: in place while there is room; when
    // another process leaves less free than its size, released at the next commit (so
    // deliveries can still be recorded); back once the space is.
    let reserve = disk.mnt.join("spool").join(qss_relay::spool::BALLAST_FILE);
    assert!(relay.inspect().spool.reserve_present && reserve.is_file());
    // (The spool first gives back its drained generation, which may lift the free space
    // above the reserve's size again: the disk is topped up until the reserve goes.)
    let mut fillers = 0;
    while relay.inspect().spool.reserve_present && fillers < 5 {
        let free = disk.free();
        if free > 8 << 20 {
            fillers += 1;
            disk.fill(&format!("filler-{fillers}"), free - (8 << 20));
        }
        zoom.send(1_000);
        sent += 1_000;
        eventually(Duration::from_secs(5), || {
            !relay.inspect().spool.reserve_present
        })
        .await;
    }
    assert!(
        !relay.inspect().spool.reserve_present,
        "the reserve is released on a nearly full disk ({} free): {:?}\n{}",
        disk.free(),
        relay.inspect().spool,
        relay
            .log_text()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!reserve.exists(), "its file is gone");
    for n in 1..=fillers {
        std::fs::remove_file(disk.mnt.join(format!("filler-{n}"))).unwrap();
    }
    let before = sink.stats().distinct;
    zoom.send(1_000);
    sent += 1_000;
    assert!(
        eventually(Duration::from_secs(20), || relay
            .inspect()
            .spool
            .reserve_present)
        .await,
        "the reserve is back once there is room: {:?}",
        relay.inspect().spool
    );
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&reserve).unwrap();
        assert!(
            m.len() == qss_relay::spool::BALLAST_BYTES && m.blocks() * 512 >= m.len(),
            "allocated, not sparse"
        );
    }
    assert!(
        sink.wait_for_distinct(before + 1_000, Duration::from_secs(60))
            .await
    );
    let _ = sent;

    let (ok, log) = relay.terminate();
    assert!(ok, "{log}");
    let said = |s: &str| log.lines().filter(|l| l.contains(s)).count();
    assert!(
        said("released the emergency reserve") >= 1 && said("emergency reserve in place") >= 2,
        "the log says the reserve went and came back: {} and {} lines",
        said("released the emergency reserve"),
        said("emergency reserve in place")
    );
    assert!(
        !log.contains("No space left on device"),
        "sled never hit ENOSPC:\n{log}"
    );
    let disk_lines = log.lines().filter(|l| l.contains("disk full (")).count();
    let secs = started.elapsed().as_secs() as usize;
    assert!(
        disk_lines >= 1 && disk_lines <= secs / 10 + 2,
        "disk-full errors are logged at most once per 10 s: {disk_lines} lines in {secs} s"
    );
}
