//! The Elasticsearch-compatible API (ES 8 shapes): ingest (`_bulk`, `_doc`, `_create`),
//! search (`_search`, scroll, `_msearch`, `_count`), index management, `_cat/indices`,
//! `_mapping`, `_field_caps`, `/` and `_cluster/health`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Map, Value, json};

use super::SharedState;
use super::bulk_answer;
use super::filter_path::{self, FilterPath};
use super::query_pool::PoolError;
use super::response::{json_response, ok};
use crate::error::{ApiError, ErrorCode};
use crate::index::query::dsl::{ParseContext, parse_query};
use crate::index::query::lucene::{self, LuceneOptions};
use crate::index::query::{Operator, Query as LogQuery};
use crate::index::search::{self, ScoredHit, SearchRequest, SourceFilter, TrackTotalHits};
use crate::index::store::LogIndex;
use crate::ingest::bulk::ActionKind;
use crate::ingest::{Item, event};

/// ES version we answer as: 8.x is what the official clients and tools expect.
pub const ES_VERSION: &str = "8.15.0";

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/", get(root).head(|| async { StatusCode::OK }))
        .route("/_cluster/health", get(cluster_health))
        .route("/_cluster/health/{index}", get(cluster_health))
        .route("/_bulk", post(bulk).put(bulk))
        .route("/{index}/_bulk", post(bulk).put(bulk))
        .route("/{index}/_doc", post(create_doc))
        .route(
            "/{index}/_doc/{id}",
            put(put_doc)
                .post(put_doc)
                .get(get_doc)
                .delete(delete_doc)
                .head(head_doc),
        )
        .route(
            "/{index}/_create/{id}",
            put(create_doc_with_id).post(create_doc_with_id),
        )
        .route("/_search", get(search).post(search))
        .route("/{index}/_search", get(search).post(search))
        .route(
            "/_search/scroll",
            get(scroll).post(scroll).delete(clear_scroll),
        )
        .route(
            "/_search/scroll/{id}",
            get(scroll_by_path)
                .post(scroll_by_path)
                .delete(clear_scroll_by_path),
        )
        .route("/_msearch", get(msearch).post(msearch))
        .route("/{index}/_msearch", get(msearch).post(msearch))
        .route("/_count", get(count).post(count))
        .route("/{index}/_count", get(count).post(count))
        .route("/_refresh", get(refresh).post(refresh))
        .route("/{index}/_refresh", get(refresh).post(refresh))
        .route("/_cat/indices", get(cat_indices))
        .route("/_cat/indices/{index}", get(cat_indices))
        .route(
            "/{index}",
            put(create_index)
                .head(head_index)
                .delete(delete_index)
                .get(get_index),
        )
        .route("/_mapping", get(mapping))
        .route("/{index}/_mapping", get(mapping))
        .route("/_field_caps", get(field_caps).post(field_caps))
        .route("/{index}/_field_caps", get(field_caps).post(field_caps))
        .layer(axum::middleware::from_fn(filter_path::filter_responses))
}

type Params = Query<HashMap<String, String>>;
type ApiResult = Result<Response, ApiError>;

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn parse_context() -> ParseContext {
    ParseContext {
        now_micros: now_micros(),
        timestamp_field: "@timestamp".into(),
    }
}

fn bad_request(kind: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::bad_request(kind, reason)
}

fn parse_json_body(bytes: &[u8]) -> Result<Option<Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes).map(Some).map_err(|error| {
        bad_request(
            "x_content_parse_exception",
            format!(
                "[{}:{}] request body is not valid JSON: {error}",
                error.line(),
                error.column()
            ),
        )
    })
}

async fn read_body(
    state: &SharedState,
    headers: &HeaderMap,
    body: Body,
) -> Result<super::body::ReadBody, ApiError> {
    super::body::read(
        headers,
        body,
        state.max_body_bytes,
        &state.ingest.in_flight,
        &state.telemetry,
    )
    .await
}

// ---------------------------------------------------------------- cluster

