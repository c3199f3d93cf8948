//! The one place errors become bodies, one shape per API dialect, with the status from
//! [`ErrorCode::status`](super::error::ErrorCode::status):
//!
//! - Elasticsearch: `{"error": {"root_cause": [...], "type", "reason"}, "status"}`;
//! - Prometheus: `{"status": "error", "errorType", "error"}`;
//! - Alertmanager: `{"code", "message"}`;
//! - the rules API: `{"error": {"type", "reason"}, "status"}`.
//!
//! JSON responses are built here too.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::{AlertmanagerError, ApiError, LookoutError, PrometheusError};

impl ApiError {
    /// The Elasticsearch error body (also one failed search of an `_msearch`).
    pub fn es_body(&self) -> Value {
        let mut cause = json!({"type": self.kind, "reason": self.reason});
        if let Some(index) = &self.index {
            cause["index"] = json!(index);
            cause["resource.type"] = json!("index_or_alias");
            cause["resource.id"] = json!(index);
        }
        let mut error = cause.clone();
        error["root_cause"] = json!([cause]);
        json!({"error": error, "status": self.code.status().as_u16()})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.code.status(), &self.es_body())
    }
}

impl IntoResponse for PrometheusError {
    fn into_response(self) -> Response {
        let PrometheusError(error) = self;
        json_response(
            error.code.status(),
            &json!({"status": "error", "errorType": error.kind, "error": error.reason}),
        )
    }
}

impl IntoResponse for AlertmanagerError {
    fn into_response(self) -> Response {
        let AlertmanagerError(error) = self;
        let status = error.code.status();
        json_response(
            status,
            &json!({"code": status.as_u16(), "message": error.reason}),
        )
    }
}

impl IntoResponse for LookoutError {
    fn into_response(self) -> Response {
        let LookoutError(error) = self;
        let status = error.code.status();
        json_response(
            status,
            &json!({"error": {"type": error.kind, "reason": error.reason}, "status": status.as_u16()}),
        )
    }
}

/// A JSON response with `Content-Type: application/json`.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A response whose JSON text is already written.
pub fn json_text(status: StatusCode, text: String) -> Response {
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}
