//! Spool tests on real sled directories (temp dirs, never a mock).

use super::*;
use super::{FullPolicy, SpoolSettings};
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::time::Duration;

pub(super) fn settings(dir: &Path) -> SpoolSettings {
    SpoolSettings {
        dir: dir.to_path_buf(),
        min_free_bytes: 0,
        max_bytes: 1 << 30,
        full_policy: FullPolicy::DropOldest,
        commit_interval: Duration::from_millis(1),
        cache_bytes: 8 << 20,
        rotate_bytes: super::ROTATE_BYTES,
    }
}

pub(super) fn open(s: &SpoolSettings) -> Spool {
    Spool::open(s, Arc::new(Metrics::new())).expect("open spool")
}

pub(super) fn rec(text: &str) -> NewRecord {
    NewRecord {
        received_ms: 1_000,
        kind: SourceKind::WebSocket,
        flags: 0,
        payload: Bytes::copy_from_slice(text.as_bytes()),
    }
}

pub(super) fn recs(prefix: &str, n: usize) -> Vec<NewRecord> {
    (0..n).map(|i| rec(&format!("{prefix}-{i}"))).collect()
}

pub(super) fn all_pending(s: &Spool) -> Vec<(u64, String)> {
    s.pending(0, usize::MAX, None)
        .unwrap()
        .into_iter()
        .map(|r| (r.seq, String::from_utf8(r.payload.to_vec()).unwrap()))
        .collect()
}

#[test]
fn commit_read_ack_and_resume_mid_block() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    {
        let spool = open(&s);
        assert_eq!(spool.commit(&recs("a", 10)).unwrap(), 0..10);
        assert_eq!(spool.commit(&recs("b", 5)).unwrap(), 10..15);
        let b = spool.read_block(0).unwrap().unwrap();
        assert_eq!((b.start, b.end, b.records.len()), (0, 10, 10));
        spool.ack(4).unwrap(); // part of the first block
        let st = spool.stats();
        assert_eq!(st.pending_events, 11);
        assert_eq!(st.delivered_position, 4);
        spool.flush().unwrap();
    }
    let spool = open(&s);
    let pending = all_pending(&spool);
    assert_eq!(pending.first().unwrap(), &(4, "a-4".to_string()));
    assert_eq!(pending.len(), 11);
    assert_eq!(spool.stats().pending_events, 11);
    // The first block is removed once fully acknowledged; numbering goes on.
    spool.ack(10).unwrap();
    assert_eq!(spool.block_starts(), vec![10]);
    assert_eq!(spool.commit(&recs("c", 1)).unwrap(), 15..16);
}

#[test]
fn sequence_numbers_keep_growing_after_everything_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    {
        let spool = open(&s);
        spool.commit(&recs("a", 3)).unwrap();
        spool.ack(3).unwrap();
        assert!(spool.block_starts().is_empty());
        spool.flush().unwrap();
    }
    let spool = open(&s);
    assert_eq!(spool.commit(&recs("b", 1)).unwrap(), 3..4);
    assert_eq!(spool.stats().pending_events, 1);
}

#[test]
fn a_second_open_of_the_same_directory_fails_with_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let _first = open(&s);
    match Spool::open(&s, Arc::new(Metrics::new())) {
        Err(SpoolError::InUse(p)) => assert_eq!(p, dir.path()),
        Err(other) => panic!("expected InUse, got {other}"),
        Ok(_) => panic!("expected InUse, got a second handle"),
    }
}

