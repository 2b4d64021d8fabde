//! The figures criterion does not measure: latency at a steady rate, and memory with a
//! large backlog. Prints results; asserts nothing.
//!
//! ```text
//! cargo bench --bench targets -- latency      # p50/p99/max receive→acknowledged at 10,000 events/s, 30 s
//! cargo bench --bench targets -- backlog      # RSS of the relay holding then draining 5,000,000 events
//! cargo bench --bench targets -- throughput   # steady-state end to end, fake Zoom at full speed, 20 s
//!                                             # (THROUGHPUT_SECS=N, THROUGHPUT_RATE=events/s)
//! cargo bench --bench targets -- webhook      # webhook 200 latency (durable: fdatasync'd), 16 clients, 20,000 posts
//! cargo bench --bench targets -- stages       # where the relay's CPU goes per event, by stage (perf; not in "all")
//! cargo bench --bench targets                 # the first four
//! ```
//!
//! Latency is measured exactly, per event: from the moment the fake Zoom flushed it to
//! its WebSocket to the moment the fake LogScale accepted it, with the relay's default
//! settings (500 ms linger). The backlog run uses the real `relay` binary (its own
//! process, so its RSS is its own), a spool filled beforehand, and LogScale down for 20 s.

mod common;

use qss_relay::config::Config;
use qss_relay::metrics::Metrics;
use qss_relay::sim::events::FrameFactory;
use qss_relay::sim::logscale::Mode;
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";

fn main() {
    common::run_scenarios(&[
        ("latency", || Box::pin(latency())),
        ("backlog", || Box::pin(backlog())),
        ("throughput", || Box::pin(throughput())),
        ("webhook", || Box::pin(webhook())),
        ("stages", || Box::pin(stages())),
    ]);
}

