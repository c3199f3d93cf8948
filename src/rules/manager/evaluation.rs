//! One rule's tick: wait for the agents, observe, step the alerts, record the messages
//! before the state that says they were sent, save, send. A panic or a cancelled step
//! fails that evaluation only ([`EvaluationError`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::{ActiveAlert, RuleManager};
use crate::notify::message::{AlertLine, AlertMessage, MessageKind};
use crate::notify::route::Destination;
use crate::rules::compose::annotations;
use crate::rules::observe::{Observation, ObserveError};
use crate::rules::rule::{LoadedRule, RuleSource};
use crate::scheduler::runner::Job;

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
    /// A recording rule's output could not be written.
    #[error(transparent)]
    Record(#[from] crate::rules::recording::RecordError),
    /// An SLO rule cannot be replayed now.
    #[error("{0}")]
    Slo(String),
    #[error("more than {max} evaluations between {from} and {to}; shorten the range")]
    TooManyTicks {
        max: usize,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}
impl RuleManager {
    pub(super) fn spawn_rule(self: &Arc<Self>, rule: Arc<LoadedRule>, cancel: CancellationToken) {
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
    pub(super) async fn refresh_for(&self, rule: &LoadedRule) {
        if self.sources.reads_logs(rule) {
            self.ingest.refresh().await;
        }
    }

    /// Waits (at most `max_delay` past the tick) until every live agent has shipped
    /// everything up to the tick (rules that read no logs do not wait, nor does any rule
    /// while storage is degraded).
    pub(super) async fn wait_for_agents(&self, rule: &LoadedRule, tick: DateTime<Utc>) {
        if !self.sources.reads_logs(rule) {
            return;
        }
        let tick_micros = tick.timestamp_micros();
        let deadline = tick + chrono::Duration::from_std(rule.max_delay).unwrap_or_default();
        loop {
            // storage degraded (checked at every turn: the disk may fill while waiting):
            // agents are refused and cannot catch up, so waiting would only delay alerts
            // exactly when the host is in trouble
            if self.ingest.disk().degraded() {
                return;
            }
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
    pub(super) async fn evaluate(
        self: &Arc<Self>,
        rule: &Arc<LoadedRule>,
        tick: DateTime<Utc>,
    ) -> Result<(), EvaluationError> {
        self.refresh_for(rule).await;
        if rule.file.record.is_some() {
            return self.record(rule, tick).await;
        }
        let observations = self.observe(rule, tick).await?;
        // a new-term rule observes only new values; its query matched when its window had
        // any value
        let matched = if rule.new_term.is_some() {
            self.sources.new_terms.window_matched(&rule.name)
        } else {
            crate::rules::dead_query::matched(rule, &observations)
        };
        let mut state = self.states.load(&rule.name);
        let silenced = self.silenced(rule);
        let notices = crate::rules::lifecycle::advance(
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
        let quiet = crate::rules::lifecycle::expect_matches(
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
                crate::rules::dead_query::rewrite_message(&mut message, period, state.last_match);
                messages.push((destination, message));
            }
        }
        // grouped (at once, for routes that do not wait) and recorded before the state
        deliveries.extend(self.dispatcher.accept(messages));
        let grouped = !rule.file.group_by.is_empty() || rule.new_term.is_some();
        self.states
            .save(&rule.name, grouped || rule.expect_matches.is_some(), &state);
        if rule.new_term.is_some() {
            // the values reported are saved: a restart goes on after this window
            self.sources.new_terms.commit(&rule.name);
        }
        let mut active: Vec<ActiveAlert> = state
            .alerts
            .values()
            .filter(|group| group.alert.phase != crate::rules::alert_state::Phase::Inactive)
            .map(|group| ActiveAlert {
                labels: group.labels.clone(),
                firing: group.alert.phase == crate::rules::alert_state::Phase::Firing,
                active_since: group.alert.active_since,
                value: group.value,
                annotations: annotations(rule, &group.labels, (group.value, group.reference)),
            })
            .collect();
        if let (Some(group), Some(period)) = (&state.no_matches, rule.expect_matches)
            && group.alert.phase == crate::rules::alert_state::Phase::Firing
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

    /// A recording rule's tick: its expression's output written under its `record`
    /// name (see [`crate::rules::recording`]); no alerts, no messages.
    async fn record(
        &self,
        rule: &Arc<LoadedRule>,
        tick: DateTime<Utc>,
    ) -> Result<(), EvaluationError> {
        let (sources, recorder, rule) = (
            Arc::clone(&self.sources),
            Arc::clone(&self.recorder),
            Arc::clone(rule),
        );
        let name = rule.name.clone();
        let written = tokio::task::spawn_blocking(move || {
            let (Some(record), RuleSource::Metrics { expr }) = (&rule.file.record, &rule.source)
            else {
                return Ok(Default::default());
            };
            let at = tick.timestamp_millis();
            let samples = sources.instant_for(&rule, expr, at)?;
            let series =
                crate::rules::recording::output_series(record, &rule.file.labels, samples)?;
            Ok::<_, EvaluationError>(recorder.write(&sources.tsdb, &rule.name, at, series)?)
        })
        .await
        .map_err(|error| failed("recording the rule's series", error))??;
        if written.refused > 0 {
            tracing::debug!(rule = %name, refused = written.refused, "recorded samples refused by the metrics store (this tick was already written)");
        }
        let mut statuses = self.lock_statuses();
        let status = statuses.entry(name).or_default();
        status.alerts = Vec::new();
        status.evaluations_since_load += 1;
        if written.samples > 0 {
            status.last_match = Some(tick);
        }
        Ok(())
    }

    /// What the rule sees at `tick` (counts per group, or output series).
    pub(super) async fn observe(
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
    pub(super) async fn messages(
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
    /// Test hook (debug builds, `LOOKOUT_TEST_HOOKS=1`): while `state/test-stall-rules`
    /// exists, rule evaluations wait, as a hung scheduler would (the heartbeat test).
    #[cfg(debug_assertions)]
    pub(super) async fn stall_hook(&self) {
        if !crate::fault::enabled() {
            return;
        }
        while self.state_dir.join("test-stall-rules").exists() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
