//! A rule ready to run: its file, what it watches, its schedule and its timing, all
//! checked. Only [`super::check`] builds one ([`LoadedRule::load`], [`LoadedRule::parse`]),
//! so every way in — the loader, the rules API, `lookout check`, backtests — accepts and
//! refuses the same files.

use std::time::Duration;

use super::alert_state::Timing;
use super::model::{RuleFile, Threshold, ThresholdOp};
use super::template::Template;
use crate::scheduler::schedule::Schedule;

/// A rule ready to run.
pub struct LoadedRule {
    pub name: String,
    pub file: RuleFile,
    pub source: RuleSource,
    pub schedule: Schedule,
    /// A log rule's counting window.
    pub window: Duration,
    /// Without one, every output series of a metric rule fires (as in Prometheus).
    pub threshold: Option<Threshold>,
    pub timing: Timing,
    pub summary: Option<Template>,
    pub description: Option<Template>,
    /// PromQL templates evaluated when an alert fires.
    pub context: Vec<Template>,
    pub max_delay: Duration,
    pub group_ttl: Duration,
    /// Alert when the query has matched nothing for this long (`expect_matches`).
    pub expect_matches: Option<Duration>,
    /// A log rule's value when it is not the count (`aggregate`, `ratio`).
    pub measure: Option<super::measure::Measure>,
    /// A spike rule's comparison with its reference window (`spike`).
    pub spike: Option<super::spike::Spike>,
    /// A new-term rule's fields and lookback (`new_term`).
    pub new_term: Option<super::new_term::config::NewTermSettings>,
    /// A `new_pattern` rule's settings and the templates it has seen.
    pub new_pattern: Option<super::new_pattern::NewPattern>,
}

/// What a rule watches.
pub enum RuleSource {
    /// Counts of a log query (Lucene string or DSL object) in an index.
    Logs {
        index: String,
        query: serde_json::Value,
    },
    /// The output series of a PromQL expression.
    Metrics { expr: crate::promql::Expr },
}

impl LoadedRule {
    /// Whether an observed value meets the condition (always, without a threshold).
    pub fn holds(&self, count: f64) -> bool {
        let Some(threshold) = &self.threshold else {
            return true;
        };
        let value = threshold.value;
        match threshold.op {
            ThresholdOp::Greater => count > value,
            ThresholdOp::GreaterOrEqual => count >= value,
            ThresholdOp::Less => count < value,
            ThresholdOp::LessOrEqual => count <= value,
            ThresholdOp::Equal => count == value,
            ThresholdOp::NotEqual => count != value,
        }
    }

    /// Whether an observed value (with its `reference`, for a spike rule) meets the
    /// rule's condition: the spike's for a spike rule, else the threshold's.
    pub fn condition(&self, value: f64, reference: Option<f64>) -> bool {
        match &self.spike {
            Some(spike) => spike.holds(value, reference),
            None => self.holds(value),
        }
    }

    /// The threshold as messages and `$threshold` show it (a spike rule: its condition,
    /// "3× up against 1h before, min_count 10").
    pub fn threshold_text(&self) -> String {
        if let Some(spike) = &self.spike {
            return spike.condition_text();
        }
        let Some(threshold) = &self.threshold else {
            return String::new();
        };
        let op = match threshold.op {
            ThresholdOp::Greater => ">",
            ThresholdOp::GreaterOrEqual => ">=",
            ThresholdOp::Less => "<",
            ThresholdOp::LessOrEqual => "<=",
            ThresholdOp::Equal => "==",
            ThresholdOp::NotEqual => "!=",
        };
        format!("{op} {}", threshold.value)
    }

    /// A log rule as the `log_matches` series see it.
    pub fn saved_query(&self) -> Option<super::log_matches::SavedQuery> {
        match &self.source {
            RuleSource::Logs { index, query } => Some(super::log_matches::SavedQuery {
                name: self.name.clone(),
                index: index.clone(),
                query: query.clone(),
                group_by: self.file.group_by.clone(),
                window: self.window,
                group_ttl: self.group_ttl,
                measure: self.measure.clone(),
            }),
            RuleSource::Metrics { .. } => None,
        }
    }

    /// Whether groups that fall silent count 0 until their ttl (log rules) rather than
    /// ending with their series (metric rules). A measured log rule (`aggregate`,
    /// `ratio`) does not: a group without a value is absent, as a metric rule's series.
    pub fn zero_fills(&self) -> bool {
        matches!(self.source, RuleSource::Logs { .. }) && self.measure.is_none()
    }
}
