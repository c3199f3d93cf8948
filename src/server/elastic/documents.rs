//! Writing and reading documents: `_bulk`, `_doc` (index, put, get, delete, head) and
//! `_create`, all written through the ingest path (durable before the answer), with
//! `refresh` and the agent protocol's `X-Lookout-Agent` / `X-Lookout-Watermark` headers.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiResult, OptionalIndex, Params, bad_request, now_micros, read_body};
use crate::ingest::bulk::ActionKind;
use crate::ingest::{Item, event};
use crate::server::SharedState;
use crate::server::bulk_answer;
use crate::server::error::ApiError;
use crate::server::filter_path::{self, FilterPath};
use crate::server::response::{json_response, ok};

enum Refresh {
    No,
    Force,
    WaitFor,
}

fn refresh_param(params: &HashMap<String, String>) -> Result<Refresh, ApiError> {
    match params.get("refresh").map(String::as_str) {
        None | Some("false") => Ok(Refresh::No),
        Some("" | "true") => Ok(Refresh::Force),
        Some("wait_for") => Ok(Refresh::WaitFor),
        Some(other) => Err(bad_request(
            "illegal_argument_exception",
            format!("unknown value for refresh: [{other}]; use true, false or wait_for"),
        )),
    }
}

/// `X-Lookout-Agent` and `X-Lookout-Watermark` (agent protocol).
pub fn agent_watermark(headers: &HeaderMap) -> Result<Option<(String, Option<i64>)>, ApiError> {
    let Some(agent) = headers
        .get("x-lookout-agent")
        .and_then(|value| value.to_str().ok())
    else {
        return Ok(None);
    };
    let watermark = match headers
        .get("x-lookout-watermark")
        .and_then(|value| value.to_str().ok())
    {
        None => None,
        Some(text) => Some(
            chrono::DateTime::parse_from_rfc3339(text.trim())
                .map_err(|error| {
                    bad_request(
                        "illegal_argument_exception",
                        format!("X-Lookout-Watermark `{text}` is not RFC 3339: {error}"),
                    )
                })?
                .timestamp_micros(),
        ),
    };
    Ok(Some((agent.to_string(), watermark)))
}

pub(super) async fn bulk(
    state: State<SharedState>,
    index: OptionalIndex,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    run_bulk(
        state.0,
        index.map(|Path(index)| index),
        params.0,
        headers,
        body,
    )
    .await
}

async fn run_bulk(
    state: SharedState,
    index: Option<String>,
    params: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let started = Instant::now();
    let refresh = refresh_param(&params)?;
    let filter = params
        .get("filter_path")
        .and_then(|text| FilterPath::parse(text));
    let agent = agent_watermark(&headers)?;
    let pieces = super::bulk_body::write_body(&state, index, &headers, body, agent).await?;
    let seq = super::bulk_body::last_seq(&pieces);
    match refresh {
        Refresh::No => {}
        Refresh::Force => state.ingest.wait_searchable(seq, true).await,
        Refresh::WaitFor => state.ingest.wait_searchable(seq, false).await,
    }
    let errors = pieces
        .iter()
        .flat_map(|piece| &piece.items)
        .any(|item| item.failure().is_some());
    let text = bulk_answer::answer(
        started.elapsed().as_millis(),
        errors,
        &pieces,
        filter.as_ref(),
    );
    let mut response = crate::server::response::json_text(StatusCode::OK, text);
    response.extensions_mut().insert(filter_path::Filtered);
    Ok(response)
}

/// Takes `body` from the tenant's ingest rate limit, or refuses the whole request with
/// 429 (ES' back-pressure, which clients and the agent retry with backoff).
fn admit(state: &SharedState, body: &crate::server::body::ReadBody) -> Result<(), ApiError> {
    state
        .limits
        .admit_ingest(body.byte_len())
        .map_err(|exceeded| {
            ApiError::new(
                crate::server::error::ErrorCode::TooManyRequests,
                "es_rejected_execution_exception",
                exceeded.to_string(),
            )
        })
}

