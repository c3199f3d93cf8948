//! The tree walk: selectors (lookback, staleness, `offset`, `@`), subqueries, and the
//! final `__name__` removal and duplicate check. Each node kind is handed to its room:
//! operators to `binary`, calls to `functions`, aggregations to `aggregate`.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::label::MatchOp;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, Offset, SubqueryExpr, VectorSelector};

use super::evaluator::{DEADLINE_EVERY, Evaluator};
use super::value::{
    NAME, RangeInput, RangeSeries, Sample, Value, duplicate_labelset, final_labels, is_stale,
    scalar_steps, window,
};
use super::{Error, Hints, QueryValue, Sample as OutSample, Series};
use crate::tsdb::head::{Labels, Matcher};

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

impl Evaluator<'_> {
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
