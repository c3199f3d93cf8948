//! The HTTP API: one listener, one router per tenant.
//!
//! [`router`] is the listener's: its layers (authentication, body timeout, panics,
//! response headers) wrap everything once; it serves the global routes (health,
//! `/metrics`, `/_lookout/tenants`, the UI's files) and hands every other request to
//! `dispatch`, which picks the tenant and runs that tenant's [`tenant_router`] — built on
//! the tenant's own [`AppState`], so no handler can reach another tenant's data.
//!
//! - `elastic`: the Elasticsearch-compatible API, one file per area (documents, search,
//!   scroll, indices, cluster); request parsing and execution live in `index`.
//! - `lookout`: the agent protocol (`/_lookout/…`), health, `/metrics`.
//! - `body`: request bodies read as a stream with size caps, in-flight accounting and
//!   bounded gzip decompression.
//! - `prometheus`, `alertmanager`: their APIs' shapes for rules, alerts and silences.
//! - `rules`: Lookout's rules API (CRUD, dry run) and alert history.
//! - `error`: the one error every route answers with (a closed `ErrorCode`, mapped to
//!   HTTP status once); `response`: the one place it becomes a body, in each API's dialect.
//!
//! Auth: with a token configured, every route but `/-/healthy` and `/-/ready` needs
//! `Authorization: Bearer|ApiKey|Basic`. Every response carries
//! `X-Elastic-Product: Elasticsearch`, which official ES clients require.

pub mod access;
pub mod alertmanager;
pub mod body;
pub mod bulk_answer;
pub mod dispatch;
pub mod elastic;
pub mod error;
pub mod filter_path;
pub mod listener;
pub mod lookout;
pub mod prometheus;
pub mod prometheus_query;
pub mod query_pool;
pub mod request_target;
pub mod response;
pub mod rules;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use self::error::{ApiError, ErrorCode};
use crate::index::IndexStore;
use crate::ingest::Ingest;
use crate::telemetry::Telemetry;

/// What every handler of one tenant can reach: that tenant's world.
pub struct AppState {
    /// The tenant's name ([`access::DEFAULT_TENANT`] without tenants).
    pub tenant: String,
    pub store: Arc<IndexStore>,
    pub ingest: Arc<Ingest>,
    pub telemetry: Arc<Telemetry>,
    /// The tenant's limits and what they refused.
    pub limits: Arc<crate::tenant::limits::TenantLimits>,
    pub max_body_bytes: u64,
    /// Decoded request bytes in flight: one budget for the whole server
    /// (`ingest.max_in_flight_bytes`), shared by every tenant.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// A request body that sends nothing for this long fails with 408.
    pub body_read_timeout: std::time::Duration,
    pub scrolls: crate::index::search::scroll::Scrolls,
    /// A search without its own `timeout` stops after this (`search.default_timeout`).
    pub search_timeout: std::time::Duration,
    /// Where the Elasticsearch API's searches run (bounded, low priority).
    pub search_pool: query_pool::QueryPool,
    /// Where the Prometheus API's queries run (bounded, low priority).
    pub promql_pool: query_pool::QueryPool,
    pub started: std::time::Instant,
    /// The rules `lookout serve` runs (set once they are started).
    pub rules: std::sync::OnceLock<Arc<crate::rules::manager::RuleManager>>,
    pub silences: Arc<crate::rules::silence::Silences>,
    /// The scrape loop, when `scrape_configs` names jobs.
    pub scrape: std::sync::OnceLock<Arc<crate::scrape::manager::ScrapeManager>>,
    /// What PromQL reads: the metrics store the scrape loop writes, the saved log queries
    /// as `log_matches` series, and the engine's settings.
    pub series: Arc<crate::rules::observe::Sources>,
}

pub type SharedState = Arc<AppState>;

/// What the listener's own layers and routes reach: every tenant and what they share.
pub struct ListenerState {
    pub token: Option<String>,
    pub telemetry: Arc<Telemetry>,
    /// A request body that sends nothing for this long fails with 408.
    pub body_read_timeout: std::time::Duration,
    pub tenants: dispatch::Tenants,
}