async fn root(State(state): State<SharedState>) -> Response {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "lookout".into());
    ok(&json!({
        "name": host,
        "cluster_name": "lookout",
        "cluster_uuid": "lookout-single-node",
        "version": {
            "number": ES_VERSION,
            "build_flavor": "default",
            "build_type": "lookout",
            "build_hash": env!("CARGO_PKG_VERSION"),
            "build_date": "2026-01-01T00:00:00.000Z",
            "build_snapshot": false,
            "lucene_version": "9.11.1",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
        "lookout": {"version": env!("CARGO_PKG_VERSION"), "uptime_seconds": state.started.elapsed().as_secs()},
    }))
}

/// `yellow` with the reason while storage is degraded (writes refused, every document
/// searchable): Elasticsearch keeps `_cluster/health` green at the flood stage, since no
/// shard becomes unassigned, and turns the disk indicator of `_health_report` red; red
/// here would claim data is unsearchable, and yellow still satisfies readers that wait
/// for `wait_for_status=yellow`.
async fn cluster_health(State(state): State<SharedState>) -> Response {
    let shards = state.store.names().len();
    let refusal = state.ingest.disk().refusal();
    let mut health = json!({
        "cluster_name": "lookout",
        "status": if refusal.is_some() { "yellow" } else { "green" },
        "timed_out": false,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": shards,
        "active_shards": shards,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0,
    });
    if let Some(reason) = refusal {
        health["lookout"] = json!({"storage": "read_only", "reason": reason});
    }
    ok(&health)
}

// ---------------------------------------------------------------- ingest

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

/// `{index}` of routes that exist with and without it.
type OptionalIndex = Option<Path<String>>;

async fn bulk(
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
    let body = read_body(&state, &headers, body).await?;
    let rules = state.ingest.settings.rules.clone();
    let items = tokio::task::spawn_blocking(move || {
        let items =
            crate::ingest::parse_bulk(&body.lines(), index.as_deref(), &rules, now_micros());
        drop(body);
        items
    })
    .await
    .map_err(|error| ApiError::internal("parsing a bulk body", error))?;
    let outcome = write_items(&state, items, agent, refresh).await?;
    let errors = outcome.items.iter().any(|item| item.failure().is_some());
    let text = bulk_answer::answer(
        started.elapsed().as_millis(),
        errors,
        &outcome.items,
        outcome.seq,
        filter.as_ref(),
    );
    let mut response = super::response::json_text(StatusCode::OK, text);
    response.extensions_mut().insert(filter_path::Filtered);
    Ok(response)
}

