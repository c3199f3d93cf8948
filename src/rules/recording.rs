//! Recording rules (`"record": "NAME"`): at each tick the rule's `promql` output is
//! written into the local TSDB under NAME, with Prometheus' recording-rule semantics
//! (`rules/recording.go`): each output series keeps its labels with `__name__` replaced
//! by NAME, the rule's `labels` are set over them (an empty value removes the label), two
//! outputs with the same label set after that fail the evaluation, and a series the
//! previous tick wrote that this one does not gets a staleness marker at the tick.
//!
//! What it writes goes through the TSDB's write-ahead log like a scrape, so remote write
//! sends it and `/federate` serves it; recording `log_matches{query="NAME"}` is how
//! log-derived series reach other stores.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use crate::tsdb::Tsdb;
use crate::tsdb::head::Labels;

/// Why a recording rule's tick wrote nothing.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordError {
    #[error("vector contains metrics with the same labelset after applying rule labels: {labels}")]
    DuplicateLabelSet { labels: String },
    #[error("cannot write the recorded series: {0}")]
    Write(String),
}

/// The series a recording rule writes for `samples` (its expression's output).
pub fn output_series(
    record: &str,
    rule_labels: &BTreeMap<String, String>,
    samples: Vec<(Labels, f64)>,
) -> Result<Vec<(Labels, f64)>, RecordError> {
    let mut seen = HashSet::with_capacity(samples.len());
    let mut out = Vec::with_capacity(samples.len());
    for (labels, value) in samples {
        let mut set: BTreeMap<String, String> = labels
            .iter()
            .filter(|(name, _)| name != "__name__")
            .cloned()
            .collect();
        set.insert("__name__".into(), record.to_string());
        for (name, value) in rule_labels {
            if value.is_empty() {
                set.remove(name);
            } else {
                set.insert(name.clone(), value.clone());
            }
        }
        let labels: Labels = set.into_iter().collect::<Vec<_>>().into();
        if !seen.insert(labels.clone()) {
            return Err(RecordError::DuplicateLabelSet {
                labels: describe(&labels),
            });
        }
        out.push((labels, value));
    }
    Ok(out)
}

fn describe(labels: &Labels) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Writes recording rules' output, remembering each rule's series for its stale markers.
#[derive(Default)]
pub struct Recorder {
    previous: Mutex<HashMap<String, HashSet<Labels>>>,
}

/// What one tick wrote.
#[derive(Debug, Default, PartialEq)]
pub struct Written {
    pub samples: usize,
    pub stale_markers: usize,
    /// Samples the TSDB refused (out of order: the tick was already written, e.g. before
    /// a restart).
    pub refused: usize,
}

impl Recorder {
    /// Writes `series` of rule `rule` at `at_ms`, and staleness markers for its series of
    /// the previous tick that are gone; blocking (one logged append).
    pub fn write(
        &self,
        tsdb: &Tsdb,
        rule: &str,
        at_ms: i64,
        series: Vec<(Labels, f64)>,
    ) -> Result<Written, RecordError> {
        let current: HashSet<Labels> = series.iter().map(|(labels, _)| labels.clone()).collect();
        let mut previous = self
            .previous
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gone: Vec<Labels> = previous
            .get(rule)
            .map(|before| before.difference(&current).cloned().collect())
            .unwrap_or_default();
        let stale = f64::from_bits(crate::promql::STALE_NAN_BITS);
        let mut batch: Vec<(Labels, i64, f64)> = series
            .into_iter()
            .map(|(labels, value)| (labels, at_ms, value))
            .collect();
        let written = Written {
            samples: batch.len(),
            stale_markers: gone.len(),
            refused: 0,
        };
        batch.extend(gone.into_iter().map(|labels| (labels, at_ms, stale)));
        let results = tsdb
            .append(&batch)
            .map_err(|error| RecordError::Write(error.to_string()))?;
        previous.insert(rule.to_string(), current);
        Ok(Written {
            refused: results.iter().filter(|result| result.is_err()).count(),
            ..written
        })
    }

    /// Forgets a rule that stopped (its series go stale on their own).
    pub fn forget(&self, rule: &str) {
        self.previous
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(rule);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::TsdbOptions;
    use crate::tsdb::head::labels;

    #[test]
    fn the_name_is_replaced_rule_labels_win_and_duplicates_fail() {
        let samples = vec![
            (
                labels(&[("__name__", "up"), ("job", "a"), ("env", "x")]),
                1.0,
            ),
            (labels(&[("job", "b")]), 2.0),
        ];
        let rule_labels = BTreeMap::from([
            ("team".to_string(), "db".to_string()),
            ("env".to_string(), String::new()),
        ]);
        let out = output_series("job:up", &rule_labels, samples).expect("records");
        assert_eq!(
            out[0].0,
            labels(&[("__name__", "job:up"), ("job", "a"), ("team", "db")])
        );
        assert_eq!(out[1].1, 2.0);
        let clash = vec![
            (labels(&[("__name__", "a"), ("job", "x")]), 1.0),
            (labels(&[("__name__", "b"), ("job", "x")]), 2.0),
        ];
        assert!(matches!(
            output_series("merged", &BTreeMap::new(), clash),
            Err(RecordError::DuplicateLabelSet { .. })
        ));
    }

    #[test]
    fn a_series_that_disappears_gets_a_staleness_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tsdb = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
        let recorder = Recorder::default();
        let (a, b) = (
            labels(&[("__name__", "r"), ("job", "a")]),
            labels(&[("__name__", "r"), ("job", "b")]),
        );
        recorder
            .write(&tsdb, "r", 1_000, vec![(a.clone(), 1.0), (b.clone(), 2.0)])
            .expect("write");
        let written = recorder
            .write(&tsdb, "r", 2_000, vec![(a.clone(), 3.0)])
            .expect("write");
        assert_eq!(
            written,
            Written {
                samples: 1,
                stale_markers: 1,
                refused: 0
            }
        );
        let selected = tsdb.select(&[], 0, 3_000);
        let b_samples = &selected
            .iter()
            .find(|(labels, _)| *labels == b)
            .expect("b")
            .1;
        assert_eq!(b_samples.len(), 2);
        assert_eq!(b_samples[1].1.to_bits(), crate::promql::STALE_NAN_BITS);
        // the same tick again (a restart) is refused, not an error
        let again = recorder
            .write(&tsdb, "r", 2_000, vec![(a, 4.0)])
            .expect("write");
        assert_eq!(again.refused, 1);
    }
}
