//! What the spool stores: a record is the raw bytes of one received event, exactly as
//! received, with its receive time and where it came from.

use crate::time::now_ms;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Where a record came from. Stored as one byte; unknown values decode as an error
/// (a corrupt block), never as a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A whole Zoom QSS WebSocket frame (`{"module":"message","content":"..."}`).
    WebSocket,
    /// A webhook request body, as Zoom signed it.
    Webhook,
}

impl SourceKind {
    pub fn as_u8(self) -> u8 {
        match self {
            SourceKind::WebSocket => 1,
            SourceKind::Webhook => 2,
        }
    }

    pub fn from_u8(b: u8) -> Option<SourceKind> {
        match b {
            1 => Some(SourceKind::WebSocket),
            2 => Some(SourceKind::Webhook),
            _ => None,
        }
    }

    /// The metric label and the HEC `source` suffix.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::WebSocket => "websocket",
            SourceKind::Webhook => "webhook",
        }
    }
}

/// Record flags (a bit set).
pub mod flags {
    /// The source could not recognise the frame (not JSON, unknown `module`): it is kept
    /// and shipped as raw text with a field saying why.
    pub const MALFORMED: u8 = 1;
    /// Target bits: a record with none goes to every destination; one with some goes only
    /// to those (a dead letter retried for one destination). See [`super::sink_bit`].
    pub const TARGETS: u8 = 0b0000_0110;
}

/// The destinations a spool knows by name, with their target bit in [`flags`]. The names
/// are the `sink` label of the ship metrics and the keys of the delivery positions.
pub const SINKS: [(&str, u8); 2] = [("logscale", 0b0000_0010), ("sentinel", 0b0000_0100)];

/// The spool's name for a destination, as `&'static str` (`None`: not one it knows).
pub fn sink_name(name: &str) -> Option<&'static str> {
    SINKS.iter().find(|(n, _)| *n == name).map(|(n, _)| *n)
}

/// The target bit of the destination `name` (0 for a name the spool does not know).
pub fn sink_bit(name: &str) -> u8 {
    SINKS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, b)| *b)
}

/// The destinations a record's target bits name (`None`: every destination).
pub fn targets_of(flags: u8) -> Option<Vec<&'static str>> {
    let t = flags & flags::TARGETS;
    (t != 0).then(|| {
        SINKS
            .iter()
            .filter(|(_, b)| t & b != 0)
            .map(|(n, _)| *n)
            .collect()
    })
}

/// A record on its way into the spool (no sequence number yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub received_ms: u64,
    pub kind: SourceKind,
    pub flags: u8,
    pub payload: Bytes,
}

impl NewRecord {
    pub fn new(kind: SourceKind, payload: Bytes) -> NewRecord {
        NewRecord {
            received_ms: now_ms(),
            kind,
            flags: 0,
            payload,
        }
    }

    pub fn with_flags(mut self, flags: u8) -> NewRecord {
        self.flags = flags;
        self
    }
}

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub received_ms: u64,
    pub kind: SourceKind,
    pub flags: u8,
    /// A slice of the decompressed block: no copy per record.
    pub payload: Bytes,
}

impl Record {
    pub fn is_malformed(&self) -> bool {
        self.flags & flags::MALFORMED != 0
    }

    /// Whether the destination `sink` should get this record (target bits, see [`flags`]).
    pub fn is_for(&self, sink: &str) -> bool {
        let t = self.flags & flags::TARGETS;
        t == 0 || t & sink_bit(sink) != 0
    }
}
