//! A batch: HEC lines for a contiguous range of spool sequence numbers, written straight
//! into the request body, with each event's span kept so the batch can be split (413) or
//! bisected (400) without re-encoding.

use crate::spool::Record;

/// Where one event sits in the body.
#[derive(Debug, Clone)]
pub struct EventSpan {
    pub start: usize,
    pub end: usize,
    /// The record as spooled, for the dead-letter area if LogScale refuses it.
    pub record: Record,
}

/// Events for the spool range `[start, end)`. The range may contain sequence numbers with
/// no event (acknowledged earlier, dead-lettered blocks); they are acknowledged with it.
#[derive(Debug)]
pub struct Batch {
    pub start: u64,
    pub end: u64,
    pub body: Vec<u8>,
    pub events: Vec<EventSpan>,
}

/// Size limits of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl Batch {
    pub fn new(start: u64, limits: Limits) -> Batch {
        Batch {
            start,
            end: start,
            body: Vec::with_capacity(limits.max_bytes.min(1 << 20)),
            events: Vec::with_capacity(limits.max_events.min(8192)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether one more event of about `next_len` bytes would break a limit.
    pub fn is_full(&self, limits: Limits, next_len: usize) -> bool {
        !self.events.is_empty()
            && (self.events.len() >= limits.max_events
                || self.body.len() + next_len > limits.max_bytes)
    }

    /// The receive time of the first event (latency metric).
    pub fn first_received_ms(&self) -> Option<u64> {
        self.events.first().map(|e| e.record.received_ms)
    }

    /// The body bytes of events `[a, b)`: contiguous, since events are laid out in order.
    pub fn slice(&self, a: usize, b: usize) -> &[u8] {
        &self.body[self.events[a].start..self.events[b - 1].end]
    }
}
