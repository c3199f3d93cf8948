//! Runs the rules of `queries/`: at each tick T of a rule, wait for every live agent's
//! watermark to pass T (at most `max_delay`), make everything acknowledged searchable,
//! observe (a log rule counts `[T − window, T)` per group, zero-filling groups seen within
//! `group_ttl`; a metric rule evaluates its PromQL at T, one alert per output series),
//! step each alert's lifecycle ([`super::lifecycle`]), compose what the transitions call
//! for ([`super::compose`]), record it for delivery, persist the state
//! ([`super::state_store`]), then hand the messages to the notify [`Dispatcher`]. Log
//! rules are published to PromQL as `log_matches` series as they load.
//!
//! `queries/` is watched ([`super::loader`]): changed rules reload, a broken edit keeps
//! the last good version, a deleted rule resolves its alerts. Each alert that changes is
//! routed to its notifiers (the rule's `notify`, else the routes); each notifier gets one
//! message per rule and tick, recorded in the outbox before the state that says it was
//! sent. Transitions and delivery attempts go to the `.lookout-alerts` history.
//!
//! On a full disk (or any failing write under `state/`) alerting goes on from memory:
//! states are kept in memory until they can be written, deliveries are sent unrecorded,
//! history events wait in [`History`]'s queue.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

mod replay;

pub use replay::{FiringAlert, ReplayStep};

use super::compose::{Composer, alert_labels, annotations};
use super::loader::{PutRuleError, QueryDir};
use super::observe::{Observation, ObserveError, Sources};
use super::rule::{LoadedRule, RuleSource};
use super::state_store::StateStore;
use crate::ingest::Ingest;
use crate::notify::dispatch::Dispatcher;
use crate::notify::history::History;
use crate::notify::message::{AlertLine, AlertMessage, MessageKind};
use crate::notify::route::Destination;
use crate::scheduler::runner::{Job, Runner};

