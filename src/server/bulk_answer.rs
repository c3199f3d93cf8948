//! Ingest's answers in Elasticsearch's words: a refused write request (429
//! `cluster_block_exception`), the status code, `result` and error type of each item
//! outcome ([`status`], [`item_error`]), and whole `_bulk` answers in ES'
//! item shape, written as text (building and serializing a `serde_json::Value` per item
//! cost 7 % of ingest CPU), through `filter_path` when the request names one.

use axum::http::StatusCode;
use serde_json::Value;

use super::filter_path::{FilterPath, Keep};
use crate::ingest::bulk::ActionKind;
use crate::ingest::event::RejectionKind;
use crate::ingest::{ItemFailure, ItemOutcome, ItemResult, WriteOutcome, WriteRefused};
use crate::server::error::{ApiError, ErrorCode};

/// A write refused while storage is degraded: Elasticsearch answers a flood-stage block
/// with 429 `cluster_block_exception`, which clients (Beats, Logstash, the agent) retry.
impl From<WriteRefused> for ApiError {
    fn from(refused: WriteRefused) -> Self {
        ApiError::new(
            ErrorCode::TooManyRequests,
            "cluster_block_exception",
            refused.reason,
        )
    }
}

/// The HTTP status Elasticsearch gives an item with this outcome (in a `_bulk` item, and
/// as the answer of a single-document write).
pub fn status(outcome: &ItemOutcome) -> u16 {
    match outcome {
        ItemOutcome::Created => 201,
        ItemOutcome::Updated | ItemOutcome::Deleted | ItemOutcome::Noop => 200,
        ItemOutcome::NotFound => 404,
        ItemOutcome::Failed(ItemFailure::AlreadyExists { .. }) => 409,
        ItemOutcome::Failed(ItemFailure::Rejected(rejection))
            if rejection.kind == RejectionKind::Forbidden =>
        {
            403
        }
        ItemOutcome::Failed(_) => 400,
    }
}

/// The `result` Elasticsearch writes for an item that was not refused.
fn result_name(outcome: &ItemOutcome) -> Option<&'static str> {
    match outcome {
        ItemOutcome::Created => Some("created"),
        ItemOutcome::Updated => Some("updated"),
        ItemOutcome::Deleted => Some("deleted"),
        ItemOutcome::NotFound => Some("not_found"),
        ItemOutcome::Noop => Some("noop"),
        ItemOutcome::Failed(_) => None,
    }
}

/// Elasticsearch's `error.type` for a refused item.
fn error_type(failure: &ItemFailure) -> &'static str {
    match failure {
        ItemFailure::MissingIndex => "action_request_validation_exception",
        ItemFailure::InvalidIndexName { .. } => "invalid_index_name_exception",
        ItemFailure::Rejected(rejection) => match rejection.kind {
            RejectionKind::Unparsable => "document_parsing_exception",
            RejectionKind::IllegalValue => "illegal_argument_exception",
            RejectionKind::Forbidden => "security_exception",
        },
        ItemFailure::AlreadyExists { .. } => "version_conflict_engine_exception",
    }
}

/// A refused item as the error of a single-document write; `None` when it was not refused.
pub fn item_error(item: &ItemResult) -> Option<ApiError> {
    let failure = item.failure()?;
    let code = match status(&item.outcome) {
        403 => ErrorCode::Forbidden,
        409 => ErrorCode::Conflict,
        _ => ErrorCode::BadRequest,
    };
    Some(ApiError {
        code,
        kind: error_type(failure),
        reason: failure.to_string(),
        index: Some(item.index.clone()),
    })
}

/// The status of a single-document write's answer.
pub fn item_status(item: &ItemResult) -> StatusCode {
    StatusCode::from_u16(status(&item.outcome)).unwrap_or(StatusCode::OK)
}

/// The keys of one item, in the order Elasticsearch writes them.
const FIELDS: [&str; 9] = [
    "_index",
    "_id",
    "_version",
    "result",
    "_shards",
    "_seq_no",
    "_primary_term",
    "status",
    "error",
];
const SHARDS: usize = 4;
const SHARDS_JSON: &str = r#"{"total":1,"successful":1,"failed":0}"#;
const ERROR: usize = 8;

