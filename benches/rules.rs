//! Rule evaluation at scale: `RULES` (default 1000) log rules, each evaluated every minute
//! at second 0 over an index of `DOCS` (default 10 M) log lines spanning the last 24 h,
//! while live traffic keeps arriving through `_bulk` (`RATE` lines/s, default 120, 2% of
//! them 500s spread over 1000 services). Each minute 1% of the rules' services get 25
//! extra 500s, so their rules fire at the next tick and the previous ten resolve;
//! every rule notifies its own mock Slack webhook on loopback.
//!
//! Measured on the real `lookout serve` (release build): the server's CPU seconds per
//! minute (utime + stime from /proc) with the rules and, side by side, without them under
//! the same traffic; and how long after the tick each Slack POST arrives. The fired set is
//! checked against the injected one every tick.
//!
//! `cargo bench --bench rules` (env: `DOCS`, `RULES`, `RATE`, `MINUTES` (default 5),
//! `BASELINE_MINUTES` (default 2)).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use common::{Random, cpu_seconds, env_or, median};
use serde_json::json;

const HOUR_MICROS: i64 = 3_600_000_000;
const SERVICES: u64 = 1000;

fn service(number: u64) -> String {
    format!("svc-{number:04}")
}

/// Builds the history (the 24 h before `end_micros`) into the data directory's index
/// location.
fn build_index(indices: &Path, docs: u64, end_micros: i64) {
    let start_micros = end_micros - 24 * HOUR_MICROS;
    common::build_store(indices, docs, |doc_seq, random| {
        let micros = start_micros + (doc_seq as i64 * 24 * HOUR_MICROS) / docs as i64;
        let status = common::http_status(random);
        let service = service(random.below(SERVICES));
        (
            micros,
            common::request_line(micros, &service, status, random),
        )
    });
}

/// The services whose rules should fire at the tick ending minute `minute` (minutes since
/// the epoch).
fn firing_set(minute: i64, rules: u64) -> BTreeSet<String> {
    let firing = (rules / 100).max(1);
    (0..firing)
        .map(|offset| service((minute as u64 * firing + offset) % rules))
        .collect()
}

/// One POST the mock Slack received: when, on which hook, firing or resolved.
#[derive(Clone)]
struct Post {
    at: DateTime<Utc>,
    hook: String,
    firing: bool,
}

async fn start_mock(posts: Arc<Mutex<Vec<Post>>>) -> String {
    let handler = move |axum::extract::Path(hook): axum::extract::Path<String>,
                        body: axum::body::Bytes| {
        let posts = posts.clone();
        async move {
            let at = Utc::now();
            let payload: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let firing = payload["text"]
                .as_str()
                .is_some_and(|text| text.starts_with("[FIRING"));
            posts.lock().expect("posts").push(Post { at, hook, firing });
            "ok"
        }
    };
    common::serve(axum::Router::new().route("/hook/{hook}", axum::routing::post(handler))).await
}

/// Writes the rules and a config naming one Slack notifier per rule.
fn write_rules(work: &Path, rules: u64, mock: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let queries = work.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let mut config = String::new();
    for number in 0..rules {
        let name = service(number);
        std::fs::write(
            queries.join(format!("{name}.json")),
            json!({
                "version": 1,
                "schedule": "0 * * * * *",
                "index": "logs",
                "query": format!("status:500 AND service:{name}"),
                "window": "1m",
                "threshold": {"op": ">", "value": 20},
                "severity": "critical",
                "summary": "{{ $count }} HTTP 500s in the last {{ $window }}",
                "notify": [format!("hook_{name}")],
            })
            .to_string(),
        )
        .expect("rule");
        config.push_str(&format!(
            "[notifiers.hook_{name}]\ntype = \"slack\"\nurl = \"{mock}/hook/{name}\"\n\n"
        ));
    }
    let config_path = work.join("lookout.toml");
    std::fs::write(&config_path, config).expect("config");
    (queries, config_path)
}

fn start_server(data: &Path, queries: &Path, config: &Path) -> (Child, String) {
    common::start_lookout(data, queries, config, Stdio::inherit())
}