/// Writes what a client sent (see [`forbid_hidden`](super::bulk_body::forbid_hidden)).
async fn write_items(
    state: &SharedState,
    mut items: Vec<Item>,
    agent: Option<(String, Option<i64>)>,
    refresh: Refresh,
) -> Result<crate::ingest::WriteOutcome, ApiError> {
    super::bulk_body::forbid_hidden(&mut items);
    let watermark = agent
        .as_ref()
        .and_then(|(id, watermark)| watermark.map(|micros| (id.clone(), micros)));
    if let Some((id, None)) = &agent {
        state.ingest.agents.seen(id, None, Instant::now());
    }
    let outcome = state.ingest.write(items, watermark).await?;
    match refresh {
        Refresh::No => {}
        Refresh::Force => state.ingest.wait_searchable(outcome.seq, true).await,
        Refresh::WaitFor => state.ingest.wait_searchable(outcome.seq, false).await,
    }
    Ok(outcome)
}

/// Writes one document through the same path as `_bulk` and answers in ES' single-doc shape.
async fn write_one(
    state: SharedState,
    index: String,
    id: Option<String>,
    kind: ActionKind,
    params: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let refresh = refresh_param(&params)?;
    let prepared = if kind == ActionKind::Delete {
        Ok(None)
    } else {
        let body = read_body(&state, &headers, body).await?;
        admit(&state, &body)?;
        let rules = state.ingest.settings.rules.clone();
        let bytes = body.contiguous();
        tokio::task::spawn_blocking(move || event::prepare(&bytes, &rules, now_micros()).map(Some))
            .await
            .map_err(|error| ApiError::internal("parsing a document", error))?
    };
    let item = Item {
        kind,
        index: Some(index),
        id,
        position: None,
        prepared,
    };
    let outcome = write_items(&state, vec![item], None, refresh).await?;
    let result = outcome
        .items
        .into_iter()
        .next()
        .expect("one item in, one result out");
    if let Some(error) = bulk_answer::item_error(&result) {
        return Err(error);
    }
    let status = bulk_answer::item_status(&result);
    let rendered = bulk_answer::item_json(&result, outcome.seq);
    let inner = rendered
        .as_object()
        .and_then(|map| map.values().next())
        .cloned()
        .unwrap_or(Value::Null);
    Ok(json_response(status, &inner))
}

pub(super) async fn create_doc(
    state: State<SharedState>,
    Path(index): Path<String>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    write_one(
        state.0,
        index,
        None,
        ActionKind::Index,
        params.0,
        headers,
        body,
    )
    .await
}

pub(super) async fn put_doc(
    state: State<SharedState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let kind = if params.get("op_type").map(String::as_str) == Some("create") {
        ActionKind::Create
    } else {
        ActionKind::Index
    };
    write_one(state.0, index, Some(id), kind, params.0, headers, body).await
}

pub(super) async fn create_doc_with_id(
    state: State<SharedState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    write_one(
        state.0,
        index,
        Some(id),
        ActionKind::Create,
        params.0,
        headers,
        body,
    )
    .await
}

pub(super) async fn delete_doc(
    state: State<SharedState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
) -> ApiResult {
    if state.store.get(&index).is_none() {
        return Err(ApiError::index_not_found(&index));
    }
    write_one(
        state.0,
        index,
        Some(id),
        ActionKind::Delete,
        params.0,
        headers,
        Body::empty(),
    )
    .await
}

pub(super) async fn get_doc(
    State(state): State<SharedState>,
    Path((index, id)): Path<(String, String)>,
) -> ApiResult {
    state.ingest.before_search().await;
    let log_index = state
        .store
        .get(&index)
        .ok_or_else(|| ApiError::index_not_found(&index))?;
    let store = state.store.clone();
    let lookup_id = id.clone();
    let source = tokio::task::spawn_blocking(move || store.get_source(&log_index, &lookup_id))
        .await
        .map_err(|error| ApiError::internal("reading a document", error))?;
    Ok(match source {
        Some(bytes) => {
            let source: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({}));
            ok(
                &json!({"_index": index, "_id": id, "_version": 1, "_seq_no": 0, "_primary_term": 1, "found": true, "_source": source}),
            )
        }
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({"_index": index, "_id": id, "found": false}),
        ),
    })
}

pub(super) async fn head_doc(state: State<SharedState>, path: Path<(String, String)>) -> Response {
    match get_doc(state, path).await {
        Ok(response) => response.status().into_response(),
        Err(error) => error.code.status().into_response(),
    }
}
