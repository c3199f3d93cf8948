//! PromQL functions over float samples, following Prometheus 3's `functions.go`:
//! extrapolated `rate`/`increase`/`delta`, Kahan-compensated sums and means, classic
//! `histogram_quantile`, and the `*_over_time` family over left-open windows.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{Datelike, Timelike};
use promql_parser::parser::{Call, Expr};

use super::Error;
use super::eval::{
    Evaluator, NAME, RangeInput, Sample, Value, duplicate_labelset, final_labels, label_value,
    scalar_steps, window,
};
use crate::tsdb::head::Labels;

/// Functions evaluated here; anything else the parser knows is refused up front.
const SUPPORTED: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "exp",
    "first_over_time",
    "floor",
    "histogram_quantile",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "vector",
    "year",
    "start",
    "end",
    "range",
    "step",
    "min_of",
    "max_of",
];

pub(super) fn check_supported(name: &str) -> Result<(), Error> {
    if SUPPORTED.contains(&name) {
        return Ok(());
    }
    if name.starts_with("histogram_") {
        return Err(Error::BadData(format!(
            "function {name}() needs native histograms, which Lookout does not store yet; classic histograms work with histogram_quantile() over le buckets"
        )));
    }
    Err(Error::BadData(format!(
        "function {name}() is not supported by Lookout's PromQL engine"
    )))
}

pub(super) fn call(evaluator: &mut Evaluator, call: &Call) -> Result<Value, Error> {
    let name = call.func.name;
    let args = &call.args.args;
    match name {
        "time" => Ok(Value::Scalar(
            (0..evaluator.steps())
                .map(|i| evaluator.time(i) as f64 / 1000.0)
                .collect(),
        )),
        "pi" => Ok(Value::Scalar(vec![std::f64::consts::PI; evaluator.steps()])),
        "start" | "end" | "range" | "step" => {
            let (start, end, step) = evaluator.query_window();
            let value = match name {
                "start" => start as f64 / 1000.0,
                "end" => end as f64 / 1000.0,
                "range" => (end - start) as f64 / 1000.0,
                _ => step as f64 / 1000.0,
            };
            Ok(Value::Scalar(vec![value; evaluator.steps()]))
        }
        "min_of" | "max_of" => {
            // Go's math.Min/Max: any NaN gives NaN
            let left = scalar_arg(evaluator, &args[0])?;
            let right = scalar_arg(evaluator, &args[1])?;
            let pick = |a: f64, b: f64| {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else if name == "min_of" {
                    a.min(b)
                } else {
                    a.max(b)
                }
            };
            Ok(Value::Scalar(
                left.into_iter()
                    .zip(right)
                    .map(|(a, b)| pick(a, b))
                    .collect(),
            ))
        }
        "vector" => {
            let values = scalar_arg(evaluator, &args[0])?;
            Ok(Value::Vector(scalar_steps(values)))
        }
        "scalar" => {
            let steps = vector_arg(evaluator, &args[0])?;
            Ok(Value::Scalar(
                steps
                    .into_iter()
                    .map(|samples| {
                        if samples.len() == 1 {
                            samples[0].value
                        } else {
                            f64::NAN
                        }
                    })
                    .collect(),
            ))
        }
        "timestamp" => timestamp(evaluator, &args[0]),
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" => date(evaluator, name, args.first().map(|arg| arg.as_ref())),
        "round" => {
            let steps = vector_arg(evaluator, &args[0])?;
            let nearest = match args.get(1) {
                Some(arg) => scalar_arg(evaluator, arg)?,
                None => vec![1.0; evaluator.steps()],
            };
            Ok(Value::Vector(map_steps(evaluator, steps, |i, value| {
                let inverse = 1.0 / nearest[i];
                (value * inverse + 0.5).floor() / inverse
            })))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let steps = vector_arg(evaluator, &args[0])?;
            let (low, high) = match name {
                "clamp" => (
                    scalar_arg(evaluator, &args[1])?,
                    scalar_arg(evaluator, &args[2])?,
                ),
                "clamp_min" => (
                    scalar_arg(evaluator, &args[1])?,
                    vec![f64::INFINITY; evaluator.steps()],
                ),
                _ => (
                    vec![f64::NEG_INFINITY; evaluator.steps()],
                    scalar_arg(evaluator, &args[1])?,
                ),
            };
            let mut out = map_steps(evaluator, steps, |i, value| low[i].max(high[i].min(value)));
            for (i, samples) in out.iter_mut().enumerate() {
                if high[i] < low[i] {
                    samples.clear();
                }
            }
            Ok(Value::Vector(out))
        }
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
            sort(evaluator, name, args)
        }
        "label_replace" => label_replace(evaluator, args),
        "label_join" => label_join(evaluator, args),
        "absent" => {
            let steps = vector_arg(evaluator, &args[0])?;
            let labels = match args[0].as_ref() {
                Expr::VectorSelector(selector) => absent_labels(selector),
                _ => Labels::from(Vec::new()),
            };
            Ok(Value::Vector(
                steps
                    .into_iter()
                    .map(|samples| {
                        if samples.is_empty() {
                            vec![Sample {
                                labels: Arc::clone(&labels),
                                value: 1.0,
                                drop_name: false,
                            }]
                        } else {
                            Vec::new()
                        }
                    })
                    .collect(),
            ))
        }
        "absent_over_time" => {
            let input = range_arg(evaluator, &args[0])?;
            let labels = input
                .selector
                .as_ref()
                .map_or_else(|| Labels::from(Vec::new()), absent_labels);
            Ok(Value::Vector(
                (0..evaluator.steps())
                    .map(|i| {
                        let (start, end) = input.window(evaluator.time(i));
                        let present = input
                            .series
                            .iter()
                            .any(|series| !window(&series.points, start, end).is_empty());
                        if present {
                            Vec::new()
                        } else {
                            vec![Sample {
                                labels: Arc::clone(&labels),
                                value: 1.0,
                                drop_name: false,
                            }]
                        }
                    })
                    .collect(),
            ))
        }
        "histogram_quantile" => histogram_quantile(evaluator, args),
        _ => {
            if let Some(f) = simple(name) {
                let steps = vector_arg(evaluator, &args[0])?;
                return Ok(Value::Vector(map_steps(evaluator, steps, |_, value| {
                    f(value)
                })));
            }
            over_time(evaluator, name, args)
        }
    }
}

