//! The naive index the scale curve compares with: one tantivy index (one stored JSON field
//! with tantivy's `TEXT` flags and a fast raw column, a fast indexed date field), as
//! `benches/count.rs` and the naive loader build it, searched directly with tantivy's own
//! collectors: `TopDocs` ordered by the date, tantivy's date-histogram and terms
//! aggregations, `Count`.

use std::path::{Path, PathBuf};

use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::agg_result::AggregationResults;
use tantivy::aggregation::{AggContextParams, AggregationCollector, AggregationLimitsGuard};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, JsonObjectOptions, Schema, TEXT,
};
use tantivy::{Index, IndexReader, IndexWriter, Order, TantivyDocument, Term};

/// A query of the bench, as the naive index answers it.
#[derive(Clone, Copy)]
pub enum Filter<'a> {
    /// Every line (`*`).
    All,
    /// A string field equal to a value (one lowercase word: the `TEXT` tokenizer's form).
    Word(&'a str, &'a str),
    /// `http.status:500 AND service:SERVICE`.
    StatusAndService(i64, &'a str),
}

pub struct NaiveIndex {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    writer: IndexWriter,
    body: Field,
    timestamp: Field,
    /// Lines added.
    pub lines: u64,
    /// Lines beyond this are not added (`NAIVE_LINES`).
    pub cap: u64,
}

/// What the UI's search got: the total, the newest lines fetched, histogram buckets.
pub struct UiAnswer {
    pub total: u64,
    pub hits: usize,
    pub buckets: usize,
}

impl NaiveIndex {
    pub fn create(dir: &Path, cap: u64) -> NaiveIndex {
        std::fs::create_dir_all(dir).expect("naive dir");
        let mut builder = Schema::builder();
        let body = builder.add_json_field(
            "body",
            JsonObjectOptions::from(TEXT).set_fast("raw").set_stored(),
        );
        let timestamp = builder.add_date_field(
            "timestamp",
            DateOptions::default()
                .set_fast()
                .set_indexed()
                .set_precision(DateTimePrecision::Milliseconds),
        );
        let index = Index::create_in_dir(dir, builder.build()).expect("naive index");
        let writer = index
            .writer_with_num_threads::<TantivyDocument>(2, 256 << 20)
            .expect("naive writer");
        let reader = index.reader().expect("naive reader");
        NaiveIndex {
            dir: dir.to_path_buf(),
            index,
            reader,
            writer,
            body,
            timestamp,
            lines: 0,
            cap,
        }
    }

    /// Adds one line (parsed with serde_json, as the naive loader does) unless the cap is
    /// reached.
    pub fn add(&mut self, time_ms: i64, line: &str) {
        if self.lines >= self.cap {
            return;
        }
        let value: serde_json::Value = serde_json::from_str(line).expect("json line");
        let mut document = TantivyDocument::default();
        document.add_field_value(self.body, &value);
        document.add_date(
            self.timestamp,
            tantivy::DateTime::from_timestamp_millis(time_ms),
        );
        self.writer.add_document(document).expect("naive add");
        self.lines += 1;
    }

    /// Commits, waits for no merge (merges go on in the background as they would), and
    /// reloads the reader.
    pub fn commit(&mut self) {
        self.writer.commit().expect("naive commit");
        self.reader.reload().expect("naive reload");
    }

    pub fn disk_bytes(&self) -> u64 {
        super::dir_bytes(&self.dir)
    }

    fn query(&self, filter: Filter, start_ms: i64, end_ms: i64) -> Box<dyn Query> {
        let date = |ms: i64| {
            Term::from_field_date(self.timestamp, tantivy::DateTime::from_timestamp_millis(ms))
        };
        let range: Box<dyn Query> = Box::new(RangeQuery::new(
            std::ops::Bound::Included(date(start_ms)),
            std::ops::Bound::Excluded(date(end_ms)),
        ));
        let word = |path: &str, value: &str| -> Box<dyn Query> {
            let mut term = Term::from_field_json_path(self.body, path, true);
            term.append_type_and_str(value);
            Box::new(TermQuery::new(term, IndexRecordOption::Basic))
        };
        let mut clauses = vec![(Occur::Must, range)];
        match filter {
            Filter::All => clauses.push((Occur::Must, Box::new(AllQuery))),
            Filter::Word(path, value) => clauses.push((Occur::Must, word(path, value))),
            Filter::StatusAndService(status, service) => {
                let mut term = Term::from_field_json_path(self.body, "http.status", true);
                term.append_type_and_fast_value(status);
                clauses.push((
                    Occur::Must,
                    Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                ));
                clauses.push((Occur::Must, word("service", service)));
            }
        }
        Box::new(BooleanQuery::new(clauses))
    }

    pub fn count(&self, filter: Filter, start_ms: i64, end_ms: i64) -> u64 {
        let searcher = self.reader.searcher();
        searcher
            .search(&*self.query(filter, start_ms, end_ms), &Count)
            .expect("naive count") as u64
    }

    /// The UI's search: the newest 50 lines (fetched from the doc store), the total and
    /// the date histogram at `interval`.
    pub fn ui_search(
        &self,
        filter: Filter,
        start_ms: i64,
        end_ms: i64,
        interval: &str,
    ) -> UiAnswer {
        let searcher = self.reader.searcher();
        let aggregations: Aggregations = serde_json::from_value(serde_json::json!({
            "over_time": {"date_histogram": {
                "field": "timestamp", "fixed_interval": interval, "min_doc_count": 0,
                "extended_bounds": {"min": start_ms, "max": end_ms - 1},
            }}
        }))
        .expect("histogram request");
        let collectors = (
            TopDocs::with_limit(50)
                .order_by_fast_field::<tantivy::DateTime>("timestamp", Order::Desc),
            Count,
            self.aggregation_collector(aggregations),
        );
        let (top, total, histogram) = searcher
            .search(&*self.query(filter, start_ms, end_ms), &collectors)
            .expect("naive search");
        for (_, address) in &top {
            let _document: TantivyDocument = searcher.doc(*address).expect("naive doc");
        }
        UiAnswer {
            total: total as u64,
            hits: top.len(),
            buckets: buckets(&histogram, "over_time").len(),
        }
    }

    /// A `terms` aggregation on `field` (top 10) over the window: `(value, count)`.
    pub fn terms(&self, field: &str, start_ms: i64, end_ms: i64) -> Vec<(String, u64)> {
        let searcher = self.reader.searcher();
        let aggregations: Aggregations = serde_json::from_value(serde_json::json!({
            "by": {"terms": {"field": format!("body.{field}"), "size": 10}}
        }))
        .expect("terms request");
        let results = searcher
            .search(
                &*self.query(Filter::All, start_ms, end_ms),
                &self.aggregation_collector(aggregations),
            )
            .expect("naive terms");
        buckets(&results, "by")
            .iter()
            .map(|bucket| {
                (
                    bucket["key"].as_str().unwrap_or_default().to_string(),
                    bucket["doc_count"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    fn aggregation_collector(&self, aggregations: Aggregations) -> AggregationCollector {
        AggregationCollector::from_aggs(
            aggregations,
            AggContextParams::new(
                AggregationLimitsGuard::default(),
                self.index.tokenizers().clone(),
            ),
        )
    }
}

/// The buckets of the aggregation `name`, as JSON.
fn buckets(results: &AggregationResults, name: &str) -> Vec<serde_json::Value> {
    let json = serde_json::to_value(results).expect("aggregation json");
    json[name]["buckets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}
