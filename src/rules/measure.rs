//! Log rules that measure more than a count (issue 18, points 1 and 4): the rule's value
//! per `group_by` group is an aggregate of a log field over the window's matching lines
//! (`"aggregate"`), or the share of the window's lines matching `query` among those
//! matching a denominator query (`"ratio"`).
//!
//! What this module consumes: a rule's [`Window`] (the same half-open `[T − window, T)`
//! and the same query parsing, partition pruning and engine as the count of a log rule)
//! and its checked [`Measure`]; what it produces: one value per group ([`GroupValue`]),
//! at one tick ([`measure_window`], called by the rule's observation at that tick) or at
//! many evaluation times for PromQL ([`series`]).
//!
//! Invariants:
//! - A group without a value has no [`GroupValue`] — never a 0 in its place: an
//!   aggregate over lines none of which has a number in `field`, a ratio whose
//!   denominator is 0 or under `min_denominator`.
//! - Aggregates are Elasticsearch's metric aggregations, run by tantivy: `avg`, `min`,
//!   `max`, `sum` are exact; `percentile` is tantivy's DDSketch (relative accuracy 1 %:
//!   the answer is within 1 % of the value at rank ⌊p/100 · (n − 1)⌋ of the sorted
//!   values); `cardinality` is tantivy's HyperLogLog (exact for small sets, about 2 %
//!   relative error past a few hundred distinct values).
//! - A field holding only text where a number is needed is an error, found in the
//!   indices' field registry, not a silent empty value.
//!
//! It does not zero-fill, step alerts or name series: those are the lifecycle's and
//! [`super::log_matches`]'s.

mod series;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use series::{GroupValues, MAX_SEPARATE_SEARCHES, MeasureSeries, series};

use super::evaluate::{EvaluateError, GroupCount, Window, count_window, walk, window_query};
use crate::index::IndexStore;
use crate::index::fields::{KIND_DOUBLE, KIND_LONG, KIND_TEXT};
use crate::index::search::{self, Scope, SearchRequest};

/// `"aggregate"` of a rule file: the window's value is this aggregate of `field` over
/// the matching lines (per group) instead of their count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateFile {
    /// What to compute over the values of `field`.
    pub op: AggregateOp,
    /// The log field, e.g. "latency_ms": JSON numbers for every op but `cardinality`
    /// (which counts distinct values of any kind). Lines without it are left out.
    pub field: String,
    /// With `op` "percentile": which one, above 0 and at most 100, e.g. 95.
    #[serde(default)]
    pub percentile: Option<f64>,
}

/// An aggregate of a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AggregateOp {
    Avg,
    Min,
    Max,
    Sum,
    /// tantivy's DDSketch percentiles: within 1 % of the exact value.
    Percentile,
    /// Distinct values (HyperLogLog: exact for small sets, ~2 % error for large ones).
    Cardinality,
}

impl AggregateOp {
    pub fn name(self) -> &'static str {
        match self {
            AggregateOp::Avg => "avg",
            AggregateOp::Min => "min",
            AggregateOp::Max => "max",
            AggregateOp::Sum => "sum",
            AggregateOp::Percentile => "percentile",
            AggregateOp::Cardinality => "cardinality",
        }
    }

    /// Whether the aggregate of a window follows from those of its sub-windows.
    fn composes(self) -> bool {
        matches!(
            self,
            AggregateOp::Avg | AggregateOp::Min | AggregateOp::Max | AggregateOp::Sum
        )
    }
}

/// `"ratio"` of a rule file: the window's value is the matches of `query` divided by the
/// matches of `denominator`, in the same window and group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatioFile {
    /// Lucene query string or Elasticsearch query DSL object: the lines the rule's
    /// `query` is a share of, e.g. "*" (all requests) for `status:>=500`.
    pub denominator: Value,
    /// Fewer denominator lines than this in a group's window: no value there (no alert,
    /// no division by zero). Default 1.
    #[serde(default)]
    pub min_denominator: Option<u64>,
}

