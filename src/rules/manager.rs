//! Runs the log rules of `queries/`: at each tick T of a rule, wait for every live agent's
//! watermark to pass T (at most `max_delay`), make everything acknowledged searchable,
//! count `[T − window, T)` per group (zero-filling groups seen within `group_ttl`), step
//! each alert's lifecycle, send what the transitions call for, and persist the state.
//!
//! `queries/` is watched: changed rules reload, a broken edit keeps the last good version,
//! a deleted rule resolves its alerts. What this version leaves to the next (issue 4
//! stays open): the rules API and dry run, silences, routes and webhook notifiers, the
//! `.lookout-alerts` history, delivery records that survive restarts, PromQL rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::alert_state::{AlertState, Notice, ResolveReason, Timing};
use super::evaluate::{GroupCount, Window, count_window, sample_lines};
use super::model::{RuleFile, Threshold, ThresholdOp, read_rule};
use super::template::{Template, TemplateData};
use crate::index::IndexStore;
use crate::ingest::Ingest;
use crate::notify::message::{AlertLine, AlertMessage, MessageKind, search_url, slack_payload};
use crate::notify::outbox::{Delivery, Outbox};
use crate::notify::slack::{Outcome, SlackWebhook};
use crate::scheduler::runner::{Job, Runner};
use crate::scheduler::schedule::Schedule;

const STATE_VERSION: u32 = 1;

/// A rule ready to run.
pub struct LoadedRule {
    pub name: String,
    pub file: RuleFile,
    pub schedule: Schedule,
    pub window: Duration,
    pub threshold: Threshold,
    pub timing: Timing,
    pub summary: Option<Template>,
    pub max_delay: Duration,
    pub group_ttl: Duration,
}

fn duration(field: &str, text: Option<&str>, default: Duration) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text).map_err(|error| {
            format!("`{field}`: `{text}` is not a duration like \"1m\" ({error})")
        }),
    }
}

impl LoadedRule {
    /// Reads and checks one rule file.
    pub fn load(path: &Path) -> Result<LoadedRule, String> {
        let file = read_rule(path)?;
        let at = |error: String| format!("{}: {error}", path.display());
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or_default()
            .to_string();
        if file.query.is_none() {
            return Err(at(
                "`query`: only log rules (with `query`) run so far".into()
            ));
        }
        let threshold = file.threshold.clone().ok_or_else(|| {
            at("`threshold`: a log rule needs one, e.g. {\"op\": \">\", \"value\": 20}".into())
        })?;
        let window =
            duration("window", file.window.as_deref(), Duration::from_secs(60)).map_err(at)?;
        let timing = Timing {
            for_duration: duration("for", file.for_duration.as_deref(), Duration::ZERO)
                .map_err(at)?,
            keep_firing_for: duration(
                "keep_firing_for",
                file.keep_firing_for.as_deref(),
                Duration::ZERO,
            )
            .map_err(at)?,
            repeat_interval: match &file.repeat_interval {
                None => None,
                Some(text) => {
                    Some(duration("repeat_interval", Some(text), Duration::ZERO).map_err(at)?)
                }
            },
        };
        let max_delay = duration(
            "max_delay",
            file.max_delay.as_deref(),
            Duration::from_secs(30),
        )
        .map_err(at)?;
        let group_ttl = duration(
            "group_ttl",
            file.group_ttl.as_deref(),
            (window * 10).max(Duration::from_secs(3600)),
        )
        .map_err(at)?;
        let schedule = Schedule::parse(&file.schedule, file.timezone.as_deref())
            .map_err(|error| at(format!("`schedule`: {error}")))?;
        let summary = file
            .summary
            .as_deref()
            .map(|text| Template::parse(text, Some(&file.group_by)))
            .transpose()
            .map_err(|error| at(format!("`summary`: {error}")))?;
        Ok(LoadedRule {
            name,
            file,
            schedule,
            window,
            threshold,
            timing,
            summary,
            max_delay,
            group_ttl,
        })
    }

    fn holds(&self, count: f64) -> bool {
        let value = self.threshold.value;
        match self.threshold.op {
            ThresholdOp::Greater => count > value,
            ThresholdOp::GreaterOrEqual => count >= value,
            ThresholdOp::Less => count < value,
            ThresholdOp::LessOrEqual => count <= value,
            ThresholdOp::Equal => count == value,
            ThresholdOp::NotEqual => count != value,
        }
    }

