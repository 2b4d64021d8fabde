//! One spool, a delivery position per destination: on real sled directories.

use super::*;

fn stored_blocks(s: &Spool) -> usize {
    s.block_starts().len()
}

/// A block leaves the disk only once every destination is past it; each destination
/// resumes from its own position after a reopen.
#[test]
fn a_block_stays_until_every_destination_is_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path());
    {
        let s = open(&st);
        s.set_destinations(&["logscale", "sentinel"]).unwrap();
        s.commit(&recs("a", 10)).unwrap();
        s.commit(&recs("b", 10)).unwrap();
        assert_eq!(stored_blocks(&s), 2);
        s.ack_for("logscale", 20).unwrap();
        assert_eq!(s.sink_floor("logscale"), 20);
        assert_eq!(s.sink_floor("sentinel"), 0);
        assert_eq!(s.floor(), 0, "the floor is the slower destination's");
        assert_eq!(stored_blocks(&s), 2, "sentinel still needs both blocks");
        s.ack_for("sentinel", 10).unwrap();
        assert_eq!(s.floor(), 10);
        assert_eq!(stored_blocks(&s), 1);
        let stats = s.stats();
        let sentinel = stats
            .sink_positions
            .iter()
            .find(|d| d.name == "sentinel")
            .unwrap();
        assert_eq!(sentinel.pending_events, 10);
        let logscale = stats
            .sink_positions
            .iter()
            .find(|d| d.name == "logscale")
            .unwrap();
        assert_eq!(logscale.pending_events, 0);
    }
    let s = open(&st);
    assert_eq!(s.sink_floor("logscale"), 20);
    assert_eq!(s.sink_floor("sentinel"), 10);
    assert_eq!(s.floor(), 10);
}

/// A spool written before there were several destinations has one `floor`: it becomes
/// LogScale's, and a destination added later starts at the oldest pending event.
#[test]
fn an_old_single_destination_spool_opens_with_its_floor_as_logscales() {
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path());
    {
        let s = open(&st);
        s.commit(&recs("a", 30)).unwrap();
        s.ack(12).unwrap();
        // What the previous version wrote: `floor` only, no per-destination keys.
        for k in s.inner.meta.scan_prefix(META_SINK_FLOOR.as_bytes()).keys() {
            s.inner.meta.remove(k.unwrap()).unwrap();
        }
        s.flush().unwrap();
    }
    let s = open(&st);
    assert_eq!(s.sinks(), vec!["logscale".to_string()]);
    assert_eq!(s.sink_floor("logscale"), 12);
    s.set_destinations(&["logscale", "sentinel"]).unwrap();
    assert_eq!(s.sink_floor("sentinel"), 12, "starts at the oldest pending");
    let pending = s.read_block(s.sink_floor("sentinel")).unwrap().unwrap();
    assert_eq!(pending.records[0].seq, 12);
}

/// Removing a destination from the configuration releases what only it still held.
#[test]
fn a_removed_destination_releases_what_only_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&settings(dir.path()));
    s.set_destinations(&["logscale", "sentinel"]).unwrap();
    s.commit(&recs("a", 10)).unwrap();
    s.ack_for("logscale", 10).unwrap();
    assert_eq!(stored_blocks(&s), 1);
    s.set_destinations(&["logscale"]).unwrap();
    assert_eq!(s.sinks(), vec!["logscale".to_string()]);
    assert_eq!(s.floor(), 10);
    assert_eq!(stored_blocks(&s), 0);
    drop(s);
    let s = open(&settings(dir.path()));
    assert_eq!(
        s.sinks(),
        vec!["logscale".to_string()],
        "forgotten on disk too"
    );
}

