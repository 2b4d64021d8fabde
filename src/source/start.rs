//! Starting a source: what every source is started with ([`SourceContext`]) and what a
//! started one hands back. Each source's `start` on its own settings builds and spawns its
//! tasks, so `pipeline::start` has one line per source.

use super::settings::{WebhookSettings, ZoomWsSettings};
use super::webhook::{WebhookSource, WebhookStartError};
use super::zoom_token::TokenSource;
use super::zoom_ws::{WsState, ZoomWsSource};
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
}

/// The started webhook endpoint.
pub struct RunningWebhook {
    pub task: JoinHandle<()>,
    pub addr: SocketAddr,
    /// Reloads the TLS certificate and key (SIGHUP), when it serves TLS.
    pub reload_tls: Option<Box<dyn Fn() -> Result<(), String> + Send + Sync>>,
}

impl ZoomWsSettings {
    /// Starts the token refresher and the WebSocket session; their live figures go to
    /// `state` (`relay spool inspect`).
    pub fn start(
        &self,
        cx: &SourceContext<'_>,
        state: Arc<WsState>,
    ) -> Result<Vec<JoinHandle<()>>, crate::net::tls::TlsError> {
        let tokens = TokenSource::new(cx.http.clone(), self.clone(), cx.metrics.clone());
        let tls = Arc::new(crate::net::tls::client_config(cx.ca_file, &[b"http/1.1"])?);
        let source = ZoomWsSource::new(
            self.clone(),
            tokens.clone(),
            cx.appender.clone(),
            cx.metrics.clone(),
            tls,
            cx.proxy.clone(),
            state,
        );
        Ok(vec![
            tokio::spawn(tokens.refresh_loop(cx.stop.clone())),
            tokio::spawn(source.run(cx.stop.clone())),
        ])
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
