//! Soak: ten times `RELAY_SPOOL_MAX_BYTES` through the spool of the real `relay` binary,
//! with LogScale down or slow for stretches, recording disk use and memory every second.
//! Disk use must come back near its baseline once the backlog drains; memory must stay
//! flat. Prints a CSV time series and a summary; asserts nothing.
//!
//! `cargo bench --bench soak` (about three minutes; SOAK_MAX_BYTES and SOAK_RATE change
//! the cap, default 64 MiB, and the event rate, default 50,000/s).

mod common;

use qss_relay::admin::{operator, InspectReport, OperatorClient};
use qss_relay::sim::logscale::Mode;
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use std::time::{Duration, Instant};

const TOKEN: &str = "soak-token";

fn main() {
    common::run_scenarios(&[("soak", || Box::pin(soak()))]);
}

async fn soak() {
    let max_bytes: u64 = common::env_or("SOAK_MAX_BYTES", 64 << 20);
    let rate: f64 = common::env_or("SOAK_RATE", 50_000.0);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let sink = common::sink(TOKEN, true).await;
    let admin: std::net::SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut child = common::spawn_relay(
        &zoom,
        &sink,
        &spool_dir,
        &[
            ("RELAY_SPOOL_MAX_BYTES", max_bytes.to_string()),
            ("RELAY_ADMIN_ADDR", admin.to_string()),
            ("RUST_LOG", "error".to_string()),
        ],
    );
    let pid = child.id();
    let client = OperatorClient::new(&operator::socket_path(&spool_dir));
    let inspect = || async { client.get::<InspectReport>("/spool/inspect").await.ok() };
    while inspect().await.is_none() {
        assert!(child.try_wait().unwrap().is_none(), "relay exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline_disk = common::du(&spool_dir);
    let baseline_rss = common::rss_kib(pid) / 1024;
    println!("t_s,phase,disk_bytes,rss_mib,pending_events,stored_bytes,dropped_events,delivered");

    // Phases of 10 s, cycling until ten times the cap went through the spool.
    let phases = [
        ("up", Mode::Accept),
        (
            "down",
            Mode::Status {
                code: 503,
                retry_after: None,
            },
        ),
        ("slow", Mode::Slow(2000)),
        (
            "down",
            Mode::Status {
                code: 503,
                retry_after: None,
            },
        ),
    ];
    let started = Instant::now();
    // One CSV row: (t_s, phase, disk bytes, RSS MiB, pending, stored, dropped, delivered).
    let sample = |phase: &'static str, r: &InspectReport| {
        let row = (
            started.elapsed().as_secs(),
            phase,
            common::du(&spool_dir),
            common::rss_kib(pid) / 1024,
            r.spool.pending_events,
            r.spool.stored_bytes,
            r.spool.dropped_events,
            sink.stats().events,
        );
        println!(
            "{},{},{},{},{},{},{},{}",
            row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7
        );
        row
    };
    let mut through: u64;
    let mut samples = Vec::new();
    zoom.set_rate(Some(rate));
    let mut phase = 0;
    'outer: loop {
        let (name, mode) = &phases[phase % phases.len()];
        sink.set_mode(mode.clone());
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(r) = inspect().await else { continue };
            // Stored bytes that went through: the spool's stored bytes are ~ events × ratio.
            let sent = zoom.stats().events_sent;
            through = if r.spool.next_seq > 0 {
                sent * r.spool.stored_bytes.max(1) / r.spool.pending_events.max(1)
            } else {
                0
            };
            samples.push(sample(name, &r));
            if through >= 10 * max_bytes && phase >= 4 {
                break 'outer;
            }
        }
        phase += 1;
    }
    zoom.set_rate(None);
    sink.set_mode(Mode::Accept);
    let drain_started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(r) = inspect().await else { continue };
        samples.push(sample("drain", &r));
        if r.spool.pending_events == 0 || drain_started.elapsed() > Duration::from_secs(300) {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let final_disk = common::du(&spool_dir);
    let final_rss = common::rss_kib(pid) / 1024;
    let peak_rss = common::peak_rss_kib(pid) / 1024;
    let r = inspect().await.unwrap();
    let peak_disk = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let (min_rss, max_rss) = (
        samples.iter().map(|s| s.3).min().unwrap_or(0),
        samples.iter().map(|s| s.3).max().unwrap_or(0),
    );
    println!();
    println!("soak: cap {} MiB, {} events sent at {rate:.0}/s, ~{} MiB of stored blocks through the spool ({:.1}x the cap)", max_bytes >> 20, zoom.stats().events_sent, through >> 20, through as f64 / max_bytes as f64);
    println!(
        "  disk: baseline {} MiB, peak {} MiB, after the drain {} MiB",
        baseline_disk >> 20,
        peak_disk >> 20,
        final_disk >> 20
    );
    println!("  RSS: at start {baseline_rss} MiB, min {min_rss} MiB, max {max_rss} MiB (high-water mark {peak_rss} MiB), after the drain {final_rss} MiB");
    let st = sink.stats();
    let sent = zoom.stats().events_sent;
    println!(
        "  delivered {} distinct events ({} duplicates); dropped at the cap (drop-oldest) {}; pending at the end {}; sent − delivered − dropped = {}",
        st.distinct,
        st.duplicates,
        r.spool.dropped_events,
        r.spool.pending_events,
        sent as i64 - st.distinct as i64 - r.spool.dropped_events as i64
    );
    common::stop_relay(child);
}
