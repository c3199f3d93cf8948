use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::rules::evaluate::Window;

const HOUR: i64 = 3_600_000_000;
const SECOND: i64 = 1_000_000;
/// 2026-11-22T10:00:00Z
const TICK: i64 = 1_795_341_600_000_000;

/// checkout's latencies, in no order; sorted: 60 80 95 99 101 105 120 130 140 150 160 175
/// 190 210 220 300 410 450 500 870
const CHECKOUT: [i64; 20] = [
    120, 80, 450, 95, 300, 210, 130, 870, 60, 150, 99, 101, 500, 410, 105, 140, 160, 175, 190, 220,
];

fn store_with(documents: &[(i64, Value)]) -> (tempfile::TempDir, Arc<IndexStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    // partitions of an hour: the windows below span two of them
    let store = Arc::new(IndexStore::test_open(dir.path(), HOUR, 2));
    let ops = documents
        .iter()
        .enumerate()
        .map(|(number, (micros, body))| {
            store.test_doc(
                body["index"].as_str().unwrap_or("logs"),
                format!("{number}"),
                *micros,
                serde_json::to_vec(body).expect("json"),
            )
        })
        .collect();
    store.apply(1, ops, false).expect("apply");
    store.commit_all().expect("commit");
    (dir, store)
}

/// checkout's 20 latencies over the five minutes before TICK (across the hour's
/// partition boundary at TICK), cart's three and a line without the field, and users.
fn requests() -> Vec<(i64, Value)> {
    let mut documents: Vec<(i64, Value)> = CHECKOUT
        .iter()
        .enumerate()
        .map(|(n, latency)| {
            (
                TICK - 290 * SECOND + n as i64 * 15 * SECOND,
                json!({"service": "checkout", "latency_ms": latency, "user": format!("u{}", n % 5), "status": if n % 4 == 0 { 500 } else { 200 }}),
            )
        })
        .collect();
    for (n, latency) in [30, 40, 50].into_iter().enumerate() {
        documents.push((
            TICK - 100 * SECOND + n as i64 * SECOND,
            json!({"service": "cart", "latency_ms": latency, "user": format!("u{}", n % 2), "status": 200}),
        ));
    }
    // no latency: left out of the aggregates, and a group of its own without a value
    documents.push((
        TICK - 50 * SECOND,
        json!({"service": "cart", "status": 200}),
    ));
    documents.push((
        TICK - 50 * SECOND,
        json!({"service": "search", "status": 200}),
    ));
    documents
}

fn five_minutes<'a>(query: &'a Value, group_by: &'a [String], end_micros: i64) -> Window<'a> {
    Window {
        index: "logs",
        query,
        group_by,
        end_micros,
        length: Duration::from_secs(300),
    }
}

fn aggregate(op: AggregateOp, percentile: f64) -> Measure {
    Measure::Aggregate {
        op,
        field: "latency_ms".into(),
        percentile,
    }
}

fn by_service(values: Vec<GroupValue>) -> BTreeMap<String, f64> {
    values
        .into_iter()
        .map(|group| (group.labels["service"].clone(), group.value))
        .collect()
}

