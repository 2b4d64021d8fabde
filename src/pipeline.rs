//! Assembles a running relay from a [`Config`] and takes it down in order.
//!
//! Start: open the spool (fails at once if another process holds it), start the writer,
//! the shipper, the admin endpoint, then the sources; mark ready.
//!
//! Stop (SIGTERM/SIGINT, or [`RunningRelay::stop`]):
//! 1. sources stop taking input (the WebSocket sends a close frame; the webhook endpoint
//!    stops accepting, requests already in progress finish);
//! 2. the spool writer commits what it holds and exits once the last producer is gone;
//! 3. the shipper stops reading, and in-flight requests get `RELAY_SHUTDOWN_TIMEOUT_SECS`
//!    to finish; what was not acknowledged stays in the spool;
//! 4. the spool is flushed; the admin endpoint closes last.
//!
//! `relay run`, `relay demo` and the in-process integration tests all go through here.

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::ha::{Leadership, Standby};
use crate::metrics::Metrics;
use crate::net::http::HttpClient;
use crate::net::proxy::Proxy;
use crate::role::Role;
use crate::ship::{RunningSink, ShipStatus, SinkContext};
use crate::source::start::SourceContext;
use crate::source::zoom_ws::WsState;
use crate::spool::Spool;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Capacity of the spool writer's queue, in bytes of records (backpressure beyond it):
/// about 10,800 QSS frames of the realistic mix, 0.1 s of the relay's full rate. Beyond
/// it the WebSocket reader waits, TCP's window closes, and Zoom's side of the socket
/// buffers (docs/performance.md, "Memory").
pub const SPOOL_QUEUE_BYTES: usize = 16 << 20;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::Problems),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
    #[error(transparent)]
    Bind(#[from] crate::net::BindError),
    #[error(transparent)]
    Webhook(#[from] crate::source::webhook::WebhookStartError),
    #[error(transparent)]
    Destination(#[from] crate::ship::BuildError),
    #[error(transparent)]
    Election(#[from] crate::ha::HaStartError),
}

/// A running relay.
pub struct RunningRelay {
    pub spool: Spool,
    pub metrics: Arc<Metrics>,
    /// Every destination's shipper state.
    pub ship_statuses: Vec<(&'static str, Arc<ShipStatus>)>,
    pub admin_addr: Option<SocketAddr>,
    pub webhook_addr: Option<SocketAddr>,
    /// Each WebSocket subscription's live state.
    pub ws_states: Vec<Arc<WsState>>,
    ready: Arc<AtomicBool>,
    sources_stop: CancellationToken,
    shipper_stop: CancellationToken,
    admin_stop: CancellationToken,
    sources: Vec<JoinHandle<()>>,
    writer: JoinHandle<()>,
    shippers: Vec<JoinHandle<()>>,
    admin: Vec<JoinHandle<()>>,
    shutdown_timeout: Duration,
    /// Reloads the webhook TLS certificate (SIGHUP).
    pub reload_tls: Option<Box<dyn Fn() -> Result<(), String> + Send + Sync>>,
    /// The election, when there is one.
    pub leadership: Option<Arc<Leadership>>,
    election: Option<(CancellationToken, JoinHandle<()>)>,
}

impl RunningRelay {
    /// Ready: spool open and sources started.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Healthy: the writer and the shipper are running (an outage of LogScale is not
    /// unhealthy: the spool absorbs it; a dead pipeline task is).
    pub fn is_healthy(&self) -> bool {
        !self.writer.is_finished()
            && self.shippers.iter().all(|s| !s.is_finished())
            && self.sources.iter().all(|s| !s.is_finished())
    }

    /// The `STATUS=` line systemd shows (`systemctl status`): what waits, and every
    /// destination's state and deliveries since the start.
    pub fn status_line(&self) -> String {
        let stats = self.spool.stats();
        let mut line = format!(
            "pending {} events, oldest {:.0}s",
            stats.pending_events, stats.oldest_pending_age_secs
        );
        for (name, status) in &self.ship_statuses {
            let s = status.snapshot();
            line.push_str(&format!(
                "; {name} {}, {} delivered since start",
                s.state, s.delivered_events
            ));
        }
        line
    }

    /// Takes the relay down in order (see the module docs).
    pub async fn stop(self) {
        // A leader resigns first, so that another relay takes over at once.
        if let Some((stop, task)) = self.election {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        tracing::info!("shutting down: sources first");
        self.ready.store(false, Ordering::SeqCst);
        self.sources_stop.cancel();
        for s in self.sources {
            let _ = s.await;
        }
        // The writer exits once every Appender is gone (the sources held them).
        match tokio::time::timeout(Duration::from_secs(30), self.writer).await {
            Ok(_) => tracing::info!("spool writer committed everything it held"),
            Err(_) => tracing::error!("the spool writer did not finish within 30 s"),
        }
        self.shipper_stop.cancel();
        let _ = tokio::time::timeout(self.shutdown_timeout + Duration::from_secs(5), async {
            for s in self.shippers {
                let _ = s.await;
            }
        })
        .await;
        if let Err(e) = self.spool.flush() {
            tracing::error!(error = %e, "final spool flush failed");
        }
        let stats = self.spool.stats();
        tracing::info!(
            pending_events = stats.pending_events,
            delivered_position = stats.delivered_position,
            "stopped; pending events are kept in the spool and shipped at the next start"
        );
        self.admin_stop.cancel();
        for a in self.admin {
            let _ = a.await;
        }
    }
}

/// The file in the spool directory that says which process holds the spool and where
/// its endpoints are; `relay spool ...` reads it to find the daemon.
pub const RUNTIME_INFO: &str = "relay.json";

/// What [`RUNTIME_INFO`] holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RuntimeInfo {
    pub pid: u32,
    pub admin_addr: Option<SocketAddr>,
    pub webhook_addr: Option<SocketAddr>,
    pub started_ms: u64,
}

impl RuntimeInfo {
    /// Reads the file of a spool directory, if there is one.
    pub fn read(spool_dir: &std::path::Path) -> Option<RuntimeInfo> {
        serde_json::from_slice(&std::fs::read(spool_dir.join(RUNTIME_INFO)).ok()?).ok()
    }
}

fn write_runtime_info(
    spool: &Spool,
    admin_addr: Option<SocketAddr>,
    webhook_addr: Option<SocketAddr>,
) {
    let info = RuntimeInfo {
        pid: std::process::id(),
        admin_addr,
        webhook_addr,
        started_ms: crate::time::now_ms(),
    };
    let path = spool.dir().join(RUNTIME_INFO);
    let tmp = spool.dir().join(format!("{RUNTIME_INFO}.tmp"));
    let result = std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&info).expect("serializable"),
    )
    .and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        tracing::warn!(error = %e, path = %path.display(), "cannot write the runtime info file (`relay health` then needs --admin-addr)");
    }
}

/// Starts everything `config` describes. `config.require_for_run()` must hold.
pub async fn start(config: &Config, metrics: Arc<Metrics>) -> Result<RunningRelay, StartError> {
    config.require_for_run()?;
    let spool = open_spool(config, &metrics)?;
    let (appender, writer) = spool.start_writer(SPOOL_QUEUE_BYTES);
    let proxy = Proxy::new(&config.proxy);
    let http = HttpClient::with_proxy(config.ca_file.as_deref(), proxy.clone())?;
    let election = start_election(config, &spool, &http, &metrics).await?;
    let leadership = election.as_ref().map(|e| e.0.clone());
    let (hot, cold) = roles(leadership.as_ref());
    let shipper_stop = CancellationToken::new();
    let sinks = start_destinations(config, &spool, &http, &metrics, &shipper_stop, hot)?;
    let ship_statuses: Vec<_> = sinks.iter().map(|s| (s.name, s.status.clone())).collect();

    let ready = Arc::new(AtomicBool::new(false));
    let ws_states = config
        .zoom_ws
        .as_ref()
        .map(|z| z.states())
        .unwrap_or_default();
    let admin_stop = CancellationToken::new();
    let admin_state = AdminState {
        spool: spool.clone(),
        metrics: metrics.clone(),
        ship_status: ship_statuses.clone(),
        ready: ready.clone(),
        hec: config.hec(spool.id()),
        ws: ws_states.clone(),
        destinations: config.destinations(),
        ha: leadership.clone(),
    };
    let allowed = config.admin_allowed_hosts.clone();
    let admin = admin::start(admin_state, config.admin_addr, allowed, &admin_stop).await?;

    let sources_stop = CancellationToken::new();
    let scx = SourceContext {
        appender: &appender,
        http: &http,
        proxy: &proxy,
        ca_file: config.ca_file.as_deref(),
        metrics: &metrics,
        stop: &sources_stop,
        leader_gate: cold,
    };
    let mut sources = Vec::new();
    if let Some(zoom) = &config.zoom_ws {
        sources.extend(zoom.start(&scx, &ws_states)?);
    }
    let mut webhook = None;
    if let Some(wh) = &config.webhook {
        webhook = Some(wh.start(&scx).await?);
    }
    drop(appender);
    let webhook_addr = webhook.as_ref().map(|w| w.addr);
    write_runtime_info(&spool, admin.addr, webhook_addr);
    ready.store(true, Ordering::SeqCst);
    let reload_tls = webhook.and_then(|w| {
        sources.push(w.task);
        w.reload_tls
    });
    Ok(RunningRelay {
        spool,
        metrics,
        ship_statuses,
        admin_addr: admin.addr,
        webhook_addr,
        ws_states,
        ready,
        sources_stop,
        shipper_stop,
        admin_stop,
        sources,
        writer,
        shippers: sinks.into_iter().map(|s| s.task).collect(),
        admin: admin.tasks,
        shutdown_timeout: config.shutdown_timeout,
        reload_tls,
        leadership,
        election: election.map(|(_, stop, task)| (stop, task)),
    })
}

/// The election joined: the shared state, what stops the task, and the task.
type Election = (Arc<Leadership>, CancellationToken, JoinHandle<()>);

/// Joins the election `RELAY_HA_*` describes, if any: connects to etcd (an error when it
/// cannot, or when another live relay has this relay's name) and starts campaigning.
async fn start_election(
    config: &Config,
    spool: &Spool,
    http: &HttpClient,
    metrics: &Arc<Metrics>,
) -> Result<Option<Election>, StartError> {
    let Some(ha) = &config.ha else {
        return Ok(None);
    };
    // Each call of the election must answer well within the lease's renewal period.
    let timeout = (ha.lease_ttl / 6).max(Duration::from_millis(300));
    let etcd = crate::ha::etcd::Etcd::new(http.clone(), &ha.endpoints, timeout);
    let stop = CancellationToken::new();
    let (leadership, task) = crate::ha::start(
        ha.clone(),
        &config.hostname,
        etcd,
        spool.clone(),
        metrics.clone(),
        stop.clone(),
    )
    .await?;
    tracing::info!(election = %ha.name, standby = ?ha.standby, name = %config.hostname, "joined the election");
    Ok(Some((leadership, stop, task)))
}

/// The election as a gate, where it gates something.
type Gate = Option<Arc<dyn Role>>;

/// Who the election gates: under hot standby the shippers (a follower holds QSS back),
/// under cold standby the WebSocket sources (only the leader connects).
fn roles(l: Option<&Arc<Leadership>>) -> (Gate, Gate) {
    match l {
        None => (None, None),
        Some(l) if l.standby() == Standby::Hot => (Some(l.clone() as Arc<dyn Role>), None),
        Some(l) => (None, Some(l.clone() as Arc<dyn Role>)),
    }
}

/// Starts one shipper per configured destination, each at its own position in the spool
/// (a destination added to a folder under `ship/` is one more line here).
fn start_destinations(
    config: &Config,
    spool: &Spool,
    http: &HttpClient,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
    role: Option<Arc<dyn Role>>,
) -> Result<Vec<RunningSink>, StartError> {
    let names: Vec<&str> = config.destinations().iter().map(|(n, _)| *n).collect();
    spool.set_destinations(&names)?;
    let cx = SinkContext {
        spool,
        http,
        metrics,
        ship: config.ship,
        host: &config.hostname,
        redact: &config.redact,
        stop,
        drain: config.shutdown_timeout,
        role,
    };
    let mut sinks = Vec::new();
    if let Some(logscale) = &config.logscale {
        sinks.push(logscale.start(&cx)?);
    }
    if let Some(sentinel) = &config.sentinel {
        sinks.push(sentinel.start(&cx)?);
    }
    Ok(sinks)
}

/// Opens the spool and says what it holds and what it can hold on its volume.
fn open_spool(config: &Config, metrics: &Arc<Metrics>) -> Result<Spool, StartError> {
    let spool = Spool::open(&config.spool, metrics.clone())?;
    let stats = spool.stats();
    tracing::info!(
        dir = %config.spool.dir.display(),
        pending_events = stats.pending_events,
        dead_letters = stats.dead_letter_events + stats.dead_letter_blocks,
        file_system_bytes = stats.fs_bytes,
        floor_bytes = stats.min_free_bytes,
        can_hold_bytes = stats.holdable_bytes,
        "spool open"
    );
    if let Some(note) = &stats.floor_adjusted {
        tracing::warn!("spool: {note}");
    }
    if let Some(h) = stats
        .holdable_bytes
        .filter(|h| *h < crate::spool::MIN_USEFUL_BYTES)
    {
        tracing::warn!(
            can_hold_bytes = h,
            "spool: its file system is too small to be useful (it can hold less than {} MiB); give RELAY_SPOOL_DIR a larger volume (`relay check` says how much)",
            crate::spool::MIN_USEFUL_BYTES >> 20
        );
    }
    Ok(spool)
}
