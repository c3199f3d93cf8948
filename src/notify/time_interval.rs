//! Alertmanager's time intervals (`[[time_intervals]]`), which routes use as
//! `mute_time_intervals` and `active_time_intervals`: a named list of intervals, each a
//! conjunction of `times` (`HH:MM` to `HH:MM`, the end excluded, `24:00` allowed),
//! `weekdays` (`monday:friday`), `days_of_month` (`1:7`, `-1` for the last day), `months`
//! (`january:march` or `1:3`), `years` (`2026:2027`), read in `location` (an IANA zone,
//! `UTC` by default, or `Local`). A field left out matches always; a named interval
//! holds when any of its entries does. Ported from Alertmanager's
//! `timeinterval/timeinterval.go` (`ContainsTime` and the range validation) with its
//! test cases.
//!
//! ```toml
//! [[time_intervals]]
//! name = "office-hours"
//! [[time_intervals.time_intervals]]
//! weekdays = ["monday:friday"]
//! times = [{ start_time = "09:00", end_time = "17:00" }]
//! location = "Europe/Berlin"
//! ```

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// Entries in one named interval, and ranges in one field, at most (a config is read
/// once, but `lookout check` reads untrusted files too).
pub const MAX_RANGES: usize = 1000;

/// One `[[time_intervals]]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalConfig {
    pub name: String,
    #[serde(default)]
    pub time_intervals: Vec<TimeIntervalSpec>,
}

/// One entry of a named interval, Alertmanager's field names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeIntervalSpec {
    pub times: Vec<TimeRangeConfig>,
    pub weekdays: Vec<String>,
    pub days_of_month: Vec<String>,
    pub months: Vec<String>,
    pub years: Vec<String>,
    /// An IANA time zone (`Europe/Berlin`), `UTC` (the default) or `Local`.
    pub location: Option<String>,
}

/// `{ start_time = "09:00", end_time = "17:00" }`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRangeConfig {
    pub start_time: String,
    pub end_time: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Location {
    Utc,
    Zone(chrono_tz::Tz),
    Local,
}

/// A compiled interval entry; `None` fields match always.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeInterval {
    /// `[start, end)` in minutes of the day.
    times: Option<Vec<(u32, u32)>>,
    /// Sunday = 0, as Go's `time.Weekday`.
    weekdays: Option<Vec<(u32, u32)>>,
    days_of_month: Option<Vec<(i32, i32)>>,
    months: Option<Vec<(u32, u32)>>,
    years: Option<Vec<(i32, i32)>>,
    location: Location,
}

/// The named intervals of a config.
#[derive(Debug, Clone, Default)]
pub struct TimeIntervals {
    by_name: std::collections::BTreeMap<String, Vec<TimeInterval>>,
}

impl TimeIntervals {
    /// Compiles `[[time_intervals]]`; each error names its field
    /// (`time_intervals[0].time_intervals[1].weekdays[0]`).
    pub fn build(configs: &[TimeIntervalConfig]) -> Result<TimeIntervals, Vec<String>> {
        let mut errors = Vec::new();
        let mut by_name = std::collections::BTreeMap::new();
        for (number, config) in configs.iter().enumerate() {
            let field = format!("time_intervals[{number}]");
            if config.name.trim().is_empty() {
                errors.push(format!("`{field}.name`: name the interval"));
            }
            if by_name.contains_key(&config.name) {
                errors.push(format!(
                    "`{field}.name`: `{}` is defined twice",
                    config.name
                ));
            }
            if config.time_intervals.len() > MAX_RANGES {
                errors.push(format!(
                    "`{field}.time_intervals`: more than {MAX_RANGES} entries"
                ));
                continue;
            }
            let mut compiled = Vec::new();
            for (index, spec) in config.time_intervals.iter().enumerate() {
                match TimeInterval::parse(spec) {
                    Ok(interval) => compiled.push(interval),
                    Err((part, error)) => {
                        errors.push(format!("`{field}.time_intervals[{index}]{part}`: {error}"))
                    }
                }
            }
            by_name.insert(config.name.clone(), compiled);
        }
        if errors.is_empty() {
            Ok(TimeIntervals { by_name })
        } else {
            Err(errors)
        }
    }

