//! Spool tests of the size cap and the free-space floor (`room.rs`), on real sled
//! directories.

use super::*;
use crate::metrics::label;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[test]
fn size_cap_drop_oldest_counts_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    let one_block = block::encode(0, &recs("x", 1)).len() as u64;
    s.max_bytes = one_block * 3;
    let spool = open(&s);
    for i in 0..5 {
        spool.commit(&recs(&format!("x{i}"), 1)).unwrap();
    }
    let st = spool.stats();
    assert!(st.stored_bytes <= s.max_bytes);
    assert_eq!(st.dropped_events + st.pending_events, 5);
    assert!(st.dropped_events >= 2);
    let first = all_pending(&spool)[0].0;
    assert_eq!(first, st.dropped_events);
    // The metric operators alert on says the same, under its reason.
    let metric = spool
        .inner
        .metrics
        .events_dropped
        .get_or_create(&label("reason", "spool_full_oldest"))
        .get();
    assert_eq!(metric, st.dropped_events);
    // Persisted: a restart keeps the count.
    drop(spool);
    assert_eq!(open(&s).stats().dropped_events, st.dropped_events);
}

#[test]
fn size_cap_reject_new_refuses_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    let one_block = block::encode(0, &recs("x", 1)).len() as u64;
    s.max_bytes = one_block * 2 + 8;
    s.full_policy = FullPolicy::RejectNew;
    let spool = open(&s);
    spool.commit(&recs("x0", 1)).unwrap();
    spool.commit(&recs("x1", 1)).unwrap();
    assert!(matches!(
        spool.commit(&recs("x2", 1)),
        Err(SpoolError::Full { .. })
    ));
    assert_eq!(spool.stats().dropped_events, 1);
    assert_eq!(all_pending(&spool).len(), 2);
}

#[test]
fn the_size_cap_drops_what_is_not_in_flight_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    let one_block = block::encode(0, &recs("x", 1)).len() as u64;
    s.max_bytes = one_block * 3 + 8;
    let spool = open(&s);
    for i in 0..3 {
        spool.commit(&recs(&format!("x{i}"), 1)).unwrap();
    }
    // The shipper has read block 0: it is in flight.
    assert_eq!(spool.read_for_shipping(0).unwrap().unwrap().end, 1);
    spool.commit(&recs("x3", 1)).unwrap();
    // Block 1 (the oldest not in flight) made room, not block 0.
    assert_eq!(spool.block_starts(), vec![0, 2, 3]);
    assert_eq!(spool.stats().dropped_events, 1);
    // Acknowledging past the gap works as usual.
    spool.ack(4).unwrap();
    assert!(spool.block_starts().is_empty());
}

/// PostgreSQL's "fsyncgate" lesson: a failed sync is not retried as if the data were safe.
/// The producers waiting on that commit hear an error (webhooks answer 503), the spool
/// refuses every later commit and acknowledgement, says why, and signals the daemon to exit
/// so that it restarts on what is really on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_acknowledges_nothing_and_fails_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let spool = open(&s);
    let (appender, writer) = spool.start_writer(64 << 10);
    let first = appender.send_durable(rec("safe")).await.unwrap();
    assert_eq!(first, 0);
    assert!(spool.failure().is_none());

    spool.inner.fail_syncs.store(true, Ordering::Relaxed);
    let err = appender.send_durable(rec("lost-sync")).await.unwrap_err();
    assert!(matches!(err, AppendError::Storage(_)), "{err:?}");
    assert_eq!(spool.durable_end(), 1, "the failed commit is not durable");
    let reason = spool.failure().expect("the spool says why it failed");
    assert!(reason.contains("I/O error"), "{reason}");
    tokio::time::timeout(Duration::from_secs(1), spool.failed())
        .await
        .expect("the daemon is told");

    // Even once syncing would work again, nothing more is taken or acknowledged.
    spool.inner.fail_syncs.store(false, Ordering::Relaxed);
    let err = appender.send_durable(rec("after")).await.unwrap_err();
    assert!(matches!(err, AppendError::Storage(_)), "{err:?}");
    assert!(matches!(spool.ack(1), Err(SpoolError::Failed(_))));
    assert_eq!(spool.stats().failure, Some(reason));
    assert_eq!(spool.inner.metrics.spool_failed.get(), 1);
    drop(appender);
    writer.await.unwrap();
    drop(spool);

    // A restart starts from the disk: the acknowledged record is there.
    let spool = open(&s);
    assert!(spool.failure().is_none());
    let last = spool
        .stats()
        .last_failure
        .expect("the restart knows the last failure");
    assert!(last.reason.contains("I/O error"), "{last:?}");
    assert_eq!(
        spool.inner.metrics.spool_last_failure_timestamp.get(),
        last.unix_seconds()
    );
    let pending = all_pending(&spool);
    assert_eq!(pending.first(), Some(&(0, "safe".to_string())));
    assert!(!pending.iter().any(|(_, p)| p == "after"));
}

