//! A fake Zoom: the Server-to-Server OAuth token endpoint and the QSS WebSocket, speaking
//! the frames Zoom documents (module, success, content, header; see `source::frame`).
//!
//! - `POST /oauth/token?grant_type=account_credentials&account_id=...` with HTTP Basic
//!   credentials (or the old script's form body) issues a token valid for the configured
//!   time. Issuing a token invalidates the previous one, as field reports say Zoom does:
//!   a client that keeps asking for tokens loses its connections' validity.
//! - `GET /ws?subscriptionId=...&access_token=...` upgrades to a WebSocket. The first frame
//!   is `build_connection` (`success:false`, `Invalid Token`, for a bad token). Heartbeats
//!   are answered with `live`. Queued events are sent as message frames (see
//!   [`crate::sim::events`]), as fast as possible or at a set rate.
//! - Test controls: inject raw frames, close connections, send `Invalid Token` mid-stream,
//!   refuse credentials, stop answering heartbeats.
//! - Live mode ([`ZoomOptions::live`]), as Zoom behaves: several subscriptions
//!   ([`ZoomOptions::subscriptions`]) each get every event, in a frame whose `header`
//!   differs per subscription; an event emitted while a subscription has no open
//!   connection is lost for it (never replayed); a new connection on a subscription closes
//!   the one before it. [`FakeZoom::reached`] says which events reached at least one open
//!   connection. Without it (the default) events wait in one queue for any connection.

use crate::net::server::{self, RespBody};
use crate::sim::events::FrameFactory;
use base64::Engine;
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketWrite};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{BufWriter, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

/// Credentials and behaviour of the fake.
#[derive(Debug, Clone)]
pub struct ZoomOptions {
    pub account_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub subscription_id: String,
    /// `expires_in` of issued tokens.
    pub token_ttl: Duration,
    /// Further subscriptions besides `subscription_id`, carrying the same events.
    pub subscriptions: Vec<String>,
    /// Live mode (see the module docs).
    pub live: bool,
}

impl Default for ZoomOptions {
    fn default() -> Self {
        ZoomOptions {
            account_id: "sim-account".into(),
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            subscription_id: "sim-subscription".into(),
            token_ttl: Duration::from_secs(3600),
            subscriptions: Vec::new(),
            live: false,
        }
    }
}

impl ZoomOptions {
    /// Every subscription id the fake serves.
    fn all_subscriptions(&self) -> Vec<String> {
        let mut all = vec![self.subscription_id.clone()];
        all.extend(self.subscriptions.iter().cloned());
        all
    }
}

/// An open connection in live mode.
struct LiveConn {
    id: u64,
    events: tokio::sync::mpsc::UnboundedSender<u64>,
    /// Cancelled to close it: replaced by a newer connection, or told to.
    kick: CancellationToken,
}

/// Commands to open connections.
#[derive(Debug, Clone)]
enum Command {
    Inject(Bytes),
    Close,
    InvalidToken,
}

/// Counters of the fake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoomStats {
    pub token_requests: u64,
    pub tokens_issued: u64,
    /// Connections that got `build_connection` with `success:true`.
    pub connections: u64,
    /// Connections refused with `success:false`.
    pub refused_connections: u64,
    pub open_connections: u64,
    pub heartbeats: u64,
    /// Event frames written to a socket.
    pub events_sent: u64,
    /// Events the fake was told to send (by `send` or the rate), written or not yet:
    /// when the relay takes frames slower than the rate, `events_sent` lags behind this.
    pub events_queued: u64,
    /// Live mode: events emitted to an open connection and not yet written or dropped
    /// (queued behind a slow reader, or in a batch being written). Zero once every
    /// connection has written what it was given: then [`FakeZoom::reached`] is final.
    pub live_backlog: u64,
}

