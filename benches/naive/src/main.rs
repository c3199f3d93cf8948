//! The naive loader: serde_json → a bare tantivy index (one JSON field with tantivy's
//! `TEXT` flags and a fast raw column, a fast date field, 2 indexing threads, one commit).
//!
//! `naive-loader DATA.ndjson INDEX_DIR stored|unstored` prints
//! `elapsed_seconds cpu_seconds` (the process' own user + system time), both at the commit.

mod loader;

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let [_, data, dir, mode] = arguments.as_slice() else {
        eprintln!("usage: naive-loader DATA.ndjson INDEX_DIR stored|unstored");
        std::process::exit(2);
    };
    let (elapsed, cpu) = loader::load(data.as_ref(), dir.as_ref(), mode == "stored", cpu_seconds);
    println!("{:.3} {cpu:.3}", elapsed.as_secs_f64());
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
