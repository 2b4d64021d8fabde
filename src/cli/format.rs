//! Number formatting for people: sizes, counts, ages.

use std::time::Duration;

/// `1536` → `1.5 KiB`.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `1234567` → `1,234,567`.
pub(super) fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `7384` seconds → `2h 3m 4s`.
pub(super) fn age(secs: f64) -> String {
    let d = Duration::from_secs(secs.max(0.0) as u64);
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string()
}

/// A millisecond timestamp as RFC 3339 with its age: `2026-11-23T10:00:00.000Z (2h 3m ago)`.
pub(super) fn when(ms: u64) -> String {
    let now = crate::time::now_ms();
    let ago = now.saturating_sub(ms) as f64 / 1000.0;
    format!("{} ({} ago)", crate::time::rfc3339_ms(ms), age(ago))
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(10 << 30), "10.0 GiB");
        assert_eq!(super::count(1234567), "1,234,567");
        assert_eq!(super::count(12), "12");
        assert_eq!(super::age(7384.0), "2h 3m 4s");
    }
}
