//! `GET /_lookout/patterns?index=&q=&from=&to=&size=&field=`: the top templates of a
//! search's lines (see [`crate::patterns`]), each with its count, its newest line and a
//! query for its literal tokens; the tenant's indices, `read` role, on the search pool
//! like `_search`, answering errors in Elasticsearch's shape.
//!
//! At most [`crate::patterns::MAX_LINES_MINED`] lines are mined, the newest; beyond that
//! the answer is of a sample and says so (`"sampled": true`, `lines_mined` of
//! `lines_matched`). The search timeout (`search.timeout`) stops the mining early too
//! (`"timed_out": true`).

use std::collections::HashMap;
use std::time::Instant;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::SharedState;
use super::error::{ApiError, ErrorCode};
use super::response::ok;
use crate::patterns::read::{LineQuery, ReadError};

/// Templates an answer lists by default, and at most.
const DEFAULT_SIZE: usize = 20;
const MAX_SIZE: usize = 1_000;
const PARAMETERS: [&str; 6] = ["index", "q", "from", "to", "size", "field"];

pub fn routes() -> Router<SharedState> {
    Router::new().route("/_lookout/patterns", get(patterns))
}

async fn patterns(
    State(state): State<SharedState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(unknown) = params
        .keys()
        .find(|name| !PARAMETERS.contains(&name.as_str()))
    {
        return Err(ApiError::bad_request(
            "illegal_argument_exception",
            format!(
                "unknown parameter `{unknown}`; /_lookout/patterns takes {}",
                PARAMETERS.join(", ")
            ),
        ));
    }
    let now = chrono::Utc::now().timestamp_micros();
    let from = time_parameter(&params, "from", "now-1h", now)?;
    let to = time_parameter(&params, "to", "now", now)?;
    if to < from {
        return Err(ApiError::bad_request(
            "illegal_argument_exception",
            "`to` is before `from`; give a range like from=now-1h&to=now",
        ));
    }
    let size = match params.get("size") {
        None => DEFAULT_SIZE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|size| (1..=MAX_SIZE).contains(size))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "illegal_argument_exception",
                    format!("`size`: `{text}` is not a number of templates from 1 to {MAX_SIZE}"),
                )
            })?,
    };
    let index = params.get("index").cloned().unwrap_or_else(|| "*".into());
    let query = Value::String(params.get("q").cloned().unwrap_or_else(|| "*".into()));
    let field = params
        .get("field")
        .cloned()
        .unwrap_or_else(|| "message".into());
    if field.trim().is_empty() {
        return Err(ApiError::bad_request(
            "illegal_argument_exception",
            "`field` is empty; name the text field to mine, e.g. field=message",
        ));
    }
    let store = state.store.clone();
    let deadline = Instant::now() + state.search_timeout;
    let (index_name, field_name) = (index.clone(), field.clone());
    let started = Instant::now();
    let (summary, timed_out) = super::elastic::search::on_search_pool(&state, move |cancel| {
        let cancel = cancel.clone();
        let lines = LineQuery {
            index: &index_name,
            query: &query,
            from_micros: from,
            to_micros: to,
            field: &field_name,
        };
        let stop = || cancel.is_cancelled() || Instant::now() >= deadline;
        let summary = crate::patterns::top_patterns(
            &store,
            &lines,
            size,
            crate::patterns::MAX_LINES_MINED,
            &stop,
        )?;
        Ok::<_, ReadError>((summary, Instant::now() >= deadline))
    })
    .await?
    .map_err(|error| match error {
        ReadError::Query(error) => ApiError::from(error),
        ReadError::Search(error) => ApiError::from(error),
        ReadError::Index { .. } => ApiError::new(
            ErrorCode::BadRequest,
            "invalid_index_name_exception",
            error.to_string(),
        ),
    })?;
    let time = |micros: i64| {
        chrono::DateTime::from_timestamp_micros(micros)
            .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    Ok(ok(&json!({
        "took": started.elapsed().as_millis() as u64,
        "timed_out": timed_out,
        "index": index,
        "field": field,
        "from": time(from),
        "to": time(to),
        "lines_matched": summary.lines_matched,
        "lines_mined": summary.lines_mined,
        "max_lines_mined": crate::patterns::MAX_LINES_MINED,
        "sampled": summary.sampled,
        "templates": summary.templates,
        "templates_forgotten": summary.templates_forgotten,
        "patterns": summary.patterns,
    })))
}

/// A time parameter (RFC 3339, epoch milliseconds or date math such as `now-6h`) in
/// microseconds.
fn time_parameter(
    params: &HashMap<String, String>,
    name: &str,
    default: &str,
    now_micros: i64,
) -> Result<i64, ApiError> {
    let text = params.get(name).map_or(default, String::as_str);
    crate::index::query::date_math::parse_micros(
        text,
        now_micros,
        crate::index::query::date_math::Rounding::Down,
        None,
    )
    .map_err(|_| {
        ApiError::bad_request(
            "illegal_argument_exception",
            format!(
                "`{name}`: `{text}` is not a time; use RFC 3339 (2026-11-22T10:00:00Z), epoch milliseconds or date math (now-6h)"
            ),
        )
    })
}
