//! The group-commit writer and its queue, bounded in bytes.

use super::*;

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