/// Live traffic until `stop`: `rate` lines a second, and 25 500s for each service of the
/// current minute's firing set, ten seconds into the minute.
async fn traffic(base: String, rate: u64, rules: u64, stop: Arc<std::sync::atomic::AtomicBool>) {
    let client = reqwest::Client::new();
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let mut injected_minute = -1;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        interval.tick().await;
        let now = Utc::now();
        let micros = now.timestamp_micros();
        let mut body = String::new();
        let mut push = |value: serde_json::Value| {
            body.push_str("{\"index\":{}}\n");
            body.push_str(&value.to_string());
            body.push('\n');
        };
        for _ in 0..rate {
            let status = common::http_status(&mut random);
            let service = service(random.below(SERVICES));
            push(common::request_line(micros, &service, status, &mut random));
        }
        let minute = now.timestamp() / 60;
        if now.second() >= 10 && now.second() < 50 && injected_minute != minute {
            injected_minute = minute;
            for service in firing_set(minute, rules) {
                for _ in 0..25 {
                    push(common::request_line(micros, &service, 500, &mut random));
                }
            }
        }
        let response = client
            .post(format!("{base}/logs/_bulk"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("bulk");
        assert!(
            response.status().is_success(),
            "bulk: {}",
            response.status()
        );
    }
}

/// Waits until the wall clock reaches `second` past a minute.
async fn until_second(second: u32) -> DateTime<Utc> {
    loop {
        let now = Utc::now();
        let wait = (60 + i64::from(second) - i64::from(now.second())) % 60;
        if wait == 0 {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(
            (wait * 1000 - i64::from(now.timestamp_subsec_millis())).max(1) as u64,
        ))
        .await;
    }
}

/// Runs a server under traffic for `minutes` whole minutes (after one minute of warm-up);
/// returns its CPU seconds per minute, and the measured minutes' first tick.
async fn measure(
    data: &Path,
    queries: &Path,
    config: &Path,
    (rate, rules): (u64, u64),
    minutes: u64,
) -> (f64, DateTime<Utc>, DateTime<Utc>) {
    let (mut child, base) = start_server(data, queries, config);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(traffic(base, rate, rules, stop.clone()));
    // warm up through one tick, then measure from 30 s into a minute, whole minutes
    until_second(30).await;
    until_second(30).await;
    let (started, cpu_before) = (Utc::now(), cpu_seconds(child.id()));
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(60 * minutes)).await;
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let per_minute = cpu / (wall.elapsed().as_secs_f64() / 60.0);
    let ended = Utc::now();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.expect("traffic");
    // a graceful stop (SIGTERM), so the next run opens a clean data directory
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    (per_minute, started, ended)
}

fn main() {
    if !common::invoked_as_benchmark("rules") {
        return;
    }
    lookout::install_tls_provider();
    let docs = env_or("DOCS", 10_000_000);
    let rules = env_or("RULES", 1000);
    let rate = env_or("RATE", 120);
    let minutes = env_or("MINUTES", 5);
    let baseline_minutes = env_or("BASELINE_MINUTES", 2);
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");

    let started = Instant::now();
    build_index(
        &data.join("logs/indices"),
        docs,
        Utc::now().timestamp_micros(),
    );
    println!(
        "index: {docs} docs over the last 24 h built in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let mock = start_mock(posts.clone()).await;

        let empty_queries = work.path().join("no-queries");
        std::fs::create_dir_all(&empty_queries).expect("mkdir");
        let empty_config = work.path().join("empty.toml");
        std::fs::write(&empty_config, "").expect("config");
        let (baseline, _, _) = measure(
            &data,
            &empty_queries,
            &empty_config,
            (rate, rules),
            baseline_minutes,
        )
        .await;
        println!(
            "without rules: {baseline:.2} CPU-s per minute ({:.2}% of a core), {rate} lines/s of traffic",
            baseline / 60.0 * 100.0
        );

        let (queries, config) = write_rules(work.path(), rules, &mock);
        let (with_rules, from, to) = measure(&data, &queries, &config, (rate, rules), minutes).await;
        println!(
            "with {rules} rules every minute: {with_rules:.2} CPU-s per minute ({:.2}% of a core); rules alone: {:.2} CPU-s per minute ({:.2}% of a core)",
            with_rules / 60.0 * 100.0,
            with_rules - baseline,
            (with_rules - baseline) / 60.0 * 100.0
        );

        // POST delays after their tick, and the fired sets against the injected ones
        let posts = posts.lock().expect("posts").clone();
        let mut delays = Vec::new();
        let mut mismatched = 0;
        let mut ticks = 0;
        let first_tick = (from.timestamp() / 60 + 1) * 60;
        let mut tick = first_tick;
        while tick <= to.timestamp() {
            ticks += 1;
            let in_tick: Vec<&Post> = posts
                .iter()
                .filter(|post| post.at.timestamp() >= tick && post.at.timestamp() < tick + 60)
                .collect();
            let fired: BTreeSet<String> = in_tick
                .iter()
                .filter(|post| post.firing)
                .map(|post| post.hook.clone())
                .collect();
            let expected = firing_set(tick / 60 - 1, rules);
            if fired != expected {
                mismatched += 1;
                println!("tick {tick}: fired {fired:?}, expected {expected:?}");
            }
            for post in in_tick {
                delays.push((post.at.timestamp_micros() - tick * 1_000_000) as f64 / 1e6);
            }
            tick += 60;
        }
        delays.sort_by(f64::total_cmp);
        let at = |fraction: f64| delays[((delays.len() as f64 * fraction) as usize).min(delays.len() - 1)];
        let mut sorted = delays.clone();
        println!(
            "{} Slack POSTs over {ticks} ticks ({mismatched} ticks whose fired set differed from the injected one): after the tick p50 {:.3} s, p99 {:.3} s, max {:.3} s",
            delays.len(),
            median(&mut sorted),
            at(0.99),
            delays.last().copied().unwrap_or_default()
        );
    });
}
