//! Rule files: the shipped examples in `queries/` with fields replaced by generated
//! (and hostile) values, then the text mutated, loaded as the rule loader and the rules
//! API load them; what loads is exercised as the manager would use it.

use std::sync::Arc;

use lookout::rules::measure::{AggregateOp, Measure};
use lookout::rules::rule::LoadedRule;
use lookout::rules::template::TemplateData;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::harness::{self, Grammar, HOSTILE, mutated, run_case};

const FIELDS: &[&str] = &[
    "version",
    "description",
    "schedule",
    "timezone",
    "index",
    "query",
    "promql",
    "window",
    "group_by",
    "threshold",
    "for",
    "keep_firing_for",
    "severity",
    "labels",
    "summary",
    "runbook_url",
    "context",
    "notify",
    "repeat_interval",
    "max_delay",
    "group_ttl",
    "aggregate",
    "ratio",
    "spike",
    "new_term",
    "new_pattern",
    "slo",
    "unknown_key",
];

fn seeds() -> Vec<String> {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
    let mut seeds: Vec<String> = std::fs::read_dir(&directory)
        .expect("queries/ exists")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .map(|path| std::fs::read_to_string(path).expect("a rule file"))
        .collect();
    seeds.sort();
    seeds
}

fn duration() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::sample::select(vec![
            "1m",
            "0m",
            "5m",
            "1h",
            "30s",
            "2h 30m",
            "1 minute",
            "-1m",
            "",
            "1y",
            "18446744073709551615s",
            "1000000000000000000s",
            "584942417355y",
            "99999999999999999999999y",
            "1e3s",
            "1ns",
        ])
        .prop_map(Value::from),
        "[0-9]{1,20}(ns|us|ms|s|m|h|d|w|M|y)".prop_map(Value::from),
    ]
}

/// A burn-rate factor: ordinary, zero, negative, huge or not a number.
fn burn_rate() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0.0..100.0f64).prop_map(Value::from),
        proptest::sample::select(vec![json!(0), json!(-1), json!(1e308), json!("14.4")]),
    ]
}

/// An `slo` object: objectives in and out of (0, 100), periods and windows from
/// `duration`, Lucene or PromQL queries, and conditions lists of any length.
fn slo() -> impl Strategy<Value = Value> {
    let condition = (duration(), duration(), burn_rate()).prop_map(|(long, short, factor)| {
        json!({"long_window": long, "short_window": short, "burn_rate": factor})
    })
    .boxed();
    let query = prop_oneof![
        crate::query::lucene_text(2).prop_map(Value::from),
        crate::promql::expression(2).prop_map(Value::from),
        Just(json!("sum(rate(http_requests_total[{{ $window }}]))")),
    ]
    .boxed();
    (
        prop_oneof![
            (-1.0..101.0f64).prop_map(Value::from),
            Just(json!(99.9)),
            Just(json!(1e308))
        ],
        duration(),
        query.clone(),
        query,
        proptest::collection::vec(condition.clone(), 0..10),
        proptest::option::of(proptest::collection::vec(condition, 0..3)),
    )
        .prop_map(|(objective, period, good, total, page, ticket)| {
            let mut slo = json!({"objective": objective, "period": period, "good": good,
                                 "total": total, "page": page});
            if let Some(ticket) = ticket {
                slo["ticket"] = json!(ticket);
            }
            slo
        })
}