#[test]
fn a_corrupt_block_is_dead_lettered_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&settings(dir.path()));
    spool.commit(&recs("a", 3)).unwrap();
    let a = spool.stats().stored_bytes;
    spool.commit(&recs("b", 3)).unwrap();
    let b = spool.stats().stored_bytes - a;
    spool.commit(&recs("c", 3)).unwrap();
    let stored = spool.stats().stored_bytes;
    spool
        .corrupt_block_for_tests(3, b"QSB\x01 this is not a block")
        .unwrap();
    let got: Vec<String> = all_pending(&spool).into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, ["a-0", "a-1", "a-2", "c-0", "c-1", "c-2"]);
    let st = spool.stats();
    assert_eq!(st.dead_letter_blocks, 1);
    assert_eq!(
        st.stored_bytes,
        stored - b,
        "the dead block no longer counts"
    );
    let dead = spool.dead_list().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id.to_string(), "block:3");
    assert!(
        dead[0].reason.contains("truncated") || dead[0].reason.contains("checksum"),
        "{}",
        dead[0].reason
    );
    // The raw bytes are kept for the operator.
    let d = spool.dead_get(dead[0].id).unwrap().unwrap();
    assert_eq!(&d.payload[..], b"QSB\x01 this is not a block");
}

#[test]
fn refused_events_can_be_dead_lettered_retried_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&settings(dir.path()));
    spool.commit(&recs("a", 3)).unwrap();
    let b = spool.read_block(0).unwrap().unwrap();
    spool
        .dead_letter_events(
            "logscale",
            &[(b.records[1].clone(), "HTTP 400: bad".into())],
        )
        .unwrap();
    spool.ack(3).unwrap();
    assert_eq!(spool.stats().dead_letter_events, 1);
    assert_eq!(spool.stats().pending_events, 0);
    let retried = spool.dead_retry(None, None).unwrap();
    assert_eq!(retried, vec![DeadId::new(DeadKind::Event, 1)]);
    assert_eq!(all_pending(&spool), vec![(3, "a-1".to_string())]);
    assert_eq!(spool.stats().dead_letter_events, 0);

    spool
        .dead_letter_events(
            "logscale",
            &[(
                spool.read_block(3).unwrap().unwrap().records[0].clone(),
                "x".into(),
            )],
        )
        .unwrap();
    assert_eq!(spool.dead_purge(None, None).unwrap().len(), 1);
    assert!(spool.dead_list().unwrap().is_empty());
}

#[test]
fn reads_stop_at_the_durable_end() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&settings(dir.path()));
    assert!(spool.read_block(0).unwrap().is_none());
    spool.commit(&recs("a", 2)).unwrap();
    assert_eq!(spool.durable_end(), 2);
    assert!(spool.read_block(2).unwrap().is_none());
    // A block stored and indexed but not yet durable (the moment between sled's insert
    // and the sync): the reader must not see it.
    spool.commit(&recs("b", 2)).unwrap();
    spool.inner.durable_end.send_replace(2);
    assert!(spool.read_block(2).unwrap().is_none(), "not durable yet");
    let a = spool.read_block(0).unwrap().unwrap();
    assert_eq!((a.start, a.end), (0, 2));
    assert!(spool.pending(0, 10, None).unwrap().len() == 2);
    spool.inner.durable_end.send_replace(4);
    assert_eq!(spool.read_block(2).unwrap().unwrap().records.len(), 2);
    // The same from a gap below the durable end (the block before it dead-lettered): the
    // next block starts exactly at the durable end and is not read.
    spool.commit(&recs("c", 2)).unwrap();
    spool.inner.durable_end.send_replace(4);
    spool.ack(2).unwrap();
    spool.corrupt_block_for_tests(2, b"not a block").unwrap();
    assert!(
        spool.read_block(2).unwrap().is_none(),
        "block 4 is not durable"
    );
    spool.inner.durable_end.send_replace(6);
    assert_eq!(spool.read_block(2).unwrap().unwrap().records[0].seq, 4);
}

