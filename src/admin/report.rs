//! The report types the operator commands print, the same whether they come from the
//! running daemon (over the operator socket) or from a spool opened directly: `inspect`,
//! `peek`, `dead show`, and the NDJSON export.

use crate::redact::Redaction;
use crate::ship::hec::Encoder;
use crate::ship::sentinel::record::RowEncoder;
use crate::ship::status::{ShipError, ShipState};
use crate::source::zoom_ws::WsSnapshot;
use crate::spool::{DeadLetter, DeadSummary, Record, SinkStats, SourceKind, Spool, SpoolStats};
use crate::time::rfc3339_ms;
use serde::{Deserialize, Serialize};

/// Where an [`InspectReport`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Asked the running relay.
    Daemon,
    /// Opened the spool of a relay that is not running.
    Disk,
}

/// One destination in [`InspectReport`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationReport {
    #[serde(flatten)]
    pub spool: SinkStats,
    pub shipper: Option<ShipState>,
}

/// What `relay spool inspect --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectReport {
    #[serde(flatten)]
    pub spool: SpoolStats,
    /// `daemon` (asked the running relay) or `disk` (opened the stopped spool).
    pub read_from: ReadFrom,
    pub shipper: Option<ShipState>,
    pub last_ship_error: Option<ShipError>,
    pub last_ship_success_ms: Option<u64>,
    /// The Zoom WebSocket source when the daemon runs one: one per subscription.
    #[serde(default)]
    pub websockets: Vec<WsSnapshot>,
    /// The election, when the daemon is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<crate::ha::HaReport>,
    /// Each destination: its position in the spool and its shipper's state. (`shipper`
    /// above is LogScale's, or the only destination's, as before there were several.)
    #[serde(default)]
    pub destinations: Vec<DestinationReport>,
}

impl InspectReport {
    /// `ships`: each destination's shipper state, by name (LogScale's, or else the first,
    /// is reported as `shipper` too).
    pub fn new(
        mut stats: SpoolStats,
        ships: Vec<(String, Option<ShipState>)>,
        read_from: ReadFrom,
    ) -> InspectReport {
        let shipper = ships
            .iter()
            .find(|(n, _)| n == "logscale")
            .or(ships.first())
            .and_then(|(_, s)| s.clone());
        let destinations = std::mem::take(&mut stats.sink_positions)
            .iter()
            .map(|d| DestinationReport {
                spool: d.clone(),
                shipper: ships
                    .iter()
                    .find(|(n, _)| *n == d.name)
                    .and_then(|(_, s)| s.clone()),
            })
            .collect();
        InspectReport {
            destinations,
            last_ship_error: shipper.as_ref().and_then(|s| s.last_error.clone()),
            last_ship_success_ms: shipper.as_ref().and_then(|s| s.last_success_ms),
            spool: stats,
            read_from,
            shipper,
            websockets: Vec::new(),
            ha: None,
        }
    }
}

/// One pending record, decoded for a human.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeekRecord {
    pub seq: u64,
    pub received_ms: u64,
    pub received_at: String,
    pub source: SourceKind,
    pub malformed: bool,
    /// The event name (`meeting.participant_qos`, ...) if it could be read.
    pub event: Option<String>,
    pub bytes: usize,
    /// The frame or body as JSON, with a WebSocket frame's `content` decoded.
    pub json: Option<serde_json::Value>,
    /// The raw text, when it is not JSON.
    pub text: Option<String>,
}

