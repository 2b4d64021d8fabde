//! The admin endpoint (`RELAY_ADMIN_ADDR`, default `127.0.0.1:9464`): metrics, health,
//! and the spool's state for the operator commands.
//!
//! While the daemon runs, sled's lock keeps every other process out of the spool, so
//! `relay spool ...` asks the daemon here instead; when the daemon is stopped the commands
//! open the spool themselves. Both paths produce the same report types, defined here.
//!
//! | route                       | what                                             |
//! |-----------------------------|--------------------------------------------------|
//! | `GET /metrics`              | Prometheus text format                           |
//! | `GET /healthz`              | 200 while the process serves                     |
//! | `GET /readyz`               | 200 once the spool is open and sources started   |
//! | `GET /spool/inspect`        | [`InspectReport`] as JSON                        |
//! | `GET /spool/peek?n=&from=`  | pending records as [`PeekRecord`]s               |
//! | `GET /spool/export?from=&to=&raw=` | pending records as NDJSON (streamed)      |
//! | `GET /spool/dead`, `GET /spool/dead/ID` | the dead-letter area                 |
//! | `POST /spool/dead/retry?ids=`, `POST /spool/dead/purge?ids=` | `ids=all` or a comma list |

use crate::metrics::Metrics;
use crate::net::server::{self, RespBody};
use crate::ship::hec::{Encoder, HecSettings};
use crate::ship::status::{ShipError, ShipState, ShipStatus};
use crate::source::zoom_ws::{WsSnapshot, WsState};
use crate::spool::{DeadId, DeadLetter, DeadSummary, Record, SourceKind, Spool, SpoolStats};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What `relay spool inspect --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectReport {
    #[serde(flatten)]
    pub spool: SpoolStats,
    /// `daemon` (asked the running relay) or `disk` (opened the stopped spool).
    pub read_from: String,
    pub shipper: Option<ShipState>,
    pub last_ship_error: Option<ShipError>,
    pub last_ship_success_ms: Option<u64>,
    /// The Zoom WebSocket source, when the daemon runs one.
    #[serde(default)]
    pub websocket: Option<WsSnapshot>,
}

impl InspectReport {
    pub fn new(stats: SpoolStats, shipper: Option<ShipState>, read_from: &str) -> InspectReport {
        InspectReport {
            last_ship_error: shipper.as_ref().and_then(|s| s.last_error.clone()),
            last_ship_success_ms: shipper.as_ref().and_then(|s| s.last_success_ms),
            spool: stats,
            read_from: read_from.into(),
            shipper,
            websocket: None,
        }
    }
}

/// One pending record, decoded for a human.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeekRecord {
    pub seq: u64,
    pub received_ms: u64,
    pub received_at: String,
    pub source: SourceKind,
    pub malformed: bool,
    /// The event name (`meeting.participant_qos`, ...) if it could be read.
    pub event: Option<String>,
    pub bytes: usize,
    /// The frame or body as JSON, with a WebSocket frame's `content` decoded.
    pub json: Option<serde_json::Value>,
    /// The raw text, when it is not JSON.
    pub text: Option<String>,
}

/// RFC 3339 time of a millisecond timestamp.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Decodes a record for `spool peek` (not on the hot path: serde_json is fine here).
pub fn peek_record(r: &Record) -> PeekRecord {
    let mut json: Option<serde_json::Value> = serde_json::from_slice(&r.payload).ok();
    let mut event = None;
    if let Some(v) = json.as_mut() {
        if let Some(content) = v
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string)
        {
            if let Ok(decoded) = serde_json::from_str::<serde_json::Value>(&content) {
                v["content"] = decoded;
            }
        }
        let body = if r.kind == SourceKind::WebSocket {
            v.get("content")
        } else {
            Some(&*v)
        };
        event = body
            .and_then(|b| b.get("event"))
            .and_then(|e| e.as_str())
            .map(str::to_string);
    }
    PeekRecord {
        seq: r.seq,
        received_ms: r.received_ms,
        received_at: rfc3339_ms(r.received_ms),
        source: r.kind,
        malformed: r.is_malformed(),
        event,
        bytes: r.payload.len(),
        text: json
            .is_none()
            .then(|| String::from_utf8_lossy(&r.payload).into_owned()),
        json,
    }
}

/// A dead letter for `spool dead show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadDetail {
    #[serde(flatten)]
    pub summary: DeadSummary,
    pub json: Option<serde_json::Value>,
    pub text: Option<String>,
}

impl From<&DeadLetter> for DeadDetail {
    fn from(d: &DeadLetter) -> DeadDetail {
        let json: Option<serde_json::Value> = serde_json::from_slice(&d.payload).ok();
        DeadDetail {
            summary: d.summary(),
            text: json
                .is_none()
                .then(|| String::from_utf8_lossy(&d.payload).into_owned()),
            json,
        }
    }
}

