//! Ingest benchmark: ≥ 2 M synthetic ~370 B JSON log lines through HTTP `_bulk` into a
//! running `lookout serve` until durable and searchable, side by side with a naive loader
//! (serde_json + a bare tantivy index with a JSON field and a fast date field, 2 threads,
//! one commit; `benches/naive`, built on its own with stock tantivy) over the same lines,
//! and with that loader compiled against Lookout's own tantivy build.
//!
//! Two shapes of lines (`SHAPES`, default `low,high`): `low` draws paths and messages from
//! small fixed lists; `high` is request logs as services write them — ids in paths,
//! numbers, users and durations in messages, a unique trace id, fields that come and go
//! (`benches/common`'s `generate_high_cardinality`). Each shape is loaded in `_bulk`
//! bodies of each size in `BATCHES` (default 4 MiB and 20 MB, what Beats/Vector and big
//! batchers send), each run on a fresh server; a table at the end gives every figure
//! beside the naive loader's on the same file.
//!
//! `cargo bench --bench ingest` (env: `LINES`, default 2 000 000; `CONNECTIONS`, default 2;
//! `SHAPES`; `BATCHES`, bytes, comma-separated; `BATCH_BYTES`, one size, overrides
//! `BATCHES`; `FILTER_PATH`, the `_bulk` answer's `filter_path`, default
//! Beats' `errors,items.*.error,items.*.status`, empty for whole answers; `WRAPPER`, a profiler command;
//! `SERVER_ARGS`, extra `lookout serve` arguments such as `--config FILE`). The load generator shares the machine's cores with the
//! server: the output gives the wall-clock rate and the server's rate per CPU-second (its
//! CPU time from /proc), and leads with the ratio to the naive loader.

mod common;

use common::{
    Shape, cpu_seconds, directory_bytes, env_or, lookout_command, peak_rss_mib, wait_listening,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// `benches/naive`'s loader compiled into this bench, so it runs on the tantivy build
/// Lookout uses (the `quickwit` feature's SSTable term dictionary): shows how much of
/// Lookout's lead is the dictionary.
#[path = "naive/src/loader.rs"]
mod naive_loader;

/// Builds `benches/naive` (its own workspace, so its tantivy keeps default features) into
/// `target/naive`; returns the binary.
fn build_naive_loader() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target").join("naive");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(root.join("benches/naive/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building benches/naive failed");
    target.join("release").join("naive-loader")
}

