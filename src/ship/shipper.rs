//! The shipping loop: read the spool in order, encode into batches, deliver up to
//! `RELAY_SHIP_CONCURRENCY` batches at once, and acknowledge the contiguous delivered
//! prefix back to the spool, at this destination's own position. One [`Shipper`] runs per
//! destination ([`Destination`]); an outage of one never slows another.
//!
//! ```text
//!   spool.read_block(pos) ─▶ encode into Batch ─▶ (full, or linger expired) ─▶ deliver task ─┐
//!        ▲  (blocking thread)                                (semaphore: N in flight)         │
//!        └──────────── spool.ack(delivered) ◀── AckTracker (contiguous prefix) ◀── range done ┘
//! ```
//!
//! A delivery task owns its batch until every event in it is either accepted by the
//! destination or moved to the dead-letter area (for this destination) (refused with a 400-class answer, or alone and still
//! too large). Retryable failures are retried forever with backoff; a shutdown stops the
//! retrying, and what was not delivered stays in the spool for the next start.

use super::ack::AckTracker;
use super::batch::{Batch, Encoded, Limits, SizeRatio};
use super::destination::{Attempt, Destination, Outcome};
use super::settings::ShipSettings;
use super::status::{ShipError, ShipStatus};
use crate::backoff::Backoff;
use crate::metrics::{label, Metrics};
use crate::role::{decide, Hold, Role};
use crate::spool::{Record, Spool, SpoolError};
use crate::time::now_ms;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Drains one spool to one destination.
pub(crate) struct Shipper<D: Destination> {
    spool: Spool,
    dest: D,
    settings: ShipSettings,
    status: Arc<ShipStatus>,
    metrics: Arc<Metrics>,
    /// Hot standby: what a follower holds back ([`crate::role`]).
    role: Option<Arc<dyn Role>>,
}

/// What every delivery task shares.
struct Ctx<D: Destination> {
    spool: Spool,
    dest: D,
    sink: crate::metrics::Label,
    status: Arc<ShipStatus>,
    metrics: Arc<Metrics>,
    encoders: EncoderPool<D>,
    max_bytes: usize,
    /// Body bytes per estimated byte, learnt here and used by the [`Filler`] to cut batches.
    size_ratio: Arc<SizeRatio>,
    /// Cancelled on shutdown: no new attempts after it.
    stop_retrying: CancellationToken,
    /// Signalled when a request succeeds: batches waiting out a backoff retry at once, so
    /// that a backlog starts draining as soon as LogScale is back, not a minute later.
    recovered: tokio::sync::Notify,
}

/// The reading state, moved to a blocking thread for each block.
struct Filler<D: Destination> {
    dest: D,
    role: Option<Arc<dyn Role>>,
    limits: Limits,
    size_ratio: Arc<SizeRatio>,
    /// Next sequence number to read.
    pos: u64,
    batch: Batch,
    batch_started: Option<Instant>,
}

impl<D: Destination> Filler<D> {
    /// Reads the next block into batches. Returns the batches it filled, whether anything
    /// was read, and whether it stopped at a record a hot follower must hold back.
    fn fill(&mut self, spool: &Spool) -> Result<(Vec<Batch>, bool, bool), SpoolError> {
        let Some(block) = spool.read_for_shipping(self.pos)? else {
            return Ok((Vec::new(), false, false));
        };
        let mut full = Vec::new();
        let mut read = false;
        for rec in block.records {
            let hold = decide(self.role.as_deref(), &rec);
            if hold == Hold::Wait {
                // Stop here: the position stays at this record until the leader delivers
                // it or this relay leads.
                self.batch.end = self.batch.end.max(rec.seq);
                self.pos = rec.seq;
                return Ok((full, read, true));
            }
            read = true;
            // Records this destination does not take (or a hot follower's leader
            // delivered) stay in the range and are acknowledged with it.
            if hold == Hold::PassOver || !self.dest.accepts(&rec) || !rec.is_for(self.dest.name()) {
                // The linger clock runs for them too: a batch holding only records passed
                // over is cut and acknowledged like any other, or the position would stop.
                self.batch_started.get_or_insert_with(Instant::now);
                continue;
            }
            if self.batch.is_full_for(&rec, self.limits, &self.size_ratio) {
                full.push(self.cut(rec.seq));
            }
            self.batch.push(rec);
            self.batch_started.get_or_insert_with(Instant::now);
        }
        self.batch.end = self.batch.end.max(block.end);
        self.pos = block.end;
        Ok((full, true, false))
    }

