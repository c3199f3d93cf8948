//! The closed set of error kinds every component reports, mapped to HTTP status in
//! exactly one place ([`ErrorCode::status`]). Routes render them as Elasticsearch or
//! Prometheus error bodies (`server::response`).

use axum::http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    TooManyRequests,
    /// The client stopped sending its request.
    RequestTimeout,
    Unavailable,
    Timeout,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error as the API reports it: a code, ES' error `type`, and a reason that tells the
/// user what to fix. Internal details are logged, not put here.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct ApiError {
    pub code: ErrorCode,
    /// Elasticsearch's `error.type` (`index_not_found_exception`, `parsing_exception`, …).
    pub kind: &'static str,
    pub reason: String,
    /// The index the error is about, when there is one (ES puts it in the body).
    pub index: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, kind: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError {
            code,
            kind,
            reason: reason.into(),
            index: None,
        }
    }

    pub fn bad_request(kind: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, kind, reason)
    }

    pub fn index_not_found(index: &str) -> ApiError {
        ApiError {
            code: ErrorCode::NotFound,
            kind: "index_not_found_exception",
            reason: format!("no such index [{index}]"),
            index: Some(index.to_string()),
        }
    }

    /// Logs `error` once, server-side, and returns an opaque 500.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, context, "internal error");
        ApiError::new(
            ErrorCode::Internal,
            "exception",
            format!("internal error while {context}; see the server log"),
        )
    }
}

impl From<crate::index::query::QueryError> for ApiError {
    fn from(error: crate::index::query::QueryError) -> Self {
        ApiError::bad_request(error.kind, error.reason)
    }
}

/// The message a panic was raised with (`panic!("…")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}
