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
//! destinations see the same transforms and the same time. On the common paths the
//! encoder notes where the row's pieces are as it writes the line ([`RowMarks`]), and
//! the row is spliced from them: the `payload` is copied as the bytes the HEC encoder
//! wrote. Otherwise (a `relay_error`, a frame written from the tape) the line is read
//! back with borrowed, raw values (serde_json's `RawValue`). Both give the same row (a
//! test compares them over every kind of simulated event and the fuzz corpus).

use crate::redact::Redaction;
use crate::ship::hec::{Encoder as HecEncoder, HecSettings, RowMarks};
use crate::spool::{Record, SourceKind};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
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
    spool_id: String,
}

/// The parts of a HEC line a row is made of.
#[derive(Deserialize)]
struct HecLine<'a> {
    time: Option<f64>,
    #[serde(borrow)]
    event: &'a RawValue,
    #[serde(borrow, default)]
    fields: HecFields<'a>,
}

#[derive(Deserialize, Default)]
struct HecFields<'a> {
    #[serde(borrow)]
    relay_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    relay_error: Option<Cow<'a, str>>,
}

/// A Zoom event, or the WebSocket frame's envelope around one (`module`, `content`).
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    #[serde(borrow)]
    module: Option<&'a RawValue>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

/// The payload's members that have columns of their own.
#[derive(Deserialize)]
struct PayloadHead<'a> {
    #[serde(borrow)]
    account_id: Option<&'a RawValue>,
    #[serde(borrow)]
    operator: Option<&'a RawValue>,
    #[serde(borrow)]
    operator_id: Option<&'a RawValue>,
}

impl RowEncoder {
    /// `spool_id` names the spool in `RelayId`; `redact` says which frame header members
    /// are shipped as the marker (as for LogScale: the row is made from the HEC line).
    pub fn new(spool_id: &str, redact: Redaction) -> RowEncoder {
        RowEncoder {
            hec: HecEncoder::new(HecSettings {
                host: String::new(),
                index: None,
                spool_id: spool_id.to_string(),
                webhook_sourcetype: "zoom_webhook".into(),
                redact,
            }),
            line: Vec::new(),
            spool_id: spool_id.to_string(),
        }
    }

    /// Appends the row of `r` to `out`, followed by a `,` (a run of rows between `[` and
    /// `]`, without the last comma, is the request's JSON array).
    pub fn encode(&mut self, r: &Record, out: &mut Vec<u8>) {
        self.line.clear();
        if let Some(marks) = self.hec.encode_marked(r, &mut self.line) {
            write_marked_row(r, marks, &self.line, &self.spool_id, out);
        } else {
            self.read_back(r, out);
        }
        out.push(b',');
    }

    /// The row of `r` made by reading its HEC line (in `self.line`) back; for the paths
    /// that note no [`RowMarks`], and the reference the marked rows are tested against.
    fn read_back(&mut self, r: &Record, out: &mut Vec<u8>) {
        match serde_json::from_slice::<HecLine>(&self.line) {
            Ok(hec) => write_row(r, &hec, out),
            // The HEC encoder always writes valid JSON; should it not, the row says so
            // rather than losing the event.
            Err(e) => {
                let text = self.hec.settings().redact.redact_text(&r.payload);
                let why = format!("could not be encoded: {e}");
                write_raw_row(r, &String::from_utf8_lossy(&text), &why, None, out)
            }
        }
    }

    /// The row by reading the line back, never from marks: the reference the marked rows
    /// are checked against (unit tests, the fuzz targets' `check_frame`).
    #[doc(hidden)]
    pub fn encode_read_back(&mut self, r: &Record, out: &mut Vec<u8>) {
        self.line.clear();
        self.hec.encode(r, &mut self.line);
        self.read_back(r, out);
        out.push(b',');
    }
}

