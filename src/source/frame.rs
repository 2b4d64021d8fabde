//! Classifying a Zoom QSS WebSocket frame, with as little parsing as possible.
//!
//! Almost every frame is an event, and Zoom writes them with a fixed prefix
//! (`{"module":"message","success":true,"content":"`): for those a prefix comparison is
//! the whole classification, and the frame goes to the spool untouched. Anything else
//! (heartbeat answers, `build_connection`, errors, and events written differently) is
//! parsed with serde_json; those frames are rare.
//!
//! Nothing here fails: a frame that is not JSON, or names a module the relay does not
//! know, is [`FrameKind::Unrecognised`], which the source keeps (spooled with a flag, so
//! it still reaches LogScale as raw text).

use serde::Deserialize;

/// The prefix of an event frame as Zoom writes it.
const EVENT_PREFIX: &[u8] = br#"{"module":"message","success":true,"content":""#;

/// What a frame is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// An event: spool it as it is.
    Event,
    /// The answer to our heartbeat.
    Heartbeat,
    /// The first frame of a connection.
    BuildConnection { success: bool, content: String },
    /// Zoom says the token is invalid (`Invalid Token`, `Token is invalid`, ...).
    TokenRejected { content: String },
    /// Another error notice from Zoom (`success:false`).
    ServerError { module: String, content: String },
    /// Not JSON, not an object, or an unknown module: kept and shipped as raw text.
    Unrecognised { reason: String },
}

#[derive(Deserialize)]
struct Probe {
    module: Option<String>,
    success: Option<bool>,
    content: Option<serde_json::Value>,
}

/// Does this text say the token is the problem?
pub(crate) fn mentions_token(content: &str) -> bool {
    content.to_ascii_lowercase().contains("token")
}

fn content_text(v: &Option<serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Classifies one frame payload.
pub(crate) fn classify(payload: &[u8]) -> FrameKind {
    if payload.starts_with(EVENT_PREFIX) {
        return FrameKind::Event;
    }
    let probe: Probe = match serde_json::from_slice(payload) {
        Ok(p) => p,
        Err(e) => {
            return FrameKind::Unrecognised {
                reason: format!("not a JSON object: {e}"),
            }
        }
    };
    let content = content_text(&probe.content);
    match probe.module.as_deref() {
        Some("message") if probe.success == Some(false) => {
            if mentions_token(&content) {
                FrameKind::TokenRejected { content }
            } else {
                FrameKind::ServerError {
                    module: "message".into(),
                    content,
                }
            }
        }
        Some("message") => FrameKind::Event,
        Some("heartbeat") => FrameKind::Heartbeat,
        Some("build_connection") => FrameKind::BuildConnection {
            success: probe.success == Some(true),
            content,
        },
        Some(other) if probe.success == Some(false) => FrameKind::ServerError {
            module: other.to_string(),
            content,
        },
        Some(other) => FrameKind::Unrecognised {
            reason: format!("unknown module {other:?}"),
        },
        None => FrameKind::Unrecognised {
            reason: "no `module` field".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_frames() {
        let text = include_str!("../../tests/fixtures/websocket-frames.ndjson");
        let kinds: Vec<FrameKind> = text.lines().map(|l| classify(l.as_bytes())).collect();
        assert_eq!(
            kinds,
            vec![
                FrameKind::BuildConnection {
                    success: true,
                    content: String::new()
                },
                FrameKind::BuildConnection {
                    success: false,
                    content: "Invalid Token".into()
                },
                FrameKind::Heartbeat,
                FrameKind::Event,
                FrameKind::TokenRejected {
                    content: "Invalid Token".into()
                },
                // An event with Zoom's full `header` (Authorization, clientId, ...).
                FrameKind::Event,
            ]
        );
    }

    #[test]
    fn events_written_differently_are_still_events() {
        assert_eq!(
            classify(br#"{"content":"{}","module":"message","header":{}}"#),
            FrameKind::Event
        );
        assert_eq!(
            classify(br#" {"module": "message", "success": true, "content": "{}"}"#),
            FrameKind::Event
        );
    }

    #[test]
    fn odd_frames_are_unrecognised_not_errors() {
        for f in [
            &b"not json"[..],
            b"",
            b"[1,2]",
            b"{\"module\":\"telemetry\"}",
            b"{}",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(classify(f), FrameKind::Unrecognised { .. }),
                "{:?}",
                String::from_utf8_lossy(f)
            );
        }
        assert_eq!(
            classify(br#"{"module":"message","success":false,"content":"rate limited"}"#),
            FrameKind::ServerError {
                module: "message".into(),
                content: "rate limited".into()
            }
        );
        assert!(matches!(
            classify(br#"{"module":"message","success":false,"content":"Token is invalid"}"#),
            FrameKind::TokenRejected { .. }
        ));
    }
}
