//! Message composition: the [`AlertMessage`]s a rule's tick sends — routed to notifiers
//! by the [`Dispatcher`], one message per notifier and kind, its summary and description
//! rendered from the rule's templates, with a link to the logs (or the graph), and, for
//! firing and repeat messages, sample log lines and the rule's `context` values. Also
//! the labels silences and routes match on, and an alert's rendered annotations.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::observe::{ContextValue, Sources};
use super::rule::{LoadedRule, RuleSource};
use super::template::TemplateData;
use crate::notify::dispatch::Dispatcher;
use crate::notify::message::{AlertLine, AlertMessage, MessageKind, graph_url, search_url};
use crate::notify::route::Destination;

/// Composes a rule's messages.
pub struct Composer {
    pub sources: Arc<Sources>,
    pub dispatcher: Arc<Dispatcher>,
    /// Base URL of the links in messages.
    pub external_url: String,
}

impl Composer {
    /// The messages `notices` make: one per notifier and kind, with the sample lines and
    /// `context` values of the first alert for firing and repeat messages; blocking.
    pub fn compose(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        notices: Vec<(MessageKind, AlertLine)>,
    ) -> Vec<(String, AlertMessage)> {
        self.compose_routed(rule, tick, notices)
            .into_iter()
            .map(|(destination, message)| (destination.notifier, message))
            .collect()
    }

    /// [`Composer::compose`] with each message's destination: its notifier, route and
    /// group (one message per destination and kind).
    pub fn compose_routed(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        notices: Vec<(MessageKind, AlertLine)>,
    ) -> Vec<(Destination, AlertMessage)> {
        let mut messages = Vec::new();
        for (destination, kind, alerts) in
            self.dispatcher.route(&rule.file.notify, notices, |line| {
                alert_labels(rule, &line.labels)
            })
        {
            let mut message = self.message(rule, tick, kind, alerts);
            if kind != MessageKind::Resolved {
                let data = template_data(rule, &message.alerts[0], false);
                message.samples = if rule.new_term.is_some() {
                    // a new-term message shows lines of each of its new values
                    let max = crate::notify::message::MAX_SAMPLES;
                    let each = (max / message.alerts.len()).max(1);
                    let mut samples = Vec::new();
                    for alert in message.alerts.iter().take(max) {
                        let labels = template_data(rule, alert, false).labels;
                        let lines = self.sources.samples(rule, tick, &labels);
                        samples.extend(lines.into_iter().take(each));
                    }
                    samples
                } else {
                    self.sources.samples(rule, tick, &data.labels)
                };
                message.context = self
                    .sources
                    .context(rule, tick, &data)
                    .iter()
                    .map(context_line)
                    .collect();
            }
            messages.push((destination, message));
        }
        messages
    }