/// Element-wise math functions.
fn simple(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |value| value * std::f64::consts::PI / 180.0,
        "deg" => |value| value * 180.0 / std::f64::consts::PI,
        "sgn" => |value: f64| {
            if value < 0.0 {
                -1.0
            } else if value > 0.0 {
                1.0
            } else {
                value
            }
        },
        _ => return None,
    })
}

fn vector_arg(evaluator: &mut Evaluator, arg: &Expr) -> Result<Vec<Vec<Sample>>, Error> {
    match evaluator.evaluate(arg)? {
        Value::Vector(steps) => Ok(steps),
        _ => Err(Error::BadData("expected an instant vector argument".into())),
    }
}

fn scalar_arg(evaluator: &mut Evaluator, arg: &Expr) -> Result<Vec<f64>, Error> {
    match evaluator.evaluate(arg)? {
        Value::Scalar(values) => Ok(values),
        _ => Err(Error::BadData("expected a scalar argument".into())),
    }
}

fn string_arg(arg: &Expr) -> Result<String, Error> {
    let mut arg = arg;
    while let Expr::Paren(paren) = arg {
        arg = &paren.expr;
    }
    match arg {
        Expr::StringLiteral(string) => Ok(string.val.clone()),
        _ => Err(Error::BadData("expected a string literal argument".into())),
    }
}

fn range_arg(evaluator: &mut Evaluator, arg: &Expr) -> Result<RangeInput, Error> {
    match evaluator.evaluate(arg)? {
        Value::Range(input) => Ok(input),
        _ => Err(Error::BadData("expected a range vector argument".into())),
    }
}

/// Applies `f(step, value)` to every sample, marking `__name__` for removal.
fn map_steps(
    evaluator: &Evaluator,
    steps: Vec<Vec<Sample>>,
    f: impl Fn(usize, f64) -> f64,
) -> Vec<Vec<Sample>> {
    steps
        .into_iter()
        .enumerate()
        .map(|(i, samples)| {
            samples
                .into_iter()
                .map(|mut sample| {
                    sample.value = f(i, sample.value);
                    evaluator.drop_name(&mut sample);
                    sample
                })
                .collect()
        })
        .collect()
}