/// The free-space floor behaves like the size cap: `reject-new` refuses (counted), and
/// `drop-oldest` drops the oldest generation whole, which gives its space back at once,
/// and no more than it takes.
#[test]
fn below_the_free_space_floor_the_full_policy_applies() {
    let dir = tempfile::tempdir().unwrap();
    // Less free than the floor: the disk counts as full from the first commit.
    let floor = 64 << 20;
    let mut s = settings(dir.path());
    s.full_policy = FullPolicy::RejectNew;
    s.min_free_bytes = floor;
    disk::pretend_free(Some(floor / 2));
    {
        let spool = open(&s);
        let err = spool.commit(&recs("refused", 10)).unwrap_err();
        assert!(matches!(err, SpoolError::DiskFull { .. }), "{err:?}");
        let st = spool.stats();
        assert!(st.disk_full && st.disk_free_bytes.is_some());
        assert_eq!((st.pending_events, st.dropped_events), (0, 10));
        assert_eq!(
            spool
                .inner
                .metrics
                .events_dropped
                .get_or_create(&label("reason", "disk_full_rejected"))
                .get(),
            10
        );
        // Nothing to drop with drop-oldest either: refused the same way, never written.
        assert!(
            !dir.path().join(BALLAST_FILE).exists(),
            "no room for the reserve"
        );
    }

    // drop-oldest with two generations: the older one goes, whole.
    disk::pretend_free(None);
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.rotate_bytes = 1; // every 16th commit starts a new generation
    let spool = open(&s);
    for i in 0..20 {
        spool.commit(&recs(&format!("g{i}"), 5)).unwrap();
    }
    let before = spool.stats();
    assert!(before.generations >= 2, "{before:?}");
    let oldest_gen = spool.state().blocks.values().next().unwrap().gen;
    let first_gen_events = spool
        .state()
        .blocks
        .values()
        .filter(|m| m.gen == oldest_gen)
        .map(|m| u64::from(m.count))
        .sum::<u64>();
    assert!(first_gen_events > 0 && first_gen_events < before.pending_events);
    drop(spool);
    // Just under the floor by half the oldest generation: deleting it is enough, so
    // only it goes; the free space is read again after it went.
    s.min_free_bytes = floor;
    let spool = open(&s);
    let oldest_dir = dir.path().join(format!("blocks-{oldest_gen:08}"));
    let half = dir_size(&oldest_dir) / 2;
    disk::pretend_free(Some(floor + dir_size(dir.path()) - half));
    spool.commit(&recs("new", 5)).unwrap();
    let after = spool.stats();
    assert_eq!(after.dropped_events, first_gen_events, "{after:?}");
    assert_eq!(
        after.pending_events,
        before.pending_events - first_gen_events + 5
    );
    assert!(
        !dir.path().join(format!("blocks-{oldest_gen:08}")).exists(),
        "the dropped generation's directory is deleted"
    );
    assert!(after.disk_full);
    // Back above the floor: the next commit goes through without dropping anything.
    drop(spool);
    disk::pretend_free(None);
    let spool = open(&s);
    spool.commit(&recs("later", 5)).unwrap();
    assert_eq!(spool.stats().dropped_events, first_gen_events);
}