    /// The message of `alerts` (routed to one notifier, of one kind), without samples
    /// and context.
    pub fn message(
        &self,
        rule: &LoadedRule,
        tick: DateTime<Utc>,
        kind: MessageKind,
        alerts: Vec<AlertLine>,
    ) -> AlertMessage {
        let first = &alerts[0];
        let resolved = kind == MessageKind::Resolved;
        let data = template_data(rule, first, resolved);
        let summary = rule.summary.as_ref().map_or_else(
            || {
                let text = match (&rule.source, &rule.spike, &rule.measure) {
                    (RuleSource::Logs { .. }, Some(spike), _) => {
                        spike.summary(first.value, first.reference, &data.window)
                    }
                    (RuleSource::Logs { .. }, None, Some(measure)) => format!(
                        "{} = {} in the last {}",
                        measure.describe(),
                        first.value,
                        data.window
                    ),
                    (RuleSource::Logs { .. }, None, None) => {
                        format!("{} matches in the last {}", first.value, data.window)
                    }
                    (RuleSource::Metrics { expr }, _, _) => {
                        format!("{} = {}", expr.text, first.value)
                    }
                };
                if resolved {
                    format!("{text} (last value while firing)")
                } else {
                    text
                }
            },
            |template| template.render(&data),
        );
        let description = rule
            .description
            .as_ref()
            .map(|template| template.render(&data));
        let start = tick - chrono::Duration::from_std(rule.window).unwrap_or_default();
        let (link, window) = match &rule.source {
            RuleSource::Logs { index, query } => (
                search_url(
                    &self.external_url,
                    index,
                    query,
                    &start.to_rfc3339(),
                    &tick.to_rfc3339(),
                )
                .map(|url| (url, "Search these logs")),
                data.window.clone(),
            ),
            RuleSource::Metrics { expr } => (
                graph_url(&self.external_url, &expr.text, tick).map(|url| (url, "Graph this")),
                String::new(),
            ),
        };
        AlertMessage {
            kind,
            rule: rule.name.clone(),
            at: tick,
            labels: rule.file.labels.clone(),
            description,
            severity: rule
                .file
                .severity
                .clone()
                .unwrap_or_else(|| "warning".into()),
            summary,
            title: None,
            threshold: rule.threshold_text(),
            window,
            alerts,
            resolved: Vec::new(),
            samples: Vec::new(),
            context: Vec::new(),
            runbook_url: rule.file.runbook_url.clone(),
            link,
        }
    }
}

/// The labels an alert is matched on by silences and routes: the rule's `labels`, the
/// group labels, `alertname` and `severity`.
pub fn alert_labels(
    rule: &LoadedRule,
    group: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = rule.file.labels.clone();
    labels.extend(group.clone());
    labels.insert("alertname".into(), rule.name.clone());
    labels.entry("severity".into()).or_insert_with(|| {
        rule.file
            .severity
            .clone()
            .unwrap_or_else(|| "warning".into())
    });
    labels
}

/// An alert's rendered annotations (`summary`, `description`, `runbook_url`), from its
/// labels, value and (a spike rule's) reference.
pub fn annotations(
    rule: &LoadedRule,
    labels: &BTreeMap<String, String>,
    (value, reference): (f64, Option<f64>),
) -> BTreeMap<String, String> {
    let data = template_data(
        rule,
        &AlertLine {
            labels: labels.clone(),
            value,
            fired_for: None,
            reason: None,
            starts_at: None,
            reference,
        },
        false,
    );
    let mut annotations = BTreeMap::new();
    if let Some(summary) = &rule.summary {
        annotations.insert("summary".to_string(), summary.render(&data));
    }
    if let Some(description) = &rule.description {
        annotations.insert("description".to_string(), description.render(&data));
    }
    if let Some(url) = &rule.file.runbook_url {
        annotations.insert("runbook_url".to_string(), url.clone());
    }
    annotations
}

/// What a rule's templates see for one alert (`resolved`: in a resolve message, where its
/// value is the last seen while firing).
fn template_data(rule: &LoadedRule, alert: &AlertLine, resolved: bool) -> TemplateData {
    TemplateData {
        resolved,
        labels: alert.labels.clone(),
        value: alert.value,
        count: alert.value.max(0.0) as u64,
        window: match rule.source {
            RuleSource::Logs { .. } => humantime::format_duration(rule.window).to_string(),
            RuleSource::Metrics { .. } => String::new(),
        },
        threshold: rule.threshold_text(),
        rule: rule.name.clone(),
        reference: alert.reference,
        message: Default::default(),
    }
}

/// One `context` value as a message line: `expression{extra labels} = value unit`.
fn context_line(context: &ContextValue) -> String {
    if let Some(error) = &context.error {
        return format!("{}: {error}", context.expression);
    }
    if context.values.is_empty() {
        return format!("{} = no data", context.expression);
    }
    context
        .values
        .iter()
        .map(|(labels, value)| {
            format!(
                "{}{labels} = {}",
                context.expression,
                super::template::humanize_unit(*value, &context.unit)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
