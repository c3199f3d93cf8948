//! Aggregation groups (Alertmanager's `dispatch/dispatch.go` `aggrGroup`): every alert a
//! route sends joins the group of its receiver, route and group labels, whatever rule
//! raised it. A group is flushed — turned into at most one message per receiver, its
//! firing alerts and after them those resolved since the last flush, as Alertmanager's
//! notification ([`merge`]) — `group_wait` after it was created, then at most once per
//! `group_interval` when something changed, and every `repeat_interval` when nothing did.
//! A route with both timers at 0 (Lookout's default) flushes as soon as a tick hands it
//! an alert, with only that tick's changes: a config without routes sends what it always
//! sent. A waiting route's firing message lists every firing alert of the group, as
//! Alertmanager's does.
//!
//! Why an alert is held back is decided in [`hold`]; what the groups file keeps of an
//! alert is [`stored`].
//!
//! At a flush, an alert muted by an inhibit rule is held back (and shown as inhibited,
//! with the alert that mutes it), and a route inside one of its `mute_time_intervals`
//! (or outside its `active_time_intervals`) sends nothing: the group is tried again each
//! second (or each `group_interval`) and sends what still fires once the mute ends. An
//! alert that resolves before its firing was sent is dropped, resolve and all, as in
//! Alertmanager. Each of these decisions goes to the history (`type: routing`).
//!
//! The groups are saved (`state/routing/groups.json`, written atomically) whenever they
//! change, before the rule state that says their alerts were announced, so an alert held
//! for `group_wait` or a mute survives a restart. What a flush sends is recorded in the
//! outbox before the groups are saved, so a crash in between repeats a notification
//! rather than losing it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use self::hold::{inhibited_by, muted};
use self::merge::merge;
use self::stored::{Held, StoredMessage};
use super::message::{AlertMessage, MessageKind, alert_labels, fingerprint};
use super::route::{Destination, Inhibitor, RouteNode, RouteTree};
use super::time_interval::TimeIntervals;

mod hold;
mod merge;
mod stored;

/// How often a muted group, or one holding inhibited alerts, is tried again at least.
const RECHECK: Duration = Duration::from_secs(1);
/// Groups kept at most; beyond, new groups flush at once rather than wait (bounded
/// memory and state file under an alert storm).
pub const MAX_GROUPS: usize = 10_000;

/// One group's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Group {
    notifier: String,
    route: String,
    group_key: String,
    group_labels: BTreeMap<String, String>,
    /// Firing alerts of the group, by fingerprint.
    alerts: BTreeMap<String, Held>,
    /// Firing alerts whose firing was not sent yet (waiting, muted or inhibited).
    unsent: BTreeSet<String>,
    /// Alerts with a repeat notice since the last flush.
    repeats: BTreeSet<String>,
    /// Resolved since the last flush (their firing was sent).
    resolved: Vec<Held>,
    next_flush: Option<DateTime<Utc>>,
    last_flush: Option<DateTime<Utc>>,
    last_sent: Option<DateTime<Utc>>,
    /// Whether its route waits (`group_wait`, `group_interval`) or repeats on its own.
    #[serde(default)]
    batches: bool,
    /// Fingerprints whose hold (inhibited, muted) is already in the history.
    reported: BTreeSet<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct GroupsState {
    groups: BTreeMap<String, Group>,
    /// Every firing alert routed, by fingerprint: the sources inhibit rules look at.
    firing: BTreeMap<String, BTreeMap<String, String>>,
    seq: u64,
    /// Whether the last save wrote anything a restart needs (so an emptied state is
    /// written once more).
    #[serde(skip)]
    saved_something: bool,
}

impl GroupsState {
    /// Whether a restart needs anything of this state: held or waiting alerts, groups of
    /// routes that wait, or (with inhibit rules) the firing alerts that inhibit. A config
    /// without any of these writes nothing, so its notifications wait for no extra fsync.
    fn worth_saving(&self, inhibits: bool) -> bool {
        (inhibits && !self.firing.is_empty())
            || self.groups.values().any(|group| {
                group.batches
                    || !group.unsent.is_empty()
                    || !group.resolved.is_empty()
                    || group.next_flush.is_some()
            })
    }
}

/// What a flush sends: a message for one destination.
pub struct Flushed {
    pub destination: Destination,
    pub message: AlertMessage,
}

