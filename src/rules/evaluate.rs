//! Counting a log rule's window: the matches of its query with event times in
//! `[T − window, T)` — T is the cron tick itself — in total or per `group_by` group.
//!
//! The query is the rule's Lucene string or DSL object, AND a range on `@timestamp`, run
//! through the same parser, partition pruning and engine as `_count` and `_search`
//! (`now` in the rule's query means T). Groups come from nested `terms` aggregations; a
//! document without a `group_by` field belongs to no group (as in Elasticsearch's `terms`
//! and ElastAlert2). Zero-filling of groups seen before is the caller's (it knows them).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::index::IndexStore;
use crate::index::query::QueryError;
use crate::index::query::dsl::{ParseContext, parse_query};
use crate::index::search::{self, Scope, SearchError, SearchRequest};

/// Groups a window can have at most (per `group_by` level).
pub const MAX_GROUPS: usize = 10_000;

/// The count of one group (no labels without `group_by`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCount {
    pub labels: BTreeMap<String, String>,
    pub count: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("query: {0}")]
    Query(#[from] QueryError),
    #[error("index `{0}`: {1}")]
    Index(String, String),
    #[error(transparent)]
    Search(#[from] SearchError),
}

/// What to count.
pub struct Window<'a> {
    pub index: &'a str,
    /// A Lucene string or a DSL object.
    pub query: &'a Value,
    pub group_by: &'a [String],
    /// The tick, microseconds since the epoch: the window's exclusive end.
    pub end_micros: i64,
    pub length: Duration,
}

/// Counts `window`; without `group_by` one unlabeled count (0 when nothing matched).
pub fn count_window(
    store: &IndexStore,
    window: &Window<'_>,
) -> Result<Vec<GroupCount>, EvaluateError> {
    let (query, indices) = window_query(store, window, &BTreeMap::new())?;
    let scope = Scope::new(&indices, &query);
    if window.group_by.is_empty() {
        let count = search::count(store, &scope, &query)?;
        return Ok(vec![GroupCount {
            labels: BTreeMap::new(),
            count,
        }]);
    }
    let mut aggregations: Option<Value> = None;
    for (level, field) in window.group_by.iter().enumerate().rev() {
        let mut terms = json!({"terms": {"field": field, "size": MAX_GROUPS}});
        if let Some(inner) = aggregations.take() {
            terms["aggs"] = inner;
        }
        aggregations = Some(json!({ format!("g{level}"): terms }));
    }
    let request = SearchRequest {
        query,
        size: 0,
        aggregations,
        ..SearchRequest::default()
    };
    let outcome = search::execute(store, &scope, &request, None)?;
    let mut groups = Vec::new();
    if let Some(result) = outcome.aggregations {
        walk(
            &result,
            window.group_by,
            0,
            &mut BTreeMap::new(),
            &mut |labels, bucket| {
                groups.push(GroupCount {
                    labels: labels.clone(),
                    count: bucket["doc_count"].as_u64().unwrap_or(0),
                })
            },
        );
    }
    Ok(groups)
}

/// The window's query (the rule's, its time range, and `labels` as exact terms) and the
/// indices it runs over.
pub(crate) fn window_query(
    store: &IndexStore,
    window: &Window<'_>,
    labels: &BTreeMap<String, String>,
) -> Result<
    (
        crate::index::query::Query,
        Vec<std::sync::Arc<crate::index::store::LogIndex>>,
    ),
    EvaluateError,
> {
    let rule_query = match window.query {
        Value::String(text) => json!({"query_string": {"query": text}}),
        other => other.clone(),
    };
    let start_micros = window.end_micros - window.length.as_micros() as i64;
    let mut filters = vec![
        rule_query,
        json!({"range": {"@timestamp": {
            "gte": start_micros as f64 / 1000.0,
            "lt": window.end_micros as f64 / 1000.0,
            "format": "epoch_millis"
        }}}),
    ];
    for (field, value) in labels {
        filters.push(json!({"term": {field: value}}));
    }
    let context = ParseContext {
        now_micros: window.end_micros,
        timestamp_field: "@timestamp".into(),
    };
    let query = parse_query(&json!({"bool": {"filter": filters}}), &context)?;
    // an index that does not exist yet has no matches (rules are written before logs)
    let indices = store
        .resolve(window.index, true)
        .map_err(|error| EvaluateError::Index(window.index.to_string(), error))?;
    Ok((query, indices))
}

/// The newest `limit` matching lines of the window in `labels`' group, as JSON text.
pub fn sample_lines(
    store: &IndexStore,
    window: &Window<'_>,
    labels: &BTreeMap<String, String>,
    limit: usize,
) -> Result<Vec<String>, EvaluateError> {
    let (query, indices) = window_query(store, window, labels)?;
    let hits = search::newest(store, &indices, query, limit)?;
    Ok(hits.iter().map(|hit| hit["_source"].to_string()).collect())
}

