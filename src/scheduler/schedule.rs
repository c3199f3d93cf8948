//! When a rule runs: a cron expression in a time zone, turned into a strictly increasing
//! sequence of real instants (its ticks).
//!
//! - 6-field expressions (seconds first) are the `cron` crate's syntax as they are (its
//!   day-of-week numbers 1–7 from Sunday); its optional 7th field, a year, is refused: a
//!   year makes a rule that silently stops one day.
//! - Every field is checked here first, so an error names the field, the value and its
//!   range (`second `70` is out of range 0-59`), and a schedule no time matches (`0 0 0 30
//!   2 *`, February 30) is an error, not a rule that never runs.
//! - Classic 5-field crontab lines get Vixie cron's semantics, translated before they
//!   reach the `cron` crate: day-of-week 0 and 7 are Sunday (the crate numbers 1–7 from
//!   Sunday), and when both day-of-month and day-of-week are restricted (neither starts
//!   with `*`) a day matching either runs (the crate ANDs them) — so `0 9 * * 1-5` runs on
//!   weekdays, not Sunday to Thursday.
//! - Time zones (IANA names) and daylight saving time, the policy tested below:
//!   a wall-clock time skipped by a spring-forward jump runs once, at the first instant
//!   after the jump (a daily 02:30 job still runs that day, at 03:00); a wall-clock time
//!   repeated by a fall-back runs at both instants when the hour field is `*` (every real
//!   hour keeps its ticks) and at the first only otherwise (a daily 01:30 job runs once).
//!   The `cron` crate alone skips the first case and, for the second, yields instants out
//!   of order, which is why ticks are computed here over its wall-clock candidates.

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule `{expression}` has {fields} {}; use 5 (minute hour day-of-month month day-of-week) or 6 (second minute hour day-of-month month day-of-week){}",
        if *.fields == 1 { "field" } else { "fields" },
        if *.fields == 7 { "; a 7th (year) field is not supported" } else { "" }
    )]
    FieldCount { expression: String, fields: usize },
    #[error("schedule `{expression}`: {reason}")]
    Invalid { expression: String, reason: String },
    #[error("timezone `{0}` is not an IANA time zone name (e.g. `Europe/Berlin`, `UTC`)")]
    Timezone(String),
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Matched if any matches (two for Vixie's day-of-month OR day-of-week).
    alternatives: Vec<cron::Schedule>,
    timezone: Tz,
    /// Whether a repeated wall-clock hour (fall-back) gets both of its instants.
    every_hour: bool,
}

