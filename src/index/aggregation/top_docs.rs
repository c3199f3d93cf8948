//! `top_hits` and `top_metrics`: the top documents of each bucket.
//!
//! tantivy's own `top_hits` reads only fast-field columns, asserts (panics) when a segment
//! lacks a requested column, and has no `_source` or `_id`; it cannot answer what
//! Elasticsearch does. So these two are taken out of the request tantivy runs and answered
//! afterwards: each bucket that holds documents gets one small search — the request's
//! query AND the filters that define the bucket (a `terms` key as a `term`, a histogram
//! key as a range of its interval, a `filter`'s or `filters`' query, a `range` bucket's
//! bounds) — sorted and cut as asked, its hits rendered as `_search` renders them. The
//! number of such searches per request is bounded ([`MAX_SEARCHES`]).

use serde_json::{Map, Value, json};

use crate::index::query::QueryError;

/// Most bucket searches one request may make for its top documents.
pub const MAX_SEARCHES: usize = 1_000;
/// Largest `size` (Elasticsearch's `index.max_inner_result_window`).
const MAX_SIZE: usize = 100;

/// Finds the top documents of `spec` among the request's matches that also match every
/// query of `filters` (the buckets above): their total and the hits as `_search` renders
/// them.
pub type Fetch<'a> = dyn FnMut(&[Value], &TopDocs) -> Result<(u64, Vec<Value>), String> + 'a;

