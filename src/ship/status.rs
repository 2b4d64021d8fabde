//! The shipper's state as an operator sees it: healthy or backing off (until when, and
//! why), the last error with its HTTP status and a body excerpt, the last success.
//!
//! Kept in memory for the admin endpoint, and written to the spool as a note whenever it
//! changes from healthy to failing or back, so that `relay spool inspect` can tell why
//! nothing moves even while the daemon is stopped.

use crate::spool::Spool;
use crate::time::now_ms;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// The note's name in the spool for LogScale (the name it had before there were several
/// destinations); another destination's is `ship_status:NAME`.
pub const NOTE: &str = "ship_status";

/// The name of the destination `sink`'s note.
pub fn note_name(sink: &str) -> String {
    if sink == "logscale" {
        NOTE.to_string()
    } else {
        format!("{NOTE}:{sink}")
    }
}

/// One failed delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipError {
    pub at_ms: u64,
    /// HTTP status, when LogScale answered.
    pub status: Option<u16>,
    pub message: String,
    pub body_excerpt: Option<String>,
}

/// What the shipper is doing, as `inspect` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipPhase {
    /// The last request was delivered.
    Healthy,
    /// The last request failed; the next one waits for the backoff.
    BackingOff,
    /// LogScale refused the token (401/403): nothing moves until it is fixed.
    TokenRefused,
    /// Read from a spool whose daemon is not running.
    Stopped,
    /// No request yet since the daemon started (also what an unknown persisted word reads
    /// as, so an old note never hides its last error).
    #[default]
    #[serde(other)]
    Idle,
}

impl ShipPhase {
    /// The word in `inspect --json` and the spool's note: `healthy`, `backing_off`, ...
    pub fn label(self) -> &'static str {
        match self {
            ShipPhase::Idle => "idle",
            ShipPhase::Healthy => "healthy",
            ShipPhase::BackingOff => "backing_off",
            ShipPhase::TokenRefused => "token_refused",
            ShipPhase::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for ShipPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A snapshot of the shipper's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipState {
    pub state: ShipPhase,
    pub backoff_until_ms: Option<u64>,
    pub consecutive_failures: u64,
    pub last_error: Option<ShipError>,
    pub last_success_ms: Option<u64>,
    /// Events acknowledged by LogScale since the daemon started.
    pub delivered_events: u64,
    pub in_flight_requests: u64,
}

/// Shared, updated by the delivery tasks.
pub struct ShipStatus {
    state: Mutex<ShipState>,
    spool: Spool,
    note: String,
}

impl ShipStatus {
    /// LogScale's status ([`ShipStatus::for_sink`] `logscale`).
    pub fn new(spool: Spool) -> ShipStatus {
        ShipStatus::for_sink(spool, "logscale")
    }

    /// The status of the destination `sink`, starting from its last persisted error.
    pub fn for_sink(spool: Spool, sink: &str) -> ShipStatus {
        let note = note_name(sink);
        // Start from the last persisted error, so it stays visible until a success.
        let mut state = spool
            .note(&note)
            .and_then(|b| serde_json::from_slice::<ShipState>(&b).ok())
            .unwrap_or_default();
        state.state = ShipPhase::Idle;
        state.backoff_until_ms = None;
        state.delivered_events = 0;
        state.in_flight_requests = 0;
        ShipStatus {
            state: Mutex::new(state),
            spool,
            note,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ShipState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> ShipState {
        self.lock().clone()
    }

    pub fn request_started(&self) {
        self.lock().in_flight_requests += 1;
    }

    pub fn request_finished(&self) {
        let mut s = self.lock();
        s.in_flight_requests = s.in_flight_requests.saturating_sub(1);
    }

    pub fn success(&self, events: u64) {
        let persist = {
            let mut s = self.lock();
            let was_failing = s.consecutive_failures > 0;
            s.state = ShipPhase::Healthy;
            s.backoff_until_ms = None;
            s.consecutive_failures = 0;
            s.last_success_ms = Some(now_ms());
            s.delivered_events += events;
            was_failing.then(|| s.clone())
        };
        if let Some(s) = persist {
            self.persist(&s);
        }
    }

    pub fn failure(&self, error: ShipError, backoff_ms: u64, token_refused: bool) {
        let s = {
            let mut s = self.lock();
            s.state = if token_refused {
                ShipPhase::TokenRefused
            } else {
                ShipPhase::BackingOff
            };
            s.backoff_until_ms = Some(now_ms() + backoff_ms);
            s.consecutive_failures += 1;
            s.last_error = Some(error);
            s.clone()
        };
        self.persist(&s);
    }

    fn persist(&self, s: &ShipState) {
        if let Ok(bytes) = serde_json::to_vec(s) {
            self.spool.set_note(&self.note, &bytes);
        }
    }

    /// The persisted state of a spool whose daemon is not running.
    pub fn from_spool(spool: &Spool, sink: &str) -> Option<ShipState> {
        let mut s: ShipState = serde_json::from_slice(&spool.note(&note_name(sink))?).ok()?;
        s.state = ShipPhase::Stopped;
        s.in_flight_requests = 0;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::ShipPhase;

    #[test]
    fn the_json_word_is_the_label_and_unknown_words_read_as_idle() {
        use ShipPhase::*;
        for p in [Healthy, BackingOff, TokenRefused, Stopped, Idle] {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
            assert_eq!(
                serde_json::from_str::<ShipPhase>(&format!("\"{p}\"")).unwrap(),
                p
            );
        }
        assert_eq!(
            serde_json::from_str::<ShipPhase>("\"later\"").unwrap(),
            Idle
        );
    }
}
