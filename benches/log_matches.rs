//! `log_matches` range queries: a saved query's count `[t − window, t)` at every step of
//! a range, per group, from one date-histogram pass over the index (`count_series`, what
//! PromQL's `log_matches{query=…}` runs), side by side with one grouped count per step
//! (`count_window`, what evaluating the rule at every step would do). Both answers are
//! compared: they must be equal.
//!
//! `cargo bench --bench log_matches` (env: `DOCS`, default 2 M over 24 h; `RUNS`, default 5).
//! The range is the last 23 h at a 60 s step (1 381 points, a Grafana panel's worth), the
//! query `status:500` grouped by `service` with a 1-minute window and a 1-hour group ttl.

mod common;

use common::{Random, env_or};
use std::time::{Duration, Instant};

use lookout::rules::evaluate::{SeriesSpec, Window, count_series, count_window};

const SERVICES: [&str; 6] = ["checkout", "cart", "search", "catalog", "payments", "auth"];
const HOUR_MS: i64 = 3_600_000;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    if !common::invoked_as_benchmark("log_matches") {
        return;
    }
    let docs = env_or("DOCS", 2_000_000);
    let runs = env_or("RUNS", 5) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    // 24 h ending at the last full hour
    let end_ms = chrono::Utc::now().timestamp_millis() / HOUR_MS * HOUR_MS;
    let start_ms = end_ms - 24 * HOUR_MS;
    let built = Instant::now();
    let store = common::build_store(dir.path(), docs, |seq, random: &mut Random| {
        let micros = (start_ms + (seq as i64 * 24 * HOUR_MS) / docs as i64) * 1000;
        let status = common::http_status(random);
        let service = SERVICES[random.below(SERVICES.len() as u64) as usize];
        (
            micros,
            common::request_line(micros, service, status, random),
        )
    });
    eprintln!(
        "built {docs} documents in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let query = serde_json::json!("status:500");
    let group_by = vec!["service".to_string()];
    let times: Vec<i64> = (0..=23 * 60)
        .map(|n| start_ms + HOUR_MS + n * 60_000)
        .collect();
    let spec = SeriesSpec {
        index: "logs",
        query: &query,
        group_by: &group_by,
        window_ms: 60_000,
        group_ttl_ms: HOUR_MS,
    };
    let mut one_pass = Vec::new();
    let mut series = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        series = count_series(&store, &spec, &times).expect("series");
        one_pass.push(started.elapsed());
    }
    let mut per_step = Vec::new();
    for run in 0..runs.min(3) {
        let started = Instant::now();
        for (number, time) in times.iter().enumerate() {
            let counts = count_window(
                &store,
                &Window {
                    index: "logs",
                    query: &query,
                    group_by: &group_by,
                    end_micros: time * 1000,
                    length: Duration::from_secs(60),
                },
            )
            .expect("count");
            if run == 0 {
                // the same answer, group by group
                for group in counts {
                    let found = series
                        .iter()
                        .find(|(labels, _)| *labels == group.labels)
                        .map(|(_, counts)| counts[number]);
                    assert_eq!(
                        found,
                        Some(Some(group.count)),
                        "{:?} at {time}",
                        group.labels
                    );
                }
            }
        }
        per_step.push(started.elapsed());
    }
    let (fast, slow) = (median(one_pass), median(per_step));
    println!(
        "log_matches over {docs} docs, {} steps × {} groups: one date-histogram pass median {:.1} ms; one count per step median {:.1} ms; {:.1}× faster (identical counts)",
        times.len(),
        series.len(),
        fast.as_secs_f64() * 1e3,
        slow.as_secs_f64() * 1e3,
        slow.as_secs_f64() / fast.as_secs_f64()
    );
}
