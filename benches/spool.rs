//! The spool: appending with real durable group commits (sled flushes to disk), and
//! draining (read blocks, acknowledge). Realistic QSS frames, ~1.5 KB on average.
//!
//! `cargo bench --bench spool`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use qss_relay::config::{FullPolicy, SpoolSettings};
use qss_relay::metrics::Metrics;
use qss_relay::sim::events::FrameFactory;
use qss_relay::spool::{NewRecord, SourceKind, Spool};
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: u64 = 50_000;

fn settings(dir: &std::path::Path) -> SpoolSettings {
    SpoolSettings {
        dir: dir.to_path_buf(),
        min_free_bytes: 0,
        max_bytes: 1 << 40,
        full_policy: FullPolicy::DropOldest,
        commit_interval: Duration::from_millis(10),
        cache_bytes: 64 << 20,
        rotate_bytes: qss_relay::spool::ROTATE_BYTES,
    }
}

fn frames() -> (Vec<bytes::Bytes>, u64) {
    let f = FrameFactory::websocket();
    let v: Vec<_> = (0..N).map(|i| f.frame(i)).collect();
    let bytes = v.iter().map(|b| b.len() as u64).sum();
    (v, bytes)
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (frames, bytes) = frames();
    eprintln!("{N} frames, {bytes} bytes, {} bytes average", bytes / N);
    let mut g = c.benchmark_group("spool");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(N));
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&settings(dir.path()), Arc::new(Metrics::new())).unwrap();
    let (appender, _writer) =
        rt.block_on(async { spool.start_writer(qss_relay::pipeline::SPOOL_QUEUE_BYTES) });
    g.bench_function("append_durable_50k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let target = spool.durable_end() + N;
                let started = Instant::now();
                rt.block_on(async {
                    for f in &frames {
                        appender
                            .send(NewRecord::new(SourceKind::WebSocket, f.clone()))
                            .await
                            .unwrap();
                    }
                    let mut w = spool.subscribe();
                    while *w.borrow_and_update() < target {
                        w.changed().await.unwrap();
                    }
                });
                total += started.elapsed();
                // Keep the spool small between iterations (not timed).
                spool.ack(spool.durable_end()).unwrap();
            }
            total
        })
    });
    g.bench_function("drain_50k_read_and_ack", |b| {
        b.iter_batched(
            || {
                // Fill (not timed).
                let start = spool.durable_end();
                for chunk in frames.chunks(2000) {
                    let recs: Vec<_> = chunk
                        .iter()
                        .map(|f| NewRecord::new(SourceKind::WebSocket, f.clone()))
                        .collect();
                    spool.commit(&recs).unwrap();
                }
                start
            },
            |start| {
                let mut pos = start;
                let mut n = 0;
                while let Some(block) = spool.read_block(pos).unwrap() {
                    n += block.records.len();
                    pos = block.end;
                    spool.ack(pos).unwrap();
                }
                assert_eq!(n as u64, N);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    eprintln!(
        "spool on disk after the runs: {} bytes",
        spool.stats().disk_bytes
    );
}

criterion_group!(benches, append);
criterion_main!(benches);
