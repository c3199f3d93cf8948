//! The metrics store and PromQL, measured (issue 5). `PARTS` picks what runs
//! (default `compression,ram,ingest,promql`):
//!
//! - `compression`: node_exporter-like series (the real node_exporter 1.5 scrape in
//!   `../shared/testdata/exposition/`, `HOSTS` (default 50) hosts, 2 h at 15 s, 0–3 ms
//!   scrape jitter; zero counters, info series, sizes, limits and start times constant,
//!   other counters growing at a pace set by their value with ±20 % noise and idle a
//!   fifth of the time, a third of the other gauges constant and the rest wandering
//!   half of the time; values rounded to the decimals the real scrape shows) written
//!   as one OpenMetrics file and backfilled into a block by `lookout tsdb import` and,
//!   side by side, by `promtool tsdb create-blocks-from openmetrics`; bytes per sample of
//!   chunks + index (no WAL) for both.
//! - `ram`: the head's resident memory per active series with `SERIES` (default
//!   200 000) node_exporter-like series holding one full chunk (120 samples): the growth
//!   of this process' RSS while the head is built (labels built beforehand).
//! - `ingest`: the real `lookout serve` (release) scraping `TARGETS` (default 20) loopback
//!   targets of `TARGET_SERIES` (default 10 000) series each every second for
//!   `SECONDS` (default 30) s; samples stored per CPU-second of the server (utime +
//!   stime), every scrape's samples going through HTTP, parse, relabel, append and a
//!   WAL fsync.
//! - `promql`: 10 000 application series (request counters, latency histograms, node
//!   gauges) × 6 h at 15 s, backfilled into both Lookout and Debian's `prometheus`
//!   (2.42, via `promtool`), then 24 typical queries (range queries over the 6 h at a
//!   60 s step, and instant ones) run `RUNS` (default 5) times against each over HTTP,
//!   alternating; median latency per query, and every result compared value by value.
//!
//! `cargo bench --bench metrics` (env: `PARTS`, `HOSTS`, `SERIES`, `TARGETS`,
//! `TARGET_SERIES`, `SECONDS`, `RUNS`).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Random, cpu_seconds, directory_bytes, env_or, lookout_command, wait_listening};
use lookout::scrape::exposition::{self, Format, MetricType};
use lookout::tsdb::head::{Head, Labels};

/// Resident memory of this process, in bytes.
fn resident_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// One simulated series: a counter growing at its own pace, a constant, or a gauge
/// wandering in steps, rounded to the decimals the real scrape shows.
struct Model {
    labels: Vec<(String, String)>,
    kind: Kind,
    value: f64,
    step: f64,
    scale: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Constant,
    Gauge,
}

impl Model {
    fn advance(&mut self, random: &mut Random) -> f64 {
        let noise = (random.below(2001) as f64 - 1000.0) / 1000.0;
        // a fifth of the scrapes find a counter idle, half find a gauge unchanged
        match self.kind {
            Kind::Constant => {}
            Kind::Counter if random.below(5) == 0 => {}
            Kind::Counter => self.value += self.step * (1.0 + 0.2 * noise),
            Kind::Gauge if random.below(2) == 0 => {}
            Kind::Gauge => self.value = (self.value + self.step * noise).max(0.0),
        }
        self.value = (self.value * self.scale).round() / self.scale;
        self.value
    }
}

fn decimals(value: f64) -> i32 {
    let text = format!("{value}");
    text.split_once('.')
        .map_or(0, |(_, fraction)| fraction.len().min(3) as i32)
}