    fn threshold_text(&self) -> String {
        let op = match self.threshold.op {
            ThresholdOp::Greater => ">",
            ThresholdOp::GreaterOrEqual => ">=",
            ThresholdOp::Less => "<",
            ThresholdOp::LessOrEqual => "<=",
            ThresholdOp::Equal => "==",
            ThresholdOp::NotEqual => "!=",
        };
        format!("{op} {}", self.threshold.value)
    }
}

/// Where alerts go.
pub enum Notifier {
    Slack(SlackWebhook),
    /// Logged (and printed to stdout), for setups without Slack.
    Console,
}

impl Notifier {
    /// Slack when `SLACK_WEBHOOK_URL` is set (DESIGN §6), else the console.
    pub fn from_environment() -> Notifier {
        match std::env::var("SLACK_WEBHOOK_URL") {
            Ok(url) if !url.trim().is_empty() => Notifier::Slack(SlackWebhook::new(
                crate::config::Secret(url.trim().to_string()),
            )),
            _ => Notifier::Console,
        }
    }
}

/// The persisted state of one rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RuleState {
    version: u32,
    /// Alerts by their group labels (`k=v,k=v`).
    alerts: BTreeMap<String, GroupState>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct GroupState {
    labels: BTreeMap<String, String>,
    last_seen: Option<DateTime<Utc>>,
    /// The count at the last evaluation.
    #[serde(default)]
    value: f64,
    alert: AlertState,
}

/// Runs the rules.
pub struct RuleManager {
    store: Arc<IndexStore>,
    ingest: Arc<Ingest>,
    notifier: Arc<Notifier>,
    state_dir: PathBuf,
    external_url: String,
    queries_dir: PathBuf,
    runner: Runner,
    telemetry: Arc<crate::telemetry::Telemetry>,
    silences: Arc<super::silence::Silences>,
    outbox: Option<Arc<Outbox>>,
    /// Each rule's alert state as last saved (read from disk once, at its first tick).
    states: std::sync::Mutex<BTreeMap<String, RuleState>>,
    /// Rules running, by name, with the file text they run.
    running: std::sync::Mutex<BTreeMap<String, Running>>,
    /// Files that failed to load, with their text, so one broken edit is reported once.
    broken: std::sync::Mutex<BTreeMap<String, String>>,
    statuses: std::sync::Mutex<BTreeMap<String, RuleStatus>>,
}

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
}

#[derive(Debug, Clone)]
pub struct ActiveAlert {
    pub labels: BTreeMap<String, String>,
    pub firing: bool,
    pub active_since: Option<DateTime<Utc>>,
    pub value: f64,
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
}

/// The server's parts the rules work with.
pub struct RuleServices {
    pub store: Arc<IndexStore>,
    pub ingest: Arc<Ingest>,
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    pub silences: Arc<super::silence::Silences>,
}

impl RuleManager {
    pub fn new(
        services: RuleServices,
        notifier: Notifier,
        state_dir: PathBuf,
        external_url: String,
        queries_dir: PathBuf,
    ) -> RuleManager {
        let RuleServices {
            store,
            ingest,
            telemetry,
            silences,
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
            store,
            ingest,
            notifier: Arc::new(notifier),
            state_dir,
            external_url,
            queries_dir,
            runner,
            telemetry,
            states: Default::default(),
            running: Default::default(),
            broken: Default::default(),
            statuses: Default::default(),
        }
    }

