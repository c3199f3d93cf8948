//! The naive loader itself, shared by `benches/naive` (stock tantivy) and
//! `benches/ingest.rs` (the same code on Lookout's tantivy build).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use tantivy::schema::{DateOptions, DateTimePrecision, JsonObjectOptions, Schema, TEXT};
use tantivy::{Index, TantivyDocument};

/// serde_json → a bare tantivy index (one JSON field with tantivy's `TEXT` flags and a
/// fast raw column, a fast date field, 2 indexing threads, one commit). `stored` keeps the
/// documents (a log store must return them). Returns the time until the commit and what
/// `cpu_seconds` said then (before the background merges are waited for).
pub fn load(data: &Path, dir: &Path, stored: bool, cpu_seconds: fn() -> f64) -> (Duration, f64) {
    let started = Instant::now();
    let mut builder = Schema::builder();
    // tantivy's standard TEXT flags (words with frequencies and positions), plus fast
    let mut options = JsonObjectOptions::from(TEXT).set_fast("raw");
    if stored {
        options = options.set_stored();
    }
    let body = builder.add_json_field("body", options);
    let timestamp = builder.add_date_field(
        "timestamp",
        DateOptions::default()
            .set_fast()
            .set_indexed()
            .set_precision(DateTimePrecision::Milliseconds),
    );
    let index = Index::create_in_dir(dir, builder.build()).expect("index");
    let mut writer = index
        .writer_with_num_threads::<TantivyDocument>(2, 256 << 20)
        .expect("writer");
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(data).expect("open data"));
    for line in reader.lines() {
        let line = line.expect("line");
        let value: serde_json::Value = serde_json::from_str(&line).expect("json");
        let time = value["@timestamp"]
            .as_str()
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .map_or(0, |time| time.timestamp_millis());
        let mut document = TantivyDocument::default();
        document.add_field_value(body, &value);
        document.add_date(timestamp, tantivy::DateTime::from_timestamp_millis(time));
        writer.add_document(document).expect("add");
    }
    writer.commit().expect("commit");
    let elapsed = started.elapsed();
    let cpu = cpu_seconds();
    // tantivy merges the new segments in background threads that outlive the writer; left
    // running, they would take CPU from the next measurement (they did, until 2026-11-22)
    writer.wait_merging_threads().expect("merges");
    (elapsed, cpu)
}
