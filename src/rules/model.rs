//! The rule file format. One rule per file; the file stem is the rule name. The JSON
//! Schema shipped as `config/query.schema.json` is generated from these types (a test
//! fails when it drifts; `LOOKOUT_UPDATE_SCHEMA=1 cargo test` rewrites it).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A saved query: a log count (or a PromQL expression) on a schedule, with a threshold.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Format version; must be 1.
    pub version: u32,
    /// What the rule watches, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Cron: 6 fields with seconds, or classic 5-field crontab (Vixie semantics).
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// IANA time zone of the schedule (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Index name or pattern to count in (log rules).
    #[serde(default)]
    pub index: Option<String>,
    /// Lucene query string or an Elasticsearch query DSL object (log rules).
    #[serde(default)]
    pub query: Option<serde_json::Value>,
    /// PromQL expression (metric rules), instead of `query`.
    #[serde(default)]
    pub promql: Option<String>,
    /// A recording rule: the metric name the output series of `promql` are written under
    /// in the local store (Prometheus' `record`); it has no threshold and notifies no one.
    #[serde(default)]
    pub record: Option<String>,
    /// The `[datasources.NAME]` (a Prometheus-compatible query API) that evaluates
    /// `promql` and `context` instead of the local engine.
    #[serde(default)]
    pub datasource: Option<String>,
    /// Counting window ending at the tick, e.g. "1m".
    #[serde(default)]
    pub window: Option<String>,
    /// Fields whose values split the count into one alert per group.
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(default)]
    pub threshold: Option<Threshold>,
    /// How long the condition must hold before firing.
    #[serde(default, rename = "for")]
    pub for_duration: Option<String>,
    /// How long an alert keeps firing after the condition clears.
    #[serde(default)]
    pub keep_firing_for: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Template, Prometheus syntax (`{{ $count }}`, `{{ $labels.service }}`).
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub runbook_url: Option<String>,
    /// PromQL expressions evaluated when the alert fires; their values go into the message.
    #[serde(default)]
    pub context: Vec<String>,
    /// Notifier names; when empty, routes decide.
    #[serde(default)]
    pub notify: Vec<String>,
    #[serde(default)]
    pub repeat_interval: Option<String>,
    /// Longest wait for agents' watermarks before evaluating a tick.
    #[serde(default)]
    pub max_delay: Option<String>,
    /// How long a group is remembered (and counted as 0 when absent).
    #[serde(default)]
    pub group_ttl: Option<String>,
    /// Alert (through the rule's notifiers) when the query has matched nothing for this
    /// long, e.g. "1h": the field was renamed, the source stopped, the query is wrong.
    #[serde(default)]
    pub expect_matches: Option<String>,
    /// The value is this aggregate of a log field over the window's matching lines (per
    /// group) instead of their count, e.g. {"op": "percentile", "field": "latency_ms",
    /// "percentile": 95}.
    #[serde(default)]
    pub aggregate: Option<super::measure::AggregateFile>,
    /// The value is the window's matches of `query` divided by those of a denominator
    /// query (per group), e.g. {"denominator": "*", "min_denominator": 10}.
    #[serde(default)]
    pub ratio: Option<super::measure::RatioFile>,
    /// A spike rule: the value now against the same window at a reference time, e.g.
    /// {"ratio": 3, "compare_to": "1h", "min_count": 10} (see `docs/rules.md`).
    #[serde(default)]
    pub spike: Option<super::spike::SpikeConfig>,
    /// Alert on each value of these fields (or combination) not seen in the lookback
    /// before the window (see `docs/rules.md`, "New terms").
    #[serde(default)]
    pub new_term: Option<super::new_term::config::NewTermConfig>,
    /// Fire for each template of the matching lines (mined from a text field) that did
    /// not occur in a lookback before the window, e.g.
    /// `{"field": "message", "lookback": "7d", "min_count": 3}`; no `threshold`.
    #[serde(default)]
    pub new_pattern: Option<super::new_pattern::NewPatternConfig>,
    /// A service level objective: the rule pages and opens tickets on its error budget's
    /// burn rate (see docs/rules.md, "SLOs") instead of comparing a count with a threshold.
    #[serde(default)]
    pub slo: Option<super::slo::config::SloConfig>,
}

fn default_schedule() -> String {
    "0 * * * * *".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub op: ThresholdOp,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum ThresholdOp {
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = ">=")]
    GreaterOrEqual,
    #[serde(rename = "<")]
    Less,
    #[serde(rename = "<=")]
    LessOrEqual,
    #[serde(rename = "==")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
}

/// The JSON Schema of [`RuleFile`], pretty-printed.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(RuleFile);
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

/// Whether `name` is a valid Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|char| char.is_ascii_alphanumeric() || char == '_' || char == ':')
}

/// Whether `name` is a valid rule name (`[A-Za-z0-9_-]+`; it is also the file stem).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|char| char.is_ascii_alphanumeric() || char == '_' || char == '-')
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn shipped_schema_matches_the_code() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/query.schema.json");
        let generated = schema_json();
        if std::env::var_os("LOOKOUT_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &generated).expect("write schema");
        }
        let shipped = std::fs::read_to_string(&path).expect("config/query.schema.json exists");
        assert_eq!(
            shipped, generated,
            "config/query.schema.json is stale: run LOOKOUT_UPDATE_SCHEMA=1 cargo test"
        );
    }
}