impl Schedule {
    /// Parses `expression` in `timezone` (default UTC).
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let timezone = match timezone {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| ScheduleError::Timezone(name.to_string()))?,
        };
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let invalid = |reason: String| ScheduleError::Invalid {
            expression: expression.to_string(),
            reason,
        };
        let (cron_expressions, hour_field) = match fields.len() {
            5 => {
                for (field, spec) in fields[..4].iter().zip(&FIELDS[1..5]) {
                    spec.check(field).map_err(invalid)?;
                }
                (vixie(expression, &fields)?, fields[1])
            }
            6 => {
                for (field, spec) in fields.iter().zip(&FIELDS) {
                    spec.check(field).map_err(invalid)?;
                }
                (vec![fields.join(" ")], fields[2])
            }
            count => {
                return Err(ScheduleError::FieldCount {
                    expression: expression.to_string(),
                    fields: count,
                });
            }
        };
        let alternatives = cron_expressions
            .iter()
            .map(|text| {
                text.parse::<cron::Schedule>()
                    .map_err(|error| ScheduleError::Invalid {
                        expression: expression.to_string(),
                        reason: error.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schedule = Schedule {
            alternatives,
            timezone,
            every_hour: hour_field == "*",
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(invalid(
                "no time matches it, so it would never run; check that its day-of-month exists in its months (e.g. not February 30)".into(),
            ));
        }
        Ok(schedule)
    }

    /// The first tick strictly after `after`, or `None` when the schedule has no more.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // within days of chrono's range ends local times and the slack below do not exist
        let margin = Duration::days(2);
        if after > DateTime::<Utc>::MAX_UTC - margin {
            return None;
        }
        let after = after.max(DateTime::<Utc>::MIN_UTC + margin);
        // wall-clock candidates, from a little before `after`'s wall-clock time (a
        // fall-back repeats up to an hour or two), in wall-clock order; a candidate's
        // instants grow with it except inside a repeated hour, so once a candidate lies
        // well past the best instant found, none later can beat it
        let local = after.with_timezone(&self.timezone).naive_local();
        // near a DST transition wall-clock order and real order differ: look from a
        // little before and a little past; elsewhere the first candidate is the answer
        let slack = if self.transition_near(after) {
            Duration::hours(3)
        } else {
            Duration::zero()
        };
        let start = local - slack - Duration::seconds(1);
        let mut best: Option<DateTime<Utc>> = None;
        for alternative in &self.alternatives {
            for candidate in alternative.after(&Utc.from_utc_datetime(&start)) {
                let wall = candidate.naive_utc();
                if let Some(best) = best
                    && wall > best.with_timezone(&self.timezone).naive_local() + slack
                {
                    break;
                }
                for instant in self.instants(wall) {
                    if instant > after && best.is_none_or(|best| instant < best) {
                        best = Some(instant);
                    }
                }
            }
        }
        best
    }

    /// Whether the zone's offset changes within a few hours of `time`.
    fn transition_near(&self, time: DateTime<Utc>) -> bool {
        use chrono::Offset;
        let offset = |time: DateTime<Utc>| {
            self.timezone
                .offset_from_utc_datetime(&time.naive_utc())
                .fix()
        };
        let now = offset(time);
        [-6, -3, 3, 6]
            .into_iter()
            .any(|hours| offset(time + Duration::hours(hours)) != now)
    }

    /// The real instants of a wall-clock time in this zone, by the DST policy above.
    fn instants(&self, wall: NaiveDateTime) -> Vec<DateTime<Utc>> {
        use chrono::LocalResult;
        match self.timezone.from_local_datetime(&wall) {
            LocalResult::Single(time) => vec![time.with_timezone(&Utc)],
            LocalResult::Ambiguous(earlier, later) if self.every_hour => {
                vec![earlier.with_timezone(&Utc), later.with_timezone(&Utc)]
            }
            LocalResult::Ambiguous(earlier, _) => vec![earlier.with_timezone(&Utc)],
            LocalResult::None => {
                // skipped by a spring-forward jump, which lands on a whole minute: the
                // first valid minute after it
                use chrono::Timelike;
                let minute = wall
                    .with_second(0)
                    .and_then(|time| time.with_nanosecond(0))
                    .unwrap_or(wall);
                (1..=180)
                    .map(|minutes| minute + Duration::minutes(minutes))
                    .find_map(|later| self.timezone.from_local_datetime(&later).earliest())
                    .map(|time| vec![time.with_timezone(&Utc)])
                    .unwrap_or_default()
            }
        }
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }
}

/// Translates a 5-field Vixie crontab line into `cron` crate expressions (with a leading
/// seconds field of 0), one per alternative of the day-of-month OR day-of-week rule.
fn vixie(expression: &str, fields: &[&str]) -> Result<Vec<String>, ScheduleError> {
    let invalid = |reason: String| ScheduleError::Invalid {
        expression: expression.to_string(),
        reason,
    };
    let (minute, hour, day_of_month, month, day_of_week) =
        (fields[0], fields[1], fields[2], fields[3], fields[4]);
    let days = weekdays(day_of_week).map_err(invalid)?;
    let both_restricted = !day_of_month.starts_with('*') && !day_of_week.starts_with('*');
    Ok(if both_restricted {
        vec![
            format!("0 {minute} {hour} {day_of_month} {month} *"),
            format!("0 {minute} {hour} * {month} {days}"),
        ]
    } else {
        vec![format!("0 {minute} {hour} {day_of_month} {month} {days}")]
    })
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// One field of a 6-field expression: its name, range and the names it also takes (for
/// the value `first`, `first + 1`, …).
struct FieldSpec {
    name: &'static str,
    first: u32,
    last: u32,
    names: &'static [&'static str],
    /// Whether `?` (no specific value) is allowed, as in the `cron` crate's day fields.
    question_mark: bool,
}

/// The six fields, seconds first; a 5-field line uses the middle four (its day-of-week is
/// Vixie's, checked by [`weekdays`]).
const FIELDS: [FieldSpec; 6] = [
    FieldSpec {
        name: "second",
        first: 0,
        last: 59,
        names: &[],
        question_mark: false,
    },
    FieldSpec {
        name: "minute",
        first: 0,
        last: 59,
        names: &[],
        question_mark: false,
    },
    FieldSpec {
        name: "hour",
        first: 0,
        last: 23,
        names: &[],
        question_mark: false,
    },
    FieldSpec {
        name: "day-of-month",
        first: 1,
        last: 31,
        names: &[],
        question_mark: true,
    },
    FieldSpec {
        name: "month",
        first: 1,
        last: 12,
        names: &MONTH_NAMES,
        question_mark: false,
    },
    FieldSpec {
        name: "day-of-week",
        first: 1,
        last: 7,
        names: &DAY_NAMES,
        question_mark: true,
    },
];

impl FieldSpec {
    /// Checks one field (a list of `*`, values, ranges, each with an optional `/step`);
    /// the error names the field, the part and the allowed range.
    fn check(&self, field: &str) -> Result<(), String> {
        let (name, first, last) = (self.name, self.first, self.last);
        let range_text = if self.names.is_empty() {
            format!("{first}-{last}")
        } else {
            format!(
                "{first}-{last} or {}-{}",
                self.names[0],
                self.names[self.names.len() - 1]
            )
        };
        let value = |text: &str| -> Result<u32, String> {
            if let Some(position) = self
                .names
                .iter()
                .position(|known| known.eq_ignore_ascii_case(text))
            {
                return Ok(first + position as u32);
            }
            match text.parse::<u64>() {
                Ok(number) if (u64::from(first)..=u64::from(last)).contains(&number) => {
                    Ok(number as u32)
                }
                Ok(_) => Err(format!("{name} `{text}` is out of range {range_text}")),
                Err(_) => Err(format!(
                    "{name} `{text}` is not a number{}; {name} takes {range_text}, `*`, ranges `a-b`, lists `a,b` and steps `*/n`",
                    if self.names.is_empty() {
                        ""
                    } else {
                        " or a name"
                    }
                )),
            }
        };
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (part, None),
            };
            let (low, high) = match range {
                "*" => (first, last),
                "?" if self.question_mark && step.is_none() => continue,
                _ => match range.split_once('-') {
                    Some((low, high)) => {
                        let (low, high) = (value(low)?, value(high)?);
                        if low > high {
                            return Err(format!("{name} range `{range}` runs backwards"));
                        }
                        (low, high)
                    }
                    None => (value(range)?, last),
                },
            };
            if let Some(step) = step {
                let span = high - low;
                match step.parse::<u64>() {
                    Ok(step) if step >= 1 && step <= u64::from(span.max(1)) => {}
                    Ok(step) if step >= 1 => {
                        return Err(format!(
                            "{name} step `{step}` in `{part}` is larger than its range {low}-{high}; use 1-{}",
                            span.max(1)
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "{name} step `{step}` in `{part}` is not a whole number of at least 1"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A Vixie day-of-week field (0–7, 0 and 7 Sunday, names, ranges, steps, lists) as a list
/// of day names the `cron` crate reads unambiguously; `*` stays `*`.
fn weekdays(field: &str) -> Result<String, String> {
    if field == "*" {
        return Ok("*".into());
    }
    let day = |text: &str| -> Result<u32, String> {
        if let Ok(number) = text.parse::<u32>() {
            return if number <= 7 {
                Ok(number % 7)
            } else {
                Err(format!(
                    "day-of-week `{text}` is out of range 0-7 (0 and 7 are Sunday)"
                ))
            };
        }
        DAY_NAMES
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text))
            .map(|position| position as u32)
            .ok_or_else(|| format!("day-of-week `{text}` is not a number 0-7 or a name like `mon`"))
    };
    let mut selected = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (
                range,
                step.parse::<u32>()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| format!("day-of-week step `{step}` is not a positive number"))?,
            ),
            None => (part, 1),
        };
        let (first, last) = match range {
            "*" => (0, 6),
            _ => match range.split_once('-') {
                Some((first, last)) => {
                    // a range ending in 7 (`5-7`) ends on Sunday, counted as 7 here
                    let first = day(first)?;
                    let last_number = if last == "7" { 7 } else { day(last)? };
                    if last_number < first {
                        return Err(format!("day-of-week range `{range}` runs backwards"));
                    }
                    (first, last_number)
                }
                None => {
                    let single = day(range)?;
                    (single, if step > 1 { 6 } else { single })
                }
            },
        };
        for number in (first..=last).step_by(step as usize) {
            selected[(number % 7) as usize] = true;
        }
    }
    Ok(DAY_NAMES
        .iter()
        .zip(selected)
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    /// Times within hours of chrono's range ends overflowed the DST arithmetic.
    #[test]
    fn ticks_near_the_ends_of_time_do_not_overflow() {
        let schedule = Schedule::parse("0 * * * * *", Some("Pacific/Kiritimati")).expect("valid");
        assert_eq!(schedule.next_after(DateTime::<Utc>::MAX_UTC), None);
        // returns, with or without a tick (the cron crate knows no years that early)
        let _ = schedule.next_after(DateTime::<Utc>::MIN_UTC);
    }

    /// The first `count` ticks after `after`, as RFC 3339 UTC.
    fn ticks(expression: &str, timezone: Option<&str>, after: &str, count: usize) -> Vec<String> {
        let schedule = Schedule::parse(expression, timezone).expect("valid");
        let mut time = utc(after);
        let mut out = Vec::new();
        for _ in 0..count {
            time = schedule.next_after(time).expect("a next tick");
            out.push(time.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        out
    }

    #[test]
    fn vixie_lines_keep_their_meaning() {
        // 2026-11-22 is a Sunday
        let table: &[(&str, &str, &[&str])] = &[
            // weekdays at 9: Monday to Friday, not Sunday to Thursday
            (
                "0 9 * * 1-5",
                "2026-11-21T00:00:00Z",
                &[
                    "2026-11-23T09:00:00Z",
                    "2026-11-24T09:00:00Z",
                    "2026-11-25T09:00:00Z",
                    "2026-11-26T09:00:00Z",
                    "2026-11-27T09:00:00Z",
                    "2026-11-30T09:00:00Z",
                ],
            ),
            // 0 and 7 are Sunday
            (
                "0 0 * * 0",
                "2026-11-21T00:00:00Z",
                &["2026-11-22T00:00:00Z", "2026-11-29T00:00:00Z"],
            ),
            (
                "0 0 * * 7",
                "2026-11-21T00:00:00Z",
                &["2026-11-22T00:00:00Z", "2026-11-29T00:00:00Z"],
            ),
            (
                "0 0 * * 5-7",
                "2026-11-23T00:00:00Z",
                &[
                    "2026-11-27T00:00:00Z",
                    "2026-11-28T00:00:00Z",
                    "2026-11-29T00:00:00Z",
                ],
            ),
            (
                "0 0 * * sun,wed",
                "2026-11-21T00:00:00Z",
                &["2026-11-22T00:00:00Z", "2026-11-25T00:00:00Z"],
            ),
            // both day fields restricted: either matches (the 1st, or any Friday)
            (
                "0 12 1 * 5",
                "2026-11-25T00:00:00Z",
                &[
                    "2026-11-27T12:00:00Z",
                    "2026-12-01T12:00:00Z",
                    "2026-12-04T12:00:00Z",
                ],
            ),
            // a starred day-of-month keeps AND (Vixie's rule looks at the leading `*`)
            (
                "0 12 */2 * 5",
                "2026-11-25T00:00:00Z",
                &["2026-11-27T12:00:00Z", "2026-12-11T12:00:00Z"],
            ),
            (
                "*/15 * * * *",
                "2026-11-22T10:07:00Z",
                &["2026-11-22T10:15:00Z", "2026-11-22T10:30:00Z"],
            ),
            // 6 fields: the cron crate's syntax, seconds first
            (
                "*/20 * * * * *",
                "2026-11-22T10:00:05Z",
                &["2026-11-22T10:00:20Z", "2026-11-22T10:00:40Z"],
            ),
        ];
        for (expression, after, expected) in table {
            assert_eq!(
                ticks(expression, None, after, expected.len()),
                *expected,
                "{expression}"
            );
        }
    }

    #[test]
    fn spring_forward_runs_skipped_times_once_after_the_jump() {
        // Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z)
        let berlin = Some("Europe/Berlin");
        assert_eq!(
            ticks("30 2 * * *", berlin, "2026-03-27T12:00:00Z", 3),
            // 02:30 CET; the skipped 02:30 at 03:00 CEST; 02:30 CEST
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z"
            ]
        );
        assert_eq!(
            ticks("*/30 * * * *", berlin, "2026-03-28T23:59:00Z", 4),
            // every real half hour, the skipped ones folded into 03:00 CEST
            [
                "2026-03-29T00:00:00Z",
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:30:00Z"
            ]
        );
    }

    #[test]
    fn fall_back_runs_repeated_times_per_real_hour_or_once() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00Z)
        let berlin = Some("Europe/Berlin");
        assert_eq!(
            ticks("30 2 * * *", berlin, "2026-10-24T12:00:00Z", 2),
            // the first 02:30 only, then the next day's
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        assert_eq!(
            ticks("*/30 * * * *", berlin, "2026-10-24T23:59:00Z", 6),
            // every real half hour through the repeated hour, in order
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T02:30:00Z"
            ]
        );
        assert_eq!(
            ticks(
                "0 * * * * *",
                Some("America/New_York"),
                "2026-11-01T05:58:30Z",
                3
            ),
            // every minute across New York's fall-back (06:00Z is 01:00 EST again)
            [
                "2026-11-01T05:59:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:01:00Z"
            ]
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let error = |expression: &str, timezone: Option<&str>| {
            Schedule::parse(expression, timezone)
                .expect_err("invalid")
                .to_string()
        };
        assert!(error("* * * *", None).contains("has 4 fields"));
        // issue 19: a past year, wrong ranges and "1 fields" were accepted or misreported
        let table = [
            (
                "*/10 * * * * * 2020",
                "schedule `*/10 * * * * * 2020` has 7 fields; use 5 (minute hour day-of-month month day-of-week) or 6 (second minute hour day-of-month month day-of-week); a 7th (year) field is not supported",
            ),
            (
                "@daily",
                "schedule `@daily` has 1 field; use 5 (minute hour day-of-month month day-of-week) or 6 (second minute hour day-of-month month day-of-week)",
            ),
            (
                "*/70 * * * * *",
                "schedule `*/70 * * * * *`: second step `70` in `*/70` is larger than its range 0-59; use 1-59",
            ),
            (
                "70 * * * * *",
                "schedule `70 * * * * *`: second `70` is out of range 0-59",
            ),
            (
                "0 0 24 * * *",
                "schedule `0 0 24 * * *`: hour `24` is out of range 0-23",
            ),
            (
                "0 0 0 0 * *",
                "schedule `0 0 0 0 * *`: day-of-month `0` is out of range 1-31",
            ),
            (
                "0 0 0 * 13 *",
                "schedule `0 0 0 * 13 *`: month `13` is out of range 1-12 or JAN-DEC",
            ),
            (
                "0 0 0 * * 0",
                "schedule `0 0 0 * * 0`: day-of-week `0` is out of range 1-7 or SUN-SAT",
            ),
            (
                "*/0 * * * *",
                "schedule `*/0 * * * *`: minute step `0` in `*/0` is not a whole number of at least 1",
            ),
            (
                "0 30-10 * * * *",
                "schedule `0 30-10 * * * *`: minute range `30-10` runs backwards",
            ),
            (
                "0 0 0 L * *",
                "schedule `0 0 0 L * *`: day-of-month `L` is not a number; day-of-month takes 1-31, `*`, ranges `a-b`, lists `a,b` and steps `*/n`",
            ),
            (
                "0 0 30 2 *",
                "schedule `0 0 30 2 *`: no time matches it, so it would never run; check that its day-of-month exists in its months (e.g. not February 30)",
            ),
            (
                "0 0 0 31 4,6 ?",
                "schedule `0 0 0 31 4,6 ?`: no time matches it, so it would never run; check that its day-of-month exists in its months (e.g. not February 30)",
            ),
        ];
        for (expression, expected) in table {
            assert_eq!(error(expression, None), expected, "{expression}");
        }
        // the edges of every range are valid
        for valid in [
            "0 * * * * *",
            "59 59 23 31 12 7",
            "*/59 */59 */23 */30 */11 */6",
            "0 0 0 ? JAN-dec SUN-sat",
            "0 0 12 29 2 *",
            "0 */5 * * 1-5",
            "5/10 * * * * *",
        ] {
            assert!(
                Schedule::parse(valid, None).is_ok(),
                "{valid}: {:?}",
                Schedule::parse(valid, None).err()
            );
        }
        assert!(error("61 * * * *", None).starts_with("schedule `61 * * * *`"));
        assert!(error("0 9 * * 8", None).contains("out of range 0-7"));
        assert!(error("0 9 * * fri-mon", None).contains("runs backwards"));
        assert!(error("0 9 * * *", Some("Mars/Olympus")).contains("IANA"));
    }
}