fn main() {
    if !common::invoked_as_benchmark("ingest") {
        return;
    }
    let lines = env_or("LINES", 2_000_000) as usize;
    let connections = env_or("CONNECTIONS", 2) as usize;
    let shapes: Vec<Shape> = std::env::var("SHAPES")
        .unwrap_or_else(|_| "low,high".into())
        .split(',')
        .map(|name| {
            Shape::parse(name).unwrap_or_else(|| panic!("SHAPES: `{name}` is not low or high"))
        })
        .collect();
    let batches: Vec<usize> = match std::env::var("BATCH_BYTES") {
        Ok(one) => vec![one.parse().expect("BATCH_BYTES: a number of bytes")],
        Err(_) => std::env::var("BATCHES")
            .unwrap_or_else(|_| format!("{},{}", 4 << 20, 20_000_000))
            .split(',')
            .map(|size| size.trim().parse().expect("BATCHES: numbers of bytes"))
            .collect(),
    };
    // what Beats ask `_bulk` to answer with; FILTER_PATH= (empty) for whole answers
    let filter_path = std::env::var("FILTER_PATH")
        .unwrap_or_else(|_| "errors,items.*.error,items.*.status".to_string());
    let work = tempfile::tempdir().expect("tempdir");
    let naive_binary = build_naive_loader();
    let mut table = Vec::new();
    for shape in shapes {
        let data = work.path().join(format!("{}.ndjson", shape.name()));
        let bytes = shape.generate(&data, lines);
        let mb = bytes as f64 / 1e6;
        println!(
            "\n== {}: {lines} lines, {mb:.1} MB, {:.0} B/line",
            shape.name(),
            bytes as f64 / lines as f64
        );
        let naive_rate = naive_runs(&naive_binary, &data, work.path(), lines, mb);
        for &batch_bytes in &batches {
            let run = LookoutRun::load(
                &data,
                work.path(),
                lines,
                batch_bytes,
                connections,
                &filter_path,
            );
            let rate = mb / run.elapsed;
            println!(
                "lookout _bulk → durable → searchable ({connections} connections, {:.1} MiB batches, filter_path={filter_path:?}): {:.2} s, {rate:.1} MB/s, {:.0} docs/s wall clock; server CPU {:.1} s = {:.1} MB per CPU-second; peak RSS {:.0} MiB; partitions {:.0} B/line",
                batch_bytes as f64 / 1048576.0,
                run.elapsed,
                lines as f64 / run.elapsed,
                run.cpu,
                mb / run.cpu.max(0.001),
                run.rss,
                run.index_bytes as f64 / lines as f64,
            );
            println!(
                "ratio to the naive loader with stored documents (wall clock): {:.2}×",
                rate / naive_rate
            );
            table.push((
                shape,
                batch_bytes,
                rate,
                mb / run.cpu.max(0.001),
                run.rss,
                run.index_bytes as f64 / lines as f64,
                naive_rate,
            ));
        }
    }
    println!(
        "\n| lines | batch | Lookout MB/s | Lookout MB per CPU-s | peak RSS MiB | disk B/line | naive MB/s | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (shape, batch_bytes, rate, per_cpu, rss, disk, naive_rate) in table {
        println!(
            "| {} | {:.1} MiB | {rate:.1} | {per_cpu:.1} | {rss:.0} | {disk:.0} | {naive_rate:.1} | {:.2} |",
            shape.name(),
            batch_bytes as f64 / 1048576.0,
            rate / naive_rate
        );
    }
}

/// The naive loader on `data`: its own build of stock tantivy, with and without stored
/// documents, then compiled against Lookout's tantivy build; returns the stored rate (MB/s).
fn naive_runs(naive_binary: &Path, data: &Path, work: &Path, lines: usize, mb: f64) -> f64 {
    let mut naive_rate = 0.0;
    for stored in [true, false] {
        let naive_dir = work.join("naive");
        std::fs::create_dir_all(&naive_dir).expect("naive dir");
        let output = Command::new(naive_binary)
            .arg(data)
            .arg(&naive_dir)
            .arg(if stored { "stored" } else { "unstored" })
            .output()
            .expect("run the naive loader");
        assert!(output.status.success(), "the naive loader failed");
        let text = String::from_utf8_lossy(&output.stdout);
        let figures: Vec<f64> = text
            .split_whitespace()
            .filter_map(|figure| figure.parse().ok())
            .collect();
        let [elapsed, cpu] = figures[..] else {
            panic!("the naive loader printed {text:?}");
        };
        let rate = mb / elapsed;
        if stored {
            naive_rate = rate;
        }
        println!(
            "naive loader (stock tantivy 0.27: FST term dictionary; JSON field {}, fast date, 2 threads, one commit): {elapsed:.2} s, {rate:.1} MB/s, {:.0} docs/s; CPU {cpu:.1} s = {:.1} MB per CPU-second; index {:.0} B/line",
            if stored { "stored" } else { "not stored" },
            lines as f64 / elapsed,
            mb / cpu.max(0.001),
            directory_bytes(&naive_dir, &|_| true) as f64 / lines as f64,
        );
        std::fs::remove_dir_all(&naive_dir).ok();
    }

    // the same loader on Lookout's own tantivy build (SSTable term dictionary), stored
    let naive_dir = work.join("naive");
    std::fs::create_dir_all(&naive_dir).expect("naive dir");
    let cpu_before = cpu_seconds(std::process::id());
    let (naive, cpu_at_commit) =
        naive_loader::load(data, &naive_dir, true, || cpu_seconds(std::process::id()));
    let naive_cpu = cpu_at_commit - cpu_before;
    let same_build_rate = mb / naive.as_secs_f64();
    println!(
        "naive loader on Lookout's tantivy build (SSTable term dictionary; JSON field stored, fast date, 2 threads, one commit): {:.2} s, {same_build_rate:.1} MB/s, {:.0} docs/s; CPU {naive_cpu:.1} s = {:.1} MB per CPU-second; index {:.0} B/line",
        naive.as_secs_f64(),
        lines as f64 / naive.as_secs_f64(),
        mb / naive_cpu.max(0.001),
        directory_bytes(&naive_dir, &|_| true) as f64 / lines as f64,
    );
    std::fs::remove_dir_all(&naive_dir).ok();
    naive_rate
}

