//! Remote write, measured (issue 17), against a receiver in this process that decodes
//! every request (snappy, then protobuf) and counts its samples. `PARTS` picks what runs
//! (default `throughput,lag`):
//!
//! - `throughput`: a metrics write-ahead log of `SERIES` (default 10 000) series ×
//!   `SAMPLES` (default 100) samples is written through the TSDB (as scrapes would, one
//!   logged batch per round), then the release `lookout serve` starts on it with one
//!   `[[remote_write]]` and sends the whole log: samples sent per CPU-second of the
//!   server (utime + stime, from `listening` to the last sample received) and the wall
//!   time. Series: `app_requests_total{handler, code, shard, instance, job}` (6 labels
//!   with the name).
//! - `lag`: `lookout serve` scraping `TARGETS` (default 5) loopback targets of
//!   `TARGET_SERIES` (default 10 000) series every second (50 000 samples/s) for
//!   `SECONDS` (default 30) s while writing them to the receiver; the lag of the remote
//!   behind the log (`lookout_remote_storage_highest_timestamp_in_seconds` −
//!   `…_queue_highest_sent_timestamp_seconds`), sampled every second: median and max.
//!
//! `cargo bench --bench remote_write` (env: `PARTS`, `SERIES`, `SAMPLES`, `TARGETS`,
//! `TARGET_SERIES`, `SECONDS`).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{cpu_seconds, env_or, median, start_lookout};
use lookout::tsdb::head::labels;

