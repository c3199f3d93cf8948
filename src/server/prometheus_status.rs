//! Prometheus' status and tooling API, in the shapes of Prometheus' `web/api/v1/api.go`:
//! `/api/v1/status/{config,flags,runtimeinfo,tsdb}`, `/api/v1/targets/metadata`,
//! `/api/v1/alertmanagers`, `/api/v1/query_exemplars` and `/api/v1/format_query` — what
//! Grafana's Prometheus data source, Prometheus' own pages and `promtool` read.
//!
//! Each answers `GET` and a form `POST` too: Grafana's backend sends resource calls as
//! `POST` first when the data source is set to `POST` (its default), and only falls back
//! to `GET` on 400 or 405, which a key without the admin role would never see.
//!
//! Exemplars are not stored: `/api/v1/query_exemplars` checks its query and time range
//! and answers an empty list, as Prometheus does for a store without exemplars.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::SharedState;
use super::error::PrometheusError;
use super::prometheus_query::{Params, bad_data, invalid_parameter, parse_query, success};
use crate::promql::Annotations;
use crate::scrape::target::{DEFAULT_INTERVAL, DEFAULT_TIMEOUT, prometheus_duration};

/// Prometheus' default `limit` of `/api/v1/status/tsdb`.
const DEFAULT_TSDB_LIMIT: usize = 10;
/// The largest `limit` accepted anywhere here.
const MAX_LIMIT: usize = 100_000;
/// What Prometheus writes for a secret in `/api/v1/status/config`.
const SECRET: &str = "<secret>";

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/status/config", get(config).post(config))
        .route("/api/v1/status/flags", get(flags).post(flags))
        .route(
            "/api/v1/status/runtimeinfo",
            get(runtimeinfo).post(runtimeinfo),
        )
        .route("/api/v1/status/tsdb", get(tsdb).post(tsdb))
        .route(
            "/api/v1/targets/metadata",
            get(targets_metadata).post(targets_metadata),
        )
        .route(
            "/api/v1/alertmanagers",
            get(alertmanagers).post(alertmanagers),
        )
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/api/v1/format_query", get(format_query).post(format_query))
}

fn answer(result: Result<Value, PrometheusError>) -> Response {
    match result {
        Ok(data) => success(data, &Annotations::default()),
        Err(failure) => failure.into_response(),
    }
}

/// An optional positive `limit` (at most [`MAX_LIMIT`]).
fn limit(params: &Params, default: usize) -> Result<usize, PrometheusError> {
    match params.get("limit") {
        None | Some("") => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if limit > 0 => Ok(limit.min(MAX_LIMIT)),
            _ => Err(invalid_parameter(
                "limit",
                format!("{text:?} is not a positive integer"),
            )),
        },
    }
}

/// `/api/v1/status/config`: the effective scrape config as Prometheus' YAML (defaults
/// filled in), every password and token written `<secret>`.
async fn config(State(state): State<SharedState>) -> Response {
    answer(config_yaml(&state).map(|yaml| json!({ "yaml": yaml })))
}

fn config_yaml(state: &SharedState) -> Result<String, PrometheusError> {
    let configs = state
        .scrape
        .get()
        .map(|manager| manager.configs())
        .unwrap_or_default();
    let jobs: Vec<Value> = configs
        .iter()
        .map(|config| {
            let mut job = serde_json::to_value(config).expect("a scrape config serializes");
            let interval = config.scrape_interval.unwrap_or(DEFAULT_INTERVAL);
            let timeout = config
                .scrape_timeout
                .unwrap_or(DEFAULT_TIMEOUT)
                .min(interval);
            job["scrape_interval"] = json!(prometheus_duration(interval));
            job["scrape_timeout"] = json!(prometheus_duration(timeout));
            if let Some(auth) = &config.basic_auth
                && auth.password.is_some()
            {
                job["basic_auth"]["password"] = json!(SECRET);
            }
            if config.bearer_token.is_some() {
                job["authorization"] = json!({"type": "Bearer", "credentials": SECRET});
            }
            without_empty(job)
        })
        .collect();
    let document = json!({
        "global": {
            "scrape_interval": prometheus_duration(DEFAULT_INTERVAL),
            "scrape_timeout": prometheus_duration(DEFAULT_TIMEOUT),
            "evaluation_interval": prometheus_duration(DEFAULT_INTERVAL),
        },
        "scrape_configs": jobs,
    });
    serde_yaml_ng::to_string(&document)
        .map_err(|error| bad_data(format!("cannot write the config as YAML: {error}")))
}

