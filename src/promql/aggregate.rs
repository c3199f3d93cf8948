//! Aggregation operators, step by step: `sum`, `avg`, `count`, `min`, `max`, `group`,
//! `stddev`, `stdvar`, `quantile`, `topk`, `bottomk`, `count_values`, with `by` and
//! `without`.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::Error;
use super::evaluator::Evaluator;
use super::statistics::{average, kahan_sum, quantile, quantile_warning, variance};
use super::value::{NAME, Sample, Value, valid_label_name};
use crate::tsdb::head::Labels;

pub(super) fn aggregate(
    evaluator: &mut Evaluator,
    aggregate: &AggregateExpr,
) -> Result<Value, Error> {
    let op = aggregate.op.id();
    let param = match &aggregate.param {
        Some(param) => Some(evaluator.evaluate(param)?),
        None => None,
    };
    let steps = match evaluator.evaluate(&aggregate.expr)? {
        Value::Vector(steps) => steps,
        _ => return Err(Error::BadData("aggregations need an instant vector".into())),
    };
    let modifier = aggregate.modifier.as_ref();
    let mut grouper = Grouper::default();
    let mut out = Vec::with_capacity(steps.len());
    for (i, samples) in steps.into_iter().enumerate() {
        evaluator.check_deadline("aggregation")?;
        let scalar = match &param {
            Some(Value::Scalar(values)) => values.get(i).copied(),
            _ => None,
        };
        out.push(match op {
            T_TOPK | T_BOTTOMK => {
                let k = scalar.unwrap_or(f64::NAN);
                if k.is_nan() {
                    return Err(Error::Execution("Parameter value is NaN".into()));
                }
                if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&k) {
                    return Err(Error::Execution(format!(
                        "Scalar value {k} overflows int64"
                    )));
                }
                select_k(samples, modifier, &mut grouper, k as i64, op == T_TOPK)
            }
            T_COUNT_VALUES => {
                let Some(Value::String(label)) = &param else {
                    return Err(Error::BadData(
                        "count_values needs a string parameter".into(),
                    ));
                };
                if !valid_label_name(label, evaluator.text) {
                    return Err(Error::Execution(format!("invalid label name {label:?}")));
                }
                count_values(samples, modifier, label)
            }
            _ => {
                if op == T_QUANTILE {
                    let q = scalar.unwrap_or(f64::NAN);
                    if q.is_nan() || !(0.0..=1.0).contains(&q) {
                        let position = evaluator.position_of("quantile");
                        evaluator.annotations.warn(quantile_warning(q, &position));
                    }
                }
                statistic(op, samples, modifier, &mut grouper, scalar)?
            }
        });
    }
    Ok(Value::Vector(out))
}

/// The labels a sample contributes to its group: the `by` labels it has, or all but
/// the `without` labels and `__name__`.
fn group_labels(labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    match modifier {
        None => Labels::from(Vec::new()),
        Some(LabelModifier::Include(by)) => {
            if labels.iter().all(|(name, _)| by.labels.contains(name)) {
                return Arc::clone(labels);
            }
            labels
                .iter()
                .filter(|(name, _)| by.labels.contains(name))
                .cloned()
                .collect::<Vec<_>>()
                .into()
        }
        Some(LabelModifier::Exclude(without)) => labels
            .iter()
            .filter(|(name, _)| name != NAME && !without.labels.contains(name))
            .cloned()
            .collect::<Vec<_>>()
            .into(),
    }
}

/// Each series' group labels, computed once per aggregation and shared: the same
/// group always gets the same `Arc`, so steps group by pointer instead of hashing
/// label strings.
#[derive(Default)]
struct Grouper {
    by_series: HashMap<usize, Labels, foldhash::fast::RandomState>,
    canonical: HashMap<Labels, Labels, foldhash::fast::RandomState>,
}

impl Grouper {
    fn group(&mut self, labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
        let key = pointer(labels);
        if let Some(group) = self.by_series.get(&key) {
            return Arc::clone(group);
        }
        let group = group_labels(labels, modifier);
        let group = Arc::clone(self.canonical.entry(Arc::clone(&group)).or_insert(group));
        // the input keeps `labels` alive for the whole aggregation, so its address
        // cannot be reused by another label set meanwhile
        self.by_series.insert(key, Arc::clone(&group));
        group
    }
}

