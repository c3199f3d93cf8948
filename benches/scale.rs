//! The scale curve: a week of high-cardinality request logs (7 days × hourly partitions,
//! `LINES` lines in all, default 100 M; `benches/common`'s `high_cardinality_line`, ≈ 410 B
//! each) built in three stages — 1 day, 3 days, 7 days of data, each ending at the wall
//! clock — and measured after each stage on the real release `lookout serve` over that
//! data directory, side by side with a naive index of the same lines (one tantivy index,
//! a stored JSON field + a fast date, as `benches/count.rs` builds it) searched directly
//! with tantivy's collectors.
//!
//! The data is written through the store's write path (`IndexStore::apply`, what the
//! server's log thread runs, as `build_store` does), not over HTTP, so a 100 M-line week
//! builds in tens of minutes instead of hours; HTTP ingest is `benches/ingest.rs`'s job.
//! Stage 1 writes the day before the start time, each later stage the older days
//! (days 2–3, then 4–7); every stage then writes the lines from the newest one written to
//! the wall clock (at the same rate), so the newest line is always seconds old and "the
//! last minute" and "the last 15 minutes" are live windows. Each stage measures, with the
//! windows ending at the newest line:
//!
//! - start-up: process start → `_count` answers, clean (page cache warm from the build;
//!   nothing to replay), and after `kill -9` with a full write-ahead log: once the server
//!   is search-idle, lines stamped now are posted through `_bulk` (4 MiB bodies, two at a
//!   time) to an index of their own until the log directory holds `WAL_MIB` (default 224,
//!   near the 256 MiB of uncommitted lines at which a search-idle server commits), then
//!   `kill -9` and restart (every acknowledged line must be back; that index is then
//!   deleted, so the week stays as designed);
//! - RSS (VmRSS and its anonymous part) after start-up and a minute idle, and after the
//!   queries;
//! - the rule count of the last minute, `http.status:500 AND service:checkout` through
//!   `_count` with a 1-minute range (the request a rule's count is; the rule path only runs
//!   on its cron ticks), `COUNTS` times (default 1000), windows ending 0–59 s before the
//!   newest line: p50/p99, HTTP included;
//! - the UI's search (`src/server/ui/app.js`: query and range as filters, the newest 50
//!   lines by `@timestamp`, `track_total_hits`, the date histogram at the UI's interval)
//!   over the last 15 min, 24 h and 7 days, for one trace id (a line 5–10 min old), a rare
//!   error type (`error.type:OutOfStock`, ≈ 0.4 % of lines) and `*`: median of `RUNS`
//!   (default 10);
//! - a `terms` aggregation by `service` over 24 h; `log_matches` over 24 h at 1-minute
//!   steps (`query_range` on the saved query `errors_by_service`: 1 441 points × 6 series).
//!
//! The naive index answers the same searches (TopDocs by date + fetching the 50 lines,
//! Count, tantivy's date-histogram and terms aggregations) and the same count; its totals
//! must equal Lookout's. `NAIVE_LINES` caps it (lines beyond the cap are not added and the
//! comparison says so); `NAIVE_LINES=0` leaves it out.
//!
//! `cargo bench --bench scale` (env: `LINES`, default 100 000 000; `RUNS`; `COUNTS`;
//! `WAL_MIB`; `NAIVE_LINES`; `SCALE_DIR`, where the data goes, default a temporary
//! directory under `target/`, removed at the end). Disk: Lookout's partitions take about
//! 430 B per line and the naive index 450–460 B (the output gives the figures per stage),
//! so 100 M lines need ≈ 90 GB, or ≈ 50 GB with `NAIVE_LINES=14600000` (one day of the
//! naive index); check `df -h` first. Prints a table per stage and the curve (stage ×
//! figure) at the end. The 100 M-line run's figures and what they say are in
//! docs/performance.md, "Scale: a week of logs".

