//! `lookout check`: validates server configs, agent configs and rule files together, as
//! `serve` and `ship` would read them, and cross-checks what one file names in another —
//! a metric rule's `log_matches{query=…}` naming no saved query, a rule's or route's
//! notifier no config defines (warnings, not errors: the first may be a file not checked,
//! the second falls back to the console). What the data has (fields, indices, series) is
//! not checked offline; a server's rules API does that.
//!
//! [`check`] returns the report as lines in the order they are printed; `main` prints
//! them and turns [`CheckReport::passed`] into the exit code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::agent::config::AgentConfig;
use crate::config::Config;
use crate::rules::dead_query;
use crate::rules::rule::{LoadedRule, RuleSource};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// For stdout: what was skipped or not checked, and the verdict.
    Note(String),
    /// For stderr: an error, a `warning: …`, or the count of errors.
    Problem(String),
}

/// What `lookout check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// In the order they are printed.
    pub lines: Vec<Line>,
    /// No file had an error.
    pub passed: bool,
}

impl CheckReport {
    fn note(&mut self, line: impl Into<String>) {
        self.lines.push(Line::Note(line.into()));
    }

    fn problem(&mut self, line: impl Into<String>) {
        self.lines.push(Line::Problem(line.into()));
    }

    /// The stderr lines.
    pub fn problems(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|line| match line {
            Line::Problem(text) => Some(text.as_str()),
            Line::Note(_) => None,
        })
    }
}

/// What `lookout check` looks at without arguments: what `serve` and `ship` would read in
/// the current directory.
pub const DEFAULT_PATHS: [&str; 3] = ["config/lookout.toml", "config/agent.toml", "queries"];

/// Checks `paths`: `*.toml` as server or agent configs (an agent config has `[[inputs]]`
/// or `to`), anything else as a rule file, directories as directories of rules. With no
/// paths: those of [`DEFAULT_PATHS`] that exist.
pub fn check(paths: Vec<PathBuf>) -> CheckReport {
    let mut report = CheckReport::default();
    let (paths, skipped): (Vec<PathBuf>, Vec<PathBuf>) = if paths.is_empty() {
        DEFAULT_PATHS
            .into_iter()
            .map(PathBuf::from)
            .partition(|path| path.exists())
    } else {
        (paths, Vec::new())
    };
    for path in &skipped {
        report.note(format!(
            "skipped {}: not here (nothing needs it; pass paths to check files elsewhere)",
            path.display()
        ));
    }
    // log rules by name (the saved queries), and the `log_matches` names of metric rules
    let mut saved_queries = BTreeSet::new();
    let mut references: Vec<(PathBuf, String, String)> = Vec::new();
    let mut rules_checked = 0;
    let mut errors = Vec::new();
    let mut checked = 0;
    // notifier names the checked configs define, and those the rules and routes use
    let mut configured: Option<BTreeSet<String>> = None;
    let mut used: Vec<(String, String)> = Vec::new();
    // datasource names the checked configs define, and those the rules use
    let mut datasources: Option<BTreeSet<String>> = None;
    let mut datasources_used: Vec<(PathBuf, String, String)> = Vec::new();
    for path in paths {
        let files: Vec<PathBuf> = if path.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|file| {
                        file.extension()
                            .is_some_and(|extension| extension == "json")
                    })
                    .collect(),
                Err(error) => {
                    errors.push(format!("{}: cannot read: {error}", path.display()));
                    continue;
                }
            }
        } else {
            vec![path]
        };
        for file in files {
            checked += 1;
            let result = match file.extension().and_then(|extension| extension.to_str()) {
                Some("toml") if is_agent_config(&file) => AgentConfig::load(&file).map(|_| ()),
                Some("toml") => Config::load(&file)
                    .map(|config| {
                        if let Ok((_, warnings)) = config.scrape_jobs() {
                            for warning in warnings {
                                report.problem(format!("warning: {warning}"));
                            }
                        }
                        configured
                            .get_or_insert_with(Default::default)
                            .extend(config.notifiers.keys().cloned());
                        datasources
                            .get_or_insert_with(Default::default)
                            .extend(config.datasources.keys().cloned());
                    })
                    .map_err(|error| error.errors),
                _ => {
                    rules_checked += 1;
                    LoadedRule::read(&file)
                        .map_err(|error| error.into_lines())
                        .map(|(rule, text)| {
                            match &rule.source {
                                RuleSource::Logs { .. } => {
                                    saved_queries.insert(rule.name.clone());
                                }
                                RuleSource::Metrics { expr } => {
                                    for name in dead_query::saved_queries_named(expr) {
                                        references.push((file.clone(), text.clone(), name));
                                    }
                                }
                            }
                            if let Some(name) = &rule.file.datasource {
                                datasources_used.push((file.clone(), text.clone(), name.clone()));
                            }
                            for name in rule.file.notify {
                                used.push((format!("{}: `notify`", file.display()), name));
                            }
                        })
                }
            };
            if let Err(found) = result {
                errors.extend(found);
            }
        }
    }
    for error in &errors {
        report.problem(error.clone());
    }
    for (file, text, name) in references {
        // a saved query may be a rule file beside this one that was not checked
        let beside = file
            .parent()
            .map(|dir| dir.join(format!("{name}.json")).exists())
            .unwrap_or(false);
        if !saved_queries.contains(&name) && !beside {
            let message =
                dead_query::unknown_saved_query(&name, saved_queries.iter().map(String::as_str));
            report.problem(format!(
                "warning: {}",
                dead_query::at_field(&text, &file.display().to_string(), "promql", &message)
            ));
        }
    }
    for (file, text, name) in datasources_used {
        let origin = file.display().to_string();
        match &datasources {
            Some(known) if !known.contains(&name) => {
                let message = format!(
                    "datasource `{name}` is not defined in the checked config (define [datasources.{name}]{})",
                    crate::diagnostic::suggestion(&name, known.iter().map(String::as_str))
                        .map(|near| format!(", or did you mean `{near}`?"))
                        .unwrap_or_default()
                );
                let error = dead_query::at_field(&text, &origin, "datasource", &message);
                report.problem(error.clone());
                errors.push(error);
            }
            Some(_) => {}
            None => report.problem(format!(
                "warning: {}",
                dead_query::at_field(
                    &text,
                    &origin,
                    "datasource",
                    &format!("datasource `{name}` not checked: pass the server config too (lookout check config/lookout.toml {origin})")
                )
            )),
        }
    }
    if rules_checked > 0 {
        report.note(
            "not checked offline: whether the fields, indices and series the rules name exist (PUT /_lookout/rules/NAME and its _dry_run warn about those on a server)",
        );
    }
    // a rule's unconfigured notifier is a warning, not an error: its alerts go to the
    // console (a route's is an error of the config, see `notifiers::validate_receivers`)
    let mut known = configured.unwrap_or_default();
    if known.is_empty() && std::env::var("SLACK_WEBHOOK_URL").is_ok_and(|url| !url.is_empty()) {
        known.insert("slack".into());
    }
    known.extend(
        crate::notify::notifiers::BUILT_IN
            .iter()
            .map(|name| name.to_string()),
    );
    for (place, name) in used {
        if !known.contains(&name) {
            report.problem(format!(
                "warning: {place}: notifier `{name}` is not configured; its alerts go to the console (define [notifiers.{name}] in lookout.toml{})",
                if name == "slack" {
                    " or set SLACK_WEBHOOK_URL"
                } else {
                    ""
                }
            ));
        }
    }
    if checked == 0 && !skipped.is_empty() {
        report.note("nothing to check here: no config/lookout.toml, config/agent.toml or queries/");
        report.passed = true;
    } else if errors.is_empty() {
        report.note(format!("{checked} file(s) OK"));
        report.passed = true;
    } else {
        report.problem(format!("{} error(s) in {checked} file(s)", errors.len()));
    }
    report
}

