//! Golden tests: the exact HEC output for each kind of event, so that LogScale's
//! `zoom_qss` parser and the package's dashboards keep receiving the old script's shape.
//!
//! Inputs are Zoom's sample events (`tests/fixtures/`, copied from the shared reference);
//! expected outputs are in `tests/golden/`. After an intended change of the output, run
//! `UPDATE_GOLDEN=1 cargo test --test golden_hec` and review the diff.

mod common;

use bytes::Bytes;
use common::golden::{check_golden, frame, frame_with_header, samples, SAMPLE_CREDENTIAL};
use qss_relay::ship::hec::{Encoder, HecSettings};
use qss_relay::spool::{flags, Record, SourceKind};
use serde_json::{json, Value};

fn encoder() -> Encoder {
    Encoder::new(HecSettings {
        host: "relay-host".into(),
        index: Some("zoom".into()),
        spool_id: "0123456789abcdef".into(),
        webhook_sourcetype: "zoom_webhook".into(),
        redact: Default::default(),
    })
}

fn qss_event(name: &str) -> String {
    samples("qss-events.ndjson")
        .into_iter()
        .find(|(_, e)| e["event"] == name)
        .unwrap_or_else(|| panic!("no sample for {name}"))
        .0
}

fn record(kind: SourceKind, payload: &str, fl: u8) -> Record {
    Record {
        seq: 42,
        received_ms: 1_700_000_000_123,
        kind,
        flags: fl,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

fn encode(kind: SourceKind, payload: &str, fl: u8) -> String {
    let mut out = Vec::new();
    encoder().encode(&record(kind, payload, fl), &mut out);
    let text = String::from_utf8(out).expect("output is UTF-8");
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "one line per event: {text}"
    );
    serde_json::from_str::<Value>(&text).expect("output is valid JSON");
    text
}

fn parsed(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

#[test]
fn meeting_participant_qos() {
    let out = encode(
        SourceKind::WebSocket,
        &frame(&qss_event("meeting.participant_qos")),
        0,
    );
    check_golden("ws_meeting.participant_qos", &out);
    let v = parsed(&out);
    assert_eq!(v["time"], json!(1626230691.572));
    assert_eq!(v["source"], "zoom_websocket");
    assert_eq!(v["sourcetype"], "zoom_qss");
    assert_eq!(v["host"], "relay-host");
    assert_eq!(v["index"], "zoom");
    assert_eq!(v["fields"], json!({"relay_id": "0123456789abcdef:42"}));
    assert_eq!(v["event"]["module"], "message");
    assert_eq!(v["event"]["header"], json!({}));
    let qos = &v["event"]["content"]["payload"]["object"]["participant"]["qos"];
    assert_eq!(qos["audio_input"]["bitrate"], "63 kbps");
    assert_eq!(qos["audio_input"]["date_time"], "2021-07-13T21:44:51Z");
    assert_eq!(qos["video_input"]["frame_rate"], "24 fps");
    assert_eq!(qos["cpu_usage"]["zoom_avg_cpu_usage"], "5%");
    assert_eq!(qos.as_object().unwrap().len(), 3);
}

/// Zoom's `Authorization` header never reaches LogScale: its value becomes `[REDACTED]`,
/// the header keeps its shape and the tracing fields, and the content is the same as for a
/// frame with an empty header.
#[test]
fn the_authorization_header_is_redacted_and_the_rest_of_the_header_kept() {
    let (text, sample) = frame_with_header();
    let out = encode(SourceKind::WebSocket, &text, 0);
    check_golden("ws_header_redacted", &out);
    assert!(!out.contains(SAMPLE_CREDENTIAL), "{out}");
    let v = parsed(&out);
    let header = &v["event"]["header"];
    assert_eq!(header["Authorization"], "[REDACTED]");
    for kept in [
        "clientId",
        "x-zm-trackingid",
        "x-zm-signature",
        "x-zm-request-timestamp",
    ] {
        assert_eq!(header[kept], sample["header"][kept], "{kept} is kept");
    }
    assert_eq!(
        header.as_object().unwrap().len(),
        5,
        "the header keeps its shape"
    );
    let content: Value = serde_json::from_str(sample["content"].as_str().unwrap()).unwrap();
    let bare = parsed(&encode(
        SourceKind::WebSocket,
        &frame(&serde_json::to_string(&content).unwrap()),
        0,
    ));
    assert_eq!(v["event"]["content"], bare["event"]["content"]);

    // Every other way the encoder writes a frame redacts too: pretty-printed (written from
    // the tape), a `content` that is not JSON, a frame cut short (shipped as raw text), and
    // the member name in another letter case.
    let pretty = serde_json::to_string_pretty(&sample).unwrap();
    let mut odd = sample.clone();
    odd["content"] = json!("{not json");
    let cut = &text[..text.len() - 40];
    let lower = text.replace("\"Authorization\"", "\"authorization\"");
    for (what, input) in [
        ("pretty", pretty.as_str()),
        ("content not JSON", &odd.to_string()),
        ("cut short", cut),
        ("lower case", &lower),
    ] {
        let out = encode(SourceKind::WebSocket, input, 0);
        assert!(!out.contains(SAMPLE_CREDENTIAL), "{what}: {out}");
        assert!(out.contains("[REDACTED]"), "{what}: {out}");
    }
}

#[test]
fn meeting_participant_qos_summary() {
    let out = encode(
        SourceKind::WebSocket,
        &frame(&qss_event("meeting.participant_qos_summary")),
        0,
    );
    check_golden("ws_meeting.participant_qos_summary", &out);
    let qos = &parsed(&out)["event"]["content"]["payload"]["object"]["participant"]["qos"];
    // No date_time on summary items: details as they are.
    assert_eq!(qos["audio_input"]["avg_bitrate"], "63 kbps");
    assert!(qos["audio_input"].get("date_time").is_none());
}

#[test]
fn meeting_participant_data() {
    let out = encode(
        SourceKind::WebSocket,
        &frame(&qss_event("meeting.participant_data")),
        0,
    );
    check_golden("ws_meeting.participant_data", &out);
    let data = &parsed(&out)["event"]["content"]["payload"]["object"]["participant"]["data"];
    assert_eq!(data["device"], "Mac");
    assert_eq!(data["camera"], "FaceTime HD Camera");
}

#[test]
fn webinar_participant_qos() {
    let out = encode(
        SourceKind::WebSocket,
        &frame(&qss_event("webinar.participant_qos")),
        0,
    );
    check_golden("ws_webinar.participant_qos", &out);
    let qos = &parsed(&out)["event"]["content"]["payload"]["object"]["participant"]["qos"];
    assert!(qos.is_object());
}

#[test]
fn phone_call_qos_and_session_user_qos_are_left_as_they_are() {
    for name in ["phone.call_qos", "session.user_qos"] {
        let event = qss_event(name);
        let out = encode(SourceKind::WebSocket, &frame(&event), 0);
        check_golden(&format!("ws_{name}"), &out);
        assert_eq!(
            parsed(&out)["event"]["content"],
            parsed(&event),
            "{name} content unchanged"
        );
        // Not just equal: byte for byte the same text.
        assert!(out.contains(&event), "{name} content is copied verbatim");
    }
}

#[test]
fn an_unknown_event_name_is_shipped_unchanged() {
    let event = r#"{"event":"meeting.hologram_qos_v9","event_ts":1700000000999,"payload":{"object":{"participant":{"qos":[{"type":"smell_input"}],"weird":[1,2]}}}}"#;
    let out = encode(SourceKind::WebSocket, &frame(event), 0);
    check_golden("ws_unknown_name", &out);
    let v = parsed(&out);
    assert_eq!(v["time"], json!(1700000000.999));
    // Still contains `_qos` with the participant path: transformed like the others.
    assert_eq!(
        v["event"]["content"]["payload"]["object"]["participant"]["qos"],
        json!({"smell_input": {}})
    );

    let event = r#"{"event":"zoom.something_new","payload":{"x":[1,{"y":null}]}}"#;
    let out = encode(SourceKind::WebSocket, &frame(event), 0);
    let v = parsed(&out);
    assert_eq!(v["event"]["content"], parsed(event));
    // No event_ts: the receive time kept in the spool.
    assert_eq!(v["time"], json!(1700000000.123));
}

#[test]
fn repeated_qos_types_keep_the_first_position_and_the_last_value() {
    let event = r#"{"event":"meeting.participant_qos","event_ts":1,
        "payload":{"object":{"participant":{"qos":[
            {"type":"a","details":{"v":1},"date_time":"t1"},
            {"type":"b","details":{"v":2}},
            {"type":"a","details":{"v":3,"date_time":"old","w":4},"date_time":"t3"},
            {"type":"c","date_time":"t4"},
            {"type":"d","details":"odd"}
        ]}}}}"#;
    let out = encode(SourceKind::WebSocket, &frame(event), 0);
    let content = &out[out.find("\"qos\":").unwrap()..];
    assert!(
        content.starts_with(r#""qos":{"a":{"v":3,"date_time":"t3","w":4},"b":{"v":2},"c":{"date_time":"t4"},"d":"odd"}"#),
        "{content}"
    );
}

#[test]
fn odd_qos_and_data_shapes_are_left_alone() {
    let event = r#"{"event":"meeting.participant_qos","payload":{"object":{"participant":{"qos":[1,{"type":"x"}]}}}}"#;
    let v = parsed(&encode(SourceKind::WebSocket, &frame(event), 0));
    assert_eq!(v["event"]["content"], parsed(event));
    let event =
        r#"{"event":"meeting.participant_data","payload":{"object":{"participant":{"data":[]}}}}"#;
    let v = parsed(&encode(SourceKind::WebSocket, &frame(event), 0));
    assert_eq!(v["event"]["content"], parsed(event));
}

#[test]
fn a_frame_that_is_not_json_is_shipped_as_raw_text() {
    let out = encode(SourceKind::WebSocket, "this is {not json", flags::MALFORMED);
    check_golden("ws_not_json", &out);
    let v = parsed(&out);
    assert_eq!(v["event"], "this is {not json");
    assert_eq!(v["time"], json!(1700000000.123));
    assert!(v["fields"]["relay_error"]
        .as_str()
        .unwrap()
        .contains("not recognised"));

    // Even without the source's flag, the encoder notices.
    let v = parsed(&encode(SourceKind::WebSocket, "\u{1}\"{", 0));
    assert_eq!(v["event"], "\u{1}\"{");
    assert!(v["fields"]["relay_error"].is_string());
    let v = parsed(&encode(SourceKind::WebSocket, "[1,2]", 0));
    assert_eq!(v["event"], "[1,2]");
}

#[test]
fn content_that_is_not_json_is_kept_as_a_string() {
    let f = json!({"module": "message", "success": true, "content": "{truncated", "header": {}})
        .to_string();
    let v = parsed(&encode(SourceKind::WebSocket, &f, 0));
    assert_eq!(v["event"]["content"], "{truncated");
    assert!(v["fields"]["relay_error"]
        .as_str()
        .unwrap()
        .contains("content is not JSON"));
}

#[test]
fn webhook_events_keep_their_body_and_qss_webhooks_get_the_envelope() {
    for (text, body) in samples("webhook-bodies.ndjson") {
        let name = body["event"].as_str().unwrap().to_string();
        if name == "endpoint.url_validation" {
            continue;
        }
        let out = encode(SourceKind::Webhook, &text, 0);
        check_golden(&format!("webhook_{name}"), &out);
        let v = parsed(&out);
        assert_eq!(v["source"], "zoom_webhook");
        assert_eq!(v["sourcetype"], "zoom_webhook");
        assert_eq!(v["event"], body);
        assert!(out.contains(&text), "the body is sent as Zoom sent it");
        assert_eq!(v["time"], json!(1626230691.572));
    }
    let body = qss_event("meeting.participant_qos");
    let out = encode(SourceKind::Webhook, &body, 0);
    check_golden("webhook_meeting.participant_qos", &out);
    let v = parsed(&out);
    assert_eq!(v["source"], "zoom_webhook");
    assert_eq!(v["sourcetype"], "zoom_qss");
    assert_eq!(v["event"]["module"], "message");
    // The same event through either source leaves with the same content.
    let ws = parsed(&encode(SourceKind::WebSocket, &frame(&body), 0));
    assert_eq!(v["event"]["content"], ws["event"]["content"]);
}

#[test]
fn a_pretty_printed_webhook_body_becomes_one_line() {
    let body = serde_json::to_string_pretty(
        &json!({"event": "user.signed_in", "event_ts": 5, "payload": {"a": "b\nc"}}),
    )
    .unwrap();
    let v = parsed(&encode(SourceKind::Webhook, &body, 0));
    assert_eq!(v["event"]["payload"]["a"], "b\nc");
}

#[test]
fn pretty_printed_or_escaped_input_gives_the_same_event_as_compact_input() {
    let compact = qss_event("meeting.participant_qos");
    let reference = parsed(&encode(SourceKind::WebSocket, &frame(&compact), 0));
    let value: Value = serde_json::from_str(&compact).unwrap();
    // Content with line breaks: written from the tape, one line all the same.
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    let out = encode(SourceKind::WebSocket, &frame(&pretty), 0);
    assert_eq!(parsed(&out)["event"], reference["event"]);
    // A pretty-printed envelope.
    let envelope = serde_json::to_string_pretty(
        &json!({"module": "message", "success": true, "content": compact, "header": {}}),
    )
    .unwrap();
    let out = encode(SourceKind::WebSocket, &envelope, 0);
    assert_eq!(
        parsed(&out)["event"]["content"],
        reference["event"]["content"]
    );
    // Keys written with escapes (`\u0071os` is `qos`): still found and transformed.
    let escaped = compact.replace("\"qos\"", "\"\\u0071os\"");
    let out = encode(SourceKind::WebSocket, &frame(&escaped), 0);
    assert_eq!(
        parsed(&out)["event"]["content"],
        reference["event"]["content"]
    );
    // The same through the webhook path.
    let out = encode(SourceKind::Webhook, &pretty, 0);
    assert_eq!(
        parsed(&out)["event"]["content"],
        reference["event"]["content"]
    );
}