mod common;
#[path = "scale/naive.rs"]
mod naive;
#[path = "scale/server.rs"]
mod server;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Random, env_or, rss_mib};
use naive::{Filter, NaiveIndex};
use server::{Server, Setup, filtered, ui_interval, ui_search_body};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// Longer than the week, so the oldest hour is not dropped while the bench runs.
const RETENTION: &str = "8days";
const RETENTION_MICROS: i64 = 8 * DAY_MS * 1000;
/// Where the lines that fill the write-ahead log go.
const WAL_INDEX: &str = "scale-wal";

/// Total bytes of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    common::directory_bytes(dir, &|_| true)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The data set as built so far, in both indexes.
struct Data {
    setup: Setup,
    naive: NaiveIndex,
    random: Random,
    lines_per_ms: f64,
    next_id: u64,
    /// Lines in the index `logs` (and in the naive index, unless capped).
    lines: u64,
    /// The exclusive end of the newest range written.
    end_ms: i64,
}

impl Data {
    /// Writes the lines of `[from_ms, to_ms)` at the data's rate into both indexes.
    fn write(&mut self, from_ms: i64, to_ms: i64) {
        let lines = ((to_ms - from_ms) as f64 * self.lines_per_ms).round() as u64;
        if lines > 0 {
            let (naive, random) = (&mut self.naive, &mut self.random);
            common::write_store(
                &self.setup.indices(),
                RETENTION_MICROS,
                self.next_id,
                lines,
                |seq| {
                    let time_ms = from_ms + (seq as i64 * (to_ms - from_ms)) / lines as i64;
                    let line = common::high_cardinality_line(time_ms, random);
                    naive.add(time_ms, &line);
                    (time_ms * 1000, bytes::Bytes::from(line))
                },
            );
            self.naive.commit();
            self.next_id += lines;
            self.lines += lines;
        }
        self.end_ms = self.end_ms.max(to_ms);
    }

    /// Writes from the newest line to the wall clock until that is under 5 s.
    fn catch_up(&mut self) {
        while now_ms() - self.end_ms >= 5_000 {
            self.write(self.end_ms, now_ms());
        }
    }
}

/// One figure of a stage: Lookout's value and the naive index's, in `unit`.
struct Figure {
    name: String,
    unit: &'static str,
    lookout: f64,
    naive: Option<f64>,
}

struct Stage {
    days: i64,
    lines: u64,
    figures: Vec<Figure>,
}

impl Stage {
    fn push(
        &mut self,
        name: impl Into<String>,
        unit: &'static str,
        lookout: f64,
        naive: Option<f64>,
    ) {
        self.figures.push(Figure {
            name: name.into(),
            unit,
            lookout,
            naive,
        });
    }

    fn print(&self) {
        println!(
            "\n| {} day(s), {} lines | Lookout | naive index | Lookout / naive |",
            self.days, self.lines
        );
        println!("|---|---|---|---|");
        for figure in &self.figures {
            let naive = figure.naive.map_or("—".to_string(), |value| {
                format!("{value:.3} {}", figure.unit)
            });
            let ratio = figure
                .naive
                .filter(|value| *value > 0.0)
                .map_or("—".to_string(), |value| {
                    format!("{:.2}", figure.lookout / value)
                });
            println!(
                "| {} | {:.3} {} | {naive} | {ratio} |",
                figure.name, figure.lookout, figure.unit
            );
        }
    }
}

fn percentile(samples: &mut [f64], fraction: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() as f64 * fraction) as usize).min(samples.len() - 1)]
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e3
}

