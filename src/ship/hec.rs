//! Turning spooled records into HEC events, in the shape the old script sent:
//!
//! ```text
//! {"time":T,"source":"zoom_websocket","sourcetype":"zoom_qss","host":H,"index":R,
//!  "event":ENVELOPE,"fields":{"relay_id":"<spool id>:<seq>"}}
//! ```
//!
//! - WebSocket frames: ENVELOPE is the frame as received with `content` decoded from its
//!   string into an object, and the QSS transforms ([`super::transform`]) applied.
//! - Webhook bodies: QSS events (`*_qos`, `*_qos_summary`, `*_data`, `*_data_summary`)
//!   get the same envelope (`{"module":"message","content":{...}}`) and transforms, with
//!   `source` `zoom_webhook`; every other event is sent as Zoom sent it, with `sourcetype`
//!   from `LOGSCALE_WEBHOOK_SOURCETYPE`.
//! - `time` is the event's own `event_ts` (ms) as seconds with millisecond precision, or
//!   the receive time kept in the spool when it has none; never the shipping time.
//! - What cannot be decoded (a frame that is not JSON, a `content` that is not JSON) is
//!   still sent: its raw text as `event`, or its `content` kept as a string, with
//!   `fields.relay_error` saying why.
//!
//! One [`Encoder`] per shipping task: it owns the scratch buffers and simd-json tapes and
//! reuses them for every event, writing the output straight into the request body.

use super::json::{self, get, str_at, write_key, write_str, write_value};
use super::transform::{write_content, Transforms};
use crate::spool::{Record, SourceKind};
use simd_json::{Buffers, Node, StaticNode, Tape, INPUT_PADDING};

/// What every event carries besides its payload.
#[derive(Debug, Clone)]
pub struct HecSettings {
    pub host: String,
    pub index: Option<String>,
    /// The spool's id, the first half of `relay_id`.
    pub spool_id: String,
    pub webhook_sourcetype: String,
}

const QSS_SOURCETYPE: &str = "zoom_qss";

/// Encodes records into HEC lines, reusing its buffers.
pub struct Encoder {
    settings: HecSettings,
    /// `,"host":H[,"index":R],"event":` pre-escaped.
    head_tail: Vec<u8>,
    frame: Vec<u8>,
    content: Vec<u8>,
    buffers: Buffers,
    frame_tape: Tape<'static>,
    content_tape: Tape<'static>,
}

/// Is this webhook event name a QSS event?
pub fn is_qss_event(name: &str) -> bool {
    ["_qos", "_qos_summary", "_data", "_data_summary"]
        .iter()
        .any(|s| name.ends_with(s))
}

impl Encoder {
    pub fn new(settings: HecSettings) -> Encoder {
        let mut head_tail = Vec::new();
        head_tail.extend_from_slice(b",\"host\":");
        write_str(&mut head_tail, &settings.host);
        if let Some(index) = &settings.index {
            head_tail.extend_from_slice(b",\"index\":");
            write_str(&mut head_tail, index);
        }
        head_tail.extend_from_slice(b",\"event\":");
        Encoder {
            settings,
            head_tail,
            frame: Vec::new(),
            content: Vec::new(),
            buffers: Buffers::new(4096),
            frame_tape: Tape(Vec::new()),
            content_tape: Tape(Vec::new()),
        }
    }

    pub fn settings(&self) -> &HecSettings {
        &self.settings
    }

    /// Appends one HEC event (one line, ending in `\n`) for `r` to `out`.
    pub fn encode(&mut self, r: &Record, out: &mut Vec<u8>) {
        if r.is_malformed() {
            let why = match r.kind {
                SourceKind::WebSocket => "frame not recognised (not JSON, or an unknown module)",
                SourceKind::Webhook => "webhook body is not JSON",
            };
            self.write_raw(r, why, out);
            return;
        }
        match r.kind {
            SourceKind::WebSocket => self.encode_frame(r, out),
            SourceKind::Webhook => self.encode_webhook(r, out),
        }
    }

