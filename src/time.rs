//! Wall-clock time as the relay records it: milliseconds since the Unix epoch (receive
//! times in the spool, ages in `inspect`, idle timers), and how it is written for people
//! (RFC 3339). Shared by every component.

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 time of a millisecond timestamp: `2026-11-23T10:00:00.000Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}