    pub fn contains_name(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Whether the named interval holds at `at` (an unknown name never does).
    pub fn holds(&self, name: &str, at: DateTime<Utc>) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|entries| entries.iter().any(|entry| entry.contains(at)))
    }

    /// The first minute after `at` at which the named interval no longer holds, looking
    /// at most `horizon` ahead (`None`: it holds throughout).
    pub fn ends_after(
        &self,
        name: &str,
        at: DateTime<Utc>,
        horizon: chrono::Duration,
    ) -> Option<DateTime<Utc>> {
        let start = at.with_second(0)?.with_nanosecond(0)?;
        let minutes = horizon.num_minutes();
        (1..=minutes)
            .map_while(|minute| start.checked_add_signed(chrono::Duration::minutes(minute)))
            .find(|candidate| !self.holds(name, *candidate))
    }
}

type FieldError = (String, String);

impl TimeInterval {
    /// Compiles one entry; the error names the field part (`.weekdays[2]`) and says why.
    pub fn parse(spec: &TimeIntervalSpec) -> Result<TimeInterval, FieldError> {
        let limit = |name: &str, count: usize| {
            if count > MAX_RANGES {
                Err((format!(".{name}"), format!("more than {MAX_RANGES} ranges")))
            } else {
                Ok(())
            }
        };
        limit("times", spec.times.len())?;
        limit("weekdays", spec.weekdays.len())?;
        limit("days_of_month", spec.days_of_month.len())?;
        limit("months", spec.months.len())?;
        limit("years", spec.years.len())?;
        let times = optional(&spec.times, "times", |range| {
            let start = parse_time(&range.start_time)?;
            let end = parse_time(&range.end_time)?;
            if start >= end {
                return Err(format!(
                    "start time `{}` must be before end time `{}`",
                    range.start_time, range.end_time
                ));
            }
            Ok((start, end))
        })?;
        let weekdays = optional(&spec.weekdays, "weekdays", |text| {
            let (begin, end) = range(text, weekday)?;
            if begin > end {
                return Err(format!(
                    "`{text}`: start day cannot be after end day (weeks start on sunday)"
                ));
            }
            Ok((begin, end))
        })?;
        let days_of_month = optional(&spec.days_of_month, "days_of_month", |text| {
            let (begin, end) = range(text, |part| {
                part.parse::<i32>()
                    .map_err(|_| format!("`{part}` is not a day of the month"))
            })?;
            for day in [begin, end] {
                if day == 0 || !(-31..=31).contains(&day) {
                    return Err(format!(
                        "{day} is not a valid day of the month: out of range (1 to 31, or -1 to -31 from the end)"
                    ));
                }
            }
            if begin < 0 && end > 0 {
                return Err("end day must be negative if start day is negative".into());
            }
            // a 28-day month is the shortest: a range empty even then is always empty
            let check = |day: i32| if day < 0 { 28 + day } else { day };
            if check(begin) > check(end) {
                return Err(format!("end day {end} is always before start day {begin}"));
            }
            Ok((begin, end))
        })?;
        let months = optional(&spec.months, "months", |text| {
            let (begin, end) = range(text, month)?;
            if begin > end {
                return Err(format!("`{text}`: end month is before start month"));
            }
            Ok((begin, end))
        })?;
        let years = optional(&spec.years, "years", |text| {
            let (begin, end) = range(text, |part| {
                part.parse::<i32>()
                    .ok()
                    .filter(|year| *year > 0)
                    .ok_or_else(|| format!("`{part}` is not a year"))
            })?;
            if begin > end {
                return Err(format!("end year {end} is before start year {begin}"));
            }
            Ok((begin, end))
        })?;
        let location = match spec.location.as_deref() {
            None | Some("UTC") => Location::Utc,
            Some("Local") => Location::Local,
            Some(name) => Location::Zone(name.parse::<chrono_tz::Tz>().map_err(|_| {
                (
                    ".location".to_string(),
                    format!(
                        "unknown time zone `{name}`; use an IANA name such as `Europe/Berlin`, `UTC` or `Local`"
                    ),
                )
            })?),
        };
        Ok(TimeInterval {
            times,
            weekdays,
            days_of_month,
            months,
            years,
            location,
        })
    }

