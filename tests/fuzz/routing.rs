//! Alertmanager's matcher strings and time intervals as routes read them: generated
//! matchers (names, operators, quoted and escaped values, lists with braces and commas)
//! and mutated ones; generated and mutated `[[time_intervals]]` tables. What parses must
//! render back to a matcher that parses to the same thing, and a time interval that
//! compiles must answer `holds` and `ends_after` for any time without panicking.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use lookout::notify::matcher::{parse_matcher, parse_matchers};
use lookout::notify::time_interval::{TimeIntervalConfig, TimeIntervals};
use proptest::prelude::*;

use crate::harness::{self, Grammar, mutated, run_case};

fn matcher() -> BoxedStrategy<String> {
    let name = proptest::sample::select(vec!["severity", "service", "_x", "a:b", "9bad", ""]);
    let operator = proptest::sample::select(vec!["=", "!=", "=~", "!~", "==", "~", ""]);
    let value = prop_oneof![
        "[a-z0-9 ,.*|()\\[\\]\\\\\"]{0,12}".prop_map(|value| value),
        "[a-z0-9 ,.*|()\\\\\"]{0,12}".prop_map(|value| format!("\"{value}\"")),
        Just("\"a\\\"b\"".to_string()),
        Just("(a|b".to_string()),
        Just("x{1000000}".to_string()),
    ];
    proptest::collection::vec((name, operator, value), 1..4)
        .prop_map(|parts| {
            parts
                .into_iter()
                .map(|(name, operator, value)| format!("{name}{operator}{value}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .prop_flat_map(|list| {
            proptest::sample::select(vec![
                list.clone(),
                format!("{{{list}}}"),
                format!("{{{list},}}"),
            ])
        })
        .boxed()
}

fn matcher_grammar() -> Arc<Grammar> {
    Arc::new(Grammar::new(
        &[
            "severity=\"critical\"",
            "{service=~\"check.*\", team!=\"search\"}",
            "quote=\"She said: \\\"Hi, ladies!\\\"\"",
            "foo!~bar.*",
        ],
        &[
            "=", "!=", "=~", "!~", "\"", "\\", ",", "{", "}", "(", "|", "*", " ", "\n",
        ],
        &[("{", "}"), ("(", ")"), ("\"", "\"")],
    ))
}

#[test]
fn matchers_parse_and_render_back_or_fail_cleanly() {
    harness::check(
        || prop_oneof![matcher(), mutated(matcher_grammar(), matcher(), 6)],
        |text| {
            run_case("matcher", format!("{text:?}"), move || {
                let Ok(matchers) = parse_matchers(&text) else {
                    return Ok(());
                };
                for matcher in matchers {
                    let rendered = matcher.to_string();
                    let again = parse_matcher(&rendered)
                        .map_err(|error| format!("{rendered:?} does not parse back: {error}"))?;
                    if again != matcher {
                        return Err(format!("{rendered:?} parses to {again:?}, not {matcher:?}"));
                    }
                }
                Ok(())
            })
        },
    );
}

fn range(members: Vec<&'static str>) -> impl Strategy<Value = Vec<String>> {
    let member = proptest::sample::select(members);
    proptest::collection::vec(
        prop_oneof![
            member.clone().prop_map(str::to_string),
            (member.clone(), member).prop_map(|(begin, end)| format!("{begin}:{end}")),
        ],
        0..3,
    )
}

fn time_interval_toml() -> BoxedStrategy<String> {
    let times = proptest::collection::vec(
        (
            proptest::sample::select(vec![
                "00:00", "09:00", "23:59", "24:00", "9:00", "25:00", "12:60",
            ]),
            proptest::sample::select(vec!["00:00", "17:00", "24:00", "24:01", "x"]),
        ),
        0..3,
    );
    let weekdays = range(vec!["monday", "SUNDAY", "saturday", "friday", "cats", ""]);
    let days = range(vec!["1", "-1", "31", "-31", "0", "32", "15", "-7", "x"]);
    let months = range(vec!["january", "12", "13", "0", "march", "Dec"]);
    let years = range(vec!["2020", "2030", "-1", "0", "99999999999"]);
    let location = proptest::option::of(proptest::sample::select(vec![
        "UTC",
        "Local",
        "Europe/Berlin",
        "Australia/Lord_Howe",
        "Mars/Olympus",
        "",
    ]));
    (times, weekdays, days, months, years, location)
        .prop_map(|(times, weekdays, days, months, years, location)| {
            let list = |items: &[String]| {
                items
                    .iter()
                    .map(|item| format!("{item:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut text = String::from("name = \"fuzz\"\n[[time_intervals]]\n");
            let times: Vec<String> = times
                .iter()
                .map(|(start, end)| format!("{{ start_time = {start:?}, end_time = {end:?} }}"))
                .collect();
            text.push_str(&format!("times = [{}]\n", times.join(", ")));
            text.push_str(&format!("weekdays = [{}]\n", list(&weekdays)));
            text.push_str(&format!("days_of_month = [{}]\n", list(&days)));
            text.push_str(&format!("months = [{}]\n", list(&months)));
            text.push_str(&format!("years = [{}]\n", list(&years)));
            if let Some(location) = location {
                text.push_str(&format!("location = {location:?}\n"));
            }
            text
        })
        .boxed()
}

fn time_grammar() -> Arc<Grammar> {
    Arc::new(Grammar::new(
        &[
            "name = \"n\"\n[[time_intervals]]\nweekdays = [\"monday:friday\"]\ntimes = [{ start_time = \"09:00\", end_time = \"17:00\" }]\n",
        ],
        &[":", "\"", "-", "1", "31", "24:00", ",", "[", "]", "=", "\n"],
        &[("[", "]"), ("{", "}"), ("\"", "\"")],
    ))
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        (1_710_028_800i64..1_711_933_200)
            .prop_map(|seconds| Utc.timestamp_opt(seconds, 0).single()),
        (-62_000_000_000i64..253_000_000_000)
            .prop_map(|seconds| Utc.timestamp_opt(seconds, 0).single()),
    ]
    .prop_map(|time| time.unwrap_or(DateTime::<Utc>::UNIX_EPOCH))
}

#[test]
fn time_intervals_compile_and_answer_or_fail_cleanly() {
    harness::check(
        || {
            (
                prop_oneof![
                    time_interval_toml(),
                    mutated(time_grammar(), time_interval_toml(), 4)
                ],
                instant(),
            )
        },
        |(text, at)| {
            run_case("time_interval", format!("{:?}", (&text, at)), move || {
                let Ok(config) = toml::from_str::<TimeIntervalConfig>(&text) else {
                    return Ok(());
                };
                let Ok(intervals) = TimeIntervals::build(&[config]) else {
                    return Ok(());
                };
                let _ = intervals.holds("fuzz", at);
                if let Some(end) = intervals.ends_after("fuzz", at, chrono::Duration::days(2)) {
                    if end <= at {
                        return Err(format!("the mute ends at {end}, not after {at}"));
                    }
                    if intervals.holds("fuzz", end) {
                        return Err(format!("it still holds at its end {end}"));
                    }
                }
                Ok(())
            })
        },
    );
}
