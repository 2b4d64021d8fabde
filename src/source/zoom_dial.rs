//! [`Dialer`]: opens one WebSocket connection to Zoom: TCP (directly or through the
//! proxy's CONNECT tunnel), TLS for `wss://` (certificates always verified), and the HTTP
//! upgrade, each with a timeout. [`super::zoom_ws`] runs sessions over what it returns;
//! `relay check` uses [`Dialer::probe`] to test the whole path once.
//!
//! The token travels in the URL's query (Zoom's protocol), so every URL that reaches a log
//! goes through [`redact_url`] and no error text here contains the URL.

use super::end_reason::EndReason;
use super::frame::{classify, FrameKind};
use crate::net::proxy::Proxy;
use crate::net::read_cap::{ReadCap, WS_READ_CHUNK};
use crate::net::redact_url;
use crate::secret::Secret;
use crate::source::settings::ZoomWsSettings;
use bytes::Bytes;
use fastwebsockets::Frame;
use http_body_util::Empty;
use hyper::Request;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const BUILD_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A dial (TCP, TLS, upgrade) that failed.
#[derive(Debug)]
pub(super) struct DialError {
    pub(super) reason: EndReason,
    pub(super) detail: String,
}

impl From<(EndReason, String)> for DialError {
    fn from((reason, detail): (EndReason, String)) -> DialError {
        DialError { reason, detail }
    }
}

/// Opens WebSocket connections to Zoom (TCP, TLS for `wss://`, the HTTP upgrade).
pub(crate) struct Dialer {
    pub(super) cfg: ZoomWsSettings,
    /// The subscription's URL (one of `cfg.wss_urls`).
    url: String,
    tls: Arc<rustls::ClientConfig>,
    proxy: Proxy,
}

/// A client executor for the upgrade handshake.
struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::spawn(fut);
    }
}

pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

impl Dialer {
    pub(crate) fn new(
        cfg: ZoomWsSettings,
        url: String,
        tls: Arc<rustls::ClientConfig>,
        proxy: Proxy,
    ) -> Dialer {
        Dialer {
            cfg,
            url,
            tls,
            proxy,
        }
    }

    /// How the WebSocket endpoint is reached (`relay check` says it).
    pub(crate) fn route(&self) -> String {
        self.url
            .parse::<hyper::Uri>()
            .map(|u| self.proxy.route(&u).to_string())
            .unwrap_or_else(|_| "direct".into())
    }

    pub(super) fn url_with_token(&self, token: &Secret) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        let token: String = form_urlencoded::byte_serialize(token.expose().as_bytes()).collect();
        format!("{}{sep}access_token={token}", self.url)
    }

    pub(super) async fn connect(&self, url: &str) -> Result<Box<dyn Stream>, DialError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| (EndReason::ConnectFailed, format!("invalid URL: {e}")))?;
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string();
        let tls = uri.scheme_str() == Some("wss");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, self.proxy.connect(&uri))
            .await
            .map_err(|_| {
                (
                    EndReason::ConnectFailed,
                    format!(
                        "no TCP connection to {host}:{port} within {CONNECT_TIMEOUT:?} ({})",
                        self.proxy.route(&uri)
                    ),
                )
            })?
            .map_err(|e| (EndReason::ConnectFailed, e))?;
        let _ = tcp.set_nodelay(true);
        if !tls {
            return Ok(Box::new(tcp));
        }
        let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| {
            (
                EndReason::ConnectFailed,
                format!("bad host name {host}: {e}"),
            )
        })?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| {
                (
                    EndReason::TlsFailed,
                    format!("TLS handshake with {host} timed out"),
                )
            })?
            .map_err(|e| {
                (
                    EndReason::TlsFailed,
                    format!("TLS handshake with {host}: {e}"),
                )
            })?;
        Ok(Box::new(stream))
    }

    /// Connects, waits for `build_connection`, and closes (`relay check`). Spools nothing.
    pub(crate) async fn probe(&self, token: &Secret) -> Result<String, String> {
        let url = self.url_with_token(token);
        let stream = self.connect(&url).await.map_err(|e| e.detail)?;
        let ws = self.upgrade(&url, stream).await.map_err(|e| e.detail)?;
        let mut ws = fastwebsockets::FragmentCollector::new(ws);
        let frame = tokio::time::timeout(BUILD_CONNECTION_TIMEOUT, ws.read_frame())
            .await
            .map_err(|_| format!("no build_connection within {BUILD_CONNECTION_TIMEOUT:?}"))?
            .map_err(|e| format!("reading the first frame: {e}"))?;
        let kind = classify(&frame.payload);
        let _ = ws
            .write_frame(Frame::close(1000, b"relay check done"))
            .await;
        match kind {
            FrameKind::BuildConnection { success: true, .. } => Ok(redact_url(&url)),
            FrameKind::BuildConnection {
                success: false,
                content,
            }
            | FrameKind::TokenRejected { content } => {
                Err(format!("Zoom refused the connection: {content}"))
            }
            other => Err(format!("unexpected first frame: {other:?}")),
        }
    }

    pub(super) async fn upgrade(
        &self,
        url: &str,
        stream: Box<dyn Stream>,
    ) -> Result<
        fastwebsockets::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
        DialError,
    > {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| (EndReason::ConnectFailed, format!("invalid URL: {e}")))?;
        let host_header = match uri.port() {
            Some(p) => format!("{}:{}", uri.host().unwrap_or_default(), p),
            None => uri.host().unwrap_or_default().to_string(),
        };
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let req = Request::builder()
            .method("GET")
            .uri(path)
            .header("host", host_header)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header(
                "sec-websocket-key",
                fastwebsockets::handshake::generate_key(),
            )
            .header("sec-websocket-version", "13")
            .header(
                "user-agent",
                concat!("qss-relay/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .expect("valid request");
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            fastwebsockets::handshake::client(
                &SpawnExecutor,
                req,
                ReadCap::new(stream, WS_READ_CHUNK),
            ),
        )
        .await
        {
            Ok(Ok((ws, _resp))) => Ok(ws),
            // The error text never contains the URL, so no token can leak from it.
            Ok(Err(e)) => Err((
                EndReason::HandshakeFailed,
                format!("WebSocket upgrade refused: {e}"),
            )
                .into()),
            Err(_) => Err((
                EndReason::HandshakeFailed,
                "WebSocket upgrade timed out".to_string(),
            )
                .into()),
        }
    }
}
