//! A small HTTP server loop on hyper: accepts on a TCP listener (optionally through TLS)
//! or a Unix socket, serves HTTP/1.1 and HTTP/2 with upgrades (the simulator's WebSocket),
//! and stops accepting on shutdown, giving open connections a moment to finish.
//!
//! A listener that faces the internet (the webhook endpoint) is bounded by [`ConnLimits`]:
//! a connection cap (over it, new connections are closed before a byte is read), a
//! deadline for the request head, and an idle timeout, so that slow or silent clients
//! cannot pin descriptors and memory.

use crate::logging::LogThrottle;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

/// Response body type of every server here.
pub(crate) type RespBody = BoxBody<Bytes, Infallible>;

/// A response with a fixed body.
pub(crate) fn full(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<RespBody> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()).boxed())
        .expect("valid response")
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<RespBody> {
    full(status, "text/plain; charset=utf-8", body.into())
}

/// A JSON response.
pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<RespBody> {
    full(
        status,
        "application/json",
        serde_json::to_vec(value).expect("serializable"),
    )
}

/// A TLS configuration that can be swapped while serving (certificate reload).
pub(crate) type SharedTls = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// What a listener facing untrusted clients bounds: connections at once, time to send the
/// request head, and time a connection may stay silent. Over the connection cap a new
/// connection is closed at once, before any byte is read.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnLimits {
    pub max_connections: Option<usize>,
    /// Whole request head within this (slowloris); also bounds a TLS handshake.
    pub header_timeout: Option<Duration>,
    /// A connection with no byte read or written for this long is closed (idle
    /// keep-alive, HTTP/2 connections that never send a request).
    pub idle_timeout: Option<Duration>,
}

impl ConnLimits {
    /// No limits: the simulator's fakes.
    pub(crate) const NONE: ConnLimits = ConnLimits {
        max_connections: None,
        header_timeout: None,
        idle_timeout: None,
    };
}

/// What the limits did, as metrics (clones of registered metrics share their values).
#[derive(Debug, Default, Clone)]
pub(crate) struct ConnStats {
    pub refused_at_cap: Counter,
    pub closed_idle: Counter,
    pub open: Gauge,
}

/// Serves `handler` on `listener` until `shutdown` is cancelled.
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    tls: Option<SharedTls>,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<RespBody>> + Send + 'static,
{
    serve_limited(
        listener,
        tls,
        ConnLimits::NONE,
        Arc::new(ConnStats::default()),
        shutdown,
        handler,
    )
    .await
}

/// [`serve`] with [`ConnLimits`]; `stats` counts what the limits did.
pub(crate) async fn serve_limited<F, Fut>(
    listener: TcpListener,
    tls: Option<SharedTls>,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<RespBody>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = limits
        .max_connections
        .map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
    let accept_errors = LogThrottle::new(Duration::from_secs(10));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    after_accept_error(&e, "accept failed", &accept_errors).await;
                    continue;
                }
            },
        };
        let permit = match &slots {
            None => None,
            Some(s) => match s.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    // Over the cap: closed before a byte is read.
                    stats.refused_at_cap.inc();
                    drop(stream);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            handler: handler.clone(),
            limits: limits.clone(),
            stats: stats.clone(),
            watcher: graceful.watcher(),
        };
        match &tls {
            None => {
                tokio::spawn(async move {
                    conn.serve(stream).await;
                    drop(permit);
                });
            }
            Some(tls) => {
                let cfg = tls.read().unwrap_or_else(|p| p.into_inner()).clone();
                let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                let handshake = limits.header_timeout.unwrap_or(Duration::from_secs(10));
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    conn.serve(stream).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

/// Serves `handler` on a Unix socket until `shutdown`, to peers whose user id `allow`
/// accepts (checked with SO_PEERCRED on every connection; the socket file's mode is the
/// first gate, this the second).
pub(crate) async fn serve_unix<F, Fut>(
    listener: UnixListener,
    allow: impl Fn(u32) -> bool + Send + 'static,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<RespBody>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let accept_errors = LogThrottle::new(Duration::from_secs(10));
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    after_accept_error(&e, "operator socket: accept failed", &accept_errors).await;
                    continue;
                }
            },
        };
        match stream.peer_cred() {
            Ok(cred) if allow(cred.uid()) => {}
            Ok(cred) => {
                tracing::warn!(
                    uid = cred.uid(),
                    "operator socket: connection from another user refused"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "operator socket: cannot read the peer's credentials; refused");
                continue;
            }
        }
        let conn = Connection {
            handler: handler.clone(),
            limits: ConnLimits::NONE,
            stats: Arc::new(ConnStats::default()),
            watcher: graceful.watcher(),
        };
        tokio::spawn(conn.serve(stream));
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

