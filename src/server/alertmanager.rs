//! Silences in Alertmanager's v2 API shape: `GET|POST /api/v2/silences`,
//! `GET|DELETE /api/v2/silence/{id}`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::SharedState;
use super::response::ok;
use crate::rules::silence::{Silence, SilenceRequest};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v2/silences", get(list).post(create))
        .route("/api/v2/silence/{id}", get(one).delete(expire))
}

fn bad_request(reason: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"code": 400, "message": reason})),
    )
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
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"code": 404, "message": format!("silence {id} not found")})),
        )
            .into_response(),
    }
}

async fn create(State(state): State<SharedState>, body: Bytes) -> Response {
    let request: SilenceRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return bad_request(format!(
                "a silence is {{\"matchers\": [{{\"name\", \"value\", \"isRegex\", \"isEqual\"}}], \"startsAt\", \"endsAt\", \"createdBy\", \"comment\"}}: {error}"
            ));
        }
    };
    match state.silences.create(request) {
        Ok(id) => ok(&json!({"silenceID": id})),
        Err(reason) => bad_request(reason.to_string()),
    }
}

async fn expire(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    match state.silences.expire(&id) {
        Ok(true) => ok(&json!({})),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"code": 404, "message": format!("silence {id} not found")})),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"code": 500, "message": reason.to_string()})),
        )
            .into_response(),
    }
}