    /// Whether `at` falls in this entry (Alertmanager's `ContainsTime`).
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        match self.location {
            Location::Utc => self.contains_local(at),
            Location::Zone(zone) => self.contains_local(at.with_timezone(&zone)),
            Location::Local => self.contains_local(at.with_timezone(&chrono::Local)),
        }
    }

    fn contains_local<Z: chrono::TimeZone>(&self, at: DateTime<Z>) -> bool {
        let minute = at.hour() * 60 + at.minute();
        let within = |ranges: &Option<Vec<(u32, u32)>>, value: u32, end_excluded: bool| {
            ranges.as_ref().is_none_or(|ranges| {
                ranges.iter().any(|&(begin, end)| {
                    value >= begin
                        && if end_excluded {
                            value < end
                        } else {
                            value <= end
                        }
                })
            })
        };
        if !within(&self.times, minute, true) {
            return false;
        }
        if let Some(days) = &self.days_of_month {
            let in_month = days_in_month(at.year(), at.month()) as i32;
            let day = at.day() as i32;
            let any = days.iter().any(|&(begin, end)| {
                let begin = if begin < 0 {
                    in_month + begin + 1
                } else {
                    begin
                };
                let end = if end < 0 { in_month + end + 1 } else { end };
                // a start after the month's end (the 31st in a 30-day month) skips it
                if begin > in_month {
                    return false;
                }
                let (begin, end) = (
                    begin.clamp(-in_month, in_month),
                    end.clamp(-in_month, in_month),
                );
                day >= begin && day <= end
            });
            if !any {
                return false;
            }
        }
        if !within(&self.months, at.month(), false) {
            return false;
        }
        if !within(&self.weekdays, at.weekday().num_days_from_sunday(), false) {
            return false;
        }
        self.years.as_ref().is_none_or(|years| {
            years
                .iter()
                .any(|&(begin, end)| at.year() >= begin && at.year() <= end)
        })
    }
}

/// `None` for an empty list (the field matches always), else each item parsed; an error
/// names the item (`.weekdays[2]`).
fn optional<T, R>(
    items: &[T],
    name: &str,
    parse: impl Fn(&T) -> Result<R, String>,
) -> Result<Option<Vec<R>>, FieldError> {
    if items.is_empty() {
        return Ok(None);
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse(item).map_err(|error| (format!(".{name}[{index}]"), error)))
        .collect::<Result<Vec<R>, FieldError>>()
        .map(Some)
}

/// `a` or `a:b`, each side parsed by `member` (case-insensitive).
fn range<T: Copy>(
    text: &str,
    member: impl Fn(&str) -> Result<T, String>,
) -> Result<(T, T), String> {
    let lower = text.trim().to_lowercase();
    match lower.split_once(':') {
        Some((begin, end)) if !end.contains(':') => Ok((member(begin)?, member(end)?)),
        Some(_) => Err(format!(
            "couldn't parse range `{text}`, invalid format (write `start:end`)"
        )),
        None => {
            let value = member(&lower)?;
            Ok((value, value))
        }
    }
}

fn weekday(text: &str) -> Result<u32, String> {
    const DAYS: [&str; 7] = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    DAYS.iter()
        .position(|day| *day == text)
        .map(|index| index as u32)
        .ok_or_else(|| format!("`{text}` is not a valid weekday (sunday to saturday)"))
}

fn month(text: &str) -> Result<u32, String> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    if let Some(index) = MONTHS.iter().position(|month| *month == text) {
        return Ok(index as u32 + 1);
    }
    text.parse::<u32>()
        .ok()
        .filter(|month| (1..=12).contains(month))
        .ok_or_else(|| format!("`{text}` is not a valid month (january to december, or 1 to 12)"))
}

