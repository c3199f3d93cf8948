//! `buckets_path`: where a pipeline aggregation reads its input in each bucket, with
//! Elasticsearch's syntax (`AggregationPath`): aggregation names joined by `>`, the last
//! one optionally naming a value with `.` or `[…]` (`the_sum`, `_count`, `_key`,
//! `1>2`, `filtered>_count`, `stats.avg`, `percentiles[99.9]`, `percentiles.99`,
//! `histogram._bucket_count`), and the gap policy that decides what an empty bucket or a
//! missing value stands for (`BucketHelpers.resolveBucketValue`).

use serde_json::{Map, Value};

use crate::index::query::QueryError;

/// The longest path accepted.
const MAX_PATH_BYTES: usize = 512;
/// The most `>`-separated elements of a path.
const MAX_ELEMENTS: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct BucketsPath {
    pub text: String,
    elements: Vec<Element>,
}

#[derive(Debug, Clone, PartialEq)]
struct Element {
    name: String,
    /// `[key]` or, on the last element, `.key`.
    key: Option<String>,
}

/// What an empty bucket or a missing value is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapPolicy {
    /// Not a value: the pipeline leaves the bucket out (the default).
    Skip,
    /// Zero.
    InsertZeros,
    /// The metric's value where it has one, else as `skip`.
    KeepValues,
}

impl GapPolicy {
    pub fn parse(value: &Value, at: &str) -> Result<GapPolicy, QueryError> {
        match value.as_str() {
            Some("skip") => Ok(GapPolicy::Skip),
            Some("insert_zeros") => Ok(GapPolicy::InsertZeros),
            Some("keep_values") => Ok(GapPolicy::KeepValues),
            _ => Err(QueryError::parsing(format!(
                "[{at}][gap_policy]: Invalid gap policy: [{}], accepted values: [insert_zeros, skip, keep_values]",
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string)
            ))),
        }
    }

    /// Whether a missing value means leaving the bucket out.
    pub fn is_skippable(self) -> bool {
        matches!(self, GapPolicy::Skip | GapPolicy::KeepValues)
    }
}

impl BucketsPath {
    pub fn parse(text: &str, at: &str) -> Result<BucketsPath, QueryError> {
        let invalid = |why: &str| {
            QueryError::parsing(format!(
                "[{at}][buckets_path]: invalid path [{text}]: {why}"
            ))
        };
        if text.is_empty() || text.len() > MAX_PATH_BYTES {
            return Err(invalid(&format!(
                "a path is 1 to {MAX_PATH_BYTES} bytes, such as `_count`, `1`, `1>2` or `stats.avg`"
            )));
        }
        let parts = split_outside_brackets(text);
        if parts.len() > MAX_ELEMENTS {
            return Err(invalid(&format!("at most {MAX_ELEMENTS} `>` steps")));
        }
        let last = parts.len() - 1;
        let mut elements = Vec::with_capacity(parts.len());
        for (index, part) in parts.into_iter().enumerate() {
            let element = if let Some(open) = part.find('[') {
                let Some(inner) = part[open + 1..].strip_suffix(']') else {
                    return Err(invalid("a `[` is closed by `]` at the end of its step"));
                };
                let inner = inner
                    .strip_prefix('\'')
                    .and_then(|rest| rest.strip_suffix('\''))
                    .or_else(|| {
                        inner
                            .strip_prefix('"')
                            .and_then(|rest| rest.strip_suffix('"'))
                    })
                    .unwrap_or(inner);
                Element {
                    name: part[..open].to_string(),
                    key: Some(inner.to_string()),
                }
            } else if index == last
                && let Some((name, key)) = part.split_once('.')
            {
                Element {
                    name: name.to_string(),
                    key: Some(key.to_string()),
                }
            } else {
                Element {
                    name: part.to_string(),
                    key: None,
                }
            };
            if element.name.is_empty() || element.key.as_deref() == Some("") {
                return Err(invalid("an empty step"));
            }
            if (element.name == "_count" || element.name == "_key") && index != last {
                return Err(invalid(&format!("`{}` ends a path", element.name)));
            }
            elements.push(element);
        }
        Ok(BucketsPath {
            text: text.to_string(),
            elements,
        })
    }

    /// The aggregation (or `_count`, `_key`) the path starts at, beside the pipeline.
    pub fn first_name(&self) -> &str {
        &self.elements[0].name
    }