/// node_exporter's real scrape, once per host.
fn node_models(hosts: usize) -> Vec<Model> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/exposition/node_exporter_1.5.0.prom.txt");
    let text = std::fs::read_to_string(path).expect("node_exporter scrape");
    let samples = exposition::parse(&text, Format::Text).expect("parse");
    let mut random = Random(0x5EED_1234_ABCD_0001);
    let mut models = Vec::new();
    for host in 0..hosts {
        for sample in &samples {
            let mut labels = sample.labels.clone();
            labels.push(("__name__".into(), sample.name.clone()));
            labels.push(("instance".into(), format!("host-{host:04}:9100")));
            labels.push(("job".into(), "node".into()));
            labels.sort();
            let scale = 10f64.powi(decimals(sample.value));
            // what stays put on a real host: zero counters (errors, drops), info series,
            // sizes, limits, start times, flags
            let fixed = sample.value == 0.0
                || sample.value == 1.0
                || [
                    "_info",
                    "size",
                    "limit",
                    "_time_seconds",
                    "max",
                    "total_bytes",
                ]
                .iter()
                .any(|part| sample.name.contains(part));
            let (kind, step) = match sample.metric_type {
                _ if fixed => (Kind::Constant, 0.0),
                MetricType::Counter => (
                    Kind::Counter,
                    (sample.value.abs() / 200_000.0).max(1.0 / scale) * 15.0,
                ),
                _ if random.below(3) == 0 => (Kind::Constant, 0.0),
                _ => (Kind::Gauge, (sample.value.abs() * 0.002).max(1.0 / scale)),
            };
            models.push(Model {
                labels,
                kind,
                value: sample.value,
                step,
                scale,
            });
        }
    }
    models
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `models` × `count` samples `interval` apart from `start` (ms, with a few ms of
/// scrape jitter) as OpenMetrics, series by series; returns the sample count.
fn write_openmetrics(
    path: &Path,
    models: &mut [Model],
    start: i64,
    count: usize,
    interval: i64,
) -> u64 {
    let mut out =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let mut random = Random(0xC0FF_EE00_1234_5678);
    let jitter: Vec<i64> = (0..count).map(|_| random.below(4) as i64).collect();
    let mut written = 0u64;
    for model in models.iter_mut() {
        let name = model
            .labels
            .iter()
            .find(|(label, _)| label == "__name__")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        let labels: Vec<String> = model
            .labels
            .iter()
            .filter(|(label, _)| label != "__name__")
            .map(|(label, value)| format!("{label}=\"{}\"", escape(value)))
            .collect();
        let series = format!("{name}{{{}}}", labels.join(","));
        for (step, jitter) in jitter.iter().enumerate() {
            let value = model.advance(&mut random);
            let time = start + step as i64 * interval + jitter;
            writeln!(out, "{series} {value} {}.{:03}", time / 1000, time % 1000).expect("write");
            written += 1;
        }
    }
    writeln!(out, "# EOF").expect("write");
    out.flush().expect("flush");
    written
}

fn run_checked(command: &mut std::process::Command, what: &str) -> Duration {
    let started = Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

fn compression(work: &Path) {
    let hosts = env_or("HOSTS", 50) as usize;
    let mut models = node_models(hosts);
    let series = models.len();
    // one 2-hour block, aligned as both tools align blocks
    let start =
        (chrono::Utc::now().timestamp_millis() - 6 * 3_600_000).div_euclid(7_200_000) * 7_200_000;
    let file = work.join("node.om");
    let samples = write_openmetrics(&file, &mut models, start, 480, 15_000);
    let lookout_dir = work.join("lookout-compression");
    let lookout_time = run_checked(
        lookout_command().args([
            "tsdb",
            "import",
            "--data-dir",
            &lookout_dir.display().to_string(),
            &file.display().to_string(),
        ]),
        "lookout tsdb import",
    );
    let lookout_bytes = directory_bytes(&lookout_dir.join("tsdb/blocks"), &|path| {
        path.file_name()
            .is_some_and(|name| name == "chunks" || name == "index")
    });
    let prometheus_dir = work.join("prometheus-compression");
    let promtool_time = run_checked(
        std::process::Command::new("promtool").args([
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            &file.display().to_string(),
            &prometheus_dir.display().to_string(),
        ]),
        "promtool tsdb create-blocks-from openmetrics",
    );
    let prometheus_bytes = directory_bytes(&prometheus_dir, &|path| {
        path.file_name().is_some_and(|name| name == "index")
            || path
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|name| name == "chunks")
    });
    println!(
        "compression: {series} series × 480 samples (2 h at 15 s, node_exporter-like, {hosts} hosts) = {samples} samples"
    );
    println!(
        "  lookout:    {lookout_bytes} B chunks+index = {:.3} B/sample (import {:.1} s)",
        lookout_bytes as f64 / samples as f64,
        lookout_time.as_secs_f64()
    );
    println!(
        "  prometheus: {prometheus_bytes} B chunks+index = {:.3} B/sample (promtool {:.1} s)",
        prometheus_bytes as f64 / samples as f64,
        promtool_time.as_secs_f64()
    );
    println!(
        "  ratio lookout/prometheus: {:.2}",
        lookout_bytes as f64 / prometheus_bytes as f64
    );
}

fn ram() {
    let wanted = env_or("SERIES", 200_000) as usize;
    let mut models = node_models(wanted.div_ceil(210));
    models.truncate(wanted);
    let labels: Vec<Labels> = models
        .iter()
        .map(|model| model.labels.clone().into())
        .collect();
    let mut random = Random(7);
    let before = resident_bytes();
    let head = Head::new();
    for step in 0..120 {
        for (model, labels) in models.iter_mut().zip(&labels) {
            head.append(labels, step * 15_000, model.advance(&mut random))
                .expect("append");
        }
    }
    let after = resident_bytes();
    // the label sets are the scraper's as well (it builds them); counted apart
    let label_bytes: usize = labels
        .iter()
        .map(|labels| {
            labels
                .iter()
                .map(|(name, value)| 48 + name.len() + value.len())
                .sum::<usize>()
                + 16
        })
        .sum();
    let per_series = (after - before) as f64 / wanted as f64;
    println!("ram: {wanted} active series, one full chunk (120 samples) each");
    println!(
        "  head: {:.0} B per series allocated (labels, index, chunk), of which the label set ≈ {:.0} B",
        per_series,
        label_bytes as f64 / wanted as f64
    );
    drop(head);
}

/// A loopback exposition of `series` series; each request a new value per series.
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

fn ingest(work: &Path) {
    let targets = env_or("TARGETS", 20) as usize;
    let series = env_or("TARGET_SERIES", 10_000) as usize;
    let seconds = env_or("SECONDS", 30);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
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
    let config = work.join("ingest.toml");
    let targets_list: Vec<String> = addresses
        .iter()
        .map(|address| format!("\"{}\"", address.trim_start_matches("http://")))
        .collect();
    std::fs::write(
        &config,
        format!(
            "[[scrape_configs]]\njob_name = \"load\"\nscrape_interval = \"1s\"\nscrape_timeout = \"1s\"\n[[scrape_configs.static_configs]]\ntargets = [{}]\n",
            targets_list.join(", ")
        ),
    )
    .expect("config");
    let data = work.join("ingest-data");
    let (mut server, base) = start_lookout(&data, &["--config", &config.display().to_string()]);
    // a first round of scrapes creates the series; measure the steady state after it
    std::thread::sleep(Duration::from_secs(3));
    let pid = server.id();
    let (cpu_before, scrapes_before, started) = (
        cpu_seconds(pid),
        scrapes.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu_after, scrapes_after, elapsed) = (
        cpu_seconds(pid),
        scrapes.load(Ordering::Relaxed),
        started.elapsed(),
    );
    let up: serde_json::Value = runtime
        .block_on(async {
            reqwest::get(format!("{base}/api/v1/query?query=sum(up)"))
                .await?
                .json()
                .await
        })
        .expect("query up");
    stop(&mut server);
    let scraped = scrapes_after - scrapes_before;
    let samples = scraped * (series as u64 + 5);
    let cpu = cpu_after - cpu_before;
    println!(
        "ingest: {targets} targets × {series} series every 1 s for {:.0} s: {scraped} scrapes, {samples} samples",
        elapsed.as_secs_f64()
    );
    println!(
        "  {:.0} samples/s stored, server CPU {:.2} s → {:.0} samples per CPU-second (sum(up) = {})",
        samples as f64 / elapsed.as_secs_f64(),
        cpu,
        samples as f64 / cpu,
        up["data"]["result"][0]["value"][1]
    );
}

/// `lookout serve` (release) on `data` and a loopback port; returns it and its URL.
fn start_lookout(data: &Path, extra: &[&str]) -> (Child, String) {
    let mut server = lookout_command()
        .args([
            "serve",
            "--data-dir",
            &data.display().to_string(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lookout");
    let url = wait_listening(&mut server);
    (server, url)
}

fn stop(child: &mut Child) {
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

fn main() {
    if !common::invoked_as_benchmark("metrics") {
        return;
    }
    lookout::install_tls_provider();
    let parts = std::env::var("PARTS").unwrap_or_else(|_| "compression,ram,ingest,promql".into());
    let work = tempfile::tempdir().expect("tempdir");
    for part in parts.split(',') {
        match part.trim() {
            "compression" => compression(work.path()),
            "ram" => ram(),
            "ingest" => ingest(work.path()),
            "promql" => promql(work.path()),
            other => panic!("unknown part {other}"),
        }
    }
}

const HANDLERS: [&str; 5] = [
    "/api/cart",
    "/api/checkout",
    "/api/search",
    "/api/items",
    "/login",
];
const BOUNDS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const JOBS: [&str; 4] = ["api", "web", "worker", "billing"];

/// Application series: per instance 40 request counters, a 12-bucket latency histogram
/// per handler with `_sum` and `_count`, and three gauges (113 series); every value for
/// every step, consistent (buckets cumulative, counts matching).
fn app_series(instances: usize, steps: usize) -> Vec<(String, Vec<f64>)> {
    let mut random = Random(0xABCD_EF01_2345_6789);
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    for instance in 0..instances {
        let base = format!(
            "instance=\"app-{instance:03}:8080\",job=\"{}\"",
            JOBS[instance % JOBS.len()]
        );
        for handler in HANDLERS {
            for method in ["GET", "POST"] {
                for (code, share) in [("200", 0.90), ("201", 0.05), ("404", 0.04), ("500", 0.01)] {
                    let rate = (1 + random.below(20)) as f64 * share;
                    let mut value = random.below(10_000) as f64;
                    let values = (0..steps)
                        .map(|_| {
                            value +=
                                (rate * 15.0 * (0.5 + random.below(1000) as f64 / 1000.0)).round();
                            value
                        })
                        .collect();
                    out.push((format!("http_requests_total{{{base},handler=\"{handler}\",method=\"{method}\",code=\"{code}\"}}"), values));
                }
            }
            // latency: a share of each interval's requests per bucket, cumulative
            let shares = [
                0.05, 0.10, 0.20, 0.20, 0.15, 0.12, 0.08, 0.05, 0.03, 0.01, 0.005, 0.005,
            ];
            let mut buckets = vec![vec![0.0; steps]; BOUNDS.len()];
            let (mut sum, mut count) = (vec![0.0; steps], vec![0.0; steps]);
            let (mut running, mut total, mut seconds) = (vec![0.0; BOUNDS.len()], 0.0, 0.0);
            for step in 0..steps {
                let observed = (50 + random.below(200)) as f64;
                let mut cumulative = 0.0;
                for (bucket, share) in shares.iter().enumerate() {
                    cumulative += (observed * share).round();
                    running[bucket] += cumulative;
                    buckets[bucket][step] = running[bucket];
                }
                total += cumulative;
                seconds += (cumulative * 0.12 * 1000.0).round() / 1000.0;
                count[step] = total;
                sum[step] = (seconds * 1000.0_f64).round() / 1000.0;
            }
            for (bucket, values) in buckets.into_iter().enumerate() {
                out.push((format!("http_request_duration_seconds_bucket{{{base},handler=\"{handler}\",le=\"{}\"}}", BOUNDS[bucket]), values));
            }
            out.push((
                format!("http_request_duration_seconds_sum{{{base},handler=\"{handler}\"}}"),
                sum,
            ));
            out.push((
                format!("http_request_duration_seconds_count{{{base},handler=\"{handler}\"}}"),
                count,
            ));
        }
        let mut load = 1.0 + random.below(300) as f64 / 100.0;
        let mut memory = (1 + random.below(16)) as f64 * 1e9;
        let resident = (100 + random.below(900)) as f64 * 1e6;
        let (mut loads, mut memories, mut residents) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..steps {
            load = ((load + (random.below(21) as f64 - 10.0) / 100.0).max(0.0) * 100.0).round()
                / 100.0;
            memory = (memory + (random.below(2001) as f64 - 1000.0) * 4096.0).max(1e8);
            loads.push(load);
            memories.push(memory);
            residents.push(resident + (random.below(100) as f64) * 4096.0);
        }
        out.push((format!("node_load1{{{base}}}"), loads));
        out.push((
            format!("node_memory_MemAvailable_bytes{{{base}}}"),
            memories,
        ));
        out.push((
            format!("process_resident_memory_bytes{{{base}}}"),
            residents,
        ));
    }
    out
}

/// The queries: (name, expression, range query or instant).
const QUERIES: [(&str, &str, bool); 24] = [
    ("rate", "rate(http_requests_total[5m])", true),
    (
        "sum by job rate",
        "sum by (job) (rate(http_requests_total[5m]))",
        true,
    ),
    (
        "5xx by code",
        "sum by (code) (rate(http_requests_total{code=~\"5..\"}[5m]))",
        true,
    ),
    (
        "error ratio (seed rule)",
        "sum(rate(http_requests_total{code=~\"5..\"}[5m])) by (job) / sum(rate(http_requests_total[5m])) by (job) * 100",
        true,
    ),
    (
        "p95 by handler",
        "histogram_quantile(0.95, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
        true,
    ),
    (
        "p99 overall",
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        true,
    ),
    (
        "topk instances",
        "topk(5, sum by (instance) (rate(http_requests_total[5m])))",
        true,
    ),
    (
        "bottomk handlers",
        "bottomk(3, sum by (handler) (rate(http_requests_total[5m])))",
        true,
    ),
    (
        "mean latency join",
        "rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])",
        true,
    ),
    (
        "group_left join",
        "sum by (instance, job) (rate(http_requests_total[5m])) / on (instance) group_left node_load1",
        true,
    ),
    ("max_over_time", "max_over_time(node_load1[1h])", true),
    (
        "avg_over_time",
        "avg by (job) (avg_over_time(node_load1[30m]))",
        true,
    ),
    (
        "subquery",
        "max_over_time(sum by (job) (rate(http_requests_total[5m]))[1h:1m])",
        true,
    ),
    ("avg by instance", "avg by (instance) (node_load1)", true),
    (
        "count by code",
        "count by (code) (http_requests_total)",
        true,
    ),
    (
        "increase 1h",
        "sum by (handler) (increase(http_requests_total[1h]))",
        true,
    ),
    ("deriv", "deriv(node_memory_MemAvailable_bytes[30m])", true),
    (
        "predict_linear",
        "predict_linear(node_memory_MemAvailable_bytes[1h], 3600)",
        true,
    ),
    (
        "quantile",
        "quantile(0.9, rate(http_requests_total[5m]))",
        true,
    ),
    (
        "stddev",
        "stddev by (job) (rate(http_requests_total[5m]))",
        true,
    ),
    (
        "irate",
        "sum by (job) (irate(http_requests_total[5m]))",
        true,
    ),
    (
        "threshold",
        "sum by (instance) (rate(http_requests_total[5m])) > 200",
        true,
    ),
    (
        "instant rate",
        "sum by (job, code) (rate(http_requests_total[5m]))",
        false,
    ),
    (
        "instant offset",
        "sum by (job) (http_requests_total offset 1h)",
        false,
    ),
];

fn promql(work: &Path) {
    let instances = env_or("INSTANCES", 88) as usize;
    let runs = env_or("RUNS", 5) as usize;
    let steps = 6 * 240;
    let end_aligned = chrono::Utc::now().timestamp_millis() / 60_000 * 60_000 - 3_600_000;
    // samples 7 s past the minute: no sample sits on a window edge, where Prometheus 2
    // (left-closed windows) and 3 (left-open) differ
    let start = end_aligned - steps as i64 * 15_000 + 7_000;
    let series = app_series(instances, steps);
    let file = work.join("app.om");
    {
        let mut out = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&file).expect("create"),
        );
        for (name, values) in &series {
            for (step, value) in values.iter().enumerate() {
                let time = start + step as i64 * 15_000;
                writeln!(out, "{name} {value} {}.{:03}", time / 1000, time % 1000).expect("write");
            }
        }
        writeln!(out, "# EOF").expect("write");
        out.flush().expect("flush");
    }
    let samples = series.len() * steps;
    println!(
        "promql: {} series × {steps} samples (6 h at 15 s) = {samples} samples, backfilled into both",
        series.len()
    );
    drop(series);
    let lookout_data = work.join("promql-lookout");
    let imported = run_checked(
        lookout_command().args([
            "tsdb",
            "import",
            "--data-dir",
            &lookout_data.display().to_string(),
            &file.display().to_string(),
        ]),
        "lookout tsdb import",
    );
    let prometheus_data = work.join("promql-prometheus");
    let created = run_checked(
        std::process::Command::new("promtool").args([
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            &file.display().to_string(),
            &prometheus_data.display().to_string(),
        ]),
        "promtool",
    );
    let _ = std::fs::remove_file(&file);
    println!(
        "  backfill: lookout tsdb import {:.1} s, promtool {:.1} s",
        imported.as_secs_f64(),
        created.as_secs_f64()
    );
    let (mut lookout, lookout_url) = start_lookout(&lookout_data, &[]);
    let prometheus_config = work.join("prometheus.yml");
    std::fs::write(&prometheus_config, "global:\n  scrape_interval: 1m\n").expect("config");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("address").port()
    };
    let mut prometheus = std::process::Command::new("prometheus")
        .args([
            &format!("--config.file={}", prometheus_config.display()),
            &format!("--storage.tsdb.path={}", prometheus_data.display()),
            "--storage.tsdb.retention.time=30d",
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus (Debian's prometheus package)");
    let prometheus_url = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = reqwest::Client::new();
    runtime.block_on(async {
        for _ in 0..600 {
            if client
                .get(format!("{prometheus_url}/-/ready"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus did not become ready");
    });
    let (query_start, query_end) = (
        (end_aligned - 6 * 3_600_000 + 3_600_000) / 1000,
        end_aligned / 1000,
    );
    let fetch = |base: &str, expression: &str, range: bool| -> (f64, serde_json::Value) {
        let url = if range {
            format!("{base}/api/v1/query_range?start={query_start}&end={query_end}&step=60")
        } else {
            format!("{base}/api/v1/query?time={query_end}")
        };
        runtime.block_on(async {
            let started = Instant::now();
            let body = serde_urlencoded::to_string([("query", expression)]).expect("form");
            let response = client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("query");
            let body: serde_json::Value = response.json().await.expect("json");
            (started.elapsed().as_secs_f64() * 1000.0, body)
        })
    };
    println!(
        "  {:<26} {:>12} {:>14} {:>7}  results",
        "query (6 h, step 60 s)", "lookout ms", "prometheus ms", "ratio"
    );
    let (mut ratios, mut mismatched) = (Vec::new(), 0);
    for (name, expression, range) in QUERIES {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut our_body, mut their_body) = (serde_json::Value::Null, serde_json::Value::Null);
        for _ in 0..runs {
            let (ms, body) = fetch(&lookout_url, expression, range);
            ours.push(ms);
            our_body = body;
            let (ms, body) = fetch(&prometheus_url, expression, range);
            theirs.push(ms);
            their_body = body;
        }
        let (ours, theirs) = (common::median(&mut ours), common::median(&mut theirs));
        let verdict = compare_results(&our_body, &their_body);
        if verdict != "same" {
            mismatched += 1;
        }
        ratios.push(ours / theirs);
        println!(
            "  {name:<26} {ours:>12.1} {theirs:>14.1} {:>7.2}  {verdict}",
            ours / theirs
        );
    }
    println!(
        "  median ratio lookout/prometheus: {:.2} over {} queries; {} with different results",
        common::median(&mut ratios),
        QUERIES.len(),
        mismatched
    );
    stop(&mut lookout);
    stop(&mut prometheus);
}

/// "same" when both answers hold the same series with the same points (values within
/// 1e-9 relative), else what differs.
fn compare_results(ours: &serde_json::Value, theirs: &serde_json::Value) -> String {
    if ours["status"] != "success" || theirs["status"] != "success" {
        return format!(
            "error: lookout {} / prometheus {}",
            ours["error"], theirs["error"]
        );
    }
    let index =
        |body: &serde_json::Value| -> std::collections::BTreeMap<String, Vec<(f64, String)>> {
            body["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|series| {
                    let points = match series.get("values") {
                        Some(values) => values.as_array().cloned().unwrap_or_default(),
                        None => vec![series["value"].clone()],
                    };
                    (
                        series["metric"].to_string(),
                        points
                            .iter()
                            .map(|pair| {
                                (
                                    pair[0].as_f64().unwrap_or_default(),
                                    pair[1].as_str().unwrap_or_default().to_string(),
                                )
                            })
                            .collect(),
                    )
                })
                .collect()
        };
    let (ours, theirs) = (index(ours), index(theirs));
    if ours.len() != theirs.len() || ours.keys().ne(theirs.keys()) {
        return format!("different series: {} vs {}", ours.len(), theirs.len());
    }
    let mut differing = 0;
    for (key, points) in &ours {
        let other = &theirs[key];
        let same = points.len() == other.len()
            && points.iter().zip(other).all(|(a, b)| {
                let (x, y) = (
                    a.1.parse::<f64>().unwrap_or(f64::NAN),
                    b.1.parse::<f64>().unwrap_or(f64::NAN),
                );
                a.0 == b.0 && (a.1 == b.1 || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()))
            });
        differing += usize::from(!same);
    }
    if differing == 0 {
        "same".into()
    } else {
        format!("{differing} series differ")
    }
}
