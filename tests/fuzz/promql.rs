//! PromQL through the engine, not just the parser: generated and mutated expressions are
//! parsed and evaluated as instant and range queries over a small in-memory head.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lookout::promql::{self, Engine, EngineOptions, QueryValue};
use lookout::tsdb::head::{Head, labels};
use proptest::prelude::*;

use crate::harness::{self, Grammar, HOSTILE, mutated, run_case};

/// Nesting of generated expressions (each level is a function, aggregation, binary
/// operation or parenthesis); far deeper ones are the `DEEP_NESTING` tests below.
const NESTING: u32 = 24;
/// Nesting (or chain length) an expression must be refused at, or evaluated, without
/// overflowing the stack.
const DEEP_NESTING: usize = 3000;

/// Evaluation times (ms): the head holds samples from `START` every 15 s for an hour.
const START: i64 = 1_714_550_400_000;
const END: i64 = START + 3_600_000;

const METRICS: &[&str] = &[
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "node_cpu_seconds_total",
    "up",
    "process_start_time_seconds",
    "build_info",
    "missing_metric",
];

/// The storage: counters, gauges, a classic histogram, a staleness marker, odd values.
fn head() -> &'static Head {
    static HEAD: OnceLock<Head> = OnceLock::new();
    HEAD.get_or_init(|| {
        let head = Head::new();
        let mut series = Vec::new();
        for job in ["api", "web"] {
            for status in ["200", "500"] {
                series.push(labels(&[
                    ("__name__", "http_requests_total"),
                    ("job", job),
                    ("instance", "host:9100"),
                    ("status_code", status),
                ]));
            }
            for le in ["0.1", "0.5", "1", "+Inf"] {
                series.push(labels(&[
                    ("__name__", "http_request_duration_seconds_bucket"),
                    ("job", job),
                    ("le", le),
                ]));
            }
            series.push(labels(&[
                ("__name__", "up"),
                ("job", job),
                ("instance", "host:9100"),
            ]));
        }
        for mode in ["idle", "user"] {
            series.push(labels(&[
                ("__name__", "node_cpu_seconds_total"),
                ("mode", mode),
                ("instance", "host:9100"),
            ]));
        }
        series.push(labels(&[("__name__", "build_info"), ("version", "1.2.3")]));
        series.push(labels(&[("__name__", "process_start_time_seconds")]));
        for (number, labels) in series.iter().enumerate() {
            for step in 0..=240i64 {
                let value = match number % 4 {
                    0 => (step * (number as i64 + 1)) as f64,
                    1 => (step as f64 / 7.0).sin(),
                    2 if step == 100 => f64::NAN,
                    2 => 1e300 * step as f64,
                    _ => (step % 30) as f64,
                };
                let value = if number == 3 && step == 200 {
                    f64::from_bits(promql::STALE_NAN_BITS)
                } else {
                    value
                };
                head.append(labels, START + step * 15_000, value)
                    .expect("append in order");
            }
        }
        head
    })
}

fn engine() -> Engine {
    Engine::new(EngineOptions {
        timeout: Duration::from_millis(500),
        max_samples: 200_000,
        ..EngineOptions::default()
    })
}

fn durations() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(vec!["1m", "5m", "30s", "1h", "2h30m", "90s"]).prop_map(str::to_string),
        1 => proptest::sample::select(vec!["0s", "1ms", "1y", "292y", "99999999999d", "1h1h"]).prop_map(str::to_string),
    ]
}

fn selector() -> impl Strategy<Value = String> {
    let matcher = (
        "(job|instance|status_code|le|mode|__name__|é)",
        "(=|!=|=~|!~)",
        prop_oneof![
            proptest::sample::select(vec![
                "api",
                "5..",
                ".*",
                "",
                "host:.*",
                "(a|b",
                "a{1000}{1000}",
                "\\\\"
            ])
            .prop_map(str::to_string),
            "[a-z0-9.*+?]{0,6}",
        ],
    )
        .prop_map(|(name, op, value)| format!("{name}{op}{value:?}"));
    (
        proptest::option::of(proptest::sample::select(METRICS)),
        proptest::collection::vec(matcher, 0..3),
        proptest::option::of(durations()),
        proptest::option::of(prop_oneof![
            Just("@ start()".to_string()),
            Just("@ end()".to_string()),
            (0i64..4_000_000_000).prop_map(|at| format!("@ {at}")),
        ]),
    )
        .prop_map(|(metric, matchers, offset, at)| {
            let metric = metric.unwrap_or("");
            let mut text = if matchers.is_empty() {
                if metric.is_empty() {
                    "up".to_string()
                } else {
                    metric.to_string()
                }
            } else {
                format!("{metric}{{{}}}", matchers.join(","))
            };
            if let Some(offset) = offset {
                text.push_str(&format!(" offset {offset}"));
            }
            if let Some(at) = at {
                text.push_str(&format!(" {at}"));
            }
            text
        })
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (-100i64..100).prop_map(|number| number.to_string()),
        1 => proptest::sample::select(vec!["0.5", "1e308", "-Inf", "NaN", "0x1F", "1e-320", "0.99"]).prop_map(str::to_string),
    ]
}

