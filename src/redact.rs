//! [`Redaction`]: the credential-bearing fields of a Zoom frame's `header` that never leave
//! the host.
//!
//! Zoom's WebSocket event frames carry a `header` object beside `content`:
//! `Authorization` (a credential of the app), `clientId`, `x-zm-trackingid`,
//! `x-zm-signature`, `x-zm-request-timestamp`. The spool keeps the frame as received (it is
//! the relay's own disk, mode 0700); everything that leaves it (HEC events, Sentinel rows,
//! `relay spool peek/export`, `dead show`) replaces the *value* of each redacted member with
//! [`MARKER`], so the event keeps its shape (the `zoom/qss` package's parser reads
//! `content`, never `header`) and an analyst still sees that the field was there.
//! `x-zm-trackingid`, the signature and the timestamp are kept: they trace a delivery
//! with Zoom and are no credential.
//!
//! Two ways to apply it, one per form of the text:
//! - structured ([`Redaction::redact_json`] and the HEC encoder's tape walk): the members
//!   of the frame's top-level `header` object whose name matches;
//! - raw text ([`Redaction::redact_text`]), for what is not JSON (a truncated frame
//!   shipped as text) and for `export --raw`: every JSON member named so anywhere in the
//!   bytes, a superset that cannot miss a header the parser could not find.
//!
//! Names match in any letter case (`authorization`, `AUTHORIZATION`), as HTTP header
//! names do. `Authorization` is always redacted; `RELAY_REDACT_HEADER_FIELDS` adds names.

use std::borrow::Cow;
use std::sync::Arc;

/// What a redacted value becomes (a JSON string).
pub const MARKER: &str = "[REDACTED]";

/// The name that is always redacted.
pub const ALWAYS: &str = "Authorization";

/// The header member names whose values are replaced by [`MARKER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// Lower-case names, `authorization` first.
    names: Arc<[String]>,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction::with_extra(std::iter::empty::<&str>())
    }
}

impl Redaction {
    /// `Authorization` and the `extra` names (blank ones and repeats ignored).
    pub fn with_extra<S: AsRef<str>>(extra: impl IntoIterator<Item = S>) -> Redaction {
        let mut names: Vec<String> = vec![ALWAYS.to_ascii_lowercase()];
        for n in extra {
            let n = n.as_ref().trim().to_ascii_lowercase();
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        }
        Redaction {
            names: names.into(),
        }
    }

    /// No redaction at all: only for an operator who asked to see frames as received
    /// (`relay spool ... --unredacted`).
    pub fn off() -> Redaction {
        Redaction {
            names: Arc::from(Vec::new()),
        }
    }

    /// The names as configured (lower case), for `relay check` and the docs.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether a member called `key` is redacted.
    pub fn matches(&self, key: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(key))
    }

    /// Replaces, in a decoded frame, the values of the redacted members of its top-level
    /// `header` object. Returns how many it replaced.
    pub fn redact_json(&self, frame: &mut serde_json::Value) -> usize {
        let Some(header) = frame.get_mut("header").and_then(|h| h.as_object_mut()) else {
            return 0;
        };
        let mut n = 0;
        for (k, v) in header.iter_mut() {
            if self.matches(k) {
                *v = serde_json::Value::String(MARKER.into());
                n += 1;
            }
        }
        n
    }

    /// `text` with the value of every JSON member named as a redacted field replaced by
    /// `"[REDACTED]"`, wherever it is; borrowed when there is none. A string value that is
    /// not closed (a truncated frame) is replaced up to the end; any other value up to the
    /// next `,`, `}` or `]`.
    pub fn redact_text<'a>(&self, text: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        let mut i = 0;
        while let Some(q) = memchr::memchr(b'"', &text[i..]) {
            let key_start = i + q + 1;
            i = key_start;
            let Some(value) = self.member_value_at(text, key_start) else {
                continue;
            };
            let end = value_end(text, value);
            let buf = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
            buf.extend_from_slice(&text[copied..value]);
            buf.push(b'"');
            buf.extend_from_slice(MARKER.as_bytes());
            buf.push(b'"');
            copied = end;
            i = end;
        }
        match out {
            None => Cow::Borrowed(text),
            Some(mut buf) => {
                buf.extend_from_slice(&text[copied..]);
                Cow::Owned(buf)
            }
        }
    }

    /// If a redacted name followed by `"`, optional blanks, `:` and optional blanks starts
    /// at `at` (just after an opening quote), the index of the value that follows.
    fn member_value_at(&self, text: &[u8], at: usize) -> Option<usize> {
        let name = self.names.iter().find(|n| {
            text.get(at..at + n.len())
                .is_some_and(|t| t.eq_ignore_ascii_case(n.as_bytes()))
                && text.get(at + n.len()) == Some(&b'"')
        })?;
        let mut j = at + name.len() + 1;
        j += blanks(&text[j..]);
        if text.get(j) != Some(&b':') {
            return None;
        }
        j += 1;
        j += blanks(&text[j..]);
        (j < text.len()).then_some(j)
    }
}

