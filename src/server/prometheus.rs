//! Prometheus' HTTP API, so far the alerting part: `GET /api/v1/rules` and
//! `GET /api/v1/alerts` in Prometheus' shapes, from the rule files of `queries/` and the
//! rules `lookout serve` runs.

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
        .map(|manager| manager.rules(false))
        .unwrap_or_default()
}

/// An alert's labels: `alertname`, the rule's labels, the alert's own, and `severity`
/// (`warning` when the rule names none).
pub(super) fn alert_labels(
    rule: &RuleView,
    alert: &ActiveAlert,
) -> std::collections::BTreeMap<String, String> {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("alertname".to_string(), rule.name.clone());
    for (key, value) in rule.labels.iter().chain(&alert.labels) {
        labels.insert(key.clone(), value.clone());
    }
    labels
        .entry("severity".to_string())
        .or_insert_with(|| rule.severity.as_deref().unwrap_or("warning").to_string());
    labels
}

fn alert_json(rule: &RuleView, alert: &ActiveAlert) -> Value {
    json!({
        "labels": alert_labels(rule, alert),
        "annotations": alert.annotations,
        "state": if alert.firing { "firing" } else { "pending" },
        "activeAt": alert.active_since.map(|time| time.to_rfc3339()),
        "value": format!("{}", alert.value),
    })
}

/// The labels every alert of `rule` carries: its `labels` and its severity (`warning`
/// when it names none), as the alerts themselves have them.
fn rule_labels(
    labels: &std::collections::BTreeMap<String, String>,
    severity: Option<&str>,
) -> Value {
    let mut all = serde_json::Map::new();
    for (key, value) in labels {
        all.insert(key.clone(), json!(value));
    }
    all.entry("severity")
        .or_insert(json!(severity.unwrap_or("warning")));
    Value::Object(all)
}

/// `/api/v1/rules`: one group per rule file (as Prometheus has one per rule file), its
/// `interval` the rule's schedule; a file that does not load is `health: "err"` with the
/// load error, also when its last good version keeps running.
async fn rules(State(state): State<SharedState>) -> Response {
    let Some(manager) = state.rules.get() else {
        return ok(&json!({"status": "success", "data": {"groups": []}}));
    };
    let running: std::collections::HashMap<String, RuleView> = manager
        .rules_with_warnings()
        .await
        .into_iter()
        .map(|view| (view.name.clone(), view))
        .collect();
    let groups: Vec<Value> = manager
        .rule_files()
        .into_iter()
        .map(|(name, text, load_error)| {
            let file = manager.origin(&name);
            let (rule, interval) = match running.get(&name) {
                Some(view) => (running_rule(view, load_error), view.interval_seconds),
                None => not_running_rule(&name, &text, load_error),
            };
            json!({"name": name, "file": file, "rules": [rule], "interval": interval, "limit": 0})
        })
        .collect();
    ok(&json!({"status": "success", "data": {"groups": groups}}))
}

fn running_rule(rule: &RuleView, load_error: Option<String>) -> Value {
    let mut shown = alerting_rule(rule, load_error);
    if let Some(record) = &rule.record {
        recording_shape(&mut shown, record, &rule.labels);
    }
    shown
}

/// A recording rule as Prometheus shows one: named by its metric, `type: "recording"`,
/// without an alert's fields.
fn recording_shape(
    rule: &mut Value,
    record: &str,
    labels: &std::collections::BTreeMap<String, String>,
) {
    if let Value::Object(fields) = rule {
        for field in ["state", "duration", "annotations", "alerts"] {
            fields.remove(field);
        }
        fields.insert("rule".into(), fields["name"].clone());
        fields.insert("name".into(), json!(record));
        fields.insert("type".into(), json!("recording"));
        fields.insert("labels".into(), json!(labels));
    }
}

fn alerting_rule(rule: &RuleView, load_error: Option<String>) -> Value {
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
    // a broken edit: the last good version runs, but the file is in error
    let last_error = load_error
        .map(|error| format!("{error} (the last good version keeps running)"))
        .or_else(|| rule.status.last_error.clone());
    json!({
        "state": rule_state,
        "name": rule.name,
        "query": match &rule.query { Value::String(text) => text.clone(), other => other.to_string() },
        "duration": rule.for_seconds,
        "labels": rule_labels(&rule.labels, rule.severity.as_deref()),
        "annotations": rule.summary.as_ref().map_or_else(|| json!({}), |summary| json!({"summary": summary})),
        "alerts": alerts,
        "health": match (&rule.status.last_evaluation, &last_error) {
            (_, Some(_)) => "err",
            (None, None) => "unknown",
            (Some(_), None) => "ok",
        },
        "lastError": last_error.unwrap_or_default(),
        "evaluationTime": rule.status.evaluation_seconds,
        "lastEvaluation": rule.status.last_evaluation.map_or_else(
            || "0001-01-01T00:00:00Z".to_string(),
            |time| time.to_rfc3339(),
        ),
        "lastMatch": rule.status.last_match.map(|time| time.to_rfc3339()),
        "neverMatched": rule.status.never_matched(),
        "warnings": rule.warnings,
        "type": "alerting",
    })
}

/// A rule file that does not run: one that does not load (and has no good version
/// running), or one not started yet; with what can be read of it. Its group interval is
/// that of its schedule when that part is valid.
fn not_running_rule(name: &str, text: &str, load_error: Option<String>) -> (Value, f64) {
    let file: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_value(file["labels"].clone()).unwrap_or_default();
    let schedule = file["schedule"].as_str().unwrap_or("0 * * * * *");
    let interval = crate::scheduler::schedule::Schedule::parse(schedule, file["timezone"].as_str())
        .ok()
        .and_then(|schedule| {
            let next = schedule.next_after(chrono::Utc::now())?;
            Some((schedule.next_after(next)? - next).as_seconds_f64())
        })
        .unwrap_or(0.0);
    let query = match (&file["query"], &file["promql"]) {
        (Value::String(text), _) | (_, Value::String(text)) => text.clone(),
        (Value::Null, _) => String::new(),
        (other, _) => other.to_string(),
    };
    let rule = json!({
        "state": "inactive",
        "name": name,
        "query": query,
        "duration": 0,
        "labels": rule_labels(&labels, file["severity"].as_str()),
        "annotations": {},
        "alerts": [],
        "health": if load_error.is_some() { "err" } else { "unknown" },
        "lastError": load_error.unwrap_or_default(),
        "evaluationTime": 0,
        "lastEvaluation": "0001-01-01T00:00:00Z",
        "type": "alerting",
    });
    let mut rule = rule;
    if let Some(record) = file["record"].as_str() {
        recording_shape(&mut rule, record, &labels);
    }
    (rule, interval)
}

async fn alerts(State(state): State<SharedState>) -> Response {
    let manager = state.rules.get();
    let alerts: Vec<Value> = running(&state)
        .iter()
        .flat_map(|rule| {
            rule.status
                .alerts
                .iter()
                .map(|alert| {
                    let mut json = alert_json(rule, alert);
                    // Lookout's addition: the route of each destination, its group, and
                    // whether it is inhibited, muted or waiting there
                    if let Some(manager) = manager {
                        json["routing"] = json!(manager.routing_of(&rule.name, &alert.labels));
                    }
                    json
                })
                .collect::<Vec<_>>()
        })
        .collect();
    ok(&json!({"status": "success", "data": {"alerts": alerts}}))
}