/// What a log rule's value is, when not its count; checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    Aggregate {
        op: AggregateOp,
        field: String,
        /// 0–100; only for [`AggregateOp::Percentile`].
        percentile: f64,
    },
    Ratio {
        denominator: Value,
        /// At least 1.
        min_denominator: u64,
    },
}

impl Measure {
    /// What the value is, for a message without a `summary`: "p95 of `latency_ms`",
    /// "share of the lines of `*`".
    pub fn describe(&self) -> String {
        match self {
            Measure::Aggregate {
                op: AggregateOp::Percentile,
                field,
                percentile,
            } => format!("p{percentile} of `{field}`"),
            Measure::Aggregate { op, field, .. } => format!("{} of `{field}`", op.name()),
            Measure::Ratio { denominator, .. } => {
                let text = match denominator {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                format!("share of the lines of `{text}`")
            }
        }
    }

    /// The PromQL metric name of the measure's series: `log_aggregate` or `log_ratio`.
    pub fn metric(&self) -> &'static str {
        match self {
            Measure::Aggregate { .. } => AGGREGATE_METRIC,
            Measure::Ratio { .. } => RATIO_METRIC,
        }
    }
}

/// The metric name of aggregate rules' series.
pub const AGGREGATE_METRIC: &str = "log_aggregate";
/// The metric name of ratio rules' series.
pub const RATIO_METRIC: &str = "log_ratio";

/// Fields an aggregate cannot read: not columns of the log schema.
const NOT_AGGREGATABLE: [&str; 3] = ["_id", "_source", "@timestamp"];

/// The measure of a rule file with these `aggregate` and `ratio` (`None`: a count), or
/// each problem as `(field, message)`; `promql`: whether the rule is a metric rule.
pub fn check(
    aggregate: Option<&AggregateFile>,
    ratio: Option<&RatioFile>,
    promql: bool,
) -> Result<Option<Measure>, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    if aggregate.is_some() && ratio.is_some() {
        problems.push((
            "ratio",
            "a rule's value is either an `aggregate` or a `ratio`, not both; write two rules"
                .to_string(),
        ));
    }
    for (field, set) in [
        ("aggregate", aggregate.is_some()),
        ("ratio", ratio.is_some()),
    ] {
        if set && promql {
            problems.push((
                field,
                format!(
                    "belongs to log rules (with `query`); in a metric rule's `promql`, select the series of a log rule that has it (`{}{{query=\"NAME\"}}`)",
                    if field == "ratio" {
                        RATIO_METRIC
                    } else {
                        AGGREGATE_METRIC
                    }
                ),
            ));
        }
    }
    let aggregate = aggregate.and_then(|aggregate| check_aggregate(aggregate, &mut problems));
    let ratio = ratio.and_then(|ratio| check_ratio(ratio, &mut problems));
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(aggregate.or(ratio))
}

