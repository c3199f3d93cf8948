//! `sort`, `sort_desc`, `sort_by_label` and `sort_by_label_desc` (NaN last, label
//! values in natural order).

use std::cmp::Ordering;

use promql_parser::parser::Expr;

use super::{string_arg, vector_arg};
use crate::promql::Error;
use crate::promql::evaluator::Evaluator;
use crate::promql::value::{Value, label_value};

pub(super) fn sort(
    evaluator: &mut Evaluator,
    name: &str,
    args: &[Box<Expr>],
) -> Result<Value, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_digit_runs_as_numbers() {
        assert_eq!(natural_cmp("a2", "a10"), Ordering::Less);
        assert_eq!(natural_cmp("b", "a10"), Ordering::Greater);
        assert_eq!(natural_cmp("a010", "a10"), Ordering::Equal);
    }
}
