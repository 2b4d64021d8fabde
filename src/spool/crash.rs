//! Crash points: named places on the spool's acknowledgement and removal paths where a
//! test can have the process killed (SIGKILL, no destructor runs, sled flushes nothing).
//!
//! Only the unit-test build has them: a crash test (`ack_crash_tests`) starts its own
//! test binary as a child, the child arms one point and drives the spool to it, and the
//! parent reopens the directory the child left behind. In every other build
//! [`point`] is an empty inline function.

#[cfg(test)]
static ARMED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Kill this process with SIGKILL when execution reaches `point`.
#[cfg(test)]
pub(super) fn arm(point: &str) {
    *ARMED.lock().unwrap_or_else(|p| p.into_inner()) = Some(point.to_string());
}

/// A crash point: the process dies here if this point is armed.
#[cfg(test)]
pub(super) fn point(name: &'static str) {
    let hit = ARMED.lock().unwrap_or_else(|p| p.into_inner()).as_deref() == Some(name);
    if hit {
        // SAFETY: kill(2) on our own pid; nothing is borrowed.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// A crash point: nothing outside the unit-test build.
#[cfg(not(test))]
#[inline(always)]
pub(super) fn point(_name: &'static str) {}
