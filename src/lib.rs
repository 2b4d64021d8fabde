//! qss-relay: a lossless relay of Zoom QSS telemetry into Falcon LogScale.
//!
//! The data path is source → spool → shipper, after Vector's source / buffer / sink:
//!
//! - [`source`]: the Zoom QSS WebSocket client and the Zoom webhook endpoint. They hand
//!   each received frame or body, as `Bytes`, to the spool.
//! - [`spool`]: a write-ahead log in sled. An event is on disk before it is acknowledged to
//!   anyone, and it stays there until LogScale has acknowledged it.
//! - [`ship`]: drains the spool to LogScale's HEC ingest API in compressed batches, with
//!   at-least-once delivery and retries.
//!
//! Around them: [`config`] (environment and env file), [`admin`] (metrics, health, the
//! spool state for `relay spool inspect`), [`pipeline`] (assembles a running relay and
//! shuts it down in order), [`sim`] (a simulated Zoom and LogScale for `relay demo`, the
//! tests and the benchmarks) and [`cli`] (the `relay` command).
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
mod logging;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod redact;
mod secret;
pub mod ship;
pub mod sim;
pub mod source;
pub mod spool;
#[doc(hidden)]
pub mod testkit;
pub mod time;
