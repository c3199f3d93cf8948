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
//! - `prometheus`, `alertmanager`: their APIs' shapes for rules, alerts and silences;
//!   `prometheus_query` the PromQL API, `prometheus_status` the status and tooling API.
//! - `rules`: Lookout's rules API (CRUD, dry run) and alert history.
//! - `error`: the one error every route answers with (a closed `ErrorCode`, mapped to
//!   HTTP status once); `response`: the one place it becomes a body, in each API's dialect.
//!
//! - `access`, `auth`, `keys`: who is asking (scoped keys and their roles), checked by
//!   one layer with one route table; the keys and audit API.
//!
//! Layers, outermost first: `X-Elastic-Product` and `X-Content-Type-Options: nosniff` on
//! every answer, panics as 500, body read timeouts, `browser_guard` (Host, cross-site
//! writes, content types), then authentication (`auth`). Every response carries
//! `X-Elastic-Product: Elasticsearch`, which official ES clients require.

pub mod access;
pub mod alertmanager;
pub mod alertmanager_alerts;
pub mod auth;
pub mod body;
pub mod browser_guard;
pub mod bulk_answer;
pub mod datasources;
pub mod dispatch;
pub mod elastic;
pub mod error;
pub mod federate;
pub mod filter_path;
pub mod keys;
pub mod listener;
pub mod lookout;
pub mod patterns;
pub mod prometheus;
pub mod prometheus_query;
pub mod prometheus_status;
pub mod query_pool;
pub mod request_target;
pub mod response;
pub mod rules;
pub mod tls;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware;
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
    /// The keys (shared by every tenant) that `/_lookout/keys` manages.
    pub keys: Arc<crate::keys::KeyStore>,
    /// Where this tenant's changes are recorded (`.lookout-audit` in its own store).
    pub audit: Arc<crate::audit::Audit>,
    /// Every tenant's trail, for key changes (recorded for each tenant of the key).
    pub audits: Arc<crate::audit::Trails>,
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
    /// `index.destructive_requires_name`: index deletion names every index.
    pub destructive_requires_name: bool,
    /// `[[remote_write]]`'s figures (the default tenant's store is the one written out).
    pub remote_write: Arc<crate::remote_write::RemoteWriters>,
    /// `[global] external_labels`, added to `/federate`'s series.
    pub external_labels: Arc<std::collections::BTreeMap<String, String>>,
}

pub type SharedState = Arc<AppState>;

/// What the listener's own layers and routes reach: every tenant and what they share.
pub struct ListenerState {
    /// The keys, their roles and the failed-authentication limiter.
    pub auth: Arc<auth::Authenticator>,
    /// Which `Host` names the listener answers (DNS rebinding).
    pub browser_guard: browser_guard::BrowserGuard,
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
        .merge(federate::routes())
        .merge(datasources::routes())
        .merge(prometheus_query::routes())
        .merge(prometheus_status::routes())
        .merge(alertmanager::routes())
        .merge(alertmanager_alerts::routes())
        .merge(rules::routes())
        .merge(patterns::routes())
        .merge(keys::routes())
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
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), browser_guard::guard))
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
                let headers = response.headers_mut();
                headers.insert(
                    "x-elastic-product",
                    HeaderValue::from_static("Elasticsearch"),
                );
                // no answer is ever sniffed into a script or a page (a 404 echoing a path)
                headers.insert(
                    "x-content-type-options",
                    HeaderValue::from_static("nosniff"),
                );
                response
            },
        ))
        .with_state(state)
}
