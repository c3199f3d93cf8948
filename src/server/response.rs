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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::error::ErrorCode;

    async fn answer(response: Response) -> (u16, String) {
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, String::from_utf8(bytes.to_vec()).expect("UTF-8"))
    }

    #[tokio::test]
    async fn each_dialect_renders_the_same_error_in_its_shape() {
        let error = || ApiError::new(ErrorCode::BadRequest, "bad_data", "no `query`");
        assert_eq!(
            answer(error().into_response()).await,
            (
                400,
                r#"{"error":{"reason":"no `query`","root_cause":[{"reason":"no `query`","type":"bad_data"}],"type":"bad_data"},"status":400}"#.into()
            )
        );
        assert_eq!(
            answer(PrometheusError(error()).into_response()).await,
            (
                400,
                r#"{"error":"no `query`","errorType":"bad_data","status":"error"}"#.into()
            )
        );
        assert_eq!(
            answer(AlertmanagerError(error()).into_response()).await,
            (400, r#"{"code":400,"message":"no `query`"}"#.into())
        );
        assert_eq!(
            answer(LookoutError(error()).into_response()).await,
            (
                400,
                r#"{"error":{"reason":"no `query`","type":"bad_data"},"status":400}"#.into()
            )
        );
    }

    #[test]
    fn an_es_error_about_an_index_names_it() {
        let body = ApiError::index_not_found("logs").es_body();
        assert_eq!(body["status"], 404);
        assert_eq!(body["error"]["index"], "logs");
        assert_eq!(body["error"]["root_cause"][0]["resource.id"], "logs");
    }

    #[test]
    fn promql_errors_keep_prometheus_status_codes() {
        use crate::promql::Error;
        for (error, status, kind) in [
            (Error::BadData("x".into()), 400, "bad_data"),
            (Error::Execution("x".into()), 422, "execution"),
            (Error::TooManySamples("x"), 422, "execution"),
            (Error::Timeout("x"), 503, "timeout"),
            (Error::Canceled("x"), 499, "canceled"),
        ] {
            let error = ApiError::from(error);
            assert_eq!((error.code.status().as_u16(), error.kind), (status, kind));
        }
    }
}
