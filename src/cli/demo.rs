//! `relay demo`: the real pipeline against a simulated Zoom and simulated destinations, in
//! one process.
//!
//! The simulated Zoom streams realistic QSS events of every kind at `--rate`; the relay
//! receives them over a real WebSocket, spools them in a real sled directory and ships
//! them over HTTP to a fake LogScale, a fake Sentinel (Entra ID + Logs Ingestion), or both
//! (`--sinks`). A third of the way in, one destination (`--down`) starts answering 503 for
//! a while: its backlog fills the spool, then drains, and the other goes on meanwhile. At
//! the end, per destination: delivered, duplicates, lost (must be 0).

use super::format;
use crate::config::{Config, Env};
use crate::metrics::{label, Metrics};
use crate::pipeline;
use crate::sim::logscale::{FakeLogScale, Mode, SinkOptions, SinkStats};
use crate::sim::sentinel::{FakeSentinel, SentinelMode};
use crate::sim::zoom::{FakeZoom, ZoomOptions};
use clap::{Args, ValueEnum};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A destination the demo can ship to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoSink {
    Logscale,
    Sentinel,
}

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
    /// Where to ship: `logscale`, `sentinel`, or both (`logscale,sentinel`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "logscale")]
    pub sinks: Vec<DemoSink>,
    /// Which destination goes down for a while (default: Sentinel when both run).
    #[arg(long, value_enum)]
    pub down: Option<DemoSink>,
    /// Two relays electing a leader in a real etcd (the `etcd` binary on PATH), the leader
    /// killed with SIGKILL a third of the way in (`--sinks` and `--down` do not apply).
    #[arg(long)]
    pub ha: bool,
}

