//! Rule unit tests (`lookout rules test --fixtures FILE`), in the YAML layout of
//! `promtool test rules` plus `input_logs` (DESIGN §5):
//!
//! ```yaml
//! rule_files: [checkout_5xx.json]      # Lookout rules, relative to this file
//! evaluation_interval: 1m
//! tests:
//!   - interval: 1m                      # spacing of input_series values
//!     input_series:
//!       - series: 'http_requests_total{job="app", status_code="500"}'
//!         values: '0+10x20'
//!     input_logs:                       # log lines, at times from the test start
//!       - at: 2m
//!         count: 30                     # copies (default 1)
//!         line: {"status": 500, "service": "checkout"}
//!     alert_rule_test:
//!       - eval_time: 5m
//!         alertname: checkout_5xx
//!         exp_alerts:
//!           - exp_labels: {service: checkout, severity: critical}
//!             exp_annotations: {summary: "30 HTTP 500s"}
//!     promql_expr_test:
//!       - expr: log_matches{query="checkout_5xx"}
//!         eval_time: 3m
//!         exp_samples:
//!           - labels: 'log_matches{query="checkout_5xx", service="checkout"}'
//!             value: 30
//! ```
//!
//! Each test group runs in a Lookout of its own, in a temporary directory: the log lines
//! go through the real ingest path into a real index, the series into a real TSDB, and
//! each rule is replayed from the test start (the Unix epoch, as in promtool) every
//! `evaluation_interval` by the scheduler's own code ([`RuleManager::replay`]). The
//! alerts firing at each `eval_time` are compared with `exp_alerts` — labels (with
//! `alertname`, `severity` and the rule's `labels`) and annotations (`summary`,
//! `description`, `runbook_url`) — and every mismatch is reported as a readable diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::check::RuleError;
use super::log_matches::LogMatches;
use super::manager::{EvaluationError, FiringAlert, ReplayStep, RuleManager, RuleServices};
use super::observe::Sources;
use super::rule::LoadedRule;
use crate::config::Config;
use crate::index::IndexStore;
use crate::ingest::bulk::ActionKind;
use crate::ingest::{Ingest, Item, event};
use crate::promql::notation::{Point, parse_series_line, parse_values};
use crate::telemetry::Telemetry;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    /// promtool's; every rule is replayed on its own here, so order does not matter.
    #[serde(default)]
    #[allow(dead_code)]
    group_eval_order: Vec<String>,
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    input_logs: Vec<InputLog>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLog {
    /// Time from the test start, e.g. `90s`.
    at: String,
    #[serde(default = "one")]
    count: usize,
    #[serde(default)]
    index: Option<String>,
    line: serde_json::Map<String, serde_json::Value>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpectedAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpectedSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedSample {
    labels: String,
    value: f64,
}

/// What a fixtures file found.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    /// One readable entry per failed check.
    pub failures: Vec<String>,
}

/// Why a fixtures file could not run; a check that does not hold is a failure in the
/// [`Report`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{}: cannot read: {error}", path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    Syntax {
        path: PathBuf,
        error: serde_yaml_ng::Error,
    },
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A mistake in the file, in test group `group` (`None`: in the file's own fields).
    #[error(
        "{}: {}{error}",
        path.display(),
        group.as_deref().map(|group| format!("{group}: ")).unwrap_or_default()
    )]
    In {
        path: PathBuf,
        group: Option<String>,
        error: GroupError,
    },
}

/// What went wrong in one test group (or in the file's own fields).
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("`{field}`: `{text}` is not a duration like \"5m\" ({error})")]
    Duration {
        field: String,
        text: String,
        error: humantime::DurationError,
    },
    /// A series, values, labels or expression that does not parse.
    #[error("{field}: {error}")]
    Notation { field: String, error: String },
    #[error("{field}.values: native histograms are not supported")]
    Histogram { field: String },
    #[error("input_series: {0}")]
    Series(std::io::Error),
    #[error("input_logs: {0}")]
    Logs(crate::ingest::WriteRefused),
    #[error("input_logs: a line was refused: {0}")]
    LineRefused(String),
    #[error(transparent)]
    Replay(#[from] EvaluationError),
    #[error("{0}")]
    Task(tokio::task::JoinError),
    /// The group's own Lookout (index, ingest, TSDB) could not be set up or closed.
    #[error("{0}")]
    Sandbox(Box<dyn std::error::Error + Send + Sync>),
}

