//! Shipper encoding: decoding `content`, the QSS transforms and HEC serialization, per
//! event kind; then request compression (gzip, zstd) and spool block decoding.
//!
//! `cargo bench --bench encode`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use qss_relay::ship::hec::{Encoder, HecSettings};
use qss_relay::ship::HecClient;
use qss_relay::sim::events::{event_json, ws_frame, FrameFactory, BASE_TS, KINDS};
use qss_relay::spool::{NewRecord, Record, SourceKind};
use std::hint::black_box;

fn encoder() -> Encoder {
    Encoder::new(HecSettings {
        host: "relay-bench".into(),
        index: Some("zoom".into()),
        spool_id: "0123456789abcdef".into(),
        webhook_sourcetype: "zoom_webhook".into(),
        redact: Default::default(),
    })
}

fn record(seq: u64, payload: Bytes) -> Record {
    Record {
        seq,
        received_ms: 1_700_000_000_000,
        kind: SourceKind::WebSocket,
        flags: 0,
        payload,
    }
}

fn mix(n: u64) -> Vec<Record> {
    let f = FrameFactory::websocket();
    (0..n).map(|i| record(i, f.frame(i))).collect()
}

fn per_kind(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_per_kind");
    for (kind, _) in KINDS {
        let frame = Bytes::from(ws_frame(&event_json(kind, 7, BASE_TS)));
        let rec = record(1, frame.clone());
        let mut enc = encoder();
        let mut out = Vec::with_capacity(16 * 1024);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(*kind, |b| {
            b.iter(|| {
                out.clear();
                enc.encode(black_box(&rec), &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn mixed_batch(c: &mut Criterion) {
    let records = mix(5000);
    let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    let mut g = c.benchmark_group("encode_batch");
    g.throughput(Throughput::Elements(records.len() as u64));
    let mut enc = encoder();
    let mut out = Vec::with_capacity(16 << 20);
    g.bench_function(
        format!("mix_5000_events_avg_{}B", bytes / records.len()),
        |b| {
            b.iter(|| {
                out.clear();
                for r in &records {
                    enc.encode(r, &mut out);
                }
                black_box(out.len())
            })
        },
    );
    g.finish();
}

fn compression(c: &mut Criterion) {
    let records = mix(5000);
    let mut enc = encoder();
    let mut body = Vec::new();
    for r in &records {
        enc.encode(r, &mut body);
    }
    let mut g = c.benchmark_group("compress_request");
    g.throughput(Throughput::Bytes(body.len() as u64));
    let http = qss_relay::net::http::HttpClient::new(None).unwrap();
    for (name, comp) in [
        ("gzip", qss_relay::config::Compression::Gzip),
        ("zstd", qss_relay::config::Compression::Zstd),
    ] {
        let client = HecClient::new(
            http.clone(),
            "http://127.0.0.1:1",
            &qss_relay::config::Secret::new("t"),
            comp,
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        let out = client.compress(&body);
        eprintln!(
            "{name}: {} → {} bytes ({:.1}:1)",
            body.len(),
            out.len(),
            body.len() as f64 / out.len() as f64
        );
        g.bench_function(name, |b| {
            b.iter(|| black_box(client.compress(black_box(&body)).len()))
        });
    }
    g.finish();
}

/// DEFLATE for the wire, per implementation and level, on the same HEC body: zlib-rs
/// (flate2's backend, streaming) and libdeflate (whole buffers). Prints each ratio.
fn deflate_levels(c: &mut Criterion) {
    let records = mix(5000);
    let mut enc = encoder();
    let mut body = Vec::new();
    for r in &records {
        enc.encode(r, &mut body);
    }
    let mut g = c.benchmark_group("deflate");
    g.throughput(Throughput::Bytes(body.len() as u64));
    for level in [1u32, 2, 3, 6] {
        let zlib = |raw: &[u8]| {
            use std::io::Write;
            let mut e = flate2::write::DeflateEncoder::new(
                Vec::with_capacity(raw.len() / 4),
                flate2::Compression::new(level),
            );
            e.write_all(raw).unwrap();
            e.finish().unwrap()
        };
        let mut ld =
            libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level as i32).unwrap());
        let mut out = vec![0u8; ld.deflate_compress_bound(body.len())];
        let n = ld.deflate_compress(&body, &mut out).unwrap();
        eprintln!(
            "deflate level {level}: zlib-rs {:.2}:1, libdeflate {:.2}:1 ({} bytes)",
            body.len() as f64 / zlib(&body).len() as f64,
            body.len() as f64 / n as f64,
            body.len()
        );
        g.bench_function(format!("zlib-rs_{level}"), |b| {
            b.iter(|| black_box(zlib(black_box(&body)).len()))
        });
        g.bench_function(format!("libdeflate_{level}"), |b| {
            b.iter(|| black_box(ld.deflate_compress(black_box(&body), &mut out).unwrap()))
        });
    }
    g.finish();
}

fn spool_block(c: &mut Criterion) {
    let f = FrameFactory::websocket();
    let recs: Vec<NewRecord> = (0..1000)
        .map(|i| NewRecord::new(SourceKind::WebSocket, f.frame(i)))
        .collect();
    let raw: usize = recs.iter().map(|r| r.payload.len()).sum();
    let block = qss_relay::spool::encode_block(0, &recs);
    eprintln!(
        "spool block: {raw} bytes of frames → {} stored ({:.1}:1)",
        block.len(),
        raw as f64 / block.len() as f64
    );
    let mut g = c.benchmark_group("spool_block");
    g.throughput(Throughput::Bytes(raw as u64));
    g.bench_function("encode_1000", |b| {
        b.iter_batched(
            || recs.clone(),
            |r| black_box(qss_relay::spool::encode_block(0, &r).len()),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decode_1000", |b| {
        b.iter(|| black_box(qss_relay::spool::decode_block(&block).unwrap().1.len()))
    });
    g.finish();
}

criterion_group!(
    benches,
    per_kind,
    mixed_batch,
    compression,
    deflate_levels,
    spool_block
);
criterion_main!(benches);