/// What a filter keeps of the items of one action kind, decided once per request.
struct ItemKeep {
    kind: ActionKind,
    item: Keep,
    fields: [Keep; FIELDS.len()],
}

impl ItemKeep {
    fn all(kind: ActionKind) -> ItemKeep {
        ItemKeep {
            kind,
            item: Keep::All,
            fields: [Keep::All; FIELDS.len()],
        }
    }

    fn of(kind: ActionKind, filter: &FilterPath) -> ItemKeep {
        let name = kind.name();
        ItemKeep {
            kind,
            item: filter.decide(&["items", name]),
            fields: FIELDS.map(|field| filter.decide(&["items", name, field])),
        }
    }
}

/// The whole `_bulk` answer: the items of every piece of the body in request order, each
/// with the sequence of the record that logged its piece.
pub fn answer(
    took_ms: u128,
    errors: bool,
    pieces: &[WriteOutcome],
    filter: Option<&FilterPath>,
) -> String {
    let count: usize = pieces.iter().map(|piece| piece.items.len()).sum();
    let mut text = String::with_capacity(64 + count * 200);
    let keep = |key: &str| filter.map_or(Keep::All, |filter| filter.decide(&[key]));
    let mut first = true;
    let mut key = |text: &mut String, name: &str| {
        text.push(if first { '{' } else { ',' });
        first = false;
        text.push('"');
        text.push_str(name);
        text.push_str("\":");
    };
    let leaf = |keep: Keep| matches!(keep, Keep::All | Keep::AllBut);
    if leaf(keep("took")) {
        key(&mut text, "took");
        text.push_str(&took_ms.to_string());
    }
    if leaf(keep("errors")) {
        key(&mut text, "errors");
        text.push_str(if errors { "true" } else { "false" });
    }
    if keep("items") != Keep::None {
        let mut kinds: Vec<ItemKeep> = Vec::new();
        let mut rendered = String::with_capacity(count * 200);
        let items = pieces
            .iter()
            .flat_map(|piece| piece.items.iter().map(move |item| (item, piece.seq)));
        for (item, seq) in items {
            let keep = match kinds.iter().position(|keep| keep.kind == item.kind) {
                Some(found) => &kinds[found],
                None => {
                    kinds.push(match filter {
                        Some(filter) => ItemKeep::of(item.kind, filter),
                        None => ItemKeep::all(item.kind),
                    });
                    kinds.last().expect("just pushed")
                }
            };
            let mark = rendered.len();
            if !rendered.is_empty() {
                rendered.push(',');
            }
            if !write_item(item, seq, keep, filter, &mut rendered) {
                rendered.truncate(mark);
            }
        }
        // an empty list stays only when the filter keeps it whole (Elasticsearch leaves
        // out what a filter empties), as `FilterPath::filter` does
        if !rendered.is_empty() || keep("items") == Keep::All {
            key(&mut text, "items");
            text.push('[');
            text.push_str(&rendered);
            text.push(']');
        }
    }
    if first {
        text.push('{');
    }
    text.push('}');
    text
}

/// One item as ES renders it, as a value (the single-document write APIs answer with it).
pub fn item_json(item: &ItemResult, seq: u64) -> Value {
    let mut text = String::new();
    write_item(item, seq, &ItemKeep::all(item.kind), None, &mut text);
    serde_json::from_str(&text).expect("write_item writes valid JSON")
}

