//! Measurements the process-level benches (`targets`, `soak`) share: a process's
//! resident memory, a directory's size, and the relay started against the fakes.

/// The bench setting `name` from the environment, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of process `pid` in KiB (`VmRSS`), 0 if it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes of the files under `dir`, recursively (0 if it does not exist).
pub fn du(dir: &std::path::Path) -> u64 {
    qss_relay::spool::dir_size(dir)
}

/// A fake LogScale accepting `token` that counts (and, with `track_ids`, tracks the
/// simulator's event numbers) without keeping the events.
pub async fn sink(token: &str, track_ids: bool) -> qss_relay::sim::logscale::FakeLogScale {
    qss_relay::sim::logscale::FakeLogScale::start(
        token,
        qss_relay::sim::logscale::SinkOptions {
            keep_events: false,
            track_ids,
        },
    )
    .await
    .expect("the fake LogScale starts")
}

/// Starts the real `relay run`, its own process (so its RSS is its own), against the
/// fakes. The environment is cleared; any `RELAY_*` or `MALLOC_*` variable of the bench's
/// own environment passes through for experiments (`RELAY_SHIP_CONCURRENCY=8 cargo bench
/// ...`), then the fakes' settings, the spool directory, no admin endpoint and
/// `RUST_LOG=warn`, then `extra`, each overriding what came before.
pub fn spawn_relay(
    zoom: &qss_relay::sim::zoom::FakeZoom,
    sink: &qss_relay::sim::logscale::FakeLogScale,
    spool_dir: &std::path::Path,
    extra: &[(&str, String)],
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .arg("run")
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| {
            (k.starts_with("RELAY_") && k != "RELAY_SPOOL_DIR") || k.starts_with("MALLOC_")
        }))
        .envs(zoom.env_pairs())
        .envs(sink.env_pairs())
        .env("RELAY_SPOOL_DIR", spool_dir)
        .env("RELAY_ADMIN_ADDR", "off")
        .env("RUST_LOG", "warn")
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the relay binary starts")
}

/// Stops a relay started by [`spawn_relay`] the way systemd does (SIGTERM) and waits.
pub fn stop_relay(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
