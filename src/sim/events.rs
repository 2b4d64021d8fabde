//! Realistic QSS events for the simulator, the tests and the benchmarks.
//!
//! Shapes follow Zoom's documentation and the samples in `tests/fixtures/`: meeting and
//! webinar participant QoS with several qos types (the bulk of real traffic, one event per
//! participant per minute), summaries, data events, `phone.call_qos`, `session.*`, and a
//! name Zoom has not invented yet. The mix averages about 1.5 KB per WebSocket frame.
//!
//! Every event's `event_ts` is [`BASE_TS`] + its number, so a receiver can tell events
//! apart and count losses and duplicates from the HEC `time` alone. Frames are built once
//! as templates; producing one is a copy, the timestamp, and fresh digits for the ids
//! and measurements (so that compression sees realistic variety, not 300 repeats).

use bytes::{Bytes, BytesMut};

/// `event_ts` of event number 0 (ms). Event `n` has `event_ts = BASE_TS + n`.
pub const BASE_TS: u64 = 1_700_000_000_000;

/// The event kinds, with their share of the mix (out of 100).
pub const KINDS: &[(&str, u32)] = &[
    ("meeting.participant_qos", 46),
    ("webinar.participant_qos", 10),
    ("meeting.participant_qos_summary", 6),
    ("webinar.participant_qos_summary", 2),
    ("meeting.participant_data", 6),
    ("meeting.participant_data_summary", 2),
    ("webinar.participant_data", 2),
    ("phone.call_qos", 14),
    ("phone.call_qos_summary", 2),
    ("session.user_qos", 5),
    ("session.user_qos_summary", 2),
    ("session.user_data", 2),
    ("meeting.participant_hologram_qos", 1),
];

const QOS_TYPES: &[&str] = &[
    "audio_input",
    "audio_output",
    "video_input",
    "video_output",
    "as_input",
    "as_output",
    "cpu_usage",
    "audio_device_from_crc",
    "video_device_to_rwg",
    "wifi_rssi",
];

