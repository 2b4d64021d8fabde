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
use crate::metrics::Metrics;
use crate::net::http::HttpClient;
use crate::net::proxy::Proxy;
use crate::net::tls;
use crate::ship::{HecClient, LogScale, Sentinel, ShipStatus, Shipper};
use crate::source::webhook::WebhookSource;
use crate::source::zoom_token::TokenSource;
use crate::source::zoom_ws::{WsState, ZoomWsSource};
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
    #[error("{0}")]
    Other(String),
}

/// A running relay.
pub struct RunningRelay {
    pub spool: Spool,
    pub metrics: Arc<Metrics>,
    /// The first destination's shipper state (LogScale's when it is configured).
    pub ship_status: Arc<ShipStatus>,
    /// Every destination's shipper state.
    pub ship_statuses: Vec<(&'static str, Arc<ShipStatus>)>,
    pub admin_addr: Option<SocketAddr>,
    pub webhook_addr: Option<SocketAddr>,
    pub ws_state: Option<Arc<WsState>>,
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

    /// Takes the relay down in order (see the module docs).
    pub async fn stop(self) {
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
    let (appender, writer) = spool.start_writer(SPOOL_QUEUE_BYTES);

    let proxy = Proxy::new(&config.proxy);
    let http = HttpClient::with_proxy(config.ca_file.as_deref(), proxy.clone())?;
    // One shipper per destination, each at its own position in the spool.
    let destinations = config.destinations();
    let sinks: Vec<&str> = destinations.iter().map(|(n, _)| *n).collect();
    spool.set_destinations(&sinks)?;
    let hec = config.hec(spool.id());
    let shipper_stop = CancellationToken::new();
    let mut shippers = Vec::new();
    let mut ship_statuses: Vec<(&'static str, Arc<ShipStatus>)> = Vec::new();
    if let Some(logscale) = &config.logscale {
        let client = HecClient::new(
            http.clone(),
            &logscale.base_url,
            &logscale.token,
            logscale.compression,
            config.ship.request_timeout,
        )
        .map_err(StartError::Other)?;
        let status = Arc::new(ShipStatus::for_sink(spool.clone(), "logscale"));
        let dest = LogScale {
            client,
            hec: hec.clone(),
        };
        let shipper = Shipper::new(
            spool.clone(),
            dest,
            config.ship,
            status.clone(),
            metrics.clone(),
        );
        shippers.push(tokio::spawn(
            shipper.run(shipper_stop.clone(), config.shutdown_timeout),
        ));
        ship_statuses.push(("logscale", status));
    }
    if let Some(sentinel) = &config.sentinel {
        let dest = Sentinel::new(
            http.clone(),
            sentinel.clone(),
            spool.id(),
            config.redact.clone(),
            config.ship.request_timeout,
        )
        .map_err(StartError::Other)?;
        let mut settings = config.ship;
        // The API takes 1 MB per request; the array's brackets take two bytes.
        settings.limits.max_bytes = settings.limits.max_bytes.min(sentinel.max_body_bytes - 2);
        let status = Arc::new(ShipStatus::for_sink(spool.clone(), "sentinel"));
        let shipper = Shipper::new(
            spool.clone(),
            dest,
            settings,
            status.clone(),
            metrics.clone(),
        );
        shippers.push(tokio::spawn(
            shipper.run(shipper_stop.clone(), config.shutdown_timeout),
        ));
        ship_statuses.push(("sentinel", status));
    }
    let ship_status = ship_statuses[0].1.clone();

    let ready = Arc::new(AtomicBool::new(false));
    let ws_state = config
        .zoom_ws
        .as_ref()
        .map(|_| Arc::new(WsState::default()));
    let admin_stop = CancellationToken::new();
    let admin_state = AdminState {
        spool: spool.clone(),
        metrics: metrics.clone(),
        ship_status: ship_statuses.clone(),
        ready: ready.clone(),
        hec: hec.clone(),
        ws: ws_state.clone(),
        destinations: destinations.clone(),
    };
    let mut admin = Vec::new();
    match admin::operator::bind(spool.dir()) {
        Ok((listener, path)) => admin.push(tokio::spawn(admin::operator::serve(
            listener,
            path,
            admin_state.clone(),
            admin_stop.clone(),
        ))),
        Err(e) => {
            tracing::warn!(error = %e, dir = %spool.dir().display(), "cannot create the operator socket in the spool directory; `relay spool ...` cannot ask this relay while it runs (a socket path must be under 108 bytes: use a shorter RELAY_SPOOL_DIR)")
        }
    }
    let admin_addr = match config.admin_addr {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| crate::net::BindError {
                    what: "the admin endpoint",
                    var: "RELAY_ADMIN_ADDR (or `off`)",
                    addr,
                    source,
                })?;
            let bound = listener.local_addr().ok();
            admin.push(tokio::spawn(admin::endpoint::serve(
                listener,
                admin_state,
                config.admin_allowed_hosts.clone(),
                admin_stop.clone(),
            )));
            bound
        }
    };

    let sources_stop = CancellationToken::new();
    let mut sources = Vec::new();
    if let Some(zoom) = &config.zoom_ws {
        let tokens = TokenSource::new(http.clone(), zoom.clone(), metrics.clone());
        let tls_cfg = Arc::new(tls::client_config(
            config.ca_file.as_deref(),
            &[b"http/1.1"],
        )?);
        let source = ZoomWsSource::new(
            zoom.clone(),
            tokens.clone(),
            appender.clone(),
            metrics.clone(),
            tls_cfg,
            proxy.clone(),
            ws_state.clone().expect("made when zoom_ws is configured"),
        );
        sources.push(tokio::spawn(tokens.refresh_loop(sources_stop.clone())));
        sources.push(tokio::spawn(source.run(sources_stop.clone())));
    }
    let mut webhook_addr = None;
    let mut reload_tls = None;
    if let Some(wh) = &config.webhook {
        let source = WebhookSource::bind(wh.clone(), appender.clone(), metrics.clone()).await?;
        webhook_addr = Some(source.local_addr());
        reload_tls = source.tls_reloader();
        sources.push(tokio::spawn(source.run(sources_stop.clone())));
    }
    drop(appender);
    write_runtime_info(&spool, admin_addr, webhook_addr);
    ready.store(true, Ordering::SeqCst);

    Ok(RunningRelay {
        spool,
        metrics,
        ship_status,
        ship_statuses,
        admin_addr,
        webhook_addr,
        ws_state,
        ready,
        sources_stop,
        shipper_stop,
        admin_stop,
        sources,
        writer,
        shippers,
        admin,
        shutdown_timeout: config.shutdown_timeout,
        reload_tls,
    })
}
