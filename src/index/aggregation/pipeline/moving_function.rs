//! The scripts of `moving_fn` that Grafana's query editor offers: one call of
//! Elasticsearch's `MovingFunctions` over the window's `values` — `max`, `min`, `sum`,
//! `unweightedAvg`, `linearWeightedAvg`, `stdDev(values, avg)`, `ewma(values, alpha)`,
//! `holt(values, alpha, beta)`, `holtWinters(values, alpha, beta, gamma, period,
//! multiplicative)` — whose numeric arguments are numbers, `params.NAME` of the script's
//! params, or another such call (`MovingFunctions.stdDev(values,
//! MovingFunctions.unweightedAvg(values))`). The functions follow Elasticsearch's
//! `MovingFunctions.java` line by line, NaN handling included.
//!
//! Any other script is refused with an error naming it: Lookout runs no Painless.

use std::collections::BTreeMap;

use super::script::MAX_SCRIPT_BYTES;

/// The deepest nesting of calls accepted.
const MAX_CALL_DEPTH: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    function: Function,
    arguments: Vec<Argument>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Max,
    Min,
    Sum,
    UnweightedAvg,
    LinearWeightedAvg,
    StdDev,
    Ewma,
    Holt,
    HoltWinters,
}

#[derive(Debug, Clone, PartialEq)]
enum Argument {
    Values,
    Number(f64),
    Bool(bool),
    Call(Call),
}

impl Function {
    fn named(name: &str) -> Option<Function> {
        Some(match name {
            "max" => Function::Max,
            "min" => Function::Min,
            "sum" => Function::Sum,
            "unweightedAvg" => Function::UnweightedAvg,
            "linearWeightedAvg" => Function::LinearWeightedAvg,
            "stdDev" => Function::StdDev,
            "ewma" => Function::Ewma,
            "holt" => Function::Holt,
            "holtWinters" => Function::HoltWinters,
            _ => return None,
        })
    }

    /// The arguments after `values`, as a signature for messages.
    fn signature(self) -> &'static str {
        match self {
            Function::Max => "max(values)",
            Function::Min => "min(values)",
            Function::Sum => "sum(values)",
            Function::UnweightedAvg => "unweightedAvg(values)",
            Function::LinearWeightedAvg => "linearWeightedAvg(values)",
            Function::StdDev => "stdDev(values, avg)",
            Function::Ewma => "ewma(values, alpha)",
            Function::Holt => "holt(values, alpha, beta)",
            Function::HoltWinters => {
                "holtWinters(values, alpha, beta, gamma, period, multiplicative)"
            }
        }
    }

    fn arity(self) -> usize {
        match self {
            Function::StdDev | Function::Ewma => 2,
            Function::Holt => 3,
            Function::HoltWinters => 6,
            _ => 1,
        }
    }
}

/// Parses `source` with the script's numeric `params`.
pub fn parse(source: &str, params: &BTreeMap<String, f64>) -> Result<Call, String> {
    if source.len() > MAX_SCRIPT_BYTES {
        return Err(format!("a script is at most {MAX_SCRIPT_BYTES} bytes"));
    }
    let mut body = source.trim();
    body = body.strip_suffix(';').unwrap_or(body).trim_end();
    if let Some(rest) = body.strip_prefix("return")
        && rest.starts_with(char::is_whitespace)
    {
        body = rest.trim_start();
    }
    let mut reader = Reader {
        text: body,
        position: 0,
        params,
    };
    let call = reader.call(0)?;
    reader.skip_spaces();
    if reader.position != body.len() {
        return Err(format!(
            "unexpected `{}` after the call",
            &body[reader.position..].chars().take(20).collect::<String>()
        ));
    }
    Ok(call)
}

