//! The scripts and paths of pipeline aggregations: `bucket_script` arithmetic,
//! `moving_fn`'s `MovingFunctions` calls and `buckets_path`, generated from the scripts
//! Grafana writes and mutated (hostile tokens, deep nesting, long inputs). Each parses or
//! is refused with a message; what parses evaluates without panicking over arbitrary
//! values, NaN and infinities included. Whole pipelines in search bodies are in `query`.

use std::collections::BTreeMap;
use std::sync::Arc;

use lookout::index::aggregation::pipeline::buckets_path::{BucketsPath, GapPolicy};
use lookout::index::aggregation::pipeline::{moving_function, script};
use proptest::prelude::*;
use serde_json::json;

use crate::harness::{self, Grammar, mutated, run_case};

/// Scripts as Grafana's editor and the Elasticsearch docs write them.
pub const SCRIPT_SEEDS: &[&str] = &[
    "params.var1 * params.var2",
    "params.var1 * 100 / params.var2",
    "return (params.a + params.b) / 2;",
    "params['var1'] - 1.5e3 % 7",
    "-(-params.var1) / 0",
    "MovingFunctions.unweightedAvg(values)",
    "MovingFunctions.linearWeightedAvg(values)",
    "MovingFunctions.max(values)",
    "MovingFunctions.min(values)",
    "MovingFunctions.sum(values)",
    "MovingFunctions.stdDev(values, MovingFunctions.unweightedAvg(values))",
    "MovingFunctions.ewma(values, 0.3)",
    "return MovingFunctions.holt(values, 0.3, 0.1);",
    "MovingFunctions.holtWinters(values, 0.3, 0.1, 0.1, 2, false)",
    "MovingFunctions.holtWinters(values, params.alpha, 0.1, 0.1, 1, true)",
];

const PATH_SEEDS: &[&str] = &[
    "_count",
    "_key",
    "1",
    "1>2",
    "f>_count",
    "stats.avg",
    "p[99.9]",
    "p.95",
    "t['api']>m",
    "t._bucket_count",
];

fn grammar(seeds: &[&str]) -> Arc<Grammar> {
    Arc::new(
        Grammar::new(
            seeds,
            &[
                "params.",
                "var1",
                "values",
                "MovingFunctions.",
                "(",
                ")",
                ",",
                "+",
                "-",
                "*",
                "/",
                "%",
                "1",
                "0",
                "2147483647",
                "1e308",
                ".",
                ">",
                "[",
                "]",
                "'",
                "return ",
                ";",
                "true",
                "NaN",
                "_count",
            ],
            &[
                ("(", ")"),
                ("[", "]"),
                ("MovingFunctions.max(", ")"),
                ("-(", ")"),
            ],
        )
        .max_repeat(64),
    )
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(0.0),
        -1e6..1e6f64
    ]
}

#[test]
fn pipeline_scripts_parse_and_evaluate_or_fail_cleanly() {
    let strategy = || {
        (
            mutated(grammar(SCRIPT_SEEDS), "\\PC{0,40}".boxed(), 8),
            proptest::collection::vec(number(), 0..40),
        )
    };
    harness::check(strategy, |(source, values)| {
        run_case("pipeline script", format!("{source:?}"), move || {
            let variables: BTreeMap<String, f64> = ["var1", "var2", "a", "b"]
                .iter()
                .zip(values.iter().chain(std::iter::repeat(&1.0)))
                .map(|(name, value)| (name.to_string(), *value))
                .collect();
            if let Ok(expression) = script::parse(&source) {
                let _ = expression.evaluate(&variables);
            }
            let params = BTreeMap::from([("alpha".to_string(), 0.5)]);
            if let Ok(call) = moving_function::parse(&source, &params) {
                let _ = call.evaluate(&values);
            }
            Ok(())
        })
    });
}

#[test]
fn buckets_paths_parse_and_resolve_or_fail_cleanly() {
    harness::check(
        || mutated(grammar(PATH_SEEDS), "\\PC{0,24}".boxed(), 6),
        |text| {
            run_case("buckets_path", format!("{text:?}"), move || {
                let bucket = json!({
                    "key": 1, "doc_count": 0, "1": {"value": 2.0}, "stats": {"avg": null},
                    "p": {"values": {"99.9": 3.0, "95.0": 1.0}}, "f": {"doc_count": 1, "2": {"value": 1}},
                    "t": {"buckets": [{"key": "api", "doc_count": 1, "m": {"value": 4}}]},
                });
                let bucket = bucket.as_object().expect("an object");
                if let Ok(path) = BucketsPath::parse(&text, "aggs") {
                    for policy in [
                        GapPolicy::Skip,
                        GapPolicy::InsertZeros,
                        GapPolicy::KeepValues,
                    ] {
                        let _ = path.value(bucket, policy);
                    }
                }
                Ok(())
            })
        },
    );
}
