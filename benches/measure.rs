//! The cost of a log rule's value beyond a count: one tick of a rule grouped by
//! `service` over a 5-minute window, as a count (`count_window`), as each `aggregate` op
//! of `latency_ms` and as a `ratio` (`measure_window`, what `Sources::observe` runs); and
//! `log_aggregate` / `log_ratio` over a range (`measure::series`) against one window per
//! step, their answers compared.
//!
//! `cargo bench --bench measure` (env: `DOCS`, default 2 M over 24 h; `RUNS`, default 5).

mod common;

use std::time::{Duration, Instant};

use common::{Random, env_or};
use lookout::rules::evaluate::{Window, count_window};
use lookout::rules::measure::{AggregateOp, Measure, MeasureSeries, measure_window, series};

const SERVICES: [&str; 6] = ["checkout", "cart", "search", "catalog", "payments", "auth"];
const HOUR_MS: i64 = 3_600_000;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn timed<T>(runs: usize, mut run: impl FnMut() -> T) -> (Duration, T) {
    let mut samples = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(run());
        samples.push(started.elapsed());
    }
    (median(samples), last.expect("at least one run"))
}

fn main() {
    if !common::invoked_as_benchmark("measure") {
        return;
    }
    let docs = env_or("DOCS", 2_000_000);
    let runs = env_or("RUNS", 5).max(1) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
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
    let all = serde_json::json!("*");
    let errors = serde_json::json!("status:500");
    let group_by = vec!["service".to_string()];
    let window = |query| Window {
        index: "logs",
        query,
        group_by: &group_by,
        end_micros: end_ms * 1000,
        length: Duration::from_secs(300),
    };
    let lines = count_window(&store, &window(&all))
        .expect("count")
        .iter()
        .map(|group| group.count)
        .sum::<u64>();
    let (count, _) = timed(runs, || {
        count_window(&store, &window(&errors)).expect("count")
    });
    println!(
        "one tick over a 5m window ({lines} lines, {} groups): count {:.2} ms",
        SERVICES.len(),
        count.as_secs_f64() * 1e3
    );
    let aggregate = |op, percentile| Measure::Aggregate {
        op,
        field: "latency_ms".into(),
        percentile,
    };
    let measures = [
        ("avg", aggregate(AggregateOp::Avg, 0.0), &all),
        ("max", aggregate(AggregateOp::Max, 0.0), &all),
        ("p95", aggregate(AggregateOp::Percentile, 95.0), &all),
        (
            "cardinality of trace_id",
            Measure::Aggregate {
                op: AggregateOp::Cardinality,
                field: "trace_id".into(),
                percentile: 0.0,
            },
            &all,
        ),
        (
            "ratio status:500 / *",
            Measure::Ratio {
                denominator: all.clone(),
                min_denominator: 1,
            },
            &errors,
        ),
    ];
    for (name, measure, query) in &measures {
        let (took, _) = timed(runs, || {
            measure_window(&store, &window(query), measure).expect("measure")
        });
        println!(
            "  {name}: {:.2} ms ({:.1}× the count)",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() / count.as_secs_f64()
        );
    }
    // a range: the last 6 h, 5-minute windows, at a 60 s step (sketches, which do not
    // compose, at a step of one window: one bucket per step)
    for (name, measure, query) in &measures {
        let step_ms = match measure {
            Measure::Aggregate {
                op: AggregateOp::Percentile | AggregateOp::Cardinality,
                ..
            } => 300_000,
            _ => 60_000,
        };
        let times: Vec<i64> = (0..=6 * HOUR_MS / step_ms)
            .map(|n| end_ms - 6 * HOUR_MS + n * step_ms)
            .collect();
        let spec = MeasureSeries {
            name,
            index: "logs",
            query,
            group_by: &group_by,
            window_ms: 300_000,
            measure,
        };
        let (one_pass, found) = timed(runs, || series(&store, &spec, &times).expect("series"));
        let started = Instant::now();
        for (at, time) in times.iter().enumerate() {
            let step = Window {
                end_micros: time * 1000,
                ..window(query)
            };
            for group in measure_window(&store, &step, measure).expect("measure") {
                let value = found
                    .iter()
                    .find(|(labels, _)| *labels == group.labels)
                    .and_then(|(_, values)| values[at]);
                // HyperLogLog sketches built per histogram bucket and per search may
                // estimate a distinct count differently, within their error (docs/rules.md)
                let tolerance = match measure {
                    Measure::Aggregate {
                        op: AggregateOp::Cardinality,
                        ..
                    } => 0.02,
                    _ => 1e-9,
                };
                let close = value.is_some_and(|value| {
                    (value - group.value).abs() <= tolerance * group.value.abs().max(1.0)
                });
                assert!(
                    close,
                    "{name} {:?} at {time}: {value:?} != {}",
                    group.labels, group.value
                );
            }
        }
        let per_step = started.elapsed();
        println!(
            "  {name} over 6 h at {} s ({} steps): one pass {:.1} ms, one window per step {:.1} ms (same values; cardinality within 2 %)",
            step_ms / 1000,
            times.len(),
            one_pass.as_secs_f64() * 1e3,
            per_step.as_secs_f64() * 1e3
        );
    }
}