const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "present_over_time",
    "absent_over_time",
];
const INSTANT_FUNCTIONS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "exp",
    "ln",
    "log2",
    "log10",
    "sqrt",
    "sgn",
    "round",
    "sort",
    "sort_desc",
    "timestamp",
    "absent",
    "day_of_week",
    "hour",
    "deg",
    "rad",
    "acos",
    "sinh",
];
const AGGREGATIONS: &[&str] = &[
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group",
];
const OPERATORS: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "== bool", "> bool", "and",
    "or", "unless", "atan2",
];

/// An expression of instant-vector or scalar type, nested up to `depth`.
pub fn expression(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![3 => selector(), 1 => number(), 1 => Just("time()".to_string())];
    leaf.prop_recursive(depth, 32, 3, |inner| {
        let range = prop_oneof![
            (selector(), durations()).prop_map(|(selector, range)| format!("{selector}[{range}]")),
            (inner.clone(), durations(), proptest::option::of(durations()))
                .prop_map(|(expr, range, step)| format!("({expr})[{range}:{}]", step.unwrap_or_default())),
        ];
        let grouping = proptest::option::of((
            "(by|without)",
            proptest::collection::vec("(job|instance|le|__name__|mode)", 0..3),
        ))
        .prop_map(|grouping| match grouping {
            Some((kind, labels)) => format!(" {kind} ({}) ", labels.join(", ")),
            None => String::new(),
        });
        prop_oneof![
            (proptest::sample::select(RANGE_FUNCTIONS), range.clone())
                .prop_map(|(function, range)| format!("{function}({range})")),
            (number(), range.clone()).prop_map(|(q, range)| format!("quantile_over_time({q}, {range})")),
            (range.clone(), number()).prop_map(|(range, t)| format!("predict_linear({range}, {t})")),
            (proptest::sample::select(INSTANT_FUNCTIONS), inner.clone())
                .prop_map(|(function, expr)| format!("{function}({expr})")),
            (inner.clone(), number(), number())
                .prop_map(|(expr, low, high)| format!("clamp({expr}, {low}, {high})")),
            (number(), inner.clone())
                .prop_map(|(q, expr)| format!("histogram_quantile({q}, sum by (le) ({expr}))")),
            (inner.clone(), "[a-z$1]{0,3}", "[.*():a-z]{0,6}").prop_map(|(expr, replacement, regex)| {
                format!("label_replace({expr}, \"dst\", \"{replacement}\", \"instance\", \"{regex}\")")
            }),
            inner.clone().prop_map(|expr| format!("vector(scalar({expr}))")),
            (proptest::sample::select(AGGREGATIONS), grouping.clone(), inner.clone())
                .prop_map(|(op, grouping, expr)| format!("{op}{grouping}({expr})")),
            ("(topk|bottomk|quantile)", number(), inner.clone(), grouping.clone())
                .prop_map(|(op, k, expr, grouping)| format!("{op}({k}, {expr}){grouping}")),
            inner.clone().prop_map(|expr| format!("count_values(\"value\", {expr})")),
            (inner.clone(), proptest::sample::select(OPERATORS), proptest::option::of("(on|ignoring)\\((job|instance)?\\)( group_left| group_right)?"), inner.clone())
                .prop_map(|(left, op, matching, right)| format!("{left} {op} {} {right}", matching.unwrap_or_default())),
            inner.clone().prop_map(|expr| format!("-({expr})")),
            inner.clone().prop_map(|expr| format!("({expr})")),
        ]
    })
    .boxed()
}

fn grammar() -> Arc<Grammar> {
    Arc::new(
        Grammar::new(
            &[
                r#"sum(rate(http_requests_total{job="api",status_code=~"5.."}[5m])) by (job) / sum(rate(http_requests_total[5m])) by (job)"#,
                "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
                r#"100 - (avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])) * 100)"#,
                "topk(5, sum by (job) (increase(http_requests_total[1h])))",
                "up == 0",
                "rate(http_requests_total[$__rate_interval])",
                "sum(rate(http_requests_total[5m] offset 1h))",
                "max_over_time(up[1h:5m])",
                r#"label_replace(up, "host", "$1", "instance", "(.*):.*")"#,
                r#"absent(up{job="missing"})"#,
                "predict_linear(node_cpu_seconds_total[1h], 4*3600) < 0",
                r#"count_values("version", build_info)"#,
                "quantile_over_time(0.9, http_request_duration_seconds_bucket[10m])",
                "sum without (instance) (rate(http_requests_total[5m] @ end()))",
                "http_requests_total unless on(job) up == 0",
                "clamp(rate(http_requests_total[5m]), 0, 1e3)",
                r#"{__name__=~"http_.*", job!=""}"#,
                "sort_desc(sum by (job) (up))",
                "time() - process_start_time_seconds",
                "up * on(job) group_left(version) build_info",
                "sum(rate(http_requests_total[5m])) by (job) > bool 0.5",
            ],
            &[
                "(", ")", "{", "}", "[", "]", ",", "=", "=~", "!~", "\"", "+", "-", "*", "/", "^",
                " by ", " without ", " on", " offset ", " @ ", "5m", ":", "sum", "rate", "1e309",
                "#", "\n", " and ", " or ", "bool",
            ],
            &[("(", ")"), ("sum(", ")"), ("abs(", ")"), ("-(", ")"), ("(", ")[5m:1m]")],
        )
        .max_repeat(NESTING as usize),
    )
}

