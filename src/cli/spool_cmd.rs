//! `relay spool ...`: the operator's view of the spool, during an outage or after.
//!
//! Works whether the daemon runs or not: the spool is opened directly when it is free;
//! when the running daemon holds it, the same questions go to the daemon's operator
//! socket. Both are a [`SpoolView`], and each command below is written once against it.
//! Only `dead retry` and `dead purge` change anything, and they ask first.

use super::format;
use super::inspect_text::render_inspect;
use super::{load, Global};
use crate::admin::{
    self, AdminState, DeadAction, ExportRange, OperatorClient, OperatorError, SpoolView,
};
use crate::metrics::Metrics;
use crate::spool::{DeadId, Spool, SpoolError};
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct SpoolArgs {
    /// Spool directory (overrides RELAY_SPOOL_DIR). A running relay is asked through the
    /// operator socket `relay.sock` there.
    #[arg(long, global = true, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: SpoolCommand,
}

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// What is waiting, how old it is, and why it is not moving.
    Inspect {
        /// One JSON object instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Pending records, decoded.
    Peek {
        /// How many.
        #[arg(short = 'n', default_value_t = 10)]
        n: usize,
        /// Start at this sequence number (default: the oldest pending).
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// JSON lines instead of the summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        sink: SinkArg,
        #[command(flatten)]
        reveal: Reveal,
    },
    /// Pending events as NDJSON, ready to re-ingest by hand: HEC events, or with
    /// `--sink sentinel` the rows Sentinel would receive.
    Export {
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Stop before this sequence number.
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
        /// Write here instead of stdout.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The records as spooled (raw frames and bodies) instead of HEC events.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        sink: SinkArg,
        #[command(flatten)]
        reveal: Reveal,
    },
    /// The dead-letter area: events a destination refused, and corrupt blocks.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
}

/// `--unredacted`: credential header fields as received.
#[derive(Debug, Clone, Copy, Args)]
pub struct Reveal {
    /// Show Zoom's `Authorization` header (and the RELAY_REDACT_HEADER_FIELDS names) as
    /// received instead of `[REDACTED]`, as the destinations get them. The output then
    /// holds an app credential: do not re-ingest or share it.
    #[arg(long)]
    pub unredacted: bool,
}

/// `--sink NAME`: one destination's view.
#[derive(Debug, Clone, Copy, Args)]
pub struct SinkArg {
    /// Only what this destination has still to receive (peek, export), or what concerns it
    /// (dead letters); `export` then writes that destination's form.
    #[arg(long = "sink", value_name = "NAME", value_parser = parse_sink)]
    pub name: Option<&'static str>,
}

fn parse_sink(s: &str) -> Result<&'static str, String> {
    crate::spool::sink_name(s).ok_or_else(|| {
        let names: Vec<&str> = crate::spool::SINKS.iter().map(|(n, _)| *n).collect();
        format!("no destination {s:?}; one of: {}", names.join(", "))
    })
}

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead letters.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        sink: SinkArg,
    },
    /// Show one dead letter (ID as printed by `list`, e.g. event:1234).
    Show {
        id: DeadId,
        #[command(flatten)]
        reveal: Reveal,
    },
    /// Put dead-lettered events back into the spool to be shipped again.
    Retry(Selection),
    /// Delete dead letters for good.
    Purge(Selection),
}

#[derive(Debug, Args)]
pub struct Selection {
    /// IDs as printed by `list` (e.g. event:1234).
    pub ids: Vec<DeadId>,
    /// All of them.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// For this destination only: an entry another destination also refused stays
    /// listed for that one (and a retry sends the event to this one alone).
    #[command(flatten)]
    pub sink: SinkArg,
}

