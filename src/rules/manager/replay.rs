//! Evaluations that send, record and save nothing, through the scheduler's own counting,
//! lifecycle and message code. A dry run evaluates a rule once, from its persisted state
//! and with silences (`_dry_run`). A replay evaluates it at past ticks from a fresh state,
//! without silences: backtests (`lookout rules test`, `_backtest`) and rule unit tests
//! (`--fixtures`) are replays.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{EvaluationError, RuleManager};
use crate::notify::history::History;
use crate::notify::message::AlertMessage;
use crate::rules::compose::{alert_labels, annotations};
use crate::rules::rule::LoadedRule;
use crate::rules::state_store::RuleState;

/// One evaluation of a replay.
pub struct ReplayStep {
    pub at: DateTime<Utc>,
    /// The transitions of this evaluation, as the history records them.
    pub transitions: Vec<serde_json::Value>,
    /// What would have been sent: notifier and message.
    pub messages: Vec<(String, AlertMessage)>,
    /// The alerts firing after it.
    pub firing: Vec<FiringAlert>,
}

/// A firing alert as `promtool test rules` compares it.
#[derive(Debug, Clone, PartialEq)]
pub struct FiringAlert {
    /// Its labels: the group's or series', the rule's `labels`, `alertname`, `severity`.
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description` and `runbook_url`, rendered.
    pub annotations: BTreeMap<String, String>,
    pub value: f64,
}

impl RuleManager {
    /// What `rule` would do if it were evaluated at `at`: the count of each group, the
    /// phase each alert is in and would move to (from the rule's persisted state), and
    /// the messages it would send — without sending, recording or saving anything.
    pub async fn dry_run(
        self: &Arc<Self>,
        rule: &Arc<LoadedRule>,
        at: DateTime<Utc>,
    ) -> Result<serde_json::Value, EvaluationError> {
        self.refresh_for(rule).await;
        let observations = if rule.new_term.is_some() {
            // a dry run leaves the running set alone: its own set, built from the lookback
            let (sources, dry) = (Arc::clone(&self.sources), Arc::clone(rule));
            tokio::task::spawn_blocking(move || {
                sources.observe_with(&dry, at, &crate::rules::new_term::NewTerms::detached())
            })
            .await
            .map_err(EvaluationError::Replay)??
        } else {
            self.observe(rule, at).await?
        };
        let mut state = self.states.load(&rule.name);
        let before = state.clone();
        let notices = crate::rules::lifecycle::advance(
            rule,
            at,
            observations,
            &mut state,
            &History::disabled(),
            &self.silenced(rule),
        );
        let phase = |state: &RuleState, key: &str| {
            state
                .alerts
                .get(key)
                .map_or(crate::rules::alert_state::Phase::Inactive, |group| {
                    group.alert.phase
                })
        };
        let groups: Vec<serde_json::Value> = state
            .alerts
            .iter()
            .map(|(key, group)| {
                let mut shown = serde_json::json!({
                    "labels": group.labels,
                    "count": group.value,
                    "value": group.value,
                    "condition": rule.condition(group.value, group.reference),
                    "state": phase(&before, key),
                    "would_become": group.alert.phase,
                });
                if rule.spike.is_some() {
                    // a spike rule's value now against its reference window
                    shown["reference"] = group.reference.unwrap_or(0.0).into();
                    shown["spike_ratio"] =
                        crate::template::spike_ratio(group.value, group.reference).into();
                }
                shown
            })
            .chain(
                // groups that expire at this evaluation
                before
                    .alerts
                    .iter()
                    .filter(|(key, _)| !state.alerts.contains_key(*key))
                    .map(|(_, group)| {
                        serde_json::json!({
                            "labels": group.labels,
                            "count": 0,
                            "condition": false,
                            "state": group.alert.phase,
                            "would_become": "inactive",
                            "reason": "group gone",
                        })
                    }),
            )
            .collect();
        let mut messages = Vec::new();
        for (destination, message) in self.messages(rule, at, notices).await? {
            messages.push(serde_json::json!({
                "notifier": destination.notifier,
                "route": destination.route,
                "group_key": destination.group_key,
                "kind": message.kind.name(),
                "alerts": message.alerts.len(),
                "payload": self.dispatcher.payload_routed(&destination.notifier, &message, Some(&destination)),
            }));
        }
        let start = at - chrono::Duration::from_std(rule.window).unwrap_or_default();
        Ok(serde_json::json!({
            "rule": rule.name,
            "at": at.to_rfc3339(),
            "window": {"from": start.to_rfc3339(), "to": at.to_rfc3339()},
            "reference_window": rule.spike.as_ref().map(|spike| {
                let end = spike.reference_tick(at);
                let start = end - chrono::Duration::from_std(rule.window).unwrap_or_default();
                serde_json::json!({"from": start.to_rfc3339(), "to": end.to_rfc3339()})
            }),
            "threshold": rule.threshold_text(),
            "groups": groups,
            "messages": messages,
        }))
    }

    /// Replays `rule` at each of `ticks` from a fresh state, through the same counting,
    /// lifecycle and message code as the scheduler, without silences, and without
    /// sending, recording or saving anything (backtests and rule unit tests); blocking.
    pub fn replay(
        &self,
        rule: &LoadedRule,
        ticks: &[DateTime<Utc>],
    ) -> Result<Vec<ReplayStep>, EvaluationError> {
        let mut state = RuleState::default();
        let history = History::in_memory();
        let mut steps = Vec::with_capacity(ticks.len());
        // a replay's new terms are its own: the lookback before its first tick, then its
        // ticks
        let new_terms = crate::rules::new_term::NewTerms::detached();
        for &tick in ticks {
            let observations =
                self.sources
                    .observe_with(rule, tick, &new_terms)
                    .map_err(|error| EvaluationError::ObserveAt {
                        at: tick.to_rfc3339(),
                        error,
                    })?;
            // no silences: a replay shows what the rule does, not what is muted now
            let notices = crate::rules::lifecycle::advance(
                rule,
                tick,
                observations,
                &mut state,
                &history,
                &|_| false,
            );
            let messages = self.composer.compose(rule, tick, notices);
            let firing = state
                .alerts
                .values()
                .filter(|group| group.alert.phase == crate::rules::alert_state::Phase::Firing)
                .map(|group| FiringAlert {
                    labels: alert_labels(rule, &group.labels),
                    annotations: annotations(rule, &group.labels, (group.value, group.reference)),
                    value: group.value,
                })
                .collect();
            steps.push(ReplayStep {
                at: tick,
                transitions: history.take(),
                messages,
                firing,
            });
        }
        Ok(steps)
    }

    /// What `rule` would have done over `[from, to]`: the ticks of its schedule in that
    /// range replayed (see [`RuleManager::replay`]), as the timeline of transitions and
    /// the messages it would have sent.
    pub async fn backtest(
        self: &Arc<Self>,
        rule: Arc<LoadedRule>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<serde_json::Value, EvaluationError> {
        const MAX_TICKS: usize = 100_000;
        let mut ticks = Vec::new();
        let mut next = rule
            .schedule
            .next_after(from - chrono::Duration::milliseconds(1));
        while let Some(tick) = next.filter(|tick| *tick <= to) {
            if ticks.len() == MAX_TICKS {
                return Err(EvaluationError::TooManyTicks {
                    max: MAX_TICKS,
                    from,
                    to,
                });
            }
            ticks.push(tick);
            next = rule.schedule.next_after(tick);
        }
        self.refresh_for(&rule).await;
        // an SLO rule's series exist while it replays, counted as of now (logs indexed
        // since they were last counted included)
        let _registered = match crate::rules::slo::spec_of(&rule) {
            Some(spec) => Some(
                self.sources
                    .slos
                    .register_for_replay(spec)
                    .map_err(EvaluationError::Slo)?,
            ),
            None => None,
        };
        self.sources.slos.recount(&rule.name);
        let manager = Arc::clone(self);
        let (steps, rule) =
            tokio::task::spawn_blocking(move || (manager.replay(&rule, &ticks), rule))
                .await
                .map_err(EvaluationError::Replay)?;
        let steps = steps?;
        let timeline: Vec<serde_json::Value> = steps
            .iter()
            .flat_map(|step| step.transitions.iter().cloned())
            .collect();
        let messages: Vec<serde_json::Value> = steps
            .iter()
            .flat_map(|step| {
                step.messages.iter().map(|(notifier, message)| {
                    let payload = self.dispatcher.payload(notifier, message);
                    serde_json::json!({
                        "at": step.at.to_rfc3339(),
                        "notifier": notifier,
                        "kind": message.kind.name(),
                        "alerts": message.alerts.len(),
                        // Slack's and the console's text; other payloads have none (an
                        // email's `text` is its whole body)
                        "text": match payload.as_ref() {
                            Some(payload) if payload.get("blocks").is_some() => {
                                payload["text"].clone()
                            }
                            _ => message.summary.clone().into(),
                        },
                        "payload": payload,
                    })
                })
            })
            .collect();
        Ok(serde_json::json!({
            "rule": rule.name,
            "from": from.to_rfc3339(),
            "to": to.to_rfc3339(),
            "evaluations": steps.len(),
            "timeline": timeline,
            "messages": messages,
        }))
    }
}
