//! [`SpoolView`]: the operator's questions about a spool, answered in one of two ways.
//!
//! - [`AdminState`] answers from the spool itself: the running daemon does (behind the
//!   operator socket), and so does `relay spool ...` when it opened a stopped spool.
//! - [`OperatorClient`](super::OperatorClient) asks the running daemon over its socket.
//!
//! The `relay spool` commands are written once, against the trait. Every answer is one of
//! the [`super::report`] types, and every failure an [`OperatorError`] that says what to do.

use super::report::{self, DeadDetail, ExportForm, InspectReport, PeekRecord};
use super::AdminState;
use crate::redact::Redaction;
use crate::ship::hec::{Encoder, HecSettings};
use crate::ship::sentinel::record::RowEncoder;
use crate::ship::Sources;
use crate::spool::{DeadId, DeadSummary, Record, SpoolError};

/// Why an operation gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OperatorError {
    /// The running relay cannot be reached (socket missing, refused, permission denied,
    /// timed out); the message says which and what to try.
    #[error("{0}")]
    Unreachable(String),
    /// The thing asked for does not exist (a dead-letter id).
    #[error("{0}")]
    NotFound(String),
    /// The running relay answered with an error, or with something unreadable.
    #[error("the relay answered: {0}")]
    Server(String),
    /// The spool itself failed (reading a block, the disk).
    #[error("{0}")]
    Spool(String),
    /// The request was malformed (an id that does not parse).
    #[error("{0}")]
    BadRequest(String),
}

impl From<SpoolError> for OperatorError {
    fn from(e: SpoolError) -> Self {
        OperatorError::Spool(e.to_string())
    }
}

/// What `dead retry` and `dead purge` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadAction {
    /// Put the events back into the spool to be shipped again.
    Retry,
    /// Delete them for good.
    Purge,
}

impl DeadAction {
    pub fn label(self) -> &'static str {
        match self {
            DeadAction::Retry => "retry",
            DeadAction::Purge => "purge",
        }
    }
}

/// Which pending records an export covers, and in what form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportRange {
    pub from: u64,
    /// Stop before this sequence number.
    pub to: Option<u64>,
    /// The records as spooled instead of what a destination receives.
    pub raw: bool,
    /// Only what this destination has still to receive, in its form (Sentinel: rows).
    /// `None`: every pending record, as HEC events.
    pub sink: Option<&'static str>,
    /// Credential header fields as received (`--unredacted`) instead of redacted as the
    /// destinations receive them.
    pub unredacted: bool,
}

/// What `--sink NAME` selects: the records a destination has not yet been sent (at or
/// past its delivered position, meant for it, from a source it takes).
#[derive(Debug, Clone, Copy)]
struct SinkFilter {
    name: &'static str,
    sources: Sources,
    floor: u64,
}

impl SinkFilter {
    fn keeps(&self, r: &Record) -> bool {
        r.seq >= self.floor && r.is_for(self.name) && self.sources.takes(r.kind)
    }
}

/// Receives an export: a chunk of NDJSON and the number of lines in it. Returning
/// `false` stops the export (the reader went away).
pub(crate) type ExportSink<'a> = dyn FnMut(&[u8], u64) -> bool + Send + 'a;

/// The operator's questions about one spool. Each `relay spool` command is written once
/// against this trait.
#[allow(async_fn_in_trait)] // used in-crate, awaited in place; no Send bound needed
pub trait SpoolView {
    /// What is waiting, how old it is, and why it is not moving.
    async fn inspect(&self) -> Result<InspectReport, OperatorError>;
    /// Up to `n` pending records from sequence `from` (of the destination `sink` only);
    /// credential header fields redacted unless `unredacted`.
    async fn peek(
        &self,
        from: u64,
        n: usize,
        sink: Option<&'static str>,
        unredacted: bool,
    ) -> Result<Vec<PeekRecord>, OperatorError>;
    /// Streams pending records into `sink`; returns how many were written.
    async fn export(
        &self,
        range: ExportRange,
        sink: &mut ExportSink<'_>,
    ) -> Result<u64, OperatorError>;
    /// The dead letters (those that concern the destination `sink` only).
    async fn dead_list(
        &self,
        sink: Option<&'static str>,
    ) -> Result<Vec<DeadSummary>, OperatorError>;
    /// One dead letter, credential header fields redacted unless `unredacted`;
    /// [`OperatorError::NotFound`] when there is none by that id.
    async fn dead_show(&self, id: DeadId, unredacted: bool) -> Result<DeadDetail, OperatorError>;
    /// Retries or purges the dead letters `ids` (all of them when `None`), for the
    /// destination `sink` only when given; returns the ids acted on.
    async fn dead_act(
        &self,
        action: DeadAction,
        ids: Option<Vec<DeadId>>,
        sink: Option<&'static str>,
    ) -> Result<Vec<DeadId>, OperatorError>;
}

/// Runs a spool operation off the async threads (sled reads block).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OperatorError> + Send + 'static,
) -> Result<T, OperatorError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(OperatorError::Spool(format!("the operation failed: {e}"))))
}

