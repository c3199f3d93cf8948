//! Metric aggregations answer with Elasticsearch's number shapes, as its reference
//! documentation shows them: counts (`value_count`, `cardinality`, `stats.count`) are
//! integers, `min`/`max`/`avg`/`sum` doubles (`null` over no values, `sum` 0.0),
//! `percentiles` keyed by `"50.0"`.

use serde_json::{Value, json};

use crate::support::{Server, ago, bulk_body};

/// The `aggregations` of `aggs` over three documents with `latency` 50, 100 and 150 and
/// `service` `a`, `a`, `b`.
async fn aggregate(aggs: Value) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let docs: Vec<Value> = [(50, "a"), (100, "a"), (150, "b")]
        .iter()
        .map(|(latency, service)| {
            json!({"@timestamp": ago(30), "latency": latency, "service": service, "message": "x"})
        })
        .collect();
    let (status, body) = server
        .post_ndjson("/logs/_bulk?refresh=true", bulk_body("logs", &docs))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .post_json("/logs/_search", &json!({"size": 0, "aggs": aggs}))
        .await;
    assert_eq!(status, 200, "{body}");
    body["aggregations"].clone()
}

/// The answer's JSON text, where `7` and `7.0` differ.
fn text(value: &Value) -> String {
    serde_json::to_string(value).expect("serializes")
}

/// ES: `"types_count": {"value": 7}`; this answered `{"value": 3.0}`.
#[tokio::test]
async fn value_count_is_an_integer() {
    let aggregations = aggregate(json!({"n": {"value_count": {"field": "latency"}}})).await;
    assert_eq!(text(&aggregations["n"]), r#"{"value":3}"#);
}

/// ES: `"type_count": {"value": 3}`.
#[tokio::test]
async fn cardinality_is_an_integer() {
    let aggregations =
        aggregate(json!({"services": {"cardinality": {"field": "service.keyword"}}})).await;
    assert_eq!(text(&aggregations["services"]), r#"{"value":2}"#);
}

/// ES: `"avg_grade": {"value": 75.0}`, and so for `min`, `max` and `sum`.
#[tokio::test]
async fn single_value_metrics_are_doubles() {
    let aggregations = aggregate(json!({
        "low": {"min": {"field": "latency"}},
        "high": {"max": {"field": "latency"}},
        "mean": {"avg": {"field": "latency"}},
        "total": {"sum": {"field": "latency"}},
    }))
    .await;
    assert_eq!(text(&aggregations["low"]), r#"{"value":50.0}"#);
    assert_eq!(text(&aggregations["high"]), r#"{"value":150.0}"#);
    assert_eq!(text(&aggregations["mean"]), r#"{"value":100.0}"#);
    assert_eq!(text(&aggregations["total"]), r#"{"value":300.0}"#);
}

/// ES over no values: `min`, `max`, `avg` are `null`, `sum` is `0.0`, a count `0`.
#[tokio::test]
async fn metrics_over_no_values_are_null_or_zero() {
    let aggregations = aggregate(json!({
        "low": {"min": {"field": "absent"}},
        "mean": {"avg": {"field": "absent"}},
        "total": {"sum": {"field": "absent"}},
        "n": {"value_count": {"field": "absent"}},
    }))
    .await;
    assert_eq!(text(&aggregations["low"]), r#"{"value":null}"#);
    assert_eq!(text(&aggregations["mean"]), r#"{"value":null}"#);
    assert_eq!(text(&aggregations["total"]), r#"{"value":0.0}"#);
    assert_eq!(text(&aggregations["n"]), r#"{"value":0}"#);
}

/// ES: `{"count": 2, "min": 50.0, "max": 100.0, "avg": 75.0, "sum": 150.0}`.
#[tokio::test]
async fn stats_count_is_an_integer_and_the_rest_doubles() {
    let aggregations = aggregate(json!({"latency": {"stats": {"field": "latency"}}})).await;
    assert_eq!(
        text(&aggregations["latency"]),
        r#"{"avg":100.0,"count":3,"max":150.0,"min":50.0,"sum":300.0}"#
    );
}

/// ES: `"values": {"1.0": 5.0, …, "50.0": 445.0, …}`: keys are the percents written as
/// doubles, values doubles.
#[tokio::test]
async fn percentiles_are_keyed_by_percent_with_double_values() {
    let aggregations =
        aggregate(json!({"latency": {"percentiles": {"field": "latency", "percents": [50]}}}))
            .await;
    let values = aggregations["latency"]["values"]
        .as_object()
        .expect("keyed values");
    assert_eq!(values.keys().collect::<Vec<_>>(), ["50.0"]);
    assert!(values["50.0"].is_f64(), "{aggregations}");
}

/// A count inside buckets is an integer too.
#[tokio::test]
async fn value_count_in_buckets_is_an_integer() {
    let aggregations = aggregate(json!({"per": {
        "terms": {"field": "service.keyword"},
        "aggs": {"n": {"value_count": {"field": "latency"}}},
    }}))
    .await;
    assert_eq!(
        text(&aggregations["per"]["buckets"][0]["n"]),
        r#"{"value":2}"#
    );
}
