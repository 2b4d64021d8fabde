//! The group-commit writer: one task that turns a stream of records into durable blocks.
//!
//! Producers hold an [`Appender`]. The queue is bounded in bytes, not records: each record
//! takes its payload's length from a budget until its block is committed, so memory held
//! for the writer is bounded whatever the frame sizes; when the writer falls behind,
//! producers wait for room, and the wait is measured. Records normally stay the `Bytes`
//! their source read them into (zero-copy); once the queue is more than half full, a record
//! is copied into an allocation of its own, so that a record waiting in memory holds its
//! own bytes and not the rest of the read buffer it was sliced from. The task takes the first record, gathers more for at
//! most `RELAY_SPOOL_COMMIT_MS` or up to a size bound, and commits the group as one block
//! on a blocking thread. While one group is being compressed and flushed, the next one is
//! being gathered: at most one commit runs at a time, so sequence order is the order of
//! arrival.
//!
//! Each record may carry a reply channel: those producers (the webhook source) hear back
//! only once their block is flushed. The others (the WebSocket reader) hand off and go on.

use super::{NewRecord, Spool, SpoolError, MAX_GROUP_BYTES, MAX_GROUP_RECORDS};
use crate::metrics::label;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

/// Why an append did not become durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("the spool is full (its size cap, or the free-space floor of its disk)")]
    Full,
    #[error("the spool could not store the record: {0}")]
    Storage(String),
    #[error("the spool writer has stopped (shutting down)")]
    Closed,
}

type Reply = oneshot::Sender<Result<u64, AppendError>>;

struct Append {
    record: NewRecord,
    reply: Option<Reply>,
    /// Bytes of the queue's budget this record holds until its block is committed.
    held: u32,
}

/// The producers' handle to the writer. Cheap to clone.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::UnboundedSender<Append>,
    /// The queue's room, in bytes.
    budget: Arc<Semaphore>,
    capacity: u32,
    spool: Spool,
}

impl Appender {
    /// Hands a record to the writer and returns once it is queued (waiting for room if the
    /// queue is full). Durability is not awaited.
    pub async fn send(&self, record: NewRecord) -> Result<(), AppendError> {
        self.enqueue(record, None).await
    }

    /// Hands a record to the writer and returns its sequence number once the block
    /// holding it has been flushed to disk.
    pub async fn send_durable(&self, record: NewRecord) -> Result<u64, AppendError> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(record, Some(tx)).await?;
        rx.await.unwrap_or(Err(AppendError::Closed))
    }

    /// Bytes of records queued or being committed (what the budget holds).
    pub fn queued_bytes(&self) -> usize {
        self.capacity as usize - self.budget.available_permits()
    }

    /// Takes `n` bytes of the budget, as queued records would, until the permit drops.
    #[cfg(test)]
    pub(super) fn hold_for_test(&self, n: u32) -> tokio::sync::SemaphorePermit<'_> {
        self.budget.try_acquire_many(n).expect("room in the budget")
    }

    /// `payload` as it will wait in the queue: the same `Bytes` while the queue is at most
    /// half full (zero-copy), an allocation of its own beyond (so that it does not keep
    /// the rest of the read buffer it was sliced from alive while it waits).
    pub(super) fn to_queue(&self, payload: Bytes) -> Bytes {
        if self.queued_bytes() > self.capacity as usize / 2 {
            Bytes::copy_from_slice(&payload)
        } else {
            payload
        }
    }

    async fn enqueue(
        &self,
        mut record: NewRecord,
        reply: Option<Reply>,
    ) -> Result<(), AppendError> {
        let source = record.kind.name();
        // A record larger than the whole budget takes all of it.
        let held = u32::try_from(record.payload.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity);
        let permit = match self.budget.try_acquire_many(held) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(AppendError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let started = Instant::now();
                let permit = self.budget.acquire_many(held).await;
                self.spool
                    .inner
                    .metrics
                    .spool_append_wait
                    .get_or_create(&label("source", source))
                    .inc_by(started.elapsed().as_secs_f64());
                permit.map_err(|_| AppendError::Closed)?
            }
        };
        // The writer gives the bytes back once the record's block is committed.
        permit.forget();
        record.payload = self.to_queue(record.payload);
        self.tx
            .send(Append {
                record,
                reply,
                held,
            })
            .map_err(|_| {
                self.budget.add_permits(held as usize);
                AppendError::Closed
            })
    }
}

