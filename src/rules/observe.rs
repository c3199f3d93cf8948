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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// A spike rule's value at its reference time (`None`: the group was absent then).
    pub reference: Option<f64>,
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
    /// A new-term rule's values could not be read.
    #[error(transparent)]
    NewTerm(#[from] super::new_term::NewTermError),
    /// Evaluating a metric rule's expression failed.
    #[error("promql: {0}")]
    Promql(#[from] promql::Error),
    /// The rule's remote datasource failed.
    #[error(transparent)]
    Datasource(#[from] crate::datasource::DatasourceError),
    /// Measuring a log rule's window (`aggregate`, `ratio`) failed.
    #[error(transparent)]
    Measure(#[from] super::measure::MeasureError),
    /// Reading a `new_pattern` rule's lines failed.
    #[error(transparent)]
    Patterns(#[from] crate::patterns::read::ReadError),
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
    /// The running new-term rules' sets of values seen.
    pub new_terms: Arc<super::new_term::NewTerms>,
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

    /// What `rule` sees at `tick` (a spike rule: its value now with its reference, see
    /// [`observe_spike`]); blocking (run it on a blocking thread). A new-term rule steps
    /// its running set and writes its `log_new_terms` sample.
    pub fn observe(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
    ) -> Result<Vec<Observation>, ObserveError> {
        let observations = self.observe_with(rule, tick, &self.new_terms)?;
        if rule.new_term.is_some() {
            super::new_term::record_count(&self.tsdb, &rule.name, tick, observations.len());
        }
        Ok(observations)
    }

    /// What `rule` sees at `tick`, a new-term rule through `new_terms` (a replay's own
    /// sets); blocking.
    pub fn observe_with(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        new_terms: &super::new_term::NewTerms,
    ) -> Result<Vec<Observation>, ObserveError> {
        match &rule.spike {
            Some(spike) => observe_spike(spike, tick, |at| self.observe_value(rule, at, new_terms)),
            None => self.observe_value(rule, tick, new_terms),
        }
    }

    /// The rule's value per group (or series) at `tick`, before a spike compares it.
    fn observe_value(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        new_terms: &super::new_term::NewTerms,
    ) -> Result<Vec<Observation>, ObserveError> {
        if crate::fault::enabled() && rule.file.labels.contains_key(crate::fault::PANIC_LABEL) {
            panic!("test hook: rule `{}` panics", rule.name);
        }
        if let (Some(settings), RuleSource::Logs { index, query }) = (&rule.new_term, &rule.source)
        {
            let query = super::new_term::TermQuery {
                rule: &rule.name,
                index,
                query,
                settings,
                window: rule.window,
            };
            let found = new_terms.observe(&self.store, &query, tick.timestamp_micros())?;
            return Ok(found
                .into_iter()
                .map(|term| Observation {
                    labels: term.labels,
                    value: term.count as f64,
                    reference: None,
                })
                .collect());
        }
        match &rule.source {
            RuleSource::Logs { index, query } if rule.new_pattern.is_some() => {
                let new_pattern = rule.new_pattern.as_ref().expect("matched above");
                let templates = new_pattern.observe(
                    &self.store,
                    &rule.name,
                    (index, query),
                    rule.window,
                    tick,
                )?;
                Ok(templates
                    .into_iter()
                    .map(|(label, lines)| Observation {
                        labels: [(super::new_pattern::PATTERN_LABEL.to_string(), label)].into(),
                        value: lines as f64,
                        reference: None,
                    })
                    .collect())
            }
            RuleSource::Logs { index, query } => {
                let window = Window {
                    index,
                    query,
                    group_by: &rule.file.group_by,
                    end_micros: tick.timestamp_micros(),
                    length: rule.window,
                };
                if let Some(measure) = &rule.measure {
                    let values = super::measure::measure_window(&self.store, &window, measure)?;
                    return Ok(values
                        .into_iter()
                        .map(|group| Observation {
                            labels: group.labels,
                            value: group.value,
                            reference: None,
                        })
                        .collect());
                }
                let counts = count_window(&self.store, &window)?;
                Ok(counts
                    .into_iter()
                    .map(|group| Observation {
                        labels: group.labels,
                        value: group.count as f64,
                        reference: None,
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
                        reference: None,
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
        if let Some(new_pattern) = &rule.new_pattern {
            return new_pattern.samples(labels);
        }
        // a new term's labels are its fields' label names: filter on the fields
        let fields;
        let labels = match &rule.new_term {
            Some(settings) => {
                fields = settings.fields_of(labels);
                &fields
            }
            None => labels,
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

/// What a spike rule sees at `tick`: `observe_at` (the rule's value per group over the
/// window ending at a time) at `tick` and at the reference tick, joined by group: each
/// group seen at either time, its value now (0 when absent now) with its `reference`
/// (`None` when absent then).
fn observe_spike<E>(
    spike: &super::spike::Spike,
    tick: DateTime<Utc>,
    observe_at: impl Fn(DateTime<Utc>) -> Result<Vec<Observation>, E>,
) -> Result<Vec<Observation>, E> {
    let current = observe_at(tick)?;
    let reference = observe_at(spike.reference_tick(tick))?;
    let mut joined: BTreeMap<BTreeMap<String, String>, Observation> = current
        .into_iter()
        .map(|seen| (seen.labels.clone(), seen))
        .collect();
    for then in reference {
        joined
            .entry(then.labels.clone())
            .or_insert_with(|| Observation {
                labels: then.labels,
                value: 0.0,
                reference: None,
            })
            .reference = Some(then.value);
    }
    Ok(joined.into_values().collect())
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

    #[test]
    fn groups_are_joined_across_the_two_windows() {
        let spike = super::super::spike::Spike {
            ratio: 3.0,
            offset: std::time::Duration::from_secs(3600),
            previous_window: false,
            direction: super::super::spike::SpikeDirection::Both,
            min_count: 0.0,
            alert_on_new_data: false,
        };
        let tick = DateTime::from_timestamp(7200, 0).expect("time");
        let group = |service: &str, value: f64| Observation {
            labels: BTreeMap::from([("service".to_string(), service.to_string())]),
            value,
            reference: None,
        };
        let seen = observe_spike(&spike, tick, |at| {
            Ok::<_, ()>(if at == tick {
                vec![group("cart", 30.0), group("new", 5.0)]
            } else {
                assert_eq!(at.timestamp(), 3600, "the reference ends an hour before");
                vec![group("cart", 10.0), group("gone", 20.0)]
            })
        })
        .expect("observed");
        let joined: Vec<(String, f64, Option<f64>)> = seen
            .into_iter()
            .map(|seen| (seen.labels["service"].clone(), seen.value, seen.reference))
            .collect();
        assert_eq!(
            joined,
            [
                ("cart".to_string(), 30.0, Some(10.0)),
                ("gone".to_string(), 0.0, Some(20.0)),
                ("new".to_string(), 5.0, None),
            ]
        );
    }
}
