//! Lookout's own routes: the agent protocol (DESIGN §4), health and `/metrics`.
//!
//! | route | what |
//! |---|---|
//! | `GET /_lookout/info` | version and capabilities; agents use the protocol only when this answers |
//! | `POST /_lookout/heartbeat` | an idle agent's `X-Lookout-Agent` / `X-Lookout-Watermark` |
//! | `DELETE /_lookout/agents/{id}` | graceful deregistration |
//! | `GET /_lookout/agents` | registered agents, their watermarks and liveness |

use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;

use super::SharedState;
use super::elastic::agent_watermark;
use super::error::{ApiError, ErrorCode};
use super::response::ok;
use crate::telemetry::{IndexReading, StoreReadings};

pub const PROTOCOL_VERSION: u32 = 1;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_lookout/info", get(info))
        .route("/_lookout/heartbeat", post(heartbeat))
        .route("/_lookout/agents", get(agents))
        .route("/_lookout/agents/{id}", delete(deregister))
        .route("/-/healthy", get(|| async { "Lookout is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Lookout is Ready.\n" }))
        .route("/metrics", get(metrics))
        .merge(test_hooks())
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

async fn metrics(State(state): State<SharedState>) -> Response {
    let store = state.store.clone();
    let tsdb = std::sync::Arc::clone(&state.series.tsdb);
    let in_flight_bytes = state.ingest.in_flight_bytes();
    let search_idle = state.ingest.search_idle();
    let readings = tokio::task::spawn_blocking(move || {
        use std::sync::atomic::Ordering::Relaxed;
        let blocks = tsdb.block_metas();
        StoreReadings {
            indices: store
                .all()
                .iter()
                .map(|index| IndexReading {
                    name: index.name.clone(),
                    partitions: index.partitions().len(),
                    docs: index.doc_count(),
                    disk_bytes: index.disk_bytes(),
                })
                .collect(),
            search_idle,
            in_flight_bytes,
            tsdb_head_series: tsdb.head.active_series(),
            tsdb_blocks: blocks.len(),
            tsdb_blocks_bytes: blocks.iter().map(|meta| meta.bytes).sum(),
            tsdb_out_of_order_samples: tsdb.head.out_of_order.load(Relaxed),
            tsdb_duplicate_samples: tsdb.head.duplicates.load(Relaxed),
            tsdb_out_of_bounds_samples: tsdb.head.out_of_bounds.load(Relaxed),
        }
    })
    .await
    .unwrap_or_default();
    let text = state.telemetry.render_with(&readings);
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
