//! Named notifiers and the routes that pick them (DESIGN §5–6).
//!
//! ```toml
//! [notifiers.slack]            # type: slack | webhook | pagerduty | email | msteams | alertmanager | console | ui
//! type = "slack"
//! url_env = "SLACK_WEBHOOK_URL"
//!
//! [notifiers.hook]
//! type = "webhook"             # Alertmanager's webhook payload
//! url_file = "/etc/lookout/hook-url"
//!
//! [notifiers.pager]
//! type = "pagerduty"           # Events API v2
//! routing_key_env = "PAGERDUTY_ROUTING_KEY"
//!
//! [notifiers.am]
//! type = "alertmanager"        # every peer of the cluster, through its v2 API
//! urls = ["http://am-1:9093", "http://am-2:9093"]
//!
//! [notifiers.mail]
//! type = "email"
//! smtp = "smtp.example.com:587"
//! from = "Lookout <alerts@example.com>"
//! to = ["oncall@example.com"]
//! title_template = "{{ $rule }} on {{ $labels.service }}"
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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::alertmanager::Alertmanager;
use super::email::Email;
use super::message::AlertMessage;
use super::pagerduty::PagerDuty;
use super::route::{Destination, RouteNode, RouteTree};
pub use super::route::{Route, RoutingConfig};
use super::webhook::{Attempt, Outcome, Webhook};
use crate::secret::Secret;
use crate::template::{MessageData, Template, TemplateData};

pub use super::notifier_config::{NotifierConfig, NotifierKind};

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
        errors.extend(
            validate_notifier(notifier)
                .into_iter()
                // an error of the table itself starts with the backtick
                .map(|error| {
                    let dot = if error.starts_with('`') { "" } else { "." };
                    format!("{origin}: `{field}{dot}{error}")
                }),
        );
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

/// Checks that every route's receiver is a notifier (configured, built in, or the
/// `slack` that `SLACK_WEBHOOK_URL` creates when none is configured): a typo would
/// otherwise send a page to the console. Each error names the route's field and the
/// known names.
pub fn validate_receivers(
    notifiers: &BTreeMap<String, NotifierConfig>,
    routing: &RoutingConfig,
    origin: &str,
) -> Vec<String> {
    let mut known: BTreeSet<String> = notifiers.keys().cloned().collect();
    known.extend(BUILT_IN.map(String::from));
    if notifiers.is_empty() {
        known.insert("slack".into());
    }
    unknown_receivers(routing, &known)
        .into_iter()
        .map(|error| format!("{origin}: {error}"))
        .collect()
}

/// An error for each receiver of `routing` that is not among the `known` notifiers.
fn unknown_receivers(routing: &RoutingConfig, known: &BTreeSet<String>) -> Vec<String> {
    let names: Vec<String> = known.iter().map(|name| format!("`{name}`")).collect();
    routing
        .receiver_names()
        .into_iter()
        .filter(|(_, name)| !known.contains(name))
        .map(|(field, name)| {
            format!(
                "`{field}`: no notifier is called `{name}`; define `[notifiers.{name}]` or name one of the known notifiers: {}",
                names.join(", ")
            )
        })
        .collect()
}

