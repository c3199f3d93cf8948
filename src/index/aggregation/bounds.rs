//! Histogram intervals and bounds: `calendar_interval` made a `fixed_interval`, interval
//! text read as milliseconds, and the bucket-count bound (`search.max_buckets`) checked
//! before tantivy computes the buckets.

use serde_json::{Map, Value};

use crate::index::query::QueryError;

/// Elasticsearch's default `search.max_buckets`.
pub const MAX_BUCKETS: u32 = 65_536;

/// Milliseconds of `+6h`, `-3d`, `90m`.
pub(super) fn signed_interval_millis(text: &str) -> Option<i64> {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    interval_millis(rest).map(|millis| (sign * millis) as i64)
}

/// A number as tantivy reads it: JSON numbers and numeric strings (`"interval": "10"`).
pub(super) fn number(value: &Value) -> Option<f64> {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|text| text.trim().parse().ok()))
}

/// The longest `fixed_interval` accepted: a century (tantivy's interval arithmetic
/// overflows past `i64` milliseconds).
pub(super) const MAX_INTERVAL_MILLIS: f64 = 100.0 * 365.0 * 86_400_000.0;

/// Refuses a histogram whose interval or `extended_bounds`/`hard_bounds` would make more
/// than [`MAX_BUCKETS`] buckets before tantivy computes them (its bucket arithmetic
/// overflows on bounds such as `1e300`).
pub(super) fn check_histogram_bounds(
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
pub(super) fn interval_millis(text: &str) -> Option<f64> {
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

/// Turns `calendar_interval` (or the legacy `interval`) into the `fixed_interval` tantivy
/// knows: minute, hour, day, week; months and years have no fixed length and are refused.
pub(super) fn rewrite_interval(body: &mut Map<String, Value>, at: &str) -> Result<(), QueryError> {
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
