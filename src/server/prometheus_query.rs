//! Prometheus' query API over Lookout's metrics store: `/api/v1/query`,
//! `/api/v1/query_range` (GET or form POST), `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/{name}/values` and `/api/v1/status/buildinfo`, with Prometheus'
//! envelopes, `errorType`s and status codes (400 `bad_data`, 422 `execution`, 503
//! `timeout`), so `promtool query` and Grafana's Prometheus data source work unchanged.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::SharedState;
use super::error::{ApiError, ErrorCode, PrometheusError};
use super::query_pool::PoolError;
use super::response::json_response;
use crate::promql::series::{SeriesError, SeriesSource, matching_series};
use crate::promql::{self, Annotations, Engine, QueryValue};
use crate::tsdb::head::Labels;

/// Prometheus refuses range queries with more points per series than this.
const MAX_POINTS: i64 = 11_000;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(buildinfo).post(buildinfo))
        .route("/api/v1/metadata", get(metadata))
}

/// A Prometheus `bad_data` error (400).
pub(super) fn bad_data(message: impl Into<String>) -> PrometheusError {
    PrometheusError(ApiError::new(ErrorCode::BadRequest, "bad_data", message))
}

/// A `bad_data` error about the parameter `name`.
pub(super) fn invalid_parameter(name: &str, message: impl std::fmt::Display) -> PrometheusError {
    bad_data(format!("invalid parameter {name:?}: {message}"))
}

/// The request's parameters: the URL's, then a form body's (as Prometheus merges them).
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn read(
        raw: Option<String>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Params, PrometheusError> {
        let mut pairs: Vec<(String, String)> = match raw {
            Some(raw) => serde_urlencoded::from_str(&raw)
                .map_err(|error| bad_data(format!("invalid query string: {error}")))?,
            None => Vec::new(),
        };
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        if form && !body.is_empty() {
            let body: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|error| bad_data(format!("invalid form body: {error}")))?;
            pairs.extend(body);
        }
        Ok(Params(pairs))
    }

    /// Every parameter, in the order given.
    pub(super) fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// A required or optional time parameter, in milliseconds.
    pub(super) fn time(&self, name: &str) -> Result<Option<i64>, PrometheusError> {
        self.get(name)
            .map(|text| parse_time(text).map_err(|error| invalid_parameter(name, error)))
            .transpose()
    }

    fn engine(&self, state: &SharedState) -> Result<Engine, PrometheusError> {
        let mut options = state.series.engine.clone();
        if let Some(text) = self.get("timeout") {
            let timeout = promql::parse_duration(text)
                .filter(|ms| *ms > 0)
                .ok_or_else(|| {
                    invalid_parameter(
                        "timeout",
                        format!("cannot parse {text:?} to a valid duration"),
                    )
                })?;
            options.timeout = options.timeout.min(Duration::from_millis(timeout as u64));
        }
        Ok(Engine::new(options))
    }
}