pub(super) async fn demo(global: &super::Global, args: DemoArgs) -> ExitCode {
    // Quiet by default: the progress display is the show. RUST_LOG=info shows the relay's logs.
    let asked_log = std::env::var("RUST_LOG").ok();
    if asked_log.is_none() {
        // SAFETY: single-threaded at this point of the demo's start (nothing else reads env).
        unsafe { std::env::set_var("RUST_LOG", "off") };
    }
    crate::logging::init(crate::config::LogFormat::Text);
    let tuning = match Env::load(global.env_file.as_deref()) {
        Ok(env) => tuning_of(&env),
        Err(p) => {
            eprint!("error: {p}");
            return ExitCode::from(2);
        }
    };
    let result = if args.ha {
        let ha = super::demo_ha::HaDemo {
            rate: args.rate,
            duration: args.duration,
            dir: args.spool_dir,
            relay_log: asked_log.unwrap_or_else(|| "info".into()),
        };
        super::demo_ha::run(ha, tuning).await
    } else {
        run(args, tuning).await
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One simulated destination.
enum Fake {
    LogScale(FakeLogScale),
    Sentinel(FakeSentinel),
}

impl Fake {
    async fn start(which: DemoSink) -> Result<Fake, String> {
        match which {
            DemoSink::Logscale => FakeLogScale::start(
                "demo-ingest-token",
                SinkOptions {
                    keep_events: false,
                    track_ids: true,
                },
            )
            .await
            .map(Fake::LogScale)
            .map_err(|e| format!("cannot start the simulated LogScale: {e}")),
            DemoSink::Sentinel => FakeSentinel::start(false)
                .await
                .map(Fake::Sentinel)
                .map_err(|e| format!("cannot start the simulated Sentinel: {e}")),
        }
    }

    fn kind(&self) -> DemoSink {
        match self {
            Fake::LogScale(_) => DemoSink::Logscale,
            Fake::Sentinel(_) => DemoSink::Sentinel,
        }
    }

    /// The spool's name for it.
    fn name(&self) -> &'static str {
        match self {
            Fake::LogScale(_) => "logscale",
            Fake::Sentinel(_) => "sentinel",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Fake::LogScale(_) => "LogScale",
            Fake::Sentinel(_) => "Sentinel",
        }
    }

    fn env_pairs(&self) -> Vec<(String, String)> {
        match self {
            Fake::LogScale(f) => f.env_pairs(),
            Fake::Sentinel(f) => {
                let mut pairs = f.env_pairs();
                // The demo's Zoom streams QSS only.
                pairs.push(("SENTINEL_SOURCES".into(), "webhook,websocket".into()));
                pairs
            }
        }
    }

    /// Down (503) or up.
    fn set_down(&self, down: bool) {
        match (self, down) {
            (Fake::LogScale(f), true) => f.set_mode(Mode::Status {
                code: 503,
                retry_after: None,
            }),
            (Fake::LogScale(f), false) => f.set_mode(Mode::Accept),
            (Fake::Sentinel(f), true) => f.set_mode(SentinelMode::Status {
                code: 503,
                retry_after: None,
            }),
            (Fake::Sentinel(f), false) => f.set_mode(SentinelMode::Accept),
        }
    }

    fn stats(&self) -> SinkStats {
        match self {
            Fake::LogScale(f) => f.stats(),
            Fake::Sentinel(f) => f.stats(),
        }
    }

    fn sim_counts(&self) -> HashMap<u64, u32> {
        match self {
            Fake::LogScale(f) => f.sim_counts(),
            Fake::Sentinel(f) => f.sim_counts(),
        }
    }
}

/// A destination's figures at the end.
struct Outcome {
    delivered: u64,
    undelivered: u64,
    still_pending: u64,
    lost: u64,
    stats: SinkStats,
}

/// The `RELAY_*` settings of the environment and env file (spool, batching, shipping
/// tuning), which the demo runs with; destinations, sources and the addresses it sets
/// itself are never taken, so a real env file cannot send the demo's events anywhere.
fn tuning_of(env: &Env) -> Vec<(String, String)> {
    const OWN: &[&str] = &["RELAY_SPOOL_DIR", "RELAY_ADMIN_ADDR", "RELAY_WEBHOOK_ADDR"];
    env.iter()
        .filter(|(k, _)| k.starts_with("RELAY_") && !OWN.contains(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn run(args: DemoArgs, tuning: Vec<(String, String)>) -> Result<ExitCode, String> {
    let mut kinds = args.sinks.clone();
    kinds.dedup();
    if kinds.is_empty() {
        return Err("--sinks names no destination".into());
    }
    let down_kind = match args.down {
        Some(d) if !kinds.contains(&d) => {
            return Err(format!(
                "--down {d:?} is not one of --sinks; pick one of those it ships to"
            ))
        }
        Some(d) => d,
        None if kinds.contains(&DemoSink::Sentinel) => DemoSink::Sentinel,
        None => kinds[0],
    };
    let mut fakes = Vec::new();
    for k in &kinds {
        fakes.push(Fake::start(*k).await?);
    }
    let zoom = FakeZoom::start(ZoomOptions::default())
        .await
        .map_err(|e| format!("cannot start the simulated Zoom: {e}"))?;
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let spool_dir = args
        .spool_dir
        .clone()
        .unwrap_or_else(|| tmp.path().join("spool"));

    let mut env = Env::from_pairs(tuning);
    for (k, v) in zoom.env_pairs() {
        env.set(k, v);
    }
    for f in &fakes {
        for (k, v) in f.env_pairs() {
            env.set(k, v);
        }
    }
    env.set("RELAY_SPOOL_DIR", spool_dir.display().to_string());
    env.set("RELAY_ADMIN_ADDR", "off");
    env.set("LOGSCALE_REPOSITORY", "zoom-demo");
    env.set("RELAY_SHUTDOWN_TIMEOUT_SECS", "5");
    let config = Config::from_env(&env).map_err(|p| p.to_string())?;
    let metrics = Arc::new(Metrics::new());
    let relay = pipeline::start(&config, metrics.clone())
        .await
        .map_err(|e| e.to_string())?;

    let titles: Vec<&str> = fakes.iter().map(Fake::title).collect();
    let down = fakes
        .iter()
        .find(|f| f.kind() == down_kind)
        .expect("the one going down is one of the fakes");
    let tty = std::io::stdout().is_terminal();
    println!(
        "qss-relay demo: simulated Zoom → relay (spool at {}) → simulated {}",
        spool_dir.display(),
        titles.join(" and ")
    );
    println!(
        "streaming {} events/s for {} s; the simulated {} goes down from {} s to {} s",
        args.rate,
        args.duration,
        down.title(),
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
    let mut is_down = false;
    // Rates are taken over the last two seconds or more: deliveries arrive a batch at a
    // time, so a shorter window shows the batching rather than the rate.
    let mut history: std::collections::VecDeque<(Instant, Vec<u64>)> =
        std::collections::VecDeque::from([(Instant::now(), vec![0u64; fakes.len()])]);
    let mut tick = tokio::time::interval(Duration::from_millis(if tty { 250 } else { 1000 }));
    let mut plain_every = 0u32;
    let received = || {
        metrics
            .events_received
            .get_or_create(&label("source", "websocket"))
            .get()
    };
    let pending_for = |name: &str| -> u64 {
        relay
            .spool
            .stats()
            .sink_positions
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.pending_events)
    };
    while started.elapsed() < duration {
        tick.tick().await;
        let t = started.elapsed();
        if !is_down && t >= down_at && t < up_at {
            down.set_down(true);
            is_down = true;
            line(
                &bar,
                &format!(
                    "{} is DOWN (answering 503): the relay keeps its events in the spool{}",
                    down.title(),
                    if fakes.len() > 1 {
                        "; the other destination goes on"
                    } else {
                        ""
                    }
                ),
            );
        } else if is_down && t >= up_at {
            down.set_down(false);
            is_down = false;
            line(
                &bar,
                &format!("{} is back: its backlog drains", down.title()),
            );
        }
        let now = Instant::now();
        let delivered_now: Vec<u64> = fakes.iter().map(|f| f.stats().distinct).collect();
        while history.len() > 1 && now - history[1].0 >= Duration::from_secs(2) {
            history.pop_front();
        }
        let (then, delivered_then) = history.front().cloned().expect("history is never empty");
        let secs = (now - then).as_secs_f64().max(0.001);
        history.push_back((now, delivered_now.clone()));
        let mut msg = format!("received {:>9}", format::count(received()));
        for ((f, &delivered), &before) in fakes.iter().zip(&delivered_now).zip(&delivered_then) {
            let rate = delivered.saturating_sub(before) as f64 / secs;
            msg.push_str(&format!(
                "  │ {}: delivered {:>9} ({:>6.0}/s) pending {:>8}{}",
                f.title(),
                format::count(delivered),
                rate,
                format::count(pending_for(f.name())),
                if is_down && f.kind() == down_kind {
                    " DOWN"
                } else {
                    ""
                }
            ));
        }
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
    if is_down {
        down.set_down(false);
    }
    line(
        &bar,
        "stopped the simulated Zoom; waiting for the spool to drain",
    );
    // Everything Zoom was told to send must reach the relay, then every destination. Above
    // the relay's capacity the fake is still writing its queue when the rate stops, and
    // the spool holds a backlog: wait while anything makes progress.
    let mut progress = Vec::new();
    let mut last_progress = Instant::now();
    let sent = loop {
        let z = zoom.stats();
        let delivered: Vec<u64> = fakes.iter().map(|f| f.stats().distinct).collect();
        if z.events_sent >= z.events_queued
            && received() >= z.events_sent
            && delivered.iter().all(|d| *d >= z.events_sent)
        {
            break z.events_sent;
        }
        let now: Vec<u64> = std::iter::once(z.events_sent).chain(delivered).collect();
        if now != progress {
            progress = now;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_secs(30) {
            break z.events_sent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let outcomes: Vec<Outcome> = fakes
        .iter()
        .map(|f| {
            let counts = f.sim_counts();
            let undelivered = (0..sent).filter(|n| !counts.contains_key(n)).count() as u64;
            let still_pending = pending_for(f.name());
            Outcome {
                delivered: counts.len() as u64,
                undelivered,
                still_pending,
                // Undelivered events still in the spool are not lost (a real relay would
                // ship them later); the others are.
                lost: undelivered.saturating_sub(still_pending),
                stats: f.stats(),
            }
        })
        .collect();
    relay.stop().await;

    let elapsed = started.elapsed().as_secs_f64();
    println!();
    println!("summary");
    println!("  sent by simulated Zoom  {:>10}", format::count(sent));
    println!(
        "  received by the relay   {:>10}",
        format::count(received())
    );
    let row = |label: &str, value: &dyn Fn(&Outcome) -> String, note: &str| {
        let mut s = format!("  {label:<24}");
        for o in &outcomes {
            s.push_str(&format!("{:>10}", value(o)));
        }
        println!("{s}{note}");
    };
    let mut head = format!("  {:<24}", "");
    for t in &titles {
        head.push_str(&format!("{t:>10}"));
    }
    println!("{head}");
    row("delivered (distinct)", &|o| format::count(o.delivered), "");
    row(
        "duplicates",
        &|o| format::count(o.stats.duplicates),
        "  (at-least-once; the relay id tells them apart)",
    );
    row("lost", &|o| format::count(o.lost), "");
    if outcomes.iter().any(|o| o.still_pending > 0) {
        row(
            "still in the spool",
            &|o| format::count(o.still_pending),
            "  (not delivered when the demo stopped waiting)",
        );
    }
    row("ingest requests", &|o| format::count(o.stats.requests), "");
    row(
        "  refused (outage)",
        &|o| format::count(o.stats.requests - o.stats.accepted_requests),
        "",
    );
    println!("  elapsed                 {:>9.1}s", elapsed);
    let lost: u64 = outcomes.iter().map(|o| o.lost).sum();
    let undelivered: u64 = outcomes.iter().map(|o| o.undelivered).sum();
    if undelivered == 0 {
        println!(
            "OK: nothing lost, even with {} down for a quarter of the run.",
            down.title()
        );
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
