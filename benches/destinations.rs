//! What a second destination costs: the real `relay` binary (its own process, so its RSS
//! is its own) shipping QSS frames to LogScale alone, then to LogScale and Sentinel at once
//! (`SENTINEL_SOURCES=webhook,websocket`), in the same run against the same fakes; then a
//! backlog drained to both. Prints results; asserts only that everything arrived.
//!
//! ```text
//! cargo bench --bench destinations              # 300,000 events end to end, 3 runs each; 1,000,000-event drain
//! DEST_EVENTS=N DEST_RUNS=N DRAIN_EVENTS=N cargo bench --bench destinations
//! cargo bench --bench destinations -- e2e       # only the end-to-end comparison
//! cargo bench --bench destinations -- drain     # only the drain to both
//! ```
//!
//! End to end: the fake Zoom is told to send `DEST_EVENTS` frames as fast as the socket
//! takes them; the time runs from that moment to the last event accepted by the last
//! destination. Peak RSS is the kernel's high-water mark (`VmHWM`). CPU per event is the
//! relay process's CPU time (user + system, from `/proc`) from start to the last delivery,
//! divided by the events (each delivered to every destination); the fakes' CPU is this
//! bench process's over the same span (the fake Sentinel counts rows, see
//! `FakeSentinel::start_counting`).
//!
//! Each run also prints every destination's requests and their mean uncompressed size.
//!
//! `BENCH_CPUS=0 cargo bench --bench destinations -- e2e` pins the relay to core 0 and
//! the fakes to the other cores (`taskset`): the relay's rate on one core of its own.

mod common;

use qss_relay::sim::events::FrameFactory;
use qss_relay::sim::logscale::FakeLogScale;
use qss_relay::sim::sentinel::FakeSentinel;
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";

fn main() {
    common::run_scenarios(&[
        ("e2e", || Box::pin(end_to_end())),
        ("drain", || Box::pin(drain())),
    ]);
}

/// The relay settings that add the fake Sentinel, taking QSS too.
fn sentinel_env(sentinel: &FakeSentinel) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = sentinel
        .env_pairs()
        .into_iter()
        .map(|(k, v)| (&*k.leak(), v))
        .collect();
    env.push(("SENTINEL_SOURCES", "webhook,websocket".into()));
    env
}