/// The writer's queue is bounded in bytes: producers of records far larger in total than
/// the budget (and one larger than the whole budget) all get through, waiting for room,
/// and every byte of the budget is given back once the records are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_queue_is_bounded_in_bytes_and_gives_its_room_back() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&settings(dir.path()));
    let budget = 16 << 10;
    let (appender, writer) = spool.start_writer(budget);
    let record = |n: usize| NewRecord::new(SourceKind::WebSocket, Bytes::from(vec![b'x'; n]));
    let mut tasks = Vec::new();
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..4 {
        let (a, most) = (appender.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                a.send(record(3000)).await.unwrap();
                most.fetch_max(a.queued_bytes(), std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    // Larger than the whole budget: it takes all of it and still goes through.
    appender.send_durable(record(40 << 10)).await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let m = most.load(std::sync::atomic::Ordering::Relaxed);
    assert!(m <= budget, "{m} bytes queued with a budget of {budget}");
    // The producers outran the writer, so the bound was what held them back.
    assert!(m > budget / 2, "the queue never filled ({m} bytes at most)");
    // Everything committed: the whole budget is free again.
    let freed = eventually_sync(|| appender.queued_bytes() == 0);
    assert!(freed, "{} bytes still held", appender.queued_bytes());
    drop(appender);
    writer.await.unwrap();
    assert_eq!(all_pending(&spool).len(), 801);
}

/// Records keep their `Bytes` (zero-copy) while the queue has room; once it is more than
/// half full they are copied, so that a waiting record no longer shares its source buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_copied_out_of_their_buffer_only_when_the_queue_is_crowded() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&settings(dir.path()));
    let (appender, writer) = spool.start_writer(1000);
    let buffer = Bytes::from(vec![b'x'; 4096]);
    let slice = buffer.slice(0..100);
    assert_eq!(
        appender.to_queue(slice.clone()).as_ptr(),
        slice.as_ptr(),
        "room: zero-copy"
    );
    // Fill the budget past half by holding permits, as queued records would.
    let held = appender.hold_for_test(600);
    let queued = appender.to_queue(slice.clone());
    assert_eq!(queued, slice);
    assert_ne!(queued.as_ptr(), slice.as_ptr(), "crowded: copied");
    drop(held);
    drop(appender);
    writer.await.unwrap();
}

fn eventually_sync(f: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_groups_records_and_confirms_durability_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&settings(dir.path()));
    let (appender, writer) = spool.start_writer(1 << 20);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let a = appender.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..200 {
                seqs.push(a.send_durable(rec(&format!("{t}-{i}"))).await.unwrap());
            }
            seqs
        }));
    }
    for i in 0..1000 {
        appender.send(rec(&format!("bulk-{i}"))).await.unwrap();
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one producer's records keep their order"
        );
        all.extend(seqs);
    }
    drop(appender);
    writer.await.unwrap();
    let pending = all_pending(&spool);
    assert_eq!(pending.len(), 2600);
    assert!(pending.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    // Grouped: far fewer blocks than records.
    assert!(
        spool.block_starts().len() < 2600 / 4,
        "{} blocks",
        spool.block_starts().len()
    );
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 1600);
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    /// Acknowledge this many more pending records (clamped to what is pending).
    Ack(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..40).prop_map(Op::Append),
        3 => (0usize..60).prop_map(Op::Ack),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any sequence of appends, partial acknowledgements and reopenings keeps every
    /// unacknowledged record exactly once, in order.
    #[test]
    fn unacknowledged_records_survive_exactly_once_in_order(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let mut spool = Some(open(&s));
        let mut model: VecDeque<(u64, String)> = VecDeque::new();
        let mut counter = 0usize;
        for op in ops {
            let sp = spool.as_ref().unwrap();
            match op {
                Op::Append(n) => {
                    let batch: Vec<NewRecord> = (0..n).map(|i| rec(&format!("r{}", counter + i))).collect();
                    let range = sp.commit(&batch).unwrap();
                    for (seq, i) in range.zip(0..n) {
                        model.push_back((seq, format!("r{}", counter + i)));
                    }
                    counter += n;
                }
                Op::Ack(k) => {
                    let k = k.min(model.len());
                    if k > 0 {
                        let up_to = model[k - 1].0 + 1;
                        sp.ack(up_to).unwrap();
                        model.drain(..k);
                    }
                }
                Op::Reopen => {
                    sp.flush().unwrap();
                    drop(spool.take());
                    spool = Some(open(&s));
                }
            }
            let got = all_pending(spool.as_ref().unwrap());
            prop_assert_eq!(&got, &model.iter().cloned().collect::<Vec<_>>());
            prop_assert_eq!(spool.as_ref().unwrap().stats().pending_events, model.len() as u64);
        }
    }
}

