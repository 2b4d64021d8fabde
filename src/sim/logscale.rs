//! A fake LogScale HEC endpoint: decodes gzip, zstd or plain bodies, checks the bearer
//! token, parses the stream of HEC objects, counts events, losses and duplicates, and can
//! be told to fail in the ways a real one (or a gateway in front of it) does.
//!
//! Endpoints: `POST /api/v1/ingest/hec` and `POST /services/collector` (ingest),
//! `GET /api/v1/ingest/hec/health` and `GET /services/collector/health` (health).

use crate::net::server::{self, RespBody};
use crate::sim::events::sim_number;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How the fake answers ingest requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// 200 and keep the events.
    Accept,
    /// Answer this status (503, 401, ...), with `Retry-After` if given; keep nothing.
    Status { code: u16, retry_after: Option<u64> },
    /// Answer this status with `Retry-After` as an HTTP date this many seconds ahead.
    StatusUntil { code: u16, secs: u64 },
    /// 400 for any request holding an event whose text contains this string.
    RejectContaining(String),
    /// 413 for any request with more events than this.
    MaxEvents(usize),
    /// Never answer (until the mode changes or the client gives up).
    Hang,
    /// Accept, but only after this many milliseconds (a slow LogScale).
    Slow(u64),
    /// Close the connection without an answer.
    Close,
}

/// What to keep about received events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkOptions {
    /// Keep every event's JSON (tests that look at the shape).
    pub keep_events: bool,
    /// Count duplicates and losses per event. With both options off the fake only
    /// decompresses and counts lines (raw throughput benchmarks).
    pub track_ids: bool,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            keep_events: true,
            track_ids: true,
        }
    }
}

/// Counters of the fake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub requests: u64,
    pub accepted_requests: u64,
    /// Events in accepted requests, duplicates included.
    pub events: u64,
    /// Distinct `relay_id`s accepted.
    pub distinct: u64,
    /// Accepted events whose `relay_id` had been accepted before.
    pub duplicates: u64,
    /// Decompressed bytes accepted.
    pub bytes: u64,
}

#[derive(Default)]
struct Received {
    events: Vec<serde_json::Value>,
    by_relay_id: HashMap<String, u32>,
    by_sim_number: HashMap<u64, u32>,
    /// When each simulator event was first accepted (latency measurements).
    first_arrival: HashMap<u64, std::time::Instant>,
    stats: SinkStats,
}

struct State {
    token: String,
    options: SinkOptions,
    mode: Mutex<Mode>,
    received: Mutex<Received>,
    requests: AtomicU64,
    mode_changed: tokio::sync::Notify,
    last_version: Mutex<Option<hyper::Version>>,
    needle: super::needle::Needle,
    /// Every ingest request: when it arrived, and the status it was answered.
    answers: Mutex<Vec<(std::time::Instant, u16)>>,
}

/// A running fake LogScale. Stops when dropped.
pub struct FakeLogScale {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl Drop for FakeLogScale {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    time: Option<f64>,
    #[serde(borrow)]
    fields: Option<Fields<'a>>,
    #[allow(dead_code)]
    event: serde::de::IgnoredAny,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    relay_id: Option<std::borrow::Cow<'a, str>>,
}

impl FakeLogScale {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start(token: &str, options: SinkOptions) -> std::io::Result<FakeLogScale> {
        Self::start_on("127.0.0.1:0".parse().expect("valid"), token, options).await
    }

    /// Starts on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        token: &str,
        options: SinkOptions,
    ) -> std::io::Result<FakeLogScale> {
        Self::start_with_tls(addr, token, options, None).await
    }

