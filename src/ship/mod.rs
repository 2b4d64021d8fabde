//! The shipper: drains the spool to LogScale's HEC ingest API with at-least-once delivery.
//!
//! - [`shipper`]: the loop: read, batch, deliver with bounded concurrency, acknowledge the
//!   contiguous delivered prefix.
//! - [`client`]: one HEC request and what its answer means.
//! - [`hec`], [`transform`], [`json`]: records become HEC events in the old script's shape.
//! - [`settings`]: what a shipper is configured with.
//! - [`batch`], [`status`]: batches and the state `spool inspect` shows; backoff is
//!   [`crate::backoff`], shared with the sources.

pub(crate) mod batch;
pub(crate) mod client;
pub(crate) mod destination;
pub(crate) mod gzip;
pub mod hec;
pub(crate) mod json;
pub mod sentinel;
pub(crate) mod settings;
pub(crate) mod shipper;
pub mod status;
pub(crate) mod transform;

pub use batch::Limits;
pub use client::HecClient;
pub(crate) use destination::LogScale;
pub use hec::{Encoder, HecSettings};
pub(crate) use sentinel::Sentinel;
pub use settings::{Compression, LogscaleSettings, SentinelSettings, ShipSettings, Sources};
pub(crate) use shipper::Shipper;
pub use status::{ShipPhase, ShipState, ShipStatus};
