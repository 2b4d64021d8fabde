//! The destinations and the loop that drains the spool into each, with at-least-once
//! delivery and one delivery position per destination in the spool.
//!
//! Shared by every destination:
//! - [`shipper`]: the loop: read, batch, deliver with bounded concurrency; [`ack`]: the
//!   contiguous delivered prefix it acknowledges.
//! - [`destination`]: the [`Destination`](destination::Destination) trait the loop drives,
//!   and what an answer means ([`Attempt`]).
//! - [`sink`]: starting one ([`SinkContext`], [`RunningSink`]).
//! - [`batch`], [`gzip`], [`json`] (the tape writer), [`settings`] (batching,
//!   concurrency, sources), [`status`] (what `spool inspect` shows); backoff is
//!   [`crate::backoff`], shared with the sources.
//!
//! One folder per destination, each built from its own settings:
//! - [`logscale`]: CrowdStrike Falcon LogScale, HEC;
//! - [`sentinel`]: Microsoft Sentinel, the Logs Ingestion API (its rows are made from
//!   LogScale's HEC line, so both see the same transforms).

pub(crate) mod ack;
pub(crate) mod batch;
pub(crate) mod destination;
pub(crate) mod gzip;
pub(crate) mod json;
pub mod logscale;
pub mod sentinel;
pub(crate) mod settings;
pub(crate) mod shipper;
pub mod sink;
pub mod status;

pub use batch::Limits;
pub use destination::{Attempt, Outcome};
pub use logscale::{hec, Compression, Encoder, HecClient, HecSettings, LogscaleSettings};
pub(crate) use sentinel::Sentinel;
pub use sentinel::SentinelSettings;
pub use settings::{ShipSettings, Sources};
pub use sink::{BuildError, RunningSink, SinkContext};
pub use status::{ShipPhase, ShipState, ShipStatus};
