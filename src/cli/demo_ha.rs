//! `relay demo --ha`: two relays elect a leader in a real etcd and one dies.
//!
//! Three etcd members on loopback (the `etcd` binary on `PATH`), the simulated Zoom in live
//! mode (events emitted on a clock, lost where no connection is open) with a subscription
//! per relay, the simulated LogScale, and two `relay run` processes of this binary in hot
//! standby. A third of the way in, the leader is killed with SIGKILL; the follower takes
//! over and ships what the dead leader had not delivered. Ends with a line per relay and
//! the events lost among those that reached a connection (0 is the promise).

use crate::admin::{InspectReport, OperatorClient};
use crate::sim::etcd::EtcdCluster;
use crate::sim::logscale::{FakeLogScale, SinkOptions};
use crate::sim::zoom::{FakeZoom, ZoomOptions};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The lease: short, so that the takeover shows within the demo.
const LEASE_SECS: u64 = 3;

/// One relay process of the demo; killed when dropped.
struct DemoRelay {
    name: &'static str,
    spool: PathBuf,
    child: Option<Child>,
}

impl DemoRelay {
    async fn inspect(&self) -> Option<InspectReport> {
        OperatorClient::new(&crate::admin::operator::socket_path(&self.spool))
            .get::<InspectReport>("/spool/inspect")
            .await
            .ok()
    }

    async fn role(&self) -> Option<String> {
        self.child.as_ref()?;
        self.inspect().await.and_then(|r| r.ha).map(|h| h.role)
    }
}

