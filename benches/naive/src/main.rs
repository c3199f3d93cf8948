//! The naive loader: serde_json → a bare tantivy index (one JSON field with tantivy's
//! `TEXT` flags and a fast raw column, a fast date field, 2 indexing threads, one commit).
//!
//! `naive-loader DATA.ndjson INDEX_DIR stored|unstored` prints
//! `elapsed_seconds cpu_seconds` (the process' own user + system time).

use std::io::{BufRead, BufReader};
use std::time::Instant;

use tantivy::schema::{DateOptions, DateTimePrecision, JsonObjectOptions, Schema, TEXT};
use tantivy::{Index, TantivyDocument};

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let [_, data, dir, mode] = arguments.as_slice() else {
        eprintln!("usage: naive-loader DATA.ndjson INDEX_DIR stored|unstored");
        std::process::exit(2);
    };
    let stored = mode == "stored";
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
    let elapsed = started.elapsed().as_secs_f64();
    println!("{elapsed:.3} {:.3}", cpu_seconds());
}

/// User + system time of this process from `/proc/self/stat` (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
