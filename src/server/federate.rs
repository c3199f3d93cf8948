//! `GET /federate?match[]=…`: the newest sample of every series the selectors name, in
//! Prometheus' text exposition format with timestamps, so an existing Prometheus can
//! scrape Lookout's series (scraped, recorded, and the `log_matches` series of saved log
//! queries) with `honor_labels: true`. Follows Prometheus' `web/federate.go`: samples
//! within the lookback delta of now, staleness markers skipped, families sorted by name
//! and typed `untyped`, empty labels left out, `[global] external_labels` added to every
//! series that does not have the label itself (and `instance=""` when neither has one).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::SharedState;
use crate::tsdb::head::Labels;

/// Most `match[]` selectors one request may have.
const MAX_SELECTORS: usize = 100;

pub fn routes() -> Router<SharedState> {
    Router::new().route("/federate", get(federate))
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message + "\n").into_response()
}

async fn federate(State(state): State<SharedState>, RawQuery(raw): RawQuery) -> Response {
    let pairs: Vec<(String, String)> =
        match serde_urlencoded::from_str(raw.as_deref().unwrap_or("")) {
            Ok(pairs) => pairs,
            Err(error) => return bad_request(format!("invalid query string: {error}")),
        };
    let selectors: Vec<String> = pairs
        .into_iter()
        .filter(|(key, _)| key == "match[]")
        .map(|(_, value)| value)
        .collect();
    if selectors.is_empty() {
        return bad_request(
            "no match[] parameter: name the series to federate, e.g. /federate?match[]={job=\"node\"}".into(),
        );
    }
    if selectors.len() > MAX_SELECTORS {
        return bad_request(format!(
            "{} match[] selectors; at most {MAX_SELECTORS} per request",
            selectors.len()
        ));
    }
    let mut groups = Vec::new();
    for selector in &selectors {
        match crate::promql::selector_matchers(selector) {
            Ok(found) => groups.extend(found),
            Err(error) => return bad_request(format!("match[] {selector:?}: {error}")),
        }
    }
    state.ingest.before_search().await;
    let now = chrono::Utc::now().timestamp_millis();
    let lookback = state.series.engine.lookback_delta.as_millis() as i64;
    let reader = std::sync::Arc::clone(&state);
    let text = tokio::task::spawn_blocking(move || {
        let mut newest: BTreeMap<Labels, (i64, f64)> = BTreeMap::new();
        reader.series.read(|storage| {
            for matchers in &groups {
                for (labels, samples) in storage.select(matchers, now - lookback, now) {
                    if let Some(&(time, value)) = samples.last()
                        && value.to_bits() != crate::promql::STALE_NAN_BITS
                    {
                        newest.insert(labels, (time, value));
                    }
                }
            }
        });
        exposition(&newest, &reader.external_labels)
    })
    .await
    .unwrap_or_default();
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Prometheus' text format of `series` (newest sample each), families by metric name.
pub fn exposition(
    series: &BTreeMap<Labels, (i64, f64)>,
    external_labels: &BTreeMap<String, String>,
) -> String {
    let mut external = external_labels.clone();
    external.entry("instance".into()).or_default();
    type Family<'a> = Vec<(&'a Labels, (i64, f64))>;
    let mut by_name: BTreeMap<&str, Family> = BTreeMap::new();
    for (labels, sample) in series {
        let Some((_, name)) = labels.iter().find(|(label, _)| label == "__name__") else {
            // Prometheus ignores nameless series too
            continue;
        };
        by_name.entry(name).or_default().push((labels, *sample));
    }
    let mut out = String::new();
    for (name, members) in by_name {
        let _ = writeln!(out, "# TYPE {name} untyped");
        for (labels, (time, value)) in members {
            let own: BTreeSet<&str> = labels.iter().map(|(label, _)| label.as_str()).collect();
            let mut pairs: Vec<(&str, &str)> = labels
                .iter()
                .filter(|(label, value)| label != "__name__" && !value.is_empty())
                .map(|(label, value)| (label.as_str(), value.as_str()))
                .collect();
            for (label, value) in &external {
                if !own.contains(label.as_str()) {
                    pairs.push((label, value));
                }
            }
            pairs.sort_unstable();
            let rendered: Vec<String> = pairs
                .iter()
                .map(|(label, value)| {
                    format!("{label}=\"{}\"", crate::telemetry::escape_label(value))
                })
                .collect();
            let _ = writeln!(
                out,
                "{name}{{{}}} {} {time}",
                rendered.join(","),
                format_value(value)
            );
        }
    }
    out
}

/// A sample value as Go's `strconv.FormatFloat(v, 'g', -1, 64)` reads back: the shortest
/// round-trip decimal, `NaN`, `+Inf`, `-Inf`.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::head::labels;

    #[test]
    fn families_are_sorted_and_external_labels_yield_to_a_series_own() {
        let mut series = BTreeMap::new();
        series.insert(
            labels(&[("__name__", "up"), ("job", "node"), ("cluster", "own")]),
            (1_000, 1.0),
        );
        series.insert(
            labels(&[
                ("__name__", "errors:rate5m"),
                ("instance", "a:1"),
                ("empty", ""),
            ]),
            (2_000, 0.5),
        );
        series.insert(labels(&[("job", "nameless")]), (3_000, 1.0));
        let external = BTreeMap::from([("cluster".to_string(), "eu1".to_string())]);
        assert_eq!(
            exposition(&series, &external),
            "# TYPE errors:rate5m untyped\n\
             errors:rate5m{cluster=\"eu1\",instance=\"a:1\"} 0.5 2000\n\
             # TYPE up untyped\n\
             up{cluster=\"own\",instance=\"\",job=\"node\"} 1 1000\n"
        );
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1e21), "1000000000000000000000");
    }
}