struct State {
    opts: ZoomOptions,
    frames: FrameFactory,
    current_token: Mutex<Option<(String, Instant)>>,
    /// When each token was issued and when it expires, in order.
    token_log: Mutex<Vec<(Instant, Instant)>>,
    token_requests: AtomicU64,
    tokens_issued: AtomicU64,
    reject_credentials: AtomicBool,
    answer_heartbeats: AtomicBool,
    /// Refuse this many coming connections with `build_connection` `Invalid Token`.
    refuse_next: AtomicU64,
    connections: AtomicU64,
    refused: AtomicU64,
    open: AtomicU64,
    heartbeats: AtomicU64,
    heartbeat_log: Mutex<Vec<Instant>>,
    /// Events queued so far (event numbers below this may be sent).
    queued: AtomicU64,
    /// Next event number to hand out.
    next: AtomicU64,
    /// Numbers handed out whose write failed: sent first by the next connection.
    given_back: Mutex<VecDeque<u64>>,
    sent: AtomicU64,
    /// See [`ZoomStats::live_backlog`].
    live_backlog: AtomicU64,
    /// When each event was written, if recording (latency measurements).
    send_times: Mutex<Option<std::collections::HashMap<u64, Instant>>>,
    rate: Mutex<Option<f64>>,
    wake: Notify,
    commands: broadcast::Sender<Command>,
    /// Live mode: each subscription's open connection.
    live: Mutex<std::collections::HashMap<String, LiveConn>>,
    /// Live mode: events written to at least one open connection.
    reached: Mutex<std::collections::HashSet<u64>>,
    conn_ids: AtomicU64,
}

/// A running fake Zoom. Stops when dropped.
pub struct FakeZoom {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl Drop for FakeZoom {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

type Writer = Arc<
    tokio::sync::Mutex<WebSocketWrite<BufWriter<WriteHalf<TokioIo<hyper::upgrade::Upgraded>>>>>,
>;

impl FakeZoom {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start(opts: ZoomOptions) -> std::io::Result<FakeZoom> {
        Self::start_with_tls(opts, None).await
    }

    /// Starts serving HTTPS and `wss://` with this TLS configuration (or plain, `None`).
    pub async fn start_with_tls(
        opts: ZoomOptions,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<FakeZoom> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (commands, _) = broadcast::channel(64);
        let state = Arc::new(State {
            opts,
            frames: FrameFactory::websocket(),
            current_token: Mutex::new(None),
            token_log: Mutex::new(Vec::new()),
            token_requests: AtomicU64::new(0),
            tokens_issued: AtomicU64::new(0),
            reject_credentials: AtomicBool::new(false),
            answer_heartbeats: AtomicBool::new(true),
            refuse_next: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            open: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            heartbeat_log: Mutex::new(Vec::new()),
            queued: AtomicU64::new(0),
            next: AtomicU64::new(0),
            given_back: Mutex::new(VecDeque::new()),
            sent: AtomicU64::new(0),
            live_backlog: AtomicU64::new(0),
            send_times: Mutex::new(None),
            rate: Mutex::new(None),
            wake: Notify::new(),
            commands,
            live: Mutex::new(Default::default()),
            reached: Mutex::new(Default::default()),
            conn_ids: AtomicU64::new(0),
        });
        let shutdown = CancellationToken::new();
        let st = state.clone();
        let sd = shutdown.clone();
        let is_tls = tls.is_some();
        let tls = tls.map(|c| Arc::new(std::sync::RwLock::new(c)));
        tokio::spawn(server::serve(listener, tls, shutdown.clone(), move |req| {
            let st = st.clone();
            let sd = sd.clone();
            async move { handle(st, sd, req).await }
        }));
        tokio::spawn(rate_generator(state.clone(), shutdown.clone()));
        Ok(FakeZoom {
            addr,
            tls: is_tls,
            state,
            shutdown,
        })
    }

    /// For `ZOOM_OAUTH_URL`.
    pub fn oauth_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/oauth/token", self.addr)
    }