/// Parses `ids=all` or `ids=event:1,block:2`.
pub fn parse_ids(s: &str) -> Result<Option<Vec<DeadId>>, String> {
    if s == "all" {
        return Ok(None);
    }
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Writes pending records from `from` to `to` as NDJSON: HEC events (what would be sent)
/// or, with `raw`, the records as spooled. Calls `out` per chunk; stops if it says so.
pub fn export(
    spool: &Spool,
    encoder: Option<&mut Encoder>,
    from: u64,
    to: Option<u64>,
    mut out: impl FnMut(Vec<u8>, u64) -> bool,
) -> Result<u64, crate::spool::SpoolError> {
    let mut pos = from;
    let mut count = 0u64;
    let mut encoder = encoder;
    while let Some(block) = spool.read_block(pos)? {
        let mut buf = Vec::new();
        let mut n = 0;
        for r in &block.records {
            if to.is_some_and(|t| r.seq >= t) {
                if !buf.is_empty() {
                    out(buf, n);
                }
                return Ok(count);
            }
            match encoder.as_deref_mut() {
                Some(enc) => enc.encode(r, &mut buf),
                None => {
                    let line = serde_json::json!({
                        "seq": r.seq,
                        "received_ms": r.received_ms,
                        "source": r.kind,
                        "malformed": r.is_malformed(),
                        "payload": String::from_utf8_lossy(&r.payload),
                    });
                    serde_json::to_writer(&mut buf, &line).expect("writing to a Vec");
                    buf.push(b'\n');
                }
            }
            n += 1;
            count += 1;
        }
        if !out(buf, n) {
            return Ok(count);
        }
        pos = block.end;
    }
    Ok(count)
}

/// What the admin endpoint serves from.
#[derive(Clone)]
pub struct AdminState {
    pub spool: Spool,
    pub metrics: Arc<Metrics>,
    pub ship_status: Arc<ShipStatus>,
    pub ready: Arc<AtomicBool>,
    pub hec: HecSettings,
    pub ws: Option<Arc<WsState>>,
}

impl AdminState {
    /// Refreshes the spool gauges from the spool's figures.
    pub fn refresh_gauges(&self) -> SpoolStats {
        let s = self.spool.stats();
        let m = &self.metrics;
        m.spool_pending_events.set(s.pending_events as i64);
        m.spool_pending_bytes.set(s.pending_bytes as i64);
        m.spool_stored_bytes.set(s.stored_bytes as i64);
        m.spool_disk_bytes.set(s.disk_bytes as i64);
        m.spool_oldest_pending_age.set(s.oldest_pending_age_secs);
        s
    }

    pub fn inspect(&self) -> InspectReport {
        let mut r = InspectReport::new(
            self.refresh_gauges(),
            Some(self.ship_status.snapshot()),
            "daemon",
        );
        r.websocket = self.ws.as_ref().map(|w| w.snapshot());
        r
    }
}

/// Serves the admin endpoint until `shutdown`.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    server::serve(listener, None, shutdown, move |req| {
        let st = state.clone();
        async move { handle(st, req).await }
    })
    .await;
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.replace("%3A", ":")
                    .replace("%3a", ":")
                    .replace("%2C", ",")
                    .replace("%2c", ","),
            )
        })
        .collect()
}

fn bad_request(msg: impl Into<String>) -> Response<RespBody> {
    server::json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({"error": msg.into()}),
    )
}