/// What the dispatcher's routing needs from the config.
pub struct Policy<'a> {
    pub inhibitor: &'a Inhibitor,
    pub intervals: &'a TimeIntervals,
    /// The routes, looked up by config path (a path gone since its alert was grouped
    /// flushes at once).
    pub tree: &'a RouteTree,
}

/// The aggregation groups.
pub struct Groups {
    state: std::sync::Mutex<GroupsState>,
    path: Option<PathBuf>,
}

impl Groups {
    /// The groups saved under `state_dir` (none when it cannot be read: a corrupt file is
    /// moved aside).
    pub fn open(state_dir: &std::path::Path) -> Groups {
        let directory = state_dir.join("routing");
        let path = std::fs::create_dir_all(&directory)
            .map_err(|error| tracing::error!(%error, "cannot create state/routing; alert groups are not saved"))
            .ok()
            .map(|()| directory.join("groups.json"));
        let state = path
            .as_ref()
            .and_then(|path| std::fs::read(path).ok().map(|bytes| (path, bytes)))
            .and_then(|(path, bytes)| match serde_json::from_slice(&bytes) {
                Ok(state) => Some(state),
                Err(error) => {
                    tracing::error!(%error, path = %path.display(), "unreadable alert groups; moving them aside");
                    let _ = std::fs::rename(path, path.with_extension("corrupt"));
                    None
                }
            })
            .map(|mut state: GroupsState| {
                // what the file holds is cleared by the next save
                state.saved_something = true;
                state
            })
            .unwrap_or_default();
        Groups {
            state: std::sync::Mutex::new(state),
            path,
        }
    }