/// Signed webhooks from 16 concurrent clients against the real binary with LogScale up:
/// each 200 means the body is fdatasync'd in the spool. Reports the rate and the latency
/// of the answer (p50, p99), which is what the durability costs a sender.
async fn webhook() {
    use qss_relay::net::http::{Body, HttpClient};
    let (clients, total) = (16u64, common::env_or("WEBHOOK_POSTS", 20_000u64));
    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let sink = common::sink(TOKEN, false).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "bench-webhook-secret";
    let child = common::spawn_relay(
        &zoom,
        &sink,
        &dir.path().join("spool"),
        &[
            ("ZOOM_WSS_URL", String::new()),
            ("ZOOM_WEBHOOK_SECRET_TOKEN", secret.to_string()),
            ("RELAY_WEBHOOK_ADDR", format!("127.0.0.1:{port}")),
        ],
    );
    let client = HttpClient::new(None).unwrap();
    let bodies = Arc::new(FrameFactory::webhook());
    let average_len = bodies.average_len();
    let post = move |n: u64| {
        let (client, body) = (client.clone(), bodies.frame(n));
        async move {
            let ts = (qss_relay::time::now_ms() / 1000).to_string();
            let req = hyper::Request::post(format!("http://127.0.0.1:{port}/zoom/webhook"))
                .header(
                    "x-zm-signature",
                    qss_relay::source::signature::sign(secret.as_bytes(), &ts, &body),
                )
                .header("x-zm-request-timestamp", ts)
                .body(Body::new(body))
                .unwrap();
            let started = Instant::now();
            let ok = client
                .send(req, Duration::from_secs(30))
                .await
                .is_ok_and(|r| r.status == 200);
            (ok, started.elapsed().as_secs_f64())
        }
    };
    // Wait for the endpoint.
    while !post(total + 1).await.0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let post = post.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = c;
            while n < total {
                let (ok, took) = post(n).await;
                assert!(ok, "webhook {n} answered 200");
                lat.push(took);
                n += clients;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    common::stop_relay(child);
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "webhooks: {total} signed posts from {clients} clients in {secs:.1} s ({:.0} /s, {} B average body), answered 200 once fdatasync'd: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        total as f64 / secs,
        average_len,
        percentile(&lat, 0.5) * 1000.0,
        percentile(&lat, 0.99) * 1000.0,
        lat.last().unwrap() * 1000.0
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency() {
    let rate = 10_000.0;
    let secs = 30;
    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let sink = common::sink(TOKEN, true).await;
    let dir = tempfile::tempdir().unwrap();
    let env = qss_relay::sim::relay_env(&zoom, &sink, &dir.path().join("spool"));
    let relay =
        qss_relay::pipeline::start(&Config::from_env(&env).unwrap(), Arc::new(Metrics::new()))
            .await
            .unwrap();
    assert!(
        zoom.wait_until(Duration::from_secs(10), |z| z.connections == 1)
            .await
    );
    zoom.record_send_times();
    zoom.set_rate(Some(rate));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    zoom.set_rate(None);
    let sent = zoom.stats().events_sent;
    assert!(sink.wait_for_distinct(sent, Duration::from_secs(60)).await);
    relay.stop().await;
    let sends = zoom.send_times();
    let arrivals = sink.arrival_times();
    let mut lat: Vec<f64> = sends
        .iter()
        .filter_map(|(n, t)| {
            arrivals
                .get(n)
                .map(|a| a.saturating_duration_since(*t).as_secs_f64())
        })
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "latency at {rate:.0} events/s for {secs} s ({} events, default settings): p50 {:.0} ms, p99 {:.0} ms, p99.9 {:.0} ms, max {:.0} ms",
        lat.len(),
        percentile(&lat, 0.5) * 1000.0,
        percentile(&lat, 0.99) * 1000.0,
        percentile(&lat, 0.999) * 1000.0,
        lat.last().unwrap() * 1000.0
    );
}

async fn backlog() {
    let events: u64 = common::env_or("BACKLOG_EVENTS", 5_000_000);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let sink = common::sink(TOKEN, false).await;
    sink.set_mode(Mode::Status {
        code: 503,
        retry_after: Some(1),
    });

    // The backlog an outage would leave: filled through the spool's own commit path.
    let started = Instant::now();
    {
        let st = common::fill_backlog(&spool_dir, events);
        println!(
            "filled {} events ({:.1} GB of frames) in {:.1} s: {} bytes stored, {} on disk",
            st.pending_events,
            st.pending_bytes as f64 / 1e9,
            started.elapsed().as_secs_f64(),
            st.stored_bytes,
            st.disk_bytes
        );
    }

    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let child = common::spawn_relay(&zoom, &sink, &spool_dir, &[]);
    let pid = child.id();
    let mut peak_hold = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak_hold = peak_hold.max(common::rss_kib(pid));
    }
    println!(
        "RSS holding the {events}-event backlog with LogScale down for 20 s: peak {} MiB (high-water mark {} MiB)",
        peak_hold / 1024,
        common::peak_rss_kib(pid) / 1024
    );
    sink.set_mode(Mode::Accept);
    let drain_start = Instant::now();
    let mut peak_drain = 0;
    let mut samples = Vec::new();
    while sink.stats().events < events {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = common::rss_kib(pid);
        peak_drain = peak_drain.max(rss);
        samples.push((
            drain_start.elapsed().as_secs(),
            rss / 1024,
            sink.stats().events,
        ));
        assert!(
            drain_start.elapsed() < Duration::from_secs(900),
            "drain too slow: {:?}",
            sink.stats()
        );
    }
    let secs = drain_start.elapsed().as_secs_f64();
    println!(
        "drained {events} events in {secs:.1} s: {:.0} events/s ({:.0} MB/s of frames); RSS peak while draining {} MiB (high-water mark of the whole run {} MiB)",
        events as f64 / secs,
        events as f64 * FrameFactory::websocket().average_len() as f64 / secs / 1e6,
        peak_drain / 1024,
        common::peak_rss_kib(pid) / 1024
    );
    for (t, rss, delivered) in samples.iter().step_by((samples.len() / 10).max(1)) {
        println!("  t={t:>3}s rss={rss} MiB delivered={delivered}");
    }
    common::stop_relay(child);
}

/// The relay (its own process, a fresh spool) connected to a fake Zoom that sends nothing
/// yet, and a fake LogScale that accepts.
async fn connected_relay() -> (
    FakeZoom,
    qss_relay::sim::logscale::FakeLogScale,
    tempfile::TempDir,
    std::process::Child,
) {
    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let sink = common::sink(TOKEN, false).await;
    let dir = tempfile::tempdir().unwrap();
    let child = common::spawn_relay(&zoom, &sink, &dir.path().join("spool"), &[]);
    assert!(
        zoom.wait_until(Duration::from_secs(20), |z| z.connections == 1)
            .await
    );
    (zoom, sink, dir, child)
}

