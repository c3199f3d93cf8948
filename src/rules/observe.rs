//! What a rule sees at a tick T: a log rule counts `[T − window, T)` per group; a metric
//! rule evaluates its PromQL expression at T, each output series one observation (as
//! Prometheus' alerting rules do). PromQL reads the TSDB and the `log_matches` series as
//! one storage, so mixed expressions are metric rules too. A rule's `context`
//! expressions are evaluated here as well, with the alert's labels substituted.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::evaluate::{EvaluateError, Window, count_window, sample_lines};
use super::log_matches::LogMatches;
use super::rule::{LoadedRule, RuleSource};
use crate::index::IndexStore;
use crate::promql::{self, Engine, EngineOptions, QueryValue, Storage, Union};
use crate::tsdb::Tsdb;

/// One series (or group) a rule sees at a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One `context` expression's result for a message.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextValue {
    /// The expression, labels substituted.
    pub expression: String,
    /// Its series (labels beyond those of the alert, value), at most five; empty: no data.
    pub values: Vec<(String, f64)>,
    /// The unit, when the metric's name tells it (`s`, `B`, `/s`, …).
    pub unit: String,
    /// Why it has no value, when it failed.
    pub error: Option<String>,
}

/// Why a rule could not see its tick.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// Counting a log rule's window failed.
    #[error(transparent)]
    Count(#[from] EvaluateError),
    /// Evaluating a metric rule's expression failed.
    #[error("promql: {0}")]
    Promql(#[from] promql::Error),
    /// The rule's remote datasource failed.
    #[error(transparent)]
    Datasource(#[from] crate::datasource::DatasourceError),
}

/// Series a context line lists at most.
const MAX_CONTEXT_SERIES: usize = 5;

/// Where rules read from: the log index, the TSDB and the `log_matches` series.
pub struct Sources {
    pub store: Arc<IndexStore>,
    pub tsdb: Arc<Tsdb>,
    pub log_matches: Arc<LogMatches>,
    /// The series of SLO rules (`slo_sli`, `slo_burn_rate`, …).
    pub slos: Arc<super::slo::series::SloSeries>,
    pub engine: EngineOptions,
    /// The `[datasources.NAME]` rules with `datasource` query instead of the local engine.
    pub datasources: Arc<crate::datasource::Datasources>,
}

impl Sources {
    /// Runs `read` over what PromQL sees: the TSDB, the `log_matches` and the SLO series.
    pub fn read<T>(&self, read: impl FnOnce(&dyn Storage) -> T) -> T {
        let sources: [&dyn Storage; 3] = [&*self.tsdb, &*self.log_matches, &*self.slos];
        read(&Union(&sources))
    }

    /// Evaluates `expr` at `at` (ms) as an instant vector: a scalar is one unlabeled
    /// sample, as Prometheus' rule evaluation has it.
    pub fn instant(
        &self,
        expr: &promql::Expr,
        at: i64,
    ) -> Result<Vec<(crate::tsdb::head::Labels, f64)>, promql::Error> {
        let engine = Engine::new(self.engine.clone());
        let (value, _) = self.read(|storage| engine.instant(storage, expr, at))?;
        match value {
            QueryValue::Vector(samples) => Ok(samples
                .into_iter()
                .map(|sample| (sample.labels, sample.value))
                .collect()),
            QueryValue::Scalar { value, .. } => Ok(vec![(Arc::from(Vec::new()), value)]),
            _ => Err(promql::Error::BadData(
                "a rule's expression must give an instant vector or a scalar".into(),
            )),
        }
    }

    /// Evaluates `expr` at `at` (ms) where `rule` says: its `datasource`, else locally
    /// (see [`Sources::instant`]); blocking (a remote query waits on the runtime).
    pub fn instant_for(
        &self,
        rule: &LoadedRule,
        expr: &promql::Expr,
        at: i64,
    ) -> Result<Vec<(crate::tsdb::head::Labels, f64)>, ObserveError> {
        let Some(name) = &rule.file.datasource else {
            return Ok(self.instant(expr, at)?);
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            crate::datasource::DatasourceError::Unreachable {
                name: name.clone(),
                url: String::new(),
                error: "no runtime to query it from".into(),
            }
        })?;
        Ok(runtime.block_on(self.datasources.instant(name, &expr.text, at))?)
    }

    /// Whether `rule` reads the log index: a log rule, or a metric rule whose expression
    /// selects `log_matches` or that has `context` templates (which may); only those
    /// wait for agents and refresh the index before a tick.
    pub fn reads_logs(&self, rule: &LoadedRule) -> bool {
        match &rule.source {
            RuleSource::Logs { .. } => true,
            // a remote datasource reads no local logs
            RuleSource::Metrics { .. } if rule.file.datasource.is_some() => false,
            RuleSource::Metrics { expr } => {
                !rule.context.is_empty()
                    || self.log_matches.read_by(expr)
                    || self.slos.read_by(expr)
            }
        }
    }

    /// What `rule` sees at `tick`; blocking (run it on a blocking thread).
    pub fn observe(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
    ) -> Result<Vec<Observation>, ObserveError> {
        if crate::fault::enabled() && rule.file.labels.contains_key(crate::fault::PANIC_LABEL) {
            panic!("test hook: rule `{}` panics", rule.name);
        }
        match &rule.source {
            RuleSource::Logs { index, query } => {
                let counts = count_window(
                    &self.store,
                    &Window {
                        index,
                        query,
                        group_by: &rule.file.group_by,
                        end_micros: tick.timestamp_micros(),
                        length: rule.window,
                    },
                )?;
                Ok(counts
                    .into_iter()
                    .map(|group| Observation {
                        labels: group.labels,
                        value: group.count as f64,
                    })
                    .collect())
            }
            RuleSource::Metrics { expr } => {
                let samples = self.instant_for(rule, expr, tick.timestamp_millis())?;
                Ok(samples
                    .into_iter()
                    .map(|(labels, value)| Observation {
                        // an alert's labels are its series' without the metric name
                        labels: labels
                            .iter()
                            .filter(|(name, _)| name != "__name__")
                            .cloned()
                            .collect(),
                        value,
                    })
                    .collect())
            }
        }
    }

    /// The newest matching lines of a log rule's window in one group (none for metric
    /// rules); blocking.
    pub fn samples(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        labels: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let RuleSource::Logs { index, query } = &rule.source else {
            return Vec::new();
        };
        let window = Window {
            index,
            query,
            group_by: &[],
            end_micros: tick.timestamp_micros(),
            length: rule.window,
        };
        sample_lines(
            &self.store,
            &window,
            labels,
            crate::notify::message::MAX_SAMPLES,
        )
        .unwrap_or_else(|error| {
            tracing::warn!(rule = %rule.name, %error, "cannot fetch sample lines");
            Vec::new()
        })
    }

    /// The rule's `context` expressions at `tick`, with `labels` (the alert's) and the
    /// rule's template variables substituted; blocking.
    pub fn context(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        data: &super::template::TemplateData,
    ) -> Vec<ContextValue> {
        rule.context
            .iter()
            .map(|template| {
                let expression = template.render(data);
                let mut value = ContextValue {
                    unit: String::new(),
                    expression: expression.clone(),
                    values: Vec::new(),
                    error: None,
                };
                let result = promql::parse(&expression)
                    .map_err(ObserveError::from)
                    .and_then(|expr| {
                        value.unit = unit_of(&expr.ast);
                        self.instant_for(rule, &expr, tick.timestamp_millis())
                    });
                match result {
                    Ok(samples) => {
                        value.values = samples
                            .into_iter()
                            .take(MAX_CONTEXT_SERIES)
                            .map(|(labels, number)| {
                                let extra: Vec<String> = labels
                                    .iter()
                                    .filter(|(name, label)| {
                                        name != "__name__" && data.labels.get(name) != Some(label)
                                    })
                                    .map(|(name, label)| format!("{name}=\"{label}\""))
                                    .collect();
                                let extra = if extra.is_empty() {
                                    String::new()
                                } else {
                                    format!("{{{}}}", extra.join(", "))
                                };
                                (extra, number)
                            })
                            .collect();
                    }
                    Err(error) => value.error = Some(error.to_string()),
                }
                value
            })
            .collect()
    }
}

/// The unit of an expression's result, from the naming conventions of the metric it
/// reads (`_seconds`, `_bytes`, `_ratio`, …): per second under `rate`/`irate`/`deriv`;
/// empty when nothing tells.
pub fn unit_of(expr: &promql_parser::parser::Expr) -> String {
    use promql_parser::parser::Expr;
    fn walk(expr: &Expr, per_second: bool, quantile: bool) -> Option<(String, bool, bool)> {
        match expr {
            Expr::VectorSelector(selector) => selector
                .name
                .clone()
                .map(|name| (name, per_second, quantile)),
            Expr::MatrixSelector(matrix) => walk(
                &Expr::VectorSelector(matrix.vs.clone()),
                per_second,
                quantile,
            ),
            Expr::Call(call) => {
                let name = call.func.name;
                let per_second = per_second || matches!(name, "rate" | "irate" | "deriv");
                let quantile = quantile || name == "histogram_quantile";
                call.args
                    .args
                    .iter()
                    .find_map(|arg| walk(arg, per_second, quantile))
            }
            Expr::Aggregate(aggregate) => walk(&aggregate.expr, per_second, quantile),
            Expr::Paren(paren) => walk(&paren.expr, per_second, quantile),
            Expr::Subquery(subquery) => walk(&subquery.expr, per_second, quantile),
            // a ratio of two metrics has no unit the names can tell
            _ => None,
        }
    }
    let Some((name, per_second, quantile)) = walk(expr, false, false) else {
        return String::new();
    };
    let base = ["_bucket", "_total", "_sum", "_count", "_created"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(&name);
    let unit = [
        ("_seconds", "s"),
        ("_bytes", "B"),
        ("_percent", "%"),
        ("_celsius", "°C"),
        ("_meters", "m"),
        ("_volts", "V"),
        ("_joules", "J"),
    ]
    .iter()
    .find(|(suffix, _)| base.ends_with(suffix))
    .map_or("", |(_, unit)| unit);
    if name.ends_with("_count") && !quantile {
        // a histogram's or summary's `_count` counts observations
        return if per_second {
            "/s".into()
        } else {
            String::new()
        };
    }
    if per_second && !quantile {
        return format!("{unit}/s");
    }
    unit.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(text: &str) -> String {
        unit_of(&promql::parse(text).expect("valid").ast)
    }

    #[test]
    fn units_follow_the_metric_naming_conventions() {
        assert_eq!(unit("sum(rate(http_requests_total[5m]))"), "/s");
        assert_eq!(
            unit(
                "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"
            ),
            "s"
        );
        assert_eq!(unit("rate(node_network_receive_bytes_total[1m])"), "B/s");
        assert_eq!(unit("process_resident_memory_bytes"), "B");
        assert_eq!(unit("rate(http_request_duration_seconds_count[1m])"), "/s");
        assert_eq!(unit("up"), "");
        assert_eq!(unit("a_bytes / b_bytes"), "");
    }
}
