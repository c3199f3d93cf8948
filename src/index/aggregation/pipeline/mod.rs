//! Parent pipeline aggregations, computed over the finished buckets of their parent as
//! Elasticsearch computes them: `derivative` (with `unit`: `normalized_value`),
//! `cumulative_sum`, `moving_fn` (the `MovingFunctions` scripts of [`moving_function`]),
//! `serial_diff` (`lag`) and `bucket_script` (the arithmetic scripts of [`script`]).
//! Each reads its input through a [`buckets_path`] under a `gap_policy` and adds
//! `{"value": …}` to the buckets it has a value for (`null` for NaN or infinity), as
//! Elasticsearch's `*PipelineAggregator.reduce` does — the first bucket of a derivative
//! gets none.
//!
//! [`take_level`] takes the pipelines out of a level of `aggs` before tantivy sees it
//! (tantivy has none), checks their paths and parent, and orders them so that one
//! reading another runs after it; [`apply_all`] runs them over the parent's buckets.
//! `moving_avg` is not here: Elasticsearch 8 removed it.

pub mod buckets_path;
pub mod moving_function;
pub mod script;

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Map, Value, json};

use crate::index::query::QueryError;
use buckets_path::{BucketsPath, GapPolicy};

/// The pipeline aggregations computed here.
pub const KINDS: &[&str] = &[
    "derivative",
    "cumulative_sum",
    "moving_fn",
    "serial_diff",
    "bucket_script",
];

/// The widest `moving_fn` window (each bucket reads its window: buckets × window work).
const MAX_WINDOW: u64 = 10_000;
/// The most variables of one `bucket_script`.
const MAX_VARIABLES: usize = 64;

#[derive(Debug, Clone)]
pub struct Pipeline {
    name: String,
    kind: Kind,
    /// The input paths by variable name (`_value` for the single-path kinds).
    paths: Vec<(String, BucketsPath)>,
    gap_policy: GapPolicy,
}

#[derive(Debug, Clone)]
enum Kind {
    Derivative {
        unit_millis: Option<f64>,
    },
    CumulativeSum,
    MovingFn {
        window: i64,
        shift: i64,
        call: moving_function::Call,
    },
    SerialDiff {
        lag: usize,
    },
    BucketScript {
        expression: script::Expression,
        params: BTreeMap<String, f64>,
    },
}

/// Takes the pipeline aggregations out of `aggs` (one level of named aggregations whose
/// parent aggregation is of kind `parent`, none at the top) and returns them in the order
/// they must run.
pub fn take_level(
    aggs: &mut Value,
    parent: Option<&str>,
    at: &str,
) -> Result<Vec<Pipeline>, QueryError> {
    let Value::Object(level) = aggs else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = level
        .iter()
        .filter(|(_, definition)| kind_of(definition).is_some())
        .map(|(name, _)| name.clone())
        .collect();
    let mut pipelines = Vec::with_capacity(names.len());
    for name in &names {
        let here = format!("{at}][{name}");
        let Some(Value::Object(definition)) = level.get(name) else {
            continue;
        };
        let kind = kind_of(&Value::Object(definition.clone())).expect("filtered on its kind");
        if let Some(other) = definition
            .keys()
            .find(|key| key.as_str() != kind && key.as_str() != "meta")
        {
            return Err(QueryError::parsing(format!(
                "[{here}]: a [{kind}] aggregation cannot have [{other}] (a pipeline aggregation has no sub-aggregations)"
            )));
        }
        check_parent(kind, name, parent)?;
        let pipeline = parse(name, kind, &definition[kind], &format!("{here}][{kind}"))?;
        for (_, path) in &pipeline.paths {
            let first = path.first_name();
            if first != "_count" && first != "_key" && !level.contains_key(first) {
                return Err(QueryError {
                    kind: "action_request_validation_exception",
                    reason: format!(
                        "Validation Failed: 1: No aggregation found for path [{}] (of [{name}]): name an aggregation beside it, `_count` or `_key`;",
                        path.text
                    ),
                });
            }
        }
        pipelines.push(pipeline);
    }
    for name in &names {
        level.remove(name);
    }
    order(pipelines)
}

/// The pipeline kind a definition holds, if it is one.
fn kind_of(definition: &Value) -> Option<&'static str> {
    let definition = definition.as_object()?;
    KINDS
        .iter()
        .copied()
        .find(|kind| definition.contains_key(*kind))
}