/// The row of a record from the marks its HEC line was written with (`line`).
fn write_marked_row(r: &Record, m: &RowMarks, line: &[u8], spool_id: &str, out: &mut Vec<u8>) {
    open_row(out, m.time_ms, r.received_ms);
    if let Some(name) = &m.name {
        string_column(out, "Event", name);
    }
    for (column, value) in HEAD_COLUMNS.iter().zip(&m.heads) {
        if let Some(text) = value {
            string_column(out, column, text);
        }
    }
    string_column(out, "Source", source_of(r));
    out.extend_from_slice(b",\"RelayId\":\"");
    out.extend_from_slice(spool_id.as_bytes());
    out.push(b':');
    out.extend_from_slice(itoa::Buffer::new().format(r.seq).as_bytes());
    out.extend_from_slice(b"\",\"Payload\":");
    match m.payload {
        Some((start, end)) => out.extend_from_slice(&line[start..end]),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// The last millisecond of year 9999: the latest time RFC 3339 (and humantime, which
/// fails to format later ones) can write.
const LATEST_MS: u64 = 253_402_300_799_999;

/// `ms` as an RFC 3339 UTC time with milliseconds, or `None` past year 9999.
fn iso_ms(ms: u64) -> Option<String> {
    use std::fmt::Write;
    let t = UNIX_EPOCH.checked_add(Duration::from_millis(ms.min(LATEST_MS + 1)))?;
    let mut s = String::with_capacity(24);
    write!(s, "{}", humantime::format_rfc3339_millis(t)).ok()?;
    Some(s)
}

/// The columns of the payload's `HEAD_MEMBERS`, in its order.
const HEAD_COLUMNS: [&str; 3] = ["AccountId", "Operator", "OperatorId"];

fn source_of(r: &Record) -> &'static str {
    match r.kind {
        SourceKind::WebSocket => "zoom_qss",
        SourceKind::Webhook => "zoom_webhook",
    }
}

/// `,"name":` then `value` as a JSON string.
fn string_column(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    serde_json::to_writer(&mut *out, value).expect("writing to a Vec");
}

/// The row's start: `{"TimeGenerated":"..."`.
/// An event time past year 9999 (an `event_ts` no real event has) cannot be a datetime
/// column: the row then takes the time the relay received the record (`received_ms`).
fn open_row(out: &mut Vec<u8>, time_ms: u64, received_ms: u64) {
    out.extend_from_slice(b"{\"TimeGenerated\":\"");
    let iso = iso_ms(time_ms)
        .or_else(|| iso_ms(received_ms))
        .unwrap_or_else(|| "9999-12-31T23:59:59.999Z".to_string());
    out.extend_from_slice(iso.as_bytes());
    out.push(b'"');
}

/// `,"Source":...,"RelayId":...`: the columns every row has.
fn source_columns(out: &mut Vec<u8>, r: &Record, relay_id: Option<&str>) {
    string_column(out, "Source", source_of(r));
    match relay_id {
        Some(id) => string_column(out, "RelayId", id),
        None => out.extend_from_slice(b",\"RelayId\":null"),
    }
}

/// A row for a record that is not a JSON object: `text` (the record as the HEC encoder
/// shipped it, redacted) in `RawEvent`.
fn write_raw_row(r: &Record, text: &str, why: &str, relay_id: Option<&str>, out: &mut Vec<u8>) {
    open_row(out, r.received_ms, r.received_ms);
    source_columns(out, r, relay_id);
    string_column(out, "RawEvent", text);
    string_column(out, "RelayError", why);
    out.push(b'}');
}

/// A member with a column of its own as text: a string's value, anything else as written.
fn column_text(v: &RawValue) -> Option<Cow<'_, str>> {
    let raw = v.get();
    if raw == "null" {
        return None;
    }
    if raw.starts_with('"') {
        return serde_json::from_str::<Cow<str>>(raw).ok();
    }
    Some(Cow::Borrowed(raw))
}

