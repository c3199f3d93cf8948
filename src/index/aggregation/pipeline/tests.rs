use super::*;
use serde_json::json;

/// Four minute buckets: doc counts 2, 0, 3, 1 and sums 10, (none), 40, 25.
fn minute_buckets() -> Vec<Map<String, Value>> {
    [(2, Some(10.0)), (0, None), (3, Some(40.0)), (1, Some(25.0))]
        .iter()
        .enumerate()
        .map(|(index, (count, sum))| {
            json!({"key": index as i64 * 60_000, "doc_count": count, "1": {"value": sum}})
                .as_object()
                .expect("an object")
                .clone()
        })
        .collect()
}

/// The pipelines of `aggs` (inside a date histogram) run over [`minute_buckets`];
/// returns what each bucket holds under `name`.
fn run(aggs: Value, name: &str) -> Vec<Value> {
    let mut aggs = aggs;
    let pipelines = take_level(&mut aggs, Some("date_histogram"), "aggs").expect("valid");
    let mut buckets = minute_buckets();
    let mut refs: Vec<&mut Map<String, Value>> = buckets.iter_mut().collect();
    apply_all(&pipelines, &mut refs).expect("runs");
    buckets
        .iter()
        .map(|bucket| bucket.get(name).cloned().unwrap_or(Value::Null))
        .collect()
}

fn values(results: &[Value]) -> Vec<Value> {
    results
        .iter()
        .map(|result| result.get("value").cloned().unwrap_or(json!("absent")))
        .collect()
}

#[test]
fn derivative_skips_the_first_bucket_and_nans_through_a_gap() {
    let results = run(
        json!({"1": {"sum": {"field": "x"}}, "d": {"derivative": {"buckets_path": "1"}}}),
        "d",
    );
    // the empty bucket is NaN under `skip`: it and the next print null
    assert_eq!(
        values(&results),
        [json!("absent"), Value::Null, Value::Null, json!(-15.0)]
    );
    let results = run(
        json!({"1": {"sum": {"field": "x"}}, "d": {"derivative": {"buckets_path": "1", "gap_policy": "insert_zeros", "unit": "1s"}}}),
        "d",
    );
    assert_eq!(
        values(&results),
        [json!("absent"), json!(-10.0), json!(40.0), json!(-15.0)]
    );
    // a minute apart, per second
    assert_eq!(results[2]["normalized_value"], json!(40.0 / 60.0));
    let counts = run(
        json!({"d": {"derivative": {"buckets_path": "_count"}}}),
        "d",
    );
    assert_eq!(
        values(&counts),
        [json!("absent"), json!(-2.0), json!(3.0), json!(-2.0)]
    );
}

#[test]
fn cumulative_sum_counts_gaps_as_zero() {
    let results = run(
        json!({"1": {"sum": {"field": "x"}}, "c": {"cumulative_sum": {"buckets_path": "1"}}}),
        "c",
    );
    assert_eq!(
        values(&results),
        [json!(10.0), json!(10.0), json!(50.0), json!(75.0)]
    );
}

#[test]
fn serial_diff_subtracts_the_value_lag_buckets_back() {
    let results = run(
        json!({"1": {"sum": {"field": "x"}}, "s": {"serial_diff": {"buckets_path": "1", "lag": "2", "gap_policy": "insert_zeros"}}}),
        "s",
    );
    assert_eq!(
        values(&results),
        [json!("absent"), json!("absent"), json!(30.0), json!(25.0)]
    );
}

#[test]
fn moving_fn_windows_over_the_values_before_each_bucket() {
    let results = run(
        json!({"1": {"sum": {"field": "x"}}, "m": {"moving_fn": {"buckets_path": "1", "window": 2, "script": "MovingFunctions.unweightedAvg(values)"}}}),
        "m",
    );
    // the window holds the values before the bucket (shift 0): none, then 10, then 10 and 40;
    // the empty bucket is skipped and gets nothing
    assert_eq!(
        values(&results),
        [Value::Null, json!("absent"), json!(10.0), json!(25.0)]
    );
    let shifted = run(
        json!({"1": {"sum": {"field": "x"}}, "m": {"moving_fn": {"buckets_path": "1", "window": 2, "shift": 1, "script": {"source": "MovingFunctions.max(values)"}}}}),
        "m",
    );
    assert_eq!(
        values(&shifted),
        [json!(10.0), json!("absent"), json!(40.0), json!(40.0)]
    );
}

