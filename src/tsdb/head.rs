//! The in-memory head of the TSDB: every series by its label set, each a list of
//! compressed [`Chunk`]s (a new one every 120 samples), and an inverted index (label name →
//! value → series) so a selector touches only the series it names.
//!
//! Appends follow Prometheus: a sample older than its series' newest is rejected and
//! counted as out of order; one at the same timestamp is ignored when its value is the
//! same bit for bit and rejected as a duplicate otherwise.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::chunk::Chunk;

/// A series' labels, sorted by name, `__name__` included.
pub type Labels = Arc<[(String, String)]>;

/// Selected series: labels and their `(time ms, value)` samples in time order.
pub type Selected = Vec<(Labels, Vec<(i64, f64)>)>;

/// Builds sorted [`Labels`] from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut sorted: Vec<(String, String)> = pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    sorted.sort();
    sorted.into()
}

/// A label matcher of a selector.
#[derive(Debug, Clone)]
pub enum Matcher {
    Equal(String, String),
    NotEqual(String, String),
    /// Anchored, as in PromQL.
    Regex(String, regex::Regex),
    NotRegex(String, regex::Regex),
}

impl Matcher {
    /// A regex matcher; the pattern is anchored as PromQL anchors it.
    pub fn regex(name: &str, pattern: &str, negated: bool) -> Result<Matcher, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?s:{pattern})$"))?;
        Ok(if negated {
            Matcher::NotRegex(name.into(), regex)
        } else {
            Matcher::Regex(name.into(), regex)
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Matcher::Equal(name, _)
            | Matcher::NotEqual(name, _)
            | Matcher::Regex(name, _)
            | Matcher::NotRegex(name, _) => name,
        }
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Equal(_, expected) => value == expected,
            Matcher::NotEqual(_, expected) => value != expected,
            Matcher::Regex(_, regex) => regex.is_match(value),
            Matcher::NotRegex(_, regex) => !regex.is_match(value),
        }
    }
}

/// Whether `labels` satisfy every matcher (an absent label reads as the empty string,
/// as in PromQL).
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|matcher| {
        let value = labels
            .iter()
            .find(|(label, _)| label == matcher.name())
            .map_or("", |(_, value)| value.as_str());
        matcher.matches(value)
    })
}

/// Why a sample was not appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("out of order sample")]
    OutOfOrder,
    #[error("duplicate sample for timestamp")]
    Duplicate,
    /// Older than what the head still holds (already persisted in a block).
    #[error("out of bounds")]
    OutOfBounds,
    /// A new series while the head holds its tenant's `limits.max_active_series`.
    #[error("per-tenant series limit reached (limits.max_active_series)")]
    SeriesLimit,
}

struct Series {
    labels: Labels,
    /// Chunks with the time of their first sample.
    chunks: Vec<(i64, Chunk)>,
    last: Option<(i64, u64)>,
    /// Truncated away: no chunks left, no longer indexed.
    removed: bool,
}

impl Series {
    /// Each chunk with its `[first, last]` sample times.
    fn chunk_ranges(&self) -> impl Iterator<Item = (i64, i64, &Chunk)> {
        let last = self.last.map_or(i64::MIN, |(time, _)| time);
        self.chunks
            .iter()
            .enumerate()
            .map(move |(i, (first, chunk))| {
                let end = self.chunks.get(i + 1).map_or(last, |(next, _)| next - 1);
                (*first, end, chunk)
            })
    }
}

/// The head: all series in memory.
#[derive(Default)]
pub struct Head {
    ids: RwLock<HashMap<Labels, usize, foldhash::fast::RandomState>>,
    series: RwLock<Vec<Arc<Mutex<Series>>>>,
    postings: RwLock<BTreeMap<String, BTreeMap<String, BTreeSet<usize>>>>,
    pub out_of_order: AtomicU64,
    pub duplicates: AtomicU64,
    pub out_of_bounds: AtomicU64,
    /// Samples of new series dropped at the series limit ([`AppendError::SeriesLimit`]).
    pub series_limited: AtomicU64,
    /// Samples older than this are refused: blocks hold that range now.
    min_valid: std::sync::atomic::AtomicI64,
}

