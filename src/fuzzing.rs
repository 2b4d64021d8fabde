//! The properties the fuzz targets check, in the library so that the fuzz targets
//! (`fuzz/`) and the regular test suite (`tests/fuzz_corpus.rs`, which replays the corpus
//! and every crash found so far) check exactly the same thing.
//!
//! Each function takes arbitrary bytes and panics only if a property is broken.

use crate::ship::hec::{Encoder, HecSettings};
use crate::source::frame::{classify, FrameKind};
use crate::spool::{decode_block, encode_block, flags, NewRecord, Record, SourceKind};
use bytes::Bytes;

fn encoder() -> Encoder {
    Encoder::new(HecSettings {
        host: "fuzz".into(),
        index: Some("zoom".into()),
        spool_id: "0000000000000000".into(),
        webhook_sourcetype: "zoom_webhook".into(),
        redact: crate::redact::Redaction::with_extra(["clientId"]),
    })
}

fn assert_one_json_line(out: &[u8]) {
    assert_eq!(out.last(), Some(&b'\n'), "an event ends with a newline");
    assert_eq!(
        out.iter().filter(|&&b| b == b'\n').count(),
        1,
        "one event is one line: {}",
        String::from_utf8_lossy(out)
    );
    let v: serde_json::Value = serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("output is not JSON ({e}): {}", String::from_utf8_lossy(out)));
    assert!(
        v.get("event").is_some() && v.get("time").is_some(),
        "HEC fields present"
    );
}

/// Any bytes as a WebSocket frame and as a webhook body: classification never panics,
/// the HEC output is one line of valid JSON, and the Sentinel row spliced from the marks
/// the HEC encoder noted is the row made by reading the line back.
pub fn check_frame(data: &[u8]) {
    let kind = classify(data);
    let fl = match kind {
        FrameKind::Unrecognised { .. } => flags::MALFORMED,
        _ => 0,
    };
    let mut enc = encoder();
    for (source, fl) in [
        (SourceKind::WebSocket, fl),
        (SourceKind::WebSocket, 0),
        (SourceKind::Webhook, 0),
    ] {
        let r = Record {
            seq: 7,
            received_ms: 1_700_000_000_000,
            kind: source,
            flags: fl,
            payload: Bytes::copy_from_slice(data),
        };
        let mut out = Vec::new();
        enc.encode(&r, &mut out);
        assert_one_json_line(&out);
        let mut rows = crate::ship::sentinel::record::RowEncoder::new(
            "0000000000000000",
            crate::redact::Redaction::with_extra(["clientId"]),
        );
        let (mut marked, mut read_back) = (Vec::new(), Vec::new());
        rows.encode(&r, &mut marked);
        rows.encode_read_back(&r, &mut read_back);
        assert_eq!(
            String::from_utf8_lossy(&marked),
            String::from_utf8_lossy(&read_back),
            "the row from marks differs from the row read back"
        );
    }
}

/// Any bytes as the `content` of a Zoom message frame (the double-encoded event): the
/// transforms never panic and the output is one line of valid JSON; with Zoom's header
/// around it, the `Authorization` value is in no output.
pub fn check_content(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let frame = crate::sim::events::ws_frame(&text);
    check_frame(frame.as_bytes());

    const SECRET: &str = "fuzz-credential-5b1d";
    if text.contains(SECRET) {
        return;
    }
    let frame = serde_json::json!({
        "module": "message",
        "success": true,
        "content": text,
        "header": {"Authorization": SECRET, "clientId": "c", "x-zm-trackingid": "t"},
    })
    .to_string();
    let r = Record {
        seq: 7,
        received_ms: 1_700_000_000_000,
        kind: SourceKind::WebSocket,
        flags: 0,
        payload: Bytes::from(frame),
    };
    let mut out = Vec::new();
    encoder().encode(&r, &mut out);
    assert_one_json_line(&out);
    assert!(
        memchr::memmem::find(&out, SECRET.as_bytes()).is_none(),
        "the Authorization value was shipped: {}",
        String::from_utf8_lossy(&out)
    );
}

/// Any bytes as a spool block: decoding returns an error or records, never panics; what
/// decodes re-encodes to the same records.
pub fn check_block(data: &[u8]) {
    if let Ok((h, records)) = decode_block(data) {
        assert_eq!(records.len() as u32, h.count);
        let again: Vec<NewRecord> = records
            .iter()
            .map(|r| NewRecord {
                received_ms: r.received_ms,
                kind: r.kind,
                flags: r.flags,
                payload: r.payload.clone(),
            })
            .collect();
        let (_, back) =
            decode_block(&encode_block(h.first_seq, &again)).expect("re-encoded block decodes");
        assert_eq!(back, records);
    }
}

/// Any bytes as an env file: an error with a line number, or well-formed pairs.
pub fn check_env_file(data: &[u8]) {
    match crate::config::parse_env_file(data, |_| None) {
        Ok(pairs) => {
            for (k, _) in pairs {
                assert!(
                    !k.is_empty() && !k.chars().any(char::is_whitespace),
                    "{k:?}"
                );
            }
        }
        Err(e) => assert!(e.line >= 1),
    }
}

/// Any bytes split into secret, timestamp, body and signature: verification never panics,
/// accepts the right signature and refuses a changed one.
pub fn check_signature(data: &[u8]) {
    use crate::source::signature::{sign, url_validation_token, verify};
    let mut parts = data.splitn(4, |&b| b == 0);
    let secret = parts.next().unwrap_or_default();
    let ts = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let sig = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let _ = verify(secret, &ts, body, &sig);
    let _ = url_validation_token(secret, &ts);
    let good = sign(secret, &ts, body);
    assert!(verify(secret, &ts, body, &good));
    let mut tampered = body.to_vec();
    tampered.push(b'x');
    assert!(!verify(secret, &ts, &tampered, &good));
}