#[test]
fn bucket_script_combines_variables_and_skips_gaps() {
    let results = run(
        json!({"1": {"sum": {"field": "x"}}, "b": {"bucket_script": {
            "buckets_path": {"var1": "1", "var2": "_count"},
            "script": "params.var1 * 100 / params.var2"}}}),
        "b",
    );
    assert_eq!(
        values(&results),
        [
            json!(500.0),
            json!("absent"),
            json!(4000.0 / 3.0),
            json!(2500.0)
        ]
    );
    // a pipeline may read another one beside it, whatever their order in the request
    let chained = run(
        json!({"1": {"sum": {"field": "x"}},
            "a": {"bucket_script": {"buckets_path": {"c": "c"}, "script": {"source": "params.c * params.k", "params": {"k": 2}}}},
            "c": {"cumulative_sum": {"buckets_path": "1"}}}),
        "a",
    );
    // the empty bucket is a gap for every path but `_count`, and `skip` leaves it out
    assert_eq!(
        values(&chained),
        [json!(20.0), json!("absent"), json!(100.0), json!(150.0)]
    );
}

#[test]
fn misplaced_or_malformed_pipelines_are_refused_saying_why() {
    let refuse = |aggs: Value, parent: Option<&str>| {
        let mut aggs = aggs;
        take_level(&mut aggs, parent, "aggs")
            .expect_err("refused")
            .reason
    };
    for (aggs, parent, says) in [
        (
            json!({"d": {"derivative": {"buckets_path": "_count"}}}),
            None,
            "must have a histogram, date_histogram or auto_date_histogram as parent but doesn't have a parent",
        ),
        (
            json!({"d": {"derivative": {"buckets_path": "_count"}}}),
            Some("terms"),
            "must have a histogram",
        ),
        (
            json!({"b": {"bucket_script": {"buckets_path": {"a": "_count"}, "script": "params.a"}}}),
            None,
            "must be declared inside of another aggregation",
        ),
        (
            json!({"d": {"derivative": {"buckets_path": "nope"}}}),
            Some("histogram"),
            "No aggregation found for path [nope]",
        ),
        (
            json!({"d": {"derivative": {"buckets_path": "_count", "window": 3}}}),
            Some("histogram"),
            "unknown field [window]",
        ),
        (
            json!({"d": {"derivative": {"buckets_path": "_count", "gap_policy": "fill"}}}),
            Some("histogram"),
            "Invalid gap policy: [fill]",
        ),
        (
            json!({"m": {"moving_fn": {"buckets_path": "_count", "window": 3, "script": "return values.length"}}}),
            Some("histogram"),
            "the script `return values.length` is not supported",
        ),
        (
            json!({"m": {"moving_fn": {"buckets_path": "_count", "script": "MovingFunctions.max(values)"}}}),
            Some("histogram"),
            "[window] is required",
        ),
        (
            json!({"b": {"bucket_script": {"buckets_path": {"a": "_count"}, "script": "params.a / params.b"}}}),
            Some("terms"),
            "`params.b` is neither",
        ),
        (
            json!({"a": {"cumulative_sum": {"buckets_path": "b"}}, "b": {"cumulative_sum": {"buckets_path": "a"}}}),
            Some("histogram"),
            "Cyclical dependency",
        ),
        (
            json!({"s": {"serial_diff": {"buckets_path": "_count", "lag": 0}}}),
            Some("histogram"),
            "[lag] must be a positive integer",
        ),
    ] {
        let reason = refuse(aggs.clone(), parent);
        assert!(reason.contains(says), "{aggs}: {reason}");
    }
}

#[test]
fn pipelines_leave_the_level_and_the_rest_stays() {
    let mut aggs =
        json!({"1": {"avg": {"field": "x"}}, "d": {"derivative": {"buckets_path": "1"}}});
    let pipelines = take_level(&mut aggs, Some("histogram"), "aggs").expect("valid");
    assert_eq!(pipelines.len(), 1);
    assert_eq!(aggs, json!({"1": {"avg": {"field": "x"}}}));
}
