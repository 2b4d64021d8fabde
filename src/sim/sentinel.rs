//! A fake Microsoft Entra ID token endpoint and Azure Monitor Logs Ingestion endpoint, in
//! one server, written from Microsoft's documentation (see docs/sentinel.md):
//!
//! - `POST /{tenant}/oauth2/v2.0/token`: client credentials; checks the tenant, client id
//!   and secret and the scope `https://monitor.azure.com//.default`; answers
//!   `{"token_type":"Bearer","expires_in":N,"access_token":...}` (400 `invalid_client`
//!   otherwise).
//! - `POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`: checks the
//!   bearer token (issued by this fake and not expired), the DCR id and stream (404
//!   otherwise), `Content-Type: application/json`, gzip, that the body is a JSON array of
//!   objects each with a `TimeGenerated`, and the 1 MB limit (413 beyond); answers 204.
//!
//! It counts rows, distinct `RelayId`s and duplicates, and can be told to fail: any
//! status (with `Retry-After`), hang, close the connection, refuse tokens, or poison rows.

use crate::net::server::{self, RespBody};
use crate::sim::events::sim_number;
use crate::sim::logscale::{decode, SinkStats};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The scope a Logs Ingestion client must ask for.
const SCOPE: &str = "https://monitor.azure.com//.default";
/// The API's request limit.
pub const MAX_BODY: usize = 1_000_000;

/// How the fake answers ingestion requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentinelMode {
    /// 204 and keep the rows.
    Accept,
    /// Answer this status (503, 429, 403, ...), with `Retry-After` if given.
    Status { code: u16, retry_after: Option<u64> },
    /// 400 `InvalidContent` for a request holding a row whose text contains this string.
    RejectContaining(String),
    /// Never answer until the mode changes.
    Hang,
    /// Close the connection without an answer.
    Close,
}

/// The app credentials the fake's token endpoint accepts.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
}

impl Default for AppCredentials {
    fn default() -> Self {
        AppCredentials {
            tenant_id: "72f988bf-0000-4000-8000-00000000cafe".into(),
            client_id: "5c1b0b0e-0000-4000-8000-00000000beef".into(),
            client_secret: "sim-azure-client-secret".into(),
        }
    }
}

#[derive(Default)]
struct Received {
    rows: Vec<serde_json::Value>,
    by_relay_id: HashMap<String, u32>,
    by_sim_number: HashMap<u64, u32>,
    stats: SinkStats,
}

struct State {
    creds: AppCredentials,
    dcr_id: String,
    stream: String,
    keep_rows: bool,
    /// Throughput mode ([`FakeSentinel::start_counting`]): count rows, track nothing.
    count_only: bool,
    mode: Mutex<SentinelMode>,
    mode_changed: tokio::sync::Notify,
    /// Issued tokens and when they expire.
    tokens: Mutex<HashMap<String, Instant>>,
    token_lifetime: Mutex<Duration>,
    /// Refuse every token request with 401 `invalid_client` (a revoked secret).
    refuse_tokens: Mutex<bool>,
    token_requests: AtomicU64,
    requests: AtomicU64,
    /// `x-ms-client-request-id` of the last ingestion request.
    last_request_id: Mutex<Option<String>>,
    /// The uncompressed size beyond which requests are answered 413.
    max_body: Mutex<usize>,
    answers: Mutex<Vec<Answer>>,
    received: Mutex<Received>,
    needle: super::needle::Needle,
}

/// One ingestion request as the fake answered it.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub at: Instant,
    pub status: u16,
    /// Uncompressed body size (0 when the body was not read: failing on purpose).
    pub body_bytes: usize,
    pub rows: usize,
}

/// A running fake Sentinel (Entra ID + Logs Ingestion). Stops when dropped.
pub struct FakeSentinel {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl Drop for FakeSentinel {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl FakeSentinel {
    /// Starts on 127.0.0.1 with a free port. `keep_rows`: keep every row (shape tests).
    pub async fn start(keep_rows: bool) -> std::io::Result<FakeSentinel> {
        Self::start_on("127.0.0.1:0".parse().expect("valid"), keep_rows).await
    }

