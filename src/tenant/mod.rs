//! Tenants: each team's own world of data, rules and alerts on one server.
//!
//! A setup without `[tenants.NAME]` tables has one tenant, [`DEFAULT_TENANT`], built from
//! the top-level options (`queries_dir`, `notifiers`, `routing`, `scrape_configs`) on
//! today's `data/` layout. Each configured tenant adds a world of its own under
//! `data/tenants/NAME/` (the same layout), with its own rules directory (default
//! `<queries_dir>/NAME/`, which the default tenant never reads: rules are the `*.json`
//! files directly in a directory), notifiers, routes and scrape jobs. `[limits]` sets the
//! limits of every tenant; `[tenants.NAME.limits]` overrides them one by one. A tenant's
//! `inhibit_rules` and `time_intervals` are its own; a tenant that sets none of either
//! uses the top-level ones (each list falls back on its own), so one tenant's firing
//! alert never mutes another tenant's: inhibition only ever looks at the alerts of the
//! tenant's own dispatcher.
//!
//! This module consumes the parsed config and produces [`TenantSpec`]s, one per tenant,
//! validated; `app` builds one world per spec and `server::dispatch` routes each request
//! to its tenant's world. Names are checked here so that a tenant's directory can never
//! escape the data directory.

pub mod limits;
pub mod name;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::server::access::DEFAULT_TENANT;
pub use limits::LimitsConfig;
pub use name::{MAX_TENANT_NAME_BYTES, name_error};

/// One `[tenants.NAME]` table: what differs from the other tenants.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// The tenant's rules, one JSON file each (default: `<queries_dir>/NAME`).
    pub queries_dir: Option<PathBuf>,
    /// The tenant's notifiers (`[tenants.NAME.notifiers.N]`, as the top-level ones).
    pub notifiers: BTreeMap<String, crate::notify::notifiers::NotifierConfig>,
    /// Which of the tenant's notifiers an alert goes to when its rule names none.
    pub routing: crate::notify::notifiers::RoutingConfig,
    /// The tenant's Prometheus targets (`[[tenants.NAME.scrape_configs]]`).
    pub scrape_configs: Vec<crate::scrape::target::ScrapeConfig>,
    /// The tenant's `[[tenants.NAME.inhibit_rules]]` (default: the top-level ones).
    pub inhibit_rules: Vec<crate::notify::route::InhibitRuleConfig>,
    /// The tenant's `[[tenants.NAME.time_intervals]]` (default: the top-level ones).
    pub time_intervals: Vec<crate::notify::time_interval::TimeIntervalConfig>,
    /// Overrides of `[limits]` for this tenant.
    pub limits: LimitsConfig,
}

/// Everything one tenant's world is built from, resolved and validated.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    pub name: String,
    pub queries_dir: PathBuf,
    pub notifiers: BTreeMap<String, crate::notify::notifiers::NotifierConfig>,
    pub routing: crate::notify::notifiers::RoutingConfig,
    /// `[[scrape_configs]]` (and, for the default tenant, `prometheus_config`'s jobs).
    pub scrape_configs: Vec<crate::scrape::target::ScrapeConfig>,
    /// The tenant's inhibit rules, or the top-level ones when it has none.
    pub inhibit_rules: Vec<crate::notify::route::InhibitRuleConfig>,
    /// The tenant's time intervals, or the top-level ones when it has none.
    pub time_intervals: Vec<crate::notify::time_interval::TimeIntervalConfig>,
    /// `[limits]` with the tenant's overrides applied.
    pub limits: LimitsConfig,
    /// Whether `SLACK_WEBHOOK_URL` may be the tenant's Slack: the default tenant's only,
    /// or one team's alerts would go to another team's channel.
    pub slack_from_env: bool,
}

impl TenantSpec {
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_TENANT
    }
}

/// What a tenant falls back on: the top-level options.
pub struct TopLevel<'a> {
    pub limits: &'a LimitsConfig,
    pub queries_dir: &'a std::path::Path,
    pub inhibit_rules: &'a [crate::notify::route::InhibitRuleConfig],
    pub time_intervals: &'a [crate::notify::time_interval::TimeIntervalConfig],
}

impl TenantConfig {
    /// The tenant's inhibit rules, or the top-level ones when it has none.
    pub fn inhibit_rules<'a>(
        &'a self,
        top: &'a [crate::notify::route::InhibitRuleConfig],
    ) -> &'a [crate::notify::route::InhibitRuleConfig] {
        if self.inhibit_rules.is_empty() {
            top
        } else {
            &self.inhibit_rules
        }
    }

    /// The tenant's time intervals, or the top-level ones when it has none.
    pub fn time_intervals<'a>(
        &'a self,
        top: &'a [crate::notify::time_interval::TimeIntervalConfig],
    ) -> &'a [crate::notify::time_interval::TimeIntervalConfig] {
        if self.time_intervals.is_empty() {
            top
        } else {
            &self.time_intervals
        }
    }
}

