//! Remote write, measured (issue 17), against a receiver in this process that decodes
//! every request (snappy, then protobuf) and counts its samples. `PARTS` picks what runs
//! (default `throughput,lag`); each part runs `ROUNDS` (default 3) times and prints every
//! round and the medians.
//!
//! The series are node_exporter's: the real node_exporter 1.5.0 scrape in
//! `../shared/testdata/exposition/` (210 samples of 8 collectors: `cpu`, `mode`,
//! `device`, `mountpoint`, `fstype`, … label values as a real host has them), once per
//! host with its own `instance`; counters (other than zero ones) grow every scrape,
//! gauges and the rest keep their value.
//!
//! - `throughput`: a metrics write-ahead log of `HOSTS` (default 48, 10 080 series) hosts
//!   × `SAMPLES` (default 100) scrapes is written through the TSDB in this process, one
//!   host's scrape per append (head + log + fsync, as a scrape is stored): that is the
//!   comparison, local ingest in samples per CPU-second of this process. Then the release
//!   `lookout serve` starts on that data with one `[[remote_write]]` and sends the whole
//!   log: samples sent per CPU-second of the server (utime + stime, from the receiver's
//!   first request to the last sample received) and the wall time.
//! - `lag`: `TARGETS` (default 240) loopback node_exporter targets scraped every second
//!   (240 × 210 = 50 400 samples/s) for `SECONDS` (default 30) s while writing them to
//!   the receiver, first by `lookout serve`, then, side by side, by Debian's `prometheus`
//!   (2.42) with the same scrape and `remote_write` (Prometheus' default queue). The lag
//!   of the remote behind the log (`…_highest_timestamp_in_seconds` −
//!   `…_queue_highest_sent_timestamp_seconds`, Lookout's `lookout_remote_storage_*` and
//!   Prometheus' `prometheus_remote_storage_*`), read every second after a 5 s warm-up:
//!   median and max; the CPU each server used.
//!
//! `cargo bench --bench remote_write` (env: `PARTS`, `ROUNDS`, `HOSTS`, `SAMPLES`,
//! `TARGETS`, `SECONDS`, `PROMETHEUS` (default `/usr/bin/prometheus`; empty skips it)).

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{cpu_seconds, env_or, median, start_lookout};
use lookout::scrape::exposition::{self, Format, MetricType};
use lookout::tsdb::head::Labels;

/// One sample line of the node_exporter scrape: its text up to the value, its labels,
/// its first value and how much it grows per scrape.
struct NodeSample {
    prefix: String,
    labels: Vec<(String, String)>,
    value: f64,
    step: f64,
}

impl NodeSample {
    fn value_at(&self, scrape: u64) -> f64 {
        self.value + self.step * scrape as f64
    }
}

/// The real node_exporter 1.5.0 scrape, parsed.
fn node_exporter() -> Vec<NodeSample> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/exposition/node_exporter_1.5.0.prom.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    exposition::parse(&text, Format::Text)
        .expect("the node_exporter scrape parses")
        .into_iter()
        .map(|sample| {
            let mut prefix = sample.name.clone();
            if !sample.labels.is_empty() {
                let pairs: Vec<String> = sample
                    .labels
                    .iter()
                    .map(|(name, value)| format!("{name}=\"{}\"", value.replace('"', "\\\"")))
                    .collect();
                let _ = write!(prefix, "{{{}}}", pairs.join(","));
            }
            prefix.push(' ');
            let growing = sample.metric_type == MetricType::Counter && sample.value > 0.0;
            let step = if growing {
                (sample.value / 1000.0).max(1.0).round()
            } else {
                0.0
            };
            let mut labels = sample.labels.clone();
            labels.push(("__name__".into(), sample.name.clone()));
            NodeSample {
                prefix,
                labels,
                value: sample.value,
                step,
            }
        })
        .collect()
}

