//! Answers of a remote datasource's `/api/v1/query` (Prometheus' JSON): real answers
//! mutated token by token, and any JSON. They parse into an instant vector or fail with a
//! reason, never panic; every parsed series has its labels sorted and unique.

use std::sync::Arc;

use lookout::datasource::parse_query_response;
use proptest::prelude::*;

use crate::harness::{self, Grammar, json_value, mutated, run_case};

const SEEDS: &[&str] = &[
    r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"node","instance":"a:9100"},"value":[1700000000.123,"1"]},{"metric":{"job":"api"},"value":[1700000000.123,"NaN"]}]}}"#,
    r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"+Inf"]}}"#,
    r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected identifier"}"#,
    r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2"]]}]},"warnings":["x"]}"#,
];

fn check(body: String) -> Result<(), TestCaseError> {
    run_case("remote_query", body.clone(), move || {
        if let Ok(samples) = parse_query_response(body.as_bytes()) {
            for (labels, _) in samples {
                if !labels.windows(2).all(|pair| pair[0].0 < pair[1].0) {
                    return Err(format!("labels not sorted and unique: {labels:?}"));
                }
            }
        }
        Ok(())
    })
}

#[test]
fn datasource_answers_parse_or_fail_cleanly() {
    harness::check(
        || {
            let grammar = Arc::new(Grammar::new(
                SEEDS,
                &[
                    "{",
                    "}",
                    "[",
                    "]",
                    ",",
                    ":",
                    "\"",
                    "\"value\"",
                    "\"metric\"",
                    "1e309",
                    "-0",
                ],
                &[("{", "}"), ("[", "]")],
            ));
            let any_json = json_value(4).prop_map(|value| value.to_string()).boxed();
            mutated(grammar, any_json, 6)
        },
        check,
    );
}
