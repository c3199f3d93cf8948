//! Numerically careful statistics over float samples, shared by the functions and the
//! aggregations: Neumaier-compensated sums (Prometheus' `kahansum`), the mean, the
//! variance and the quantile as Prometheus computes them.

use std::cmp::Ordering;

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

pub(super) fn quantile_warning(q: f64, position: &str) -> String {
    format!(
        "PromQL warning: quantile value should be between 0 and 1, got {} ({position})",
        super::format_value(q)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