/// Runs the rules.
pub struct RuleManager {
    sources: Arc<Sources>,
    ingest: Arc<Ingest>,
    dispatcher: Arc<Dispatcher>,
    composer: Arc<Composer>,
    history: History,
    queries: QueryDir,
    runner: Runner,
    telemetry: Arc<crate::telemetry::Telemetry>,
    silences: Arc<super::silence::Silences>,
    states: StateStore,
    /// Where the states are (and the stall test hook's file).
    state_dir: PathBuf,
    /// Rules running, by name, with the file text they run.
    running: std::sync::Mutex<BTreeMap<String, Running>>,
    /// Files that failed to load, with their text, so one broken edit is reported once.
    broken: std::sync::Mutex<BTreeMap<String, String>>,
    statuses: std::sync::Mutex<BTreeMap<String, RuleStatus>>,
    /// The tenant's `limits.max_rules` (`None`: no limit).
    max_rules: Option<usize>,
    /// Rule files not running because of `max_rules`; retried at each reload, so one
    /// starts as soon as a slot frees.
    over_limit: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Rules refused for `max_rules` (at load, once per rule, or through the API).
    rules_refused: crate::telemetry::Counter,
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

/// Why an evaluation (or a dry run, a replay, a backtest) of a rule failed.
#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// A replayed tick could not be observed.
    #[error("at {at}: {error}")]
    ObserveAt { at: String, error: ObserveError },
    /// A step panicked: a bug, which fails this evaluation only.
    #[error("{what} panicked (a bug; please report it): {message}")]
    Panicked { what: &'static str, message: String },
    /// A step was cancelled (the runtime is shutting down).
    #[error("{what} was cancelled: {error}")]
    Cancelled {
        what: &'static str,
        error: tokio::task::JoinError,
    },
    /// A replay's blocking task did not finish.
    #[error(transparent)]
    Replay(tokio::task::JoinError),
    #[error("more than {max} evaluations between {from} and {to}; shorten the range")]
    TooManyTicks {
        max: usize,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
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
    /// Rules read from `queries_dir`, their states kept under `state_dir`, their messages
    /// delivered by `dispatcher`, with links to `external_url`.
    pub fn new(
        services: RuleServices,
        dispatcher: Arc<Dispatcher>,
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
        let composer = Arc::new(Composer {
            sources: Arc::clone(&sources),
            dispatcher: Arc::clone(&dispatcher),
            external_url,
        });
        RuleManager {
            silences,
            sources,
            ingest,
            dispatcher,
            composer,
            history,
            queries: QueryDir::new(queries_dir),
            runner,
            telemetry,
            states: StateStore::new(&state_dir),
            state_dir,
            running: Default::default(),
            broken: Default::default(),
            statuses: Default::default(),
            max_rules: None,
            over_limit: Default::default(),
            rules_refused: Default::default(),
        }
    }

    /// Runs at most `max_rules` rules (the tenant's `limits.max_rules`): the files beyond
    /// it, in name order, are not loaded and the rules API refuses new ones.
    pub fn with_max_rules(mut self, max_rules: Option<usize>) -> RuleManager {
        self.max_rules = max_rules;
        self
    }

    /// Rules running now.
    pub fn rule_count(&self) -> usize {
        self.lock_running().len()
    }

    /// Rules refused for `max_rules` since the start.
    pub fn rules_refused(&self) -> u64 {
        self.rules_refused.get()
    }

    /// Lets the deliveries in progress finish, for at most `within` (at shutdown); those
    /// still retrying stay in the outbox and resume at the next start.
    pub async fn finish_deliveries(&self, within: Duration) {
        self.dispatcher.finish(within).await;
    }

    /// Loads `queries/` and keeps it loaded: file events (and a rescan every 10 s) reload
    /// what changed. A broken edit is reported and the last good version keeps running;
    /// a deleted (or renamed-away) rule stops and its firing alerts resolve as "rule
    /// changed", as do those of a rule whose `group_by` changed. Deliveries a previous run
    /// recorded but did not finish are sent first.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        self.dispatcher.resume();
        tokio::spawn(Arc::clone(&self.dispatcher).run_groups(cancel.clone()));
        self.queries.watch(&cancel, || self.reload(&cancel)).await;
        for (_, running) in std::mem::take(&mut *self.lock_running()) {
            running.cancel.cancel();
        }
    }

    /// Whether an active silence matches an alert of `rule` with these group labels (its
    /// labels, the rule's `labels`, `alertname` and `severity`).
    fn silenced<'a>(
        &'a self,
        rule: &'a LoadedRule,
    ) -> impl Fn(&BTreeMap<String, String>) -> bool + 'a {
        move |group| {
            self.silences
                .silenced(&alert_labels(rule, group), Utc::now())
        }
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
        self.queries.origin(name)
    }

    /// The text of rule `name`'s file, if there is one.
    pub fn rule_text(&self, name: &str) -> Option<String> {
        self.queries.text(name)
    }

    /// Writes rule `name` (see [`QueryDir::write`]); returns whether it is new.
    pub fn put_rule(&self, name: &str, text: &str) -> Result<bool, PutRuleError> {
        if let Some(max) = self.max_rules
            && self.queries.text(name).is_none()
            && self.queries.files().len() >= max
        {
            self.rules_refused.add(1);
            return Err(PutRuleError::LimitReached(format!(
                "rule `{name}` not created: this tenant has its limit of {max} rules (limits.max_rules); delete a rule first or ask for a higher limit"
            )));
        }
        self.queries.write(name, text)
    }

    /// Deletes rule `name` (see [`QueryDir::delete`]); returns whether there was one.
    pub fn delete_rule(&self, name: &str) -> std::io::Result<bool> {
        self.queries.delete(name)
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

    /// What routing does with an alert of rule `rule` with these group labels (see
    /// [`Dispatcher::decisions`]).
    pub fn routing_of(
        &self,
        rule: &str,
        group: &BTreeMap<String, String>,
    ) -> Vec<serde_json::Value> {
        let Some(loaded) = self
            .lock_running()
            .get(rule)
            .map(|running| Arc::clone(&running.rule))
        else {
            return Vec::new();
        };
        self.dispatcher
            .decisions(&loaded.file.notify, &alert_labels(&loaded, group))
    }

    /// Every configured notifier's name (Alertmanager's `/api/v2/receivers`).
    pub fn receivers(&self) -> Vec<String> {
        self.dispatcher.receivers()
    }

    /// Test hook (debug builds, `LOOKOUT_TEST_HOOKS=1`): while `state/test-stall-rules`
    /// exists, rule evaluations wait, as a hung scheduler would (the heartbeat test).
    #[cfg(debug_assertions)]
    async fn stall_hook(&self) {
        if !crate::fault::enabled() {
            return;
        }
        while self.state_dir.join("test-stall-rules").exists() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where this manager records transitions and deliveries.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// What `rule` (whose text is `text`) names that the data does not have, once
    /// everything acknowledged is searchable.
    pub async fn warnings(&self, rule: &LoadedRule, text: &str, origin: &str) -> Vec<String> {
        self.refresh_for(rule).await;
        super::dead_query::warnings(rule, text, origin, &self.sources)
    }

    /// Every rule file of `queries/`: name, text, and why it does not run when it does not.
    pub fn rule_files(&self) -> Vec<(String, String, Option<String>)> {
        self.queries
            .files()
            .into_iter()
            .map(|(name, (path, text))| {
                let error = LoadedRule::parse(&text, &name, &path.display().to_string())
                    .err()
                    .map(|error| error.to_string())
                    .or_else(|| self.over_limit_reason(&name));
                (name, text, error)
            })
            .collect()
    }

    /// Why rule `name` does not run when `max_rules` keeps it out.
    fn over_limit_reason(&self, name: &str) -> Option<String> {
        let max = self.max_rules?;
        self.over_limit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(name)
            .then(|| {
                format!("not running: this tenant runs its limit of {max} rules (limits.max_rules)")
            })
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn reload(self: &Arc<Self>, cancel: &CancellationToken) {
        let files = self.queries.files();
        let mut stopped: Vec<Arc<LoadedRule>> = Vec::new();
        {
            let mut running = self.lock_running();
            let mut broken = self
                .broken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // removed rules first: they free slots of `max_rules`
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
            let mut over_limit = self
                .over_limit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            over_limit.retain(|name| files.contains_key(name));
            for (name, (path, text)) in &files {
                if running
                    .get(name)
                    .is_some_and(|current| current.text == *text)
                    || broken.get(name) == Some(text)
                {
                    continue;
                }
                if let Some(max) = self.max_rules
                    && !running.contains_key(name)
                    && running.len() >= max
                {
                    if over_limit.insert(name.clone()) {
                        self.rules_refused.add(1);
                        tracing::error!(rule = %name, max_rules = max, "rule not loaded: this tenant runs its limit of rules (limits.max_rules); delete a rule or raise the limit");
                    }
                    continue;
                }
                over_limit.remove(name);
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
            broken.retain(|name, _| files.contains_key(name));
        }
        for rule in stopped {
            self.resolve_all(&rule);
        }
    }

    /// Resolves every alert of `rule` as "rule changed" and forgets its state (a rule
    /// that keeps running under a new `group_by` starts over).
    fn resolve_all(&self, rule: &LoadedRule) {
        let state = self.states.load(&rule.name);
        let now = Utc::now();
        let resolved =
            super::lifecycle::resolve_all(rule, state, now, &self.history, &self.silenced(rule));
        self.states.forget(&rule.name);
        // only resolve messages: no samples to read, nothing blocks
        let messages = self.composer.compose_routed(rule, now, resolved);
        for recorded in self.dispatcher.accept(messages) {
            self.dispatcher.send(recorded);
        }
    }

    fn spawn_rule(self: &Arc<Self>, rule: Arc<LoadedRule>, cancel: CancellationToken) {
        let manager = Arc::clone(self);
        let job_rule = Arc::clone(&rule);
        let job: Job = Arc::new(move |tick| {
            let (manager, rule) = (Arc::clone(&manager), Arc::clone(&job_rule));
            Box::pin(async move {
                #[cfg(debug_assertions)]
                manager.stall_hook().await;
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
                        Err(EvaluationError::Panicked {
                            what: "the evaluation",
                            message: crate::panic::message(&*panic).to_string(),
                        })
                    });
                let error = result.as_ref().err().map(ToString::to_string);
                manager.record_status(&rule.name, tick, started.elapsed(), error);
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
            self.dispatcher.warn_if_unknown(name, &rule.name);
        }
        tracing::info!(rule = %rule.name, schedule = %rule.file.schedule, "rule loaded");
        self.runner
            .spawn(rule.name.clone(), rule.schedule.clone(), job, cancel);
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
    ) -> Result<(), EvaluationError> {
        self.refresh_for(rule).await;
        let observations = self.observe(rule, tick).await?;
        let matched = super::dead_query::matched(rule, &observations);
        let mut state = self.states.load(&rule.name);
        let silenced = self.silenced(rule);
        let notices = super::lifecycle::advance(
            rule,
            tick,
            observations,
            &mut state,
            &self.history,
            &silenced,
        );
        let loaded_at = self
            .lock_statuses()
            .get(&rule.name)
            .and_then(|status| status.loaded_at)
            .unwrap_or(tick);
        let quiet = super::lifecycle::expect_matches(
            rule,
            tick,
            matched,
            &mut state,
            &self.history,
            (loaded_at, &silenced),
        );
        // the messages are recorded in the outbox before the state that says they were
        // sent, so a crash between the two repeats a notice rather than losing it
        let mut deliveries = Vec::new();
        // without its messages the state is not saved: the next tick finds the same
        // transitions and tries again
        let mut messages = self.messages(rule, tick, notices).await?;
        if let Some(period) = rule.expect_matches {
            for (destination, mut message) in self.messages(rule, tick, quiet).await? {
                super::dead_query::rewrite_message(&mut message, period, state.last_match);
                messages.push((destination, message));
            }
        }
        // grouped (at once, for routes that do not wait) and recorded before the state
        deliveries.extend(self.dispatcher.accept(messages));
        let grouped = !rule.file.group_by.is_empty();
        self.states
            .save(&rule.name, grouped || rule.expect_matches.is_some(), &state);
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
        for recorded in deliveries {
            self.dispatcher.send(recorded);
        }
        Ok(())
    }

    /// What the rule sees at `tick` (counts per group, or output series).
    async fn observe(
        &self,
        rule: &Arc<LoadedRule>,
        tick: DateTime<Utc>,
    ) -> Result<Vec<Observation>, EvaluationError> {
        let (sources, rule) = (Arc::clone(&self.sources), Arc::clone(rule));
        let observations = tokio::task::spawn_blocking(move || sources.observe(&rule, tick))
            .await
            .map_err(|error| failed("reading what the rule counts", error))??;
        Ok(observations)
    }

    /// The messages `notices` make (see [`Composer::compose`]), off the async threads.
    async fn messages(
        &self,
        rule: &Arc<LoadedRule>,
        tick: DateTime<Utc>,
        notices: Vec<(MessageKind, AlertLine)>,
    ) -> Result<Vec<(Destination, AlertMessage)>, EvaluationError> {
        let (composer, rule) = (Arc::clone(&self.composer), Arc::clone(rule));
        tokio::task::spawn_blocking(move || composer.compose_routed(&rule, tick, notices))
            .await
            .map_err(|error| failed("composing the notifications", error))
    }
}

/// Why a rule's blocking step did not finish: the panic's message (a bug, which fails this
/// evaluation only) or the runtime shutting down.
fn failed(what: &'static str, error: tokio::task::JoinError) -> EvaluationError {
    match error.try_into_panic() {
        Ok(panic) => EvaluationError::Panicked {
            what,
            message: crate::panic::message(&*panic).to_string(),
        },
        Err(error) => EvaluationError::Cancelled { what, error },
    }
}
