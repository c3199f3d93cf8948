//! The Elasticsearch-compatible API (ES 8 shapes), one file per area:
//!
//! - `documents`: ingest (`_bulk`, `_doc`, `_create`) and single-document reads;
//!   `bulk_body` reads, parses and writes a `_bulk` body piece by piece as it arrives;
//! - `search`: `_search`, `_msearch`, `_count`;
//! - `scroll`: continuing and clearing scrolls (`_search/scroll`);
//! - `indices`: index management, `_refresh`, `_cat/indices`, `_mapping`, `_field_caps`;
//! - `cluster`: `/` and `_cluster/health`.
//!
//! This module holds the routes and what every area reads a request with; errors are
//! [`ApiError`]s, answered as ES error bodies.

mod bulk_body;
mod cluster;
mod documents;
mod indices;
mod scroll;
pub(super) mod search;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde_json::Value;

use super::SharedState;
use super::error::ApiError;
use super::filter_path;
use crate::index::query::dsl::ParseContext;
use crate::index::store::LogIndex;

pub use documents::agent_watermark;

/// ES version we answer as: 8.x is what the official clients and tools expect.
pub const ES_VERSION: &str = "8.15.0";

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/", get(cluster::root).head(|| async { StatusCode::OK }))
        .route("/_cluster/health", get(cluster::cluster_health))
        .route("/_cluster/health/{index}", get(cluster::cluster_health))
        .route("/_bulk", post(documents::bulk).put(documents::bulk))
        .route("/{index}/_bulk", post(documents::bulk).put(documents::bulk))
        .route("/{index}/_doc", post(documents::create_doc))
        .route(
            "/{index}/_doc/{id}",
            put(documents::put_doc)
                .post(documents::put_doc)
                .get(documents::get_doc)
                .delete(documents::delete_doc)
                .head(documents::head_doc),
        )
        .route(
            "/{index}/_create/{id}",
            put(documents::create_doc_with_id).post(documents::create_doc_with_id),
        )
        .route("/_search", get(search::search).post(search::search))
        .route("/{index}/_search", get(search::search).post(search::search))
        .route(
            "/_search/scroll",
            get(scroll::scroll)
                .post(scroll::scroll)
                .delete(scroll::clear_scroll),
        )
        .route(
            "/_search/scroll/{id}",
            get(scroll::scroll_by_path)
                .post(scroll::scroll_by_path)
                .delete(scroll::clear_scroll_by_path),
        )
        .route("/_msearch", get(search::msearch).post(search::msearch))
        .route(
            "/{index}/_msearch",
            get(search::msearch).post(search::msearch),
        )
        .route("/_count", get(search::count).post(search::count))
        .route("/{index}/_count", get(search::count).post(search::count))
        .route("/_refresh", get(indices::refresh).post(indices::refresh))
        .route(
            "/{index}/_refresh",
            get(indices::refresh).post(indices::refresh),
        )
        .route("/_cat/indices", get(indices::cat_indices))
        .route("/_cat/indices/{index}", get(indices::cat_indices))
        .route(
            "/{index}",
            put(indices::create_index)
                .head(indices::head_index)
                .delete(indices::delete_index)
                .get(indices::get_index),
        )
        .route("/_mapping", get(indices::mapping))
        .route("/{index}/_mapping", get(indices::mapping))
        .route(
            "/_field_caps",
            get(indices::field_caps).post(indices::field_caps),
        )
        .route(
            "/{index}/_field_caps",
            get(indices::field_caps).post(indices::field_caps),
        )
        .layer(axum::middleware::from_fn(filter_path::filter_responses))
}

/// A request's URL parameters.
type Params = Query<HashMap<String, String>>;
/// `{index}` of routes that exist with and without it.
type OptionalIndex = Option<Path<String>>;
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
        &state.in_flight,
        &state.telemetry,
    )
    .await
}

/// Reads a request body (bounded as every body is) and parses it as an optional JSON
/// object: a blank body is `None`.
async fn read_json_body(
    state: &SharedState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Option<Value>, ApiError> {
    let body = read_body(state, headers, body).await?;
    parse_json_body(&body.contiguous())
}

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

/// The index expression of a route, `default` when the route has no `{index}`.
fn index_or(index: OptionalIndex, default: &str) -> String {
    index.map_or_else(|| default.to_string(), |Path(index)| index)
}
