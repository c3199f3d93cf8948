//! Named notifiers and the routes that pick them (DESIGN §5–6).
//!
//! ```toml
//! [notifiers.slack]            # type: slack | webhook | console | ui
//! type = "slack"
//! url_env = "SLACK_WEBHOOK_URL"
//!
//! [notifiers.pager]
//! type = "webhook"             # Alertmanager's webhook payload
//! url_file = "/etc/lookout/pager-url"
//!
//! [routing]
//! default = ["slack"]
//! [[routing.routes]]
//! match = { severity = "info" }
//! notify = ["ui"]              # shown in the API, the history and the UI; not sent
//! ```
//!
//! A rule's `notify` overrides the routes. Otherwise the routing tree
//! ([`super::route`], Alertmanager's: nested `routes`, `matchers`, `match` / `match_re`,
//! `continue`) picks the notifiers from the alert's labels — its group labels, the
//! rule's `labels`, `alertname` and `severity`; no match: `routing.default`. `console` and
//! `ui` always exist. A name nobody configured (e.g. `slack` without a webhook) falls back
//! to the console with a warning at start; `lookout check` warns, it does not fail. With no
//! notifier configured at all, `SLACK_WEBHOOK_URL` in the environment creates `slack`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::route::{Destination, RouteNode, RouteTree};
pub use super::route::{Route, RoutingConfig};
use super::webhook::Webhook;
use crate::secret::Secret;

/// What kind of notifier a `[notifiers.NAME]` table configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    /// A Slack incoming webhook: Block Kit messages, one per second at most.
    Slack,
    /// Any HTTP receiver of Alertmanager's webhook payload (version 4).
    Webhook,
    /// Logged and printed to stdout.
    Console,
    /// Not sent anywhere: the alert shows in the API, the history and the UI.
    Ui,
}

/// One `[notifiers.NAME]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    #[serde(rename = "type")]
    pub kind: NotifierKind,
    /// The URL itself (prefer `url_env` or `url_file`: a webhook URL is a secret).
    #[serde(default, skip_serializing)]
    pub url: Option<Secret>,
    /// Environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// File holding the URL (trailing newline ignored).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Messages per second at most (default: 1 for Slack, 10 for webhooks).
    #[serde(default)]
    pub max_per_second: Option<f64>,
}

/// `[notify]`: how alert messages are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// How long a message is retried (HTTP 429, 5xx, transport errors) before it is given
    /// up, counted from when it was recorded: a restart does not extend it.
    #[serde(with = "crate::duration_serde")]
    pub delivery_deadline: Duration,
}

impl NotifyConfig {
    /// The default [`NotifyConfig::delivery_deadline`].
    pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(10 * 60);
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            delivery_deadline: NotifyConfig::DELIVERY_DEADLINE,
        }
    }
}

/// Checks notifier tables; each error names its field (the routes are checked by
/// [`super::route::validate`]).
pub fn validate(notifiers: &BTreeMap<String, NotifierConfig>, origin: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for (name, notifier) in notifiers {
        let field = format!("notifiers.{name}");
        if BUILT_IN.contains(&name.as_str()) {
            errors.push(format!(
                "{origin}: `{field}`: `{name}` is built in; pick another name"
            ));
        }
        let sources = usize::from(notifier.url.is_some())
            + usize::from(notifier.url_env.is_some())
            + usize::from(notifier.url_file.is_some());
        match notifier.kind {
            NotifierKind::Slack | NotifierKind::Webhook if sources != 1 => errors.push(format!(
                "{origin}: `{field}`: a {:?} notifier needs exactly one of `url_env`, `url_file` or `url`",
                notifier.kind
            ).to_lowercase()),
            NotifierKind::Console | NotifierKind::Ui if sources != 0 => errors.push(format!(
                "{origin}: `{field}`: a console or ui notifier takes no url"
            )),
            _ => {}
        }
        if notifier.url.is_some() || notifier.url_env.is_some() || notifier.url_file.is_some() {
            match resolve_url(notifier) {
                Ok(url) if url.starts_with("http://") || url.starts_with("https://") => {}
                // the URL is a secret: say what is wrong, never what it is
                Ok(_) => errors.push(format!(
                    "{origin}: `{field}`: the url must start with http:// or https://"
                )),
                Err(error) => errors.push(format!("{origin}: `{field}.{error}")),
            }
        }
        if let Some(rate) = notifier.max_per_second
            && !(rate > 0.0 && rate <= 1000.0)
        {
            errors.push(format!(
                "{origin}: `{field}.max_per_second`: must be above 0 and at most 1000"
            ));
        }
    }
    errors
}