fn internal(e: impl std::fmt::Display) -> Response<RespBody> {
    server::json(
        StatusCode::INTERNAL_SERVER_ERROR,
        &serde_json::json!({"error": e.to_string()}),
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

async fn handle(st: AdminState, req: Request<Incoming>) -> Response<RespBody> {
    let q = query(&req);
    let path = req.uri().path().to_string();
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/metrics") => {
            st.refresh_gauges();
            server::full(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                st.metrics.render(),
            )
        }
        (Method::GET, "/healthz") => server::text(StatusCode::OK, "ok\n"),
        (Method::GET, "/readyz") => {
            if st.ready.load(Ordering::SeqCst) {
                server::text(StatusCode::OK, "ready\n")
            } else {
                server::text(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
            }
        }
        (Method::GET, "/spool/inspect") => match blocking(move || st.inspect()).await {
            Some(r) => server::json(StatusCode::OK, &r),
            None => internal("inspect failed"),
        },
        (Method::GET, "/spool/peek") => {
            let n = num("n").unwrap_or(10) as usize;
            let from = num("from").unwrap_or(0);
            let spool = st.spool.clone();
            match blocking(move || spool.pending(from, n, None)).await {
                Some(Ok(recs)) => server::json(
                    StatusCode::OK,
                    &recs.iter().map(peek_record).collect::<Vec<_>>(),
                ),
                Some(Err(e)) => internal(e),
                None => internal("peek failed"),
            }
        }
        (Method::GET, "/spool/export") => {
            let from = num("from").unwrap_or(0);
            let to = num("to");
            let raw = q.get("raw").is_some_and(|v| v == "1" || v == "true");
            let (mut tx, body) =
                http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
            let spool = st.spool.clone();
            let hec = st.hec.clone();
            tokio::task::spawn_blocking(move || {
                let mut encoder = (!raw).then(|| Encoder::new(hec));
                let handle = tokio::runtime::Handle::current();
                let _ = export(&spool, encoder.as_mut(), from, to, |chunk, _| {
                    handle.block_on(tx.send_data(Bytes::from(chunk))).is_ok()
                });
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/x-ndjson")
                .body(body.boxed())
                .expect("valid response")
        }
        (Method::GET, "/spool/dead") => {
            let spool = st.spool.clone();
            match blocking(move || spool.dead_list()).await {
                Some(Ok(list)) => server::json(StatusCode::OK, &list),
                Some(Err(e)) => internal(e),
                None => internal("listing failed"),
            }
        }
        (Method::GET, p) if p.starts_with("/spool/dead/") => {
            let id: DeadId = match p["/spool/dead/".len()..].replace("%3A", ":").parse() {
                Ok(id) => id,
                Err(e) => return bad_request(e),
            };
            let spool = st.spool.clone();
            match blocking(move || spool.dead_get(id)).await {
                Some(Ok(Some(d))) => server::json(StatusCode::OK, &DeadDetail::from(&d)),
                Some(Ok(None)) => server::json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": format!("no dead letter {id}")}),
                ),
                Some(Err(e)) => internal(e),
                None => internal("lookup failed"),
            }
        }
        (Method::POST, "/spool/dead/retry") | (Method::POST, "/spool/dead/purge") => {
            let ids = match parse_ids(q.get("ids").map(String::as_str).unwrap_or("")) {
                Ok(ids) => ids,
                Err(e) => return bad_request(e),
            };
            let retry = path.ends_with("retry");
            let spool = st.spool.clone();
            let result = blocking(move || {
                if retry {
                    spool.dead_retry(ids.as_deref())
                } else {
                    spool.dead_purge(ids.as_deref())
                }
            })
            .await;
            match result {
                Some(Ok(done)) => server::json(StatusCode::OK, &done),
                Some(Err(e)) => internal(e),
                None => internal("operation failed"),
            }
        }
        _ => server::text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz, /spool/inspect\n",
        ),
    }
}

/// The admin endpoint as a client (the operator commands while the daemon runs).
pub struct AdminClient {
    base: String,
    http: crate::net::http::HttpClient,
}

impl AdminClient {
    pub fn new(addr: std::net::SocketAddr) -> AdminClient {
        AdminClient {
            base: format!("http://{addr}"),
            http: crate::net::http::HttpClient::new(None)
                .expect("a client without a CA file always builds"),
        }
    }

    async fn call(&self, method: Method, path: &str, timeout: Duration) -> Result<Bytes, String> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .body(crate::net::http::Body::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let reply = self
            .http
            .send(req, timeout)
            .await
            .map_err(|e| e.to_string())?;
        if !reply.status.is_success() {
            return Err(format!(
                "the daemon answered HTTP {}: {}",
                reply.status.as_u16(),
                reply.excerpt(300)
            ));
        }
        Ok(reply.body)
    }

    /// GET a JSON document.
    pub async fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, String> {
        let body = self
            .call(Method::GET, path, Duration::from_secs(30))
            .await?;
        serde_json::from_slice(&body).map_err(|e| format!("unexpected answer from the daemon: {e}"))
    }

    /// POST, expecting JSON back.
    pub async fn post<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, String> {
        let body = self
            .call(Method::POST, path, Duration::from_secs(300))
            .await?;
        serde_json::from_slice(&body).map_err(|e| format!("unexpected answer from the daemon: {e}"))
    }

    /// Whether `/readyz` says ready.
    pub async fn ready(&self) -> Result<bool, String> {
        let req = Request::builder()
            .uri(format!("{}/readyz", self.base))
            .body(crate::net::http::Body::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let reply = self
            .http
            .send(req, Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        Ok(reply.status.is_success())
    }

    /// Streams `/spool/export` into `out`.
    pub async fn export(
        &self,
        path: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, String> {
        // The export may be large: stream it instead of buffering.
        let uri: hyper::Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
        let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let stream = tokio::net::TcpStream::connect(&host)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header("host", host)
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!(
                "the daemon answered HTTP {}",
                resp.status().as_u16()
            ));
        }
        let mut body = resp.into_body();
        let mut lines = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Ok(data) = frame.into_data() {
                lines += data.iter().filter(|&&b| b == b'\n').count() as u64;
                out.write_all(&data).map_err(|e| e.to_string())?;
            }
        }
        Ok(lines)
    }
}
