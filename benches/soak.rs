//! Soak: everything at once for `MINUTES` (default 60) against the real `lookout serve`
//! (release build), and whether the process stays flat.
//!
//! The load, together:
//! - `_bulk` at `RATE` lines a second (default 200) in batches of varied size (1 to 400
//!   lines), request-log lines with ids in paths, numbers in messages, unique trace ids
//!   and fields that come and go, each with a unique `seq`;
//! - the in-process agent tailing `app.log`, written at `AGENT_RATE` lines a second
//!   (default 100) and rotated by rename every `ROTATE_MIB` (default 8 MiB), the rotated
//!   file deleted at the next rotation;
//! - `RULES` log rules (default 1 000) evaluated every minute, each notifying a mock Slack
//!   webhook in this process (a tenth of the services get bursts of 500s, so some fire
//!   and resolve);
//! - a scrape target in this process with `SERIES` series (default 10 000) every 15 s;
//! - a query load: two clients, each every 2 s alternating a search with a date
//!   histogram over the last `SEARCH_MINUTES` (default 15) and a PromQL range query over
//!   the last `RANGE_MINUTES` (default 60). Their working set grows until the run is as
//!   old as their windows (a range query over the last hour of 10 000 series holds 2.4 M
//!   samples), so memory is judged flat only after the longer window is full.
//!
//! The metrics head is persisted every 15 minutes (`block_duration = "10m"`, persisted at
//! one and a half of it) so that its write-ahead log goes through whole cycles within
//! the hour. Every 30 s: RSS, open descriptors, threads, both write-ahead logs' bytes and
//! CPU. At the end
//! the writers stop and every line is checked to be counted exactly once (count and sum of
//! `seq` per source), and the server's warnings and errors are listed.
//!
//! `cargo bench --bench soak` (env: `MINUTES`, `RATE`, `AGENT_RATE`, `RULES`, `SERIES`,
//! `ROTATE_MIB`, `WARMUP_MINUTES` (default 10), `SEARCH_MINUTES`, `RANGE_MINUTES`,
//! `PARTITION_SPAN`, the log partitions' span, e.g. `5m` to open and close many).

mod common;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Random, cpu_seconds, env_or};
use serde_json::{Value, json};

const SERVICES: u64 = 1000;

fn service(number: u64) -> String {
    format!("svc-{number:04}")
}

/// A request-log line as real services write them: ids in paths, numbers and users in
/// messages, a unique trace id, optional fields.
fn line(seq: u64, source: &str, random: &mut Random) -> Value {
    let service_number = random.below(SERVICES);
    let status = match random.below(100) {
        0..=1 => 500,
        2..=5 => 404,
        _ => 200,
    };
    let id = random.below(100_000);
    let user = random.below(50_000);
    let latency = random.below(2_000_000) as f64 / 1000.0;
    let mut value = json!({
        "@timestamp": chrono::Utc::now().to_rfc3339(),
        "source": source,
        "seq": seq,
        "service": service(service_number),
        "status": status,
        "http": {"method": if id.is_multiple_of(5) { "POST" } else { "GET" }, "path": format!("/api/v1/cart/{id}")},
        "message": format!("GET /api/v1/cart/{id} returned {status} in {latency}ms for user {user}"),
        "trace_id": format!("{:016x}{:016x}", random.next(), random.next()),
    });
    if random.below(3) == 0 {
        let plan = ["free", "pro", "team"][(user % 3) as usize];
        value["user"] = json!({"id": user, "plan": plan});
    }
    if status == 500 {
        let kind = ["timeout", "refused", "reset"][(id % 3) as usize];
        value["error"] = json!({"type": kind});
    }
    value
}

