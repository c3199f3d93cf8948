//! Service level objectives (`"slo"` in a rule file): an objective (99.9 %) over a period
//! (30 days) of good events among all events, counted from logs (`good` and `total`
//! Lucene queries on the rule's `index`, per `group_by` group) or from PromQL (`good` and
//! `total` expressions with `{{ $window }}` for the range).
//!
//! An SLO rule is an ordinary metric rule: [`derive`] turns it into the PromQL expression
//! of the multi-window, multi-burn-rate alerts of the Google SRE workbook (chapter 5,
//! "Alerting on SLOs"): page when the burn rate is above 14.4 over 1 h and over 5 m, or
//! above 6 over 6 h and over 30 m; open a ticket when it is above 1 over 3 d and over
//! 6 h — windows and factors configurable. The expression reads the `slo_burn_rate`
//! series that [`series`] computes, so the scheduler, lifecycle, routes,
//! history, backtests and rule unit tests run SLO alerts as they run any rule. A page's
//! alerts carry `severity="critical"` and `slo_alert="page"`, a ticket's
//! `severity="warning"` and `slo_alert="ticket"`.
//!
//! Burn rate over a window = error ratio over the window ÷ (1 − objective): 1 spends the
//! budget in exactly the period. This module checks the `slo` object and derives the
//! rule's expression, summary and context; it counts nothing.

use std::time::Duration;

pub use config::{BurnCondition, SloConfig};

use super::model::RuleFile;

pub mod config;
pub mod series;

/// Minutes a log SLO's counts may span (period plus the longest window, or a backtest's
/// reach): 120 days of one-minute buckets.
pub const MAX_MINUTES: i64 = 120 * 1440;
/// Burn-rate conditions per alert at most.
const MAX_CONDITIONS: usize = 8;

/// What an SLO counts.
#[derive(Debug, Clone, PartialEq)]
pub enum SloSource {
    /// Lucene queries counted in an index, per `group_by` group.
    Logs {
        index: String,
        good: String,
        total: String,
        group_by: Vec<String>,
    },
    /// PromQL expressions, `{{ $window }}` standing for the range.
    Promql { good: String, total: String },
}

/// An SLO as its series see it (see [`series`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SloSpec {
    /// The rule's name: the `slo` label.
    pub name: String,
    /// A fraction: 0.999.
    pub objective: f64,
    pub period: Duration,
    /// Every window of every condition, ascending, without repeats.
    pub windows: Vec<Duration>,
    pub source: SloSource,
    /// Buckets younger than this are counted again at each evaluation (late logs).
    pub max_delay: Duration,
}

/// A condition checked: windows as durations.
struct Checked {
    long: Duration,
    short: Duration,
    burn_rate: f64,
}

/// The parts of a rule an SLO gives: its expression and default templates.
#[derive(Debug)]
pub struct Derived {
    pub spec: SloSpec,
    /// The alerting expression over `slo_burn_rate` (see the module doc).
    pub promql: String,
    /// The summary template when the rule has none.
    pub summary: String,
    /// The context expressions when the rule has none: the burn rates and budget left.
    pub context: Vec<String>,
}

/// Rule fields an SLO rule cannot have, and why.
const NOT_WITH_SLO: &str = "an SLO rule's alerts come from its `slo` (burn-rate conditions with their own windows and severities); remove this field";