    /// Ends the current batch at `at` and starts the next one there.
    fn cut(&mut self, at: u64) -> Batch {
        self.batch.end = self.batch.end.max(at);
        let next = Batch::new(self.batch.end);
        self.batch_started = None;
        std::mem::replace(&mut self.batch, next)
    }

    fn linger_deadline(&self, linger: Duration) -> Option<Instant> {
        self.batch_started.map(|t| t + linger)
    }
}

/// Encoders and request-body buffers for the delivery tasks, reused: bodies are several
/// megabytes, and allocating them afresh for every batch costs page faults (and, with
/// glibc's default settings, fragmentation).
/// Idle encoders and idle request-body buffers.
type FreeLists<E> = (Vec<E>, Vec<Vec<u8>>);

struct EncoderPool<D: Destination> {
    dest: D,
    free: std::sync::Mutex<FreeLists<D::Encoder>>,
    max_bodies: usize,
}

impl<D: Destination> EncoderPool<D> {
    fn take(&self) -> (D::Encoder, Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let enc = free.0.pop().unwrap_or_else(|| self.dest.new_encoder());
        let body = free.1.pop().unwrap_or_default();
        (enc, body)
    }

    fn put_encoder(&self, e: D::Encoder) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .push(e);
    }

    fn put_body(&self, body: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.1.len() < self.max_bodies {
            free.1.push(body);
        }
    }
}

impl<D: Destination> Shipper<D> {
    pub(crate) fn new(
        spool: Spool,
        dest: D,
        settings: ShipSettings,
        status: Arc<ShipStatus>,
        metrics: Arc<Metrics>,
        role: Option<Arc<dyn Role>>,
    ) -> Shipper<D> {
        Shipper {
            spool,
            dest,
            settings,
            status,
            metrics,
            role,
        }
    }

    /// Runs until `shutdown` is cancelled; then lets in-flight requests finish for at
    /// most `drain`, acknowledges what was delivered, and returns.
    pub(crate) async fn run(self, shutdown: CancellationToken, drain: Duration) {
        let Shipper {
            spool,
            dest,
            settings,
            status,
            metrics,
            role,
        } = self;
        let mut role_changes = role.as_ref().map(|r| r.watch());
        let sink = dest.name();
        let size_ratio = Arc::new(SizeRatio::new());
        let ctx = Arc::new(Ctx {
            spool: spool.clone(),
            dest: dest.clone(),
            sink: label("sink", sink),
            status,
            metrics,
            encoders: EncoderPool {
                dest: dest.clone(),
                free: std::sync::Mutex::new((Vec::new(), Vec::new())),
                max_bodies: settings.concurrency + 1,
            },
            max_bytes: settings.limits.max_bytes,
            size_ratio: size_ratio.clone(),
            stop_retrying: CancellationToken::new(),
            recovered: tokio::sync::Notify::new(),
        });
        let start = spool.sink_floor(sink);
        let mut tracker = AckTracker::new(start);
        let mut acked = start;
        let sem = Arc::new(Semaphore::new(settings.concurrency));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, u64)>();
        let mut tasks = JoinSet::new();
        let mut durable = spool.subscribe();
        let mut filler = Some(Filler {
            dest: dest.clone(),
            role,
            limits: settings.limits,
            size_ratio,
            pos: start,
            batch: Batch::new(start),
            batch_started: None,
        });

        'main: loop {
            while let Ok((s, e)) = done_rx.try_recv() {
                tracker.complete(s, e);
            }
            acked = ack(&spool, sink, acked, tracker.delivered).await;

            // Read and encode one block on a blocking thread.
            let mut f = filler.take().expect("filler is always put back");
            let sp = spool.clone();
            let (f, result) = match tokio::task::spawn_blocking(move || {
                let r = f.fill(&sp);
                (f, r)
            })
            .await
            {
                Ok(v) => v,
                Err(e) => {
                    // A panic while encoding would be a bug; the records stay in the spool.
                    tracing::error!(error = %e, "shipper reading task failed; stopping the shipper");
                    break 'main;
                }
            };
            filler = Some(f);
            let (full, read, held) = match result {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool; retrying in 1 s");
                    tokio::select! {
                        _ = shutdown.cancelled() => break 'main,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'main,
                    }
                }
            };
            for batch in full {
                if !dispatch(&ctx, batch, &sem, &done_tx, &mut tasks, &shutdown).await {
                    break 'main;
                }
            }
            let f = filler.as_mut().expect("present");
            if f.linger_deadline(settings.linger)
                .is_some_and(|d| d <= Instant::now())
            {
                let pos = f.pos;
                let batch = f.cut(pos);
                if !dispatch(&ctx, batch, &sem, &done_tx, &mut tasks, &shutdown).await {
                    break 'main;
                }
            }
            if read {
                continue;
            }
            let linger_at = filler
                .as_ref()
                .and_then(|f| f.linger_deadline(settings.linger));
            tokio::select! {
                _ = shutdown.cancelled() => break 'main,
                _ = durable.changed(), if !held => {}
                _ = changed(&mut role_changes), if held => {}
                Some((s, e)) = done_rx.recv() => tracker.complete(s, e),
                _ = tokio::time::sleep_until(linger_at.unwrap_or_else(Instant::now).into()), if linger_at.is_some() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }

        // Shutdown: no new batches, no new retries; requests already sent may finish.
        ctx.stop_retrying.cancel();
        let finished =
            tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            tracing::warn!(
                in_flight = tasks.len(),
                "in-flight ingest requests did not finish within the shutdown bound; their events stay in the spool and are sent again at the next start"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        while let Ok((s, e)) = done_rx.try_recv() {
            tracker.complete(s, e);
        }
        ack(&spool, sink, acked, tracker.delivered).await;
    }
}