/// `HH:MM` (00:00 to 24:00) as minutes of the day.
fn parse_time(text: &str) -> Result<u32, String> {
    let invalid = || format!("`{text}` is not a time of day; write `HH:MM`, 00:00 to 24:00");
    let (hours, minutes) = text.split_once(':').ok_or_else(invalid)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(invalid());
    }
    let hours: u32 = hours.parse().map_err(|_| invalid())?;
    let minutes: u32 = minutes.parse().map_err(|_| invalid())?;
    if (hours == 24 && minutes == 0) || (hours < 24 && minutes < 60) {
        Ok(hours * 60 + minutes)
    } else {
        Err(invalid())
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    chrono::NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .and_then(|first| first.pred_opt())
        .map_or(31, |last| last.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn interval(toml_text: &str) -> TimeInterval {
        let spec: TimeIntervalSpec = toml::from_str(toml_text).expect("parses");
        TimeInterval::parse(&spec).expect("valid")
    }

    /// Alertmanager's `timeIntervalTestCases` (timeinterval_test.go), rewritten in TOML.
    #[test]
    fn contains_time_as_alertmanager_does() {
        let cases: &[(&str, &[(&str, bool)])] = &[
            // all fields empty: always
            ("", &[("2021-01-01T00:00:00Z", true)]),
            (
                r#"weekdays = ["monday:friday"]"#,
                &[
                    ("2021-01-04T00:00:00Z", true),  // monday
                    ("2021-01-08T23:59:59Z", true),  // friday
                    ("2021-01-09T00:00:00Z", false), // saturday
                    ("2021-01-10T12:00:00Z", false), // sunday
                ],
            ),
            (
                r#"times = [{ start_time = "09:00", end_time = "17:00" }]"#,
                &[
                    ("2021-01-04T09:00:00Z", true),
                    ("2021-01-04T16:59:59Z", true),
                    ("2021-01-04T17:00:00Z", false),
                    ("2021-01-04T08:59:59Z", false),
                ],
            ),
            (
                r#"times = [{ start_time = "23:00", end_time = "24:00" }]"#,
                &[
                    ("2021-01-04T23:59:59Z", true),
                    ("2021-01-05T00:00:00Z", false),
                ],
            ),
            (
                r#"days_of_month = ["1:5", "-3:-1"]"#,
                &[
                    ("2021-01-01T00:00:00Z", true),
                    ("2021-01-05T23:59:59Z", true),
                    ("2021-01-06T00:00:00Z", false),
                    ("2021-01-29T00:00:00Z", true), // 31-day month: -3 is the 29th
                    ("2021-01-28T00:00:00Z", false),
                    ("2021-02-26T00:00:00Z", true), // 28-day month: -3 is the 26th
                    ("2021-02-25T00:00:00Z", false),
                ],
            ),
            (
                r#"days_of_month = ["-1"]"#,
                &[
                    ("2021-02-28T12:00:00Z", true),
                    ("2020-02-29T12:00:00Z", true), // leap year
                    ("2020-02-28T12:00:00Z", false),
                ],
            ),
            (
                r#"days_of_month = ["31"]"#,
                &[
                    ("2021-04-30T12:00:00Z", false),
                    ("2021-05-31T12:00:00Z", true),
                ],
            ),
            (
                r#"months = ["february:march", "december"]"#,
                &[
                    ("2021-02-01T00:00:00Z", true),
                    ("2021-03-31T23:59:59Z", true),
                    ("2021-04-01T00:00:00Z", false),
                    ("2021-12-24T00:00:00Z", true),
                ],
            ),
            (
                r#"months = ["1:3"]"#,
                &[
                    ("2021-03-01T00:00:00Z", true),
                    ("2021-04-01T00:00:00Z", false),
                ],
            ),
            (
                r#"years = ["2020:2021"]"#,
                &[
                    ("2020-01-01T00:00:00Z", true),
                    ("2021-12-31T23:59:59Z", true),
                    ("2022-01-01T00:00:00Z", false),
                ],
            ),
            (
                r#"
                times = [{ start_time = "09:00", end_time = "17:00" }]
                weekdays = ["saturday"]
                location = "Australia/Sydney"
                "#,
                &[
                    // 09:00 saturday in Sydney (UTC+11 in January) is 22:00 friday UTC
                    ("2021-01-08T22:00:00Z", true),
                    ("2021-01-09T06:00:00Z", false),
                    ("2021-01-09T05:59:00Z", true),
                ],
            ),
        ];
        for (spec, points) in cases {
            let interval = interval(spec);
            for (point, expected) in *points {
                assert_eq!(interval.contains(at(point)), *expected, "{spec} at {point}");
            }
        }
    }

    /// Alertmanager's validation cases (`TestYamlUnmarshal`'s errors), with our field paths.
    #[test]
    fn bad_ranges_name_their_field_and_say_why() {
        let cases = [
            (
                r#"weekdays = ["cats"]"#,
                ".weekdays[0]",
                "not a valid weekday",
            ),
            (
                r#"weekdays = ["friday:monday"]"#,
                ".weekdays[0]",
                "start day cannot be after end day",
            ),
            (
                r#"weekdays = ["monday:tuesday:friday"]"#,
                ".weekdays[0]",
                "invalid format",
            ),
            (
                r#"days_of_month = ["0"]"#,
                ".days_of_month[0]",
                "out of range",
            ),
            (
                r#"days_of_month = ["1", "32"]"#,
                ".days_of_month[1]",
                "out of range",
            ),
            (
                r#"days_of_month = ["-31:-32"]"#,
                ".days_of_month[0]",
                "out of range",
            ),
            (
                r#"days_of_month = ["10:5"]"#,
                ".days_of_month[0]",
                "always before",
            ),
            (
                r#"days_of_month = ["-1:5"]"#,
                ".days_of_month[0]",
                "must be negative",
            ),
            (r#"months = ["13"]"#, ".months[0]", "not a valid month"),
            (
                r#"months = ["march:january"]"#,
                ".months[0]",
                "before start month",
            ),
            (r#"years = ["2022:2020"]"#, ".years[0]", "before start year"),
            (r#"years = ["-1"]"#, ".years[0]", "not a year"),
            (
                r#"times = [{ start_time = "17:00", end_time = "09:00" }]"#,
                ".times[0]",
                "must be before",
            ),
            (
                r#"times = [{ start_time = "9:00", end_time = "17:00" }]"#,
                ".times[0]",
                "HH:MM",
            ),
            (
                r#"times = [{ start_time = "00:00", end_time = "24:01" }]"#,
                ".times[0]",
                "HH:MM",
            ),
            (
                r#"times = [{ start_time = "00:60", end_time = "01:00" }]"#,
                ".times[0]",
                "HH:MM",
            ),
            (
                r#"location = "Mars/Olympus""#,
                ".location",
                "unknown time zone",
            ),
        ];
        for (spec, field, why) in cases {
            let parsed: TimeIntervalSpec = toml::from_str(spec).expect("parses");
            let (got_field, error) = TimeInterval::parse(&parsed).expect_err(spec);
            assert_eq!(got_field, field, "{spec}");
            assert!(error.contains(why), "{spec}: {error}");
        }
    }

    #[test]
    fn a_named_interval_holds_when_any_entry_does_and_says_when_it_ends() {
        let configs: Vec<TimeIntervalConfig> = vec![TimeIntervalConfig {
            name: "weekend-or-night".into(),
            time_intervals: vec![
                toml::from_str(r#"weekdays = ["saturday", "sunday"]"#).expect("parses"),
                toml::from_str(r#"times = [{ start_time = "00:00", end_time = "06:00" }]"#)
                    .expect("parses"),
            ],
        }];
        let intervals = TimeIntervals::build(&configs).expect("valid");
        assert!(intervals.holds("weekend-or-night", at("2021-01-09T12:00:00Z")));
        assert!(intervals.holds("weekend-or-night", at("2021-01-05T03:00:00Z")));
        assert!(!intervals.holds("weekend-or-night", at("2021-01-05T12:00:00Z")));
        assert!(!intervals.holds("unknown", at("2021-01-05T03:00:00Z")));
        assert_eq!(
            intervals.ends_after(
                "weekend-or-night",
                at("2021-01-05T03:10:30Z"),
                chrono::Duration::days(1)
            ),
            Some(at("2021-01-05T06:00:00Z"))
        );
        let twice = TimeIntervals::build(&[configs[0].clone(), configs[0].clone()])
            .expect_err("defined twice");
        assert!(twice[0].contains("`time_intervals[1].name`"), "{twice:?}");
    }
}
