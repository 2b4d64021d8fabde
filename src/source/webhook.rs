//! The Zoom webhook source: `POST /zoom/webhook`, signed by Zoom, answered 200 only once
//! the event is durable in the spool.
//!
//! - `endpoint.url_validation` is answered at once with
//!   `{"plainToken":P,"encryptedToken":hex(HMAC-SHA256(secret, P))}`.
//! - Every other request must carry a valid `x-zm-signature` over
//!   `v0:{x-zm-request-timestamp}:{body}` and a timestamp within `RELAY_WEBHOOK_MAX_SKEW_SECS`
//!   of now; otherwise 401 and nothing is spooled. Bodies over the limit get 413.
//! - A valid event is appended with [`Appender::send_durable`]: the 200 goes out only
//!   after the spool flushed it. If the spool cannot take it (full with `reject-new`, a
//!   storage error, shutting down) the answer is 503, and Zoom's own retries cover it.
//!
//! TLS (rustls) is served when `RELAY_WEBHOOK_TLS_CERT`/`_KEY` are set; the pair is
//! reloaded on SIGHUP. Otherwise plain HTTP, meant to sit behind a reverse proxy.

use super::signature;
use crate::metrics::{label, Metrics};
use crate::net::server::{self, ConnLimits, ConnStats, RespBody, SharedTls};
use crate::source::settings::WebhookSettings;
use crate::spool::{flags, AppendError, Appender, NewRecord, SourceKind};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The path Zoom posts to.
pub(crate) const PATH: &str = "/zoom/webhook";

#[derive(Deserialize)]
struct Probe {
    event: Option<String>,
    payload: Option<ProbePayload>,
}

#[derive(Deserialize)]
struct ProbePayload {
    #[serde(rename = "plainToken")]
    plain_token: Option<String>,
}

struct Ctx {
    cfg: WebhookSettings,
    appender: Appender,
    metrics: Arc<Metrics>,
    /// Bodies being read at once (`RELAY_WEBHOOK_MAX_BODIES`).
    bodies: tokio::sync::Semaphore,
}

/// A bound, not yet serving, webhook endpoint.
pub(crate) struct WebhookSource {
    listener: TcpListener,
    tls: Option<SharedTls>,
    ctx: Arc<Ctx>,
}

/// Why the webhook endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookStartError {
    #[error(transparent)]
    Bind(#[from] crate::net::BindError),
    #[error("{0}")]
    Other(String),
}

