//! Classic `histogram_quantile` over `le` buckets, as Prometheus' `quantile.go`
//! (bucket interpolation, monotonicity fix-ups and their annotations).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::Expr;

use super::{scalar_arg, vector_arg};
use crate::promql::Error;
use crate::promql::evaluator::Evaluator;
use crate::promql::statistics::quantile_warning;
use crate::promql::value::{NAME, Sample, Value, label_value};
use crate::tsdb::head::Labels;

pub(super) fn histogram_quantile(
    evaluator: &mut Evaluator,
    args: &[Box<Expr>],
) -> Result<Value, Error> {
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
}
