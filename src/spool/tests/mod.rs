//! Spool tests on real sled directories (temp dirs, never a mock), by concern:
//!
//! - [`basics`]: commit, read, acknowledge, reopen, dead letters, corrupt blocks;
//! - [`writer`]: the group-commit writer and its byte-bounded queue;
//! - [`model`]: a property test against a model of the spool;
//! - [`generations`]: rotation, retirement, stored bytes, sled's segments and blobs;
//! - [`room`]: the size cap and the free-space floor;
//! - [`sinks`]: one delivery position per destination;
//! - [`ack_crash`]: `kill -9` and power cuts on the acknowledgement path.
//!
//! The helpers below are shared by all of them.

use super::*;
use super::{FullPolicy, SpoolSettings};
use bytes::Bytes;
use std::time::Duration;

mod ack_crash;
mod basics;
mod generations;
mod model;
mod room;
mod sinks;
mod writer;

pub(super) fn settings(dir: &Path) -> SpoolSettings {
    SpoolSettings {
        dir: dir.to_path_buf(),
        min_free_bytes: 0,
        max_bytes: 1 << 30,
        full_policy: FullPolicy::DropOldest,
        commit_interval: Duration::from_millis(1),
        cache_bytes: 8 << 20,
        rotate_bytes: super::ROTATE_BYTES,
    }
}

pub(super) fn open(s: &SpoolSettings) -> Spool {
    Spool::open(s, Arc::new(Metrics::new())).expect("open spool")
}

pub(super) fn rec(text: &str) -> NewRecord {
    NewRecord {
        received_ms: 1_000,
        kind: SourceKind::WebSocket,
        flags: 0,
        payload: Bytes::copy_from_slice(text.as_bytes()),
    }
}

pub(super) fn recs(prefix: &str, n: usize) -> Vec<NewRecord> {
    (0..n).map(|i| rec(&format!("{prefix}-{i}"))).collect()
}

pub(super) fn all_pending(s: &Spool) -> Vec<(u64, String)> {
    s.pending(0, usize::MAX, None)
        .unwrap()
        .into_iter()
        .map(|r| (r.seq, String::from_utf8(r.payload.to_vec()).unwrap()))
        .collect()
}

fn eventually_sync(f: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// Random (incompressible) records, so that a test fills disk quickly.
pub(super) fn noisy(n: usize, size: usize, seed: u64) -> Vec<NewRecord> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|_| rec(&(0..size).map(|_| rng.alphanumeric()).collect::<String>()))
        .collect()
}
