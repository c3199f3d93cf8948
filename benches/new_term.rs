//! New-term rules: the load-time pass over a lookback of many partitions (building the
//! set of values seen, paged by time through `terms` aggregations of at most 10 000
//! values), the memory the set takes per million distinct values, and a tick afterwards
//! (its window only).
//!
//! `cargo bench --bench new_term` (env: `DOCS`, default 1 M lines over 6 days of hourly
//! partitions, each with its own `user` value, so as many distinct values; `RUNS`,
//! default 3). Memory is the set's table and keys as [`NewTerms::heap_bytes`] estimates
//! them, and the process' resident set before and after the first build (`/proc`).

mod common;

use std::time::{Duration, Instant};

use common::{Random, env_or};
use lookout::rules::new_term::{NewTermSettings, NewTerms, TermQuery};

const HOUR_MICROS: i64 = 3_600_000_000;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The resident set of this process, in bytes (Linux `/proc/self/statm`).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    if !common::invoked_as_benchmark("new_term") {
        return;
    }
    let docs = env_or("DOCS", 1_000_000);
    let runs = env_or("RUNS", 3) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    // 6 days ending an hour before now, in time order (writers are per partition)
    let tick_micros = chrono::Utc::now().timestamp_micros();
    let start_micros = tick_micros - HOUR_MICROS - 6 * 24 * HOUR_MICROS;
    let span = 6 * 24 * HOUR_MICROS;
    let built = Instant::now();
    let store = common::build_store(dir.path(), docs, |seq, _random: &mut Random| {
        let micros = start_micros + (seq as i64 * span) / docs as i64;
        let at = chrono::DateTime::from_timestamp_micros(micros).expect("a time");
        (
            micros,
            serde_json::json!({"@timestamp": at.to_rfc3339(), "level": "error",
                               "user": format!("u{seq:08}"), "message": "login failed"}),
        )
    });
    eprintln!(
        "built {docs} documents over 144 hourly partitions in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let query = serde_json::json!("level:error");
    let settings = NewTermSettings {
        fields: vec!["user".into()],
        labels: vec!["user".into()],
        lookback: Duration::from_secs(7 * 86_400),
        max_terms: 50_000_000,
    };
    let term_query = TermQuery {
        rule: "bench",
        index: "logs",
        query: &query,
        settings: &settings,
        window: Duration::from_secs(60),
    };
    let mut loads = Vec::new();
    let mut ticks = Vec::new();
    let mut report = String::new();
    for run in 0..runs {
        let terms = NewTerms::detached();
        let resident_before = resident_bytes();
        let started = Instant::now();
        let new = terms
            .observe(&store, &term_query, tick_micros)
            .expect("the load pass");
        loads.push(started.elapsed());
        let resident_after = resident_bytes();
        assert!(new.is_empty(), "the window holds no lines");
        let started = Instant::now();
        terms
            .observe(&store, &term_query, tick_micros + 60_000_000)
            .expect("a tick");
        ticks.push(started.elapsed());
        if run == 0 {
            let tracked = terms.tracked("bench");
            let heap = terms.heap_bytes("bench");
            let searches = terms.searches("bench");
            report = format!(
                "tracked {tracked} values; set heap {:.1} MiB ({:.0} B per value, {:.1} MiB per million); resident set +{:.1} MiB during the first build; {} searches for the lookback, {} for the two ticks' windows",
                heap as f64 / (1 << 20) as f64,
                heap as f64 / tracked.max(1) as f64,
                heap as f64 / (1 << 20) as f64 / (tracked.max(1) as f64 / 1e6),
                resident_after.saturating_sub(resident_before) as f64 / (1 << 20) as f64,
                searches.lookback,
                searches.window,
            );
        }
    }
    println!("{report}");
    println!(
        "load-time pass over 6 days ({docs} lines, 144 partitions): median {:.2} s of {runs}",
        median(loads).as_secs_f64()
    );
    println!(
        "a tick after it (1-minute window): median {:.1} ms",
        median(ticks).as_secs_f64() * 1000.0
    );
}