/// One load of `data` into a fresh `lookout serve`.
struct LookoutRun {
    elapsed: f64,
    cpu: f64,
    rss: f64,
    /// The partitions on disk after a clean stop (the write-ahead log is not counted).
    index_bytes: u64,
}

impl LookoutRun {
    fn load(
        data: &Path,
        work: &Path,
        lines: usize,
        batch_bytes: usize,
        connections: usize,
        filter_path: &str,
    ) -> LookoutRun {
        let data_dir = work.join("data");
        std::fs::remove_dir_all(&data_dir).ok();
        // WRAPPER runs the server under a profiler, e.g. WRAPPER="perf record -g -o /tmp/perf.data --"
        let mut child = lookout_command()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(
                std::env::var("SERVER_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .env("LOOKOUT_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn lookout");
        let pid = child.id();
        let base = wait_listening(&mut child);

        // batches of `_bulk` bodies, prepared before the clock starts
        let text = std::fs::read_to_string(data).expect("read data");
        let mut batches: Vec<Vec<u8>> = Vec::new();
        let mut current = Vec::with_capacity(batch_bytes + 4096);
        for doc in text.lines() {
            current.extend_from_slice(b"{\"index\":{}}\n");
            current.extend_from_slice(doc.as_bytes());
            current.push(b'\n');
            if current.len() >= batch_bytes {
                batches.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            batches.push(current);
        }
        drop(text);

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let cpu_before = cpu_seconds(pid);
        let started = Instant::now();
        let count = runtime.block_on(async {
            lookout::install_tls_provider();
            let client = reqwest::Client::new();
            let queue = Arc::new(tokio::sync::Mutex::new(batches.into_iter()));
            let mut tasks = Vec::new();
            for _ in 0..connections {
                let (client, queue, url) = (
                    client.clone(),
                    queue.clone(),
                    match filter_path {
                        "" => format!("{base}/logs/_bulk"),
                        filter => format!("{base}/logs/_bulk?filter_path={filter}"),
                    },
                );
                tasks.push(tokio::spawn(async move {
                    loop {
                        let Some(batch) = queue.lock().await.next() else {
                            break;
                        };
                        common::post_bulk(&client, &url, &batch).await;
                    }
                }));
            }
            for task in tasks {
                task.await.expect("loader task");
            }
            client
                .post(format!("{base}/logs/_refresh"))
                .send()
                .await
                .expect("refresh");
            let count: serde_json::Value = client
                .get(format!("{base}/logs/_count"))
                .send()
                .await
                .expect("count")
                .json()
                .await
                .expect("count json");
            count["count"].as_u64().unwrap_or(0)
        });
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu_before;
        let rss = peak_rss_mib(pid);
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let _ = child.wait();
        assert_eq!(count, lines as u64, "every line is searchable");
        let index_bytes = directory_bytes(&data_dir.join("logs").join("indices"), &|_| true);
        LookoutRun {
            elapsed,
            cpu,
            rss,
            index_bytes,
        }
    }
}