/// Notifier names that exist without configuration.
pub const BUILT_IN: [&str; 2] = ["console", "ui"];

fn resolve_url(notifier: &NotifierConfig) -> Result<String, String> {
    crate::secret::resolve_secret(
        notifier.url.as_ref().map(|secret| secret.0.as_str()),
        notifier.url_env.as_deref(),
        notifier.url_file.as_deref(),
    )
    .map_err(|(field, error)| format!("url_{field}`: {error}"))?
    .ok_or_else(|| "url`: missing".to_string())
}

/// Where a message goes.
pub enum Notifier {
    Slack(Webhook),
    /// Alertmanager's webhook payload.
    Webhook(Webhook),
    Console,
    /// Nowhere: API, history and UI only.
    Ui,
}

/// The configured notifiers by name, and the routing tree.
pub struct Notifiers {
    by_name: BTreeMap<String, Arc<Notifier>>,
    tree: RouteTree,
}

impl Notifiers {
    /// Builds the notifiers of a validated config. With none configured,
    /// `slack_from_environment` (the `SLACK_WEBHOOK_URL` variable) creates `slack`.
    pub fn build(
        notifiers: &BTreeMap<String, NotifierConfig>,
        routing: &RoutingConfig,
        slack_from_environment: Option<String>,
    ) -> Result<Notifiers, String> {
        let mut by_name: BTreeMap<String, Arc<Notifier>> = BTreeMap::new();
        by_name.insert("console".into(), Arc::new(Notifier::Console));
        by_name.insert("ui".into(), Arc::new(Notifier::Ui));
        for (name, config) in notifiers {
            let spacing = |default: f64| {
                Duration::from_secs_f64(1.0 / config.max_per_second.unwrap_or(default))
            };
            let notifier = match config.kind {
                NotifierKind::Slack => Notifier::Slack(Webhook::new(
                    Secret(
                        resolve_url(config)
                            .map_err(|error| format!("`notifiers.{name}.{error}"))?,
                    ),
                    spacing(1.0),
                )),
                NotifierKind::Webhook => Notifier::Webhook(Webhook::new(
                    Secret(
                        resolve_url(config)
                            .map_err(|error| format!("`notifiers.{name}.{error}"))?,
                    ),
                    spacing(10.0),
                )),
                NotifierKind::Console => Notifier::Console,
                NotifierKind::Ui => Notifier::Ui,
            };
            by_name.insert(name.clone(), Arc::new(notifier));
        }
        if notifiers.is_empty()
            && let Some(url) = slack_from_environment.filter(|url| !url.trim().is_empty())
        {
            by_name.insert(
                "slack".into(),
                Arc::new(Notifier::Slack(Webhook::slack(Secret(
                    url.trim().to_string(),
                )))),
            );
        }
        let default = if routing.default.is_empty() {
            vec![
                if by_name.contains_key("slack") {
                    "slack"
                } else {
                    "console"
                }
                .to_string(),
            ]
        } else {
            routing.default.clone()
        };
        let built = Notifiers {
            tree: RouteTree::build(routing, default),
            by_name,
        };
        for (path, name) in built.tree.receivers() {
            built.warn_if_unknown(&name, &path);
        }
        Ok(built)
    }

    /// Logs a warning when `name` is not configured (it falls back to the console);
    /// returns whether it is.
    pub fn warn_if_unknown(&self, name: &str, used_by: &str) -> bool {
        let known = self.by_name.contains_key(name);
        if !known {
            tracing::warn!(
                notifier = name,
                used_by,
                "notifier not configured; its alerts go to the console"
            );
        }
        known
    }

    /// The notifier called `name`, or the console when there is none.
    pub fn get(&self, name: &str) -> Arc<Notifier> {
        self.by_name
            .get(name)
            .or_else(|| self.by_name.get("console"))
            .cloned()
            .expect("the console is built in")
    }

