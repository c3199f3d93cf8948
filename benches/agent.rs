//! Agent benchmarks.
//!
//! 1. Throughput: `lookout ship` (release) reads a file of ~380 B JSON lines and ships it
//!    to an HTTP endpoint in this process that acknowledges `_bulk` and discards the body
//!    (it answers `/_lookout/info`, so the agent speaks the full Lookout protocol: positions
//!    per line, watermarks, gzip level 1). Reported: MiB/s of file read and acknowledged,
//!    the agent's CPU seconds per GiB (from /proc), its peak RSS; median of `RUNS`.
//! 2. Freshness: a writer appends `RATE` lines/s to a file tailed by `lookout ship`,
//!    shipping to a real `lookout serve`; a poller asks the server for the highest `seq`
//!    it can count every 20 ms. A line's freshness is the time from its write to the first
//!    poll that counts it. Reported: p50/p99/max.
//!
//! `cargo bench --bench agent` (env: `LINES`, default 1 000 000; `RUNS`, default 3;
//! `RATE`, default 5000; `SECONDS`, default 20; `ONLY=throughput|freshness`; `WRAPPER`, a
//! profiler command for the agent — its CPU figure is then the wrapper's).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    cpu_seconds, env_or, generate, lookout_command, median, peak_rss_mib, wait_listening,
};

fn main() {
    if !common::invoked_as_benchmark("agent") {
        return;
    }
    lookout::install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let only = std::env::var("ONLY").unwrap_or_default();
    if only.is_empty() || only == "throughput" {
        throughput(&runtime);
    }
    if only.is_empty() || only == "freshness" {
        freshness(&runtime);
    }
}

/// Starts `lookout ship` (under `WRAPPER` if set, e.g. `perf record -g -o FILE --`) and
/// returns it with the address of its metrics.
fn start_agent(args: &[&str]) -> (Child, String) {
    let mut child = lookout_command()
        .arg("ship")
        .args(args)
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("LOOKOUT_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn lookout ship");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let address = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("read stderr") > 0,
            "agent exited"
        );
        if line.contains("agent metrics at /metrics") {
            break line
                .split("address=")
                .nth(1)
                .expect("address")
                .split_whitespace()
                .next()
                .expect("address")
                .to_string();
        }
    };
    // keep draining its log so it never blocks on a full pipe
    std::thread::spawn(move || for _ in stderr.lines() {});
    (child, address)
}

/// SIGTERM and wait (a profiler wrapping the process then writes its data).
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

fn throughput(runtime: &tokio::runtime::Runtime) {
    let lines = env_or("LINES", 1_000_000) as usize;
    let runs = env_or("RUNS", 3) as usize;
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("app.json");
    let bytes = generate(&data, lines);
    println!(
        "agent throughput: {lines} lines, {:.0} MiB, file → discarding HTTP endpoint, {runs} runs",
        bytes as f64 / 1048576.0
    );
    let received = Arc::new(AtomicU64::new(0));
    let endpoint = runtime.block_on(discarding_endpoint(received.clone()));
    let _ = std::io::stdout().flush();
    let (mut rates, mut cpu_per_gib, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let state = work.path().join(format!("state-{run}"));
        let path = data.display().to_string();
        let state_text = state.display().to_string();
        let started = Instant::now();
        let (mut agent, metrics) = start_agent(&[
            "--path",
            &path,
            "--to",
            &endpoint,
            "--state-dir",
            &state_text,
        ]);
        let client = reqwest::Client::new();
        runtime.block_on(async {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let Ok(response) = client.get(format!("http://{metrics}/metrics")).send().await
                else {
                    continue;
                };
                let text = response.text().await.unwrap_or_default();
                if metric(&text, "lookout_agent_lines_shipped_total") >= lines as u64 {
                    break;
                }
            }
        });
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(agent.id());
        let peak = peak_rss_mib(agent.id());
        stop(&mut agent);
        let rate = bytes as f64 / 1048576.0 / elapsed;
        println!(
            "  run {run}: {rate:.0} MiB/s wall, {:.2} CPU-s/GiB ({:.0} MiB per CPU-s), peak RSS {peak:.1} MiB",
            cpu / (bytes as f64 / 1073741824.0),
            bytes as f64 / 1048576.0 / cpu
        );
        rates.push(rate);
        cpu_per_gib.push(cpu / (bytes as f64 / 1073741824.0));
        rss.push(peak);
    }
    let cpu_median = median(&mut cpu_per_gib);
    println!(
        "  the endpoint received {:.0} MiB of gzip bodies in all",
        received.load(Ordering::Relaxed) as f64 / 1048576.0
    );
    println!(
        "agent throughput (median): {:.0} MiB/s wall, {cpu_median:.2} CPU-s/GiB = {:.0} MiB/s per core, peak RSS {:.1} MiB",
        median(&mut rates),
        1024.0 / cpu_median,
        median(&mut rss)
    );
}

