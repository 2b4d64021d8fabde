//! Measurements the process-level benches (`targets`, `soak`) share: a process's
//! resident memory, a directory's size, and the relay started against the fakes.
//!
//! Each bench compiles this module and uses a part of it.
#![allow(dead_code)]

/// The bench setting `name` from the environment, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of process `pid` in KiB (`VmRSS`), 0 if it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Peak resident memory of process `pid` since it started (the kernel's high-water mark,
/// `VmHWM`), in KiB: the true peak, which samples of [`rss_kib`] can miss.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) process `pid` has used so far, in seconds; 0 if it is gone.
/// Divided by the events it handled, it is the CPU per event, which unlike a rate does not
/// depend on how many cores the fakes beside it take.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name (which may hold spaces) in parentheses:
    // utime and stime are the 14th and 15th fields of the line, in clock ticks.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

/// The cores the relay is pinned to (`BENCH_CPUS`, a `taskset` list such as `0` or `0,1`),
/// if set. The bench process itself (the fakes) is then pinned to the other cores, if any
/// are left, so that the relay's figures are its own.
pub fn bench_cpus() -> Option<String> {
    std::env::var("BENCH_CPUS")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Pins every thread of this process (the fakes) to the cores not in `BENCH_CPUS`; does
/// nothing when it is unset or names every core.
pub fn pin_fakes_away_from_relay() {
    let Some(list) = bench_cpus() else { return };
    let relay: Vec<usize> = list
        .split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.trim().parse().unwrap_or(0), b.trim().parse().unwrap_or(0));
                (a..=b).collect::<Vec<usize>>()
            }
            None => part.trim().parse().ok().into_iter().collect(),
        })
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rest: Vec<String> = (0..cores)
        .filter(|c| !relay.contains(c))
        .map(|c| c.to_string())
        .collect();
    if rest.is_empty() {
        return;
    }
    let ok = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &rest.join(",")])
        .arg(std::process::id().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "taskset could not pin the bench to cores {}",
        rest.join(",")
    );
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
    relay_command()
        .arg("run")
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| {
            (k.starts_with("RELAY_") && k != "RELAY_SPOOL_DIR")
                || k.starts_with("MALLOC_")
                || k == "PATH"
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

/// The relay binary, or, when `RELAY_BENCH_WRAPPER` is set (e.g. `heaptrack -o /tmp/ht`),
/// that command with the relay binary as its last argument: a profile of the relay under
/// a bench's load.
///
/// With `BENCH_CPUS` set, the relay runs under `taskset -c BENCH_CPUS` (which execs it:
/// the pid is the relay's).
pub fn relay_command() -> std::process::Command {
    let relay = env!("CARGO_BIN_EXE_relay");
    let pinned = bench_cpus().map(|cpus| format!("taskset -c {cpus}"));
    let wrapper = std::env::var("RELAY_BENCH_WRAPPER").unwrap_or_default();
    let words: Vec<String> = pinned
        .iter()
        .flat_map(|p| p.split_whitespace())
        .chain(wrapper.split_whitespace())
        .map(str::to_string)
        .collect();
    match words.split_first() {
        Some((program, args)) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args).arg(relay);
            cmd
        }
        None => std::process::Command::new(relay),
    }
}

/// Stops a relay started by [`spawn_relay`] the way systemd does (SIGTERM) and waits.
pub fn stop_relay(mut child: std::process::Child) {
    // Under RELAY_BENCH_WRAPPER the relay is the wrapper's child: it gets the signal first.
    let _ = std::process::Command::new("pkill")
        .args(["-TERM", "-P", &child.id().to_string()])
        .status();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// A bench scenario: a name to select it on the command line and the future to run.
pub type Scenario = (
    &'static str,
    fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
);

/// Runs each scenario whose name is on the command line (all of them when none is), in
/// order, on one multi-threaded runtime: `cargo bench --bench NAME -- SCENARIO...`.
pub fn run_scenarios(scenarios: &[Scenario]) {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, scenario) in scenarios {
        if args.is_empty() || args.iter().any(|a| a == name) {
            rt.block_on(scenario());
        }
    }
}

/// A backlog of `events` QSS frames in a spool at `spool_dir`, as an outage would leave
/// it, written through the spool's own commit path; the spool's figures once flushed.
pub fn fill_backlog(spool_dir: &std::path::Path, events: u64) -> qss_relay::spool::SpoolStats {
    use qss_relay::spool::{NewRecord, SourceKind, Spool};
    let mut env = qss_relay::config::Env::default();
    env.set("RELAY_SPOOL_DIR", spool_dir.display().to_string());
    let cfg = qss_relay::config::Config::from_env(&env).unwrap();
    let metrics = std::sync::Arc::new(qss_relay::metrics::Metrics::new());
    let spool = Spool::open(&cfg.spool, metrics).unwrap();
    let f = qss_relay::sim::events::FrameFactory::websocket();
    let mut n = 0;
    while n < events {
        let recs: Vec<_> = (n..(n + 4000).min(events))
            .map(|i| NewRecord::new(SourceKind::WebSocket, f.frame(i)))
            .collect();
        n += recs.len() as u64;
        spool.commit(&recs).unwrap();
    }
    spool.flush().unwrap();
    spool.stats()
}
