//! What every destination's shipper is configured with: batching, concurrency, the request
//! timeout, and which sources a destination takes. Each destination's own settings live in
//! its folder (`logscale/config.rs`, `sentinel/config.rs`); [`crate::config`] builds them
//! all from the environment.

use super::batch::Limits;
use std::time::Duration;

/// Batching, concurrency and the request timeout of a shipper.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShipSettings {
    pub limits: Limits,
    /// A batch that is not full is sent this long after its first event.
    pub linger: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Timeout of one request; a timeout is retried.
    pub request_timeout: Duration,
}

/// Which sources a destination takes (`SENTINEL_SOURCES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    pub webhook: bool,
    pub websocket: bool,
}

impl Sources {
    /// Both sources (LogScale takes everything).
    pub const ALL: Sources = Sources {
        webhook: true,
        websocket: true,
    };

    /// Whether a record from `kind` goes to the destination.
    pub fn takes(self, kind: crate::spool::SourceKind) -> bool {
        match kind {
            crate::spool::SourceKind::Webhook => self.webhook,
            crate::spool::SourceKind::WebSocket => self.websocket,
        }
    }

    /// `webhook`, `websocket`, or both separated by a comma.
    pub fn parse(s: &str) -> Option<Sources> {
        let mut out = Sources {
            webhook: false,
            websocket: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "webhook" => out.webhook = true,
                "websocket" => out.websocket = true,
                _ => return None,
            }
        }
        (out.webhook || out.websocket).then_some(out)
    }
}
