//! Delivery of alert messages (DESIGN §6), the one way rules reach notifiers: rules hand
//! the [`Dispatcher`] the messages of a tick — [`Dispatcher::route`] says which notifier
//! gets which alerts — and it builds each notifier's payload, records the delivery in the
//! [`Outbox`] before it is attempted ([`Dispatcher::record`]), then sends it in the
//! background with retries until its deadline ([`Dispatcher::send`]), each attempt in the
//! [`History`]. Deliveries a previous run recorded but did not finish are sent again at
//! start ([`Dispatcher::resume`]); at shutdown those in progress get a moment to finish
//! ([`Dispatcher::finish`]), the rest stay recorded.
//!
//! Between routing and recording sit the aggregation [`Groups`]: each alert joins the
//! group of its route and group labels ([`super::route`]), which decides when it goes
//! out (at once by default; after `group_wait` / `group_interval` when a route says so),
//! holds back inhibited alerts and muted routes, and merges alerts of several rules into
//! one message ([`Dispatcher::accept`], and [`Dispatcher::run_groups`] for the groups
//! that wait).
//!
//! A delivery whose outbox record cannot be written (a full disk) is sent unrecorded:
//! lost if the process dies before it is delivered. That is logged when it starts failing
//! and when it recovers, not at every message.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::Utc;

use super::group::{Flushed, Groups, Policy};
use super::history::History;
use super::message::{AlertLine, AlertMessage, MessageKind, alertmanager_payload, slack_payload};
use super::notifiers::{Notifier, Notifiers, NotifyConfig};
use super::outbox::{Delivery, Outbox};
use super::route::{Destination, InhibitRuleConfig, Inhibitor};
use super::time_interval::{TimeIntervalConfig, TimeIntervals};
use super::webhook::Attempt;
use crate::telemetry::Telemetry;

/// Deadlines are capped here: a longer one is no deadline at all, and its date still has
/// the four-digit year the outbox records need.
const LONGEST_DEADLINE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Routes, records and sends alert messages.
pub struct Dispatcher {
    notifiers: Notifiers,
    outbox: Option<Arc<Outbox>>,
    /// Whether the last outbox record failed (logged once per change).
    outbox_failing: AtomicBool,
    telemetry: Arc<Telemetry>,
    history: History,
    /// Base URL of the links in Alertmanager payloads.
    external_url: String,
    /// How long a delivery is retried, from when it is recorded.
    delivery_deadline: Duration,
    /// Deliveries in progress, so a shutdown can let them finish.
    deliveries: tokio_util::task::TaskTracker,
    /// The aggregation groups between routing and delivery.
    groups: Groups,
    inhibitor: Inhibitor,
    intervals: TimeIntervals,
    /// When a delivery last gave up (its deadline passed), for the heartbeat.
    last_gave_up: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// `[global] external_labels`, added to the labels of alerts sent out (Alertmanager
    /// and webhook payloads); an alert's own label wins.
    external_labels: BTreeMap<String, String>,
    /// `alert_relabel_configs`, applied to alerts sent to Alertmanager after the external
    /// labels are added (Prometheus' scope: not to other notifiers).
    alert_relabel: crate::relabel::Relabel,
}

/// A delivery recorded in the outbox (or not, when it could not be written), to be sent.
#[must_use = "a recorded delivery is sent with `Dispatcher::send`"]
pub struct Recorded {
    id: Option<String>,
    delivery: Delivery,
}

impl Dispatcher {
    /// A dispatcher to `notifiers`, recording in `state_dir/outbox` (without it when the
    /// directory cannot be created: deliveries are then sent unrecorded).
    pub fn new(
        notifiers: Notifiers,
        config: &NotifyConfig,
        state_dir: &Path,
        external_url: String,
        telemetry: Arc<Telemetry>,
        history: History,
    ) -> Dispatcher {
        let outbox = Outbox::open(state_dir)
            .map_err(|error| tracing::error!(%error, "cannot open the outbox; deliveries are not recorded"))
            .ok()
            .map(Arc::new);
        for alertmanager in notifiers.alertmanagers() {
            alertmanager.attach(telemetry.clone(), history.clone(), Some(state_dir));
        }
        Dispatcher {
            notifiers,
            outbox,
            outbox_failing: AtomicBool::new(false),
            telemetry,
            history,
            external_url,
            delivery_deadline: config.delivery_deadline,
            deliveries: tokio_util::task::TaskTracker::new(),
            groups: Groups::open(state_dir),
            inhibitor: Inhibitor::default(),
            intervals: TimeIntervals::default(),
            last_gave_up: Arc::default(),
            external_labels: BTreeMap::new(),
            alert_relabel: crate::relabel::Relabel::default(),
        }
    }