fn qos_item(ty: &str, v: usize, with_date: bool) -> String {
    let details = match ty {
        "cpu_usage" => format!(
            r#"{{"zoom_min_cpu_usage":"{}%","zoom_avg_cpu_usage":"{}%","zoom_max_cpu_usage":"{}%","system_max_cpu_usage":"{}%"}}"#,
            1 + v % 3,
            4 + v % 5,
            9 + v % 7,
            30 + v % 40
        ),
        "wifi_rssi" => format!(
            r#"{{"max_rssi":"-{}","avg_rssi":"-{}","min_rssi":"-{}","rssi_unit":"dBm"}}"#,
            40 + v % 5,
            50 + v % 5,
            56 + v % 9
        ),
        t if t.starts_with("video") => format!(
            r#"{{"bitrate":"{}.{} Mbps","latency":"{} ms","jitter":"{} ms","avg_loss":"0.{}%","max_loss":"{}.{}%","resolution":"1280*720","frame_rate":"{} fps"}}"#,
            1 + v % 2,
            v % 10,
            60 + v % 80,
            2 + v % 9,
            v % 10,
            v % 3,
            v % 10,
            20 + v % 11
        ),
        _ => format!(
            r#"{{"bitrate":"{} kbps","latency":"{} ms","jitter":"{} ms","avg_loss":"0.{}%","max_loss":"{}.{}%","quality":"good","quality_score":"3.{}","min_rssi":"-56","avg_rssi":"-50","max_rssi":"-44","rssi_unit":"dBm"}}"#,
            27 + v % 60,
            80 + v % 90,
            3 + v % 7,
            v % 10,
            v % 2,
            v % 10,
            v % 100
        ),
    };
    if with_date {
        format!(
            r#"{{"date_time":"2023-11-14T22:13:{:02}Z","type":"{ty}","details":{details}}}"#,
            v % 60
        )
    } else {
        format!(r#"{{"type":"{ty}","details":{details}}}"#)
    }
}

/// The event JSON of variant `v` of `kind`, with a 13-digit `event_ts` of `ts`.
pub fn event_json(kind: &str, v: usize, ts: u64) -> String {
    let participant = |body: &str| {
        format!(
            r#"{{"event":"{kind}","event_ts":{ts},"payload":{{"account_id":"AAAAAABBBB","object":{{"uuid":"{v:04}AAAiAAAAAiAiAiiAii==","id":"8{v:09}","participant":{{"user_id":"16{v:06}","participant_user_id":"rstuvwxyza{v:03}-cde","user_name":"Participant {v}","email":"user{v}@example.com",{body}}}}}}}}}"#
        )
    };
    if kind.ends_with("_data") || kind.ends_with("_data_summary") {
        if kind.starts_with("session.") {
            return format!(
                r#"{{"event":"{kind}","event_ts":{ts},"payload":{{"account_id":"AAAAAABBBB","object":{{"session_id":"s{v}==","session_name":"Session {v}","user":{{"id":"u{v}","name":"User {v}","data":[{{"device":"iPhone","network_type":"Cellular","version":"5.16.{}"}}]}}}}}}}}"#,
                v % 10
            );
        }
        return participant(&format!(
            r#""data":[{{"device":"Mac","network_type":"Wifi","ip_address":"192.0.2.{}","location":"San Jose (US)","data_center":"US (SJ)","connection_type":"UDP","version":"5.17.{}","microphone":"MacBook Pro Microphone","speaker":"MacBook Pro Speakers","camera":"FaceTime HD Camera","share_application":"","share_desktop":"","share_whiteboard":""}}]"#,
            v % 250,
            v % 10
        ));
    }
    if kind.starts_with("phone.") {
        return format!(
            r#"{{"event":"{kind}","event_ts":{ts},"payload":{{"account_id":"AAAAAABBBB","object":{{"call_id":"70154043894746{v:05}","caller_number":"+1555010{:04}","callee_number":"+1555020{:04}","call_qos":{{"qos":{{"mos":"4.{}","network_delay":"{}ms","jitter":"{}ms","packet_loss":"0.{}%","bitrate":"{}kbps","codec":"OPUS"}}}}}}}}}}"#,
            v % 10000,
            (v * 7) % 10000,
            v % 5,
            15 + v % 30,
            1 + v % 5,
            v % 10,
            30 + v % 40
        );
    }
    let summary = kind.ends_with("_summary");
    let n_qos = if summary { 4 } else { 3 + v % 7 };
    let items: Vec<String> = (0..n_qos)
        .map(|i| qos_item(QOS_TYPES[(v + i) % QOS_TYPES.len()], v + i, !summary))
        .collect();
    let qos = format!(r#""qos":[{}]"#, items.join(","));
    if kind.starts_with("session.") {
        return format!(
            r#"{{"event":"{kind}","event_ts":{ts},"payload":{{"account_id":"AAAAAABBBB","object":{{"session_id":"s{v}==","session_name":"Session {v}","user":{{"id":"u{v}","name":"User {v}",{qos}}}}}}}}}"#
        );
    }
    participant(&qos)
}

/// A Zoom WebSocket message frame carrying `event` (double-encoded, as Zoom sends it).
pub fn ws_frame(event: &str) -> String {
    let content = serde_json::to_string(event).expect("a string serializes");
    format!(r#"{{"module":"message","success":true,"content":{content},"header":{{}}}}"#)
}

/// One template: bytes with a 13-digit timestamp at `ts_at`, and the positions of the
/// other digits, which every frame fills anew (measurements, ids) so that frames differ
/// the way real ones do and compression ratios stay realistic.
struct Template {
    bytes: Vec<u8>,
    ts_at: usize,
    digits: Vec<u32>,
}

/// Digit positions of `text` outside the timestamp and the `date_time` values.
fn variable_digits(text: &str, ts_at: usize) -> Vec<u32> {
    let bytes = text.as_bytes();
    let mut fixed = vec![false; bytes.len()];
    fixed[ts_at..ts_at + 13].iter_mut().for_each(|f| *f = true);
    let mut from = 0;
    while let Some(i) = text[from..].find("2023-11-14T") {
        let at = from + i;
        fixed[at..(at + 20).min(bytes.len())]
            .iter_mut()
            .for_each(|f| *f = true);
        from = at + 1;
    }
    (0..bytes.len())
        .filter(|&i| bytes[i].is_ascii_digit() && !fixed[i])
        .map(|i| i as u32)
        .collect()
}

/// A fast deterministic mix (splitmix64).
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Produces frames (or webhook bodies) numbered from 0, cycling through the kind mix.
pub struct FrameFactory {
    templates: Vec<Template>,
}

impl FrameFactory {
    /// WebSocket frames, in the mix of [`KINDS`].
    pub fn websocket() -> FrameFactory {
        Self::build(true)
    }

    /// Webhook bodies (the event JSON itself), in the same mix.
    pub fn webhook() -> FrameFactory {
        Self::build(false)
    }

    fn build(frames: bool) -> FrameFactory {
        let mut templates = Vec::new();
        let mut v = 0usize;
        // 100 slots per round, 3 rounds: 300 templates with varied sizes and values.
        for _round in 0..3 {
            for (kind, share) in KINDS {
                for _ in 0..*share {
                    let event = event_json(kind, v, BASE_TS);
                    let text = if frames { ws_frame(&event) } else { event };
                    let ts_at = text
                        .find("1700000000000")
                        .expect("template has the base timestamp");
                    let digits = variable_digits(&text, ts_at);
                    templates.push(Template {
                        bytes: text.into_bytes(),
                        ts_at,
                        digits,
                    });
                    v += 1;
                }
            }
        }
        // Interleave kinds instead of runs of one kind.
        let n = templates.len();
        let mut mixed = Vec::with_capacity(n);
        let stride = 37; // coprime with 300
        for i in 0..n {
            mixed.push(i * stride % n);
        }
        let mut slots: Vec<Option<Template>> = templates.into_iter().map(Some).collect();
        let templates = mixed
            .into_iter()
            .map(|i| slots[i].take().expect("a permutation"))
            .collect();
        FrameFactory { templates }
    }

    /// Frame number `n`: `event_ts = BASE_TS + n`.
    pub fn frame(&self, n: u64) -> Bytes {
        let t = &self.templates[(n % self.templates.len() as u64) as usize];
        let mut b = BytesMut::from(&t.bytes[..]);
        let digits = format!("{:013}", BASE_TS + n);
        b[t.ts_at..t.ts_at + 13].copy_from_slice(digits.as_bytes());
        // Ids and measurements: fresh digits for every frame (deterministic in `n`).
        let mut r = mix64(n);
        for (k, &pos) in t.digits.iter().enumerate() {
            if k % 16 == 0 {
                r = mix64(r ^ k as u64);
            }
            b[pos as usize] = b'0' + ((r >> ((k % 16) * 4)) & 0xf) as u8 % 10;
        }
        b.freeze()
    }

    /// Average size of a frame in bytes.
    pub fn average_len(&self) -> usize {
        self.templates.iter().map(|t| t.bytes.len()).sum::<usize>() / self.templates.len()
    }

    /// The event name of frame `n` (tests).
    pub fn kind_of(&self, n: u64) -> String {
        let t = &self.templates[(n % self.templates.len() as u64) as usize];
        let text = String::from_utf8_lossy(&t.bytes);
        let key = if text.starts_with("{\"module\"") {
            "\\\"event\\\":\\\""
        } else {
            "\"event\":\""
        };
        let start = text.find(key).map(|i| i + key.len()).unwrap_or(0);
        let end = text[start..].find(['\\', '"']).map_or(start, |e| start + e);
        text[start..end].to_string()
    }
}

/// The sim number of an event from its HEC `time` (seconds, ms precision).
pub fn sim_number(time_secs: f64) -> Option<u64> {
    let ms = (time_secs * 1000.0).round() as u64;
    ms.checked_sub(BASE_TS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_valid_and_numbered() {
        let f = FrameFactory::websocket();
        for n in [0u64, 1, 299, 300, 123_456_789] {
            let frame = f.frame(n);
            let v: serde_json::Value = serde_json::from_slice(&frame).unwrap();
            assert_eq!(v["module"], "message");
            let content: serde_json::Value =
                serde_json::from_str(v["content"].as_str().unwrap()).unwrap();
            assert_eq!(content["event_ts"].as_u64().unwrap(), BASE_TS + n);
            assert_eq!(content["event"].as_str().unwrap(), f.kind_of(n));
        }
        let avg = f.average_len();
        assert!((1200..2000).contains(&avg), "average frame is {avg} bytes");
        let w = FrameFactory::webhook();
        let v: serde_json::Value = serde_json::from_slice(&w.frame(5)).unwrap();
        assert_eq!(v["event_ts"].as_u64().unwrap(), BASE_TS + 5);
        let kinds: std::collections::HashSet<String> = (0..300).map(|n| f.kind_of(n)).collect();
        assert_eq!(kinds.len(), KINDS.len());
    }

    #[test]
    fn sim_numbers_round_trip_through_hec_time() {
        for n in [0u64, 1, 999, 1000, 86_400_000] {
            let ms = BASE_TS + n;
            let text = format!("{}.{:03}", ms / 1000, ms % 1000);
            assert_eq!(sim_number(text.parse().unwrap()), Some(n));
        }
    }
}
