//! Elasticsearch aggregations, run by tantivy's aggregation engine.
//!
//! tantivy's request and result JSON already follow ES; what we add: field names are
//! rewritten onto the log schema (`service` and `service.keyword` → the body column,
//! `@timestamp` stays), `calendar_interval` is turned into tantivy's `fixed_interval`
//! (minute, hour, day, week; months and years have no fixed length and are refused with a
//! hint), and per-partition results are merged before they are finalized.

mod metric_numbers;

use serde_json::{Map, Value};
use tantivy::Searcher;
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::intermediate_agg_result::IntermediateAggregationResults;
use tantivy::aggregation::{
    AggContextParams, AggregationLimitsGuard, DistributedAggregationCollector,
};

use super::query::QueryError;
use super::schema::{BODY_FIELD, TIMESTAMP_FIELD};

/// Parses and rewrites an ES `aggs` object.
pub fn translate(aggs: &Value) -> Result<Aggregations, QueryError> {
    let mut rewritten = aggs.clone();
    rewrite_level(&mut rewritten, "aggs")?;
    serde_json::from_value(rewritten).map_err(|error| QueryError {
        kind: "x_content_parse_exception",
        reason: format!("[aggs]: {error}"),
    })
}

fn rewrite_level(level: &mut Value, at: &str) -> Result<(), QueryError> {
    let Value::Object(aggs) = level else {
        return Err(QueryError::parsing(format!(
            "[{at}]: expected an object of named aggregations"
        )));
    };
    for (name, definition) in aggs.iter_mut() {
        let at = format!("{at}][{name}");
        let Value::Object(definition) = definition else {
            return Err(QueryError::parsing(format!(
                "[{at}]: expected an aggregation object"
            )));
        };
        if let Some(sub) = definition.remove("aggregations") {
            definition.insert("aggs".into(), sub);
        }
        for (kind, body) in definition.iter_mut() {
            if kind == "aggs" {
                rewrite_level(body, &format!("{at}][aggs"))?;
                continue;
            }
            if kind == "meta" {
                continue;
            }
            let Value::Object(body) = body else { continue };
            if kind == "range"
                && body
                    .get("ranges")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty)
            {
                // tantivy indexes the first range unchecked
                return Err(QueryError::parsing(format!(
                    "[{at}][range]: no `ranges` given; name at least one, like {{\"to\": 100}}"
                )));
            }
            rewrite_field(body);
            if kind == "date_histogram" {
                rewrite_interval(body, &at)?;
            }
            if kind == "histogram" || kind == "date_histogram" {
                check_histogram_bounds(kind, body, &at)?;
            }
        }
    }
    Ok(())
}

/// A number as tantivy reads it: JSON numbers and numeric strings (`"interval": "10"`).
fn number(value: &Value) -> Option<f64> {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|text| text.trim().parse().ok()))
}

/// The longest `fixed_interval` accepted: a century (tantivy's interval arithmetic
/// overflows past `i64` milliseconds).
const MAX_INTERVAL_MILLIS: f64 = 100.0 * 365.0 * 86_400_000.0;

/// Refuses a histogram whose interval or `extended_bounds`/`hard_bounds` would make more
/// than [`MAX_BUCKETS`] buckets before tantivy computes them (its bucket arithmetic
/// overflows on bounds such as `1e300`).
fn check_histogram_bounds(
    kind: &str,
    body: &Map<String, Value>,
    at: &str,
) -> Result<(), QueryError> {
    let interval = if kind == "histogram" {
        body.get("interval").and_then(number)
    } else {
        body.get("fixed_interval")
            .and_then(Value::as_str)
            .and_then(interval_millis)
    };
    let Some(interval) = interval else {
        return Ok(()); // tantivy says what is wrong with it
    };
    if !(interval > 0.0 && interval.is_finite())
        || (kind == "date_histogram" && interval > MAX_INTERVAL_MILLIS)
    {
        return Err(QueryError::parsing(format!(
            "[{at}][{kind}]: the interval must be positive and at most a century"
        )));
    }
    for bounds in ["extended_bounds", "hard_bounds"] {
        let Some(Value::Object(bounds)) = body.get(bounds) else {
            continue;
        };
        let (Some(min), Some(max)) = (
            bounds.get("min").and_then(number),
            bounds.get("max").and_then(number),
        ) else {
            continue;
        };
        let buckets = (max - min) / interval;
        if !buckets.is_finite() || buckets > f64::from(MAX_BUCKETS) {
            return Err(QueryError {
                kind: "too_many_buckets_exception",
                reason: format!(
                    "Trying to create too many buckets. Must be less than or equal to: [{MAX_BUCKETS}] but was [{}]. This limit can be set by changing the [search.max_buckets] cluster level setting. ([{at}][{kind}] bounds from {min} to {max} at an interval of {interval})",
                    if buckets.is_finite() {
                        format!("{buckets:.0}")
                    } else {
                        "more than can be counted".into()
                    }
                ),
            });
        }
    }
    Ok(())
}