/// After a failed accept (EMFILE and friends): say so at most once per 10 s, and wait a
/// little instead of spinning.
async fn after_accept_error(e: &std::io::Error, what: &str, throttle: &LogThrottle) {
    if let Some(held_back) = throttle.allow() {
        tracing::warn!(error = %e, similar_lines_held_back = held_back, "{what}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One accepted connection and what serving it needs.
struct Connection<F> {
    handler: F,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    watcher: hyper_util::server::graceful::Watcher,
}

impl<F, Fut> Connection<F>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<RespBody>> + Send + 'static,
{
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handler = self.handler;
        let service = hyper::service::service_fn(move |req| {
            let h = handler.clone();
            async move { Ok::<_, Infallible>(h(req).await) }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        if let Some(t) = self.limits.header_timeout {
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(t);
        }
        self.stats.open.inc();
        match self.limits.idle_timeout {
            // No idle limit (the simulator, the operator socket): the stream as it is, no
            // per-read bookkeeping.
            None => {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let _ = self.watcher.watch(conn.into_owned()).await;
            }
            Some(idle) => {
                // 0 until the first byte arrives: a connection that never sends anything
                // gets the header timeout, not the (longer) idle timeout.
                let last_activity = Arc::new(AtomicU64::new(0));
                let opened_ms = crate::time::now_ms();
                let io = TokioIo::new(Activity {
                    inner: stream,
                    last_ms: last_activity.clone(),
                });
                let conn = builder.serve_connection_with_upgrades(io, service);
                let serving = self.watcher.watch(conn.into_owned());
                let first = self.limits.header_timeout.unwrap_or(idle);
                tokio::select! {
                    _ = serving => {}
                    _ = idle_expired(&last_activity, opened_ms, first, idle) => {
                        self.stats.closed_idle.inc();
                    }
                }
            }
        }
        self.stats.open.dec();
    }
}

/// Completes once no byte moved for `idle`, or, before any byte moved, for `first` since
/// `opened_ms`.
async fn idle_expired(last_ms: &AtomicU64, opened_ms: u64, first: Duration, idle: Duration) {
    loop {
        let (since, limit) = match last_ms.load(Ordering::Relaxed) {
            0 => (opened_ms, first.as_millis() as u64),
            last => (last, idle.as_millis() as u64),
        };
        let quiet = crate::time::now_ms().saturating_sub(since);
        if quiet >= limit {
            return;
        }
        // Never sleep past one idle period: the first byte may arrive while waiting out
        // the (longer) first-byte deadline, and from then on the idle timeout counts.
        let idle_ms = idle.as_millis() as u64;
        tokio::time::sleep(Duration::from_millis((limit - quiet).min(idle_ms).max(50))).await;
    }
}

pin_project_lite::pin_project! {
    /// A stream that records when a byte last moved through it.
    struct Activity<S> {
        #[pin]
        inner: S,
        last_ms: Arc<AtomicU64>,
    }
}

impl<S: AsyncRead> AsyncRead for Activity<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.last_ms.store(crate::time::now_ms(), Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite> AsyncWrite for Activity<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.last_ms.store(crate::time::now_ms(), Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.last_ms.store(crate::time::now_ms(), Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
