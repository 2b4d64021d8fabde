//! Batches: the records of a contiguous range of spool sequence numbers, and the request
//! body they encode to, with each event's span kept so that the body can be split (413)
//! or bisected (400) without encoding again.
//!
//! The shipping loop only gathers records (cheap); each delivery task encodes its own
//! batch, so that encoding, the heaviest step, runs on as many cores as batches are in
//! flight.

use crate::spool::Record;

/// Bytes an event's HEC line adds to its payload, about (time, source, host, relay_id).
pub(crate) const LINE_OVERHEAD: usize = 200;

/// Size limits of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_events: usize,
    pub max_bytes: usize,
}

/// Records for the spool range `[start, end)`. The range may contain sequence numbers
/// with no record (acknowledged earlier, dead-lettered blocks); they are acknowledged
/// with it.
#[derive(Debug)]
pub(crate) struct Batch {
    pub start: u64,
    pub end: u64,
    pub records: Vec<Record>,
    /// Estimated size of the encoded body.
    pub estimated_bytes: usize,
}

impl Batch {
    pub(crate) fn new(start: u64) -> Batch {
        Batch {
            start,
            end: start,
            records: Vec::new(),
            estimated_bytes: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether `next` should start a new batch instead.
    pub(crate) fn is_full_for(&self, next: &Record, limits: Limits) -> bool {
        !self.records.is_empty()
            && (self.records.len() >= limits.max_events
                || self.estimated_bytes + next.payload.len() + LINE_OVERHEAD > limits.max_bytes)
    }

    pub(crate) fn push(&mut self, record: Record) {
        self.estimated_bytes += record.payload.len() + LINE_OVERHEAD;
        self.end = self.end.max(record.seq + 1);
        self.records.push(record);
    }
}

/// A batch encoded for a destination (HEC lines, Sentinel records).
#[derive(Debug)]
pub(crate) struct Encoded {
    pub body: Vec<u8>,
    /// `(start, end)` of each event's line in `body`.
    pub spans: Vec<(usize, usize)>,
    /// The records as spooled, for the dead-letter area if LogScale refuses one.
    pub records: Vec<Record>,
}

impl Encoded {
    /// Encodes `records` into `body` (a reused buffer; cleared first).
    pub(crate) fn encode(
        records: Vec<Record>,
        mut encode_one: impl FnMut(&Record, &mut Vec<u8>),
        mut body: Vec<u8>,
    ) -> Encoded {
        let estimate: usize = records
            .iter()
            .map(|r| r.payload.len() + LINE_OVERHEAD)
            .sum();
        body.clear();
        // Exactly (rounded up to 1 MiB), not `reserve`: its amortized doubling made every
        // reused 5 MB body 10 MiB as soon as one estimate was a little larger than the
        // last, and the bodies in flight and pooled are a large part of the memory budget.
        body.reserve_exact(estimate.next_multiple_of(1 << 20));
        let mut spans = Vec::with_capacity(records.len());
        for r in &records {
            let start = body.len();
            encode_one(r, &mut body);
            spans.push((start, body.len()));
        }
        Encoded {
            body,
            spans,
            records,
        }
    }

    /// The body bytes of events `[a, b)`: contiguous, since events are laid out in order.
    pub(crate) fn slice(&self, a: usize, b: usize) -> &[u8] {
        &self.body[self.spans[a].0..self.spans[b - 1].1]
    }

    /// Consecutive runs of events, each at most `max_bytes` (or a single larger event).
    pub(crate) fn runs(&self, max_bytes: usize) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        let mut a = 0;
        for (i, &(_, end)) in self.spans.iter().enumerate() {
            if i > a && end - self.spans[a].0 > max_bytes {
                runs.push((a, i));
                a = i;
            }
        }
        if a < self.spans.len() {
            runs.push((a, self.spans.len()));
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(lens: &[usize]) -> Encoded {
        let mut spans = Vec::new();
        let mut at = 0;
        for l in lens {
            spans.push((at, at + l));
            at += l;
        }
        Encoded {
            body: vec![b'x'; at],
            spans,
            records: Vec::new(),
        }
    }

    #[test]
    fn runs_respect_the_size_limit() {
        let e = encoded(&[40, 40, 40, 100, 10, 10]);
        assert_eq!(e.runs(100), vec![(0, 2), (2, 3), (3, 4), (4, 6)]);
        assert_eq!(e.runs(1000), vec![(0, 6)]);
        assert_eq!(
            e.runs(1),
            vec![(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
        );
        assert_eq!(e.slice(4, 6).len(), 20);
        assert!(encoded(&[]).runs(10).is_empty());
    }

    /// A body reused for batches whose estimates creep up stays near the estimate: with
    /// `Vec::reserve` it doubled (10 MiB for 5 MB batches).
    #[test]
    fn a_reused_body_grows_to_the_estimate_not_to_twice_it() {
        let rec = |n: usize| Record {
            seq: 0,
            received_ms: 0,
            kind: crate::spool::SourceKind::WebSocket,
            flags: 0,
            payload: bytes::Bytes::from(vec![b'x'; n]),
        };
        let mut body = Vec::new();
        for extra in 0..4 {
            let records: Vec<Record> = (0..1000).map(|_| rec(4_800 + extra)).collect();
            let estimate: usize = records
                .iter()
                .map(|r| r.payload.len() + LINE_OVERHEAD)
                .sum();
            let e = Encoded::encode(records, |r, out| out.extend_from_slice(&r.payload), body);
            assert!(
                e.body.capacity() <= estimate + (1 << 20),
                "capacity {} for an estimate of {estimate}",
                e.body.capacity()
            );
            body = e.body;
        }
    }
}
