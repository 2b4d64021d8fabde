//! The shipper: drains the spool to LogScale's HEC ingest API.
//!
//! - [`hec`] and [`transform`]: records become HEC events in the old script's shape.
//! - [`json`]: the tape writer both use.

pub mod hec;
pub mod json;
pub mod transform;
