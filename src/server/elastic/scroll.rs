//! Scrolls: `_search/scroll` continues one (the next page after its last hit, on the
//! searchers it pinned), `DELETE _search/scroll` frees them. The store of open scrolls is
//! `index::search::scroll`'s; `_search?scroll=…` opens one (`search`).

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::search::{parse_keep_alive, search_and_render};
use super::{ApiResult, Params, bad_request, read_json_body};
use crate::server::SharedState;
use crate::server::error::{ApiError, ErrorCode};
use crate::server::response::{json_response, ok};

async fn continue_scroll(state: &SharedState, id: &str, keep_alive: Option<&str>) -> ApiResult {
    let started = Instant::now();
    let keep_alive = keep_alive.map(parse_keep_alive).transpose()?;
    let position = state.scrolls.resume(id, keep_alive).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "search_context_missing_exception",
            format!("No search context found for id [{id}]; it expired or was cleared"),
        )
    })?;
    let (scope, total) = (&position.scope, position.total);
    let (outcome, hits) = search_and_render(state, scope, &position.request, position.last).await?;
    if let Some(last) = outcome.hits.last() {
        state.scrolls.advance(id, last.clone());
    }
    Ok(ok(&json!({
        "_scroll_id": id,
        "took": started.elapsed().as_millis() as u64,
        "timed_out": outcome.timed_out,
        "_shards": {"total": scope.targets.len().max(1), "successful": scope.targets.len().max(1), "skipped": 0, "failed": 0},
        "hits": {"total": {"value": total, "relation": "eq"}, "max_score": Value::Null, "hits": hits},
    })))
}

fn scroll_ids(body: Option<&Value>, params: &HashMap<String, String>) -> Vec<String> {
    let mut ids: Vec<String> = params
        .get("scroll_id")
        .map(|id| id.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    match body.and_then(|body| body.get("scroll_id")) {
        Some(Value::String(id)) => ids.extend(id.split(',').map(str::to_string)),
        Some(Value::Array(items)) => {
            ids.extend(items.iter().filter_map(Value::as_str).map(str::to_string))
        }
        _ => {}
    }
    ids
}

pub(super) async fn scroll(
    state: State<SharedState>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = read_json_body(&state, &headers, body).await?;
    let id = scroll_ids(body.as_ref(), &params.0)
        .into_iter()
        .next()
        .ok_or_else(|| {
            bad_request(
                "action_request_validation_exception",
                "Validation Failed: 1: scrollId is missing;",
            )
        })?;
    let keep_alive = body
        .as_ref()
        .and_then(|body| body.get("scroll"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| params.get("scroll").cloned());
    continue_scroll(&state.0, &id, keep_alive.as_deref()).await
}

pub(super) async fn scroll_by_path(
    state: State<SharedState>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    continue_scroll(&state.0, &id, params.get("scroll").map(String::as_str)).await
}

fn clear(state: &SharedState, ids: Vec<String>) -> Response {
    let freed = state.scrolls.clear(&ids);
    let status = if freed == 0 && !ids.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    json_response(status, &json!({"succeeded": true, "num_freed": freed}))
}

pub(super) async fn clear_scroll(
    state: State<SharedState>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = read_json_body(&state, &headers, body).await?;
    Ok(clear(&state.0, scroll_ids(body.as_ref(), &params.0)))
}

pub(super) async fn clear_scroll_by_path(
    state: State<SharedState>,
    Path(id): Path<String>,
) -> Response {
    clear(&state.0, id.split(',').map(str::to_string).collect())
}
