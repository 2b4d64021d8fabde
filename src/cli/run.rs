//! `relay run`: the daemon. Signals, systemd notification and the watchdog live here; the
//! pipeline itself is [`crate::pipeline`].

use super::{load, Global};
use crate::metrics::Metrics;
use crate::pipeline;
use clap::Args;
use sd_notify::NotifyState;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// The exit status after a storage failure: sysexits.h's `EX_IOERR`, which systemd
/// names in `systemctl status` and the journal (`status=74/IOERR`), so the cause of the
/// restart stays visible after the process is gone. Every other failure exits 1.
const EX_IOERR: u8 = 74;

pub(super) async fn run(global: &Global) -> ExitCode {
    let (env, config) = match load(global) {
        Ok(v) => v,
        Err(code) => return code,
    };
    crate::logging::init(config.log_format);
    if let Err(p) = config.require_for_run() {
        return super::report_problems(p);
    }
    for var in env.unknown_relay_vars() {
        tracing::warn!(%var, "unknown RELAY_ variable ignored (a typo?); see docs/configuration.md for the settings");
    }
    let nofile = crate::net::raise_nofile_limit();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        open_files_limit = nofile,
        websocket = config.zoom_ws.is_some(),
        webhook = config.webhook.is_some(),
        logscale = %config.logscale.as_ref().map(|l| l.base_url.as_str()).unwrap_or(""),
        "starting"
    );
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            eprintln!("error: cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let relay = match pipeline::start(&config, Arc::new(Metrics::new())).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("running")]);
    tracing::info!(admin = ?relay.admin_addr, webhook = ?relay.webhook_addr, "relay running");

    // The watchdog is fed only while the pipeline's tasks are alive; STATUS carries the
    // figures `systemctl status` shows.
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut tick = tokio::time::interval(
        watchdog
            .unwrap_or(Duration::from_secs(2))
            .min(Duration::from_secs(2)),
    );
    loop {
        tokio::select! {
            _ = relay.spool.failed() => {
                tracing::error!(
                    failure = relay.spool.failure().unwrap_or_default(),
                    "the spool failed; stopping, and exiting non-zero so that the service manager restarts the relay on what is on disk"
                );
                let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("spool failed")]);
                // sled's destructors sync once more and panic when that fails (seen: an
                // abort after a failed fdatasync): after a storage failure no more I/O is
                // trusted, so the spool is never dropped.
                std::mem::forget(relay.spool.clone());
                relay.stop().await;
                return ExitCode::from(EX_IOERR);
            }
            _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
            _ = int.recv() => { tracing::info!("SIGINT received"); break; }
            _ = hup.recv() => match &relay.reload_tls {
                Some(reload) => if let Err(e) = reload() {
                    tracing::error!(error = %e, "SIGHUP: webhook TLS reload failed; keeping the current certificate");
                },
                None => tracing::info!("SIGHUP: nothing to reload"),
            },
            _ = tick.tick() => {
                release_free_memory();
                let status = relay.status_line();
                let mut states = vec![NotifyState::Status(&status)];
                if relay.is_healthy() && watchdog.is_some() {
                    states.push(NotifyState::Watchdog);
                }
                let _ = sd_notify::notify(&states);
                if !relay.is_healthy() {
                    tracing::error!("a pipeline task stopped unexpectedly; exiting so that the service manager restarts the relay");
                    relay.stop().await;
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    relay.stop().await;
    ExitCode::SUCCESS
}

/// Hands memory the allocator holds but does not use back to the system (glibc keeps
/// freed small blocks in its arenas; after a large backlog that was over 200 MB).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Hidden commands used by the crash tests.
#[derive(Debug, Args)]
pub struct DebugArgs {
    #[command(subcommand)]
    pub command: DebugCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DebugCommand {
    /// Append records to a spool and print `durable SEQ N` for each confirmed one.
    SpoolAppend {
        #[arg(long)]
        spool_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        #[arg(long, default_value_t = 16)]
        producers: u64,
    },
}

pub(super) async fn debug(args: DebugArgs) -> ExitCode {
    match args.command {
        DebugCommand::SpoolAppend {
            spool_dir,
            count,
            producers,
        } => {
            use crate::spool::{NewRecord, SourceKind, Spool};
            use std::io::Write;
            let settings = crate::config::SpoolSettings {
                dir: spool_dir,
                min_free_bytes: 0,
                max_bytes: u64::MAX,
                full_policy: crate::config::FullPolicy::RejectNew,
                commit_interval: Duration::from_millis(2),
                cache_bytes: 16 << 20,
                rotate_bytes: crate::spool::ROTATE_BYTES,
            };
            let spool = match Spool::open(&settings, Arc::new(Metrics::new())) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let (appender, _writer) = spool.start_writer(4 << 20);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
            for p in 0..producers {
                let (a, tx) = (appender.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut n = p;
                    while n < count {
                        let payload = bytes::Bytes::from(format!(
                            "{{\"n\":{n},\"pad\":\"{}\"}}",
                            "x".repeat(200)
                        ));
                        match a
                            .send_durable(NewRecord::new(SourceKind::WebSocket, payload))
                            .await
                        {
                            Ok(seq) => {
                                let _ = tx.send((seq, n));
                            }
                            Err(_) => return,
                        }
                        n += producers;
                    }
                });
            }
            drop(tx);
            let mut out = std::io::stdout().lock();
            while let Some((seq, n)) = rx.recv().await {
                // Printed only after durability was confirmed.
                let _ = writeln!(out, "durable {seq} {n}");
                let _ = out.flush();
            }
            ExitCode::SUCCESS
        }
    }
}