    /// The same dispatcher adding `external_labels` to alerts sent out and relabeling
    /// those sent to Alertmanager with `alert_relabel`.
    pub fn with_external_labels(
        mut self,
        external_labels: BTreeMap<String, String>,
        alert_relabel: crate::relabel::Relabel,
    ) -> Dispatcher {
        self.external_labels = external_labels;
        self.alert_relabel = alert_relabel;
        self
    }

    /// The same dispatcher with `[[inhibit_rules]]` and `[[time_intervals]]` (validated;
    /// the error lists what is wrong otherwise).
    pub fn with_alerting(
        mut self,
        inhibit_rules: &[InhibitRuleConfig],
        time_intervals: &[TimeIntervalConfig],
    ) -> Result<Dispatcher, String> {
        self.inhibitor = Inhibitor::build(inhibit_rules);
        self.intervals =
            TimeIntervals::build(time_intervals).map_err(|errors| errors.join("; "))?;
        Ok(self)
    }

    /// What routing decides with: the inhibit rules, the time intervals, the routes.
    fn policy(&self) -> Policy<'_> {
        Policy {
            inhibitor: &self.inhibitor,
            intervals: &self.intervals,
            tree: self.notifiers.tree(),
        }
    }

    /// Records what a group flush sends (see [`Dispatcher::record`]).
    fn record_flushed(&self, flushed: Flushed) -> Option<Recorded> {
        self.record_routed(
            Some(&flushed.destination),
            &flushed.destination.notifier,
            &flushed.message,
        )
    }

    /// Whether a delivery gave up (its deadline passed) within `window`.
    pub fn gave_up_within(&self, window: Duration) -> bool {
        self.last_gave_up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() <= window)
    }

    /// Adds a tick's messages to their groups and records in the outbox what is to be
    /// sent now (everything, for routes that do not wait); send each with
    /// [`Dispatcher::send`] once the rule state is saved.
    pub fn accept(&self, messages: Vec<(Destination, AlertMessage)>) -> Vec<Recorded> {
        if messages.is_empty() {
            return Vec::new();
        }
        let policy = self.policy();
        self.groups.accept(
            messages,
            Utc::now(),
            &policy,
            &|event| self.history.record(event),
            |flushed| self.record_flushed(flushed),
        )
    }

    /// Flushes the groups whose time came (`group_wait`, `group_interval`, the end of a
    /// mute or an inhibition) until `cancel`, sending what they release.
    pub async fn run_groups(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        // Alertmanager notifiers resend what fires on their own schedule
        for alertmanager in self.notifiers.alertmanagers() {
            tokio::spawn(alertmanager.run_resends(cancel.clone()));
        }
        let mut ticks = tokio::time::interval(Duration::from_millis(250));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let policy = self.policy();
            let recorded = self.groups.flush_due(
                Utc::now(),
                &policy,
                &|event| self.history.record(event),
                |flushed| self.record_flushed(flushed),
            );
            for recorded in recorded {
                self.send(recorded);
            }
        }
    }

    /// What routing does with an alert with `labels` (of a rule whose own `notify` is
    /// `rule_notify`): for each destination its route, group, and whether it is
    /// inhibited, muted or waiting (for the alerts API and page).
    pub fn decisions(
        &self,
        rule_notify: &[String],
        labels: &BTreeMap<String, String>,
    ) -> Vec<serde_json::Value> {
        let policy = self.policy();
        let now = Utc::now();
        self.notifiers
            .destinations(rule_notify, labels)
            .into_iter()
            .map(|(destination, node)| {
                self.groups
                    .decision(&destination, Some(node), labels, now, &policy)
            })
            .collect()
    }

    /// Every configured notifier's name (Alertmanager's receivers).
    pub fn receivers(&self) -> Vec<String> {
        self.notifiers.names()
    }

    /// Every peer endpoint of the `alertmanager` notifiers (Prometheus'
    /// `/api/v1/alertmanagers`), credentials left out.
    pub fn alertmanager_endpoints(&self) -> Vec<String> {
        self.notifiers
            .alertmanagers()
            .iter()
            .flat_map(|alertmanager| alertmanager.endpoints())
            .collect()
    }

    /// Sends again the deliveries a previous run recorded but did not finish.
    pub fn resume(&self) {
        if let Some(outbox) = &self.outbox {
            for (id, delivery) in outbox.pending() {
                tracing::info!(rule = %delivery.rule, "resuming a delivery recorded before the restart");
                self.send(Recorded {
                    id: Some(id),
                    delivery,
                });
            }
        }
    }

    /// Lets the deliveries in progress finish, for at most `within` (at shutdown); those
    /// still retrying stay in the outbox and resume at the next start.
    pub async fn finish(&self, within: Duration) {
        self.deliveries.close();
        if tokio::time::timeout(within, self.deliveries.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_progress = self.deliveries.len(),
                "notifications still being delivered at shutdown resume at the next start"
            );
        }
    }

    /// Logs a warning when notifier `name` is not configured (it falls back to the
    /// console); returns whether it is.
    pub fn warn_if_unknown(&self, name: &str, used_by: &str) -> bool {
        self.notifiers.warn_if_unknown(name, used_by)
    }

    /// Splits the notices of one rule's tick by destination (notifier, route, group) and
    /// kind: each gets one message per kind with the alerts routed to it. `rule_notify`
    /// is the rule's own `notify` (empty: the routes decide on what `labels_of` gives for
    /// each alert).
    pub fn route(
        &self,
        rule_notify: &[String],
        notices: Vec<(MessageKind, AlertLine)>,
        labels_of: impl Fn(&AlertLine) -> BTreeMap<String, String>,
    ) -> Vec<(Destination, MessageKind, Vec<AlertLine>)> {
        let mut messages: BTreeMap<(Destination, u8), (MessageKind, Vec<AlertLine>)> =
            BTreeMap::new();
        for (kind, line) in notices {
            let order = match kind {
                MessageKind::Firing => 0,
                MessageKind::Repeat => 1,
                MessageKind::Resolved => 2,
            };
            for (destination, _) in self.notifiers.destinations(rule_notify, &labels_of(&line)) {
                messages
                    .entry((destination, order))
                    .or_insert_with(|| (kind, Vec::new()))
                    .1
                    .push(line.clone());
            }
        }
        messages
            .into_iter()
            .map(|((destination, _), (kind, alerts))| (destination, kind, alerts))
            .collect()
    }

    /// What `notifier_name` is sent for `message` (`None`: nothing, it is UI only), with
    /// the notifier's templates applied; secrets (a PagerDuty routing key, an SMTP
    /// password) are added as it goes out, never here.
    pub fn payload(
        &self,
        notifier_name: &str,
        message: &AlertMessage,
    ) -> Option<serde_json::Value> {
        self.payload_routed(notifier_name, message, None)
    }

    /// [`Dispatcher::payload`] of a message of `destination`'s group: Alertmanager's
    /// payload carries its group key and labels.
    pub fn payload_routed(
        &self,
        notifier_name: &str,
        message: &AlertMessage,
        destination: Option<&Destination>,
    ) -> Option<serde_json::Value> {
        let message = self.notifiers.templated(notifier_name, message);
        Some(match self.notifiers.get(notifier_name).as_ref() {
            Notifier::Ui => return None,
            Notifier::Webhook(_) => {
                let mut payload = alertmanager_payload(&message, notifier_name, &self.external_url);
                with_external_labels(&mut payload, &self.external_labels);
                if let Some(destination) = destination {
                    payload["groupKey"] = destination.group_key.clone().into();
                    payload["groupLabels"] = serde_json::json!(destination.group_labels);
                }
                payload
            }
            Notifier::Alertmanager(_) => super::alertmanager::Alertmanager::payload(
                &message,
                &self.external_labels,
                &self.alert_relabel,
            ),
            Notifier::PagerDuty(_) => super::pagerduty::events(&message),
            Notifier::Email(email) => email.payload(&message),
            Notifier::MsTeams(_) => super::msteams::card_payload(&message),
            Notifier::Slack(_) | Notifier::Console => slack_payload(&message),
        })
    }

    /// Records the delivery of `message` to `notifier_name` in the outbox (when there is
    /// one), to be sent by [`Dispatcher::send`]; `None` for the `ui` notifier, which only
    /// records the history. Its retries end [`NotifyConfig::delivery_deadline`] from now.
    pub fn record(&self, notifier_name: &str, message: &AlertMessage) -> Option<Recorded> {
        self.record_routed(None, notifier_name, message)
    }

    /// [`Dispatcher::record`] of a message of `destination`'s group.
    fn record_routed(
        &self,
        destination: Option<&Destination>,
        notifier_name: &str,
        message: &AlertMessage,
    ) -> Option<Recorded> {
        let now = Utc::now();
        let route = destination.map(|destination| destination.route.clone());
        let group_key = destination.map(|destination| destination.group_key.clone());
        let rules = merged_rules(message);
        let Some(payload) = self.payload_routed(notifier_name, message, destination) else {
            self.telemetry.notifications.add(notifier_name, "ui", 1);
            let mut event = delivery_event(
                &message.rule,
                notifier_name,
                message.kind.name(),
                message.alerts.len(),
                "ui",
                None,
            );
            with_route(&mut event, route.as_deref(), group_key.as_deref(), &rules);
            self.history.record(event);
            return None;
        };
        let delivery = Delivery {
            rule: message.rule.clone(),
            notifier: notifier_name.to_string(),
            kind: message.kind.name().to_string(),
            alerts: message.alerts.len(),
            payload,
            created: now,
            deadline: now
                + chrono::Duration::from_std(self.delivery_deadline.min(LONGEST_DEADLINE))
                    .expect("a century is a chrono duration"),
            route,
            group_key,
            rules,
        };
        let id = match &self.outbox {
            Some(outbox) => match outbox.record(&delivery) {
                Ok(id) => {
                    if self
                        .outbox_failing
                        .swap(false, std::sync::atomic::Ordering::Relaxed)
                    {
                        tracing::info!(rule = %message.rule, "deliveries are recorded in the outbox again");
                    }
                    Some(id)
                }
                Err(error) => {
                    if self
                        .outbox_failing
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        tracing::debug!(rule = %message.rule, %error, "cannot record the delivery; sending it unrecorded");
                    } else {
                        tracing::error!(rule = %message.rule, %error, "cannot record deliveries in the outbox; sending them unrecorded (a restart before they are delivered loses them) until it can");
                    }
                    None
                }
            },
            None => None,
        };
        Some(Recorded { id, delivery })
    }

    /// Sends a recorded delivery in the background and forgets it once it ended; every
    /// attempt goes to the history.
    pub fn send(&self, recorded: Recorded) {
        let Recorded { id, delivery } = recorded;
        let notifier = self.notifiers.get(&delivery.notifier);
        let telemetry = Arc::clone(&self.telemetry);
        let outbox = self.outbox.clone();
        let history = self.history.clone();
        let last_gave_up = Arc::clone(&self.last_gave_up);
        self.deliveries.spawn(async move {
            let (rule_name, notifier_name) = (&delivery.rule, &delivery.notifier);
            let event = |outcome: &str, attempt: Option<&Attempt>| {
                let mut event = delivery_event(
                    rule_name,
                    notifier_name,
                    &delivery.kind,
                    delivery.alerts,
                    outcome,
                    attempt,
                );
                with_route(
                    &mut event,
                    delivery.route.as_deref(),
                    delivery.group_key.as_deref(),
                    &delivery.rules,
                );
                event
            };
            let left = (delivery.deadline - Utc::now())
                .to_std()
                .unwrap_or_default();
            let report = |attempt: Attempt| {
                let outcome = match (&attempt.error, attempt.retry_in) {
                    (None, _) => "delivered",
                    (Some(_), Some(_)) => {
                        telemetry.notification_retries.add(notifier_name, 1);
                        "retrying"
                    }
                    (Some(_), None) if attempt.rejected => "rejected",
                    (Some(_), None) => "gave_up",
                };
                history.record(event(outcome, Some(&attempt)));
            };
            let outcome = notifier
                .deliver_reporting(
                    &delivery.payload,
                    tokio::time::Instant::now() + left,
                    &report,
                )
                .await;
            match outcome {
                Some(outcome) => {
                    telemetry
                        .notifications
                        .add(notifier_name, outcome.name(), 1);
                    match outcome {
                        super::webhook::Outcome::Delivered { attempts } => {
                            tracing::info!(rule = %rule_name, notifier = %notifier_name, attempts, "alert delivered")
                        }
                        outcome => {
                            if outcome.name() == "gave_up" {
                                *last_gave_up
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                    Some(std::time::Instant::now());
                            }
                            tracing::error!(rule = %rule_name, notifier = %notifier_name, ?outcome, "alert not delivered")
                        }
                    }
                }
                None => {
                    telemetry.notifications.add(notifier_name, "console", 1);
                    history.record(event("console", None));
                    tracing::info!(rule = %rule_name, message = %delivery.payload["text"], "alert (console)");
                    println!("alert {}", delivery.payload["text"]);
                }
            }
            if let (Some(id), Some(outbox)) = (id, outbox) {
                outbox.complete(&id);
            }
        });
    }
}

