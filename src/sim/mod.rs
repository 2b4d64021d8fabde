//! The simulator: a fake Zoom (OAuth endpoint and QSS WebSocket) and a fake LogScale (HEC
//! endpoint), on loopback. `relay demo`, the integration tests and the benchmarks all use
//! this one implementation.

pub mod events;
pub mod logscale;
pub mod sentinel;
pub mod zoom;

use crate::config::Env;
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