    /// Starts in throughput mode, for benchmarks: every request is decompressed and its
    /// rows counted (the `{"TimeGenerated":` each row the relay writes opens with), not
    /// parsed; nothing per row is tracked (no duplicates, no sequence numbers). Parsing
    /// every row into a tree cost this fake more CPU than the relay spent making the rows
    /// (see docs/performance.md), so a benchmark with it measured the fake.
    pub async fn start_counting() -> std::io::Result<FakeSentinel> {
        Self::start_with("127.0.0.1:0".parse().expect("valid"), false, true).await
    }

    pub async fn start_on(addr: SocketAddr, keep_rows: bool) -> std::io::Result<FakeSentinel> {
        Self::start_with(addr, keep_rows, false).await
    }

    async fn start_with(
        addr: SocketAddr,
        keep_rows: bool,
        count_only: bool,
    ) -> std::io::Result<FakeSentinel> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            creds: AppCredentials::default(),
            dcr_id: "dcr-5a1e0000000000000000000000c0ffee".into(),
            stream: "Custom-ZoomLogs_CL".into(),
            keep_rows,
            count_only,
            mode: Mutex::new(SentinelMode::Accept),
            mode_changed: tokio::sync::Notify::new(),
            tokens: Mutex::new(HashMap::new()),
            token_lifetime: Mutex::new(Duration::from_secs(3599)),
            refuse_tokens: Mutex::new(false),
            token_requests: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            last_request_id: Mutex::new(None),
            max_body: Mutex::new(MAX_BODY),
            answers: Mutex::new(Vec::new()),
            received: Mutex::new(Received::default()),
            needle: Default::default(),
        });
        let shutdown = CancellationToken::new();
        let st = state.clone();
        tokio::spawn(server::serve(
            listener,
            None,
            shutdown.clone(),
            move |req| {
                let st = st.clone();
                async move { handle(st, req).await }
            },
        ));
        Ok(FakeSentinel {
            addr,
            state,
            shutdown,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The relay settings that point at this fake.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        let c = &self.state.creds;
        vec![
            ("AZURE_AUTHORITY_HOST".into(), self.base_url()),
            ("AZURE_TENANT_ID".into(), c.tenant_id.clone()),
            ("AZURE_CLIENT_ID".into(), c.client_id.clone()),
            ("AZURE_CLIENT_SECRET".into(), c.client_secret.clone()),
            ("SENTINEL_ENDPOINT".into(), self.base_url()),
            ("SENTINEL_DCR_ID".into(), self.state.dcr_id.clone()),
        ]
    }

    pub fn set_mode(&self, mode: SentinelMode) {
        *self.state.mode.lock().expect("not poisoned") = mode;
        self.state.mode_changed.notify_waiters();
    }

    /// Lifetime of the tokens issued from now on.
    pub fn set_token_lifetime(&self, d: Duration) {
        *self.state.token_lifetime.lock().expect("not poisoned") = d;
    }

    /// Makes every token already issued expire now (the next request is answered 401).
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for exp in self.state.tokens.lock().expect("not poisoned").values_mut() {
            *exp = now;
        }
    }

    /// Refuse (or stop refusing) the app's credentials at the token endpoint.
    pub fn refuse_tokens(&self, on: bool) {
        *self.state.refuse_tokens.lock().expect("not poisoned") = on;
    }

    /// Answer 413 beyond `bytes` (uncompressed) instead of the API's 1 MB.
    pub fn set_max_body(&self, bytes: usize) {
        *self.state.max_body.lock().expect("not poisoned") = bytes;
    }

    /// Every ingestion request answered so far, in order.
    pub fn answers(&self) -> Vec<Answer> {
        self.state.answers.lock().expect("not poisoned").clone()
    }

