//! The `[datasources.NAME]` for people: `GET /_lookout/datasources` lists them, and
//! `/_lookout/datasources/NAME/api/v1/{query,query_range,labels,label/L/values}` relays a
//! query to that Prometheus-compatible API with its auth and timeout, so the UI's metrics
//! page (and anyone with the read role) can chart metrics Lookout does not store without
//! holding the datasource's credentials.
//!
//! Only those read endpoints and Prometheus' own query parameters are relayed; the
//! remote's JSON answer comes back as it came (its status too), so its `bad_data` errors
//! read as they would against it. A remote that cannot be reached, times out or answers
//! something that is not JSON is a Prometheus-shaped `unavailable` (503) or `timeout`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::SharedState;
use super::error::{ApiError, ErrorCode, PrometheusError};
use super::prometheus_query::{Params, bad_data};
use super::response::{json_response, ok};
use crate::datasource::DatasourceError;

/// The query parameters relayed; any other is refused rather than passed on.
const RELAYED: &[&str] = &[
    "query", "time", "start", "end", "step", "timeout", "match[]", "limit",
];

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_lookout/datasources", get(list))
        .route(
            "/_lookout/datasources/{name}/api/v1/{endpoint}",
            get(endpoint).post(endpoint),
        )
        .route(
            "/_lookout/datasources/{name}/api/v1/label/{label}/values",
            get(label_values),
        )
}

/// `GET /_lookout/datasources`: the names and kinds (never URLs or credentials).
async fn list(State(state): State<SharedState>) -> Response {
    let datasources: Vec<_> = state
        .series
        .datasources
        .names()
        .map(|name| json!({"name": name, "type": "prometheus"}))
        .collect();
    ok(&json!({ "datasources": datasources }))
}

/// `query`, `query_range` and `labels` (GET or form POST), relayed as they came.
async fn endpoint(
    State(state): State<SharedState>,
    Path((name, endpoint)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !matches!(endpoint.as_str(), "query" | "query_range" | "labels") {
        return PrometheusError(ApiError::new(
            ErrorCode::NotFound,
            "not_found",
            format!(
                "/api/v1/{endpoint} is not relayed to datasources; query, query_range, labels and label/NAME/values are"
            ),
        ))
        .into_response();
    }
    relay(&state, &name, &endpoint, raw, &headers, &body).await
}

async fn label_values(
    State(state): State<SharedState>,
    Path((name, label)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let valid = crate::rules::model::valid_metric_name(&label) && !label.contains(':');
    if !valid {
        return bad_data(format!(
            "invalid label name {label:?}: a label name is [a-zA-Z_][a-zA-Z0-9_]*"
        ))
        .into_response();
    }
    let endpoint = format!("label/{label}/values");
    relay(&state, &name, &endpoint, raw, &headers, &Bytes::new()).await
}

/// Relays `endpoint` with the request's Prometheus parameters to datasource `name`.
async fn relay(
    state: &SharedState,
    name: &str,
    endpoint: &str,
    raw: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let params = match Params::read(raw, headers, body) {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    if let Some((key, _)) = params
        .pairs()
        .iter()
        .find(|(key, _)| !RELAYED.contains(&key.as_str()))
    {
        return bad_data(format!(
            "parameter {key:?} is not relayed to a datasource; use {}",
            RELAYED.join(", ")
        ))
        .into_response();
    }
    let pairs: Vec<(&str, &str)> = params
        .pairs()
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let datasources = &state.series.datasources;
    match datasources.get(name, endpoint, &pairs).await {
        Ok(answer) => match serde_json::from_slice::<serde_json::Value>(&answer.body) {
            Ok(value) => {
                let status =
                    StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
                json_response(status, &value)
            }
            Err(_) => unavailable(format!(
            "datasource `{name}` answered HTTP {} with something that is not JSON: {}",
            answer.status,
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
            )),
        },
        Err(DatasourceError::Unknown(_)) => PrometheusError(ApiError::new(
            ErrorCode::NotFound,
            "not_found",
            format!(
                "datasource `{name}` is not configured; GET /_lookout/datasources lists those that are"
            ),
        ))
        .into_response(),
        Err(error @ DatasourceError::Timeout { .. }) => {
            PrometheusError(ApiError::new(ErrorCode::Timeout, "timeout", error.to_string()))
                .into_response()
        }
        Err(error) => unavailable(error.to_string()),
    }
}

fn unavailable(reason: String) -> Response {
    PrometheusError(ApiError::new(ErrorCode::Unavailable, "unavailable", reason)).into_response()
}