    /// For `ZOOM_WSS_URL` (plain `ws://` on loopback): the first subscription's URL.
    pub fn wss_url(&self) -> String {
        self.wss_url_for(&self.state.opts.subscription_id)
    }

    /// The URL of the subscription `id`.
    pub fn wss_url_for(&self, id: &str) -> String {
        format!(
            "{}://{}/ws?subscriptionId={id}",
            if self.tls { "wss" } else { "ws" },
            self.addr,
        )
    }

    /// Every subscription's URL, comma-separated (`ZOOM_WSS_URL` for all of them).
    pub fn wss_urls(&self) -> String {
        self.state
            .opts
            .all_subscriptions()
            .iter()
            .map(|s| self.wss_url_for(s))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Live mode: closes the open connection of subscription `id` (the client reconnects;
    /// events emitted meanwhile are lost for that subscription).
    pub fn close_subscription(&self, id: &str) {
        if let Some(c) = self.state.live.lock().expect("not poisoned").remove(id) {
            c.kick.cancel();
        }
    }

    /// Live mode: the events written to at least one open connection.
    pub fn reached(&self) -> std::collections::HashSet<u64> {
        self.state.reached.lock().expect("not poisoned").clone()
    }

    /// Live mode: the subscriptions with an open connection now.
    pub fn live_subscriptions(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .state
            .live
            .lock()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    pub fn options(&self) -> &ZoomOptions {
        &self.state.opts
    }

    /// The environment for a relay using this fake.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        vec![
            ("ZOOM_ACCOUNT_ID".into(), self.state.opts.account_id.clone()),
            ("ZOOM_CLIENT_ID".into(), self.state.opts.client_id.clone()),
            (
                "ZOOM_CLIENT_SECRET".into(),
                self.state.opts.client_secret.clone(),
            ),
            ("ZOOM_WSS_URL".into(), self.wss_urls()),
            ("ZOOM_OAUTH_URL".into(), self.oauth_url()),
        ]
    }

    /// Queues `n` more events (sent as fast as the connection takes them); in live mode,
    /// emits them now to every open connection.
    pub fn send(&self, n: u64) {
        self.state.queued.fetch_add(n, Ordering::SeqCst);
        emit_live(&self.state);
        self.state.wake.notify_waiters();
    }

    /// Generates events continuously at `per_sec`, or stops generating (`None`).
    pub fn set_rate(&self, per_sec: Option<f64>) {
        *self.state.rate.lock().expect("not poisoned") = per_sec;
    }

    /// Sends a raw frame on every open connection.
    pub fn inject(&self, frame: impl Into<Bytes>) {
        let _ = self.state.commands.send(Command::Inject(frame.into()));
    }

    /// Closes every open connection with a close frame.
    pub fn close_connections(&self) {
        let _ = self.state.commands.send(Command::Close);
    }

    /// Invalidates the current token and tells open connections `Invalid Token`.
    pub fn invalidate_token(&self) {
        *self.state.current_token.lock().expect("not poisoned") = None;
        let _ = self.state.commands.send(Command::InvalidToken);
    }

    pub fn set_reject_credentials(&self, reject: bool) {
        self.state
            .reject_credentials
            .store(reject, Ordering::SeqCst);
    }

    /// Refuses the next `n` connections with `build_connection` `success:false`.
    pub fn refuse_next_connections(&self, n: u64) {
        self.state.refuse_next.store(n, Ordering::SeqCst);
    }

    pub fn set_answer_heartbeats(&self, answer: bool) {
        self.state.answer_heartbeats.store(answer, Ordering::SeqCst);
    }

    /// Starts recording when each event is written (see [`FakeZoom::send_times`]).
    pub fn record_send_times(&self) {
        *self.state.send_times.lock().expect("not poisoned") = Some(Default::default());
    }

    /// When each event was written to a socket (flushed), if recording.
    pub fn send_times(&self) -> std::collections::HashMap<u64, Instant> {
        self.state
            .send_times
            .lock()
            .expect("not poisoned")
            .clone()
            .unwrap_or_default()
    }

    /// When heartbeats arrived.
    pub fn heartbeat_times(&self) -> Vec<Instant> {
        self.state
            .heartbeat_log
            .lock()
            .expect("not poisoned")
            .clone()
    }

    /// When each token was issued and when it expires, in order of issue.
    pub fn token_log(&self) -> Vec<(Instant, Instant)> {
        self.state.token_log.lock().expect("not poisoned").clone()
    }

    pub fn stats(&self) -> ZoomStats {
        let s = &self.state;
        ZoomStats {
            token_requests: s.token_requests.load(Ordering::SeqCst),
            tokens_issued: s.tokens_issued.load(Ordering::SeqCst),
            connections: s.connections.load(Ordering::SeqCst),
            refused_connections: s.refused.load(Ordering::SeqCst),
            open_connections: s.open.load(Ordering::SeqCst),
            heartbeats: s.heartbeats.load(Ordering::SeqCst),
            events_sent: s.sent.load(Ordering::SeqCst),
            events_queued: s.queued.load(Ordering::SeqCst),
            live_backlog: s.live_backlog.load(Ordering::SeqCst),
        }
    }

    /// Waits until `f(stats)` holds, or `timeout` passes.
    pub async fn wait_until(&self, timeout: Duration, f: impl Fn(&ZoomStats) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if f(&self.stats()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn rate_generator(st: Arc<State>, shutdown: CancellationToken) {
    let tick = Duration::from_millis(10);
    let mut carry = 0.0f64;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let rate = *st.rate.lock().expect("not poisoned");
        if let Some(r) = rate {
            carry += r * tick.as_secs_f64();
            let n = carry.floor();
            carry -= n;
            if n > 0.0 {
                st.queued.fetch_add(n as u64, Ordering::SeqCst);
                emit_live(&st);
                st.wake.notify_waiters();
            }
        }
    }
}

async fn handle(
    st: Arc<State>,
    shutdown: CancellationToken,
    mut req: Request<Incoming>,
) -> Response<RespBody> {
    match (req.method().clone(), req.uri().path()) {
        (Method::POST, "/oauth/token") => oauth(&st, req).await,
        (Method::GET, "/ws") if fastwebsockets::upgrade::is_upgrade_request(&req) => {
            let query = req.uri().query().unwrap_or("").to_string();
            let param = |name: &str| {
                query.split('&').find_map(|p| {
                    p.split_once('=')
                        .filter(|(k, _)| *k == name)
                        .map(|(_, v)| v.to_string())
                })
            };
            let token_ok = {
                let cur = st.current_token.lock().expect("not poisoned");
                matches!((&*cur, param("access_token")), (Some((t, exp)), Some(given)) if *t == given && Instant::now() < *exp)
            };
            let subscription = param("subscriptionId").unwrap_or_default();
            let subscription_ok = st.opts.all_subscriptions().contains(&subscription);
            let forced = st
                .refuse_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let token_ok = token_ok && !forced;
            let (resp, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
                Ok(v) => v,
                Err(e) => return server::text(StatusCode::BAD_REQUEST, e.to_string()),
            };
            tokio::spawn(async move {
                if let Ok(ws) = fut.await {
                    serve_ws(st, shutdown, ws, token_ok, subscription_ok, subscription).await;
                }
            });
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, body.map_err(|never| match never {}).boxed())
        }
        _ => server::text(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn oauth(st: &State, req: Request<Incoming>) -> Response<RespBody> {
    st.token_requests.fetch_add(1, Ordering::SeqCst);
    let query = req.uri().query().unwrap_or("").to_string();
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let form = String::from_utf8_lossy(&body).to_string();
    let field = |text: &str, name: &str| {
        text.split('&').find_map(|p| {
            p.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    let (id, secret) = match basic.as_deref().and_then(|b| b.split_once(':')) {
        Some((i, s)) => (i.to_string(), s.to_string()),
        None => (
            field(&form, "client_id").unwrap_or_default(),
            field(&form, "client_secret").unwrap_or_default(),
        ),
    };
    if field(&query, "grant_type").as_deref() != Some("account_credentials") {
        return server::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"reason": "Unsupported grant type", "error": "unsupported_grant_type"}),
        );
    }
    let creds_ok = id == st.opts.client_id
        && secret == st.opts.client_secret
        && !st.reject_credentials.load(Ordering::SeqCst);
    if !creds_ok {
        return server::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"reason": "Invalid client_id or client_secret", "error": "invalid_client"}),
        );
    }
    if field(&query, "account_id").as_deref() != Some(st.opts.account_id.as_str()) {
        return server::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"reason": "Invalid account_id", "error": "invalid_request"}),
        );
    }
    let n = st.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("sim-token-{n}-{:08x}", fastrand::u32(..));
    let (issued, expires) = (Instant::now(), Instant::now() + st.opts.token_ttl);
    *st.current_token.lock().expect("not poisoned") = Some((token.clone(), expires));
    st.token_log
        .lock()
        .expect("not poisoned")
        .push((issued, expires));
    server::json(
        StatusCode::OK,
        &serde_json::json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": st.opts.token_ttl.as_secs(),
            "scope": "user:read:admin qss:read:admin",
            "api_url": "https://api.zoom.us"
        }),
    )
}