/// A generated value for `field`, or (sometimes) any JSON at all.
fn value_for(field: &'static str) -> BoxedStrategy<Value> {
    let specific: BoxedStrategy<Value> = match field {
        "schedule" => crate::schedule::expression().prop_map(Value::from).boxed(),
        "timezone" => proptest::sample::select(vec!["Europe/Berlin", "UTC", "Nowhere/Land", ""])
            .prop_map(Value::from)
            .boxed(),
        "query" => prop_oneof![
            crate::query::lucene_text(3).prop_map(Value::from),
            crate::query::dsl_query(3),
        ]
        .boxed(),
        "promql" => crate::promql::expression(3).prop_map(Value::from).boxed(),
        "window" | "for" | "keep_firing_for" | "repeat_interval" | "max_delay" | "group_ttl" => {
            duration().boxed()
        }
        "group_by" | "notify" => proptest::collection::vec(
            prop_oneof![
                "[a-z._]{0,8}",
                proptest::sample::select(HOSTILE).prop_map(str::to_string)
            ],
            0..3,
        )
        .prop_map(|names| json!(names))
        .boxed(),
        "threshold" => ("(>|>=|<|<=|==|!=|=>)", harness::json_value(0))
            .prop_map(|(op, value)| json!({"op": op, "value": value}))
            .boxed(),
        "summary" | "description" => crate::template::generated().prop_map(Value::from).boxed(),
        "context" => proptest::collection::vec(crate::template::generated(), 0..3)
            .prop_map(|templates| json!(templates))
            .boxed(),
        "aggregate" => (
            proptest::sample::select(vec![
                "avg",
                "min",
                "max",
                "sum",
                "percentile",
                "cardinality",
                "median",
                "",
            ]),
            prop_oneof![
                "[a-z._@*]{0,10}",
                proptest::sample::select(HOSTILE).prop_map(str::to_string)
            ],
            proptest::option::of(prop_oneof![
                Just(json!(95)),
                Just(json!(0)),
                Just(json!(100)),
                Just(json!(-1)),
                Just(json!(1e308)),
                Just(json!("95")),
                (0.0f64..=100.0).prop_map(|percentile| json!(percentile)),
            ]),
        )
            .prop_map(|(op, field, percentile)| {
                let mut aggregate = json!({"op": op, "field": field});
                if let Some(percentile) = percentile {
                    aggregate["percentile"] = percentile;
                }
                aggregate
            })
            .boxed(),
        "ratio" => (
            prop_oneof![
                crate::query::lucene_text(3).prop_map(Value::from),
                crate::query::dsl_query(3),
                harness::json_value(1),
            ],
            proptest::option::of(prop_oneof![
                Just(json!(0)),
                Just(json!(10)),
                Just(json!(-1)),
                Just(json!(u64::MAX)),
                Just(json!(1.5)),
            ]),
        )
            .prop_map(|(denominator, min_denominator)| {
                let mut ratio = json!({"denominator": denominator});
                if let Some(min_denominator) = min_denominator {
                    ratio["min_denominator"] = min_denominator;
                }
                ratio
            })
            .boxed(),
        "spike" => (
            prop_oneof![
                harness::json_value(0),
                Just(json!(3)),
                Just(json!(1)),
                Just(json!(1e308))
            ],
            prop_oneof![Just(Value::from("previous_window")), duration()],
            proptest::sample::select(vec!["up", "down", "both", "sideways", ""]),
            prop_oneof![harness::json_value(0), Just(json!(10)), Just(json!(-1))],
            any::<bool>(),
        )
            .prop_map(
                |(ratio, compare_to, direction, min_count, alert_on_new_data)| {
                    json!({"ratio": ratio, "compare_to": compare_to, "direction": direction,
                        "min_count": min_count, "alert_on_new_data": alert_on_new_data})
                },
            )
            .boxed(),
        "new_term" => (
            proptest::collection::vec(
                prop_oneof![
                    "[a-z._]{0,8}",
                    proptest::sample::select(HOSTILE).prop_map(str::to_string)
                ],
                0..6,
            ),
            duration(),
            proptest::option::of(prop_oneof![
                Just(json!(0)),
                Just(json!(3)),
                Just(json!(u64::MAX)),
                harness::json_value(0)
            ]),
        )
            .prop_map(|(fields, lookback, max_terms)| {
                let mut new_term = json!({"fields": fields, "lookback": lookback});
                if let Some(max_terms) = max_terms {
                    new_term["max_terms"] = max_terms;
                }
                new_term
            })
            .boxed(),
        "new_pattern" => (
            proptest::option::of(prop_oneof![
                Just(json!("message")),
                Just(json!("")),
                harness::json_value(0)
            ]),
            proptest::option::of(duration()),
            proptest::option::of(prop_oneof![
                Just(json!(0)),
                Just(json!(3)),
                Just(json!(-1)),
                Just(json!(u64::MAX))
            ]),
        )
            .prop_map(|(field, lookback, min_count)| {
                let mut object = serde_json::Map::new();
                for (key, value) in [
                    ("field", field),
                    ("lookback", lookback),
                    ("min_count", min_count),
                ] {
                    if let Some(value) = value {
                        object.insert(key.into(), value);
                    }
                }
                Value::Object(object)
            })
            .boxed(),
        "slo" => slo().boxed(),
        "version" => prop_oneof![
            Just(json!(1)),
            Just(json!(2)),
            Just(json!(-1)),
            Just(json!(1e99))
        ]
        .boxed(),
        _ => harness::json_value(2).boxed(),
    };
    prop_oneof![4 => specific, 1 => harness::json_value(2)].boxed()
}