fn write_setup(work: &Path, rules: u64, slack: &str, target: &str) -> (PathBuf, PathBuf) {
    let queries = work.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
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
                "summary": "{{ $count }} HTTP 500s in the last {{ $window }}",
                "notify": ["hook"],
            })
            .to_string(),
        )
        .expect("rule");
    }
    let logs = work.join("app-logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let config = work.join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            r#"[notifiers.hook]
type = "slack"
url = "{slack}/hook"
max_per_second = 1000

[[scrape_configs]]
job_name = "soak"
scrape_interval = "15s"
[[scrape_configs.static_configs]]
targets = ["{target}"]

[metrics]
block_duration = "10m"
{index}

[agent]
[[agent.inputs]]
paths = ["{}/app.log"]
"#,
            logs.display(),
            // PARTITION_SPAN (e.g. `5m`): partitions come and go within a short run
            index = std::env::var("PARTITION_SPAN")
                .map(|span| format!("[index]\npartition_span = \"{span}\"\n"))
                .unwrap_or_default(),
        ),
    )
    .expect("config");
    (queries, config)
}

/// The exposition of `series` series, their values moving with `tick`.
fn exposition(series: u64, tick: u64) -> String {
    let mut out = String::with_capacity(series as usize * 80);
    out.push_str("# TYPE soak_requests_total counter\n");
    for number in 0..series {
        let value = number * 7 + tick * (number % 13);
        out.push_str(&format!(
            "soak_requests_total{{service=\"{}\",instance=\"i-{}\"}} {value}\n",
            service(number % SERVICES),
            number / SERVICES
        ));
    }
    out
}

#[derive(Default)]
struct Sent {
    lines: AtomicU64,
    seq_sum: AtomicU64,
}

/// `_bulk` at `rate` lines a second in batches of 1 to 400 lines.
async fn bulk_writer(base: String, rate: u64, stop: Arc<AtomicBool>, sent: Arc<Sent>) {
    let client = reqwest::Client::new();
    let mut random = Random(0x5eed_0001);
    let mut seq = 0u64;
    let mut burst_minute = u64::MAX;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        if seq >= due {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let mut batch = (1 + random.below(400)).min(due - seq);
        let mut body = String::new();
        let mut push = |value: Value, seq: &mut u64| {
            body.push_str("{\"index\":{}}\n");
            body.push_str(&value.to_string());
            body.push('\n');
            *seq += 1;
        };
        for _ in 0..batch {
            push(line(seq, "bulk", &mut random), &mut seq);
        }
        // once a minute ten services get 25 500s each: their rules fire, the previous
        // minute's resolve
        let minute = started.elapsed().as_secs() / 60;
        if minute != burst_minute {
            burst_minute = minute;
            for number in 0..10 {
                for _ in 0..25 {
                    let mut value = line(seq, "bulk", &mut random);
                    value["service"] = json!(service((minute * 10 + number) % SERVICES));
                    value["status"] = json!(500);
                    push(value, &mut seq);
                    batch += 1;
                }
            }
        }
        loop {
            match client
                .post(format!("{base}/logs/_bulk"))
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => {
                    let answer: Value = response.json().await.unwrap_or(Value::Null);
                    assert_eq!(answer["errors"], false, "bulk items failed: {answer}");
                    break;
                }
                Ok(response) => eprintln!("soak: bulk answered {}; retrying", response.status()),
                Err(error) => eprintln!("soak: bulk failed ({error}); retrying"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        sent.lines.fetch_add(batch, Ordering::Relaxed);
        sent.seq_sum
            .fetch_add((seq - batch..seq).sum::<u64>(), Ordering::Relaxed);
    }
}

/// Appends to `dir/app.log` at `rate` lines a second, rotating by rename every
/// `rotate_bytes` (the previous rotated file is deleted then).
fn file_writer(dir: PathBuf, rate: u64, rotate_bytes: u64, stop: Arc<AtomicBool>, sent: Arc<Sent>) {
    let path = dir.join("app.log");
    let mut random = Random(0x5eed_0002);
    let mut file = std::fs::File::create(&path).expect("app.log");
    let mut written = 0u64;
    let mut seq = 0u64;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        if seq >= due {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let mut text = String::new();
        while seq < due {
            text.push_str(&line(seq, "agent", &mut random).to_string());
            text.push('\n');
            sent.seq_sum.fetch_add(seq, Ordering::Relaxed);
            seq += 1;
        }
        file.write_all(text.as_bytes()).expect("append");
        sent.lines.store(seq, Ordering::Relaxed);
        written += text.len() as u64;
        if written >= rotate_bytes {
            let _ = std::fs::remove_file(dir.join("app.log.1"));
            std::fs::rename(&path, dir.join("app.log.1")).expect("rotate");
            file = std::fs::File::create(&path).expect("app.log");
            written = 0;
        }
    }
}

/// Two clients, each every 2 s: a search with a histogram over the last `SEARCH_MINUTES`,
/// then a PromQL range query over the last `RANGE_MINUTES`.
async fn query_load(base: String, stop: Arc<AtomicBool>, failures: Arc<AtomicU64>) {
    let client = reqwest::Client::new();
    let search_minutes = env_or("SEARCH_MINUTES", 15);
    let range_seconds = env_or("RANGE_MINUTES", 60) * 60;
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let response = if round.is_multiple_of(2) {
            client
                .post(format!("{base}/logs/_search"))
                .json(&json!({
                    "size": 50,
                    "sort": [{"@timestamp": "desc"}],
                    "query": {"bool": {
                        "must": {"query_string": {"query": "status:500 OR error.type:timeout"}},
                        "filter": {"range": {"@timestamp": {"gte": format!("now-{search_minutes}m")}}},
                    }},
                    "aggs": {"over_time": {"date_histogram": {"field": "@timestamp", "fixed_interval": "30s"}}},
                }))
                .send()
                .await
        } else {
            let end = chrono::Utc::now().timestamp();
            client
                .get(format!(
                    "{base}/api/v1/query_range?query=sum%20by%20(service)%20(rate(soak_requests_total%5B5m%5D))&start={}&end={end}&step=30",
                    end - range_seconds as i64
                ))
                .send()
                .await
        };
        if !response
            .is_ok_and(|response| response.status().is_success() || response.status() == 400)
        {
            failures.fetch_add(1, Ordering::Relaxed);
        }
        round += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

struct Sample {
    minute: f64,
    rss_mib: f64,
    /// The heap and other private memory: what a leak grows. RSS also counts the pages
    /// of memory-mapped index files a search touched (RssFile), which grow with the
    /// data searched and which the kernel reclaims under pressure.
    anon_mib: f64,
    file_mib: f64,
    fds: usize,
    threads: u64,
    wal_mib: f64,
    tsdb_wal_mib: f64,
    cpu: f64,
}

fn sample(pid: u32, data: &Path, started: Instant) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let bytes = |dir: &str| -> f64 {
        std::fs::read_dir(data.join(dir))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| entry.metadata().ok())
            .map(|metadata| metadata.len())
            .sum::<u64>() as f64
            / 1_048_576.0
    };
    Sample {
        minute: started.elapsed().as_secs_f64() / 60.0,
        rss_mib: field("VmRSS:") as f64 / 1024.0,
        anon_mib: field("RssAnon:") as f64 / 1024.0,
        file_mib: field("RssFile:") as f64 / 1024.0,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|entries| entries.count())
            .unwrap_or(0),
        threads: field("Threads:"),
        wal_mib: bytes("logs/wal"),
        tsdb_wal_mib: bytes("tsdb/wal"),
        cpu: cpu_seconds(pid),
    }
}

