//! Microsoft Teams: an Adaptive Card (schema 1.4) posted to a Teams Workflows webhook
//! ("Post to a channel when a webhook request is received"), in the message envelope
//! Workflows expects:
//!
//! ```json
//! {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
//!   "content": {"type": "AdaptiveCard", "version": "1.4", "body": [...], "actions": [...]}}]}
//! ```
//!
//! The card carries the same content as the Slack message: the title, the summary and
//! description, a FactSet (severity, count or value against the threshold, window, rule),
//! the alerts, context values, sample lines in monospace, and `Action.OpenUrl` buttons to
//! the UI search and the runbook. Teams refuses messages above about 28 KB, so the card is
//! built within [`MAX_PAYLOAD_BYTES`]: sample lines go first, then context, then listed
//! alerts, then long texts are cut harder — and the card says what was cut.
//!
//! Delivery is the webhook's (rate limit, `Retry-After`, backoff, final 4xx), as Slack's;
//! the URL is a secret.

use serde_json::{Value, json};

use super::message::{
    AlertLine, AlertMessage, MAX_CONTEXT_LINE_CHARS, MAX_CONTEXT_LINES, MAX_LISTED,
    MAX_SAMPLE_CHARS, MAX_SAMPLES, Markup, MessageKind, alert_line, format_value, title, truncate,
};

/// The largest payload sent (bytes, serialized): Teams' limit is 28 KB for the whole
/// message; this leaves room for the envelope Teams adds.
pub const MAX_PAYLOAD_BYTES: usize = 27 * 1024;
/// A button's URL at most (bytes, serialized).
const MAX_URL_BYTES: usize = 4096;

/// How much of the optional content a card carries; [`card_payload`] tries smaller
/// budgets until the payload fits.
struct Budget {
    samples: usize,
    context: usize,
    alerts: usize,
    text_chars: usize,
}

const BUDGETS: [Budget; 5] = [
    Budget {
        samples: MAX_SAMPLES,
        context: MAX_CONTEXT_LINES,
        alerts: MAX_LISTED,
        text_chars: 3000,
    },
    Budget {
        samples: 2,
        context: MAX_CONTEXT_LINES,
        alerts: MAX_LISTED,
        text_chars: 3000,
    },
    Budget {
        samples: 0,
        context: 3,
        alerts: 5,
        text_chars: 1000,
    },
    Budget {
        samples: 0,
        context: 0,
        alerts: 1,
        text_chars: 300,
    },
    // fits whatever the input: a few texts of 100 characters, six bytes each at most
    // once escaped
    Budget {
        samples: 0,
        context: 0,
        alerts: 0,
        text_chars: 100,
    },
];

/// The Teams Workflows payload of `message`, within [`MAX_PAYLOAD_BYTES`].
pub fn card_payload(message: &AlertMessage) -> Value {
    BUDGETS
        .iter()
        .enumerate()
        .map(|(number, budget)| card(message, budget, number > 0))
        .find(|payload| payload.to_string().len() <= MAX_PAYLOAD_BYTES)
        .unwrap_or_else(|| card(message, &BUDGETS[BUDGETS.len() - 1], true))
}

fn text_block(text: String) -> Value {
    json!({"type": "TextBlock", "text": text, "wrap": true})
}

