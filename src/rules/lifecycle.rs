//! The lifecycle step of a rule's alerts at a tick: each group (or series) observed steps
//! its [`AlertState`](super::alert_state::AlertState) — groups absent within `group_ttl`
//! count 0, expired ones resolve as "group gone", a metric rule's vanished series is a
//! false condition — and so does the `expect_matches` alarm. Transitions go to the
//! history; what is to be announced comes back as message lines, for
//! [`super::compose`] to turn into messages. No IO besides the history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::alert_state::{Notice, ResolveReason, Timing, Transition};
use super::observe::Observation;
use super::rule::LoadedRule;
use super::state_store::{GroupState, RuleState, STATE_VERSION};
use crate::notify::history::History;
use crate::notify::message::{AlertLine, MessageKind};

/// Whether a silence matches an alert with these group labels.
pub type Silenced<'a> = dyn Fn(&BTreeMap<String, String>) -> bool + 'a;

/// Steps every alert of the rule with what `tick` observed; records transitions in
/// `history`; returns what is to be announced. `silenced` tells whether a silence
/// matches an alert of these group labels. A log rule's groups seen within
/// `group_ttl` count 0 when absent and resolve as "group gone" past it; a metric
/// rule's absent series is a false condition, and is forgotten once inactive.
pub fn advance(
    rule: &LoadedRule,
    tick: DateTime<Utc>,
    observations: Vec<Observation>,
    state: &mut RuleState,
    history: &History,
    silenced: &Silenced<'_>,
) -> Vec<(MessageKind, AlertLine)> {
    state.version = STATE_VERSION;
    let key = |labels: &BTreeMap<String, String>| {
        labels
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    // (labels, value, whether the series is there, a spike rule's reference)
    type Seen = (BTreeMap<String, String>, f64, bool, Option<f64>);
    let mut observed: BTreeMap<String, Seen> = observations
        .into_iter()
        .map(|seen| {
            (
                key(&seen.labels),
                (seen.labels, seen.value, true, seen.reference),
            )
        })
        .collect();
    let ttl = chrono::Duration::from_std(rule.group_ttl).unwrap_or_default();
    for (group_key, group) in &state.alerts {
        if !rule.zero_fills() {
            // an absent series: the condition is false
            observed
                .entry(group_key.clone())
                .or_insert_with(|| (group.labels.clone(), 0.0, false, None));
        } else if group.last_seen.is_some_and(|seen| tick - seen <= ttl) {
            // groups seen within group_ttl but absent now count 0 (a flatline fires)
            observed
                .entry(group_key.clone())
                .or_insert_with(|| (group.labels.clone(), 0.0, true, None));
        }
    }
    let mut notices: Vec<(MessageKind, AlertLine)> = Vec::new();
    let mut ended = Vec::new();
    for (group_key, (labels, value, present, reference)) in &observed {
        let group = state.alerts.entry(group_key.clone()).or_default();
        group.labels = labels.clone();
        group.value = *value;
        group.reference = *reference;
        let seen = if rule.zero_fills() {
            *value > 0.0
        } else {
            *present
        };
        if seen {
            group.last_seen = Some(tick);
        }
        let silenced = silenced(labels);
        let holds = *present && rule.condition(*value, *reference);
        if holds {
            group.firing_value = Some(*value);
            group.firing_reference = *reference;
        }
        let step = group.alert.step(tick, holds, silenced, &rule.timing);
        if let Some(transition) = step.transition {
            record_transition(history, rule, tick, group, transition, silenced);
        }
        if let Some(notice) = step.notice {
            notices.push(notice_line(notice, tick, group));
        }
        if !present && group.alert.phase == super::alert_state::Phase::Inactive {
            ended.push(group_key.clone());
        }
    }
    for group_key in ended {
        state.alerts.remove(&group_key);
    }
    // groups gone past their ttl: resolve and forget them
    let expired: Vec<String> = state
        .alerts
        .iter()
        .filter(|(group_key, group)| {
            !observed.contains_key(*group_key)
                && group.last_seen.is_none_or(|seen| tick - seen > ttl)
        })
        .map(|(group_key, _)| group_key.clone())
        .collect();
    for group_key in expired {
        if let Some(mut group) = state.alerts.remove(&group_key) {
            let silenced = silenced(&group.labels);
            group.value = 0.0;
            let step = group
                .alert
                .resolve(tick, ResolveReason::GroupGone, silenced);
            if let Some(transition) = step.transition {
                record_transition(history, rule, tick, &group, transition, silenced);
            }
            if let Some(notice) = step.notice {
                notices.push(notice_line(notice, tick, &group));
            }
        }
    }
    if rule.new_term.is_some() {
        // one notification per new term: its resolution at the next tick is recorded in
        // the history, not announced
        notices.retain(|(kind, _)| *kind != MessageKind::Resolved);
    }
    notices
}

/// Steps the `expect_matches` alert of `rule` at `tick` (firing while its query has
/// matched nothing for the period since the last match, or since the rule loaded at
/// `loaded_at`; resolved at its next match) and returns what is
/// to be announced. Without `expect_matches` only the last match is kept.
pub fn expect_matches(
    rule: &LoadedRule,
    tick: DateTime<Utc>,
    matched: bool,
    state: &mut RuleState,
    history: &History,
    (loaded_at, silenced): (DateTime<Utc>, &Silenced<'_>),
) -> Vec<(MessageKind, AlertLine)> {
    if matched {
        state.last_match = Some(tick);
    }
    let Some(period) = rule.expect_matches else {
        state.no_matches = None;
        return Vec::new();
    };
    let quiet = super::dead_query::quiet_too_long(period, tick, state.last_match, loaded_at);
    let group = state.no_matches.get_or_insert_with(|| GroupState {
        labels: super::dead_query::no_matches_labels(),
        ..GroupState::default()
    });
    let silenced = silenced(&group.labels);
    let timing = Timing {
        repeat_interval: rule.timing.repeat_interval,
        ..Timing::default()
    };
    let step = group.alert.step(tick, quiet, silenced, &timing);
    if let Some(transition) = step.transition {
        record_transition(history, rule, tick, group, transition, silenced);
    }
    step.notice
        .map(|notice| notice_line(notice, tick, group))
        .into_iter()
        .collect()
}

/// Resolves every alert of `state` at `now` as "rule changed" (the rule was removed, or
/// its `group_by` changed); records the transitions and returns what is to be announced.
pub fn resolve_all(
    rule: &LoadedRule,
    state: RuleState,
    now: DateTime<Utc>,
    history: &History,
    silenced: &Silenced<'_>,
) -> Vec<(MessageKind, AlertLine)> {
    let mut resolved = Vec::new();
    for (_, mut group) in state.alerts {
        let silenced = silenced(&group.labels);
        group.value = 0.0;
        let step = group
            .alert
            .resolve(now, ResolveReason::RuleChanged, silenced);
        if let Some(transition) = step.transition {
            record_transition(history, rule, now, &group, transition, silenced);
        }
        if let Some(notice) = step.notice {
            resolved.push(notice_line(notice, now, &group));
        }
    }
    resolved
}

/// Records a transition of one alert in the history.
fn record_transition(
    history: &History,
    rule: &LoadedRule,
    at: DateTime<Utc>,
    group: &GroupState,
    transition: Transition,
    silenced: bool,
) {
    let (from, to, reason) = match transition {
        Transition::Pending => ("inactive", "pending", None),
        Transition::PendingCancelled => ("pending", "inactive", None),
        // straight from inactive when it became active and firing at once (as the
        // `expect_matches` alarm does whatever the rule's `for`)
        Transition::Firing => (
            if group.alert.active_since == group.alert.firing_since {
                "inactive"
            } else {
                "pending"
            },
            "firing",
            None,
        ),
        Transition::Resolved(reason) => ("firing", "resolved", Some(reason.name())),
    };
    history.record(serde_json::json!({
        "@timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "type": "transition",
        "rule": rule.name,
        "labels": group.labels,
        // as `alert_labels` has it: a series' own `severity` (an SLO's page) first
        "severity": group.labels.get("severity").map(String::as_str)
            .or(rule.file.severity.as_deref())
            .unwrap_or("warning"),
        "from": from,
        "to": to,
        "reason": reason,
        "value": group.value,
        "silenced": silenced,
        "message": format!("{} {} → {}{}", rule.name, from, to, labels_suffix(&group.labels)),
    }));
}

/// The message line of `notice`; a resolve reports the last value while firing.
fn notice_line(notice: Notice, at: DateTime<Utc>, group: &GroupState) -> (MessageKind, AlertLine) {
    let line = |fired_for: Option<std::time::Duration>, reason: Option<String>| AlertLine {
        labels: group.labels.clone(),
        value: match notice {
            Notice::Resolved { .. } => group.firing_value.unwrap_or(group.value),
            Notice::Firing | Notice::Repeat => group.value,
        },
        reference: match notice {
            Notice::Resolved { .. } if group.firing_value.is_some() => group.firing_reference,
            _ => group.reference,
        },
        starts_at: match fired_for {
            Some(fired_for) => Some(at - chrono::Duration::from_std(fired_for).unwrap_or_default()),
            None => group.alert.firing_since,
        },
        fired_for,
        reason,
    };
    match notice {
        Notice::Firing => (MessageKind::Firing, line(None, None)),
        Notice::Repeat => (MessageKind::Repeat, line(None, None)),
        Notice::Resolved { reason, fired_for } => (
            MessageKind::Resolved,
            line(
                Some(fired_for),
                (reason != ResolveReason::Condition).then(|| reason.name().to_string()),
            ),
        ),
    }
}

fn labels_suffix(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!(" {{{}}}", pairs.join(", "))
}