/// The row of a record from its HEC line.
fn write_row(r: &Record, hec: &HecLine, out: &mut Vec<u8>) {
    let error = hec.fields.relay_error.as_deref();
    let relay_id = hec.fields.relay_id.as_deref();
    // A record that was not JSON at all is shipped by the HEC encoder as a string.
    let raw_event = hec.event.get();
    let envelope = raw_event
        .starts_with('{')
        .then(|| serde_json::from_str::<Event>(raw_event).ok())
        .flatten();
    let Some(envelope) = envelope else {
        // The HEC encoder wrote the record's text (redacted) as a JSON string.
        let text = serde_json::from_str::<Cow<str>>(raw_event).unwrap_or(Cow::Borrowed(raw_event));
        let why = error.unwrap_or("not a JSON object");
        return write_raw_row(r, &text, why, relay_id, out);
    };
    // QSS events (WebSocket frames, and QSS webhooks) come in the frame's envelope; the
    // event is its `content`.
    let (module, content) = (envelope.module, envelope.content);
    let inner = content
        .filter(|c| module.is_some() && c.get().starts_with('{'))
        .and_then(|c| serde_json::from_str::<Event>(c.get()).ok())
        .unwrap_or(envelope);
    let time_ms = hec
        .time
        .map_or(r.received_ms, |t| (t * 1000.0).round() as u64);
    open_row(out, time_ms, r.received_ms);
    if let Some(name) = &inner.event {
        string_column(out, "Event", name);
    }
    let head = inner
        .payload
        .and_then(|p| serde_json::from_str::<PayloadHead>(p.get()).ok());
    if let Some(head) = &head {
        for (column, value) in
            HEAD_COLUMNS
                .iter()
                .zip([head.account_id, head.operator, head.operator_id])
        {
            if let Some(text) = value.and_then(column_text) {
                string_column(out, column, &text);
            }
        }
    }
    source_columns(out, r, relay_id);
    out.extend_from_slice(b",\"Payload\":");
    out.extend_from_slice(inner.payload.map_or("null", |p| p.get()).as_bytes());
    if let Some(why) = error {
        // A `content` that is not JSON is kept as text.
        if let Some(text) = content
            .filter(|c| c.get().starts_with('"'))
            .and_then(|c| serde_json::from_str::<Cow<str>>(c.get()).ok())
        {
            string_column(out, "RawEvent", &text);
        }
        string_column(out, "RelayError", why);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::events::FrameFactory;
    use bytes::Bytes;

    fn record(kind: SourceKind, payload: &[u8]) -> Record {
        Record {
            seq: 42,
            received_ms: 1_700_000_000_123,
            kind,
            flags: 0,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// The row made from marks and the row made by reading the line back; whether marks
    /// were used.
    fn both_ways(r: &Record) -> (String, String, bool) {
        let mut enc = RowEncoder::new("spool-x", Redaction::default());
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        enc.encode(r, &mut fast);
        enc.encode_read_back(r, &mut slow);
        let mut line = Vec::new();
        let marked = enc.hec.encode_marked(r, &mut line).is_some();
        (
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow).unwrap(),
            marked,
        )
    }

    #[test]
    fn rows_from_marks_are_the_rows_read_back_for_every_simulated_event() {
        for (factory, kind) in [
            (FrameFactory::websocket(), SourceKind::WebSocket),
            (FrameFactory::webhook(), SourceKind::Webhook),
        ] {
            let mut marked = 0;
            for n in 0..3_000 {
                let (fast, slow, m) = both_ways(&record(kind, &factory.frame(n)));
                assert_eq!(fast, slow, "{kind:?} event {n}");
                marked += m as usize;
            }
            // The point of the marks: the common events take that path.
            assert_eq!(marked, 3_000, "{kind:?}: events not marked");
        }
    }

    #[test]
    fn rows_from_marks_are_the_rows_read_back_at_the_edges() {
        let q = r#"\"event\":\"meeting.participant_qos\""#;
        let frames = [
            // Blanks around colons and commas, payload not last, keys with escapes.
            format!(
                r#"{{"module":"message","content":"{{ {q} , \"payload\" : {{\"account_id\" : \"a\", \"object\":{{}}}} , \"event_ts\": 1700000000999 }}"}}"#
            ),
            format!(
                r#"{{"module":"message","content":"{{{q},\"pay\\u006coad\":{{\"account_id\":\"a\"}}}}"}}"#
            ),
            // Head members that are not strings, null, absent; no payload; payload null.
            format!(
                r#"{{"module":"message","content":"{{{q},\"payload\":{{\"account_id\":7,\"operator\":null}}}}"}}"#
            ),
            format!(
                r#"{{"module":"message","content":"{{{q},\"payload\":{{\"operator\":null,\"operator_id\":\"o\\\"1\"}}}}"}}"#
            ),
            format!(r#"{{"module":"message","content":"{{{q}}}"}}"#),
            format!(r#"{{"module":"message","content":"{{{q},\"payload\":null}}"}}"#),
            r#"{"module":"message","content":"{\"event\":5,\"payload\":{}}"}"#.to_string(),
            // A header with the credential; content not JSON; not JSON at all.
            format!(
                r#"{{"module":"message","content":"{{{q},\"payload\":{{}}}}","header":{{"Authorization":"s3cr3t"}}}}"#
            ),
            // Line breaks between a key, its colon and its value (such text is not
            // copied verbatim, so it is read back).
            "{\"event\":\"x\",\"payload\"\r\n:\n{\"account_id\":\"a\"}\n}".to_string(),
            r#"{"module":"message","content":"not json"}"#.to_string(),
            "not json".to_string(),
        ];
        for f in &frames {
            for kind in [SourceKind::WebSocket, SourceKind::Webhook] {
                let (fast, slow, _) = both_ways(&record(kind, f.as_bytes()));
                assert_eq!(fast, slow, "{kind:?} {f}");
            }
        }
        // An `event_ts` past year 9999 (found by the fuzz corpus: formatting it panicked).
        let far = format!(
            r#"{{"module":"message","content":"{{{q},\"event_ts\":99999999999999999,\"payload\":{{}}}}"}}"#
        );
        let (fast, slow, _) = both_ways(&record(SourceKind::WebSocket, far.as_bytes()));
        assert_eq!(fast, slow);
        assert!(
            fast.starts_with(r#"{"TimeGenerated":"2023-11-14T22:13:20.123Z""#),
            "{fast}"
        );
        let webhooks = [
            r#"{"event":"meeting.started","event_ts":1700000000999,"payload":{"account_id":"a","operator":"o@x","object":{"id":1}}}"#,
            r#"{"event":"meeting.participant_qos","payload":{"object":{"participant":{"qos":[{"type":"audio_input","details":{"min_bitrate":"1 kbps"}}]}}},"event_ts":1}"#,
            r#"{ "payload" : { "account_id" : "a" } , "event" : "x" }"#,
        ];
        for w in webhooks {
            let (fast, slow, m) = both_ways(&record(SourceKind::Webhook, w.as_bytes()));
            assert_eq!(fast, slow, "{w}");
            assert!(m, "{w}");
        }
    }
}
