//! Batches: the records of a contiguous range of spool sequence numbers, and the request
//! body they encode to, with each event's span kept so that the body can be split (413)
//! or bisected (400) without encoding again.
//!
//! The shipping loop only gathers records (cheap); each delivery task encodes its own
//! batch, so that encoding, the heaviest step, runs on as many cores as batches are in
//! flight.

use crate::spool::Record;
use std::sync::atomic::{AtomicU32, Ordering};

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

    /// Whether `next` should start a new batch instead: the batch would hold
    /// `max_events`, or its body, as `ratio` predicts it from the estimate, would pass
    /// `max_bytes` less a margin (a body over `max_bytes` goes out as two requests).
    pub(crate) fn is_full_for(&self, next: &Record, limits: Limits, ratio: &SizeRatio) -> bool {
        !self.records.is_empty()
            && (self.records.len() >= limits.max_events
                || ratio.predict(self.estimated_bytes + next.payload.len() + LINE_OVERHEAD)
                    > limits.max_bytes - limits.max_bytes / MARGIN)
    }

    pub(crate) fn push(&mut self, record: Record) {
        self.estimated_bytes += record.payload.len() + LINE_OVERHEAD;
        self.end = self.end.max(record.seq + 1);
        self.records.push(record);
    }
}

/// A batch is cut at `max_bytes - max_bytes / MARGIN` of predicted body: a 1 MB Sentinel
/// request is cut at 0.98 MB.
const MARGIN: usize = 50;

/// How many bytes a destination's body takes per byte of the estimate (`payload +
/// LINE_OVERHEAD` per event), learnt from the batches it encoded. Without it batches were
/// cut by the estimate alone: a QSS frame of 1,554 bytes is a 1,397-byte HEC line and a
/// 1,303-byte Sentinel row, so Sentinel's requests held 0.74 MB of the 1 MB they may
/// (`cargo bench --bench destinations -- e2e` prints the mean request size).
#[derive(Debug)]
pub(crate) struct SizeRatio {
    /// Body bytes per 1,024 estimated bytes.
    per_1024: AtomicU32,
}

impl SizeRatio {
    /// Bodies under this many estimated bytes say too little to learn from.
    const MIN_SAMPLE: usize = 64 * 1024;

    pub(crate) fn new() -> SizeRatio {
        SizeRatio {
            per_1024: AtomicU32::new(1024),
        }
    }

    /// The body size an estimate predicts.
    pub(crate) fn predict(&self, estimate: usize) -> usize {
        estimate.saturating_mul(self.per_1024.load(Ordering::Relaxed) as usize) / 1024
    }

    /// Learns from a batch estimated at `estimate` that encoded to `body` bytes: a moving
    /// average weighing the last batch as much as all before it, bounded to 1/4..4.
    pub(crate) fn observe(&self, estimate: usize, body: usize) {
        if estimate < Self::MIN_SAMPLE {
            return;
        }
        let seen = (body as u64 * 1024 / estimate as u64).clamp(256, 4096) as u32;
        let old = self.per_1024.load(Ordering::Relaxed);
        self.per_1024
            .store((old + seen).div_ceil(2), Ordering::Relaxed);
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

    fn record(n: usize) -> Record {
        Record {
            seq: 0,
            received_ms: 0,
            kind: crate::spool::SourceKind::WebSocket,
            flags: 0,
            payload: bytes::Bytes::from(vec![b'x'; n]),
        }
    }

    /// Events a batch takes before it is full.
    fn fill(limits: Limits, ratio: &SizeRatio, len: usize) -> usize {
        let mut b = Batch::new(0);
        loop {
            let r = record(len);
            if b.is_full_for(&r, limits, ratio) {
                return b.records.len();
            }
            b.push(r);
        }
    }

    /// Bodies half their estimate: after a few batches the cut follows the body, within
    /// the margin below the limit and never over it.
    #[test]
    fn batches_are_cut_by_the_body_the_learnt_ratio_predicts() {
        let limits = Limits {
            max_events: usize::MAX,
            max_bytes: 1_000_000,
        };
        let ratio = SizeRatio::new();
        let len = 1_554;
        let estimated = len + LINE_OVERHEAD;
        let before = fill(limits, &ratio, len);
        assert_eq!(before, 980_000 / estimated, "no ratio learnt: the estimate");
        // A small batch teaches nothing.
        ratio.observe(1_000, 500);
        assert_eq!(fill(limits, &ratio, len), before);
        for _ in 0..12 {
            let n = fill(limits, &ratio, len);
            ratio.observe(n * estimated, n * estimated / 2);
        }
        let after = fill(limits, &ratio, len);
        let body = after * estimated / 2;
        assert!(
            (960_000..=1_000_000).contains(&body),
            "{after} events, a body of {body} bytes"
        );
        // Bounded: a wild observation cannot make batches unbounded or empty.
        for _ in 0..50 {
            ratio.observe(100_000, 0);
        }
        assert!((256..=260).contains(&ratio.predict(1024)));
        for _ in 0..50 {
            ratio.observe(100_000, 10_000_000);
        }
        assert!((4090..=4096).contains(&ratio.predict(1024)));
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
