//! Golden tests: the exact Sentinel row (a `ZoomLogs_CL` record) for each kind of event,
//! as `tests/golden_hec.rs` does for LogScale. The inputs are the same samples
//! (`tests/fixtures/`); expected rows are in `tests/golden/sentinel/`. After an intended
//! change, run `UPDATE_GOLDEN=1 cargo test --test golden_sentinel` and review the diff.

mod common;

use bytes::Bytes;
use common::golden::{check_golden, frame, frame_with_header, samples, SAMPLE_CREDENTIAL};
use qss_relay::ship::sentinel::record::{RowEncoder, COLUMNS};
use qss_relay::spool::{Record, SourceKind};
use serde_json::{json, Value};

/// The row of one record, checked to be one JSON object with only declared columns.
fn row(kind: SourceKind, payload: &str) -> (String, Value) {
    let r = Record {
        seq: 42,
        received_ms: 1_700_000_000_123,
        kind,
        flags: 0,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    };
    let mut out = Vec::new();
    RowEncoder::new("0123456789abcdef", Default::default()).encode(&r, &mut out);
    let text = String::from_utf8(out).unwrap();
    let text = text
        .strip_suffix(',')
        .expect("a row ends with a comma")
        .to_string();
    let v: Value = serde_json::from_str(&text).expect("a row is JSON");
    let obj = v.as_object().expect("a row is an object");
    for key in obj.keys() {
        assert!(
            COLUMNS.iter().any(|(c, _)| c == key),
            "{key} is not a column of ZoomLogs_CL"
        );
    }
    (text, v)
}

#[test]
fn qss_events_from_the_websocket() {
    for (text, event) in samples("qss-events.ndjson") {
        let name = event["event"].as_str().unwrap().to_string();
        let (out, v) = row(SourceKind::WebSocket, &frame(&text));
        check_golden(&format!("sentinel/ws_{name}"), &out);
        assert_eq!(v["Event"], name.as_str());
        assert_eq!(v["Source"], "zoom_qss");
        assert_eq!(v["RelayId"], "0123456789abcdef:42");
        assert!(v.get("RawEvent").is_none(), "{out}");
        assert!(v["Payload"].is_object());
        // event_ts, in ISO 8601 UTC with milliseconds.
        let ts = event["event_ts"].as_u64().unwrap();
        let expected = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts),
        )
        .to_string();
        assert_eq!(v["TimeGenerated"], expected.as_str());
    }
    // Transformed as for LogScale: qos as an object keyed by type, values formatted.
    let (_, v) = row(
        SourceKind::WebSocket,
        &frame(
            &samples("qss-events.ndjson")
                .into_iter()
                .find(|(_, e)| e["event"] == "meeting.participant_qos")
                .unwrap()
                .0,
        ),
    );
    let qos = &v["Payload"]["object"]["participant"]["qos"];
    assert_eq!(qos["audio_input"]["bitrate"], "63 kbps");
    assert_eq!(v["TimeGenerated"], "2021-07-14T02:44:51.572Z");
}

/// The row of a frame with Zoom's full header holds no credential (the row is built from
/// the redacted HEC line), whether the frame is JSON (`Payload`) or cut short (`RawEvent`).
#[test]
fn the_authorization_header_never_reaches_a_row() {
    let (text, _) = frame_with_header();
    let (out, v) = row(SourceKind::WebSocket, &text);
    check_golden("sentinel/ws_header_redacted", &out);
    assert!(!out.contains(SAMPLE_CREDENTIAL), "{out}");
    assert_eq!(v["Event"], "meeting.participant_qos");
    let (out, v) = row(SourceKind::WebSocket, &text[..text.len() - 40]);
    assert!(!out.contains(SAMPLE_CREDENTIAL), "{out}");
    assert!(
        v["RawEvent"].as_str().unwrap().contains("[REDACTED]"),
        "{out}"
    );
}

#[test]
fn webhook_events_keep_their_payload_and_name_the_operator() {
    for (text, body) in samples("webhook-bodies.ndjson") {
        let name = body["event"].as_str().unwrap().to_string();
        let (out, v) = row(SourceKind::Webhook, &text);
        check_golden(&format!("sentinel/webhook_{name}"), &out);
        assert_eq!(v["Source"], "zoom_webhook");
        assert_eq!(v["Event"], name.as_str());
        assert_eq!(v["Payload"], body["payload"], "{name}: payload as sent");
        for (column, field) in [
            ("AccountId", "account_id"),
            ("Operator", "operator"),
            ("OperatorId", "operator_id"),
        ] {
            match body["payload"].get(field) {
                Some(value) => assert_eq!(&v[column], value, "{name} {column}"),
                None => assert!(v.get(column).is_none(), "{name}: {column} without {field}"),
            }
        }
    }
}

#[test]
fn a_body_that_is_not_json_is_kept_as_raw_text_with_the_reason() {
    let (out, v) = row(SourceKind::Webhook, "this is {not json");
    check_golden("sentinel/webhook_not_json", &out);
    assert_eq!(v["RawEvent"], "this is {not json");
    assert!(v["RelayError"].as_str().is_some_and(|e| !e.is_empty()));
    // No event time: the receive time.
    assert_eq!(v["TimeGenerated"], "2023-11-14T22:13:20.123Z");
    assert!(v.get("Payload").is_none() || v["Payload"].is_null());

    let (out, v) = row(SourceKind::WebSocket, "\u{1}binary garbage");
    check_golden("sentinel/ws_not_json", &out);
    assert_eq!(v["Source"], "zoom_qss");
    assert!(v["RawEvent"].as_str().unwrap().contains("binary garbage"));
}

#[test]
fn an_unknown_event_name_is_a_row_like_any_other() {
    let event = r#"{"event":"zoom.something_new","payload":{"x":[1,{"y":null}]}}"#;
    let (out, v) = row(SourceKind::Webhook, event);
    check_golden("sentinel/webhook_unknown_name", &out);
    assert_eq!(v["Event"], "zoom.something_new");
    assert_eq!(v["Payload"], json!({"x": [1, {"y": null}]}));
    assert_eq!(v["TimeGenerated"], "2023-11-14T22:13:20.123Z");
}