/// What one run measured.
struct Run {
    secs: f64,
    peak_mib: u64,
    /// CPU seconds of the relay process, start to last delivery.
    relay_cpu: f64,
    /// CPU seconds of the fakes (this process) over the same span.
    fakes_cpu: f64,
    /// Per destination: accepted requests and their uncompressed bytes.
    requests: Vec<(&'static str, u64, u64)>,
}

/// Waits until every destination has `target` events, sampling the relay's RSS.
/// `fakes_cpu_at_start` is this process's CPU time when the relay was started.
async fn run_until(
    pid: u32,
    started: Instant,
    fakes_cpu_at_start: f64,
    mut delivered: impl FnMut() -> Vec<u64>,
    target: u64,
) -> Run {
    let mut peak = 0;
    loop {
        peak = peak.max(common::peak_rss_kib(pid));
        if delivered().iter().all(|d| *d >= target) {
            return Run {
                secs: started.elapsed().as_secs_f64(),
                peak_mib: peak / 1024,
                relay_cpu: common::cpu_secs(pid),
                fakes_cpu: common::cpu_secs(std::process::id()) - fakes_cpu_at_start,
                requests: Vec::new(),
            };
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "too slow: {:?} of {target}",
            delivered()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fake Sentinel: counting rows, or with `DEST_FAKE_SENTINEL=parse` parsing each into
/// a tree and tracking its id as the tests' fake does (to measure what that costs).
async fn fake_sentinel() -> FakeSentinel {
    if std::env::var("DEST_FAKE_SENTINEL").as_deref() == Ok("parse") {
        FakeSentinel::start(false).await.unwrap()
    } else {
        FakeSentinel::start_counting().await.unwrap()
    }
}

/// One end-to-end run: a fresh relay and spool, `events` frames.
async fn one_run(events: u64, with_sentinel: bool) -> Run {
    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let logscale = common::sink(TOKEN, false).await;
    let sentinel = fake_sentinel().await;
    common::pin_fakes_away_from_relay();
    let fakes_cpu = common::cpu_secs(std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let extra = if with_sentinel {
        sentinel_env(&sentinel)
    } else {
        Vec::new()
    };
    let child = common::spawn_relay(&zoom, &logscale, &dir.path().join("spool"), &extra);
    assert!(
        zoom.wait_until(Duration::from_secs(20), |z| z.connections == 1)
            .await
    );
    let started = Instant::now();
    zoom.send(events);
    let delivered = || {
        let mut d = vec![logscale.stats().events];
        if with_sentinel {
            d.push(sentinel.stats().events);
        }
        d
    };
    let mut result = run_until(child.id(), started, fakes_cpu, delivered, events).await;
    common::stop_relay(child);
    let s = logscale.stats();
    result
        .requests
        .push(("LogScale", s.accepted_requests, s.bytes));
    if with_sentinel {
        let s = sentinel.stats();
        result
            .requests
            .push(("Sentinel", s.accepted_requests, s.bytes));
    }
    result
}

/// "LogScale 310 requests of 1.52 MB" for each destination: how full the requests were
/// (uncompressed; Sentinel's limit is 1 MB per request and 12,000 requests/min per DCR).
fn request_sizes(r: &Run) -> String {
    r.requests
        .iter()
        .map(|(name, n, bytes)| {
            format!(
                "{name} {n} requests of {:.2} MB",
                *bytes as f64 / (*n).max(1) as f64 / 1e6
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn range(xs: &[f64]) -> (f64, f64) {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(0.0, f64::max);
    (lo, hi)
}

async fn end_to_end() {
    let events: u64 = common::env_or("DEST_EVENTS", 300_000);
    let runs: usize = common::env_or("DEST_RUNS", 3);
    let avg = FrameFactory::websocket().average_len();
    let (mut alone, mut both) = (Vec::new(), Vec::new());
    let us = |cpu: f64| cpu * 1e6 / events as f64;
    // Interleaved, so that a slow moment of the machine does not favour one side.
    for run in 0..runs {
        for (with_sentinel, label, results) in [
            (false, "LogScale alone     ", &mut alone),
            (true, "LogScale + Sentinel", &mut both),
        ] {
            let r = one_run(events, with_sentinel).await;
            println!(
                "  run {run}: {label} {:>7.0} events/s ({:>5.1} MB/s), relay CPU {:.2} µs/event ({:.2} cores), fakes {:.2} µs/event, peak RSS {} MiB; {}",
                events as f64 / r.secs,
                events as f64 * avg as f64 / r.secs / 1e6,
                us(r.relay_cpu),
                r.relay_cpu / r.secs,
                us(r.fakes_cpu),
                r.peak_mib,
                request_sizes(&r)
            );
            results.push(r);
        }
    }
    let rates = |v: &[Run]| v.iter().map(|r| events as f64 / r.secs).collect::<Vec<_>>();
    let cpu = |v: &[Run]| v.iter().map(|r| us(r.relay_cpu)).collect::<Vec<_>>();
    let fakes = |v: &[Run]| v.iter().map(|r| us(r.fakes_cpu)).collect::<Vec<_>>();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let peak = |v: &[Run]| v.iter().map(|r| r.peak_mib).max().unwrap_or(0);
    let line = |name: &str, v: &[Run]| {
        let (r_lo, r_hi) = range(&rates(v));
        let (c_lo, c_hi) = range(&cpu(v));
        let (f_lo, f_hi) = range(&fakes(v));
        format!("  {name} {r_lo:.0}–{r_hi:.0} events/s, relay CPU {c_lo:.2}–{c_hi:.2} µs/event, fakes {f_lo:.2}–{f_hi:.2} µs/event, peak RSS {} MiB", peak(v))
    };
    println!(
        "{events} events end to end ({avg}-byte frames), {runs} runs each, relay on {}:\n{}\n{}\n  ratio (both / alone): rate {:.2}, relay CPU per event {:.2}, peak RSS {:.2}",
        common::bench_cpus().map_or("any core".to_string(), |c| format!("core(s) {c}")),
        line("LogScale alone:     ", &alone),
        line("LogScale + Sentinel:", &both),
        mean(&rates(&both)) / mean(&rates(&alone)),
        mean(&cpu(&both)) / mean(&cpu(&alone)),
        peak(&both) as f64 / peak(&alone).max(1) as f64,
    );
}

/// A backlog already in the spool (as an outage of both would leave it) drained to both.
async fn drain() {
    let events: u64 = common::env_or("DRAIN_EVENTS", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    common::fill_backlog(&spool_dir, events);
    let disk_bytes = common::du(&spool_dir);
    let on_disk = disk_bytes / (1024 * 1024);
    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let logscale: FakeLogScale = common::sink(TOKEN, false).await;
    let sentinel = fake_sentinel().await;
    common::pin_fakes_away_from_relay();
    let fakes_cpu = common::cpu_secs(std::process::id());
    let started = Instant::now();
    let child = common::spawn_relay(&zoom, &logscale, &spool_dir, &sentinel_env(&sentinel));
    let mut first_done = None;
    let run = run_until(
        child.id(),
        started,
        fakes_cpu,
        || {
            let d = vec![logscale.stats().events, sentinel.stats().events];
            if first_done.is_none() && d.iter().any(|x| *x >= events) {
                first_done = Some((started.elapsed().as_secs_f64(), d[0] >= events));
            }
            d
        },
        events,
    )
    .await;
    common::stop_relay(child);
    let avg = FrameFactory::websocket().average_len();
    let secs = run.secs;
    let (first_secs, logscale_first) = first_done.unwrap_or((secs, true));
    println!(
        "drained a {events}-event backlog ({avg}-byte frames, {on_disk} MiB on disk, {} bytes per event) to LogScale and Sentinel in {secs:.1} s: {:.0} events/s to each ({:.0} MB/s of frames); {} finished first, after {first_secs:.1} s; relay CPU {:.2} µs/event, fakes {:.2} µs/event; peak RSS {} MiB",
        disk_bytes / events.max(1),
        events as f64 / secs,
        events as f64 * avg as f64 / secs / 1e6,
        if logscale_first { "LogScale" } else { "Sentinel" },
        run.relay_cpu * 1e6 / events as f64,
        run.fakes_cpu * 1e6 / events as f64,
        run.peak_mib,
    );
}
