//! Keeping the running rules in step with `queries/`: new and changed files start (a
//! broken edit keeps the last good version), removed ones stop and resolve their alerts,
//! `max_rules` holds the files beyond the tenant's limit back.

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{RuleManager, Running};
use crate::rules::rule::LoadedRule;

impl RuleManager {
    pub(super) async fn reload(self: &Arc<Self>, cancel: &CancellationToken) {
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
                    self.sources.new_terms.forget(&name);
                    self.sources.slos.set(&name, None);
                    self.recorder.forget(&name);
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
                        self.sources
                            .slos
                            .set(name, crate::rules::slo::spec_of(&rule));
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
    pub(super) fn resolve_all(&self, rule: &LoadedRule) {
        let state = self.states.load(&rule.name);
        let now = Utc::now();
        let resolved = crate::rules::lifecycle::resolve_all(
            rule,
            state,
            now,
            &self.history,
            &self.silenced(rule),
        );
        self.states.forget(&rule.name);
        // only resolve messages: no samples to read, nothing blocks
        let messages = self.composer.compose_routed(rule, now, resolved);
        for recorded in self.dispatcher.accept(messages) {
            self.dispatcher.send(recorded);
        }
    }
}
