//! Keys in any order: a search body written with its objects' keys shuffled (at every
//! level: the query DSL, aggregations, highlight, sort options) gets the same answer as
//! the body as written. The corpus: the search seeds of `query.rs` and Grafana's requests
//! (tests/fixtures/grafana/).

use std::collections::HashMap;

use lookout::index::query::request::search_request;
use lookout::index::search::{self, Scope};
use proptest::prelude::*;
use serde_json::Value;

use crate::harness::{self, run_case};
use crate::query::{SEARCH_SEEDS, context, store};

/// The bodies to shuffle.
fn corpus() -> Vec<Value> {
    let mut bodies: Vec<Value> = SEARCH_SEEDS
        .iter()
        .map(|text| serde_json::from_str(text).expect("seed is JSON"))
        .collect();
    let mut paths: Vec<_> = std::fs::read_dir("tests/fixtures/grafana")
        .expect("fixtures")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .expect("fixture")
            .replace("\"$FROM\"", "1714554000000")
            .replace("\"$TO\"", "1714557600000");
        let fixture: Value = serde_json::from_str(&text).expect("fixture is JSON");
        bodies.push(fixture["body"].clone());
    }
    bodies
}

/// `value` as JSON text, each object's keys in an order drawn from `seed`.
fn shuffled_text(value: &Value, seed: &mut u64) -> String {
    match value {
        Value::Object(map) => {
            let mut members: Vec<String> = map
                .iter()
                .map(|(key, value)| {
                    format!(
                        "{}:{}",
                        Value::String(key.clone()),
                        shuffled_text(value, seed)
                    )
                })
                .collect();
            // Fisher-Yates with a xorshift stream
            for index in (1..members.len()).rev() {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                members.swap(index, (*seed % (index as u64 + 1)) as usize);
            }
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|item| shuffled_text(item, seed)).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// The answer a body gets on the fuzz index: hits' ids and aggregations, or the error.
fn answer(text: &str) -> String {
    let body: Value = match serde_json::from_str(text) {
        Ok(body) => body,
        Err(error) => return format!("invalid JSON: {error}"),
    };
    let request = match search_request(Some(&body), &HashMap::new(), &context()) {
        Ok(request) => request,
        Err(error) => return format!("{}: {}", error.kind, error.reason),
    };
    let (_, store) = store();
    let scope = Scope::new(&store.all(), &request.query);
    match search::execute(store, &scope, &request, None) {
        Ok(outcome) => {
            let hits = search::render_hits(store, &scope.targets, &outcome.hits, &request)
                .map(|hits| {
                    hits.into_iter()
                        .map(|mut hit| {
                            // scores may differ in the last bit with clause order
                            if let Value::Object(map) = &mut hit {
                                map.remove("_score");
                            }
                            hit
                        })
                        .collect::<Vec<_>>()
                })
                .map_err(|error| error.to_string());
            format!("{} {:?} {:?}", outcome.total, hits, outcome.aggregations)
        }
        Err(error) => format!("error: {error}"),
    }
}

#[test]
fn shuffled_keys_get_the_same_answer() {
    let bodies = corpus();
    let count = bodies.len();
    harness::check(
        move || (0..count, any::<u64>()),
        |(index, seed)| {
            let bodies = corpus();
            let body = bodies[index].clone();
            run_case("key order", format!("{body} {seed}"), move || {
                let mut state = seed | 1;
                let written = body.to_string();
                let shuffled = shuffled_text(&body, &mut state);
                let (first, second) = (answer(&written), answer(&shuffled));
                if first == second {
                    Ok(())
                } else {
                    Err(format!("{written}\n→ {first}\n{shuffled}\n→ {second}"))
                }
            })
        },
    );
}
