//! The `relay` command: argument parsing and dispatch. Each subcommand lives in its own
//! file; this one only knows their names and shared options.

mod check;
mod demo;
mod demo_ha;
mod format;
mod inspect_text;
mod run;
mod spool_cmd;

use crate::config::{Config, Env, Problems};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Lossless relay of Zoom QSS telemetry and webhooks into CrowdStrike Falcon LogScale and
/// Microsoft Sentinel.
/// `relay --version`: the version and the commit it was built from (build.rs).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RELAY_COMMIT"), ")");

#[derive(Debug, Parser)]
#[command(name = "relay", version = VERSION, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Read variables from this file (docker `--env-file` format, e.g. /etc/zoom-qss/env.vars).
    /// Variables set in the environment win over the file.
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay: Zoom (WebSocket and/or webhooks) → spool → LogScale and/or Sentinel.
    Run,
    /// Watch the relay work against a simulated Zoom, LogScale and Sentinel (no accounts
    /// needed).
    Demo(demo::DemoArgs),
    /// Check the configuration, Zoom credentials, the WebSocket, each destination and the
    /// spool.
    Check,
    /// Exit 0 if the running relay's /readyz says ready (container health checks).
    Health(HealthArgs),
    /// Look into the spool: what waits, how old it is, why it does not move.
    Spool(spool_cmd::SpoolArgs),
    #[command(hide = true)]
    Debug(run::DebugArgs),
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Admin endpoint to ask (default: RELAY_ADMIN_ADDR, else 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub admin_addr: Option<std::net::SocketAddr>,
}

/// Loads the merged environment and the configuration, printing problems if any.
fn load(global: &Global) -> Result<(Env, Config), ExitCode> {
    let env = Env::load(global.env_file.as_deref()).map_err(report_problems)?;
    let config = Config::from_env(&env).map_err(report_problems)?;
    Ok((env, config))
}

fn report_problems(p: Problems) -> ExitCode {
    eprint!("error: {p}");
    eprintln!("See `relay --help` and the settings in docs/configuration.md.");
    ExitCode::from(2)
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("relay")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run => run::run(&cli.global).await,
            Command::Demo(args) => demo::demo(&cli.global, args).await,
            Command::Check => check::check(&cli.global).await,
            Command::Health(args) => health(&cli.global, args).await,
            Command::Spool(args) => spool_cmd::spool(&cli.global, args).await,
            Command::Debug(args) => run::debug(args).await,
        }
    })
}

async fn health(global: &Global, args: HealthArgs) -> ExitCode {
    let addr = match args.admin_addr {
        Some(a) => a,
        None => match load(global) {
            Ok((_, c)) => c
                .admin_addr
                .unwrap_or_else(|| "127.0.0.1:9464".parse().expect("valid")),
            Err(code) => return code,
        },
    };
    match crate::admin::client::ready(addr).await {
        Ok(true) => {
            println!("ready");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("not ready (starting or stopping)");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("no answer from the relay at {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