fn check_parent(kind: &str, name: &str, parent: Option<&str>) -> Result<(), QueryError> {
    let needs_histogram = kind != "bucket_script";
    let reason = match parent {
        None if !needs_histogram => format!(
            "Validation Failed: 1: bucket_script aggregation [{name}] must be declared inside of another aggregation;"
        ),
        None => format!(
            "Validation Failed: 1: {kind} aggregation [{name}] must have a histogram, date_histogram or auto_date_histogram as parent but doesn't have a parent;"
        ),
        Some(parent) if needs_histogram && parent != "histogram" && parent != "date_histogram" => {
            format!(
                "Validation Failed: 1: {kind} aggregation [{name}] must have a histogram, date_histogram or auto_date_histogram as parent;"
            )
        }
        Some(_) => return Ok(()),
    };
    Err(QueryError {
        kind: "action_request_validation_exception",
        reason,
    })
}

/// Orders `pipelines` so that each runs after the pipelines its paths read.
fn order(mut pending: Vec<Pipeline>) -> Result<Vec<Pipeline>, QueryError> {
    let mut ordered: Vec<Pipeline> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending.iter().position(|pipeline| {
            pipeline.paths.iter().all(|(_, path)| {
                let first = path.first_name();
                !pending.iter().any(|other| other.name == first)
            })
        });
        match ready {
            Some(index) => ordered.push(pending.remove(index)),
            None => {
                return Err(QueryError::illegal_argument(format!(
                    "Cyclical dependency found with pipeline aggregator [{}]",
                    pending[0].name
                )));
            }
        }
    }
    Ok(ordered)
}

