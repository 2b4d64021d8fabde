//! A small HTTP server loop on hyper: accepts on a listener (optionally through TLS),
//! serves HTTP/1.1 and HTTP/2 with upgrades (the simulator's WebSocket), and stops
//! accepting on shutdown, giving open connections a moment to finish.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Response body type of every server here.
pub type RespBody = BoxBody<Bytes, Infallible>;

/// A response with a fixed body.
pub fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<RespBody> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()).boxed())
        .expect("valid response")
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<RespBody> {
    full(status, "text/plain; charset=utf-8", body.into())
}

/// A JSON response.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<RespBody> {
    full(
        status,
        "application/json",
        serde_json::to_vec(value).expect("serializable"),
    )
}

/// A TLS configuration that can be swapped while serving (certificate reload).
pub type SharedTls = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// Serves `handler` on `listener` until `shutdown` is cancelled.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    tls: Option<SharedTls>,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<RespBody>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| {
            let h = handler.clone();
            async move { Ok::<_, Infallible>(h(req).await) }
        });
        let watcher = graceful.watcher();
        match &tls {
            None => {
                tokio::spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                });
            }
            Some(tls) => {
                let cfg = tls.read().unwrap_or_else(|p| p.into_inner()).clone();
                let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}