fn duration(field: &str, text: &str) -> Result<Duration, GroupError> {
    humantime::parse_duration(text).map_err(|error| GroupError::Duration {
        field: field.to_string(),
        text: text.to_string(),
        error,
    })
}

/// Runs the fixtures file at `path`.
pub async fn run(path: &Path) -> Result<Report, FixtureError> {
    let text = std::fs::read_to_string(path).map_err(|error| FixtureError::Unreadable {
        path: path.to_path_buf(),
        error,
    })?;
    let fixtures: FixtureFile =
        serde_yaml_ng::from_str(&text).map_err(|error| FixtureError::Syntax {
            path: path.to_path_buf(),
            error,
        })?;
    let at = |group: Option<String>| {
        move |error: GroupError| FixtureError::In {
            path: path.to_path_buf(),
            group,
            error,
        }
    };
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let mut rules = Vec::new();
    for file in &fixtures.rule_files {
        rules.push(Arc::new(LoadedRule::load(&base_dir.join(file))?));
    }
    let evaluation_interval = match &fixtures.evaluation_interval {
        Some(text) => duration("evaluation_interval", text).map_err(at(None))?,
        None => Duration::from_secs(60),
    };
    let mut report = Report::default();
    for (number, group) in fixtures.tests.iter().enumerate() {
        let name = group
            .name
            .clone()
            .unwrap_or_else(|| format!("tests[{number}]"));
        let failures = run_group(group, &rules, evaluation_interval)
            .await
            .map_err(at(Some(name.clone())))?;
        let checks = group.alert_rule_test.len() + group.promql_expr_test.len();
        report.passed += checks - failures.len();
        report.failures.extend(
            failures
                .into_iter()
                .map(|failure| format!("{name}: {failure}")),
        );
    }
    Ok(report)
}

/// A Lookout of its own in a temporary directory.
struct Sandbox {
    _dir: tempfile::TempDir,
    ingest: Arc<Ingest>,
    /// Stops the ingest's refresher.
    stop: tokio_util::sync::CancellationToken,
    refresher: tokio::task::JoinHandle<()>,
    manager: Arc<RuleManager>,
    sources: Arc<Sources>,
}

impl Sandbox {
    async fn open(rules: &[Arc<LoadedRule>]) -> Result<Sandbox, GroupError> {
        let dir = tempfile::tempdir()
            .map_err(|error| GroupError::Sandbox(format!("temporary directory: {error}").into()))?;
        let mut config = Config::default();
        // the test starts at the epoch: nothing is too old or too new
        config.index.retention = Duration::from_secs(200 * 365 * 86_400);
        config.ingest.future_tolerance = Duration::from_secs(200 * 365 * 86_400);
        let store = Arc::new(
            IndexStore::open(&dir.path().join("indices"), config.store_settings())
                .map_err(|error| GroupError::Sandbox(Box::new(error)))?,
        );
        let telemetry = Arc::new(Telemetry::default());
        let ingest = Ingest::open(
            Arc::clone(&store),
            dir.path().join("wal"),
            dir.path().join("state"),
            config.ingest_settings(),
            Arc::clone(&telemetry),
            Arc::new(crate::storage::DiskSpace::unwatched()),
        )
        .map_err(|error| GroupError::Sandbox(Box::new(error)))?;
        let tsdb = Arc::new(
            crate::tsdb::Tsdb::open(
                &dir.path().join("tsdb"),
                crate::tsdb::TsdbOptions {
                    retention: config.index.retention,
                    ..Default::default()
                },
            )
            .map_err(|error| GroupError::Sandbox(Box::new(error)))?,
        );
        let log_matches = Arc::new(LogMatches::new(Arc::clone(&store)));
        let slos = Arc::new(super::slo::series::SloSeries::new(
            Arc::clone(&store),
            Arc::clone(&tsdb),
            config.metrics.engine_options(),
        ));
        for rule in rules {
            log_matches.set(&rule.name, rule.saved_query());
            slos.set(&rule.name, super::slo::spec_of(rule));
        }
        let sources = Arc::new(Sources {
            store,
            tsdb,
            log_matches,
            slos,
            engine: config.metrics.engine_options(),
            datasources: Default::default(),
            new_terms: Default::default(),
        });
        let notifiers =
            crate::notify::notifiers::Notifiers::build(&BTreeMap::new(), &Default::default(), None)
                .map_err(|error| GroupError::Sandbox(error.into()))?;
        let history = crate::notify::history::History::disabled();
        let external_url = "http://127.0.0.1:9200".to_string();
        let dispatcher = Arc::new(crate::notify::dispatch::Dispatcher::new(
            notifiers,
            &config.notify,
            &dir.path().join("state"),
            external_url.clone(),
            Arc::clone(&telemetry),
            history.clone(),
        ));
        let manager = Arc::new(RuleManager::new(
            RuleServices {
                sources: Arc::clone(&sources),
                ingest: Arc::clone(&ingest),
                telemetry,
                silences: Arc::new(super::silence::Silences::open(&dir.path().join("state"))),
                history,
            },
            dispatcher,
            dir.path().join("state"),
            external_url,
            dir.path().join("queries"),
        ));
        let stop = tokio_util::sync::CancellationToken::new();
        let refresher = tokio::spawn(Arc::clone(&ingest).run_refresher(stop.clone()));
        Ok(Sandbox {
            _dir: dir,
            stop,
            refresher,
            ingest,
            manager,
            sources,
        })
    }
}

