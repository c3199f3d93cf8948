//! Log counts as PromQL series (DESIGN §7): every saved log query `NAME` answers as
//! `log_matches{query="NAME", <group_by labels>}`, the number of its matches in
//! `[t − window, t)` at the evaluation time t, computed from the index — so it answers for
//! any indexed past, not only since the rule was loaded.
//!
//! An instant selector gets a sample exactly at each evaluation time (the engine passes
//! them as [`Hints::Instants`]), so `log_matches{…}` at t is the rule's own count at t. A
//! range selector (`log_matches{…}[5m]`) sees one sample every 15 s aligned to the
//! epoch. All times of one selection are counted in one date-histogram pass
//! ([`count_series`]). Groups with a match within `group_ttl` answer 0, not absent.
//!
//! A saved query with a measure also answers as the series of its value:
//! `log_aggregate{query="NAME", …}` (an `aggregate` rule) or `log_ratio{query="NAME", …}`
//! (a `ratio` rule), computed by [`super::measure::series`]; a group without a value at
//! a time has no sample there (no zero-filling).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;

use super::evaluate::{SeriesSpec, count_series};
use super::measure::{Measure, MeasureSeries};
use crate::index::IndexStore;
use crate::promql::{self, Hints, Selected, Storage};
use crate::tsdb::head::{Labels, Matcher, matches_all};

/// The metric name of log-derived series.
pub const METRIC: &str = "log_matches";
/// Spacing of a range selector's samples, aligned to the epoch.
pub const GRID_MS: i64 = 15_000;
/// Most evaluation times one selection may count.
const MAX_TIMES: usize = 200_000;

/// A saved log query as `log_matches` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedQuery {
    pub name: String,
    pub index: String,
    /// A Lucene string or a DSL object.
    pub query: Value,
    pub group_by: Vec<String>,
    pub window: Duration,
    pub group_ttl: Duration,
    /// Its value when not the count: served as `log_aggregate` or `log_ratio` too.
    pub measure: Option<Measure>,
}

impl SavedQuery {
    /// `(field, label name)` of each `group_by` field.
    fn labels(&self) -> Vec<(String, String)> {
        self.group_by
            .iter()
            .map(|field| (field.clone(), label_name(field)))
            .collect()
    }

    /// The metric names its series have: `log_matches`, and its measure's.
    fn metrics(&self) -> impl Iterator<Item = &'static str> + use<'_> {
        std::iter::once(METRIC).chain(self.measure.as_ref().map(Measure::metric))
    }
}