#[test]
fn reopen_after_drop() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    for i in 0..3u64 {
        let spool = open(&s);
        assert_eq!(spool.commit(&recs("a", 4)).unwrap(), i * 4..i * 4 + 4);
        drop(spool);
    }
    // Dropped without a flush call: every committed record is there, numbered in order.
    let spool = open(&s);
    let seqs: Vec<u64> = all_pending(&spool).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (0..12).collect::<Vec<_>>());
}

/// Random (incompressible) records, so that a test fills disk quickly.
pub(super) fn noisy(n: usize, size: usize, seed: u64) -> Vec<NewRecord> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|_| rec(&(0..size).map(|_| rng.alphanumeric()).collect::<String>()))
        .collect()
}

#[test]
fn generations_rotate_and_drained_ones_give_their_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.rotate_bytes = 1 << 20;
    let spool = open(&s);
    let mut expected = Vec::new();
    for c in 0..64 {
        let batch = noisy(20, 4000, c);
        let range = spool.commit(&batch).unwrap();
        expected.extend(range.zip(batch.into_iter().map(|r| r.payload)));
    }
    let st = spool.stats();
    assert!(st.generations > 1, "rotated: {st:?}");
    let peak_disk = st.disk_bytes;
    // Reading spans the generations, in order; a reopen keeps everything.
    drop(spool);
    let spool = open(&s);
    let got: Vec<_> = spool
        .pending(0, usize::MAX, None)
        .unwrap()
        .into_iter()
        .map(|r| (r.seq, r.payload))
        .collect();
    assert_eq!(got, expected);
    // Drain: old generations are deleted, the active one replaced when bloated.
    spool.ack(spool.durable_end()).unwrap();
    let st = spool.stats();
    assert_eq!(st.generations, 1);
    assert!(
        st.disk_bytes < peak_disk / 4,
        "disk back near baseline: {} of peak {peak_disk}",
        st.disk_bytes
    );
    let on_disk = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("blocks-")
        })
        .count();
    assert_eq!(on_disk, 1);
    // And it goes on working.
    assert_eq!(
        spool.commit(&recs("after", 2)).unwrap().start,
        expected.len() as u64
    );
}

/// A writer rotating generations while a reader acknowledges and old generations are
/// deleted: every record is read exactly once, in order (this once lost whole
/// generations to a race between a rotation and a retirement).
#[test]
fn concurrent_commits_rotations_and_acks_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.rotate_bytes = 256 << 10;
    let spool = open(&s);
    let total = 600u64;
    let writer = {
        let spool = spool.clone();
        std::thread::spawn(move || {
            for c in 0..total {
                let mut batch = noisy(4, 2000, c);
                for (i, r) in batch.iter_mut().enumerate() {
                    r.payload = Bytes::from(format!(
                        "{}:{}",
                        c * 4 + i as u64,
                        String::from_utf8_lossy(&r.payload)
                    ));
                }
                spool.commit(&batch).unwrap();
            }
        })
    };
    let mut pos = 0;
    let mut next_expected = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while next_expected < total * 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "stuck at {next_expected}"
        );
        match spool.read_block(pos).unwrap() {
            Some(b) => {
                for r in &b.records {
                    let text = String::from_utf8_lossy(&r.payload);
                    let n: u64 = text.split(':').next().unwrap().parse().unwrap();
                    assert_eq!(n, next_expected, "record out of order or missing");
                    next_expected += 1;
                }
                pos = b.end;
                spool.ack(pos).unwrap();
            }
            None => std::thread::yield_now(),
        }
    }
    writer.join().unwrap();
    // Generations were rotated many times, and the drained ones deleted.
    let ids = generation::Gen::list(dir.path()).unwrap();
    assert!(ids.last().copied().unwrap_or(0) >= 4, "rotated: {ids:?}");
    assert!(spool.stats().generations <= 2, "retired: {ids:?}");
}