fn blanks(text: &[u8]) -> usize {
    text.iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

/// The index just past the value starting at `start`: a string through its closing quote
/// (or the end of the text), anything else up to the next `,`, `}` or `]`.
fn value_end(text: &[u8], start: usize) -> usize {
    if text[start] == b'"' {
        let mut i = start + 1;
        while let Some(k) = memchr::memchr2(b'"', b'\\', &text[i..]) {
            i += k;
            if text[i] == b'\\' {
                i += 2;
                if i >= text.len() {
                    return text.len();
                }
            } else {
                return i + 1;
            }
        }
        text.len()
    } else {
        start + memchr::memchr3(b',', b'}', b']', &text[start..]).unwrap_or(text.len() - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Redaction, s: &str) -> String {
        String::from_utf8(r.redact_text(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn authorization_is_always_redacted_in_any_case_and_extra_names_add_to_it() {
        let r = Redaction::default();
        assert!(r.matches("Authorization") && r.matches("AUTHORIZATION"));
        assert!(!r.matches("clientId") && !r.matches("x-zm-signature"));
        let r = Redaction::with_extra(["clientId", " ", "authorization"]);
        assert_eq!(r.names(), ["authorization", "clientid"]);
        assert!(r.matches("CLIENTID"));
    }

    #[test]
    fn json_header_values_become_the_marker_and_the_rest_stays() {
        let mut v: serde_json::Value = serde_json::from_str(
            r#"{"module":"message","content":"{}","header":{"authorization":"s3cr3t","x-zm-trackingid":"T","Authorization":"again"}}"#,
        )
        .unwrap();
        assert_eq!(Redaction::default().redact_json(&mut v), 2);
        assert_eq!(v["header"]["authorization"], MARKER);
        assert_eq!(v["header"]["Authorization"], MARKER);
        assert_eq!(v["header"]["x-zm-trackingid"], "T");
        assert_eq!(v["content"], "{}");
    }

    #[test]
    fn raw_text_is_redacted_wherever_the_member_is_even_truncated() {
        let r = Redaction::default();
        assert_eq!(
            text(
                &r,
                r#"{"header":{"Authorization" : "a\"b","x":"Authorization"}}"#
            ),
            r#"{"header":{"Authorization" : "[REDACTED]","x":"Authorization"}}"#
        );
        assert_eq!(
            text(&r, r#"{"header":{"AUTHORIZATION":"cut here"#),
            r#"{"header":{"AUTHORIZATION":"[REDACTED]""#
        );
        assert_eq!(
            text(&r, r#"{"authorization":12345,"b":1}"#),
            r#"{"authorization":"[REDACTED]","b":1}"#
        );
        assert_eq!(text(&r, r#"{"authorization""#), r#"{"authorization""#);
        assert_eq!(
            text(&r, "\"authorization\":\"\\"),
            "\"authorization\":\"[REDACTED]\""
        );
        let plain = br#"{"module":"message","header":{}}"#;
        assert!(matches!(r.redact_text(plain), Cow::Borrowed(_)));
    }
}
