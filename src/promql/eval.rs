//! The tree walk: selectors (lookback, staleness, `offset`, `@`), subqueries, binary
//! operators with vector matching, and the final `__name__` removal and duplicate check.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use promql_parser::label::MatchOp;
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AtModifier, BinaryExpr, Expr, LabelModifier, Offset, SubqueryExpr, VectorMatchCardinality,
    VectorSelector,
};

use super::{
    Annotations, EngineOptions, Error, Hints, QueryValue, Sample as OutSample, Series, Storage,
};
use crate::tsdb::head::{Labels, Matcher};

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub(super) fn is_stale(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

pub(super) const NAME: &str = "__name__";

/// Loops over steps look at the deadline every this many steps (a subquery at `1ms`
/// has millions of them).
pub(super) const DEADLINE_EVERY: usize = 4096;

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
/// The hints of an instant selector evaluated at `times` (evenly spaced, or all one).
fn instants(times: &[i64]) -> Hints {
    let (first, last) = (times[0], times[times.len() - 1]);
    let step = if times.len() > 1 {
        times[1] - times[0]
    } else {
        0
    };
    Hints::Instants { first, step, last }
}

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
    fn held(&self) -> usize {
        match self {
            Value::Scalar(values) => values.len(),
            Value::String(_) => 1,
            Value::Vector(steps) => steps.len() + steps.iter().map(Vec::len).sum::<usize>(),
            Value::Range(range) => range.series.iter().map(|series| series.points.len()).sum(),
        }
    }
}

pub(super) struct Evaluator<'a> {
    storage: &'a dyn Storage,
    pub options: &'a EngineOptions,
    pub text: &'a str,
    pub start: i64,
    pub end: i64,
    pub interval: i64,
    query_start: i64,
    query_end: i64,
    query_step: i64,
    deadline: Instant,
    cancel: Option<tokio_util::sync::CancellationToken>,
    samples: usize,
    pub annotations: Annotations,
}