/// Adds `external_labels` to every alert of a webhook payload, an alert's own label
/// winning; fingerprints and the common labels follow the labels.
fn with_external_labels(
    payload: &mut serde_json::Value,
    external_labels: &BTreeMap<String, String>,
) {
    if external_labels.is_empty() {
        return;
    }
    let add = |labels: &mut serde_json::Value| {
        if let Some(labels) = labels.as_object_mut() {
            for (name, value) in external_labels {
                labels
                    .entry(name.clone())
                    .or_insert_with(|| value.clone().into());
            }
        }
    };
    let mut common: Option<BTreeMap<String, String>> = None;
    if let Some(alerts) = payload["alerts"].as_array_mut() {
        for alert in alerts {
            add(&mut alert["labels"]);
            let labels: BTreeMap<String, String> =
                serde_json::from_value(alert["labels"].clone()).unwrap_or_default();
            alert["fingerprint"] = super::message::fingerprint(&labels).into();
            match &mut common {
                None => common = Some(labels),
                Some(common) => common.retain(|name, value| labels.get(name) == Some(value)),
            }
        }
    }
    if let Some(common) = common {
        payload["commonLabels"] = serde_json::json!(common);
    }
}

/// The rules of a message that merges the alerts of several (each alert carries its
/// `alertname`); empty for a message of one rule.
fn merged_rules(message: &AlertMessage) -> Vec<String> {
    let mut rules: Vec<String> = Vec::new();
    for alert in &message.alerts {
        if let Some(name) = alert.labels.get("alertname")
            && !rules.contains(name)
        {
            rules.push(name.clone());
        }
    }
    if rules.len() > 1 { rules } else { Vec::new() }
}

