//! `relay demo`: the real pipeline against a simulated Zoom and LogScale, in one process.
//!
//! The simulated Zoom streams realistic QSS events of every kind at `--rate`; the relay
//! receives them over a real WebSocket, spools them in a real sled directory and ships
//! them over HTTP to a fake LogScale. A third of the way in, the fake LogScale starts
//! answering 503 for a while: the spool fills, then drains. At the end: received,
//! delivered, lost (must be 0) and duplicates.

use super::format;
use crate::config::Config;
use crate::metrics::{label, Metrics};
use crate::pipeline;
use crate::sim::logscale::{FakeLogScale, Mode, SinkOptions};
use crate::sim::zoom::{FakeZoom, ZoomOptions};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Events per second from the simulated Zoom.
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// How long to stream, in seconds (the outage takes the middle quarter).
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Spool directory (default: a temporary directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
}

pub(super) async fn demo(args: DemoArgs) -> ExitCode {
    // Quiet by default: the progress display is the show. RUST_LOG=info shows the relay's logs.
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: single-threaded at this point of the demo's start (nothing else reads env).
        unsafe { std::env::set_var("RUST_LOG", "off") };
    }
    crate::logging::init(crate::config::LogFormat::Text);
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: DemoArgs) -> Result<ExitCode, String> {
    let token = "demo-ingest-token";
    let sink = FakeLogScale::start(
        token,
        SinkOptions {
            keep_events: false,
            track_ids: true,
        },
    )
    .await
    .map_err(|e| format!("cannot start the simulated LogScale: {e}"))?;
    let zoom = FakeZoom::start(ZoomOptions::default())
        .await
        .map_err(|e| format!("cannot start the simulated Zoom: {e}"))?;
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let spool_dir = args
        .spool_dir
        .clone()
        .unwrap_or_else(|| tmp.path().join("spool"));

    let mut env = crate::sim::relay_env(&zoom, &sink, &spool_dir);
    env.set("LOGSCALE_REPOSITORY", "zoom-demo");
    env.set("RELAY_SHUTDOWN_TIMEOUT_SECS", "5");
    let config = Config::from_env(&env).map_err(|p| p.to_string())?;
    let metrics = Arc::new(Metrics::new());
    let relay = pipeline::start(&config, metrics.clone())
        .await
        .map_err(|e| e.to_string())?;

    let tty = std::io::stdout().is_terminal();
    println!(
        "qss-relay demo: simulated Zoom → relay (spool at {}) → simulated LogScale",
        spool_dir.display()
    );
    println!(
        "streaming {} events/s for {} s; the simulated LogScale goes down from {} s to {} s",
        args.rate,
        args.duration,
        args.duration * 35 / 100,
        args.duration * 60 / 100
    );
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("valid template"),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });

    zoom.set_rate(Some(f64::from(args.rate)));
    let started = Instant::now();
    let duration = Duration::from_secs(args.duration);
    let (down_at, up_at) = (duration * 35 / 100, duration * 60 / 100);
    let mut down = false;
    let mut last_delivered = 0u64;
    let mut last_tick = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(if tty { 250 } else { 1000 }));
    let mut plain_every = 0u32;
    let received = || {
        metrics
            .events_received
            .get_or_create(&label("source", "websocket"))
            .get()
    };
    while started.elapsed() < duration {
        tick.tick().await;
        let t = started.elapsed();
        if !down && t >= down_at && t < up_at {
            sink.set_mode(Mode::Status {
                code: 503,
                retry_after: None,
            });
            down = true;
            line(
                &bar,
                "LogScale is DOWN (answering 503): the relay keeps everything in its spool",
            );
        } else if down && t >= up_at {
            sink.set_mode(Mode::Accept);
            down = false;
            line(&bar, "LogScale is back: the spool drains");
        }
        let delivered = sink.stats().distinct;
        let rate = (delivered - last_delivered.min(delivered)) as f64
            / last_tick.elapsed().as_secs_f64().max(0.001);
        last_delivered = delivered;
        last_tick = Instant::now();
        let pending = relay.spool.stats().pending_events;
        let msg = format!(
            "received {:>9}  pending in spool {:>8}  delivered {:>9}  ({:>6.0} events/s){}",
            format::count(received()),
            format::count(pending),
            format::count(delivered),
            rate,
            if down { "  [LogScale down]" } else { "" }
        );
        match &bar {
            Some(b) => b.set_message(msg),
            None => {
                plain_every += 1;
                if plain_every.is_multiple_of(2) {
                    println!("{:>5.1}s {msg}", t.as_secs_f64());
                }
            }
        }
    }
    zoom.set_rate(None);
    if down {
        sink.set_mode(Mode::Accept);
    }
    line(
        &bar,
        "stopped the simulated Zoom; waiting for the spool to drain",
    );
    // Everything Zoom was told to send must reach the relay, then LogScale. Above the
    // relay's capacity the fake is still writing its queue when the rate stops, and the
    // spool holds a backlog: wait while either makes progress.
    let mut progress = (0, 0);
    let mut last_progress = Instant::now();
    let sent = loop {
        let z = zoom.stats();
        let delivered = sink.stats().distinct;
        if z.events_sent >= z.events_queued
            && received() >= z.events_sent
            && delivered >= z.events_sent
        {
            break z.events_sent;
        }
        if (z.events_sent, delivered) != progress {
            progress = (z.events_sent, delivered);
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_secs(30) {
            break z.events_sent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let still_pending = relay.spool.stats().pending_events;
    relay.stop().await;

    let stats = sink.stats();
    let counts = sink.sim_counts();
    let undelivered = (0..sent).filter(|n| !counts.contains_key(n)).count() as u64;
    // Undelivered events still in the spool are not lost (a real relay would ship them
    // later); the others are.
    let lost = undelivered.saturating_sub(still_pending);
    let elapsed = started.elapsed().as_secs_f64();
    println!();
    println!("summary");
    println!("  sent by simulated Zoom  {:>10}", format::count(sent));
    println!(
        "  received by the relay   {:>10}",
        format::count(received())
    );
    println!(
        "  delivered (distinct)    {:>10}",
        format::count(counts.len() as u64)
    );
    println!(
        "  duplicates              {:>10}  (at-least-once; remove with the relay_id field)",
        format::count(stats.duplicates)
    );
    println!("  lost                    {:>10}", format::count(lost));
    if still_pending > 0 {
        println!(
            "  still in the spool      {:>10}  (not delivered when the demo stopped waiting)",
            format::count(still_pending)
        );
    }
    println!(
        "  ingest requests         {:>10}  ({} refused during the outage)",
        format::count(stats.requests),
        format::count(stats.requests - stats.accepted_requests)
    );
    println!("  elapsed                 {:>9.1}s", elapsed);
    if undelivered == 0 {
        println!("OK: nothing lost, even with LogScale down for a quarter of the run.");
        Ok(ExitCode::SUCCESS)
    } else if lost == 0 {
        println!(
            "FAILED: {undelivered} events were not delivered within the demo: the delivery \
             stopped making progress for 30 s (is --rate above what this machine can ship?)"
        );
        Ok(ExitCode::FAILURE)
    } else {
        println!("FAILED: {lost} events were lost.");
        Ok(ExitCode::FAILURE)
    }
}

fn line(bar: &Option<indicatif::ProgressBar>, msg: &str) {
    match bar {
        Some(b) => b.println(msg),
        None => println!("{msg}"),
    }
}