fn parse(name: &str, kind: &str, body: &Value, at: &str) -> Result<Pipeline, QueryError> {
    let Value::Object(body) = body else {
        return Err(QueryError::parsing(format!(
            "[{at}]: expected an object such as {{\"buckets_path\": \"1\"}}, got {body}"
        )));
    };
    let allowed: &[&str] = match kind {
        "derivative" => &["buckets_path", "gap_policy", "format", "unit"],
        "cumulative_sum" => &["buckets_path", "format"],
        "moving_fn" => &[
            "buckets_path",
            "gap_policy",
            "format",
            "window",
            "shift",
            "script",
        ],
        "serial_diff" => &["buckets_path", "gap_policy", "format", "lag"],
        _ => &["buckets_path", "gap_policy", "format", "script"],
    };
    if let Some(unknown) = body.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(QueryError::parsing(format!(
            "[{at}]: unknown field [{unknown}]; a [{kind}] takes {}",
            allowed.join(", ")
        )));
    }
    let gap_policy = match body.get("gap_policy") {
        Some(value) => GapPolicy::parse(value, at)?,
        None => GapPolicy::Skip,
    };
    let paths = match (kind, body.get("buckets_path")) {
        ("bucket_script", Some(Value::Object(paths))) => {
            if paths.len() > MAX_VARIABLES {
                return Err(QueryError::parsing(format!(
                    "[{at}][buckets_path]: at most {MAX_VARIABLES} variables"
                )));
            }
            paths
                .iter()
                .map(|(variable, path)| match path {
                    Value::String(path) => Ok((variable.clone(), BucketsPath::parse(path, at)?)),
                    other => Err(QueryError::parsing(format!(
                        "[{at}][buckets_path][{variable}]: expected a path such as \"1\" or \"_count\", got {other}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        ("bucket_script", Some(Value::String(path))) => {
            vec![("_value0".to_string(), BucketsPath::parse(path, at)?)]
        }
        (_, Some(Value::String(path))) => {
            vec![("_value".to_string(), BucketsPath::parse(path, at)?)]
        }
        (_, Some(Value::Array(paths))) if paths.len() == 1 && paths[0].is_string() => vec![(
            "_value".to_string(),
            BucketsPath::parse(paths[0].as_str().unwrap_or_default(), at)?,
        )],
        (_, other) => {
            return Err(QueryError::parsing(format!(
                "[{at}]: [buckets_path] must be {}, got {}",
                if kind == "bucket_script" {
                    "an object of variables and paths such as {\"var1\": \"1\", \"var2\": \"_count\"}"
                } else {
                    "one path such as \"1\" or \"_count\""
                },
                other.map_or_else(|| "none".to_string(), Value::to_string)
            )));
        }
    };
    if paths.is_empty() {
        return Err(QueryError::parsing(format!(
            "[{at}][buckets_path]: name at least one variable, such as {{\"var1\": \"1\"}}"
        )));
    }
    let kind = match kind {
        "derivative" => Kind::Derivative {
            unit_millis: body
                .get("unit")
                .map(|unit| unit_millis(unit).ok_or_else(|| QueryError::parsing(format!(
                    "[{at}][unit]: `{}` is not a unit; use second, minute, hour, day, week, month, quarter, year or a time such as \"10s\"",
                    unit.as_str().map_or_else(|| unit.to_string(), str::to_string)
                ))))
                .transpose()?,
        },
        "cumulative_sum" => Kind::CumulativeSum,
        "moving_fn" => {
            let window = integer(body.get("window"), "window", at)?.ok_or_else(|| {
                QueryError::parsing(format!("[{at}]: [window] is required, such as 5"))
            })?;
            if window <= 0 || window as u64 > MAX_WINDOW {
                return Err(QueryError::illegal_argument(format!(
                    "[{at}][window] must be a positive integer of at most {MAX_WINDOW}: [{window}]"
                )));
            }
            let shift = integer(body.get("shift"), "shift", at)?.unwrap_or(0);
            let (source, params) = script_of(body.get("script"), at)?;
            let call = moving_function::parse(&source, &params).map_err(|why| {
                QueryError::illegal_argument(format!(
                    "[{at}][script]: the script `{source}` is not supported: {why}; Lookout runs the `MovingFunctions` calls Grafana offers, such as `MovingFunctions.unweightedAvg(values)`"
                ))
            })?;
            Kind::MovingFn {
                window,
                shift: shift.clamp(-(MAX_WINDOW as i64), MAX_WINDOW as i64),
                call,
            }
        }
        "serial_diff" => {
            let lag = integer(body.get("lag"), "lag", at)?.unwrap_or(1);
            if lag <= 0 || lag > i64::from(super::MAX_BUCKETS) {
                return Err(QueryError::illegal_argument(format!(
                    "[{at}][lag] must be a positive integer: [{lag}]"
                )));
            }
            Kind::SerialDiff { lag: lag as usize }
        }
        _ => {
            let (source, params) = script_of(body.get("script"), at)?;
            let expression = script::parse(&source).map_err(|why| {
                QueryError::illegal_argument(format!(
                    "[{at}][script]: the script `{source}` is not supported: {why}; Lookout runs arithmetic such as `params.var1 * 100 / params.var2`"
                ))
            })?;
            for variable in expression.variables() {
                if !params.contains_key(variable)
                    && !paths.iter().any(|(name, _)| name == variable)
                {
                    return Err(QueryError::illegal_argument(format!(
                        "[{at}][script]: `params.{variable}` is neither a [buckets_path] variable nor a script param"
                    )));
                }
            }
            Kind::BucketScript { expression, params }
        }
    };
    Ok(Pipeline {
        name: name.to_string(),
        kind,
        paths,
        gap_policy,
    })
}

/// An integer setting, which Elasticsearch also reads from a numeric string (`"5"`).
fn integer(value: Option<&Value>, key: &str, at: &str) -> Result<Option<i64>, QueryError> {
    let Some(value) = value else { return Ok(None) };
    let number = value
        .as_i64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|number| number.fract() == 0.0 && number.abs() < 1e15)
                .map(|number| number as i64)
        })
        .or_else(|| value.as_str().and_then(|text| text.trim().parse().ok()));
    number.map(Some).ok_or_else(|| {
        QueryError::parsing(format!("[{at}][{key}]: expected an integer, got {value}"))
    })
}

/// A script as a string or `{"source"|"inline": …, "params": {…}}`, with its numeric
/// params.
fn script_of(
    value: Option<&Value>,
    at: &str,
) -> Result<(String, BTreeMap<String, f64>), QueryError> {
    match value {
        Some(Value::String(source)) => Ok((source.clone(), BTreeMap::new())),
        Some(Value::Object(script)) => {
            let source = script
                .get("source")
                .or_else(|| script.get("inline"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    QueryError::parsing(format!("[{at}][script]: [source] is required"))
                })?;
            if let Some(lang) = script.get("lang").and_then(Value::as_str)
                && lang != "painless"
            {
                return Err(QueryError::illegal_argument(format!(
                    "[{at}][script]: script lang [{lang}] is not supported; write it as painless"
                )));
            }
            let mut params = BTreeMap::new();
            if let Some(Value::Object(given)) = script.get("params") {
                for (name, value) in given {
                    if let Some(number) = value.as_f64() {
                        params.insert(name.clone(), number);
                    }
                }
            }
            Ok((source.to_string(), params))
        }
        _ => Err(QueryError::parsing(format!(
            "[{at}]: [script] is required, such as \"params.var1 / params.var2\""
        ))),
    }
}

/// Milliseconds of a derivative's `unit`, as Elasticsearch reads it (a calendar unit's
/// `ChronoUnit` duration, or a time value).
pub fn unit_millis(unit: &Value) -> Option<f64> {
    let text = unit.as_str()?;
    let seconds = match text {
        "year" | "1y" => 31_556_952.0,
        "quarter" | "1q" => 7_889_238.0,
        "month" | "1M" => 2_629_746.0,
        "week" | "1w" => 604_800.0,
        "day" | "1d" => 86_400.0,
        "hour" | "1h" => 3_600.0,
        "minute" | "1m" => 60.0,
        "second" | "1s" => 1.0,
        _ => {
            let digits = text.find(|c: char| !c.is_ascii_digit())?;
            let amount: f64 = text[..digits].parse().ok()?;
            let per_unit = match &text[digits..] {
                "nanos" => 1e-9,
                "micros" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3_600.0,
                "d" => 86_400.0,
                _ => return None,
            };
            amount * per_unit
        }
    };
    Some(seconds * 1000.0).filter(|millis| *millis > 0.0)
}

/// `{"value": v}`, `null` when `v` is NaN or infinite, as `InternalSimpleValue` prints.
fn simple_value(value: f64) -> Value {
    json!({"value": finite(value)})
}

fn finite(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        Value::Null
    }
}

