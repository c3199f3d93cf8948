//! Binary operators: arithmetic, comparisons (filtering or `bool`) and the set
//! operators `and`/`or`/`unless`, with Prometheus' vector matching (`on`, `ignoring`,
//! `group_left`, `group_right`) and its errors for ambiguous matches.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::Error;
use super::evaluator::Evaluator;
use super::value::{NAME, Sample, Value, format_labels};
use crate::tsdb::head::Labels;

impl Evaluator<'_> {
    pub(super) fn binary(&mut self, binary: &BinaryExpr) -> Result<Value, Error> {
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
