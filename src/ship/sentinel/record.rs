//! A spooled record as the `ZoomLogs_CL` row Sentinel receives: one JSON object per event,
//! with the columns the DCR in `deploy/sentinel/` declares.
//!
//! | column          | type     | what                                                        |
//! |-----------------|----------|-------------------------------------------------------------|
//! | `TimeGenerated` | datetime | the event's `event_ts` (ISO 8601 UTC, ms), else receive time  |
//! | `Event`         | string   | the event name (`meeting.created`, `meeting.participant_qos`) |
//! | `AccountId`     | string   | `payload.account_id`, when present                            |
//! | `Operator`      | string   | `payload.operator`, when present                              |
//! | `OperatorId`    | string   | `payload.operator_id`, when present                           |
//! | `Source`        | string   | `zoom_webhook` or `zoom_qss` (the WebSocket)                  |
//! | `RelayId`       | string   | `<spool id>:<sequence>`, as LogScale's `relay_id`: duplicates of an at-least-once delivery share it |
//! | `Payload`       | dynamic  | the event's `payload`; QSS events transformed as for LogScale |
//! | `RawEvent`      | string   | only when the record was not valid JSON: its text             |
//! | `RelayError`    | string   | only then (or for a QSS `content` that is not JSON): why      |
//!
//! The record is derived from the HEC event the LogScale encoder writes, so both
//! destinations see the same transforms and the same time. That costs a second parse
//! (serde_json) per event; Sentinel takes webhooks by default, where volumes are small.

use crate::ship::hec::{Encoder as HecEncoder, HecSettings};
use crate::spool::{Record, SourceKind};
use serde_json::{Map, Value};
use std::time::{Duration, UNIX_EPOCH};

/// The columns of a row, in the order the DCR declares them (the ARM template's stream
/// declaration is checked against this list by a test).
pub const COLUMNS: &[(&str, &str)] = &[
    ("TimeGenerated", "datetime"),
    ("Event", "string"),
    ("AccountId", "string"),
    ("Operator", "string"),
    ("OperatorId", "string"),
    ("Source", "string"),
    ("RelayId", "string"),
    ("Payload", "dynamic"),
    ("RawEvent", "string"),
    ("RelayError", "string"),
];

/// Encodes records into Sentinel rows, reusing its buffers.
pub struct RowEncoder {
    hec: HecEncoder,
    line: Vec<u8>,
}

impl RowEncoder {
    /// `spool_id` names the spool in `RelayId`.
    pub fn new(spool_id: &str) -> RowEncoder {
        RowEncoder {
            hec: HecEncoder::new(HecSettings {
                host: String::new(),
                index: None,
                spool_id: spool_id.to_string(),
                webhook_sourcetype: "zoom_webhook".into(),
            }),
            line: Vec::new(),
        }
    }

    /// Appends the row of `r` to `out`, followed by a `,` (a run of rows between `[` and
    /// `]`, without the last comma, is the request's JSON array).
    pub fn encode(&mut self, r: &Record, out: &mut Vec<u8>) {
        self.line.clear();
        self.hec.encode(r, &mut self.line);
        let row = match serde_json::from_slice::<Value>(&self.line) {
            Ok(hec) => row_of(r, &hec),
            // The HEC encoder always writes valid JSON; should it not, the row says so
            // rather than losing the event.
            Err(e) => raw_row(r, &format!("could not be encoded: {e}"), None),
        };
        serde_json::to_writer(&mut *out, &row).expect("writing to a Vec");
        out.push(b',');
    }
}

fn iso_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn source_of(r: &Record) -> &'static str {
    match r.kind {
        SourceKind::WebSocket => "zoom_qss",
        SourceKind::Webhook => "zoom_webhook",
    }
}

fn relay_id(hec: Option<&Value>) -> Value {
    hec.and_then(|h| h.pointer("/fields/relay_id"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn raw_row(r: &Record, why: &str, hec: Option<&Value>) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("TimeGenerated".into(), iso_ms(r.received_ms).into());
    row.insert("Source".into(), source_of(r).into());
    row.insert("RelayId".into(), relay_id(hec));
    row.insert(
        "RawEvent".into(),
        String::from_utf8_lossy(&r.payload).into_owned().into(),
    );
    row.insert("RelayError".into(), why.into());
    row
}

/// The row of a record from its HEC event.
fn row_of(r: &Record, hec: &Value) -> Map<String, Value> {
    let error = hec.pointer("/fields/relay_error").and_then(Value::as_str);
    let event = hec.get("event");
    // A record that was not JSON at all is shipped by the HEC encoder as a string.
    let Some(Value::Object(event)) = event else {
        return raw_row(r, error.unwrap_or("not a JSON object"), Some(hec));
    };
    // QSS events (WebSocket frames, and QSS webhooks) come in the frame's envelope; the
    // event is its `content`.
    let inner = match event.get("content") {
        Some(Value::Object(c)) if event.get("module").is_some() => c,
        _ => event,
    };
    let time_ms = hec
        .get("time")
        .and_then(Value::as_f64)
        .map_or(r.received_ms, |t| (t * 1000.0).round() as u64);
    let payload = inner.get("payload").cloned().unwrap_or(Value::Null);
    let mut row = Map::new();
    row.insert("TimeGenerated".into(), iso_ms(time_ms).into());
    if let Some(name) = inner.get("event").and_then(Value::as_str) {
        row.insert("Event".into(), name.into());
    }
    for (column, field) in [
        ("AccountId", "account_id"),
        ("Operator", "operator"),
        ("OperatorId", "operator_id"),
    ] {
        if let Some(v) = payload.get(field).filter(|v| !v.is_null()) {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            row.insert(column.into(), text.into());
        }
    }
    row.insert("Source".into(), source_of(r).into());
    row.insert("RelayId".into(), relay_id(Some(hec)));
    row.insert("Payload".into(), payload);
    if let Some(why) = error {
        row.insert("RelayError".into(), why.into());
        // A `content` that is not JSON is kept as text.
        if let Some(Value::String(s)) = event.get("content") {
            row.insert("RawEvent".into(), s.clone().into());
        }
    }
    row
}