/// Appends `{"<kind>": {...}}`; false (and possibly a partial write the caller drops)
/// when the filter leaves nothing of it.
fn write_item(
    item: &ItemResult,
    seq: u64,
    keep: &ItemKeep,
    filter: Option<&FilterPath>,
    out: &mut String,
) -> bool {
    use std::fmt::Write as _;
    if keep.item == Keep::None {
        return false;
    }
    let quoted = |text: &str| serde_json::to_string(text).expect("a string serializes");
    let start = out.len();
    let _ = write!(out, "{{\"{}\":", item.kind.name());
    let body_start = out.len();
    let mut first = true;
    let mut field = |out: &mut String, index: usize, value: &dyn Fn(&mut String)| {
        let object = index == SHARDS || index == ERROR; // filtered by `partial`
        if !object && !matches!(keep.fields[index], Keep::All | Keep::AllBut) {
            return;
        }
        out.push(if first { '{' } else { ',' });
        first = false;
        let _ = write!(out, "\"{}\":", FIELDS[index]);
        value(out);
    };
    field(out, 0, &|out| out.push_str(&quoted(&item.index)));
    field(out, 1, &|out| match &item.id {
        Some(id) => out.push_str(&quoted(id)),
        None => out.push_str("null"),
    });
    if let Some(result) = result_name(&item.outcome) {
        field(out, 2, &|out| out.push('1'));
        field(out, 3, &|out| {
            let _ = write!(out, "\"{result}\"");
        });
        // every successful item has it: written as it is unless a filter reaches into it
        if keep.fields[SHARDS] == Keep::All {
            field(out, SHARDS, &|out| out.push_str(SHARDS_JSON));
        } else if let Some(shards) = partial(filter, keep, SHARDS, || {
            serde_json::from_str(SHARDS_JSON).expect("SHARDS_JSON is JSON")
        }) {
            field(out, SHARDS, &|out| out.push_str(&shards));
        }
        field(out, 5, &|out| {
            let _ = write!(out, "{seq}");
        });
        field(out, 6, &|out| out.push('1'));
    }
    field(out, 7, &|out| {
        let _ = write!(out, "{}", status(&item.outcome));
    });
    if let Some(failure) = item.failure() {
        let error = || serde_json::json!({"type": error_type(failure), "reason": failure.to_string(), "index": item.index});
        if let Some(error) = partial(filter, keep, ERROR, error) {
            field(out, ERROR, &|out| out.push_str(&error));
        }
    }
    if out.len() == body_start {
        out.truncate(start);
        return false;
    }
    out.push_str("}}");
    true
}