/// Starts the writer with a queue of `queue_bytes` of records.
pub(super) fn start(spool: Spool, queue_bytes: usize) -> (Appender, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let capacity = u32::try_from(queue_bytes.max(1)).unwrap_or(u32::MAX);
    let budget = Arc::new(Semaphore::new(capacity as usize));
    let appender = Appender {
        tx,
        budget: budget.clone(),
        capacity,
        spool: spool.clone(),
    };
    let handle = tokio::spawn(run(spool, rx, budget));
    (appender, handle)
}

async fn run(spool: Spool, mut rx: mpsc::UnboundedReceiver<Append>, budget: Arc<Semaphore>) {
    let window = spool.settings().commit_interval;
    let mut in_flight: Option<JoinHandle<()>> = None;
    loop {
        let Some(first) = rx.recv().await else { break };
        let deadline = tokio::time::Instant::now() + window;
        let mut bytes = first.record.payload.len();
        let mut group = vec![first];
        let mut closed = false;
        while group.len() < MAX_GROUP_RECORDS && bytes < MAX_GROUP_BYTES {
            let next = match rx.try_recv() {
                Ok(a) => Some(a),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(a) => a,
                        Err(_elapsed) => break,
                    }
                }
            };
            match next {
                Some(a) => {
                    bytes += a.record.payload.len();
                    group.push(a);
                }
                None => {
                    closed = true;
                    break;
                }
            }
        }
        // One commit at a time keeps sequence order = arrival order.
        if let Some(h) = in_flight.take() {
            let _ = h.await;
        }
        let s = spool.clone();
        let budget = budget.clone();
        in_flight = Some(tokio::task::spawn_blocking(move || {
            let held: usize = group.iter().map(|a| a.held as usize).sum();
            commit_group(&s, group);
            budget.add_permits(held);
        }));
        if closed {
            break;
        }
    }
    if let Some(h) = in_flight.take() {
        let _ = h.await;
    }
    if let Err(e) = spool.flush() {
        tracing::error!(error = %e, "final spool flush failed");
    }
}

fn commit_group(spool: &Spool, group: Vec<Append>) {
    let (records, replies): (Vec<NewRecord>, Vec<Option<Reply>>) =
        group.into_iter().map(|a| (a.record, a.reply)).unzip();
    match spool.commit(&records) {
        Ok(range) => {
            for (seq, reply) in range.zip(replies) {
                if let Some(r) = reply {
                    let _ = r.send(Ok(seq));
                }
            }
        }
        Err(e) => {
            let err = match &e {
                SpoolError::Full { .. } | SpoolError::DiskFull { .. } => AppendError::Full,
                other => AppendError::Storage(other.to_string()),
            };
            let unacknowledged = replies.iter().filter(|r| r.is_none()).count() as u64;
            // A full spool or disk was counted and logged by the spool already.
            if matches!(err, AppendError::Storage(_)) {
                spool
                    .inner
                    .metrics
                    .events_dropped
                    .get_or_create(&label("reason", "spool_error"))
                    .inc_by(unacknowledged);
                tracing::error!(
                    error = %e,
                    events = records.len(),
                    lost = unacknowledged,
                    "spool commit failed: events without a waiting producer are lost (check disk space and permissions of RELAY_SPOOL_DIR)"
                );
            }
            for r in replies.into_iter().flatten() {
                let _ = r.send(Err(err.clone()));
            }
        }
    }
}