    fn encode_frame(&mut self, r: &Record, out: &mut Vec<u8>) {
        let Encoder {
            settings,
            head_tail,
            frame,
            content,
            buffers,
            frame_tape,
            content_tape,
        } = self;
        let mut ft = std::mem::replace(frame_tape, Tape(Vec::new())).reset();
        let mut ct = std::mem::replace(content_tape, Tape(Vec::new())).reset();
        let ok = load(frame, &r.payload, buffers, &mut ft)
            && matches!(ft.0.first(), Some(Node::Object { .. }));
        if ok {
            let nodes = &ft.0;
            let content_idx = get(nodes, 0, "content");
            let content_str = content_idx.and_then(|i| str_at(nodes, i));
            let mut error = None;
            let parsed = match content_str {
                Some(s) => {
                    let ok = load(content, s.as_bytes(), buffers, &mut ct);
                    if !ok {
                        error = Some("content is not JSON; kept as a string");
                    }
                    ok
                }
                None => false,
            };
            // The event's name and time come from the decoded content (or from an object
            // content, if a peer ever sends one undoubled).
            let (cnodes, croot): (&[Node<'_>], Option<usize>) = if parsed {
                (&ct.0, Some(0))
            } else {
                (
                    nodes,
                    content_idx.filter(|&i| matches!(nodes[i], Node::Object { .. })),
                )
            };
            let name = croot
                .and_then(|c| get(cnodes, c, "event"))
                .and_then(|i| str_at(cnodes, i))
                .unwrap_or("");
            let time_ms = croot
                .and_then(|c| event_ts(cnodes, c))
                .unwrap_or(r.received_ms);

            write_head(out, time_ms, "zoom_websocket", QSS_SOURCETYPE, head_tail);
            let Node::Object { len, .. } = nodes[0] else {
                unreachable!("checked above")
            };
            out.push(b'{');
            let mut j = 1;
            for n in 0..len {
                if n > 0 {
                    out.push(b',');
                }
                let is_content = Some(j + 1) == content_idx;
                j = write_key(out, nodes, j);
                if is_content && parsed {
                    write_content(out, &ct.0, 0, Transforms::for_event(name));
                    j = json::skip(nodes, j);
                } else if is_content && croot.is_some() {
                    j = write_content(out, nodes, j, Transforms::for_event(name));
                } else {
                    j = write_value(out, nodes, j);
                }
            }
            out.push(b'}');
            write_fields(out, &settings.spool_id, r.seq, error);
        }
        *frame_tape = ft.reset();
        *content_tape = ct.reset();
        if !ok {
            self.write_raw(r, "frame is not a JSON object", out);
        }
    }

    fn encode_webhook(&mut self, r: &Record, out: &mut Vec<u8>) {
        let Encoder {
            settings,
            head_tail,
            frame,
            buffers,
            frame_tape,
            ..
        } = self;
        let mut ft = std::mem::replace(frame_tape, Tape(Vec::new())).reset();
        let ok = load(frame, &r.payload, buffers, &mut ft)
            && matches!(ft.0.first(), Some(Node::Object { .. }));
        if ok {
            let nodes = &ft.0;
            let name = get(nodes, 0, "event")
                .and_then(|i| str_at(nodes, i))
                .unwrap_or("");
            let time_ms = event_ts(nodes, 0).unwrap_or(r.received_ms);
            if is_qss_event(name) {
                write_head(out, time_ms, "zoom_webhook", QSS_SOURCETYPE, head_tail);
                out.extend_from_slice(b"{\"module\":\"message\",\"content\":");
                write_content(out, nodes, 0, Transforms::for_event(name));
                out.push(b'}');
            } else {
                write_head(
                    out,
                    time_ms,
                    "zoom_webhook",
                    &settings.webhook_sourcetype,
                    head_tail,
                );
                write_value(out, nodes, 0);
            }
            write_fields(out, &settings.spool_id, r.seq, None);
        }
        *frame_tape = ft.reset();
        if !ok {
            self.write_raw(r, "webhook body is not a JSON object", out);
        }
    }

    /// The record's raw text as `event`, with the reason in `fields.relay_error`.
    fn write_raw(&self, r: &Record, why: &str, out: &mut Vec<u8>) {
        let (source, sourcetype) = match r.kind {
            SourceKind::WebSocket => ("zoom_websocket", QSS_SOURCETYPE),
            SourceKind::Webhook => ("zoom_webhook", self.settings.webhook_sourcetype.as_str()),
        };
        write_head(out, r.received_ms, source, sourcetype, &self.head_tail);
        write_str(out, &String::from_utf8_lossy(&r.payload));
        write_fields(out, &self.settings.spool_id, r.seq, Some(why));
    }
}

/// Copies `src` into `buf` with simd-json's padding and parses it into `tape`.
fn load<'de>(
    buf: &'de mut Vec<u8>,
    src: &[u8],
    buffers: &mut Buffers,
    tape: &mut Tape<'de>,
) -> bool {
    buf.clear();
    buf.extend_from_slice(src);
    buf.resize(src.len() + INPUT_PADDING, 0);
    simd_json::fill_tape_padded(buf.as_mut_slice(), src.len(), buffers, tape).is_ok()
}

/// `event_ts` of the object at `i`, in ms.
fn event_ts(nodes: &[Node<'_>], i: usize) -> Option<u64> {
    match nodes[get(nodes, i, "event_ts")?] {
        Node::Static(StaticNode::U64(v)) => Some(v),
        Node::Static(StaticNode::I64(v)) if v >= 0 => Some(v as u64),
        Node::Static(StaticNode::F64(v)) if v.is_finite() && v >= 0.0 => Some(v as u64),
        _ => None,
    }
}

fn write_head(out: &mut Vec<u8>, time_ms: u64, source: &str, sourcetype: &str, head_tail: &[u8]) {
    out.extend_from_slice(b"{\"time\":");
    out.extend_from_slice(itoa::Buffer::new().format(time_ms / 1000).as_bytes());
    let ms = (time_ms % 1000) as usize;
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
    ]);
    out.extend_from_slice(b",\"source\":");
    write_str(out, source);
    out.extend_from_slice(b",\"sourcetype\":");
    write_str(out, sourcetype);
    out.extend_from_slice(head_tail);
}

fn write_fields(out: &mut Vec<u8>, spool_id: &str, seq: u64, error: Option<&str>) {
    out.extend_from_slice(b",\"fields\":{\"relay_id\":\"");
    out.extend_from_slice(spool_id.as_bytes());
    out.push(b':');
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.push(b'"');
    if let Some(e) = error {
        out.extend_from_slice(b",\"relay_error\":");
        write_str(out, e);
    }
    out.extend_from_slice(b"}}\n");
}

/// Reads the HEC event's `relay_id` sequence back (the fake LogScale, tests).
pub fn relay_seq(relay_id: &str) -> Option<u64> {
    relay_id.rsplit_once(':')?.1.parse().ok()
}
