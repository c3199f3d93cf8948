//! `/` (who answers, as which ES version) and `_cluster/health`.

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::ES_VERSION;
use crate::server::SharedState;
use crate::server::response::ok;

pub(super) async fn root(State(state): State<SharedState>) -> Response {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "lookout".into());
    ok(&json!({
        "name": host,
        "cluster_name": "lookout",
        "cluster_uuid": "lookout-single-node",
        "version": {
            "number": ES_VERSION,
            "build_flavor": "default",
            "build_type": "lookout",
            "build_hash": env!("CARGO_PKG_VERSION"),
            "build_date": "2026-01-01T00:00:00.000Z",
            "build_snapshot": false,
            "lucene_version": "9.11.1",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
        "lookout": {"version": env!("CARGO_PKG_VERSION"), "uptime_seconds": state.started.elapsed().as_secs()},
    }))
}

/// `yellow` with the reason while storage is degraded (writes refused, every document
/// searchable): Elasticsearch keeps `_cluster/health` green at the flood stage, since no
/// shard becomes unassigned, and turns the disk indicator of `_health_report` red; red
/// here would claim data is unsearchable, and yellow still satisfies readers that wait
/// for `wait_for_status=yellow`.
pub(super) async fn cluster_health(State(state): State<SharedState>) -> Response {
    let shards = state.store.names().len();
    let refusal = state.ingest.disk().refusal();
    let mut health = json!({
        "cluster_name": "lookout",
        "status": if refusal.is_some() { "yellow" } else { "green" },
        "timed_out": false,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": shards,
        "active_shards": shards,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0,
    });
    if let Some(reason) = refusal {
        health["lookout"] = json!({"storage": "read_only", "reason": reason});
    }
    ok(&health)
}
