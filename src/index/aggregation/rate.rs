//! The `rate` metric of a date histogram's buckets, as Elasticsearch computes it
//! (`RateAggregator`): the sum of `field` (`mode: sum`, the default), the number of its
//! values (`mode: value_count`) or, without a field, the bucket's document count, divided
//! by the bucket's length in `unit`s (per bucket when no unit is given). Answers
//! `{"value": …}`.
//!
//! tantivy has no `rate`: [`take_level`] turns each into the `sum` or `value_count`
//! tantivy computes (or nothing, for document counts) and [`apply`] divides in each
//! finished bucket.

use serde_json::{Map, Value, json};

use super::pipeline::unit_millis;
use crate::index::query::QueryError;

#[derive(Debug, Clone)]
pub struct Rate {
    name: String,
    /// Read the bucket's `doc_count` rather than the rewritten metric.
    of_doc_count: bool,
    /// The bucket's length in units.
    bucket_units: f64,
}

/// The histogram a level of aggregations sits in: its kind and, for a date histogram,
/// its interval in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Parent {
    pub kind: Option<String>,
    pub interval_millis: Option<f64>,
}

impl Parent {
    /// Reads the kind and interval of an aggregation definition before it is rewritten.
    pub fn of(definition: &Map<String, Value>) -> Parent {
        let kind = definition
            .keys()
            .find(|key| !matches!(key.as_str(), "aggs" | "aggregations" | "meta"))
            .cloned();
        let interval_millis = definition
            .get("date_histogram")
            .and_then(|body| {
                body.get("fixed_interval")
                    .or_else(|| body.get("calendar_interval"))
                    .or_else(|| body.get("interval"))
            })
            .and_then(unit_millis);
        Parent {
            kind,
            interval_millis,
        }
    }
}

/// Rewrites the `rate` aggregations of one level (inside `parent`) into what tantivy
/// computes, returning what [`apply`] needs.
pub fn take_level(aggs: &mut Value, parent: &Parent, at: &str) -> Result<Vec<Rate>, QueryError> {
    let Value::Object(level) = aggs else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = level
        .iter()
        .filter(|(_, definition)| definition.get("rate").is_some())
        .map(|(name, _)| name.clone())
        .collect();
    let mut rates = Vec::with_capacity(names.len());
    for name in names {
        let here = format!("{at}][{name}][rate");
        let interval = match (parent.kind.as_deref(), parent.interval_millis) {
            (Some("date_histogram"), Some(interval)) => interval,
            (Some("date_histogram"), None) => {
                return Err(QueryError::parsing(format!(
                    "[{here}]: the parent date histogram has no fixed interval to measure buckets by"
                )));
            }
            _ => {
                return Err(QueryError::illegal_argument(format!(
                    "[{here}]: The rate aggregation can only be used inside a date histogram aggregation or composite aggregation with one date histogram value source"
                )));
            }
        };
        let Some(Value::Object(body)) = level
            .get(&name)
            .and_then(|definition| definition.get("rate"))
            .cloned()
        else {
            return Err(QueryError::parsing(format!(
                "[{here}]: expected an object such as {{\"field\": \"bytes\", \"unit\": \"second\"}}"
            )));
        };
        if let Some(unknown) = body
            .keys()
            .find(|key| !matches!(key.as_str(), "field" | "unit" | "mode" | "format"))
        {
            return Err(QueryError::parsing(format!(
                "[{here}]: unknown field [{unknown}]; a [rate] takes field, unit, mode and format"
            )));
        }
        let unit = match body.get("unit") {
            None => None,
            Some(Value::String(unit)) => Some(calendar_unit_millis(unit).ok_or_else(|| {
                QueryError::illegal_argument(format!(
                    "[{here}]: Unsupported unit [{unit}]; use second, minute, hour, day or week"
                ))
            })?),
            Some(other) => {
                return Err(QueryError::parsing(format!(
                    "[{here}][unit]: expected a unit such as \"second\", got {other}"
                )));
            }
        };
        let field = body
            .get("field")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mode = body.get("mode").and_then(Value::as_str).unwrap_or("sum");
        if body.get("mode").is_some() && field.is_none() {
            return Err(QueryError::illegal_argument(format!(
                "[{here}]: The mode parameter is only supported with field or script"
            )));
        }
        let metric = match mode {
            "sum" => "sum",
            "value_count" => "value_count",
            other => {
                return Err(QueryError::illegal_argument(format!(
                    "[{here}][mode]: Invalid rate mode [{other}]; use sum or value_count"
                )));
            }
        };
        rates.push(Rate {
            name: name.clone(),
            of_doc_count: field.is_none(),
            bucket_units: unit.map_or(1.0, |unit| interval / unit),
        });
        match field {
            Some(field) => {
                level.insert(name, json!({ metric: {"field": field} }));
            }
            None => {
                level.remove(&name);
            }
        }
    }
    Ok(rates)
}

