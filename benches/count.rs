//! Count latency: `status:500 AND service:checkout` in 1-minute windows over an index of
//! `DOCS` (default 10 M) log lines spanning 24 h, through Lookout's store and query path
//! (partitioned index, Lucene query compiled onto the log schema, `search::count`), side by
//! side with a naive single tantivy index (JSON field + fast date, plain range query).
//!
//! `cargo bench --bench count` (env: `DOCS`, `QUERIES`, default 2000). Prints p50/p90/p99.
//! The index is built through `IndexStore::apply`, the path the server's log thread uses
//! (without HTTP and the write-ahead log, which are measured by the ingest benchmark).
//!
//! `STORE_DIR=DATA/logs/indices` instead counts over an existing store (e.g. a copy of the
//! scale benchmark's week, whose lines have `http.status` and `service`) through a rule's
//! own evaluation (`rules::evaluate::count_window`): `http.status:500 AND service:checkout`
//! in 1-minute windows ending 0–59 s before the store's newest line, `QUERIES` times, two
//! passes, no naive index.

mod common;

use common::{Random, env_or};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout::index::IndexStore;
use lookout::index::query::dsl::ParseContext;
use lookout::index::query::lucene::{self, LuceneOptions};
use lookout::index::search::{self, Scope};
use tantivy::collector::Count;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    DateOptions, DateTimePrecision, IndexRecordOption, JsonObjectOptions, Schema, TEXT,
};
use tantivy::{Index, TantivyDocument, Term};

const SERVICES: [&str; 6] = ["checkout", "cart", "search", "catalog", "payments", "auth"];
const HOUR_MICROS: i64 = 3_600_000_000;

/// One document of the data set, in time order: `(micros, json)`.
fn document(
    seq: u64,
    docs: u64,
    start_micros: i64,
    random: &mut Random,
) -> (i64, serde_json::Value) {
    let micros = start_micros + (seq as i64 * 24 * HOUR_MICROS) / docs as i64;
    let status = common::http_status(random);
    let service = SERVICES[random.below(SERVICES.len() as u64) as usize];
    let body = common::request_line(micros, service, status, random);
    (micros, body)
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |fraction: f64| {
        samples[((samples.len() as f64 * fraction) as usize).min(samples.len() - 1)]
    };
    format!(
        "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    )
}

fn build_lookout(dir: &Path, docs: u64, start_micros: i64) -> Arc<IndexStore> {
    common::build_store(dir, docs, |doc_seq, random| {
        document(doc_seq, docs, start_micros, random)
    })
}

fn build_naive(
    dir: &Path,
    docs: u64,
    start_micros: i64,
) -> (Index, tantivy::schema::Field, tantivy::schema::Field) {
    let mut builder = Schema::builder();
    let body = builder.add_json_field("body", JsonObjectOptions::from(TEXT).set_fast("raw"));
    let timestamp = builder.add_date_field(
        "timestamp",
        DateOptions::default()
            .set_fast()
            .set_indexed()
            .set_precision(DateTimePrecision::Microseconds),
    );
    let index = Index::create_in_dir(dir, builder.build()).expect("index");
    let mut writer = index
        .writer_with_num_threads::<TantivyDocument>(2, 256 << 20)
        .expect("writer");
    let mut random = Random(0x2545_F491_4F6C_DD1D);
    for doc_seq in 0..docs {
        let (micros, body_value) = document(doc_seq, docs, start_micros, &mut random);
        let mut document = TantivyDocument::default();
        document.add_field_value(body, &body_value);
        document.add_date(timestamp, tantivy::DateTime::from_timestamp_micros(micros));
        writer.add_document(document).expect("add");
    }
    writer.commit().expect("commit");
    writer.wait_merging_threads().expect("merges");
    (index, body, timestamp)
}

fn main() {
    if !common::invoked_as_benchmark("count") {
        return;
    }
    let docs = env_or("DOCS", 10_000_000);
    let queries = env_or("QUERIES", 2000) as usize;
    if let Ok(dir) = std::env::var("STORE_DIR") {
        count_existing(Path::new(&dir), queries);
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    // the data ends an hour ago, so every window is inside retention
    let end_micros = (chrono::Utc::now().timestamp_micros() / HOUR_MICROS - 1) * HOUR_MICROS;
    let start_micros = end_micros - 24 * HOUR_MICROS;

    let started = Instant::now();
    let store = build_lookout(&work.path().join("lookout"), docs, start_micros);
    println!(
        "lookout index: {docs} docs over 24 h built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let (naive, body, timestamp) =
        build_naive(&work.path().join("naive").tap_create(), docs, start_micros);
    println!(
        "naive index: built in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // random minute-aligned window ends over the 24 h
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let windows: Vec<i64> = (0..queries)
        .map(|_| start_micros + (1 + random.below(24 * 60 - 1) as i64) * 60_000_000)
        .collect();

    let indices = store.resolve("logs", false).expect("index");
    let mut lookout_total = 0u64;
    // two passes over the same windows: the first meets each partition cold (pages not yet
    // mapped into this process), the second is the steady state of a rule evaluated again
    // and again
    for pass in ["first pass", "second pass"] {
        let mut samples = Vec::with_capacity(queries);
        let mut slowest: Vec<(Duration, usize)> = Vec::new();
        lookout_total = 0;
        for (position, &end) in windows.iter().enumerate() {
            let began = Instant::now();
            let context = ParseContext {
                now_micros: end,
                timestamp_field: "@timestamp".into(),
            };
            let query = lucene::parse(
                "status:500 AND service:checkout AND @timestamp:[now-1m TO now}",
                &context,
                &LuceneOptions::default(),
            )
            .expect("query");
            let scope = Scope::new(&indices, &query);
            lookout_total += search::count(&store, &scope, &query).expect("count");
            let elapsed = began.elapsed();
            samples.push(elapsed);
            slowest.push((elapsed, position));
        }
        slowest.sort();
        let tail: Vec<String> = slowest
            .iter()
            .rev()
            .take(5)
            .map(|(elapsed, position)| format!("#{position} {:.2} ms", elapsed.as_secs_f64() * 1e3))
            .collect();
        println!(
            "lookout count, 1-minute window (parse + partition pruning + count), {queries} queries, {pass}: {} (total matches {lookout_total}); slowest: {}",
            percentiles(samples),
            tail.join(", ")
        );
    }

    let reader = naive.reader().expect("reader");
    let searcher = reader.searcher();
    let mut naive_samples = Vec::with_capacity(queries);
    let mut naive_total = 0u64;
    for &end in &windows {
        let began = Instant::now();
        let json_term = |path: &str| Term::from_field_json_path(body, path, true);
        let mut status = json_term("status");
        status.append_type_and_fast_value(500i64);
        let mut service = json_term("service");
        service.append_type_and_str("checkout");
        let date = |micros: i64| {
            Term::from_field_date(timestamp, tantivy::DateTime::from_timestamp_micros(micros))
        };
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(status, IndexRecordOption::Basic)) as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(TermQuery::new(service, IndexRecordOption::Basic)),
            ),
            (
                Occur::Must,
                Box::new(RangeQuery::new(
                    std::ops::Bound::Included(date(end - 60_000_000)),
                    std::ops::Bound::Excluded(date(end)),
                )),
            ),
        ]);
        naive_total += searcher.search(&query, &Count).expect("count") as u64;
        naive_samples.push(began.elapsed());
    }
    println!(
        "naive count (one tantivy index, plain range query), {queries} queries: {} (total matches {naive_total})",
        percentiles(naive_samples)
    );
    assert_eq!(lookout_total, naive_total, "both count the same documents");
}

