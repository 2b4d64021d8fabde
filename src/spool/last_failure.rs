//! The record of the spool's last storage failure, kept across restarts.
//!
//! A failed write or `fsync` makes the relay exit within milliseconds for its service
//! manager to restart it (`Spool::fail`), too soon for any scrape of `relay_spool_failed`
//! to see the 1. So the failing run also leaves a small file, `last-storage-failure`, in
//! the spool directory (time and reason), and every later run reads it: the start log
//! says when the last failure was, `inspect` shows it, and
//! `relay_spool_last_failure_timestamp_seconds` carries its time (alert on it changing).
//!
//! The file is written without `fsync`: it is written because the disk just failed a
//! sync, and a write that reaches the page cache survives the process restart that
//! follows (not a power cut, after which the log and the exit status are what remain).
//! Failing to write it changes nothing else.

use serde::{Deserialize, Serialize};
use std::path::Path;

const FILE: &str = "last-storage-failure";

/// When the spool last failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailure {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub reason: String,
}

impl LastFailure {
    /// Records a failure now in `dir` (best effort: returns whether it was written).
    pub(super) fn record(dir: &Path, reason: &str) -> (LastFailure, bool) {
        let failure = LastFailure {
            at_ms: crate::time::now_ms(),
            reason: reason.to_string(),
        };
        let text = format!("{} {}\n", failure.at_ms, failure.reason.replace('\n', " "));
        let written = std::fs::write(dir.join(FILE), text).is_ok();
        (failure, written)
    }

    /// Its time as `relay_spool_last_failure_timestamp_seconds` carries it.
    pub fn unix_seconds(&self) -> f64 {
        self.at_ms as f64 / 1000.0
    }

    /// The last failure recorded in `dir`, if any (an unreadable record is none).
    pub(super) fn read(dir: &Path) -> Option<LastFailure> {
        let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
        let (at, reason) = text.trim_end().split_once(' ')?;
        Some(LastFailure {
            at_ms: at.parse().ok()?,
            reason: reason.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_failure_reads_back_and_garbage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LastFailure::read(dir.path()), None);
        let (failure, written) = LastFailure::record(dir.path(), "I/O error in /x: EIO\nmore");
        assert!(written);
        assert_eq!(failure.reason, "I/O error in /x: EIO\nmore");
        let back = LastFailure::read(dir.path()).unwrap();
        assert_eq!(back.at_ms, failure.at_ms);
        assert_eq!(back.reason, "I/O error in /x: EIO more");
        std::fs::write(dir.path().join(FILE), "not a time\n").unwrap();
        assert_eq!(LastFailure::read(dir.path()), None);
    }
}