/// End to end at steady state: the fake Zoom sends as fast as the relay takes frames; the
/// rate is measured over the middle 20 s of a 30 s run (no start-up, no final linger).
async fn throughput() {
    let (zoom, sink, dir, child) = connected_relay().await;
    // Keep plenty queued: the fake sends as fast as the socket takes, or at
    // THROUGHPUT_RATE events/s when set (memory at a given rate).
    match std::env::var("THROUGHPUT_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(rate) => zoom.set_rate(Some(rate)),
        None => zoom.send(500_000_000),
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let measure_secs: u64 = common::env_or("THROUGHPUT_SECS", 20);
    let avg = FrameFactory::websocket().average_len() as f64;
    let (t0, d0, r0) = (
        Instant::now(),
        sink.stats().events,
        zoom.stats().events_sent,
    );
    let (mut last_t, mut last_d, mut last_r) = (t0, d0, r0);
    let mut max_rss = 0;
    // A line every 5 s, so a trend in memory or rates shows.
    while t0.elapsed() < Duration::from_secs(measure_secs) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (now, d, r) = (
            Instant::now(),
            sink.stats().events,
            zoom.stats().events_sent,
        );
        let dt = (now - last_t).as_secs_f64();
        let rss = common::rss_kib(child.id()) / 1024;
        max_rss = max_rss.max(rss);
        println!(
            "  t={:>4.0}s received {:>7.0}/s delivered {:>7.0}/s backlog {:>9} RSS {:>4} MiB spool disk {:>5} MiB",
            (now - t0).as_secs_f64(),
            (r - last_r) as f64 / dt,
            (d - last_d) as f64 / dt,
            r - d,
            rss,
            common::du(&dir.path().join("spool")) >> 20
        );
        (last_t, last_d, last_r) = (now, d, r);
    }
    let (secs, delivered, received) = (
        t0.elapsed().as_secs_f64(),
        sink.stats().events - d0,
        zoom.stats().events_sent - r0,
    );
    println!(
        "steady state over {secs:.0} s ({avg:.0}-byte frames): delivered {:.0} events/s ({:.0} MB/s of frames), received {:.0} events/s ({:.0} MB/s); relay RSS max of the samples {max_rss} MiB, high-water mark {} MiB",
        delivered as f64 / secs,
        delivered as f64 * avg / secs / 1e6,
        received as f64 / secs,
        received as f64 * avg / secs / 1e6,
        common::peak_rss_kib(child.id()) / 1024,
    );
    common::stop_relay(child);
}

/// The cost per event of each stage: the relay (its own process) relays `STAGES_EVENTS`
/// frames (default 1,000,000) from the fake Zoom, sent as fast as the socket takes them,
/// to the fake LogScale, while `perf record` samples its threads (CPU clock, DWARF call
/// stacks); `benches/tools/stages.py` then gives each sample to the innermost stage its
/// stack names. Needs `perf` (Debian's linux-perf) and python3; says so and stops if
/// either is missing. The profile slows the relay: the rate printed is the profiled one.
async fn stages() {
    let have = |cmd: &str| {
        std::process::Command::new(cmd)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("perf") || !have("python3") {
        println!("stages: needs perf and python3 on PATH; skipped");
        return;
    }
    let events: u64 = common::env_or("STAGES_EVENTS", 1_000_000);
    let freq: u32 = common::env_or("STAGES_FREQ", 499);
    let (zoom, sink, dir, child) = connected_relay().await;
    // STAGES_PERF_DATA keeps the profile for `perf report`.
    let data = std::env::var_os("STAGES_PERF_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("relay.perf"));
    let mut perf = std::process::Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", &freq.to_string()])
        .args([
            "--call-graph",
            "dwarf,16384",
            "-p",
            &child.id().to_string(),
            "-o",
        ])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("perf starts");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    zoom.send(events);
    while sink.stats().events < events {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(started.elapsed() < Duration::from_secs(600), "too slow");
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
    let _ = perf.wait();
    common::stop_relay(child);
    let avg = FrameFactory::websocket().average_len();
    println!(
        "stages: {events} events ({avg}-byte frames) in {secs:.1} s under the profiler: {:.0} events/s",
        events as f64 / secs
    );
    let mut script = std::process::Command::new("perf")
        .args(["script", "--no-inline", "-F", "tid,ip,sym", "-i"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("perf script starts");
    let table = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/tools/stages.py"
        ))
        .arg(events.to_string())
        .arg(format!("{secs:.3}"))
        .env("PERF_FREQ", freq.to_string())
        .stdin(script.stdout.take().expect("piped"))
        .output()
        .expect("python3 runs");
    let _ = script.wait();
    print!("{}", String::from_utf8_lossy(&table.stdout));
    eprint!("{}", String::from_utf8_lossy(&table.stderr));
}
