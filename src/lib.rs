//! qss-relay: a lossless relay of Zoom QSS telemetry and Zoom webhooks into CrowdStrike
//! Falcon LogScale and Microsoft Sentinel.
//!
//! The data path is source → spool → shipper, after Vector's source / buffer / sink:
//!
//! - [`source`]: the Zoom QSS WebSocket client and the Zoom webhook endpoint. They hand
//!   each received frame or body, as `Bytes`, to the spool.
//! - [`spool`]: a write-ahead log in sled. An event is on disk before it is acknowledged to
//!   anyone, and it stays there until every destination has acknowledged it.
//! - [`ship`]: drains the spool to each destination (LogScale's HEC API, Sentinel's Logs
//!   Ingestion API) in compressed batches, at-least-once, at one position per destination.
//!
//! Around them: [`config`] (environment and env file), [`admin`] (metrics, health, the
//! spool state for `relay spool inspect`), [`pipeline`] (assembles a running relay and
//! shuts it down in order), [`redact`] (credentials that never leave the host), [`sim`] (a
//! simulated Zoom, LogScale and Sentinel for `relay demo`, the tests and the benchmarks)
//! and [`cli`] (the `relay` command).
//!
//! ARCHITECTURE.md is the map; start there.

#![warn(unreachable_pub)]
// The docs are built with `--document-private-items` (.ci/run): module docs may link to
// the private modules they describe.
#![allow(rustdoc::private_intra_doc_links)]

pub mod admin;
mod backoff;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod ha;
mod logging;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod redact;
pub mod role;
mod secret;
pub mod ship;
pub mod sim;
pub mod source;
pub mod spool;
#[doc(hidden)]
pub mod testkit;
pub mod time;
