//! Each rule's alert state, persisted under `state/rules/NAME.json` (written atomically)
//! so a restart resumes every alert where it was: pending, firing, when it fired, and the
//! value a resolve message reports. A state is written only when what a restart needs
//! changed.
//!
//! On a full disk (or any failing write) alerting goes on from memory: a rule's state
//! that cannot be saved is kept in memory and written again at each of its evaluations
//! until it succeeds (a restart meanwhile sees the last state that was saved, so it may
//! repeat a notice, never lose one).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::alert_state::AlertState;

/// The version of the state files; a file of another version is ignored.
pub const STATE_VERSION: u32 = 1;

/// The persisted state of one rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleState {
    pub version: u32,
    /// Alerts by their group labels (`k=v,k=v`).
    pub alerts: BTreeMap<String, GroupState>,
    /// The last tick at which the query matched anything (kept for `expect_matches`).
    #[serde(default)]
    pub last_match: Option<DateTime<Utc>>,
    /// The `expect_matches` alert: the query matched nothing for too long.
    #[serde(default)]
    pub no_matches: Option<GroupState>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
/// One alert of a rule: its group (or series) labels, what was seen, its lifecycle.
pub struct GroupState {
    pub labels: BTreeMap<String, String>,
    pub last_seen: Option<DateTime<Utc>>,
    /// The count at the last evaluation.
    #[serde(default)]
    pub value: f64,
    /// The value at the last evaluation where the condition held: what a resolve message
    /// reports (the value at resolve time is the one that no longer alerts, often 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_value: Option<f64>,
    /// A spike rule's value at the reference, at the last evaluation and at the last one
    /// where the condition held (what its resolve message reports beside `firing_value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_reference: Option<f64>,
    pub alert: AlertState,
}

/// The rules' states: as last saved, in memory, and on disk.
pub struct StateStore {
    /// `state/rules`.
    directory: PathBuf,
    /// Each rule's alert state as last saved (read from disk once, at its first tick).
    states: Mutex<BTreeMap<String, RuleState>>,
    /// Rules whose state in memory could not be written to disk yet.
    unsaved: Mutex<BTreeSet<String>>,
}

impl StateStore {
    /// The states kept under `state_dir/rules`.
    pub fn new(state_dir: &Path) -> StateStore {
        StateStore {
            directory: state_dir.join("rules"),
            states: Mutex::default(),
            unsaved: Mutex::default(),
        }
    }

    fn state_path(&self, rule: &str) -> PathBuf {
        self.directory.join(format!("{rule}.json"))
    }

    fn lock_states(&self) -> MutexGuard<'_, BTreeMap<String, RuleState>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The rule's current state: the one in memory, else the one on disk, else a fresh one.
    pub fn load(&self, rule: &str) -> RuleState {
        if let Some(state) = self.lock_states().get(rule) {
            return state.clone();
        }
        std::fs::read(self.state_path(rule))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<RuleState>(&bytes).ok())
            .filter(|state| state.version == STATE_VERSION)
            .unwrap_or_default()
    }

    /// Saves `state` as the rule's current state (see [`StateStore::write`]). A state
    /// that cannot be written is kept in memory and written again at each save until it
    /// succeeds; that is logged when it starts failing and when it recovers.
    pub fn save(&self, rule: &str, grouped: bool, state: &RuleState) {
        match self.write(rule, grouped, state) {
            Ok(()) => {
                if self.lock_unsaved().remove(rule) {
                    tracing::info!(rule = %rule, "alert state saved again");
                }
            }
            Err(error) => {
                if self.lock_unsaved().insert(rule.to_string()) {
                    tracing::error!(rule = %rule, %error, "cannot save alert state; it is kept in memory, alerting goes on, and it is written again at each evaluation until the disk accepts it");
                }
            }
        }
    }

    /// Keeps `state` as the rule's current state and writes it to disk unless what a
    /// restart needs is already there: the evaluation's `value` is informational, and
    /// without `group_by` the one group never expires, so its `last_seen` does not matter
    /// either. (Writing 1000 unchanged files with two fsyncs each every minute was most of
    /// the CPU of 1000 quiet rules.)
    fn write(&self, rule: &str, grouped: bool, state: &RuleState) -> std::io::Result<()> {
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

    fn lock_unsaved(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.unsaved.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets a rule's state, in memory and on disk.
    pub fn forget(&self, rule: &str) {
        self.lock_states().remove(rule);
        let _ = std::fs::remove_file(self.state_path(rule));
    }
}

/// Whether two states persist the same facts (see [`StateStore::write`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(value: f64, seen: i64, phase: crate::rules::alert_state::Phase) -> RuleState {
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
                    reference: None,
                    firing_reference: None,
                    alert,
                },
            )]),
            ..RuleState::default()
        }
    }

    #[test]
    fn only_what_a_restart_needs_makes_a_state_write() {
        use crate::rules::alert_state::Phase;
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
