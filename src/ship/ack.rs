//! [`AckTracker`]: which part of the spool a destination may acknowledge. Delivery tasks
//! finish out of order; the spool is told only the contiguous prefix of completed ranges
//! (invariant 4), so a crash never skips an event still in flight.

use std::collections::BTreeMap;

/// Tracks completed ranges and yields the contiguous delivered prefix.
#[derive(Debug)]
pub(super) struct AckTracker {
    pub(super) delivered: u64,
    done: BTreeMap<u64, u64>,
}

impl AckTracker {
    pub(super) fn new(delivered: u64) -> AckTracker {
        AckTracker {
            delivered,
            done: BTreeMap::new(),
        }
    }

    pub(super) fn complete(&mut self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        self.done.insert(start, end);
        while let Some(end) = self.done.remove(&self.delivered) {
            self.delivered = end;
        }
        // A range that starts below the prefix (the spool's floor moved past it under the
        // size cap) still counts up to its end.
        while let Some((&s, &e)) = self.done.first_key_value() {
            if s > self.delivered {
                break;
            }
            self.done.remove(&s);
            self.delivered = self.delivered.max(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AckTracker;

    #[test]
    fn only_the_contiguous_prefix_is_acknowledged() {
        let mut t = AckTracker::new(10);
        t.complete(20, 30);
        assert_eq!(t.delivered, 10);
        t.complete(10, 20);
        assert_eq!(t.delivered, 30);
        t.complete(40, 50);
        t.complete(30, 40);
        assert_eq!(t.delivered, 50);
        t.complete(50, 50);
        assert_eq!(t.delivered, 50);
        // Below the prefix (floor moved by the size cap): still counts to its end.
        t.complete(45, 60);
        assert_eq!(t.delivered, 60);
    }
}