/// Checks `file.slo` and derives the rule from it: every problem as (field, reason).
pub fn derive(
    file: &RuleFile,
    name: &str,
    max_delay: Duration,
) -> Result<Derived, Vec<(String, String)>> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let Some(slo) = &file.slo else {
        return Err(vec![("slo".into(), "missing".into())]);
    };
    for (field, set) in [
        ("query", file.query.is_some()),
        ("promql", file.promql.is_some()),
        ("threshold", file.threshold.is_some()),
        ("record", file.record.is_some()),
        ("severity", file.severity.is_some()),
        ("datasource", file.datasource.is_some()),
        ("window", file.window.is_some()),
        ("group_ttl", file.group_ttl.is_some()),
        ("expect_matches", file.expect_matches.is_some()),
    ] {
        if set {
            problems.push((field.into(), NOT_WITH_SLO.into()));
        }
    }
    if !(slo.objective > 0.0 && slo.objective < 100.0) {
        problems.push((
            "slo.objective".into(),
            format!(
                "{} is not a percentage strictly between 0 and 100; write e.g. 99.9 for 99.9 %",
                slo.objective
            ),
        ));
    }
    fn minutes(problems: &mut Vec<(String, String)>, field: &str, text: &str) -> Option<Duration> {
        match humantime::parse_duration(text) {
            Ok(duration) if duration.as_secs() >= 60 && duration.as_secs().is_multiple_of(60) => {
                if duration.as_secs() as i64 / 60 > MAX_MINUTES / 2 {
                    problems.push((
                        field.into(),
                        format!("`{text}` is longer than {} days; SLO windows and periods are counted in memory, minute by minute", MAX_MINUTES / 2 / 1440),
                    ));
                    None
                } else {
                    Some(duration)
                }
            }
            Ok(_) => {
                problems.push((
                    field.into(),
                    format!("`{text}` is not a whole number of minutes (at least 1m); SLOs are counted in one-minute buckets"),
                ));
                None
            }
            Err(error) => {
                problems.push((
                    field.into(),
                    format!("`{text}` is not a duration like \"30d\" ({error})"),
                ));
                None
            }
        }
    }
    let period = minutes(&mut problems, "slo.period", &slo.period);
    let mut conditions = Vec::new();
    for (kind, list) in [("page", &slo.page), ("ticket", &slo.ticket)] {
        if list.len() > MAX_CONDITIONS {
            problems.push((
                format!("slo.{kind}"),
                format!("{} conditions; at most {MAX_CONDITIONS}", list.len()),
            ));
            continue;
        }
        let mut checked = Vec::new();
        for (number, condition) in list.iter().enumerate() {
            let field = format!("slo.{kind}[{number}]");
            let long = minutes(
                &mut problems,
                &format!("{field}.long_window"),
                &condition.long_window,
            );
            let short = minutes(
                &mut problems,
                &format!("{field}.short_window"),
                &condition.short_window,
            );
            if !(condition.burn_rate.is_finite() && condition.burn_rate > 0.0) {
                problems.push((
                    format!("{field}.burn_rate"),
                    format!(
                        "{} must be a number above 0, e.g. 14.4",
                        condition.burn_rate
                    ),
                ));
            }
            if let (Some(long), Some(short)) = (long, short) {
                if short >= long {
                    problems.push((
                        format!("{field}.short_window"),
                        format!(
                            "`{}` must be shorter than long_window `{}` (the workbook's short window is 1/12 of the long one)",
                            condition.short_window, condition.long_window
                        ),
                    ));
                }
                checked.push(Checked {
                    long,
                    short,
                    burn_rate: condition.burn_rate,
                });
            }
        }
        conditions.push((kind, checked));
    }
    let source = match &file.index {
        Some(index) => {
            for (field, text) in [("slo.good", &slo.good), ("slo.total", &slo.total)] {
                let context = crate::index::query::dsl::ParseContext {
                    now_micros: chrono::Utc::now().timestamp_micros(),
                    timestamp_field: "@timestamp".into(),
                };
                let query = serde_json::json!({"query_string": {"query": text}});
                if let Err(error) = crate::index::query::dsl::parse_query(&query, &context) {
                    problems.push((field.into(), format!("Lucene query: {}", error.reason)));
                }
            }
            SloSource::Logs {
                index: index.clone(),
                good: slo.good.clone(),
                total: slo.total.clone(),
                group_by: file.group_by.clone(),
            }
        }
        None => {
            if !file.group_by.is_empty() {
                problems.push((
                    "group_by".into(),
                    "belongs to log SLOs (with `index`); a PromQL SLO's groups are the labels its `good` and `total` expressions keep".into(),
                ));
            }
            for (field, text) in [("slo.good", &slo.good), ("slo.total", &slo.total)] {
                if let Err(error) = crate::promql::parse(&with_window(text, "5m")) {
                    problems.push((
                        field.into(),
                        format!("{error} (without `index`, `good` and `total` are PromQL expressions with `{{{{ $window }}}}` as their range; for Lucene queries on logs, set `index`)"),
                    ));
                }
            }
            SloSource::Promql {
                good: slo.good.clone(),
                total: slo.total.clone(),
            }
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let period = period.expect("no problems: the period parsed");
    let mut windows: Vec<Duration> = conditions
        .iter()
        .flat_map(|(_, list)| {
            list.iter()
                .flat_map(|checked| [checked.long, checked.short])
        })
        .collect();
    windows.sort();
    windows.dedup();
    let alerts: Vec<String> = conditions
        .iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(kind, list)| {
            let severity = if *kind == "page" { "critical" } else { "warning" };
            let any: Vec<String> = list
                .iter()
                .map(|checked| {
                    format!(
                        "({} and {})",
                        above(name, checked.long, checked.burn_rate),
                        above(name, checked.short, checked.burn_rate)
                    )
                })
                .collect();
            format!(
                "label_replace(label_replace({}, \"slo_alert\", \"{kind}\", \"\", \"\"), \"severity\", \"{severity}\", \"\", \"\")",
                any.join(" or ")
            )
        })
        .collect();
    // no condition at all: an expression that is always empty (the series still publish)
    let promql = if alerts.is_empty() {
        format!("slo_burn_rate{{slo=\"{name}\"}} < 0")
    } else {
        alerts.join(" or ")
    };
    let group_labels: Vec<String> = match &source {
        SloSource::Logs { group_by, .. } => group_by
            .iter()
            .map(|field| crate::rules::log_matches::label_name(field))
            .collect(),
        SloSource::Promql { .. } => Vec::new(),
    };
    let selector = |metric: &str| {
        let mut matchers = vec![format!("slo=\"{name}\"")];
        matchers.extend(
            group_labels
                .iter()
                .map(|label| format!("{label}=\"{{{{ $labels.{label} }}}}\"")),
        );
        format!("{metric}{{{}}}", matchers.join(", "))
    };
    let objective_text = format_number(slo.objective);
    Ok(Derived {
        spec: SloSpec {
            name: name.to_string(),
            objective: slo.objective / 100.0,
            period,
            windows,
            source,
            max_delay,
        },
        promql,
        summary: format!(
            "SLO {name} ({objective_text}% over {}): {{{{ $labels.slo_alert }}}}, the error budget burns {{{{ $value | printf \"%.1f\" }}}}× too fast",
            slo.period
        ),
        context: vec![
            selector("slo_burn_rate"),
            selector("slo_error_budget_remaining"),
        ],
    })
}

