//! `search_after`: the sort values of the last hit of a page, read against the request's
//! `sort`, so that the next page holds the hits strictly after them (Grafana's log
//! context, ElastAlert2 and Kibana-style clients page this way).
//!
//! As Elasticsearch (`SearchAfterBuilder.buildFieldDoc`), the values are compared with the
//! sort values alone and a hit whose values all equal them is not returned: sorting on a
//! unique tiebreaker last (`_doc`, as Grafana does) is what makes every page continue
//! exactly where the last one stopped. `_doc` sort values are ordinals unique among the
//! searched partitions ([`doc_ordinal`]), in the order hits are tie-broken; like
//! Elasticsearch's Lucene doc ids they can change when segments merge.
//!
//! Consumes JSON; reads no index.

use std::cmp::Ordering;

use serde_json::Value;
use tantivy::{DocId, Searcher, SegmentOrdinal};

use super::{SortField, SortKey, SortValue};
use crate::index::query::QueryError;
use crate::index::query::date_math::{Rounding, parse_micros};

/// The longest string one `search_after` value may be (a sort value is a term).
const MAX_VALUE_BYTES: usize = 32 * 1024;

/// Reads `search_after` against `sort`; `from` must be 0 with it, as in Elasticsearch.
pub fn parse(
    value: &Value,
    sort: &[SortField],
    from: usize,
    now_micros: i64,
) -> Result<Vec<SortValue>, QueryError> {
    let Value::Array(values) = value else {
        return Err(QueryError::parsing(format!(
            "[search_after]: expected a list of the last hit's sort values, got {value}"
        )));
    };
    if sort.is_empty() {
        return Err(QueryError::illegal_argument(
            "Sort must contain at least one field. ([search_after] continues after the sort values of a hit; add a `sort` such as [{\"@timestamp\": \"desc\"}, {\"_doc\": \"desc\"}])",
        ));
    }
    if values.len() != sort.len() {
        return Err(QueryError::illegal_argument(format!(
            "search_after has {} value(s) but sort has {}.",
            values.len(),
            sort.len()
        )));
    }
    if from > 0 {
        return Err(QueryError::illegal_argument(
            "`from` parameter must be set to 0 when `search_after` is used.",
        ));
    }
    sort.iter()
        .zip(values)
        .enumerate()
        .map(|(position, (field, value))| sort_value(field, value, now_micros, position))
        .collect()
}

fn sort_value(
    field: &SortField,
    value: &Value,
    now_micros: i64,
    position: usize,
) -> Result<SortValue, QueryError> {
    let wrong = |expected: &str| {
        QueryError::illegal_argument(format!(
            "[search_after][{position}]: expected {expected} for sort field `{}`, got {value}",
            match &field.key {
                SortKey::Score => "_score",
                SortKey::Doc => "_doc",
                SortKey::Timestamp => "@timestamp",
                SortKey::Field(path) => path,
            }
        ))
    };
    let number = |value: &Value| {
        value
            .as_f64()
            .or_else(|| value.as_str().and_then(|text| text.trim().parse().ok()))
    };
    if let Value::String(text) = value
        && text.len() > MAX_VALUE_BYTES
    {
        return Err(wrong(&format!(
            "a value of at most {MAX_VALUE_BYTES} bytes"
        )));
    }
    Ok(match (&field.key, value) {
        (_, Value::Null) => SortValue::Missing,
        // hits carry their score as `f32`; the value read back is that `f32`
        (SortKey::Score, value) => SortValue::Number(f64::from(
            number(value).ok_or_else(|| wrong("a number"))? as f32,
        )),
        (SortKey::Doc, value) => SortValue::Number(
            number(value)
                .filter(|doc| *doc >= 0.0 && doc.fract() == 0.0)
                .ok_or_else(|| wrong("a `_doc` sort value of a hit"))?,
        ),
        (SortKey::Timestamp, value) => match number(value) {
            Some(millis) => SortValue::Number(millis.floor()),
            None => {
                let text = value
                    .as_str()
                    .ok_or_else(|| wrong("epoch milliseconds or a date"))?;
                let micros = parse_micros(text, now_micros, Rounding::Down, None)
                    .map_err(|_| wrong("epoch milliseconds or a date"))?;
                SortValue::Number(micros.div_euclid(1000) as f64)
            }
        },
        (SortKey::Field(_), Value::Number(number)) => {
            SortValue::Number(number.as_f64().ok_or_else(|| wrong("a number"))?)
        }
        (SortKey::Field(_), Value::Bool(flag)) => SortValue::Number(f64::from(u8::from(*flag))),
        (SortKey::Field(_), Value::String(text)) => SortValue::Text(text.clone()),
        (SortKey::Field(_), _) => return Err(wrong("a number, a string or null")),
    })
}