    /// The value the path reads in `bucket` under `gap_policy`: NaN when it stands for no
    /// value. An error when the path leads nowhere or to something that is not a number.
    pub fn value(&self, bucket: &Map<String, Value>, gap_policy: GapPolicy) -> Result<f64, String> {
        let value = self.resolve(bucket)?.unwrap_or(f64::NAN);
        let is_doc_count = self.elements.len() == 1 && self.elements[0].name == "_count";
        let empty = bucket.get("doc_count").and_then(Value::as_u64) == Some(0);
        if !value.is_finite() || (empty && !is_doc_count) {
            return Ok(match gap_policy {
                GapPolicy::InsertZeros => 0.0,
                GapPolicy::Skip => f64::NAN,
                GapPolicy::KeepValues if value.is_finite() => value,
                GapPolicy::KeepValues => f64::NAN,
            });
        }
        Ok(value)
    }

    /// The number at the path; `None` for a metric without a value (`null`).
    fn resolve(&self, bucket: &Map<String, Value>) -> Result<Option<f64>, String> {
        let (last, steps) = self
            .elements
            .split_last()
            .ok_or_else(|| format!("buckets_path [{}] is empty", self.text))?;
        let mut current = bucket;
        for element in steps {
            let result = self.result(current, &element.name)?;
            current = match &element.key {
                Some(key) => bucket_by_key(result, key).ok_or_else(|| {
                    format!(
                        "No aggregation found for path [{}]: [{}] has no bucket [{key}]",
                        self.text, element.name
                    )
                })?,
                None if result.contains_key("doc_count") => result,
                None => {
                    return Err(format!(
                        "buckets_path [{}]: [{}] has many buckets; name one as [{}['key']]",
                        self.text, element.name, element.name
                    ));
                }
            };
        }
        match last.name.as_str() {
            "_count" => Ok(current.get("doc_count").and_then(Value::as_f64)),
            "_key" => Ok(current.get("key").and_then(Value::as_f64)),
            name => self.metric_value(name, last.key.as_deref(), self.result(current, name)?),
        }
    }

    /// The aggregation result `name` in `bucket`.
    fn result<'a>(
        &self,
        bucket: &'a Map<String, Value>,
        name: &str,
    ) -> Result<&'a Map<String, Value>, String> {
        match bucket.get(name) {
            Some(Value::Object(result)) => Ok(result),
            _ => Err(format!(
                "No aggregation found for path [{}]: there is no [{name}] here",
                self.text
            )),
        }
    }

    fn metric_value(
        &self,
        name: &str,
        key: Option<&str>,
        result: &Map<String, Value>,
    ) -> Result<Option<f64>, String> {
        let number = |value: Option<&Value>| {
            match value {
            Some(Value::Null) => Ok(None),
            Some(value) => value.as_f64().map(Some).ok_or_else(|| {
                format!(
                    "buckets_path [{}] must reference either a number value or a single value numeric metric aggregation",
                    self.text
                )
            }),
            None => Err(format!(
                "No aggregation found for path [{}]: [{name}] has no value [{}]",
                self.text,
                key.unwrap_or("value")
            )),
        }
        };
        match key {
            Some("_bucket_count") => match result.get("buckets") {
                Some(Value::Array(buckets)) => Ok(Some(buckets.len() as f64)),
                Some(Value::Object(buckets)) => Ok(Some(buckets.len() as f64)),
                _ => number(result.get("_bucket_count")),
            },
            Some(key) => {
                if let Some(found) = result.get(key) {
                    return number(Some(found));
                }
                match result.get("values") {
                    // percentiles: `99` reads `"99.0"`
                    Some(Value::Object(values)) => number(
                        values
                            .iter()
                            .find(|(percent, _)| same_number(percent, key))
                            .map(|(_, value)| value),
                    ),
                    Some(Value::Array(values)) => number(
                        values
                            .iter()
                            .find(|entry| {
                                entry
                                    .get("key")
                                    .and_then(Value::as_f64)
                                    .is_some_and(|percent| same_number(&percent.to_string(), key))
                            })
                            .and_then(|entry| entry.get("value")),
                    ),
                    _ => number(None),
                }
            }
            None if result.contains_key("value") => number(result.get("value")),
            None if result.contains_key("doc_count") => Err(format!(
                "buckets_path must reference either a number value or a single value numeric metric aggregation, got: [bucket] at aggregation [{name}] (read its documents with [{name}>_count])"
            )),
            None => Err(format!(
                "buckets_path must reference either a number value or a single value numeric metric aggregation, but [{name}] contains multiple values. Please specify which to use."
            )),
        }
    }
}

