//! Starting a source: what every source is started with ([`SourceContext`]) and what a
//! started one hands back. Each source's `start` on its own settings builds and spawns its
//! tasks, so `pipeline::start` has one line per source.

use super::settings::{WebhookSettings, ZoomWsSettings};
use super::webhook::{WebhookSource, WebhookStartError};
use super::zoom_token::TokenSource;
use super::zoom_ws::{WsParts, WsState, ZoomWsSource};
use crate::metrics::Metrics;
use crate::net::http::HttpClient;
use crate::net::proxy::Proxy;
use crate::spool::Appender;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What every source is started with.
pub struct SourceContext<'a> {
    /// Where received frames and bodies go.
    pub appender: &'a Appender,
    /// For Zoom's OAuth endpoint (proxy-aware, verifying TLS).
    pub http: &'a HttpClient,
    pub proxy: &'a Proxy,
    /// `RELAY_CA_FILE`, trusted besides the system roots.
    pub ca_file: Option<&'a Path>,
    pub metrics: &'a Arc<Metrics>,
    /// Cancelled at shutdown: sources stop taking input first.
    pub stop: &'a CancellationToken,
    /// Cold standby: the WebSocket connects only while this relay leads.
    pub leader_gate: Option<Arc<dyn crate::role::Role>>,
}

/// The started webhook endpoint.
pub struct RunningWebhook {
    pub task: JoinHandle<()>,
    pub addr: SocketAddr,
    /// Reloads the TLS certificate and key (SIGHUP), when it serves TLS.
    pub reload_tls: Option<Box<dyn Fn() -> Result<(), String> + Send + Sync>>,
}

impl ZoomWsSettings {
    /// The live state of each subscription, in the order of `wss_urls` (made before the
    /// sources start, so that `inspect` can show them from the first moment).
    pub fn states(&self) -> Vec<Arc<WsState>> {
        self.wss_urls
            .iter()
            .map(|u| Arc::new(WsState::new(ZoomWsSettings::subscription_of(u))))
            .collect()
    }

    /// Starts the token refresher (one token for every subscription: the same app) and one
    /// WebSocket session per subscription, each with its own heartbeat and reconnects;
    /// with several, an event that arrives on more than one is spooled once.
    pub fn start(
        &self,
        cx: &SourceContext<'_>,
        states: &[Arc<WsState>],
    ) -> Result<Vec<JoinHandle<()>>, crate::net::tls::TlsError> {
        let tokens = TokenSource::new(cx.http.clone(), self.clone(), cx.metrics.clone());
        let parts = WsParts {
            cfg: self.clone(),
            tokens: tokens.clone(),
            appender: cx.appender.clone(),
            metrics: cx.metrics.clone(),
            tls: Arc::new(crate::net::tls::client_config(cx.ca_file, &[b"http/1.1"])?),
            proxy: cx.proxy.clone(),
            dedup: (self.wss_urls.len() > 1).then(Default::default),
            gate: cx.leader_gate.clone(),
        };
        let mut tasks = vec![tokio::spawn(tokens.refresh_loop(cx.stop.clone()))];
        for (url, state) in self.wss_urls.iter().zip(states) {
            let source = ZoomWsSource::new(&parts, url.clone(), state.clone());
            tasks.push(tokio::spawn(source.run(cx.stop.clone())));
        }
        Ok(tasks)
    }
}

impl WebhookSettings {
    /// Binds the endpoint (mistakes show at start) and serves it.
    pub async fn start(&self, cx: &SourceContext<'_>) -> Result<RunningWebhook, WebhookStartError> {
        let source =
            WebhookSource::bind(self.clone(), cx.appender.clone(), cx.metrics.clone()).await?;
        Ok(RunningWebhook {
            addr: source.local_addr(),
            reload_tls: source.tls_reloader(),
            task: tokio::spawn(source.run(cx.stop.clone())),
        })
    }
}
