//! What the API shows of the running rules: each rule's last evaluation and active
//! alerts ([`RuleStatus`]), its view ([`RuleView`]), and what keeps alerting from
//! working (the heartbeat's problems).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::RuleManager;
use crate::rules::rule::{LoadedRule, RuleSource};

/// How a rule's last evaluation went, and its alerts then (for `/api/v1/rules` and
/// `/api/v1/alerts`).
#[derive(Debug, Clone, Default)]
pub struct RuleStatus {
    pub last_evaluation: Option<DateTime<Utc>>,
    pub evaluation_seconds: f64,
    pub last_error: Option<String>,
    /// Active (pending or firing) alerts: labels, phase, since, value.
    pub alerts: Vec<ActiveAlert>,
    /// When the running version of the rule was loaded.
    pub loaded_at: Option<DateTime<Utc>>,
    /// Evaluations of the running version.
    pub evaluations_since_load: u64,
    /// The last tick of the running version at which its query matched anything.
    pub last_match: Option<DateTime<Utc>>,
}

impl RuleStatus {
    /// Evaluated since it loaded, and its query has never matched anything.
    pub fn never_matched(&self) -> bool {
        self.evaluations_since_load > 0 && self.last_match.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct ActiveAlert {
    pub labels: BTreeMap<String, String>,
    pub firing: bool,
    pub active_since: Option<DateTime<Utc>>,
    pub value: f64,
    /// `summary`, `description` and `runbook_url`, rendered for this alert.
    pub annotations: BTreeMap<String, String>,
}

/// One running rule, as the API shows it.
#[derive(Debug, Clone)]
pub struct RuleView {
    pub name: String,
    pub query: serde_json::Value,
    pub for_seconds: f64,
    pub labels: BTreeMap<String, String>,
    pub summary: Option<String>,
    pub severity: Option<String>,
    pub status: RuleStatus,
    /// The next tick of its schedule.
    pub next_evaluation: Option<DateTime<Utc>>,
    /// Seconds between its next two ticks.
    pub interval_seconds: f64,
    /// What it names that the data does not have (see [`crate::rules::dead_query::warnings`]).
    pub warnings: Vec<String>,
    /// A recording rule's metric name (`record`).
    pub record: Option<String>,
}

impl RuleManager {
    pub(super) fn lock_statuses(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RuleStatus>> {
        self.statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn record_status(
        &self,
        rule: &str,
        tick: DateTime<Utc>,
        took: Duration,
        error: Option<String>,
    ) {
        let mut statuses = self.lock_statuses();
        let status = statuses.entry(rule.to_string()).or_default();
        status.last_evaluation = Some(tick);
        status.evaluation_seconds = took.as_secs_f64();
        status.last_error = error;
    }

    /// The running rules with their last evaluation and active alerts, and with their
    /// warnings when `with_warnings` (which reads the index's fields and the TSDB).
    pub fn rules(&self, with_warnings: bool) -> Vec<RuleView> {
        let (mut views, loaded) = self.rule_views();
        if with_warnings {
            // outside the locks: evaluations must not wait for this
            for (view, (rule, text)) in views.iter_mut().zip(loaded) {
                view.warnings = crate::rules::dead_query::warnings(
                    &rule,
                    &text,
                    &self.origin(&view.name),
                    &self.sources,
                );
            }
        }
        views
    }

    /// [`RuleManager::rules`] with warnings, worked out on a blocking thread: they read
    /// the index's fields and the TSDB, and the runtime's threads run the rule ticks.
    /// Without warnings if that thread panicked.
    pub async fn rules_with_warnings(self: &Arc<Self>) -> Vec<RuleView> {
        let manager = Arc::clone(self);
        match tokio::task::spawn_blocking(move || manager.rules(true)).await {
            Ok(views) => views,
            Err(error) => {
                tracing::error!(%error, "working out the rules' warnings failed");
                self.rules(false)
            }
        }
    }

    /// The running rules' views (without warnings), with each rule and its text.
    #[allow(clippy::type_complexity)]
    fn rule_views(&self) -> (Vec<RuleView>, Vec<(Arc<LoadedRule>, String)>) {
        let running = self.lock_running();
        let statuses = self.lock_statuses();
        let now = Utc::now();
        let loaded = running
            .values()
            .map(|running| (Arc::clone(&running.rule), running.text.clone()))
            .collect();
        let views = running
            .iter()
            .map(|(name, running)| RuleView {
                interval_seconds: running
                    .rule
                    .schedule
                    .next_after(now)
                    .and_then(|next| Some((next, running.rule.schedule.next_after(next)?)))
                    .map_or(0.0, |(next, after)| (after - next).as_seconds_f64()),
                warnings: Vec::new(),
                record: running.rule.file.record.clone(),
                name: name.clone(),
                query: match &running.rule.source {
                    RuleSource::Logs { query, .. } => query.clone(),
                    RuleSource::Metrics { expr } => expr.text.clone().into(),
                },
                for_seconds: running.rule.timing.for_duration.as_secs_f64(),
                labels: running.rule.file.labels.clone(),
                summary: running.rule.file.summary.clone(),
                severity: running.rule.file.severity.clone(),
                status: statuses.get(name).cloned().unwrap_or_default(),
                next_evaluation: running.rule.schedule.next_after(now),
            })
            .collect();
        (views, loaded)
    }

    /// What keeps alerting from working now, one reason each (empty: healthy), for the
    /// heartbeat: a rule whose due tick is more than its `max_delay` plus `tolerance`
    /// overdue (a stalled scheduler, a hung evaluation), or a delivery that gave up
    /// within the last three `tolerance`s (at least ten minutes).
    pub fn alerting_problems(&self, tolerance: Duration) -> Vec<String> {
        let now = Utc::now();
        let mut problems = Vec::new();
        {
            let running = self.lock_running();
            let statuses = self.lock_statuses();
            for (name, running) in running.iter() {
                let status = statuses.get(name);
                let Some(since) =
                    status.and_then(|status| status.last_evaluation.or(status.loaded_at))
                else {
                    continue;
                };
                let Some(due) = running.rule.schedule.next_after(since) else {
                    continue;
                };
                let allowed = chrono::Duration::from_std(running.rule.max_delay + tolerance)
                    .unwrap_or(chrono::Duration::MAX);
                if now > due + allowed {
                    problems.push(format!(
                        "rule `{name}` is late: its tick at {} has not been evaluated",
                        due.to_rfc3339()
                    ));
                }
            }
        }
        if self
            .dispatcher
            .gave_up_within((tolerance * 3).max(Duration::from_secs(600)))
        {
            problems
                .push("a notification was given up recently (its delivery deadline passed)".into());
        }
        problems
    }
}
