//! The lifecycle of one alert (a rule and its group labels), as a pure state machine:
//! inactive → pending → firing → resolved, with `for`, `keep_firing_for`,
//! `repeat_interval` and silences (DESIGN §5). No IO and no clock: every step is given the
//! evaluation time, so the rules are table-tested and the state persists as it is.
//!
//! Notification rules:
//! - entering firing announces it, unless silenced; a firing alert never announced (it was
//!   silenced) is announced at the first evaluation after its silence ends;
//! - while firing and announced, a repeat every `repeat_interval` (unless silenced);
//! - a resolve is sent only for a firing that was announced, and not while silenced
//!   (a silence mutes; state keeps moving underneath).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The timing options of a rule.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// How long the condition must hold before pending becomes firing.
    pub for_duration: Duration,
    /// How long a firing alert stays firing after the condition stops holding.
    pub keep_firing_for: Duration,
    /// Re-notify a firing alert this often (`None`: never).
    pub repeat_interval: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Inactive,
    Pending,
    Firing,
}

/// Why an alert resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveReason {
    /// The condition stopped holding.
    Condition,
    /// Its group was not seen within `group_ttl`.
    GroupGone,
    /// The rule was edited, renamed or deleted and this alert no longer exists.
    RuleChanged,
}

impl ResolveReason {
    /// How messages and the history say it.
    pub fn name(self) -> &'static str {
        match self {
            ResolveReason::Condition => "condition",
            ResolveReason::GroupGone => "group gone",
            ResolveReason::RuleChanged => "rule changed",
        }
    }
}

/// A change of phase, for the alert history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Pending,
    /// Pending that ended before `for` elapsed.
    PendingCancelled,
    Firing,
    Resolved(ResolveReason),
}

/// A message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Firing,
    Repeat,
    Resolved {
        reason: ResolveReason,
        /// How long it fired.
        fired_for: Duration,
    },
}

/// Persisted state of one alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub phase: Phase,
    /// When the condition started holding (pending or firing).
    pub active_since: Option<DateTime<Utc>>,
    pub firing_since: Option<DateTime<Utc>>,
    /// The last evaluation at which the condition held.
    pub last_true: Option<DateTime<Utc>>,
    /// Whether the current firing has been announced.
    pub announced: bool,
    pub last_notified: Option<DateTime<Utc>>,
}

/// What one evaluation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    pub transition: Option<Transition>,
    pub notice: Option<Notice>,
}

impl AlertState {
    /// Advances the alert by one evaluation at `now`.
    pub fn step(
        &mut self,
        now: DateTime<Utc>,
        condition: bool,
        silenced: bool,
        timing: &Timing,
    ) -> Step {
        let since = |time: Option<DateTime<Utc>>| {
            time.and_then(|time| (now - time).to_std().ok())
                .unwrap_or(Duration::ZERO)
        };
        let mut step = Step::default();
        if condition {
            self.last_true = Some(now);
            match self.phase {
                Phase::Inactive => {
                    self.active_since = Some(now);
                    if timing.for_duration.is_zero() {
                        step.transition = Some(self.fire(now));
                    } else {
                        self.phase = Phase::Pending;
                        step.transition = Some(Transition::Pending);
                    }
                }
                Phase::Pending if since(self.active_since) >= timing.for_duration => {
                    step.transition = Some(self.fire(now));
                }
                Phase::Pending | Phase::Firing => {}
            }
        } else {
            match self.phase {
                Phase::Inactive => {}
                Phase::Pending => {
                    *self = AlertState::default();
                    step.transition = Some(Transition::PendingCancelled);
                }
                Phase::Firing if since(self.last_true) < timing.keep_firing_for => {}
                Phase::Firing => return self.resolve(now, ResolveReason::Condition, silenced),
            }
        }
        if self.phase == Phase::Firing && !silenced {
            if !self.announced {
                self.announced = true;
                self.last_notified = Some(now);
                step.notice = Some(Notice::Firing);
            } else if timing
                .repeat_interval
                .is_some_and(|interval| since(self.last_notified) >= interval)
            {
                self.last_notified = Some(now);
                step.notice = Some(Notice::Repeat);
            }
        }
        step
    }

    /// Ends the alert now (the condition stopped, its group expired, its rule changed).
    pub fn resolve(&mut self, now: DateTime<Utc>, reason: ResolveReason, silenced: bool) -> Step {
        let was = std::mem::take(self);
        match was.phase {
            Phase::Inactive => Step::default(),
            Phase::Pending => Step {
                transition: Some(Transition::PendingCancelled),
                notice: None,
            },
            Phase::Firing => Step {
                transition: Some(Transition::Resolved(reason)),
                notice: (was.announced && !silenced).then(|| Notice::Resolved {
                    reason,
                    fired_for: was
                        .firing_since
                        .and_then(|since| (now - since).to_std().ok())
                        .unwrap_or(Duration::ZERO),
                }),
            },
        }
    }