/// The spool itself, or the daemon that holds it.
enum Access {
    Local(AdminState),
    Remote(OperatorClient),
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

/// What to tell the operator when an operation failed.
fn fail_op(e: OperatorError) -> ExitCode {
    match e {
        OperatorError::Unreachable(m) => fail(format!(
            "{m}; if the relay has just stopped, run the command again (it then opens the spool itself)"
        )),
        OperatorError::NotFound(m) | OperatorError::BadRequest(m) => fail(m),
        e @ OperatorError::Server(_) => fail(format!(
            "{e}; the relay's log (journalctl -u qss2logscale) says more"
        )),
        OperatorError::Spool(m) => fail(format!(
            "{m}; `relay spool inspect` shows the spool's state, and the relay's log says more"
        )),
    }
}

async fn open(global: &Global, args: &SpoolArgs) -> Result<Access, ExitCode> {
    let (_, mut config) = load(global)?;
    if let Some(dir) = &args.spool_dir {
        config.spool.dir = dir.clone();
    }
    match Spool::open(&config.spool, Arc::new(Metrics::new())) {
        Ok(spool) => {
            let hec = config.hec(spool.id());
            let destinations = config.destinations();
            Ok(Access::Local(AdminState::from_disk(
                spool,
                hec,
                destinations,
            )))
        }
        // Not allowed to open the files: a running relay may still answer (root, or a
        // user the socket admits), else say both.
        Err(e) if e.is_permission_denied() => {
            let socket = admin::operator::socket_path(&config.spool.dir);
            match OperatorClient::new(&socket).inspect().await {
                Ok(_) => Ok(Access::Remote(OperatorClient::new(&socket))),
                Err(c) => Err(fail(format!(
                    "{e}; and asking a running relay failed too: {c}"
                ))),
            }
        }
        Err(SpoolError::InUse(dir)) => {
            let client = OperatorClient::new(&admin::operator::socket_path(&dir));
            // Make sure the daemon there holds *this* spool.
            match client.inspect().await {
                Ok(r) if std::path::Path::new(&r.spool.spool_dir) == dir.as_path() => {
                    Ok(Access::Remote(client))
                }
                Ok(r) => Err(fail(format!(
                    "the spool at {} is held by a running relay, but its operator socket answers for {} instead",
                    dir.display(),
                    r.spool.spool_dir
                ))),
                Err(e) => Err(fail(format!(
                    "the spool at {} is held by a running relay, which cannot be asked: {e}",
                    dir.display()
                ))),
            }
        }
        Err(e) => Err(fail(e)),
    }
}

pub(super) async fn spool(global: &Global, args: SpoolArgs) -> ExitCode {
    match open(global, &args).await {
        Ok(Access::Local(state)) => run(&state, args.command).await,
        Ok(Access::Remote(client)) => run(&client, args.command).await,
        Err(code) => code,
    }
}

async fn run(view: &impl SpoolView, command: SpoolCommand) -> ExitCode {
    let result = match command {
        SpoolCommand::Inspect { json } => inspect(view, json).await,
        SpoolCommand::Peek {
            n,
            from,
            json,
            sink,
            reveal,
        } => peek(view, n, from, json, sink.name, reveal.unredacted).await,
        SpoolCommand::Export {
            from,
            to,
            output,
            raw,
            sink,
            reveal,
        } => {
            let range = ExportRange {
                from: from.unwrap_or(0),
                to,
                raw,
                sink: sink.name,
                unredacted: reveal.unredacted,
            };
            export(view, range, output).await
        }
        SpoolCommand::Dead { command } => dead(view, command).await,
    };
    result.unwrap_or_else(|code| code)
}

async fn inspect(view: &impl SpoolView, json: bool) -> Result<ExitCode, ExitCode> {
    let report = view.inspect().await.map_err(fail_op)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializable")
        );
    } else {
        print!("{}", render_inspect(&report));
    }
    Ok(ExitCode::SUCCESS)
}