/// Checks the `[tenants]` tables and `[limits]`; every error names its file and field.
pub fn validate(
    tenants: &BTreeMap<String, TenantConfig>,
    top: &TopLevel<'_>,
    origin: &str,
) -> Vec<String> {
    let (defaults, top_level_queries_dir) = (top.limits, top.queries_dir);
    let mut errors: Vec<String> = defaults
        .validate("limits")
        .into_iter()
        .map(|error| format!("{origin}: {error}"))
        .collect();
    let mut queries_dirs = BTreeMap::new();
    queries_dirs.insert(
        top_level_queries_dir.to_path_buf(),
        DEFAULT_TENANT.to_owned(),
    );
    for (name, tenant) in tenants {
        let field = format!("tenants.{name}");
        if let Some(error) = name_error(name) {
            errors.push(format!("{origin}: `{field}`: {error}"));
            continue;
        }
        if name == DEFAULT_TENANT {
            errors.push(format!(
                "{origin}: `{field}`: `{DEFAULT_TENANT}` is the tenant of the top-level options (queries_dir, notifiers, routing, scrape_configs, [limits]); configure it there or name this tenant differently"
            ));
            continue;
        }
        let queries_dir = queries_dir(tenant, name, top_level_queries_dir);
        if let Some(other) = queries_dirs.insert(queries_dir.clone(), name.clone()) {
            errors.push(format!(
                "{origin}: `{field}.queries_dir`: `{}` is also tenant `{other}`'s rules directory; each tenant needs its own",
                queries_dir.display()
            ));
        }
        errors.extend(
            tenant
                .limits
                .merged_over(defaults)
                .validate(&format!("{field}.limits"))
                .into_iter()
                .map(|error| format!("{origin}: {error}")),
        );
        errors.extend(crate::notify::notifiers::validate(
            &tenant.notifiers,
            &format!("{origin}: [{field}]"),
        ));
        // inherited top-level lists were checked at the top level: only the tenant's own
        // are reported here, while its routes are checked against what it will use
        let intervals = crate::notify::time_interval::TimeIntervals::build(
            tenant.time_intervals(top.time_intervals),
        )
        .unwrap_or_else(|found| {
            if !tenant.time_intervals.is_empty() {
                errors.extend(
                    found
                        .into_iter()
                        .map(|error| format!("{origin}: [{field}] {error}")),
                );
            }
            Default::default()
        });
        errors.extend(
            crate::notify::route::validate(&tenant.routing, &tenant.inhibit_rules, &intervals)
                .into_iter()
                .map(|error| format!("{origin}: [{field}] {error}")),
        );
        for scrape in &tenant.scrape_configs {
            if let Err(found) = crate::scrape::target::Job::new(scrape.clone()) {
                errors.extend(
                    found
                        .into_iter()
                        .map(|error| format!("{origin}: [{field}] {error}")),
                );
            }
        }
    }
    errors
}