/// The label name of a `group_by` field: characters outside `[A-Za-z0-9_]` become `_`
/// (`http.status` → `http_status`), a leading digit gets a `_`, and names the series
/// already uses (`query`, `__…`) become `exported_…`, as Prometheus does on conflicts.
pub fn label_name(field: &str) -> String {
    let mut name: String = field
        .chars()
        .map(|char| {
            if char.is_ascii_alphanumeric() || char == '_' {
                char
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|char: char| char.is_ascii_digit()) {
        name.insert(0, '_');
    }
    if name == "query" || name.starts_with("__") {
        name = format!("exported_{}", name.trim_start_matches('_'));
    }
    name
}

/// The saved queries, kept current by the rule manager, read by PromQL.
pub struct LogMatches {
    store: Arc<IndexStore>,
    queries: RwLock<BTreeMap<String, Arc<SavedQuery>>>,
}

impl LogMatches {
    pub fn new(store: Arc<IndexStore>) -> LogMatches {
        LogMatches {
            store,
            queries: Default::default(),
        }
    }

    /// Adds or replaces a saved query (`None`: removes `name`).
    pub fn set(&self, name: &str, query: Option<SavedQuery>) {
        let mut queries = self
            .queries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match query {
            Some(query) => queries.insert(name.to_string(), Arc::new(query)),
            None => queries.remove(name),
        };
    }

    fn queries(&self) -> Vec<Arc<SavedQuery>> {
        self.queries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The names of the saved queries, without a search: what `log_matches{query="NAME"}`
    /// may name.
    pub fn query_names(&self) -> BTreeSet<String> {
        self.queries()
            .iter()
            .map(|query| query.name.clone())
            .collect()
    }

    /// Label names `log_matches` series can have (for `/api/v1/labels`).
    pub fn label_names(&self) -> BTreeSet<String> {
        let queries = self.queries();
        if queries.is_empty() {
            return BTreeSet::new();
        }
        let mut names: BTreeSet<String> = ["__name__", "query"].map(String::from).into();
        for query in queries {
            names.extend(query.labels().into_iter().map(|(_, label)| label));
        }
        names
    }

    /// The values label `name` has on `log_matches` series (for
    /// `/api/v1/label/NAME/values`). The metric names and `query` are every saved
    /// query's, known without a search (a saved query is listed before its first match);
    /// a group label's values are counted over the last 400 days.
    pub fn label_values(&self, name: &str) -> BTreeSet<String> {
        match name {
            "__name__" => {
                return self
                    .queries()
                    .iter()
                    .flat_map(|query| query.metrics())
                    .map(String::from)
                    .collect();
            }
            "query" => return self.query_names(),
            _ => {}
        }
        if !self.label_names().contains(name) {
            return BTreeSet::new();
        }
        let all = [Matcher::NotEqual("__name__".into(), String::new())];
        let found = self
            .series(&all, i64::MIN / 2, i64::MAX / 2)
            .unwrap_or_default();
        found
            .iter()
            .filter_map(|labels| {
                labels
                    .iter()
                    .find(|(label, _)| label == name)
                    .map(|(_, value)| value.clone())
            })
            .collect()
    }

    /// Whether `expr` can select `log_matches` series (and so reads the index).
    pub fn read_by(&self, expr: &promql::Expr) -> bool {
        promql::selector_matcher_groups(expr)
            .iter()
            .any(|matchers| !self.candidates(matchers).is_empty())
    }

    /// The saved queries whose series `matchers` can select, each with the metric name
    /// selected: a matcher on a label the query's series lack must accept the empty
    /// value.
    fn candidates(&self, matchers: &[Matcher]) -> Vec<(Arc<SavedQuery>, &'static str)> {
        let mut found = Vec::new();
        for query in self.queries() {
            let labels = query.labels();
            for metric in query.metrics() {
                let selected = matchers.iter().all(|matcher| {
                    let value = match matcher.name() {
                        "__name__" => metric,
                        "query" => &query.name,
                        name if labels.iter().any(|(_, label)| label == name) => return true,
                        _ => "",
                    };
                    matcher.matches(value)
                });
                if selected {
                    found.push((Arc::clone(&query), metric));
                }
            }
        }
        found
    }

    /// The series of `matchers` with a sample at each of `times` (ascending, ms).
    pub fn select_at(
        &self,
        matchers: &[Matcher],
        times: &[i64],
    ) -> Result<Selected, promql::Error> {
        let mut selected = Vec::new();
        for (query, metric) in self.candidates(matchers) {
            if metric == METRIC {
                selected.extend(self.select_query(&query, matchers, times)?);
            } else {
                selected.extend(self.select_measure(&query, matchers, times)?);
            }
        }
        selected.sort_by(|left, right| left.0.cmp(&right.0));
        Ok(selected)
    }

    /// The label sets of the series of `matchers` that exist at some time in
    /// `[start, end]` (ms; for the series and label APIs).
    pub fn series(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, promql::Error> {
        let now = chrono::Utc::now().timestamp_millis();
        let end = end.min(now + 86_400_000);
        let start = start.max(end - 400 * 86_400_000);
        let mut found = Vec::new();
        for (query, metric) in self.candidates(matchers) {
            let range = Duration::from_millis((end - start).max(0) as u64);
            let mut widened = (*query).clone();
            let selected = if metric == METRIC {
                // a group exists in the range when it had a match within its ttl of some
                // time in it: one count at `end` looking back over the range and the ttl
                widened.group_ttl += range;
                self.select_query(&widened, matchers, &[end])?
            } else {
                // a measured group exists when the whole range gives it a value: one
                // measure at `end` over the range and a window
                widened.window += range;
                self.select_measure(&widened, matchers, &[end])?
            };
            found.extend(selected.into_iter().map(|(labels, _)| labels));
        }
        Ok(found)
    }

    /// The `log_aggregate` or `log_ratio` series of `query` (which has a measure) that
    /// `matchers` select, with a sample at each of `times` where the group has a value.
    fn select_measure(
        &self,
        query: &SavedQuery,
        matchers: &[Matcher],
        times: &[i64],
    ) -> Result<Selected, promql::Error> {
        let Some(measure) = &query.measure else {
            return Ok(Vec::new());
        };
        let spec = MeasureSeries {
            name: &query.name,
            index: &query.index,
            query: &query.query,
            group_by: &query.group_by,
            window_ms: query.window.as_millis().min(i64::MAX as u128) as i64,
            measure,
        };
        let series = super::measure::series(&self.store, &spec, times).map_err(|error| {
            promql::Error::Execution(format!(
                "{}{{query=\"{}\"}}: {error}",
                measure.metric(),
                query.name
            ))
        })?;
        Ok(self.labelled(query, measure.metric(), matchers, times, series))
    }

    /// Each group's points as a series named `metric` with the query's labels, when
    /// `matchers` select it and it has a point.
    fn labelled(
        &self,
        query: &SavedQuery,
        metric: &str,
        matchers: &[Matcher],
        times: &[i64],
        series: Vec<super::measure::GroupValues>,
    ) -> Selected {
        let labels = query.labels();
        let mut selected = Vec::new();
        for (group, values) in series {
            let mut pairs = vec![
                ("__name__".to_string(), metric.to_string()),
                ("query".to_string(), query.name.clone()),
            ];
            for (field, label) in &labels {
                if let Some(value) = group.get(field) {
                    pairs.push((label.clone(), value.clone()));
                }
            }
            pairs.sort();
            let series_labels: Labels = pairs.into();
            if !matches_all(matchers, &series_labels) {
                continue;
            }
            let points: Vec<(i64, f64)> = times
                .iter()
                .zip(values)
                .filter_map(|(time, value)| value.map(|value| (*time, value)))
                .collect();
            if !points.is_empty() {
                selected.push((series_labels, points));
            }
        }
        selected
    }

    fn select_query(
        &self,
        query: &SavedQuery,
        matchers: &[Matcher],
        times: &[i64],
    ) -> Result<Selected, promql::Error> {
        let spec = SeriesSpec {
            index: &query.index,
            query: &query.query,
            group_by: &query.group_by,
            window_ms: query.window.as_millis() as i64,
            group_ttl_ms: query.group_ttl.as_millis() as i64,
        };
        let series = count_series(&self.store, &spec, times).map_err(|error| {
            promql::Error::Execution(format!("{METRIC}{{query=\"{}\"}}: {error}", query.name))
        })?;
        let series = series
            .into_iter()
            .map(|(group, counts)| {
                let values = counts
                    .into_iter()
                    .map(|count| count.map(|count| count as f64))
                    .collect();
                (group, values)
            })
            .collect();
        Ok(self.labelled(query, METRIC, matchers, times, series))
    }
}

/// The evaluation times of a selection: the engine's instants, or the 15 s grid.
fn times(min_time: i64, max_time: i64, hints: Hints) -> Result<Vec<i64>, promql::Error> {
    let too_many = || {
        promql::Error::Execution(format!(
            "{METRIC}: more than {MAX_TIMES} evaluation times in one selection; use a larger step or a shorter range"
        ))
    };
    match hints {
        Hints::Instants { first, step, last } => {
            if step <= 0 || first >= last {
                return Ok(vec![first]);
            }
            let count = ((last - first) / step) as usize + 1;
            if count > MAX_TIMES {
                return Err(too_many());
            }
            Ok((0..count as i64).map(|i| first + i * step).collect())
        }
        Hints::Range => {
            let first = min_time.div_euclid(GRID_MS) * GRID_MS;
            let first = if first < min_time {
                first + GRID_MS
            } else {
                first
            };
            if max_time < first {
                return Ok(Vec::new());
            }
            let count = ((max_time - first) / GRID_MS) as usize + 1;
            if count > MAX_TIMES {
                return Err(too_many());
            }
            Ok((0..count as i64).map(|i| first + i * GRID_MS).collect())
        }
    }
}

impl Storage for LogMatches {
    fn select(&self, matchers: &[Matcher], min_time: i64, max_time: i64) -> Selected {
        self.select_hinted(matchers, min_time, max_time, Hints::Range)
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "log_matches selection failed");
                Vec::new()
            })
    }

    fn select_hinted(
        &self,
        matchers: &[Matcher],
        min_time: i64,
        max_time: i64,
        hints: Hints,
    ) -> Result<Selected, promql::Error> {
        if self.candidates(matchers).is_empty() {
            return Ok(Vec::new());
        }
        self.select_at(matchers, &times(min_time, max_time, hints)?)
    }
}

impl promql::series::SeriesSource for LogMatches {
    fn series(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, promql::Error> {
        LogMatches::series(self, matchers, start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_fields_become_label_names() {
        assert_eq!(label_name("http.status"), "http_status");
        assert_eq!(label_name("service"), "service");
        assert_eq!(label_name("k8s-pod"), "k8s_pod");
        assert_eq!(label_name("2xx"), "_2xx");
        assert_eq!(label_name("query"), "exported_query");
        assert_eq!(label_name("__name__"), "exported_name__");
    }

    #[test]
    fn a_range_selection_is_the_15s_grid_and_instants_are_exact() {
        assert_eq!(
            times(10_001, 60_000, Hints::Range).expect("times"),
            [15_000, 30_000, 45_000, 60_000]
        );
        assert_eq!(times(-20_000, -1, Hints::Range).expect("times"), [-15_000]);
        let hints = Hints::Instants {
            first: 1_001,
            step: 500,
            last: 2_001,
        };
        assert_eq!(times(0, 0, hints).expect("times"), [1_001, 1_501, 2_001]);
        let at = Hints::Instants {
            first: 7,
            step: 0,
            last: 7,
        };
        assert_eq!(times(0, 0, at).expect("times"), [7]);
        assert!(times(0, i64::MAX / 4, Hints::Range).is_err());
    }
}
