//! Spike rules (`"spike"` in a rule file, ElastAlert2's `spike` type): a log rule's value
//! now against its value at a reference time, per group. At a tick T the rule observes
//! its window twice — ending at T and ending at T − `compare_to` (T − window for
//! `previous_window`) — and an alert holds when the value went up (or down) by `ratio`:
//!
//! - up: `current ≥ ratio × reference` and `current ≥ min_count` (ElastAlert2's
//!   `threshold_cur`: 1 → 3 lines is not a spike when `min_count` is 10);
//! - down: `current ≤ reference ÷ ratio` and `reference ≥ min_count` (its
//!   `threshold_ref`: a drop is measured against a reference with real traffic);
//! - both: either.
//!
//! A group with nothing at the reference (reference 0: a new service, a fresh install, a
//! week not yet stored) has no baseline: it is not a spike unless `alert_on_new_data`
//! (ElastAlert2's option of that name, also off by default), which fires it as soon as
//! `current ≥ min_count`. A group present at the reference and absent now counts 0 now
//! (so a drop to nothing is a spike down).
//!
//! [`super::observe`] wraps whatever the rule's value is (a count, or whatever it makes
//! of the window) at the two ticks, so a spike of any value composes; it costs one more
//! window read per tick (the reference window only, never the span between). Pure.

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::template::spike_ratio;

/// The template variables only spike rules know: the value at the reference
/// (`$reference`) and the value now over it (`$spike_ratio`).
pub const VARIABLES: [&str; 2] = ["reference", "spike_ratio"];

/// `"spike"` as written in a rule file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpikeConfig {
    /// How many times the reference the value must be (up), or the reference the value
    /// (down), e.g. 3; more than 1.
    pub ratio: f64,
    /// Where the reference window ends, before the tick: a duration ("1h", "1d", "1w": the
    /// same window a week before, a cheap seasonal baseline) or "previous_window" (the
    /// window just before).
    pub compare_to: String,
    /// `up` (default), `down` or `both`.
    #[serde(default)]
    pub direction: SpikeDirection,
    /// The noise floor: an up spike needs at least this value now, a down spike at least
    /// this value at the reference.
    pub min_count: f64,
    /// Whether a group with nothing at the reference fires when its value reaches
    /// `min_count` (default false: no baseline, no spike).
    #[serde(default)]
    pub alert_on_new_data: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpikeDirection {
    #[default]
    Up,
    Down,
    Both,
}

/// The furthest `compare_to` (ten years): beyond it no index keeps the reference, and the
/// reference tick would leave the representable times.
const MAX_COMPARE_TO: Duration = Duration::from_secs(10 * 366 * 86_400);

/// A checked `spike`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spike {
    pub ratio: f64,
    /// How far before the tick the reference window ends.
    pub offset: Duration,
    /// `compare_to` was `previous_window`.
    pub previous_window: bool,
    pub direction: SpikeDirection,
    pub min_count: f64,
    pub alert_on_new_data: bool,
}

