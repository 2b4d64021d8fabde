//! The simulator: a fake Zoom (OAuth endpoint and QSS WebSocket) and a fake LogScale (HEC
//! endpoint), on loopback. `relay demo`, the integration tests and the benchmarks all use
//! this one implementation.

pub mod etcd;
pub mod events;
pub mod logscale;
mod needle;
pub mod sentinel;
pub mod zoom;

use crate::config::Env;
use std::time::Duration;

/// Polls `done` every 20 ms until it holds or `timeout` passes; whether it held.
pub(crate) async fn wait_until(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
use std::path::Path;

/// The environment of a relay wired to these fakes, with its spool in `spool_dir` and no
/// admin endpoint: where `relay demo`, the in-process tests and the benchmarks start.
pub fn relay_env(zoom: &zoom::FakeZoom, sink: &logscale::FakeLogScale, spool_dir: &Path) -> Env {
    let mut env = Env::from_pairs(zoom.env_pairs());
    for (k, v) in sink.env_pairs() {
        env.set(k, v);
    }
    env.set("RELAY_SPOOL_DIR", spool_dir.display().to_string());
    env.set("RELAY_ADMIN_ADDR", "off");
    env
}
