//! The group-commit writer: one task that turns a stream of records into durable blocks.
//!
//! Producers hold an [`Appender`] (a bounded channel: when the writer falls behind they
//! wait, and the wait is measured). The task takes the first record, gathers more for at
//! most `RELAY_SPOOL_COMMIT_MS` or up to a size bound, and commits the group as one block
//! on a blocking thread. While one group is being compressed and flushed, the next one is
//! being gathered: at most one commit runs at a time, so sequence order is the order of
//! arrival.
//!
//! Each record may carry a reply channel: those producers (the webhook source) hear back
//! only once their block is flushed. The others (the WebSocket reader) hand off and go on.

use super::{NewRecord, Spool, SpoolError, MAX_GROUP_BYTES, MAX_GROUP_RECORDS};
use crate::metrics::label;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
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
}

/// The producers' handle to the writer. Cheap to clone.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Append>,
    spool: Spool,
}

impl Appender {
    /// Hands a record to the writer and returns once it is queued (waiting for room if the
    /// queue is full). Durability is not awaited.
    pub async fn send(&self, record: NewRecord) -> Result<(), AppendError> {
        self.enqueue(Append {
            record,
            reply: None,
        })
        .await
    }

    /// Hands a record to the writer and returns its sequence number once the block
    /// holding it has been flushed to disk.
    pub async fn send_durable(&self, record: NewRecord) -> Result<u64, AppendError> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Append {
            record,
            reply: Some(tx),
        })
        .await?;
        rx.await.unwrap_or(Err(AppendError::Closed))
    }

    async fn enqueue(&self, append: Append) -> Result<(), AppendError> {
        let source = append.record.kind.name();
        match self.tx.try_send(append) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AppendError::Closed),
            Err(mpsc::error::TrySendError::Full(append)) => {
                let started = Instant::now();
                let result = self.tx.send(append).await.map_err(|_| AppendError::Closed);
                self.spool
                    .inner
                    .metrics
                    .spool_append_wait
                    .get_or_create(&label("source", source))
                    .inc_by(started.elapsed().as_secs_f64());
                result
            }
        }
    }
}

pub(super) fn start(spool: Spool, capacity: usize) -> (Appender, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let appender = Appender {
        tx,
        spool: spool.clone(),
    };
    let handle = tokio::spawn(run(spool, rx));
    (appender, handle)
}

async fn run(spool: Spool, mut rx: mpsc::Receiver<Append>) {
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
        in_flight = Some(tokio::task::spawn_blocking(move || commit_group(&s, group)));
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
