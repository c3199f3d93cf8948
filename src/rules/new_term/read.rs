//! Reading the distinct values of a new-term rule's fields in a time range: nested `terms`
//! aggregations (one level per field) with the newest `@timestamp` of each value, paged
//! by time. A range whose values do not fit one aggregation (a level with
//! `sum_other_doc_count`, or more buckets than a search may collect) is split and each
//! piece read again, down to one second; a second that still does not fit is an error.
//! The pieces are as many as the answer suggests (all matches over those of the values it
//! answered, twice over, at most [`MAX_PIECES`]), so a lookback of a million values is
//! read in about two passes, not one per halving.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::NewTermError;
use crate::index::IndexStore;
use crate::index::search::{self, Scope, SearchError, SearchRequest};
use crate::rules::evaluate::{Window, walk, window_query};

/// Distinct values one aggregation level answers (as many as a rule's groups).
pub const MAX_GROUPS: usize = crate::rules::evaluate::MAX_GROUPS;
/// Most (value, newest time) buckets one search may collect.
const MAX_SLICE_BUCKETS: u32 = 400_000;
/// Most pieces one slice is split into at once.
pub const MAX_PIECES: i64 = 512;
/// The shortest slice a range is split into.
const MIN_SLICE_MICROS: i64 = 1_000_000;

/// One value (combination) of a range: the fields' values in their order, its matches,
/// and the newest event time (µs) it was seen at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermCount {
    pub values: Vec<String>,
    pub count: u64,
    pub last_seen_micros: i64,
}

/// The distinct values of `fields` among the matches of `query` in `index` with event
/// times in `[from, to)` (µs); adds the searches it ran to `searches`.
pub fn read(
    store: &IndexStore,
    index: &str,
    query: &Value,
    fields: &[String],
    (from, to): (i64, i64),
    searches: &mut u64,
) -> Result<Vec<TermCount>, NewTermError> {
    let mut out = Vec::new();
    let mut pending = vec![(from, to)];
    while let Some((from, to)) = pending.pop() {
        if to <= from {
            continue;
        }
        *searches += 1;
        match read_slice(store, index, query, fields, (from, to))? {
            Ok(terms) => out.extend(terms),
            Err(_) if to - from <= MIN_SLICE_MICROS => {
                return Err(NewTermError::SliceTooDense {
                    fields: format!("`{}`", fields.join("`, `")),
                });
            }
            Err(pieces) => {
                let pieces = pieces
                    .clamp(2, MAX_PIECES)
                    .min((to - from) / MIN_SLICE_MICROS)
                    .max(2);
                let length = (to - from) / pieces;
                // the earliest piece is popped first: the answer stays in time order
                for piece in (0..pieces).rev() {
                    let end = if piece == pieces - 1 {
                        to
                    } else {
                        from + (piece + 1) * length
                    };
                    pending.push((from + piece * length, end));
                }
            }
        }
    }
    Ok(merge(out))
}

/// One slice's values, or (`Err`) into how many pieces to split it when they do not fit
/// one aggregation.
fn read_slice(
    store: &IndexStore,
    index: &str,
    query: &Value,
    fields: &[String],
    (from, to): (i64, i64),
) -> Result<Result<Vec<TermCount>, i64>, NewTermError> {
    let window = Window {
        index,
        query,
        group_by: fields,
        end_micros: to,
        length: Duration::from_micros((to - from) as u64),
    };
    let (search_query, indices) = window_query(store, &window, &BTreeMap::new())?;
    let scope = Scope::new(&indices, &search_query);
    let mut aggregations = json!({"last": {"max": {"field": "@timestamp"}}});
    for (level, field) in fields.iter().enumerate().rev() {
        aggregations = json!({ format!("g{level}"): {
            "terms": {"field": field, "size": MAX_GROUPS},
            "aggs": aggregations,
        }});
    }
    let request = SearchRequest {
        query: search_query,
        size: 0,
        aggregations: Some(aggregations),
        max_buckets: MAX_SLICE_BUCKETS,
        ..SearchRequest::default()
    };
    let outcome = match search::execute(store, &scope, &request, None) {
        Ok(outcome) => outcome,
        Err(SearchError::Engine(tantivy::TantivyError::AggregationError(
            tantivy::aggregation::AggregationError::BucketLimitExceeded { .. },
        ))) => return Ok(Err(2)),
        Err(error) => return Err(crate::rules::evaluate::EvaluateError::from(error).into()),
    };
    let result = outcome.aggregations.unwrap_or(Value::Null);
    if truncated(&result, 0, fields.len()) {
        // the first level's matches answered and left out tell how many slices it takes
        let first = &result["g0"];
        let answered: u64 = first["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|bucket| bucket["doc_count"].as_u64())
            .sum();
        let left_out = first["sum_other_doc_count"].as_u64().unwrap_or(0);
        let pieces = (answered + left_out).div_ceil(answered.max(1)) * 2;
        return Ok(Err(i64::try_from(pieces).unwrap_or(MAX_PIECES)));
    }
    let mut terms = Vec::new();
    walk(
        &result,
        fields,
        0,
        &mut BTreeMap::new(),
        &mut |labels, bucket| {
            terms.push(TermCount {
                values: fields
                    .iter()
                    .map(|field| labels.get(field).cloned().unwrap_or_default())
                    .collect(),
                count: bucket["doc_count"].as_u64().unwrap_or(0),
                // tantivy answers a date's maximum in nanoseconds, as a float (within a
                // microsecond for today's dates), never before the slice
                last_seen_micros: bucket["last"]["value"]
                    .as_f64()
                    .map_or(from, |nanos| (nanos / 1000.0).round() as i64)
                    .max(from),
            })
        },
    );
    Ok(Ok(terms))
}

/// Whether a `terms` level of `result` left values out.
fn truncated(result: &Value, level: usize, levels: usize) -> bool {
    if level == levels {
        return false;
    }
    let aggregation = &result[format!("g{level}")];
    if aggregation["sum_other_doc_count"].as_u64().unwrap_or(0) > 0 {
        return true;
    }
    aggregation["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|bucket| truncated(bucket, level + 1, levels))
}

/// The slices' values merged: counts added, the newest time kept.
fn merge(terms: Vec<TermCount>) -> Vec<TermCount> {
    let mut merged: BTreeMap<Vec<String>, (u64, i64)> = BTreeMap::new();
    for term in terms {
        let entry = merged.entry(term.values).or_insert((0, i64::MIN));
        entry.0 += term.count;
        entry.1 = entry.1.max(term.last_seen_micros);
    }
    merged
        .into_iter()
        .map(|(values, (count, last_seen_micros))| TermCount {
            values,
            count,
            last_seen_micros,
        })
        .collect()
}
