//! The detection fixtures as the relay ships them. `detections/run` expands each case of
//! `detections/fixtures/*.yml` into webhook bodies (`detections/fixtures/bodies/`); this
//! test encodes every body with the relay's own encoders, as the HEC line LogScale
//! receives and as the `ZoomLogs_CL` row Sentinel receives, and compares the result with
//! `detections/fixtures/shipped/`, which the detection tests evaluate the rules on. So a
//! change of the shipped shape that would break a detection fails here first.
//! `UPDATE_GOLDEN=1 cargo test --test detections_shipped` rewrites the shipped files.

use bytes::Bytes;
use qss_relay::ship::hec::{Encoder, HecSettings};
use qss_relay::ship::sentinel::record::RowEncoder;
use qss_relay::spool::{Record, SourceKind};
use serde_json::{json, Value};
use std::path::Path;

fn record(seq: u64, received_ms: u64, body: &str) -> Record {
    Record {
        seq,
        received_ms,
        kind: SourceKind::Webhook,
        flags: 0,
        payload: Bytes::copy_from_slice(body.as_bytes()),
    }
}

/// One shipped line per body line: the case, what the rule should do, and both forms.
fn shipped(bodies: &str) -> String {
    let mut hec = Encoder::new(HecSettings {
        host: "relay-host".into(),
        index: Some("zoom".into()),
        spool_id: "0123456789abcdef".into(),
        webhook_sourcetype: "zoom_webhook".into(),
        redact: Default::default(),
    });
    let mut rows = RowEncoder::new("0123456789abcdef", Default::default());
    let mut out = String::new();
    for (seq, line) in bodies.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let case: Value = serde_json::from_str(line).expect("a bodies line is JSON");
        let body = serde_json::to_string(&case["body"]).unwrap();
        let received_ms = case["body"]["event_ts"].as_u64().unwrap_or(0);
        let r = record(seq as u64, received_ms, &body);
        let mut line = Vec::new();
        hec.encode(&r, &mut line);
        let hec_line: Value = serde_json::from_slice(&line).expect("HEC line is JSON");
        let mut row = Vec::new();
        rows.encode(&r, &mut row);
        let row = std::str::from_utf8(&row).unwrap().trim_end_matches(',');
        let row: Value = serde_json::from_str(row).expect("row is JSON");
        let shipped = json!({
            "case": case["case"],
            "expect": case["expect"],
            "hec": hec_line,
            "sentinel": row,
        });
        out.push_str(&serde_json::to_string(&shipped).unwrap());
        out.push('\n');
    }
    out
}

#[test]
fn the_detection_fixtures_are_shipped_as_the_relay_ships_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("detections/fixtures");
    let mut bodies: Vec<_> = std::fs::read_dir(root.join("bodies"))
        .expect("detections/fixtures/bodies (made by `detections/run generate`)")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    bodies.sort();
    assert!(bodies.len() >= 8, "one bodies file per rule: {bodies:?}");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(!(update && in_ci), "UPDATE_GOLDEN is set in CI");
    for path in bodies {
        let expected_path = root.join("shipped").join(path.file_name().unwrap());
        let actual = shipped(&std::fs::read_to_string(&path).unwrap());
        if update {
            std::fs::create_dir_all(expected_path.parent().unwrap()).unwrap();
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        assert_eq!(
            actual,
            expected,
            "{} is not what the relay ships for {} (UPDATE_GOLDEN=1 to accept, then `detections/run check`)",
            expected_path.display(),
            path.display()
        );
    }
}
