//! `relay spool ...`: the operator's view of the spool, during an outage or after.
//!
//! Works whether the daemon runs or not: the spool is opened directly when it is free;
//! when the running daemon holds it, the same questions go to the daemon's admin
//! endpoint. Only `dead retry` and `dead purge` change anything, and they ask first.

use super::format;
use super::{load, Global};
use crate::admin::{self, ClientError, DeadDetail, InspectReport, OperatorClient, PeekRecord};
use crate::metrics::Metrics;
use crate::ship::hec::{Encoder, HecSettings};
use crate::ship::status::ShipPhase;
use crate::ship::status::ShipStatus;
use crate::spool::{DeadId, DeadSummary, FullPolicy, Spool, SpoolError};
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
    },
    /// Pending events as NDJSON HEC events, ready to re-ingest by hand.
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
    },
    /// The dead-letter area: events LogScale refused, and corrupt blocks.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead letters.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter (ID as printed by `list`, e.g. event:1234).
    Show { id: DeadId },
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
}

/// The spool itself, or the daemon that holds it.
enum Access {
    Local { spool: Spool, hec: HecSettings },
    Remote(Box<OperatorClient>),
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

async fn open(global: &Global, args: &SpoolArgs) -> Result<Access, ExitCode> {
    let (_, mut config) = load(global)?;
    if let Some(dir) = &args.spool_dir {
        config.spool.dir = dir.clone();
    }
    match Spool::open(&config.spool, Arc::new(Metrics::new())) {
        Ok(spool) => {
            let hec = config.hec(spool.id());
            Ok(Access::Local { spool, hec })
        }
        // Not allowed to open the files: a running relay may still answer (root, or a
        // user the socket admits), else say both.
        Err(e) if e.is_permission_denied() => {
            let socket = admin::operator::socket_path(&config.spool.dir);
            match OperatorClient::new(&socket)
                .get::<InspectReport>("/spool/inspect")
                .await
            {
                Ok(_) => Ok(Access::Remote(Box::new(OperatorClient::new(&socket)))),
                Err(c) => Err(fail(format!(
                    "{e}; and asking a running relay failed too: {c}"
                ))),
            }
        }
        Err(SpoolError::InUse(dir)) => {
            let client = OperatorClient::new(&admin::operator::socket_path(&dir));
            // Make sure the daemon there holds *this* spool.
            match client.get::<InspectReport>("/spool/inspect").await {
                Ok(r) if std::path::Path::new(&r.spool.spool_dir) == dir.as_path() => {
                    Ok(Access::Remote(Box::new(client)))
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

pub async fn spool(global: &Global, args: SpoolArgs) -> ExitCode {
    let access = match open(global, &args).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    match args.command {
        SpoolCommand::Inspect { json } => inspect(access, json).await,
        SpoolCommand::Peek { n, from, json } => peek(access, n, from, json).await,
        SpoolCommand::Export {
            from,
            to,
            output,
            raw,
        } => export(access, from, to, output, raw).await,
        SpoolCommand::Dead { command } => dead(access, command).await,
    }
}

async fn inspect(access: Access, json: bool) -> ExitCode {
    let report = match access {
        Access::Local { spool, .. } => {
            InspectReport::new(spool.stats(), ShipStatus::from_spool(&spool), "disk")
        }
        Access::Remote(c) => match c.get::<InspectReport>("/spool/inspect").await {
            Ok(r) => r,
            Err(e) => return fail(e),
        },
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializable")
        );
    } else {
        print!("{}", render_inspect(&report));
    }
    ExitCode::SUCCESS
}

/// The human summary of `spool inspect`.
pub fn render_inspect(r: &InspectReport) -> String {
    let s = &r.spool;
    let mut out = String::new();
    let from = if r.read_from == "daemon" {
        "asked the running relay"
    } else {
        "read from disk; the relay is not running"
    };
    out.push_str(&format!(
        "Spool {} (id {}, {from})\n",
        s.spool_dir, s.spool_id
    ));
    out.push_str(&format!(
        "  pending       {} events ({} uncompressed, {} stored of {} cap, {})\n",
        format::count(s.pending_events),
        format::bytes(s.pending_bytes),
        format::bytes(s.stored_bytes),
        format::bytes(s.max_bytes),
        s.full_policy.name()
    ));
    if let (Some(o), Some(n)) = (s.oldest_pending_received_ms, s.newest_pending_received_ms) {
        out.push_str(&format!("  oldest        {}\n", format::when(o)));
        out.push_str(&format!("  newest        {}\n", format::when(n)));
    }
    out.push_str(&format!(
        "  delivered     every event below sequence {} (next sequence {})\n",
        format::count(s.delivered_position),
        format::count(s.next_seq)
    ));
    let free = s.disk_free_bytes.map_or_else(String::new, |f| {
        format!(
            ", {} free on its file system (floor {})",
            format::bytes(f),
            format::bytes(s.min_free_bytes)
        )
    });
    out.push_str(&format!(
        "  on disk       {}{free}\n",
        format::bytes(s.disk_bytes)
    ));
    if s.disk_full {
        out.push_str(&format!(
            "  DISK FULL     free space is below RELAY_SPOOL_MIN_FREE_BYTES: {}\n",
            if s.full_policy == FullPolicy::RejectNew {
                "new events are refused (webhooks get 503)"
            } else {
                "the oldest pending events are dropped to make room"
            }
        ));
    }
    if let Some(f) = &s.failure {
        out.push_str(&format!("  FAILED        {f}\n"));
    }
    out.push_str(&format!(
        "  dead letters  {} events, {} corrupt blocks{}\n",
        format::count(s.dead_letter_events),
        s.dead_letter_blocks,
        if s.dead_letter_events + s.dead_letter_blocks > 0 {
            "  (relay spool dead list)"
        } else {
            ""
        }
    ));
    out.push_str(&format!(
        "  dropped       {} events (size cap or full disk)\n",
        format::count(s.dropped_events)
    ));
    if let Some(ship) = &r.shipper {
        out.push_str(&format!(
            "Shipper: {}",
            ship.state.label().replace('_', " ")
        ));
        if let Some(until) = ship.backoff_until_ms.filter(|u| *u > crate::time::now_ms()) {
            out.push_str(&format!(
                ", next attempt at {} (in {})",
                admin::rfc3339_ms(until),
                format::age((until - crate::time::now_ms()) as f64 / 1000.0)
            ));
        }
        if ship.consecutive_failures > 0 {
            out.push_str(&format!(
                ", {} failed attempts in a row",
                ship.consecutive_failures
            ));
        }
        out.push('\n');
        if let Some(e) = &ship.last_error {
            let status = e
                .status
                .map_or_else(|| "no answer".to_string(), |c| format!("HTTP {c}"));
            out.push_str(&format!(
                "  last error    {}: {status}: {}\n",
                format::when(e.at_ms),
                e.message
            ));
            if let Some(body) = &e.body_excerpt {
                out.push_str(&format!("                response: {body}\n"));
            }
        }
        match ship.last_success_ms {
            Some(ms) => out.push_str(&format!("  last success  {}\n", format::when(ms))),
            None => out.push_str("  last success  none recorded\n"),
        }
    }
    if let Some(ws) = &r.websocket {
        let last = ws.last_frame_ms.map_or_else(
            || "no frame yet".to_string(),
            |ms| format!("last frame {}", format::when(ms)),
        );
        out.push_str(&format!(
            "Zoom WebSocket: {}, {last}, {} events since start\n",
            if ws.connected {
                "connected"
            } else {
                "DISCONNECTED (reconnecting)"
            },
            format::count(ws.events_received)
        ));
    }
    out.push_str(&format!("Why: {}\n", why(r)));
    out
}

fn why(r: &InspectReport) -> String {
    let s = &r.spool;
    if let Some(f) = &s.failure {
        return format!("the spool stopped taking writes after a storage failure ({f}); the relay exits and its service manager restarts it. Check the disk (dmesg, SMART) if it happens again.");
    }
    let shipping = why_shipping(r);
    if s.disk_full {
        return format!(
            "the disk holding the spool is full ({} free, RELAY_SPOOL_MIN_FREE_BYTES is {}): {}. Free space on it (the relay resumes by itself), move RELAY_SPOOL_DIR to a larger disk, or set RELAY_SPOOL_MAX_BYTES below what it can hold. Meanwhile: {shipping}",
            format::bytes(s.disk_free_bytes.unwrap_or(0)),
            format::bytes(s.min_free_bytes),
            if s.full_policy == FullPolicy::RejectNew {
                "new events are refused and counted"
            } else {
                "the oldest events are dropped and counted"
            }
        );
    }
    shipping
}

/// Why the backlog is (not) moving, from the shipper's side.
fn why_shipping(r: &InspectReport) -> String {
    let s = &r.spool;
    if s.pending_events == 0 {
        return "nothing is waiting: every received event has been delivered.".into();
    }
    if r.read_from != "daemon" {
        return "the relay is not running; start it (systemctl start qss2logscale) and the backlog drains. Nothing is lost meanwhile.".into();
    }
    let Some(ship) = &r.shipper else {
        return "unknown shipper state.".into();
    };
    let last = ship.last_error.as_ref();
    match ship.state {
        ShipPhase::TokenRefused => "LogScale refuses the ingest token (HTTP 401/403). Fix LOGSCALE_INGEST_TOKEN and restart the relay; the backlog is kept and drains then.".into(),
        ShipPhase::BackingOff => match last.and_then(|e| e.status) {
            Some(code) => format!("LogScale answers HTTP {code}; the relay retries with backoff and loses nothing. The backlog drains when LogScale accepts again."),
            None => format!(
                "LogScale cannot be reached ({}); the relay retries with backoff and loses nothing.",
                last.map_or("no answer", |e| e.message.as_str())
            ),
        },
        _ if s.oldest_pending_age_secs < 5.0 => "shipping normally: these events arrived in the last seconds.".into(),
        _ => "shipping: the backlog is draining.".into(),
    }
}

async fn peek(access: Access, n: usize, from: Option<u64>, json: bool) -> ExitCode {
    let records: Vec<PeekRecord> = match access {
        Access::Local { spool, .. } => match spool.pending(from.unwrap_or(0), n, None) {
            Ok(r) => r.iter().map(admin::peek_record).collect(),
            Err(e) => return fail(e),
        },
        Access::Remote(c) => match c
            .get(&format!("/spool/peek?n={n}&from={}", from.unwrap_or(0)))
            .await
        {
            Ok(r) => r,
            Err(e) => return fail(e),
        },
    };
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
    ExitCode::SUCCESS
}

async fn export(
    access: Access,
    from: Option<u64>,
    to: Option<u64>,
    output: Option<PathBuf>,
    raw: bool,
) -> ExitCode {
    let mut sink: Box<dyn Write + Send> = match &output {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => return fail(format!("cannot create {}: {e}", p.display())),
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let from = from.unwrap_or(0);
    let written = match access {
        Access::Local { spool, hec } => {
            let total = spool.stats().pending_events;
            let bar = if output.is_some() && std::io::stderr().is_terminal() {
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
            let mut encoder = (!raw).then(|| Encoder::new(hec));
            let mut io_error = None;
            let result = admin::export(&spool, encoder.as_mut(), from, to, |chunk, n| {
                if let Some(b) = &bar {
                    b.inc(n);
                }
                match sink.write_all(&chunk) {
                    Ok(()) => true,
                    Err(e) => {
                        io_error = Some(e);
                        false
                    }
                }
            });
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if let Some(e) = io_error {
                return fail(format!("writing the export failed: {e}"));
            }
            match result {
                Ok(n) => n,
                Err(e) => return fail(e),
            }
        }
        Access::Remote(c) => {
            let mut path = format!("/spool/export?from={from}&raw={raw}");
            if let Some(t) = to {
                path.push_str(&format!("&to={t}"));
            }
            match c.export(&path, &mut sink).await {
                Ok(n) => n,
                Err(e) => return fail(e),
            }
        }
    };
    if let Err(e) = sink.flush() {
        return fail(format!("writing the export failed: {e}"));
    }
    if let Some(p) = output {
        eprintln!(
            "exported {} events to {}",
            format::count(written),
            p.display()
        );
    }
    ExitCode::SUCCESS
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

async fn dead(access: Access, command: DeadCommand) -> ExitCode {
    match command {
        DeadCommand::List { json } => {
            let list: Vec<DeadSummary> = match &access {
                Access::Local { spool, .. } => match spool.dead_list() {
                    Ok(l) => l,
                    Err(e) => return fail(e),
                },
                Access::Remote(c) => match c.get("/spool/dead").await {
                    Ok(l) => l,
                    Err(e) => return fail(e),
                },
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).expect("serializable")
                );
            } else if list.is_empty() {
                println!("no dead letters");
            } else {
                for d in &list {
                    println!(
                        "{:<16} {}  {:>10}  {}",
                        d.id.to_string(),
                        admin::rfc3339_ms(d.at_ms),
                        format::bytes(d.bytes as u64),
                        d.reason
                    );
                }
                println!("{} dead letters; `relay spool dead show ID` for one, `retry` or `purge` to act.", list.len());
            }
            ExitCode::SUCCESS
        }
        DeadCommand::Show { id } => {
            let detail: Option<DeadDetail> = match &access {
                Access::Local { spool, .. } => match spool.dead_get(id) {
                    Ok(d) => d.as_ref().map(DeadDetail::from),
                    Err(e) => return fail(e),
                },
                Access::Remote(c) => match c.get(&format!("/spool/dead/show?id={id}")).await {
                    Ok(d) => Some(d),
                    Err(ClientError::NotFound(_)) => None,
                    Err(e) => return fail(e),
                },
            };
            match detail {
                Some(d) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&d).expect("serializable")
                    );
                    ExitCode::SUCCESS
                }
                None => fail(format!("no dead letter {id} (see `relay spool dead list`)")),
            }
        }
        DeadCommand::Retry(sel) | DeadCommand::Purge(sel) if !sel.all && sel.ids.is_empty() => {
            let _ = sel;
            fail("name dead letters by ID, or pass --all")
        }
        DeadCommand::Retry(sel) => act(access, sel, true).await,
        DeadCommand::Purge(sel) => act(access, sel, false).await,
    }
}

async fn act(access: Access, sel: Selection, retry: bool) -> ExitCode {
    let what = match (retry, sel.all) {
        (true, true) => "Retry every dead-lettered event".to_string(),
        (false, true) => "Delete every dead letter for good".to_string(),
        (true, false) => format!("Retry {} dead letters", sel.ids.len()),
        (false, false) => format!("Delete {} dead letters for good", sel.ids.len()),
    };
    if !confirm(&what, &sel) {
        return ExitCode::FAILURE;
    }
    let ids = (!sel.all).then_some(sel.ids);
    let done: Vec<DeadId> = match access {
        Access::Local { spool, .. } => {
            let r = if retry {
                spool.dead_retry(ids.as_deref())
            } else {
                spool.dead_purge(ids.as_deref())
            };
            match r {
                Ok(d) => d,
                Err(e) => return fail(e),
            }
        }
        Access::Remote(c) => {
            let list = match &ids {
                None => "all".to_string(),
                Some(ids) => ids
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            };
            let verb = if retry { "retry" } else { "purge" };
            match c.post(&format!("/spool/dead/{verb}?ids={list}")).await {
                Ok(d) => d,
                Err(e) => return fail(e),
            }
        }
    };
    println!(
        "{} {} dead letters",
        if retry { "retried" } else { "purged" },
        done.len()
    );
    ExitCode::SUCCESS
}
