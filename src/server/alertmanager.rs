//! Silences in Alertmanager's v2 API shape: `GET|POST /api/v2/silences`,
//! `GET|DELETE /api/v2/silence/{id}`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
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

async fn list(State(state): State<SharedState>) -> Response {
    let silences: Vec<serde_json::Value> = state.silences.list().iter().map(render).collect();
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