/// Acknowledges up to `delivered` for `sink` if that moved; returns the new acknowledged
/// position.
async fn ack(spool: &Spool, sink: &'static str, acked: u64, delivered: u64) -> u64 {
    if delivered <= acked {
        return acked;
    }
    let sp = spool.clone();
    match tokio::task::spawn_blocking(move || sp.ack_for(sink, delivered)).await {
        Ok(Ok(())) => delivered,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot record the delivered position; events may be sent twice after a restart");
            acked
        }
        Err(_) => acked,
    }
}

/// Starts a delivery task once a slot is free. Returns false if shutdown came first.
async fn dispatch<D: Destination>(
    ctx: &Arc<Ctx<D>>,
    batch: Batch,
    sem: &Arc<Semaphore>,
    done: &mpsc::UnboundedSender<(u64, u64)>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> bool {
    if batch.start == batch.end {
        return true;
    }
    let permit = tokio::select! {
        _ = shutdown.cancelled() => return false,
        p = sem.clone().acquire_owned() => p.expect("the semaphore is never closed"),
    };
    // Reap finished tasks so the set does not grow.
    while tasks.try_join_next().is_some() {}
    let ctx = ctx.clone();
    let done = done.clone();
    tasks.spawn(async move {
        let range = (batch.start, batch.end);
        if deliver(&ctx, batch).await {
            let _ = done.send(range);
        }
        drop(permit);
    });
    true
}

/// Delivers every event of `batch` or dead-letters it. Returns false if shutdown stopped
/// it first (the events stay in the spool).
async fn deliver<D: Destination>(ctx: &Arc<Ctx<D>>, batch: Batch) -> bool {
    if batch.is_empty() {
        return true;
    }
    // Encoding is CPU work: a blocking thread, one per batch in flight.
    let encoded = {
        let c = ctx.clone();
        let (records, estimate) = (batch.records, batch.estimated_bytes);
        match tokio::task::spawn_blocking(move || {
            let (mut enc, body) = c.encoders.take();
            let e = Encoded::encode(records, |r, out| D::encode(&mut enc, r, out), body);
            c.encoders.put_encoder(enc);
            c.size_ratio.observe(estimate, e.body.len());
            e
        })
        .await
        {
            Ok(e) => Arc::new(e),
            Err(_) => return false,
        }
    };
    // Event index ranges still to send, within the size limit; pushed in reverse so that
    // they go out in order.
    let mut todo: Vec<(usize, usize)> = encoded.runs(ctx.max_bytes);
    todo.reverse();
    let mut dead: Vec<(Record, String)> = Vec::new();
    let mut attempt: u32 = 0;
    while let Some((a, b)) = todo.pop() {
        let compressed = {
            let (encoded, dest) = (encoded.clone(), ctx.dest.clone());
            match tokio::task::spawn_blocking(move || dest.compress(encoded.slice(a, b))).await {
                Ok(c) => c,
                Err(_) => return false,
            }
        };
        loop {
            let m = &ctx.metrics;
            m.ship_batch_events
                .get_or_create(&ctx.sink)
                .observe((b - a) as f64);
            m.ship_batch_bytes
                .get_or_create(&ctx.sink)
                .observe(encoded.slice(a, b).len() as f64);
            ctx.status.request_started();
            let started = Instant::now();
            let result = ctx.dest.post(compressed.clone()).await;
            ctx.status.request_finished();
            m.ship_request_duration
                .get_or_create(&ctx.sink)
                .observe(started.elapsed().as_secs_f64());
            m.ship_requests
                .get_or_create(&[ctx.sink[0], ("class", result.class())])
                .inc();
            match result.outcome {
                Outcome::Accepted => {
                    let events = (b - a) as u64;
                    m.events_shipped.get_or_create(&ctx.sink).inc_by(events);
                    let now = now_ms();
                    let to_ack = m.ship_receive_to_ack.get_or_create(&ctx.sink);
                    for r in &encoded.records[a..b] {
                        to_ack.observe(now.saturating_sub(r.received_ms) as f64 / 1000.0);
                    }
                    if attempt > 0 {
                        tracing::info!(
                            destination = ctx.dest.name(),
                            attempts = attempt + 1,
                            "{} accepted the batch after retrying",
                            ctx.dest.title()
                        );
                    }
                    ctx.status.success(events);
                    ctx.recovered.notify_waiters();
                    attempt = 0;
                    break;
                }
                Outcome::TooLarge | Outcome::Refused if b - a > 1 => {
                    let mid = a + (b - a) / 2;
                    tracing::warn!(
                        destination = ctx.dest.name(),
                        status = result.status,
                        events = b - a,
                        body = result.body_excerpt.as_deref().unwrap_or(""),
                        "{}; splitting {} events in two",
                        result.message,
                        b - a
                    );
                    todo.push((mid, b));
                    todo.push((a, mid));
                    break;
                }
                Outcome::TooLarge | Outcome::Refused => {
                    let r: &Record = &encoded.records[a];
                    let reason = format!(
                        "HTTP {}: {}",
                        result.status.unwrap_or(0),
                        result
                            .body_excerpt
                            .as_deref()
                            .unwrap_or("(no response body)")
                    );
                    tracing::error!(
                        destination = ctx.dest.name(),
                        seq = r.seq,
                        status = result.status,
                        body = result.body_excerpt.as_deref().unwrap_or(""),
                        "{} refused one event; moved it to the dead-letter area for this destination (see `relay spool dead list`)",
                        ctx.dest.title()
                    );
                    dead.push((r.clone(), reason));
                    break;
                }
                Outcome::Retry { retry_after } => {
                    let delay = Backoff::SHIP.delay_with_hint(attempt, retry_after);
                    if !backoff(ctx, &result, attempt, delay, false).await {
                        return false;
                    }
                    attempt += 1;
                }
                Outcome::TokenRefused => {
                    let delay = Backoff::SHIP
                        .delay_with_hint(attempt, None)
                        .max(Duration::from_secs(1));
                    if !backoff(ctx, &result, attempt, delay, true).await {
                        return false;
                    }
                    attempt += 1;
                }
            }
        }
    }
    if let Ok(e) = Arc::try_unwrap(encoded) {
        ctx.encoders.put_body(e.body);
    }
    if !dead.is_empty() {
        loop {
            let (sp, d) = (ctx.spool.clone(), dead.clone());
            let sink = ctx.dest.name();
            match tokio::task::spawn_blocking(move || sp.dead_letter_events(sink, &d)).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot write to the dead-letter area; retrying in 5 s");
                    tokio::select! {
                        _ = ctx.stop_retrying.cancelled() => return false,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
                Err(_) => return false,
            }
        }
    }
    true
}

/// Records the failure, logs it, and sleeps. Returns false if shutdown interrupted.
async fn backoff<D: Destination>(
    ctx: &Ctx<D>,
    result: &Attempt,
    attempt: u32,
    delay: Duration,
    token_refused: bool,
) -> bool {
    ctx.metrics.ship_retries.get_or_create(&ctx.sink).inc();
    ctx.status.failure(
        ShipError {
            at_ms: now_ms(),
            status: result.status,
            message: result.message.clone(),
            body_excerpt: result.body_excerpt.clone(),
        },
        delay.as_millis() as u64,
        token_refused,
    );
    let body = result.body_excerpt.as_deref().unwrap_or("");
    if token_refused || attempt == 0 {
        tracing::error!(
            destination = ctx.dest.name(),
            status = result.status,
            body,
            retry_in_ms = delay.as_millis() as u64,
            attempt = attempt + 1,
            "{}",
            result.message
        );
    } else {
        tracing::warn!(
            destination = ctx.dest.name(),
            status = result.status,
            body,
            retry_in_ms = delay.as_millis() as u64,
            attempt = attempt + 1,
            "{}",
            result.message
        );
    }
    tokio::select! {
        _ = ctx.stop_retrying.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
        _ = ctx.recovered.notified() => true,
    }
}

/// Waits for the next change of the role (never, without an election).
async fn changed(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}
