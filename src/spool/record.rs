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
}
