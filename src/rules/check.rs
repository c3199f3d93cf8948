//! Checks the text of one rule file and reports every error it has at once, each as
//! `ORIGIN:LINE:COLUMN: message` (the position of the offending key, or of a JSON syntax
//! error) or `ORIGIN: message` when there is no place to point at. A misspelt key gets the
//! nearest known key as a suggestion. Used by `lookout check`, the rules API, the loader
//! and backtests alike, so they all accept and refuse the same files.
//!
//! It does not look at data: whether the fields, indices, saved queries and series a rule
//! names exist is [`super::dead_query`]'s business.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use serde_json::{Map, Value};

use super::alert_state::Timing;
use super::model::{RuleFile, valid_metric_name, valid_name};
use super::rule::{LoadedRule, RuleSource};
use super::template::{Template, TemplateData};
pub use crate::diagnostic::suggestion;
use crate::scheduler::schedule::{Schedule, ScheduleError};

/// Why a rule file does not load.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{}: cannot read: {error}", path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Every error of the rule, each starting with its origin (one a line when shown).
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

impl RuleError {
    /// Each error on its own (one for an unreadable file).
    pub fn into_lines(self) -> Vec<String> {
        match self {
            RuleError::Invalid(errors) => errors,
            unreadable => vec![unreadable.to_string()],
        }
    }
}

impl LoadedRule {
    /// Reads and checks one rule file.
    pub fn load(path: &Path) -> Result<LoadedRule, RuleError> {
        LoadedRule::read(path).map(|(rule, _)| rule)
    }

    /// Reads and checks one rule file (its stem is the rule name, its path starts every
    /// error); returns the rule with the text it was read from.
    pub fn read(path: &Path) -> Result<(LoadedRule, String), RuleError> {
        let text = std::fs::read_to_string(path).map_err(|error| RuleError::Unreadable {
            path: path.to_path_buf(),
            error,
        })?;
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or_default();
        let rule = LoadedRule::parse(&text, name, &path.display().to_string())?;
        Ok((rule, text))
    }

    /// Checks the text of rule `name`; `origin` starts every error (see [`check_rule`]).
    pub fn parse(text: &str, name: &str, origin: &str) -> Result<LoadedRule, RuleError> {
        check_rule(text, name, origin).map_err(RuleError::Invalid)
    }
}

/// The top-level keys a rule file may have, read from its schema (so they never drift).
static KEYS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let schema =
        serde_json::to_value(schemars::schema_for!(RuleFile)).expect("a schema serializes");
    schema["properties"]
        .as_object()
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
});

/// The errors found so far in one rule's text.
struct Problems<'a> {
    text: &'a str,
    origin: &'a str,
    errors: Vec<String>,
    /// Known keys suggested for misspelt ones: their absence is that typo, not one more
    /// error.
    suggested: Vec<&'static str>,
}

impl Problems<'_> {
    /// An error about top-level key `field` (`context[1]` and `spike.ratio` point at
    /// `context` and `spike`).
    fn field(&mut self, field: &str, message: impl std::fmt::Display) {
        let key = field.split(['[', '.']).next().unwrap_or(field);
        let error = match key_position(self.text, key) {
            Some((line, column)) => {
                format!("{}:{line}:{column}: `{field}`: {message}", self.origin)
            }
            None => format!("{}: `{field}`: {message}", self.origin),
        };
        self.errors.push(error);
    }

    fn whole(&mut self, message: impl std::fmt::Display) {
        self.errors.push(format!("{}: {message}", self.origin));
    }
}

