//! The text of `relay spool inspect`: the figures, the shipper's and the WebSocket's
//! state, and the "Why" line that says why the backlog is (not) moving and what to do.

use super::format;
use crate::admin::{InspectReport, ReadFrom};
use crate::ship::status::{ShipPhase, ShipState};
use crate::spool::FullPolicy;

/// The human summary of `spool inspect`.
pub(super) fn render_inspect(r: &InspectReport) -> String {
    let s = &r.spool;
    let mut out = String::new();
    let from = if r.read_from == ReadFrom::Daemon {
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
    if let Some(f) = &s.last_failure {
        out.push_str(&format!(
            "  last failure  {}: {}\n",
            format::when(f.at_ms),
            f.reason
        ));
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
    if r.destinations.len() > 1 {
        for d in &r.destinations {
            out.push_str(&format!(
                "{}: {} events pending (delivered below {}{}{})\n",
                title(&d.spool.name),
                format::count(d.spool.pending_events),
                format::count(d.spool.delivered_position),
                d.spool
                    .oldest_pending_received_ms
                    .map_or_else(String::new, |o| format!(", oldest {}", format::when(o))),
                if d.spool.dropped_events > 0 {
                    format!(
                        ", {} dropped before it had them",
                        format::count(d.spool.dropped_events)
                    )
                } else {
                    String::new()
                }
            ));
            if let Some(ship) = &d.shipper {
                render_ship(&mut out, ship, "  shipper       ");
            }
            out.push_str(&format!(
                "  why           {}\n",
                why_shipping_for(
                    r,
                    &d.spool.name,
                    d.spool.pending_events,
                    d.spool.oldest_pending_age_secs,
                    d.shipper.as_ref()
                )
            ));
        }
    } else if let Some(ship) = &r.shipper {
        render_ship(&mut out, ship, "Shipper: ");
    }
    if let Some(ha) = &r.ha {
        let leader = ha.leader.as_deref().unwrap_or("none");
        let takeover = ha
            .last_takeover_ms
            .map_or_else(String::new, |t| format!(", led since {}", format::when(t)));
        let mark = ha.delivered_mark_ms.map_or_else(String::new, |m| {
            format!(
                ", the leader has delivered what it received up to {}",
                format::when(m)
            )
        });
        out.push_str(&format!(
            "Election: {} as {:?} ({:?} standby), leader {leader}, lease {} s{takeover}{mark}\n",
            ha.role.to_uppercase(),
            ha.me,
            ha.standby,
            ha.lease_ttl_secs
        ));
    }
    for ws in &r.websockets {
        let last = ws.last_frame_ms.map_or_else(
            || "no frame yet".to_string(),
            |ms| format!("last frame {}", format::when(ms)),
        );
        let name = if r.websockets.len() > 1 {
            format!(" ({})", ws.subscription)
        } else {
            String::new()
        };
        let dups = if ws.duplicates_dropped > 0 {
            format!(
                ", {} copies of events another subscription brought first",
                format::count(ws.duplicates_dropped)
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "Zoom WebSocket{name}: {}, {last}, {} events since start{dups}\n",
            if ws.connected {
                "connected"
            } else {
                "DISCONNECTED (reconnecting)"
            },
            format::count(ws.events_received)
        ));
        if ws.contended {
            out.push_str("  CONTENDED: Zoom keeps closing this subscription's connection soon after it opens: another client uses the same subscription (a second relay on the same URL?)\n");
        }
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

/// How a destination is called in the text.
fn title(sink: &str) -> &str {
    match sink {
        "logscale" => "LogScale",
        "sentinel" => "Sentinel",
        other => other,
    }
}

/// The shipper's state line, its last error and last success.
fn render_ship(out: &mut String, ship: &ShipState, lead: &str) {
    out.push_str(&format!("{lead}{}", ship.state.label().replace('_', " ")));
    // A stopped relay makes no attempt: the backoff it had recorded does not apply.
    let next = ship
        .backoff_until_ms
        .filter(|u| *u > crate::time::now_ms() && ship.state != ShipPhase::Stopped);
    if let Some(until) = next {
        out.push_str(&format!(
            ", next attempt at {} (in {})",
            crate::time::rfc3339_ms(until),
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

/// Why the backlog is (not) moving, from the shipper's side: the only destination's, or
/// each destination's in turn.
fn why_shipping(r: &InspectReport) -> String {
    if r.destinations.len() > 1 {
        return r
            .destinations
            .iter()
            .map(|d| {
                format!(
                    "{}: {}",
                    title(&d.spool.name),
                    why_shipping_for(
                        r,
                        &d.spool.name,
                        d.spool.pending_events,
                        d.spool.oldest_pending_age_secs,
                        d.shipper.as_ref()
                    )
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    let sink = r
        .destinations
        .first()
        .map_or("logscale", |d| d.spool.name.as_str());
    why_shipping_for(
        r,
        sink,
        r.spool.pending_events,
        r.spool.oldest_pending_age_secs,
        r.shipper.as_ref(),
    )
}

fn why_shipping_for(
    r: &InspectReport,
    sink: &str,
    pending: u64,
    oldest_age_secs: f64,
    ship: Option<&ShipState>,
) -> String {
    if pending == 0 {
        return "nothing is waiting: every received event has been delivered.".into();
    }
    if r.read_from != ReadFrom::Daemon {
        return "the relay is not running; start it (systemctl start qss2logscale) and the backlog drains. Nothing is lost meanwhile.".into();
    }
    let Some(ship) = ship else {
        return "unknown shipper state.".into();
    };
    let name = title(sink);
    let last = ship.last_error.as_ref();
    match ship.state {
        ShipPhase::TokenRefused if sink == "logscale" => "LogScale refuses the ingest token (HTTP 401/403). Fix LOGSCALE_INGEST_TOKEN and restart the relay; the backlog is kept and drains then.".into(),
        ShipPhase::TokenRefused => format!(
            "{name} refuses the relay's credentials or requests: {} The backlog is kept and drains once that is fixed (the relay retries slowly; a restart retries at once).",
            last.map_or("see the relay's log.", |e| e.message.as_str())
        ),
        ShipPhase::BackingOff => match last.and_then(|e| e.status) {
            Some(code) => format!("{name} answers HTTP {code}; the relay retries with backoff and loses nothing. The backlog drains when {name} accepts again."),
            None => format!(
                "{name} cannot be reached ({}); the relay retries with backoff and loses nothing.",
                last.map_or("no answer", |e| e.message.as_str())
            ),
        },
        _ if oldest_age_secs < 5.0 => "shipping normally: these events arrived in the last seconds.".into(),
        _ => "shipping: the backlog is draining.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backing_off(state: ShipPhase) -> ShipState {
        ShipState {
            state,
            backoff_until_ms: Some(crate::time::now_ms() + 60_000),
            consecutive_failures: 3,
            last_error: None,
            last_success_ms: None,
            delivered_events: 0,
            in_flight_requests: 0,
        }
    }

    /// A running shipper's next attempt is shown; a stopped relay's recorded backoff is not
    /// (nothing will make that attempt until the relay starts).
    #[test]
    fn the_next_attempt_is_shown_only_while_the_relay_runs() {
        let mut out = String::new();
        render_ship(
            &mut out,
            &backing_off(ShipPhase::BackingOff),
            "  shipper       ",
        );
        assert!(out.contains("next attempt at"), "{out}");
        let mut out = String::new();
        render_ship(
            &mut out,
            &backing_off(ShipPhase::Stopped),
            "  shipper       ",
        );
        assert!(!out.contains("next attempt"), "{out}");
        assert!(out.contains("stopped, 3 failed attempts in a row"), "{out}");
    }
}