#[test]
fn aggregates_per_group_match_the_hand_computed_values() {
    let (_dir, store) = store_with(&requests());
    let all = json!("*");
    let service = ["service".to_string()];
    let window = five_minutes(&all, &service, TICK);
    let measured =
        |measure: &Measure| by_service(measure_window(&store, &window, measure).expect("measured"));
    // exact: sorted by hand above
    let sum: i64 = CHECKOUT.iter().sum();
    assert_eq!(
        measured(&aggregate(AggregateOp::Sum, 0.0)),
        BTreeMap::from([("checkout".into(), sum as f64), ("cart".into(), 120.0)]),
        "search has lines but no latency: no value, not 0"
    );
    assert_eq!(
        measured(&aggregate(AggregateOp::Avg, 0.0)),
        BTreeMap::from([
            ("checkout".into(), sum as f64 / 20.0),
            ("cart".into(), 40.0)
        ])
    );
    assert_eq!(
        measured(&aggregate(AggregateOp::Min, 0.0)),
        BTreeMap::from([("checkout".into(), 60.0), ("cart".into(), 30.0)])
    );
    assert_eq!(
        measured(&aggregate(AggregateOp::Max, 0.0)),
        BTreeMap::from([("checkout".into(), 870.0), ("cart".into(), 50.0)])
    );
    let users = Measure::Aggregate {
        op: AggregateOp::Cardinality,
        field: "user".into(),
        percentile: 0.0,
    };
    assert_eq!(
        measured(&users),
        BTreeMap::from([("checkout".into(), 5.0), ("cart".into(), 2.0)])
    );
    // p95 of 20 values: rank ⌊0.95 · 19⌋ = 18 of the sorted list, 500, within 1 %
    let p95 = measured(&aggregate(AggregateOp::Percentile, 95.0));
    assert!((p95["checkout"] - 500.0).abs() <= 5.0, "{p95:?}");
    // p50: rank ⌊0.5 · 19⌋ = 9, 150
    let p50 = measured(&aggregate(AggregateOp::Percentile, 50.0));
    assert!((p50["checkout"] - 150.0).abs() <= 1.5, "{p50:?}");
    assert!((p50["cart"] - 40.0).abs() <= 0.4, "{p50:?}");
    // without group_by: one value over every line
    let total = measure_window(
        &store,
        &five_minutes(&all, &[], TICK),
        &aggregate(AggregateOp::Max, 0.0),
    )
    .expect("measured");
    assert_eq!(
        total,
        [GroupValue {
            labels: BTreeMap::new(),
            value: 870.0
        }]
    );
    // a window with no line: no value at all
    let empty = measure_window(
        &store,
        &five_minutes(&all, &[], TICK - 10 * HOUR),
        &aggregate(AggregateOp::Avg, 0.0),
    )
    .expect("measured");
    assert!(empty.is_empty(), "{empty:?}");
}

#[test]
fn a_field_of_text_is_an_error_not_an_empty_value() {
    let (_dir, store) = store_with(&[
        (
            TICK - SECOND,
            json!({"index": "strings", "latency_ms": "412", "service": "a"}),
        ),
        (
            TICK - SECOND,
            json!({"index": "mixed", "latency_ms": "412", "service": "a"}),
        ),
        (
            TICK - SECOND,
            json!({"index": "mixed", "latency_ms": 7, "service": "a"}),
        ),
    ]);
    let all = json!("*");
    let window = Window {
        index: "strings",
        ..five_minutes(&all, &[], TICK)
    };
    let error = measure_window(&store, &window, &aggregate(AggregateOp::Avg, 0.0))
        .expect_err("text is not a number");
    assert_eq!(
        error.to_string(),
        "`aggregate`: field `latency_ms` of index `strings` holds text, not JSON numbers: `avg` needs numbers (send \"latency_ms\": 412, not \"412\"), or use op `cardinality`"
    );
    // distinct values of text are fine
    let users = Measure::Aggregate {
        op: AggregateOp::Cardinality,
        field: "latency_ms".into(),
        percentile: 0.0,
    };
    assert_eq!(
        measure_window(&store, &window, &users).expect("counted")[0].value,
        1.0
    );
    // numbers among the text: the text is left out
    let mixed = Window {
        index: "mixed",
        ..window
    };
    assert_eq!(
        measure_window(&store, &mixed, &aggregate(AggregateOp::Sum, 0.0)).expect("summed")[0].value,
        7.0
    );
}

