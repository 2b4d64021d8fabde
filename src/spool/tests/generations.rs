//! Generations: rotation, retirement, stored bytes, sled's segments and blob files.

use super::*;

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