fn same_number(text: &str, key: &str) -> bool {
    text == key
        || matches!(
            (text.parse::<f64>(), key.parse::<f64>()),
            (Ok(left), Ok(right)) if left == right
        )
}

/// The bucket of a multi-bucket result whose key (or `key_as_string`) is `key`.
fn bucket_by_key<'a>(result: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    match result.get("buckets")? {
        Value::Object(keyed) => keyed.get(key)?.as_object(),
        Value::Array(buckets) => buckets.iter().filter_map(Value::as_object).find(|bucket| {
            let matches = |value: Option<&Value>| match value {
                Some(Value::String(text)) => text == key,
                Some(Value::Number(number)) => number
                    .as_f64()
                    .is_some_and(|number| same_number(&number.to_string(), key)),
                _ => false,
            };
            matches(bucket.get("key")) || matches(bucket.get("key_as_string"))
        }),
        _ => None,
    }
}

fn split_outside_brackets(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '>' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bucket() -> Map<String, Value> {
        json!({
            "key": 1000, "doc_count": 4,
            "1": {"value": 2.5},
            "empty": {"value": null},
            "stats": {"count": 4, "avg": 3.0, "min": 1.0},
            "p": {"values": {"95.0": 9.5, "99.9": 12.0}},
            "f": {"doc_count": 3, "inner": {"value": 7.0}},
            "t": {"buckets": [{"key": "api", "doc_count": 2, "m": {"value": 1.0}}]},
        })
        .as_object()
        .expect("an object")
        .clone()
    }

    fn read(path: &str) -> Result<f64, String> {
        BucketsPath::parse(path, "a")
            .map_err(|error| error.reason)?
            .value(&bucket(), GapPolicy::Skip)
    }

    #[test]
    fn paths_read_what_elasticsearch_reads() {
        assert_eq!(read("_count"), Ok(4.0));
        assert_eq!(read("_key"), Ok(1000.0));
        assert_eq!(read("1"), Ok(2.5));
        assert_eq!(read("stats.avg"), Ok(3.0));
        assert_eq!(read("p[99.9]"), Ok(12.0));
        assert_eq!(read("p.95"), Ok(9.5));
        assert_eq!(read("p['95.0']"), Ok(9.5));
        assert_eq!(read("f>inner"), Ok(7.0));
        assert_eq!(read("f>_count"), Ok(3.0));
        assert_eq!(read("t['api']>m"), Ok(1.0));
        assert_eq!(read("t._bucket_count"), Ok(1.0));
        assert!(read("empty").expect("null is no value").is_nan());
    }

    #[test]
    fn paths_to_nothing_or_to_many_values_are_errors() {
        for (path, says) in [
            ("nope", "No aggregation found for path [nope]"),
            ("stats", "contains multiple values"),
            ("f", "single value numeric metric"),
            ("t>m", "has many buckets"),
            ("stats.nope", "has no value [nope]"),
        ] {
            let error = read(path).expect_err(path);
            assert!(error.contains(says), "{path}: {error}");
        }
        for text in ["", "a>", "_count>x", "p[99", &"a>".repeat(20)] {
            assert!(BucketsPath::parse(text, "a").is_err(), "{text:?}");
        }
    }

    #[test]
    fn an_empty_bucket_follows_the_gap_policy() {
        let empty = json!({"doc_count": 0, "s": {"value": 0.0}, "a": {"value": null}});
        let empty = empty.as_object().expect("an object");
        let path = |text| BucketsPath::parse(text, "a").expect("valid");
        assert!(
            path("s")
                .value(empty, GapPolicy::Skip)
                .expect("value")
                .is_nan()
        );
        assert_eq!(path("s").value(empty, GapPolicy::InsertZeros), Ok(0.0));
        assert_eq!(path("s").value(empty, GapPolicy::KeepValues), Ok(0.0));
        assert!(
            path("a")
                .value(empty, GapPolicy::KeepValues)
                .expect("value")
                .is_nan()
        );
        // the document count is never a gap
        assert_eq!(path("_count").value(empty, GapPolicy::Skip), Ok(0.0));
    }
}