/// Where top-level key `key` of the JSON object `text` is (1-based line and column of its
/// opening quote), if it is there.
pub fn key_position(text: &str, key: &str) -> Option<(usize, usize)> {
    let (mut line, mut column) = (1, 0);
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(char) = chars.next() {
        column += 1;
        match char {
            '\n' => {
                line += 1;
                column = 0;
            }
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            '"' => {
                let start = (line, column);
                let mut string = String::new();
                while let Some(inner) = chars.next() {
                    column += 1;
                    match inner {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                column += 1;
                                string.push(escaped);
                            }
                        }
                        '"' => break,
                        '\n' => {
                            line += 1;
                            column = 0;
                        }
                        other => string.push(other),
                    }
                }
                if depth == 1 && string == key {
                    let mut rest = chars.clone();
                    while rest.peek().is_some_and(|next| next.is_whitespace()) {
                        rest.next();
                    }
                    if rest.peek() == Some(&':') {
                        return Some(start);
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// serde_json's message without its " at line L column C" (the position is printed once,
/// in front).
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Checks the text of rule `name`; `origin` (a file name, or `request body`) starts every
/// error. Returns the rule ready to run, or every error found.
pub fn check_rule(text: &str, name: &str, origin: &str) -> Result<LoadedRule, Vec<String>> {
    let value: Value = serde_json::from_str(text).map_err(|error| {
        vec![format!(
            "{origin}:{}:{}: {}",
            error.line(),
            error.column(),
            without_position(&error)
        )]
    })?;
    let Value::Object(mut object) = value else {
        return Err(vec![format!(
            "{origin}: a rule is a JSON object, e.g. {{\"version\": 1, \"query\": \"status:500\", \"threshold\": {{\"op\": \">\", \"value\": 20}}}}"
        )]);
    };
    let mut problems = Problems {
        text,
        origin,
        errors: Vec::new(),
        suggested: Vec::new(),
    };
    if !valid_name(name) {
        problems
            .whole("the file name is the rule name and must be [A-Za-z0-9_-]+ (rename the file)");
    }
    let unknown: Vec<String> = object
        .keys()
        .filter(|key| !KEYS.contains(key))
        .cloned()
        .collect();
    for key in unknown {
        object.remove(&key);
        let hint = match suggestion(&key, KEYS.iter().map(String::as_str)) {
            Some(known) => {
                if let Some(key) = ["threshold", "query", "promql"]
                    .into_iter()
                    .find(|key| *key == known)
                {
                    problems.suggested.push(key);
                }
                format!("did you mean `{known}`?")
            }
            None => format!("known fields: {}", KEYS.join(", ")),
        };
        let error = match key_position(text, &key) {
            Some((line, column)) => {
                format!("{origin}:{line}:{column}: unknown field `{key}`, {hint}")
            }
            None => format!("{origin}: unknown field `{key}`, {hint}"),
        };
        problems.errors.push(error);
    }
    match object.get("version") {
        None => problems.whole("`version`: missing; add \"version\": 1"),
        Some(version) if version.as_u64() != Some(1) => {
            problems.field("version", format!("must be 1, not {version}"));
        }
        Some(_) => {}
    }
    object.insert("version".into(), 1.into());
    // each key on its own, so one wrong type does not hide the next
    let keys: Vec<String> = object.keys().cloned().collect();
    for key in keys {
        let mut single = Map::new();
        single.insert("version".into(), 1.into());
        single.insert(key.clone(), object[&key].clone());
        if let Err(error) = serde_json::from_value::<RuleFile>(Value::Object(single)) {
            problems.field(&key, without_position(&error));
            object.remove(&key);
        }
    }
    let file: RuleFile = match serde_json::from_value(Value::Object(object)) {
        Ok(file) => file,
        Err(error) => {
            problems.whole(without_position(&error));
            return Err(problems.errors);
        }
    };
    let rule = check_fields(file, name, &mut problems);
    match rule {
        Some(rule) if problems.errors.is_empty() => Ok(rule),
        _ => Err(problems.errors),
    }
}

/// The checks of a rule whose keys and types are right; `None` when one failed.
fn check_fields(file: RuleFile, name: &str, problems: &mut Problems) -> Option<LoadedRule> {
    let schedule = match Schedule::parse(&file.schedule, file.timezone.as_deref()) {
        Ok(schedule) => Some(schedule),
        Err(error) => {
            let field = match error {
                ScheduleError::Timezone(_) => "timezone",
                _ => "schedule",
            };
            problems.field(field, error);
            None
        }
    };
    if let Some(query) = &file.query {
        let as_dsl = match query {
            Value::String(text) => serde_json::json!({"query_string": {"query": text}}),
            other => other.clone(),
        };
        let context = crate::index::query::dsl::ParseContext {
            now_micros: chrono::Utc::now().timestamp_micros(),
            timestamp_field: "@timestamp".into(),
        };
        if let Err(error) = crate::index::query::dsl::parse_query(&as_dsl, &context) {
            problems.field("query", error.reason);
        }
    }
    let slo = match file.slo.as_ref().map(|_| {
        let max_delay = file.max_delay.as_deref();
        let max_delay = max_delay.and_then(|text| humantime::parse_duration(text).ok());
        super::slo::derive(&file, name, max_delay.unwrap_or(Duration::from_secs(30)))
    }) {
        Some(Ok(derived)) => Some(derived),
        Some(Err(found)) => {
            for (field, reason) in found {
                problems.field(&field, reason);
            }
            None
        }
        None => None,
    };
    let source = match (&file.query, &file.promql) {
        // an SLO rule is a metric rule on its derived expression (see `slo`)
        _ if file.slo.is_some() => slo.as_ref().and_then(|derived| {
            crate::promql::parse(&derived.promql)
                .map(|expr| RuleSource::Metrics { expr })
                .map_err(|error| problems.field("slo", error))
                .ok()
        }),
        (Some(_), Some(_)) => {
            problems.field(
                "promql",
                "a rule has either `query` (a log rule) or `promql` (a metric rule), not both",
            );
            None
        }
        (None, None) => {
            if !problems
                .suggested
                .iter()
                .any(|key| *key == "query" || *key == "promql")
            {
                problems.whole("`query`: a rule needs `query` (a log query to count) or `promql` (a PromQL expression)");
            }
            None
        }
        (Some(query), None) => {
            if file.threshold.is_none()
                && file.spike.is_none()
                && file.new_term.is_none()
                && file.new_pattern.is_none()
                && !problems.suggested.contains(&"threshold")
            {
                problems.whole(
                    "`threshold`: a log rule needs one, e.g. \"threshold\": {\"op\": \">\", \"value\": 20}",
                );
            }
            Some(RuleSource::Logs {
                index: file.index.clone().unwrap_or_else(|| "logs".into()),
                query: query.clone(),
            })
        }
        (None, Some(text)) => {
            for (field, set) in [
                ("index", file.index.is_some()),
                ("window", file.window.is_some()),
                ("group_by", !file.group_by.is_empty()),
                ("group_ttl", file.group_ttl.is_some()),
            ] {
                if set {
                    problems.field(field, "belongs to log rules; a metric rule's series and ranges are in its `promql` expression");
                }
            }
            if file.spike.is_some() {
                problems.field(
                    "spike",
                    "belongs to log rules; in PromQL compare with `offset`, e.g. `EXPR > 3 * (EXPR offset 1h)`",
                );
            }
            match crate::promql::parse(text) {
                Ok(expr) => Some(RuleSource::Metrics { expr }),
                Err(error) => {
                    problems.field("promql", error);
                    None
                }
            }
        }
    };
    check_recording(&file, problems);
    if file.datasource.is_some() && file.promql.is_none() && file.slo.is_none() {
        problems.field(
            "datasource",
            "belongs to metric rules: the datasource evaluates a `promql` expression",
        );
    }
    let mut duration_of = |field: &str, text: Option<&str>, default: Duration| {
        let Some(text) = text else {
            return default;
        };
        humantime::parse_duration(text).unwrap_or_else(|error| {
            problems.field(
                field,
                format!("`{text}` is not a duration like \"1m\" ({error})"),
            );
            default
        })
    };
    let window = duration_of("window", file.window.as_deref(), Duration::from_secs(60));
    let timing = Timing {
        for_duration: duration_of("for", file.for_duration.as_deref(), Duration::ZERO),
        keep_firing_for: duration_of(
            "keep_firing_for",
            file.keep_firing_for.as_deref(),
            Duration::ZERO,
        ),
        repeat_interval: file
            .repeat_interval
            .as_deref()
            .map(|text| duration_of("repeat_interval", Some(text), Duration::ZERO)),
    };
    let max_delay = duration_of(
        "max_delay",
        file.max_delay.as_deref(),
        Duration::from_secs(30),
    );
    let group_ttl = duration_of(
        "group_ttl",
        file.group_ttl.as_deref(),
        window.saturating_mul(10).max(Duration::from_secs(3600)),
    );
    let expect_matches = file
        .expect_matches
        .as_deref()
        .map(|text| duration_of("expect_matches", Some(text), Duration::ZERO));
    if expect_matches.is_some_and(|period| period.is_zero()) {
        problems.field("expect_matches", "must be longer than 0s, e.g. \"1h\"");
    }
    let spike = check_spike(&file, window, problems);
    // log rules know their labels (the group_by fields); a metric rule's come from its
    // expression
    let new_term = super::new_term::check(&file).unwrap_or_else(|errors| {
        for (field, error) in errors {
            problems.field(field, error);
        }
        None
    });
    // a new-term rule's alerts are labelled with its fields' label names, a new-pattern
    // rule's with the pattern
    let new_term_labels = new_term.as_ref().map(|settings| settings.labels.clone());
    let pattern_labels = [super::new_pattern::PATTERN_LABEL.to_string()];
    let labels = match &new_term_labels {
        Some(labels) => Some(labels.as_slice()),
        None if file.new_pattern.is_some() => Some(pattern_labels.as_slice()),
        None => (file.promql.is_none() && file.slo.is_none()).then_some(file.group_by.as_slice()),
    };
    let template = |problems: &mut Problems, field: &str, text: &str| {
        let parsed = Template::parse(text, labels)
            .map_err(|error| problems.field(field, error))
            .ok()?;
        if file.spike.is_none()
            && let Some(variable) = super::spike::VARIABLES
                .into_iter()
                .find(|variable| parsed.mentions(variable))
        {
            problems.field(
                field,
                format!("`${variable}` is only known to spike rules (`spike`)"),
            );
            return None;
        }
        Some(parsed)
    };
    let summary = file
        .summary
        .as_deref()
        .or(slo.as_ref().map(|derived| derived.summary.as_str()))
        .and_then(|text| template(problems, "summary", text));
    let description = file
        .description
        .as_deref()
        .and_then(|text| template(problems, "description", text));
    let mut context = Vec::new();
    let context_texts = match &slo {
        Some(derived) if file.context.is_empty() => &derived.context,
        _ => &file.context,
    };
    for (number, text) in context_texts.iter().enumerate() {
        let field = format!("context[{number}]");
        let Some(parsed) = template(problems, &field, text) else {
            continue;
        };
        // the expression must parse once labels are in: try it with placeholders
        let example = parsed.render(&TemplateData {
            labels: labels
                .unwrap_or_default()
                .iter()
                .map(|field| (field.clone(), "x".to_string()))
                .collect(),
            ..TemplateData::default()
        });
        match crate::promql::parse(&example) {
            Ok(_) => context.push(parsed),
            Err(error) => problems.field(&field, error),
        }
    }
    let measure = super::measure::check(
        file.aggregate.as_ref(),
        file.ratio.as_ref(),
        file.promql.is_some(),
    )
    .unwrap_or_else(|found| {
        for (field, message) in found {
            problems.field(field, message);
        }
        None
    });
    let new_pattern = check_new_pattern(&file, problems);
    check_kinds(&file, problems);
    if !problems.errors.is_empty() {
        return None;
    }
    Some(LoadedRule {
        name: name.to_string(),
        // a new term's alert holds while the value has matches in the window and is new
        threshold: match (&new_term, &new_pattern) {
            (Some(_), _) => Some(super::model::Threshold {
                op: super::model::ThresholdOp::Greater,
                value: 0.0,
            }),
            // one alert per new template with at least `min_count` lines
            (None, Some(new_pattern)) => Some(super::model::Threshold {
                op: super::model::ThresholdOp::GreaterOrEqual,
                value: new_pattern.min_count as f64,
            }),
            (None, None) => file.threshold.clone(),
        },
        source: source?,
        schedule: schedule?,
        file,
        window,
        timing,
        summary,
        description,
        context,
        max_delay,
        group_ttl,
        expect_matches,
        measure,
        spike,
        new_term,
        new_pattern,
    })
}

/// The checks of a spike rule (`spike`): a log rule, with no `threshold` (the spike's
/// `ratio` and `min_count` are its condition); `None` without a valid `spike`.
fn check_spike(
    file: &RuleFile,
    window: Duration,
    problems: &mut Problems,
) -> Option<super::spike::Spike> {
    let config = file.spike.as_ref()?;
    if file.threshold.is_some() {
        problems.field(
            "threshold",
            "a spike rule compares its value with the reference window (`spike.ratio`, `spike.min_count`); remove `threshold`",
        );
    }
    if file.record.is_some() {
        problems.field(
            "spike",
            "a recording rule (`record`) writes series and alerts no one; remove `spike`",
        );
    }
    super::spike::Spike::check(config, window)
        .map_err(|errors| {
            for (field, message) in errors {
                problems.field(&field, message);
            }
        })
        .ok()
}

/// Rule types that do not combine. A rule's value is a count, an `aggregate` or a `ratio`,
/// which `spike` may compare with its reference; `new_term`, `new_pattern` and `slo` are
/// kinds of their own.
fn check_kinds(file: &RuleFile, problems: &mut Problems) {
    let kinds = [
        ("aggregate", file.aggregate.is_some()),
        ("ratio", file.ratio.is_some()),
        ("spike", file.spike.is_some()),
        ("new_term", file.new_term.is_some()),
        ("new_pattern", file.new_pattern.is_some()),
        ("slo", file.slo.is_some()),
    ];
    let present: Vec<&str> = kinds
        .iter()
        .filter(|(_, set)| *set)
        .map(|(kind, _)| *kind)
        .collect();
    let own_kind = |kind: &str| matches!(kind, "new_term" | "new_pattern" | "slo");
    // (an `aggregate` with a `ratio` is refused where they are checked)
    let Some(alone) = present.iter().find(|kind| own_kind(kind)) else {
        return;
    };
    for other in present.iter().filter(|other| *other != alone) {
        problems.field(
            other,
            format!(
                "cannot be combined with `{alone}`: a {} rule alerts on its own condition; write two rules",
                alone.replace('_', "-")
            ),
        );
    }
}

/// The checks of a `new_pattern` rule: a log rule (`query`), alerting, one alert per
/// template (no `threshold`, no `group_by`).
fn check_new_pattern(
    file: &RuleFile,
    problems: &mut Problems,
) -> Option<super::new_pattern::NewPattern> {
    let config = file.new_pattern.as_ref()?;
    for (field, set, why) in [
        (
            "promql",
            file.promql.is_some(),
            "`new_pattern` mines log lines: it needs `query` (and `index`), not `promql`",
        ),
        (
            "threshold",
            file.threshold.is_some(),
            "a `new_pattern` rule fires on templates not seen in its lookback; remove `threshold` (`new_pattern.min_count` is how many lines a new template needs)",
        ),
        (
            "group_by",
            !file.group_by.is_empty(),
            "a `new_pattern` rule has one alert per new template (label `pattern`); remove `group_by`",
        ),
        (
            "record",
            file.record.is_some(),
            "a recording rule cannot mine patterns; remove `record`",
        ),
        (
            "expect_matches",
            file.expect_matches.is_some(),
            "a `new_pattern` rule sees only new templates, so it would seem quiet; put `expect_matches` on a count rule of the same query",
        ),
    ] {
        if set {
            problems.field(field, why);
        }
    }
    match super::new_pattern::NewPattern::check(config) {
        Ok(new_pattern) => Some(new_pattern),
        Err(errors) => {
            for error in errors {
                problems.field("new_pattern", error);
            }
            None
        }
    }
}

/// The checks of a recording rule (`record`): a metric name, a `promql` expression, and
/// nothing of an alert (Prometheus' recording rules have neither threshold nor
/// notifications).
fn check_recording(file: &RuleFile, problems: &mut Problems) {
    let Some(record) = &file.record else {
        return;
    };
    if !valid_metric_name(record) {
        problems.field(
            "record",
            format!(
                "`{record}` is not a metric name (letters, digits, `_` and `:`, not starting with a digit), e.g. \"job:http_errors:rate5m\""
            ),
        );
    }
    if file.promql.is_none() {
        problems.field(
            "record",
            "a recording rule records a `promql` expression; to record a log query, save it as a log rule and record `log_matches{query=\"NAME\"}`",
        );
    }
    for (field, set) in [
        ("threshold", file.threshold.is_some()),
        ("for", file.for_duration.is_some()),
        ("keep_firing_for", file.keep_firing_for.is_some()),
        ("severity", file.severity.is_some()),
        ("summary", file.summary.is_some()),
        ("runbook_url", file.runbook_url.is_some()),
        ("context", !file.context.is_empty()),
        ("notify", !file.notify.is_empty()),
        ("repeat_interval", file.repeat_interval.is_some()),
        ("expect_matches", file.expect_matches.is_some()),
    ] {
        if set {
            problems.field(
                field,
                "a recording rule (`record`) writes series and alerts no one; remove it, or remove `record` to make an alerting rule",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one rule file, naming the file (and line/column) in errors.
    fn read_rule(path: &Path) -> Result<RuleFile, String> {
        LoadedRule::load(path)
            .map(|rule| rule.file)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn every_mistake_of_a_rule_is_reported_once_with_one_position_format() {
        let text = r#"{
  "version": 1,
  "query": "status:500",
  "treshold": {"op": ">", "value": 20},
  "window": "five minutes",
  "severity": 3,
  "summary": "{{ $labels.host }}"
}"#;
        let errors = check_rule(text, "three_mistakes", "q.json")
            .err()
            .expect("invalid");
        let joined = errors.join("\n");
        assert!(
            joined.contains("q.json:4:3: unknown field `treshold`, did you mean `threshold`?"),
            "{joined}"
        );
        assert!(
            joined.contains("q.json:5:3: `window`: `five minutes`"),
            "{joined}"
        );
        assert!(
            joined.contains("q.json:6:3: `severity`: invalid type"),
            "{joined}"
        );
        assert!(joined.contains("q.json:7:3: `summary`: "), "{joined}");
        assert!(
            !joined.contains(" at line "),
            "one position format: {joined}"
        );
    }

    #[test]
    fn rule_kinds_that_do_not_combine_are_refused_by_field() {
        let rule = |extra: &str| {
            format!(r#"{{"version": 1, "query": "level:error", "window": "5m", {extra}}}"#)
        };
        let errors = |extra: &str| {
            check_rule(&rule(extra), "kinds", "q.json")
                .err()
                .map(|errors| errors.join("\n"))
                .unwrap_or_default()
        };
        let new_term = r#""new_term": {"fields": ["error.type"], "lookback": "7d"}"#;
        let joined = errors(&format!(
            r#"{new_term}, "spike": {{"ratio": 3, "compare_to": "1h", "min_count": 10}}"#
        ));
        assert!(
            joined.contains("`spike`: cannot be combined with `new_term`"),
            "{joined}"
        );
        let joined = errors(&format!(
            r#"{new_term}, "new_pattern": {{"field": "message", "lookback": "7d"}}"#
        ));
        assert!(
            joined.contains("cannot be combined with `new_term`"),
            "{joined}"
        );
        // a spike of an aggregate is one rule
        let spiked = rule(
            r#""aggregate": {"op": "percentile", "field": "latency_ms", "percentile": 95},
               "spike": {"ratio": 2, "compare_to": "1h", "min_count": 10}"#,
        );
        assert!(check_rule(&spiked, "kinds", "q.json").is_ok(), "{spiked}");
    }

    #[test]
    fn key_positions_are_of_top_level_keys_only() {
        let text = "{\"threshold\": {\"value\": 1},\n  \"value\": 2}";
        assert_eq!(key_position(text, "value"), Some((2, 3)));
        assert_eq!(key_position(text, "threshold"), Some((1, 2)));
        assert_eq!(key_position(text, "missing"), None);
    }

    #[test]
    fn suggestions_are_for_near_misses_only() {
        let keys = ["threshold", "schedule", "group_by", "window"];
        assert_eq!(suggestion("treshold", keys), Some("threshold"));
        assert_eq!(suggestion("shedule", keys), Some("schedule"));
        assert_eq!(suggestion("colour", keys), None);
    }

    #[test]
    fn bad_schedules_and_names_are_reported_with_file_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("queries/checkout_5xx.json"),
        )
        .expect("example");
        let mut rule: serde_json::Value = serde_json::from_str(&example).expect("json");
        rule["schedule"] = "61 * * * *".into();
        let path = dir.path().join("bad_cron.json");
        std::fs::write(&path, rule.to_string()).expect("write");
        let error = read_rule(&path).expect_err("invalid");
        assert!(
            error.contains("bad_cron.json:1:")
                && error.contains(": `schedule`: schedule `61 * * * *`"),
            "{error}"
        );
        rule["schedule"] = "0 9 * * 1-5".into();
        rule["timezone"] = "Nowhere/Land".into();
        std::fs::write(&path, rule.to_string()).expect("write");
        assert!(
            read_rule(&path)
                .expect_err("invalid")
                .contains("`timezone`")
        );
        rule["timezone"] = "Europe/Berlin".into();
        let renamed = dir.path().join("bad name.json");
        std::fs::write(&renamed, rule.to_string()).expect("write");
        assert!(
            read_rule(&renamed)
                .expect_err("invalid")
                .contains("[A-Za-z0-9_-]+")
        );
        std::fs::write(&path, rule.to_string()).expect("write");
        assert!(read_rule(&path).is_ok());
        rule["query"] = "status:(500".into();
        std::fs::write(&path, rule.to_string()).expect("write");
        let error = read_rule(&path).expect_err("invalid");
        assert!(
            error.contains("bad_cron.json:1:") && error.contains(": `query`: "),
            "{error}"
        );
        rule["query"] = serde_json::json!({"term": {"status": 500}});
        std::fs::write(&path, rule.to_string()).expect("write");
        assert!(read_rule(&path).is_ok(), "a DSL object is a query too");
        rule["summary"] = "{{ $count }} on {{ $labels.host }}".into();
        std::fs::write(&path, rule.to_string()).expect("write");
        let error = read_rule(&path).expect_err("invalid");
        assert!(
            error.contains(": `summary`: column 20: `$labels.host` is not a label"),
            "{error}"
        );
    }

    #[test]
    fn example_rules_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).expect("queries/ exists") {
            let path = entry.expect("entry").path();
            if path
                .extension()
                .is_some_and(|extension| extension == "json")
            {
                let rule = read_rule(&path).expect("example rule is valid");
                assert_eq!(rule.version, 1);
                count += 1;
            }
        }
        assert!(count >= 1);
    }

    #[test]
    fn unknown_fields_are_errors_with_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "{\"version\": 1,\n \"treshold\": {}}").expect("write");
        let error = read_rule(&path).expect_err("typo");
        assert!(
            error.contains("bad.json:2:") && error.contains("treshold"),
            "{error}"
        );
    }

    /// A window near `u64::MAX` seconds overflowed the default `group_ttl` (ten windows).
    #[test]
    fn a_huge_window_loads_without_overflowing_the_default_group_ttl() {
        let text = r#"{"version": 1, "query": "status:500", "window": "18446744073709551615s",
            "threshold": {"op": ">", "value": 1}}"#;
        let rule = LoadedRule::parse(text, "huge_window", "test").expect("loads");
        assert_eq!(rule.group_ttl, Duration::MAX);
    }

    #[test]
    fn recording_rules_need_a_metric_name_and_promql_and_nothing_of_an_alert() {
        let good = r#"{"version": 1, "record": "job:up:sum", "promql": "sum by (job) (up)",
            "labels": {"team": "a"}}"#;
        let rule = LoadedRule::parse(good, "recorded", "r.json").expect("a recording rule");
        assert_eq!(rule.file.record.as_deref(), Some("job:up:sum"));
        let bad = r#"{"version": 1, "record": "1bad-name", "query": "status:500",
            "threshold": {"op": ">", "value": 1}, "notify": ["slack"]}"#;
        let joined = check_rule(bad, "recorded", "r.json")
            .err()
            .expect("invalid")
            .join("\n");
        assert!(
            joined.contains("`record`: `1bad-name` is not a metric name"),
            "{joined}"
        );
        assert!(joined.contains("records a `promql` expression"), "{joined}");
        assert!(
            joined.contains("`threshold`: a recording rule (`record`) writes series"),
            "{joined}"
        );
        assert!(joined.contains("`notify`: a recording rule"), "{joined}");
        let log_datasource = r#"{"version": 1, "query": "x", "datasource": "prom",
            "threshold": {"op": ">", "value": 1}}"#;
        let joined = check_rule(log_datasource, "remote", "r.json")
            .err()
            .expect("invalid")
            .join("\n");
        assert!(
            joined.contains("`datasource`: belongs to metric rules"),
            "{joined}"
        );
    }

    #[test]
    fn spike_rules_are_log_rules_without_a_threshold_and_name_their_mistakes() {
        let good = r#"{"version": 1, "query": "level:error", "window": "5m",
            "group_by": ["service"],
            "spike": {"ratio": 3, "compare_to": "1h", "min_count": 10},
            "summary": "{{ $value }} is {{ $spike_ratio }}× the {{ $reference }} before"}"#;
        let rule = LoadedRule::parse(good, "spiky", "s.json").expect("a spike rule");
        let spike = rule.spike.as_ref().expect("checked spike");
        assert_eq!(spike.offset, Duration::from_secs(3600));
        assert!(rule.condition(30.0, Some(10.0)) && !rule.condition(3.0, Some(1.0)));
        let bad = r#"{"version": 1, "query": "level:error", "window": "5m",
            "threshold": {"op": ">", "value": 1},
            "spike": {"ratio": 0.5, "compare_to": "1m", "min_count": 10}}"#;
        let joined = check_rule(bad, "spiky", "s.json")
            .err()
            .expect("invalid")
            .join("\n");
        assert!(
            joined.contains("s.json:2:13: `threshold`: a spike rule compares its value"),
            "{joined}"
        );
        assert!(
            joined.contains("s.json:3:13: `spike.ratio`: must be a number above 1"),
            "{joined}"
        );
        assert!(
            joined.contains("`spike.compare_to`: `1m` is shorter than the window (5m)"),
            "{joined}"
        );
        let metric = r#"{"version": 1, "promql": "up",
            "spike": {"ratio": 3, "compare_to": "1h", "min_count": 10}}"#;
        let joined = check_rule(metric, "spiky", "s.json")
            .err()
            .expect("invalid")
            .join("\n");
        assert!(
            joined.contains("`spike`: belongs to log rules; in PromQL compare with `offset`"),
            "{joined}"
        );
        let count = r#"{"version": 1, "query": "x", "threshold": {"op": ">", "value": 1},
            "summary": "{{ $reference }}"}"#;
        let joined = check_rule(count, "plain", "s.json")
            .err()
            .expect("invalid")
            .join("\n");
        assert!(
            joined.contains("`summary`: `$reference` is only known to spike rules"),
            "{joined}"
        );
    }
}