    pub fn token_requests(&self) -> u64 {
        self.state.token_requests.load(Ordering::Relaxed)
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

    pub fn last_request_id(&self) -> Option<String> {
        self.state
            .last_request_id
            .lock()
            .expect("not poisoned")
            .clone()
    }

    pub fn stats(&self) -> SinkStats {
        self.state.received.lock().expect("not poisoned").stats
    }

    pub fn rows(&self) -> Vec<serde_json::Value> {
        self.state
            .received
            .lock()
            .expect("not poisoned")
            .rows
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

    /// Waits until at least `n` distinct rows were accepted, or `timeout` passes.
    pub async fn wait_for_distinct(&self, n: u64, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.stats().distinct >= n).await
    }
}

fn error(code: StatusCode, error_code: &str, message: &str) -> Response<RespBody> {
    let mut resp = server::json(
        code,
        &serde_json::json!({"error": {"code": error_code, "message": message}}),
    );
    resp.headers_mut()
        .insert("x-ms-error-code", error_code.parse().expect("ascii"));
    resp
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    let path = req.uri().path().to_string();
    let token_path = format!("/{}/oauth2/v2.0/token", st.creds.tenant_id);
    let ingest_path = format!("/dataCollectionRules/{}/streams/{}", st.dcr_id, st.stream);
    match (req.method(), path.as_str()) {
        (&Method::POST, p) if p == token_path => token(st, req).await,
        (&Method::POST, p) if p.ends_with("/oauth2/v2.0/token") => server::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found."}),
        ),
        (&Method::POST, p) if p == ingest_path => ingest(st, req).await,
        (&Method::POST, p) if p.starts_with("/dataCollectionRules/") => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "Data collection rule or stream not found.",
        ),
        _ => server::text(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn token(st: Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    st.token_requests.fetch_add(1, Ordering::Relaxed);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return server::text(StatusCode::BAD_REQUEST, "broken body"),
    };
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let c = &st.creds;
    let refused = *st.refuse_tokens.lock().expect("not poisoned");
    if get("grant_type") != "client_credentials" {
        return server::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "unsupported_grant_type", "error_description": "AADSTS70003"}),
        );
    }
    if get("scope") != SCOPE {
        return server::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "invalid_scope", "error_description": "AADSTS70011: The provided value for scope is not valid."}),
        );
    }
    if refused || get("client_id") != c.client_id || get("client_secret") != c.client_secret {
        return server::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
        );
    }
    let lifetime = *st.token_lifetime.lock().expect("not poisoned");
    let token = format!("sim-entra-{:016x}", fastrand::u64(..));
    st.tokens
        .lock()
        .expect("not poisoned")
        .insert(token.clone(), Instant::now() + lifetime);
    server::json(
        StatusCode::OK,
        &serde_json::json!({"token_type": "Bearer", "expires_in": lifetime.as_secs(), "ext_expires_in": lifetime.as_secs(), "access_token": token}),
    )
}

/// Answers one ingestion request and logs the answer.
async fn ingest(st: Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    let mut size = (0, 0);
    let resp = answer_ingest(&st, req, &mut size).await;
    st.answers.lock().expect("not poisoned").push(Answer {
        at: Instant::now(),
        status: resp.status().as_u16(),
        body_bytes: size.0,
        rows: size.1,
    });
    resp
}