impl Drop for DemoRelay {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What `relay demo --ha` takes of the demo's options.
pub(super) struct HaDemo {
    pub rate: u32,
    pub duration: u64,
    /// Where the relays' spools go (default: a temporary directory).
    pub dir: Option<PathBuf>,
    /// `RUST_LOG` of the relay processes (their logs go to `relay.log` beside each spool).
    pub relay_log: String,
}

pub(super) async fn run(args: HaDemo, tuning: Vec<(String, String)>) -> Result<ExitCode, String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let base = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let etcd_dir = tmp.path().join("etcd");
    std::fs::create_dir_all(&etcd_dir).map_err(|e| e.to_string())?;
    let etcd = tokio::task::spawn_blocking(move || EtcdCluster::start(&etcd_dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|why| format!("relay demo --ha runs a real etcd: {why}"))?;
    let zoom = FakeZoom::start(ZoomOptions {
        subscriptions: vec!["sim-subscription-b".into()],
        live: true,
        ..ZoomOptions::default()
    })
    .await
    .map_err(|e| format!("cannot start the simulated Zoom: {e}"))?;
    let sink = FakeLogScale::start("demo-ingest-token", SinkOptions::default())
        .await
        .map_err(|e| format!("cannot start the simulated LogScale: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let spawn = |name: &'static str, subscription: &str| -> Result<DemoRelay, String> {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let spool = dir.join("spool");
        let mut cmd = Command::new(&exe);
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.envs(tuning.iter().cloned())
            .envs(zoom.env_pairs())
            .envs(sink.env_pairs())
            .env("ZOOM_WSS_URL", zoom.wss_url_for(subscription))
            .env("RELAY_SPOOL_DIR", &spool)
            .env("RELAY_ADMIN_ADDR", "off")
            .env("RELAY_HOSTNAME", name)
            .env("RELAY_HA_ETCD_ENDPOINTS", etcd.endpoints())
            .env("RELAY_HA_LEASE_TTL_SECS", LEASE_SECS.to_string())
            .env("RELAY_HA_STANDBY", "hot")
            .env("RUST_LOG", &args.relay_log);
        let log = std::fs::File::create(dir.join("relay.log")).map_err(|e| e.to_string())?;
        let child = cmd
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        Ok(DemoRelay {
            name,
            spool,
            child: Some(child),
        })
    };
    let mut relays = [
        spawn("relay-a", "sim-subscription")?,
        spawn("relay-b", "sim-subscription-b")?,
    ];
    println!(
        "qss-relay demo --ha: etcd of three members at {}; relay-a and relay-b in hot standby, each on a Zoom subscription of its own; lease {LEASE_SECS} s",
        etcd.endpoints()
    );
    // Both subscriptions open before the stream starts: an event that reached only the
    // leader's connection and was not delivered when it died waits in its spool, which the
    // demo does not count as delivered.
    let open_by = Instant::now() + Duration::from_secs(30);
    while zoom.live_subscriptions().len() < 2 {
        if Instant::now() > open_by {
            return Err(format!(
                "the relays did not both connect to the simulated Zoom within 30 s; their logs are in {}",
                base.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(first) = wait_leader(&relays, Duration::from_secs(30)).await else {
        return Err(format!(
            "no relay became leader within 30 s; their logs are in {}",
            base.display()
        ));
    };
    println!(
        "{} leads; streaming {} events/s for {} s",
        relays[first].name, args.rate, args.duration
    );
    zoom.set_rate(Some(f64::from(args.rate)));
    let started = Instant::now();
    let duration = Duration::from_secs(args.duration);
    tokio::time::sleep(duration / 3).await;
    let leader = wait_leader(&relays, Duration::from_secs(10))
        .await
        .ok_or("no leader a third of the way in")?;
    let before = relays[leader].inspect().await;
    if let Some(mut c) = relays[leader].child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let killed = Instant::now();
    let killed_at = started.elapsed();
    println!(
        "{:>5.1} s  {} KILLED (SIGKILL), with {} events it had not delivered",
        killed_at.as_secs_f64(),
        relays[leader].name,
        before.as_ref().map_or(0, |r| r.spool.pending_events)
    );
    let other = 1 - leader;
    let took_over = wait_leader(&relays, Duration::from_secs(LEASE_SECS + 30)).await;
    let takeover = killed.elapsed();
    match took_over {
        Some(i) if i == other => println!(
            "{:>5.1} s  {} leads, {:.1} s after the kill",
            started.elapsed().as_secs_f64(),
            relays[other].name,
            takeover.as_secs_f64()
        ),
        _ => return Err(format!("{} did not take over", relays[other].name)),
    }
    let left = duration.saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
    zoom.set_rate(None);
    // Let the connections write what was emitted, then the deliveries settle.
    let mut last = u64::MAX;
    while zoom.stats().events_sent != last {
        last = zoom.stats().events_sent;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reached = zoom.reached();
    let settle = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = sink.sim_counts();
        if reached.iter().all(|n| counts.contains_key(n)) || Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let counts = sink.sim_counts();
    let lost = reached.iter().filter(|n| !counts.contains_key(n)).count();
    let duplicates: u64 = counts
        .values()
        .map(|c| u64::from(c.saturating_sub(1)))
        .sum();
    let after = relays[other].inspect().await;
    println!(
        "{}: leader from the start, killed with SIGKILL at {:.1} s (what it had not delivered stays in its spool; the follower had its own copies)",
        relays[leader].name,
        killed_at.as_secs_f64()
    );
    println!(
        "{}: follower (kept every event, shipped none), leader {:.1} s after the kill; {} events spooled, {} pending now",
        relays[other].name,
        takeover.as_secs_f64(),
        after.as_ref().map_or(0, |r| r.spool.next_seq.saturating_sub(1)),
        after.as_ref().map_or(0, |r| r.spool.pending_events)
    );
    println!(
        "{} events reached a connection: delivered {}, lost {lost}, duplicates {duplicates} (each takeover sends again up to ~3 s of the stream)",
        reached.len(),
        reached.len() - lost
    );
    drop(relays);
    Ok(if lost == 0 {
        ExitCode::SUCCESS
    } else {
        let mut missing: Vec<u64> = reached
            .iter()
            .filter(|n| !counts.contains_key(n))
            .copied()
            .collect();
        missing.sort_unstable();
        println!(
            "lost events (sequence numbers of the simulated Zoom): {:?}{}",
            &missing[..missing.len().min(20)],
            if missing.len() > 20 { " ..." } else { "" }
        );
        if args.dir.is_some() {
            println!("logs: {}", base.display());
        } else {
            let kept = tmp.keep();
            println!("logs: {}", kept.display());
        }
        ExitCode::FAILURE
    })
}

/// The relay that says it leads, within `timeout`.
async fn wait_leader(relays: &[DemoRelay], timeout: Duration) -> Option<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        for (i, r) in relays.iter().enumerate() {
            if r.role().await.as_deref() == Some("leader") {
                return Some(i);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
