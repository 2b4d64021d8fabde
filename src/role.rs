//! [`Role`]: what the sources and the shippers need to know of high availability, and
//! nothing more (the election itself is [`crate::ha`], which implements this).
//!
//! - Cold standby: a WebSocket source connects to Zoom only while [`Role::is_leader`].
//! - Hot standby: every relay keeps its own subscriptions open and spools what they bring;
//!   a follower's shippers send no QSS event while it follows ([`decide`]): they pass over
//!   those the leader has delivered ([`Role::delivered_up_to_ms`], less [`OVERLAP_MS`]) and
//!   wait at the first one it has not. Webhooks are never held.

use crate::spool::{Record, SourceKind};

/// How much earlier than the leader's delivered mark a follower still keeps a QSS event:
/// the same event reaches two relays at slightly different receive times (network paths,
/// clocks kept by NTP to well under a second). On takeover the new leader ships from the
/// mark less this, so each takeover sends again at most this much of the stream (plus the
/// mark's publishing interval, 1 s).
pub const OVERLAP_MS: u64 = 2_000;

/// This relay's part in an election.
pub trait Role: Send + Sync + 'static {
    /// Whether this relay is the leader now. Fenced: false as soon as its lease may have
    /// expired on the server, whether or not the election task has run since (a process
    /// resumed after a pause longer than the lease must not act as leader).
    fn is_leader(&self) -> bool;
    /// As a follower: every event the leader received at or before this time (ms since
    /// the epoch) is delivered. `None`: nothing known (no leader has published yet).
    fn delivered_up_to_ms(&self) -> Option<u64>;
    /// Changes whenever the leadership or the delivered mark may have changed.
    fn watch(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// What a shipper does with a record under hot standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Send it.
    Ship,
    /// The leader delivered it: done here without sending.
    PassOver,
    /// The leader may not have delivered it yet: stop here until the role or the mark
    /// changes.
    Wait,
}

/// The hot-standby decision for `r` (`role`: `None` without an election, or under cold
/// standby, where nothing is held).
pub fn decide(role: Option<&dyn Role>, r: &Record) -> Hold {
    let Some(role) = role else {
        return Hold::Ship;
    };
    if r.kind != SourceKind::WebSocket || role.is_leader() {
        return Hold::Ship;
    }
    match role.delivered_up_to_ms() {
        Some(mark) if r.received_ms + OVERLAP_MS <= mark => Hold::PassOver,
        _ => Hold::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    struct Fixed(bool, Option<u64>, tokio::sync::watch::Sender<u64>);
    impl Role for Fixed {
        fn is_leader(&self) -> bool {
            self.0
        }
        fn delivered_up_to_ms(&self) -> Option<u64> {
            self.1
        }
        fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
            self.2.subscribe()
        }
    }

    fn rec(kind: SourceKind, received_ms: u64) -> Record {
        Record {
            seq: 1,
            received_ms,
            kind,
            flags: 0,
            payload: Bytes::new(),
        }
    }

    #[test]
    fn a_follower_holds_qss_only_and_passes_over_what_the_leader_delivered() {
        let (tx, _) = tokio::sync::watch::channel(0);
        let follower = Fixed(false, Some(100_000), tx.clone());
        let f: &dyn Role = &follower;
        assert_eq!(
            decide(Some(f), &rec(SourceKind::Webhook, 999_999)),
            Hold::Ship
        );
        assert_eq!(
            decide(Some(f), &rec(SourceKind::WebSocket, 98_000)),
            Hold::PassOver
        );
        assert_eq!(
            decide(Some(f), &rec(SourceKind::WebSocket, 98_001)),
            Hold::Wait
        );
        let unknown = Fixed(false, None, tx.clone());
        assert_eq!(
            decide(Some(&unknown), &rec(SourceKind::WebSocket, 1)),
            Hold::Wait
        );
        let leader = Fixed(true, None, tx);
        assert_eq!(
            decide(Some(&leader), &rec(SourceKind::WebSocket, 1)),
            Hold::Ship
        );
        assert_eq!(decide(None, &rec(SourceKind::WebSocket, 1)), Hold::Ship);
    }
}
