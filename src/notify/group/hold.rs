//! Why a group holds an alert back at a flush: an inhibit rule's firing source, or a
//! route inside one of its `mute_time_intervals` (outside its `active_time_intervals`),
//! with when that ends. Pure: decided from the labels, the firing alerts and the clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::notify::route::{Inhibitor, RouteNode};
use crate::notify::time_interval::TimeIntervals;

/// How far ahead the end of a mute is looked for (shown as "until").
const MUTE_HORIZON_DAYS: i64 = 8;
/// The firing alert that mutes `labels`, if any (itself excluded by the inhibitor).
pub fn inhibited_by(
    inhibitor: &Inhibitor,
    labels: &BTreeMap<String, String>,
    firing: &BTreeMap<String, BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    if inhibitor.is_empty() {
        return None;
    }
    inhibitor.inhibited_by(labels, firing.iter()).cloned()
}

/// Whether `route` is muted at `now`: by which interval, and until when (when it ends
/// within eight days).
pub fn muted(
    route: &RouteNode,
    now: DateTime<Utc>,
    intervals: &TimeIntervals,
) -> Option<(String, Option<DateTime<Utc>>)> {
    let horizon = chrono::Duration::days(MUTE_HORIZON_DAYS);
    if let Some(name) = route
        .mute_time_intervals
        .iter()
        .find(|name| intervals.holds(name, now))
    {
        return Some((name.clone(), intervals.ends_after(name, now, horizon)));
    }
    if !route.active_time_intervals.is_empty()
        && !route
            .active_time_intervals
            .iter()
            .any(|name| intervals.holds(name, now))
    {
        let start = now.with_nanosecond_zeroed();
        let until = (1..=horizon.num_minutes())
            .map_while(|minute| start.checked_add_signed(chrono::Duration::minutes(minute)))
            .find(|at| {
                route
                    .active_time_intervals
                    .iter()
                    .any(|name| intervals.holds(name, *at))
            });
        return Some((
            format!(
                "outside active_time_intervals {}",
                route.active_time_intervals.join(", ")
            ),
            until,
        ));
    }
    None
}

trait MinuteStart {
    fn with_nanosecond_zeroed(self) -> DateTime<Utc>;
}

impl MinuteStart for DateTime<Utc> {
    /// The start of the minute.
    fn with_nanosecond_zeroed(self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.timestamp() - self.timestamp().rem_euclid(60), 0)
            .unwrap_or(self)
    }
}