/// Whether a hit's sort `values` come strictly after `after` in `sort` order. Numbers
/// within a few ulps are equal: a float read back from JSON may differ in its last bit.
pub fn is_after(sort: &[SortField], values: &[SortValue], after: &[SortValue]) -> bool {
    for (field, (value, after)) in sort.iter().zip(values.iter().zip(after)) {
        let ordering = match (value, after) {
            (SortValue::Number(left), SortValue::Number(right)) if nearly_equal(*left, *right) => {
                Ordering::Equal
            }
            _ => value.compare(after, field.descending),
        };
        match ordering {
            Ordering::Equal => continue,
            Ordering::Greater => return true,
            Ordering::Less => return false,
        }
    }
    false
}

fn nearly_equal(left: f64, right: f64) -> bool {
    left == right || (left - right).abs() <= 4.0 * f64::EPSILON * left.abs().max(right.abs())
}

/// Where each segment's docs start among the partition's docs (as Lucene's `docBase`).
pub fn doc_bases(searcher: &Searcher) -> Vec<u64> {
    let mut base = 0u64;
    searcher
        .segment_readers()
        .iter()
        .map(|reader| {
            let start = base;
            base += u64::from(reader.max_doc());
            start
        })
        .collect()
}

/// The `_doc` sort value of a hit: unique among the searched partitions and ordered as
/// their positions are (partition, then segment, then doc). A partition holds fewer than
/// 2^32 docs (tantivy's `DocId`), and 2^21 partitions keep it exact in a JSON number.
pub fn doc_ordinal(partition: u32, bases: &[u64], segment: SegmentOrdinal, doc: DocId) -> f64 {
    let base = bases.get(segment as usize).copied().unwrap_or(0);
    ((u64::from(partition) << 32) + base + u64::from(doc)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sort(keys: &[(SortKey, bool)]) -> Vec<SortField> {
        keys.iter()
            .map(|(key, descending)| SortField {
                key: key.clone(),
                descending: *descending,
            })
            .collect()
    }

    #[test]
    fn values_are_read_by_their_sort_field() {
        let sort = sort(&[
            (SortKey::Timestamp, true),
            (SortKey::Doc, true),
            (SortKey::Field("service".into()), false),
            (SortKey::Score, true),
        ]);
        let values =
            parse(&json!([1714557600123u64, 7, "api", 1.5]), &sort, 0, 0).expect("valid values");
        assert_eq!(
            values,
            vec![
                SortValue::Number(1714557600123.0),
                SortValue::Number(7.0),
                SortValue::Text("api".into()),
                SortValue::Number(1.5),
            ]
        );
        let dated = parse(
            &json!(["2024-05-01T10:00:00.123Z", 0, null, 1]),
            &sort,
            0,
            0,
        )
        .expect("a date string");
        assert_eq!(dated[0], SortValue::Number(1714557600123.0));
        assert_eq!(dated[2], SortValue::Missing);
    }

    #[test]
    fn a_mismatch_with_the_sort_is_refused_as_elasticsearch_does() {
        let one = sort(&[(SortKey::Timestamp, true)]);
        let error = parse(&json!([1, 2]), &one, 0, 0).expect_err("two values, one sort");
        assert_eq!(error.reason, "search_after has 2 value(s) but sort has 1.");
        let error = parse(&json!([1]), &one, 10, 0).expect_err("from with search_after");
        assert!(
            error.reason.contains("`from` parameter"),
            "{}",
            error.reason
        );
        let error = parse(&json!([1]), &[], 0, 0).expect_err("no sort");
        assert!(
            error.reason.starts_with("Sort must contain"),
            "{}",
            error.reason
        );
        let error = parse(&json!(["yesterday"]), &one, 0, 0).expect_err("not a date");
        assert!(error.reason.contains("@timestamp"), "{}", error.reason);
        let error = parse(&json!(3), &one, 0, 0).expect_err("not a list");
        assert!(error.reason.contains("[search_after]"), "{}", error.reason);
    }

    #[test]
    fn equal_values_are_not_after_and_direction_is_followed() {
        let sort = sort(&[(SortKey::Timestamp, true), (SortKey::Doc, true)]);
        let after = [SortValue::Number(100.0), SortValue::Number(5.0)];
        let at = |millis: f64, doc: f64| [SortValue::Number(millis), SortValue::Number(doc)];
        assert!(!is_after(&sort, &at(100.0, 5.0), &after), "the same hit");
        assert!(
            is_after(&sort, &at(100.0, 4.0), &after),
            "same time, earlier doc"
        );
        assert!(is_after(&sort, &at(99.0, 9.0), &after), "older");
        assert!(!is_after(&sort, &at(101.0, 0.0), &after), "newer");
        let missing = [SortValue::Missing, SortValue::Number(0.0)];
        assert!(
            is_after(&sort, &missing, &after),
            "missing values sort last"
        );
    }

    #[test]
    fn doc_ordinals_order_as_positions() {
        let bases = [0, 10, 25];
        assert!(doc_ordinal(0, &bases, 0, 9) < doc_ordinal(0, &bases, 1, 0));
        assert!(doc_ordinal(0, &bases, 2, 100) < doc_ordinal(1, &bases, 0, 0));
        assert_eq!(doc_ordinal(0, &bases, 1, 3), 13.0);
    }
}