/// A receiver counting decoded samples; returns its write URL. The CPU time of `pid`
/// (when set) is taken at its first request.
fn receiver(
    runtime: &tokio::runtime::Runtime,
    received: Arc<AtomicU64>,
    pid: Arc<AtomicU32>,
    cpu_at_first_request: Arc<std::sync::Mutex<Option<f64>>>,
) -> String {
    let router = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (received, pid, first) = (
                Arc::clone(&received),
                Arc::clone(&pid),
                Arc::clone(&cpu_at_first_request),
            );
            async move {
                {
                    let mut first = first.lock().expect("lock");
                    let pid = pid.load(Ordering::Relaxed);
                    if first.is_none() && pid != 0 {
                        *first = Some(cpu_seconds(pid));
                    }
                }
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

/// One throughput round: (local ingest samples per CPU-second, remote write samples per
/// CPU-second, remote write wall seconds).
fn throughput(work: &Path, node: &[NodeSample]) -> (f64, f64, f64) {
    let hosts = env_or("HOSTS", 48) as usize;
    let rounds = env_or("SAMPLES", 100) as i64;
    let data = work.join("throughput-data");
    let _ = std::fs::remove_dir_all(&data);
    let series = hosts * node.len();
    let total = series as u64 * rounds as u64;
    let ingest_rate = {
        let tsdb =
            lookout::tsdb::Tsdb::open(&data.join("tsdb"), Default::default()).expect("open tsdb");
        let names: Vec<Vec<Labels>> = (0..hosts)
            .map(|host| {
                node.iter()
                    .map(|sample| {
                        let mut labels = sample.labels.clone();
                        labels.push(("instance".into(), format!("host-{host:03}:9100")));
                        labels.push(("job".into(), "node".into()));
                        labels.sort();
                        Labels::from(labels)
                    })
                    .collect()
            })
            .collect();
        let start = chrono::Utc::now().timestamp_millis() - rounds * 1000;
        let cpu_before = cpu_seconds(std::process::id());
        for round in 0..rounds {
            for host in &names {
                let batch: Vec<_> = host
                    .iter()
                    .zip(node)
                    .map(|(labels, sample)| {
                        (
                            labels.clone(),
                            start + round * 1000,
                            sample.value_at(round as u64),
                        )
                    })
                    .collect();
                tsdb.append(&batch).expect("append");
            }
        }
        let cpu = cpu_seconds(std::process::id()) - cpu_before;
        total as f64 / cpu.max(0.01)
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let received = Arc::new(AtomicU64::new(0));
    let pid = Arc::new(AtomicU32::new(0));
    let first = Arc::new(std::sync::Mutex::new(None));
    let url = receiver(
        &runtime,
        Arc::clone(&received),
        Arc::clone(&pid),
        Arc::clone(&first),
    );
    let config = work.join("throughput.toml");
    std::fs::write(&config, remote_write_config(&url)).expect("config");
    let queries = work.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let (mut server, _) = start_lookout(&data, &queries, &config, Stdio::inherit());
    pid.store(server.id(), Ordering::Relaxed);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    while received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (cpu_end, elapsed) = (cpu_seconds(server.id()), started.elapsed());
    let cpu = cpu_end - first.lock().expect("lock").unwrap_or(0.0);
    let _ = server.kill();
    let _ = server.wait();
    let sent = received.load(Ordering::Relaxed);
    assert_eq!(sent, total, "the receiver got every sample of the log");
    let rate = sent as f64 / cpu.max(0.01);
    println!(
        "  throughput: local ingest {ingest_rate:.0} samples per CPU-second; remote write {sent} samples ({series} series × {rounds}) in {:.2} s wall (listening to the last sample), {cpu:.2} CPU-s of lookout serve: {rate:.0} samples per CPU-second",
        elapsed.as_secs_f64(),
    );
    (ingest_rate, rate, elapsed.as_secs_f64())
}

/// The scrape of node `instance` number `scrape`.
fn node_body(node: &[NodeSample], scrape: u64) -> String {
    let mut body = String::with_capacity(node.len() * 80);
    for sample in node {
        let _ = writeln!(body, "{}{}", sample.prefix, sample.value_at(scrape));
    }
    body
}

/// The first line's value of `NAME{…}` or `NAME ` on a `/metrics` page whose labels
/// contain `label` (`""`: any).
fn figure(page: &str, name: &str, label: &str) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| line.contains(label))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// What one lag run measured: median and max lag (s), samples received, CPU-s used.
struct LagRun {
    median: f64,
    max: f64,
    received: u64,
    cpu: f64,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Reads `metrics_url` every second for `seconds` (after a 5 s warm-up) while `child`
/// runs; the lag is `in_name` − `sent_name` (lines containing `label`).
fn watch_lag(
    runtime: &tokio::runtime::Runtime,
    child: &mut Child,
    metrics_url: &str,
    (in_name, sent_name, label): (&str, &str, &str),
    seconds: u64,
    received: &AtomicU64,
) -> LagRun {
    std::thread::sleep(Duration::from_secs(5));
    let (cpu_before, received_before) = (cpu_seconds(child.id()), received.load(Ordering::Relaxed));
    let mut lags = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let page = runtime
            .block_on(async { reqwest::get(metrics_url).await?.text().await })
            .unwrap_or_default();
        if let (Some(read), Some(sent)) = (
            figure(&page, in_name, label),
            figure(&page, sent_name, label),
        ) && sent > 0.0
        {
            lags.push(read - sent);
        }
    }
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let received = received.load(Ordering::Relaxed) - received_before;
    let _ = child.kill();
    let _ = child.wait();
    let max = lags.iter().copied().fold(0.0, f64::max);
    LagRun {
        median: if lags.is_empty() {
            f64::NAN
        } else {
            median(&mut lags)
        },
        max,
        received,
        cpu,
    }
}

/// One lag round: Lookout's run, then Prometheus' (when installed).
fn lag(work: &Path, node: &Arc<Vec<NodeSample>>) -> (LagRun, Option<LagRun>) {
    let targets = env_or("TARGETS", 240) as usize;
    let seconds = env_or("SECONDS", 30);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let received = Arc::new(AtomicU64::new(0));
    let url = receiver(
        &runtime,
        Arc::clone(&received),
        Arc::default(),
        Arc::default(),
    );
    let mut addresses = Vec::new();
    for _ in 0..targets {
        let scrapes = Arc::new(AtomicU64::new(0));
        let node = Arc::clone(node);
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let scrape = scrapes.fetch_add(1, Ordering::Relaxed);
                let body = node_body(&node, scrape);
                async move { ([("content-type", "text/plain; version=0.0.4")], body) }
            }),
        );
        addresses.push(
            runtime
                .block_on(common::serve(router))
                .trim_start_matches("http://")
                .to_string(),
        );
    }
    let rate = targets * node.len();
    let quoted: Vec<String> = addresses
        .iter()
        .map(|address| format!("\"{address}\""))
        .collect();
    let config = work.join("lag.toml");
    std::fs::write(
        &config,
        format!(
            "[[scrape_configs]]\njob_name = \"node\"\nscrape_interval = \"1s\"\nscrape_timeout = \"1s\"\n[[scrape_configs.static_configs]]\ntargets = [{}]\n\n{}",
            quoted.join(", "),
            remote_write_config(&url)
        ),
    )
    .expect("config");
    let queries = work.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let data = work.join("lag-data");
    let _ = std::fs::remove_dir_all(&data);
    let (mut server, base) = start_lookout(&data, &queries, &config, Stdio::inherit());
    let ours = watch_lag(
        &runtime,
        &mut server,
        &format!("{base}/metrics"),
        (
            "lookout_remote_storage_highest_timestamp_in_seconds",
            "lookout_remote_storage_queue_highest_sent_timestamp_seconds",
            "remote=\"bench\"",
        ),
        seconds,
        &received,
    );
    println!(
        "  lag, lookout serve: {rate} samples/s scraped ({targets} targets × {}), median {:.2} s, max {:.2} s; {} samples received in {seconds} s; {:.1} CPU-s (scrape + store + remote write)",
        node.len(),
        ours.median,
        ours.max,
        ours.received,
        ours.cpu
    );
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    if binary.is_empty() || !Path::new(&binary).exists() {
        return (ours, None);
    }
    let dir = work.join("prometheus");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let quoted: Vec<String> = addresses
        .iter()
        .map(|address| format!("'{address}'"))
        .collect();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [{}]\nremote_write:\n  - url: {url}\n    name: bench\n",
            quoted.join(", ")
        ),
    )
    .expect("prometheus.yml");
    let port = free_port();
    let mut prometheus = Command::new(&binary)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn prometheus");
    let ready = format!("http://127.0.0.1:{port}/-/ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !runtime
        .block_on(async { reqwest::get(&ready).await })
        .is_ok_and(|response| response.status().is_success())
    {
        assert!(Instant::now() < deadline, "prometheus not ready in 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let theirs = watch_lag(
        &runtime,
        &mut prometheus,
        &format!("http://127.0.0.1:{port}/metrics"),
        (
            "prometheus_remote_storage_highest_timestamp_in_seconds",
            "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
            "",
        ),
        seconds,
        &received,
    );
    println!(
        "  lag, prometheus 2.42: median {:.2} s, max {:.2} s; {} samples received in {seconds} s; {:.1} CPU-s (scrape + store + remote write)",
        theirs.median, theirs.max, theirs.received, theirs.cpu
    );
    (ours, Some(theirs))
}

fn main() {
    if !common::invoked_as_benchmark("remote_write") {
        return;
    }
    lookout::install_tls_provider();
    let parts = std::env::var("PARTS").unwrap_or_else(|_| "throughput,lag".into());
    let rounds = env_or("ROUNDS", 3).max(1);
    let node = Arc::new(node_exporter());
    let work = tempfile::tempdir().expect("tempdir");
    for part in parts.split(',') {
        match part.trim() {
            "throughput" => {
                let (mut ingest, mut sent, mut wall) = (Vec::new(), Vec::new(), Vec::new());
                for round in 1..=rounds {
                    println!("throughput round {round}:");
                    let (ingest_rate, rate, seconds) = throughput(work.path(), &node);
                    ingest.push(ingest_rate);
                    sent.push(rate);
                    wall.push(seconds);
                }
                println!(
                    "remote write throughput, median of {rounds}: {:.0} samples per CPU-second ({:.2} s wall); local ingest into the TSDB (head + log + fsync), same rounds: {:.0} samples per CPU-second",
                    median(&mut sent),
                    median(&mut wall),
                    median(&mut ingest)
                );
            }
            "lag" => {
                let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                let (mut our_cpu, mut their_cpu) = (Vec::new(), Vec::new());
                for round in 1..=rounds {
                    println!("lag round {round}:");
                    let (lookout, prometheus) = lag(work.path(), &node);
                    ours.push(lookout.median);
                    our_cpu.push(lookout.cpu);
                    if let Some(prometheus) = prometheus {
                        theirs.push(prometheus.median);
                        their_cpu.push(prometheus.cpu);
                    }
                }
                println!(
                    "remote write lag, median of {rounds} rounds' medians: lookout {:.2} s ({:.1} CPU-s per run)",
                    median(&mut ours),
                    median(&mut our_cpu)
                );
                if !theirs.is_empty() {
                    println!(
                        "remote write lag, median of {rounds} rounds' medians: prometheus 2.42 {:.2} s ({:.1} CPU-s per run)",
                        median(&mut theirs),
                        median(&mut their_cpu)
                    );
                }
            }
            other => panic!("unknown part {other}"),
        }
    }
}