fn timestamp(evaluator: &mut Evaluator, arg: &Expr) -> Result<Value, Error> {
    let mut inner = arg;
    while let Expr::Paren(paren) = inner {
        inner = &paren.expr;
    }
    if let Expr::VectorSelector(selector) = inner {
        let steps = evaluator.vector_selector_timestamps(selector)?;
        return Ok(Value::Vector(
            steps
                .into_iter()
                .map(|samples| {
                    samples
                        .into_iter()
                        .map(|(labels, time)| {
                            let mut sample = Sample {
                                labels,
                                value: time as f64 / 1000.0,
                                drop_name: false,
                            };
                            evaluator.drop_name(&mut sample);
                            sample
                        })
                        .collect()
                })
                .collect(),
        ));
    }
    let steps = vector_arg(evaluator, arg)?;
    let times: Vec<f64> = (0..steps.len())
        .map(|i| evaluator.time(i) as f64 / 1000.0)
        .collect();
    Ok(Value::Vector(map_steps(evaluator, steps, |i, _| times[i])))
}

fn date(evaluator: &mut Evaluator, name: &str, arg: Option<&Expr>) -> Result<Value, Error> {
    let f = |seconds: f64| -> f64 {
        if !seconds.is_finite() {
            return f64::NAN;
        }
        let Some(time) = chrono::DateTime::from_timestamp(seconds.trunc() as i64, 0) else {
            return f64::NAN;
        };
        match name {
            "day_of_month" => time.day() as f64,
            "day_of_week" => time.weekday().num_days_from_sunday() as f64,
            "day_of_year" => time.ordinal() as f64,
            "hour" => time.hour() as f64,
            "minute" => time.minute() as f64,
            "month" => time.month() as f64,
            "year" => time.year() as f64,
            _ => {
                let (year, month) = (time.year(), time.month());
                let next = if month == 12 {
                    chrono::NaiveDate::from_ymd_opt(year + 1, 1, 1)
                } else {
                    chrono::NaiveDate::from_ymd_opt(year, month + 1, 1)
                };
                let first = chrono::NaiveDate::from_ymd_opt(year, month, 1);
                match (first, next) {
                    (Some(first), Some(next)) => (next - first).num_days() as f64,
                    _ => f64::NAN,
                }
            }
        }
    };
    match arg {
        None => Ok(Value::Vector(
            (0..evaluator.steps())
                .map(|i| {
                    vec![Sample {
                        labels: Labels::from(Vec::new()),
                        value: f(evaluator.time(i) as f64 / 1000.0),
                        drop_name: false,
                    }]
                })
                .collect(),
        )),
        Some(arg) => {
            let steps = vector_arg(evaluator, arg)?;
            Ok(Value::Vector(map_steps(evaluator, steps, |_, value| {
                f(value)
            })))
        }
    }
}

fn sort(evaluator: &mut Evaluator, name: &str, args: &[Box<Expr>]) -> Result<Value, Error> {
    let mut steps = vector_arg(evaluator, &args[0])?;
    if evaluator.is_range_query() {
        let position = evaluator.position_of(&format!("{name}("));
        evaluator
            .annotations
            .warn(format!("PromQL warning: sort is ineffective for range queries since results are always ordered by labels ({position})"));
    }
    let by: Vec<String> = args[1..]
        .iter()
        .map(|arg| string_arg(arg))
        .collect::<Result<_, _>>()?;
    for samples in &mut steps {
        match name {
            "sort" => samples.sort_by(|left, right| nan_last(left.value, right.value, false)),
            "sort_desc" => samples.sort_by(|left, right| nan_last(left.value, right.value, true)),
            _ => {
                let descending = name == "sort_by_label_desc";
                samples.sort_by(|left, right| {
                    let mut order = Ordering::Equal;
                    for label in &by {
                        order = natural_cmp(
                            label_value(&left.labels, label),
                            label_value(&right.labels, label),
                        );
                        if order != Ordering::Equal {
                            break;
                        }
                    }
                    if order == Ordering::Equal {
                        order = left.labels.cmp(&right.labels);
                    }
                    if descending { order.reverse() } else { order }
                });
            }
        }
    }
    Ok(Value::Vector(steps))
}

fn nan_last(left: f64, right: f64, descending: bool) -> Ordering {
    match (left.is_nan(), right.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => {
            let order = left.partial_cmp(&right).unwrap_or(Ordering::Equal);
            if descending { order.reverse() } else { order }
        }
    }
}