/// Decodes a record for `spool peek` (not on the hot path: serde_json is fine here), with
/// the frame header members `redact` names replaced.
pub fn peek_record(r: &Record, redact: &Redaction) -> PeekRecord {
    let mut json: Option<serde_json::Value> = serde_json::from_slice(&r.payload).ok();
    let mut event = None;
    if let Some(v) = json.as_mut() {
        redact.redact_json(v);
        if let Some(content) = v
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string)
        {
            if let Ok(decoded) = serde_json::from_str::<serde_json::Value>(&content) {
                v["content"] = decoded;
            }
        }
        let body = if r.kind == SourceKind::WebSocket {
            v.get("content")
        } else {
            Some(&*v)
        };
        event = body
            .and_then(|b| b.get("event"))
            .and_then(|e| e.as_str())
            .map(str::to_string);
    }
    PeekRecord {
        seq: r.seq,
        received_ms: r.received_ms,
        received_at: rfc3339_ms(r.received_ms),
        source: r.kind,
        malformed: r.is_malformed(),
        event,
        bytes: r.payload.len(),
        text: json.is_none().then(|| redacted_text(&r.payload, redact)),
        json,
    }
}

/// Bytes that are not JSON, as text, with what `redact` names replaced wherever it is.
fn redacted_text(bytes: &[u8], redact: &Redaction) -> String {
    String::from_utf8_lossy(&redact.redact_text(bytes)).into_owned()
}

/// A dead letter for `spool dead show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadDetail {
    #[serde(flatten)]
    pub summary: DeadSummary,
    pub json: Option<serde_json::Value>,
    pub text: Option<String>,
}

impl DeadDetail {
    /// The dead letter `d`, with the frame header members `redact` names replaced.
    pub fn new(d: &DeadLetter, redact: &Redaction) -> DeadDetail {
        let mut json: Option<serde_json::Value> = serde_json::from_slice(&d.payload).ok();
        if let Some(v) = json.as_mut() {
            redact.redact_json(v);
        }
        DeadDetail {
            summary: d.summary(),
            text: json.is_none().then(|| redacted_text(&d.payload, redact)),
            json,
        }
    }
}

/// What an export writes per record.
pub enum ExportForm {
    /// The HEC event LogScale would receive.
    Hec(Encoder),
    /// The `ZoomLogs_CL` row Sentinel would receive.
    Row(RowEncoder),
    /// The record as spooled, but for what the redaction replaces.
    Raw(Redaction),
}

impl ExportForm {
    /// Appends one NDJSON line for `r`.
    fn write(&mut self, r: &Record, buf: &mut Vec<u8>) {
        match self {
            ExportForm::Hec(enc) => enc.encode(r, buf),
            ExportForm::Row(enc) => {
                enc.encode(r, buf);
                // Rows end in the `,` that joins them into the request's array.
                buf.pop();
                buf.push(b'\n');
            }
            ExportForm::Raw(redact) => {
                let line = serde_json::json!({
                    "seq": r.seq,
                    "received_ms": r.received_ms,
                    "source": r.kind,
                    "malformed": r.is_malformed(),
                    "payload": redacted_text(&r.payload, redact),
                });
                serde_json::to_writer(&mut *buf, &line).expect("writing to a Vec");
                buf.push(b'\n');
            }
        }
    }
}

/// Writes the pending records from `from` to `to` that `keep` takes as NDJSON, in `form`.
/// Calls `out` per chunk; stops if it says so.
pub fn export(
    spool: &Spool,
    mut form: ExportForm,
    from: u64,
    to: Option<u64>,
    keep: impl Fn(&Record) -> bool,
    mut out: impl FnMut(Vec<u8>, u64) -> bool,
) -> Result<u64, crate::spool::SpoolError> {
    let mut pos = from;
    let mut count = 0u64;
    while let Some(block) = spool.read_block(pos)? {
        let mut buf = Vec::new();
        let mut n = 0;
        for r in &block.records {
            if to.is_some_and(|t| r.seq >= t) {
                if !buf.is_empty() {
                    out(buf, n);
                }
                return Ok(count);
            }
            if !keep(r) {
                continue;
            }
            form.write(r, &mut buf);
            n += 1;
            count += 1;
        }
        if !out(buf, n) {
            return Ok(count);
        }
        pos = block.end;
    }
    Ok(count)
}
