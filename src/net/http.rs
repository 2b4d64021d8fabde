//! The HTTP client (hyper 1 over rustls) used to talk to LogScale and to Zoom's token
//! endpoint: connection reuse, HTTP/1.1 and HTTP/2 chosen by ALPN, `http://` allowed for
//! local tests and proxies, a timeout over the whole exchange, and bounded response
//! bodies.

use super::error_chain;
use super::proxy::{Proxy, ProxyConnector};
use super::tls::{client_config, TlsError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::time::Duration;

/// Request body type.
pub type Body = Full<Bytes>;

/// Response bodies larger than this are cut (only an excerpt is ever needed).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A cloneable client; clones share the connection pool.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<ProxyConnector>, Body>,
}

/// A response with its (bounded) body read.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The start of the body as text, for logs and `spool inspect`.
    pub fn excerpt(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(max) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text.to_string(),
        }
    }
}

/// Why no response came back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
}

impl HttpClient {
    /// A client trusting the system and webpki roots plus `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Result<HttpClient, TlsError> {
        HttpClient::with_proxy(ca_file, Proxy::none())
    }

    /// A client that reaches destinations through `proxy` where its rules say so.
    pub fn with_proxy(ca_file: Option<&Path>, proxy: Proxy) -> Result<HttpClient, TlsError> {
        // hyper-rustls sets ALPN itself (h2, http/1.1) from enable_http1/enable_http2.
        let tls = client_config(ca_file, &[])?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(ProxyConnector::new(proxy));
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(HttpClient { inner })
    }

    /// Sends `req` and reads the response, all within `timeout`.
    pub async fn send(&self, req: Request<Body>, timeout: Duration) -> Result<Reply, HttpError> {
        let exchange = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| HttpError::Transport(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
                Ok(c) => c.to_bytes(),
                // An over-long body still leaves the status to act on.
                Err(e) if e.is::<http_body_util::LengthLimitError>() => Bytes::new(),
                // A body cut short: the exchange failed, whatever the status said.
                Err(e) => {
                    return Err(HttpError::Transport(format!(
                        "connection broke while reading the response: {e}"
                    )))
                }
            };
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(timeout)),
        }
    }
}