    /// Starts on `addr`, serving HTTPS with this TLS configuration (or plain, `None`).
    pub async fn start_with_tls(
        addr: SocketAddr,
        token: &str,
        options: SinkOptions,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<FakeLogScale> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            token: token.to_string(),
            options,
            mode: Mutex::new(Mode::Accept),
            received: Mutex::new(Received::default()),
            requests: AtomicU64::new(0),
            mode_changed: tokio::sync::Notify::new(),
            last_version: Mutex::new(None),
            needle: Default::default(),
            answers: Mutex::new(Vec::new()),
        });
        let shutdown = CancellationToken::new();
        let st = state.clone();
        let is_tls = tls.is_some();
        let tls = tls.map(|c| Arc::new(std::sync::RwLock::new(c)));
        tokio::spawn(server::serve(listener, tls, shutdown.clone(), move |req| {
            let st = st.clone();
            async move { handle(st, req).await }
        }));
        Ok(FakeLogScale {
            addr,
            tls: is_tls,
            state,
            shutdown,
        })
    }

    /// The base URL to put in `LOGSCALE_HOST`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The relay settings that point at this fake: `LOGSCALE_HOST` and the token it accepts.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        vec![
            ("LOGSCALE_HOST".into(), self.base_url()),
            ("LOGSCALE_INGEST_TOKEN".into(), self.state.token.clone()),
        ]
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("not poisoned") = mode;
        self.state.mode_changed.notify_waiters();
    }

    pub fn stats(&self) -> SinkStats {
        self.state.received.lock().expect("not poisoned").stats
    }

    /// The HTTP version of the last ingest request (HTTP/1.1, or HTTP/2 by ALPN).
    pub fn last_http_version(&self) -> Option<hyper::Version> {
        *self.state.last_version.lock().expect("not poisoned")
    }

    /// Every ingest request seen, whatever the answer.
    /// Every ingest request so far: when it arrived and the status it was answered, in
    /// the order the answers were given (tests time retries at the fake, not at the test).
    pub fn answers(&self) -> Vec<(std::time::Instant, u16)> {
        self.state.answers.lock().expect("not poisoned").clone()
    }

    /// Watch every later ingestion request (headers and decompressed body) for `needle`.
    pub fn watch_for(&self, needle: &[u8]) {
        self.state.needle.set(needle);
    }

    /// (ingestion requests watched, those that held the needle), since [`Self::watch_for`].
    pub fn needle_counts(&self) -> (u64, u64) {
        self.state.needle.counts()
    }

    pub fn requests_seen(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// The accepted events (with `keep_events`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.state
            .received
            .lock()
            .expect("not poisoned")
            .events
            .clone()
    }

    /// How often each simulator event number was accepted.
    pub fn sim_counts(&self) -> HashMap<u64, u32> {
        self.state
            .received
            .lock()
            .expect("not poisoned")
            .by_sim_number
            .clone()
    }

    /// When each simulator event was first accepted.
    pub fn arrival_times(&self) -> HashMap<u64, std::time::Instant> {
        self.state
            .received
            .lock()
            .expect("not poisoned")
            .first_arrival
            .clone()
    }

    /// Waits until at least `n` distinct events were accepted, or `timeout` passes.
    pub async fn wait_for_distinct(&self, n: u64, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.stats().distinct >= n).await
    }
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/api/v1/ingest/hec/health")
        | (&Method::GET, "/services/collector/health") => {
            if !authorized(&st, &req) {
                return server::text(StatusCode::UNAUTHORIZED, "invalid token");
            }
            server::json(
                StatusCode::OK,
                &serde_json::json!({"text": "HEC is healthy", "code": 17}),
            )
        }
        (&Method::POST, "/api/v1/ingest/hec") | (&Method::POST, "/services/collector") => {
            let arrived = std::time::Instant::now();
            let resp = ingest(st.clone(), req).await;
            st.answers
                .lock()
                .expect("not poisoned")
                .push((arrived, resp.status().as_u16()));
            resp
        }
        _ => server::text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn authorized(st: &State, req: &Request<Incoming>) -> bool {
    let expected = format!("Bearer {}", st.token);
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

async fn ingest(st: Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    st.requests.fetch_add(1, Ordering::Relaxed);
    *st.last_version.lock().expect("not poisoned") = Some(req.version());
    let mode = st.mode.lock().expect("not poisoned").clone();
    match &mode {
        Mode::Hang => {
            // Hold the request until the mode changes.
            loop {
                st.mode_changed.notified().await;
                if *st.mode.lock().expect("not poisoned") != Mode::Hang {
                    return server::text(StatusCode::SERVICE_UNAVAILABLE, "was hanging");
                }
            }
        }
        Mode::Close => {
            // A handler cannot drop its connection, so the connection breaks mid-response:
            // a body announced as 1000 bytes ends after 7, and hyper closes the socket.
            let (mut tx, body) =
                http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(1);
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from_static(b"partial")).await;
                drop(tx);
            });
            return Response::builder()
                .status(StatusCode::OK)
                .header("content-length", "1000")
                .body(body.boxed())
                .expect("valid response");
        }
        Mode::Status { code, retry_after } => {
            let mut resp = server::text(
                StatusCode::from_u16(*code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "fake LogScale is failing on purpose",
            );
            if let Some(s) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", s.to_string().parse().expect("digits"));
            }
            return resp;
        }
        Mode::StatusUntil { code, secs } => {
            let mut resp = server::text(
                StatusCode::from_u16(*code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "fake LogScale is failing on purpose",
            );
            let when = std::time::SystemTime::now() + Duration::from_secs(*secs);
            resp.headers_mut().insert(
                "retry-after",
                httpdate::fmt_http_date(when).parse().expect("an HTTP date"),
            );
            return resp;
        }
        Mode::Slow(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        Mode::Accept | Mode::RejectContaining(_) | Mode::MaxEvents(_) => {}
    }
    if !authorized(&st, &req) {
        return server::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"text": "Invalid token", "code": 4}),
        );
    }
    let encoding = req
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return server::text(StatusCode::BAD_REQUEST, "broken body"),
    };
    let raw = match decode(&encoding, &body) {
        Ok(r) => r,
        Err(e) => return server::text(StatusCode::BAD_REQUEST, format!("cannot decode body: {e}")),
    };
    st.needle.look(&headers, &raw);
    if !st.options.track_ids && !st.options.keep_events {
        // Throughput mode: decompress and count events (one per line), nothing more.
        let events = raw.iter().filter(|&&b| b == b'\n').count() as u64;
        let mut rec = st.received.lock().expect("not poisoned");
        rec.stats.requests = st.requests.load(Ordering::Relaxed);
        rec.stats.accepted_requests += 1;
        rec.stats.bytes += raw.len() as u64;
        rec.stats.events += events;
        rec.stats.distinct += events;
        drop(rec);
        return server::json(
            StatusCode::OK,
            &serde_json::json!({"text": "Success", "code": 0}),
        );
    }
    // Parse every HEC object (whitespace separated, as LogScale accepts them).
    let mut parsed: Vec<(Option<String>, Option<u64>, Option<serde_json::Value>)> = Vec::new();
    let mut stream =
        serde_json::Deserializer::from_slice(&raw).into_iter::<&serde_json::value::RawValue>();
    for item in &mut stream {
        let rawv = match item {
            Ok(v) => v,
            Err(e) => {
                return server::text(
                    StatusCode::BAD_REQUEST,
                    format!("invalid JSON in HEC stream: {e}"),
                )
            }
        };
        let line: Line<'_> = match serde_json::from_str(rawv.get()) {
            Ok(l) => l,
            Err(e) => {
                return server::text(StatusCode::BAD_REQUEST, format!("not a HEC event: {e}"))
            }
        };
        if let Mode::RejectContaining(s) = &mode {
            if rawv.get().contains(s.as_str()) {
                return server::json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"text": "Invalid data format: poisoned event", "code": 6}),
                );
            }
        }
        let full = if st.options.keep_events {
            serde_json::from_str(rawv.get()).ok()
        } else {
            None
        };
        let relay_id = line.fields.and_then(|f| f.relay_id).map(|c| c.into_owned());
        parsed.push((relay_id, line.time.and_then(sim_number), full));
    }
    if let Mode::MaxEvents(max) = mode {
        if parsed.len() > max {
            return server::text(StatusCode::PAYLOAD_TOO_LARGE, "request entity too large");
        }
    }
    let now = std::time::Instant::now();
    let mut rec = st.received.lock().expect("not poisoned");
    rec.stats.requests = st.requests.load(Ordering::Relaxed);
    rec.stats.accepted_requests += 1;
    rec.stats.bytes += raw.len() as u64;
    for (relay_id, sim, full) in parsed {
        rec.stats.events += 1;
        if st.options.track_ids {
            if let Some(id) = relay_id {
                let c = rec.by_relay_id.entry(id).or_insert(0);
                *c += 1;
                if *c > 1 {
                    rec.stats.duplicates += 1;
                } else {
                    rec.stats.distinct += 1;
                }
            }
            if let Some(n) = sim {
                *rec.by_sim_number.entry(n).or_insert(0) += 1;
                rec.first_arrival.entry(n).or_insert(now);
            }
        } else {
            rec.stats.distinct += 1;
        }
        if let Some(v) = full {
            rec.events.push(v);
        }
    }
    drop(rec);
    server::json(
        StatusCode::OK,
        &serde_json::json!({"text": "Success", "code": 0}),
    )
}

/// Decodes a body by its `Content-Encoding`.
pub fn decode(encoding: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    match encoding {
        "" | "identity" => Ok(body.to_vec()),
        "gzip" => crate::ship::gzip::decode(body),
        "zstd" => zstd::stream::decode_all(body).map_err(|e| format!("zstd: {e}")),
        other => Err(format!("unsupported content-encoding {other:?}")),
    }
}
