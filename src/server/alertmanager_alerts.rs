//! Alerts in Alertmanager 0.25's v2 API shapes (`api/v2/openapi.yaml`), so Grafana's
//! Alertmanager data source (implementation "Prometheus") and `amtool` read Lookout as
//! an Alertmanager: `GET /api/v2/alerts`, `GET /api/v2/alerts/groups`,
//! `GET /api/v2/status`, `GET /api/v2/receivers`.
//!
//! An alert here is a firing alert of a running rule (pending ones are not sent to an
//! Alertmanager either); its receivers and groups are where Lookout's routing sends it,
//! its `silencedBy` the active silences matching it, its `inhibitedBy` the fingerprint
//! of the alert inhibiting it. Lookout does not take alerts from outside (`POST
//! /api/v2/alerts` is not served).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::SharedState;
use super::error::{AlertmanagerError, ApiError};
use super::response::ok;
use crate::notify::matcher::{Matcher, all_match, parse_matchers};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v2/alerts", get(alerts))
        .route("/api/v2/alerts/groups", get(groups))
        .route("/api/v2/status", get(status))
        .route("/api/v2/receivers", get(receivers))
}

fn bad_request(reason: String) -> Response {
    AlertmanagerError(ApiError::bad_request("bad_data", reason)).into_response()
}

/// Alertmanager's label-set fingerprint (`model.LabelSet.Fingerprint`): FNV-1a 64 over
/// each sorted name and value, each followed by the byte 0xff, as 16 hex digits.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    if labels.is_empty() {
        return format!("{:016x}", 0);
    }
    let mut hash = OFFSET;
    for (name, value) in labels {
        for byte in name
            .bytes()
            .chain([0xff])
            .chain(value.bytes())
            .chain([0xff])
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    format!("{hash:016x}")
}

/// The query parameters Alertmanager's `getAlerts` and `getAlertGroups` take.
#[derive(Debug)]
struct AlertFilter {
    matchers: Vec<Matcher>,
    silenced: bool,
    inhibited: bool,
    active: bool,
    receiver: Option<regex::Regex>,
}

/// The longest `receiver` regex accepted.
const MAX_RECEIVER_REGEX_BYTES: usize = 1024;

impl AlertFilter {
    fn parse(raw: Option<&str>) -> Result<AlertFilter, String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
            .map_err(|error| format!("invalid query string: {error}"))?;
        let mut filter = AlertFilter {
            matchers: Vec::new(),
            silenced: true,
            inhibited: true,
            active: true,
            receiver: None,
        };
        let flag = |name: &str, value: &str| match value {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("`{name}` is `true` or `false`, not {other:?}")),
        };
        for (name, value) in &pairs {
            match name.as_str() {
                "filter" => filter.matchers.extend(parse_matchers(value).map_err(|error| {
                    format!("bad matcher format: {error}; write a filter like alertname=\"checkout_5xx\"")
                })?),
                "silenced" => filter.silenced = flag(name, value)?,
                "inhibited" => filter.inhibited = flag(name, value)?,
                "active" => filter.active = flag(name, value)?,
                // every alert here has been processed by routing
                "unprocessed" => {
                    flag(name, value)?;
                }
                "receiver" if !value.is_empty() => {
                    if value.len() > MAX_RECEIVER_REGEX_BYTES {
                        return Err(format!(
                            "`receiver` is at most {MAX_RECEIVER_REGEX_BYTES} bytes"
                        ));
                    }
                    filter.receiver = Some(
                        regex::RegexBuilder::new(&format!("^(?:{value})$"))
                            .size_limit(1 << 20)
                            .build()
                            .map_err(|error| format!("`receiver` is not a valid regex: {error}"))?,
                    );
                }
                _ => {}
            }
        }
        Ok(filter)
    }
}

/// One alert as Alertmanager's `gettableAlert`, with the routing destinations it has
/// (receiver, group key, group labels).
struct Gettable {
    json: Value,
    destinations: Vec<(String, String, Value)>,
}