/// A receiver counting decoded samples; returns its write URL.
fn receiver(runtime: &tokio::runtime::Runtime, received: Arc<AtomicU64>) -> String {
    let router = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(move |body: axum::body::Bytes| {
            let received = Arc::clone(&received);
            async move {
                let Some(request) = lookout::remote_write::proto::decode(&body) else {
                    return axum::http::StatusCode::BAD_REQUEST;
                };
                let samples: usize = request
                    .timeseries
                    .iter()
                    .map(|series| series.samples.len())
                    .sum();
                received.fetch_add(samples as u64, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let base = runtime.block_on(common::serve(router));
    format!("{base}/api/v1/write")
}

fn remote_write_config(url: &str) -> String {
    format!("[[remote_write]]\nurl = \"{url}\"\nname = \"bench\"\n")
}

fn throughput(work: &Path) {
    let series = env_or("SERIES", 10_000) as usize;
    let rounds = env_or("SAMPLES", 100) as i64;
    let data = work.join("throughput-data");
    {
        let tsdb =
            lookout::tsdb::Tsdb::open(&data.join("tsdb"), Default::default()).expect("open tsdb");
        let names: Vec<_> = (0..series)
            .map(|i| {
                labels(&[
                    ("__name__", "app_requests_total"),
                    ("handler", &format!("/api/v{}/item", i % 50)),
                    ("code", &(200 + (i / 50) % 5).to_string()),
                    ("shard", &(i / 250).to_string()),
                    ("instance", "10.0.0.1:9100"),
                    ("job", "bench"),
                ])
            })
            .collect();
        let start = chrono::Utc::now().timestamp_millis() - rounds * 1000;
        for round in 0..rounds {
            let batch: Vec<_> = names
                .iter()
                .enumerate()
                .map(|(i, labels)| {
                    (
                        labels.clone(),
                        start + round * 1000,
                        (round * 7 + i as i64) as f64,
                    )
                })
                .collect();
            tsdb.append(&batch).expect("append");
        }
    }
    let total = series as u64 * rounds as u64;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let received = Arc::new(AtomicU64::new(0));
    let url = receiver(&runtime, Arc::clone(&received));
    let config = work.join("throughput.toml");
    std::fs::write(&config, remote_write_config(&url)).expect("config");
    let queries = work.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let started = Instant::now();
    let (mut server, _) = start_lookout(&data, &queries, &config, std::process::Stdio::inherit());
    let pid = server.id();
    let cpu_before = cpu_seconds(pid);
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (cpu, elapsed) = (cpu_seconds(pid) - cpu_before, started.elapsed());
    let _ = server.kill();
    let _ = server.wait();
    let sent = received.load(Ordering::Relaxed);
    println!(
        "remote write throughput: {sent} of {total} samples ({series} series × {rounds}) sent in {:.2} s wall, {cpu:.2} CPU-s of lookout serve: {:.0} samples per CPU-second, {:.0} samples/s",
        elapsed.as_secs_f64(),
        sent as f64 / cpu.max(0.01),
        sent as f64 / elapsed.as_secs_f64()
    );
}

fn target_body(series: usize, scrape: u64) -> String {
    let mut body = String::with_capacity(series * 80);
    body.push_str("# TYPE app_requests_total counter\n");
    for i in 0..series {
        body.push_str(&format!(
            "app_requests_total{{handler=\"/api/v{}/item\",code=\"{}\",shard=\"{}\"}} {}\n",
            i % 50,
            200 + (i / 50) % 5,
            i / 250,
            scrape * 7 + i as u64
        ));
    }
    body
}

/// `NAME{remote="bench"}` of a `/metrics` page.
fn figure(page: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{remote=\"bench\"}} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
}

fn lag(work: &Path) {
    let targets = env_or("TARGETS", 5) as usize;
    let series = env_or("TARGET_SERIES", 10_000) as usize;
    let seconds = env_or("SECONDS", 30);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let received = Arc::new(AtomicU64::new(0));
    let url = receiver(&runtime, Arc::clone(&received));
    let scrapes = Arc::new(AtomicU64::new(0));
    let mut addresses = Vec::new();
    for _ in 0..targets {
        let scrapes = Arc::clone(&scrapes);
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let scrapes = Arc::clone(&scrapes);
                async move {
                    let scrape = scrapes.fetch_add(1, Ordering::Relaxed);
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        target_body(series, scrape),
                    )
                }
            }),
        );
        addresses.push(runtime.block_on(common::serve(router)));
    }
    let list: Vec<String> = addresses
        .iter()
        .map(|address| format!("\"{}\"", address.trim_start_matches("http://")))
        .collect();
    let config = work.join("lag.toml");
    std::fs::write(
        &config,
        format!(
            "[[scrape_configs]]\njob_name = \"load\"\nscrape_interval = \"1s\"\nscrape_timeout = \"1s\"\n[[scrape_configs.static_configs]]\ntargets = [{}]\n\n{}",
            list.join(", "),
            remote_write_config(&url)
        ),
    )
    .expect("config");
    let queries = work.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let (mut server, base) = start_lookout(
        &work.join("lag-data"),
        &queries,
        &config,
        std::process::Stdio::inherit(),
    );
    let mut lags = Vec::new();
    let started = Instant::now();
    let cpu_before = cpu_seconds(server.id());
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let page = runtime
            .block_on(async { reqwest::get(format!("{base}/metrics")).await?.text().await })
            .unwrap_or_default();
        if let (Some(read), Some(sent)) = (
            figure(&page, "lookout_remote_storage_highest_timestamp_in_seconds"),
            figure(
                &page,
                "lookout_remote_storage_queue_highest_sent_timestamp_seconds",
            ),
        ) && sent > 0.0
        {
            lags.push(read - sent);
        }
    }
    let cpu = cpu_seconds(server.id()) - cpu_before;
    let _ = server.kill();
    let _ = server.wait();
    let scraped = scrapes.load(Ordering::Relaxed) * series as u64;
    let max = lags.iter().copied().fold(0.0, f64::max);
    println!(
        "remote write lag under {:.0} samples/s of scrapes ({targets} targets × {series} series, 1 s): median {:.2} s, max {max:.2} s over {} readings; {} samples received of {scraped} scraped; lookout serve used {cpu:.1} CPU-s in {seconds} s (scrape + store + remote write)",
        (targets * series) as f64,
        if lags.is_empty() {
            f64::NAN
        } else {
            median(&mut lags)
        },
        lags.len(),
        received.load(Ordering::Relaxed),
    );
}

fn main() {
    if !common::invoked_as_benchmark("remote_write") {
        return;
    }
    lookout::install_tls_provider();
    let parts = std::env::var("PARTS").unwrap_or_else(|_| "throughput,lag".into());
    let work = tempfile::tempdir().expect("tempdir");
    for part in parts.split(',') {
        match part.trim() {
            "throughput" => throughput(work.path()),
            "lag" => lag(work.path()),
            other => panic!("unknown part {other}"),
        }
    }
}