/// Walks nested `terms` buckets (`g0`, `g1`, …), calling `leaf` with each innermost
/// bucket and its group labels.
pub(crate) fn walk(
    result: &Value,
    group_by: &[String],
    level: usize,
    labels: &mut BTreeMap<String, String>,
    leaf: &mut dyn FnMut(&BTreeMap<String, String>, &Value),
) {
    let Some(buckets) = result[format!("g{level}")]["buckets"].as_array() else {
        return;
    };
    for bucket in buckets {
        let value = match &bucket["key"] {
            Value::String(text) => text.clone(),
            Value::Number(number) => match number.as_f64() {
                Some(float) if float.fract() == 0.0 && float.abs() < 1e15 => {
                    format!("{}", float as i64)
                }
                _ => number.to_string(),
            },
            other => other.to_string(),
        };
        labels.insert(group_by[level].clone(), value);
        if level + 1 == group_by.len() {
            leaf(labels, bucket);
        } else {
            walk(bucket, group_by, level + 1, labels, leaf);
        }
    }
    labels.remove(&group_by[level]);
}

/// Most non-empty (group, bucket) pairs one [`count_series`] may collect.
const MAX_SERIES_BUCKETS: u32 = 2_000_000;

/// One group's counts at the requested times (`None`: the group had no match within
/// `group_ttl` before that time, so it is absent there).
pub type GroupSeries = (BTreeMap<String, String>, Vec<Option<u64>>);

/// What [`count_series`] counts: a saved query's window at many evaluation times.
pub struct SeriesSpec<'a> {
    pub index: &'a str,
    pub query: &'a Value,
    pub group_by: &'a [String],
    pub window_ms: i64,
    /// Groups with a match within this long before a time answer 0 there, not absent.
    pub group_ttl_ms: i64,
}

/// The count of `[t − window, t)` at every `t` of `times_ms` (ascending), per group, from
/// one pass over the index: a date histogram whose buckets are the greatest common
/// divisor of the window, the ttl and the times' spacing, so that every window starts
/// and ends on a bucket boundary; prefix sums then give each time's count. Without
/// `group_by` there is one unlabeled series with a count at every time.
pub fn count_series(
    store: &IndexStore,
    spec: &SeriesSpec<'_>,
    times_ms: &[i64],
) -> Result<Vec<GroupSeries>, EvaluateError> {
    let (Some(&first), Some(&last)) = (times_ms.first(), times_ms.last()) else {
        return Ok(Vec::new());
    };
    let grouped = !spec.group_by.is_empty();
    let window = spec.window_ms.max(1);
    let reach = if grouped {
        window.max(spec.group_ttl_ms)
    } else {
        window
    };
    let mut bucket = gcd(window, reach);
    for time in times_ms {
        bucket = gcd(bucket, time - first);
    }
    let base = first - reach;
    let histogram = json!({"date_histogram": {
        "field": "@timestamp",
        "fixed_interval": format!("{bucket}ms"),
        "offset": format!("{}ms", base.rem_euclid(bucket)),
        "min_doc_count": 1,
    }});
    let mut aggregations = json!({ "h": histogram });
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
        max_buckets: MAX_SERIES_BUCKETS,
        ..SearchRequest::default()
    };
    let outcome = search::execute(store, &scope, &request, None)?;
    let result = outcome.aggregations.unwrap_or(Value::Null);
    // per group: (bucket number, running total up to and including it), ascending
    type Running = Vec<(i64, u64)>;
    let mut cumulative: Vec<(BTreeMap<String, String>, Running)> = Vec::new();
    let mut histogram_of = |labels: &BTreeMap<String, String>, result: &Value| {
        let mut running = 0;
        let mut sums = Vec::new();
        for entry in result["h"]["buckets"].as_array().into_iter().flatten() {
            let (Some(key), Some(count)) = (entry["key"].as_f64(), entry["doc_count"].as_u64())
            else {
                continue;
            };
            running += count;
            // the key is milliseconds as a float, computed from nanoseconds: `…20050` can
            // come back as `…20049.9998`, which truncation would put in the bucket before
            sums.push((((key.round() as i64) - base).div_euclid(bucket), running));
        }
        cumulative.push((labels.clone(), sums));
    };
    if grouped {
        walk(
            &result,
            spec.group_by,
            0,
            &mut BTreeMap::new(),
            &mut histogram_of,
        );
    } else {
        histogram_of(&BTreeMap::new(), &result);
    }
    // matches in buckets before bucket number `end`
    let before = |sums: &[(i64, u64)], end: i64| {
        let at = sums.partition_point(|(number, _)| *number < end);
        if at == 0 { 0 } else { sums[at - 1].1 }
    };
    Ok(cumulative
        .into_iter()
        .map(|(labels, sums)| {
            let counts = times_ms
                .iter()
                .map(|time| {
                    let end = (time - base) / bucket;
                    let count = before(&sums, end) - before(&sums, (time - window - base) / bucket);
                    let seen = !grouped
                        || before(&sums, end) > before(&sums, (time - reach - base) / bucket);
                    seen.then_some(count)
                })
                .collect();
            (labels, counts)
        })
        .collect())
}