trait TapCreate {
    fn tap_create(self) -> Self;
}

impl TapCreate for std::path::PathBuf {
    fn tap_create(self) -> Self {
        std::fs::create_dir_all(&self).expect("create dir");
        self
    }
}

/// The rule's count of the last minute over an existing store (`STORE_DIR`).
fn count_existing(dir: &Path, queries: usize) {
    let opened = Instant::now();
    let store = common::open_store(dir, i64::MAX / 4);
    let indices = store.resolve("logs", false).expect("index `logs`");
    let newest = search::newest(&store, &indices, lookout::index::query::Query::MatchAll, 1)
        .expect("newest line");
    let newest_ms = newest
        .first()
        .and_then(|hit| hit["sort"][0].as_i64())
        .expect("a line with a time");
    println!(
        "store {} opened in {:.2} s; newest line at {newest_ms} ms",
        dir.display(),
        opened.elapsed().as_secs_f64()
    );
    let query = serde_json::Value::String("http.status:500 AND service:checkout".into());
    for pass in ["first pass", "second pass"] {
        let mut samples = Vec::with_capacity(queries);
        let mut total = 0;
        for run in 0..queries {
            let end_micros = (newest_ms + 1 - (run as i64 % 60) * 1000) * 1000;
            let began = Instant::now();
            let counts = lookout::rules::evaluate::count_window(
                &store,
                &lookout::rules::evaluate::Window {
                    index: "logs",
                    query: &query,
                    group_by: &[],
                    end_micros,
                    length: Duration::from_secs(60),
                },
            )
            .expect("count");
            samples.push(began.elapsed());
            total += counts.iter().map(|group| group.count).sum::<u64>();
        }
        println!(
            "rule count (count_window), last minute, {queries} windows, {pass}: {} (total matches {total})",
            percentiles(samples)
        );
    }
}
