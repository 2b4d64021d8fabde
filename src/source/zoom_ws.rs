//! The Zoom QSS WebSocket source: connect, keep the connection alive, hand every event
//! frame to the spool, reconnect fast when anything goes wrong.
//!
//! One connection is a *session*:
//!
//! ```text
//!  supervisor (this task)                         reader task
//!  ─ connect (TCP, TLS, upgrade) ─────────────▶   read_frame loop (never raced in select!)
//!  ─ wait for build_connection  ◀── control ───   classify: event ──▶ Appender::send (Bytes, zero-copy)
//!  ─ heartbeat every interval (writer side)        heartbeat / build_connection / errors ──▶ control
//!  ─ silent for 2 intervals? reconnect
//! ```
//!
//! fastwebsockets' `read_frame` is not cancel-safe, so the reader owns the read half in
//! its own task and is never raced; the supervisor writes heartbeats through the shared
//! write half. Event frames leave the reader as the `Bytes` fastwebsockets read them into:
//! no copy before the spool compresses them.
//!
//! Between sessions: a new token if Zoom rejected the old one, then the first retry at
//! once and exponential backoff with jitter (up to 30 s) after that, since Zoom does not
//! replay what it sent while nobody listened.

use super::dedup::{key_of, Dedup};
use super::end_reason::EndReason;
use super::frame::{classify, FrameKind};
use super::zoom_dial::Dialer;
use super::zoom_dial::BUILD_CONNECTION_TIMEOUT;
use super::zoom_token::TokenSource;
use crate::backoff::Backoff;
use crate::metrics::{label, Metrics};
use crate::net::proxy::Proxy;
use crate::net::redact_url;
use crate::role::Role;
use crate::secret::Secret;
use crate::source::settings::ZoomWsSettings;
use crate::spool::{flags, AppendError, Appender, NewRecord, SourceKind};
use crate::time::now_ms;
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const RECONNECT: Backoff = Backoff {
    base: Duration::from_millis(500),
    cap: Duration::from_secs(30),
};
/// A session that lived this long was healthy: the next reconnect is immediate again.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

/// When to dial again after a session ended: at once after the first failure (Zoom does
/// not replay what it sends while nobody listens), then exponential backoff with jitter;
/// a session that was up for [`HEALTHY_SESSION`] makes the next reconnect immediate again.
#[derive(Debug, Default)]
struct ReconnectPolicy {
    /// Sessions that ended since the last healthy one.
    failures: u32,
}

impl ReconnectPolicy {
    /// The delay before the next dial, for a session that ended after `lived`
    /// (`connected`: Zoom had accepted it).
    fn after_session(&mut self, connected: bool, lived: Duration) -> Duration {
        if connected && lived >= HEALTHY_SESSION {
            self.failures = 0;
        }
        let delay = match self.failures {
            0 => Duration::ZERO,
            n => RECONNECT.delay(n - 1),
        };
        self.failures = self.failures.saturating_add(1);
        delay
    }
}

/// What the reader tells the supervisor.
#[derive(Debug)]
enum Control {
    BuildConnection { success: bool, content: String },
    Heartbeat,
    TokenRejected(String),
    Closed(String),
    ReadError(String),
    SpoolClosed,
}

/// How a session ended (a metric label and a log line).
#[derive(Debug, Clone)]
struct SessionEnd {
    reason: EndReason,
    detail: String,
    /// Zoom had accepted the connection (`build_connection` succeeded).
    connected: bool,
    /// Zoom refused the token: get a new one before the next dial.
    token_rejected: bool,
}

impl SessionEnd {
    /// Ended before Zoom accepted the connection.
    fn unconnected(reason: EndReason, detail: impl Into<String>) -> SessionEnd {
        SessionEnd {
            reason,
            detail: detail.into(),
            connected: false,
            token_rejected: false,
        }
    }

    /// Ended after Zoom had accepted the connection.
    fn connected(reason: EndReason, detail: impl Into<String>) -> SessionEnd {
        SessionEnd {
            connected: true,
            ..SessionEnd::unconnected(reason, detail)
        }
    }

    fn token_rejected(self) -> SessionEnd {
        self.token_rejected_if(true)
    }