    /// Where an alert with these labels goes: the rule's own `notify` when it has one,
    /// else the routing tree; an unknown notifier is replaced by the console, and each
    /// destination is listed once.
    pub fn destinations(
        &self,
        rule_notify: &[String],
        labels: &BTreeMap<String, String>,
    ) -> Vec<(Destination, &RouteNode)> {
        let mut destinations = self.tree.destinations(rule_notify, labels);
        // an unknown name is delivered by the console: say so once per message, not twice
        for (destination, _) in &mut destinations {
            if !self.by_name.contains_key(destination.notifier.as_str()) {
                destination.notifier = "console".into();
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        destinations.retain(|(destination, _)| seen.insert(destination.notifier.clone()));
        destinations
    }

    /// The notifier names an alert with these labels goes to (see
    /// [`Notifiers::destinations`]), each once.
    pub fn route(&self, rule_notify: &[String], labels: &BTreeMap<String, String>) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        self.destinations(rule_notify, labels)
            .into_iter()
            .map(|(destination, _)| destination.notifier)
            .filter(|name| seen.insert(name.clone()))
            .collect()
    }

    /// The routing tree.
    pub fn tree(&self) -> &RouteTree {
        &self.tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn routes_pick_by_severity_and_labels_and_a_rule_overrides_them() {
        let config: crate::config::Config = toml::from_str(
            r#"
            [notifiers.pager]
            type = "webhook"
            url = "http://127.0.0.1:1/"
            [notifiers.team]
            type = "slack"
            url = "http://127.0.0.1:2/"
            [routing]
            default = ["team"]
            [[routing.routes]]
            match = { severity = "info" }
            notify = ["ui"]
            [[routing.routes]]
            match = { severity = "critical" }
            match_re = { team = "pay.*" }
            notify = ["pager"]
            continue = true
            [[routing.routes]]
            match_re = { team = "pay.*" }
            notify = ["team", "pager"]
            "#,
        )
        .expect("parses");
        config.validate("lookout.toml").expect("valid");
        let notifiers = Notifiers::build(&config.notifiers, &config.routing, None).expect("builds");
        let route = |rule: &[&str], pairs: &[(&str, &str)]| {
            let rule: Vec<String> = rule.iter().map(|name| name.to_string()).collect();
            notifiers.route(&rule, &labels(pairs))
        };
        assert_eq!(
            route(&[], &[("severity", "info"), ("team", "payments")]),
            ["ui"]
        );
        assert_eq!(
            route(&[], &[("severity", "critical"), ("team", "payments")]),
            ["pager", "team"],
            "continue lets the next route add its notifiers, each once"
        );
        assert_eq!(
            route(&[], &[("severity", "warning"), ("team", "search")]),
            ["team"]
        );
        assert_eq!(
            route(&[], &[("severity", "critical"), ("team", "xpay")]),
            ["team"],
            "anchored"
        );
        assert_eq!(
            route(&["ui"], &[("severity", "critical"), ("team", "payments")]),
            ["ui"]
        );
        assert_eq!(
            route(&["nobody"], &[]),
            ["console"],
            "unknown falls back to the console"
        );
    }

    #[test]
    fn slack_from_the_environment_only_without_configured_notifiers() {
        let empty = BTreeMap::new();
        let routing = RoutingConfig::default();
        let with_env = Notifiers::build(&empty, &routing, Some("http://127.0.0.1:9/hook".into()))
            .expect("builds");
        assert_eq!(with_env.route(&[], &BTreeMap::new()), ["slack"]);
        assert!(matches!(*with_env.get("slack"), Notifier::Slack(_)));
        let without = Notifiers::build(&empty, &routing, None).expect("builds");
        assert_eq!(without.route(&[], &BTreeMap::new()), ["console"]);
    }

    #[test]
    fn bad_notifier_tables_name_their_field_and_never_the_url() {
        let config: crate::config::Config = toml::from_str(
            r#"
            [notifiers.a]
            type = "slack"
            [notifiers.b]
            type = "webhook"
            url = "ftp://secret-host/hook"
            [notifiers.console]
            type = "console"
            [notifiers.c]
            type = "webhook"
            url_env = "LOOKOUT_TEST_UNSET_VARIABLE"
            [[routing.routes]]
            match_re = { team = "(" }
            notify = []
            "#,
        )
        .expect("parses");
        let errors = config.validate("lookout.toml").expect_err("invalid").errors;
        let text = errors.join("\n");
        for expected in [
            "`notifiers.a`: a slack notifier needs exactly one of",
            "`notifiers.b`: the url must start with http",
            "`notifiers.console`: `console` is built in",
            "`notifiers.c.url_env`: environment variable `LOOKOUT_TEST_UNSET_VARIABLE` is not set",
            "`routing.routes[0].notify`",
            "`routing.routes[0].match_re.team`",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(!text.contains("secret-host"), "{text}");
        let unknown = toml::from_str::<crate::config::Config>("[notifiers.a]\ntype = \"email\"\n")
            .expect_err("unknown type");
        assert!(unknown.to_string().contains("email"), "{unknown}");
    }
}
