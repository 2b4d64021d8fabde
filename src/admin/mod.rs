//! The relay's two admin surfaces, kept apart because they need different trust:
//!
//! - [`endpoint`]: `RELAY_ADMIN_ADDR` (TCP, default `127.0.0.1:9464`): `/metrics`,
//!   `/healthz`, `/readyz`. Nothing there reveals an event or changes anything, so it may
//!   be opened to Prometheus; it still refuses browsers (an `Origin` header) and foreign
//!   `Host` names (DNS rebinding).
//! - [`operator`]: the operator socket, `relay.sock` in the spool directory (a Unix socket,
//!   mode 0600, peer checked with SO_PEERCRED): inspect, peek, export, dead letters. It
//!   serves pending events (chat messages, e-mail addresses), so file permissions are the
//!   authentication, as for Docker's or HAProxy's admin sockets: the relay's user and root.
//!
//! While the daemon runs, sled's lock keeps every other process out of the spool, so
//! `relay spool ...` asks the daemon through the socket ([`client`]); when the daemon is
//! stopped the commands open the spool themselves. Both are a [`view::SpoolView`], so
//! each command is written once, and both produce the same [`report`] types. The
//! socket's routes are in [`routes`].

pub(crate) mod client;
pub(crate) mod endpoint;
pub mod operator;
pub(crate) mod report;
pub(crate) mod routes;
pub(crate) mod view;

pub use client::OperatorClient;
pub use report::{
    export, peek_record, DeadDetail, DestinationReport, ExportForm, InspectReport, PeekRecord,
    ReadFrom,
};
pub use view::{DeadAction, ExportRange, OperatorError, SpoolView};

use crate::metrics::Metrics;
use crate::ship::hec::HecSettings;
use crate::ship::status::ShipStatus;
use crate::ship::Sources;
use crate::source::zoom_ws::WsState;
use crate::spool::{Spool, SpoolStats};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What the admin surfaces serve from: the running daemon's state, or (for `relay spool`
/// on a stopped spool) the spool alone.
#[derive(Clone)]
pub struct AdminState {
    pub spool: Spool,
    pub metrics: Arc<Metrics>,
    /// The live shippers, one per destination; empty when the spool was opened from disk.
    pub ship_status: Vec<(&'static str, Arc<ShipStatus>)>,
    pub ready: Arc<AtomicBool>,
    pub hec: HecSettings,
    /// Each WebSocket subscription's live state (none: the source is off, or the spool
    /// was opened from disk).
    pub ws: Vec<Arc<WsState>>,
    /// The configured destinations and the sources each takes (what `--sink NAME`
    /// selects).
    pub destinations: Vec<(&'static str, Sources)>,
    /// The election, when the daemon is in one.
    pub ha: Option<Arc<crate::ha::Leadership>>,
}

impl AdminState {
    /// The state of a spool opened from disk while no relay runs.
    pub fn from_disk(
        spool: Spool,
        hec: HecSettings,
        destinations: Vec<(&'static str, Sources)>,
    ) -> AdminState {
        AdminState {
            spool,
            metrics: Arc::new(Metrics::new()),
            ship_status: Vec::new(),
            ready: Arc::new(AtomicBool::new(false)),
            hec,
            ws: Vec::new(),
            ha: None,
            destinations,
        }
    }

    /// Refreshes the spool gauges from the spool's figures.
    pub fn refresh_gauges(&self) -> SpoolStats {
        let s = self.spool.stats();
        let m = &self.metrics;
        m.spool_pending_events.set(s.pending_events as i64);
        m.spool_pending_bytes.set(s.pending_bytes as i64);
        m.spool_stored_bytes.set(s.stored_bytes as i64);
        m.spool_disk_bytes.set(s.disk_bytes as i64);
        m.spool_oldest_pending_age.set(s.oldest_pending_age_secs);
        for sink in &s.sink_positions {
            if let Some(name) = crate::spool::sink_name(&sink.name) {
                let l = crate::metrics::label("sink", name);
                m.sink_pending_events
                    .get_or_create(&l)
                    .set(sink.pending_events as i64);
                m.sink_oldest_pending_age
                    .get_or_create(&l)
                    .set(sink.oldest_pending_age_secs);
            }
        }
        s
    }

    /// The inspect report (blocks on the spool's figures).
    pub fn report(&self) -> InspectReport {
        if self.ship_status.is_empty() {
            let ships = self
                .spool
                .sinks()
                .into_iter()
                .map(|sink| {
                    let s = ShipStatus::from_spool(&self.spool, &sink);
                    (sink, s)
                })
                .collect();
            InspectReport::new(self.spool.stats(), ships, ReadFrom::Disk)
        } else {
            let ships = self
                .ship_status
                .iter()
                .map(|(n, s)| (n.to_string(), Some(s.snapshot())))
                .collect();
            let mut r = InspectReport::new(self.refresh_gauges(), ships, ReadFrom::Daemon);
            r.websockets = self.ws.iter().map(|w| w.snapshot()).collect();
            r.ha = self.ha.as_ref().map(|h| h.report());
            r
        }
    }
}

/// The started admin surfaces: their tasks, and the TCP endpoint's address when it is on.
pub struct RunningAdmin {
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub addr: Option<std::net::SocketAddr>,
}

/// Starts the operator socket in the spool directory (a warning, not an error, when it
/// cannot be made) and, unless `addr` is `None`, the TCP endpoint for metrics and health.
pub async fn start(
    state: AdminState,
    addr: Option<std::net::SocketAddr>,
    allowed_hosts: Vec<String>,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<RunningAdmin, crate::net::BindError> {
    let mut tasks = Vec::new();
    match operator::bind(state.spool.dir()) {
        Ok((listener, path)) => tasks.push(tokio::spawn(operator::serve(
            listener,
            path,
            state.clone(),
            stop.clone(),
        ))),
        Err(e) => {
            tracing::warn!(error = %e, dir = %state.spool.dir().display(), "cannot create the operator socket in the spool directory; `relay spool ...` cannot ask this relay while it runs (a socket path must be under 108 bytes: use a shorter RELAY_SPOOL_DIR)")
        }
    }
    let Some(addr) = addr else {
        return Ok(RunningAdmin { tasks, addr: None });
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::net::BindError {
            what: "the admin endpoint",
            var: "RELAY_ADMIN_ADDR (or `off`)",
            addr,
            source,
        })?;
    let bound = listener.local_addr().ok();
    tasks.push(tokio::spawn(endpoint::serve(
        listener,
        state,
        allowed_hosts,
        stop.clone(),
    )));
    Ok(RunningAdmin { tasks, addr: bound })
}
