//! Starting a destination: what every destination is built with ([`SinkContext`]), what a
//! started one hands back ([`RunningSink`]), and [`spawn`], the one place a [`Shipper`]
//! task is made. Each destination's folder has a `start` on its own settings that builds its
//! client and calls [`spawn`] (Vector's `build` on a sink's config is the model), so adding
//! a destination is a folder and one line in `pipeline::start`.

use super::destination::Destination;
use super::settings::ShipSettings;
use super::shipper::Shipper;
use super::status::ShipStatus;
use crate::metrics::Metrics;
use crate::net::http::HttpClient;
use crate::redact::Redaction;
use crate::spool::Spool;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What every destination is started with.
pub struct SinkContext<'a> {
    pub spool: &'a Spool,
    /// Proxy-aware, verifying TLS; shared by every destination.
    pub http: &'a HttpClient,
    pub metrics: &'a Arc<Metrics>,
    /// Batching, concurrency, request timeout (`RELAY_BATCH_*`, `RELAY_SHIP_*`).
    pub ship: ShipSettings,
    /// The relay's host name (`RELAY_HOSTNAME`), which events carry.
    pub host: &'a str,
    /// The frame header members that never leave the host.
    pub redact: &'a Redaction,
    /// Cancelled at shutdown; in-flight requests then get `drain` to finish.
    pub stop: &'a CancellationToken,
    pub drain: Duration,
    /// Hot standby: a follower's shippers hold QSS events back ([`crate::role`]).
    pub role: Option<Arc<dyn crate::role::Role>>,
}

/// A started destination.
pub struct RunningSink {
    /// `logscale`, `sentinel`: its position's name in the spool.
    pub name: &'static str,
    /// Its shipper's state, for `inspect`, the `STATUS=` line and health.
    pub status: Arc<ShipStatus>,
    pub task: JoinHandle<()>,
}

/// Starts the shipper of `dest` at its own position in the spool.
pub(crate) fn spawn<D: Destination>(
    cx: &SinkContext<'_>,
    dest: D,
    settings: ShipSettings,
) -> RunningSink {
    let name = dest.name();
    let status = Arc::new(ShipStatus::for_sink(cx.spool.clone(), name));
    let shipper = Shipper::new(
        cx.spool.clone(),
        dest,
        settings,
        status.clone(),
        cx.metrics.clone(),
        cx.role.clone(),
    );
    RunningSink {
        name,
        status,
        task: tokio::spawn(shipper.run(cx.stop.clone(), cx.drain)),
    }
}

/// Why a destination's client could not be built from its settings (the configuration
/// checks make these rare: a value that parses as a setting but not as a URL or header).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `var` gives a URL hyper does not accept.
    #[error("{var} gives an invalid {what} URL: {source}")]
    InvalidUrl {
        var: &'static str,
        what: &'static str,
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// A credential holds characters an HTTP header cannot carry.
    #[error("{var} contains characters not allowed in an HTTP header")]
    InvalidHeader { var: &'static str },
}
