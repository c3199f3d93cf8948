//! What the groups file (`state/routing/groups.json`) keeps of an alert: the one-alert
//! message that announced it, in a serializable form, and its place in arrival order.
//! A leaf: it knows messages, not groups.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::notify::message::{AlertLine, AlertMessage, MessageKind};

/// An alert held in a group: the one-alert message that announced it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Held {
    /// Arrival order, so messages list alerts as the ticks produced them.
    pub seq: u64,
    pub labels: BTreeMap<String, String>,
    pub message: StoredMessage,
}

/// An [`AlertMessage`] as the groups file keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMessage {
    kind: String,
    pub rule: String,
    at: DateTime<Utc>,
    labels: BTreeMap<String, String>,
    description: Option<String>,
    severity: String,
    summary: String,
    threshold: String,
    window: String,
    alerts: Vec<StoredLine>,
    samples: Vec<String>,
    context: Vec<String>,
    runbook_url: Option<String>,
    link: Option<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredLine {
    labels: BTreeMap<String, String>,
    value: f64,
    fired_for_seconds: Option<f64>,
    reason: Option<String>,
    starts_at: Option<DateTime<Utc>>,
    /// A spike rule's reference value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference: Option<f64>,
}

impl From<&AlertMessage> for StoredMessage {
    fn from(message: &AlertMessage) -> StoredMessage {
        StoredMessage {
            kind: message.kind.name().into(),
            rule: message.rule.clone(),
            at: message.at,
            labels: message.labels.clone(),
            description: message.description.clone(),
            severity: message.severity.clone(),
            summary: message.summary.clone(),
            threshold: message.threshold.clone(),
            window: message.window.clone(),
            alerts: message
                .alerts
                .iter()
                .map(|line| StoredLine {
                    labels: line.labels.clone(),
                    value: line.value,
                    fired_for_seconds: line.fired_for.map(|fired| fired.as_secs_f64()),
                    reason: line.reason.clone(),
                    starts_at: line.starts_at,
                    reference: line.reference,
                })
                .collect(),
            samples: message.samples.clone(),
            context: message.context.clone(),
            runbook_url: message.runbook_url.clone(),
            link: message
                .link
                .as_ref()
                .map(|(url, text)| (url.clone(), text.to_string())),
        }
    }
}

impl StoredMessage {
    pub fn to_message(&self) -> AlertMessage {
        AlertMessage {
            title: None,
            kind: match self.kind.as_str() {
                "repeat" => MessageKind::Repeat,
                "resolved" => MessageKind::Resolved,
                _ => MessageKind::Firing,
            },
            rule: self.rule.clone(),
            at: self.at,
            labels: self.labels.clone(),
            description: self.description.clone(),
            severity: self.severity.clone(),
            summary: self.summary.clone(),
            threshold: self.threshold.clone(),
            window: self.window.clone(),
            alerts: self
                .alerts
                .iter()
                .map(|line| AlertLine {
                    labels: line.labels.clone(),
                    value: line.value,
                    fired_for: line
                        .fired_for_seconds
                        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok()),
                    reason: line.reason.clone(),
                    starts_at: line.starts_at,
                    reference: line.reference,
                })
                .collect(),
            resolved: Vec::new(),
            samples: self.samples.clone(),
            context: self.context.clone(),
            runbook_url: self.runbook_url.clone(),
            // the link texts are the two `compose` writes
            link: self.link.as_ref().map(|(url, text)| {
                (
                    url.clone(),
                    if text == "Graph this" {
                        "Graph this"
                    } else {
                        "Search these logs"
                    },
                )
            }),
        }
    }
}