/// The greatest common divisor of `a` and `b`, at least 1 (a bucket width).
pub(crate) fn gcd(mut a: i64, mut b: i64) -> i64 {
    (a, b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const HOUR: i64 = 3_600_000_000;
    /// 2026-11-22T10:00:00Z
    const TICK: i64 = 1_795_341_600_000_000;

    fn store_with(documents: &[(i64, Value)]) -> (tempfile::TempDir, Arc<IndexStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(IndexStore::test_open(dir.path(), HOUR, 2));
        let ops = documents
            .iter()
            .enumerate()
            .map(|(number, (micros, body))| {
                store.test_doc(
                    "logs",
                    format!("{number}"),
                    *micros,
                    serde_json::to_vec(body).expect("json"),
                )
            })
            .collect();
        store.apply(1, ops, false).expect("apply");
        store.commit_all().expect("commit");
        (dir, store)
    }

    /// The minute before TICK.
    fn window<'a>(query: &'a Value, group_by: &'a [String]) -> Window<'a> {
        Window {
            index: "logs",
            query,
            group_by,
            end_micros: TICK,
            length: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_window_is_half_open_and_groups_split_it() {
        let second = 1_000_000;
        let (_dir, store) = store_with(&[
            // exactly at T − 1m: inside
            (
                TICK - 60 * second,
                json!({"status": 500, "service": "checkout"}),
            ),
            (
                TICK - 30 * second,
                json!({"status": "500", "service": "checkout"}),
            ),
            (
                TICK - 10 * second,
                json!({"status": 500, "service": "cart"}),
            ),
            (
                TICK - 10 * second,
                json!({"status": 200, "service": "cart"}),
            ),
            // just before the window, and exactly at T: outside
            (
                TICK - 61 * second,
                json!({"status": 500, "service": "checkout"}),
            ),
            (TICK, json!({"status": 500, "service": "checkout"})),
            // no service: counted in total, in no group
            (TICK - 5 * second, json!({"status": 500})),
        ]);
        let query = json!("status:500");
        let total = count_window(&store, &window(&query, &[])).expect("count");
        assert_eq!(
            total,
            [GroupCount {
                labels: BTreeMap::new(),
                count: 4
            }]
        );
        let by_service = ["service".to_string()];
        let mut groups = count_window(&store, &window(&query, &by_service)).expect("count");
        groups.sort_by(|left, right| left.labels.cmp(&right.labels));
        let labels = |service: &str| BTreeMap::from([("service".to_string(), service.to_string())]);
        assert_eq!(
            groups,
            [
                GroupCount {
                    labels: labels("cart"),
                    count: 1
                },
                GroupCount {
                    labels: labels("checkout"),
                    count: 2
                },
            ]
        );
        // a DSL object works the same; an index not created yet counts 0
        let dsl = json!({"term": {"service": "cart"}});
        let cart = window(&dsl, &[]);
        assert_eq!(count_window(&store, &cart).expect("count")[0].count, 2);
        let samples = sample_lines(
            &store,
            &window(&query, &[]),
            &BTreeMap::from([("service".to_string(), "checkout".to_string())]),
            5,
        )
        .expect("samples");
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert!(samples.iter().all(|line| line.contains("checkout")));
        let missing = Window {
            index: "nothing-yet",
            ..window(&query, &[])
        };
        assert_eq!(count_window(&store, &missing).expect("count")[0].count, 0);
    }

    #[test]
    fn one_histogram_pass_equals_a_count_per_time() {
        let second = 1_000_000;
        // every 7 s for 20 minutes before TICK, alternating services; "cart" stops 8 minutes early
        let documents: Vec<(i64, Value)> = (0..172)
            .map(|n| {
                let at = TICK - 1200 * second + n * 7 * second;
                let service = if n % 2 == 0 { "checkout" } else { "cart" };
                (at, json!({"status": 500, "service": service}))
            })
            .filter(|(at, body)| body["service"] == "checkout" || *at < TICK - 480 * second)
            .collect();
        let (_dir, store) = store_with(&documents);
        let query = json!("status:500");
        let by_service = ["service".to_string()];
        let spec = SeriesSpec {
            index: "logs",
            query: &query,
            group_by: &by_service,
            window_ms: 60_000,
            group_ttl_ms: 300_000,
        };
        let tick_ms = TICK / 1000;
        let times: Vec<i64> = (0..=40).map(|n| tick_ms - 1_200_000 + n * 30_000).collect();
        let series = count_series(&store, &spec, &times).expect("series");
        assert_eq!(series.len(), 2, "{series:?}");
        for (labels, counts) in &series {
            for (time, count) in times.iter().zip(counts) {
                let counted = Window {
                    end_micros: time * 1000,
                    ..window(&query, &[])
                };
                let by_hand = sample_lines(&store, &counted, labels, 1000)
                    .expect("lines")
                    .len() as u64;
                let seen = Window {
                    end_micros: time * 1000,
                    length: Duration::from_secs(300),
                    ..window(&query, &[])
                };
                let recent = sample_lines(&store, &seen, labels, 1).expect("lines").len();
                // within the ttl a group answers its count (maybe 0); past it, absent
                let expected = (recent > 0).then_some(by_hand);
                assert_eq!(*count, expected, "{labels:?} at {time}");
            }
        }
        let cart = &series
            .iter()
            .find(|(labels, _)| labels["service"] == "cart")
            .expect("cart")
            .1;
        assert!(cart.contains(&Some(0)), "zero within the ttl: {cart:?}");
        assert_eq!(cart.last(), Some(&None), "gone past the ttl");
        // without group_by: one series, a count at every time
        let total = count_series(
            &store,
            &SeriesSpec {
                group_by: &[],
                ..spec
            },
            &[tick_ms, tick_ms + 3_600_000],
        )
        .expect("series");
        assert_eq!(total.len(), 1);
        assert_eq!(total[0].1[1], Some(0));
        assert_eq!(
            total[0].1[0],
            Some(count_window(&store, &window(&query, &[])).expect("count")[0].count)
        );
    }

    /// Regression (issue 19): at evaluation times such as `…20.050` a bucket key read back
    /// as `…20049.9998` was truncated into the bucket before, and the count was 0 while
    /// `_count` over the same window gave 12.
    #[test]
    fn series_counts_equal_window_counts_at_every_millisecond_offset() {
        let second = 1_000_000;
        let millisecond = 1_000;
        // twelve lines at odd microseconds, and some exactly on the start or end of a tested
        // window
        let documents: Vec<(i64, Value)> = (0..12)
            .map(|n| TICK - 40 * second + n * 3_123_457)
            .chain([-45_950, -41_050, 5_050, 12_345].map(|ms| TICK + ms * millisecond))
            .map(|at| (at, json!({"status": 500})))
            .collect();
        let (_dir, store) = store_with(&documents);
        let query = json!("status:500");
        let spec = SeriesSpec {
            index: "logs",
            query: &query,
            group_by: &[],
            window_ms: 60_000,
            group_ttl_ms: 300_000,
        };
        let tick_ms = TICK / 1000;
        let by_count = |time: i64| {
            count_window(
                &store,
                &Window {
                    end_micros: time * 1000,
                    ..window(&query, &[])
                },
            )
            .expect("count")[0]
                .count
        };
        let seed = chrono::Utc::now().timestamp_subsec_nanos() as u64 | 1;
        let mut random = seed;
        let mut next = move || {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            (random % 20_000) as i64
        };
        let randomized: Vec<i64> = (0..100).map(|_| next()).collect();
        let mut failures = Vec::new();
        // one time per call: every .x50 of 20 s, the ends of a second, and random offsets
        let offsets = (0..20_000)
            .step_by(50)
            .chain([1, 999, 7_001, 19_999])
            .chain(randomized.iter().copied());
        for offset_ms in offsets {
            let time = tick_ms + offset_ms;
            let series = count_series(&store, &spec, &[time]).expect("series");
            if series[0].1[0] != Some(by_count(time)) {
                failures.push((offset_ms, series[0].1[0], by_count(time)));
            }
        }
        // many times per call, as a range query asks: steps of 50 ms, 1 ms and 1.05 s from
        // odd starts
        for (start, step, count) in [(50, 50, 400), (999, 1, 300), (randomized[0], 1_050, 19)] {
            let times: Vec<i64> = (0..count).map(|n| tick_ms + start + n * step).collect();
            let series = count_series(&store, &spec, &times).expect("series");
            for (time, counted) in times.iter().zip(&series[0].1) {
                if *counted != Some(by_count(*time)) {
                    failures.push((time - tick_ms, *counted, by_count(*time)));
                }
            }
        }
        assert!(failures.is_empty(), "seed {seed}: {failures:?}");
    }

    #[test]
    fn a_bad_query_is_an_error_not_a_zero() {
        let (_dir, store) = store_with(&[]);
        let query = json!("status:(500");
        let error = count_window(&store, &window(&query, &[])).expect_err("invalid");
        assert!(error.to_string().starts_with("query:"), "{error}");
    }
}