async fn write_items(
    state: &SharedState,
    items: Vec<Item>,
    agent: Option<(String, Option<i64>)>,
    refresh: Refresh,
) -> Result<crate::ingest::WriteOutcome, ApiError> {
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

async fn create_doc(
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

async fn put_doc(
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

async fn create_doc_with_id(
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

async fn delete_doc(
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

async fn get_doc(
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

async fn head_doc(state: State<SharedState>, path: Path<(String, String)>) -> Response {
    match get_doc(state, path).await {
        Ok(response) => response.status().into_response(),
        Err(error) => error.code.status().into_response(),
    }
}

// ---------------------------------------------------------------- search

/// Resolves the `{index}` expression of a search-like request.
fn resolve(
    state: &SharedState,
    expression: &str,
    params: &HashMap<String, String>,
) -> Result<Vec<Arc<LogIndex>>, ApiError> {
    let ignore = params
        .get("ignore_unavailable")
        .is_some_and(|value| value == "true");
    state
        .store
        .resolve(expression, ignore)
        .map_err(|missing| ApiError::index_not_found(&missing))
}

/// Builds a search request from a JSON body and URL parameters (URL wins, as in ES).
/// A search's `timeout` (`"500ms"`, `"10s"`): past it the search stops between
/// partitions and answers what it found with `timed_out: true`, as Elasticsearch does.
fn search_timeout(text: &str) -> Result<Duration, ApiError> {
    crate::duration_serde::parse(text)
        .map_err(|error| bad_request("illegal_argument_exception", format!("timeout: {error}")))
}

pub fn search_request(
    body: Option<&Value>,
    params: &HashMap<String, String>,
) -> Result<SearchRequest, ApiError> {
    let context = parse_context();
    let mut request = SearchRequest::default();
    let empty = Map::new();
    let body = match body {
        None => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(bad_request(
                "parsing_exception",
                "the search body must be a JSON object",
            ));
        }
    };
    for (key, value) in body {
        match key.as_str() {
            "query" => request.query = parse_query(value, &context)?,
            "from" => request.from = usize_of(value, "from")?,
            "size" => request.size = usize_of(value, "size")?,
            "sort" => request.sort = search::parse_sort(value)?,
            "_source" => request.source = source_filter(value)?,
            "track_total_hits" => request.track_total_hits = track_total(value)?,
            "aggs" | "aggregations" => request.aggregations = Some(value.clone()),
            "timeout" => request.timeout = Some(search_timeout(value.as_str().unwrap_or(""))?),
            "track_scores"
            | "version"
            | "seq_no_primary_term"
            | "stored_fields"
            | "docvalue_fields"
            | "fields"
            | "highlight"
            | "explain"
            | "min_score"
            | "terminate_after"
            | "runtime_mappings"
            | "script_fields"
            | "search_after"
            | "pit"
            | "collapse"
            | "suggest"
            | "rescore"
            | "indices_boost"
            | "profile"
            | "stats" => {}
            other => {
                return Err(bad_request(
                    "parsing_exception",
                    format!(
                        "unknown key [{other}] in the search body; see README's API section for what is supported"
                    ),
                ));
            }
        }
    }
    if let Some(text) = params.get("q") {
        let options = LuceneOptions {
            default_fields: params
                .get("df")
                .map_or_else(|| vec!["*".to_string()], |field| vec![field.clone()]),
            default_operator: match params
                .get("default_operator")
                .map(|value| value.to_ascii_lowercase())
                .as_deref()
            {
                Some("and") => Operator::And,
                _ => Operator::Or,
            },
            lenient: params.get("lenient").is_some_and(|value| value == "true"),
        };
        request.query = lucene::parse(text, &context, &options)?;
    }
    if let Some(value) = params.get("timeout") {
        request.timeout = Some(search_timeout(value)?);
    }
    if let Some(value) = params.get("size") {
        request.size = value.parse().map_err(|_| {
            bad_request(
                "illegal_argument_exception",
                format!("size [{value}] is not a number"),
            )
        })?;
    }
    if let Some(value) = params.get("from") {
        request.from = value.parse().map_err(|_| {
            bad_request(
                "illegal_argument_exception",
                format!("from [{value}] is not a number"),
            )
        })?;
    }
    if let Some(value) = params.get("sort") {
        request.sort = search::parse_sort(&Value::String(value.clone()))?;
    }
    if let Some(value) = params.get("_source") {
        request.source = match value.as_str() {
            "false" => SourceFilter::default(),
            "true" => SourceFilter::all(),
            list => SourceFilter {
                enabled: true,
                includes: list.split(',').map(str::to_string).collect(),
                excludes: Vec::new(),
            },
        };
    }
    if let Some(value) = params.get("_source_includes") {
        request.source.includes = value.split(',').map(str::to_string).collect();
    }
    if let Some(value) = params.get("_source_excludes") {
        request.source.excludes = value.split(',').map(str::to_string).collect();
    }
    if let Some(value) = params.get("track_total_hits") {
        request.track_total_hits =
            track_total(&serde_json::from_str(value).unwrap_or(Value::String(value.clone())))?;
    }
    Ok(request)
}

fn usize_of(value: &Value, name: &str) -> Result<usize, ApiError> {
    value.as_u64().map(|number| number as usize).ok_or_else(|| {
        bad_request(
            "parsing_exception",
            format!("[{name}] must be a non-negative number, got {value}"),
        )
    })
}

fn source_filter(value: &Value) -> Result<SourceFilter, ApiError> {
    let list = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(text)) => vec![text.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    };
    Ok(match value {
        Value::Bool(enabled) => SourceFilter {
            enabled: *enabled,
            ..SourceFilter::default()
        },
        Value::String(_) | Value::Array(_) => SourceFilter {
            enabled: true,
            includes: list(Some(value)),
            excludes: Vec::new(),
        },
        Value::Object(map) => SourceFilter {
            enabled: true,
            includes: list(map.get("includes").or_else(|| map.get("include"))),
            excludes: list(map.get("excludes").or_else(|| map.get("exclude"))),
        },
        other => {
            return Err(bad_request(
                "parsing_exception",
                format!("[_source] must be a boolean, string, array or object, got {other}"),
            ));
        }
    })
}

fn track_total(value: &Value) -> Result<TrackTotalHits, ApiError> {
    match value {
        Value::Bool(true) => Ok(TrackTotalHits::Exact),
        Value::Bool(false) => Ok(TrackTotalHits::Off),
        Value::Number(number) => Ok(number
            .as_u64()
            .map_or(TrackTotalHits::Exact, TrackTotalHits::UpTo)),
        Value::String(text) if text == "true" => Ok(TrackTotalHits::Exact),
        Value::String(text) if text == "false" => Ok(TrackTotalHits::Off),
        other => Err(bad_request(
            "parsing_exception",
            format!("[track_total_hits] must be a boolean or a number, got {other}"),
        )),
    }
}

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

/// Pinned searches of open scrolls.
#[derive(Default)]
pub struct Scrolls {
    contexts: Mutex<HashMap<String, ScrollContext>>,
}

struct ScrollContext {
    scope: Arc<search::Scope>,
    request: SearchRequest,
    last: Option<Arc<ScoredHit>>,
    total: u64,
    keep_alive: Duration,
    expires: Instant,
}

const MAX_OPEN_SCROLLS: usize = 500;

/// The longest scroll keep-alive, as Elasticsearch's `search.max_keep_alive` (24h): a
/// client cannot hold a scroll slot for longer without coming back.
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(24 * 3600);

/// The most searches one `_msearch` may hold (Elasticsearch runs them a few at a time,
/// `max_concurrent_searches`; Lookout runs them in turn and bounds the total).
const MAX_MSEARCH_SEARCHES: usize = 1024;

fn parse_keep_alive(text: &str) -> Result<Duration, ApiError> {
    let keep_alive = crate::duration_serde::parse(text).map_err(|error| {
        bad_request(
            "illegal_argument_exception",
            format!("scroll keep-alive: {error}"),
        )
    })?;
    if keep_alive > MAX_KEEP_ALIVE {
        return Err(bad_request(
            "illegal_argument_exception",
            format!(
                "Keep alive for request ({text}) is too large. It must be less than (24h). This limit can be set by changing the [search.max_keep_alive] cluster level setting."
            ),
        ));
    }
    Ok(keep_alive)
}

async fn run_search(
    state: &SharedState,
    expression: &str,
    params: &HashMap<String, String>,
    body: Option<Value>,
) -> Result<Value, ApiError> {
    let started = Instant::now();
    state.ingest.before_search().await;
    let indices = resolve(state, expression, params)?;
    let mut request = search_request(body.as_ref(), params)?;
    request.timeout = request.timeout.or(Some(state.search_timeout));
    let scroll = params
        .get("scroll")
        .map(|text| parse_keep_alive(text))
        .transpose()?;
    if scroll.is_some() && request.sort.is_empty() {
        request.sort = vec![search::SortField {
            key: search::SortKey::Doc,
            descending: false,
        }];
    }
    let as_int = params
        .get("rest_total_hits_as_int")
        .is_some_and(|value| value == "true");
    let store = state.store.clone();
    let scope = Arc::new(search::Scope::new(&indices, &request.query));
    let search_scope = scope.clone();
    let search_request = request.clone();
    let (outcome, hits) = on_search_pool(state, move |cancel| {
        let search_request = search_request.cancelled_by(cancel);
        let outcome = search::execute(&store, &search_scope, &search_request, None)?;
        let hits = search::render_hits(
            &store,
            &search_scope.targets,
            &outcome.hits,
            &search_request,
        )?;
        Ok::<_, search::SearchError>((outcome, hits))
    })
    .await?
    .map_err(search_error)?;
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
        let id = crate::index::store::new_uuid();
        let mut contexts = state
            .scrolls
            .contexts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        contexts.retain(|_, context| context.expires > now);
        if contexts.len() >= MAX_OPEN_SCROLLS {
            return Err(ApiError::new(
                ErrorCode::TooManyRequests,
                "exception",
                format!(
                    "too many open scrolls (limit {MAX_OPEN_SCROLLS}); clear finished ones with DELETE /_search/scroll"
                ),
            ));
        }
        let last = outcome.hits.last().cloned().map(Arc::new);
        request.from = 0;
        contexts.insert(
            id.clone(),
            ScrollContext {
                scope,
                request,
                last,
                total: outcome.total,
                keep_alive,
                expires: now + keep_alive,
            },
        );
        response["_scroll_id"] = json!(id);
    }
    Ok(response)
}

/// Runs a search on the search pool (at most `search.max_concurrent` at once, at a lower
/// priority than rules and ingest); a full pool answers 429 at once, as Elasticsearch's
/// rejected search thread pool does.
async fn on_search_pool<T: Send + 'static>(
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

fn search_error(error: search::SearchError) -> ApiError {
    match error {
        search::SearchError::Query(error) => error.into(),
        search::SearchError::Engine(tantivy::TantivyError::AggregationError(
            tantivy::aggregation::AggregationError::BucketLimitExceeded { limit, current },
        )) => bad_request(
            "too_many_buckets_exception",
            format!(
                "Trying to create too many buckets. Must be less than or equal to: [{limit}] but was [{current}]. This limit can be set by changing the [search.max_buckets] cluster level setting."
            ),
        ),
        search::SearchError::Engine(tantivy::TantivyError::AggregationError(error)) => {
            bad_request("illegal_argument_exception", error.to_string())
        }
        search::SearchError::Engine(tantivy::TantivyError::InvalidArgument(reason)) => {
            bad_request("illegal_argument_exception", reason)
        }
        search::SearchError::Engine(error) => ApiError::internal("searching", error),
        // nobody reads it: the client left (Elasticsearch's word for a cancelled task)
        search::SearchError::Canceled => bad_request(
            "task_cancelled_exception",
            search::SearchError::Canceled.to_string(),
        ),
    }
}

/// The index expression of a route, `default` when the route has no `{index}`.
fn index_or(index: OptionalIndex, default: &str) -> String {
    index.map_or_else(|| default.to_string(), |Path(index)| index)
}

async fn search(
    state: State<SharedState>,
    index: OptionalIndex,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = read_body(&state, &headers, body).await?;
    let body = parse_json_body(&body.contiguous())?;
    Ok(ok(&run_search(
        &state.0,
        &index_or(index, "_all"),
        &params.0,
        body,
    )
    .await?))
}

async fn continue_scroll(state: &SharedState, id: &str, keep_alive: Option<&str>) -> ApiResult {
    let started = Instant::now();
    let keep_alive = keep_alive.map(parse_keep_alive).transpose()?;
    let (scope, request, last, total) = {
        let mut contexts = state
            .scrolls
            .contexts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let context = contexts
            .get_mut(id)
            .filter(|context| context.expires > Instant::now())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    "search_context_missing_exception",
                    format!("No search context found for id [{id}]; it expired or was cleared"),
                )
            })?;
        if let Some(keep_alive) = keep_alive {
            context.keep_alive = keep_alive;
        }
        context.expires = Instant::now() + context.keep_alive;
        (
            context.scope.clone(),
            context.request.clone(),
            context.last.clone(),
            context.total,
        )
    };
    let store = state.store.clone();
    let search_scope = scope.clone();
    let search_request = request.clone();
    let (outcome, hits) = on_search_pool(state, move |cancel| {
        let search_request = search_request.cancelled_by(cancel);
        let outcome = search::execute(&store, &search_scope, &search_request, last)?;
        let hits = search::render_hits(
            &store,
            &search_scope.targets,
            &outcome.hits,
            &search_request,
        )?;
        Ok::<_, search::SearchError>((outcome, hits))
    })
    .await?
    .map_err(search_error)?;
    if let Some(last) = outcome.hits.last()
        && let Some(context) = state
            .scrolls
            .contexts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(id)
    {
        context.last = Some(Arc::new(last.clone()));
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

async fn scroll(
    state: State<SharedState>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = read_body(&state, &headers, body).await?;
    let body = parse_json_body(&body.contiguous())?;
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

async fn scroll_by_path(
    state: State<SharedState>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    continue_scroll(&state.0, &id, params.get("scroll").map(String::as_str)).await
}

fn clear(state: &SharedState, ids: Vec<String>) -> Response {
    let mut contexts = state
        .scrolls
        .contexts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let freed = if ids.iter().any(|id| id == "_all") {
        let count = contexts.len();
        contexts.clear();
        count
    } else {
        ids.iter()
            .filter(|id| contexts.remove(*id).is_some())
            .count()
    };
    let status = if freed == 0 && !ids.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    json_response(status, &json!({"succeeded": true, "num_freed": freed}))
}

async fn clear_scroll(
    state: State<SharedState>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = read_body(&state, &headers, body).await?;
    let body = parse_json_body(&body.contiguous())?;
    Ok(clear(&state.0, scroll_ids(body.as_ref(), &params.0)))
}

async fn clear_scroll_by_path(state: State<SharedState>, Path(id): Path<String>) -> Response {
    clear(&state.0, id.split(',').map(str::to_string).collect())
}

async fn msearch(
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
        let error_json = |error: ApiError| {
            let status = error.code.status().as_u16();
            json!({"error": {"root_cause": [{"type": error.kind, "reason": error.reason}], "type": error.kind, "reason": error.reason}, "status": status})
        };
        let response = if answer_bytes > max_answer_bytes {
            error_json(ApiError::new(
                ErrorCode::TooManyRequests,
                "too_large_answer_exception",
                format!(
                    "the _msearch answer outgrew {max_answer_bytes} bytes (ingest.max_body_bytes) before this search; ask for fewer or smaller hits"
                ),
            ))
        } else {
            match result {
                Ok(mut response) => {
                    response["status"] = json!(200);
                    response
                }
                Err(error) => error_json(error),
            }
        };
        let text = response.to_string();
        answer_bytes += text.len();
        responses.push(text);
    }
    let took = started.elapsed().as_millis() as u64;
    Ok(super::response::json_text(
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
    let query = match &body {
        Some(Value::Object(map)) => {
            if let Some(key) = map.keys().find(|key| key.as_str() != "query") {
                return Err(bad_request(
                    "parsing_exception",
                    format!("request does not support [{key}]; _count takes only `query`"),
                ));
            }
            match map.get("query") {
                Some(query) => parse_query(query, &parse_context())?,
                None => LogQuery::MatchAll,
            }
        }
        Some(_) => {
            return Err(bad_request(
                "parsing_exception",
                "the count body must be a JSON object",
            ));
        }
        None => LogQuery::MatchAll,
    };
    let query = match params.get("q") {
        Some(text) => lucene::parse(text, &parse_context(), &LuceneOptions::default())?,
        None => query,
    };
    let store = state.store.clone();
    let scope = search::Scope::new(&indices, &query);
    let shards = scope.targets.len().max(1);
    let count = on_search_pool(state, move |_| search::count(&store, &scope, &query))
        .await?
        .map_err(search_error)?;
    state.telemetry.query_seconds.observe(started.elapsed());
    Ok(ok(
        &json!({"count": count, "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0}}),
    ))
}

async fn count(
    state: State<SharedState>,
    index: OptionalIndex,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = read_body(&state, &headers, body).await?;
    let body = parse_json_body(&body.contiguous())?;
    run_count(&state.0, &index_or(index, "_all"), &params.0, body).await
}

async fn refresh(
    State(state): State<SharedState>,
    index: OptionalIndex,
    params: Params,
) -> ApiResult {
    resolve(&state, &index_or(index, "_all"), &params.0)?;
    state.ingest.refresh().await;
    Ok(ok(
        &json!({"_shards": {"total": 1, "successful": 1, "failed": 0}}),
    ))
}

// ---------------------------------------------------------------- indices

async fn create_index(State(state): State<SharedState>, Path(index): Path<String>) -> ApiResult {
    match state.store.create_index(&index) {
        Ok(true) => Ok(ok(
            &json!({"acknowledged": true, "shards_acknowledged": true, "index": index}),
        )),
        Ok(false) => Err(ApiError {
            code: ErrorCode::BadRequest,
            kind: "resource_already_exists_exception",
            reason: format!("index [{index}] already exists"),
            index: Some(index),
        }),
        Err(crate::index::StoreError::InvalidName { name, reason }) => Err(ApiError {
            code: ErrorCode::BadRequest,
            kind: "invalid_index_name_exception",
            reason: format!("Invalid index name [{name}], {reason}"),
            index: Some(name),
        }),
        Err(error) => Err(ApiError::internal("creating an index", error)),
    }
}

async fn head_index(
    State(state): State<SharedState>,
    Path(index): Path<String>,
    params: Params,
) -> StatusCode {
    match resolve(&state, &index, &params.0) {
        Ok(found) if !found.is_empty() => StatusCode::OK,
        _ => StatusCode::NOT_FOUND,
    }
}

async fn delete_index(
    State(state): State<SharedState>,
    Path(index): Path<String>,
    params: Params,
) -> ApiResult {
    let indices = resolve(&state, &index, &params.0)?;
    for log_index in indices {
        let store = state.store.clone();
        let name = log_index.name.clone();
        drop(log_index);
        tokio::task::spawn_blocking(move || store.delete_index(&name))
            .await
            .map_err(|error| ApiError::internal("deleting an index", error))?
            .map_err(|error| ApiError::internal("deleting an index", error))?;
    }
    Ok(ok(&json!({"acknowledged": true})))
}

async fn get_index(
    State(state): State<SharedState>,
    Path(index): Path<String>,
    params: Params,
) -> ApiResult {
    let indices = resolve(&state, &index, &params.0)?;
    let mut body = Map::new();
    for log_index in indices {
        body.insert(
            log_index.name.clone(),
            json!({
                "aliases": {},
                "mappings": mapping_of(&log_index),
                "settings": {"index": {
                    "number_of_shards": "1", "number_of_replicas": "0", "uuid": log_index.uuid,
                    "creation_date": log_index.created_millis.to_string(), "provided_name": log_index.name,
                    "version": {"created": "8150099"},
                }},
            }),
        );
    }
    Ok(ok(&Value::Object(body)))
}

async fn cat_indices(state: State<SharedState>, index: OptionalIndex, params: Params) -> ApiResult {
    // document counts come from what is searchable
    state.ingest.before_search().await;
    cat(&state.0, &index_or(index, "*"), &params.0)
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["b", "kb", "mb", "gb", "tb"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}b")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

fn cat(state: &SharedState, expression: &str, params: &HashMap<String, String>) -> ApiResult {
    let indices = resolve(state, expression, params)?;
    let raw_bytes = params.get("bytes").is_some_and(|unit| unit == "b");
    let rows: Vec<Vec<(&str, String)>> = indices
        .iter()
        .map(|index| {
            let size = index.disk_bytes();
            let size_text = if raw_bytes {
                size.to_string()
            } else {
                human_bytes(size)
            };
            vec![
                ("health", "green".to_string()),
                ("status", "open".to_string()),
                ("index", index.name.clone()),
                ("uuid", index.uuid.clone()),
                ("pri", "1".to_string()),
                ("rep", "0".to_string()),
                ("docs.count", index.doc_count().to_string()),
                ("docs.deleted", "0".to_string()),
                ("store.size", size_text.clone()),
                ("pri.store.size", size_text.clone()),
                ("dataset.size", size_text),
            ]
        })
        .collect();
    if params.get("format").is_some_and(|format| format == "json") {
        let body: Vec<Value> = rows
            .into_iter()
            .map(|row| {
                Value::Object(
                    row.into_iter()
                        .map(|(key, value)| (key.to_string(), json!(value)))
                        .collect(),
                )
            })
            .collect();
        return Ok(ok(&Value::Array(body)));
    }
    let header: Vec<&str> = [
        "health",
        "status",
        "index",
        "uuid",
        "pri",
        "rep",
        "docs.count",
        "docs.deleted",
        "store.size",
        "pri.store.size",
        "dataset.size",
    ]
    .to_vec();
    let mut table: Vec<Vec<String>> = Vec::new();
    if params.contains_key("v") {
        table.push(header.iter().map(|name| name.to_string()).collect());
    }
    table.extend(
        rows.into_iter()
            .map(|row| row.into_iter().map(|(_, value)| value).collect()),
    );
    let widths: Vec<usize> = (0..header.len())
        .map(|column| table.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(column, cell)| format!("{cell:width$}", width = widths[column]))
            .collect();
        text.push_str(line.join(" ").trim_end());
        text.push('\n');
    }
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    Ok(response)
}

/// The ES type names of each field path seen in `index`.
pub fn field_types(index: &LogIndex) -> BTreeMap<String, BTreeSet<&'static str>> {
    use crate::index::fields::{KIND_BOOLEAN, KIND_DOUBLE, KIND_LONG, KIND_TEXT};
    let mut fields: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    fields
        .entry("@timestamp".into())
        .or_default()
        .insert("date");
    for (path, kinds) in index.fields() {
        let entry = fields.entry(path).or_default();
        for (bit, name) in [
            (KIND_TEXT, "text"),
            (KIND_LONG, "long"),
            (KIND_DOUBLE, "double"),
            (KIND_BOOLEAN, "boolean"),
        ] {
            if kinds & bit != 0 {
                entry.insert(name);
            }
        }
    }
    fields
}

fn mapping_of(index: &LogIndex) -> Value {
    let mut properties = Map::new();
    for (path, kinds) in field_types(index) {
        // one type per field in a mapping: text wins (it is searchable as both)
        let kind = if kinds.contains("text") {
            "text"
        } else if kinds.contains("double") {
            "double"
        } else {
            kinds.iter().next().copied().unwrap_or("keyword")
        };
        let leaf = if kind == "text" {
            json!({"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}})
        } else {
            json!({"type": kind})
        };
        let mut target = &mut properties;
        let segments: Vec<&str> = path.split('.').collect();
        for segment in &segments[..segments.len() - 1] {
            let entry = target
                .entry(segment.to_string())
                .or_insert_with(|| json!({"properties": {}}));
            if entry.get("properties").is_none() {
                entry["properties"] = json!({});
            }
            target = entry["properties"]
                .as_object_mut()
                .expect("properties is an object");
        }
        target.insert(segments[segments.len() - 1].to_string(), leaf);
    }
    json!({"properties": properties})
}

async fn mapping(
    State(state): State<SharedState>,
    index: OptionalIndex,
    params: Params,
) -> ApiResult {
    let indices = resolve(&state, &index_or(index, "*"), &params.0)?;
    let body: Map<String, Value> = indices
        .iter()
        .map(|index| (index.name.clone(), json!({"mappings": mapping_of(index)})))
        .collect();
    Ok(ok(&Value::Object(body)))
}

async fn field_caps(
    State(state): State<SharedState>,
    index: OptionalIndex,
    params: Params,
) -> ApiResult {
    let indices = resolve(&state, &index_or(index, "*"), &params.0)?;
    let wanted: Vec<String> = params
        .get("fields")
        .map(|fields| fields.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| vec!["*".into()]);
    let mut fields: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for log_index in &indices {
        for (path, kinds) in field_types(log_index) {
            let entry = fields.entry(path.clone()).or_default();
            entry.extend(kinds.iter().copied());
            if kinds.contains("text") {
                fields
                    .entry(format!("{path}.keyword"))
                    .or_default()
                    .insert("keyword");
            }
        }
    }
    let body: Map<String, Value> = fields
        .into_iter()
        .filter(|(path, _)| wanted.iter().any(|pattern| crate::index::store::glob_match(pattern, path)))
        .map(|(path, kinds)| {
            let caps: Map<String, Value> = kinds
                .into_iter()
                .map(|kind| (kind.to_string(), json!({"type": kind, "metadata_field": false, "searchable": true, "aggregatable": kind != "text"})))
                .collect();
            (path, Value::Object(caps))
        })
        .collect();
    Ok(ok(
        &json!({"indices": indices.iter().map(|index| index.name.clone()).collect::<Vec<_>>(), "fields": body}),
    ))
}