/// Count and sum of `seq` of one source's lines.
async fn counted(client: &reqwest::Client, base: &str, source: &str) -> (u64, f64) {
    let answer: Value = client
        .post(format!("{base}/logs/_search"))
        .json(&json!({
            "size": 0, "track_total_hits": true,
            "query": {"term": {"source": source}},
            "aggs": {"seq_sum": {"sum": {"field": "seq"}}},
        }))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    (
        answer["hits"]["total"]["value"].as_u64().unwrap_or(0),
        answer["aggregations"]["seq_sum"]["value"]
            .as_f64()
            .unwrap_or(-1.0),
    )
}

fn main() {
    if !common::invoked_as_benchmark("soak") {
        return;
    }
    let minutes = env_or("MINUTES", 60);
    let warmup = env_or("WARMUP_MINUTES", 10).min(minutes / 2);
    let rate = env_or("RATE", 200);
    let agent_rate = env_or("AGENT_RATE", 100);
    let rules = env_or("RULES", 1000);
    let series = env_or("SERIES", 10_000);
    let rotate_bytes = env_or("ROTATE_MIB", 8) << 20;
    lookout::install_tls_provider();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let work = tempfile::tempdir().expect("tempdir");
        let posts = Arc::new(AtomicU64::new(0));
        let slack = {
            let posts = Arc::clone(&posts);
            common::serve(axum::Router::new().route(
                "/hook",
                axum::routing::post(move || {
                    let posts = Arc::clone(&posts);
                    async move {
                        posts.fetch_add(1, Ordering::Relaxed);
                        "ok"
                    }
                }),
            ))
            .await
        };
        let scrapes = Arc::new(AtomicU64::new(0));
        let target = {
            let scrapes = Arc::clone(&scrapes);
            common::serve(axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let scrapes = Arc::clone(&scrapes);
                    async move { exposition(series, scrapes.fetch_add(1, Ordering::Relaxed)) }
                }),
            ))
            .await
        };
        let (queries, config) = write_setup(
            work.path(),
            rules,
            &slack,
            target.trim_start_matches("http://"),
        );
        let data = work.path().join("data");
        let (mut child, base) = common::start_lookout(&data, &queries, &config, Stdio::piped());
        let pid = child.id();
        let logged = Arc::new(Mutex::new(Vec::<String>::new()));
        {
            let stderr = child.stderr.take().expect("stderr");
            let logged = Arc::clone(&logged);
            std::thread::spawn(move || {
                for text in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    logged.lock().expect("log").push(text);
                }
            });
        }
        println!(
            "soak: {minutes} min against {base}: _bulk {rate}/s, agent {agent_rate}/s rotating every {} MiB, {rules} rules, {series} series every 15 s, 2 query clients",
            rotate_bytes >> 20
        );
        let stop = Arc::new(AtomicBool::new(false));
        let bulk_sent = Arc::new(Sent::default());
        let agent_sent = Arc::new(Sent::default());
        let query_failures = Arc::new(AtomicU64::new(0));
        let bulk = tokio::spawn(bulk_writer(
            base.clone(),
            rate,
            Arc::clone(&stop),
            Arc::clone(&bulk_sent),
        ));
        let writer = {
            let (dir, stop, sent) = (
                work.path().join("app-logs"),
                Arc::clone(&stop),
                Arc::clone(&agent_sent),
            );
            std::thread::spawn(move || file_writer(dir, agent_rate, rotate_bytes, stop, sent))
        };
        let clients: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn(query_load(
                    base.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&query_failures),
                ))
            })
            .collect();
        let started = Instant::now();
        let mut samples = Vec::new();
        println!("minute  rss_mib  anon_mib  file_mib  fds  threads  wal_mib  tsdb_wal_mib  cpu_s");
        while started.elapsed() < Duration::from_secs(minutes * 60) {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let now = sample(pid, &data, started);
            println!(
                "{:6.1}  {:7.1}  {:8.1}  {:8.1}  {:3}  {:7}  {:7.1}  {:12.1}  {:6.1}",
                now.minute,
                now.rss_mib,
                now.anon_mib,
                now.file_mib,
                now.fds,
                now.threads,
                now.wal_mib,
                now.tsdb_wal_mib,
                now.cpu
            );
            samples.push(now);
        }
        stop.store(true, Ordering::Relaxed);
        bulk.await.expect("bulk writer");
        writer.join().expect("file writer");
        for client in clients {
            client.await.expect("query client");
        }
        // every line counted exactly once: wait for the agent to ship the rest
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        let (bulk_lines, bulk_sum) = (
            bulk_sent.lines.load(Ordering::Relaxed),
            bulk_sent.seq_sum.load(Ordering::Relaxed) as f64,
        );
        let (agent_lines, agent_sum) = (
            agent_sent.lines.load(Ordering::Relaxed),
            agent_sent.seq_sum.load(Ordering::Relaxed) as f64,
        );
        let (mut bulk_counted, mut agent_counted);
        loop {
            let _ = client.post(format!("{base}/_refresh")).send().await;
            bulk_counted = counted(&client, &base, "bulk").await;
            agent_counted = counted(&client, &base, "agent").await;
            if agent_counted.0 >= agent_lines || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let after_warmup: Vec<&Sample> = samples
            .iter()
            .filter(|sample| sample.minute >= warmup as f64)
            .collect();
        let (first, last) = (after_warmup.first(), after_warmup.last());
        let max = |value: fn(&Sample) -> f64| {
            after_warmup
                .iter()
                .map(|sample| value(sample))
                .fold(f64::MIN, f64::max)
        };
        if let (Some(first), Some(last)) = (first, last) {
            let hours = ((last.minute - first.minute) / 60.0).max(1e-9);
            println!(
                "\nafter {warmup} min of warm-up, over {:.0} min: RSS {:.0} → {:.0} MiB (max {:.0}; {:+.1} MiB/h), fds {} → {} (max {:.0}), threads {} → {} (max {:.0}), log WAL {:.1} → {:.1} MiB (max {:.1}), metrics WAL {:.1} → {:.1} MiB (max {:.1}), CPU {:.1}% of a core",
                last.minute - first.minute,
                first.rss_mib,
                last.rss_mib,
                max(|sample| sample.rss_mib),
                (last.rss_mib - first.rss_mib) / hours,
                first.fds,
                last.fds,
                max(|sample| sample.fds as f64),
                first.threads,
                last.threads,
                max(|sample| sample.threads as f64),
                first.wal_mib,
                last.wal_mib,
                max(|sample| sample.wal_mib),
                first.tsdb_wal_mib,
                last.tsdb_wal_mib,
                max(|sample| sample.tsdb_wal_mib),
                100.0 * (last.cpu - first.cpu) / ((last.minute - first.minute) * 60.0).max(1e-9),
            );
            // samples swing by a hundred MiB from one to the next (indexing buffers,
            // query results), so the trend is a least-squares slope over every sample and
            // the means of the first and last fifth, not two single samples
            let trend = |value: fn(&Sample) -> f64| {
                let n = after_warmup.len() as f64;
                let (sx, sy) = after_warmup.iter().fold((0.0, 0.0), |(sx, sy), sample| {
                    (sx + sample.minute, sy + value(sample))
                });
                let (sxx, sxy) = after_warmup.iter().fold((0.0, 0.0), |(sxx, sxy), sample| {
                    (
                        sxx + sample.minute * sample.minute,
                        sxy + sample.minute * value(sample),
                    )
                });
                let slope_per_hour = 60.0 * (n * sxy - sx * sy) / (n * sxx - sx * sx).max(1e-9);
                let fifth = (after_warmup.len() / 5).max(1);
                let mean = |samples: &[&Sample]| {
                    samples.iter().map(|sample| value(sample)).sum::<f64>() / samples.len() as f64
                };
                (
                    mean(&after_warmup[..fifth]),
                    mean(&after_warmup[after_warmup.len() - fifth..]),
                    slope_per_hour,
                )
            };
            for (name, value) in [
                ("RSS", (|sample: &Sample| sample.rss_mib) as fn(&Sample) -> f64),
                ("anonymous (heap)", |sample: &Sample| sample.anon_mib),
                ("file-backed (mapped index)", |sample: &Sample| sample.file_mib),
            ] {
                let (early, late, slope) = trend(value);
                println!(
                    "{name}: mean of the first fifth {early:.0} MiB, of the last fifth {late:.0} MiB; least-squares slope {slope:+.0} MiB/h"
                );
            }
        }
        println!(
            "exactly once: _bulk sent {bulk_lines} (seq sum {bulk_sum}), counted {} (seq sum {}); agent wrote {agent_lines} (seq sum {agent_sum}), counted {} (seq sum {})",
            bulk_counted.0, bulk_counted.1, agent_counted.0, agent_counted.1
        );
        println!(
            "notifications received: {}; scrapes served: {}; failed queries: {}",
            posts.load(Ordering::Relaxed),
            scrapes.load(Ordering::Relaxed),
            query_failures.load(Ordering::Relaxed)
        );
        let logged = logged.lock().expect("log").clone();
        println!("server warnings and errors: {}", logged.len());
        for text in logged.iter().take(20) {
            println!("  {text}");
        }
        let exact = bulk_counted == (bulk_lines, bulk_sum) && agent_counted == (agent_lines, agent_sum);
        println!("{}", if exact { "every line counted exactly once" } else { "MISMATCH" });
        let _ = child.kill();
        let _ = child.wait();
    });
}
