//! `label_replace`, `label_join`, and the labels `absent()` gives its answer.

use std::collections::HashSet;
use std::sync::Arc;

use promql_parser::parser::Expr;

use super::{string_arg, vector_arg};
use crate::promql::Error;
use crate::promql::evaluator::Evaluator;
use crate::promql::value::{
    NAME, Sample, Value, duplicate_labelset, final_labels, label_value, valid_label_name,
};
use crate::tsdb::head::Labels;

pub(super) fn label_replace(evaluator: &mut Evaluator, args: &[Box<Expr>]) -> Result<Value, Error> {
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

pub(super) fn label_join(evaluator: &mut Evaluator, args: &[Box<Expr>]) -> Result<Value, Error> {
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
pub(super) fn absent_labels(selector: &promql_parser::parser::VectorSelector) -> Labels {
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
