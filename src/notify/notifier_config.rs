//! What a `[notifiers.NAME]` table says, parsed: the kind of notifier and its fields. A
//! leaf, so that each notifier's own module reads its table without importing the
//! notifiers it is built into.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// `starttls`: whether a connection on a port other than 465 upgrades to TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartTls {
    /// Refuse to send unless the server offers STARTTLS (the default).
    Required,
    /// Upgrade when the server offers it, send in cleartext otherwise.
    Opportunistic,
    /// Cleartext.
    None,
}

/// What kind of notifier a `[notifiers.NAME]` table configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    /// A Slack incoming webhook: Block Kit messages, one per second at most.
    Slack,
    /// Any HTTP receiver of Alertmanager's webhook payload (version 4).
    Webhook,
    /// PagerDuty's Events API v2: `trigger` on firing, `resolve` on resolved, one
    /// `dedup_key` per alert ([`super::pagerduty`]).
    #[serde(rename = "pagerduty")]
    PagerDuty,
    /// Email over SMTP ([`super::email`]).
    Email,
    /// A Microsoft Teams Workflows webhook, Adaptive Cards ([`super::msteams`]).
    #[serde(rename = "msteams")]
    MsTeams,
    /// Every peer of an Alertmanager cluster, through its v2 API ([`super::alertmanager`]).
    Alertmanager,
    /// Logged and printed to stdout.
    Console,
    /// Not sent anywhere: the alert shows in the API, the history and the UI.
    Ui,
}

impl NotifierKind {
    /// The name of the kind, as `type` spells it.
    pub fn name(self) -> &'static str {
        match self {
            NotifierKind::Slack => "slack",
            NotifierKind::Webhook => "webhook",
            NotifierKind::PagerDuty => "pagerduty",
            NotifierKind::Email => "email",
            NotifierKind::MsTeams => "msteams",
            NotifierKind::Alertmanager => "alertmanager",
            NotifierKind::Console => "console",
            NotifierKind::Ui => "ui",
        }
    }
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
    /// Messages per second at most (default: 1 for Slack and Teams, 2 for PagerDuty,
    /// 10 for webhooks).
    #[serde(default)]
    pub max_per_second: Option<f64>,
    /// PagerDuty: the integration's routing key (prefer `routing_key_env` or
    /// `routing_key_file`).
    #[serde(default, skip_serializing)]
    pub routing_key: Option<Secret>,
    #[serde(default)]
    pub routing_key_env: Option<String>,
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// Email: the SMTP server, `host:port` (port 465: implicit TLS).
    #[serde(default)]
    pub smtp: Option<String>,
    /// Email: STARTTLS on a port other than 465 (default `required`).
    #[serde(default)]
    pub starttls: Option<StartTls>,
    /// Email: PEM file of a CA to trust besides the system's (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Email: SMTP AUTH user (with one of `password_env`, `password_file`, `password`).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Email: the sender (`Lookout <alerts@example.com>` or a bare address).
    #[serde(default)]
    pub from: Option<String>,
    /// Email: recipients.
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    /// Alertmanager: the API of every peer of the cluster (`http://am-1:9093`), never a
    /// load balancer in front of them.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Alertmanager: HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    /// Alertmanager: a bearer token from this environment variable or file.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Alertmanager: how long one request to one peer may take (default 10s).
    #[serde(default, with = "crate::duration_serde::option")]
    pub timeout: Option<std::time::Duration>,
    /// Alertmanager: how often firing alerts are sent again (default 1m).
    #[serde(default, with = "crate::duration_serde::option")]
    pub resend_delay: Option<std::time::Duration>,
    /// A template replacing the message's title (Prometheus syntax, see docs/rules.md).
    #[serde(default)]
    pub title_template: Option<String>,
    /// A template replacing the message's summary paragraph.
    #[serde(default)]
    pub body_template: Option<String>,
}

/// `basic_auth = { username = "…", password_env = "…" }` (or `password_file`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    pub username: String,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}