/// A rate's `unit`: the fixed-length calendar units (months, quarters and years have no
/// fixed length in a fixed-interval histogram, as Elasticsearch says).
fn calendar_unit_millis(unit: &str) -> Option<f64> {
    Some(match unit {
        "second" | "1s" => 1_000.0,
        "minute" | "1m" => 60_000.0,
        "hour" | "1h" => 3_600_000.0,
        "day" | "1d" => 86_400_000.0,
        "week" | "1w" => 604_800_000.0,
        _ => return None,
    })
}

/// Divides each rate of `bucket` by the bucket's length in its unit.
pub fn apply(rates: &[Rate], bucket: &mut Map<String, Value>) {
    for rate in rates {
        let total = if rate.of_doc_count {
            bucket.get("doc_count").and_then(Value::as_f64)
        } else {
            bucket
                .get(&rate.name)
                .and_then(|result| result.get("value"))
                .and_then(Value::as_f64)
        }
        .unwrap_or(0.0);
        let value = total / rate.bucket_units;
        bucket.insert(
            rate.name.clone(),
            json!({"value": if value.is_finite() { json!(value) } else { Value::Null }}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(interval: &str) -> Parent {
        Parent::of(
            json!({"date_histogram": {"field": "@timestamp", "fixed_interval": interval}})
                .as_object()
                .expect("an object"),
        )
    }

    #[test]
    fn rates_divide_by_the_bucket_length_in_their_unit() {
        let mut aggs = json!({
            "bytes": {"rate": {"field": "size", "unit": "second"}},
            "lines": {"rate": {"unit": "minute"}},
            "values": {"rate": {"field": "size", "mode": "value_count"}},
        });
        let rates = take_level(&mut aggs, &parent("10m"), "aggs").expect("valid");
        assert_eq!(
            aggs,
            json!({"bytes": {"sum": {"field": "size"}}, "values": {"value_count": {"field": "size"}}})
        );
        let mut bucket =
            json!({"doc_count": 20, "bytes": {"value": 1200.0}, "values": {"value": 4}})
                .as_object()
                .expect("an object")
                .clone();
        apply(&rates, &mut bucket);
        assert_eq!(bucket["bytes"], json!({"value": 2.0}));
        assert_eq!(bucket["lines"], json!({"value": 2.0}));
        assert_eq!(bucket["values"], json!({"value": 4.0}));
    }

    #[test]
    fn misplaced_or_malformed_rates_are_refused() {
        for (aggs, parent, says) in [
            (
                json!({"r": {"rate": {"unit": "second"}}}),
                Parent::default(),
                "can only be used inside a date histogram",
            ),
            (
                json!({"r": {"rate": {"unit": "month"}}}),
                parent("1d"),
                "Unsupported unit [month]",
            ),
            (
                json!({"r": {"rate": {"mode": "sum"}}}),
                parent("1d"),
                "only supported with field",
            ),
            (
                json!({"r": {"rate": {"field": "x", "mode": "avg"}}}),
                parent("1d"),
                "Invalid rate mode [avg]",
            ),
            (
                json!({"r": {"rate": {"field": "x", "per": 1}}}),
                parent("1d"),
                "unknown field [per]",
            ),
        ] {
            let mut aggs = aggs;
            let error = take_level(&mut aggs, &parent, "aggs").expect_err("refused");
            assert!(error.reason.contains(says), "{}", error.reason);
        }
    }
}
