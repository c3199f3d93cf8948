//! The evaluator's state: the window of steps being evaluated (the query's, or a
//! subquery's), the limits (held samples, deadline, cancellation) and the annotations.
//! The node kinds are evaluated over it elsewhere: the tree walk and selectors in
//! `eval`, operators in `binary`, calls in `functions`, aggregations in `aggregate`.
//! Those reach their operands through `Evaluator::evaluate` (the recursion of a tree
//! walk); none of them imports another.

use std::time::{Instant, SystemTime};

use promql_parser::parser::AtModifier;

use super::value::{Sample, without_name};
use super::{Annotations, EngineOptions, Error, Storage};

/// Loops over steps look at the deadline every this many steps (a subquery at `1ms`
/// has millions of them).
pub(super) const DEADLINE_EVERY: usize = 4096;

/// One query's evaluation: what it reads, its options and limits, and the window of
/// steps the node being evaluated covers (`start`, `end`, `interval`, changed by
/// subqueries).
pub(super) struct Evaluator<'a> {
    pub(super) storage: &'a dyn Storage,
    pub options: &'a EngineOptions,
    pub text: &'a str,
    pub start: i64,
    pub end: i64,
    pub interval: i64,
    query_start: i64,
    query_end: i64,
    query_step: i64,
    deadline: Instant,
    cancel: Option<tokio_util::sync::CancellationToken>,
    pub(super) samples: usize,
    pub annotations: Annotations,
}

impl<'a> Evaluator<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        storage: &'a dyn Storage,
        options: &'a EngineOptions,
        text: &'a str,
        start: i64,
        end: i64,
        interval: i64,
        deadline: Instant,
    ) -> Evaluator<'a> {
        Evaluator {
            storage,
            options,
            text,
            start,
            end,
            interval,
            query_start: start,
            query_end: end,
            query_step: if start == end { 0 } else { interval },
            deadline,
            cancel: None,
            samples: 0,
            annotations: Annotations::default(),
        }
    }

    /// Stops at the next deadline check once `cancel` is cancelled (the client left).
    pub fn cancelled_by(self, cancel: &tokio_util::sync::CancellationToken) -> Evaluator<'a> {
        Evaluator {
            cancel: Some(cancel.clone()),
            ..self
        }
    }

    /// Number of steps of the current window.
    pub fn steps(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            ((self.end - self.start) / self.interval) as usize + 1
        }
    }

    /// Time of step `i`.
    pub fn time(&self, i: usize) -> i64 {
        self.start + i as i64 * self.interval
    }

    /// The query's own start, end and step (ms), whatever subquery is being evaluated.
    pub fn query_window(&self) -> (i64, i64, i64) {
        (self.query_start, self.query_end, self.query_step)
    }

    /// Whether this evaluation is a range query (more than its one instant).
    pub fn is_range_query(&self) -> bool {
        self.query_start != self.query_end
    }

    pub fn check_deadline(&self, what: &'static str) -> Result<(), Error> {
        if Instant::now() > self.deadline {
            return Err(Error::Timeout(what));
        }
        if self
            .cancel
            .as_ref()
            .is_some_and(tokio_util::sync::CancellationToken::is_cancelled)
        {
            return Err(Error::Canceled(what));
        }
        Ok(())
    }

    /// Counts `n` more samples held for the query against `max_samples`.
    pub fn hold(&mut self, n: usize) -> Result<(), Error> {
        self.samples += n;
        if self.samples > self.options.max_samples {
            return Err(Error::TooManySamples("query execution"));
        }
        Ok(())
    }

    /// Marks `__name__` for removal (or removes it now without delayed removal).
    pub fn drop_name(&self, sample: &mut Sample) {
        if self.options.delayed_name_removal {
            sample.drop_name = true;
        } else {
            sample.labels = without_name(&sample.labels);
        }
    }

    /// The 1-based `line:column` where `needle` first occurs in the query (annotations
    /// carry a position; the parser crate keeps none, so it is found in the text).
    pub fn position_of(&self, needle: &str) -> String {
        let offset = self.text.find(needle).unwrap_or(0);
        let (line, column) = super::position(self.text, offset);
        format!("{line}:{column}")
    }

    /// Resolves an `@` modifier to milliseconds (`start()`/`end()` are the query's).
    pub fn at_time(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(time)) => Some(system_time_ms(*time)),
        }
    }
}

fn system_time_ms(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_millis() as i64,
        Err(before) => -(before.duration().as_millis() as i64),
    }
}