struct Reader<'a> {
    text: &'a str,
    position: usize,
    params: &'a BTreeMap<String, f64>,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.position..]
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.position += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, expected: &str) -> bool {
        self.skip_spaces();
        if self.rest().starts_with(expected) {
            self.position += expected.len();
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> &'a str {
        self.skip_spaces();
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        self.position += end;
        &rest[..end]
    }

    fn call(&mut self, depth: usize) -> Result<Call, String> {
        if depth >= MAX_CALL_DEPTH {
            return Err(format!("calls nested deeper than {MAX_CALL_DEPTH}"));
        }
        let word = self.word().to_string();
        let name = word.strip_prefix("MovingFunctions.").ok_or_else(|| {
            format!(
                "`{word}` is not supported: the script is one `MovingFunctions` call such as `MovingFunctions.unweightedAvg(values)`"
            )
        })?;
        let function = Function::named(name).ok_or_else(|| {
            format!(
                "`MovingFunctions.{name}` is not one of max, min, sum, unweightedAvg, linearWeightedAvg, stdDev, ewma, holt, holtWinters"
            )
        })?;
        if !self.eat("(") {
            return Err(format!("`MovingFunctions.{name}` is called with `(`"));
        }
        let mut arguments = Vec::new();
        if !self.eat(")") {
            loop {
                arguments.push(self.argument(depth)?);
                if arguments.len() > 6 {
                    return Err(format!("too many arguments to `{}`", function.signature()));
                }
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    return Err(format!(
                        "expected `,` or `)` in `MovingFunctions.{name}(…)`"
                    ));
                }
            }
        }
        let call = Call {
            function,
            arguments,
        };
        call.check()?;
        Ok(call)
    }

    fn argument(&mut self, depth: usize) -> Result<Argument, String> {
        self.skip_spaces();
        if self.rest().starts_with("MovingFunctions.") {
            return self.call(depth + 1).map(Argument::Call);
        }
        let start = self.position;
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+')))
            .unwrap_or(rest.len());
        let token = &rest[..end];
        self.position = start + end;
        match token {
            "values" => Ok(Argument::Values),
            "true" => Ok(Argument::Bool(true)),
            "false" => Ok(Argument::Bool(false)),
            _ => {
                if let Some(name) = token.strip_prefix("params.") {
                    return self
                        .params
                        .get(name)
                        .map(|value| Argument::Number(*value))
                        .ok_or_else(|| {
                            format!("`params.{name}` is not a number of the script's `params`")
                        });
                }
                let digits = token.trim_end_matches(['d', 'D', 'f', 'F']);
                digits
                    .parse::<f64>()
                    .ok()
                    .filter(|_| !digits.is_empty() && !digits.starts_with(['i', 'I', 'n', 'N']))
                    .map(Argument::Number)
                    .ok_or_else(|| {
                        format!(
                            "`{}` is not an argument: use `values`, a number, `true`/`false`, `params.NAME` or a `MovingFunctions` call",
                            if token.is_empty() {
                                rest.chars().take(10).collect::<String>()
                            } else {
                                token.to_string()
                            }
                        )
                    })
            }
        }
    }
}

impl Call {
    fn check(&self) -> Result<(), String> {
        let function = self.function;
        let wrong = || {
            format!(
                "`MovingFunctions.{}` takes its arguments in this order",
                function.signature()
            )
        };
        if self.arguments.len() != function.arity() || self.arguments[0] != Argument::Values {
            return Err(wrong());
        }
        for (index, argument) in self.arguments.iter().enumerate().skip(1) {
            let is_flag = function == Function::HoltWinters && index == 5;
            match (argument, is_flag) {
                (Argument::Bool(_), true) => {}
                (Argument::Number(_) | Argument::Call(_), false) => {}
                _ => return Err(wrong()),
            }
        }
        Ok(())
    }

    /// The function's value over one window.
    pub fn evaluate(&self, values: &[f64]) -> Result<f64, String> {
        let number = |index: usize| -> Result<f64, String> {
            match &self.arguments[index] {
                Argument::Number(value) => Ok(*value),
                Argument::Call(call) => call.evaluate(values),
                other => Err(format!("{other:?} is not a number")),
            }
        };
        Ok(match self.function {
            // Java's `Math.max`/`min`: a NaN wins
            Function::Max => java_extreme(values, f64::max),
            Function::Min => java_extreme(values, f64::min),
            Function::Sum => values.iter().filter(|value| !value.is_nan()).sum(),
            Function::UnweightedAvg => unweighted_avg(values),
            Function::LinearWeightedAvg => linear_weighted_avg(values),
            Function::StdDev => std_dev(values, number(1)?),
            Function::Ewma => ewma(values, number(1)?),
            Function::Holt => holt(values, number(1)?, number(2)?),
            Function::HoltWinters => {
                let period = number(4)?;
                let multiplicative = self.arguments[5] == Argument::Bool(true);
                // Painless passes the period as an `int`
                holt_winters(
                    values,
                    number(1)?,
                    number(2)?,
                    number(3)?,
                    period as i64,
                    multiplicative,
                )?
            }
        })
    }
}

