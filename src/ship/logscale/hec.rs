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

use super::transform::{rewrites, write_content, write_rewrite, Transforms};
use crate::redact::{Redaction, MARKER};
use crate::ship::json::{self, get, str_at, write_str, write_value};
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
    /// The frame `header` members whose values never leave the host.
    pub redact: Redaction,
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
    /// Filled during [`Encoder::encode_marked`]; `None` during [`Encoder::encode`].
    marks: Option<RowMarks>,
}

/// What a Sentinel row is made of, noted while the HEC line is written, so that the row
/// needs no second parse of the line (`ship::sentinel::record`). Noted only on the common
/// paths (an event copied verbatim, no `relay_error`); [`Encoder::encode_marked`] returns
/// `None` otherwise and the row is made by reading the line back.
///
/// Why: reading every line back with serde_json (the line, the envelope, the `content`,
/// the payload's head: four passes) was 17.5% of the relay's CPU with both destinations
/// (`perf record` under `cargo bench --bench destinations -- e2e`).
#[derive(Debug, Default, Clone)]
pub struct RowMarks {
    complete: bool,
    /// The event's time (ms): `event_ts`, else the receive time (the HEC `time`).
    pub time_ms: u64,
    /// The event's name, when it has one.
    pub name: Option<String>,
    /// `payload.account_id`, `payload.operator`, `payload.operator_id` (string values).
    pub heads: [Option<String>; 3],
    /// Where the event's `payload` value is in the line written; `None`: no payload.
    pub payload: Option<(usize, usize)>,
}

/// The payload members that have columns of their own, in [`RowMarks::heads`]' order.
pub const HEAD_MEMBERS: [&str; 3] = ["account_id", "operator", "operator_id"];