fn check_aggregate(
    aggregate: &AggregateFile,
    problems: &mut Vec<(&'static str, String)>,
) -> Option<Measure> {
    let before = problems.len();
    let field = aggregate.field.trim();
    if field.is_empty() {
        problems.push((
            "aggregate",
            "`field` is empty; name the log field to aggregate, e.g. \"latency_ms\"".into(),
        ));
    } else if NOT_AGGREGATABLE.contains(&field) {
        problems.push((
            "aggregate",
            format!("`field` `{field}` cannot be aggregated: name a field of the log lines, e.g. \"latency_ms\""),
        ));
    } else if field.contains(['*', '?']) {
        problems.push((
            "aggregate",
            format!("`field` `{field}` is a pattern; name one field"),
        ));
    }
    let percentile = match (aggregate.op, aggregate.percentile) {
        (AggregateOp::Percentile, None) => {
            problems.push((
                "aggregate",
                "op `percentile` needs `percentile`, e.g. \"percentile\": 95".into(),
            ));
            0.0
        }
        (AggregateOp::Percentile, Some(percentile)) => {
            if !(percentile > 0.0 && percentile <= 100.0) {
                problems.push((
                    "aggregate",
                    format!(
                        "`percentile` must be above 0 and at most 100 (e.g. 95 or 99.9), not {percentile}"
                    ),
                ));
            }
            percentile
        }
        (op, Some(_)) => {
            problems.push((
                "aggregate",
                format!(
                    "`percentile` belongs to op `percentile`, not `{}`; remove it",
                    op.name()
                ),
            ));
            0.0
        }
        (_, None) => 0.0,
    };
    (problems.len() == before).then(|| Measure::Aggregate {
        op: aggregate.op,
        field: field.to_string(),
        percentile,
    })
}

fn check_ratio(ratio: &RatioFile, problems: &mut Vec<(&'static str, String)>) -> Option<Measure> {
    let as_dsl = match &ratio.denominator {
        Value::String(text) => json!({"query_string": {"query": text}}),
        object @ Value::Object(_) => object.clone(),
        other => {
            problems.push((
                "ratio",
                format!(
                    "`denominator` must be a Lucene query string (e.g. \"*\") or a query DSL object, not {other}"
                ),
            ));
            return None;
        }
    };
    let context = crate::index::query::dsl::ParseContext {
        now_micros: chrono::Utc::now().timestamp_micros(),
        timestamp_field: "@timestamp".into(),
    };
    if let Err(error) = crate::index::query::dsl::parse_query(&as_dsl, &context) {
        problems.push(("ratio", format!("`denominator`: {}", error.reason)));
        return None;
    }
    Some(Measure::Ratio {
        denominator: ratio.denominator.clone(),
        min_denominator: ratio.min_denominator.unwrap_or(1).max(1),
    })
}

/// The value of one group (no labels without `group_by`).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupValue {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Why a measure could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Evaluate(#[from] EvaluateError),
    #[error(transparent)]
    Search(#[from] crate::index::search::SearchError),
    /// The field holds text where the aggregate needs numbers.
    #[error(
        "`aggregate`: field `{field}` of index `{index}` holds text, not JSON numbers: `{op}` needs numbers (send \"{field}\": 412, not \"412\"), or use op `cardinality`"
    )]
    NotNumeric {
        field: String,
        index: String,
        op: &'static str,
    },
    /// A selection asked for more separate searches than it may run.
    #[error(
        "{metric}{{query=\"{query}\"}}: a {op} over {window_ms} ms windows does not compose from smaller buckets, and {times} evaluation times would take more than {max} searches; use a step equal to the rule's window ({window_ms} ms) or a shorter range"
    )]
    TooManySearches {
        metric: &'static str,
        query: String,
        op: &'static str,
        window_ms: i64,
        times: usize,
        max: usize,
    },
}

/// The value of each group of `window` under `measure`; blocking (one search for an
/// aggregate, two counts for a ratio).
pub fn measure_window(
    store: &IndexStore,
    window: &Window<'_>,
    measure: &Measure,
) -> Result<Vec<GroupValue>, MeasureError> {
    match measure {
        Measure::Aggregate {
            op,
            field,
            percentile,
        } => aggregate_window(store, window, *op, field, *percentile),
        Measure::Ratio {
            denominator,
            min_denominator,
        } => {
            let numerators = count_window(store, window)?;
            let denominators = count_window(
                store,
                &Window {
                    query: denominator,
                    ..*window
                },
            )?;
            Ok(divide(&numerators, &denominators, *min_denominator))
        }
    }
}

/// `numerators ÷ denominators` per group: the groups are the denominator's with at
/// least `min_denominator` lines; a group the numerator lacks has 0 matches.
fn divide(
    numerators: &[GroupCount],
    denominators: &[GroupCount],
    min_denominator: u64,
) -> Vec<GroupValue> {
    let numerator_of: BTreeMap<&BTreeMap<String, String>, u64> = numerators
        .iter()
        .map(|group| (&group.labels, group.count))
        .collect();
    denominators
        .iter()
        .filter(|group| group.count >= min_denominator.max(1))
        .map(|group| GroupValue {
            labels: group.labels.clone(),
            value: numerator_of.get(&group.labels).copied().unwrap_or(0) as f64
                / group.count as f64,
        })
        .collect()
}

