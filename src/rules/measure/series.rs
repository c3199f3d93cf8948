//! A measure at many evaluation times, for PromQL's `log_aggregate` and `log_ratio`
//! series: the value of `[t − window, t)` at each time t, per group.
//!
//! How many searches it takes:
//! - one time: the rule's own [`measure_window`], so a series at t is the rule's value at
//!   tick t;
//! - a ratio: two passes ([`count_series`] of the query and of the denominator);
//! - `avg`, `min`, `max`, `sum`: one date-histogram pass with a `stats` per bucket, the
//!   buckets the greatest common divisor of the window and the times' spacing, each
//!   time's window folded from its buckets (sliding sums and a monotonic queue for the
//!   extremes);
//! - `percentile`, `cardinality` (sketches that do not compose exactly): one pass when
//!   the times are a window apart (one bucket per time), else one search per time, at
//!   most [`MAX_SEPARATE_SEARCHES`] (then an error saying to use a step of one window).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    AggregateOp, GroupValue, METRIC_KEY, Measure, MeasureError, check_numeric, measure_window,
    metric_aggregation, metric_value,
};
use crate::index::IndexStore;
use crate::index::search::{self, Scope, SearchRequest};
use crate::rules::evaluate::{
    MAX_GROUPS, SeriesSpec, Window, count_series, gcd, walk, window_query,
};

/// Most separate searches one selection of a `percentile` or `cardinality` series may
/// run (an hour at the 15 s grid is 241).
pub const MAX_SEPARATE_SEARCHES: usize = 250;

/// Most non-empty (group, bucket) pairs one histogram pass may collect.
const MAX_BUCKETS: u32 = 2_000_000;

/// One group's values at the requested times (`None`: no value there).
pub type GroupValues = (BTreeMap<String, String>, Vec<Option<f64>>);

/// What to measure at many times: a saved log query with its measure.
pub struct MeasureSeries<'a> {
    /// The rule's name, for errors.
    pub name: &'a str,
    pub index: &'a str,
    pub query: &'a Value,
    pub group_by: &'a [String],
    pub window_ms: i64,
    pub measure: &'a Measure,
}

/// The measure of `[t − window, t)` at every `t` of `times_ms` (ascending), per group;
/// blocking.
pub fn series(
    store: &IndexStore,
    spec: &MeasureSeries<'_>,
    times_ms: &[i64],
) -> Result<Vec<GroupValues>, MeasureError> {
    let window_ms = spec.window_ms.max(1);
    let window_at = |time: i64| Window {
        index: spec.index,
        query: spec.query,
        group_by: spec.group_by,
        end_micros: time * 1000,
        length: Duration::from_millis(window_ms as u64),
    };
    match (times_ms, spec.measure) {
        ([], _) => Ok(Vec::new()),
        ([time], measure) => Ok(measure_window(store, &window_at(*time), measure)?
            .into_iter()
            .map(|group| (group.labels, vec![Some(group.value)]))
            .collect()),
        (
            _,
            Measure::Ratio {
                denominator,
                min_denominator,
            },
        ) => {
            let counts = |query: &Value| {
                count_series(
                    store,
                    &SeriesSpec {
                        index: spec.index,
                        query,
                        group_by: spec.group_by,
                        window_ms,
                        group_ttl_ms: 0,
                    },
                    times_ms,
                )
            };
            let numerators: BTreeMap<_, _> = counts(spec.query)?.into_iter().collect();
            Ok(counts(denominator)?
                .into_iter()
                .map(|(labels, denominators)| {
                    let numerator = numerators.get(&labels);
                    let values = denominators
                        .iter()
                        .enumerate()
                        .map(|(at, denominator)| {
                            let denominator =
                                denominator.filter(|count| *count >= *min_denominator)?;
                            let matched = numerator.and_then(|counts| counts[at]).unwrap_or(0);
                            Some(matched as f64 / denominator as f64)
                        })
                        .collect();
                    (labels, values)
                })
                .filter(|(_, values): &GroupValues| values.iter().any(Option::is_some))
                .collect())
        }
        (
            _,
            Measure::Aggregate {
                op,
                field,
                percentile,
            },
        ) => {
            check_numeric(store, spec.index, *op, field)?;
            let first = times_ms[0];
            let mut bucket = window_ms;
            for time in times_ms {
                bucket = gcd(bucket, time - first);
            }
            if op.composes() {
                let stats = metric_aggregation(*op, field, *percentile);
                let histograms = histogram_pass(store, spec, times_ms, bucket, stats)?;
                Ok(histograms
                    .into_iter()
                    .map(|(labels, buckets)| {
                        let values = fold(*op, &buckets, times_ms, window_ms, bucket);
                        (labels, values)
                    })
                    .filter(|(_, values)| values.iter().any(Option::is_some))
                    .collect())
            } else if bucket == window_ms {
                let metric = metric_aggregation(*op, field, *percentile);
                let histograms = histogram_pass(store, spec, times_ms, bucket, metric)?;
                let base = first - window_ms;
                Ok(histograms
                    .into_iter()
                    .map(|(labels, buckets)| {
                        let values: Vec<Option<f64>> = times_ms
                            .iter()
                            .map(|time| {
                                let number = (time - window_ms - base).div_euclid(bucket);
                                let at = buckets
                                    .binary_search_by_key(&number, |(number, _)| *number)
                                    .ok()?;
                                metric_value(&buckets[at].1, *op)
                            })
                            .collect();
                        (labels, values)
                    })
                    .filter(|(_, values)| values.iter().any(Option::is_some))
                    .collect())
            } else if times_ms.len() <= MAX_SEPARATE_SEARCHES {
                let mut groups: BTreeMap<BTreeMap<String, String>, Vec<Option<f64>>> =
                    BTreeMap::new();
                for (at, time) in times_ms.iter().enumerate() {
                    for GroupValue { labels, value } in
                        measure_window(store, &window_at(*time), spec.measure)?
                    {
                        groups
                            .entry(labels)
                            .or_insert_with(|| vec![None; times_ms.len()])[at] = Some(value);
                    }
                }
                Ok(groups.into_iter().collect())
            } else {
                Err(MeasureError::TooManySearches {
                    metric: spec.measure.metric(),
                    query: spec.name.to_string(),
                    op: op.name(),
                    window_ms,
                    times: times_ms.len(),
                    max: MAX_SEPARATE_SEARCHES,
                })
            }
        }
    }
}