/// The stored-bytes figure (what the size cap counts) follows commits and acks exactly:
/// in memory it always equals what a reopen recomputes from the blocks on disk.
#[test]
fn stored_bytes_follow_commits_and_acks_and_match_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let spool = open(&s);
    spool.commit(&noisy(10, 500, 1)).unwrap();
    let one = spool.stats().stored_bytes;
    assert!(one > 1_000, "{one}");
    spool.commit(&noisy(10, 500, 2)).unwrap();
    let two = spool.stats().stored_bytes;
    assert!(two > one + 1_000, "{one} then {two}");
    spool.commit(&noisy(10, 500, 3)).unwrap();
    let three = spool.stats().stored_bytes;
    // Acknowledging the first block takes away exactly its size.
    spool.ack(10).unwrap();
    assert_eq!(spool.stats().stored_bytes, three - one);
    spool.flush().unwrap();
    drop(spool);
    let spool = open(&s);
    assert_eq!(
        spool.stats().stored_bytes,
        three - one,
        "recomputed at open"
    );
    spool.ack(30).unwrap();
    assert_eq!(spool.stats().stored_bytes, 0);
}

/// An acknowledged block leaves its generation's database, not just the index.
#[test]
fn an_acknowledged_block_is_removed_from_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&settings(dir.path()));
    spool.commit(&recs("a", 5)).unwrap();
    spool.commit(&recs("b", 5)).unwrap();
    assert!(spool.active().get(0).unwrap().is_some());
    spool.ack(5).unwrap();
    assert!(spool.active().get(0).unwrap().is_none(), "block 0 removed");
    assert!(spool.active().get(5).unwrap().is_some(), "block 5 kept");
}

/// The sequence counter is persisted for itself: when the newest block is gone (here
/// dead-lettered as corrupt) a reopen does not hand its numbers out again.
#[test]
fn numbers_of_a_block_that_is_gone_are_not_reused_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    {
        let spool = open(&s);
        spool.commit(&recs("a", 5)).unwrap();
        spool.commit(&recs("b", 5)).unwrap();
        spool.corrupt_block_for_tests(5, b"garbage").unwrap();
        assert_eq!(all_pending(&spool).len(), 5, "block 5 dead-lettered");
        spool.flush().unwrap();
    }
    let spool = open(&s);
    assert_eq!(spool.commit(&recs("c", 1)).unwrap(), 10..11);
}

/// Whether to rotate is checked every 16 commits (a directory walk per commit would
/// cost more than the commit), and the check rotates once the generation is too large.
#[test]
fn rotation_is_checked_every_sixteen_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.rotate_bytes = 1; // any generation is too large
    let spool = open(&s);
    let first = spool.active().id;
    for c in 0..40 {
        spool.commit(&recs(&format!("c{c}"), 2)).unwrap();
    }
    // Rotations after commits 16 and 32 only: three generations.
    assert_eq!(spool.active().id, first + 2);
    assert_eq!(spool.stats().generations, 3);
}

/// An empty active generation that grew past 3/8 of the rotation size is replaced by a
/// fresh one once drained (sled does not give removed space back); a smaller one is kept.
#[test]
fn an_empty_active_generation_is_replaced_only_when_large() {
    // The same workload three times: to measure, then below and above the threshold.
    let drained = |rotate_bytes: u64| {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.rotate_bytes = rotate_bytes;
        let spool = open(&s);
        for c in 0..4 {
            spool.commit(&noisy(20, 4000, c)).unwrap();
        }
        let size = spool.active().size_on_disk();
        spool.ack(spool.durable_end()).unwrap();
        (dir, spool, size)
    };
    let (_d, spool, size) = drained(1 << 40);
    assert_eq!(spool.active().id, 1);
    assert!(size > 100_000, "{size}");
    // 3/8 of four times the size is 1.5 times it: kept.
    let (_d, spool, _) = drained(size * 4);
    assert_eq!(spool.active().id, 1, "kept at {size} bytes");
    // 3/8 of twice the size is 0.75 times it: replaced, and the old one deleted.
    let (dir, spool, _) = drained(size * 2);
    assert_eq!(spool.active().id, 2, "replaced at {size} bytes");
    assert_eq!(spool.stats().generations, 1);
    assert!(!dir.path().join(Gen::dir_name(1)).exists());
}