impl<'a> Evaluator<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        storage: &'a dyn Storage,
        options: &'a EngineOptions,
        text: &'a str,
        start: i64,
        end: i64,
        interval: i64,
        deadline: Instant,
    ) -> Evaluator<'a> {
        Evaluator {
            storage,
            options,
            text,
            start,
            end,
            interval,
            query_start: start,
            query_end: end,
            query_step: if start == end { 0 } else { interval },
            deadline,
            cancel: None,
            samples: 0,
            annotations: Annotations::default(),
        }
    }

    /// Stops at the next deadline check once `cancel` is cancelled (the client left).
    pub fn cancelled_by(self, cancel: &tokio_util::sync::CancellationToken) -> Evaluator<'a> {
        Evaluator {
            cancel: Some(cancel.clone()),
            ..self
        }
    }

    /// Number of steps of the current window.
    pub fn steps(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            ((self.end - self.start) / self.interval) as usize + 1
        }
    }

    /// Time of step `i`.
    pub fn time(&self, i: usize) -> i64 {
        self.start + i as i64 * self.interval
    }

    /// The query's own start, end and step (ms), whatever subquery is being evaluated.
    pub fn query_window(&self) -> (i64, i64, i64) {
        (self.query_start, self.query_end, self.query_step)
    }

    /// Whether this evaluation is a range query (more than its one instant).
    pub fn is_range_query(&self) -> bool {
        self.query_start != self.query_end
    }

    pub fn check_deadline(&self, what: &'static str) -> Result<(), Error> {
        if Instant::now() > self.deadline {
            return Err(Error::Timeout(what));
        }
        if self
            .cancel
            .as_ref()
            .is_some_and(tokio_util::sync::CancellationToken::is_cancelled)
        {
            return Err(Error::Canceled(what));
        }
        Ok(())
    }

    /// Counts `n` more samples held for the query against `max_samples`.
    pub fn hold(&mut self, n: usize) -> Result<(), Error> {
        self.samples += n;
        if self.samples > self.options.max_samples {
            return Err(Error::TooManySamples("query execution"));
        }
        Ok(())
    }

    /// Marks `__name__` for removal (or removes it now without delayed removal).
    pub fn drop_name(&self, sample: &mut Sample) {
        if self.options.delayed_name_removal {
            sample.drop_name = true;
        } else {
            sample.labels = without_name(&sample.labels);
        }
    }

    /// The 1-based `line:column` where `needle` first occurs in the query (annotations
    /// carry a position; the parser crate keeps none, so it is found in the text).
    pub fn position_of(&self, needle: &str) -> String {
        let offset = self.text.find(needle).unwrap_or(0);
        let (line, column) = super::position(self.text, offset);
        format!("{line}:{column}")
    }

    /// Evaluates `expr` at every step of the current window. What the query holds counts
    /// against `max_samples` as Prometheus counts it, at its peak: a node's children are
    /// released once it has its value, and its value is held until its parent is done.
    /// A value is one per step (a scalar's, or a vector's slot, even when empty) plus one
    /// per sample or point; the steps are counted before they are allocated, so
    /// `vector(1)[10y:1s]` is refused before its 315 million steps exist.
    pub fn evaluate(&mut self, expr: &Expr) -> Result<Value, Error> {
        self.check_deadline("expression evaluation")?;
        let held_before = self.samples;
        self.hold(self.steps())?;
        let value = self.evaluate_node(expr)?;
        self.samples = held_before;
        self.hold(value.held())?;
        Ok(value)
    }

    fn evaluate_node(&mut self, expr: &Expr) -> Result<Value, Error> {
        match expr {
            Expr::NumberLiteral(number) => Ok(Value::Scalar(vec![number.val; self.steps()])),
            Expr::StringLiteral(string) => Ok(Value::String(string.val.clone())),
            Expr::Paren(paren) => self.evaluate(&paren.expr),
            Expr::Unary(unary) => match self.evaluate(&unary.expr)? {
                Value::Scalar(values) => Ok(Value::Scalar(
                    values.into_iter().map(|value| -value).collect(),
                )),
                Value::Vector(mut steps) => {
                    for sample in steps.iter_mut().flatten() {
                        sample.value = -sample.value;
                        self.drop_name(sample);
                    }
                    Ok(Value::Vector(steps))
                }
                _ => Err(Error::BadData(
                    "unary expression only allowed on expressions of type scalar or instant vector"
                        .into(),
                )),
            },
            Expr::VectorSelector(selector) => self.vector_selector(selector),
            Expr::MatrixSelector(matrix) => {
                let range = duration_ms(&matrix.range);
                self.matrix_selector(&matrix.vs, range).map(Value::Range)
            }
            Expr::Subquery(subquery) => self.subquery(subquery).map(Value::Range),
            Expr::Call(call) => super::functions::call(self, call),
            Expr::Aggregate(aggregate) => super::aggregate::aggregate(self, aggregate),
            Expr::Binary(binary) => self.binary(binary),
            Expr::Extension(_) => Err(Error::BadData(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// Resolves an `@` modifier to milliseconds (`start()`/`end()` are the query's).
    pub fn at_time(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(time)) => Some(system_time_ms(*time)),
        }
    }

    fn select(
        &mut self,
        selector: &VectorSelector,
        min_time: i64,
        max_time: i64,
        hints: Hints,
    ) -> Result<super::Selected, Error> {
        let groups = matchers(selector)?;
        let mut found: super::Selected = Vec::new();
        for group in &groups {
            for (labels, points) in self
                .storage
                .select_hinted(group, min_time, max_time, hints)?
            {
                if groups.len() > 1 && found.iter().any(|(seen, _)| *seen == labels) {
                    continue;
                }
                self.hold(points.len())?;
                found.push((labels, points));
            }
        }
        if groups.len() > 1 {
            found.sort_by(|left, right| left.0.cmp(&right.0));
        }
        self.check_deadline("query preparation")?;
        Ok(found)
    }

    fn vector_selector(&mut self, selector: &VectorSelector) -> Result<Value, Error> {
        let offset = offset_ms(&selector.offset);
        let at = self.at_time(&selector.at);
        let steps = self.steps();
        let times: Vec<i64> = (0..steps)
            .map(|i| at.unwrap_or(self.time(i)) - offset)
            .collect();
        let mut out: Vec<Vec<Sample>> = vec![Vec::new(); steps];
        let (Some(&min), Some(&max)) = (times.iter().min(), times.iter().max()) else {
            return Ok(Value::Vector(out));
        };
        let lookback = self.options.lookback_delta.as_millis() as i64;
        let hints = instants(&times);
        for (labels, points) in self.select(selector, min - lookback + 1, max, hints)? {
            let mut cursor = Cursor::default();
            for (i, &time) in times.iter().enumerate() {
                if i % DEADLINE_EVERY == DEADLINE_EVERY - 1 {
                    self.check_deadline("vector selector")?;
                }
                if let Some((_, value)) = cursor.latest(&points, time, lookback) {
                    out[i].push(Sample {
                        labels: Arc::clone(&labels),
                        value,
                        drop_name: false,
                    });
                }
            }
        }
        Ok(Value::Vector(out))
    }

    /// The samples a vector selector sees, with their own timestamps (for `timestamp()`).
    pub fn vector_selector_timestamps(
        &mut self,
        selector: &VectorSelector,
    ) -> Result<Vec<Vec<(Labels, i64)>>, Error> {
        let offset = offset_ms(&selector.offset);
        let at = self.at_time(&selector.at);
        let steps = self.steps();
        let times: Vec<i64> = (0..steps)
            .map(|i| at.unwrap_or(self.time(i)) - offset)
            .collect();
        let mut out = vec![Vec::new(); steps];
        let (Some(&min), Some(&max)) = (times.iter().min(), times.iter().max()) else {
            return Ok(out);
        };
        let lookback = self.options.lookback_delta.as_millis() as i64;
        let hints = instants(&times);
        for (labels, points) in self.select(selector, min - lookback + 1, max, hints)? {
            let mut cursor = Cursor::default();
            for (i, &time) in times.iter().enumerate() {
                if let Some((timestamp, _)) = cursor.latest(&points, time, lookback) {
                    out[i].push((Arc::clone(&labels), timestamp));
                }
            }
        }
        Ok(out)
    }

    pub fn matrix_selector(
        &mut self,
        selector: &VectorSelector,
        range: i64,
    ) -> Result<RangeInput, Error> {
        let offset = offset_ms(&selector.offset);
        let at = self.at_time(&selector.at);
        let (min, max) = match at {
            Some(at) => (at - offset, at - offset),
            None => (self.start - offset, self.end - offset),
        };
        let series = self
            .select(selector, min - range + 1, max, Hints::Range)?
            .into_iter()
            .map(|(labels, mut points)| {
                points.retain(|(_, value)| !is_stale(*value));
                RangeSeries {
                    labels,
                    drop_name: false,
                    points,
                }
            })
            .filter(|series| !series.points.is_empty())
            .collect();
        Ok(RangeInput {
            series,
            range,
            offset,
            at,
            selector: Some(selector.clone()),
        })
    }

    fn subquery(&mut self, subquery: &SubqueryExpr) -> Result<RangeInput, Error> {
        let range = duration_ms(&subquery.range);
        let offset = offset_ms(&subquery.offset);
        let at = self.at_time(&subquery.at);
        let step = subquery
            .step
            .map(|step| duration_ms(&step))
            .unwrap_or(self.options.default_subquery_step.as_millis() as i64);
        if step <= 0 {
            return Err(Error::BadData("zero or negative subquery step".into()));
        }
        let (first, last) = match at {
            Some(at) => (at - offset, at - offset),
            None => (self.start - offset, self.end - offset),
        };
        // The first step after `first - range` that is a multiple of the step (Go's
        // truncating division, as Prometheus computes it).
        let lower = first - range;
        let mut inner_start = step * (lower / step);
        if inner_start <= lower {
            inner_start += step;
        }
        let saved = (self.start, self.end, self.interval);
        (self.start, self.end, self.interval) = (inner_start, last, step);

        let value = self.evaluate(&subquery.expr);
        (self.start, self.end, self.interval) = saved;
        let steps = match value? {
            Value::Vector(steps) => steps,
            Value::Scalar(values) => scalar_steps(values),
            _ => {
                return Err(Error::BadData(
                    "subquery is only allowed on instant vector".into(),
                ));
            }
        };
        let mut index: HashMap<(Labels, bool), usize> = HashMap::new();
        let mut series: Vec<RangeSeries> = Vec::new();
        for (i, samples) in steps.into_iter().enumerate() {
            if i % DEADLINE_EVERY == DEADLINE_EVERY - 1 {
                self.check_deadline("subquery")?;
            }
            let time = inner_start + i as i64 * step;
            for sample in samples {
                let slot = *index
                    .entry((Arc::clone(&sample.labels), sample.drop_name))
                    .or_insert_with(|| {
                        series.push(RangeSeries {
                            labels: Arc::clone(&sample.labels),
                            drop_name: sample.drop_name,
                            points: Vec::new(),
                        });
                        series.len() - 1
                    });
                series[slot].points.push((time, sample.value));
            }
        }
        series.sort_by(|left, right| left.labels.cmp(&right.labels));
        Ok(RangeInput {
            series,
            range,
            offset,
            at,
            selector: None,
        })
    }

    fn binary(&mut self, binary: &BinaryExpr) -> Result<Value, Error> {
        let op = binary.op.id();
        let lhs = self.evaluate(&binary.lhs)?;
        let rhs = self.evaluate(&binary.rhs)?;
        let return_bool = binary
            .modifier
            .as_ref()
            .is_some_and(|modifier| modifier.return_bool);
        match (lhs, rhs) {
            (Value::Scalar(left), Value::Scalar(right)) => {
                let values = left
                    .into_iter()
                    .zip(right)
                    .map(|(left, right)| {
                        let (value, keep) = scalar_op(op, left, right);
                        if is_comparison(op) {
                            if keep { 1.0 } else { 0.0 }
                        } else {
                            value
                        }
                    })
                    .collect();
                Ok(Value::Scalar(values))
            }
            (Value::Vector(vector), Value::Scalar(scalar)) => Ok(Value::Vector(
                self.vector_scalar(op, vector, &scalar, false, return_bool),
            )),
            (Value::Scalar(scalar), Value::Vector(vector)) => Ok(Value::Vector(
                self.vector_scalar(op, vector, &scalar, true, return_bool),
            )),
            (Value::Vector(left), Value::Vector(right)) => {
                let matching = binary
                    .modifier
                    .as_ref()
                    .and_then(|modifier| modifier.matching.clone());
                let card = binary
                    .modifier
                    .as_ref()
                    .map_or(VectorMatchCardinality::OneToOne, |modifier| {
                        modifier.card.clone()
                    });
                let mut out = Vec::with_capacity(left.len());
                for (left, right) in left.into_iter().zip(right) {
                    self.check_deadline("binary operator")?;
                    out.push(match op {
                        T_LAND | T_LOR | T_LUNLESS => {
                            set_operation(op, left, right, matching.as_ref())
                        }
                        _ => self.vector_vector(
                            op,
                            left,
                            right,
                            matching.as_ref(),
                            &card,
                            return_bool,
                        )?,
                    });
                }
                Ok(Value::Vector(out))
            }
            _ => Err(Error::BadData(
                "binary expression must contain only scalar and instant vector types".into(),
            )),
        }
    }

    fn vector_scalar(
        &self,
        op: TokenId,
        steps: Vec<Vec<Sample>>,
        scalar: &[f64],
        swap: bool,
        return_bool: bool,
    ) -> Vec<Vec<Sample>> {
        steps
            .into_iter()
            .zip(scalar)
            .map(|(samples, &scalar)| {
                samples
                    .into_iter()
                    .filter_map(|mut sample| {
                        let (left, right) = if swap {
                            (scalar, sample.value)
                        } else {
                            (sample.value, scalar)
                        };
                        let (mut value, mut keep) = scalar_op(op, left, right);
                        if is_comparison(op) && swap {
                            value = right;
                        }
                        if return_bool {
                            value = if keep { 1.0 } else { 0.0 };
                            keep = true;
                        }
                        if !keep {
                            return None;
                        }
                        sample.value = value;
                        if return_bool || !is_comparison(op) {
                            self.drop_name(&mut sample);
                        }
                        Some(sample)
                    })
                    .collect()
            })
            .collect()
    }

    fn vector_vector(
        &self,
        op: TokenId,
        left: Vec<Sample>,
        right: Vec<Sample>,
        matching: Option<&LabelModifier>,
        card: &VectorMatchCardinality,
        return_bool: bool,
    ) -> Result<Vec<Sample>, Error> {
        if left.is_empty() || right.is_empty() {
            return Ok(Vec::new());
        }
        let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
        let (many, one) = if one_to_many {
            (right, left)
        } else {
            (left, right)
        };
        let mut one_by_signature: HashMap<String, &Sample> = HashMap::new();
        for sample in &one {
            let key = signature(&sample.labels, matching);
            if let Some(duplicate) = one_by_signature.get(&key) {
                let side = if one_to_many { "left" } else { "right" };
                return Err(Error::Execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    format_labels(&match_labels(&sample.labels, matching)),
                    format_labels(&duplicate.labels),
                    format_labels(&sample.labels)
                )));
            }
            one_by_signature.insert(key, sample);
        }
        let mut matched: HashMap<String, Option<Vec<Labels>>> = HashMap::new();
        let mut out = Vec::new();
        for sample in &many {
            let key = signature(&sample.labels, matching);
            let Some(other) = one_by_signature.get(&key) else {
                continue;
            };
            let (left_value, right_value) = if one_to_many {
                (other.value, sample.value)
            } else {
                (sample.value, other.value)
            };
            let (mut value, mut keep) = scalar_op(op, left_value, right_value);
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            let labels = self.result_labels(
                op,
                &sample.labels,
                &other.labels,
                matching,
                card,
                return_bool,
            );
            match card {
                VectorMatchCardinality::OneToOne => {
                    if matched.contains_key(&key) {
                        return Err(Error::Execution(
                            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                        ));
                    }
                    matched.insert(key, None);
                }
                _ => {
                    let seen = matched.entry(key).or_insert_with(|| Some(Vec::new()));
                    let seen = seen.get_or_insert_with(Vec::new);
                    if keep && seen.contains(&labels) {
                        return Err(Error::Execution("multiple matches for labels: grouping labels must ensure unique matches".into()));
                    }
                    if keep {
                        seen.push(Arc::clone(&labels));
                    }
                }
            }
            if !keep {
                continue;
            }
            let drop_name = self.options.delayed_name_removal
                && (sample.drop_name || return_bool || is_arithmetic(op));
            out.push(Sample {
                labels,
                value,
                drop_name,
            });
        }
        Ok(out)
    }

    /// Prometheus' `resultMetric`: the many side's labels, reduced to the `on` labels
    /// (or without the `ignoring` ones) for one-to-one matching, plus `group_x` labels
    /// copied from the one side.
    fn result_labels(
        &self,
        op: TokenId,
        many: &Labels,
        one: &Labels,
        matching: Option<&LabelModifier>,
        card: &VectorMatchCardinality,
        return_bool: bool,
    ) -> Labels {
        let mut labels: Vec<(String, String)> = many.to_vec();
        if !self.options.delayed_name_removal && (is_arithmetic(op) || return_bool) {
            labels.retain(|(name, _)| name != NAME);
        }
        if matches!(card, VectorMatchCardinality::OneToOne) {
            match matching {
                Some(LabelModifier::Include(on)) => {
                    labels.retain(|(name, _)| on.labels.contains(name))
                }
                Some(LabelModifier::Exclude(ignoring)) => {
                    labels.retain(|(name, _)| !ignoring.labels.contains(name))
                }
                None => {}
            }
        }
        if let Some(include) = card.labels() {
            for name in &include.labels {
                labels.retain(|(existing, _)| existing != name);
                if let Some((_, value)) = one.iter().find(|(existing, _)| existing == name)
                    && !value.is_empty()
                {
                    labels.push((name.clone(), value.clone()));
                }
            }
            labels.sort();
        }
        if labels.len() == many.len() {
            return Arc::clone(many);
        }
        labels.into()
    }

    /// The final result of an instant query.
    pub fn finish_instant(&mut self, value: Value, time: i64) -> Result<QueryValue, Error> {
        match value {
            Value::Scalar(values) => Ok(QueryValue::Scalar {
                timestamp: time,
                value: values.first().copied().unwrap_or(f64::NAN),
            }),
            Value::String(value) => Ok(QueryValue::String {
                timestamp: time,
                value,
            }),
            Value::Vector(steps) => {
                let samples = steps.into_iter().next().unwrap_or_default();
                let mut out: Vec<OutSample> = Vec::with_capacity(samples.len());
                let mut seen = std::collections::HashSet::new();
                for sample in samples {
                    let labels = final_labels(sample.labels, sample.drop_name);
                    if !seen.insert(Arc::clone(&labels)) {
                        return Err(duplicate_labelset());
                    }
                    out.push(OutSample {
                        labels,
                        timestamp: time,
                        value: sample.value,
                    });
                }
                Ok(QueryValue::Vector(out))
            }
            Value::Range(input) => {
                let (start, end) = input.window(time);
                let mut out: Vec<Series> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for series in input.series {
                    let points = window(&series.points, start, end).to_vec();
                    if points.is_empty() {
                        continue;
                    }
                    let labels = final_labels(series.labels, series.drop_name);
                    if !seen.insert(Arc::clone(&labels)) {
                        return Err(duplicate_labelset());
                    }
                    out.push(Series { labels, points });
                }
                out.sort_by(|left, right| left.labels.cmp(&right.labels));
                Ok(QueryValue::Matrix(out))
            }
        }
    }

    /// The final result of a range query: one series per label set, sorted by labels.
    pub fn finish_range(&mut self, value: Value) -> Result<Vec<Series>, Error> {
        let steps = match value {
            Value::Scalar(values) => {
                let points = values
                    .into_iter()
                    .enumerate()
                    .map(|(i, value)| (self.time(i), value))
                    .collect();
                return Ok(vec![Series {
                    labels: Labels::from(Vec::new()),
                    points,
                }]);
            }
            Value::Vector(steps) => steps,
            _ => {
                return Err(Error::BadData(
                    "range queries need a scalar or instant vector expression".into(),
                ));
            }
        };
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut out: Vec<Series> = Vec::new();
        for (i, samples) in steps.into_iter().enumerate() {
            let time = self.time(i);
            for sample in samples {
                let labels = final_labels(sample.labels, sample.drop_name);
                let slot = *index.entry(Arc::clone(&labels)).or_insert_with(|| {
                    out.push(Series {
                        labels,
                        points: Vec::new(),
                    });
                    out.len() - 1
                });
                if out[slot]
                    .points
                    .last()
                    .is_some_and(|(last, _)| *last == time)
                {
                    return Err(duplicate_labelset());
                }
                out[slot].points.push((time, sample.value));
            }
        }
        out.sort_by(|left, right| left.labels.cmp(&right.labels));
        Ok(out)
    }
}