/// Natural order: runs of digits compare as numbers (`a2 < a10`).
fn natural_cmp(left: &str, right: &str) -> Ordering {
    let (mut left, mut right) = (left, right);
    loop {
        match (left.is_empty(), right.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let left_digits = left.starts_with(|c: char| c.is_ascii_digit());
        let right_digits = right.starts_with(|c: char| c.is_ascii_digit());
        let split = |text: &str, digits: bool| -> usize {
            text.find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(text.len())
        };
        let (left_chunk, left_rest) = left.split_at(split(left, left_digits));
        let (right_chunk, right_rest) = right.split_at(split(right, right_digits));
        let order = if left_digits && right_digits {
            let (a, b) = (
                left_chunk.trim_start_matches('0'),
                right_chunk.trim_start_matches('0'),
            );
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        } else {
            left_chunk.cmp(right_chunk)
        };
        if order != Ordering::Equal {
            return order;
        }
        (left, right) = (left_rest, right_rest);
    }
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

fn label_replace(evaluator: &mut Evaluator, args: &[Box<Expr>]) -> Result<Value, Error> {
    let destination = string_arg(&args[1])?;
    let replacement = string_arg(&args[2])?;
    let source = string_arg(&args[3])?;
    let pattern = string_arg(&args[4])?;
    let regex = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|_| {
        Error::Execution(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !valid_label_name(&destination, evaluator.text) {
        return Err(Error::Execution(format!(
            "invalid destination label name in label_replace(): {destination}"
        )));
    }
    let steps = vector_arg(evaluator, &args[0])?;
    relabel(steps, &destination, |labels| {
        let value = label_value(labels, &source);
        regex.captures(value).map(|captures| {
            let mut expanded = String::new();
            captures.expand(&replacement, &mut expanded);
            expanded
        })
    })
}

fn label_join(evaluator: &mut Evaluator, args: &[Box<Expr>]) -> Result<Value, Error> {
    let destination = string_arg(&args[1])?;
    let separator = string_arg(&args[2])?;
    let sources: Vec<String> = args[3..]
        .iter()
        .map(|arg| string_arg(arg))
        .collect::<Result<_, _>>()?;
    for source in &sources {
        if !valid_label_name(source, evaluator.text) {
            return Err(Error::Execution(format!(
                "invalid source label name in label_join(): {source}"
            )));
        }
    }
    if !valid_label_name(&destination, evaluator.text) {
        return Err(Error::Execution(format!(
            "invalid destination label name in label_join(): {destination}"
        )));
    }
    let steps = vector_arg(evaluator, &args[0])?;
    relabel(steps, &destination, |labels| {
        Some(
            sources
                .iter()
                .map(|source| label_value(labels, source))
                .collect::<Vec<_>>()
                .join(&separator),
        )
    })
}

/// Sets `destination` to `value_of(labels)` where it answers (an empty value removes
/// the label); two outputs with the same labels at one step are an error.
fn relabel(
    steps: Vec<Vec<Sample>>,
    destination: &str,
    value_of: impl Fn(&Labels) -> Option<String>,
) -> Result<Value, Error> {
    let mut out = Vec::with_capacity(steps.len());
    for samples in steps {
        let mut seen: HashSet<Labels> = HashSet::new();
        let mut relabelled = Vec::with_capacity(samples.len());
        for mut sample in samples {
            if let Some(value) = value_of(&sample.labels) {
                let mut labels: Vec<(String, String)> = sample
                    .labels
                    .iter()
                    .filter(|(name, _)| name != destination)
                    .cloned()
                    .collect();
                if !value.is_empty() {
                    labels.push((destination.to_string(), value));
                    labels.sort();
                }
                sample.labels = labels.into();
                if destination == NAME {
                    sample.drop_name = false;
                }
            }
            let key = final_labels(Arc::clone(&sample.labels), sample.drop_name);
            if !seen.insert(key) {
                return Err(duplicate_labelset());
            }
            relabelled.push(sample);
        }
        out.push(relabelled);
    }
    Ok(Value::Vector(out))
}

/// `absent()`'s labels: the selector's equality matchers, except `__name__` and any
/// label matched more than once.
fn absent_labels(selector: &promql_parser::parser::VectorSelector) -> Labels {
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut removed: HashSet<&str> = HashSet::new();
    for matcher in selector.matchers.matchers.iter() {
        if matcher.name == NAME {
            continue;
        }
        if matches!(matcher.op, promql_parser::label::MatchOp::Equal)
            && !seen.contains(matcher.name.as_str())
        {
            labels.retain(|(name, _)| name != &matcher.name);
            labels.push((matcher.name.clone(), matcher.value.clone()));
            seen.insert(&matcher.name);
        } else {
            removed.insert(&matcher.name);
        }
    }
    labels.retain(|(name, _)| !removed.contains(name.as_str()));
    labels.sort();
    labels.into()
}

fn histogram_quantile(evaluator: &mut Evaluator, args: &[Box<Expr>]) -> Result<Value, Error> {
    let quantiles = scalar_arg(evaluator, &args[0])?;
    let steps = vector_arg(evaluator, &args[1])?;
    let mut out = Vec::with_capacity(steps.len());
    for (i, samples) in steps.into_iter().enumerate() {
        let q = quantiles[i];
        if q.is_nan() || !(0.0..=1.0).contains(&q) {
            let position = evaluator.position_of("histogram_quantile(");
            evaluator.annotations.warn(quantile_warning(q, &position));
        }
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
        for sample in samples {
            let le = label_value(&sample.labels, "le");
            let Some(bound) = parse_go_float(le) else {
                let position = evaluator.position_of("histogram_quantile(");
                evaluator.annotations.warn(format!(
                    "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {:?} ({position})",
                    label_value(&sample.labels, NAME)
                ));
                continue;
            };
            let labels: Labels = sample
                .labels
                .iter()
                .filter(|(name, _)| name != "le")
                .cloned()
                .collect::<Vec<_>>()
                .into();
            let slot = *index.entry(Arc::clone(&labels)).or_insert_with(|| {
                groups.push((labels, Vec::new()));
                groups.len() - 1
            });
            groups[slot].1.push((bound, sample.value));
        }
        let mut results = Vec::with_capacity(groups.len());
        for (labels, buckets) in groups {
            let (value, forced) = bucket_quantile(q, buckets);
            if forced {
                let position = evaluator.position_of("histogram_quantile(");
                evaluator.annotations.info(format!(
                    "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?} ({position})",
                    label_value(&labels, NAME)
                ));
            }
            let mut sample = Sample {
                labels,
                value,
                drop_name: false,
            };
            evaluator.drop_name(&mut sample);
            results.push(sample);
        }
        out.push(results);
    }
    Ok(Value::Vector(out))
}

/// Go's `strconv.ParseFloat` as far as bucket bounds need it (`+Inf`, `1e3`, `0.5`).
fn parse_go_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Prometheus' `BucketQuantile` over classic buckets `(upper bound, cumulative count)`;
/// also says whether the counts had to be made monotonic.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|left, right| left.0.partial_cmp(&right.0).unwrap_or(Ordering::Equal));
    if buckets
        .last()
        .is_none_or(|(bound, _)| *bound != f64::INFINITY)
    {
        return (f64::NAN, false);
    }
    // Buckets with the same bound are merged.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (bound, count) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => merged.push((bound, count)),
        }
    }
    let mut buckets = merged;
    // Counts must not decrease; tiny float noise is ignored, real decreases are fixed.
    let mut forced = false;
    let mut previous = f64::NEG_INFINITY;
    for bucket in &mut buckets {
        if bucket.1 < previous {
            if (previous - bucket.1).abs() > 1e-12 * previous.abs() {
                forced = true;
            }
            bucket.1 = previous;
        }
        previous = bucket.1;
    }
    if buckets.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let index = buckets[..buckets.len() - 1].partition_point(|(_, count)| *count < rank);
    if index == buckets.len() - 1 {
        return (buckets[buckets.len() - 2].0, forced);
    }
    if index == 0 && buckets[0].0 <= 0.0 {
        return (buckets[0].0, forced);
    }
    let (mut start, end, mut count) = (0.0, buckets[index].0, buckets[index].1);
    if index > 0 {
        start = buckets[index - 1].0;
        count -= buckets[index - 1].1;
        rank -= buckets[index - 1].1;
    }
    (start + (end - start) * (rank / count), forced)
}

pub(super) fn quantile_warning(q: f64, position: &str) -> String {
    format!(
        "PromQL warning: quantile value should be between 0 and 1, got {} ({position})",
        super::format_value(q)
    )
}

/// What a range-vector function sees at one step.
struct Window<'w> {
    points: &'w [(i64, f64)],
    start: i64,
    end: i64,
    range: i64,
    step_time: i64,
    params: &'w [f64],
}

