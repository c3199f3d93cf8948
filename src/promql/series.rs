//! The series and label APIs' selection (`/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/{name}/values` with `match[]`): the label sets the selectors name with
//! samples in a time range, over every storage PromQL reads (the TSDB, `log_matches`).
//!
//! A storage lists its series through [`SeriesSource`], which need not read their
//! samples; the answer is a set, in label order.

use std::collections::BTreeSet;

use super::{Error, selector_matchers};
use crate::tsdb::head::{Labels, Matcher};

/// A storage whose series the series API lists.
pub trait SeriesSource {
    /// The label sets of the series matching every matcher with samples in
    /// `[start, end]` (ms); a storage that can fail says why.
    fn series(&self, matchers: &[Matcher], start: i64, end: i64) -> Result<Vec<Labels>, Error>;
}

impl SeriesSource for crate::tsdb::Tsdb {
    fn series(&self, matchers: &[Matcher], start: i64, end: i64) -> Result<Vec<Labels>, Error> {
        Ok(self
            .select(matchers, start, end)
            .into_iter()
            .map(|(labels, _)| labels)
            .collect())
    }
}

/// Why [`matching_series`] has no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeriesError {
    /// A `match[]` selector does not parse.
    #[error("{0}")]
    Selector(Error),
    /// A storage failed to list its series.
    #[error("{0}")]
    Source(Error),
}

/// The label sets of the series the `selectors` name (each read from every source in
/// turn) with samples in `[start, end]` (ms).
pub fn matching_series(
    sources: &[&dyn SeriesSource],
    selectors: &[&str],
    start: i64,
    end: i64,
) -> Result<BTreeSet<Labels>, SeriesError> {
    let mut found = BTreeSet::new();
    for selector in selectors {
        let groups = selector_matchers(selector).map_err(SeriesError::Selector)?;
        for group in groups {
            for source in sources {
                found.extend(
                    source
                        .series(&group, start, end)
                        .map_err(SeriesError::Source)?,
                );
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every selection with its one series, or fails.
    struct Fixed(Result<Labels, Error>);

    impl SeriesSource for Fixed {
        fn series(&self, _: &[Matcher], _: i64, _: i64) -> Result<Vec<Labels>, Error> {
            self.0.clone().map(|labels| vec![labels])
        }
    }

    #[test]
    fn every_source_answers_and_the_set_is_deduplicated() {
        let up = crate::tsdb::head::labels(&[("__name__", "up")]);
        let logs = crate::tsdb::head::labels(&[("__name__", "log_matches")]);
        let (first, second) = (Fixed(Ok(up.clone())), Fixed(Ok(logs.clone())));
        let sources: [&dyn SeriesSource; 2] = [&first, &second];
        let found =
            matching_series(&sources, &["up", "log_matches"], 0, 1).expect("valid selectors");
        assert_eq!(found, BTreeSet::from([up, logs]));
    }

    #[test]
    fn a_bad_selector_and_a_failing_source_are_told_apart() {
        let failing = Fixed(Err(Error::Execution("index gone".into())));
        let sources: [&dyn SeriesSource; 1] = [&failing];
        assert!(matches!(
            matching_series(&sources, &["rate("], 0, 1),
            Err(SeriesError::Selector(_))
        ));
        assert!(matches!(
            matching_series(&sources, &["up"], 0, 1),
            Err(SeriesError::Source(_))
        ));
    }
}