pub(super) fn duplicate_labelset() -> Error {
    Error::Execution("vector cannot contain metrics with the same labelset".into())
}

/// Finds the newest sample at or before a time within the lookback window `(time -
/// lookback, time]`, unless it is a staleness marker. Times mostly increase, so a cursor
/// moves forward instead of a binary search per step (which costs cache misses on long
/// series).
#[derive(Default)]
struct Cursor {
    next: usize,
    last_time: Option<i64>,
}

impl Cursor {
    fn latest(&mut self, points: &[(i64, f64)], time: i64, lookback: i64) -> Option<(i64, f64)> {
        if self.last_time.is_some_and(|last| time < last) {
            self.next = 0;
        }
        self.last_time = Some(time);
        while self.next < points.len() && points[self.next].0 <= time {
            self.next += 1;
        }
        let (t, value) = *points.get(self.next.checked_sub(1)?)?;
        (t > time - lookback && !is_stale(value)).then_some((t, value))
    }
}

/// The storage matchers of a selector: one group, or one per `or` alternative.
pub(super) fn matchers(selector: &VectorSelector) -> Result<Vec<Vec<Matcher>>, Error> {
    let convert = |group: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, Error> {
        let mut out = Vec::with_capacity(group.len() + 1);
        if let Some(name) = &selector.name
            && !group.iter().any(|matcher| {
                matcher.name == NAME
                    && matches!(matcher.op, MatchOp::Equal)
                    && &matcher.value == name
            })
        {
            out.push(Matcher::Equal(NAME.into(), name.clone()));
        }
        for matcher in group {
            out.push(match &matcher.op {
                MatchOp::Equal => Matcher::Equal(matcher.name.clone(), matcher.value.clone()),
                MatchOp::NotEqual => Matcher::NotEqual(matcher.name.clone(), matcher.value.clone()),
                MatchOp::Re(parsed) | MatchOp::NotRe(parsed) => {
                    let negated = matches!(matcher.op, MatchOp::NotRe(_));
                    // Go's RE2 accepts a literal `{` the regex crate does not; the
                    // parser crate escapes those, so its pattern is the fallback.
                    Matcher::regex(&matcher.name, &matcher.value, negated)
                        .or_else(|_| {
                            let regex = regex::Regex::new(&format!("(?s){}", parsed.as_str()))?;
                            Ok::<_, regex::Error>(if negated {
                                Matcher::NotRegex(matcher.name.clone(), regex)
                            } else {
                                Matcher::Regex(matcher.name.clone(), regex)
                            })
                        })
                        .map_err(|error| {
                            Error::BadData(format!(
                                "invalid regular expression {:?}: {error}",
                                matcher.value
                            ))
                        })?
                }
            });
        }
        Ok(out)
    };
    if selector.matchers.or_matchers.is_empty() {
        return Ok(vec![convert(&selector.matchers.matchers)?]);
    }
    selector
        .matchers
        .or_matchers
        .iter()
        .map(|group| convert(group))
        .collect()
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

/// The matching key of a vector-matching operation: the `on` labels, or every label
/// but the `ignoring` ones and `__name__`.
fn signature(labels: &Labels, matching: Option<&LabelModifier>) -> String {
    let mut key = String::new();
    for (name, value) in labels.iter() {
        let included = match matching {
            Some(LabelModifier::Include(on)) => on.labels.contains(name),
            Some(LabelModifier::Exclude(ignoring)) => {
                name != NAME && !ignoring.labels.contains(name)
            }
            None => name != NAME,
        };
        if included {
            key.push_str(name);
            key.push('\u{ff}');
            key.push_str(value);
            key.push('\u{ff}');
        }
    }
    key
}

fn match_labels(labels: &Labels, matching: Option<&LabelModifier>) -> Labels {
    labels
        .iter()
        .filter(|(name, _)| match matching {
            Some(LabelModifier::Include(on)) => on.labels.contains(name),
            Some(LabelModifier::Exclude(ignoring)) => {
                name != NAME && !ignoring.labels.contains(name)
            }
            None => name != NAME,
        })
        .cloned()
        .collect::<Vec<_>>()
        .into()
}

/// `{a="1", b="2"}` as Prometheus prints a label set.
pub(super) fn format_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn set_operation(
    op: TokenId,
    left: Vec<Sample>,
    right: Vec<Sample>,
    matching: Option<&LabelModifier>,
) -> Vec<Sample> {
    let keys = |samples: &[Sample]| -> std::collections::HashSet<String> {
        samples
            .iter()
            .map(|sample| signature(&sample.labels, matching))
            .collect()
    };
    let matched = |sample: &Sample, keys: &std::collections::HashSet<String>| {
        keys.contains(&signature(&sample.labels, matching))
    };
    match op {
        T_LAND => {
            let right = keys(&right);
            left.into_iter()
                .filter(|sample| matched(sample, &right))
                .collect()
        }
        T_LUNLESS => {
            let right = keys(&right);
            left.into_iter()
                .filter(|sample| !matched(sample, &right))
                .collect()
        }
        _ => {
            let seen = keys(&left);
            let mut out = left;
            out.extend(right.into_iter().filter(|sample| !matched(sample, &seen)));
            out
        }
    }
}

pub(super) fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

fn is_arithmetic(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW | T_ATAN2)
}