/// The SLO of an SLO rule, as its series see it (`None` for other rules).
pub fn spec_of(rule: &crate::rules::rule::LoadedRule) -> Option<SloSpec> {
    rule.file.slo.as_ref()?;
    derive(&rule.file, &rule.name, rule.max_delay)
        .ok()
        .map(|derived| derived.spec)
}

/// `slo_burn_rate` over `window` above `factor`, without its `window` label (so that
/// the conditions of both windows meet in `and`).
fn above(name: &str, window: Duration, factor: f64) -> String {
    format!(
        "max without (window) (slo_burn_rate{{slo=\"{name}\", window=\"{}\"}} > {})",
        window_label(window),
        format_number(factor)
    )
}

/// A window as its `window` label writes it: "5m", "1h", "3d", "90m".
pub fn window_label(window: Duration) -> String {
    let minutes = window.as_secs() / 60;
    if minutes.is_multiple_of(1440) {
        format!("{}d", minutes / 1440)
    } else if minutes.is_multiple_of(60) {
        format!("{}h", minutes / 60)
    } else {
        format!("{minutes}m")
    }
}

fn format_number(number: f64) -> String {
    format!("{number}")
}

/// A PromQL SLO expression with its range: `{{ $window }}` replaced by `window`.
pub fn with_window(expression: &str, window: &str) -> String {
    expression
        .replace("{{ $window }}", window)
        .replace("{{$window}}", window)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> RuleFile {
        serde_json::from_str(text).expect("a rule file")
    }

    #[test]
    fn the_workbook_alerts_are_derived_by_default() {
        let rule = file(
            r#"{"version": 1, "index": "logs", "group_by": ["service"],
                "slo": {"objective": 99.9, "good": "NOT status:>=500", "total": "*"}}"#,
        );
        let derived = derive(&rule, "checkout", Duration::from_secs(30)).expect("valid");
        assert!((derived.spec.objective - 0.999).abs() < 1e-12);
        assert_eq!(derived.spec.period, Duration::from_secs(30 * 86_400));
        let labels: Vec<String> = derived
            .spec
            .windows
            .iter()
            .map(|w| window_label(*w))
            .collect();
        assert_eq!(labels, ["5m", "30m", "1h", "6h", "3d"]);
        assert!(
            derived
                .promql
                .contains(r#"slo_burn_rate{slo="checkout", window="1h"} > 14.4"#)
        );
        assert!(derived.promql.contains(r#"window="3d"} > 1)"#));
        assert!(derived.promql.contains(r#""severity", "critical""#));
        crate::promql::parse(&derived.promql).expect("the derived expression parses");
        assert_eq!(
            derived.context[0],
            r#"slo_burn_rate{slo="checkout", service="{{ $labels.service }}"}"#
        );
    }

    #[test]
    fn every_mistake_names_its_field() {
        let rule = file(
            r#"{"version": 1, "index": "logs", "threshold": {"op": ">", "value": 1},
                "slo": {"objective": 100, "period": "30s", "good": "status:(", "total": "*",
                        "page": [{"long_window": "5m", "short_window": "1h", "burn_rate": 0}]}}"#,
        );
        let problems = derive(&rule, "x", Duration::ZERO).expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "threshold",
                "slo.objective",
                "slo.period",
                "slo.page[0].burn_rate",
                "slo.page[0].short_window",
                "slo.good"
            ]
        );
    }

    #[test]
    fn a_promql_slo_needs_window_templated_expressions() {
        let rule = file(
            r#"{"version": 1, "slo": {"objective": 99,
                "good": "sum(rate(http_requests_total{code!~\"5..\"}[{{ $window }}]))",
                "total": "sum(rate(http_requests_total[{{ $window }}]))"}}"#,
        );
        let derived = derive(&rule, "api", Duration::ZERO).expect("valid");
        assert!(matches!(derived.spec.source, SloSource::Promql { .. }));
        let broken =
            file(r#"{"version": 1, "slo": {"objective": 99, "good": "status:200", "total": "*"}}"#);
        let problems = derive(&broken, "api", Duration::ZERO).expect_err("Lucene without index");
        assert!(problems[0].1.contains("set `index`"), "{problems:?}");
    }
}