fn over_time(evaluator: &mut Evaluator, name: &str, args: &[Box<Expr>]) -> Result<Value, Error> {
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
            if i % super::eval::DEADLINE_EVERY == super::eval::DEADLINE_EVERY - 1 {
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

/// Neumaier's compensated summation step, as Prometheus' `kahansum.Inc`.
pub(super) fn kahan_inc(increment: f64, sum: f64, compensation: f64) -> (f64, f64) {
    let total = sum + increment;
    let compensation = if total.is_infinite() {
        0.0
    } else if sum.abs() >= increment.abs() {
        compensation + ((sum - total) + increment)
    } else {
        compensation + ((increment - total) + sum)
    };
    (total, compensation)
}

pub(super) fn kahan_sum(values: &[f64]) -> f64 {
    let (mut sum, mut compensation) = (0.0, 0.0);
    for &value in values {
        (sum, compensation) = kahan_inc(value, sum, compensation);
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + compensation
    }
}

/// The mean as Prometheus computes it: a compensated sum while it does not overflow,
/// then an incremental mean.
pub(super) fn average(values: &[f64]) -> f64 {
    let Some(&first) = values.first() else {
        return f64::NAN;
    };
    let (mut sum, mut count) = (first, 1.0);
    let (mut mean, mut compensation) = (0.0, 0.0);
    let mut incremental = false;
    for (i, &value) in values.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (new_sum, new_compensation) = kahan_inc(value, sum, compensation);
            if !new_sum.is_infinite() {
                (sum, compensation) = (new_sum, new_compensation);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            compensation /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, compensation) = kahan_inc(value / count, q * mean, q * compensation);
    }
    if incremental {
        mean + compensation
    } else {
        sum / count + compensation / count
    }
}

/// Population variance with Welford's method and compensated sums.
pub(super) fn variance(values: &[f64]) -> f64 {
    let (mut count, mut mean, mut mean_compensation, mut aux, mut aux_compensation) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    for &value in values {
        count += 1.0;
        let delta = value - (mean + mean_compensation);
        (mean, mean_compensation) = kahan_inc(delta / count, mean, mean_compensation);
        (aux, aux_compensation) = kahan_inc(
            delta * (value - (mean + mean_compensation)),
            aux,
            aux_compensation,
        );
    }
    (aux + aux_compensation) / count
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks; NaN sorts
/// first; `q` outside `[0, 1]` gives ∓Inf.
pub(super) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|left, right| match (left.is_nan(), right.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => left.partial_cmp(right).unwrap_or(Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantile_interpolates_inside_the_bucket() {
        let buckets = vec![(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)];
        let (value, forced) = bucket_quantile(0.5, buckets);
        assert!(!forced);
        // rank 20 lies halfway through the (0.1, 0.5] bucket
        assert!((value - 0.3).abs() < 1e-12, "{value}");
        let (top, _) = bucket_quantile(0.99, vec![(1.0, 1.0), (f64::INFINITY, 100.0)]);
        assert_eq!(
            top, 1.0,
            "the +Inf bucket answers with the highest finite bound"
        );
        assert!(
            bucket_quantile(0.5, vec![(1.0, 1.0)]).0.is_nan(),
            "no +Inf bucket"
        );
        assert!(
            bucket_quantile(0.5, vec![(1.0, 5.0), (f64::INFINITY, 4.0)]).1,
            "decreasing counts are fixed and reported"
        );
    }

    #[test]
    fn natural_order_compares_digit_runs_as_numbers() {
        assert_eq!(natural_cmp("a2", "a10"), Ordering::Less);
        assert_eq!(natural_cmp("b", "a10"), Ordering::Greater);
        assert_eq!(natural_cmp("a010", "a10"), Ordering::Equal);
    }

    #[test]
    fn compensated_sums_keep_small_terms() {
        assert_eq!(kahan_sum(&[1e100, 1.0, -1e100]), 1.0);
        assert_eq!(
            average(&[f64::MAX, f64::MAX]),
            f64::MAX,
            "the mean survives an overflowing sum"
        );
        assert_eq!(quantile(0.5, vec![1.0, 3.0, 2.0]), 2.0);
    }
}
