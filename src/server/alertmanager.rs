//! Silences in Alertmanager's v2 API shape: `GET|POST /api/v2/silences` (`GET` with
//! Alertmanager's `filter`), `GET|DELETE /api/v2/silence/{id}`. The alerts, groups,
//! status and receivers are `alertmanager_alerts`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::SharedState;
use super::error::{AlertmanagerError, ApiError, ErrorCode};
use super::keys::Actor;
use super::response::ok;
use crate::rules::silence::{Silence, SilenceRequest};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v2/silences", get(list).post(create))
        .route("/api/v2/silence/{id}", get(one).delete(expire))
}

fn bad_request(reason: String) -> Response {
    AlertmanagerError(ApiError::bad_request("bad_data", reason)).into_response()
}

fn not_found(id: &str) -> Response {
    AlertmanagerError(ApiError::new(
        ErrorCode::NotFound,
        "not_found",
        format!("silence {id} not found"),
    ))
    .into_response()
}

fn render(silence: &Silence) -> serde_json::Value {
    let mut value = serde_json::to_value(silence).expect("a silence serializes");
    value["status"] = json!({"state": silence.state(chrono::Utc::now())});
    value
}

/// `GET /api/v2/silences[?filter=MATCHER…]`: a silence is listed when every `filter`
/// matcher matches the label set its own equality matchers spell (Alertmanager's
/// `matchFilterLabels`, what `amtool silence query` sends).
async fn list(State(state): State<SharedState>, RawQuery(raw): RawQuery) -> Response {
    let pairs: Vec<(String, String)> =
        match serde_urlencoded::from_str(raw.as_deref().unwrap_or_default()) {
            Ok(pairs) => pairs,
            Err(error) => return bad_request(format!("invalid query string: {error}")),
        };
    let mut filter = Vec::new();
    for (name, value) in pairs {
        if name == "filter" {
            match crate::notify::matcher::parse_matchers(&value) {
                Ok(matchers) => filter.extend(matchers),
                Err(error) => {
                    return bad_request(format!(
                        "bad matcher format: {error}; write a filter like alertname=\"checkout_5xx\""
                    ));
                }
            }
        }
    }
    let silences: Vec<serde_json::Value> = state
        .silences
        .list()
        .iter()
        .filter(|silence| {
            let spelled: std::collections::BTreeMap<String, String> = silence
                .matchers
                .iter()
                .filter(|matcher| matcher.is_equal)
                .map(|matcher| (matcher.name.clone(), matcher.value.clone()))
                .collect();
            crate::notify::matcher::all_match(&filter, &spelled)
        })
        .map(render)
        .collect();
    ok(&json!(silences))
}

async fn one(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    match state
        .silences
        .list()
        .iter()
        .find(|silence| silence.id == id)
    {
        Some(silence) => ok(&render(silence)),
        None => not_found(&id),
    }
}

async fn create(actor: Actor, State(state): State<SharedState>, body: Bytes) -> Response {
    let request: SilenceRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return bad_request(format!(
                "a silence is {{\"matchers\": [{{\"name\", \"value\", \"isRegex\", \"isEqual\"}}], \"startsAt\", \"endsAt\", \"createdBy\", \"comment\"}}: {error}"
            ));
        }
    };
    let summary = silence_summary(&request);
    match state.silences.create(request) {
        Ok(id) => {
            state
                .audit
                .record(actor.entry("silence.create", &id, summary))
                .await;
            ok(&json!({"silenceID": id}))
        }
        Err(reason) => bad_request(reason.to_string()),
    }
}

async fn expire(
    actor: Actor,
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Response {
    match state.silences.expire(&id) {
        Ok(true) => {
            state
                .audit
                .record(actor.entry("silence.expire", &id, "expired"))
                .await;
            ok(&json!({}))
        }
        Ok(false) => not_found(&id),
        Err(reason) => AlertmanagerError(ApiError::new(
            ErrorCode::Internal,
            "internal",
            reason.to_string(),
        ))
        .into_response(),
    }
}

/// What a silence mutes and until when, for the audit trail.
fn silence_summary(request: &SilenceRequest) -> String {
    let matchers: Vec<String> = request
        .matchers
        .iter()
        .map(|matcher| {
            let operator = match (matcher.is_equal, matcher.is_regex) {
                (true, false) => "=",
                (false, false) => "!=",
                (true, true) => "=~",
                (false, true) => "!~",
            };
            format!("{}{operator}{:?}", matcher.name, matcher.value)
        })
        .collect();
    let mut summary = format!(
        "{{{}}} from {} to {}",
        matchers.join(","),
        request.starts_at.to_rfc3339(),
        request.ends_at.to_rfc3339()
    );
    if !request.created_by.is_empty() {
        summary.push_str(&format!(" by {:?}", request.created_by));
    }
    summary.chars().take(500).collect()
}
