//! Functions of a range vector, per step over its left-open window: extrapolated
//! `rate`/`increase`/`delta`, `irate`/`idelta`, `deriv`/`predict_linear`, `resets`,
//! `changes`, `double_exponential_smoothing` and the `*_over_time` family.

use std::sync::Arc;

use promql_parser::parser::Expr;

use super::{range_arg, scalar_arg};
use crate::promql::Error;
use crate::promql::evaluator::{DEADLINE_EVERY, Evaluator};
use crate::promql::statistics::{
    average, kahan_inc, kahan_sum, quantile, quantile_warning, variance,
};
use crate::promql::value::{NAME, RangeInput, Sample, Value, label_value};
use crate::tsdb::head::Labels;

/// What a range-vector function sees at one step.
struct Window<'w> {
    points: &'w [(i64, f64)],
    start: i64,
    end: i64,
    range: i64,
    step_time: i64,
    params: &'w [f64],
}

pub(super) fn over_time(
    evaluator: &mut Evaluator,
    name: &str,
    args: &[Box<Expr>],
) -> Result<Value, Error> {
    let matrix_index = usize::from(name == "quantile_over_time");
    let mut params: Vec<Vec<f64>> = Vec::new();
    for (index, arg) in args.iter().enumerate() {
        if index != matrix_index {
            params.push(scalar_arg(evaluator, arg)?);
        }
    }
    let input = range_arg(evaluator, &args[matrix_index])?;
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    if matches!(name, "rate" | "increase") {
        non_counter_info(evaluator, &input);
    }
    if name == "double_exponential_smoothing" {
        for (&smoothing, &trend) in params[0].iter().zip(&params[1]) {
            if smoothing <= 0.0 || smoothing >= 1.0 {
                return Err(Error::Execution(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {smoothing:.6}"
                )));
            }
            if trend <= 0.0 || trend >= 1.0 {
                return Err(Error::Execution(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {trend:.6}"
                )));
            }
        }
    }
    if name == "quantile_over_time" {
        for &q in &params[0] {
            if q.is_nan() || !(0.0..=1.0).contains(&q) && !input.series.is_empty() {
                let position = evaluator.position_of("quantile_over_time(");
                evaluator.annotations.warn(quantile_warning(q, &position));
            }
        }
    }
    let steps = evaluator.steps();
    let mut out: Vec<Vec<Sample>> = (0..steps)
        .map(|_| Vec::with_capacity(input.series.len()))
        .collect();
    let mut step_params = vec![0.0; params.len()];
    let windows: Vec<(i64, i64)> = (0..steps)
        .map(|i| input.window(evaluator.time(i)))
        .collect();
    // series by series, each window found by moving two cursors forward: the steps'
    // windows only move forward, and a binary search per step costs cache misses
    for (number, series) in input.series.iter().enumerate() {
        if number % 256 == 0 {
            evaluator.check_deadline("range function")?;
        }
        let points = &series.points[..];
        let (mut from, mut to) = (0usize, 0usize);
        let mut previous_start = i64::MIN;
        let mut labels: Option<(Labels, bool)> = None;
        for (i, &(start, end)) in windows.iter().enumerate() {
            if i % DEADLINE_EVERY == DEADLINE_EVERY - 1 {
                evaluator.check_deadline("range function")?;
            }
            if start < previous_start {
                (from, to) = (0, 0);
            }
            previous_start = start;
            while from < points.len() && points[from].0 <= start {
                from += 1;
            }
            to = to.max(from);
            while to < points.len() && points[to].0 <= end {
                to += 1;
            }
            if from == to {
                continue;
            }
            for (slot, values) in step_params.iter_mut().zip(&params) {
                *slot = values[i];
            }
            let context = Window {
                points: &points[from..to],
                start,
                end,
                range: input.range,
                step_time: evaluator.time(i),
                params: &step_params,
            };
            let Some(value) = range_function(name, &context) else {
                continue;
            };
            let (labels, drop_name) = labels
                .get_or_insert_with(|| {
                    let mut sample = Sample {
                        labels: Arc::clone(&series.labels),
                        value: 0.0,
                        drop_name: series.drop_name,
                    };
                    if !keep_name {
                        evaluator.drop_name(&mut sample);
                    }
                    (sample.labels, sample.drop_name)
                })
                .clone();
            out[i].push(Sample {
                labels,
                value,
                drop_name,
            });
        }
    }
    Ok(Value::Vector(out))
}

/// Prometheus' info for `rate()`/`increase()` over a metric whose name does not say
/// it is a counter.
fn non_counter_info(evaluator: &mut Evaluator, input: &RangeInput) {
    for series in &input.series {
        let name = label_value(&series.labels, NAME);
        if !name.is_empty()
            && !["_total", "_sum", "_count", "_bucket"]
                .iter()
                .any(|suffix| name.ends_with(suffix))
        {
            let position = evaluator.position_of(name);
            evaluator.annotations.info(format!(
                "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?} ({position})"
            ));
        }
    }
}