/// One group's non-empty histogram buckets: (bucket number from the start, bucket).
type GroupBuckets = (BTreeMap<String, String>, Vec<(i64, Value)>);

/// One date-histogram pass over `[first − window, last)` with `sub` in every bucket of
/// `bucket` ms: per group, the non-empty buckets as (bucket number from the start,
/// bucket with the result of `sub` under [`METRIC_KEY`]), ascending.
fn histogram_pass(
    store: &IndexStore,
    spec: &MeasureSeries<'_>,
    times_ms: &[i64],
    bucket: i64,
    sub: Value,
) -> Result<Vec<GroupBuckets>, MeasureError> {
    let (first, last) = (times_ms[0], times_ms[times_ms.len() - 1]);
    let base = first - spec.window_ms.max(1);
    let mut aggregations = json!({"h": {
        "date_histogram": {
            "field": "@timestamp",
            "fixed_interval": format!("{bucket}ms"),
            "offset": format!("{}ms", base.rem_euclid(bucket)),
            "min_doc_count": 1,
        },
        "aggs": { METRIC_KEY: sub },
    }});
    for (level, field) in spec.group_by.iter().enumerate().rev() {
        aggregations = json!({ format!("g{level}"): {
            "terms": {"field": field, "size": MAX_GROUPS},
            "aggs": aggregations,
        }});
    }
    let whole = Window {
        index: spec.index,
        query: spec.query,
        group_by: spec.group_by,
        end_micros: last * 1000,
        length: Duration::from_millis((last - base) as u64),
    };
    let (query, indices) = window_query(store, &whole, &BTreeMap::new())?;
    let scope = Scope::new(&indices, &query);
    let request = SearchRequest {
        query,
        size: 0,
        aggregations: Some(aggregations),
        max_buckets: MAX_BUCKETS,
        ..SearchRequest::default()
    };
    let outcome = search::execute(store, &scope, &request, None)?;
    let result = outcome.aggregations.unwrap_or(Value::Null);
    let mut groups = Vec::new();
    let mut buckets_of = |labels: &BTreeMap<String, String>, result: &Value| {
        let buckets: Vec<(i64, Value)> = result["h"]["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                // the key is milliseconds as a float: round, do not truncate (see
                // `count_series`)
                let key = entry["key"].as_f64()?.round() as i64;
                Some(((key - base).div_euclid(bucket), entry[METRIC_KEY].clone()))
            })
            .collect();
        groups.push((labels.clone(), buckets));
    };
    if spec.group_by.is_empty() {
        buckets_of(&BTreeMap::new(), &result);
    } else {
        walk(
            &result,
            spec.group_by,
            0,
            &mut BTreeMap::new(),
            &mut buckets_of,
        );
    }
    Ok(groups)
}

