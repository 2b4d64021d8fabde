//! [`Dedup`]: an event that arrives on several WebSocket subscriptions is spooled once.
//!
//! Two subscriptions with the same events are two independent streams of the same events
//! (the basis of redundancy within one relay): each event comes twice, in frames whose
//! envelope and `header` may differ (a tracking id per delivery), with the same event
//! inside `content`. So the key is the event as Zoom sends it: the event name, `event_ts`
//! and the `payload` exactly as written (xxh3-128 over the three, raw, each followed by a
//! separator), never the frame.
//!
//! Bounded in time and memory: a key is remembered for [`WINDOW`] (Zoom sends an event to
//! every subscription at once, so its copies arrive milliseconds apart; a minute and more
//! is slack), and at most [`MAX_KEYS`] keys are kept, the oldest forgotten first, about
//! 56 bytes each (map entry and expiry queue): under 12 MiB. A copy arriving after its key
//! was forgotten is spooled again, a duplicate that `relay_id` cannot tell apart (it has
//! a sequence number of its own) but the event's own fields can. A frame whose key cannot
//! be computed (not JSON, no `content`, a `content` that is not an event) is kept, never
//! dropped.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

/// How long a key is remembered, in milliseconds.
pub(crate) const WINDOW: u64 = 120_000;
/// How many keys are remembered at most (100 s of 2,000 events/s).
pub(crate) const MAX_KEYS: usize = 200_000;

/// The keys seen within the window.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    seen: HashMap<u128, u64>,
    /// (when first seen, key), oldest first.
    order: VecDeque<(u64, u128)>,
}

impl Dedup {
    /// Whether the event with `key`, seen at `now_ms`, is the first copy in the window
    /// (spool it) or a duplicate (drop it).
    pub(crate) fn first(&mut self, key: u128, now_ms: u64) -> bool {
        while let Some(&(at, k)) = self.order.front() {
            if at + WINDOW > now_ms && self.order.len() < MAX_KEYS {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&k) == Some(&at) {
                self.seen.remove(&k);
            }
        }
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key, now_ms);
        self.order.push_back((now_ms, key));
        true
    }

    /// Keys remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    event_ts: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

/// The key of the event in a WebSocket event frame; `None` when it cannot be computed.
pub(crate) fn key_of(frame: &[u8]) -> Option<u128> {
    let frame: Frame<'_> = serde_json::from_slice(frame).ok()?;
    let content = frame.content?;
    let event: Event<'_> = serde_json::from_str(&content).ok()?;
    let (name, payload) = (event.event?, event.payload?);
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [
        name.get(),
        event.event_ts.map_or("", |t| t.get()),
        payload.get(),
    ] {
        h.update(part.as_bytes());
        h.update(&[0xff]);
    }
    Some(h.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(content: &str, header: &str) -> Vec<u8> {
        serde_json::json!({"module": "message", "success": true, "content": content, "header": serde_json::from_str::<serde_json::Value>(header).unwrap()})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn the_key_is_the_event_not_the_envelope() {
        let event =
            r#"{"event":"meeting.participant_qos","event_ts":1700000000123,"payload":{"a":1}}"#;
        let a = key_of(&frame(event, r#"{"x-zm-trackingid":"one"}"#)).unwrap();
        let b = key_of(&frame(
            event,
            r#"{"x-zm-trackingid":"two","Authorization":"x"}"#,
        ))
        .unwrap();
        assert_eq!(a, b, "same event, different headers");
        let later = event.replace("0123", "0124");
        assert_ne!(a, key_of(&frame(&later, "{}")).unwrap(), "another event_ts");
        let other = event.replace(r#"{"a":1}"#, r#"{"a":2}"#);
        assert_ne!(a, key_of(&frame(&other, "{}")).unwrap(), "another payload");
        // No key: not JSON, no content, content not an event. Kept by the caller.
        assert_eq!(key_of(b"not json"), None);
        assert_eq!(key_of(br#"{"module":"message"}"#), None);
        assert_eq!(key_of(&frame("{truncated", "{}")), None);
    }

    #[test]
    fn copies_within_the_window_are_dropped_and_the_memory_is_bounded() {
        let mut d = Dedup::default();
        assert!(d.first(1, 0));
        assert!(!d.first(1, 5), "the second copy");
        assert!(d.first(2, 10));
        // After the window the key is forgotten: a late copy is kept.
        assert!(d.first(1, WINDOW + 1));
        // At most MAX_KEYS keys, the oldest forgotten first.
        let mut d = Dedup::default();
        for k in 0..(MAX_KEYS as u128 + 10) {
            assert!(d.first(k, 1_000));
        }
        assert!(d.len() <= MAX_KEYS);
        assert!(
            !d.first(MAX_KEYS as u128 + 5, 1_000),
            "a recent key is still there"
        );
        assert!(d.first(0, 1_000), "the oldest was forgotten");
    }
}
