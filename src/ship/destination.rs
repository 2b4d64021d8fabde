//! [`Destination`]: what the shipper loop needs from a place it delivers to. The loop
//! ([`super::shipper`]) is written once; each destination says how to encode a record,
//! how to frame and compress a run of encoded records into a request body, how to post it
//! and what the answer means ([`Attempt`]).
//!
//! - [`LogScale`]: HEC lines ([`super::hec`]) to `/api/v1/ingest/hec` ([`super::client`]).
//! - [`super::sentinel::Sentinel`]: JSON records to the Logs Ingestion API.
//!
//! Each destination has its own delivery position in the spool (named by
//! [`Destination::name`], which is also the `sink` label of the ship metrics), its own
//! batching, retries and dead letters, and its own [`super::ShipStatus`].

use super::client::{Attempt, HecClient};
use super::hec::{Encoder, HecSettings};
use crate::spool::Record;
use bytes::Bytes;
use std::future::Future;

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

/// LogScale's HEC endpoint.
#[derive(Clone)]
pub(crate) struct LogScale {
    pub client: HecClient,
    pub hec: HecSettings,
}

impl Destination for LogScale {
    type Encoder = Encoder;

    fn name(&self) -> &'static str {
        "logscale"
    }
    fn title(&self) -> &'static str {
        "LogScale"
    }
    fn accepts(&self, _: &Record) -> bool {
        true
    }
    fn new_encoder(&self) -> Encoder {
        Encoder::new(self.hec.clone())
    }
    fn encode(encoder: &mut Encoder, r: &Record, out: &mut Vec<u8>) {
        encoder.encode(r, out)
    }
    fn compress(&self, run: &[u8]) -> Bytes {
        self.client.compress(run)
    }
    fn post(&self, body: Bytes) -> impl Future<Output = Attempt> + Send {
        let client = self.client.clone();
        async move { client.post(body).await }
    }
}