#[test]
fn a_ratio_has_no_value_under_its_minimum_denominator() {
    let (_dir, store) = store_with(&requests());
    let errors = json!("status:>=500");
    let service = ["service".to_string()];
    let window = five_minutes(&errors, &service, TICK);
    let ratio = |min_denominator| Measure::Ratio {
        denominator: json!("*"),
        min_denominator,
    };
    // checkout: 5 of 20 lines are 500s (n = 0, 4, 8, 12, 16); cart 0 of 4; search 0 of 1
    assert_eq!(
        by_service(measure_window(&store, &window, &ratio(1)).expect("ratio")),
        BTreeMap::from([
            ("checkout".into(), 0.25),
            ("cart".into(), 0.0),
            ("search".into(), 0.0)
        ])
    );
    assert_eq!(
        by_service(measure_window(&store, &window, &ratio(4)).expect("ratio")),
        BTreeMap::from([("checkout".into(), 0.25), ("cart".into(), 0.0)])
    );
    // a denominator of 0: no value, no division
    let nothing = Measure::Ratio {
        denominator: json!("status:404"),
        min_denominator: 1,
    };
    assert!(
        measure_window(&store, &window, &nothing)
            .expect("ratio")
            .is_empty()
    );
}

#[test]
fn series_at_many_times_equal_the_window_at_each_time() {
    let (_dir, store) = store_with(&requests());
    let all = json!("*");
    let errors = json!("status:>=500");
    let service = ["service".to_string()];
    let tick_ms = TICK / 1000;
    let measures = [
        aggregate(AggregateOp::Sum, 0.0),
        aggregate(AggregateOp::Avg, 0.0),
        aggregate(AggregateOp::Min, 0.0),
        aggregate(AggregateOp::Max, 0.0),
        aggregate(AggregateOp::Percentile, 90.0),
        Measure::Aggregate {
            op: AggregateOp::Cardinality,
            field: "user".into(),
            percentile: 0.0,
        },
        Measure::Ratio {
            denominator: all.clone(),
            min_denominator: 2,
        },
    ];
    // steps of 15 s (percentiles: one search per time), of one window (one bucket per
    // time) and odd ones
    let grids: [Vec<i64>; 3] = [
        (0..=30).map(|n| tick_ms - 300_000 + n * 15_000).collect(),
        (0..=3).map(|n| tick_ms - 600_000 + n * 300_000).collect(),
        (0..=12).map(|n| tick_ms - 200_000 + n * 41_000).collect(),
    ];
    for measure in &measures {
        let query = if matches!(measure, Measure::Ratio { .. }) {
            &errors
        } else {
            &all
        };
        for times in &grids {
            let spec = MeasureSeries {
                name: "test",
                index: "logs",
                query,
                group_by: &service,
                window_ms: 300_000,
                measure,
            };
            let found: BTreeMap<_, _> = series(&store, &spec, times)
                .expect("series")
                .into_iter()
                .collect();
            let mut expected: BTreeMap<BTreeMap<String, String>, Vec<Option<f64>>> =
                BTreeMap::new();
            for (at, time) in times.iter().enumerate() {
                let window = five_minutes(query, &service, time * 1000);
                for group in measure_window(&store, &window, measure).expect("window") {
                    expected
                        .entry(group.labels)
                        .or_insert_with(|| vec![None; times.len()])[at] = Some(group.value);
                }
            }
            assert_eq!(found.len(), expected.len(), "{measure:?} at {times:?}");
            for (labels, values) in &expected {
                let got = &found[labels];
                for (got, want) in got.iter().zip(values) {
                    let close = match (got, want) {
                        (Some(got), Some(want)) => (got - want).abs() <= 1e-9 * want.abs(),
                        (None, None) => true,
                        _ => false,
                    };
                    assert!(close, "{measure:?} {labels:?}: {got:?} != {want:?}");
                }
            }
        }
    }
}

#[test]
fn too_many_separate_searches_are_refused() {
    let (_dir, store) = store_with(&[]);
    let all = json!("*");
    let measure = aggregate(AggregateOp::Percentile, 99.0);
    let spec = MeasureSeries {
        name: "p99",
        index: "logs",
        query: &all,
        group_by: &[],
        window_ms: 300_000,
        measure: &measure,
    };
    let times: Vec<i64> = (0..=MAX_SEPARATE_SEARCHES as i64)
        .map(|n| n * 15_000)
        .collect();
    let error = series(&store, &spec, &times).expect_err("too many");
    assert!(
        error
            .to_string()
            .starts_with("log_aggregate{query=\"p99\"}: a percentile over 300000 ms windows"),
        "{error}"
    );
}

