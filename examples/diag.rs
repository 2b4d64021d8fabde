use qss_relay::config::{Config, Env};
use qss_relay::metrics::Metrics;
use qss_relay::sim::logscale::{FakeLogScale, SinkOptions};
use qss_relay::sim::zoom::{FakeZoom, ZoomOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};
#[tokio::main]
async fn main() {
    let zoom = FakeZoom::start(ZoomOptions::default()).await.unwrap();
    let sink = FakeLogScale::start("t", SinkOptions { keep_events: false, track_ids: false }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = Env::from_pairs(zoom.env_pairs());
    env.set("LOGSCALE_HOST", sink.base_url());
    env.set("LOGSCALE_INGEST_TOKEN", "t");
    env.set("RELAY_SPOOL_DIR", dir.path().join("s").display().to_string());
    env.set("RELAY_ADMIN_ADDR", "off");
    for (k, v) in std::env::vars() { if k.starts_with("RELAY_") || k.starts_with("LOGSCALE_") { env.set(k, v); } }
    let cfg = Config::from_env(&env).unwrap();
    let metrics = Arc::new(Metrics::new());
    let relay = qss_relay::pipeline::start(&cfg, metrics.clone()).await.unwrap();
    zoom.wait_until(Duration::from_secs(5), |z| z.connections == 1).await;
    let n = 300_000;
    let t = Instant::now();
    zoom.send(n);
    let mut last = Instant::now();
    while sink.stats().events < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if last.elapsed() > Duration::from_millis(500) {
            last = Instant::now();
            println!("{:>5.1}s sent {:>7} received {:>7} durable {:>7} shipped {:>7}", t.elapsed().as_secs_f64(), zoom.stats().events_sent, metrics.events_received.get_or_create(&qss_relay::metrics::label("source","websocket")).get(), relay.spool.durable_end(), sink.stats().events);
        }
    }
    let el = t.elapsed();
    println!("{} events in {:?}: {:.0}/s", n, el, n as f64 / el.as_secs_f64());
    for l in metrics.render().lines() {
        if l.contains("append_wait") || l.contains("commit_duration_seconds_sum") || l.contains("commit_duration_seconds_count") || l.contains("commits_total") || l.contains("request_duration_seconds_sum") || l.contains("request_duration_seconds_count") || l.contains("batch_events_sum") || l.contains("batch_events_count") { println!("{l}"); }
    }
    relay.stop().await;
}
