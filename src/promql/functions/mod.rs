//! PromQL functions over float samples, following Prometheus 3's `functions.go`: which
//! functions are supported, the dispatch of a call to its family, and the argument
//! helpers. The families: [`math`] (element-wise), [`time`] (`timestamp` and the date
//! functions), [`sort`], [`label`] (`label_replace`, `label_join`, `absent`'s labels),
//! [`histogram`] (classic `histogram_quantile`), [`over_time`] (extrapolated
//! `rate`/`increase`/`delta` and the `*_over_time` family over left-open windows).

mod histogram;
mod label;
mod math;
mod over_time;
mod sort;
mod time;

use std::sync::Arc;

use promql_parser::parser::{Call, Expr};

use super::Error;
use super::evaluator::Evaluator;
use super::value::{RangeInput, Sample, Value, scalar_steps, window};
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
        "timestamp" => time::timestamp(evaluator, &args[0]),
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" => time::date(evaluator, name, args.first().map(|arg| arg.as_ref())),
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
            sort::sort(evaluator, name, args)
        }
        "label_replace" => label::label_replace(evaluator, args),
        "label_join" => label::label_join(evaluator, args),
        "absent" => {
            let steps = vector_arg(evaluator, &args[0])?;
            let labels = match args[0].as_ref() {
                Expr::VectorSelector(selector) => label::absent_labels(selector),
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
                .map_or_else(|| Labels::from(Vec::new()), label::absent_labels);
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
        "histogram_quantile" => histogram::histogram_quantile(evaluator, args),
        _ => {
            if let Some(f) = math::simple(name) {
                let steps = vector_arg(evaluator, &args[0])?;
                return Ok(Value::Vector(map_steps(evaluator, steps, |_, value| {
                    f(value)
                })));
            }
            over_time::over_time(evaluator, name, args)
        }
    }
}

pub(super) fn vector_arg(evaluator: &mut Evaluator, arg: &Expr) -> Result<Vec<Vec<Sample>>, Error> {
    match evaluator.evaluate(arg)? {
        Value::Vector(steps) => Ok(steps),
        _ => Err(Error::BadData("expected an instant vector argument".into())),
    }
}

pub(super) fn scalar_arg(evaluator: &mut Evaluator, arg: &Expr) -> Result<Vec<f64>, Error> {
    match evaluator.evaluate(arg)? {
        Value::Scalar(values) => Ok(values),
        _ => Err(Error::BadData("expected a scalar argument".into())),
    }
}

pub(super) fn string_arg(arg: &Expr) -> Result<String, Error> {
    let mut arg = arg;
    while let Expr::Paren(paren) = arg {
        arg = &paren.expr;
    }
    match arg {
        Expr::StringLiteral(string) => Ok(string.val.clone()),
        _ => Err(Error::BadData("expected a string literal argument".into())),
    }
}

pub(super) fn range_arg(evaluator: &mut Evaluator, arg: &Expr) -> Result<RangeInput, Error> {
    match evaluator.evaluate(arg)? {
        Value::Range(input) => Ok(input),
        _ => Err(Error::BadData("expected a range vector argument".into())),
    }
}

/// Applies `f(step, value)` to every sample, marking `__name__` for removal.
pub(super) fn map_steps(
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