/// Milliseconds from the test start.
fn offset(field: &str, text: &str) -> Result<i64, GroupError> {
    Ok(duration(field, text)?.as_millis() as i64)
}

fn time_of(offset_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(offset_ms).unwrap_or_default()
}

async fn run_group(
    group: &TestGroup,
    rules: &[Arc<LoadedRule>],
    evaluation_interval: Duration,
) -> Result<Vec<String>, GroupError> {
    let sandbox = Sandbox::open(rules).await?;
    let interval = match &group.interval {
        Some(text) => offset("interval", text)?,
        None => 60_000,
    };
    // series
    let mut batch = Vec::new();
    for (number, input) in group.input_series.iter().enumerate() {
        let field = format!("input_series[{number}]");
        let (labels, _) =
            parse_series_line(&input.series).map_err(|error| GroupError::Notation {
                field: format!("{field}.series"),
                error,
            })?;
        let values = parse_values(&input.values).map_err(|error| GroupError::Notation {
            field: format!("{field}.values"),
            error,
        })?;
        for (step, point) in values.into_iter().enumerate() {
            match point {
                Point::Value(value) => {
                    batch.push((Arc::clone(&labels), step as i64 * interval, value))
                }
                Point::Missing => {}
                Point::Histogram => {
                    return Err(GroupError::Histogram { field });
                }
            }
        }
    }
    if !batch.is_empty() {
        sandbox
            .sources
            .tsdb
            .append(&batch)
            .map_err(GroupError::Series)?;
    }
    // log lines, through the real ingest path
    let rules_of_events = sandbox.ingest.settings.rules.clone();
    let mut items = Vec::new();
    for (number, input) in group.input_logs.iter().enumerate() {
        let at = offset(&format!("input_logs[{number}].at"), &input.at)?;
        let mut line = input.line.clone();
        line.insert(
            "@timestamp".into(),
            time_of(at)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        let bytes = bytes::Bytes::from(serde_json::Value::Object(line).to_string());
        for _ in 0..input.count {
            items.push(Item {
                kind: ActionKind::Index,
                index: Some(input.index.clone().unwrap_or_else(|| "logs".into())),
                id: None,
                position: None,
                prepared: event::prepare(&bytes, &rules_of_events, at * 1000).map(Some),
            });
        }
    }
    if !items.is_empty() {
        let outcome = sandbox
            .ingest
            .write(items, None)
            .await
            .map_err(GroupError::Logs)?;
        if let Some(error) = outcome.items.iter().find_map(|item| item.failure()) {
            return Err(GroupError::LineRefused(error.to_string()));
        }
        sandbox.ingest.refresh().await;
    }
    // replay every rule up to the last time anything is checked
    let mut last = 0;
    for test in &group.alert_rule_test {
        last = last.max(offset("eval_time", &test.eval_time)?);
    }
    let step = (evaluation_interval.as_millis() as i64).max(1);
    let ticks: Vec<DateTime<Utc>> = (0..=last / step).map(|n| time_of(n * step)).collect();
    let mut replays: BTreeMap<String, Vec<ReplayStep>> = BTreeMap::new();
    for rule in rules {
        if group
            .alert_rule_test
            .iter()
            .any(|test| test.alertname == rule.name)
        {
            let (manager, replayed, ticks) = (
                Arc::clone(&sandbox.manager),
                Arc::clone(rule),
                ticks.clone(),
            );
            let steps = tokio::task::spawn_blocking(move || manager.replay(&replayed, &ticks))
                .await
                .map_err(GroupError::Task)??;
            replays.insert(rule.name.clone(), steps);
        }
    }
    let mut failures = Vec::new();
    for test in &group.alert_rule_test {
        let at = offset("eval_time", &test.eval_time)?;
        let Some(steps) = replays.get(&test.alertname) else {
            failures.push(format!(
                "alertname `{}`: no rule of that name in rule_files",
                test.alertname
            ));
            continue;
        };
        // the state after the last evaluation at or before eval_time
        let got: Vec<&FiringAlert> = steps
            .iter()
            .rev()
            .find(|step| step.at.timestamp_millis() <= at)
            .map(|step| step.firing.iter().collect())
            .unwrap_or_default();
        if let Some(diff) = compare_alerts(&test.alertname, &test.exp_alerts, &got) {
            failures.push(format!(
                "alertname: {}, time: {}:\n{diff}",
                test.alertname, test.eval_time
            ));
        }
    }
    for test in &group.promql_expr_test {
        let at = offset("eval_time", &test.eval_time)?;
        if let Some(diff) = check_expr(&sandbox.sources, test, at)? {
            failures.push(format!(
                "expr: {}, time: {}:\n{diff}",
                test.expr, test.eval_time
            ));
        }
    }
    sandbox.stop.cancel();
    let _ = sandbox.refresher.await;
    sandbox
        .ingest
        .close()
        .await
        .map_err(|error| GroupError::Sandbox(Box::new(error)))?;
    Ok(failures)
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn alert_text(labels: &BTreeMap<String, String>, annotations: &BTreeMap<String, String>) -> String {
    format!(
        "labels {} annotations {}",
        labels_text(labels),
        labels_text(annotations)
    )
}

/// `None` when the firing alerts are the expected ones; else the diff: `-` expected and
/// not firing, `+` firing and not expected.
fn compare_alerts(
    alertname: &str,
    expected: &[ExpectedAlert],
    got: &[&FiringAlert],
) -> Option<String> {
    // as in promtool, alertname is implied
    let mut want: Vec<String> = expected
        .iter()
        .map(|alert| {
            let mut labels = alert.exp_labels.clone();
            labels.insert("alertname".into(), alertname.to_string());
            alert_text(&labels, &alert.exp_annotations)
        })
        .collect();
    let mut have: Vec<String> = got
        .iter()
        .map(|alert| alert_text(&alert.labels, &alert.annotations))
        .collect();
    want.sort();
    have.sort();
    if want == have {
        return None;
    }
    let mut diff = String::new();
    for line in &want {
        if !have.contains(line) {
            diff.push_str(&format!("  - expected, not firing: {line}\n"));
        }
    }
    for line in &have {
        if !want.contains(line) {
            diff.push_str(&format!("  + firing, not expected: {line}\n"));
        }
    }
    Some(diff)
}

fn check_expr(sources: &Sources, test: &ExprTest, at: i64) -> Result<Option<String>, GroupError> {
    let expr = crate::promql::parse(&test.expr).map_err(|error| GroupError::Notation {
        field: format!("expr `{}`", test.expr),
        error: error.to_string(),
    })?;
    let result = match sources.instant(&expr, at) {
        Ok(result) => result,
        Err(error) => return Ok(Some(format!("  evaluation failed: {error}\n"))),
    };
    let format = |labels: &crate::tsdb::head::Labels, value: f64| {
        let map: BTreeMap<String, String> = labels.iter().cloned().collect();
        format!("{} {value}", labels_text(&map))
    };
    let mut want = Vec::new();
    for sample in &test.exp_samples {
        let (labels, _) =
            parse_series_line(&sample.labels).map_err(|error| GroupError::Notation {
                field: format!("exp_samples labels `{}`", sample.labels),
                error,
            })?;
        want.push(format(&labels, sample.value));
    }
    let mut have: Vec<String> = result
        .iter()
        .map(|(labels, value)| format(labels, *value))
        .collect();
    want.sort();
    have.sort();
    if want == have {
        return Ok(None);
    }
    let mut diff = String::new();
    for line in want.iter().filter(|line| !have.contains(line)) {
        diff.push_str(&format!("  - expected, not found: {line}\n"));
    }
    for line in have.iter().filter(|line| !want.contains(line)) {
        diff.push_str(&format!("  + found, not expected: {line}\n"));
    }
    Ok(Some(diff))
}