/// The cap is inclusive: a commit that brings the stored bytes exactly to
/// `RELAY_SPOOL_MAX_BYTES` drops nothing; one byte less and the oldest block goes.
#[test]
fn a_commit_that_fills_the_cap_exactly_drops_nothing() {
    let both = {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(&settings(dir.path()));
        spool.commit(&noisy(5, 300, 1)).unwrap();
        spool.commit(&noisy(5, 300, 2)).unwrap();
        spool.stats().stored_bytes
    };
    for (max, dropped) in [(both, 0), (both - 1, 5)] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.max_bytes = max;
        let spool = open(&s);
        spool.commit(&noisy(5, 300, 1)).unwrap();
        spool.commit(&noisy(5, 300, 2)).unwrap();
        assert_eq!(spool.stats().dropped_events, dropped, "cap {max} of {both}");
    }
}

/// Below the free-space floor with a single generation, drop-oldest drops about twice
/// what comes in (sled reuses the space), not the whole generation.
#[test]
fn below_the_floor_with_one_generation_twice_the_incoming_size_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    {
        let spool = open(&s);
        for c in 0..10 {
            spool.commit(&noisy(10, 2000, c)).unwrap();
        }
        assert_eq!(spool.stats().generations, 1);
    }
    s.min_free_bytes = 64 << 20;
    disk::pretend_free(Some(1 << 20));
    let spool = open(&s);
    // Each stored block is ~15 KB; the new one ~11 KB: the two oldest (~30 KB) go.
    spool.commit(&noisy(10, 1500, 99)).unwrap();
    let st = spool.stats();
    assert_eq!(st.dropped_events, 20, "{st:?}");
    assert_eq!(st.pending_events, 90);
    assert_eq!(all_pending(&spool)[0].0, 20, "the oldest were dropped");
}

/// Issue #26 §1: below the floor with nothing pending, the spool gives back the space of
/// its drained generation (sled keeps what removed blocks took) instead of refusing or
/// dropping, for either policy. Failed before the change: every new event refused.
#[test]
fn below_the_floor_a_drained_generation_is_replaced_before_anything_is_refused() {
    for policy in [FullPolicy::RejectNew, FullPolicy::DropOldest] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.full_policy = policy;
        s.min_free_bytes = 64 << 20;
        let spool = open(&s);
        for c in 0..40 {
            spool.commit(&noisy(20, 4000, c)).unwrap();
        }
        spool.ack(spool.stats().next_seq).unwrap();
        let st = spool.stats();
        assert_eq!((st.pending_events, st.generations), (0, 1), "{st:?}");
        let held = dir_size(dir.path());
        let gen = spool.active().id;
        assert!(
            spool.active().size_on_disk() > 2 << 20,
            "the drained generation keeps its space"
        );
        // Free space just under the floor, all of it the spool's own drained files.
        disk::pretend_free(Some(held + (64 << 20) - (1 << 20)));
        spool
            .commit(&recs("after", 5))
            .unwrap_or_else(|e| panic!("{policy:?}: refused with nothing pending: {e}"));
        let st = spool.stats();
        assert_eq!(
            (st.pending_events, st.dropped_events),
            (5, 0),
            "{policy:?} {st:?}"
        );
        assert_eq!(spool.inner.metrics.spool_reclaims.get(), 1);
        assert!(spool.active().id > gen, "a fresh generation");
        assert!(
            !dir.path().join(generation::Gen::dir_name(gen)).exists(),
            "the drained one is deleted"
        );
        assert!(!st.disk_full, "{st:?}");
        disk::pretend_free(None);
    }
}