impl RowMarks {
    fn reset(&mut self) {
        self.complete = false;
        self.name = None;
        self.heads = Default::default();
        self.payload = None;
    }
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
            marks: None,
        }
    }

    /// As [`encode`](Self::encode), and notes where the pieces of a Sentinel row are in
    /// what it wrote (offsets into `out`); `None` when the event took a path that does
    /// not note them (the row is then made by reading the line back).
    pub fn encode_marked(&mut self, r: &Record, out: &mut Vec<u8>) -> Option<&RowMarks> {
        self.marks.get_or_insert_default().reset();
        self.encode(r, out);
        self.marks.as_ref().filter(|m| m.complete)
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
            marks,
        } = self;
        let mut ft = std::mem::replace(frame_tape, Tape(Vec::new())).reset();
        let mut ct = std::mem::replace(content_tape, Tape(Vec::new())).reset();
        let frame_base = load(frame, &r.payload, buffers, &mut ft)
            .filter(|_| matches!(ft.0.first(), Some(Node::Object { .. })));
        let ok = frame_base.is_some();
        if let Some(frame_base) = frame_base {
            let nodes = &ft.0;
            let content_idx = get(nodes, 0, "content");
            let content_str = content_idx.and_then(|i| str_at(nodes, i));
            let mut error = None;
            let mut content_base = 0;
            let parsed = match content_str {
                Some(s) => match load(content, s.as_bytes(), buffers, &mut ct) {
                    Some(b) => {
                        content_base = b;
                        true
                    }
                    None => {
                        error = Some("content is not JSON; kept as a string");
                        false
                    }
                },
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
            let t = Transforms::for_event(name);
            let secrets = header_secrets(nodes, &settings.redact);
            // Fast path: the frame as received, its `content` string replaced by the
            // content itself, both copied verbatim but for what the transforms change and
            // the redacted header values.
            let mut done = false;
            if let (true, Some(s)) = (parsed && !has_line_break(&r.payload), content_str) {
                let start = offset_of(s, frame_base);
                let end = content_idx
                    .and_then(|ci| content_end(&r.payload, frame_base, nodes, ci, start));
                let hidden = string_regions(&r.payload, frame_base, nodes, &secrets);
                if let (Some(end), Some(hidden)) = (end, hidden) {
                    let mark = out.len();
                    copy_hiding(out, &r.payload, 0, start - 1, &hidden);
                    let at = out.len();
                    if write_verbatim(out, s.as_bytes(), content_base, &ct.0, t) {
                        // The envelope is read back too: its keys must be single as well.
                        // (A `content` outside a `module` envelope is not the event there.)
                        let envelope_ok = || {
                            unique_keys(nodes, 0, &ENVELOPE_KEYS)
                                && get(nodes, 0, "module").is_some()
                        };
                        if let Some(m) = marks.as_mut().filter(|_| error.is_none() && envelope_ok())
                        {
                            let text = s.as_bytes();
                            mark_row(m, out, at, text, content_base, &ct.0, time_ms);
                        }
                        copy_hiding(out, &r.payload, end, r.payload.len(), &hidden);
                        done = true;
                    } else {
                        out.truncate(mark);
                    }
                }
            }
            if !done {
                json::write_object_with(out, nodes, 0, |out, _, j| {
                    let is_content = Some(j) == content_idx;
                    if is_content && parsed {
                        write_content(out, &ct.0, 0, t);
                        json::skip(nodes, j)
                    } else if is_content && croot.is_some() {
                        write_content(out, nodes, j, t)
                    } else {
                        // A header's members by index: only they are in `secrets`.
                        write_hiding(out, nodes, j, &secrets)
                    }
                });
            }
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
            marks,
            ..
        } = self;
        let mut ft = std::mem::replace(frame_tape, Tape(Vec::new())).reset();
        let base = load(frame, &r.payload, buffers, &mut ft)
            .filter(|_| matches!(ft.0.first(), Some(Node::Object { .. })));
        let ok = base.is_some();
        if let Some(base) = base {
            let nodes = &ft.0;
            let name = get(nodes, 0, "event")
                .and_then(|i| str_at(nodes, i))
                .unwrap_or("");
            let time_ms = event_ts(nodes, 0).unwrap_or(r.received_ms);
            if is_qss_event(name) {
                write_head(out, time_ms, "zoom_webhook", QSS_SOURCETYPE, head_tail);
                out.extend_from_slice(b"{\"module\":\"message\",\"content\":");
                let at = out.len();
                if write_verbatim(out, &r.payload, base, nodes, Transforms::for_event(name)) {
                    if let Some(m) = marks.as_mut() {
                        mark_row(m, out, at, &r.payload, base, nodes, time_ms);
                    }
                } else {
                    write_content(out, nodes, 0, Transforms::for_event(name));
                }
                out.push(b'}');
            } else if !has_line_break(&r.payload) {
                // The body exactly as Zoom sent (and signed) it.
                write_head(
                    out,
                    time_ms,
                    "zoom_webhook",
                    &settings.webhook_sourcetype,
                    head_tail,
                );
                let at = out.len();
                out.extend_from_slice(&r.payload);
                // A body in a `module` envelope has its event in `content`: read back.
                if let Some(m) = marks.as_mut().filter(|_| get(nodes, 0, "module").is_none()) {
                    mark_row(m, out, at, &r.payload, base, nodes, time_ms);
                }
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
        let text = self.settings.redact.redact_text(&r.payload);
        write_str(out, &String::from_utf8_lossy(&text));
        write_fields(out, &self.settings.spool_id, r.seq, Some(why));
    }
}

/// Notes in `m` what a Sentinel row takes from the event object `text` (parsed into
/// `nodes` from a copy at `base`), just written to `out` from `at` by a verbatim copy
/// whose rewrites all lie inside its `payload` (the transforms only touch
/// `payload.object...`). Leaves `m` incomplete when something cannot be placed or is not
/// a plain string: the row is then made by reading the line back.
fn mark_row(
    m: &mut RowMarks,
    out: &[u8],
    at: usize,
    text: &[u8],
    base: usize,
    nodes: &[Node<'_>],
    time_ms: u64,
) {
    m.time_ms = time_ms;
    // A key twice (JSON allows it) is read back differently by serde: leave such events
    // to the read-back path.
    if !unique_keys(nodes, 0, &ENVELOPE_KEYS) {
        return;
    }
    m.name = match get(nodes, 0, "event").map(|i| &nodes[i]) {
        None => None,
        Some(Node::String(s)) => Some(s.to_string()),
        Some(_) => return,
    };
    let Some(p) = get(nodes, 0, "payload") else {
        m.complete = true;
        return;
    };
    if let Node::Object { .. } = nodes[p] {
        if !unique_keys(nodes, p, &HEAD_MEMBERS) {
            return;
        }
        for (slot, key) in m.heads.iter_mut().zip(HEAD_MEMBERS) {
            *slot = match get(nodes, p, key).map(|i| &nodes[i]) {
                None | Some(Node::Static(StaticNode::Null)) => None,
                Some(Node::String(s)) => Some(s.to_string()),
                Some(_) => return,
            };
        }
    }
    let Some((start, end)) = member_value_range(text, base, nodes, p) else {
        return;
    };
    // The copy is `text` with regions inside the payload rewritten: the bytes before the
    // payload are at the same distance from `at`, those after it at the same distance
    // from the end of what was written (checked, as cheap as the few bytes involved).
    let Some(o_end) = (out.len() + end).checked_sub(text.len()) else {
        return;
    };
    if o_end >= at + start && out[at..at + start] == text[..start] && out[o_end..] == text[end..] {
        m.payload = Some((at + start, o_end));
        m.complete = true;
    }
}

/// The members of an event or its envelope that a Sentinel row is made from.
const ENVELOPE_KEYS: [&str; 4] = ["event", "payload", "module", "content"];

/// Whether none of `keys` is a member of the object at `i` more than once.
fn unique_keys(nodes: &[Node<'_>], i: usize, keys: &[&str]) -> bool {
    let mut seen = 0u32;
    for (k, _) in members(nodes, i) {
        if let Some(n) = keys.iter().position(|key| *key == k) {
            if seen & (1 << n) != 0 {
                return false;
            }
            seen |= 1 << n;
        }
    }
    true
}

/// The byte range in `text` of the value at `v` of the root object (parsed into `nodes`
/// from a copy at `base`): from its key's position, and to the next key's (or the root's
/// closing brace), stepping over whitespace and the comma, without scanning the value.
/// `None` when the key was written with escapes, or the text is not as expected.
fn member_value_range(
    text: &[u8],
    base: usize,
    nodes: &[Node<'_>],
    v: usize,
) -> Option<(usize, usize)> {
    let Node::String(key) = nodes[v - 1] else {
        return None;
    };
    let start = value_start(text, base, key)?;
    let back_over_blanks = |mut i: usize| {
        while text.get(i).is_some_and(u8::is_ascii_whitespace) {
            i = i.checked_sub(1)?;
        }
        Some(i)
    };
    let next = json::skip(nodes, v);
    let end = match nodes.get(next) {
        // The payload is the root's last member: up to the closing brace.
        None => {
            let i = back_over_blanks(text.len().checked_sub(1)?)?;
            (text[i] == b'}').then_some(())?;
            back_over_blanks(i.checked_sub(1)?)? + 1
        }
        // Up to the comma before the next key.
        Some(Node::String(next_key)) => {
            let q = offset_of(next_key, base).checked_sub(1)?;
            (text.get(q) == Some(&b'"')).then_some(())?;
            let i = back_over_blanks(q.checked_sub(1)?)?;
            (text[i] == b',').then_some(())?;
            back_over_blanks(i.checked_sub(1)?)? + 1
        }
        Some(_) => return None,
    };
    (end > start).then_some((start, end))
}

/// Where the value of the member whose key node is `key` starts in `text` (parsed from a
/// copy at `base`): past the key's closing quote, blanks and the colon. `None` when the
/// key was written with escapes (its text is not the plain key). No line breaks are
/// stepped over: text with any is not copied verbatim (`has_line_break`).
fn value_start(text: &[u8], base: usize, key: &str) -> Option<usize> {
    let k = offset_of(key, base);
    if text.get(k..k + key.len()) != Some(key.as_bytes()) || text.get(k + key.len()) != Some(&b'"')
    {
        return None;
    }
    let mut start = k + key.len() + 1;
    while matches!(text.get(start), Some(b' ' | b'\t' | b':')) {
        start += 1;
    }
    Some(start)
}

/// Copies `src` into `buf` with simd-json's padding and parses it into `tape`. Returns the
/// buffer's address: a string node's pointer minus it is the string's offset in `src`
/// (simd-json unescapes in place, from the string's first byte).
fn load<'de>(
    buf: &'de mut Vec<u8>,
    src: &[u8],
    buffers: &mut Buffers,
    tape: &mut Tape<'de>,
) -> Option<usize> {
    buf.clear();
    buf.extend_from_slice(src);
    buf.resize(src.len() + INPUT_PADDING, 0);
    let base = buf.as_ptr() as usize;
    simd_json::fill_tape_padded(buf.as_mut_slice(), src.len(), buffers, tape)
        .ok()
        .map(|_| base)
}

/// Whether the text has a raw line break (only possible as whitespace between tokens in
/// valid JSON); such text is re-serialized rather than copied, to keep one event a line.
fn has_line_break(text: &[u8]) -> bool {
    memchr::memchr2(b'\n', b'\r', text).is_some()
}

/// Offset of the string node `s` in the text its tape was parsed from.
fn offset_of(s: &str, base: usize) -> usize {
    s.as_ptr() as usize - base
}

/// The index just past the closing quote of the JSON string whose content starts at
/// `start` (just after its opening quote).
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        i += memchr::memchr2(b'"', b'\\', text.get(i..)?)?;
        if text[i] == b'\\' {
            i += 2;
        } else {
            return Some(i + 1);
        }
    }
}

/// The index just past the closing quote of the frame's `content` string (whose text
/// starts at `start`). Found from the next key's position when there is one, a step back
/// over `,` and whitespace, which spares scanning a long string full of escaped quotes;
/// else by scanning.
fn content_end(
    frame: &[u8],
    base: usize,
    nodes: &[Node<'_>],
    content_idx: usize,
    start: usize,
) -> Option<usize> {
    let next = json::skip(nodes, content_idx);
    if let Some(Node::String(key)) = nodes.get(next) {
        let mut i = offset_of(key, base).checked_sub(2)?;
        while frame.get(i).is_some_and(u8::is_ascii_whitespace) {
            i = i.checked_sub(1)?;
        }
        if frame.get(i) == Some(&b',') {
            i = i.checked_sub(1)?;
            while frame.get(i).is_some_and(u8::is_ascii_whitespace) {
                i = i.checked_sub(1)?;
            }
            if frame.get(i) == Some(&b'"') && i >= start {
                return Some(i + 1);
            }
        }
    }
    string_end(frame, start)
}

/// The index just past the array or object starting at `start`.
fn value_end(text: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i = string_end(text, i + 1)?;
                continue;
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Writes `text` (valid JSON, parsed into `nodes` from a copy at `base`) with the
/// transforms applied, copying verbatim every byte they do not replace. Returns false,
/// having written nothing, when the text does not allow it (line breaks, escaped keys):
/// the caller then writes from the tape.
fn write_verbatim(
    out: &mut Vec<u8>,
    text: &[u8],
    base: usize,
    nodes: &[Node<'_>],
    t: Transforms,
) -> bool {
    if has_line_break(text) {
        return false;
    }
    let mut regions = Vec::new();
    for (v, how) in rewrites(nodes, t) {
        // The key node precedes its value; its text must be the plain key.
        let Node::String(key) = nodes[v - 1] else {
            return false;
        };
        let Some(start) = value_start(text, base, key) else {
            return false;
        };
        if text.get(start) != Some(&b'[') {
            return false;
        }
        let Some(end) = value_end(text, start) else {
            return false;
        };
        regions.push((start, end, v, how));
    }
    regions.sort_unstable_by_key(|r| r.0);
    let mut cursor = 0;
    for (start, end, v, how) in regions {
        out.extend_from_slice(&text[cursor..start]);
        write_rewrite(out, nodes, v, how);
        cursor = end;
    }
    out.extend_from_slice(&text[cursor..]);
    true
}

/// The value indices of the members that `redact` hides in the frame's `header` objects
/// (every top-level member so named, in any letter case, should a frame have two).
fn header_secrets(nodes: &[Node<'_>], redact: &Redaction) -> Vec<usize> {
    let mut hidden = Vec::new();
    for h in members(nodes, 0).filter(|&(k, _)| k.eq_ignore_ascii_case("header")) {
        hidden.extend(
            members(nodes, h.1)
                .filter(|&(k, _)| redact.matches(k))
                .map(|m| m.1),
        );
    }
    hidden
}

/// The members (key, value index) of the object at `i`; none if it is not an object.
fn members<'a, 'n>(nodes: &'n [Node<'a>], i: usize) -> impl Iterator<Item = (&'a str, usize)> + 'n {
    let len = match nodes[i] {
        Node::Object { len, .. } => len,
        _ => 0,
    };
    let mut j = i + 1;
    (0..len).map(move |_| {
        let key = json::key_at(nodes, j);
        let value = j + 1;
        j = json::skip(nodes, value);
        (key, value)
    })
}

/// The byte ranges (quotes included) in `text` of the string values at `values`; `None`
/// when one is not a string or cannot be placed (the caller then writes from the tape).
fn string_regions(
    text: &[u8],
    base: usize,
    nodes: &[Node<'_>],
    values: &[usize],
) -> Option<Vec<(usize, usize)>> {
    values
        .iter()
        .map(|&v| {
            let s = str_at(nodes, v)?;
            let start = (s.as_ptr() as usize).checked_sub(base)?;
            if start == 0 || text.get(start - 1) != Some(&b'"') {
                return None;
            }
            Some((start - 1, string_end(text, start)?))
        })
        .collect()
}

/// Copies `text[from..to]`, writing the marker for each of the `hidden` string regions
/// inside it.
fn copy_hiding(out: &mut Vec<u8>, text: &[u8], from: usize, to: usize, hidden: &[(usize, usize)]) {
    let mut cursor = from;
    for &(start, end) in hidden {
        if start >= from && end <= to {
            out.extend_from_slice(&text[cursor..start]);
            write_str(out, MARKER);
            cursor = end;
        }
    }
    out.extend_from_slice(&text[cursor..to]);
}

/// Writes the object at `i` with the values at `hidden` replaced by the marker; returns the
/// index just past it.
fn write_hiding(out: &mut Vec<u8>, nodes: &[Node<'_>], i: usize, hidden: &[usize]) -> usize {
    json::write_object_with(out, nodes, i, |out, _, j| {
        if hidden.contains(&j) {
            write_str(out, MARKER);
            json::skip(nodes, j)
        } else {
            write_value(out, nodes, j)
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn encode(frame: &str, redact: Redaction) -> String {
        let mut enc = Encoder::new(HecSettings {
            host: "h".into(),
            index: None,
            spool_id: "s".into(),
            webhook_sourcetype: "zoom_webhook".into(),
            redact,
        });
        let r = Record {
            seq: 1,
            received_ms: 0,
            kind: SourceKind::WebSocket,
            flags: 0,
            payload: Bytes::copy_from_slice(frame.as_bytes()),
        };
        let mut out = Vec::new();
        enc.encode(&r, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Real frames all carry `Authorization`: they must still take the verbatim path (the
    /// blank after a colon in the header survives only there), with exactly the value
    /// replaced, wherever in the frame the header is.
    #[test]
    fn a_frame_with_a_redacted_header_is_still_copied_verbatim() {
        let content = r#"{\"event\":\"meeting.participant_qos\",\"payload\":{}}"#;
        let after = format!(
            r#"{{"module":"message","content":"{content}","header":{{"Authorization": "a\"b","clientId": "c","X-Extra":7}}}}"#
        );
        let out = encode(&after, Redaction::default());
        assert!(
            out.contains(
                r#""header":{"Authorization": "[REDACTED]","clientId": "c","X-Extra":7}}"#
            ),
            "{out}"
        );
        let before = format!(
            r#"{{"header":{{"authorization": "s3cr3t","clientId": "c"}},"module":"message","content":"{content}"}}"#
        );
        let out = encode(&before, Redaction::with_extra(["clientid"]));
        assert!(
            out.contains(
                r#"{"header":{"authorization": "[REDACTED]","clientId": "[REDACTED]"},"module""#
            ),
            "{out}"
        );
        // A value that is not a string: written from the tape, still redacted.
        let out = encode(&after, Redaction::with_extra(["x-extra"]));
        assert!(out.contains(r#""X-Extra":"[REDACTED]""#), "{out}");
        assert!(!out.contains("a\\\"b") && !out.contains(":7"), "{out}");
        // Two `header` members (duplicate keys): both redacted.
        let twice = format!(
            r#"{{"module":"message","content":"{content}","header":{{}},"header":{{"Authorization":"s3cr3t"}}}}"#
        );
        assert!(!encode(&twice, Redaction::default()).contains("s3cr3t"));
        // Off: as received (the operator's `--unredacted`).
        assert!(encode(&before, Redaction::off()).contains("s3cr3t"));
    }
}
