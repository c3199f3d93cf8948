//! Searching: `_search` (which may open a scroll), `_msearch` and `_count`. Request
//! parsing is `index::query::request`'s, execution `index::search`'s; here searches are
//! put on the search pool and their outcome is written in ES' shapes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{
    ApiResult, OptionalIndex, Params, bad_request, index_or, parse_context, parse_json_body,
    read_body, read_json_body, resolve,
};
use crate::index::query::request::{count_query, search_request};
use crate::index::search::{self, ScoredHit, SearchOutcome, SearchRequest, TrackTotalHits};
use crate::server::SharedState;
use crate::server::error::{ApiError, ErrorCode};
use crate::server::query_pool::PoolError;
use crate::server::response::ok;

fn total_json(total: u64, track: &TrackTotalHits, as_int: bool) -> Option<Value> {
    let (value, relation) = match track {
        TrackTotalHits::Off => return None,
        TrackTotalHits::Exact => (total, "eq"),
        TrackTotalHits::UpTo(limit) if total > *limit => (*limit, "gte"),
        TrackTotalHits::UpTo(_) => (total, "eq"),
    };
    Some(if as_int {
        json!(value)
    } else {
        json!({"value": value, "relation": relation})
    })
}

/// The most searches one `_msearch` may hold (Elasticsearch runs them a few at a time,
/// `max_concurrent_searches`; Lookout runs them in turn and bounds the total).
const MAX_MSEARCH_SEARCHES: usize = 1024;

async fn run_search(
    state: &SharedState,
    expression: &str,
    params: &HashMap<String, String>,
    body: Option<Value>,
) -> Result<Value, ApiError> {
    let started = Instant::now();
    state.ingest.before_search().await;
    let indices = resolve(state, expression, params)?;
    let mut request = search_request(body.as_ref(), params, &parse_context())?;
    request.timeout = request.timeout.or(Some(state.search_timeout));
    let scroll = params
        .get("scroll")
        .map(|text| parse_keep_alive(text))
        .transpose()?;
    if scroll.is_some() && request.search_after.is_some() {
        return Err(bad_request(
            "search_context_exception",
            "`search_after` cannot be used in a scroll context; page with one or the other",
        ));
    }
    if scroll.is_some() && request.sort.is_empty() {
        request.sort = vec![search::SortField {
            key: search::SortKey::Doc,
            descending: false,
        }];
    }
    let as_int = params
        .get("rest_total_hits_as_int")
        .is_some_and(|value| value == "true");
    let scope = Arc::new(search::Scope::new(&indices, &request.query));
    let (outcome, hits) = search_and_render(state, &scope, &request, None).await?;
    state.telemetry.query_seconds.observe(started.elapsed());
    let mut response = json!({
        "took": started.elapsed().as_millis() as u64,
        "timed_out": outcome.timed_out,
        "_shards": {"total": scope.targets.len().max(1), "successful": scope.targets.len().max(1), "skipped": 0, "failed": 0},
        "hits": {"max_score": outcome.max_score, "hits": hits},
    });
    if let Some(total) = total_json(outcome.total, &request.track_total_hits, as_int) {
        response["hits"]["total"] = total;
    }
    if let Some(aggregations) = outcome.aggregations {
        response["aggregations"] = aggregations;
    }
    if let Some(keep_alive) = scroll {
        let last = outcome.hits.last().cloned().map(Arc::new);
        let id = state
            .scrolls
            .open(scope, request, last, outcome.total, keep_alive)
            .map_err(|error| {
                ApiError::new(
                    ErrorCode::TooManyRequests,
                    "exception",
                    format!("{error}; clear finished ones with DELETE /_search/scroll"),
                )
            })?;
        response["_scroll_id"] = json!(id);
    }
    Ok(response)
}

/// Runs a search on the search pool (at most `search.max_concurrent` at once, at a lower
/// priority than rules and ingest); a full pool answers 429 at once, as Elasticsearch's
/// rejected search thread pool does.
pub(in crate::server) async fn on_search_pool<T: Send + 'static>(
    state: &SharedState,
    search: impl FnOnce(&tokio_util::sync::CancellationToken) -> T + Send + 'static,
) -> Result<T, ApiError> {
    state
        .search_pool
        .run(search)
        .await
        .map_err(|error| match error {
            PoolError::Busy { .. } => {
                state.telemetry.requests_refused.add("search_pool_full", 1);
                ApiError::new(
                    ErrorCode::TooManyRequests,
                    "es_rejected_execution_exception",
                    error.to_string(),
                )
            }
            PoolError::Panicked(_) => {
                ApiError::new(ErrorCode::Internal, "exception", error.to_string())
            }
            PoolError::Stopped => {
                ApiError::new(ErrorCode::Unavailable, "exception", error.to_string())
            }
        })
}