/// A `_bulk` endpoint that reads and discards, and answers as Lookout.
async fn discarding_endpoint(received: Arc<AtomicU64>) -> String {
    use axum::routing::{delete, get, post};
    let router = axum::Router::new()
        .route(
            "/_lookout/info",
            get(|| async {
                axum::Json(serde_json::json!({"name": "lookout", "version": "bench"}))
            }),
        )
        .route(
            "/_bulk",
            post(move |body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    received.fetch_add(body.len() as u64, Ordering::Relaxed);
                    axum::Json(serde_json::json!({"took": 0, "errors": false, "items": []}))
                }
            }),
        )
        .route("/_lookout/heartbeat", post(|| async { "{}" }))
        .route("/_lookout/agents/{id}", delete(|| async { "{}" }))
        .layer(axum::extract::DefaultBodyLimit::disable());
    common::serve(router).await
}

fn freshness(runtime: &tokio::runtime::Runtime) {
    let rate = env_or("RATE", 5000);
    let seconds = env_or("SECONDS", 20);
    let work = tempfile::tempdir().expect("tempdir");
    let mut server = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(work.path().join("data"))
        .env("LOOKOUT_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn lookout serve");
    let base = wait_listening(&mut server);
    let file = work.path().join("fresh.json");
    std::fs::write(&file, "").expect("create");
    let path = file.display().to_string();
    let state = work.path().join("state").display().to_string();
    let (mut agent, _) = start_agent(&["--path", &path, "--to", &base, "--state-dir", &state]);

    // the writer: every 10 ms, the lines due by then, each batch stamped with its time
    let started = Instant::now();
    let total = rate * seconds;
    let writer = std::thread::spawn(move || {
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .expect("open");
        let mut written_at = Vec::with_capacity(total as usize);
        let mut seq = 0u64;
        while seq < total {
            let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            let mut chunk = String::new();
            while seq < due {
                chunk.push_str(&format!(
                    "{{\"@timestamp\":\"{}\",\"seq\":{seq},\"service\":\"checkout\",\"status\":500,\"message\":\"freshness probe line {seq}\"}}\n",
                    chrono::Utc::now().to_rfc3339()
                ));
                seq += 1;
            }
            out.write_all(chunk.as_bytes()).expect("write");
            let now = started.elapsed();
            written_at.resize(seq as usize, now);
            std::thread::sleep(Duration::from_millis(10));
        }
        written_at
    });

    // the poller: the highest seq the server counts, every 20 ms
    let mut visible_at: Vec<Duration> = Vec::with_capacity(total as usize);
    let count_url = format!("{base}/logs/_search");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        while (visible_at.len() as u64) < total {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let Ok(response) = client
                .post(&count_url)
                .json(&serde_json::json!({"size": 0, "aggs": {"top": {"max": {"field": "seq"}}}}))
                .send()
                .await
            else {
                continue;
            };
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let Some(max) = body["aggregations"]["top"]["value"].as_f64() else {
                continue;
            };
            let now = started.elapsed();
            while (visible_at.len() as f64) <= max {
                visible_at.push(now);
            }
        }
    });
    let written_at = writer.join().expect("writer");
    // the agent ships in order and the server makes batches visible whole: a line is
    // countable once the highest visible seq reaches it; check the count agrees
    let count: serde_json::Value = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/logs/_count"))
            .send()
            .await
            .expect("count")
            .json()
            .await
            .expect("json")
    });
    assert_eq!(
        count["count"].as_u64(),
        Some(total),
        "every line counted once"
    );
    let mut latencies: Vec<f64> = written_at
        .iter()
        .zip(&visible_at)
        .map(|(written, visible)| visible.saturating_sub(*written).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |quantile: f64| latencies[((latencies.len() - 1) as f64 * quantile) as usize];
    println!(
        "freshness at {rate} lines/s for {seconds} s ({total} lines, write → countable through the server, 20 ms polls): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1]
    );
    stop(&mut agent);
    stop(&mut server);
}
