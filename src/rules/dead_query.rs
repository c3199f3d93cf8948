//! Rules that cannot match, before and after they load.
//!
//! Before: [`warnings`] names what a rule refers to that the data does not have — a field
//! no document of its indices has, an index that does not exist or is empty, a
//! `log_matches` selector naming no saved query, a PromQL selector matching no series of
//! the last day. They are warnings, not errors: a field or a series may appear later.
//! `lookout check`, offline, can only check saved-query names across the files it reads
//! ([`saved_queries_named`], [`unknown_saved_query`]).
//!
//! After: what counts as a match at a tick ([`matched`]), and the `expect_matches` alarm
//! of a rule whose query has matched nothing for too long ([`quiet_too_long`]), whose
//! messages say so in words of their own ([`rewrite_message`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::check::{key_position, suggestion};
use super::observe::{Observation, Sources};
use super::rule::{LoadedRule, RuleSource};
use crate::index::query::{FieldRef, Query};
use crate::notify::message::{AlertMessage, MessageKind};
use crate::tsdb::head::Matcher;

/// The label of the `expect_matches` alert (beside `alertname` and `severity`), so
/// routes and silences can tell it from the rule's own alerts.
pub const NO_MATCHES_LABEL: (&str, &str) = ("lookout_alert", "no_matches");

/// How far back a PromQL selector's series are looked for.
const SERIES_LOOKBACK_MS: i64 = 86_400_000;
/// Where they are looked for first.
const RECENT_MS: i64 = 300_000;

/// The labels of a rule's `expect_matches` alert.
pub fn no_matches_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(
        NO_MATCHES_LABEL.0.to_string(),
        NO_MATCHES_LABEL.1.to_string(),
    )])
}

/// The saved queries the `log_matches{query="NAME"}` selectors of `expr` name.
pub fn saved_queries_named(expr: &crate::promql::Expr) -> Vec<String> {
    crate::promql::selector_matcher_groups(expr)
        .iter()
        .filter(|matchers| is_log_matches(matchers))
        .filter_map(|matchers| {
            matchers.iter().find_map(|matcher| match matcher {
                Matcher::Equal(name, value) if name == "query" => Some(value.clone()),
                _ => None,
            })
        })
        .collect()
}

fn is_log_matches(matchers: &[Matcher]) -> bool {
    matchers.iter().any(
        |matcher| matches!(matcher, Matcher::Equal(name, value) if name == "__name__" && value == "log_matches"),
    )
}

/// The warning for a `log_matches` selector naming `name`, a saved query nobody has.
pub fn unknown_saved_query<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let hint = suggestion(name, known)
        .map(|near| format!(" (did you mean `{near}`?)"))
        .unwrap_or_default();
    format!(
        "`log_matches{{query=\"{name}\"}}` names no saved query{hint}: it has no series, so this part of the expression is always empty"
    )
}

/// `message` prefixed with where `field` is in `text`, as `lookout check` prints errors.
pub fn at_field(text: &str, origin: &str, field: &str, message: &str) -> String {
    match key_position(text, field) {
        Some((line, column)) => format!("{origin}:{line}:{column}: `{field}`: {message}"),
        None => format!("{origin}: `{field}`: {message}"),
    }
}