/// Milliseconds of a fixed interval such as `30s`, `1500ms`, `7d`.
fn interval_millis(text: &str) -> Option<f64> {
    let digits = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let amount: f64 = text[..digits].parse().ok()?;
    let unit = match &text[digits..] {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some(amount * unit)
}

fn rewrite_field(body: &mut Map<String, Value>) {
    if let Some(Value::String(field)) = body.get_mut("field") {
        *field = column_name(field);
    }
}

/// The fast-field column a user field name refers to.
pub fn column_name(field: &str) -> String {
    if field == TIMESTAMP_FIELD || field == "_id" {
        return field.to_string();
    }
    let path = field.strip_suffix(".keyword").unwrap_or(field);
    format!("{BODY_FIELD}.{path}")
}

fn rewrite_interval(body: &mut Map<String, Value>, at: &str) -> Result<(), QueryError> {
    let calendar = body
        .remove("calendar_interval")
        .or_else(|| body.remove("interval"));
    let Some(Value::String(calendar)) = calendar else {
        return Ok(());
    };
    let fixed = match calendar.as_str() {
        "second" | "1s" => "1s",
        "minute" | "1m" => "1m",
        "hour" | "1h" => "1h",
        "day" | "1d" => "1d",
        "week" | "1w" => {
            // weeks start on Monday; the epoch was a Thursday
            body.insert("offset".into(), Value::String("-3d".into()));
            "7d"
        }
        other
            if other.ends_with(['s', 'm', 'h', 'd'])
                && other[..other.len() - 1].parse::<u32>().is_ok() =>
        {
            other
        }
        other => {
            return Err(QueryError::parsing(format!(
                "[{at}][date_histogram]: calendar_interval `{other}` has no fixed length; use fixed_interval such as \"30d\""
            )));
        }
    };
    body.insert("fixed_interval".into(), Value::String(fixed.to_string()));
    Ok(())
}

/// Elasticsearch's default `search.max_buckets`.
pub const MAX_BUCKETS: u32 = 65_536;

fn limits(max_buckets: u32) -> AggregationLimitsGuard {
    AggregationLimitsGuard::new(Some(512 * 1024 * 1024), Some(max_buckets))
}

pub fn collector(
    aggregations: Aggregations,
    searcher: &Searcher,
    max_buckets: u32,
) -> DistributedAggregationCollector {
    DistributedAggregationCollector::from_aggs(
        aggregations,
        AggContextParams::new(limits(max_buckets), searcher.index().tokenizers().clone()),
    )
}

/// Finalizes merged per-partition results into ES' response JSON.
pub fn finish(
    aggregations: Aggregations,
    merged: Option<IntermediateAggregationResults>,
    max_buckets: u32,
) -> Result<Value, tantivy::TantivyError> {
    let request = aggregations.clone();
    let results = merged
        .unwrap_or_default()
        .into_final_result(aggregations, limits(max_buckets))?;
    let mut results = serde_json::to_value(results)
        .map_err(|error| tantivy::TantivyError::InternalError(error.to_string()))?;
    if let Value::Object(results) = &mut results {
        metric_numbers::shape(&request, results);
    }
    // tantivy counts the buckets it collects; the empty ones `min_doc_count: 0` and
    // `extended_bounds` add at the end only count against its memory limit. Elasticsearch
    // counts every bucket of the answer.
    let buckets = count_buckets(&results);
    if buckets > u64::from(max_buckets) {
        return Err(tantivy::TantivyError::AggregationError(
            tantivy::aggregation::AggregationError::BucketLimitExceeded {
                limit: max_buckets,
                current: u32::try_from(buckets).unwrap_or(u32::MAX),
            },
        ));
    }
    Ok(results)
}

/// Every bucket of an aggregation answer, at every level.
fn count_buckets(results: &Value) -> u64 {
    let mut count = 0;
    let mut pending = vec![results];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => {
                match map.get("buckets") {
                    Some(Value::Array(buckets)) => count += buckets.len() as u64,
                    Some(Value::Object(buckets)) => count += buckets.len() as u64,
                    _ => {}
                }
                pending.extend(map.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A range aggregation without ranges panicked inside tantivy's range collector.
    #[test]
    fn a_range_aggregation_without_ranges_is_refused() {
        let mut aggs = json!({"r": {"range": {"field": "status", "ranges": []}}});
        let error = rewrite_level(&mut aggs, "aggs").expect_err("no ranges");
        assert!(
            error.reason.contains("no `ranges` given"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn fields_and_calendar_intervals_are_rewritten() {
        let mut aggs = json!({
            "per_minute": {"date_histogram": {"field": "@timestamp", "calendar_interval": "minute"},
                "aggregations": {"services": {"terms": {"field": "service.keyword"}}}}
        });
        rewrite_level(&mut aggs, "aggs").expect("valid");
        assert_eq!(
            aggs,
            json!({"per_minute": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"},
                "aggs": {"services": {"terms": {"field": "body.service"}}}}})
        );
        let mut monthly =
            json!({"m": {"date_histogram": {"field": "@timestamp", "calendar_interval": "month"}}});
        assert!(rewrite_level(&mut monthly, "aggs").is_err());
    }
}
