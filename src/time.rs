//! Wall-clock time as the relay records it: milliseconds since the Unix epoch (receive
//! times in the spool, ages in `inspect`, idle timers). Shared by every component.

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
