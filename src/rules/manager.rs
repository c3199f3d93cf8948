//! Runs the rules of `queries/`: at each tick T of a rule, wait for every live agent's
//! watermark to pass T (at most `max_delay`), make everything acknowledged searchable,
//! observe (a log rule counts `[T − window, T)` per group, zero-filling groups seen within
//! `group_ttl`; a metric rule evaluates its PromQL at T, one alert per output series),
//! step each alert's lifecycle, send what the transitions call for (with sample lines and
//! `context` values), and persist the state. Log rules are published to PromQL as
//! `log_matches` series as they load.
//!
//! `queries/` is watched: changed rules reload, a broken edit keeps the last good version,
//! a deleted rule resolves its alerts. Each alert that changes is routed to its notifiers
//! (the rule's `notify`, else the routes); each notifier gets one message per rule and
//! tick, recorded in the outbox before it is attempted. Transitions and delivery attempts
//! go to the `.lookout-alerts` history.
//!
//! On a full disk (or any failing write under `state/`) alerting goes on from memory:
//! a rule's state that cannot be saved is kept in memory and written again at each of
//! its evaluations until it succeeds (a restart meanwhile sees the last state that was
//! saved, so it may repeat a notice, never lose one); a delivery whose outbox record
//! cannot be written is sent unrecorded (lost if the process dies before it is
//! delivered); history events wait in [`History`]'s queue. Each is logged when it starts
//! failing and when it recovers, not at every tick.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

mod replay;

pub use replay::{FiringAlert, ReplayStep};

use super::alert_state::{AlertState, Notice, ResolveReason, Timing, Transition};
use super::history::History;
use super::observe::{ContextValue, Observation, Sources};
use super::rule::{LoadedRule, RuleSource};
use super::template::TemplateData;
use crate::ingest::Ingest;
use crate::notify::message::{
    AlertLine, AlertMessage, MessageKind, alertmanager_payload, search_url, slack_payload,
};
use crate::notify::notifiers::{Notifier, Notifiers};
use crate::notify::outbox::{Delivery, Outbox};
use crate::notify::webhook::Attempt;
use crate::scheduler::runner::{Job, Runner};

const STATE_VERSION: u32 = 1;

/// The persisted state of one rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RuleState {
    version: u32,
    /// Alerts by their group labels (`k=v,k=v`).
    alerts: BTreeMap<String, GroupState>,
    /// The last tick at which the query matched anything (kept for `expect_matches`).
    #[serde(default)]
    last_match: Option<DateTime<Utc>>,
    /// The `expect_matches` alert: the query matched nothing for too long.
    #[serde(default)]
    no_matches: Option<GroupState>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct GroupState {
    labels: BTreeMap<String, String>,
    last_seen: Option<DateTime<Utc>>,
    /// The count at the last evaluation.
    #[serde(default)]
    value: f64,
    /// The value at the last evaluation where the condition held: what a resolve message
    /// reports (the value at resolve time is the one that no longer alerts, often 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    firing_value: Option<f64>,
    alert: AlertState,
}

/// Runs the rules.
pub struct RuleManager {
    sources: Arc<Sources>,
    ingest: Arc<Ingest>,
    notifiers: Arc<Notifiers>,
    history: History,
    state_dir: PathBuf,
    external_url: String,
    queries_dir: PathBuf,
    runner: Runner,
    telemetry: Arc<crate::telemetry::Telemetry>,
    silences: Arc<super::silence::Silences>,
    outbox: Option<Arc<Outbox>>,
    /// Each rule's alert state as last saved (read from disk once, at its first tick).
    states: std::sync::Mutex<BTreeMap<String, RuleState>>,
    /// Rules whose state in memory could not be written to disk yet.
    unsaved: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Whether the last outbox record failed (logged once per change).
    outbox_failing: std::sync::atomic::AtomicBool,
    /// Rules running, by name, with the file text they run.
    running: std::sync::Mutex<BTreeMap<String, Running>>,
    /// Files that failed to load, with their text, so one broken edit is reported once.
    broken: std::sync::Mutex<BTreeMap<String, String>>,
    statuses: std::sync::Mutex<BTreeMap<String, RuleStatus>>,
    /// Woken by file events and by the rules API: reload `queries/` now.
    reload_now: Arc<tokio::sync::Notify>,
    /// The rule files as last read, with their inode, size and modification time.
    file_cache: std::sync::Mutex<BTreeMap<PathBuf, FileIdentity>>,
    /// Deliveries in progress, so a shutdown can let them finish.
    deliveries: tokio_util::task::TaskTracker,
}

type FileIdentity = ((u64, u64, i64, i64), String);

struct Running {
    text: String,
    rule: Arc<LoadedRule>,
    cancel: CancellationToken,
}

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
    /// What it names that the data does not have (see [`super::dead_query::warnings`]).
    pub warnings: Vec<String>,
}

/// Why a rule could not be written.
#[derive(Debug)]
pub enum PutRuleError {
    /// The rule is invalid: what is wrong, with its field.
    Invalid(String),
    Io(std::io::Error),
}

/// The server's parts the rules work with.
pub struct RuleServices {
    pub sources: Arc<Sources>,
    pub ingest: Arc<Ingest>,
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    pub silences: Arc<super::silence::Silences>,
    pub history: History,
}