/// `value` without its nulls and empty lists and maps (Prometheus omits unset fields).
fn without_empty(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key, without_empty(value)))
                .filter(|(_, value)| match value {
                    Value::Null => false,
                    Value::Array(items) => !items.is_empty(),
                    Value::Object(map) => !map.is_empty(),
                    _ => true,
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_empty).collect()),
        other => other,
    }
}

/// `/api/v1/status/flags`: Lookout has no Prometheus flags; these are the settings that
/// stand in for them, under Prometheus' flag names.
async fn flags(State(state): State<SharedState>) -> Response {
    let engine = &state.series.engine;
    let tsdb = &state.series.tsdb.options;
    let flags: BTreeMap<&str, String> = BTreeMap::from([
        (
            "query.lookback-delta",
            prometheus_duration(engine.lookback_delta),
        ),
        ("query.timeout", prometheus_duration(engine.timeout)),
        ("query.max-samples", engine.max_samples.to_string()),
        (
            "storage.tsdb.retention.time",
            prometheus_duration(tsdb.retention),
        ),
        (
            "storage.tsdb.min-block-duration",
            prometheus_duration(tsdb.block_duration),
        ),
        (
            "storage.tsdb.max-block-duration",
            prometheus_duration(tsdb.block_duration),
        ),
        (
            "enable-feature",
            if engine.delayed_name_removal {
                "promql-delayed-name-removal".to_string()
            } else {
                String::new()
            },
        ),
    ]);
    answer(Ok(json!(flags)))
}