    /// Loads `queries/` and keeps it loaded: file events (and a rescan every 10 s) reload
    /// what changed. A broken edit is reported and the last good version keeps running;
    /// a deleted (or renamed-away) rule stops and its firing alerts resolve as "rule
    /// changed", as do those of a rule whose `group_by` changed.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        // deliveries a previous run recorded but did not finish
        if let Some(outbox) = &self.outbox {
            for (id, delivery) in outbox.pending() {
                tracing::info!(rule = %delivery.rule, "resuming a delivery recorded before the restart");
                self.dispatch(Some(id), delivery);
            }
        }
        let changed = Arc::new(tokio::sync::Notify::new());
        let events = Arc::clone(&changed);
        let mut watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
            events.notify_one();
        })
        .ok();
        if let Some(watcher) = &mut watcher {
            use notify::Watcher;
            if let Err(error) =
                watcher.watch(&self.queries_dir, notify::RecursiveMode::NonRecursive)
            {
                tracing::warn!(directory = %self.queries_dir.display(), %error, "cannot watch queries; rescanning every 10 s");
            }
        }
        loop {
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
        let mut labels = rule.file.labels.clone();
        labels.extend(group.clone());
        labels.insert("alertname".into(), rule.name.clone());
        if let Some(severity) = &rule.file.severity {
            labels
                .entry("severity".into())
                .or_insert_with(|| severity.clone());
        }
        self.silences.silenced(&labels, Utc::now())
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

    /// The running rules with their last evaluation and active alerts.
    pub fn rules(&self) -> Vec<RuleView> {
        let running = self.lock_running();
        let statuses = self.lock_statuses();
        running
            .iter()
            .map(|(name, running)| RuleView {
                name: name.clone(),
                query: running.rule.file.query.clone().unwrap_or_default(),
                for_seconds: running.rule.timing.for_duration.as_secs_f64(),
                labels: running.rule.file.labels.clone(),
                summary: running.rule.file.summary.clone(),
                severity: running.rule.file.severity.clone(),
                status: statuses.get(name).cloned().unwrap_or_default(),
            })
            .collect()
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn reload(self: &Arc<Self>, cancel: &CancellationToken) {
        let mut files: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(&self.queries_dir) {
            for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
                if path.extension().is_none_or(|extension| extension != "json") {
                    continue;
                }
                let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
                    continue;
                };
                if let Ok(text) = std::fs::read_to_string(&path) {
                    files.insert(name.to_string(), (path, text));
                }
            }
        }
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
            let step = group
                .alert
                .resolve(now, ResolveReason::RuleChanged, silenced);
            if let Some(notice) = step.notice {
                resolved.push(notice_line(notice, group.labels, 0.0).1);
            }
        }
        self.forget_state(&rule.name);
        if !resolved.is_empty() {
            let message = self.message(rule, now, MessageKind::Resolved, resolved);
            let (id, delivery) = self.record(rule, &message);
            self.dispatch(id, delivery);
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
                let started = std::time::Instant::now();
                let result = manager.evaluate(&rule, tick).await;
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

    fn save_state(&self, rule: &str, state: &RuleState) -> std::io::Result<()> {
        self.lock_states().insert(rule.to_string(), state.clone());
        let path = self.state_path(rule);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::atomic_file::write(
            &path,
            &serde_json::to_vec_pretty(state).expect("state serializes"),
        )
    }

    /// Forgets a rule's state, in memory and on disk.
    fn forget_state(&self, rule: &str) {
        self.lock_states().remove(rule);
        let _ = std::fs::remove_file(self.state_path(rule));
    }

    /// Waits (at most `max_delay` past the tick) until every live agent has shipped
    /// everything up to the tick.
    async fn wait_for_agents(&self, rule: &LoadedRule, tick: DateTime<Utc>) {
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

    async fn evaluate(&self, rule: &LoadedRule, tick: DateTime<Utc>) -> Result<(), String> {
        self.wait_for_agents(rule, tick).await;
        self.ingest.refresh().await;
        let store = Arc::clone(&self.store);
        let (index, query, group_by) = (
            rule.file.index.clone().unwrap_or_else(|| "logs".into()),
            rule.file.query.clone().expect("log rules have a query"),
            rule.file.group_by.clone(),
        );
        let (end_micros, length) = (tick.timestamp_micros(), rule.window);
        let counts: Vec<GroupCount> = tokio::task::spawn_blocking(move || {
            count_window(
                &store,
                &Window {
                    index: &index,
                    query: &query,
                    group_by: &group_by,
                    end_micros,
                    length,
                },
            )
        })
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())?;

        let mut state = self.load_state(&rule.name);
        state.version = STATE_VERSION;
        let key = |labels: &BTreeMap<String, String>| {
            labels
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut observed: BTreeMap<String, (BTreeMap<String, String>, u64)> = counts
            .into_iter()
            .map(|group| (key(&group.labels), (group.labels, group.count)))
            .collect();
        // groups seen within group_ttl but absent now count 0 (a flatline fires)
        let ttl = chrono::Duration::from_std(rule.group_ttl).unwrap_or_default();
        for (group_key, group) in &state.alerts {
            if group.last_seen.is_some_and(|seen| tick - seen <= ttl) {
                observed
                    .entry(group_key.clone())
                    .or_insert_with(|| (group.labels.clone(), 0));
            }
        }
        let mut notices: Vec<(MessageKind, AlertLine)> = Vec::new();
        for (group_key, (labels, count)) in &observed {
            let group = state.alerts.entry(group_key.clone()).or_default();
            group.labels = labels.clone();
            group.value = *count as f64;
            if *count > 0 {
                group.last_seen = Some(tick);
            }
            let silenced = self.silenced(rule, labels);
            let step = group
                .alert
                .step(tick, rule.holds(*count as f64), silenced, &rule.timing);
            if let Some(notice) = step.notice {
                notices.push(notice_line(notice, labels.clone(), *count as f64));
            }
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
                let silenced = self.silenced(rule, &group.labels);
                let step = group
                    .alert
                    .resolve(tick, ResolveReason::GroupGone, silenced);
                if let Some(notice) = step.notice {
                    notices.push(notice_line(notice, group.labels, 0.0));
                }
            }
        }
        // the messages are recorded in the outbox before the state that says they were
        // sent, so a crash between the two repeats a notice rather than losing it
        let mut deliveries = Vec::new();
        for kind in [
            MessageKind::Firing,
            MessageKind::Repeat,
            MessageKind::Resolved,
        ] {
            let alerts: Vec<AlertLine> = notices
                .iter()
                .filter(|(notice_kind, _)| *notice_kind == kind)
                .map(|(_, line)| line.clone())
                .collect();
            if alerts.is_empty() {
                continue;
            }
            let mut message = self.message(rule, tick, kind, alerts);
            if kind != MessageKind::Resolved {
                message.samples = self.samples(rule, tick, &message.alerts[0].labels).await;
            }
            deliveries.push(self.record(rule, &message));
        }
        if let Err(error) = self.save_state(&rule.name, &state) {
            tracing::error!(rule = %rule.name, %error, "cannot save alert state");
        }
        let active: Vec<ActiveAlert> = state
            .alerts
            .values()
            .filter(|group| group.alert.phase != super::alert_state::Phase::Inactive)
            .map(|group| ActiveAlert {
                labels: group.labels.clone(),
                firing: group.alert.phase == super::alert_state::Phase::Firing,
                active_since: group.alert.active_since,
                value: group.value,
            })
            .collect();
        self.lock_statuses()
            .entry(rule.name.clone())
            .or_default()
            .alerts = active;
        for (id, delivery) in deliveries {
            self.dispatch(id, delivery);
        }
        Ok(())
    }

    fn message(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        kind: MessageKind,
        alerts: Vec<AlertLine>,
    ) -> AlertMessage {
        let first = &alerts[0];
        let window_text = humantime::format_duration(rule.window).to_string();
        let summary = rule.summary.as_ref().map_or_else(
            || format!("{} matches in the last {window_text}", first.value),
            |template| {
                template.render(&TemplateData {
                    labels: first.labels.clone(),
                    value: first.value,
                    count: first.value as u64,
                    window: window_text.clone(),
                    threshold: rule.threshold_text(),
                    rule: rule.name.clone(),
                })
            },
        );
        let start = tick - chrono::Duration::from_std(rule.window).unwrap_or_default();
        let index = rule.file.index.clone().unwrap_or_else(|| "logs".into());
        AlertMessage {
            kind,
            rule: rule.name.clone(),
            severity: rule
                .file
                .severity
                .clone()
                .unwrap_or_else(|| "warning".into()),
            summary,
            threshold: rule.threshold_text(),
            window: window_text,
            alerts,
            samples: Vec::new(),
            runbook_url: rule.file.runbook_url.clone(),
            search_url: search_url(
                &self.external_url,
                &index,
                rule.file.query.as_ref().expect("log rules have a query"),
                &start.to_rfc3339(),
                &tick.to_rfc3339(),
            ),
        }
    }

    /// The newest matching lines of the window in one group, for the message.
    async fn samples(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        labels: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let store = Arc::clone(&self.store);
        let (index, query, labels) = (
            rule.file.index.clone().unwrap_or_else(|| "logs".into()),
            rule.file.query.clone().expect("log rules have a query"),
            labels.clone(),
        );
        let (end_micros, length) = (tick.timestamp_micros(), rule.window);
        let result = tokio::task::spawn_blocking(move || {
            sample_lines(
                &store,
                &Window {
                    index: &index,
                    query: &query,
                    group_by: &[],
                    end_micros,
                    length,
                },
                &labels,
                crate::notify::message::MAX_SAMPLES,
            )
        })
        .await;
        match result {
            Ok(Ok(lines)) => lines,
            Ok(Err(error)) => {
                tracing::warn!(rule = %rule.name, %error, "cannot fetch sample lines");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Records the delivery of `message` in the outbox (when there is one).
    fn record(&self, rule: &LoadedRule, message: &AlertMessage) -> (Option<String>, Delivery) {
        let now = Utc::now();
        let delivery = Delivery {
            rule: rule.name.clone(),
            payload: slack_payload(message),
            created: now,
            deadline: now + chrono::Duration::minutes(10),
        };
        let id = match &self.outbox {
            Some(outbox) => match outbox.record(&delivery) {
                Ok(id) => Some(id),
                Err(error) => {
                    tracing::error!(rule = %rule.name, %error, "cannot record the delivery; sending it unrecorded");
                    None
                }
            },
            None => None,
        };
        (id, delivery)
    }

    /// Sends a recorded delivery in the background and forgets it once it ended.
    fn dispatch(&self, id: Option<String>, delivery: Delivery) {
        let notifier = Arc::clone(&self.notifier);
        let telemetry = Arc::clone(&self.telemetry);
        let outbox = self.outbox.clone();
        tokio::spawn(async move {
            let rule_name = &delivery.rule;
            let payload = &delivery.payload;
            match notifier.as_ref() {
                Notifier::Slack(webhook) => {
                    let left = (delivery.deadline - Utc::now())
                        .to_std()
                        .unwrap_or_default();
                    let outcome = webhook
                        .deliver(payload, tokio::time::Instant::now() + left)
                        .await;
                    telemetry.notifications.add(
                        match outcome {
                            Outcome::Delivered { .. } => "delivered",
                            Outcome::Rejected { .. } => "rejected",
                            Outcome::GaveUp { .. } => "gave_up",
                        },
                        1,
                    );
                    match outcome {
                        Outcome::Delivered { attempts } => {
                            tracing::info!(rule = %rule_name, attempts, "alert delivered to slack")
                        }
                        outcome => {
                            tracing::error!(rule = %rule_name, ?outcome, "alert not delivered to slack")
                        }
                    }
                }
                Notifier::Console => {
                    telemetry.notifications.add("console", 1);
                    tracing::info!(rule = %rule_name, message = %payload["text"], "alert (console)");
                    println!("alert {}", payload["text"]);
                }
            }
            if let (Some(id), Some(outbox)) = (id, outbox) {
                outbox.complete(&id);
            }
        });
    }
}

fn notice_line(
    notice: Notice,
    labels: BTreeMap<String, String>,
    value: f64,
) -> (MessageKind, AlertLine) {
    match notice {
        Notice::Firing => (
            MessageKind::Firing,
            AlertLine {
                labels,
                value,
                fired_for: None,
                reason: None,
            },
        ),
        Notice::Repeat => (
            MessageKind::Repeat,
            AlertLine {
                labels,
                value,
                fired_for: None,
                reason: None,
            },
        ),
        Notice::Resolved { reason, fired_for } => (
            MessageKind::Resolved,
            AlertLine {
                labels,
                value,
                fired_for: Some(fired_for),
                reason: match reason {
                    ResolveReason::Condition => None,
                    ResolveReason::GroupGone => Some("group gone".into()),
                    ResolveReason::RuleChanged => Some("rule changed".into()),
                },
            },
        ),
    }
}