impl Head {
    pub fn new() -> Head {
        Head {
            min_valid: std::sync::atomic::AtomicI64::new(i64::MIN),
            ..Head::default()
        }
    }

    /// Series still held (not truncated away).
    pub fn active_series(&self) -> usize {
        self.ids
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether the head holds the series of `labels`.
    pub fn contains(&self, labels: &Labels) -> bool {
        self.ids
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(labels)
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// The id of the series of `labels`, and whether it was created now. Ids are given
    /// in creation order, so replaying a log's series records recreates the same ids.
    pub fn series_id(&self, labels: &Labels) -> (usize, bool) {
        if let Some(&id) = self
            .ids
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(labels)
        {
            return (id, false);
        }
        let mut ids = self
            .ids
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut series = self
            .series
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&id) = ids.get(labels) {
            return (id, false);
        }
        let id = series.len();
        let created = Arc::new(Mutex::new(Series {
            labels: Arc::clone(labels),
            chunks: Vec::new(),
            last: None,
            removed: false,
        }));
        series.push(created);
        ids.insert(Arc::clone(labels), id);
        let mut postings = self
            .postings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (name, value) in labels.iter() {
            postings
                .entry(name.clone())
                .or_default()
                .entry(value.clone())
                .or_default()
                .insert(id);
        }
        (id, true)
    }

    /// Appends one sample (`timestamp` in milliseconds) to the series of `labels`.
    pub fn append(&self, labels: &Labels, timestamp: i64, value: f64) -> Result<(), AppendError> {
        self.append_id(self.series_id(labels).0, timestamp, value)
    }

    /// Appends one sample to series `id` (from [`Head::series_id`]).
    pub fn append_id(&self, id: usize, timestamp: i64, value: f64) -> Result<(), AppendError> {
        let series = Arc::clone(
            &self
                .series
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)[id],
        );
        let mut series = series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if timestamp < self.min_valid.load(Ordering::Relaxed) {
            self.out_of_bounds.fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::OutOfBounds);
        }
        if let Some((last_timestamp, last_bits)) = series.last {
            if timestamp < last_timestamp {
                self.out_of_order.fetch_add(1, Ordering::Relaxed);
                return Err(AppendError::OutOfOrder);
            }
            if timestamp == last_timestamp {
                if last_bits == value.to_bits() {
                    return Ok(());
                }
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                return Err(AppendError::Duplicate);
            }
        }
        if series
            .chunks
            .last()
            .is_none_or(|(_, chunk)| chunk.is_full())
        {
            series.chunks.push((timestamp, Chunk::new()));
        }
        series
            .chunks
            .last_mut()
            .expect("a chunk was pushed")
            .1
            .append(timestamp, value);
        series.last = Some((timestamp, value.to_bits()));
        Ok(())
    }

    /// Series whose labels satisfy every matcher (a label that is absent reads as the
    /// empty string, as in PromQL), with their samples in `[min_time, max_time]`.
    pub fn select(&self, matchers: &[Matcher], min_time: i64, max_time: i64) -> Selected {
        let candidates = self.candidates(matchers);
        let all = self
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = Vec::new();
        for id in candidates {
            let series = all[id]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !matches_all(matchers, &series.labels) {
                continue;
            }
            let samples: Vec<(i64, f64)> = series
                .chunk_ranges()
                .filter(|(first, last, _)| *last >= min_time && *first <= max_time)
                .flat_map(|(_, _, chunk)| chunk.iter())
                .skip_while(|(timestamp, _)| *timestamp < min_time)
                .take_while(|(timestamp, _)| *timestamp <= max_time)
                .collect();
            if !samples.is_empty() {
                found.push((Arc::clone(&series.labels), samples));
            }
        }
        found.sort_by(|left, right| left.0.cmp(&right.0));
        found
    }

    /// The `[oldest, newest]` sample times held, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let all = self
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut range: Option<(i64, i64)> = None;
        for series in all.iter() {
            let series = series
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let (Some((first, _)), Some((last, _))) = (series.chunks.first(), series.last) {
                range = Some(range.map_or((*first, last), |(min, max)| {
                    (min.min(*first), max.max(last))
                }));
            }
        }
        // a chunk that straddles the last truncation keeps samples from before it (they
        // are in a block already): the head starts where it was truncated, or the next
        // compaction would persist the same range again, without end
        let min_valid = self.min_valid.load(Ordering::Relaxed);
        range.map(|(oldest, newest)| (oldest.max(min_valid).min(newest), newest))
    }

    /// Each label pair with the number of series holding it, and the number of chunks
    /// held: what `/api/v1/status/tsdb` reports (Prometheus' `Head.Stats`).
    pub fn postings_stats(&self) -> (BTreeMap<String, BTreeMap<String, usize>>, usize) {
        let pairs = self
            .postings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(name, values)| {
                let counts = values
                    .iter()
                    .map(|(value, ids)| (value.clone(), ids.len()))
                    .collect();
                (name.clone(), counts)
            })
            .collect();
        let chunks = self
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|series| {
                series
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .chunks
                    .len()
            })
            .sum();
        (pairs, chunks)
    }

    /// The series records of every held series, as a new log segment starts with.
    pub fn series_records(&self) -> Vec<super::wal::Record> {
        let all = self
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.iter()
            .enumerate()
            .filter_map(|(id, series)| {
                let series = series
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (!series.removed).then(|| super::wal::Record::Series {
                    id: id as u64,
                    labels: series.labels.to_vec(),
                })
            })
            .collect()
    }

    /// Refuses samples older than `time` from now on and drops the chunks that end
    /// before it; a series left without chunks is forgotten.
    pub fn truncate(&self, time: i64) {
        self.min_valid.fetch_max(time, Ordering::Relaxed);
        let all = self
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut forgotten = Vec::new();
        for (id, series) in all.iter().enumerate() {
            let mut series = series
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if series.removed {
                continue;
            }
            let keep_from = series
                .chunk_ranges()
                .position(|(_, last, _)| last >= time)
                .unwrap_or(series.chunks.len());
            series.chunks.drain(..keep_from);
            if series.chunks.is_empty() {
                series.removed = true;
                forgotten.push((id, Arc::clone(&series.labels)));
            }
        }
        drop(all);
        if forgotten.is_empty() {
            return;
        }
        let mut ids = self
            .ids
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut postings = self
            .postings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, labels) in forgotten {
            ids.remove(&labels);
            for (name, value) in labels.iter() {
                if let Some(values) = postings.get_mut(name) {
                    if let Some(set) = values.get_mut(value) {
                        set.remove(&id);
                        if set.is_empty() {
                            values.remove(value);
                        }
                    }
                    if values.is_empty() {
                        postings.remove(name);
                    }
                }
            }
        }
    }

    /// Every label name of every series, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.postings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Every value of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.postings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .map(|values| values.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The series an equality matcher on a non-empty value narrows to (through the
    /// postings); every series when no matcher does.
    fn candidates(&self, matchers: &[Matcher]) -> Vec<usize> {
        let postings = self
            .postings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut narrowed: Option<BTreeSet<usize>> = None;
        for matcher in matchers {
            if let Matcher::Equal(name, value) = matcher
                && !value.is_empty()
            {
                let ids = postings
                    .get(name)
                    .and_then(|values| values.get(value))
                    .cloned()
                    .unwrap_or_default();
                narrowed = Some(match narrowed {
                    None => ids,
                    Some(previous) => previous.intersection(&ids).copied().collect(),
                });
            }
        }
        match narrowed {
            Some(ids) => ids.into_iter().collect(),
            None => self
                .ids
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .copied()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_find_their_series_and_the_range_of_samples() {
        let head = Head::new();
        let get = labels(&[
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("code", "200"),
        ]);
        let error = labels(&[
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("code", "500"),
        ]);
        let other = labels(&[("__name__", "up"), ("job", "db")]);
        for step in 0..300 {
            let timestamp = step * 15_000;
            head.append(&get, timestamp, step as f64).expect("append");
            head.append(&error, timestamp, (step / 10) as f64)
                .expect("append");
            head.append(&other, timestamp, 1.0).expect("append");
        }
        assert_eq!(head.series_count(), 3);
        let name = Matcher::Equal("__name__".into(), "http_requests_total".into());
        let all = head.select(std::slice::from_ref(&name), 0, i64::MAX);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1.len(), 300, "three chunks read back in order");
        let errors = head.select(
            &[
                name.clone(),
                Matcher::regex("code", "5..", false).expect("regex"),
            ],
            30_000,
            60_000,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, error);
        assert_eq!(
            errors[0].1,
            [(30_000, 0.0), (45_000, 0.0), (60_000, 0.0)],
            "inclusive range"
        );
        // an absent label reads as empty
        let no_code = head.select(&[Matcher::Equal("code".into(), String::new())], 0, i64::MAX);
        assert_eq!(no_code.len(), 1);
        assert_eq!(no_code[0].0, other);
        let anchored = head.select(
            &[Matcher::regex("job", "ap", false).expect("regex")],
            0,
            i64::MAX,
        );
        assert!(anchored.is_empty(), "regexes are anchored");
    }

    #[test]
    fn out_of_order_and_duplicate_samples_are_refused_and_counted() {
        let head = Head::new();
        let series = labels(&[("__name__", "up")]);
        head.append(&series, 2_000, 1.0).expect("append");
        assert_eq!(
            head.append(&series, 1_000, 1.0),
            Err(AppendError::OutOfOrder)
        );
        assert_eq!(
            head.append(&series, 2_000, 1.0),
            Ok(()),
            "the same sample again"
        );
        assert_eq!(
            head.append(&series, 2_000, 0.0),
            Err(AppendError::Duplicate)
        );
        assert_eq!(head.out_of_order.load(Ordering::Relaxed), 1);
        assert_eq!(head.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(head.select(&[], 0, i64::MAX)[0].1, [(2_000, 1.0)]);
    }

    #[test]
    fn truncation_drops_old_chunks_forgets_empty_series_and_refuses_old_samples() {
        let head = Head::new();
        let old = labels(&[("__name__", "gone"), ("job", "a")]);
        let live = labels(&[("__name__", "up"), ("job", "a")]);
        for step in 0..240 {
            head.append(&live, step * 1_000, 1.0).expect("append");
        }
        head.append(&old, 5_000, 1.0).expect("append");
        assert_eq!(head.time_range(), Some((0, 239_000)));
        head.truncate(150_000);
        assert_eq!(
            head.active_series(),
            1,
            "the series with nothing left is forgotten"
        );
        assert_eq!(head.label_values("__name__"), ["up"]);
        let kept = head.select(&[], 0, i64::MAX);
        assert_eq!(kept.len(), 1);
        assert_eq!(
            kept[0].1.first().map(|(time, _)| *time),
            Some(120_000),
            "the chunk reaching past the cut stays whole"
        );
        assert_eq!(
            head.append(&old, 100_000, 1.0),
            Err(AppendError::OutOfBounds)
        );
        head.append(&old, 240_000, 1.0)
            .expect("a new sample recreates the series");
        assert_eq!(head.active_series(), 2);
        assert_eq!(head.series_records().len(), 2);
    }
}
