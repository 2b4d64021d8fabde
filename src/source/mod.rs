//! Sources: where events come from. Each hands what it receives, as `Bytes`, to the spool
//! through an [`crate::spool::Appender`], and never parses more than it must.
//!
//! - [`zoom_ws`]: the Zoom QSS WebSocket (the main source), with [`zoom_token`] for OAuth,
//!   [`zoom_dial`] to open a connection, and [`frame`] to tell events from control frames.
//! - [`webhook`]: the Zoom webhook endpoint, with [`signature`] for HMAC checks.
//! - [`settings`]: what each source is configured with; [`start`]: starting one.

pub(crate) mod dedup;
pub(crate) mod end_reason;
pub(crate) mod frame;
pub(crate) mod settings;
pub mod signature;
pub mod start;
pub(crate) mod webhook;
pub(crate) mod zoom_dial;
pub(crate) mod zoom_token;
pub(crate) mod zoom_ws;