impl WebhookSource {
    /// Binds the listener and loads the TLS pair, so that mistakes show at startup.
    pub(crate) async fn bind(
        cfg: WebhookSettings,
        appender: Appender,
        metrics: Arc<Metrics>,
    ) -> Result<WebhookSource, WebhookStartError> {
        let listener =
            TcpListener::bind(cfg.addr)
                .await
                .map_err(|source| crate::net::BindError {
                    what: "the webhook endpoint",
                    var: "RELAY_WEBHOOK_ADDR",
                    addr: cfg.addr,
                    source,
                })?;
        let tls = match &cfg.tls {
            None => None,
            Some((cert, key)) => {
                let c = crate::net::tls::server_config(cert, key).map_err(|e| {
                    WebhookStartError::Other(format!(
                        "RELAY_WEBHOOK_TLS_CERT/RELAY_WEBHOOK_TLS_KEY: {e}"
                    ))
                })?;
                Some(Arc::new(RwLock::new(Arc::new(c))))
            }
        };
        tracing::info!(
            addr = %listener.local_addr().map_err(|e| WebhookStartError::Other(e.to_string()))?,
            tls = tls.is_some(),
            path = PATH,
            "webhook endpoint listening"
        );
        Ok(WebhookSource {
            listener,
            tls,
            ctx: Arc::new(Ctx {
                bodies: tokio::sync::Semaphore::new(cfg.max_bodies),
                cfg,
                appender,
                metrics,
            }),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// A function that reloads the certificate and key from their files (SIGHUP).
    pub(crate) fn tls_reloader(&self) -> Option<Box<dyn Fn() -> Result<(), String> + Send + Sync>> {
        let shared = self.tls.clone()?;
        let (cert, key) = self.ctx.cfg.tls.clone()?;
        Some(Box::new(move || {
            let c = crate::net::tls::server_config(&cert, &key)?;
            *shared.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
            tracing::info!(cert = %cert.display(), "webhook TLS certificate reloaded");
            Ok(())
        }))
    }

    /// Serves until `shutdown`; requests in progress finish (and get their answer).
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let ctx = self.ctx;
        let cfg = &ctx.cfg;
        // Half the descriptors at most, so that a flood never starves the spool, the
        // shipper and the WebSocket of theirs.
        let fd_share = (crate::net::nofile_limit() / 2).max(16) as usize;
        let max_connections = cfg.max_connections.min(fd_share);
        if max_connections < cfg.max_connections {
            tracing::warn!(
                configured = cfg.max_connections,
                effective = max_connections,
                "RELAY_WEBHOOK_MAX_CONNECTIONS lowered to half the open-files limit (raise LimitNOFILE)"
            );
        }
        let limits = ConnLimits {
            max_connections: Some(max_connections),
            header_timeout: Some(cfg.header_timeout),
            idle_timeout: Some(cfg.idle_timeout),
        };
        let m = &ctx.metrics;
        let stats = Arc::new(ConnStats {
            refused_at_cap: m.webhook_connections_refused.clone(),
            closed_idle: m.webhook_connections_closed_idle.clone(),
            open: m.webhook_connections_open.clone(),
        });
        let handler_ctx = ctx.clone();
        server::serve_limited(
            self.listener,
            self.tls,
            limits,
            stats,
            shutdown,
            move |req| {
                let ctx = handler_ctx.clone();
                async move { handle(&ctx, req).await }
            },
        )
        .await;
    }
}

fn count(ctx: &Ctx, result: &'static str) {
    ctx.metrics
        .webhook_requests
        .get_or_create(&label("result", result))
        .inc();
}

/// How much of a refused (too large) body is read and discarded before the 413, and for
/// how long at most.
const DRAIN_LIMIT: usize = 8 << 20;
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards the rest of a body refused as too large, within [`DRAIN_LIMIT`]
/// and [`DRAIN_TIMEOUT`], before the 413 goes out. Answering while the client is still
/// sending makes the connection close under it, and the client often sees a reset
/// ("broken pipe") instead of the 413; the same lingering read as nginx's. Past either
/// bound the connection closes as before.
async fn drain_refused(mut body: Incoming) {
    let drain = async {
        let mut left = DRAIN_LIMIT;
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            if n >= left {
                return;
            }
            left -= n;
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
}

fn refuse(ctx: &Ctx, status: StatusCode, result: &'static str, msg: &str) -> Response<RespBody> {
    count(ctx, result);
    server::json(status, &serde_json::json!({"error": msg}))
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<RespBody> {
    if req.uri().path() != PATH {
        return refuse(
            ctx,
            StatusCode::NOT_FOUND,
            "not_found",
            "not found: Zoom webhooks go to POST /zoom/webhook",
        );
    }
    if req.method() != Method::POST {
        return refuse(
            ctx,
            StatusCode::METHOD_NOT_ALLOWED,
            "bad_request",
            "use POST",
        );
    }
    let max = ctx.cfg.max_body_bytes;
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        drain_refused(req.into_body()).await;
        return refuse(
            ctx,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "body too large (RELAY_WEBHOOK_MAX_BODY_BYTES)",
        );
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let timestamp = header("x-zm-request-timestamp");
    let signature_header = header("x-zm-signature");
    let Ok(reading) = ctx.bodies.try_acquire() else {
        // As many bodies as allowed are being read: refuse before reading this one.
        let mut resp = refuse(
            ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many requests at once; retry later",
        );
        resp.headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
        resp.headers_mut().insert(
            "connection",
            hyper::header::HeaderValue::from_static("close"),
        );
        return resp;
    };
    let mut incoming = req.into_body();
    let read = tokio::time::timeout(
        ctx.cfg.body_timeout,
        Limited::new(&mut incoming, max).collect(),
    )
    .await;
    let Ok(read) = read else {
        let mut resp = refuse(
            ctx,
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the body did not arrive within RELAY_WEBHOOK_BODY_TIMEOUT_SECS",
        );
        resp.headers_mut().insert(
            "connection",
            hyper::header::HeaderValue::from_static("close"),
        );
        return resp;
    };
    let body = match read {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            drain_refused(incoming).await;
            return refuse(
                ctx,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "body too large (RELAY_WEBHOOK_MAX_BODY_BYTES)",
            );
        }
        Err(_) => {
            return refuse(
                ctx,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "could not read the body",
            )
        }
    };
    // The body is in memory: the slot goes to the next reader (a wait for the spool
    // below is not bounded by it).
    drop(reading);
    let secret = ctx.cfg.secret_token.expose().as_bytes();

    let probe: Option<Probe> = serde_json::from_slice(&body).ok();
    if let Some(p) = &probe {
        if p.event.as_deref() == Some("endpoint.url_validation") {
            let Some(plain) = p.payload.as_ref().and_then(|p| p.plain_token.as_deref()) else {
                return refuse(
                    ctx,
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "url_validation without payload.plainToken",
                );
            };
            count(ctx, "url_validation");
            tracing::info!("answered Zoom's endpoint URL validation");
            return server::json(
                StatusCode::OK,
                &serde_json::json!({"plainToken": plain, "encryptedToken": signature::url_validation_token(secret, plain)}),
            );
        }
    }

    let (Some(ts), Some(sig)) = (timestamp, signature_header) else {
        return refuse(
            ctx,
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "missing x-zm-request-timestamp or x-zm-signature",
        );
    };
    if !signature::verify(secret, &ts, &body, &sig) {
        tracing::warn!("webhook with a wrong signature refused (check ZOOM_WEBHOOK_SECRET_TOKEN against the app's secret token)");
        return refuse(
            ctx,
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "invalid signature",
        );
    }
    let now = crate::time::now_ms() / 1000;
    let fresh = ts
        .trim()
        .parse::<i64>()
        .is_ok_and(|t| (now as i64 - t).unsigned_abs() <= ctx.cfg.max_skew.as_secs());
    if !fresh {
        tracing::warn!(timestamp = %ts, "webhook with a stale or invalid timestamp refused (replay, or a clock off by minutes)");
        return refuse(
            ctx,
            StatusCode::UNAUTHORIZED,
            "stale",
            "timestamp outside the allowed window",
        );
    }

    let mut record = NewRecord::new(SourceKind::Webhook, body);
    if probe.is_none() {
        record = record.with_flags(flags::MALFORMED);
    }
    ctx.metrics
        .events_received
        .get_or_create(&label("source", "webhook"))
        .inc();
    match ctx.appender.send_durable(record).await {
        Ok(_) => {
            count(ctx, "accepted");
            server::json(StatusCode::OK, &serde_json::json!({"status": "stored"}))
        }
        Err(e) => {
            let result = match e {
                AppendError::Full => "spool_full",
                AppendError::Closed => "shutting_down",
                AppendError::Storage(_) => "spool_error",
            };
            tracing::error!(error = %e, "webhook event not stored: answered 503 so that Zoom retries it");
            refuse(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                result,
                "temporarily unable to store the event; retry later",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::http::{Body, HttpClient};
    use crate::secret::Secret;
    use crate::spool::Spool;
    use crate::spool::{FullPolicy, SpoolSettings};
    use std::time::Duration;

    const SECRET: &str = "unit-secret";

    async fn post(addr: SocketAddr, body: &'static [u8]) -> (u16, String) {
        let ts = (crate::time::now_ms() / 1000).to_string();
        let req = hyper::Request::post(format!("http://{addr}{PATH}"))
            .header(
                "x-zm-signature",
                signature::sign(SECRET.as_bytes(), &ts, body),
            )
            .header("x-zm-request-timestamp", ts)
            .body(Body::new(bytes::Bytes::from_static(body)))
            .unwrap();
        let r = HttpClient::new(None)
            .unwrap()
            .send(req, Duration::from_secs(10))
            .await
            .unwrap();
        (
            r.status.as_u16(),
            String::from_utf8_lossy(&r.body).into_owned(),
        )
    }

    /// A webhook is answered 200 only when its record is durable: a storage failure and a
    /// stopped writer (shutting down) both answer 503, so that Zoom sends it again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_disk_error_or_a_shutdown_answers_503() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let spool = Spool::open(
            &SpoolSettings {
                dir: dir.path().to_path_buf(),
                max_bytes: 1 << 30,
                min_free_bytes: 0,
                full_policy: FullPolicy::RejectNew,
                commit_interval: Duration::from_millis(2),
                cache_bytes: 8 << 20,
                rotate_bytes: crate::spool::ROTATE_BYTES,
            },
            metrics.clone(),
        )
        .unwrap();
        let (appender, writer) = spool.start_writer(64 << 10);
        let cfg = WebhookSettings {
            secret_token: Secret::new(SECRET),
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            max_body_bytes: 1 << 20,
            max_skew: Duration::from_secs(300),
            max_connections: 64,
            max_bodies: 8,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
        };
        let source = WebhookSource::bind(cfg, appender, metrics.clone())
            .await
            .unwrap();
        let addr = source.local_addr();
        let stop = CancellationToken::new();
        let serving = tokio::spawn(source.run(stop.clone()));
        let body = br#"{"event":"meeting.started","event_ts":1}"#;

        assert_eq!(post(addr, body).await.0, 200);
        spool.fail_syncs_for_tests(true);
        let (status, text) = post(addr, body).await;
        assert_eq!(status, 503, "{text}");
        // The spool has failed for good: still 503 once syncing would work again.
        spool.fail_syncs_for_tests(false);
        assert_eq!(post(addr, body).await.0, 503);
        assert!(spool.failure().is_some());
        let spool_errors = metrics
            .webhook_requests
            .get_or_create(&label("result", "spool_error"))
            .get();
        assert_eq!(spool_errors, 2);

        // Shutting down: the writer is gone while the endpoint still answers.
        writer.abort();
        let _ = writer.await;
        let (status, _) = post(addr, body).await;
        assert_eq!(status, 503);
        let shutting_down = metrics
            .webhook_requests
            .get_or_create(&label("result", "shutting_down"))
            .get();
        assert_eq!(shutting_down, 1);
        stop.cancel();
        let _ = serving.await;
    }
}
