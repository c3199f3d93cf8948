//! Lookout's own routes: the agent protocol (DESIGN §4), per tenant; health and
//! `/metrics`, global (the listener's, over every tenant; with several tenants an
//! operator key's only, see `dispatch`).
//!
//! | route | what |
//! |---|---|
//! | `GET /_lookout/info` | version and capabilities; agents use the protocol only when this answers |
//! | `POST /_lookout/heartbeat` | an idle agent's `X-Lookout-Agent` / `X-Lookout-Watermark` |
//! | `DELETE /_lookout/agents/{id}` | graceful deregistration |
//! | `GET /_lookout/agents` | registered agents, their watermarks and liveness |

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;

use super::elastic::agent_watermark;
use super::error::{ApiError, ErrorCode};
use super::response::ok;
use super::{ListenerState, SharedState};
use crate::telemetry::{IndexReading, StoreReadings};

pub const PROTOCOL_VERSION: u32 = 1;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_lookout/info", get(info))
        .route("/_lookout/heartbeat", post(heartbeat))
        .route("/_lookout/agents", get(agents))
        .route("/_lookout/agents/{id}", delete(deregister))
        .merge(test_hooks())
}

/// Health and `/metrics`: the server's, whichever tenant asks.
pub fn global_routes() -> Router<Arc<ListenerState>> {
    Router::new()
        .route("/-/healthy", get(|| async { "Lookout is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Lookout is Ready.\n" }))
        .route("/metrics", get(metrics))
}

/// `POST /_lookout/test/panic` panics in its handler, when [`crate::fault::enabled`].
fn test_hooks() -> Router<SharedState> {
    if !crate::fault::enabled() {
        return Router::new();
    }
    Router::new().route("/_lookout/test/panic", post(panic_on_purpose))
}

async fn panic_on_purpose() -> Response {
    panic!("test hook: this handler panics")
}

async fn info() -> Response {
    ok(&json!({
        "name": "lookout",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": PROTOCOL_VERSION,
        "capabilities": ["source_offsets", "watermarks", "heartbeat", "deregister", "gzip"],
    }))
}

async fn heartbeat(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some((agent, watermark)) = agent_watermark(&headers)? else {
        return Err(ApiError::bad_request(
            "illegal_argument_exception",
            "a heartbeat needs the X-Lookout-Agent header (and X-Lookout-Watermark)",
        ));
    };
    state.ingest.agents.seen(&agent, watermark, Instant::now());
    Ok(ok(&json!({"acknowledged": true, "agent": agent})))
}

async fn deregister(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if state.ingest.agents.deregister(&id) {
        Ok(ok(&json!({"acknowledged": true})))
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            "resource_not_found_exception",
            format!("agent [{id}] is not registered"),
        ))
    }
}

async fn agents(State(state): State<SharedState>) -> Response {
    ok(&json!({"agents": state.ingest.agents.status(Instant::now())}))
}

async fn metrics(
    State(listener): State<Arc<ListenerState>>,
    request: axum::extract::Request,
) -> Response {
    if let Some(refused) = super::dispatch::refuse_unless_operator(&listener, &request) {
        return refused;
    }
    let mut tenants: Vec<SharedState> = listener.tenants.states().cloned().collect();
    // the default tenant's page first: its telemetry is the listener's and the disk's,
    // where the server-wide families are counted
    tenants.sort_by_key(|state| state.tenant != crate::tenant::DEFAULT_TENANT);
    let (mut text, limits) = tokio::task::spawn_blocking(move || {
        let pages: Vec<(String, String)> = tenants
            .iter()
            .map(|state| {
                (
                    state.tenant.clone(),
                    state.telemetry.render_with(&readings(state)),
                )
            })
            .collect();
        let limits: Vec<_> = tenants.iter().map(limits_reading).collect();
        // one tenant (no `[tenants]`): the page as it always was
        let text = match pages.as_slice() {
            [(_, page)] => page.clone(),
            _ => crate::telemetry::merge_tenant_pages(&pages),
        };
        (text, limits)
    })
    .await
    .unwrap_or_default();
    crate::tenant::limits::write_metrics(&mut text, &limits);
    if let Some(default) = listener
        .tenants
        .states()
        .find(|state| state.tenant == crate::tenant::DEFAULT_TENANT)
    {
        default.remote_write.render(&mut text);
    }
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// What `/metrics` reports about one tenant's stores.
fn readings(state: &SharedState) -> StoreReadings {
    use std::sync::atomic::Ordering::Relaxed;
    let tsdb = &state.series.tsdb;
    let blocks = tsdb.block_metas();
    StoreReadings {
        indices: state
            .store
            .all()
            .iter()
            .map(|index| IndexReading {
                name: index.name.clone(),
                partitions: index.partitions().len(),
                docs: index.doc_count(),
                disk_bytes: index.disk_bytes(),
            })
            .collect(),
        search_idle: state.ingest.search_idle(),
        in_flight_bytes: state.ingest.in_flight_bytes(),
        tsdb_head_series: tsdb.head.active_series(),
        tsdb_blocks: blocks.len(),
        tsdb_blocks_bytes: blocks.iter().map(|meta| meta.bytes).sum(),
        tsdb_out_of_order_samples: tsdb.head.out_of_order.load(Relaxed),
        tsdb_duplicate_samples: tsdb.head.duplicates.load(Relaxed),
        tsdb_out_of_bounds_samples: tsdb.head.out_of_bounds.load(Relaxed),
    }
}

fn limits_reading(state: &SharedState) -> crate::tenant::limits::LimitsReading {
    use std::sync::atomic::Ordering::Relaxed;
    let rules = state.rules.get();
    crate::tenant::limits::LimitsReading {
        tenant: state.tenant.clone(),
        config: state.limits.config.clone(),
        ingest_bytes: state.limits.ingest_bytes.get(),
        ingest_refused: state.limits.ingest_refused.get(),
        active_series: state.series.tsdb.head.active_series(),
        series_refused: state.series.tsdb.head.series_limited.load(Relaxed),
        rules: rules.map_or(0, |rules| rules.rule_count()),
        rules_refused: rules.map_or(0, |rules| rules.rules_refused()),
        queries_running: state.search_pool.running() + state.promql_pool.running(),
        queries_refused: state.search_pool.refused() + state.promql_pool.refused(),
    }
}