/// Runs `pipelines` (in order) over the buckets of their parent.
pub fn apply_all(
    pipelines: &[Pipeline],
    buckets: &mut [&mut Map<String, Value>],
) -> Result<(), String> {
    for pipeline in pipelines {
        pipeline
            .apply(buckets)
            .map_err(|why| format!("pipeline aggregation [{}]: {why}", pipeline.name))?;
    }
    Ok(())
}

impl Pipeline {
    fn apply(&self, buckets: &mut [&mut Map<String, Value>]) -> Result<(), String> {
        let name = self.name.clone();
        let path = &self.paths[0].1;
        match &self.kind {
            Kind::Derivative { unit_millis } => {
                let mut last: Option<(f64, f64)> = None;
                for bucket in buckets.iter_mut() {
                    let key = bucket
                        .get("key")
                        .and_then(Value::as_f64)
                        .unwrap_or(f64::NAN);
                    let value = path.value(bucket, self.gap_policy)?;
                    if let Some((last_key, last_value)) = last {
                        let gradient = value - last_value;
                        let mut result = simple_value(gradient);
                        if let Some(unit) = unit_millis {
                            let x_diff = (key - last_key) / unit;
                            if x_diff > 0.0 {
                                result["normalized_value"] = finite(gradient / x_diff);
                            }
                        }
                        bucket.insert(name.clone(), result);
                    }
                    last = Some((key, value));
                }
            }
            Kind::CumulativeSum => {
                let mut sum = 0.0;
                for bucket in buckets.iter_mut() {
                    let value = path.value(bucket, GapPolicy::InsertZeros)?;
                    if value.is_finite() {
                        sum += value;
                    }
                    bucket.insert(name.clone(), simple_value(sum));
                }
            }
            Kind::SerialDiff { lag } => {
                let mut window: VecDeque<f64> = VecDeque::with_capacity(*lag);
                for (counter, bucket) in buckets.iter_mut().enumerate() {
                    let value = path.value(bucket, self.gap_policy)?;
                    let lagged = if counter < *lag {
                        f64::NAN
                    } else {
                        window.front().copied().unwrap_or(f64::NAN)
                    };
                    if !value.is_nan() && !lagged.is_nan() {
                        bucket.insert(name.clone(), simple_value(value - lagged));
                    }
                    if window.len() == *lag {
                        window.pop_front();
                    }
                    window.push_back(value);
                }
            }
            Kind::MovingFn {
                window,
                shift,
                call,
            } => {
                let mut resolved = Vec::with_capacity(buckets.len());
                for bucket in buckets.iter() {
                    resolved.push(path.value(bucket, self.gap_policy)?);
                }
                let values: Vec<f64> = resolved
                    .iter()
                    .copied()
                    .filter(|value| !value.is_nan())
                    .collect();
                let clamp = |index: i64| index.clamp(0, values.len() as i64) as usize;
                let mut index = 0i64;
                for (bucket, value) in buckets.iter_mut().zip(&resolved) {
                    if value.is_nan() {
                        continue;
                    }
                    let from = clamp(index - window + shift);
                    let to = clamp(index + shift);
                    let result = call.evaluate(&values[from..to.max(from)])?;
                    bucket.insert(name.clone(), simple_value(result));
                    index += 1;
                }
            }
            Kind::BucketScript { expression, params } => {
                'buckets: for bucket in buckets.iter_mut() {
                    let mut variables = params.clone();
                    for (variable, path) in &self.paths {
                        let value = path.value(bucket, self.gap_policy)?;
                        if self.gap_policy.is_skippable() && value.is_nan() {
                            continue 'buckets;
                        }
                        variables.insert(variable.clone(), value);
                    }
                    let result = expression.evaluate(&variables)?;
                    bucket.insert(name.clone(), simple_value(result));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