/// What `rule` (whose file text is `text`) names that the data does not have, each with
/// its field and position. Reads the index's field registry and the TSDB; no search.
pub fn warnings(rule: &LoadedRule, text: &str, origin: &str, sources: &Sources) -> Vec<String> {
    let mut found: Vec<(&str, String)> = Vec::new();
    match &rule.source {
        RuleSource::Logs { index, query } => match sources.store.resolve(index, false) {
            Err(missing) => {
                let names = sources.store.names();
                let hint = suggestion(&missing, names.iter().map(String::as_str))
                    .map(|near| format!(" (did you mean `{near}`?)"))
                    .unwrap_or_default();
                found.push((
                    "index",
                    format!("index `{missing}` does not exist{hint}: the rule counts nothing until documents arrive there"),
                ));
            }
            Ok(indices) if indices.is_empty() => found.push((
                "index",
                format!("`{index}` matches no index: the rule counts nothing"),
            )),
            Ok(indices) => {
                if indices.iter().all(|index| index.doc_count() == 0) {
                    found.push((
                        "index",
                        format!("`{index}` has no documents yet: the rule counts nothing until some arrive"),
                    ));
                }
                let known: BTreeSet<String> = indices
                    .iter()
                    .flat_map(|index| index.fields())
                    .map(|(name, _)| name)
                    .collect();
                // the fields of the query, then those of its measure (`aggregate`, `ratio`)
                let named = query_fields(query)
                    .into_iter()
                    .map(|field| ("query", field))
                    .chain(measure_fields(rule));
                for (key, field) in named {
                    let prefix = format!("{field}.");
                    if known
                        .iter()
                        .any(|name| *name == field || name.starts_with(&prefix))
                    {
                        continue;
                    }
                    let hint = suggestion(&field, known.iter().map(String::as_str))
                        .map(|near| format!(" (did you mean `{near}`?)"))
                        .unwrap_or_default();
                    found.push((
                        key,
                        format!("field `{field}` is in no document of `{index}`{hint}: what needs it matches nothing until a document has it"),
                    ));
                }
            }
        },
        // a remote datasource's series are not here to look at
        RuleSource::Metrics { .. } if rule.file.datasource.is_some() => {}
        RuleSource::Metrics { expr } => {
            let saved = sources.log_matches.query_names();
            for name in saved_queries_named(expr) {
                if !saved.contains(&name) {
                    found.push((
                        "promql",
                        unknown_saved_query(&name, saved.iter().map(String::as_str)),
                    ));
                }
            }
            let now = Utc::now().timestamp_millis();
            for (selector, groups) in selectors(expr) {
                // `log_matches` and SLO series are not in the metrics store
                let metric = groups.iter().all(|matchers| {
                    !is_log_matches(matchers)
                        && !crate::rules::slo::series::names_slo_series(matchers)
                });
                // the last five minutes answer for a live metric; only an absent one
                // costs the look over the whole day
                let absent = |since: i64| {
                    groups
                        .iter()
                        .all(|matchers| sources.tsdb.select(matchers, now - since, now).is_empty())
                };
                if metric && absent(RECENT_MS) && absent(SERIES_LOOKBACK_MS) {
                    found.push((
                        "promql",
                        format!("`{selector}` matches no series the metrics store had in the last 24 h: check the metric and label names (or the scrape target)"),
                    ));
                }
            }
        }
    }
    if let Some(spike) = &rule.spike {
        // the reference window must be inside what the index keeps
        let reach = spike.offset.saturating_add(rule.window);
        let retention_micros = sources.store.settings().retention_micros;
        if reach.as_micros() > u128::try_from(retention_micros).unwrap_or(0) {
            found.push((
                "spike",
                format!(
                    "`compare_to` and the window reach {} back, beyond the index retention ({}): the reference window is always empty, so nothing spikes; raise `index.retention`",
                    humantime::format_duration(reach),
                    humantime::format_duration(std::time::Duration::from_micros(
                        u64::try_from(retention_micros).unwrap_or(0)
                    ))
                ),
            ));
        }
    }
    found
        .into_iter()
        .map(|(field, message)| at_field(text, origin, field, &message))
        .collect()
}

/// The fields a log rule's measure names: its `aggregate` field, or those of its `ratio`
/// denominator.
fn measure_fields(rule: &LoadedRule) -> Vec<(&'static str, String)> {
    match &rule.measure {
        Some(super::measure::Measure::Aggregate { field, .. }) => {
            vec![("aggregate", field.clone())]
        }
        Some(super::measure::Measure::Ratio { denominator, .. }) => query_fields(denominator)
            .into_iter()
            .map(|field| ("ratio", field))
            .collect(),
        None => Vec::new(),
    }
}

/// Each series selector of `expr` as written, with its matcher groups.
fn selectors(expr: &crate::promql::Expr) -> Vec<(String, Vec<Vec<Matcher>>)> {
    use promql_parser::parser::Expr as Node;
    struct Selectors(Vec<String>);
    impl promql_parser::util::ExprVisitor for Selectors {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, node: &Node) -> Result<bool, Self::Error> {
            match node {
                Node::VectorSelector(selector) => self.0.push(selector.to_string()),
                Node::MatrixSelector(matrix) => self.0.push(matrix.vs.to_string()),
                _ => {}
            }
            Ok(true)
        }
    }
    let mut found = Selectors(Vec::new());
    let _ = promql_parser::util::walk_expr(&mut found, &expr.ast);
    found
        .0
        .into_iter()
        .filter_map(|text| {
            let parsed = crate::promql::parse(&text).ok()?;
            Some((text, crate::promql::selector_matcher_groups(&parsed)))
        })
        .collect()
}

/// The document fields a log query names (not `@timestamp`, `_id` or free text).
pub fn query_fields(query: &Value) -> BTreeSet<String> {
    let as_dsl = match query {
        Value::String(text) => serde_json::json!({"query_string": {"query": text}}),
        other => other.clone(),
    };
    let context = crate::index::query::dsl::ParseContext {
        now_micros: Utc::now().timestamp_micros(),
        timestamp_field: "@timestamp".into(),
    };
    let mut fields = BTreeSet::new();
    if let Ok(parsed) = crate::index::query::dsl::parse_query(&as_dsl, &context) {
        collect_fields(&parsed, &mut fields);
    }
    fields
}