/// An agent config has `[[inputs]]` or `to` at the top level; a server config has neither.
fn is_agent_config(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|table| table.contains_key("inputs") || table.contains_key("to"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn every_error_of_every_file_is_counted_and_the_report_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rule = write(
            dir.path(),
            "broken.json",
            r#"{"version": 2, "query": "status:500", "treshold": {}}"#,
        );
        let config = write(dir.path(), "lookout.toml", "[index]\nretension = \"7d\"\n");
        let report = check(vec![rule, config]);
        assert!(!report.passed);
        let problems: Vec<&str> = report.problems().collect();
        assert!(
            problems
                .iter()
                .any(|line| line.contains("unknown field `treshold`")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|line| line.contains("retension")),
            "{problems:?}"
        );
        assert!(
            problems
                .last()
                .is_some_and(|line| line.ends_with("error(s) in 2 file(s)")),
            "{problems:?}"
        );
    }

    #[test]
    fn names_across_files_are_cross_checked_as_warnings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write(
            dir.path(),
            "lookout.toml",
            "[notifiers.team]\ntype = \"console\"\n[routing]\ndefault = [\"team\"]\n",
        );
        let log_rule = write(
            dir.path(),
            "checkout_5xx.json",
            r#"{"version": 1, "query": "status:500", "threshold": {"op": ">", "value": 20}, "notify": ["team", "pager"]}"#,
        );
        let metric_rule = write(
            dir.path(),
            "ratio.json",
            r#"{"version": 1, "promql": "log_matches{query=\"checkout_5xxx\"} > 1"}"#,
        );
        let report = check(vec![config, log_rule, metric_rule]);
        assert!(report.passed, "{:?}", report.lines);
        let problems: Vec<&str> = report.problems().collect();
        assert!(
            problems.iter().any(|line| line.starts_with("warning: ")
                && line.contains("names no saved query (did you mean `checkout_5xx`?)")),
            "an unknown saved query: {problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|line| line.contains("`notify`: notifier `pager` is not configured")),
            "a rule's unknown notifier is a warning (a route's is an error): {problems:?}"
        );
        assert!(
            problems.iter().all(|line| line.starts_with("warning: ")),
            "{problems:?}"
        );
        assert!(
            !problems.iter().any(|line| line.contains("`team`")),
            "team is configured: {problems:?}"
        );
        assert_eq!(
            report.lines.last(),
            Some(&Line::Note("3 file(s) OK".into()))
        );
    }
}
