//! Prometheus' HTTP API, so far the alerting part: `GET /api/v1/rules` and
//! `GET /api/v1/alerts` in Prometheus' shapes, from the rules `lookout serve` runs.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::SharedState;
use super::response::ok;
use crate::rules::manager::{ActiveAlert, RuleView};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/targets", get(targets))
}

/// `/api/v1/targets` in Prometheus' shape.
async fn targets(State(state): State<SharedState>) -> Response {
    use crate::scrape::target::prometheus_duration;
    let active: Vec<Value> = state
        .scrape
        .get()
        .map(|manager| manager.targets())
        .unwrap_or_default()
        .into_iter()
        .map(|status| {
            json!({
                "discoveredLabels": status.target.discovered,
                "labels": status.target.labels,
                "scrapePool": status.target.job,
                "scrapeUrl": status.target.url,
                "globalUrl": status.target.url,
                "lastError": status.last_error,
                "lastScrape": status.last_scrape.map_or_else(
                    || "0001-01-01T00:00:00Z".to_string(),
                    |time| time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                ),
                "lastScrapeDuration": status.last_duration,
                "health": status.health,
                "scrapeInterval": prometheus_duration(status.target.interval),
                "scrapeTimeout": prometheus_duration(status.target.timeout),
            })
        })
        .collect();
    ok(&json!({"status": "success", "data": {"activeTargets": active, "droppedTargets": []}}))
}

fn running(state: &SharedState) -> Vec<RuleView> {
    state
        .rules
        .get()
        .map(|manager| manager.rules())
        .unwrap_or_default()
}

fn alert_json(rule: &RuleView, alert: &ActiveAlert) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), json!(rule.name));
    for (key, value) in rule.labels.iter().chain(&alert.labels) {
        labels.insert(key.clone(), json!(value));
    }
    if let Some(severity) = &rule.severity {
        labels.entry("severity").or_insert(json!(severity));
    }
    json!({
        "labels": labels,
        "annotations": alert.annotations,
        "state": if alert.firing { "firing" } else { "pending" },
        "activeAt": alert.active_since.map(|time| time.to_rfc3339()),
        "value": format!("{}", alert.value),
    })
}

async fn rules(State(state): State<SharedState>) -> Response {
    let rules: Vec<Value> = running(&state)
        .iter()
        .map(|rule| {
            let alerts: Vec<Value> = rule
                .status
                .alerts
                .iter()
                .map(|alert| alert_json(rule, alert))
                .collect();
            let rule_state = if rule.status.alerts.iter().any(|alert| alert.firing) {
                "firing"
            } else if rule.status.alerts.is_empty() {
                "inactive"
            } else {
                "pending"
            };
            json!({
                "state": rule_state,
                "name": rule.name,
                "query": match &rule.query { Value::String(text) => text.clone(), other => other.to_string() },
                "duration": rule.for_seconds,
                "labels": rule.labels,
                "annotations": rule.summary.as_ref().map_or_else(|| json!({}), |summary| json!({"summary": summary})),
                "alerts": alerts,
                "health": match (&rule.status.last_evaluation, &rule.status.last_error) {
                    (None, _) => "unknown",
                    (Some(_), None) => "ok",
                    (Some(_), Some(_)) => "err",
                },
                "lastError": rule.status.last_error.clone().unwrap_or_default(),
                "evaluationTime": rule.status.evaluation_seconds,
                "lastEvaluation": rule.status.last_evaluation.map_or_else(
                    || "0001-01-01T00:00:00Z".to_string(),
                    |time| time.to_rfc3339(),
                ),
                "type": "alerting",
            })
        })
        .collect();
    let groups = if rules.is_empty() {
        json!([])
    } else {
        json!([{"name": "queries", "file": "queries", "rules": rules, "interval": 60, "limit": 0}])
    };
    ok(&json!({"status": "success", "data": {"groups": groups}}))
}

async fn alerts(State(state): State<SharedState>) -> Response {
    let alerts: Vec<Value> = running(&state)
        .iter()
        .flat_map(|rule| {
            rule.status
                .alerts
                .iter()
                .map(|alert| alert_json(rule, alert))
                .collect::<Vec<_>>()
        })
        .collect();
    ok(&json!({"status": "success", "data": {"alerts": alerts}}))
}
