//! [`Destination`]: what the shipper loop needs from a place it delivers to. The loop
//! ([`super::shipper`]) is written once; each destination says how to encode a record,
//! how to frame and compress a run of encoded records into a request body, how to post it
//! and what the answer means ([`Attempt`]).
//!
//! - [`super::logscale::LogScale`]: HEC lines to `/api/v1/ingest/hec`.
//! - [`super::sentinel::Sentinel`]: JSON records to the Logs Ingestion API.
//!
//! Each destination has its own delivery position in the spool (named by
//! [`Destination::name`], which is also the `sink` label of the ship metrics), its own
//! batching, retries and dead letters, and its own [`super::ShipStatus`].

use crate::spool::Record;
use bytes::Bytes;
use std::future::Future;
use std::time::Duration;

/// A place the shipper delivers to.
pub(crate) trait Destination: Clone + Send + Sync + 'static {
    /// Per-task encoding state (scratch buffers), reused across batches.
    type Encoder: Send + 'static;

    /// `logscale` or `sentinel`: the spool's name for its position, the metrics' `sink`.
    fn name(&self) -> &'static str;
    /// How log lines and `inspect` call it: `LogScale`, `Sentinel`.
    fn title(&self) -> &'static str;
    /// Whether this destination takes the record (Sentinel takes the sources
    /// `SENTINEL_SOURCES` names). Records it does not take are passed over and count as
    /// done for it.
    fn accepts(&self, r: &Record) -> bool;
    fn new_encoder(&self) -> Self::Encoder;
    /// Appends the record's encoding to `out`. Any contiguous run of encoded records must
    /// make a valid body after [`Destination::compress`].
    fn encode(encoder: &mut Self::Encoder, r: &Record, out: &mut Vec<u8>);
    /// The request body of a contiguous run of encoded records (framed, compressed). CPU
    /// work: called off the async threads.
    fn compress(&self, run: &[u8]) -> Bytes;
    /// Posts one body once and says what the answer means.
    fn post(&self, body: Bytes) -> impl Future<Output = Attempt> + Send;
}

/// How much of an error body is kept for logs and `spool inspect`.
pub(crate) const EXCERPT_CHARS: usize = 300;

/// What a destination's answer means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Retry { retry_after: Option<Duration> },
    TokenRefused,
    TooLarge,
    Refused,
}

/// One attempt's result: the outcome, and a description for logs when it failed.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub message: String,
    pub body_excerpt: Option<String>,
}

impl Attempt {
    /// The metric label of the outcome's status class.
    pub fn class(&self) -> &'static str {
        match self.status {
            Some(200..=299) => "2xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            Some(_) => "other",
            None => "error",
        }
    }
}