/// The errors of one notifier table, each starting with its field name and a backtick
/// (``smtp`: …``; just the backtick for the table itself), never with a secret's value.
fn validate_notifier(notifier: &NotifierConfig) -> Vec<String> {
    let mut errors = Vec::new();
    let kind = notifier.kind;
    let url_sources = usize::from(notifier.url.is_some())
        + usize::from(notifier.url_env.is_some())
        + usize::from(notifier.url_file.is_some());
    let key_sources = usize::from(notifier.routing_key.is_some())
        + usize::from(notifier.routing_key_env.is_some())
        + usize::from(notifier.routing_key_file.is_some());
    match kind {
        NotifierKind::Slack | NotifierKind::Webhook | NotifierKind::MsTeams if url_sources != 1 => {
            errors.push(format!(
                "`: a {} notifier needs exactly one of `url_env`, `url_file` or `url`",
                kind.name()
            ))
        }
        NotifierKind::PagerDuty if url_sources > 1 => errors.push(
            "url`: give at most one of `url_env`, `url_file` or `url` (default: PagerDuty's Events API)".into(),
        ),
        NotifierKind::Email
        | NotifierKind::Alertmanager
        | NotifierKind::Console
        | NotifierKind::Ui
            if url_sources != 0 =>
        {
            errors.push(format!("`: a {} notifier takes no url", kind.name()))
        }
        _ => {}
    }
    if url_sources > 0 {
        match resolve_url(notifier) {
            Ok(url) if url.starts_with("http://") || url.starts_with("https://") => {}
            // the URL is a secret: say what is wrong, never what it is
            Ok(_) => errors.push("`: the url must start with http:// or https://".into()),
            Err(error) => errors.push(error),
        }
    }
    if kind == NotifierKind::PagerDuty {
        if key_sources != 1 {
            errors.push("routing_key`: a pagerduty notifier needs exactly one of `routing_key_env`, `routing_key_file` or `routing_key`".into());
        } else if let Err(error) = resolve_routing_key(notifier) {
            errors.push(error);
        }
    } else if key_sources > 0 {
        errors.push(format!(
            "routing_key`: only a pagerduty notifier takes a routing key, not a {} one",
            kind.name()
        ));
    }
    if kind == NotifierKind::Alertmanager {
        errors.extend(super::alertmanager::validate(notifier));
    } else {
        errors.extend(super::alertmanager::foreign_fields(notifier));
    }
    if kind == NotifierKind::Email {
        errors.extend(super::email::validate(notifier));
    } else {
        let email_fields = [
            ("smtp", notifier.smtp.is_some()),
            ("starttls", notifier.starttls.is_some()),
            ("ca_file", notifier.ca_file.is_some()),
            ("username", notifier.username.is_some()),
            ("password", notifier.password.is_some()),
            ("password_env", notifier.password_env.is_some()),
            ("password_file", notifier.password_file.is_some()),
            ("from", notifier.from.is_some()),
            ("to", !notifier.to.is_empty()),
            ("cc", !notifier.cc.is_empty()),
        ];
        for (field, _) in email_fields.iter().filter(|(_, set)| *set) {
            errors.push(format!(
                "{field}`: only an email notifier takes `{field}`, not a {} one",
                kind.name()
            ));
        }
    }
    for (field, text) in [
        ("title_template", &notifier.title_template),
        ("body_template", &notifier.body_template),
    ] {
        let Some(text) = text else { continue };
        if kind == NotifierKind::Ui {
            errors.push(format!("{field}`: a ui notifier sends nothing to template"));
        } else if let Err(error) = Template::parse_notifier(text) {
            errors.push(format!("{field}`: {error}"));
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

fn resolve_routing_key(notifier: &NotifierConfig) -> Result<String, String> {
    crate::secret::resolve_secret(
        notifier
            .routing_key
            .as_ref()
            .map(|secret| secret.0.as_str()),
        notifier.routing_key_env.as_deref(),
        notifier.routing_key_file.as_deref(),
    )
    .map_err(|(field, error)| format!("routing_key_{field}`: {error}"))?
    .filter(|key| !key.is_empty())
    .ok_or_else(|| "routing_key`: missing or empty".to_string())
}

/// Where a message goes.
pub enum Notifier {
    Slack(Webhook),
    /// Alertmanager's webhook payload.
    Webhook(Webhook),
    PagerDuty(PagerDuty),
    Email(Email),
    /// Adaptive Cards to a Teams Workflows webhook.
    MsTeams(Webhook),
    /// Every peer of an Alertmanager cluster (which resends on its own, too).
    Alertmanager(Arc<Alertmanager>),
    Console,
    /// Nowhere: API, history and UI only.
    Ui,
}

impl Notifier {
    /// Delivers `payload` (built for this notifier by the dispatcher), retrying as
    /// DESIGN §6 says until `deadline`, telling `report` about each attempt as it ends;
    /// `None` for the console and UI-only notifiers, which send nothing.
    pub async fn deliver_reporting(
        &self,
        payload: &serde_json::Value,
        deadline: tokio::time::Instant,
        report: &(dyn Fn(Attempt) + Send + Sync),
    ) -> Option<Outcome> {
        Some(match self {
            Notifier::Slack(webhook) | Notifier::Webhook(webhook) | Notifier::MsTeams(webhook) => {
                webhook.deliver_reporting(payload, deadline, report).await
            }
            Notifier::PagerDuty(pagerduty) => {
                pagerduty.deliver_reporting(payload, deadline, report).await
            }
            Notifier::Email(email) => email.deliver_reporting(payload, deadline, report).await,
            Notifier::Alertmanager(alertmanager) => {
                alertmanager
                    .deliver_reporting(payload, deadline, report)
                    .await
            }
            Notifier::Console | Notifier::Ui => return None,
        })
    }
}

/// A notifier's `title_template` and `body_template`, parsed.
#[derive(Default)]
struct Templates {
    title: Option<Template>,
    body: Option<Template>,
}

/// The configured notifiers by name, their templates, and the routing tree.
pub struct Notifiers {
    by_name: BTreeMap<String, Arc<Notifier>>,
    templates: BTreeMap<String, Templates>,
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
        let mut templates = BTreeMap::new();
        by_name.insert("console".into(), Arc::new(Notifier::Console));
        by_name.insert("ui".into(), Arc::new(Notifier::Ui));
        for (name, config) in notifiers {
            let spacing = |default: f64| {
                Duration::from_secs_f64(1.0 / config.max_per_second.unwrap_or(default))
            };
            let in_field = |error: String| format!("`notifiers.{name}.{error}");
            let url = || resolve_url(config).map(Secret).map_err(in_field);
            let notifier = match config.kind {
                NotifierKind::Slack => Notifier::Slack(Webhook::new(url()?, spacing(1.0))),
                NotifierKind::Webhook => Notifier::Webhook(Webhook::new(url()?, spacing(10.0))),
                NotifierKind::MsTeams => Notifier::MsTeams(Webhook::new(url()?, spacing(1.0))),
                NotifierKind::PagerDuty => {
                    let endpoint = if config.url.is_some()
                        || config.url_env.is_some()
                        || config.url_file.is_some()
                    {
                        url()?
                    } else {
                        Secret(super::pagerduty::DEFAULT_URL.to_string())
                    };
                    Notifier::PagerDuty(PagerDuty::new(
                        Secret(resolve_routing_key(config).map_err(in_field)?),
                        Webhook::new(endpoint, spacing(2.0)),
                    ))
                }
                NotifierKind::Email => Notifier::Email(Email::new(config).map_err(in_field)?),
                NotifierKind::Alertmanager => Notifier::Alertmanager(Arc::new(
                    Alertmanager::new(name, config).map_err(in_field)?,
                )),
                NotifierKind::Console => Notifier::Console,
                NotifierKind::Ui => Notifier::Ui,
            };
            by_name.insert(name.clone(), Arc::new(notifier));
            let parse = |field: &str, text: &Option<String>| {
                text.as_deref()
                    .map(Template::parse_notifier)
                    .transpose()
                    .map_err(|error| in_field(format!("{field}`: {error}")))
            };
            templates.insert(
                name.clone(),
                Templates {
                    title: parse("title_template", &config.title_template)?,
                    body: parse("body_template", &config.body_template)?,
                },
            );
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
            templates,
        };
        let unknown = unknown_receivers(routing, &built.by_name.keys().cloned().collect());
        if !unknown.is_empty() {
            return Err(unknown.join("\n"));
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

    /// `message` as notifier `name` sends it: with its `title_template` and
    /// `body_template` (which replaces the summary) rendered, when it has them.
    pub fn templated<'a>(
        &self,
        name: &str,
        message: &'a AlertMessage,
    ) -> std::borrow::Cow<'a, AlertMessage> {
        let Some(templates) = self
            .templates
            .get(name)
            .filter(|templates| templates.title.is_some() || templates.body.is_some())
        else {
            return std::borrow::Cow::Borrowed(message);
        };
        let data = template_data(message);
        let mut templated = message.clone();
        if let Some(title) = &templates.title {
            templated.title = Some(title.render(&data));
        }
        if let Some(body) = &templates.body {
            templated.summary = body.render(&data);
        }
        std::borrow::Cow::Owned(templated)
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

    /// Every notifier's name, the built-in `console` included (Alertmanager's receivers).
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The routing tree.
    pub fn tree(&self) -> &RouteTree {
        &self.tree
    }

    /// The `alertmanager` notifiers, by name.
    pub fn alertmanagers(&self) -> Vec<Arc<Alertmanager>> {
        self.by_name
            .values()
            .filter_map(|notifier| match notifier.as_ref() {
                Notifier::Alertmanager(alertmanager) => Some(Arc::clone(alertmanager)),
                _ => None,
            })
            .collect()
    }
}

/// What notifier templates see of `message`: its first alert as `$labels` (with the
/// rule's labels, `alertname` and `severity`), `$value` and `$count`, and the message.
fn template_data(message: &AlertMessage) -> TemplateData {
    let first = message.alerts.first();
    let value = first.map_or(0.0, |alert| alert.value);
    TemplateData {
        labels: first.map_or_else(
            || message.labels.clone(),
            |alert| super::message::alert_labels(message, alert),
        ),
        value,
        count: value.max(0.0) as u64,
        window: message.window.clone(),
        threshold: message.threshold.clone(),
        rule: message.rule.clone(),
        resolved: message.kind == super::message::MessageKind::Resolved,
        reference: first.and_then(|alert| alert.reference),
        message: MessageData {
            severity: message.severity.clone(),
            alerts: message.alerts.len() as u64,
            samples: message.samples.clone(),
            context: message.context.clone(),
            link: message
                .link
                .as_ref()
                .map(|(url, _)| url.clone())
                .unwrap_or_default(),
            runbook_url: message.runbook_url.clone().unwrap_or_default(),
        },
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
    fn a_route_naming_no_notifier_is_an_error_naming_the_route_and_the_known_ones() {
        let config: crate::config::Config = toml::from_str(
            r#"
            [notifiers.pager]
            type = "webhook"
            url = "http://127.0.0.1:1/"
            [routing]
            default = ["pager"]
            [[routing.routes]]
            matchers = ['severity="critical"']
            receiver = "pagr"
              [[routing.routes.routes]]
              match = { team = "payments" }
              notify = ["ui", "slak"]
            "#,
        )
        .expect("parses");
        let errors = config.validate("lookout.toml").expect_err("invalid").errors;
        let known = "known notifiers: `console`, `pager`, `ui`";
        assert_eq!(
            errors,
            [
                format!(
                    "lookout.toml: `routing.routes[0].receiver`: no notifier is called `pagr`; define `[notifiers.pagr]` or name one of the {known}"
                ),
                format!(
                    "lookout.toml: `routing.routes[0].routes[0].notify`: no notifier is called `slak`; define `[notifiers.slak]` or name one of the {known}"
                ),
            ]
        );
        let built = Notifiers::build(&config.notifiers, &config.routing, None);
        let error = built.err().expect("does not start");
        assert!(
            error.contains("`routing.routes[0].receiver`: no notifier is called `pagr`"),
            "{error}"
        );
        // without configured notifiers, `slack` is the one SLACK_WEBHOOK_URL creates
        let routing: RoutingConfig = toml::from_str("default = [\"slack\"]").expect("parses");
        assert!(validate_receivers(&BTreeMap::new(), &routing, "lookout.toml").is_empty());
        assert!(Notifiers::build(&BTreeMap::new(), &routing, None).is_err());
        assert!(
            Notifiers::build(
                &BTreeMap::new(),
                &routing,
                Some("http://127.0.0.1:9/".into())
            )
            .is_ok()
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
        let unknown = toml::from_str::<crate::config::Config>("[notifiers.a]\ntype = \"sms\"\n")
            .expect_err("unknown type");
        assert!(unknown.to_string().contains("sms"), "{unknown}");
    }

    #[test]
    fn pagerduty_email_and_teams_tables_are_checked_field_by_field() {
        let config: crate::config::Config = toml::from_str(
            r#"
            [notifiers.pager]
            type = "pagerduty"
            [notifiers.pager2]
            type = "pagerduty"
            routing_key = "k"
            smtp = "mail:25"
            [notifiers.mail]
            type = "email"
            smtp = "mail.example.com:465"
            starttls = "none"
            from = "not an address"
            to = []
            username = "lookout"
            routing_key = "k"
            [notifiers.teams]
            type = "msteams"
            title_template = "{{ $nope }}"
            body_template = "{{ $samples"
            "#,
        )
        .expect("parses");
        let errors = config.validate("lookout.toml").expect_err("invalid").errors;
        let text = errors.join("\n");
        for expected in [
            "`notifiers.pager.routing_key`: a pagerduty notifier needs exactly one of",
            "`notifiers.pager2.smtp`: only an email notifier takes `smtp`",
            "`notifiers.mail.starttls`: port 465 is implicit TLS",
            "`notifiers.mail.from`: `not an address` is not an email address",
            "`notifiers.mail.to`: name at least one recipient",
            "`notifiers.mail.password`: a `username` needs one of",
            "`notifiers.mail.routing_key`: only a pagerduty notifier takes a routing key",
            "`notifiers.teams`: a msteams notifier needs exactly one of",
            "`notifiers.teams.title_template`: column 4: unknown variable `$nope`",
            "`notifiers.teams.body_template`: column 1: `{{` without its closing `}}`",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn templates_replace_the_title_and_summary_of_their_notifier_only() {
        let config: crate::config::Config = toml::from_str(
            r#"
            [notifiers.teams]
            type = "msteams"
            url = "http://127.0.0.1:1/"
            title_template = "{{ $severity | toUpper }}: {{ $rule }} on {{ $labels.service }} ({{ $alerts }})"
            body_template = "{{ $count }} in {{ $window }}{{ if $resolved }} (resolved){{ end }}\n{{ $samples }}\n{{ $link }}"
            "#,
        )
        .expect("parses");
        config.validate("lookout.toml").expect("valid");
        let notifiers = Notifiers::build(&config.notifiers, &config.routing, None).expect("builds");
        let message = AlertMessage {
            kind: super::super::message::MessageKind::Firing,
            rule: "checkout_5xx".into(),
            at: chrono::Utc::now(),
            labels: BTreeMap::new(),
            description: None,
            severity: "critical".into(),
            summary: "default summary".into(),
            title: None,
            threshold: "> 20".into(),
            window: "1m".into(),
            alerts: vec![super::super::message::AlertLine {
                labels: labels(&[("service", "checkout")]),
                value: 31.0,
                fired_for: None,
                reason: None,
                starts_at: None,
                reference: None,
            }],
            resolved: Vec::new(),
            samples: vec!["line one".into(), "line two".into()],
            context: Vec::new(),
            runbook_url: None,
            link: Some(("http://ui/search".into(), "Search these logs")),
        };
        let templated = notifiers.templated("teams", &message);
        assert_eq!(
            templated.title.as_deref(),
            Some("CRITICAL: checkout_5xx on checkout (1)")
        );
        assert_eq!(
            templated.summary,
            "31 in 1m\nline one\nline two\nhttp://ui/search"
        );
        let console = notifiers.templated("console", &message);
        assert_eq!(
            (console.title.as_deref(), console.summary.as_str()),
            (None, "default summary"),
            "defaults unchanged elsewhere"
        );
    }

    #[test]
    fn the_commented_notifier_examples_of_the_shipped_config_are_real_options() {
        // config/lookout.toml shows each type's options commented out; uncommented, they
        // must parse (every key known, every value of its type)
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lookout.toml");
        let text = std::fs::read_to_string(path).expect("config/lookout.toml");
        let start = text
            .find("# [notifiers.slack]")
            .expect("the notifier examples");
        let end = start
            + text[start..]
                .find("\n[routing]")
                .expect("[routing] follows");
        let uncommented: String = text[start..end]
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| line.starts_with('[') || line.contains(" = "))
            .map(|line| format!("{line}\n"))
            .collect();
        let config: crate::config::Config =
            toml::from_str(&uncommented).unwrap_or_else(|error| panic!("{error}\n{uncommented}"));
        let kinds: Vec<&str> = config
            .notifiers
            .values()
            .map(|notifier| notifier.kind.name())
            .collect();
        assert_eq!(
            kinds,
            [
                "alertmanager",
                "webhook",
                "email",
                "pagerduty",
                "slack",
                "msteams"
            ]
        );
    }
}