fn pointer(labels: &Labels) -> usize {
    Arc::as_ptr(labels) as *const () as usize
}

struct Group {
    labels: Labels,
    values: Vec<f64>,
    drop_name: bool,
}

fn groups(
    samples: Vec<Sample>,
    modifier: Option<&LabelModifier>,
    grouper: &mut Grouper,
) -> Vec<Group> {
    let mut index: HashMap<usize, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut groups: Vec<Group> = Vec::new();
    for sample in samples {
        let labels = grouper.group(&sample.labels, modifier);
        let slot = *index.entry(pointer(&labels)).or_insert_with(|| {
            groups.push(Group {
                labels,
                values: Vec::new(),
                drop_name: false,
            });
            groups.len() - 1
        });
        groups[slot].values.push(sample.value);
        groups[slot].drop_name |= sample.drop_name;
    }
    groups
}

fn statistic(
    op: u16,
    samples: Vec<Sample>,
    modifier: Option<&LabelModifier>,
    grouper: &mut Grouper,
    param: Option<f64>,
) -> Result<Vec<Sample>, Error> {
    Ok(groups(samples, modifier, grouper)
        .into_iter()
        .map(|group| {
            let values = &group.values;
            let value = match op {
                T_SUM => kahan_sum(values),
                T_AVG => average(values),
                T_COUNT => values.len() as f64,
                T_GROUP => 1.0,
                T_MIN => values.iter().copied().fold(f64::NAN, |min, value| {
                    if min > value || min.is_nan() {
                        value
                    } else {
                        min
                    }
                }),
                T_MAX => values.iter().copied().fold(f64::NAN, |max, value| {
                    if max < value || max.is_nan() {
                        value
                    } else {
                        max
                    }
                }),
                T_STDVAR => variance(values),
                T_STDDEV => variance(values).sqrt(),
                T_QUANTILE => quantile(param.unwrap_or(f64::NAN), values.clone()),
                _ => f64::NAN,
            };
            let drop_name = group.drop_name && group.labels.iter().any(|(name, _)| name == NAME);
            Sample {
                labels: group.labels,
                value,
                drop_name,
            }
        })
        .collect())
}

/// `topk`/`bottomk`: per group the `k` largest (smallest) samples, best first, NaN
/// last; the samples keep their own labels.
fn select_k(
    samples: Vec<Sample>,
    modifier: Option<&LabelModifier>,
    grouper: &mut Grouper,
    k: i64,
    top: bool,
) -> Vec<Sample> {
    if k < 1 {
        return Vec::new();
    }
    let mut index: HashMap<usize, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut groups: Vec<Vec<Sample>> = Vec::new();
    for sample in samples {
        let labels = grouper.group(&sample.labels, modifier);
        let slot = *index.entry(pointer(&labels)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[slot].push(sample);
    }
    let mut out = Vec::new();
    for mut members in groups {
        members.sort_by(
            |left, right| match (left.value.is_nan(), right.value.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    let order = left
                        .value
                        .partial_cmp(&right.value)
                        .unwrap_or(Ordering::Equal);
                    if top { order.reverse() } else { order }
                }
            },
        );
        members.truncate(k.min(members.len() as i64) as usize);
        out.extend(members);
    }
    out
}

fn count_values(
    samples: Vec<Sample>,
    modifier: Option<&LabelModifier>,
    label: &str,
) -> Vec<Sample> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Sample> = Vec::new();
    for sample in samples {
        let mut labels: Vec<(String, String)> = group_labels(&sample.labels, modifier)
            .iter()
            .filter(|(name, _)| name != label)
            .cloned()
            .collect();
        labels.push((label.to_string(), super::format_value(sample.value)));
        labels.sort();
        let labels: Labels = labels.into();
        match index.get(&labels) {
            Some(&slot) => out[slot].value += 1.0,
            None => {
                index.insert(Arc::clone(&labels), out.len());
                out.push(Sample {
                    labels,
                    value: 1.0,
                    drop_name: false,
                });
            }
        }
    }
    out
}
