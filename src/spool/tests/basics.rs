//! Commit, read, acknowledge, reopen; dead letters and corrupt blocks.

use super::*;

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