/// The ES metric aggregation computing `op` of `field`: `stats` for the ones that
/// compose (its `count` tells a sum of nothing, which `sum` answers as 0, from a sum
/// of 0).
fn metric_aggregation(op: AggregateOp, field: &str, percentile: f64) -> Value {
    match op {
        AggregateOp::Percentile => {
            json!({"percentiles": {"field": field, "percents": [percentile], "keyed": true}})
        }
        AggregateOp::Cardinality => json!({"cardinality": {"field": field}}),
        AggregateOp::Avg | AggregateOp::Min | AggregateOp::Max | AggregateOp::Sum => {
            json!({"stats": {"field": field}})
        }
    }
}

/// The value of a metric aggregation's result (`None`: nothing was aggregated).
fn metric_value(result: &Value, op: AggregateOp) -> Option<f64> {
    match op {
        AggregateOp::Percentile => result["values"]
            .as_object()
            .and_then(|values| values.values().next())
            .and_then(Value::as_f64),
        // cardinality 0: no line had the field; it has no value, as an avg of nothing
        AggregateOp::Cardinality => result["value"].as_f64().filter(|count| *count > 0.0),
        AggregateOp::Avg | AggregateOp::Min | AggregateOp::Max | AggregateOp::Sum => {
            result["count"].as_u64().filter(|count| *count > 0)?;
            result[op.name()].as_f64()
        }
    }
}

/// The name of the sub-aggregation holding the metric.
const METRIC_KEY: &str = "m";

fn aggregate_window(
    store: &IndexStore,
    window: &Window<'_>,
    op: AggregateOp,
    field: &str,
    percentile: f64,
) -> Result<Vec<GroupValue>, MeasureError> {
    check_numeric(store, window.index, op, field)?;
    let (query, indices) = window_query(store, window, &BTreeMap::new())?;
    let scope = Scope::new(&indices, &query);
    let mut aggregations = json!({ METRIC_KEY: metric_aggregation(op, field, percentile) });
    for (level, group_field) in window.group_by.iter().enumerate().rev() {
        aggregations = json!({ format!("g{level}"): {
            "terms": {"field": group_field, "size": super::evaluate::MAX_GROUPS},
            "aggs": aggregations,
        }});
    }
    let request = SearchRequest {
        query,
        size: 0,
        aggregations: Some(aggregations),
        ..SearchRequest::default()
    };
    let outcome = search::execute(store, &scope, &request, None)?;
    let result = outcome.aggregations.unwrap_or(Value::Null);
    let mut values = Vec::new();
    if window.group_by.is_empty() {
        if let Some(value) = metric_value(&result[METRIC_KEY], op) {
            values.push(GroupValue {
                labels: BTreeMap::new(),
                value,
            });
        }
    } else {
        walk(
            &result,
            window.group_by,
            0,
            &mut BTreeMap::new(),
            &mut |labels, bucket| {
                if let Some(value) = metric_value(&bucket[METRIC_KEY], op) {
                    values.push(GroupValue {
                        labels: labels.clone(),
                        value,
                    });
                }
            },
        );
    }
    Ok(values)
}

/// Refuses a numeric aggregate of a field that the indices of `index` have seen only as
/// text (a number sent as a string is text: the aggregate would see nothing). Fields not
/// seen yet, and fields with numbers among their text, pass (text values are left out,
/// as Elasticsearch leaves out unmapped values).
fn check_numeric(
    store: &IndexStore,
    index: &str,
    op: AggregateOp,
    field: &str,
) -> Result<(), MeasureError> {
    if op == AggregateOp::Cardinality {
        return Ok(());
    }
    let Ok(indices) = store.resolve(index, true) else {
        return Ok(());
    };
    let mut kinds = 0u8;
    for log_index in &indices {
        for (name, kind) in log_index.fields() {
            if name == field {
                kinds |= kind;
            }
        }
    }
    if kinds & KIND_TEXT != 0 && kinds & (KIND_LONG | KIND_DOUBLE) == 0 {
        return Err(MeasureError::NotNumeric {
            field: field.to_string(),
            index: index.to_string(),
            op: op.name(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