impl RuleManager {
    pub fn new(
        services: RuleServices,
        notifiers: Notifiers,
        state_dir: PathBuf,
        external_url: String,
        queries_dir: PathBuf,
    ) -> RuleManager {
        let RuleServices {
            sources,
            ingest,
            telemetry,
            silences,
            history,
        } = services;
        let runner = Runner::with_metrics(
            Arc::new(crate::scheduler::runner::SystemClock),
            16,
            Arc::clone(&telemetry.scheduler),
        );
        let outbox = Outbox::open(&state_dir)
            .map_err(|error| tracing::error!(%error, "cannot open the outbox; deliveries are not recorded"))
            .ok()
            .map(Arc::new);
        RuleManager {
            silences,
            outbox,
            sources,
            ingest,
            notifiers: Arc::new(notifiers),
            history,
            state_dir,
            external_url,
            queries_dir,
            runner,
            telemetry,
            states: Default::default(),
            unsaved: Default::default(),
            outbox_failing: Default::default(),
            running: Default::default(),
            broken: Default::default(),
            statuses: Default::default(),
            reload_now: Default::default(),
            deliveries: tokio_util::task::TaskTracker::new(),
            file_cache: Default::default(),
        }
    }

    /// Loads `queries/` and keeps it loaded: file events (and a rescan every 10 s) reload
    /// what changed. A broken edit is reported and the last good version keeps running;
    /// a deleted (or renamed-away) rule stops and its firing alerts resolve as "rule
    /// changed", as do those of a rule whose `group_by` changed.
    /// Lets the deliveries in progress finish, for at most `within` (at shutdown); those
    /// still retrying stay in the outbox and resume at the next start.
    pub async fn finish_deliveries(&self, within: Duration) {
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

    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        // deliveries a previous run recorded but did not finish
        if let Some(outbox) = &self.outbox {
            for (id, delivery) in outbox.pending() {
                tracing::info!(rule = %delivery.rule, "resuming a delivery recorded before the restart");
                self.dispatch(Some(id), delivery);
            }
        }
        let changed = Arc::clone(&self.reload_now);
        let events = Arc::clone(&changed);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // our own reads of the files are events too (open, access, close): reacting
                // to them would reload forever
                if event.is_ok_and(|event| !matches!(event.kind, notify::EventKind::Access(_))) {
                    events.notify_one();
                }
            })
            .map_err(|error| tracing::warn!(%error, "cannot watch queries; rescanning every 10 s"))
            .ok();
        // a directory that does not exist yet (the rules API creates it) is watched once
        // it does
        let mut watching = false;
        loop {
            if !watching && let Some(watcher) = &mut watcher {
                use notify::Watcher;
                watching = watcher
                    .watch(&self.queries_dir, notify::RecursiveMode::NonRecursive)
                    .is_ok();
            }
            self.reload(&cancel).await;
            tokio::select! {
                () = cancel.cancelled() => break,
                () = changed.notified() => {
                    // an editor writes in several steps: let them settle
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                () = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
        for (_, running) in std::mem::take(&mut *self.lock_running()) {
            running.cancel.cancel();
        }
    }

    /// Whether an active silence matches this alert: its group labels, the rule's
    /// labels, `alertname` and `severity`.
    fn silenced(&self, rule: &LoadedRule, group: &BTreeMap<String, String>) -> bool {
        self.silences
            .silenced(&alert_labels(rule, group), Utc::now())
    }

    fn lock_statuses(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RuleStatus>> {
        self.statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record_status(
        &self,
        rule: &str,
        tick: DateTime<Utc>,
        took: Duration,
        error: Option<&String>,
    ) {
        let mut statuses = self.lock_statuses();
        let status = statuses.entry(rule.to_string()).or_default();
        status.last_evaluation = Some(tick);
        status.evaluation_seconds = took.as_secs_f64();
        status.last_error = error.cloned();
    }

    /// The running rules with their last evaluation and active alerts, and with their
    /// warnings when `with_warnings` (which reads the index's fields and the TSDB).
    pub fn rules(&self, with_warnings: bool) -> Vec<RuleView> {
        let (mut views, loaded) = self.rule_views();
        if with_warnings {
            // outside the locks: evaluations must not wait for this
            for (view, (rule, text)) in views.iter_mut().zip(loaded) {
                view.warnings = super::dead_query::warnings(
                    &rule,
                    &text,
                    &self.origin(&view.name),
                    &self.sources,
                );
            }
        }
        views
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

    /// How errors and warnings name rule `name`'s file.
    pub fn origin(&self, name: &str) -> String {
        self.queries_dir
            .join(format!("{name}.json"))
            .display()
            .to_string()
    }

    /// What `rule` (whose text is `text`) names that the data does not have, once
    /// everything acknowledged is searchable.
    pub async fn warnings(&self, rule: &LoadedRule, text: &str, origin: &str) -> Vec<String> {
        self.refresh_for(rule).await;
        super::dead_query::warnings(rule, text, origin, &self.sources)
    }

    /// Every rule file of `queries/`: name, text, and why it does not run when it does not.
    pub fn rule_files(&self) -> Vec<(String, String, Option<String>)> {
        self.read_queries()
            .into_iter()
            .map(|(name, (path, text))| {
                let error = LoadedRule::parse(&text, &name, &path.display().to_string())
                    .err()
                    .map(|error| error.to_string());
                (name, text, error)
            })
            .collect()
    }

    /// The `*.json` files of `queries/` by rule name, with their text. A file whose
    /// inode, size and modification time are those of the last read is not read again.
    fn read_queries(&self) -> BTreeMap<String, (PathBuf, String)> {
        use std::os::unix::fs::MetadataExt;
        let mut cache = self
            .file_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut files = BTreeMap::new();
        let mut seen = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(&self.queries_dir) {
            for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
                if path.extension().is_none_or(|extension| extension != "json") {
                    continue;
                }
                let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
                    continue;
                };
                let Ok(metadata) = std::fs::metadata(&path) else {
                    continue;
                };
                let identity = (
                    metadata.ino(),
                    metadata.len(),
                    metadata.mtime_nsec(),
                    metadata.mtime(),
                );
                let text = match cache.remove(&path) {
                    Some((cached, text)) if cached == identity => text,
                    _ => match std::fs::read_to_string(&path) {
                        Ok(text) => text,
                        Err(_) => continue,
                    },
                };
                seen.insert(path.clone(), (identity, text.clone()));
                files.insert(name.to_string(), (path, text));
            }
        }
        *cache = seen;
        files
    }

    /// The text of rule `name`'s file, if there is one.
    pub fn rule_text(&self, name: &str) -> Option<String> {
        if !super::model::valid_name(name) {
            return None;
        }
        std::fs::read_to_string(self.queries_dir.join(format!("{name}.json"))).ok()
    }

    /// Checks `text` as rule `name` and writes it to `queries/NAME.json` (atomically),
    /// then reloads; returns whether the rule is new. Nothing is written when it is
    /// invalid.
    pub fn put_rule(&self, name: &str, text: &str) -> Result<bool, PutRuleError> {
        if !super::model::valid_name(name) {
            return Err(PutRuleError::Invalid(format!(
                "`{name}`: a rule name is [A-Za-z0-9_-]+ (it becomes the file name)"
            )));
        }
        LoadedRule::parse(text, name, "request body")
            .map_err(|error| PutRuleError::Invalid(error.to_string()))?;
        std::fs::create_dir_all(&self.queries_dir).map_err(PutRuleError::Io)?;
        let path = self.queries_dir.join(format!("{name}.json"));
        let created = !path.exists();
        crate::atomic_file::write(&path, text.as_bytes()).map_err(PutRuleError::Io)?;
        tracing::info!(rule = name, created, "rule written through the API");
        self.reload_now.notify_one();
        Ok(created)
    }

    /// Deletes `queries/NAME.json` and reloads (its alerts resolve as "rule changed");
    /// returns whether there was one.
    pub fn delete_rule(&self, name: &str) -> std::io::Result<bool> {
        if !super::model::valid_name(name) {
            return Ok(false);
        }
        match std::fs::remove_file(self.queries_dir.join(format!("{name}.json"))) {
            Ok(()) => {
                tracing::info!(rule = name, "rule deleted through the API");
                self.reload_now.notify_one();
                Ok(true)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// What `rule` would do if it were evaluated at `at`: the count of each group, the
    /// phase each alert is in and would move to (from the rule's persisted state), and
    /// the messages it would send — without sending, recording or saving anything.
    pub async fn dry_run(
        self: &Arc<Self>,
        rule: &Arc<LoadedRule>,
        at: DateTime<Utc>,
    ) -> Result<serde_json::Value, String> {
        self.refresh_for(rule).await;
        let observations = self.observe(rule, at).await?;
        let mut state = self.load_state(&rule.name);
        let before = state.clone();
        let notices = self.advance(
            rule,
            at,
            observations,
            &mut state,
            &History::disabled(),
            true,
        );
        let phase = |state: &RuleState, key: &str| {
            state
                .alerts
                .get(key)
                .map_or(super::alert_state::Phase::Inactive, |group| {
                    group.alert.phase
                })
        };
        let groups: Vec<serde_json::Value> = state
            .alerts
            .iter()
            .map(|(key, group)| {
                serde_json::json!({
                    "labels": group.labels,
                    "count": group.value,
                    "condition": rule.holds(group.value),
                    "state": phase(&before, key),
                    "would_become": group.alert.phase,
                })
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
        for (notifier, message) in self.messages(rule, at, notices).await? {
            messages.push(serde_json::json!({
                "notifier": notifier,
                "kind": message.kind.name(),
                "alerts": message.alerts.len(),
                "payload": self.payload(&notifier, &message),
            }));
        }
        let start = at - chrono::Duration::from_std(rule.window).unwrap_or_default();
        Ok(serde_json::json!({
            "rule": rule.name,
            "at": at.to_rfc3339(),
            "window": {"from": start.to_rfc3339(), "to": at.to_rfc3339()},
            "threshold": rule.threshold_text(),
            "groups": groups,
            "messages": messages,
        }))
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn reload(self: &Arc<Self>, cancel: &CancellationToken) {
        let files = self.read_queries();
        let mut stopped: Vec<Arc<LoadedRule>> = Vec::new();
        {
            let mut running = self.lock_running();
            let mut broken = self
                .broken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (name, (path, text)) in &files {
                if running
                    .get(name)
                    .is_some_and(|current| current.text == *text)
                    || broken.get(name) == Some(text)
                {
                    continue;
                }
                match LoadedRule::load(path) {
                    Ok(rule) => {
                        broken.remove(name);
                        self.sources.log_matches.set(name, rule.saved_query());
                        {
                            // "never matched" and `expect_matches` count from this version
                            let mut statuses = self.lock_statuses();
                            let status = statuses.entry(name.clone()).or_default();
                            status.loaded_at = Some(Utc::now());
                            status.evaluations_since_load = 0;
                            status.last_match = None;
                        }
                        let rule = Arc::new(rule);
                        if let Some(old) = running.remove(name) {
                            old.cancel.cancel();
                            let regrouped = old.rule.file.group_by != rule.file.group_by;
                            tracing::info!(rule = %name, "rule changed; reloaded");
                            if regrouped {
                                stopped.push(old.rule);
                            }
                        }
                        let rule_cancel = cancel.child_token();
                        self.spawn_rule(Arc::clone(&rule), rule_cancel.clone());
                        running.insert(
                            name.clone(),
                            Running {
                                text: text.clone(),
                                rule,
                                cancel: rule_cancel,
                            },
                        );
                    }
                    Err(error) => {
                        if running.contains_key(name) {
                            tracing::error!(rule = %name, %error, "broken edit; the last good version keeps running");
                        } else {
                            tracing::error!(rule = %name, %error, "rule not loaded");
                        }
                        broken.insert(name.clone(), text.clone());
                    }
                }
            }
            let gone: Vec<String> = running
                .keys()
                .filter(|name| !files.contains_key(*name))
                .cloned()
                .collect();
            for name in gone {
                if let Some(old) = running.remove(&name) {
                    old.cancel.cancel();
                    self.sources.log_matches.set(&name, None);
                    self.telemetry
                        .rule_health
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&name);
                    self.lock_statuses().remove(&name);
                    tracing::info!(rule = %name, "rule removed");
                    stopped.push(old.rule);
                }
            }
            broken.retain(|name, _| files.contains_key(name));
        }
        for rule in stopped {
            self.resolve_all(&rule);
        }
    }

    /// Resolves every alert of `rule` as "rule changed" and forgets its state (a rule
    /// that keeps running under a new `group_by` starts over).
    fn resolve_all(&self, rule: &LoadedRule) {
        let state = self.load_state(&rule.name);
        let now = Utc::now();
        let mut resolved = Vec::new();
        for (_, mut group) in state.alerts {
            let silenced = self.silenced(rule, &group.labels);
            group.value = 0.0;
            let step = group
                .alert
                .resolve(now, ResolveReason::RuleChanged, silenced);
            if let Some(transition) = step.transition {
                record_transition(&self.history, rule, now, &group, transition, silenced);
            }
            if let Some(notice) = step.notice {
                resolved.push(notice_line(notice, now, &group));
            }
        }
        self.forget_state(&rule.name);
        for (notifier, kind, alerts) in self.route(rule, resolved) {
            let message = self.message(rule, now, kind, alerts);
            if let Some((id, delivery)) = self.record(rule, &notifier, &message) {
                self.dispatch(id, delivery);
            }
        }
    }

    fn spawn_rule(self: &Arc<Self>, rule: Arc<LoadedRule>, cancel: CancellationToken) {
        let manager = Arc::clone(self);
        let job_rule = Arc::clone(&rule);
        let job: Job = Arc::new(move |tick| {
            let (manager, rule) = (Arc::clone(&manager), Arc::clone(&job_rule));
            Box::pin(async move {
                let telemetry = &manager.telemetry;
                telemetry.rule_evaluations.add(&rule.name, 1);
                // the wait for agents' watermarks is not the evaluation's duration
                manager.wait_for_agents(&rule, tick).await;
                let started = std::time::Instant::now();
                // a panic (a bug) fails this evaluation only: the rule is unhealthy with
                // the reason, the next tick tries again, the other rules go on
                let result = std::panic::AssertUnwindSafe(manager.evaluate(&rule, tick))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        Err(format!(
                            "the evaluation panicked (a bug; please report it): {}",
                            crate::error::panic_message(&*panic)
                        ))
                    });
                manager.record_status(&rule.name, tick, started.elapsed(), result.as_ref().err());
                if let Err(error) = &result {
                    telemetry.rule_failures.add(&rule.name, 1);
                    tracing::error!(rule = %rule.name, %error, "rule evaluation failed");
                }
                telemetry
                    .rule_health
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(rule.name.clone(), result.is_ok());
            })
        });
        for name in &rule.file.notify {
            self.notifiers.warn_if_unknown(name, &rule.name);
        }
        tracing::info!(rule = %rule.name, schedule = %rule.file.schedule, "rule loaded");
        self.runner
            .spawn(rule.name.clone(), rule.schedule.clone(), job, cancel);
    }

    fn state_path(&self, rule: &str) -> PathBuf {
        self.state_dir.join("rules").join(format!("{rule}.json"))
    }

    fn lock_states(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RuleState>> {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn load_state(&self, rule: &str) -> RuleState {
        if let Some(state) = self.lock_states().get(rule) {
            return state.clone();
        }
        std::fs::read(self.state_path(rule))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<RuleState>(&bytes).ok())
            .filter(|state| state.version == STATE_VERSION)
            .unwrap_or_default()
    }

    /// Keeps `state` as the rule's current state and writes it to disk unless what a
    /// restart needs is already there: the evaluation's `value` is informational, and
    /// without `group_by` the one group never expires, so its `last_seen` does not matter
    /// either. (Writing 1000 unchanged files with two fsyncs each every minute was most of
    /// the CPU of 1000 quiet rules.)
    fn save_state(&self, rule: &str, grouped: bool, state: &RuleState) -> std::io::Result<()> {
        let unchanged = self
            .lock_states()
            .insert(rule.to_string(), state.clone())
            .is_some_and(|saved| same_on_disk(&saved, state, grouped));
        if unchanged && !self.lock_unsaved().contains(rule) {
            return Ok(());
        }
        let path = self.state_path(rule);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::atomic_file::write(
            &path,
            &serde_json::to_vec_pretty(state).expect("state serializes"),
        )
    }

    /// Where this manager records transitions and deliveries.
    pub fn history(&self) -> &History {
        &self.history
    }

    fn lock_unsaved(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.unsaved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets a rule's state, in memory and on disk.
    fn forget_state(&self, rule: &str) {
        self.lock_states().remove(rule);
        let _ = std::fs::remove_file(self.state_path(rule));
    }

    /// Makes everything acknowledged searchable, when `rule` reads the log index (a
    /// metric rule over scraped series does not need the commit).
    async fn refresh_for(&self, rule: &LoadedRule) {
        if self.sources.reads_logs(rule) {
            self.ingest.refresh().await;
        }
    }

    /// Waits (at most `max_delay` past the tick) until every live agent has shipped
    /// everything up to the tick (rules that read no logs do not wait, nor does any rule
    /// while storage is degraded).
    async fn wait_for_agents(&self, rule: &LoadedRule, tick: DateTime<Utc>) {
        if !self.sources.reads_logs(rule) {
            return;
        }
        // storage degraded: agents are refused and cannot catch up, so waiting would only
        // delay alerts exactly when the host is in trouble
        if self.ingest.disk().degraded() {
            return;
        }
        let tick_micros = tick.timestamp_micros();
        let deadline = tick + chrono::Duration::from_std(rule.max_delay).unwrap_or_default();
        loop {
            match self
                .ingest
                .agents
                .min_live_watermark(std::time::Instant::now())
            {
                None => return,
                Some(Some(watermark)) if watermark >= tick_micros => return,
                Some(_) if Utc::now() >= deadline => {
                    tracing::warn!(rule = %rule.name, %tick, "agents' watermarks did not reach the tick within max_delay; evaluating anyway");
                    return;
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Evaluates `rule` at `tick` once its agents were waited for: makes everything
    /// acknowledged searchable, observes, steps the alerts, records the messages, saves
    /// the state, then sends.
    async fn evaluate(
        self: &Arc<Self>,
        rule: &Arc<LoadedRule>,
        tick: DateTime<Utc>,
    ) -> Result<(), String> {
        self.refresh_for(rule).await;
        let observations = self.observe(rule, tick).await?;
        let matched = super::dead_query::matched(rule, &observations);
        let mut state = self.load_state(&rule.name);
        let notices = self.advance(rule, tick, observations, &mut state, &self.history, true);
        let quiet = self.expect_matches(rule, tick, matched, &mut state, &self.history);
        // the messages are recorded in the outbox before the state that says they were
        // sent, so a crash between the two repeats a notice rather than losing it
        let mut deliveries = Vec::new();
        // without its messages the state is not saved: the next tick finds the same
        // transitions and tries again
        for (notifier, message) in self.messages(rule, tick, notices).await? {
            deliveries.extend(self.record(rule, &notifier, &message));
        }
        if let Some(period) = rule.expect_matches {
            for (notifier, mut message) in self.messages(rule, tick, quiet).await? {
                super::dead_query::rewrite_message(&mut message, period, state.last_match);
                deliveries.extend(self.record(rule, &notifier, &message));
            }
        }
        let grouped = !rule.file.group_by.is_empty();
        match self.save_state(&rule.name, grouped || rule.expect_matches.is_some(), &state) {
            Ok(()) => {
                if self.lock_unsaved().remove(&rule.name) {
                    tracing::info!(rule = %rule.name, "alert state saved again");
                }
            }
            Err(error) => {
                if self.lock_unsaved().insert(rule.name.clone()) {
                    tracing::error!(rule = %rule.name, %error, "cannot save alert state; it is kept in memory, alerting goes on, and it is written again at each evaluation until the disk accepts it");
                }
            }
        }
        let mut active: Vec<ActiveAlert> = state
            .alerts
            .values()
            .filter(|group| group.alert.phase != super::alert_state::Phase::Inactive)
            .map(|group| ActiveAlert {
                labels: group.labels.clone(),
                firing: group.alert.phase == super::alert_state::Phase::Firing,
                active_since: group.alert.active_since,
                value: group.value,
                annotations: annotations(rule, &group.labels, group.value),
            })
            .collect();
        if let (Some(group), Some(period)) = (&state.no_matches, rule.expect_matches)
            && group.alert.phase == super::alert_state::Phase::Firing
        {
            active.push(ActiveAlert {
                labels: group.labels.clone(),
                firing: true,
                active_since: group.alert.active_since,
                value: 0.0,
                annotations: BTreeMap::from([(
                    "summary".to_string(),
                    format!(
                        "`{}` has matched nothing for {}",
                        rule.name,
                        humantime::format_duration(period)
                    ),
                )]),
            });
        }
        {
            let mut statuses = self.lock_statuses();
            let status = statuses.entry(rule.name.clone()).or_default();
            status.alerts = active;
            status.evaluations_since_load += 1;
            if matched {
                status.last_match = Some(tick);
            }
        }
        for (id, delivery) in deliveries {
            self.dispatch(id, delivery);
        }
        Ok(())
    }

    /// Steps the `expect_matches` alert of `rule` at `tick` (firing while its query has
    /// matched nothing for the period, resolved at its next match) and returns what is
    /// to be announced. Without `expect_matches` only the last match is kept.
    fn expect_matches(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        matched: bool,
        state: &mut RuleState,
        history: &History,
    ) -> Vec<(MessageKind, AlertLine)> {
        if matched {
            state.last_match = Some(tick);
        }
        let Some(period) = rule.expect_matches else {
            state.no_matches = None;
            return Vec::new();
        };
        let loaded_at = self
            .lock_statuses()
            .get(&rule.name)
            .and_then(|status| status.loaded_at)
            .unwrap_or(tick);
        let quiet = super::dead_query::quiet_too_long(period, tick, state.last_match, loaded_at);
        let group = state.no_matches.get_or_insert_with(|| GroupState {
            labels: super::dead_query::no_matches_labels(),
            ..GroupState::default()
        });
        let silenced = self.silenced(rule, &group.labels);
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

    /// What the rule sees at `tick` (counts per group, or output series).
    async fn observe(
        &self,
        rule: &Arc<LoadedRule>,
        tick: DateTime<Utc>,
    ) -> Result<Vec<Observation>, String> {
        let (sources, rule) = (Arc::clone(&self.sources), Arc::clone(rule));
        tokio::task::spawn_blocking(move || sources.observe(&rule, tick))
            .await
            .map_err(|error| failed("reading what the rule counts", error))?
    }

    /// Steps every alert of the rule with what `tick` observed; records transitions in
    /// `history`; returns what is to be announced. A log rule's groups seen within
    /// `group_ttl` count 0 when absent and resolve as "group gone" past it; a metric
    /// rule's absent series is a false condition, and is forgotten once inactive.
    fn advance(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        observations: Vec<Observation>,
        state: &mut RuleState,
        history: &History,
        apply_silences: bool,
    ) -> Vec<(MessageKind, AlertLine)> {
        state.version = STATE_VERSION;
        let silenced =
            |labels: &BTreeMap<String, String>| apply_silences && self.silenced(rule, labels);
        let key = |labels: &BTreeMap<String, String>| {
            labels
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        // (labels, value, whether the series is there)
        let mut observed: BTreeMap<String, (BTreeMap<String, String>, f64, bool)> = observations
            .into_iter()
            .map(|seen| (key(&seen.labels), (seen.labels, seen.value, true)))
            .collect();
        let ttl = chrono::Duration::from_std(rule.group_ttl).unwrap_or_default();
        for (group_key, group) in &state.alerts {
            if !rule.zero_fills() {
                // an absent series: the condition is false
                observed
                    .entry(group_key.clone())
                    .or_insert_with(|| (group.labels.clone(), 0.0, false));
            } else if group.last_seen.is_some_and(|seen| tick - seen <= ttl) {
                // groups seen within group_ttl but absent now count 0 (a flatline fires)
                observed
                    .entry(group_key.clone())
                    .or_insert_with(|| (group.labels.clone(), 0.0, true));
            }
        }
        let mut notices: Vec<(MessageKind, AlertLine)> = Vec::new();
        let mut ended = Vec::new();
        for (group_key, (labels, value, present)) in &observed {
            let group = state.alerts.entry(group_key.clone()).or_default();
            group.labels = labels.clone();
            group.value = *value;
            let seen = if rule.zero_fills() {
                *value > 0.0
            } else {
                *present
            };
            if seen {
                group.last_seen = Some(tick);
            }
            let silenced = silenced(labels);
            let holds = *present && rule.holds(*value);
            if holds {
                group.firing_value = Some(*value);
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
        notices
    }

    /// The messages `notices` make (see [`RuleManager::compose`]), off the async threads.
    async fn messages(
        self: &Arc<Self>,
        rule: &Arc<LoadedRule>,
        tick: DateTime<Utc>,
        notices: Vec<(MessageKind, AlertLine)>,
    ) -> Result<Vec<(String, AlertMessage)>, String> {
        let (manager, rule) = (Arc::clone(self), Arc::clone(rule));
        tokio::task::spawn_blocking(move || manager.compose(&rule, tick, notices))
            .await
            .map_err(|error| failed("composing the notifications", error))
    }

    /// The messages `notices` make: one per notifier and kind, with the sample lines and
    /// `context` values of the first alert for firing and repeat messages; blocking.
    fn compose(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        notices: Vec<(MessageKind, AlertLine)>,
    ) -> Vec<(String, AlertMessage)> {
        let mut messages = Vec::new();
        for (notifier, kind, alerts) in self.route(rule, notices) {
            let mut message = self.message(rule, tick, kind, alerts);
            if kind != MessageKind::Resolved {
                let data = template_data(rule, &message.alerts[0], false);
                message.samples = self.sources.samples(rule, tick, &data.labels);
                message.context = self
                    .sources
                    .context(rule, tick, &data)
                    .iter()
                    .map(context_line)
                    .collect();
            }
            messages.push((notifier, message));
        }
        messages
    }

    /// Splits the notices of one tick by notifier and kind: each notifier gets one message
    /// per kind with the alerts routed to it.
    fn route(
        &self,
        rule: &LoadedRule,
        notices: Vec<(MessageKind, AlertLine)>,
    ) -> Vec<(String, MessageKind, Vec<AlertLine>)> {
        let mut messages: BTreeMap<(String, u8), (MessageKind, Vec<AlertLine>)> = BTreeMap::new();
        for (kind, line) in notices {
            let order = match kind {
                MessageKind::Firing => 0,
                MessageKind::Repeat => 1,
                MessageKind::Resolved => 2,
            };
            for notifier in self
                .notifiers
                .route(&rule.file.notify, &alert_labels(rule, &line.labels))
            {
                messages
                    .entry((notifier, order))
                    .or_insert_with(|| (kind, Vec::new()))
                    .1
                    .push(line.clone());
            }
        }
        messages
            .into_iter()
            .map(|((notifier, _), (kind, alerts))| (notifier, kind, alerts))
            .collect()
    }

    fn message(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        kind: MessageKind,
        alerts: Vec<AlertLine>,
    ) -> AlertMessage {
        let first = &alerts[0];
        let resolved = kind == MessageKind::Resolved;
        let data = template_data(rule, first, resolved);
        let summary = rule.summary.as_ref().map_or_else(
            || {
                let text = match &rule.source {
                    RuleSource::Logs { .. } => {
                        format!("{} matches in the last {}", first.value, data.window)
                    }
                    RuleSource::Metrics { expr } => format!("{} = {}", expr.text, first.value),
                };
                if resolved {
                    format!("{text} (last value while firing)")
                } else {
                    text
                }
            },
            |template| template.render(&data),
        );
        let description = rule
            .description
            .as_ref()
            .map(|template| template.render(&data));
        let start = tick - chrono::Duration::from_std(rule.window).unwrap_or_default();
        let (link, window) = match &rule.source {
            RuleSource::Logs { index, query } => (
                search_url(
                    &self.external_url,
                    index,
                    query,
                    &start.to_rfc3339(),
                    &tick.to_rfc3339(),
                )
                .map(|url| (url, "Search these logs")),
                data.window.clone(),
            ),
            RuleSource::Metrics { expr } => (
                graph_url(&self.external_url, &expr.text, tick).map(|url| (url, "Graph this")),
                String::new(),
            ),
        };
        AlertMessage {
            kind,
            rule: rule.name.clone(),
            at: tick,
            labels: rule.file.labels.clone(),
            description,
            severity: rule
                .file
                .severity
                .clone()
                .unwrap_or_else(|| "warning".into()),
            summary,
            threshold: rule.threshold_text(),
            window,
            alerts,
            samples: Vec::new(),
            context: Vec::new(),
            runbook_url: rule.file.runbook_url.clone(),
            link,
        }
    }

    /// What `notifier_name` is sent for `message` (`None`: nothing, it is UI only).
    fn payload(&self, notifier_name: &str, message: &AlertMessage) -> Option<serde_json::Value> {
        match self.notifiers.get(notifier_name).as_ref() {
            Notifier::Ui => None,
            Notifier::Webhook(_) => Some(alertmanager_payload(
                message,
                notifier_name,
                &self.external_url,
            )),
            Notifier::Slack(_) | Notifier::Console => Some(slack_payload(message)),
        }
    }

    /// Records the delivery of `message` to `notifier` in the outbox (when there is
    /// one); `None` for the `ui` notifier, which only records the history.
    fn record(
        &self,
        rule: &LoadedRule,
        notifier_name: &str,
        message: &AlertMessage,
    ) -> Option<(Option<String>, Delivery)> {
        let now = Utc::now();
        let Some(payload) = self.payload(notifier_name, message) else {
            self.telemetry.notifications.add(notifier_name, "ui", 1);
            self.history.record(delivery_event(
                &rule.name,
                notifier_name,
                message.kind.name(),
                message.alerts.len(),
                "ui",
                None,
            ));
            return None;
        };
        let delivery = Delivery {
            rule: rule.name.clone(),
            notifier: notifier_name.to_string(),
            kind: message.kind.name().to_string(),
            alerts: message.alerts.len(),
            payload,
            created: now,
            deadline: now + chrono::Duration::minutes(10),
        };
        let id = match &self.outbox {
            Some(outbox) => match outbox.record(&delivery) {
                Ok(id) => {
                    if self
                        .outbox_failing
                        .swap(false, std::sync::atomic::Ordering::Relaxed)
                    {
                        tracing::info!(rule = %rule.name, "deliveries are recorded in the outbox again");
                    }
                    Some(id)
                }
                Err(error) => {
                    if self
                        .outbox_failing
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        tracing::debug!(rule = %rule.name, %error, "cannot record the delivery; sending it unrecorded");
                    } else {
                        tracing::error!(rule = %rule.name, %error, "cannot record deliveries in the outbox; sending them unrecorded (a restart before they are delivered loses them) until it can");
                    }
                    None
                }
            },
            None => None,
        };
        Some((id, delivery))
    }

    /// Sends a recorded delivery in the background and forgets it once it ended; every
    /// attempt goes to the history.
    fn dispatch(&self, id: Option<String>, delivery: Delivery) {
        let notifier = self.notifiers.get(&delivery.notifier);
        let telemetry = Arc::clone(&self.telemetry);
        let outbox = self.outbox.clone();
        let history = self.history.clone();
        self.deliveries.spawn(async move {
            let (rule_name, notifier_name) = (&delivery.rule, &delivery.notifier);
            let event = |outcome: &str, attempt: Option<&Attempt>| {
                delivery_event(
                    rule_name,
                    notifier_name,
                    &delivery.kind,
                    delivery.alerts,
                    outcome,
                    attempt,
                )
            };
            match notifier.as_ref() {
                Notifier::Slack(webhook) | Notifier::Webhook(webhook) => {
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
                            (Some(_), None)
                                if attempt.status.is_some_and(|status| {
                                    (400..500).contains(&status) && status != 429
                                }) =>
                            {
                                "rejected"
                            }
                            (Some(_), None) => "gave_up",
                        };
                        history.record(event(outcome, Some(&attempt)));
                    };
                    let outcome = webhook
                        .deliver_reporting(
                            &delivery.payload,
                            tokio::time::Instant::now() + left,
                            &report,
                        )
                        .await;
                    telemetry
                        .notifications
                        .add(notifier_name, outcome.name(), 1);
                    match outcome {
                        crate::notify::webhook::Outcome::Delivered { attempts } => {
                            tracing::info!(rule = %rule_name, notifier = %notifier_name, attempts, "alert delivered")
                        }
                        outcome => {
                            tracing::error!(rule = %rule_name, notifier = %notifier_name, ?outcome, "alert not delivered")
                        }
                    }
                }
                Notifier::Console | Notifier::Ui => {
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
        "severity": rule.file.severity.as_deref().unwrap_or("warning"),
        "from": from,
        "to": to,
        "reason": reason,
        "value": group.value,
        "silenced": silenced,
        "message": format!("{} {} → {}{}", rule.name, from, to, labels_suffix(&group.labels)),
    }));
}

/// Whether two states persist the same facts (see `RuleManager::save_state`).
fn same_on_disk(saved: &RuleState, current: &RuleState, grouped: bool) -> bool {
    let alarm = |state: &RuleState| state.no_matches.as_ref().map(|group| group.alert.clone());
    saved.version == current.version
        && alarm(saved) == alarm(current)
        && (!grouped || saved.last_match == current.last_match)
        && saved.alerts.len() == current.alerts.len()
        && saved
            .alerts
            .iter()
            .zip(&current.alerts)
            .all(|((saved_key, saved), (key, now))| {
                saved_key == key
                    && saved.labels == now.labels
                    && saved.alert == now.alert
                    && saved.firing_value == now.firing_value
                    && (!grouped || saved.last_seen == now.last_seen)
            })
}

/// The labels an alert is matched on by silences and routes: the rule's `labels`, the
/// group labels, `alertname` and `severity`.
fn alert_labels(rule: &LoadedRule, group: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = rule.file.labels.clone();
    labels.extend(group.clone());
    labels.insert("alertname".into(), rule.name.clone());
    labels.entry("severity".into()).or_insert_with(|| {
        rule.file
            .severity
            .clone()
            .unwrap_or_else(|| "warning".into())
    });
    labels
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
    }
    event
}

/// An alert's rendered annotations (`summary`, `description`, `runbook_url`).
fn annotations(
    rule: &LoadedRule,
    labels: &BTreeMap<String, String>,
    value: f64,
) -> BTreeMap<String, String> {
    let data = template_data(
        rule,
        &AlertLine {
            labels: labels.clone(),
            value,
            fired_for: None,
            reason: None,
            starts_at: None,
        },
        false,
    );
    let mut annotations = BTreeMap::new();
    if let Some(summary) = &rule.summary {
        annotations.insert("summary".to_string(), summary.render(&data));
    }
    if let Some(description) = &rule.description {
        annotations.insert("description".to_string(), description.render(&data));
    }
    if let Some(url) = &rule.file.runbook_url {
        annotations.insert("runbook_url".to_string(), url.clone());
    }
    annotations
}

/// What a rule's templates see for one alert (`resolved`: in a resolve message, where its
/// value is the last seen while firing).
fn template_data(rule: &LoadedRule, alert: &AlertLine, resolved: bool) -> TemplateData {
    TemplateData {
        resolved,
        labels: alert.labels.clone(),
        value: alert.value,
        count: alert.value.max(0.0) as u64,
        window: match rule.source {
            RuleSource::Logs { .. } => humantime::format_duration(rule.window).to_string(),
            RuleSource::Metrics { .. } => String::new(),
        },
        threshold: rule.threshold_text(),
        rule: rule.name.clone(),
    }
}

/// One `context` value as a message line: `expression{extra labels} = value unit`.
fn context_line(context: &ContextValue) -> String {
    if let Some(error) = &context.error {
        return format!("{}: {error}", context.expression);
    }
    if context.values.is_empty() {
        return format!("{} = no data", context.expression);
    }
    context
        .values
        .iter()
        .map(|(labels, value)| {
            format!(
                "{}{labels} = {}",
                context.expression,
                super::template::humanize_unit(*value, &context.unit)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The UI's metrics page for `expression`, the hour before `at`.
fn graph_url(external_url: &str, expression: &str, at: DateTime<Utc>) -> Option<String> {
    let base = format!("{}/ui/metrics", external_url.trim_end_matches('/'));
    let from = at - chrono::Duration::hours(1);
    reqwest::Url::parse_with_params(
        &base,
        [
            ("expr", expression),
            ("from", &from.to_rfc3339()),
            ("to", &at.to_rfc3339()),
        ],
    )
    .ok()
    .map(String::from)
}

/// The message line of `notice`; a resolve reports the last value while firing.
fn notice_line(notice: Notice, at: DateTime<Utc>, group: &GroupState) -> (MessageKind, AlertLine) {
    let line = |fired_for: Option<std::time::Duration>, reason: Option<String>| AlertLine {
        labels: group.labels.clone(),
        value: match notice {
            Notice::Resolved { .. } => group.firing_value.unwrap_or(group.value),
            Notice::Firing | Notice::Repeat => group.value,
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

/// Why a rule's blocking step did not finish: the panic's message (a bug, which fails this
/// evaluation only) or the runtime shutting down.
fn failed(what: &str, error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(panic) => format!(
            "{what} panicked (a bug; please report it): {}",
            crate::error::panic_message(&*panic)
        ),
        Err(error) => format!("{what} was cancelled: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(value: f64, seen: i64, phase: super::super::alert_state::Phase) -> RuleState {
        let alert = AlertState {
            phase,
            ..AlertState::default()
        };
        RuleState {
            version: STATE_VERSION,
            alerts: BTreeMap::from([(
                String::new(),
                GroupState {
                    labels: BTreeMap::new(),
                    last_seen: DateTime::from_timestamp(seen, 0),
                    value,
                    firing_value: None,
                    alert,
                },
            )]),
            ..RuleState::default()
        }
    }

    #[test]
    fn only_what_a_restart_needs_makes_a_state_write() {
        use super::super::alert_state::Phase;
        let saved = state(0.0, 1_795_341_600, Phase::Inactive);
        // the evaluation's value is informational
        assert!(same_on_disk(
            &saved,
            &state(7.0, 1_795_341_600, Phase::Inactive),
            false
        ));
        // last_seen matters only when groups can expire
        let later = state(0.0, 1_795_341_660, Phase::Inactive);
        assert!(same_on_disk(&saved, &later, false));
        assert!(!same_on_disk(&saved, &later, true));
        // a phase change is always written
        assert!(!same_on_disk(
            &saved,
            &state(0.0, 1_795_341_600, Phase::Pending),
            false
        ));
        // and the value a resolve after a restart reports
        let mut held = state(7.0, 1_795_341_600, Phase::Inactive);
        for group in held.alerts.values_mut() {
            group.firing_value = Some(7.0);
        }
        assert!(!same_on_disk(&saved, &held, false));
    }
}