/// Every firing alert of the running rules that `filter` keeps.
fn gettable_alerts(state: &SharedState, filter: &AlertFilter, now: DateTime<Utc>) -> Vec<Gettable> {
    let Some(manager) = state.rules.get() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for rule in manager.rules(false) {
        for alert in rule.status.alerts.iter().filter(|alert| alert.firing) {
            let labels = super::prometheus::alert_labels(&rule, alert);
            if !all_match(&filter.matchers, &labels) {
                continue;
            }
            let routing = manager.routing_of(&rule.name, &alert.labels);
            let destinations: Vec<(String, String, Value)> = routing
                .iter()
                .map(|decision| {
                    (
                        decision["notifier"]
                            .as_str()
                            .unwrap_or("console")
                            .to_string(),
                        decision["group_key"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        decision["group_labels"].clone(),
                    )
                })
                .filter(|(receiver, _, _)| {
                    filter
                        .receiver
                        .as_ref()
                        .is_none_or(|regex| regex.is_match(receiver))
                })
                .collect();
            if filter.receiver.is_some() && destinations.is_empty() {
                continue;
            }
            let silenced_by = state.silences.silenced_by(&labels, now);
            let mut inhibited_by: Vec<String> = routing
                .iter()
                .filter_map(|decision| {
                    let source: BTreeMap<String, String> =
                        serde_json::from_value(decision.get("inhibited_by")?.clone()).ok()?;
                    Some(fingerprint(&source))
                })
                .collect();
            inhibited_by.sort();
            inhibited_by.dedup();
            let suppressed = !silenced_by.is_empty() || !inhibited_by.is_empty();
            let keep = (filter.active || suppressed)
                && (filter.silenced || silenced_by.is_empty())
                && (filter.inhibited || inhibited_by.is_empty());
            if !keep {
                continue;
            }
            let started = alert.active_since.unwrap_or(now);
            // as Prometheus sends them: valid for four evaluation intervals unless renewed
            let interval =
                chrono::Duration::milliseconds((rule.interval_seconds.max(60.0) * 4000.0) as i64);
            let receivers: Vec<Value> = destinations
                .iter()
                .map(|(name, _, _)| json!({ "name": name }))
                .collect();
            let json = json!({
                "annotations": alert.annotations,
                "endsAt": timestamp(now + interval),
                "fingerprint": fingerprint(&labels),
                "receivers": receivers,
                "startsAt": timestamp(started),
                "status": {
                    "inhibitedBy": inhibited_by,
                    "silencedBy": silenced_by,
                    "state": if suppressed { "suppressed" } else { "active" },
                },
                "updatedAt": timestamp(rule.status.last_evaluation.unwrap_or(now)),
                "generatorURL": "/ui/alerts",
                "labels": labels,
            });
            found.push(Gettable { json, destinations });
        }
    }
    found
}

/// Alertmanager's time format: RFC 3339 with milliseconds, `Z`.
fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `GET /api/v2/alerts[?filter=…&silenced=&inhibited=&active=&receiver=]`.
async fn alerts(State(state): State<SharedState>, RawQuery(raw): RawQuery) -> Response {
    let filter = match AlertFilter::parse(raw.as_deref()) {
        Ok(filter) => filter,
        Err(reason) => return bad_request(reason),
    };
    let alerts: Vec<Value> = gettable_alerts(&state, &filter, Utc::now())
        .into_iter()
        .map(|alert| alert.json)
        .collect();
    ok(&Value::Array(alerts))
}

/// `GET /api/v2/alerts/groups`: the alerts by routing destination and group.
async fn groups(State(state): State<SharedState>, RawQuery(raw): RawQuery) -> Response {
    let filter = match AlertFilter::parse(raw.as_deref()) {
        Ok(filter) => filter,
        Err(reason) => return bad_request(reason),
    };
    let mut groups: BTreeMap<(String, String), (Value, Vec<Value>)> = BTreeMap::new();
    for alert in gettable_alerts(&state, &filter, Utc::now()) {
        for (receiver, key, labels) in alert.destinations {
            groups
                .entry((receiver, key))
                .or_insert_with(|| (labels, Vec::new()))
                .1
                .push(alert.json.clone());
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|((receiver, _), (labels, alerts))| {
            let labels = if labels.is_object() {
                labels
            } else {
                json!({})
            };
            json!({"alerts": alerts, "labels": labels, "receiver": {"name": receiver}})
        })
        .collect();
    ok(&Value::Array(groups))
}

fn receiver_names(state: &SharedState) -> Vec<String> {
    state
        .rules
        .get()
        .map(|manager| manager.receivers())
        .unwrap_or_else(|| vec!["console".to_string()])
}

/// `GET /api/v2/receivers`: every configured notifier, `console` included.
async fn receivers(State(state): State<SharedState>) -> Response {
    let names: Vec<Value> = receiver_names(&state)
        .into_iter()
        .map(|name| json!({ "name": name }))
        .collect();
    ok(&Value::Array(names))
}

/// `GET /api/v2/status`. `config.original` is an Alertmanager config that names the
/// receivers (so `amtool config` and Grafana can read it); Lookout's routing tree
/// itself is its `[routing]` config, shown per alert by `/api/v1/alerts`.
async fn status(State(state): State<SharedState>) -> Response {
    let names = receiver_names(&state);
    let default = if names.iter().any(|name| name == "console") {
        "console".to_string()
    } else {
        names.first().cloned().unwrap_or_else(|| "console".into())
    };
    let config = json!({
        "route": {"receiver": default},
        "receivers": names.iter().map(|name| json!({"name": name})).collect::<Vec<_>>(),
    });
    let original = format!(
        "# Lookout's receivers; its routing tree is the [routing] config of lookout.toml\n{}",
        serde_yaml_ng::to_string(&config).unwrap_or_default()
    );
    let started =
        Utc::now() - chrono::Duration::from_std(state.started.elapsed()).unwrap_or_default();
    ok(&json!({
        "cluster": {"peers": [], "status": "disabled"},
        "config": {"original": original},
        "uptime": timestamp(started),
        "versionInfo": {
            "branch": "",
            "buildDate": "",
            "buildUser": "",
            "goVersion": "",
            "revision": option_env!("LOOKOUT_REVISION").unwrap_or("unknown"),
            "version": env!("CARGO_PKG_VERSION"),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_alertmanagers() {
        // from a real Alertmanager 0.25 answer (tests/golden/alertmanager-0.25/alerts.json)
        let labels = BTreeMap::from([
            ("alertname".to_string(), "HighErrors".to_string()),
            ("severity".to_string(), "page".to_string()),
        ]);
        assert_eq!(fingerprint(&labels), "6f14c1d4de448891");
    }

    #[test]
    fn filters_read_alertmanagers_parameters_and_refuse_bad_ones() {
        let filter = AlertFilter::parse(Some(
            "filter=alertname%3D%22a%22&filter=%7Bseverity%3D~%22p.%2A%22%7D&silenced=false&active=true&receiver=sl.%2A",
        ))
        .expect("valid");
        assert_eq!(filter.matchers.len(), 2);
        assert!(!filter.silenced && filter.inhibited && filter.active);
        assert!(filter.receiver.expect("receiver").is_match("slack"));
        for bad in ["silenced=yes", "filter=%3D%3D", "receiver=%28"] {
            let error = AlertFilter::parse(Some(bad)).expect_err(bad);
            assert!(!error.is_empty(), "{bad}");
        }
    }
}
