//! The values a PromQL expression evaluates to, step by step (`Value`, `Sample`, range
//! inputs), Prometheus' staleness marker, and the label helpers every node uses. A leaf
//! of the engine: the evaluator, binary operators, functions and aggregations all
//! import it; it imports none of them.

use std::sync::Arc;

use promql_parser::parser::VectorSelector;

use super::Error;
use crate::tsdb::head::Labels;

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub(super) fn is_stale(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

pub(super) const NAME: &str = "__name__";

/// One element of a vector at one step. `drop_name` marks `__name__` for removal at
/// the end (delayed name removal).
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub labels: Labels,
    pub value: f64,
    pub drop_name: bool,
}

/// A series of raw points, the input of range-vector functions.
#[derive(Debug, Clone)]
pub(super) struct RangeSeries {
    pub labels: Labels,
    pub drop_name: bool,
    pub points: Vec<(i64, f64)>,
}

/// A range vector: its series and how each step's window is placed.
#[derive(Debug, Clone)]
pub(super) struct RangeInput {
    pub series: Vec<RangeSeries>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
    /// The selector, when the range vector is one (labels for `absent_over_time`).
    pub selector: Option<VectorSelector>,
}

impl RangeInput {
    /// The time a step at `t` is evaluated at (the `@` time, else `t`).
    pub fn eval_time(&self, t: i64) -> i64 {
        self.at.unwrap_or(t)
    }

    /// The window `(start, end]` of the step at `t`.
    pub fn window(&self, t: i64) -> (i64, i64) {
        let end = self.eval_time(t) - self.offset;
        (end - self.range, end)
    }
}

/// The points of `points` inside `(start, end]`.
pub(super) fn window(points: &[(i64, f64)], start: i64, end: i64) -> &[(i64, f64)] {
    let from = points.partition_point(|(time, _)| *time <= start);
    let to = points.partition_point(|(time, _)| *time <= end);
    &points[from..to.max(from)]
}

/// What a node evaluates to, for every step of the evaluator's window.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<Vec<Sample>>),
    Range(RangeInput),
}

impl Value {
    /// How many values it holds, as counted against `max_samples`.
    pub(super) fn held(&self) -> usize {
        match self {
            Value::Scalar(values) => values.len(),
            Value::String(_) => 1,
            Value::Vector(steps) => steps.len() + steps.iter().map(Vec::len).sum::<usize>(),
            Value::Range(range) => range.series.iter().map(|series| series.points.len()).sum(),
        }
    }
}

pub(super) fn duplicate_labelset() -> Error {
    Error::Execution("vector cannot contain metrics with the same labelset".into())
}

/// A result's labels: without `__name__` when it was marked for removal.
pub(super) fn final_labels(labels: Labels, drop_name: bool) -> Labels {
    if drop_name {
        without_name(&labels)
    } else {
        labels
    }
}

/// A scalar per step as a one-element vector per step (`vector()`, a scalar subquery).
pub(super) fn scalar_steps(values: Vec<f64>) -> Vec<Vec<Sample>> {
    values
        .into_iter()
        .map(|value| {
            vec![Sample {
                labels: Labels::from(Vec::new()),
                value,
                drop_name: false,
            }]
        })
        .collect()
}

pub(super) fn without_name(labels: &Labels) -> Labels {
    if labels.iter().any(|(name, _)| name == NAME) {
        labels
            .iter()
            .filter(|(name, _)| name != NAME)
            .cloned()
            .collect::<Vec<_>>()
            .into()
    } else {
        Arc::clone(labels)
    }
}

pub(super) fn label_value<'l>(labels: &'l Labels, name: &str) -> &'l str {
    labels
        .iter()
        .find(|(label, _)| label == name)
        .map_or("", |(_, value)| value.as_str())
}

/// `{a="1", b="2"}` as Prometheus prints a label set.
pub(super) fn format_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// Prometheus 3 accepts any UTF-8 label name. A byte escape such as `\xff` in a Go
/// string literal is not UTF-8 and is refused there; the parser crate decodes it to the
/// character U+00FF instead, so a name is refused when it holds such a character and the
/// query wrote it as a byte escape.
pub(super) fn valid_label_name(name: &str, query: &str) -> bool {
    let lowered = query.to_ascii_lowercase();
    !name.is_empty()
        && !name
            .chars()
            .filter(|c| ('\u{80}'..='\u{ff}').contains(c))
            .any(|c| lowered.contains(&format!("\\x{:02x}", c as u32)))
}