/// `size` gets the uncompressed body size and row count, once known.
async fn answer_ingest(
    st: &State,
    req: Request<Incoming>,
    size: &mut (usize, usize),
) -> Response<RespBody> {
    st.requests.fetch_add(1, Ordering::Relaxed);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    *st.last_request_id.lock().expect("not poisoned") =
        Some(header("x-ms-client-request-id")).filter(|s| !s.is_empty());
    let mode = st.mode.lock().expect("not poisoned").clone();
    match &mode {
        SentinelMode::Hang => loop {
            st.mode_changed.notified().await;
            if *st.mode.lock().expect("not poisoned") != SentinelMode::Hang {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "was hanging",
                );
            }
        },
        SentinelMode::Close => {
            let (mut tx, body) =
                http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(1);
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from_static(b"partial")).await;
            });
            return Response::builder()
                .status(StatusCode::OK)
                .header("content-length", "1000")
                .body(body.boxed())
                .expect("valid response");
        }
        SentinelMode::Status { code, retry_after } => {
            let code = StatusCode::from_u16(*code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let ec = match code.as_u16() {
                429 => "TooManyRequests",
                403 => "InsufficientAccess",
                _ => "ServiceUnavailable",
            };
            let mut resp = error(code, ec, "fake Sentinel is failing on purpose");
            if let Some(s) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", s.to_string().parse().expect("digits"));
            }
            return resp;
        }
        SentinelMode::Accept | SentinelMode::RejectContaining(_) => {}
    }
    let bearer = header("authorization");
    let valid = bearer.strip_prefix("Bearer ").is_some_and(|t| {
        st.tokens
            .lock()
            .expect("not poisoned")
            .get(t)
            .is_some_and(|exp| Instant::now() < *exp)
    });
    if !valid {
        return error(
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
            "The provided access token is invalid or has expired.",
        );
    }
    if !header("content-type").starts_with("application/json") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "Content-Type must be application/json.",
        );
    }
    let encoding = header("content-encoding").to_ascii_lowercase();
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "InvalidContent", "broken body"),
    };
    let raw = match decode(&encoding, &body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidContent", &e),
    };
    st.needle.look(&headers, &raw);
    size.0 = raw.len();
    if raw.len() > *st.max_body.lock().expect("not poisoned") {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ContentLengthLimitExceeded",
            "Maximum allowed content length: 1048576 bytes (1 MB).",
        );
    }
    if st.count_only && matches!(mode, SentinelMode::Accept) {
        if raw.first() != Some(&b'[') || raw.last() != Some(&b']') {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidContent",
                "The request body must be a JSON array.",
            );
        }
        let rows = memchr::memmem::find_iter(&raw, b"{\"TimeGenerated\":").count();
        size.1 = rows;
        let mut rec = st.received.lock().expect("not poisoned");
        rec.stats.requests = st.requests.load(Ordering::Relaxed);
        rec.stats.accepted_requests += 1;
        rec.stats.bytes += raw.len() as u64;
        rec.stats.events += rows as u64;
        rec.stats.distinct += rows as u64;
        drop(rec);
        return no_content();
    }
    let rows: Vec<serde_json::Value> = match serde_json::from_slice(&raw) {
        Ok(serde_json::Value::Array(a)) => a,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidContent",
                "The request body must be a JSON array.",
            )
        }
    };
    size.1 = rows.len();
    for row in &rows {
        if !row.is_object() || row.get("TimeGenerated").and_then(|t| t.as_str()).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidContent",
                "Every record must be an object with a TimeGenerated.",
            );
        }
        if let SentinelMode::RejectContaining(s) = &mode {
            if row.to_string().contains(s.as_str()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidContent",
                    "One or more records failed the schema of the stream.",
                );
            }
        }
    }
    let mut rec = st.received.lock().expect("not poisoned");
    rec.stats.requests = st.requests.load(Ordering::Relaxed);
    rec.stats.accepted_requests += 1;
    rec.stats.bytes += raw.len() as u64;
    for row in rows {
        rec.stats.events += 1;
        if let Some(id) = row.get("RelayId").and_then(|v| v.as_str()) {
            let c = rec.by_relay_id.entry(id.to_string()).or_insert(0);
            *c += 1;
            if *c > 1 {
                rec.stats.duplicates += 1;
            } else {
                rec.stats.distinct += 1;
            }
        }
        let ms = row
            .get("TimeGenerated")
            .and_then(|t| t.as_str())
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as f64 / 1000.0);
        if let Some(n) = ms.and_then(sim_number) {
            *rec.by_sim_number.entry(n).or_insert(0) += 1;
        }
        if st.keep_rows {
            rec.rows.push(row);
        }
    }
    drop(rec);
    no_content()
}

/// The API's answer to an accepted request: 204, no body.
fn no_content() -> Response<RespBody> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(
            http_body_util::Empty::<Bytes>::new()
                .map_err(|e| match e {})
                .boxed(),
        )
        .expect("valid response")
}