/// A block listed in the index but missing from its database is skipped (loudly) and
/// stops counting towards the cap.
#[test]
fn an_indexed_block_missing_from_its_database_is_skipped_and_uncounted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&settings(dir.path()));
    spool.commit(&recs("a", 3)).unwrap();
    let a = spool.stats().stored_bytes;
    spool.commit(&recs("b", 3)).unwrap();
    let both = spool.stats().stored_bytes;
    spool.active().remove_raw(&key(0)).unwrap();
    let got: Vec<String> = all_pending(&spool).into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, ["b-0", "b-1", "b-2"]);
    assert_eq!(spool.stats().stored_bytes, both - a);
}

/// Invariant 8 end to end: 32 MiB of incompressible events leave sled's blob
/// directory empty (blobs are never reclaimed in this workload).
#[test]
fn sled_writes_no_blob_files() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&settings(dir.path()));
    // 32 MiB: enough 1 MiB-raw blocks that unsplit ones would fill leaves past a quarter
    // of a segment.
    for c in 0..32 {
        spool.commit(&noisy(200, 5_200, c)).unwrap();
    }
    spool.flush().unwrap();
    let blobs = dir
        .path()
        .join(Gen::dir_name(spool.active().id))
        .join("blobs");
    let files = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(files, 0, "blob files in {}", blobs.display());
}

/// Rewrites generation `id`'s sled database with `segment_size` (the same trees and
/// values): what a generation made by a relay with another segment size looks like.
fn remake_generation(root: &Path, id: u64, segment_size: usize) {
    let dir = root.join(Gen::dir_name(id));
    let copy = root.join("remade");
    {
        let old = sled::Config::new()
            .path(&dir)
            .segment_size(SEGMENT_SIZE)
            .open()
            .unwrap();
        let new = sled::Config::new()
            .path(&copy)
            .segment_size(segment_size)
            .open()
            .unwrap();
        for name in ["blocks", "index"] {
            let (from, to) = (old.open_tree(name).unwrap(), new.open_tree(name).unwrap());
            for kv in from.iter() {
                let (k, v) = kv.unwrap();
                to.insert(k, v).unwrap();
            }
        }
        new.flush().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::rename(&copy, &dir).unwrap();
}

/// Generations made with 16 MiB segments (before they were 4 MiB) open with their own
/// size, are read and written, and the next generation gets the new size: sled refuses
/// to open a database with another segment size than the one it was made with.
#[test]
fn a_generation_made_with_other_segments_keeps_them_and_new_ones_get_the_new_size() {
    const LEGACY: usize = 16 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    let first = {
        let spool = open(&s);
        spool.commit(&recs("old", 5)).unwrap();
        spool.flush().unwrap();
        spool.active().id
    };
    remake_generation(dir.path(), first, LEGACY);
    let conf = |id: u64| {
        let conf = std::fs::read(dir.path().join(Gen::dir_name(id)).join("conf")).unwrap();
        String::from_utf8_lossy(&conf).into_owned()
    };
    assert!(conf(first).contains(&format!("segment_size: {LEGACY}")));
    s.rotate_bytes = 1 << 20;
    let spool = open(&s);
    spool.commit(&recs("more", 3)).unwrap();
    for c in 0..16 {
        spool.commit(&noisy(20, 4000, c)).unwrap();
    }
    let got = all_pending(&spool);
    assert_eq!(
        got[..8].iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
        ["old-0", "old-1", "old-2", "old-3", "old-4", "more-0", "more-1", "more-2"]
    );
    let newest = spool.active().id;
    assert!(newest > first, "rotated");
    assert!(conf(first).contains(&format!("segment_size: {LEGACY}")));
    assert!(conf(newest).contains(&format!("segment_size: {SEGMENT_SIZE}")));
    drop(spool);
    assert_eq!(all_pending(&open(&s)), got, "and after a reopen");
}