    fn token_rejected_if(mut self, rejected: bool) -> SessionEnd {
        self.token_rejected = rejected;
        self
    }
}

/// Live figures of one subscription's connection, shown by `relay spool inspect`.
#[derive(Debug)]
pub struct WsState {
    /// The subscription's name (its `subscriptionId`): the metrics' `subscription` label.
    pub subscription: &'static str,
    pub connected: std::sync::atomic::AtomicBool,
    pub last_frame_ms: AtomicU64,
    pub events: AtomicU64,
    /// Events dropped as copies of one another subscription brought first.
    pub duplicates: AtomicU64,
    /// Connections Zoom closed soon after they opened, recently (another client on the
    /// same subscription takes it over: see `flapping`).
    pub early_closes: std::sync::Mutex<std::collections::VecDeque<u64>>,
}

/// A snapshot of [`WsState`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WsSnapshot {
    #[serde(default)]
    pub subscription: String,
    pub connected: bool,
    pub last_frame_ms: Option<u64>,
    pub events_received: u64,
    #[serde(default)]
    pub duplicates_dropped: u64,
    /// Zoom keeps closing this subscription's connections soon after they open: another
    /// client (a second relay, `relay check`) uses the same subscription.
    #[serde(default)]
    pub contended: bool,
}

impl WsState {
    /// The state of the subscription named `subscription` (leaked once: subscriptions are
    /// configured at start and live as long as the process).
    pub fn new(subscription: String) -> WsState {
        WsState {
            subscription: Box::leak(subscription.into_boxed_str()),
            connected: Default::default(),
            last_frame_ms: Default::default(),
            events: Default::default(),
            duplicates: Default::default(),
            early_closes: Default::default(),
        }
    }

    pub fn snapshot(&self) -> WsSnapshot {
        let last = self.last_frame_ms.load(Ordering::Relaxed);
        WsSnapshot {
            subscription: self.subscription.to_string(),
            connected: self.connected.load(Ordering::Relaxed),
            last_frame_ms: (last > 0).then_some(last),
            events_received: self.events.load(Ordering::Relaxed),
            duplicates_dropped: self.duplicates.load(Ordering::Relaxed),
            contended: self.contended(now_ms()),
        }
    }

    /// Records a session Zoom closed `lasted` after it opened; says whether the
    /// subscription now looks taken over by another client: [`CONTENDED_CLOSES`] closes of
    /// sessions shorter than [`SHORT_SESSION`] within [`CONTENDED_WINDOW_MS`].
    pub(crate) fn note_close(&self, lasted: Duration, now: u64) -> bool {
        let mut closes = self.early_closes.lock().unwrap_or_else(|p| p.into_inner());
        if lasted < SHORT_SESSION {
            closes.push_back(now);
        }
        while closes
            .front()
            .is_some_and(|t| t + CONTENDED_WINDOW_MS < now)
        {
            closes.pop_front();
        }
        closes.len() >= CONTENDED_CLOSES
    }

    fn contended(&self, now: u64) -> bool {
        let closes = self.early_closes.lock().unwrap_or_else(|p| p.into_inner());
        closes
            .iter()
            .filter(|t| **t + CONTENDED_WINDOW_MS >= now)
            .count()
            >= CONTENDED_CLOSES
    }
}

/// How long a relay that no longer leads (cold standby) keeps reading before it closes:
/// until the socket has been quiet for 500 ms or the server closed, at most this.
const NOT_LEADER_DRAIN: Duration = Duration::from_secs(5);

/// A session shorter than this that Zoom closed counts towards contention.
const SHORT_SESSION: Duration = Duration::from_secs(30);
/// This many such closes ...
const CONTENDED_CLOSES: usize = 5;
/// ... within this window mean another client takes the subscription over.
const CONTENDED_WINDOW_MS: u64 = 120_000;

/// The source: one subscription's connection.
pub(crate) struct ZoomWsSource {
    dialer: Dialer,
    tokens: Arc<TokenSource>,
    appender: Appender,
    metrics: Arc<Metrics>,
    state: Arc<WsState>,
    /// Shared by every subscription's source when there are several.
    dedup: Option<Arc<std::sync::Mutex<Dedup>>>,
    /// Cold standby: connect only while this relay leads.
    gate: Option<Arc<dyn Role>>,
}