/// Prometheus' `parseTime`: Unix seconds with an optional fraction, or RFC 3339.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
    {
        return Ok((seconds * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_millis())
        .map_err(|_| format!("cannot parse {text:?} to a valid timestamp"))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A timestamp as Prometheus writes it: seconds, with milliseconds when not whole.
fn time_json(ms: i64) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn metric_json(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect::<Map<_, _>>(),
    )
}

pub(super) fn success(data: Value, annotations: &Annotations) -> Response {
    let mut body = json!({"status": "success", "data": data});
    if !annotations.warnings.is_empty() {
        body["warnings"] = json!(annotations.warnings);
    }
    if !annotations.infos.is_empty() {
        body["infos"] = json!(annotations.infos);
    }
    json_response(StatusCode::OK, &body)
}

/// A matrix answer written straight to text: a range query over thousands of series
/// would otherwise build millions of JSON values first.
fn success_matrix(series: &[promql::Series], annotations: &Annotations) -> Response {
    use std::fmt::Write;
    let points: usize = series.iter().map(|series| series.points.len()).sum();
    let mut text = String::with_capacity(64 + series.len() * 128 + points * 32);
    text.push_str(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for (number, series) in series.iter().enumerate() {
        if number > 0 {
            text.push(',');
        }
        text.push_str(r#"{"metric":{"#);
        for (position, (name, value)) in series.labels.iter().enumerate() {
            if position > 0 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(name).unwrap_or_default());
            text.push(':');
            text.push_str(&serde_json::to_string(value).unwrap_or_default());
        }
        text.push_str(r#"},"values":["#);
        for (position, (time, value)) in series.points.iter().enumerate() {
            if position > 0 {
                text.push(',');
            }
            let _ = write!(
                text,
                "[{},\"{}\"]",
                time_json(*time),
                promql::format_value(*value)
            );
        }
        text.push_str("]}");
    }
    text.push_str("]}");
    for (key, notes) in [
        ("warnings", &annotations.warnings),
        ("infos", &annotations.infos),
    ] {
        if !notes.is_empty() {
            let _ = write!(
                text,
                r#","{key}":{}"#,
                serde_json::to_string(notes).unwrap_or_default()
            );
        }
    }
    text.push('}');
    super::response::json_text(StatusCode::OK, text)
}

fn matrix_json(series: &[promql::Series]) -> Value {
    Value::Array(
        series
            .iter()
            .map(|series| {
                let values: Vec<Value> = series
                    .points
                    .iter()
                    .map(|(time, value)| json!([time_json(*time), promql::format_value(*value)]))
                    .collect();
                json!({"metric": metric_json(&series.labels), "values": values})
            })
            .collect(),
    )
}

fn result_json(value: &QueryValue) -> Value {
    match value {
        QueryValue::Scalar { timestamp, value } => {
            json!({"resultType": "scalar", "result": [time_json(*timestamp), promql::format_value(*value)]})
        }
        QueryValue::String { timestamp, value } => {
            json!({"resultType": "string", "result": [time_json(*timestamp), value]})
        }
        QueryValue::Vector(samples) => {
            let result: Vec<Value> = samples
                .iter()
                .map(|sample| {
                    json!({"metric": metric_json(&sample.labels), "value": [time_json(sample.timestamp), promql::format_value(sample.value)]})
                })
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        QueryValue::Matrix(series) => {
            json!({"resultType": "matrix", "result": matrix_json(series)})
        }
    }
}

/// Runs an evaluation on the PromQL query pool (off the async threads, at most
/// `metrics.query_max_concurrency` at once); a full pool answers 503 at once.
async fn evaluate<T: Send + 'static>(
    state: &SharedState,
    run: impl FnOnce(&CancellationToken) -> Result<T, promql::Error> + Send + 'static,
) -> Result<T, PrometheusError> {
    match state.promql_pool.run(run).await {
        Ok(result) => Ok(result?),
        Err(busy @ PoolError::Busy { .. }) => Err(PrometheusError(ApiError::new(
            ErrorCode::Unavailable,
            "unavailable",
            busy.to_string(),
        ))),
        Err(error) => Err(PrometheusError(ApiError::new(
            ErrorCode::Internal,
            "internal",
            error.to_string(),
        ))),
    }
}

/// A query that selects `log_matches` reads the index: it is a search (and refreshes
/// first when the index is search-idle); metrics-only queries leave the index alone.
async fn before_log_search(state: &SharedState, expr: &promql::Expr) {
    if state.series.log_matches.read_by(expr) {
        state.ingest.before_search().await;
    }
}

pub(super) fn parse_query(params: &Params) -> Result<promql::Expr, PrometheusError> {
    let text = params.get("query").unwrap_or_default();
    promql::parse(text).map_err(|error| invalid_parameter("query", error))
}

async fn query(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run_query(state, raw, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn run_query(
    state: SharedState,
    raw: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, PrometheusError> {
    let params = Params::read(raw, headers, body)?;
    let time = params
        .get("time")
        .map(|text| {
            parse_time(text).map_err(|error| {
                invalid_parameter("time", format!("Invalid time value for 'time': {error}"))
            })
        })
        .transpose()?
        .unwrap_or_else(now_ms);
    let expr = parse_query(&params)?;
    let engine = params.engine(&state)?;
    before_log_search(&state, &expr).await;
    let series = std::sync::Arc::clone(&state.series);
    let (value, annotations) = evaluate(&state, move |cancel| {
        let engine = engine.cancelled_by(cancel);
        series.read(|storage| engine.instant(storage, &expr, time))
    })
    .await?;
    Ok(success(result_json(&value), &annotations))
}

async fn query_range(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run_query_range(state, raw, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn run_query_range(
    state: SharedState,
    raw: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, PrometheusError> {
    let params = Params::read(raw, headers, body)?;
    let required_time = |name: &str| -> Result<i64, PrometheusError> {
        let text = params.get(name).unwrap_or_default();
        parse_time(text).map_err(|error| invalid_parameter(name, error))
    };
    let start = required_time("start")?;
    let end = required_time("end")?;
    if end < start {
        return Err(invalid_parameter(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step_text = params.get("step").unwrap_or_default();
    let step = promql::parse_duration(step_text).ok_or_else(|| {
        invalid_parameter(
            "step",
            format!("cannot parse {step_text:?} to a valid duration"),
        )
    })?;
    if step <= 0 {
        return Err(invalid_parameter(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let expr = parse_query(&params)?;
    let engine = params.engine(&state)?;
    before_log_search(&state, &expr).await;
    let series = std::sync::Arc::clone(&state.series);
    let (series, annotations) = evaluate(&state, move |cancel| {
        let engine = engine.cancelled_by(cancel);
        series.read(|storage| engine.range(storage, &expr, start, end, step))
    })
    .await?;
    Ok(success_matrix(&series, &annotations))
}

/// The label sets of the series the `match[]` selectors name with samples in
/// `[start, end]`; every series when no selector is given and `required` is false.
fn matching_series_of(
    state: &SharedState,
    params: &Params,
    required: bool,
) -> Result<Option<BTreeSet<Labels>>, PrometheusError> {
    let selectors = params.all("match[]");
    if selectors.is_empty() {
        if required {
            return Err(bad_data("no match[] parameter provided"));
        }
        return Ok(None);
    }
    let start = params.time("start")?.unwrap_or(i64::MIN / 2);
    let end = params.time("end")?.unwrap_or(i64::MAX / 2);
    let sources: [&dyn SeriesSource; 3] = [
        &*state.series.tsdb,
        &*state.series.log_matches,
        &*state.series.slos,
    ];
    match matching_series(&sources, &selectors, start, end) {
        Ok(found) => Ok(Some(found)),
        Err(SeriesError::Selector(error)) => Err(invalid_parameter("match[]", error)),
        Err(SeriesError::Source(error)) => Err(bad_data(error.to_string())),
    }
}

/// [`matching_series_of`] on a blocking thread (`log_matches` searches the index).
async fn series_of(
    state: &SharedState,
    params: Result<Params, PrometheusError>,
    required: bool,
) -> Result<Option<BTreeSet<Labels>>, PrometheusError> {
    let (state, params) = (std::sync::Arc::clone(state), params?);
    state.ingest.before_search().await;
    let reader = std::sync::Arc::clone(&state);
    evaluate(&state, move |_| {
        Ok(matching_series_of(&reader, &params, required))
    })
    .await?
}

async fn series(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = series_of(&state, Params::read(raw, &headers, &body), true).await;
    match result {
        Ok(found) => {
            let data: Vec<Value> = found.unwrap_or_default().iter().map(metric_json).collect();
            success(Value::Array(data), &Annotations::default())
        }
        Err(failure) => failure.into_response(),
    }
}

async fn labels(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = series_of(&state, Params::read(raw, &headers, &body), false).await;
    match result {
        Ok(Some(found)) => {
            let names: BTreeSet<&str> = found
                .iter()
                .flat_map(|labels| labels.iter().map(|(name, _)| name.as_str()))
                .collect();
            success(json!(names), &Annotations::default())
        }
        Ok(None) => {
            let mut names: BTreeSet<String> = state.series.tsdb.label_names().into_iter().collect();
            names.extend(state.series.log_matches.label_names());
            for labels in slo_series_now(&state).await {
                names.extend(labels.iter().map(|(name, _)| name.clone()));
            }
            success(json!(names), &Annotations::default())
        }
        Err(failure) => failure.into_response(),
    }
}

async fn label_values(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = series_of(&state, Params::read(raw, &headers, &Bytes::new()), false).await;
    match result {
        Ok(Some(found)) => {
            let values: BTreeSet<&str> = found
                .iter()
                .filter_map(|labels| {
                    labels
                        .iter()
                        .find(|(label, _)| *label == name)
                        .map(|(_, value)| value.as_str())
                })
                .collect();
            success(json!(values), &Annotations::default())
        }
        Ok(None) => {
            let mut values: BTreeSet<String> =
                state.series.tsdb.label_values(&name).into_iter().collect();
            let logs = std::sync::Arc::clone(&state.series.log_matches);
            let label = name.clone();
            if let Ok(found) = evaluate(&state, move |_| Ok(logs.label_values(&label))).await {
                values.extend(found);
            }
            for labels in slo_series_now(&state).await {
                values.extend(
                    labels
                        .iter()
                        .filter(|(label, _)| *label == name)
                        .map(|(_, value)| value.clone()),
                );
            }
            success(json!(values), &Annotations::default())
        }
        Err(failure) => failure.into_response(),
    }
}

/// The SLO series with a sample now, listed on a blocking thread (a log SLO counts
/// its logs); none when the query pool is full.
async fn slo_series_now(state: &SharedState) -> Vec<Labels> {
    let slos = std::sync::Arc::clone(&state.series.slos);
    evaluate(state, move |_| Ok(slos.series_now()))
        .await
        .unwrap_or_default()
}

/// `/api/v1/metadata[?metric=NAME&limit=N]`: each scraped family's type, help and unit.
async fn metadata(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = match Params::read(raw, &headers, &Bytes::new()) {
        Ok(params) => params,
        Err(failure) => return failure.into_response(),
    };
    let limit = match params.get("limit").map(str::parse::<i64>) {
        None => i64::MAX,
        Some(Ok(limit)) if limit > 0 => limit,
        Some(Ok(_)) => i64::MAX,
        Some(Err(_)) => return invalid_parameter("limit", "must be an integer").into_response(),
    };
    let wanted = params.get("metric").filter(|metric| !metric.is_empty());
    let all = state
        .scrape
        .get()
        .map(|manager| manager.metadata())
        .unwrap_or_default();
    let data: Map<String, Value> = all
        .into_iter()
        .filter(|(family, _)| wanted.is_none_or(|wanted| wanted == family))
        .take(limit.min(usize::MAX as i64) as usize)
        .map(|(family, entry)| {
            (
                family,
                json!([{"type": entry.metric_type.name(), "help": entry.help, "unit": entry.unit}]),
            )
        })
        .collect();
    success(Value::Object(data), &Annotations::default())
}

async fn buildinfo() -> Response {
    success(
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "revision": option_env!("LOOKOUT_REVISION").unwrap_or("unknown"),
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
            "application": "lookout",
        }),
        &Annotations::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_written_matrix_is_the_json_the_value_tree_gives() {
        let series = vec![promql::Series {
            labels: crate::tsdb::head::labels(&[("__name__", "up"), ("path", "/a\"b\\c\n")]),
            points: vec![
                (1_000, 1.0),
                (1_500, f64::NAN),
                (2_000, f64::NEG_INFINITY),
                (2_001, 0.1),
            ],
        }];
        let annotations = Annotations {
            warnings: vec!["PromQL warning: x (1:1)".into()],
            infos: Vec::new(),
        };
        let response = success_matrix(&series, &annotations);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let written: Value = serde_json::from_slice(&bytes).expect("valid JSON");
        let expected = json!({
            "status": "success",
            "data": {"resultType": "matrix", "result": matrix_json(&series)},
            "warnings": annotations.warnings,
        });
        assert_eq!(written, expected);
        assert_eq!(
            written["data"]["result"][0]["values"][3],
            json!([2.001, "0.1"])
        );
    }
}
