//! Backoff, shared by the sources (reconnects, token renewal) and the destinations
//! (retries): exponential with full jitter (AWS's "full jitter": a uniform draw between zero
//! and the exponential bound), capped; a server's `Retry-After` wins when present.

use std::time::Duration;

/// Backoff parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The shipper's: 500 ms doubling, capped at 60 s.
    pub(crate) const SHIP: Backoff = Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(60),
    };

    /// The bound for retry number `attempt` (0-based).
    pub(crate) fn bound(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A full-jitter delay for retry number `attempt`.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let bound = self.bound(attempt).as_millis() as u64;
        Duration::from_millis(fastrand::u64(0..=bound))
    }

    /// `Retry-After` (capped at 10 minutes) if the server sent one, else a jittered delay.
    pub(crate) fn delay_with_hint(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(Duration::from_secs(600)),
            None => self.delay(attempt),
        }
    }
}

/// Parses `Retry-After`: seconds, or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_and_cap() {
        let b = Backoff::SHIP;
        assert_eq!(b.bound(0), Duration::from_millis(500));
        assert_eq!(b.bound(3), Duration::from_secs(4));
        assert_eq!(b.bound(50), Duration::from_secs(60));
        for a in 0..30 {
            assert!(b.delay(a) <= b.bound(a));
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            Backoff::SHIP.delay_with_hint(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(600)
        );
    }
}