fn range_function(name: &str, w: &Window) -> Option<f64> {
    let values = || {
        w.points
            .iter()
            .map(|(_, value)| *value)
            .collect::<Vec<f64>>()
    };
    let points = w.points;
    Some(match name {
        "rate" => extrapolated(w, true, true)?,
        "increase" => extrapolated(w, true, false)?,
        "delta" => extrapolated(w, false, false)?,
        "irate" => instant_delta(points, true)?,
        "idelta" => instant_delta(points, false)?,
        "deriv" => {
            if points.len() < 2 {
                return None;
            }
            linear_regression(points, points[0].0).0
        }
        "predict_linear" => {
            if points.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(points, w.step_time);
            slope * w.params[0] + intercept
        }
        "avg_over_time" => average(&values()),
        "sum_over_time" => kahan_sum(&values()),
        "count_over_time" => points.len() as f64,
        "present_over_time" => 1.0,
        "last_over_time" => points[points.len() - 1].1,
        "first_over_time" => points[0].1,
        "ts_of_last_over_time" => points[points.len() - 1].0 as f64 / 1000.0,
        "ts_of_first_over_time" => points[0].0 as f64 / 1000.0,
        "min_over_time" => extreme(points, |current, best| current < best).1,
        "max_over_time" => extreme(points, |current, best| current > best).1,
        "ts_of_min_over_time" => extreme(points, |current, best| current <= best).0 as f64 / 1000.0,
        "ts_of_max_over_time" => extreme(points, |current, best| current >= best).0 as f64 / 1000.0,
        "stddev_over_time" => variance(&values()).sqrt(),
        "stdvar_over_time" => variance(&values()),
        "quantile_over_time" => quantile(w.params[0], values()),
        "mad_over_time" => {
            let values = values();
            if values.iter().any(|value| value.is_nan()) {
                return Some(f64::NAN);
            }
            let median = quantile(0.5, values.clone());
            quantile(
                0.5,
                values.iter().map(|value| (value - median).abs()).collect(),
            )
        }
        "changes" => points
            .windows(2)
            .filter(|pair| pair[1].1 != pair[0].1 && !(pair[1].1.is_nan() && pair[0].1.is_nan()))
            .count() as f64,
        "resets" => points
            .windows(2)
            .filter(|pair| pair[1].1 < pair[0].1)
            .count() as f64,
        "double_exponential_smoothing" => {
            double_exponential_smoothing(points, w.params[0], w.params[1])?
        }
        _ => return None,
    })
}

/// Prometheus' `extrapolatedRate`: the change over the window (counter resets added
/// back for counters), extrapolated to the window's edges when the samples reach
/// close enough to them, never below zero for counters.
fn extrapolated(w: &Window, is_counter: bool, is_rate: bool) -> Option<f64> {
    let points = w.points;
    if points.len() < 2 {
        return None;
    }
    let (first_time, first) = points[0];
    let (last_time, last) = points[points.len() - 1];
    let mut result = last - first;
    if is_counter {
        for pair in points.windows(2) {
            if pair[1].1 < pair[0].1 {
                result += pair[0].1;
            }
        }
    }
    let mut to_start = (first_time - w.start) as f64 / 1000.0;
    let mut to_end = (w.end - last_time) as f64 / 1000.0;
    let sampled = (last_time - first_time) as f64 / 1000.0;
    let average_gap = sampled / (points.len() - 1) as f64;
    let threshold = average_gap * 1.1;
    if to_start >= threshold {
        to_start = average_gap / 2.0;
    }
    if is_counter && result > 0.0 && first >= 0.0 {
        let to_zero = sampled * (first / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = average_gap / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= w.range as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate`/`idelta`: from the last two samples.
fn instant_delta(points: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (previous_time, previous) = points[points.len() - 2];
    let (last_time, last) = points[points.len() - 1];
    let interval = last_time - previous_time;
    if interval == 0 {
        return None;
    }
    let mut result = last;
    if !is_rate || last >= previous || last.is_nan() || previous.is_nan() {
        result = last - previous;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// The point `better(current, best)` prefers; NaN loses to any number.
fn extreme(points: &[(i64, f64)], better: impl Fn(f64, f64) -> bool) -> (i64, f64) {
    let mut best = points[0];
    for &(time, value) in points {
        if better(value, best.1) || best.1.is_nan() {
            best = (time, value);
        }
    }
    best
}

fn double_exponential_smoothing(points: &[(i64, f64)], smoothing: f64, trend: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let trend_value = |i: usize, s0: f64, s1: f64, b: f64| {
        if i == 0 {
            b
        } else {
            trend * (s1 - s0) + (1.0 - trend) * b
        }
    };
    let (mut s0, mut s1) = (0.0, points[0].1);
    let mut b = points[1].1 - points[0].1;
    for (i, (_, value)) in points.iter().enumerate().skip(1) {
        let x = smoothing * value;
        b = trend_value(i - 1, s0, s1, b);
        let y = (1.0 - smoothing) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

/// Least squares over `points` with x in seconds from `intercept_time`: (slope,
/// intercept), as Prometheus' `linearRegression` (a constant series has slope 0).
fn linear_regression(points: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let initial = points[0].1;
    let mut constant = true;
    for (i, &(time, value)) in points.iter().enumerate() {
        if constant && i > 0 && value != initial {
            constant = false;
        }
        n += 1.0;
        let x = (time - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(value, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * value, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if constant {
        if initial.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, initial);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let covariance = sum_xy - sum_x * sum_y / n;
    let x_variance = sum_x2 - sum_x * sum_x / n;
    let slope = covariance / x_variance;
    (slope, sum_y / n - slope * sum_x / n)
}