/// The text of an object field: whole, or what the filter keeps of it (`None`: nothing).
fn partial(
    filter: Option<&FilterPath>,
    keep: &ItemKeep,
    index: usize,
    value: impl Fn() -> Value,
) -> Option<String> {
    match (keep.fields[index], filter) {
        (Keep::None, _) => None,
        (Keep::Some | Keep::AllBut, Some(filter)) => filter
            .filter_at(&["items", keep.kind.name(), FIELDS[index]], value())
            .map(|kept| kept.to_string()),
        _ => Some(value().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::event::Rejection;
    use serde_json::json;

    /// A body written as one piece, logged as record `seq`.
    fn piece(items: Vec<ItemResult>, seq: u64) -> Vec<WriteOutcome> {
        vec![WriteOutcome { seq, items }]
    }

    fn items() -> Vec<ItemResult> {
        vec![
            ItemResult {
                kind: ActionKind::Index,
                index: "logs".into(),
                id: Some("a\"1".into()),
                outcome: ItemOutcome::Created,
            },
            ItemResult {
                kind: ActionKind::Create,
                index: "logs".into(),
                id: Some("b".into()),
                outcome: ItemOutcome::Failed(ItemFailure::AlreadyExists { id: "b".into() }),
            },
        ]
    }

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).expect("valid JSON")
    }

    /// An answer without items lost its `items: []` under a filter that keeps them whole.
    #[test]
    fn an_empty_items_list_stays_when_the_filter_keeps_it_whole() {
        let filter = FilterPath::parse("-a*").expect("a filter");
        assert_eq!(
            parsed(&answer(5, false, &piece(Vec::new(), 7), Some(&filter))),
            json!({"took": 5, "errors": false, "items": []})
        );
        let filter = FilterPath::parse("items.*.error").expect("a filter");
        assert_eq!(
            parsed(&answer(5, false, &piece(Vec::new(), 7), Some(&filter))),
            json!({})
        );
    }

    #[test]
    fn unfiltered_is_elasticsearch_shape() {
        let whole = parsed(&answer(5, true, &piece(items(), 7), None));
        assert_eq!(
            whole,
            json!({"took": 5, "errors": true, "items": [
                {"index": {"_index": "logs", "_id": "a\"1", "_version": 1, "result": "created",
                    "_shards": {"total": 1, "successful": 1, "failed": 0},
                    "_seq_no": 7, "_primary_term": 1, "status": 201}},
                {"create": {"_index": "logs", "_id": "b", "status": 409,
                    "error": {"type": "version_conflict_engine_exception",
                        "reason": "[b]: version conflict, document already exists (current version [1])",
                        "index": "logs"}}}
            ]})
        );
        assert_eq!(item_json(&items()[0], 7)["index"]["_seq_no"], 7);
        assert_eq!(
            parsed(&answer(0, false, &piece(Vec::new(), 1), None))["items"],
            json!([])
        );
    }

    /// Each outcome gets Elasticsearch's status, `result` and error type (ingest names
    /// none of them).
    #[test]
    fn outcomes_are_written_in_elasticsearch_terms() {
        let rejected = |kind| {
            ItemOutcome::Failed(ItemFailure::Rejected(Rejection {
                kind,
                label: "too_old",
                reason: "event time is older than the retention".into(),
            }))
        };
        let cases = [
            (ItemOutcome::Created, 201, Some("created"), None),
            (ItemOutcome::Updated, 200, Some("updated"), None),
            (ItemOutcome::Deleted, 200, Some("deleted"), None),
            (ItemOutcome::NotFound, 404, Some("not_found"), None),
            (ItemOutcome::Noop, 200, Some("noop"), None),
            (
                ItemOutcome::Failed(ItemFailure::MissingIndex),
                400,
                None,
                Some("action_request_validation_exception"),
            ),
            (
                ItemOutcome::Failed(ItemFailure::InvalidIndexName {
                    reason: "invalid index name [A], must be lowercase".into(),
                }),
                400,
                None,
                Some("invalid_index_name_exception"),
            ),
            (
                rejected(RejectionKind::Unparsable),
                400,
                None,
                Some("document_parsing_exception"),
            ),
            (
                rejected(RejectionKind::IllegalValue),
                400,
                None,
                Some("illegal_argument_exception"),
            ),
            (
                rejected(RejectionKind::Forbidden),
                403,
                None,
                Some("security_exception"),
            ),
            (
                ItemOutcome::Failed(ItemFailure::AlreadyExists { id: "b".into() }),
                409,
                None,
                Some("version_conflict_engine_exception"),
            ),
        ];
        for (outcome, expected_status, expected_result, expected_type) in cases {
            let item = ItemResult {
                kind: ActionKind::Index,
                index: "logs".into(),
                id: Some("b".into()),
                outcome: outcome.clone(),
            };
            let json = &item_json(&item, 7)["index"];
            assert_eq!(json["status"], expected_status, "{outcome:?}");
            assert_eq!(json["result"].as_str(), expected_result, "{outcome:?}");
            assert_eq!(json["error"]["type"].as_str(), expected_type, "{outcome:?}");
            assert_eq!(item_status(&item).as_u16(), expected_status, "{outcome:?}");
            let error = item_error(&item);
            assert_eq!(error.as_ref().map(|error| error.kind), expected_type);
            if let Some(error) = error {
                assert_eq!(error.code.status().as_u16(), expected_status);
            }
        }
    }

    /// The text writer agrees with the generic filter over the unfiltered answer.
    #[test]
    fn filtered_equals_generic_filter() {
        let whole = parsed(&answer(5, true, &piece(items(), 7), None));
        for pattern in [
            "errors,items.*.error,items.*.status",
            "errors,items.*.error",
            "took",
            "items.*._shards.total,items.*.error.type",
            "-items.*._shards,-took",
            "**.status",
            "nothing",
            "items.create",
        ] {
            let filter = FilterPath::parse(pattern).expect("a filter");
            assert_eq!(
                parsed(&answer(5, true, &piece(items(), 7), Some(&filter))),
                filter.filter(whole.clone()),
                "{pattern}"
            );
        }
    }
}