fn main() {
    if !common::invoked_as_benchmark("scale") {
        return;
    }
    let total_lines = env_or("LINES", 100_000_000);
    let runs = env_or("RUNS", 10).max(1) as usize;
    let counts = env_or("COUNTS", 1000).max(1) as usize;
    let wal_target = env_or("WAL_MIB", 224) << 20;
    let naive_cap = env_or("NAIVE_LINES", u64::MAX);
    let parent = std::env::var("SCALE_DIR").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&parent)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", parent.display()));
    let work = tempfile::tempdir_in(&parent).expect("work dir");
    println!(
        "scale: {total_lines} lines over 7 days in {} (about {:.0} GB of indexes at the end; check `df -h`)",
        work.path().display(),
        // about 430 B a line for Lookout's partitions, 460 B for the naive index
        (total_lines as f64 * 440.0 + total_lines.min(naive_cap) as f64 * 460.0) / 1e9
    );
    let setup = Setup::write(work.path(), RETENTION);
    let start_ms = now_ms();
    let mut data = Data {
        naive: NaiveIndex::create(&work.path().join("naive"), naive_cap),
        setup,
        random: Random(0x51_7C_C1_B7_27_22_0A_95),
        lines_per_ms: total_lines as f64 / (7 * DAY_MS) as f64,
        next_id: 0,
        lines: 0,
        end_ms: start_ms,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async { lookout::install_tls_provider() });

    let mut stages = Vec::new();
    let mut days_built = 0;
    for days in [1, 3, 7] {
        let built = Instant::now();
        data.write(start_ms - days * DAY_MS, start_ms - days_built * DAY_MS);
        data.catch_up();
        days_built = days;
        let mut stage = Stage {
            days,
            lines: data.lines,
            figures: Vec::new(),
        };
        stage.push(
            "build (both indexes, this stage's lines)",
            "s",
            built.elapsed().as_secs_f64(),
            None,
        );
        let lookout_bytes = dir_bytes(&data.setup.data);
        stage.push(
            "disk",
            "GB",
            lookout_bytes as f64 / 1e9,
            Some(data.naive.disk_bytes() as f64 / 1e9),
        );
        stage.push(
            "disk per line",
            "B",
            lookout_bytes as f64 / data.lines as f64,
            Some(data.naive.disk_bytes() as f64 / data.naive.lines.max(1) as f64),
        );
        runtime.block_on(measure(&mut data, &mut stage, runs, counts, wal_target));
        stage.print();
        stages.push(stage);
    }
    print_curve(&stages);
    drop(data);
    let _ = work.close();
}