fn text_frame(s: &[u8]) -> Frame<'_> {
    Frame::text(Payload::Borrowed(s))
}

async fn write(w: &Writer, bytes: &[u8]) -> bool {
    let mut w = w.lock().await;
    w.write_frame(text_frame(bytes)).await.is_ok() && w.flush().await.is_ok()
}

async fn serve_ws(
    st: Arc<State>,
    shutdown: CancellationToken,
    ws: fastwebsockets::WebSocket<TokioIo<hyper::upgrade::Upgraded>>,
    token_ok: bool,
    subscription_ok: bool,
    subscription: String,
) {
    let (rx, tx) = ws.split(|s| {
        let (r, w) = tokio::io::split(s);
        (r, BufWriter::with_capacity(256 * 1024, w))
    });
    let writer: Writer = Arc::new(tokio::sync::Mutex::new(tx));
    if !(token_ok && subscription_ok) {
        st.refused.fetch_add(1, Ordering::SeqCst);
        let content = if subscription_ok {
            "Invalid Token"
        } else {
            "Invalid subscriptionId"
        };
        let frame = format!(
            r#"{{"module":"build_connection","success":false,"content":"{content}","header":{{}}}}"#
        );
        write(&writer, frame.as_bytes()).await;
        let mut w = writer.lock().await;
        let _ = w.write_frame(Frame::close(1008, b"invalid token")).await;
        let _ = w.flush().await;
        return;
    }
    let mut commands = st.commands.subscribe();
    if !write(
        &writer,
        br#"{"module":"build_connection","success":true,"content":"","header":{}}"#,
    )
    .await
    {
        return;
    }
    st.connections.fetch_add(1, Ordering::SeqCst);
    st.open.fetch_add(1, Ordering::SeqCst);

    // The reader answers heartbeats; it ends when the client goes away.
    let reader_done = CancellationToken::new();
    let reader = {
        let (st, writer, done) = (st.clone(), writer.clone(), reader_done.clone());
        let mut rx = fastwebsockets::FragmentCollectorRead::new(rx);
        tokio::spawn(async move {
            loop {
                let w2 = writer.clone();
                let frame = rx
                    .read_frame(&mut move |f: Frame<'_>| {
                        let w = w2.clone();
                        let owned: Vec<u8> = f.payload.to_vec();
                        let opcode = f.opcode;
                        async move {
                            let mut w = w.lock().await;
                            let frame = Frame::new(true, opcode, None, Payload::Owned(owned));
                            w.write_frame(frame).await?;
                            w.flush().await
                        }
                    })
                    .await;
                let Ok(frame) = frame else { break };
                match frame.opcode {
                    OpCode::Close => break,
                    OpCode::Text => {
                        let text = String::from_utf8_lossy(&frame.payload).to_string();
                        if text.contains("\"heartbeat\"") {
                            st.heartbeats.fetch_add(1, Ordering::SeqCst);
                            st.heartbeat_log
                                .lock()
                                .expect("not poisoned")
                                .push(Instant::now());
                            if st.answer_heartbeats.load(Ordering::SeqCst)
                                && !write(&writer, br#"{"module":"heartbeat","success":true,"content":"live","header":{}}"#).await
                            {
                                break;
                            }
                        }
                    }
                    _ => {}
                }
            }
            done.cancel();
        })
    };

    if st.opts.live {
        serve_live(
            &st,
            &shutdown,
            &writer,
            &reader_done,
            &mut commands,
            subscription,
        )
        .await;
        st.open.fetch_sub(1, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(2), reader_done.cancelled()).await;
        reader.abort();
        return;
    }
    loop {
        // Send what is queued, in chunks, flushing once per chunk.
        if !send_queued(&st, &writer).await {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = reader_done.cancelled() => break,
            _ = st.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            cmd = commands.recv() => match cmd {
                Ok(Command::Inject(b)) => {
                    if !write(&writer, &b).await {
                        break;
                    }
                }
                Ok(Command::Close) => {
                    let mut w = writer.lock().await;
                    let _ = w.write_frame(Frame::close(1000, b"bye")).await;
                    let _ = w.flush().await;
                    break;
                }
                Ok(Command::InvalidToken) => {
                    let _ = write(&writer, br#"{"module":"message","success":false,"content":"Invalid Token","header":{}}"#).await;
                    let mut w = writer.lock().await;
                    let _ = w.write_frame(Frame::close(1008, b"invalid token")).await;
                    let _ = w.flush().await;
                    break;
                }
                Err(_) => {}
            },
        }
    }
    st.open.fetch_sub(1, Ordering::SeqCst);
    // Give the client a moment to read the close, then drop the socket.
    let _ = tokio::time::timeout(Duration::from_secs(2), reader_done.cancelled()).await;
    reader.abort();
}

/// Sends queued events; false if the connection broke.
async fn send_queued(st: &State, writer: &Writer) -> bool {
    loop {
        let mut numbers: Vec<u64> = st
            .given_back
            .lock()
            .expect("not poisoned")
            .drain(..)
            .collect();
        let queued = st.queued.load(Ordering::SeqCst);
        while numbers.len() < 256 {
            let n = st.next.load(Ordering::SeqCst);
            if n >= queued {
                break;
            }
            if st
                .next
                .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                numbers.push(n);
            }
        }
        if numbers.is_empty() {
            return true;
        }
        let mut w = writer.lock().await;
        let mut written = 0;
        for &n in &numbers {
            let frame = st.frames.frame(n);
            if w.write_frame(text_frame(&frame)).await.is_err() {
                break;
            }
            written += 1;
        }
        let flushed = w.flush().await.is_ok();
        drop(w);
        if !flushed || written < numbers.len() {
            // Unwritten numbers go to the next connection; written-but-unflushed ones
            // are counted as sent (as Zoom would: it does not replay).
            let written = if flushed { written } else { 0 };
            st.given_back
                .lock()
                .expect("not poisoned")
                .extend(&numbers[written..]);
            st.sent.fetch_add(written as u64, Ordering::SeqCst);
            return false;
        }
        st.sent.fetch_add(written as u64, Ordering::SeqCst);
        if let Some(times) = st.send_times.lock().expect("not poisoned").as_mut() {
            let now = Instant::now();
            times.extend(numbers.iter().map(|&n| (n, now)));
        }
    }
}

