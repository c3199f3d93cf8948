//! Cron schedules: generated expressions of 4 to 8 fields in real and bogus time zones,
//! and mutated crontab lines; what parses must yield strictly increasing ticks, each
//! after the time asked about, at any time (DST transitions, the far past and future).

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use lookout::scheduler::schedule::Schedule;
use proptest::prelude::*;

use crate::harness::{self, Grammar, mutated, run_case};

/// Ticks followed from each start time.
const TICKS: usize = 4;

fn field() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        4 => 0u64..60,
        1 => Just(4_294_967_296u64),
        1 => Just(u64::MAX),
    ];
    let atom = prop_oneof![
        Just("*".to_string()),
        Just("?".to_string()),
        number.clone().prop_map(|number| number.to_string()),
        (number.clone(), number.clone()).prop_map(|(first, last)| format!("{first}-{last}")),
        proptest::sample::select(vec![
            "MON", "sun", "FRI-SAT", "JAN", "dec", "L", "5L", "2#3", "W"
        ])
        .prop_map(str::to_string),
    ];
    (
        proptest::collection::vec(atom, 1..3),
        proptest::option::of(prop_oneof![1u64..15, Just(0u64), Just(u64::MAX)]),
    )
        .prop_map(|(atoms, step)| {
            let mut field = atoms.join(",");
            if let Some(step) = step {
                field.push_str(&format!("/{step}"));
            }
            field
        })
}

pub fn expression() -> BoxedStrategy<String> {
    proptest::collection::vec(field(), 4..=8)
        .prop_map(|fields| fields.join(" "))
        .boxed()
}

fn timezone() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        proptest::sample::select(vec![
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "Asia/Kathmandu",
            "Pacific/Apia",
            "America/Santiago",
            "Etc/GMT+14",
            "Mars/Olympus",
            "",
            "utc",
        ])
        .prop_map(str::to_string),
    )
}

fn start_time() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        // around the 2024 DST transitions of Europe and the US, and in general
        (1_710_028_800i64..1_711_933_200)
            .prop_map(|seconds| Utc.timestamp_opt(seconds, 0).single()),
        (1_729_900_000i64..1_730_800_000)
            .prop_map(|seconds| Utc.timestamp_opt(seconds, 0).single()),
        (-62_000_000_000i64..253_000_000_000)
            .prop_map(|seconds| Utc.timestamp_opt(seconds, 0).single()),
        Just(Some(DateTime::<Utc>::MAX_UTC)),
        Just(Some(DateTime::<Utc>::MIN_UTC)),
    ]
    .prop_map(|time| time.unwrap_or(DateTime::<Utc>::UNIX_EPOCH))
}

fn grammar() -> Arc<Grammar> {
    Arc::new(Grammar::new(
        &[
            "0 * * * * *",
            "*/5 * * * *",
            "0 9 * * 1-5",
            "30 2 * * *",
            "0 0 1,15 * 0",
            "0 0 29 2 *",
            "0 30 1 * * Sun",
            "15 10 ? * MON-FRI 2024",
            "0 0 31 4 *",
        ],
        &[
            "*",
            "/",
            ",",
            "-",
            " ",
            "?",
            "0",
            "7",
            "60",
            "L",
            "#",
            "MON",
            "JAN",
            "99999999999999999999",
        ],
        &[],
    ))
}

#[test]
fn schedules_parse_and_tick_forward_or_fail_cleanly() {
    let strategy = || {
        (
            prop_oneof![expression(), mutated(grammar(), expression(), 6)],
            timezone(),
            start_time(),
        )
    };
    harness::check(strategy, |(expression, timezone, after)| {
        run_case(
            "schedule",
            format!("{:?}", (&expression, &timezone, after)),
            move || {
                let Ok(schedule) = Schedule::parse(&expression, timezone.as_deref()) else {
                    return Ok(());
                };
                let mut time = after;
                for _ in 0..TICKS {
                    let Some(next) = schedule.next_after(time) else {
                        break;
                    };
                    if next <= time {
                        return Err(format!("tick {next} is not after {time}"));
                    }
                    time = next;
                }
                Ok(())
            },
        )
    });
}