/// Runs `request` over `scope` on the search pool, returning hits strictly after `after`
/// (a scroll's next page), and renders them.
pub(super) async fn search_and_render(
    state: &SharedState,
    scope: &Arc<search::Scope>,
    request: &SearchRequest,
    after: Option<Arc<ScoredHit>>,
) -> Result<(SearchOutcome, Vec<Value>), ApiError> {
    let store = state.store.clone();
    let scope = Arc::clone(scope);
    let request = request.clone();
    let rendered = on_search_pool(state, move |cancel| {
        let request = request.cancelled_by(cancel);
        let outcome = search::execute(&store, &scope, &request, after)?;
        let hits = search::render_hits(&store, &scope.targets, &outcome.hits, &request)?;
        Ok::<_, search::SearchError>((outcome, hits))
    })
    .await??;
    Ok(rendered)
}

pub(super) async fn search(
    state: State<SharedState>,
    index: OptionalIndex,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = read_json_body(&state, &headers, body).await?;
    Ok(ok(&run_search(
        &state.0,
        &index_or(index, "_all"),
        &params.0,
        body,
    )
    .await?))
}

pub(super) async fn msearch(
    state: State<SharedState>,
    index: OptionalIndex,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    run_msearch(
        state.0,
        index.map(|Path(index)| index),
        params.0,
        headers,
        body,
    )
    .await
}

async fn run_msearch(
    state: SharedState,
    index: Option<String>,
    params: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let started = Instant::now();
    let body = read_body(&state, &headers, body).await?;
    let lines = body.lines();
    let searches = lines.len().div_ceil(2);
    if searches > MAX_MSEARCH_SEARCHES {
        return Err(bad_request(
            "illegal_argument_exception",
            format!(
                "this _msearch holds {searches} searches, more than the {MAX_MSEARCH_SEARCHES} Lookout runs in one request; split it"
            ),
        ));
    }
    // each answer is written out as it comes, and the whole answer may not outgrow what
    // a request may be: beyond it the remaining searches fail instead of running
    let max_answer_bytes = usize::try_from(state.max_body_bytes).unwrap_or(usize::MAX);
    let mut answer_bytes = 0usize;
    let mut lines = lines.iter();
    let mut responses: Vec<String> = Vec::with_capacity(searches);
    while let Some(header_line) = lines.next() {
        let body_line = lines.next();
        let result = async {
            let header = parse_json_body(header_line)?.unwrap_or_else(|| json!({}));
            let body = body_line
                .map(|line| parse_json_body(line))
                .transpose()?
                .flatten();
            let expression = match header.get("index") {
                Some(Value::String(name)) => name.clone(),
                Some(Value::Array(names)) => names
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                _ => index.clone().unwrap_or_else(|| "_all".into()),
            };
            let mut item_params = params.clone();
            if let Some(Value::Bool(true)) = header.get("ignore_unavailable") {
                item_params.insert("ignore_unavailable".into(), "true".into());
            }
            run_search(&state, &expression, &item_params, body).await
        }
        .await;
        let response = if answer_bytes > max_answer_bytes {
            ApiError::new(
                ErrorCode::TooManyRequests,
                "too_large_answer_exception",
                format!(
                    "the _msearch answer outgrew {max_answer_bytes} bytes (ingest.max_body_bytes) before this search; ask for fewer or smaller hits"
                ),
            )
            .es_body()
        } else {
            match result {
                Ok(mut response) => {
                    response["status"] = json!(200);
                    response
                }
                Err(error) => error.es_body(),
            }
        };
        let text = response.to_string();
        answer_bytes += text.len();
        responses.push(text);
    }
    let took = started.elapsed().as_millis() as u64;
    Ok(crate::server::response::json_text(
        StatusCode::OK,
        format!(
            "{{\"took\":{took},\"responses\":[{}]}}",
            responses.join(",")
        ),
    ))
}

async fn run_count(
    state: &SharedState,
    expression: &str,
    params: &HashMap<String, String>,
    body: Option<Value>,
) -> ApiResult {
    let started = Instant::now();
    state.ingest.before_search().await;
    let indices = resolve(state, expression, params)?;
    let query = count_query(body.as_ref(), params, &parse_context())?;
    let store = state.store.clone();
    let scope = search::Scope::new(&indices, &query);
    let shards = scope.targets.len().max(1);
    let count = on_search_pool(state, move |_| search::count(&store, &scope, &query)).await??;
    state.telemetry.query_seconds.observe(started.elapsed());
    Ok(ok(
        &json!({"count": count, "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0}}),
    ))
}

pub(super) async fn count(
    state: State<SharedState>,
    index: OptionalIndex,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = read_json_body(&state, &headers, body).await?;
    run_count(&state.0, &index_or(index, "_all"), &params.0, body).await
}

/// A scroll keep-alive (`"1m"`), at most [`MAX_KEEP_ALIVE`](crate::index::search::scroll::MAX_KEEP_ALIVE) as in Elasticsearch.
pub(super) fn parse_keep_alive(text: &str) -> Result<std::time::Duration, ApiError> {
    let keep_alive = crate::duration_serde::parse(text).map_err(|error| {
        bad_request(
            "illegal_argument_exception",
            format!("scroll keep-alive: {error}"),
        )
    })?;
    if keep_alive > crate::index::search::scroll::MAX_KEEP_ALIVE {
        return Err(bad_request(
            "illegal_argument_exception",
            format!(
                "Keep alive for request ({text}) is too large. It must be less than (24h). This limit can be set by changing the [search.max_keep_alive] cluster level setting."
            ),
        ));
    }
    Ok(keep_alive)
}