/// One binary operation on two floats: the value and, for comparisons, whether the
/// sample is kept.
fn scalar_op(op: TokenId, left: f64, right: f64) -> (f64, bool) {
    match op {
        T_ADD => (left + right, true),
        T_SUB => (left - right, true),
        T_MUL => (left * right, true),
        T_DIV => (left / right, true),
        T_MOD => (left % right, true),
        T_POW => (left.powf(right), true),
        T_ATAN2 => (left.atan2(right), true),
        T_EQLC => (left, left == right),
        T_NEQ => (left, left != right),
        T_GTR => (left, left > right),
        T_LSS => (left, left < right),
        T_GTE => (left, left >= right),
        T_LTE => (left, left <= right),
        _ => (f64::NAN, false),
    }
}

pub(super) fn duration_ms(duration: &std::time::Duration) -> i64 {
    duration.as_millis() as i64
}

fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(duration)) => duration_ms(duration),
        Some(Offset::Neg(duration)) => -duration_ms(duration),
    }
}

fn system_time_ms(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_millis() as i64,
        Err(before) => -(before.duration().as_millis() as i64),
    }
}

pub(super) fn value_type(expr: &Expr) -> ValueType {
    expr.value_type()
}

pub(super) fn type_name(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
    }
}

/// Refuses what the engine does not evaluate yet, naming it.
pub(super) fn check_supported(expr: &Expr) -> Result<(), Error> {
    match expr {
        Expr::Aggregate(aggregate) => {
            let op = aggregate.op.to_string();
            if op == "limitk" || op == "limit_ratio" {
                return Err(Error::BadData(format!(
                    "the experimental aggregation {op} is not supported"
                )));
            }
            check_supported(&aggregate.expr)?;
            if let Some(param) = &aggregate.param {
                check_supported(param)?;
            }
            Ok(())
        }
        Expr::Unary(unary) => check_supported(&unary.expr),
        Expr::Binary(binary) => {
            if let Some(modifier) = &binary.modifier
                && (modifier.fill_values.lhs.is_some() || modifier.fill_values.rhs.is_some())
            {
                return Err(Error::BadData(
                    "the experimental fill modifiers are not supported".into(),
                ));
            }
            check_supported(&binary.lhs)?;
            check_supported(&binary.rhs)
        }
        Expr::Paren(paren) => check_supported(&paren.expr),
        Expr::Subquery(subquery) => check_supported(&subquery.expr),
        Expr::Call(call) => {
            super::functions::check_supported(call.func.name)?;
            call.args
                .args
                .iter()
                .try_for_each(|arg| check_supported(arg))
        }
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_) => Ok(()),
        Expr::Extension(_) => Err(Error::BadData(
            "extension expressions are not supported".into(),
        )),
    }
}