fn problems(text: &str) -> String {
    crate::rules::check::check_rule(text, "measured", "m.json")
        .err()
        .expect("invalid")
        .join("\n")
}

#[test]
fn bad_combinations_are_refused_with_field_and_reason() {
    let joined = problems(
        r#"{"version": 1, "promql": "up", "aggregate": {"op": "avg", "field": "x"},
        "ratio": {"denominator": "*"}}"#,
    );
    assert!(
        joined.contains("m.json:1:") && joined.contains("`aggregate`: belongs to log rules"),
        "{joined}"
    );
    assert!(
        joined.contains("`ratio`: a rule's value is either an `aggregate` or a `ratio`"),
        "{joined}"
    );
    assert!(joined.contains("`ratio`: belongs to log rules"), "{joined}");
    let joined = problems(
        r#"{"version": 1, "query": "*", "threshold": {"op": ">", "value": 1},
        "aggregate": {"op": "percentile", "field": ""}}"#,
    );
    assert!(
        joined.contains("`aggregate`: `field` is empty")
            && joined.contains("op `percentile` needs `percentile`, e.g. \"percentile\": 95"),
        "{joined}"
    );
    for (aggregate, reason) in [
        (
            r#"{"op": "percentile", "field": "x", "percentile": 0}"#,
            "`percentile` must be above 0 and at most 100",
        ),
        (
            r#"{"op": "percentile", "field": "x", "percentile": 100.5}"#,
            "`percentile` must be above 0 and at most 100",
        ),
        (
            r#"{"op": "max", "field": "x", "percentile": 95}"#,
            "`percentile` belongs to op `percentile`, not `max`",
        ),
        (
            r#"{"op": "avg", "field": "@timestamp"}"#,
            "`field` `@timestamp` cannot be aggregated",
        ),
        (
            r#"{"op": "median", "field": "x"}"#,
            "unknown variant `median`",
        ),
        (r#"{"op": "avg"}"#, "missing field `field`"),
    ] {
        let text = format!(
            r#"{{"version": 1, "query": "*", "threshold": {{"op": ">", "value": 1}}, "aggregate": {aggregate}}}"#
        );
        let joined = problems(&text);
        assert!(
            joined.contains("`aggregate`: ") && joined.contains(reason),
            "{aggregate}: {joined}"
        );
    }
    for (ratio, reason) in [
        (r#"{"denominator": "status:(500"}"#, "`denominator`: "),
        (
            r#"{"denominator": 5}"#,
            "`denominator` must be a Lucene query",
        ),
        (r#"{"min_denominator": 5}"#, "missing field `denominator`"),
        (
            r#"{"denominator": "*", "min_denominator": -1}"#,
            "invalid value",
        ),
    ] {
        let text = format!(
            r#"{{"version": 1, "query": "*", "threshold": {{"op": ">", "value": 1}}, "ratio": {ratio}}}"#
        );
        let joined = problems(&text);
        assert!(
            joined.contains("`ratio`: ") && joined.contains(reason),
            "{ratio}: {joined}"
        );
    }
    let good = r#"{"version": 1, "query": "status:>=500", "threshold": {"op": ">", "value": 0.05},
        "group_by": ["service"], "ratio": {"denominator": "*", "min_denominator": 0}}"#;
    let rule = crate::rules::rule::LoadedRule::parse(good, "ratio", "r.json").expect("valid");
    assert_eq!(
        rule.measure,
        Some(Measure::Ratio {
            denominator: json!("*"),
            min_denominator: 1
        }),
        "a minimum of 0 is 1: never a division by zero"
    );
    assert!(
        !rule.zero_fills(),
        "a group without a value is absent, not 0"
    );
}