fn java_extreme(values: &[f64], pick: fn(f64, f64) -> f64) -> f64 {
    values
        .iter()
        .copied()
        .reduce(|left, right| {
            if left.is_nan() || right.is_nan() {
                f64::NAN
            } else {
                pick(left, right)
            }
        })
        .unwrap_or(f64::NAN)
}

fn unweighted_avg(values: &[f64]) -> f64 {
    let finite: Vec<f64> = values
        .iter()
        .copied()
        .filter(|value| !value.is_nan())
        .collect();
    if finite.is_empty() {
        f64::NAN
    } else {
        finite.iter().sum::<f64>() / finite.len() as f64
    }
}

fn std_dev(values: &[f64], avg: f64) -> f64 {
    if avg.is_nan() {
        return f64::NAN;
    }
    let finite: Vec<f64> = values
        .iter()
        .copied()
        .filter(|value| !value.is_nan())
        .collect();
    let squared: f64 = finite.iter().map(|value| (value - avg).powi(2)).sum();
    (squared / finite.len() as f64).sqrt()
}

fn linear_weighted_avg(values: &[f64]) -> f64 {
    let (mut avg, mut total_weight, mut current) = (0.0, 1.0, 1.0);
    for value in values.iter().filter(|value| !value.is_nan()) {
        avg += value * current;
        total_weight += current;
        current += 1.0;
    }
    if total_weight == 1.0 {
        f64::NAN
    } else {
        avg / total_weight
    }
}

fn ewma(values: &[f64], alpha: f64) -> f64 {
    let mut avg = f64::NAN;
    for value in values.iter().copied().filter(|value| !value.is_nan()) {
        avg = if avg.is_nan() {
            value
        } else {
            value * alpha + avg * (1.0 - alpha)
        };
    }
    avg
}

fn holt(values: &[f64], alpha: f64, beta: f64) -> f64 {
    let (mut smoothed, mut last_smoothed, mut last_trend) = (0.0, 0.0, 0.0);
    let mut counter = 0;
    for value in values.iter().copied().filter(|value| !value.is_nan()) {
        let trend;
        if counter == 0 {
            smoothed = value;
            trend = 0.0;
        } else {
            smoothed = alpha * value + (1.0 - alpha) * (last_smoothed + last_trend);
            trend = beta * (smoothed - last_smoothed) + (1.0 - beta) * last_trend;
        }
        counter += 1;
        last_smoothed = smoothed;
        last_trend = trend;
    }
    if counter == 0 { f64::NAN } else { smoothed }
}