async fn peek(
    view: &impl SpoolView,
    n: usize,
    from: Option<u64>,
    json: bool,
    sink: Option<&'static str>,
    unredacted: bool,
) -> Result<ExitCode, ExitCode> {
    let records = view
        .peek(from.unwrap_or(0), n, sink, unredacted)
        .await
        .map_err(fail_op)?;
    let mut out = std::io::stdout().lock();
    if records.is_empty() {
        let _ = writeln!(out, "nothing pending");
    }
    for r in &records {
        if json {
            let _ = writeln!(out, "{}", serde_json::to_string(r).expect("serializable"));
            continue;
        }
        let _ = writeln!(
            out,
            "#{}  {}  {}  {}  {}{}",
            r.seq,
            r.received_at,
            r.source.name(),
            r.event.as_deref().unwrap_or("(no event name)"),
            format::bytes(r.bytes as u64),
            if r.malformed { "  MALFORMED" } else { "" }
        );
        let body = match (&r.json, &r.text) {
            (Some(j), _) => serde_json::to_string_pretty(j).expect("serializable"),
            (None, Some(t)) => t.clone(),
            _ => String::new(),
        };
        for line in body.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn export(
    view: &impl SpoolView,
    range: ExportRange,
    output: Option<PathBuf>,
) -> Result<ExitCode, ExitCode> {
    let mut out: Box<dyn Write + Send> = match &output {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => return Err(fail(format!("cannot create {}: {e}", p.display()))),
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    // A progress bar when writing to a file from a terminal.
    let bar = if output.is_some() && std::io::stderr().is_terminal() {
        let report = view.inspect().await.map_err(fail_op)?;
        let total = match range.sink {
            Some(s) => report
                .destinations
                .iter()
                .find(|d| d.spool.name == s)
                .map_or(0, |d| d.spool.pending_events),
            None => report.spool.pending_events,
        };
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events ({per_sec}, {eta} left)",
            )
            .expect("valid template"),
        );
        Some(b)
    } else {
        None
    };
    let mut io_error = None;
    let mut sink = |chunk: &[u8], n: u64| {
        if let Some(b) = &bar {
            b.inc(n);
        }
        match out.write_all(chunk) {
            Ok(()) => true,
            Err(e) => {
                io_error = Some(e);
                false
            }
        }
    };
    let result = view.export(range, &mut sink).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(e) = io_error {
        return Err(fail(format!("writing the export failed: {e}")));
    }
    let written = result.map_err(fail_op)?;
    if let Err(e) = out.flush() {
        return Err(fail(format!("writing the export failed: {e}")));
    }
    if let Some(p) = output {
        eprintln!(
            "exported {} events to {}",
            format::count(written),
            p.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn confirm(what: &str, sel: &Selection) -> bool {
    if sel.yes {
        return true;
    }
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "error: {what} changes the spool; pass --yes to confirm (stdin is not a terminal)"
        );
        return false;
    }
    eprint!("{what}? [y/N] ");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

async fn dead(view: &impl SpoolView, command: DeadCommand) -> Result<ExitCode, ExitCode> {
    match command {
        DeadCommand::List { json, sink } => {
            let list = view.dead_list(sink.name).await.map_err(fail_op)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).expect("serializable")
                );
            } else if list.is_empty() {
                println!("no dead letters");
            } else {
                for d in &list {
                    let to = if d.destinations.is_empty() {
                        "all".to_string()
                    } else {
                        d.destinations.join(",")
                    };
                    println!(
                        "{:<16} {}  {:>10}  {:<17} {}",
                        d.id.to_string(),
                        crate::time::rfc3339_ms(d.at_ms),
                        format::bytes(d.bytes as u64),
                        to,
                        d.reason
                    );
                }
                println!("{} dead letters; `relay spool dead show ID` for one, `retry` or `purge` to act.", list.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadCommand::Show { id, reveal } => {
            let d = view
                .dead_show(id, reveal.unredacted)
                .await
                .map_err(fail_op)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&d).expect("serializable")
            );
            Ok(ExitCode::SUCCESS)
        }
        DeadCommand::Retry(sel) | DeadCommand::Purge(sel) if !sel.all && sel.ids.is_empty() => {
            let _ = sel;
            Err(fail("name dead letters by ID, or pass --all"))
        }
        DeadCommand::Retry(sel) => act(view, sel, DeadAction::Retry).await,
        DeadCommand::Purge(sel) => act(view, sel, DeadAction::Purge).await,
    }
}

async fn act(
    view: &impl SpoolView,
    sel: Selection,
    action: DeadAction,
) -> Result<ExitCode, ExitCode> {
    let mut what = match (action, sel.all) {
        (DeadAction::Retry, true) => "Retry every dead-lettered event".to_string(),
        (DeadAction::Purge, true) => "Delete every dead letter for good".to_string(),
        (DeadAction::Retry, false) => format!("Retry {} dead letters", sel.ids.len()),
        (DeadAction::Purge, false) => format!("Delete {} dead letters for good", sel.ids.len()),
    };
    if let Some(s) = sel.sink.name {
        what.push_str(&format!(" for {s} only"));
    }
    if !confirm(&what, &sel) {
        return Err(ExitCode::FAILURE);
    }
    let ids = (!sel.all).then_some(sel.ids);
    let done = view
        .dead_act(action, ids, sel.sink.name)
        .await
        .map_err(fail_op)?;
    println!(
        "{} {} dead letters",
        match action {
            DeadAction::Retry => "retried",
            DeadAction::Purge => "purged",
        },
        done.len()
    );
    Ok(ExitCode::SUCCESS)
}