/// `op` of each time's window from the `stats` of its buckets: sliding sums for the count
/// and the sum, monotonic queues for the minimum and the maximum (the windows only move
/// forward, so each bucket enters and leaves once).
fn fold(
    op: AggregateOp,
    buckets: &[(i64, Value)],
    times_ms: &[i64],
    window_ms: i64,
    bucket: i64,
) -> Vec<Option<f64>> {
    // (bucket number, count, sum, min, max) of the buckets that aggregated a value
    let stats: Vec<(i64, u64, f64, f64, f64)> = buckets
        .iter()
        .filter_map(|(number, stats)| {
            let count = stats["count"].as_u64().filter(|count| *count > 0)?;
            Some((
                *number,
                count,
                stats["sum"].as_f64()?,
                stats["min"].as_f64()?,
                stats["max"].as_f64()?,
            ))
        })
        .collect();
    let base = times_ms[0] - window_ms;
    let (mut low, mut high) = (0, 0);
    let (mut count, mut sum) = (0u64, 0.0f64);
    let (mut minima, mut maxima) = (VecDeque::<usize>::new(), VecDeque::<usize>::new());
    times_ms
        .iter()
        .map(|time| {
            let start = (time - window_ms - base).div_euclid(bucket);
            let end = (time - base).div_euclid(bucket);
            while high < stats.len() && stats[high].0 < end {
                let (_, added, total, min, max) = stats[high];
                count += added;
                sum += total;
                while minima.back().is_some_and(|&at| stats[at].3 >= min) {
                    minima.pop_back();
                }
                minima.push_back(high);
                while maxima.back().is_some_and(|&at| stats[at].4 <= max) {
                    maxima.pop_back();
                }
                maxima.push_back(high);
                high += 1;
            }
            while low < high && stats[low].0 < start {
                count -= stats[low].1;
                sum -= stats[low].2;
                low += 1;
            }
            while minima.front().is_some_and(|&at| at < low) {
                minima.pop_front();
            }
            while maxima.front().is_some_and(|&at| at < low) {
                maxima.pop_front();
            }
            if low == high {
                // nothing in the window: restart the sum, so rounding does not carry over
                (count, sum) = (0, 0.0);
                return None;
            }
            match op {
                AggregateOp::Sum => Some(sum),
                AggregateOp::Avg => Some(sum / count as f64),
                AggregateOp::Min => minima.front().map(|&at| stats[at].3),
                AggregateOp::Max => maxima.front().map(|&at| stats[at].4),
                AggregateOp::Percentile | AggregateOp::Cardinality => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(count: u64, sum: f64, min: f64, max: f64) -> Value {
        json!({"count": count, "sum": sum, "min": min, "max": max, "avg": sum / count as f64})
    }

    #[test]
    fn windows_fold_from_their_buckets() {
        // buckets of 10 ms from base 0; windows of 30 ms ending at 30, 40, 50, 60, 90
        let buckets = [
            (0, stats(2, 10.0, 4.0, 6.0)),
            (1, stats(1, 1.0, 1.0, 1.0)),
            (2, stats(1, 9.0, 9.0, 9.0)),
            (4, stats(3, 6.0, 2.0, 2.0)),
        ];
        let times = [30, 40, 50, 60, 90];
        let fold = |op| fold(op, &buckets, &times, 30, 10);
        assert_eq!(
            fold(AggregateOp::Sum),
            [Some(20.0), Some(10.0), Some(15.0), Some(6.0), None]
        );
        assert_eq!(
            fold(AggregateOp::Min),
            [Some(1.0), Some(1.0), Some(2.0), Some(2.0), None]
        );
        assert_eq!(
            fold(AggregateOp::Max),
            [Some(9.0), Some(9.0), Some(9.0), Some(2.0), None]
        );
        assert_eq!(
            fold(AggregateOp::Avg),
            [Some(5.0), Some(5.0), Some(3.75), Some(2.0), None]
        );
    }
}