/// What a source is made of, besides its subscription's URL and state.
pub(crate) struct WsParts {
    pub cfg: ZoomWsSettings,
    pub tokens: Arc<TokenSource>,
    pub appender: Appender,
    pub metrics: Arc<Metrics>,
    pub tls: Arc<rustls::ClientConfig>,
    pub proxy: Proxy,
    pub dedup: Option<Arc<std::sync::Mutex<Dedup>>>,
    pub gate: Option<Arc<dyn Role>>,
}

impl ZoomWsSource {
    pub(crate) fn new(parts: &WsParts, url: String, state: Arc<WsState>) -> ZoomWsSource {
        ZoomWsSource {
            dialer: Dialer::new(
                parts.cfg.clone(),
                url,
                parts.tls.clone(),
                parts.proxy.clone(),
            ),
            tokens: parts.tokens.clone(),
            appender: parts.appender.clone(),
            metrics: parts.metrics.clone(),
            state,
            dedup: parts.dedup.clone(),
            gate: parts.gate.clone(),
        }
    }

    /// Cold standby: waits until this relay leads; false at `shutdown`.
    async fn wait_to_lead(&self, shutdown: &CancellationToken) -> bool {
        let Some(gate) = &self.gate else { return true };
        let mut changes = gate.watch();
        let mut said = false;
        while !gate.is_leader() {
            if !said {
                tracing::info!(
                    subscription = self.state.subscription,
                    "another relay leads: not connecting to Zoom (cold standby)"
                );
                said = true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        true
    }

    /// Connects and reconnects until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut reconnect = ReconnectPolicy::default();
        loop {
            if shutdown.is_cancelled() || !self.wait_to_lead(&shutdown).await {
                break;
            }
            let Some(token) = self.tokens.get(&shutdown).await else {
                break;
            };
            let started = Instant::now();
            let end = self.session(&token, &shutdown).await;
            self.state.connected.store(false, Ordering::SeqCst);
            let sub = self.state.subscription;
            if end.connected {
                self.metrics
                    .ws_disconnects
                    .get_or_create(&[("subscription", sub), ("reason", end.reason.label())])
                    .inc();
                if end.reason == EndReason::ServerClose
                    && self.state.note_close(started.elapsed(), now_ms())
                {
                    tracing::error!(
                        subscription = sub,
                        "Zoom keeps closing this subscription's connection soon after it opens: another client uses the same subscription (a second relay with RELAY_HA_STANDBY=hot on URLs both use, or a forgotten old relay); give each relay subscriptions of its own, or use RELAY_HA_STANDBY=cold"
                    );
                }
            }
            if end.token_rejected {
                self.tokens.reject(&token);
            }
            if shutdown.is_cancelled() {
                tracing::info!("Zoom WebSocket closed for shutdown");
                break;
            }
            if end.reason == EndReason::NotLeader {
                continue;
            }
            let delay = reconnect.after_session(end.connected, started.elapsed());
            tracing::warn!(
                reason = end.reason.label(),
                detail = %end.detail,
                reconnect_in_ms = delay.as_millis() as u64,
                "Zoom WebSocket disconnected; reconnecting (events sent meanwhile are not replayed by Zoom)"
            );
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(&self, token: &Secret, shutdown: &CancellationToken) -> SessionEnd {
        let url = self.dialer.url_with_token(token);
        tracing::info!(url = %redact_url(&url), "connecting to Zoom QSS WebSocket");
        let stream = match self.dialer.connect(&url).await {
            Ok(s) => s,
            Err(e) => return SessionEnd::unconnected(e.reason, e.detail),
        };
        let ws = match self.dialer.upgrade(&url, stream).await {
            Ok(ws) => ws,
            Err(e) => return SessionEnd::unconnected(e.reason, e.detail),
        };
        let (rx, tx) = ws.split(tokio::io::split);
        let writer = Arc::new(tokio::sync::Mutex::new(tx));
        let (ctl_tx, mut ctl) = mpsc::unbounded_channel();
        let last_rx = Arc::new(AtomicU64::new(now_ms()));
        let reader = tokio::spawn(read_loop(
            rx,
            writer.clone(),
            ReaderCtx {
                appender: self.appender.clone(),
                metrics: self.metrics.clone(),
                state: self.state.clone(),
                last_rx: last_rx.clone(),
                ctl: ctl_tx,
                dedup: self.dedup.clone(),
            },
        ));
        let result = self.supervise(&writer, &mut ctl, &last_rx, shutdown).await;
        // Give the reader a moment to drain what Zoom sent before its close, then stop it.
        // A relay that closed because it no longer leads (cold standby, resumed after a
        // pause) may find a socket buffer full of events it received before the pause:
        // they are spooled and shipped, not dropped with the socket.
        let drain = if shutdown.is_cancelled() || result.reason == EndReason::NotLeader {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(200)
        };
        let mut reader = reader;
        if tokio::time::timeout(drain, &mut reader).await.is_err() {
            reader.abort();
        }
        result
    }

    async fn supervise<W: AsyncWrite + Unpin>(
        &self,
        writer: &tokio::sync::Mutex<fastwebsockets::WebSocketWrite<W>>,
        ctl: &mut mpsc::UnboundedReceiver<Control>,
        last_rx: &AtomicU64,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        // build_connection first.
        let first = tokio::select! {
            _ = shutdown.cancelled() => return SessionEnd::unconnected(EndReason::Shutdown, ""),
            c = tokio::time::timeout(BUILD_CONNECTION_TIMEOUT, ctl.recv()) => c,
        };
        match first {
            Ok(Some(Control::BuildConnection { success: true, .. })) => {}
            Ok(Some(Control::BuildConnection {
                success: false,
                content,
            }))
            | Ok(Some(Control::TokenRejected(content))) => {
                let token = super::frame::mentions_token(&content);
                tracing::error!(content = %content, "Zoom refused the WebSocket connection (build_connection failed)");
                return SessionEnd::unconnected(EndReason::BuildConnectionFailed, content)
                    .token_rejected_if(token);
            }
            Ok(Some(other)) => {
                return SessionEnd::unconnected(
                    EndReason::BuildConnectionFailed,
                    format!("{other:?} before build_connection"),
                )
            }
            Ok(None) => {
                return SessionEnd::unconnected(
                    EndReason::ReadError,
                    "connection ended before build_connection",
                )
            }
            Err(_) => {
                return SessionEnd::unconnected(
                    EndReason::BuildConnectionTimeout,
                    format!("no build_connection within {BUILD_CONNECTION_TIMEOUT:?}"),
                )
            }
        }
        self.metrics
            .ws_connects
            .get_or_create(&[("subscription", self.state.subscription)])
            .inc();
        self.state.connected.store(true, Ordering::SeqCst);
        tracing::info!(
            subscription = self.state.subscription,
            "connected to Zoom QSS WebSocket"
        );

        let interval = self.dialer.cfg.heartbeat_interval;
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut liveness = tokio::time::interval(Duration::from_millis(250).min(interval / 4));
        let mut heartbeat_sent: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let mut w = writer.lock().await;
                    let _ = w.write_frame(Frame::close(1000, b"relay shutting down")).await;
                    return SessionEnd::connected(EndReason::Shutdown, "");
                }
                c = ctl.recv() => match c {
                    Some(Control::Heartbeat) => {
                        if let Some(sent) = heartbeat_sent.take() {
                            self.metrics.ws_heartbeat_rtt.observe(sent.elapsed().as_secs_f64());
                        }
                    }
                    Some(Control::TokenRejected(content)) => {
                        tracing::error!(content = %content, "Zoom rejected the access token mid-stream; getting a new one");
                        return SessionEnd::connected(EndReason::InvalidToken, content).token_rejected();
                    }
                    Some(Control::BuildConnection { content, .. }) => {
                        tracing::warn!(content = %content, "unexpected second build_connection frame; ignored");
                    }
                    Some(Control::Closed(why)) => return SessionEnd::connected(EndReason::ServerClose, why),
                    Some(Control::ReadError(e)) => return SessionEnd::connected(EndReason::ReadError, e),
                    Some(Control::SpoolClosed) | None => return SessionEnd::connected(EndReason::Shutdown, "spool closed"),
                },
                _ = heartbeat.tick() => {
                    let mut w = writer.lock().await;
                    if let Err(e) = w.write_frame(Frame::text(Payload::Borrowed(br#"{"module":"heartbeat"}"#))).await {
                        return SessionEnd::connected(EndReason::WriteError, e.to_string());
                    }
                    heartbeat_sent = Some(Instant::now());
                }
                _ = liveness.tick() => {
                    if self.gate.as_ref().is_some_and(|g| !g.is_leader()) {
                        // Read what is in flight before closing: a relay resumed after a
                        // pause has a socket buffer of events it received as leader, and
                        // a close now can make the server reset the connection, which
                        // discards what the kernel still holds for us (822 events lost in
                        // tests/ha.rs's SIGSTOP scenario on a loaded machine).
                        let quiet_since = |ms: u64| now_ms().saturating_sub(last_rx.load(Ordering::Relaxed)) >= ms;
                        let until = Instant::now() + NOT_LEADER_DRAIN;
                        loop {
                            tokio::select! {
                                c = ctl.recv() => match c {
                                    Some(Control::Closed(_) | Control::ReadError(_) | Control::SpoolClosed) | None => break,
                                    Some(_) => {}
                                },
                                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                                    if quiet_since(500) || Instant::now() >= until {
                                        break;
                                    }
                                }
                            }
                        }
                        let mut w = writer.lock().await;
                        let _ = w.write_frame(Frame::close(1000, b"relay is no longer the leader")).await;
                        let _ = w.flush().await;
                        return SessionEnd::connected(EndReason::NotLeader, "another relay leads (cold standby)");
                    }
                    let silent_ms = now_ms().saturating_sub(last_rx.load(Ordering::Relaxed));
                    if silent_ms > 2 * interval.as_millis() as u64 {
                        return SessionEnd::connected(EndReason::Silent, format!("nothing received for {} ms (two heartbeat intervals)", silent_ms));
                    }
                }
            }
        }
    }
}

/// Turns a frame payload into `Bytes` without copying when fastwebsockets read it into
/// its buffer (the usual case).
fn into_bytes(p: Payload<'_>) -> Bytes {
    match p {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        other => Bytes::copy_from_slice(&other),
    }
}

/// What the reader task owns besides the two halves of the socket.
struct ReaderCtx {
    appender: Appender,
    metrics: Arc<Metrics>,
    state: Arc<WsState>,
    /// When the last frame arrived (the supervisor's silence check).
    last_rx: Arc<AtomicU64>,
    ctl: mpsc::UnboundedSender<Control>,
    dedup: Option<Arc<std::sync::Mutex<Dedup>>>,
}

/// The reader task: owns the read half (never raced, invariant 10), hands event frames to
/// the spool and control frames to the supervisor.
async fn read_loop<R, W>(
    rx: fastwebsockets::WebSocketRead<R>,
    writer: Arc<tokio::sync::Mutex<fastwebsockets::WebSocketWrite<W>>>,
    cx: ReaderCtx,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let ReaderCtx {
        appender,
        metrics,
        state,
        last_rx,
        ctl,
        dedup,
    } = cx;
    let mut rx = fastwebsockets::FragmentCollectorRead::new(rx);
    let sub = state.subscription;
    let events_label = [("subscription", sub), ("kind", "event")];
    let mut malformed_logged = 0u64;
    loop {
        let frame = rx
            .read_frame(&mut |f: Frame<'_>| {
                // Obligated answers (pong, close echo) go out through the writer.
                let w = writer.clone();
                let frame = Frame::new(true, f.opcode, None, Payload::Owned(f.payload.to_vec()));
                async move { w.lock().await.write_frame(frame).await }
            })
            .await;
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let _ = ctl.send(Control::ReadError(e.to_string()));
                return;
            }
        };
        last_rx.store(now_ms(), Ordering::Relaxed);
        state.last_frame_ms.store(now_ms(), Ordering::Relaxed);
        match frame.opcode {
            OpCode::Close => {
                let why = match frame.payload.len() {
                    0 | 1 => "close frame".to_string(),
                    _ => format!(
                        "close frame {} {}",
                        u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                        String::from_utf8_lossy(&frame.payload[2..])
                    ),
                };
                let _ = ctl.send(Control::Closed(why));
                return;
            }
            OpCode::Text | OpCode::Binary => {}
            _ => continue,
        }
        let payload = into_bytes(frame.payload);
        let (record, kind_label) = match classify(&payload) {
            FrameKind::Event => (
                Some(NewRecord::new(SourceKind::WebSocket, payload)),
                events_label,
            ),
            FrameKind::Unrecognised { reason } => {
                malformed_logged += 1;
                if malformed_logged <= 10 || malformed_logged.is_power_of_two() {
                    tracing::warn!(%reason, bytes = payload.len(), count = malformed_logged, "unrecognised frame from Zoom: kept and shipped as raw text");
                }
                (
                    Some(
                        NewRecord::new(SourceKind::WebSocket, payload).with_flags(flags::MALFORMED),
                    ),
                    [("subscription", sub), ("kind", "malformed")],
                )
            }
            FrameKind::Heartbeat => {
                let _ = ctl.send(Control::Heartbeat);
                (None, [("subscription", sub), ("kind", "heartbeat")])
            }
            FrameKind::BuildConnection { success, content } => {
                let _ = ctl.send(Control::BuildConnection { success, content });
                (None, [("subscription", sub), ("kind", "control")])
            }
            FrameKind::TokenRejected { content } => {
                let _ = ctl.send(Control::TokenRejected(content));
                (None, [("subscription", sub), ("kind", "control")])
            }
            FrameKind::ServerError { module, content } => {
                tracing::warn!(%module, %content, "Zoom sent an error notice");
                (None, [("subscription", sub), ("kind", "control")])
            }
        };
        metrics.ws_frames.get_or_create(&kind_label).inc();
        // With several subscriptions, an event another one brought first is dropped here.
        let record = record.filter(|r| {
            let Some(dedup) = &dedup else { return true };
            let Some(key) = (r.flags & flags::MALFORMED == 0)
                .then(|| key_of(&r.payload))
                .flatten()
            else {
                return true;
            };
            let first = dedup
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first(key, now_ms());
            if !first {
                metrics.events_deduplicated.inc();
                state.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            first
        });
        if let Some(record) = record {
            metrics
                .events_received
                .get_or_create(&label("source", "websocket"))
                .inc();
            state.events.fetch_add(1, Ordering::Relaxed);
            match appender.send(record).await {
                Ok(()) => {}
                Err(AppendError::Closed) => {
                    let _ = ctl.send(Control::SpoolClosed);
                    return;
                }
                Err(e) => tracing::error!(error = %e, "could not hand an event to the spool"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reconnect_is_immediate_then_backoff_until_a_healthy_session() {
        let short = Duration::from_millis(50);
        let mut p = ReconnectPolicy::default();
        // A session that was up, however briefly, ended for the first time: at once.
        assert_eq!(p.after_session(true, short), Duration::ZERO);
        // Failing again: backoff, bounded by the doubling bound (jittered, so check the
        // bound over many draws and that it is not always zero).
        let mut draws = Vec::new();
        for n in 0..8u32 {
            let d = p.after_session(false, short);
            assert!(d <= RECONNECT.bound(n), "failure {n}: {d:?}");
            draws.push(d);
        }
        assert!(draws.iter().any(|d| *d > Duration::ZERO), "{draws:?}");
        assert!(draws.iter().all(|d| *d <= RECONNECT.cap));
        // A healthy session resets it: the next reconnect is immediate again.
        assert_eq!(p.after_session(true, HEALTHY_SESSION), Duration::ZERO);
        // A connection Zoom refused is not healthy, however long it took.
        let mut p = ReconnectPolicy::default();
        p.after_session(false, short);
        let waits: Vec<Duration> = (0..20)
            .map(|_| p.after_session(false, HEALTHY_SESSION * 2))
            .collect();
        assert!(waits.iter().any(|d| *d > Duration::ZERO), "{waits:?}");
    }
}
