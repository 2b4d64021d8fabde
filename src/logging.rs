//! Logging: tracing to stderr, level from `RUST_LOG` (default `info`), `text` or `json`
//! lines (`RELAY_LOG_FORMAT`), colours only on a terminal (journald gets plain text).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Log line format (`RELAY_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub(crate) fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(ansi).with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// Rate limit for a log line that a persistent condition would otherwise repeat at every
/// commit or request (a full disk, a full spool): at most one line per interval, carrying
/// how many were held back since the last one.
pub(crate) struct LogThrottle {
    interval_ms: u64,
    /// Milliseconds since the epoch of the last line let through (0: none yet).
    last_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogThrottle {
    pub(crate) const fn new(interval: std::time::Duration) -> LogThrottle {
        LogThrottle {
            interval_ms: interval.as_millis() as u64,
            last_ms: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(n)` if a line may be written now, `n` being the lines held back since the
    /// last one; `None` to stay quiet.
    pub(crate) fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = crate::time::now_ms();
        let last = self.last_ms.load(Relaxed);
        if last != 0 && now.saturating_sub(last) < self.interval_ms {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        if self
            .last_ms
            .compare_exchange(last, now.max(1), Relaxed, Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::LogThrottle;
    use std::time::Duration;

    #[test]
    fn a_throttle_lets_one_line_through_per_interval_and_counts_the_rest() {
        let t = LogThrottle::new(Duration::from_millis(200));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.allow(), Some(2));
        assert_eq!(t.allow(), None);
    }
}