    /// Groups that are not saved (tests, dry runs).
    pub fn in_memory() -> Groups {
        Groups {
            state: Default::default(),
            path: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GroupsState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a tick's messages to their groups, then flushes every group that is due
    /// (those of a route that does not wait, at once). `record` records what a flush
    /// sends (in the outbox) before the groups are saved; `event` takes history events.
    pub fn accept<R>(
        &self,
        messages: Vec<(Destination, AlertMessage)>,
        now: DateTime<Utc>,
        policy: &Policy<'_>,
        event: &dyn Fn(Value),
        record: impl FnMut(Flushed) -> Option<R>,
    ) -> Vec<R> {
        let mut state = self.lock();
        for (destination, message) in messages {
            let route = policy.tree.route(&destination.route);
            state.add(destination, message, route, now, event);
        }
        self.flush_locked(&mut state, now, policy, event, record)
    }

    /// Flushes every group that is due at `now` (see [`Groups::accept`]).
    pub fn flush_due<R>(
        &self,
        now: DateTime<Utc>,
        policy: &Policy<'_>,
        event: &dyn Fn(Value),
        record: impl FnMut(Flushed) -> Option<R>,
    ) -> Vec<R> {
        let mut state = self.lock();
        if !state
            .groups
            .values()
            .any(|group| group.next_flush.is_some_and(|at| at <= now))
        {
            return Vec::new();
        }
        self.flush_locked(&mut state, now, policy, event, record)
    }

    fn flush_locked<R>(
        &self,
        state: &mut GroupsState,
        now: DateTime<Utc>,
        policy: &Policy<'_>,
        event: &dyn Fn(Value),
        mut record: impl FnMut(Flushed) -> Option<R>,
    ) -> Vec<R> {
        let due: Vec<String> = state
            .groups
            .iter()
            .filter(|(_, group)| group.next_flush.is_some_and(|at| at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        let mut recorded = Vec::new();
        for id in due {
            let Some(mut group) = state.groups.remove(&id) else {
                continue;
            };
            let route = policy.tree.route(&group.route);
            for flushed in group.flush(route, now, &state.firing, policy, event) {
                recorded.extend(record(flushed));
            }
            if !group.alerts.is_empty() || !group.resolved.is_empty() {
                state.groups.insert(id, group);
            }
        }
        self.save(state, !policy.inhibitor.is_empty());
        recorded
    }

    fn save(&self, state: &mut GroupsState, inhibits: bool) {
        let Some(path) = &self.path else { return };
        let worth = state.worth_saving(inhibits);
        if !worth && !std::mem::take(&mut state.saved_something) {
            return;
        }
        state.saved_something = worth;
        let bytes = serde_json::to_vec(state).expect("groups serialize");
        if let Err(error) = crate::atomic_file::write(path, &bytes) {
            tracing::warn!(%error, "cannot save the alert groups; a restart may lose notifications they hold");
        }
    }

    /// What routing does with an alert with `labels` at `destination` now: its route and
    /// group, whether it is inhibited (and by which alert), muted (by which interval,
    /// until when) or waiting in its group.
    pub fn decision(
        &self,
        destination: &Destination,
        route: Option<&RouteNode>,
        labels: &BTreeMap<String, String>,
        now: DateTime<Utc>,
        policy: &Policy<'_>,
    ) -> Value {
        let state = self.lock();
        let mut decision = json!({
            "notifier": destination.notifier,
            "route": destination.route,
            "group_key": destination.group_key,
            "group_labels": destination.group_labels,
        });
        if let Some(source) = inhibited_by(policy.inhibitor, labels, &state.firing) {
            decision["inhibited_by"] = json!(source);
        }
        if let Some((by, until)) = route.and_then(|route| muted(route, now, policy.intervals)) {
            decision["muted_by"] = json!(by);
            decision["muted_until"] = json!(until.map(|until| until.to_rfc3339()));
        }
        let id = group_id(destination);
        if let Some(group) = state.groups.get(&id) {
            let fingerprint = fingerprint(labels);
            if group.unsent.contains(&fingerprint)
                && let Some(at) = group.next_flush
            {
                decision["waiting_until"] = json!(at.to_rfc3339());
            }
            decision["group_alerts"] = json!(group.alerts.len());
        }
        decision
    }
}

fn group_id(destination: &Destination) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}",
        destination.notifier, destination.route, destination.group_key
    )
}

impl GroupsState {
    /// Adds the alerts of `message` to their group and schedules its flush.
    fn add(
        &mut self,
        destination: Destination,
        message: AlertMessage,
        route: Option<&RouteNode>,
        now: DateTime<Utc>,
        event: &dyn Fn(Value),
    ) {
        let id = group_id(&destination);
        let full = self.groups.len() >= MAX_GROUPS && !self.groups.contains_key(&id);
        let batches = route.is_some_and(RouteNode::batches) && !full;
        let route_repeats = route.and_then(|route| route.repeat_interval).is_some();
        let group = self.groups.entry(id).or_insert_with(|| Group {
            batches: batches || route_repeats,
            notifier: destination.notifier.clone(),
            route: destination.route.clone(),
            group_key: destination.group_key.clone(),
            group_labels: destination.group_labels.clone(),
            ..Group::default()
        });
        let kind = message.kind;
        let mut joined: Vec<String> = Vec::new();
        for (index, line) in message.alerts.iter().enumerate() {
            let labels = alert_labels(&message, line);
            let fingerprint = fingerprint(&labels);
            let mut single = message.clone();
            single.alerts = vec![line.clone()];
            if index > 0 {
                // samples and context belong to the message's first alert
                single.samples.clear();
                single.context.clear();
            }
            self.seq += 1;
            let held = Held {
                seq: self.seq,
                labels: labels.clone(),
                message: StoredMessage::from(&single),
            };
            match kind {
                MessageKind::Firing => {
                    self.firing.insert(fingerprint.clone(), labels);
                    group.alerts.insert(fingerprint.clone(), held);
                    group.unsent.insert(fingerprint.clone());
                    group.reported.remove(&fingerprint);
                    joined.push(fingerprint);
                }
                MessageKind::Repeat => {
                    self.firing.insert(fingerprint.clone(), labels);
                    // its current value (and samples) for the reminder, in its first place;
                    // or an alert announced before the groups existed (or were lost)
                    match group.alerts.get_mut(&fingerprint) {
                        Some(known) => {
                            known.message = held.message;
                            known.labels = held.labels;
                        }
                        None => {
                            group.alerts.insert(fingerprint.clone(), held);
                        }
                    }
                    if !route_repeats {
                        group.repeats.insert(fingerprint);
                    }
                }
                MessageKind::Resolved => {
                    self.firing.remove(&fingerprint);
                    group.alerts.remove(&fingerprint);
                    group.repeats.remove(&fingerprint);
                    group.reported.remove(&fingerprint);
                    if group.unsent.remove(&fingerprint) {
                        event(routing_event(
                            &held,
                            group,
                            "dropped",
                            "resolved before its firing was sent",
                            None,
                        ));
                    } else {
                        group.resolved.push(held);
                    }
                }
            }
        }
        let at = if !batches {
            now
        } else {
            match group.last_flush {
                None => now + to_chrono(route.map_or(Duration::ZERO, |route| route.group_wait)),
                // the next tick of the group's `group_interval` timer, which runs from its
                // last flush (Alertmanager's aggregation group ticker)
                Some(last) => {
                    let every =
                        to_chrono(route.map_or(Duration::ZERO, |route| route.group_interval));
                    if every <= chrono::Duration::zero() || now <= last + every {
                        (last + every).max(now)
                    } else {
                        let (elapsed, period) = (
                            (now - last).num_milliseconds(),
                            every.num_milliseconds().max(1),
                        );
                        let periods = (elapsed + period - 1) / period;
                        last + chrono::Duration::milliseconds(period.saturating_mul(periods))
                    }
                }
            }
        };
        let next = group.next_flush.map_or(at, |scheduled| scheduled.min(at));
        group.next_flush = Some(next);
        if batches && next > now {
            // why it does not go out at once: it waits for its group
            let reason = format!(
                "waits in its group with {} firing until {}",
                group.alerts.len(),
                next.to_rfc3339()
            );
            for fingerprint in joined {
                if let Some(held) = group.alerts.get(&fingerprint) {
                    let detail = json!({"waiting_until": next.to_rfc3339()});
                    event(routing_event(held, group, "grouped", &reason, Some(detail)));
                }
            }
        }
    }
}

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

impl Group {
    /// The messages this group sends at `now` (none while muted); updates what it holds
    /// and when it flushes next.
    fn flush(
        &mut self,
        route: Option<&RouteNode>,
        now: DateTime<Utc>,
        firing: &BTreeMap<String, BTreeMap<String, String>>,
        policy: &Policy<'_>,
        event: &dyn Fn(Value),
    ) -> Vec<Flushed> {
        let batches = route.is_some_and(RouteNode::batches);
        let group_interval = route.map_or(Duration::ZERO, |route| route.group_interval);
        self.last_flush = Some(now);
        self.next_flush = None;
        if let Some((by, until)) = route.and_then(|route| muted(route, now, policy.intervals)) {
            let reason = match until {
                Some(until) => format!("muted by `{by}` until {}", until.to_rfc3339()),
                None => format!("muted by `{by}`"),
            };
            let waiting: Vec<String> = self
                .unsent
                .iter()
                .chain(&self.repeats)
                .filter(|fingerprint| !self.reported.contains(*fingerprint))
                .cloned()
                .collect();
            for fingerprint in waiting {
                if let Some(held) = self.alerts.get(&fingerprint) {
                    let detail = json!({"muted_by": by, "muted_until": until.map(|until| until.to_rfc3339())});
                    event(routing_event(held, self, "muted", &reason, Some(detail)));
                }
                self.reported.insert(fingerprint);
            }
            self.next_flush = Some(now + to_chrono(group_interval.max(RECHECK)));
            return Vec::new();
        }
        let mut inhibited = BTreeSet::new();
        for (fingerprint, held) in &self.alerts {
            if let Some(source) = inhibited_by(policy.inhibitor, &held.labels, firing) {
                inhibited.insert(fingerprint.clone());
                if self.unsent.contains(fingerprint) && !self.reported.contains(fingerprint) {
                    let detail = json!({"inhibited_by": source});
                    let reason = format!("inhibited by {}", super::route::labels_text(&source));
                    event(routing_event(
                        held,
                        self,
                        "inhibited",
                        &reason,
                        Some(detail),
                    ));
                }
            }
        }
        self.reported
            .retain(|fingerprint| inhibited.contains(fingerprint));
        self.reported.extend(
            inhibited
                .iter()
                .filter(|fingerprint| self.unsent.contains(*fingerprint))
                .cloned(),
        );
        let sendable = |fingerprint: &String| !inhibited.contains(fingerprint);
        let new: Vec<String> = self
            .unsent
            .iter()
            .filter(|f| sendable(f))
            .cloned()
            .collect();
        let all: Vec<String> = self
            .alerts
            .keys()
            .filter(|f| sendable(f))
            .cloned()
            .collect();
        let repeat_due = route
            .and_then(|route| route.repeat_interval)
            .zip(self.last_sent)
            .is_some_and(|(every, last)| now >= last + to_chrono(every));
        let mut out: Vec<(MessageKind, Vec<&Held>)> = Vec::new();
        let held = |fingerprints: &[String]| -> Vec<&Held> {
            let mut list: Vec<&Held> = fingerprints
                .iter()
                .filter_map(|fingerprint| self.alerts.get(fingerprint))
                .collect();
            list.sort_by_key(|held| held.seq);
            list
        };
        let resolved: Vec<&Held> = self.resolved.iter().collect();
        let mut sent_firing: Vec<String> = Vec::new();
        if batches {
            if !new.is_empty() || !resolved.is_empty() {
                if !all.is_empty() {
                    out.push((MessageKind::Firing, held(&all)));
                    sent_firing = new.clone();
                }
            } else if (!self.repeats.is_empty() || repeat_due) && !all.is_empty() {
                out.push((MessageKind::Repeat, held(&all)));
            }
        } else {
            if !new.is_empty() {
                out.push((MessageKind::Firing, held(&new)));
                sent_firing = new.clone();
            }
            let repeats: Vec<String> = if repeat_due {
                all.iter()
                    .filter(|fingerprint| !new.contains(fingerprint))
                    .cloned()
                    .collect()
            } else {
                self.repeats
                    .iter()
                    .filter(|fingerprint| sendable(fingerprint) && !new.contains(fingerprint))
                    .cloned()
                    .collect()
            };
            if !repeats.is_empty() {
                out.push((MessageKind::Repeat, held(&repeats)));
            }
        }
        let mut resolved = resolved;
        resolved.sort_by_key(|held| held.seq);
        // one notification per flush, as Alertmanager's: the firing alerts (new ones, then
        // reminders) and after them those resolved since the last flush
        let firing: Vec<&Held> = out.iter().flat_map(|(_, alerts)| alerts.clone()).collect();
        let message = match out.first() {
            Some((kind, _)) => Some(merge(*kind, &firing, &resolved)),
            None if !resolved.is_empty() => Some(merge(MessageKind::Resolved, &resolved, &[])),
            None => None,
        };
        let flushed: Vec<Flushed> = message
            .into_iter()
            .map(|message| Flushed {
                destination: Destination {
                    notifier: self.notifier.clone(),
                    route: self.route.clone(),
                    group_key: self.group_key.clone(),
                    group_labels: self.group_labels.clone(),
                },
                message,
            })
            .collect();
        if !flushed.is_empty() {
            self.last_sent = Some(now);
        }
        for fingerprint in sent_firing {
            self.unsent.remove(&fingerprint);
        }
        self.repeats.clear();
        self.resolved.clear();
        if !self.unsent.is_empty() {
            // held back by an inhibition: try again when it may have ended
            self.next_flush = Some(now + to_chrono(group_interval.max(RECHECK)));
        } else if let (Some(every), Some(last)) = (
            route.and_then(|route| route.repeat_interval),
            self.last_sent,
        ) && !self.alerts.is_empty()
        {
            self.next_flush = Some(last + to_chrono(every));
        }
        flushed
    }
}

/// A history event for a routing decision about one alert.
fn routing_event(
    held: &Held,
    group: &Group,
    decision: &str,
    reason: &str,
    detail: Option<Value>,
) -> Value {
    let rule = held.message.rule.clone();
    let mut event = json!({
        "@timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "type": "routing",
        "rule": rule,
        "labels": held.labels,
        "notifier": group.notifier,
        "route": group.route,
        "group_key": group.group_key,
        "decision": decision,
        "reason": reason,
        "message": format!("{rule} → {}: {decision} ({reason})", group.notifier),
    });
    if let Some(Value::Object(detail)) = detail {
        for (key, value) in detail {
            event[key] = value;
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::AlertLine;
    use crate::notify::route::{InhibitRuleConfig, RouteTree, RoutingConfig};

    fn message(rule: &str, kind: MessageKind, services: &[&str], severity: &str) -> AlertMessage {
        AlertMessage {
            title: None,
            kind,
            rule: rule.into(),
            at: at(0),
            labels: BTreeMap::new(),
            description: None,
            severity: severity.into(),
            summary: format!("{rule} summary"),
            threshold: "> 1".into(),
            window: "1m".into(),
            alerts: services
                .iter()
                .map(|service| AlertLine {
                    labels: BTreeMap::from([("service".to_string(), service.to_string())]),
                    value: 5.0,
                    fired_for: None,
                    reason: None,
                    starts_at: None,
                    reference: None,
                })
                .collect(),
            resolved: Vec::new(),
            samples: vec![format!("{rule} sample")],
            context: Vec::new(),
            runbook_url: None,
            link: None,
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("time")
    }

    struct Setup {
        tree: RouteTree,
        inhibitor: Inhibitor,
        intervals: TimeIntervals,
        groups: Groups,
        events: std::sync::Mutex<Vec<Value>>,
    }

    impl Setup {
        fn new(routing: &str, inhibit: Vec<InhibitRuleConfig>) -> Setup {
            let routing: RoutingConfig = toml::from_str(routing).expect("parses");
            Setup {
                tree: RouteTree::build(&routing, vec!["team".into()]),
                inhibitor: Inhibitor::build(&inhibit),
                intervals: TimeIntervals::default(),
                groups: Groups::in_memory(),
                events: Default::default(),
            }
        }

        fn messages(&self, messages: Vec<AlertMessage>) -> Vec<(Destination, AlertMessage)> {
            messages
                .into_iter()
                .map(|message| {
                    let labels = alert_labels(&message, &message.alerts[0]);
                    let (destination, _) = self.tree.destinations(&[], &labels).remove(0);
                    (destination, message)
                })
                .collect()
        }

        fn run(
            &self,
            now: DateTime<Utc>,
            messages: Vec<AlertMessage>,
        ) -> Vec<(String, AlertMessage)> {
            let policy = Policy {
                inhibitor: &self.inhibitor,
                intervals: &self.intervals,
                tree: &self.tree,
            };
            let event = |value: Value| self.events.lock().expect("lock").push(value);
            let record = |flushed: Flushed| Some((flushed.destination.group_key, flushed.message));
            if messages.is_empty() {
                self.groups.flush_due(now, &policy, &event, record)
            } else {
                self.groups
                    .accept(self.messages(messages), now, &policy, &event, record)
            }
        }
    }

    fn summary(sent: &[(String, AlertMessage)]) -> Vec<(String, &'static str, usize)> {
        sent.iter()
            .map(|(_, message)| {
                (
                    message.rule.clone(),
                    message.kind.name(),
                    message.alerts.len(),
                )
            })
            .collect()
    }

    #[test]
    fn without_timers_each_tick_goes_out_at_once_as_before() {
        let setup = Setup::new("", Vec::new());
        let sent = setup.run(
            at(0),
            vec![message("a", MessageKind::Firing, &["x", "y"], "warning")],
        );
        assert_eq!(summary(&sent), [("a".to_string(), "firing", 2)]);
        assert_eq!(sent[0].0, "{}:{alertname=\"a\"}");
        assert_eq!(sent[0].1.samples, ["a sample"]);
        // only the changes: a second firing alert alone, then the resolve of one
        let sent = setup.run(
            at(10),
            vec![message("a", MessageKind::Firing, &["z"], "warning")],
        );
        assert_eq!(summary(&sent), [("a".to_string(), "firing", 1)]);
        let sent = setup.run(
            at(20),
            vec![message("a", MessageKind::Resolved, &["x"], "warning")],
        );
        assert_eq!(summary(&sent), [("a".to_string(), "resolved", 1)]);
        let mut reminder = message("a", MessageKind::Repeat, &["y", "z"], "warning");
        reminder.alerts[0].value = 42.0;
        let sent = setup.run(at(30), vec![reminder]);
        assert_eq!(summary(&sent), [("a".to_string(), "repeat", 2)]);
        assert_eq!(
            sent[0].1.alerts[0].value, 42.0,
            "the reminder's current value"
        );
    }

    #[test]
    fn one_flush_sends_one_message_per_receiver_with_its_firing_and_resolved_alerts() {
        let setup = Setup::new("", Vec::new());
        setup.run(
            at(0),
            vec![message("a", MessageKind::Firing, &["x", "y"], "warning")],
        );
        // one tick: `z` starts firing while `x` resolves
        let mut resolved = message("a", MessageKind::Resolved, &["x"], "warning");
        resolved.alerts[0].fired_for = Some(Duration::from_secs(10));
        let sent = setup.run(
            at(10),
            vec![
                message("a", MessageKind::Firing, &["z"], "warning"),
                resolved,
            ],
        );
        assert_eq!(
            summary(&sent),
            [("a".to_string(), "firing", 1)],
            "one message"
        );
        let message = &sent[0].1;
        assert_eq!(message.alerts[0].labels["service"], "z");
        assert_eq!(message.resolved[0].labels["service"], "x");
        assert_eq!(
            crate::notify::message::title(message),
            "[FIRING, RESOLVED] a"
        );
        // every notifier shows both lists; PagerDuty stays per alert
        let slack = crate::notify::message::slack_payload(message).to_string();
        assert!(
            slack.contains("`service=z`") && slack.contains("*Resolved*"),
            "{slack}"
        );
        assert!(
            slack.contains("`service=x` — *5* — fired for 10s"),
            "{slack}"
        );
        let webhook = crate::notify::message::alertmanager_payload(message, "team", "http://l");
        let statuses: Vec<(&str, &str)> = webhook["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|alert| {
                (
                    alert["status"].as_str().unwrap_or_default(),
                    alert["labels"]["service"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(statuses, [("firing", "z"), ("resolved", "x")]);
        assert_eq!(webhook["status"], "firing");
        let card = crate::notify::msteams::card_payload(message).to_string();
        assert!(
            card.contains("service=z — **5**")
                && card.contains("service=x — **5** — fired for 10s"),
            "{card}"
        );
        let addresses = crate::notify::email::Addresses {
            from: "a@example.com".into(),
            to: vec!["b@example.com".into()],
            cc: Vec::new(),
            domain: "example.com".into(),
        };
        let mail = crate::notify::email::payload(message, &addresses);
        let text = mail["text"].as_str().unwrap_or_default();
        assert!(
            text.contains("Alerts:\n- service=z — 5\n")
                && text.contains("Resolved:\n- service=x — 5 — fired for 10s\n"),
            "{mail}"
        );
        assert!(
            mail["html"]
                .as_str()
                .unwrap_or_default()
                .contains("<h3>Resolved</h3>")
        );
        assert!(
            mail["message_id"]
                .as_str()
                .is_some_and(|id| id.contains(".repeat.")),
            "not the firing mail's Message-ID again: {mail}"
        );
        assert!(mail["in_reply_to"].is_string(), "threaded: {mail}");
        let events = crate::notify::pagerduty::events(message);
        let actions: Vec<&str> = events
            .as_array()
            .expect("events")
            .iter()
            .map(|event| event["event_action"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(actions, ["trigger", "resolve"]);
        assert_eq!(
            events[0]["payload"]["summary"], "[FIRING] a: a summary",
            "a trigger speaks of its own alert"
        );
    }

    #[test]
    fn alerts_of_two_rules_wait_and_go_out_as_one_message_per_group_interval() {
        let setup = Setup::new(
            "group_by = [\"service\"]\ngroup_wait = \"30s\"\ngroup_interval = \"5m\"\n",
            Vec::new(),
        );
        assert!(
            setup
                .run(
                    at(0),
                    vec![message("a", MessageKind::Firing, &["x"], "warning")]
                )
                .is_empty()
        );
        assert!(
            setup
                .run(
                    at(10),
                    vec![message("b", MessageKind::Firing, &["x"], "critical")]
                )
                .is_empty()
        );
        assert!(
            setup.run(at(29), Vec::new()).is_empty(),
            "group_wait not over"
        );
        let sent = setup.run(at(30), Vec::new());
        assert_eq!(summary(&sent), [("a, b".to_string(), "firing", 2)]);
        let merged = &sent[0].1;
        assert_eq!(sent[0].0, "{}:{service=\"x\"}");
        assert_eq!(merged.severity, "critical");
        assert_eq!(merged.alerts[1].labels["alertname"], "b");
        // a third alert joins: sent with the others at group_interval, not before
        assert!(
            setup
                .run(
                    at(60),
                    vec![message("c", MessageKind::Firing, &["x"], "warning")]
                )
                .is_empty()
        );
        assert!(setup.run(at(329), Vec::new()).is_empty());
        let sent = setup.run(at(330), Vec::new());
        assert_eq!(summary(&sent), [("a, b, c".to_string(), "firing", 3)]);
        // nothing changed: nothing sent at the next interval
        assert!(setup.run(at(630), Vec::new()).is_empty());
        // one resolves: the rest firing, and the resolve
        // the group_interval timer ticks on from the last flush (330): 630, 930
        assert!(
            setup
                .run(
                    at(700),
                    vec![message("a", MessageKind::Resolved, &["x"], "warning")]
                )
                .is_empty()
        );
        assert!(setup.run(at(929), Vec::new()).is_empty());
        let sent = setup.run(at(930), Vec::new());
        assert_eq!(
            summary(&sent),
            [("b, c, a".to_string(), "firing", 2)],
            "one notification for the flush: the firing alerts and the resolved one"
        );
        assert_eq!(sent[0].1.resolved.len(), 1);
        assert_eq!(sent[0].1.resolved[0].labels["alertname"], "a");
        // an alert that fires and resolves within group_wait is never sent
        setup.run(
            at(2000),
            vec![message("d", MessageKind::Firing, &["new"], "warning")],
        );
        setup.run(
            at(2010),
            vec![message("d", MessageKind::Resolved, &["new"], "warning")],
        );
        assert!(setup.run(at(2040), Vec::new()).is_empty());
        let events = setup.events.lock().expect("lock");
        assert!(
            events.iter().any(|event| event["decision"] == "dropped"),
            "{events:?}"
        );
    }

    #[test]
    fn an_inhibited_alert_is_held_back_until_its_source_resolves() {
        let setup = Setup::new(
            "",
            vec![InhibitRuleConfig {
                source_matchers: vec!["severity=critical".into()],
                target_matchers: vec!["severity=warning".into()],
                equal: vec!["service".into()],
            }],
        );
        let sent = setup.run(
            at(0),
            vec![message(
                "down",
                MessageKind::Firing,
                &["checkout"],
                "critical",
            )],
        );
        assert_eq!(summary(&sent), [("down".to_string(), "firing", 1)]);
        let sent = setup.run(
            at(10),
            vec![message(
                "slow",
                MessageKind::Firing,
                &["checkout", "search"],
                "warning",
            )],
        );
        assert_eq!(
            summary(&sent),
            [("slow".to_string(), "firing", 1)],
            "search only"
        );
        assert_eq!(sent[0].1.alerts[0].labels["service"], "search");
        {
            let events = setup.events.lock().expect("lock");
            let inhibited: Vec<&Value> = events
                .iter()
                .filter(|event| event["decision"] == "inhibited")
                .collect();
            assert_eq!(inhibited.len(), 1, "{events:?}");
            assert_eq!(inhibited[0]["inhibited_by"]["alertname"], "down");
            assert_eq!(inhibited[0]["labels"]["service"], "checkout");
        }
        assert!(setup.run(at(12), Vec::new()).is_empty(), "still inhibited");
        let sent = setup.run(
            at(20),
            vec![message(
                "down",
                MessageKind::Resolved,
                &["checkout"],
                "critical",
            )],
        );
        assert_eq!(
            summary(&sent),
            [
                ("down".to_string(), "resolved", 1),
                ("slow".to_string(), "firing", 1)
            ],
            "no longer inhibited"
        );
        assert_eq!(sent[1].1.alerts[0].labels["service"], "checkout");
    }

    #[test]
    fn a_muted_route_holds_its_notification_until_the_mute_ends() {
        let mut setup = Setup::new(
            "[[routes]]\nmatchers = [\"severity=warning\"]\nmute_time_intervals = [\"quiet\"]\n",
            Vec::new(),
        );
        // 1_800_000_000 is 2027-01-15T08:00:00Z; quiet until 08:02
        setup.intervals = TimeIntervals::build(&[toml::from_str(
            "name = \"quiet\"\n[[time_intervals]]\ntimes = [{ start_time = \"08:00\", end_time = \"08:02\" }]\n",
        )
        .expect("parses")])
        .expect("valid");
        assert!(
            setup
                .run(
                    at(0),
                    vec![message("a", MessageKind::Firing, &["x", "y"], "warning")]
                )
                .is_empty()
        );
        setup.run(
            at(30),
            vec![message("a", MessageKind::Resolved, &["y"], "warning")],
        );
        assert!(setup.run(at(119), Vec::new()).is_empty());
        let sent = setup.run(at(120), Vec::new());
        assert_eq!(
            summary(&sent),
            [("a".to_string(), "firing", 1)],
            "y resolved while muted"
        );
        let events = setup.events.lock().expect("lock");
        let muted = events
            .iter()
            .find(|event| event["decision"] == "muted")
            .expect("muted");
        assert_eq!(muted["muted_by"], "quiet");
        assert_eq!(muted["muted_until"], "2027-01-15T08:02:00+00:00");
    }

    #[test]
    fn groups_survive_a_restart() {
        let state = tempfile::tempdir().expect("tempdir");
        let setup = Setup {
            groups: Groups::open(state.path()),
            ..Setup::new("group_wait = \"1m\"\n", Vec::new())
        };
        assert!(
            setup
                .run(
                    at(0),
                    vec![message("a", MessageKind::Firing, &["x"], "warning")]
                )
                .is_empty()
        );
        let reopened = Setup {
            groups: Groups::open(state.path()),
            ..Setup::new("group_wait = \"1m\"\n", Vec::new())
        };
        let sent = reopened.run(at(60), Vec::new());
        assert_eq!(summary(&sent), [("a".to_string(), "firing", 1)]);
        assert_eq!(sent[0].1.samples, ["a sample"]);
    }
}