/// The routes of one tenant, on its own state (see the module doc).
pub fn tenant_router(state: SharedState) -> Router {
    Router::new()
        .merge(lookout::routes())
        .merge(prometheus::routes())
        .merge(prometheus_query::routes())
        .merge(alertmanager::routes())
        .merge(rules::routes())
        .merge(elastic::routes())
        .fallback(|| async {
            ApiError::new(
                ErrorCode::NotFound,
                "no_handler_found_exception",
                "no handler found for this path and method; see the routes table in docs/api.md",
            )
            .into_response()
        })
        .with_state(state)
}

/// The listener's router: global routes, then each request to its tenant's router.
pub fn router(state: Arc<ListenerState>) -> Router {
    let body_read_timeout = state.body_read_timeout;
    Router::new()
        .merge(lookout::global_routes())
        .merge(dispatch::routes())
        .merge(ui::routes())
        .fallback(dispatch::dispatch)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::map_request(move |request: Request| async move {
            request.map(|body| {
                axum::body::Body::new(body::InactivityTimeout::new(body, body_read_timeout))
            })
        }))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom({
            let telemetry = Arc::clone(&state.telemetry);
            move |panic: Box<dyn std::any::Any + Send>| {
                telemetry.handler_panics.add(1);
                let message = crate::panic::message(&*panic);
                tracing::error!(panic = message, "a request handler panicked; answered 500");
                ApiError::new(
                    ErrorCode::Internal,
                    "exception",
                    "the request failed on a bug in Lookout (its handler panicked; the server goes on); the server log has the details",
                )
                .into_response()
            }
        }))
        .layer(middleware::map_response(
            |mut response: Response| async move {
                response.headers_mut().insert(
                    "x-elastic-product",
                    HeaderValue::from_static("Elasticsearch"),
                );
                response
            },
        ))
        .with_state(state)
}

async fn authenticate(
    State(state): State<Arc<ListenerState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if path == "/-/healthy" || path == "/-/ready" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if given.is_some_and(|value| authorization_matches(value, token)) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        ErrorCode::Unauthorized,
        "security_exception",
        "missing or wrong credentials; send `Authorization: Bearer TOKEN`, `ApiKey TOKEN` or Basic auth with TOKEN as the password",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"lookout\", charset=\"UTF-8\""),
    );
    response
}

/// Accepts `Bearer TOKEN`, `ApiKey TOKEN`, `ApiKey base64(id:TOKEN)` and `Basic
/// base64(any:TOKEN)`; compares in constant time.
pub fn authorization_matches(header_value: &str, token: &str) -> bool {
    use base64::Engine;
    let (scheme, credentials) = header_value
        .trim()
        .split_once(' ')
        .unwrap_or((header_value, ""));
    let credentials = credentials.trim();
    let decoded = || {
        base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    };
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => constant_time_eq(credentials, token),
        "apikey" => {
            constant_time_eq(credentials, token)
                || decoded().is_some_and(|text| {
                    text.split_once(':')
                        .is_some_and(|(_, secret)| constant_time_eq(secret, token))
                })
        }
        "basic" => decoded().is_some_and(|text| {
            text.split_once(':')
                .is_some_and(|(_, password)| constant_time_eq(password, token))
        }),
        _ => false,
    }
}

fn constant_time_eq(left: &str, right: &str) -> bool {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn every_documented_authorization_form_is_accepted() {
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        assert!(authorization_matches("Bearer s3cret", "s3cret"));
        assert!(authorization_matches("ApiKey s3cret", "s3cret"));
        assert!(authorization_matches(
            &format!("ApiKey {}", encode("key-id:s3cret")),
            "s3cret"
        ));
        assert!(authorization_matches(
            &format!("Basic {}", encode("anyone:s3cret")),
            "s3cret"
        ));
        assert!(!authorization_matches("Bearer wrong", "s3cret"));
        assert!(!authorization_matches(
            &format!("Basic {}", encode("s3cret:wrong")),
            "s3cret"
        ));
        assert!(!authorization_matches("s3cret", "s3cret"));
    }
}
