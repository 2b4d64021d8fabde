//! End to end, on loopback: the fake Zoom sending as fast as it can over a real WebSocket
//! → the relay (real pipeline, sled spool on disk) → a fake HEC sink that decompresses
//! and counts. All three share this machine's cores, as they would not in production.
//!
//! Also: draining a backlog already in the spool to the sink.
//!
//! `cargo bench --bench end_to_end`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qss_relay::config::Config;
use qss_relay::metrics::Metrics;
use qss_relay::pipeline;
use qss_relay::sim::events::FrameFactory;
use qss_relay::sim::logscale::{FakeLogScale, SinkOptions};
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use qss_relay::spool::{NewRecord, SourceKind, Spool};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";
const N: u64 = 300_000;

fn config(zoom: &FakeZoom, sink: &FakeLogScale, spool_dir: &std::path::Path) -> Config {
    Config::from_env(&qss_relay::sim::relay_env(zoom, sink, spool_dir)).unwrap()
}

async fn wait_for(sink: &FakeLogScale, events: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while sink.stats().events < events {
        assert!(
            Instant::now() < deadline,
            "sink got {} of {events}",
            sink.stats().events
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn e2e(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let avg = FrameFactory::websocket().average_len() as u64;
    eprintln!("frames average {avg} bytes");
    let mut g = c.benchmark_group("e2e");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(40));
    g.throughput(Throughput::Elements(N));

    let dir = tempfile::tempdir().unwrap();
    let (zoom, sink, relay) = rt.block_on(async {
        let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
        let sink = FakeLogScale::start(
            TOKEN,
            SinkOptions {
                keep_events: false,
                track_ids: false,
            },
        )
        .await
        .unwrap();
        let relay = pipeline::start(
            &config(&zoom, &sink, &dir.path().join("spool")),
            Arc::new(Metrics::new()),
        )
        .await
        .unwrap();
        assert!(
            zoom.wait_until(Duration::from_secs(10), |z| z.connections == 1)
                .await
        );
        (zoom, sink, relay)
    });
    g.bench_function(format!("websocket_to_sink_300k_events_{avg}B"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let target = sink.stats().events + N;
                    let started = Instant::now();
                    zoom.send(N);
                    wait_for(&sink, target).await;
                    total += started.elapsed();
                }
                total
            })
        })
    });
    rt.block_on(relay.stop());

    g.bench_function(format!("backlog_drain_300k_events_{avg}B"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let cfg = config(&zoom, &sink, &dir.path().join("spool"));
                    {
                        // The backlog, as an outage would have left it (not timed).
                        let spool = Spool::open(&cfg.spool, Arc::new(Metrics::new())).unwrap();
                        let f = FrameFactory::websocket();
                        for chunk in 0..(N / 2000) {
                            let recs: Vec<_> = (0..2000)
                                .map(|i| {
                                    NewRecord::new(SourceKind::WebSocket, f.frame(chunk * 2000 + i))
                                })
                                .collect();
                            spool.commit(&recs).unwrap();
                        }
                        spool.flush().unwrap();
                    }
                    let target = sink.stats().events + N;
                    let started = Instant::now();
                    let relay = pipeline::start(&cfg, Arc::new(Metrics::new()))
                        .await
                        .unwrap();
                    wait_for(&sink, target).await;
                    total += started.elapsed();
                    relay.stop().await;
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group!(benches, e2e);
criterion_main!(benches);
