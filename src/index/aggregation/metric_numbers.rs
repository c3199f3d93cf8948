//! Metric results in Elasticsearch's number shapes. tantivy answers every single-value
//! metric as a float; Elasticsearch answers the counting ones (`value_count`,
//! `cardinality`) as integers (`{"value": 7}`, not `7.0`) and the others (`min`, `max`,
//! `avg`, `sum`) as doubles, `null` when nothing was aggregated. `stats` (an integer
//! `count`, double `min`/`max`/`avg`/`sum`) and `percentiles` (string keys such as
//! `"95.0"`, double values) already come out of tantivy in ES' shape.

use serde_json::{Map, Value, json};
use tantivy::aggregation::agg_req::{AggregationVariants, Aggregations};

/// Rewrites the results of `request` (one level of named aggregations, with the
/// sub-aggregations of every bucket) into ES' number shapes.
pub fn shape(request: &Aggregations, results: &mut Map<String, Value>) {
    for (name, aggregation) in request {
        let Some(result) = results.get_mut(name) else {
            continue;
        };
        if matches!(
            aggregation.agg,
            AggregationVariants::Count(_) | AggregationVariants::Cardinality(_)
        ) {
            count_as_integer(result);
        }
        if aggregation.sub_aggregation.is_empty() {
            continue;
        }
        // sub-aggregations answer in each bucket, or beside `doc_count` (`filter`)
        match result.get_mut("buckets") {
            Some(Value::Array(buckets)) => {
                for bucket in buckets {
                    if let Value::Object(bucket) = bucket {
                        shape(&aggregation.sub_aggregation, bucket);
                    }
                }
            }
            Some(Value::Object(keyed)) => {
                for bucket in keyed.values_mut() {
                    if let Value::Object(bucket) = bucket {
                        shape(&aggregation.sub_aggregation, bucket);
                    }
                }
            }
            _ => {
                if let Value::Object(result) = result {
                    shape(&aggregation.sub_aggregation, result);
                }
            }
        }
    }
}

/// `{"value": 2.0}` → `{"value": 2}` (a count is whole and exact below 2^53).
fn count_as_integer(result: &mut Value) {
    let Some(count) = result.get("value").and_then(Value::as_f64) else {
        return;
    };
    if count.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&count) {
        result["value"] = json!(count as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(aggs: Value) -> Aggregations {
        serde_json::from_value(aggs).expect("a valid request")
    }

    #[test]
    fn counts_become_integers_at_every_level_and_other_metrics_stay_doubles() {
        let aggs = request(json!({
            "n": {"value_count": {"field": "a"}},
            "distinct": {"cardinality": {"field": "a"}},
            "mean": {"avg": {"field": "a"}},
            "per": {"terms": {"field": "b"}, "aggs": {"n": {"value_count": {"field": "a"}}}},
            "keyed": {"range": {"field": "a", "ranges": [{"to": 5.0}], "keyed": true},
                "aggs": {"n": {"value_count": {"field": "a"}}}},
        }));
        let mut results = json!({
            "n": {"value": 2.0},
            "distinct": {"value": 3.0},
            "mean": {"value": 2.0},
            "per": {"buckets": [{"key": "k", "doc_count": 1, "n": {"value": 1.0}}]},
            "keyed": {"buckets": {"*-5": {"doc_count": 4, "n": {"value": 4.0}}}},
        });
        shape(&aggs, results.as_object_mut().expect("object"));
        assert_eq!(
            serde_json::to_string(&results).expect("serializes"),
            r#"{"distinct":{"value":3},"keyed":{"buckets":{"*-5":{"doc_count":4,"n":{"value":4}}}},"mean":{"value":2.0},"n":{"value":2},"per":{"buckets":[{"doc_count":1,"key":"k","n":{"value":1}}]}}"#
        );
    }
}
