//! Replays the fuzzing seeds, the minimized corpus the fuzzers grew (`fuzz/corpus-min/`,
//! one input per coverage feature, about 3,400 inputs) and every input that ever broke a
//! fuzz target (`fuzz/regressions/`), so that CI guards the fuzzers' findings without
//! fuzzing.
//!
//! The properties are `qss_relay::fuzzing::*`, shared with the targets in `fuzz/`.

use std::path::Path;

/// A fuzz target's name and its property.
type Target = (&'static str, fn(&[u8]));

fn targets() -> [Target; 5] {
    use qss_relay::fuzzing::*;
    [
        ("frame", check_frame),
        ("content", check_content),
        ("spool_block", check_block),
        ("env_file", check_env_file),
        ("webhook_signature", check_signature),
    ]
}

fn replay(dir: &Path, check: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{} breaks its property", path.display());
        n += 1;
    }
    n
}

#[test]
fn seeds_and_regressions_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    assert!(
        root.join("regressions").is_dir(),
        "fuzz/regressions/ is where findings are kept"
    );
    let mut total = 0;
    for (name, check) in targets() {
        let seeds = replay(&root.join("seeds").join(name), check);
        // Absent until a target has its first finding.
        let regressions = replay(&root.join("regressions").join(name), check);
        let corpus = replay(&root.join("corpus-min").join(name), check);
        assert!(seeds > 0, "no seeds for {name}");
        assert!(
            corpus > 0,
            "no minimized corpus for {name} in fuzz/corpus-min/ (fuzz/run.sh --cmin)"
        );
        total += seeds + regressions + corpus;
    }
    println!("replayed {total} inputs");
}

/// Writes the seed corpus (run with `--ignored` after changing the formats). Deterministic:
/// `.ci/run` runs it and fails if the committed seeds differ from what it writes.
#[test]
#[ignore]
fn generate_seeds() {
    use qss_relay::sim::events::{event_json, ws_frame, FrameFactory, BASE_TS, KINDS};
    use qss_relay::spool::{encode_block, NewRecord, SourceKind};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (i, line) in std::fs::read_to_string(fixtures.join("websocket-frames.ndjson"))
        .unwrap()
        .lines()
        .enumerate()
    {
        write("frame", &format!("sample-frame-{i}"), line.as_bytes());
    }
    for (i, line) in std::fs::read_to_string(fixtures.join("qss-events.ndjson"))
        .unwrap()
        .lines()
        .enumerate()
    {
        write(
            "frame",
            &format!("sample-event-{i}"),
            ws_frame(line).as_bytes(),
        );
        write("content", &format!("sample-event-{i}"), line.as_bytes());
    }
    for (i, line) in std::fs::read_to_string(fixtures.join("webhook-bodies.ndjson"))
        .unwrap()
        .lines()
        .enumerate()
    {
        write("frame", &format!("sample-webhook-{i}"), line.as_bytes());
    }
    for (i, (kind, _)) in KINDS.iter().enumerate() {
        let ev = event_json(kind, i, BASE_TS + i as u64);
        write("frame", &format!("sim-{kind}"), ws_frame(&ev).as_bytes());
        write("content", &format!("sim-{kind}"), ev.as_bytes());
    }
    let f = FrameFactory::websocket();
    // Fixed receive times: the generator writes the same bytes every time, so CI can
    // check that the committed seeds are what it produces.
    let recs: Vec<NewRecord> = (0..5)
        .map(|i| NewRecord {
            received_ms: BASE_TS + i,
            ..NewRecord::new(SourceKind::WebSocket, f.frame(i))
        })
        .collect();
    write("spool_block", "five-frames", &encode_block(100, &recs));
    write("spool_block", "empty", &encode_block(0, &[]));
    write(
        "spool_block",
        "one-webhook",
        &encode_block(
            1,
            &[NewRecord {
                received_ms: BASE_TS,
                ..NewRecord::new(
                    SourceKind::Webhook,
                    bytes::Bytes::from_static(b"{\"event\":\"x\"}"),
                )
            }
            .with_flags(1)],
        ),
    );
    write("env_file", "old-script", b"# old script\nLOGSCALE_HOST=cloud.example.com\nLOGSCALE_INGEST_TOKEN=abc\nZOOM_WSS_URL=wss://ws.zoom.us/ws?subscriptionId=x\r\n\nFROM_ENV\n  INDENTED=1\nQUOTED=\"x\"\n");
    write("env_file", "bad", b"=x\nA B=1\n\xff\n");
    write(
        "webhook_signature",
        "zoom",
        b"secret\x001700000000\x00{\"event\":\"meeting.started\"}\x00v0=00",
    );
    write("webhook_signature", "empty", b"\x00\x00\x00");
}
