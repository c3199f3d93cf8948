//! The one error every route answers with: a closed [`ErrorCode`] mapped to HTTP status in
//! exactly one place ([`ErrorCode::status`]), the dialect's error type name and a reason
//! that tells the user what to fix.
//!
//! Each API answers in its own dialect, rendered in `server::response`: Elasticsearch
//! error bodies ([`ApiError`] itself: the ES API, the agent protocol, auth and the
//! fallback), Prometheus' `{"status":"error","errorType":…}` ([`PrometheusError`],
//! `/api/v1`), Alertmanager's `{"code","message"}` ([`AlertmanagerError`], `/api/v2`) and
//! the rules API's own shape ([`LookoutError`], `/_lookout/rules`). Domain errors
//! (queries, searches, PromQL, refused writes) become an `ApiError` through the `From`
//! impls here; nothing below the server knows about HTTP.

use axum::http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    /// Authenticated, but not allowed this (another tenant, a bigger role), or refused
    /// whoever asks (a cross-site write, a foreign `Host`, a hidden index written from
    /// outside).
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// A write whose body is not JSON (Elasticsearch's answer to a `Content-Type` it does
    /// not support).
    NotAcceptable,
    Conflict,
    PayloadTooLarge,
    /// Well-formed but cannot be carried out (Prometheus' `execution` errors).
    Unprocessable,
    TooManyRequests,
    /// The client stopped sending its request.
    RequestTimeout,
    /// The client went away before the answer (nginx' 499, Prometheus' "client closed
    /// connection"): nobody reads it.
    ClientClosed,
    Unavailable,
    Timeout,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::ClientClosed => {
                StatusCode::from_u16(499).expect("499 is within the valid status range")
            }
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error as the API reports it: a code, the dialect's error type (ES' `error.type`
/// such as `index_not_found_exception`, Prometheus' `errorType` such as `bad_data`), and a
/// reason that tells the user what to fix. Internal details are logged, not put here.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct ApiError {
    pub code: ErrorCode,
    /// The dialect's error type name (`index_not_found_exception`, `bad_data`, …).
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

/// An [`ApiError`] answered in Prometheus' shape (`/api/v1`).
#[derive(Debug)]
pub struct PrometheusError(pub ApiError);

/// An [`ApiError`] answered in Alertmanager's shape (`/api/v2`).
#[derive(Debug)]
pub struct AlertmanagerError(pub ApiError);

/// An [`ApiError`] answered in the rules API's shape (`/_lookout/rules`, alert history).
#[derive(Debug)]
pub struct LookoutError(pub ApiError);

impl LookoutError {
    pub fn new(code: ErrorCode, kind: &'static str, reason: impl Into<String>) -> LookoutError {
        LookoutError(ApiError::new(code, kind, reason))
    }
}

impl From<ApiError> for PrometheusError {
    fn from(error: ApiError) -> Self {
        PrometheusError(error)
    }
}

impl From<ApiError> for AlertmanagerError {
    fn from(error: ApiError) -> Self {
        AlertmanagerError(error)
    }
}

impl From<ApiError> for LookoutError {
    fn from(error: ApiError) -> Self {
        LookoutError(error)
    }
}

impl From<crate::index::query::QueryError> for ApiError {
    fn from(error: crate::index::query::QueryError) -> Self {
        ApiError::bad_request(error.kind, error.reason)
    }
}

/// A search's failure: the query's own errors are the user's (400), an engine error is
/// logged and answered 500, except the ones a request causes (too many buckets, an
/// invalid aggregation argument).
impl From<crate::index::search::SearchError> for ApiError {
    fn from(error: crate::index::search::SearchError) -> Self {
        use crate::index::search::SearchError;
        use tantivy::TantivyError;
        use tantivy::aggregation::AggregationError;
        match error {
            SearchError::Query(error) => error.into(),
            SearchError::Engine(TantivyError::AggregationError(
                AggregationError::BucketLimitExceeded { limit, current },
            )) => ApiError::bad_request(
                "too_many_buckets_exception",
                format!(
                    "Trying to create too many buckets. Must be less than or equal to: [{limit}] but was [{current}]. This limit can be set by changing the [search.max_buckets] cluster level setting."
                ),
            ),
            SearchError::Engine(TantivyError::AggregationError(error)) => {
                ApiError::bad_request("illegal_argument_exception", error.to_string())
            }
            SearchError::Engine(TantivyError::InvalidArgument(reason)) => {
                ApiError::bad_request("illegal_argument_exception", reason)
            }
            SearchError::Engine(error) => ApiError::internal("searching", error),
            // nobody reads it: the client left (Elasticsearch's word for a cancelled task)
            SearchError::Canceled => ApiError::bad_request(
                "task_cancelled_exception",
                SearchError::Canceled.to_string(),
            ),
        }
    }
}

/// A PromQL failure with Prometheus' status codes: 400 `bad_data`, 422 `execution`,
/// 503 `timeout`, 499 `canceled`.
impl From<crate::promql::Error> for ApiError {
    fn from(error: crate::promql::Error) -> Self {
        use crate::promql::Error;
        let code = match error {
            Error::BadData(_) => ErrorCode::BadRequest,
            Error::Timeout(_) => ErrorCode::Unavailable,
            Error::Canceled(_) => ErrorCode::ClientClosed,
            Error::Execution(_) | Error::TooManySamples(_) => ErrorCode::Unprocessable,
        };
        ApiError::new(code, error.error_type(), error.to_string())
    }
}

impl From<crate::promql::Error> for PrometheusError {
    fn from(error: crate::promql::Error) -> Self {
        PrometheusError(error.into())
    }
}
