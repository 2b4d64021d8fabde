//! Outbound HTTP proxies: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY` (and their
//! lower-case forms), read as curl reads them, from the environment or the env file.
//!
//! Every outbound connection (Zoom's token endpoint, the Zoom WebSocket, LogScale) asks
//! [`Proxy::route`] first. Through a proxy, the relay opens an HTTP `CONNECT` tunnel to the
//! destination (hyper-util's `Tunnel`, with the proxy's basic credentials from the URL)
//! and speaks TLS to the destination inside it with the usual verification: the proxy
//! sees only the host name and port. `wss://` is routed like `https://`, `ws://` like
//! `http://`. Only `http://` proxy URLs are supported (TLS to the proxy itself is not).
//!
//! Proxy credentials never reach logs: [`Route`] prints the proxy as
//! `http://***@host:port`.

use hyper::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tower_service::Service;

/// The proxy variables, as set (validated by `config`: `http://` proxy URLs only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    pub http: Option<String>,
    pub https: Option<String>,
    pub all: Option<String>,
    pub no: Option<String>,
}

/// The proxy rules of the relay's environment.
#[derive(Clone, Default)]
pub struct Proxy {
    matcher: Option<Arc<Matcher>>,
}

/// How one destination is reached.
#[derive(Clone)]
pub enum Route {
    Direct,
    Tunnel(Intercept),
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Direct => f.write_str("direct"),
            Route::Tunnel(i) => {
                let uri = i.uri();
                let auth = if i.raw_auth().is_some() || i.basic_auth().is_some() {
                    "***@"
                } else {
                    ""
                };
                write!(
                    f,
                    "through proxy http://{auth}{}",
                    uri.authority()
                        .map_or("?", |a| a.as_str().rsplit('@').next().unwrap_or("?"))
                )
            }
        }
    }
}

impl Proxy {
    /// No proxy at all.
    pub fn none() -> Proxy {
        Proxy::default()
    }

    /// The rules of `cfg` (the variables as read by `config`).
    pub fn new(cfg: &ProxySettings) -> Proxy {
        if cfg.http.is_none() && cfg.https.is_none() && cfg.all.is_none() {
            return Proxy::none();
        }
        let mut b = Matcher::builder();
        if let Some(v) = &cfg.all {
            b = b.all(v.as_str());
        }
        if let Some(v) = &cfg.http {
            b = b.http(v.as_str());
        }
        if let Some(v) = &cfg.https {
            b = b.https(v.as_str());
        }
        if let Some(v) = &cfg.no {
            b = b.no(v.as_str());
        }
        Proxy {
            matcher: Some(Arc::new(b.build())),
        }
    }

    /// How `dst` (`http`, `https`, `ws` or `wss` URL) is reached.
    pub fn route(&self, dst: &Uri) -> Route {
        let Some(m) = &self.matcher else {
            return Route::Direct;
        };
        let as_http = match dst.scheme_str() {
            Some("wss") => with_scheme(dst, "https"),
            Some("ws") => with_scheme(dst, "http"),
            _ => Some(dst.clone()),
        };
        match as_http.and_then(|u| m.intercept(&u)) {
            Some(i) => Route::Tunnel(i),
            None => Route::Direct,
        }
    }

    /// A TCP stream to `host:port` of `dst`, through a tunnel if the rules say so (the
    /// WebSocket dialer, which does its own TLS and upgrade on top).
    pub async fn connect(&self, dst: &Uri) -> Result<TcpStream, String> {
        let host = dst.host().ok_or("no host in the URL")?;
        let port = dst.port_u16().unwrap_or(match dst.scheme_str() {
            Some("https") | Some("wss") => 443,
            _ => 80,
        });
        match self.route(dst) {
            Route::Direct => TcpStream::connect((host.trim_matches(['[', ']']), port))
                .await
                .map_err(|e| format!("TCP connection to {host}:{port}: {e}")),
            Route::Tunnel(i) => {
                let target: Uri = format!("https://{host}:{port}")
                    .parse()
                    .map_err(|e| format!("bad destination {host}:{port}: {e}"))?;
                let route = Route::Tunnel(i.clone());
                let io = tunnel(&i).call(target).await.map_err(|e| {
                    format!(
                        "{route}: CONNECT to {host}:{port} failed: {}",
                        super::error_chain(&e)
                    )
                })?;
                Ok(io.into_inner())
            }
        }
    }
}

fn with_scheme(uri: &Uri, scheme: &str) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    parts.scheme = Some(scheme.parse().ok()?);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some("/".parse().ok()?);
    }
    Uri::from_parts(parts).ok()
}

fn tunnel(i: &Intercept) -> Tunnel<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let t = Tunnel::new(i.uri().clone(), http);
    match i.basic_auth() {
        Some(auth) => t.with_auth(auth.clone()),
        None => t,
    }
}

/// The connector under the HTTP client's TLS layer: a plain TCP connection, or a
/// `CONNECT` tunnel through the proxy the rules choose for the destination.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    http: HttpConnector,
    proxy: Proxy,
}

impl ProxyConnector {
    pub(crate) fn new(proxy: Proxy) -> ProxyConnector {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        ProxyConnector { http, proxy }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match self.proxy.route(&dst) {
            Route::Direct => {
                let fut = self.http.call(dst);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            Route::Tunnel(i) => {
                let route = Route::Tunnel(i.clone());
                let mut t = tunnel(&i);
                Box::pin(async move {
                    t.call(dst).await.map_err(|e| -> BoxError {
                        format!("{route}: {}", super::error_chain(&e)).into()
                    })
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(https: Option<&str>, no: Option<&str>) -> ProxySettings {
        ProxySettings {
            http: None,
            https: https.map(str::to_string),
            all: None,
            no: no.map(str::to_string),
        }
    }

    #[test]
    fn routes_follow_the_variables_and_hide_credentials() {
        let p = Proxy::new(&cfg(
            Some("http://alice:s3cret@proxy.corp:3128"),
            Some("internal.corp,10.0.0.0/8"),
        ));
        let r = p.route(&"https://api.zoom.us/oauth".parse().unwrap());
        let shown = r.to_string();
        assert_eq!(shown, "through proxy http://***@proxy.corp:3128");
        assert!(!shown.contains("s3cret"));
        assert!(matches!(
            p.route(&"wss://ws.zoom.us/ws".parse().unwrap()),
            Route::Tunnel(_)
        ));
        assert!(matches!(
            p.route(&"https://logs.internal.corp".parse().unwrap()),
            Route::Direct
        ));
        assert!(matches!(
            p.route(&"https://10.1.2.3:8443".parse().unwrap()),
            Route::Direct
        ));
        // HTTPS_PROXY does not apply to plain http.
        assert!(matches!(
            p.route(&"http://cloud.example".parse().unwrap()),
            Route::Direct
        ));
        assert!(matches!(
            Proxy::none().route(&"https://x".parse().unwrap()),
            Route::Direct
        ));
        let bare = Proxy::new(&cfg(Some("proxy.corp:3128"), None));
        assert_eq!(
            bare.route(&"https://x".parse().unwrap()).to_string(),
            "through proxy http://proxy.corp:3128"
        );
    }
}