impl AdminState {
    /// The filter for `--sink NAME`; an error naming the configured destinations when
    /// `NAME` is not one of them.
    fn sink_filter(&self, sink: Option<&'static str>) -> Result<Option<SinkFilter>, OperatorError> {
        let Some(name) = sink else {
            return Ok(None);
        };
        match self.destinations.iter().find(|(n, _)| *n == name) {
            Some(&(name, sources)) => Ok(Some(SinkFilter {
                name,
                sources,
                floor: self.spool.sink_floor(name),
            })),
            None => {
                let names: Vec<&str> = self.destinations.iter().map(|(n, _)| *n).collect();
                Err(OperatorError::BadRequest(format!(
                    "no {name} destination is configured (configured: {}); give `relay spool` the environment the relay runs with (--env-file)",
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                )))
            }
        }
    }

    /// What leaves through the operator's commands: the shippers' redaction, or none.
    fn redaction(&self, unredacted: bool) -> Redaction {
        if unredacted {
            Redaction::off()
        } else {
            self.hec.redact.clone()
        }
    }

    /// An error when `sink` names a destination that is not configured.
    pub(crate) fn check_sink(&self, sink: Option<&'static str>) -> Result<(), OperatorError> {
        self.sink_filter(sink).map(|_| ())
    }

    /// [`SpoolView::export`], synchronously: it reads blocks from disk as it goes, so the
    /// daemon's socket server runs it on a blocking thread.
    pub fn export_blocking(
        &self,
        range: ExportRange,
        sink: &mut ExportSink<'_>,
    ) -> Result<u64, OperatorError> {
        let filter = self.sink_filter(range.sink)?;
        let redact = self.redaction(range.unredacted);
        let form = match (range.raw, range.sink) {
            (true, _) => ExportForm::Raw(redact),
            (false, Some("sentinel")) => ExportForm::Row(RowEncoder::new(self.spool.id(), redact)),
            (false, _) => ExportForm::Hec(Encoder::new(HecSettings {
                redact,
                ..self.hec.clone()
            })),
        };
        let from = range.from.max(filter.map_or(0, |f| f.floor));
        let n = report::export(
            &self.spool,
            form,
            from,
            range.to,
            |r| filter.is_none_or(|f| f.keeps(r)),
            |chunk, n| sink(&chunk, n),
        )?;
        Ok(n)
    }
}

impl SpoolView for AdminState {
    async fn inspect(&self) -> Result<InspectReport, OperatorError> {
        let st = self.clone();
        blocking(move || Ok(st.report())).await
    }

    async fn peek(
        &self,
        from: u64,
        n: usize,
        sink: Option<&'static str>,
        unredacted: bool,
    ) -> Result<Vec<PeekRecord>, OperatorError> {
        let filter = self.sink_filter(sink)?;
        let spool = self.spool.clone();
        let redact = self.redaction(unredacted);
        blocking(move || {
            let from = from.max(filter.map_or(0, |f| f.floor));
            let records =
                spool.pending_where(from, n, None, |r| filter.is_none_or(|f| f.keeps(r)))?;
            Ok(records
                .iter()
                .map(|r| report::peek_record(r, &redact))
                .collect())
        })
        .await
    }

    async fn export(
        &self,
        range: ExportRange,
        sink: &mut ExportSink<'_>,
    ) -> Result<u64, OperatorError> {
        // On the calling thread: the sink borrows the caller's state.
        self.export_blocking(range, sink)
    }

    async fn dead_list(
        &self,
        sink: Option<&'static str>,
    ) -> Result<Vec<DeadSummary>, OperatorError> {
        self.sink_filter(sink)?;
        let spool = self.spool.clone();
        blocking(move || {
            let mut list = spool.dead_list()?;
            if let Some(s) = sink {
                list.retain(|d| d.destinations.is_empty() || d.destinations.iter().any(|n| n == s));
            }
            Ok(list)
        })
        .await
    }

    async fn dead_show(&self, id: DeadId, unredacted: bool) -> Result<DeadDetail, OperatorError> {
        let spool = self.spool.clone();
        let redact = self.redaction(unredacted);
        blocking(move || match spool.dead_get(id)? {
            Some(d) => Ok(DeadDetail::new(&d, &redact)),
            None => Err(OperatorError::NotFound(format!(
                "no dead letter {id} (see `relay spool dead list`)"
            ))),
        })
        .await
    }

    async fn dead_act(
        &self,
        action: DeadAction,
        ids: Option<Vec<DeadId>>,
        sink: Option<&'static str>,
    ) -> Result<Vec<DeadId>, OperatorError> {
        self.sink_filter(sink)?;
        let spool = self.spool.clone();
        blocking(move || {
            Ok(match action {
                DeadAction::Retry => spool.dead_retry(ids.as_deref(), sink)?,
                DeadAction::Purge => spool.dead_purge(ids.as_deref(), sink)?,
            })
        })
        .await
    }
}
