//! CrowdStrike Falcon LogScale through its HEC ingest API: the first destination.
//!
//! - [`config`]: its settings (`LOGSCALE_*`);
//! - [`client`]: one HEC request and what its answer means;
//! - [`hec`], [`transform`]: records become HEC events in the old script's shape;
//! - [`LogScale`]: the [`Destination`] the shipper loop drives, and
//!   [`LogscaleSettings::start`], which builds it.

pub(crate) mod client;
pub(crate) mod config;
pub mod hec;
pub(crate) mod transform;

pub use client::HecClient;
pub use config::{Compression, LogscaleSettings};
pub use hec::{Encoder, HecSettings};

use super::destination::{Attempt, Destination};
use super::sink::{self, RunningSink, SinkContext};
use crate::spool::Record;
use bytes::Bytes;
use std::future::Future;

impl LogscaleSettings {
    /// Builds the HEC client and starts LogScale's shipper.
    pub fn start(&self, cx: &SinkContext<'_>) -> Result<RunningSink, super::BuildError> {
        let client = HecClient::new(
            cx.http.clone(),
            &self.base_url,
            &self.token,
            self.compression,
            cx.ship.request_timeout,
        )?;
        let dest = LogScale {
            client,
            hec: self.hec(cx.host, cx.spool.id(), cx.redact),
        };
        Ok(sink::spawn(cx, dest, cx.ship))
    }
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