/// What a `top_hits` or `top_metrics` aggregation asks for.
#[derive(Debug, Clone)]
pub struct TopDocs {
    pub kind: TopKind,
    pub from: usize,
    pub size: usize,
    /// The `sort` as given (the search's sort syntax); none: by score.
    pub sort: Option<Value>,
    /// The `_source` filter as given (`top_hits`).
    pub source: Option<Value>,
    /// The fields whose values `top_metrics` answers.
    pub metrics: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TopKind {
    Hits,
    Metrics,
}

/// How a bucket of a parent aggregation is found again as a query.
#[derive(Debug, Clone)]
pub enum BucketFilter {
    /// `terms`: the bucket's key as a `term` on the field.
    Term(String),
    /// `histogram`, `date_histogram`: `[key, key + width)` on the field.
    Interval { field: String, width: f64 },
    /// `range`: the bucket's `from` and `to` on the field.
    Range(String),
    /// `filter`: its query.
    Filter(Value),
    /// `filters`: each bucket's query, by name (or position), and the other bucket's key.
    Filters {
        names: Option<Vec<String>>,
        queries: Vec<Value>,
        other: Option<String>,
    },
    /// An aggregation whose buckets cannot be told apart by a query.
    Unsupported(String),
}

/// Reads a `top_hits` or `top_metrics` body at `at`.
pub fn parse(kind: &str, body: &Value, at: &str) -> Result<TopDocs, QueryError> {
    let kind = if kind == "top_metrics" {
        TopKind::Metrics
    } else {
        TopKind::Hits
    };
    let Value::Object(body) = body else {
        return Err(QueryError::parsing(format!("[{at}]: expected an object")));
    };
    let number = |name: &str, default: usize| -> Result<usize, QueryError> {
        match body.get(name) {
            None => Ok(default),
            Some(value) => value
                .as_u64()
                .or_else(|| value.as_str().and_then(|text| text.trim().parse().ok()))
                .map(|number| number as usize)
                .ok_or_else(|| {
                    QueryError::parsing(format!(
                        "[{at}][{name}]: expected a non-negative number, got {value}"
                    ))
                }),
        }
    };
    // Elasticsearch's defaults: three hits, one top metric
    let size = number("size", if kind == TopKind::Hits { 3 } else { 1 })?;
    let from = number("from", 0)?;
    if from + size > MAX_SIZE {
        return Err(QueryError {
            kind: "illegal_argument_exception",
            reason: format!(
                "[{at}]: Top hits result window is too large, the top hits aggregator [from + size] must be less than or equal to: [{MAX_SIZE}] but was [{}]",
                from + size
            ),
        });
    }
    let mut spec = TopDocs {
        kind,
        from,
        size,
        sort: body.get("sort").cloned(),
        source: None,
        metrics: Vec::new(),
    };
    for key in body.keys() {
        let known = match kind {
            TopKind::Hits => matches!(
                key.as_str(),
                "size"
                    | "from"
                    | "sort"
                    | "_source"
                    | "track_scores"
                    | "version"
                    | "seq_no_primary_term"
            ),
            TopKind::Metrics => matches!(key.as_str(), "size" | "sort" | "metrics"),
        };
        if !known {
            let supported = match kind {
                TopKind::Hits => "size, from, sort and _source",
                TopKind::Metrics => "metrics, sort and size",
            };
            return Err(QueryError::parsing(format!(
                "[{at}]: [{key}] is not supported here; supported: {supported}"
            )));
        }
    }
    match kind {
        TopKind::Hits => spec.source = body.get("_source").cloned(),
        TopKind::Metrics => {
            if spec.sort.is_none() {
                return Err(QueryError::parsing(format!(
                    "[{at}]: [sort] is required, e.g. {{\"sort\": {{\"@timestamp\": \"desc\"}}}}"
                )));
            }
            let metrics: Vec<&Value> = match body.get("metrics") {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(single @ Value::Object(_)) => vec![single],
                _ => {
                    return Err(QueryError::parsing(format!(
                        "[{at}][metrics]: expected {{\"field\": \"NAME\"}} or a list of them"
                    )));
                }
            };
            for metric in metrics {
                let Some(field) = metric.get("field").and_then(Value::as_str) else {
                    return Err(QueryError::parsing(format!(
                        "[{at}][metrics]: each metric is {{\"field\": \"NAME\"}}, got {metric}"
                    )));
                };
                spec.metrics.push(field.to_string());
            }
        }
    }
    Ok(spec)
}

/// How the buckets of a `kind` aggregation with `body` (field names as the user gave
/// them) are found again as queries.
pub fn bucket_filter(kind: &str, body: &Value) -> BucketFilter {
    let field = || {
        body.get("field")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match kind {
        "terms" => field().map_or(BucketFilter::Unsupported(kind.into()), BucketFilter::Term),
        "histogram" => match (
            field(),
            body.get("interval").and_then(super::bounds::number),
        ) {
            (Some(field), Some(width)) => BucketFilter::Interval { field, width },
            _ => BucketFilter::Unsupported(kind.into()),
        },
        "date_histogram" => {
            let width = body
                .get("fixed_interval")
                .and_then(Value::as_str)
                .and_then(super::bounds::interval_millis);
            match (field(), width) {
                (Some(field), Some(width)) => BucketFilter::Interval { field, width },
                _ => BucketFilter::Unsupported(kind.into()),
            }
        }
        "range" => field().map_or(BucketFilter::Unsupported(kind.into()), BucketFilter::Range),
        "filter" => BucketFilter::Filter(body.clone()),
        other => BucketFilter::Unsupported(other.into()),
    }
}

impl BucketFilter {
    /// The query of `bucket` (the one named `key` among `filters`' buckets), or why there
    /// is none.
    pub fn query(&self, bucket: &Map<String, Value>, key: Option<&str>) -> Result<Value, String> {
        let bucket_key = bucket.get("key").cloned().unwrap_or(Value::Null);
        Ok(match self {
            BucketFilter::Term(field) => json!({"term": {field: bucket_key}}),
            BucketFilter::Interval { field, width } => {
                let start = bucket_key
                    .as_f64()
                    .ok_or("a histogram bucket without a key")?;
                let mut range = json!({"gte": start, "lt": start + width});
                if field == crate::index::schema::TIMESTAMP_FIELD {
                    range["format"] = json!("epoch_millis");
                }
                json!({"range": {field: range}})
            }
            BucketFilter::Range(field) => {
                let mut range = Map::new();
                if let Some(from) = bucket.get("from").filter(|from| !from.is_null()) {
                    range.insert("gte".into(), from.clone());
                }
                if let Some(to) = bucket.get("to").filter(|to| !to.is_null()) {
                    range.insert("lt".into(), to.clone());
                }
                json!({"range": {field: range}})
            }
            BucketFilter::Filter(query) => query.clone(),
            BucketFilter::Filters {
                names,
                queries,
                other,
            } => {
                let position = match (names, key) {
                    (Some(names), Some(key)) => names.iter().position(|name| name == key),
                    (None, Some(key)) => key.parse::<usize>().ok(),
                    _ => None,
                };
                match position.and_then(|position| queries.get(position)) {
                    Some(query) => query.clone(),
                    None if key.is_some() && key == other.as_deref() => {
                        json!({"bool": {"must_not": queries}})
                    }
                    None => return Err(format!("a `filters` bucket `{key:?}` of no filter")),
                }
            }
            BucketFilter::Unsupported(kind) => {
                return Err(format!(
                    "top_hits and top_metrics are not supported under a [{kind}] aggregation; put them under terms, histogram, date_histogram, range, filter or filters"
                ));
            }
        })
    }
}

/// The answer of `spec` from the top documents found: `total` matches and the `hits`
/// rendered as `_search` renders them (with `sort` values).
pub fn answer(spec: &TopDocs, total: u64, hits: Vec<Value>) -> Value {
    match spec.kind {
        TopKind::Hits => json!({"hits": {
            "total": {"value": total, "relation": "eq"},
            "max_score": hits.iter().filter_map(|hit| hit["_score"].as_f64()).reduce(f64::max),
            "hits": hits,
        }}),
        TopKind::Metrics => {
            let top: Vec<Value> = hits
                .iter()
                .map(|hit| {
                    let metrics: Map<String, Value> = spec
                        .metrics
                        .iter()
                        .map(|field| (field.clone(), value_at(&hit["_source"], field)))
                        .collect();
                    json!({"sort": hit.get("sort").cloned().unwrap_or(json!([])), "metrics": metrics})
                })
                .collect();
            json!({ "top": top })
        }
    }
}

/// The value at dotted `path` of a source (nested objects or dotted keys); `null` when
/// absent, as Elasticsearch answers a missing metric.
fn value_at(source: &Value, path: &str) -> Value {
    if let Some(value) = source.get(path) {
        return value.clone();
    }
    // `a.b.c` may be `{"a": {"b.c": …}}` or `{"a.b": {"c": …}}`
    for (split, _) in path.match_indices('.') {
        if let Some(inner) = source.get(&path[..split]) {
            let found = value_at(inner, &path[split + 1..]);
            if !found.is_null() {
                return found;
            }
        }
    }
    Value::Null
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_metrics_read_dotted_paths_of_nested_and_flat_sources() {
        let source =
            json!({"http": {"status": 500, "req.bytes": 12}, "a.b": {"c": 3}, "flat.key": 4});
        assert_eq!(value_at(&source, "http.status"), json!(500));
        assert_eq!(value_at(&source, "http.req.bytes"), json!(12));
        assert_eq!(value_at(&source, "a.b.c"), json!(3));
        assert_eq!(value_at(&source, "flat.key"), json!(4));
        assert_eq!(value_at(&source, "http.missing"), Value::Null);
    }

    #[test]
    fn bodies_are_checked_with_their_position() {
        let error = parse(
            "top_metrics",
            &json!({"metrics": {"field": "x"}}),
            "aggs][t",
        )
        .expect_err("no sort");
        assert!(
            error.reason.contains("[aggs][t]: [sort] is required"),
            "{}",
            error.reason
        );
        let error = parse("top_hits", &json!({"size": 101}), "aggs][t").expect_err("too many");
        assert!(
            error
                .reason
                .contains("must be less than or equal to: [100]"),
            "{}",
            error.reason
        );
        let error = parse("top_hits", &json!({"highlight": {}}), "aggs][t").expect_err("unknown");
        assert!(
            error.reason.contains("[highlight] is not supported"),
            "{}",
            error.reason
        );
        let spec = parse(
            "top_metrics",
            &json!({"metrics": [{"field": "a"}, {"field": "b"}], "sort": {"@timestamp": "desc"}}),
            "t",
        )
        .expect("valid");
        assert_eq!((spec.size, spec.metrics.len()), (1, 2));
    }

    #[test]
    fn buckets_become_queries() {
        let terms = bucket_filter("terms", &json!({"field": "service"}));
        let bucket = json!({"key": "cart", "doc_count": 3});
        assert_eq!(
            terms.query(bucket.as_object().unwrap(), None).unwrap(),
            json!({"term": {"service": "cart"}})
        );
        let histogram = BucketFilter::Interval {
            field: "@timestamp".into(),
            width: 60_000.0,
        };
        let bucket = json!({"key": 120_000.0, "doc_count": 1});
        assert_eq!(
            histogram.query(bucket.as_object().unwrap(), None).unwrap(),
            json!({"range": {"@timestamp": {"gte": 120_000.0, "lt": 180_000.0, "format": "epoch_millis"}}})
        );
        let filters = BucketFilter::Filters {
            names: Some(vec!["errors".into()]),
            queries: vec![json!({"term": {"level": "error"}})],
            other: Some("_other_".into()),
        };
        let empty = Map::new();
        assert_eq!(
            filters.query(&empty, Some("_other_")).unwrap(),
            json!({"bool": {"must_not": [{"term": {"level": "error"}}]}})
        );
        assert!(
            bucket_filter("cardinality", &json!({}))
                .query(&empty, None)
                .is_err()
        );
    }
}