/// Live mode: hands the events emitted since the last call to every subscription's open
/// connection; a subscription without one loses them.
fn emit_live(st: &State) {
    if !st.opts.live {
        return;
    }
    let live = st.live.lock().expect("not poisoned");
    let queued = st.queued.load(Ordering::SeqCst);
    let from = st.next.swap(queued, Ordering::SeqCst);
    for n in from..queued.max(from) {
        for c in live.values() {
            if c.events.send(n).is_ok() {
                st.live_backlog.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// The frame of event `n` for `subscription`: the same event, a header of its own.
fn live_frame(st: &State, n: u64, subscription: &str) -> Vec<u8> {
    let frame = st.frames.frame(n);
    let header = format!(
        r#""header":{{"x-zm-trackingid":"EventService_{subscription}_{n}","clientId":"sim-client"}}}}"#
    );
    match frame.strip_suffix(br#""header":{}}"#.as_slice()) {
        Some(head) => [head, header.as_bytes()].concat(),
        None => frame.to_vec(),
    }
}

/// Live mode: this connection is its subscription's (closing the one before it) and gets
/// every event emitted while it is open, until it is closed or replaced.
async fn serve_live(
    st: &State,
    shutdown: &CancellationToken,
    writer: &Writer,
    reader_done: &CancellationToken,
    commands: &mut broadcast::Receiver<Command>,
    subscription: String,
) {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let id = st.conn_ids.fetch_add(1, Ordering::SeqCst);
    let kick = CancellationToken::new();
    {
        let mut live = st.live.lock().expect("not poisoned");
        let conn = LiveConn {
            id,
            events: tx,
            kick: kick.clone(),
        };
        if let Some(old) = live.insert(subscription.clone(), conn) {
            old.kick.cancel();
        }
    }
    let close = |code: u16, why: &'static [u8]| async move {
        let mut w = writer.lock().await;
        let _ = w.write_frame(Frame::close(code, why)).await;
        let _ = w.flush().await;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = reader_done.cancelled() => break,
            _ = kick.cancelled() => {
                close(1000, b"closed by the server").await;
                break;
            }
            n = events.recv() => {
                let Some(n) = n else { break };
                // Everything emitted to this connection so far, in one flush.
                let mut batch = vec![n];
                while let Ok(m) = events.try_recv() {
                    batch.push(m);
                }
                let mut w = writer.lock().await;
                let mut ok = true;
                for &m in &batch {
                    let frame = live_frame(st, m, &subscription);
                    if w.write_frame(text_frame(&frame)).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                if !ok || w.flush().await.is_err() {
                    st.live_backlog.fetch_sub(batch.len() as u64, Ordering::SeqCst);
                    break;
                }
                drop(w);
                st.sent.fetch_add(batch.len() as u64, Ordering::SeqCst);
                st.reached.lock().expect("not poisoned").extend(&batch);
                st.live_backlog.fetch_sub(batch.len() as u64, Ordering::SeqCst);
            }
            cmd = commands.recv() => match cmd {
                Ok(Command::Inject(b)) => {
                    if !write(writer, &b).await {
                        break;
                    }
                }
                Ok(Command::Close) => {
                    close(1000, b"bye").await;
                    break;
                }
                Ok(Command::InvalidToken) => {
                    let _ = write(writer, br#"{"module":"message","success":false,"content":"Invalid Token","header":{}}"#).await;
                    close(1008, b"invalid token").await;
                    break;
                }
                Err(_) => {}
            },
        }
    }
    // What was emitted to this connection and never written is lost for it.
    events.close();
    while events.try_recv().is_ok() {
        st.live_backlog.fetch_sub(1, Ordering::SeqCst);
    }
    let mut live = st.live.lock().expect("not poisoned");
    if live.get(&subscription).is_some_and(|c| c.id == id) {
        live.remove(&subscription);
    }
}