/// Parses and evaluates `text` as an instant query and as a range query, checking that
/// results are where they should be.
fn evaluate(text: &str) -> Result<(), String> {
    let Ok(expr) = promql::parse(text) else {
        return Ok(());
    };
    let engine = engine();
    let head = head();
    let time = END - 7_000;
    if let Ok((value, _)) = engine.instant(head, &expr, time) {
        match value {
            QueryValue::Vector(samples) => {
                if let Some(sample) = samples.iter().find(|sample| sample.timestamp != time) {
                    return Err(format!(
                        "an instant sample at {} instead of {time}",
                        sample.timestamp
                    ));
                }
            }
            QueryValue::Scalar { timestamp, .. } | QueryValue::String { timestamp, .. }
                if timestamp != time =>
            {
                return Err(format!("an instant value at {timestamp} instead of {time}"));
            }
            _ => {}
        }
    }
    let (start, end, step) = (START + 30_000, END, 60_000);
    if let Ok((series, _)) = engine.range(head, &expr, start, end, step) {
        for series in &series {
            if let Some((at, _)) = series
                .points
                .iter()
                .find(|(at, _)| *at < start || *at > end || (at - start) % step != 0)
            {
                return Err(format!(
                    "a range point at {at}, off the steps of {start}..{end}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn promql_expressions_parse_and_evaluate_or_fail_cleanly() {
    let strategy = || {
        prop_oneof![
            2 => expression(NESTING),
            3 => mutated(grammar(), expression(3), 6),
            1 => proptest::sample::select(HOSTILE).prop_map(str::to_string),
        ]
    };
    harness::check(strategy, |text| {
        run_case("promql", format!("{text:?}"), move || evaluate(&text))
    });
}

/// `1+1+…+1`: promql-parser builds a left-deep tree; evaluating (and dropping) it recurses
/// once per term.
#[test]
fn promql_long_binary_chain_is_refused_or_evaluated() {
    let text = vec!["1"; DEEP_NESTING].join("+");
    let outcome = run_case(
        "promql chain",
        "`1+1+…+1`, 3000 terms".to_string(),
        move || evaluate(&text),
    );
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// `abs(abs(…(up)…))` 3000 deep.
#[test]
fn promql_deep_calls_are_refused_or_evaluated() {
    let text = format!(
        "{}up{}",
        "abs(".repeat(DEEP_NESTING),
        ")".repeat(DEEP_NESTING)
    );
    let outcome = run_case(
        "promql calls",
        "3000 × `abs(` around `up`".to_string(),
        move || evaluate(&text),
    );
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// `((((…1…))))` 3000 deep.
#[test]
fn promql_deep_parentheses_are_refused_or_evaluated() {
    let text = format!("{}1{}", "(".repeat(DEEP_NESTING), ")".repeat(DEEP_NESTING));
    let outcome = run_case(
        "promql parens",
        "3000 × `(` around `1`".to_string(),
        move || evaluate(&text),
    );
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// `rate((x)[1m:1ms])` as a range query: 60 000 subquery steps per output step.
#[test]
fn fine_subqueries_stop_at_the_timeout() {
    let outcome = run_case(
        "promql subquery",
        "count_values(\"value\", rate((http_requests_total)[1m:1ms]))".to_string(),
        || evaluate("count_values(\"value\", rate((http_requests_total)[1m:1ms]))"),
    );
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// The minimal input the fuzzer found: it fails to parse (the regex compiles too big)
/// after ~1.5 s of a debug build, and `evaluate` parses it once more.
#[test]
fn a_parse_error_after_a_costly_regex_is_found_quickly() {
    let text = r#"label_replace(up, "dst", "11", "instance", "") == bool  http_requests_total{status_code=~"a{1000}{1000}"} offset 2h30m @ end() +  missing_metric{job!~"+?73?w",job!~"0.9.1f"} offset 1y @ 451506132"#;
    let outcome = run_case("promql parse error", text.to_string(), move || {
        evaluate(text)
    });
    assert!(outcome.is_ok(), "{outcome:?}");
}