/// A dead letter of one destination goes back, on retry, to that destination only; one
/// both refused is one entry for both.
#[test]
fn a_dead_letter_is_retried_for_the_destinations_that_refused_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&settings(dir.path()));
    s.set_destinations(&["logscale", "sentinel"]).unwrap();
    s.commit(&recs("a", 3)).unwrap();
    let b = s.read_block(0).unwrap().unwrap();
    s.dead_letter_events("sentinel", &[(b.records[1].clone(), "HTTP 400".into())])
        .unwrap();
    let list = s.dead_list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].destinations, vec!["sentinel".to_string()]);
    s.dead_letter_events("logscale", &[(b.records[2].clone(), "HTTP 400".into())])
        .unwrap();
    s.dead_letter_events("sentinel", &[(b.records[2].clone(), "HTTP 400".into())])
        .unwrap();
    let list = s.dead_list().unwrap();
    assert_eq!(list.len(), 2);
    let both = list.iter().find(|d| d.id.seq == 2).unwrap();
    assert_eq!(both.destinations, vec!["logscale", "sentinel"]);
    s.dead_retry(None, None).unwrap();
    let retried = s.read_block(3).unwrap().unwrap().records;
    assert_eq!(retried.len(), 2);
    let for_sentinel_only = retried.iter().find(|r| r.payload == "a-1").unwrap();
    assert!(for_sentinel_only.is_for("sentinel"));
    assert!(!for_sentinel_only.is_for("logscale"));
    let for_both = retried.iter().find(|r| r.payload == "a-2").unwrap();
    assert!(for_both.is_for("sentinel") && for_both.is_for("logscale"));
    assert!(!for_both.is_malformed());
}

/// `dead retry --sink` and `dead purge --sink` act for one destination: an entry both
/// refused stays listed for the other, and the retried record goes to the named one only.
#[test]
fn a_dead_letter_both_refused_is_released_one_destination_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&settings(dir.path()));
    s.set_destinations(&["logscale", "sentinel"]).unwrap();
    s.commit(&recs("a", 2)).unwrap();
    let b = s.read_block(0).unwrap().unwrap();
    for sink in ["logscale", "sentinel"] {
        s.dead_letter_events(sink, &[(b.records[0].clone(), "HTTP 400".into())])
            .unwrap();
    }
    s.dead_letter_events("logscale", &[(b.records[1].clone(), "HTTP 400".into())])
        .unwrap();
    // Retry for Sentinel: only the entry that concerns it, sent to it alone.
    let retried = s.dead_retry(None, Some("sentinel")).unwrap();
    assert_eq!(retried, vec![DeadId::new(DeadKind::Event, 0)]);
    let again = s.read_block(2).unwrap().unwrap().records;
    assert_eq!(again.len(), 1);
    assert!(again[0].is_for("sentinel") && !again[0].is_for("logscale"));
    let list = s.dead_list().unwrap();
    assert_eq!(
        list.len(),
        2,
        "both entries still listed for LogScale: {list:?}"
    );
    assert!(list.iter().all(|d| d.destinations == vec!["logscale"]));
    assert_eq!(s.stats().dead_letter_events, 2);
    // Purge for Sentinel: nothing of its own is left.
    assert!(s.dead_purge(None, Some("sentinel")).unwrap().is_empty());
    // Purge for LogScale: the entries go.
    assert_eq!(s.dead_purge(None, Some("logscale")).unwrap().len(), 2);
    assert!(s.dead_list().unwrap().is_empty());
    assert_eq!(s.stats().dead_letter_events, 0);
}

/// At the size cap, `drop-oldest` counts per destination what that destination had not
/// yet delivered.
#[test]
fn a_drop_at_the_cap_counts_per_destination_what_it_had_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = settings(dir.path());
    st.max_bytes = 1 << 20;
    let s = open(&st);
    s.set_destinations(&["logscale", "sentinel"]).unwrap();
    let first = s.commit(&super::tests::noisy(100, 4000, 1)).unwrap();
    s.ack_for("logscale", first.end).unwrap();
    // Far more than the cap: the first block goes.
    for seed in 2..8 {
        s.commit(&super::tests::noisy(100, 4000, seed)).unwrap();
    }
    let dropped_ls = s.sink_dropped("logscale");
    let dropped_se = s.sink_dropped("sentinel");
    assert!(
        dropped_se >= 100,
        "sentinel lost the first block: {dropped_se}"
    );
    assert!(
        dropped_ls + 100 <= dropped_se,
        "logscale had delivered the first block: {dropped_ls} vs {dropped_se}"
    );
    assert_eq!(s.stats().dropped_events, dropped_se);
}
