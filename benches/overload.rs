//! Overload: do rules and ingest keep their priority when clients hammer the query APIs?
//!
//! The real `lookout serve` (release build) holds `DOCS` request-log lines (default
//! 1 000 000, the last 6 hours). A log rule counts 500s every 5 s over a 5 s window and
//! notifies a mock Slack webhook in this process; the bench writes a 500 in alternate
//! 10-second blocks, so the rule fires and resolves every 20 s, and each POST's delay
//! after its tick is measured. Meanwhile a loader posts `_bulk` bodies of 2 000 lines
//! (≈ 800 KB, event times within the last minute) from two connections.
//!
//! Phases of `SECONDS` each (default 60), side by side in one run: without query
//! load, then with `CLIENTS` clients (default 16) hammering heavy searches (a
//! `query_string` over every line with a `terms` and a `date_histogram` aggregation,
//! 100 hits sorted by time) and PromQL range queries (`log_matches` over 6 hours at a
//! 1-minute step), half each, back to back. Reported per phase: ingest lines/s, the
//! Slack delay after the tick (p50/p99/max), and the queries answered and refused.
//!
//! The loader runs two ways, each without and with the query load, so four phases: at a
//! steady `RATE` lines a second (default 5 000, ≈ 2 MB/s, 430 M lines a day: what the
//! rule latency is judged at), then saturating (as fast as acknowledged: what the
//! ingest ratio is judged at, and the worst case for a rule, whose evaluation waits for a
//! commit of everything acknowledged).
//!
//! `cargo bench --bench overload` (env: `DOCS`, `SECONDS`, `CLIENTS`, `RATE`).

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Random, env_or, median};
use serde_json::json;

/// `_bulk` bodies of `lines` request lines stamped within the last `span_secs`.
fn bulk_body(lines: u64, span_secs: i64, random: &mut Random) -> String {
    let now = chrono::Utc::now().timestamp_micros();
    let mut body = String::with_capacity(lines as usize * 420);
    for _ in 0..lines {
        let micros = now - (random.below((span_secs * 1_000_000) as u64) as i64);
        let service = format!("svc-{:03}", random.below(200));
        let status = match random.below(100) {
            0..=1 => 404,
            _ => 200,
        };
        body.push_str("{\"index\":{}}\n");
        body.push_str(&common::request_line(micros, &service, status, random).to_string());
        body.push('\n');
    }
    body
}