impl Spike {
    /// Checks `config` of a rule whose window is `window`; every problem as
    /// `(field, message)`.
    pub fn check(config: &SpikeConfig, window: Duration) -> Result<Spike, Vec<(String, String)>> {
        let mut problems = Vec::new();
        if !(config.ratio.is_finite() && config.ratio > 1.0) {
            problems.push((
                "spike.ratio".to_string(),
                format!(
                    "must be a number above 1 (3: three times the reference up, a third of it down), not {}",
                    config.ratio
                ),
            ));
        }
        if !(config.min_count.is_finite() && config.min_count >= 0.0) {
            problems.push((
                "spike.min_count".to_string(),
                format!(
                    "must be 0 or more (the least value that can be a spike, e.g. 10), not {}",
                    config.min_count
                ),
            ));
        }
        let previous_window = config.compare_to == "previous_window";
        let offset = if previous_window {
            window
        } else {
            match humantime::parse_duration(&config.compare_to) {
                Ok(offset) if offset > MAX_COMPARE_TO => {
                    problems.push((
                        "spike.compare_to".to_string(),
                        format!(
                            "`{}` is further back than any retention; at most 10y (\"1y\" compares with the same window a year before)",
                            config.compare_to
                        ),
                    ));
                    window
                }
                Ok(offset) if offset >= window => offset,
                Ok(_) => {
                    problems.push((
                        "spike.compare_to".to_string(),
                        format!(
                            "`{}` is shorter than the window ({}): the two windows would overlap; use at least the window, or \"previous_window\"",
                            config.compare_to,
                            humantime::format_duration(window)
                        ),
                    ));
                    window
                }
                Err(error) => {
                    problems.push((
                        "spike.compare_to".to_string(),
                        format!(
                            "`{}` is neither a duration like \"1h\" or \"1w\" nor \"previous_window\" ({error})",
                            config.compare_to
                        ),
                    ));
                    window
                }
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Spike {
            ratio: config.ratio,
            offset,
            previous_window,
            direction: config.direction,
            min_count: config.min_count,
            alert_on_new_data: config.alert_on_new_data,
        })
    }

    /// Whether `current` against `reference` (`None`: nothing there, 0) is a spike.
    pub fn holds(&self, current: f64, reference: Option<f64>) -> bool {
        let reference = reference.unwrap_or(0.0);
        let up = current >= self.min_count
            && current > 0.0
            && if reference > 0.0 {
                current >= self.ratio * reference
            } else {
                self.alert_on_new_data
            };
        let down =
            reference > 0.0 && reference >= self.min_count && current <= reference / self.ratio;
        match self.direction {
            SpikeDirection::Up => up,
            SpikeDirection::Down => down,
            SpikeDirection::Both => up || down,
        }
    }

    /// Where the reference window of the tick at `tick` ends.
    pub fn reference_tick(&self, tick: DateTime<Utc>) -> DateTime<Utc> {
        chrono::Duration::from_std(self.offset)
            .ok()
            .and_then(|offset| tick.checked_sub_signed(offset))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// "1h before", or "the previous 5m" (for `previous_window`).
    pub fn reference_text(&self) -> String {
        let offset = humantime::format_duration(self.offset);
        if self.previous_window {
            format!("the previous {offset}")
        } else {
            format!("{offset} before")
        }
    }

    /// The condition as messages show it in place of a threshold: "3× up against 1h
    /// before, min_count 10".
    pub fn condition_text(&self) -> String {
        let direction = match self.direction {
            SpikeDirection::Up => "up",
            SpikeDirection::Down => "down",
            SpikeDirection::Both => "up or down",
        };
        format!(
            "{}× {direction} against {}, min_count {}",
            format_value(self.ratio),
            self.reference_text(),
            format_value(self.min_count)
        )
    }

    /// The default summary of a spike: "42 matches in the last 5m, 3.5× the 12 of 1h
    /// before".
    pub fn summary(&self, current: f64, reference: Option<f64>, window: &str) -> String {
        let reference = reference.unwrap_or(0.0);
        let now = format!("{} matches in the last {window}", format_value(current));
        if reference == 0.0 {
            return format!("{now}, none in the window {}", self.reference_text());
        }
        format!(
            "{now}, {}× the {} of {}",
            format_value(spike_ratio(current, Some(reference))),
            format_value(reference),
            self.reference_text()
        )
    }
}

/// A value as a message shows it: integers without decimals, others to two.
fn format_value(value: f64) -> String {
    if value.is_infinite() {
        return "∞".into();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spike(direction: SpikeDirection, min_count: f64, alert_on_new_data: bool) -> Spike {
        Spike {
            ratio: 3.0,
            offset: Duration::from_secs(3600),
            previous_window: false,
            direction,
            min_count,
            alert_on_new_data,
        }
    }

    #[test]
    fn spikes_hold_as_the_ratio_and_the_noise_floor_say() {
        use SpikeDirection::{Both, Down, Up};
        // (direction, min_count, alert_on_new_data, current, reference, holds)
        let table = [
            (Up, 10.0, false, 36.0, Some(12.0), true),
            (Up, 10.0, false, 35.0, Some(12.0), false),
            // 1 → 3 is three times, but under the noise floor
            (Up, 10.0, false, 3.0, Some(1.0), false),
            (Up, 0.0, false, 3.0, Some(1.0), true),
            // no baseline: not a spike, unless alert_on_new_data
            (Up, 10.0, false, 50.0, None, false),
            (Up, 10.0, false, 50.0, Some(0.0), false),
            (Up, 10.0, true, 50.0, None, true),
            (Up, 10.0, true, 5.0, None, false),
            (Up, 0.0, true, 0.0, None, false),
            (Down, 10.0, false, 4.0, Some(12.0), true),
            (Down, 10.0, false, 5.0, Some(12.0), false),
            (Down, 10.0, false, 0.0, Some(12.0), true),
            // 3 → 1 is a third, but the reference is under the noise floor
            (Down, 10.0, false, 1.0, Some(3.0), false),
            (Down, 10.0, false, 0.0, None, false),
            (Down, 10.0, false, 36.0, Some(12.0), false),
            (Both, 10.0, false, 36.0, Some(12.0), true),
            (Both, 10.0, false, 4.0, Some(12.0), true),
            (Both, 10.0, false, 12.0, Some(12.0), false),
        ];
        for (direction, min_count, new_data, current, reference, holds) in table {
            assert_eq!(
                spike(direction, min_count, new_data).holds(current, reference),
                holds,
                "{direction:?} min_count {min_count} new data {new_data}: {current} against {reference:?}"
            );
        }
    }

    #[test]
    fn compare_to_is_checked_against_the_window() {
        let config = |compare_to: &str, ratio: f64, min_count: f64| SpikeConfig {
            ratio,
            compare_to: compare_to.into(),
            direction: SpikeDirection::Up,
            min_count,
            alert_on_new_data: false,
        };
        let five_minutes = Duration::from_secs(300);
        let week = Spike::check(&config("1w", 3.0, 10.0), five_minutes).expect("valid");
        assert_eq!(week.offset, Duration::from_secs(7 * 86_400));
        let previous =
            Spike::check(&config("previous_window", 3.0, 10.0), five_minutes).expect("valid");
        assert_eq!(
            (previous.offset, previous.previous_window),
            (five_minutes, true)
        );
        assert_eq!(previous.reference_text(), "the previous 5m");
        let errors = Spike::check(&config("1m", 1.0, -1.0), five_minutes).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(
            fields,
            ["spike.ratio", "spike.min_count", "spike.compare_to"]
        );
        assert!(errors[2].1.contains("overlap"), "{errors:?}");
        let errors = Spike::check(&config("an hour", 3.0, 1.0), five_minutes).expect_err("bad");
        assert!(errors[0].1.contains("previous_window"), "{errors:?}");
        let errors =
            Spike::check(&config("1000y", 3.0, 1.0), five_minutes).expect_err("too far back");
        assert!(errors[0].1.contains("at most 10y"), "{errors:?}");
    }

    #[test]
    fn the_default_summary_says_now_the_reference_and_the_ratio() {
        let spike = spike(SpikeDirection::Up, 10.0, false);
        assert_eq!(
            spike.summary(42.0, Some(12.0), "5m"),
            "42 matches in the last 5m, 3.5× the 12 of 1h before"
        );
        assert_eq!(
            spike.summary(42.0, None, "5m"),
            "42 matches in the last 5m, none in the window 1h before"
        );
        assert_eq!(
            spike.condition_text(),
            "3× up against 1h before, min_count 10"
        );
        assert_eq!(spike_ratio(0.0, None), 1.0);
        assert_eq!(spike_ratio(3.0, Some(0.0)), f64::INFINITY);
    }
}
