//! `timestamp()` and the date functions (`hour`, `day_of_week`, `days_in_month`, …),
//! in UTC.

use chrono::{Datelike, Timelike};
use promql_parser::parser::Expr;

use super::{map_steps, vector_arg};
use crate::promql::Error;
use crate::promql::evaluator::Evaluator;
use crate::promql::value::{Sample, Value};
use crate::tsdb::head::Labels;

pub(super) fn timestamp(evaluator: &mut Evaluator, arg: &Expr) -> Result<Value, Error> {
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

pub(super) fn date(
    evaluator: &mut Evaluator,
    name: &str,
    arg: Option<&Expr>,
) -> Result<Value, Error> {
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