#[derive(Default)]
struct Phase {
    ingested: AtomicU64,
    answered: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

const LOADERS: u64 = 2;
const LOADER_BATCH: u64 = 2000;

/// Posts bodies of `LOADER_BATCH` lines, paced so that the `LOADERS` together send `rate`
/// lines a second (0: as fast as they are acknowledged).
async fn loader(
    base: String,
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<Arc<Phase>>>,
    rate: Arc<AtomicU64>,
    seed: u64,
) {
    let client = reqwest::Client::new();
    let mut random = Random(seed);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let body = bulk_body(LOADER_BATCH, 60, &mut random);
        let response = client
            .post(format!("{base}/logs/_bulk?filter_path=errors"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(_) if stop.load(Ordering::Relaxed) => return, // the server is stopping
            Err(error) => panic!("bulk: {error}"),
        };
        assert!(
            response.status().is_success(),
            "bulk: {}",
            response.status()
        );
        let current = Arc::clone(&phase.lock().expect("phase"));
        current.ingested.fetch_add(LOADER_BATCH, Ordering::Relaxed);
        let rate = rate.load(Ordering::Relaxed);
        if rate > 0 {
            let period = Duration::from_secs_f64((LOADER_BATCH * LOADERS) as f64 / rate as f64);
            tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
        }
    }
}

async fn hammer(base: String, stop: Arc<AtomicBool>, phase: Arc<Phase>, promql: bool) {
    let client = reqwest::Client::new();
    while !stop.load(Ordering::Relaxed) {
        let response = if promql {
            let end = chrono::Utc::now().timestamp();
            client
                .get(format!(
                    "{base}/api/v1/query_range?query=sum%20by%20(service)%20(log_matches%7Bquery%3D%22errors%22%7D)&start={}&end={end}&step=60",
                    end - 6 * 3600
                ))
                .send()
                .await
        } else {
            client
                .post(format!("{base}/logs/_search"))
                .json(&json!({
                    "size": 100,
                    "sort": [{"@timestamp": "desc"}],
                    "query": {"query_string": {"query": "status:200 OR status:404 OR message:completed"}},
                    "aggs": {
                        "services": {"terms": {"field": "service", "size": 50}},
                        "over_time": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"}},
                    },
                }))
                .send()
                .await
        };
        match response.map(|response| response.status().as_u16()) {
            Ok(200) => phase.answered.fetch_add(1, Ordering::Relaxed),
            Ok(429 | 503) => {
                // refused at once: a well-behaved client backs off a little
                tokio::time::sleep(Duration::from_millis(50)).await;
                phase.refused.fetch_add(1, Ordering::Relaxed)
            }
            _ => phase.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn main() {
    if !common::invoked_as_benchmark("overload") {
        return;
    }
    let docs = env_or("DOCS", 1_000_000);
    let seconds = env_or("SECONDS", 60);
    let clients = env_or("CLIENTS", 16);
    let steady_rate = env_or("RATE", 5000);
    lookout::install_tls_provider();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let work = tempfile::tempdir().expect("tempdir");
        let posts: Arc<Mutex<Vec<chrono::DateTime<chrono::Utc>>>> = Arc::default();
        let slack = {
            let posts = Arc::clone(&posts);
            common::serve(axum::Router::new().route(
                "/hook",
                axum::routing::post(move || {
                    let posts = Arc::clone(&posts);
                    async move {
                        posts.lock().expect("posts").push(chrono::Utc::now());
                        "ok"
                    }
                }),
            ))
            .await
        };
        let queries = work.path().join("queries");
        std::fs::create_dir_all(&queries).expect("mkdir");
        std::fs::write(
            queries.join("errors.json"),
            json!({
                "version": 1, "schedule": "*/5 * * * * *", "index": "logs",
                "query": "status:500", "window": "5s", "group_by": ["service"],
                "threshold": {"op": ">", "value": 0}, "notify": ["hook"],
            })
            .to_string(),
        )
        .expect("rule");
        let config = work.path().join("lookout.toml");
        std::fs::write(
            &config,
            format!("[notifiers.hook]\ntype = \"slack\"\nurl = \"{slack}/hook\"\nmax_per_second = 100\n"),
        )
        .expect("config");
        let (mut child, base) = common::start_lookout(
            &work.path().join("data"),
            &queries,
            &config,
            Stdio::inherit(),
        );
        let client = reqwest::Client::new();
        let mut random = Random(7);
        let mut loaded = 0;
        let prefill = Instant::now();
        while loaded < docs {
            let lines = (docs - loaded).min(10_000);
            let response = client
                .post(format!("{base}/logs/_bulk?filter_path=errors"))
                .header("content-type", "application/x-ndjson")
                .body(bulk_body(lines, 6 * 3600, &mut random))
                .send()
                .await
                .expect("prefill");
            assert!(response.status().is_success());
            loaded += lines;
        }
        let _ = client.post(format!("{base}/_refresh")).send().await;
        let prefill = prefill.elapsed().as_secs_f64();
        println!(
            "overload: {docs} lines (bodies of 10 000, event times over 6 hours: 7 partitions) loaded in {prefill:.1} s ({:.0} lines/s) into {base}; {seconds} s per phase, {clients} clients",
            docs as f64 / prefill
        );
        // the rule's condition flips every 10 s
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (base, stop) = (base.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    if (chrono::Utc::now().timestamp() / 10) % 2 == 0 {
                        let line = json!({"@timestamp": chrono::Utc::now().to_rfc3339(), "service": "checkout", "status": 500});
                        let _ = client
                            .post(format!("{base}/logs/_bulk"))
                            .header("content-type", "application/x-ndjson")
                            .body(format!("{{\"index\":{{}}}}\n{line}\n"))
                            .send()
                            .await;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        }
        let phase = Arc::new(Mutex::new(Arc::new(Phase::default())));
        let rate = Arc::new(AtomicU64::new(steady_rate));
        for seed in [11, 13] {
            tokio::spawn(loader(
                base.clone(),
                Arc::clone(&stop),
                Arc::clone(&phase),
                Arc::clone(&rate),
                seed,
            ));
        }
        // the prefill's last commit and merges settle before anything is measured
        tokio::time::sleep(Duration::from_secs(15)).await;
        let mut ingest_rates = Vec::new();
        for (loader_rate, loaded_phase) in [
            (steady_rate, false),
            (steady_rate, true),
            (0, false),
            (0, true),
        ] {
            rate.store(loader_rate, Ordering::Relaxed);
            let current = Arc::new(Phase::default());
            let hammer_stop = Arc::new(AtomicBool::new(false));
            if loaded_phase {
                for number in 0..clients {
                    tokio::spawn(hammer(
                        base.clone(),
                        Arc::clone(&hammer_stop),
                        Arc::clone(&current),
                        number % 2 == 1,
                    ));
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await; // the load builds up
            posts.lock().expect("posts").clear();
            *phase.lock().expect("phase") = Arc::clone(&current);
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let elapsed = started.elapsed().as_secs_f64();
            let ingested = current.ingested.load(Ordering::Relaxed);
            hammer_stop.store(true, Ordering::Relaxed);
            let mut delays: Vec<f64> = posts
                .lock()
                .expect("posts")
                .iter()
                .map(|at| {
                    // the tick is the last 5-second boundary before the POST
                    let millis = at.timestamp_millis();
                    (millis - millis.div_euclid(5000) * 5000) as f64 / 1000.0
                })
                .collect();
            let count = delays.len();
            let p50 = if count > 0 { median(&mut delays) } else { f64::NAN };
            let p99 = delays.get((count * 99).saturating_sub(1) / 100).copied().unwrap_or(f64::NAN);
            let max = delays.last().copied().unwrap_or(f64::NAN);
            let ingest = if loader_rate > 0 {
                format!("steady {loader_rate} lines/s")
            } else {
                "saturating ingest".to_string()
            };
            let queries = if loaded_phase {
                format!("{clients} query clients")
            } else {
                "no query load".to_string()
            };
            println!(
                "{:<44} ingest {:>8.0} lines/s | Slack after tick p50 {p50:.3} s, p99 {p99:.3} s, max {max:.3} s ({count} POSTs) | queries answered {}, refused {}, failed {}",
                format!("{ingest}, {queries}"),
                ingested as f64 / elapsed,
                current.answered.load(Ordering::Relaxed),
                current.refused.load(Ordering::Relaxed),
                current.failed.load(Ordering::Relaxed),
            );
            ingest_rates.push(ingested as f64 / elapsed);
            tokio::time::sleep(Duration::from_secs(2)).await; // the hammer drains
        }
        println!(
            "saturating ingest under query load: {:.2} of its unloaded rate (target ≥ 0.5)",
            ingest_rates[3] / ingest_rates[2]
        );
        stop.store(true, Ordering::Relaxed);
        let _ = child.kill();
        let _ = child.wait();
    });
}
