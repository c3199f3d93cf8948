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

use chrono::Utc;
use tokio_util::sync::CancellationToken;

mod evaluation;
mod reload;
mod replay;
mod status;

pub use evaluation::EvaluationError;
pub use replay::{FiringAlert, ReplayStep};
pub use status::{ActiveAlert, RuleStatus, RuleView};

use super::compose::{Composer, alert_labels};
use super::loader::{PutRuleError, QueryDir};
use super::observe::Sources;
use super::rule::LoadedRule;
use super::state_store::StateStore;
use crate::ingest::Ingest;
use crate::notify::dispatch::Dispatcher;
use crate::notify::history::History;
use crate::scheduler::runner::Runner;

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
    /// Where the stall test hook's file is (debug builds only).
    #[cfg(debug_assertions)]
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
    /// What recording rules wrote at their last tick (for their staleness markers).
    recorder: Arc<super::recording::Recorder>,
}

struct Running {
    text: String,
    rule: Arc<LoadedRule>,
    cancel: CancellationToken,
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
            #[cfg(debug_assertions)]
            state_dir,
            running: Default::default(),
            broken: Default::default(),
            statuses: Default::default(),
            max_rules: None,
            over_limit: Default::default(),
            rules_refused: Default::default(),
            recorder: Default::default(),
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

    /// Where alerts go to Alertmanager (Prometheus' `/api/v1/alertmanagers`).
    pub fn alertmanager_endpoints(&self) -> Vec<String> {
        self.dispatcher.alertmanager_endpoints()
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
}