/// Every figure of one stage (see the module's doc), the server started and stopped here.
async fn measure(data: &mut Data, stage: &mut Stage, runs: usize, counts: usize, wal_target: u64) {
    let compare = data.naive.lines == data.lines;
    if !compare {
        println!(
            "naive index capped at {} of {} lines: its figures are for fewer lines and its totals are not compared",
            data.naive.lines, data.lines
        );
    }
    let server = data.setup.start().await;
    stage.push(
        "start-up, clean (process start → `_count` answers)",
        "s",
        server.ready.as_secs_f64(),
        None,
    );
    assert_eq!(
        server.count_all("logs").await,
        data.lines,
        "every line is counted"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (rss, anon) = rss_mib(server.child.id());
    stage.push("RSS at rest (start-up + 1 min idle)", "MiB", rss, None);
    stage.push(
        "  of it anonymous (not mapped index files)",
        "MiB",
        anon,
        None,
    );

    let end = data.end_ms;
    // the rule count of the last minute
    let mut lookout_samples = Vec::with_capacity(counts);
    let mut naive_samples = Vec::with_capacity(counts);
    for run in 0..counts {
        let window_end = end - (run as i64 % 60) * 1000;
        let started = Instant::now();
        let found = server
            .count(
                "http.status:500 AND service:checkout",
                window_end - MINUTE_MS,
                window_end,
            )
            .await;
        lookout_samples.push(millis(started.elapsed()));
        let started = Instant::now();
        let naive_found = data.naive.count(
            Filter::StatusAndService(500, "checkout"),
            window_end - MINUTE_MS,
            window_end,
        );
        naive_samples.push(millis(started.elapsed()));
        if compare {
            assert_eq!(found, naive_found, "both count the same lines");
        }
    }
    for (name, fraction) in [("p50", 0.5), ("p99", 0.99)] {
        stage.push(
            format!("rule count, last minute, `_count` over HTTP, {name}"),
            "ms",
            percentile(&mut lookout_samples, fraction),
            Some(percentile(&mut naive_samples, fraction)),
        );
    }

    // the UI's search
    let trace_id = needle(&server, end).await;
    let searches: [(&str, String, Filter); 3] = [
        (
            "one trace id",
            format!("trace_id:{trace_id}"),
            Filter::Word("trace_id", &trace_id),
        ),
        (
            "error.type:OutOfStock",
            "error.type:OutOfStock".into(),
            Filter::Word("error.type", "outofstock"),
        ),
        ("*", "*".into(), Filter::All),
    ];
    for (window_name, window_ms) in [
        ("15 min", 15 * MINUTE_MS),
        ("24 h", DAY_MS),
        ("7 days", 7 * DAY_MS),
    ] {
        let (start, interval) = (end - window_ms, ui_interval(window_ms));
        for (label, query, filter) in &searches {
            let body = ui_search_body(query, start, end, &interval);
            let mut lookout_times = Vec::with_capacity(runs);
            let mut naive_times = Vec::with_capacity(runs);
            for run in 0..runs {
                let started = Instant::now();
                let answer = server.post("/logs/_search", &body).await;
                lookout_times.push(millis(started.elapsed()));
                let total = answer["hits"]["total"]["value"].as_u64().expect("total");
                let started = Instant::now();
                let naive_answer = data.naive.ui_search(*filter, start, end, &interval);
                naive_times.push(millis(started.elapsed()));
                if run == 0 {
                    let hits = answer["hits"]["hits"].as_array().map_or(0, Vec::len);
                    let buckets = answer["aggregations"]["over_time"]["buckets"]
                        .as_array()
                        .map_or(0, Vec::len);
                    println!(
                        "{} d: `{query}` over {window_name}: {total} lines, {hits} fetched, {buckets} histogram buckets (naive: {}, {}, {})",
                        stage.days, naive_answer.total, naive_answer.hits, naive_answer.buckets
                    );
                    if compare {
                        assert_eq!(
                            (total, hits),
                            (naive_answer.total, naive_answer.hits),
                            "`{query}` over {window_name}: both find the same lines"
                        );
                    }
                }
            }
            stage.push(
                format!("UI search, {window_name}, {label}, median"),
                "ms",
                common::median(&mut lookout_times),
                Some(common::median(&mut naive_times)),
            );
        }
    }

    // terms by service over 24 h
    let body = serde_json::json!({
        "size": 0, "query": filtered("*", end - DAY_MS, end),
        "aggs": {"by": {"terms": {"field": "service", "size": 10}}},
    });
    let mut lookout_times = Vec::with_capacity(runs);
    let mut naive_times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let answer = server.post("/logs/_search", &body).await;
        lookout_times.push(millis(started.elapsed()));
        let started = Instant::now();
        let naive_buckets = data.naive.terms("service", end - DAY_MS, end);
        naive_times.push(millis(started.elapsed()));
        if compare {
            let mut buckets: Vec<(String, u64)> = answer["aggregations"]["by"]["buckets"]
                .as_array()
                .expect("buckets")
                .iter()
                .map(|bucket| {
                    (
                        bucket["key"].as_str().unwrap_or_default().to_string(),
                        bucket["doc_count"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            let mut naive_buckets = naive_buckets;
            buckets.sort();
            naive_buckets.sort();
            assert_eq!(buckets, naive_buckets, "the same terms");
        }
    }
    stage.push(
        "terms by service, 24 h, median",
        "ms",
        common::median(&mut lookout_times),
        Some(common::median(&mut naive_times)),
    );

    // log_matches over 24 h at 1-minute steps
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let series = server
            .query_range(
                "log_matches{query=\"errors_by_service\"}",
                (end - DAY_MS) as f64 / 1e3,
                end as f64 / 1e3,
                "60s",
            )
            .await;
        times.push(millis(started.elapsed()));
        assert!(series > 0, "log_matches has series");
    }
    stage.push(
        "log_matches, 24 h at 1-minute steps, median",
        "ms",
        common::median(&mut times),
        None,
    );
    let (rss, anon) = rss_mib(server.child.id());
    stage.push("RSS after the queries", "MiB", rss, None);
    stage.push("  of it anonymous", "MiB", anon, None);

    // a full write-ahead log, kill -9, restart
    let (wal_bytes, posted) = fill_wal(data, &server, wal_target).await;
    server.kill();
    let server = data.setup.start().await;
    stage.push(
        "start-up after kill -9 with a full write-ahead log",
        "s",
        server.ready.as_secs_f64(),
        None,
    );
    println!(
        "{} d: kill -9 with {:.0} MiB of write-ahead log ({posted} lines posted to `{WAL_INDEX}`)",
        stage.days,
        wal_bytes as f64 / 1048576.0
    );
    assert_eq!(
        server.count_all("logs").await,
        data.lines,
        "every line is back"
    );
    assert_eq!(
        server.count_all(WAL_INDEX).await,
        posted,
        "every acknowledged line is back"
    );
    // the next stage's data stays the designed week
    server.delete_index(WAL_INDEX).await;
    tokio::task::block_in_place(|| server.stop());
}

/// The trace id of a line 5–10 minutes before `end`.
async fn needle(server: &Server, end: i64) -> String {
    let answer = server
        .post(
            "/logs/_search",
            &serde_json::json!({"size": 1, "query": filtered("*", end - 10 * MINUTE_MS, end - 5 * MINUTE_MS)}),
        )
        .await;
    answer["hits"]["hits"][0]["_source"]["trace_id"]
        .as_str()
        .expect("a line 5–10 minutes old")
        .to_string()
}

/// Waits until the server is search-idle (30 s after the last search), then posts lines
/// stamped now to the index `WAL_INDEX` (not `logs`: the bursts would crowd the next
/// stage's newest minutes), two 4 MiB `_bulk` bodies at a time, until the write-ahead log
/// directory holds `target` bytes (at most 4 × `target` posted: a commit may cut the log on
/// the way). Returns the log's size and the lines posted.
async fn fill_wal(data: &mut Data, server: &Server, target: u64) -> (u64, u64) {
    tokio::time::sleep(Duration::from_secs(35)).await;
    let mut posted_bytes = 0u64;
    let mut posted_lines = 0u64;
    let mut wal = 0;
    while wal < target && posted_bytes < 4 * target {
        let mut bodies = Vec::new();
        for _ in 0..2 {
            let mut body = Vec::with_capacity((4 << 20) + 4096);
            let time_ms = now_ms();
            while body.len() < 4 << 20 {
                let line = common::high_cardinality_line(time_ms, &mut data.random);
                body.extend_from_slice(b"{\"index\":{}}\n");
                body.extend_from_slice(line.as_bytes());
                body.push(b'\n');
                posted_lines += 1;
            }
            posted_bytes += body.len() as u64;
            bodies.push(body);
        }
        let second = bodies.pop().expect("two bodies");
        let first = bodies.pop().expect("two bodies");
        tokio::join!(
            server.bulk(WAL_INDEX, first),
            server.bulk(WAL_INDEX, second)
        );
        wal = dir_bytes(&data.setup.wal());
    }
    assert!(
        data.setup.wal().is_dir(),
        "no write-ahead log at {}",
        data.setup.wal().display()
    );
    (wal, posted_lines)
}

/// The curve: every figure at each stage, and how it grew from 1 to 7 days.
fn print_curve(stages: &[Stage]) {
    println!("\n== the curve (Lookout; the naive index in parentheses)\n");
    let header: Vec<String> = stages
        .iter()
        .map(|stage| format!("{} d ({} lines)", stage.days, stage.lines))
        .collect();
    println!("| figure | {} | 7 d / 1 d |", header.join(" | "));
    println!("|---|{}---|", "---|".repeat(stages.len()));
    for (position, figure) in stages[0].figures.iter().enumerate() {
        let cells: Vec<String> = stages
            .iter()
            .map(|stage| {
                let figure = &stage.figures[position];
                match figure.naive {
                    Some(naive) => format!("{:.3} ({naive:.3})", figure.lookout),
                    None => format!("{:.3}", figure.lookout),
                }
            })
            .collect();
        let first = figure.lookout;
        let last = stages[stages.len() - 1].figures[position].lookout;
        let growth = if first > 0.0 {
            format!("{:.2}×", last / first)
        } else {
            "—".into()
        };
        println!(
            "| {} ({}) | {} | {growth} |",
            figure.name,
            figure.unit,
            cells.join(" | "),
        );
    }
}
