//! What the golden tests (`tests/golden_hec.rs`, `tests/golden_sentinel.rs`) share: Zoom's
//! sample events, the WebSocket frame around one, and the comparison with a golden file.

use serde_json::Value;

/// The sample lines of `tests/fixtures/{file}` exactly as written (key order kept), with
/// their parsed value.
pub fn samples(file: &str) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| (l.to_string(), serde_json::from_str(l).unwrap()))
        .collect()
}

/// A Zoom WebSocket frame carrying the event text double-encoded, as Zoom sends it.
pub fn frame(event: &str) -> String {
    let content = serde_json::to_string(event).unwrap();
    format!(r#"{{"module":"message","success":true,"content":{content},"header":{{}}}}"#)
}

/// The last sample WebSocket frame: an event with the `header` Zoom sends (`Authorization`,
/// `clientId`, `x-zm-trackingid`, `x-zm-signature`, `x-zm-request-timestamp`; made-up
/// values).
pub fn frame_with_header() -> (String, Value) {
    samples("websocket-frames.ndjson")
        .into_iter()
        .find(|(_, f)| f["header"].get("Authorization").is_some())
        .expect("a sample frame with an Authorization header")
}

/// The credential in [`frame_with_header`]: no byte of it may leave the relay.
pub const SAMPLE_CREDENTIAL: &str = "SAMPLE-verification-token-0000";

/// Compares `actual` with `tests/golden/{path}.json`; with `UPDATE_GOLDEN` set (never in
/// CI), writes it instead.
pub fn check_golden(path: &str, actual: &str) {
    let file = format!("{}/tests/golden/{path}.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        // Regenerating is a developer's step, reviewed in the diff; never in CI, where it
        // would make every comparison pass.
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !in_ci,
            "UPDATE_GOLDEN is set in CI: golden files are compared there"
        );
        std::fs::write(&file, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("missing golden file {file}"));
    assert_eq!(
        actual, expected,
        "output for {path} changed (UPDATE_GOLDEN=1 to accept)"
    );
}