/// Adds the route and group of a delivery (and the rules it merges) to its history
/// event, so `?rule=NAME` finds a merged delivery under each of its rules.
fn with_route(
    event: &mut serde_json::Value,
    route: Option<&str>,
    group_key: Option<&str>,
    rules: &[String],
) {
    if !rules.is_empty() {
        event["rules"] = serde_json::json!(rules);
    }
    if let Some(route) = route {
        event["route"] = route.into();
    }
    if let Some(group_key) = group_key {
        event["group_key"] = group_key.into();
    }
}

/// A history event for one delivery attempt (or a console or UI-only message).
fn delivery_event(
    rule: &str,
    notifier: &str,
    kind: &str,
    alerts: usize,
    outcome: &str,
    attempt: Option<&Attempt>,
) -> serde_json::Value {
    let mut event = serde_json::json!({
        "@timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "type": "delivery",
        "rule": rule,
        "notifier": notifier,
        "kind": kind,
        "alerts": alerts,
        "outcome": outcome,
        "message": format!("{rule} {kind} → {notifier}: {outcome}"),
    });
    if let Some(attempt) = attempt {
        event["attempt"] = attempt.number.into();
        if let Some(status) = attempt.status {
            event["status"] = status.into();
        }
        if let Some(error) = &attempt.error {
            event["error"] = error.clone().into();
        }
        if let Some(retry_in) = attempt.retry_in {
            event["retry_in_seconds"] = retry_in.as_secs_f64().into();
        }
        if let Some(alert) = &attempt.alert {
            event["dedup_key"] = alert.clone().into();
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> AlertMessage {
        AlertMessage {
            kind: MessageKind::Firing,
            rule: "checkout_5xx".into(),
            at: Utc::now(),
            labels: BTreeMap::new(),
            description: None,
            severity: "critical".into(),
            summary: "30 HTTP 500s".into(),
            title: None,
            threshold: "> 20".into(),
            window: "1m".into(),
            alerts: vec![AlertLine {
                labels: BTreeMap::new(),
                value: 30.0,
                fired_for: None,
                reason: None,
                starts_at: None,
                reference: None,
            }],
            resolved: Vec::new(),
            samples: Vec::new(),
            context: Vec::new(),
            runbook_url: None,
            link: None,
        }
    }

    #[test]
    fn a_delivery_is_retried_until_the_configured_deadline() {
        let state = tempfile::tempdir().expect("tempdir");
        let notifiers =
            Notifiers::build(&BTreeMap::new(), &Default::default(), None).expect("builds");
        let config = NotifyConfig {
            delivery_deadline: Duration::from_secs(90),
        };
        let dispatcher = Dispatcher::new(
            notifiers,
            &config,
            state.path(),
            "http://127.0.0.1:9200".into(),
            Arc::default(),
            History::disabled(),
        );
        let recorded = dispatcher
            .record("console", &message())
            .expect("the console is sent to");
        let delivery = &recorded.delivery;
        assert_eq!(
            delivery.deadline - delivery.created,
            chrono::Duration::seconds(90)
        );
        // the deadline is recorded with the delivery, so a restart keeps it
        let pending = Outbox::open(state.path()).expect("open").pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1.deadline, delivery.deadline);
    }

    #[test]
    fn external_labels_reach_webhook_payloads_under_the_alerts_own_labels() {
        let state = tempfile::tempdir().expect("tempdir");
        let config: crate::config::Config =
            toml::from_str("[notifiers.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\n")
                .expect("parses");
        let notifiers = Notifiers::build(&config.notifiers, &config.routing, None).expect("builds");
        let dispatcher = Dispatcher::new(
            notifiers,
            &NotifyConfig::default(),
            state.path(),
            "http://127.0.0.1:9200".into(),
            Arc::default(),
            History::disabled(),
        )
        .with_external_labels(
            BTreeMap::from([
                ("cluster".to_string(), "eu1".to_string()),
                ("severity".to_string(), "never".to_string()),
            ]),
            crate::relabel::Relabel::default(),
        );
        let payload = dispatcher.payload("hook", &message()).expect("a payload");
        let labels = &payload["alerts"][0]["labels"];
        assert_eq!(labels["cluster"], "eu1");
        assert_eq!(labels["severity"], "critical", "the alert's own label wins");
        assert_eq!(payload["commonLabels"]["cluster"], "eu1");
        let own: BTreeMap<String, String> = serde_json::from_value(labels.clone()).expect("labels");
        assert_eq!(
            payload["alerts"][0]["fingerprint"],
            super::super::message::fingerprint(&own),
            "the fingerprint covers the external labels"
        );
    }

    #[test]
    fn the_delivery_deadline_defaults_to_ten_minutes() {
        assert_eq!(
            NotifyConfig::default().delivery_deadline,
            Duration::from_secs(600)
        );
        let config: crate::config::Config =
            toml::from_str("[notify]\ndelivery_deadline = \"30s\"\n").expect("parses");
        assert_eq!(config.notify.delivery_deadline, Duration::from_secs(30));
    }
}
