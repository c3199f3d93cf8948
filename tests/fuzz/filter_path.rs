//! `filter_path`: generated patterns (globs, `**`, exclusions, empty segments) over
//! arbitrary JSON and real ES answers. A filter only ever removes (it never invents a key
//! or changes a value), filtering twice changes nothing, `**` keeps everything, and the
//! `_bulk` answer written through `FilterPath::decide` equals the whole answer filtered.

use lookout::ingest::bulk::ActionKind;
use lookout::ingest::event::{Rejection, RejectionKind};
use lookout::ingest::{ItemFailure, ItemOutcome, ItemResult};
use lookout::server::bulk_answer;
use lookout::server::filter_path::FilterPath;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::harness::{self, HOSTILE, run_case};

const KEYS: &[&str] = &[
    "took",
    "errors",
    "items",
    "index",
    "create",
    "delete",
    "_index",
    "_id",
    "status",
    "error",
    "type",
    "reason",
    "_shards",
    "total",
    "hits",
    "_source",
    "aggregations",
    "buckets",
    "key",
    "a",
    "b",
    "é",
    "",
];

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(KEYS).prop_map(str::to_string),
        2 => Just("*".to_string()),
        2 => Just("**".to_string()),
        2 => "[a-z_]{0,3}\\*[a-z_]{0,3}(\\*[a-z]{0,2})?",
        1 => proptest::sample::select(HOSTILE).prop_map(str::to_string),
    ]
}

fn filter_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (any::<bool>(), proptest::collection::vec(segment(), 0..5)),
        1..4,
    )
    .prop_map(|patterns| {
        patterns
            .into_iter()
            .map(|(exclude, segments)| {
                format!("{}{}", if exclude { "-" } else { "" }, segments.join("."))
            })
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// JSON shaped like ES answers: objects keyed by [`KEYS`], arrays of them, any leaves.
fn answer_like(depth: u32) -> impl Strategy<Value = Value> {
    harness::json_value(0).prop_recursive(depth, 48, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                proptest::sample::select(KEYS).prop_map(str::to_string),
                inner,
                0..5
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Whether `part` is `whole` with parts removed: object keys of `part` are keys of
/// `whole`, array items of `part` are, in order, taken from items of `whole`, leaves equal.
fn is_part_of(part: &Value, whole: &Value) -> bool {
    match (part, whole) {
        (Value::Object(part), Value::Object(whole)) => part
            .iter()
            .all(|(key, value)| whole.get(key).is_some_and(|whole| is_part_of(value, whole))),
        (Value::Array(part), Value::Array(whole)) => {
            let mut whole = whole.iter();
            part.iter()
                .all(|item| whole.any(|candidate| is_part_of(item, candidate)))
        }
        (part, whole) => part == whole,
    }
}

fn item() -> impl Strategy<Value = ItemResult> {
    let rejected = ItemOutcome::Failed(ItemFailure::Rejected(Rejection {
        kind: RejectionKind::Unparsable,
        label: "invalid_json",
        reason: "bad \"line\"\n".to_string(),
    }));
    (
        prop_oneof![
            Just(ActionKind::Index),
            Just(ActionKind::Create),
            Just(ActionKind::Delete)
        ],
        "[a-z\"\\\\é]{0,6}",
        proptest::option::of("[a-z0-9\"]{0,6}"),
        proptest::sample::select(vec![
            ItemOutcome::Created,
            ItemOutcome::Updated,
            ItemOutcome::Deleted,
            ItemOutcome::NotFound,
            ItemOutcome::Noop,
            rejected,
            ItemOutcome::Failed(ItemFailure::AlreadyExists { id: "a\"b".into() }),
        ]),
    )
        .prop_map(|(kind, index, id, outcome)| ItemResult {
            kind,
            index,
            id,
            outcome,
        })
}

#[test]
fn filters_only_remove_and_are_idempotent() {
    let strategy = || {
        let value = prop_oneof![
            answer_like(5),
            Just(json!({"took": 3, "errors": true, "items": [
                {"index": {"_index": "logs", "_id": "a", "status": 201, "_shards": {"total": 1, "successful": 1, "failed": 0}}},
                {"create": {"_index": "logs", "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}}
            ]})),
            Just(
                json!({"took": 1, "timed_out": false, "hits": {"total": {"value": 2, "relation": "eq"}, "hits": [
                {"_index": "logs", "_id": "1", "_source": {"a": {"b": [1, {"c": null}]}}}
            ]}, "aggregations": {"per_minute": {"buckets": [{"key": 1, "doc_count": 2}]}}})
            ),
        ];
        (filter_text(), value)
    };
    harness::check(strategy, |(filter, value)| {
        run_case(
            "filter_path",
            format!("{:?}", (&filter, &value)),
            move || {
                let Some(parsed) = FilterPath::parse(&filter) else {
                    return Ok(());
                };
                let once = parsed.filter(value.clone());
                if !is_part_of(&once, &value) && once != json!({}) {
                    return Err(format!(
                        "the filtered answer is not part of the answer: {once}"
                    ));
                }
                let twice = parsed.filter(once.clone());
                if twice != once {
                    return Err(format!("filtering again changed {once} into {twice}"));
                }
                let everything = FilterPath::parse("**")
                    .expect("a pattern")
                    .filter(value.clone());
                if everything != value {
                    return Err(format!("`**` changed the answer into {everything}"));
                }
                Ok(())
            },
        )
    });
}

#[test]
fn bulk_answers_filter_like_whole_answers() {
    let strategy = || {
        (
            filter_text(),
            proptest::collection::vec(item(), 0..5),
            any::<bool>(),
        )
    };
    harness::check(strategy, |(filter, items, errors)| {
        run_case(
            "bulk filter_path",
            format!("{:?}", (&filter, &items)),
            move || {
                let Some(parsed) = FilterPath::parse(&filter) else {
                    return Ok(());
                };
                let items = [lookout::ingest::WriteOutcome { seq: 3, items }];
                let whole: Value =
                    serde_json::from_str(&bulk_answer::answer(7, errors, &items, None))
                        .map_err(|error| format!("the whole answer is not JSON: {error}"))?;
                let text = bulk_answer::answer(7, errors, &items, Some(&parsed));
                let direct: Value = serde_json::from_str(&text)
                    .map_err(|error| format!("the filtered answer is not JSON: {error}: {text}"))?;
                let filtered = parsed.filter(whole);
                if direct != filtered {
                    return Err(format!(
                        "written through decide: {direct}\nfiltered whole: {filtered}"
                    ));
                }
                Ok(())
            },
        )
    });
}
