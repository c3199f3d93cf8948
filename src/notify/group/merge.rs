//! Merging the alerts a group flush sends into one message: one rule's alerts become that
//! rule's message as it always was; alerts of several rules one message listing each
//! with its full labels. Pure: no state, no IO.

use std::collections::BTreeMap;

use super::stored::Held;
use crate::notify::message::{AlertLine, AlertMessage, MessageKind, alert_labels};

/// One message of `firing` and `resolved` alerts (each a one-alert message, in order): a
/// rule's alerts become that rule's message as it always was (its resolved ones in
/// [`AlertMessage::resolved`]); alerts of several rules one message listing each with its
/// full labels (`alertname` among them), its summary lines per rule. `kind` is that of the
/// firing alerts (`Resolved` with resolved alerts only, passed as `firing`).
pub fn merge(kind: MessageKind, firing: &[&Held], resolved: &[&Held]) -> AlertMessage {
    let mut per_rule: Vec<AlertMessage> = Vec::new();
    let tagged = firing
        .iter()
        .map(|held| (held, false))
        .chain(resolved.iter().map(|held| (held, true)));
    for (held, is_resolved) in tagged {
        let mut message = held.message.to_message();
        if is_resolved {
            message.resolved = std::mem::take(&mut message.alerts);
        }
        match per_rule
            .iter_mut()
            .find(|merged| merged.rule == message.rule)
        {
            Some(merged) => {
                merged.alerts.extend(message.alerts);
                merged.resolved.extend(message.resolved);
                if merged.samples.is_empty() {
                    merged.samples = message.samples;
                }
                if merged.context.is_empty() {
                    merged.context = message.context;
                }
            }
            None => per_rule.push(message),
        }
    }
    for message in &mut per_rule {
        message.kind = kind;
    }
    if per_rule.len() == 1 {
        return per_rule.remove(0);
    }
    let mut first = per_rule[0].clone();
    let rules: Vec<String> = per_rule
        .iter()
        .map(|message| message.rule.clone())
        .collect();
    first.rule = rules.join(", ");
    first.summary = per_rule
        .iter()
        .map(|message| format!("{}: {}", message.rule, message.summary))
        .collect::<Vec<_>>()
        .join("\n");
    first.description = None;
    first.threshold = String::new();
    first.window = String::new();
    first.severity = per_rule
        .iter()
        .map(|message| message.severity.clone())
        .min_by_key(|severity| severity_rank(severity))
        .unwrap_or_default();
    let with_labels = |message: &AlertMessage, lines: &[AlertLine]| -> Vec<AlertLine> {
        lines
            .iter()
            .map(|line| AlertLine {
                labels: alert_labels(message, line),
                ..line.clone()
            })
            .collect()
    };
    first.alerts = per_rule
        .iter()
        .flat_map(|message| with_labels(message, &message.alerts))
        .collect();
    first.resolved = per_rule
        .iter()
        .flat_map(|message| with_labels(message, &message.resolved))
        .collect();
    first.labels = BTreeMap::new();
    first.at = per_rule
        .iter()
        .map(|message| message.at)
        .max()
        .unwrap_or(first.at);
    first
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" => 0,
        "error" => 1,
        "warning" => 2,
        "info" => 3,
        _ => 4,
    }
}