    fn fire(&mut self, now: DateTime<Utc>) -> Transition {
        self.phase = Phase::Firing;
        self.firing_since = Some(now);
        self.announced = false;
        Transition::Firing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    /// Runs evaluations one minute apart: (condition, silenced) per minute; returns what
    /// each produced.
    fn run(timing: Timing, evaluations: &[(bool, bool)]) -> Vec<Step> {
        let start = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let mut state = AlertState::default();
        evaluations
            .iter()
            .enumerate()
            .map(|(minute, (condition, silenced))| {
                let now = start + chrono::Duration::minutes(minute as i64);
                let step = state.step(now, *condition, *silenced, &timing);
                // what is persisted comes back the same
                let saved = serde_json::to_string(&state).expect("serializes");
                state = serde_json::from_str(&saved).expect("deserializes");
                step
            })
            .collect()
    }

    fn transitions(steps: &[Step]) -> Vec<Option<Transition>> {
        steps.iter().map(|step| step.transition).collect()
    }

    fn notices(steps: &[Step]) -> Vec<Option<Notice>> {
        steps.iter().map(|step| step.notice).collect()
    }

    const T: (bool, bool) = (true, false);
    const F: (bool, bool) = (false, false);
    const T_SILENCED: (bool, bool) = (true, true);
    const F_SILENCED: (bool, bool) = (false, true);

    fn resolved(minutes: u64) -> Option<Notice> {
        Some(Notice::Resolved {
            reason: ResolveReason::Condition,
            fired_for: MINUTE * minutes as u32,
        })
    }

    #[test]
    fn without_for_it_fires_at_once_and_resolves_once() {
        let steps = run(Timing::default(), &[T, T, T, F, F]);
        assert_eq!(
            transitions(&steps),
            [
                Some(Transition::Firing),
                None,
                None,
                Some(Transition::Resolved(ResolveReason::Condition)),
                None
            ]
        );
        assert_eq!(
            notices(&steps),
            [Some(Notice::Firing), None, None, resolved(3), None]
        );
    }

    #[test]
    fn for_holds_it_pending_and_a_short_blip_never_fires() {
        let timing = Timing {
            for_duration: MINUTE * 2,
            ..Timing::default()
        };
        let steps = run(timing, &[T, T, T, T, F]);
        assert_eq!(
            transitions(&steps),
            [
                Some(Transition::Pending),
                None,
                Some(Transition::Firing),
                None,
                Some(Transition::Resolved(ResolveReason::Condition))
            ]
        );
        assert_eq!(
            notices(&steps),
            [None, None, Some(Notice::Firing), None, resolved(2)]
        );
        let blip = run(timing, &[T, F, T, T, F]);
        assert_eq!(
            transitions(&blip),
            [
                Some(Transition::Pending),
                Some(Transition::PendingCancelled),
                Some(Transition::Pending),
                None,
                Some(Transition::PendingCancelled)
            ]
        );
        assert!(notices(&blip).iter().all(Option::is_none));
    }

    #[test]
    fn keep_firing_for_rides_out_a_gap() {
        let timing = Timing {
            keep_firing_for: MINUTE * 2,
            ..Timing::default()
        };
        let steps = run(timing, &[T, F, T, F, F, F]);
        assert_eq!(
            notices(&steps),
            [Some(Notice::Firing), None, None, None, resolved(4), None],
            "resolved two minutes after the condition last held"
        );
    }

    #[test]
    fn repeat_interval_renotifies_while_firing() {
        let timing = Timing {
            repeat_interval: Some(MINUTE * 2),
            ..Timing::default()
        };
        let steps = run(timing, &[T, T, T, T, T, F]);
        assert_eq!(
            notices(&steps),
            [
                Some(Notice::Firing),
                None,
                Some(Notice::Repeat),
                None,
                Some(Notice::Repeat),
                resolved(5)
            ]
        );
    }

    #[test]
    fn a_silence_mutes_and_its_end_announces_a_firing_never_announced() {
        // firing under a silence: nothing; silence ends while firing: announced then;
        // the resolve follows the announcement
        let steps = run(Timing::default(), &[T_SILENCED, T_SILENCED, T, T, F]);
        assert_eq!(
            notices(&steps),
            [None, None, Some(Notice::Firing), None, resolved(4)]
        );
        assert_eq!(
            steps[0].transition,
            Some(Transition::Firing),
            "state moves anyway"
        );
        // silenced from start to end: neither firing nor resolved is sent
        let muted = run(Timing::default(), &[T_SILENCED, T_SILENCED, F_SILENCED]);
        assert!(notices(&muted).iter().all(Option::is_none));
        // announced, then silenced: the resolve is muted too
        let late_silence = run(Timing::default(), &[T, T_SILENCED, F_SILENCED]);
        assert_eq!(notices(&late_silence), [Some(Notice::Firing), None, None]);
    }

    #[test]
    fn a_group_gone_or_a_changed_rule_resolves_with_its_reason() {
        let start = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let mut state = AlertState::default();
        state.step(start, true, false, &Timing::default());
        let step = state.resolve(
            start + chrono::Duration::minutes(10),
            ResolveReason::GroupGone,
            false,
        );
        assert_eq!(
            step.notice,
            Some(Notice::Resolved {
                reason: ResolveReason::GroupGone,
                fired_for: MINUTE * 10
            })
        );
        assert_eq!(state, AlertState::default());
        assert_eq!(
            state.resolve(start, ResolveReason::RuleChanged, false),
            Step::default(),
            "an inactive alert has nothing to resolve"
        );
    }
}