fn collect_fields(query: &Query, fields: &mut BTreeSet<String>) {
    let field = match query {
        Query::Term { field, .. }
        | Query::Terms { field, .. }
        | Query::Match { field, .. }
        | Query::Phrase { field, .. }
        | Query::Range { field, .. }
        | Query::Exists { field }
        | Query::Prefix { field, .. }
        | Query::Wildcard { field, .. }
        | Query::Regexp { field, .. } => field,
        Query::Bool(bool_query) => {
            for clause in bool_query
                .must
                .iter()
                .chain(&bool_query.filter)
                .chain(&bool_query.should)
                .chain(&bool_query.must_not)
            {
                collect_fields(clause, fields);
            }
            return;
        }
        Query::MatchAll | Query::MatchNone | Query::Ids { .. } => return,
    };
    if let FieldRef::Path { path, .. } = field {
        fields.insert(path.clone());
    }
}

/// Whether what a rule saw at a tick is a match: a log rule counted a line, a metric
/// rule's expression gave a series.
pub fn matched(rule: &LoadedRule, observations: &[Observation]) -> bool {
    match rule.source {
        // an aggregate has a value only where lines matched (its value may be 0)
        RuleSource::Logs { .. }
            if matches!(
                rule.measure,
                Some(super::measure::Measure::Aggregate { .. })
            ) =>
        {
            !observations.is_empty()
        }
        RuleSource::Logs { .. } => observations.iter().any(|seen| seen.value > 0.0),
        RuleSource::Metrics { .. } => !observations.is_empty(),
    }
}

/// Whether a rule expected to match within `period` has gone quiet at `tick`: nothing
/// since its last match, or since `since` (when it loaded) when it never matched.
pub fn quiet_too_long(
    period: Duration,
    tick: DateTime<Utc>,
    last_match: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
) -> bool {
    let from = last_match.unwrap_or(since);
    (tick - from).to_std().is_ok_and(|quiet| quiet >= period)
}

/// Turns a message composed for the `expect_matches` alert into one that says what it is.
pub fn rewrite_message(
    message: &mut AlertMessage,
    period: Duration,
    last_match: Option<DateTime<Utc>>,
) {
    let last = last_match.map_or_else(
        || "never since it loaded".to_string(),
        |time| format!("last at {}", time.to_rfc3339()),
    );
    let period = humantime::format_duration(period);
    message.summary = match message.kind {
        MessageKind::Resolved => format!("`{}` matches again", message.rule),
        _ => format!(
            "`{}` has matched nothing for {period} ({last}): its query may be wrong, a field renamed, or its source stopped",
            message.rule
        ),
    };
    message.description = None;
    message.threshold = format!("expect_matches {period}");
    message.window = String::new();
    message.samples.clear();
    message.context.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_lucene_and_dsl_queries() {
        let fields = query_fields(&Value::from(
            "levle:ERROR AND (http.status:[500 TO 599] OR NOT _exists_:user) AND timeout",
        ));
        assert_eq!(
            fields.into_iter().collect::<Vec<_>>(),
            ["http.status", "levle", "user"]
        );
        let dsl =
            serde_json::json!({"bool": {"filter": [{"term": {"service.keyword": "checkout"}}]}});
        assert_eq!(
            query_fields(&dsl).into_iter().collect::<Vec<_>>(),
            ["service"]
        );
    }

    #[test]
    fn saved_query_names_of_log_matches_selectors() {
        let expr = crate::promql::parse(
            r#"log_matches{query="payments_erors"} / on() sum(rate(http_requests_total[1m]))"#,
        )
        .expect("parses");
        assert_eq!(saved_queries_named(&expr), ["payments_erors"]);
        assert!(
            unknown_saved_query("payments_erors", ["payments_errors", "checkout_5xx"])
                .contains("did you mean `payments_errors`?")
        );
    }

    #[test]
    fn quiet_counts_from_the_last_match_or_the_load() {
        let at = |seconds: i64| DateTime::from_timestamp(seconds, 0).expect("time");
        let hour = Duration::from_secs(3600);
        assert!(!quiet_too_long(hour, at(3599), None, at(0)));
        assert!(quiet_too_long(hour, at(3600), None, at(0)));
        assert!(!quiet_too_long(hour, at(5000), Some(at(2000)), at(0)));
        assert!(quiet_too_long(hour, at(5600), Some(at(2000)), at(0)));
    }
}