/// `/api/v1/status/runtimeinfo`: Prometheus' fields, the Go-specific ones with the
/// nearest Lookout equivalent (tasks for goroutines, worker threads for `GOMAXPROCS`).
async fn runtimeinfo(State(state): State<SharedState>) -> Response {
    let started = chrono::Utc::now()
        - chrono::Duration::from_std(state.started.elapsed()).unwrap_or_default();
    let started = started.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let runtime = tokio::runtime::Handle::current().metrics();
    answer(Ok(json!({
        "startTime": started,
        "CWD": std::env::current_dir().map(|dir| dir.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": true,
        "lastConfigTime": started,
        "corruptionCount": 0,
        "goroutineCount": runtime.num_alive_tasks(),
        "GOMAXPROCS": runtime.num_workers(),
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": prometheus_duration(state.series.tsdb.options.retention),
    })))
}

/// `/api/v1/status/tsdb[?limit=N]`: the head's statistics, the top `limit` (default 10)
/// of each list, largest first, as Prometheus' `index.Postings.Stats` computes them.
async fn tsdb(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(Params::read(raw, &headers, &body).and_then(|params| {
        let limit = limit(&params, DEFAULT_TSDB_LIMIT)?;
        Ok(tsdb_stats(&state, limit))
    }))
}

fn tsdb_stats(state: &SharedState, limit: usize) -> Value {
    let head = &state.series.tsdb.head;
    let (pairs, chunks) = head.postings_stats();
    let mut by_metric = Vec::new();
    let mut value_counts = Vec::new();
    let mut memory = Vec::new();
    let mut by_pair = Vec::new();
    let mut label_pairs = 0;
    for (name, values) in &pairs {
        label_pairs += values.len();
        value_counts.push((name.clone(), values.len()));
        let mut bytes = 0;
        for (value, series) in values {
            bytes += value.len() * series;
            by_pair.push((format!("{name}={value}"), *series));
            if name == "__name__" {
                by_metric.push((value.clone(), *series));
            }
        }
        memory.push((name.clone(), bytes));
    }
    let top = |mut stats: Vec<(String, usize)>| -> Value {
        stats.sort_by(|left, right| right.1.cmp(&left.1).then_with(|| left.0.cmp(&right.0)));
        stats
            .into_iter()
            .take(limit)
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect()
    };
    // Prometheus reports an empty head as [MaxInt64, MinInt64]
    let (min_time, max_time) = head.time_range().unwrap_or((i64::MAX, i64::MIN));
    json!({
        "headStats": {
            "numSeries": head.active_series(),
            "numLabelPairs": label_pairs,
            "chunkCount": chunks,
            "minTime": min_time,
            "maxTime": max_time,
        },
        "seriesCountByMetricName": top(by_metric),
        "labelValueCountByLabelName": top(value_counts),
        "memoryInBytesByLabelName": top(memory),
        "seriesCountByLabelValuePair": top(by_pair),
    })
}

/// `/api/v1/targets/metadata[?match_target=SELECTOR&metric=NAME&limit=N]`: each
/// target's families from its last successful scrape.
async fn targets_metadata(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(Params::read(raw, &headers, &body).and_then(|params| {
        let limit = limit(&params, usize::MAX)?;
        let matchers = match params.get("match_target").filter(|text| !text.is_empty()) {
            Some(text) => crate::notify::matcher::parse_matchers(text)
                .map_err(|error| invalid_parameter("match_target", error))?,
            None => Vec::new(),
        };
        let metric = params.get("metric").filter(|metric| !metric.is_empty());
        let targets = state
            .scrape
            .get()
            .map(|manager| manager.targets())
            .unwrap_or_default();
        let mut found = Vec::new();
        for status in targets {
            if !crate::notify::matcher::all_match(&matchers, &status.target.labels) {
                continue;
            }
            let families: BTreeMap<_, _> = status.metadata.iter().collect();
            for (family, entry) in families {
                if metric.is_some_and(|metric| metric != family) {
                    continue;
                }
                found.push(json!({
                    "target": status.target.labels,
                    "metric": family,
                    "type": entry.metric_type.name(),
                    "help": entry.help,
                    "unit": entry.unit,
                }));
            }
        }
        found.truncate(limit);
        Ok(Value::Array(found))
    }))
}

/// `/api/v1/alertmanagers`: the Alertmanagers alerts are sent to.
async fn alertmanagers(State(state): State<SharedState>) -> Response {
    let active: Vec<Value> = alertmanager_urls(&state)
        .into_iter()
        .map(|url| json!({ "url": url }))
        .collect();
    answer(Ok(
        json!({"activeAlertmanagers": active, "droppedAlertmanagers": []}),
    ))
}

/// The Alertmanager endpoints (`…/api/v2/alerts`) alerts go to: every peer of each
/// `alertmanager` notifier (none before the rules start).
fn alertmanager_urls(state: &SharedState) -> Vec<String> {
    state
        .rules
        .get()
        .map(|rules| rules.alertmanager_endpoints())
        .unwrap_or_default()
}

/// `/api/v1/query_exemplars?query=…&start=…&end=…`: the query and range are checked;
/// no exemplars are stored, so the answer is an empty list.
async fn query_exemplars(RawQuery(raw): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    answer(Params::read(raw, &headers, &body).and_then(|params| {
        parse_query(&params)?;
        let start = params.time("start")?;
        let end = params.time("end")?;
        if let (Some(start), Some(end)) = (start, end)
            && end < start
        {
            return Err(bad_data("end timestamp must not be before start timestamp"));
        }
        Ok(json!([]))
    }))
}

/// `/api/v1/format_query?query=…`: the query pretty-printed (promql-parser's
/// `prettify`, which follows Prometheus' `Prettify`).
async fn format_query(RawQuery(raw): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    answer(
        Params::read(raw, &headers, &body)
            .and_then(|params| parse_query(&params))
            .map(|expr| Value::String(expr.ast.prettify())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_left_out_as_prometheus_omits_them() {
        let value =
            json!({"a": null, "b": [], "c": {}, "d": {"e": null, "f": 1}, "g": [{"h": []}]});
        assert_eq!(without_empty(value), json!({"d": {"f": 1}, "g": [{}]}));
    }
}