pub fn queries_dir(tenant: &TenantConfig, name: &str, top_level: &std::path::Path) -> PathBuf {
    tenant
        .queries_dir
        .clone()
        .unwrap_or_else(|| top_level.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(toml_text: &str) -> Vec<String> {
        let config: crate::config::Config = toml::from_str(toml_text).expect("parses");
        config
            .validate("lookout.toml")
            .err()
            .map(|error| error.errors)
            .unwrap_or_default()
    }

    #[test]
    fn tenant_names_that_could_escape_the_data_directory_are_refused() {
        for bad in [
            "../etc",
            "Team",
            "a/b",
            "a.b",
            "",
            "ümlaut",
            &"x".repeat(65),
        ] {
            assert!(name_error(bad).is_some(), "`{bad}` must be refused");
        }
        for good in ["team-a", "team_b", "42", &"x".repeat(64)] {
            assert_eq!(name_error(good), None, "`{good}` is a fine name");
        }
        let errors = errors_of("[tenants.\"../escape\"]\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "lookout.toml: `tenants.../escape`: tenant name `../escape` may hold only"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn the_default_tenant_and_shared_rules_directories_are_refused_with_the_field() {
        let errors = errors_of(
            "queries_dir = \"rules\"\n[tenants.default]\n[tenants.a]\nqueries_dir = \"rules\"\n[tenants.b]\nqueries_dir = \"rules/a\"\n",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("`tenants.a.queries_dir`: `rules` is also tenant `default`'s"),
            "{errors:?}"
        );
        assert!(
            errors[1]
                .contains("`tenants.default`: `default` is the tenant of the top-level options"),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_limits_name_the_tenant_and_field() {
        let errors = errors_of(
            "[limits]\ningest_burst_bytes = 10\n[tenants.a.limits]\nmax_concurrent_queries = 0\n",
        );
        assert_eq!(
            errors,
            [
                "lookout.toml: `limits.ingest_burst_bytes`: needs `ingest_rate_bytes` too (a burst of what rate?)",
                "lookout.toml: `tenants.a.limits.ingest_burst_bytes`: needs `ingest_rate_bytes` too (a burst of what rate?)",
                "lookout.toml: `tenants.a.limits.max_concurrent_queries`: must be between 1 and 256",
            ]
        );
    }

    #[test]
    fn each_tenant_gets_its_own_rules_directory_and_merged_limits() {
        let config: crate::config::Config = toml::from_str(
            "queries_dir = \"q\"\n[limits]\nmax_rules = 5\nmax_active_series = 100\n[tenants.team-a.limits]\nmax_rules = 2\n[tenants.team-b]\nqueries_dir = \"/srv/b\"\n",
        )
        .expect("parses");
        config.validate("lookout.toml").expect("valid");
        let specs = crate::app::tenant_specs(&config, Vec::new());
        let names: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
        assert_eq!(names, ["default", "team-a", "team-b"]);
        assert_eq!(specs[0].queries_dir, PathBuf::from("q"));
        assert_eq!(specs[1].queries_dir, PathBuf::from("q/team-a"));
        assert_eq!(specs[2].queries_dir, PathBuf::from("/srv/b"));
        assert_eq!(specs[1].limits.max_rules, Some(2));
        assert_eq!(specs[1].limits.max_active_series, Some(100));
        assert_eq!(specs[2].limits.max_rules, Some(5));
        assert!(specs[0].slack_from_env && !specs[1].slack_from_env);
    }

    #[test]
    fn a_tenant_without_inhibit_rules_or_time_intervals_uses_the_top_level_ones() {
        let config: crate::config::Config = toml::from_str(
            "[[inhibit_rules]]\nsource_matchers = ['severity=\"critical\"']\ntarget_matchers = ['severity=\"warning\"']\n\
             [[time_intervals]]\nname = \"top\"\n\
             [tenants.own]\n[[tenants.own.inhibit_rules]]\nsource_matchers = ['team=\"own\"']\ntarget_matchers = ['severity=\"info\"']\n\
             [[tenants.own.time_intervals]]\nname = \"own-quiet\"\n\
             [tenants.inherits]\n",
        )
        .expect("parses");
        config.validate("lookout.toml").expect("valid");
        let specs = crate::app::tenant_specs(&config, Vec::new());
        let (inherits, own) = (&specs[1], &specs[2]);
        assert_eq!(
            (inherits.name.as_str(), own.name.as_str()),
            ("inherits", "own")
        );
        assert_eq!(inherits.time_intervals[0].name, "top");
        assert_eq!(own.time_intervals[0].name, "own-quiet");
        assert_eq!(own.inhibit_rules.len(), 1);
        assert_eq!(inherits.inhibit_rules.len(), 1);
        assert_ne!(
            format!("{:?}", own.inhibit_rules),
            format!("{:?}", inherits.inhibit_rules)
        );
        // a route of a tenant names its own intervals, not another tenant's
        let errors = errors_of(
            "[tenants.a]\n[[tenants.a.time_intervals]]\nname = \"a-quiet\"\n\
             [tenants.b.routing]\n[[tenants.b.routing.routes]]\nmute_time_intervals = [\"a-quiet\"]\n",
        );
        assert!(
            errors
                .iter()
                .any(|error| error.contains("[tenants.b]") && error.contains("a-quiet")),
            "{errors:?}"
        );
    }

    #[test]
    fn the_documented_two_tenant_example_is_valid() {
        let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tenants.md");
        let page = std::fs::read_to_string(page).expect("docs/tenants.md");
        let example = page
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml example");
        let config: crate::config::Config = toml::from_str(example).expect("the example parses");
        // its webhook URLs come from an environment variable and a file of the reader's
        let errors = config
            .validate("docs/tenants.md")
            .err()
            .map(|error| error.errors)
            .unwrap_or_default();
        assert!(
            errors
                .iter()
                .all(|error| error.contains("`notifiers.") && error.contains(".url_")),
            "{errors:?}"
        );
        let specs = crate::app::tenant_specs(&config, Vec::new());
        let names: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
        assert_eq!(names, ["default", "checkout", "search"]);
        assert_eq!(specs[1].queries_dir, PathBuf::from("queries/checkout"));
        assert_eq!(specs[1].limits.max_concurrent_queries, Some(2));
        assert_eq!(specs[2].limits.ingest_rate_bytes, Some(1_048_576));
    }
}