/// An edit of a rule: a field set to a generated value, or removed.
fn edit() -> impl Strategy<Value = (&'static str, Option<Value>)> {
    proptest::sample::select(FIELDS).prop_flat_map(|field| {
        (
            Just(field),
            proptest::option::weighted(0.85, value_for(field)),
        )
    })
}

fn rule_text() -> BoxedStrategy<String> {
    (
        proptest::sample::select(seeds()),
        proptest::collection::vec(edit(), 0..5),
    )
        .prop_map(|(seed, edits)| {
            let mut rule: serde_json::Map<String, Value> =
                serde_json::from_str(&seed).expect("the examples are JSON objects");
            for (field, value) in edits {
                match value {
                    Some(value) => rule.insert(field.to_string(), value),
                    None => rule.remove(field),
                };
            }
            serde_json::to_string_pretty(&rule).expect("a map serializes")
        })
        .boxed()
}

fn grammar() -> Arc<Grammar> {
    let seeds = seeds();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    Arc::new(Grammar::new(
        &seeds,
        &[
            "{", "}", "[", "]", ",", ":", "\"", "null", "1e999", "\"for\"", "{{", "}}", "\\u0000",
        ],
        &[("[", "]"), ("{\"a\":", "}")],
    ))
}

fn load(text: String, name: String) -> Result<(), TestCaseError> {
    run_case("rule", format!("{:?}", (&name, &text)), move || {
        let Ok(rule) = LoadedRule::parse(&text, &name, "fuzz.json") else {
            return Ok(());
        };
        let after = chrono::Utc::now();
        if let Some(next) = rule.schedule.next_after(after)
            && next <= after
        {
            return Err(format!(
                "the schedule's next tick {next} is not after {after}"
            ));
        }
        let data = TemplateData {
            value: f64::MAX,
            count: u64::MAX,
            ..TemplateData::default()
        };
        for template in rule
            .summary
            .iter()
            .chain(&rule.description)
            .chain(&rule.context)
        {
            let _ = template.render(&data);
        }
        if let Some(new_term) = &rule.new_term {
            let labels = new_term
                .labels
                .iter()
                .map(|label| (label.clone(), "x".to_string()))
                .collect();
            if new_term.fields_of(&labels).len() != new_term.fields.len() {
                return Err("every new_term field has its label".into());
            }
        }
        let _ = (
            rule.holds(f64::NAN),
            rule.threshold_text(),
            rule.saved_query(),
        );
        // a measure that loads is a log rule's, with a percentile in (0, 100] and a
        // minimum denominator of at least 1
        match &rule.measure {
            Some(Measure::Aggregate {
                op: AggregateOp::Percentile,
                percentile,
                ..
            }) if !(*percentile > 0.0 && *percentile <= 100.0) => {
                return Err(format!("percentile {percentile} loaded"));
            }
            Some(Measure::Ratio {
                min_denominator: 0, ..
            }) => return Err("a minimum denominator of 0 loaded".into()),
            Some(_) if rule.file.promql.is_some() => {
                return Err("a measure on a metric rule loaded".into());
            }
            _ => {}
        }
        if let Some(spike) = &rule.spike {
            for (value, reference) in [
                (f64::NAN, None),
                (f64::MAX, Some(f64::MIN_POSITIVE)),
                (0.0, Some(0.0)),
                (f64::INFINITY, Some(f64::NAN)),
            ] {
                let _ = rule.condition(value, reference);
                let _ = spike.summary(value, reference, "5m");
            }
            let reference = spike.reference_tick(after);
            if reference > after || (spike.offset > std::time::Duration::ZERO && reference == after)
            {
                return Err(format!(
                    "the reference tick {reference} is not before the tick {after}"
                ));
            }
        }
        // an SLO rule that loads derives its series' SLO, with windows it can count
        if rule.file.slo.is_some() {
            let spec =
                lookout::rules::slo::spec_of(&rule).ok_or("an SLO rule that loads has an SLO")?;
            let longest = spec.windows.iter().chain([&spec.period]).max();
            if longest.is_some_and(|window| window.as_secs() / 60 > 60 * 1440) {
                return Err(format!("a window beyond the limit loaded: {spec:?}"));
            }
        }
        Ok(())
    })
}

#[test]
fn rule_files_load_or_fail_cleanly() {
    let strategy = || {
        (
            prop_oneof![3 => rule_text(), 1 => mutated(grammar(), rule_text(), 6)],
            prop_oneof![4 => Just("checkout_5xx".to_string()), 1 => "\\PC{0,8}".boxed()],
        )
    };
    harness::check(strategy, |(text, name)| load(text, name));
}