fn card(message: &AlertMessage, budget: &Budget, cut_to_fit: bool) -> Value {
    let cut = |text: &str| truncate(text, budget.text_chars);
    let color = match message.kind {
        MessageKind::Firing | MessageKind::Repeat => "Attention",
        MessageKind::Resolved => "Good",
    };
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": truncate(&title(message), 150),
        "size": "Large",
        "weight": "Bolder",
        "color": color,
        "wrap": true,
    })];
    if !message.summary.is_empty() {
        body.push(text_block(cut(&message.summary)));
    }
    if let Some(description) = message.description.as_ref().filter(|text| !text.is_empty()) {
        body.push(text_block(cut(description)));
    }
    let first_value = format_value(message.alerts.first().map_or(0.0, |alert| alert.value));
    let last = if message.kind == MessageKind::Resolved {
        " (last while firing)"
    } else {
        ""
    };
    let threshold = if message.threshold.is_empty() {
        String::new()
    } else {
        format!(" (threshold {})", truncate(&message.threshold, 100))
    };
    let mut facts = vec![json!({"title": "Severity", "value": truncate(&message.severity, 100)})];
    if message.window.is_empty() {
        facts.push(
            json!({"title": format!("Value{last}"), "value": format!("{first_value}{threshold}")}),
        );
    } else {
        facts.push(
            json!({"title": format!("Count{last}"), "value": format!("{first_value}{threshold}")}),
        );
        facts.push(json!({"title": "Window", "value": truncate(&message.window, 100)}));
    }
    facts.push(json!({"title": "Rule", "value": truncate(&message.rule, 200)}));
    body.push(json!({"type": "FactSet", "facts": facts}));
    let listed = |alerts: &[AlertLine], body: &mut Vec<Value>| {
        for alert in alerts.iter().take(budget.alerts) {
            body.push(text_block(cut(&alert_line(alert, Markup::Markdown))));
        }
        let unlisted = alerts.len().saturating_sub(budget.alerts);
        if unlisted > 0 {
            body.push(json!({"type": "TextBlock", "text": format!("+{unlisted} more"), "isSubtle": true, "wrap": true}));
        }
    };
    listed(&message.alerts, &mut body);
    if !message.resolved.is_empty() {
        body.push(json!({"type": "TextBlock", "text": "Resolved", "weight": "Bolder", "color": "Good", "wrap": true}));
        listed(&message.resolved, &mut body);
    }
    if message.kind != MessageKind::Resolved {
        let context: Vec<String> = message
            .context
            .iter()
            .take(budget.context)
            .map(|line| {
                format!(
                    "- {}",
                    truncate(line, MAX_CONTEXT_LINE_CHARS.min(budget.text_chars))
                )
            })
            .collect();
        if !context.is_empty() {
            body.push(text_block(format!("**Context**\n\n{}", context.join("\n"))));
        }
        let samples: Vec<String> = message
            .samples
            .iter()
            .take(budget.samples)
            .map(|line| truncate(line, MAX_SAMPLE_CHARS))
            .collect();
        if !samples.is_empty() {
            body.push(json!({"type": "TextBlock", "text": "**Sample lines**", "wrap": true}));
            body.push(json!({
                "type": "Container",
                "style": "emphasis",
                "items": samples.into_iter().map(|line| json!({
                    "type": "TextBlock", "text": line, "fontType": "Monospace", "wrap": true, "size": "Small"
                })).collect::<Vec<_>>(),
            }));
        }
    }
    if cut_to_fit {
        body.push(json!({
            "type": "TextBlock",
            "text": "Parts of this alert were cut to fit Teams' 28 KB message limit; the links show everything.",
            "isSubtle": true,
            "wrap": true,
        }));
    }
    // a URL cannot be cut: one too long for the card is left out
    let fits = |url: &str| json!(url).to_string().len() <= MAX_URL_BYTES;
    let mut actions = Vec::new();
    if let Some((url, text)) = message.link.as_ref().filter(|(url, _)| fits(url)) {
        actions.push(json!({"type": "Action.OpenUrl", "title": text, "url": url}));
    }
    if let Some(url) = message.runbook_url.as_ref().filter(|url| fits(url)) {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Runbook", "url": url}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": body,
                "actions": actions,
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::DateTime;

    use super::*;
    use crate::notify::message::AlertLine;

    fn message(kind: MessageKind) -> AlertMessage {
        AlertMessage {
            kind,
            rule: "checkout_5xx".into(),
            at: DateTime::from_timestamp(1_795_341_600, 0).expect("time"),
            labels: BTreeMap::new(),
            description: None,
            severity: "warning".into(),
            summary: "31 HTTP 500s".into(),
            title: None,
            threshold: "> 20".into(),
            window: "1m".into(),
            alerts: vec![AlertLine {
                labels: BTreeMap::from([("service".to_string(), "checkout".to_string())]),
                value: 31.0,
                fired_for: None,
                reason: None,
                starts_at: None,
                reference: None,
            }],
            resolved: Vec::new(),
            samples: vec!["payment timeout".into()],
            context: Vec::new(),
            runbook_url: Some("https://runbooks.example/5xx".into()),
            link: Some((
                "http://127.0.0.1:9200/ui/search?q=x".into(),
                "Search these logs",
            )),
        }
    }

    #[test]
    fn the_card_has_title_facts_samples_and_buttons() {
        let payload = card_payload(&message(MessageKind::Firing));
        assert_eq!(payload["type"], "message");
        let attachment = &payload["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachment["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["body"][0]["text"], "[FIRING] checkout_5xx");
        let text = card.to_string();
        assert!(text.contains("\"FactSet\""), "{text}");
        assert!(text.contains("31 (threshold > 20)"), "{text}");
        assert!(text.contains("payment timeout"), "{text}");
        assert!(!text.contains("were cut"), "nothing cut: {text}");
        assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
        assert_eq!(card["actions"][1]["url"], "https://runbooks.example/5xx");
    }

    #[test]
    fn huge_samples_are_cut_to_fit_teams_limit_and_the_card_says_so() {
        let mut worst = message(MessageKind::Firing);
        worst.samples = (0..20).map(|_| "\u{0}".repeat(100_000)).collect();
        worst.summary = "\"".repeat(100_000);
        worst.context = (0..50).map(|_| "c".repeat(10_000)).collect();
        worst.alerts = (0..60)
            .map(|_| AlertLine {
                labels: (0..100)
                    .map(|number| (format!("l{number}"), "\u{7}".repeat(1000)))
                    .collect(),
                ..worst.alerts[0].clone()
            })
            .collect();
        let payload = card_payload(&worst);
        assert!(payload.to_string().len() <= MAX_PAYLOAD_BYTES);
        assert!(payload.to_string().contains("were cut"));
        assert_eq!(
            payload["attachments"][0]["content"]["body"][0]["text"],
            "[FIRING ×60] checkout_5xx"
        );
    }
}