fn holt_winters(
    values: &[f64],
    alpha: f64,
    beta: f64,
    gamma: f64,
    period: i64,
    multiplicative: bool,
) -> Result<f64, String> {
    if values.is_empty() {
        return Ok(f64::NAN);
    }
    if period <= 0 {
        return Err(format!(
            "the Holt-Winters period must be positive, got {period}"
        ));
    }
    let period = period as usize;
    if values.len() < period.saturating_mul(2) {
        return Err(format!(
            "Holt-Winters aggregation requires at least (2 * period == 2 * {period} == {}) data-points to function.  Only [{}] were provided.",
            2 * period,
            values.len()
        ));
    }
    let padding = if multiplicative { 0.000_000_000_1 } else { 0.0 };
    let mut padded = vec![0.0; values.len()];
    let mut counter = 0;
    for value in values.iter().filter(|value| !value.is_nan()) {
        padded[counter] = value + padding;
        counter += 1;
    }
    if counter == 0 {
        return Ok(f64::NAN);
    }
    let (mut smoothed, mut trend, mut last_trend) = (0.0, 0.0, 0.0);
    for index in 0..period {
        smoothed += padded[index];
        trend += (padded[index + period] - padded[index]) / period as f64;
    }
    smoothed /= period as f64;
    trend /= period as f64;
    let mut last_smoothed = smoothed;
    let mut seasonal = vec![0.0; values.len()];
    if smoothed != 0.0 {
        for (season, value) in seasonal.iter_mut().zip(&padded).take(period) {
            *season = value / smoothed;
        }
    }
    for index in period..padded.len() {
        smoothed = if multiplicative {
            alpha * (padded[index] / seasonal[index - period])
                + (1.0 - alpha) * (last_smoothed + last_trend)
        } else {
            alpha * (padded[index] - seasonal[index - period])
                + (1.0 - alpha) * (last_smoothed + last_trend)
        };
        trend = beta * (smoothed - last_smoothed) + (1.0 - beta) * last_trend;
        seasonal[index] = if multiplicative {
            gamma * (padded[index] / (last_smoothed + last_trend))
                + (1.0 - gamma) * seasonal[index - period]
        } else {
            gamma * (padded[index] - (last_smoothed - last_trend))
                + (1.0 - gamma) * seasonal[index - period]
        };
        last_smoothed = smoothed;
        last_trend = trend;
    }
    let index = values.len() - period;
    Ok(if multiplicative {
        (smoothed + trend) * seasonal[index]
    } else {
        smoothed + trend + seasonal[index]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(source: &str, values: &[f64]) -> Result<f64, String> {
        let params = BTreeMap::from([("alpha".to_string(), 0.5)]);
        parse(source, &params)?.evaluate(values)
    }

    #[test]
    fn each_function_computes_as_elasticsearch() {
        let values = [1.0, 2.0, f64::NAN, 4.0];
        assert_eq!(
            run("MovingFunctions.max(values)", &[1.0, 4.0, 2.0]),
            Ok(4.0)
        );
        assert_eq!(run("MovingFunctions.min(values)", &[3.0, 1.0]), Ok(1.0));
        assert!(
            run("MovingFunctions.max(values)", &values)
                .expect("NaN")
                .is_nan()
        );
        assert_eq!(run("MovingFunctions.sum(values)", &values), Ok(7.0));
        assert_eq!(
            run("MovingFunctions.unweightedAvg(values)", &values),
            Ok(7.0 / 3.0)
        );
        // weights 1, 2, 3 over a total weight of 1 + 1 + 2 + 3
        assert_eq!(
            run("MovingFunctions.linearWeightedAvg(values)", &values),
            Ok(17.0 / 7.0)
        );
        assert_eq!(
            run(
                "return MovingFunctions.ewma(values, params.alpha);",
                &values
            ),
            Ok(2.75)
        );
        let deviation = run(
            "MovingFunctions.stdDev(values, MovingFunctions.unweightedAvg(values))",
            &[2.0, 4.0],
        );
        assert_eq!(deviation, Ok(1.0));
        assert_eq!(run("MovingFunctions.holt(values, 1, 0)", &values), Ok(4.0));
        assert!(
            run("MovingFunctions.unweightedAvg(values)", &[])
                .expect("NaN")
                .is_nan()
        );
        assert_eq!(run("MovingFunctions.sum(values)", &[]), Ok(0.0));
        // a flat series stays flat under the multiplicative model (the additive one starts
        // from the same ratio seasonals as Elasticsearch's and drifts)
        let flat = [5.0; 8];
        let forecast = run(
            "MovingFunctions.holtWinters(values, 0.3, 0.1, 0.1, 2, true)",
            &flat,
        )
        .expect("enough values");
        assert!((forecast - 5.0).abs() < 1e-6, "{forecast}");
        let additive = run(
            "MovingFunctions.holtWinters(values, 0.3, 0.1, 0.1, 2, false)",
            &flat,
        )
        .expect("enough values");
        assert!(additive.is_finite(), "{additive}");
        let error = run(
            "MovingFunctions.holtWinters(values, 0.3, 0.1, 0.1, 5, true)",
            &flat,
        )
        .expect_err("too few values");
        assert!(
            error.contains("requires at least (2 * period == 2 * 5 == 10)"),
            "{error}"
        );
    }

    #[test]
    fn other_scripts_are_refused_naming_what_is_wrong() {
        for (source, says) in [
            ("values.stream().max()", "`values.stream` is not supported"),
            (
                "MovingFunctions.median(values)",
                "`MovingFunctions.median` is not one of",
            ),
            ("MovingFunctions.ewma(values)", "ewma(values, alpha)"),
            ("MovingFunctions.max(values) + 1", "unexpected `+ 1`"),
            ("MovingFunctions.ewma(values, params.beta)", "`params.beta`"),
            (
                "MovingFunctions.holtWinters(values, 1, 1, 1, 2, 3)",
                "holtWinters(values",
            ),
            ("MovingFunctions.ewma(values, x)", "`x` is not an argument"),
        ] {
            let error = run(source, &[1.0]).expect_err(source);
            assert!(error.contains(says), "{source}: {error}");
        }
        let deep = format!(
            "MovingFunctions.stdDev(values, {}values{})",
            "MovingFunctions.stdDev(values, ".repeat(5),
            ")".repeat(5)
        );
        assert!(
            run(&deep, &[1.0])
                .expect_err("deep")
                .contains("nested deeper")
        );
    }
}
