//! PagerDuty's Events API v2 (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>):
//! one event per alert of a message — `trigger` when it fires (and again on a repeat),
//! `resolve` when it resolves — each with the alert's fingerprint as `dedup_key`
//! ([`super::message::fingerprint`], the one Alertmanager computes), so PagerDuty opens
//! one incident per alert and the resolve closes it.
//!
//! The `dedup_key` makes delivery exactly-once: an event PagerDuty accepted and Lookout
//! sends again (a restart before its outbox record was removed, even after a kill -9)
//! is deduplicated by PagerDuty into the same incident.
//!
//! Within PagerDuty's limits: `payload.summary` ≤ 1 024 characters, `severity` one of
//! `critical`, `error`, `warning`, `info`, the whole event ≤ 512 KiB (sample lines and
//! context are cut first). The routing key is a secret: it is not in the payload built
//! here (nor in the outbox, the dry run or the history) — [`PagerDuty::deliver_reporting`]
//! adds it as the event goes out, and its webhook strips it from any answer it logs or
//! reports. Answers:
//! 202 delivered; 400 (invalid event) final, reported with PagerDuty's `errors`; 429 and
//! 5xx retried with backoff until the delivery deadline ([`super::webhook`]). Each
//! alert's event is retried on its own, its attempts numbered per alert and reported
//! with its `dedup_key`; one alert's refusal does not hold back the others.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::message::{
    AlertLine, AlertMessage, MAX_CONTEXT_LINE_CHARS, MAX_CONTEXT_LINES, MAX_SAMPLE_CHARS,
    MAX_SAMPLES, MessageKind, alert_labels, fingerprint, format_value, title, truncate,
};
use super::webhook::{Attempt, Outcome, Webhook};
use crate::secret::Secret;

/// PagerDuty's Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// `payload.summary` at most (characters).
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// One event at most, serialized (PagerDuty refuses larger ones).
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
/// A label value or a `custom_details` text at most (characters).
const MAX_DETAIL_CHARS: usize = 2000;
/// A link's URL at most (bytes, serialized).
const MAX_URL_BYTES: usize = 16 * 1024;
/// Labels listed in `custom_details` at most.
const MAX_LABELS: usize = 100;

/// PagerDuty's severity for Lookout's: `critical`, `error`, `warning` and `info` as they
/// are, common synonyms (`page`, `fatal`, `high`; `err`, `major`; `warn`, `minor`;
/// `low`, `informational`, `none`) mapped, anything else `warning` (Lookout's default
/// severity).
pub fn severity(lookout: &str) -> &'static str {
    match lookout.trim().to_ascii_lowercase().as_str() {
        "critical" | "crit" | "page" | "fatal" | "emergency" | "high" => "critical",
        "error" | "err" | "major" => "error",
        "info" | "informational" | "low" | "none" | "notice" => "info",
        _ => "warning",
    }
}

/// How much of the optional content an event carries; [`events`] tries smaller budgets
/// until the event fits [`MAX_EVENT_BYTES`].
struct Budget {
    samples: usize,
    context: usize,
    labels: usize,
    detail_chars: usize,
}

const BUDGETS: [Budget; 4] = [
    Budget {
        samples: MAX_SAMPLES,
        context: MAX_CONTEXT_LINES,
        labels: MAX_LABELS,
        detail_chars: MAX_DETAIL_CHARS,
    },
    Budget {
        samples: 0,
        context: MAX_CONTEXT_LINES,
        labels: MAX_LABELS,
        detail_chars: MAX_DETAIL_CHARS,
    },
    Budget {
        samples: 0,
        context: 0,
        labels: MAX_LABELS,
        detail_chars: 200,
    },
    // within 512 KiB whatever the input: 20 labels of 2 × 100 characters, at most six
    // bytes each once escaped, and a 1 024-character summary
    Budget {
        samples: 0,
        context: 0,
        labels: 20,
        detail_chars: 100,
    },
];

/// The events of `message`, one per alert (a `resolve` for each of its resolved alerts
/// after the others), without `routing_key` (added as each goes out).
pub fn events(message: &AlertMessage) -> Value {
    // PagerDuty is per alert: a trigger's summary speaks of the firing alerts only
    let firing = AlertMessage {
        resolved: Vec::new(),
        ..message.clone()
    };
    let resolves = message.resolved.iter().map(|alert| {
        let dedup_key = fingerprint(&alert_labels(message, alert));
        json!({"event_action": "resolve", "dedup_key": dedup_key})
    });
    Value::Array(
        firing
            .alerts
            .iter()
            .map(|alert| {
                let labels = alert_labels(&firing, alert);
                let dedup_key = fingerprint(&labels);
                let event = |budget| event(&firing, alert, (&labels, &dedup_key), budget);
                BUDGETS
                    .iter()
                    .map(event)
                    .find(|event| event.to_string().len() <= MAX_EVENT_BYTES)
                    .unwrap_or_else(|| event(&BUDGETS[BUDGETS.len() - 1]))
            })
            .chain(resolves)
            .collect(),
    )
}

/// The event of `alert` with its `labels` (Alertmanager's) and `dedup_key`, within
/// `budget`.
fn event(
    message: &AlertMessage,
    alert: &AlertLine,
    (labels, dedup_key): (&BTreeMap<String, String>, &str),
    budget: &Budget,
) -> Value {
    if message.kind == MessageKind::Resolved {
        // PagerDuty needs only the key to resolve; the rest would be ignored
        return json!({"event_action": "resolve", "dedup_key": dedup_key});
    }
    let cut = |text: &str| truncate(text, budget.detail_chars);
    let summary = if message.summary.is_empty() {
        title(message)
    } else {
        format!(
            "{}: {}",
            truncate(&title(message), MAX_SUMMARY_CHARS),
            truncate(&message.summary, MAX_SUMMARY_CHARS)
        )
    };
    let mut details = serde_json::Map::new();
    let value_name = if message.window.is_empty() {
        "value"
    } else {
        "count"
    };
    details.insert(value_name.into(), json!(format_value(alert.value)));
    if !message.threshold.is_empty() {
        details.insert("threshold".into(), json!(cut(&message.threshold)));
    }
    if !message.window.is_empty() {
        details.insert("window".into(), json!(cut(&message.window)));
    }
    details.insert(
        "labels".into(),
        json!(
            labels
                .iter()
                .take(budget.labels)
                .map(|(name, value)| (cut(name), cut(value)))
                .collect::<BTreeMap<_, _>>()
        ),
    );
    if message.alerts.len() > 1 {
        details.insert("alerts_in_message".into(), json!(message.alerts.len()));
    }
    if let Some(description) = message.description.as_ref().filter(|text| !text.is_empty()) {
        details.insert("description".into(), json!(cut(description)));
    }
    let context: Vec<String> = message
        .context
        .iter()
        .take(budget.context)
        .map(|line| truncate(line, MAX_CONTEXT_LINE_CHARS))
        .collect();
    if !context.is_empty() {
        details.insert("context".into(), json!(context));
    }
    let samples: Vec<String> = message
        .samples
        .iter()
        .take(budget.samples)
        .map(|line| truncate(line, MAX_SAMPLE_CHARS))
        .collect();
    if !samples.is_empty() {
        details.insert("sample_lines".into(), json!(samples));
    } else if !message.samples.is_empty() {
        details.insert(
            "sample_lines_omitted".into(),
            json!("cut to keep the event within PagerDuty's 512 KiB"),
        );
    }
    let source = ["instance", "host", "service", "job"]
        .iter()
        .find_map(|name| {
            alert
                .labels
                .get(*name)
                .or_else(|| message.labels.get(*name))
        })
        .map_or_else(|| "lookout".to_string(), |value| cut(value));
    let mut payload = json!({
        // PagerDuty refuses an empty summary (a title template may render to nothing)
        "summary": if summary.trim().is_empty() {
            "Lookout alert".to_string()
        } else {
            truncate(&summary, MAX_SUMMARY_CHARS)
        },
        "source": source,
        "severity": severity(&message.severity),
        "timestamp": message.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "class": cut(&message.rule),
        "custom_details": details,
    });
    if let Some(group) = labels.get("team").or_else(|| labels.get("service")) {
        payload["group"] = json!(cut(group));
    }
    if let Some(component) = labels.get("component") {
        payload["component"] = json!(cut(component));
    }
    // a URL cannot be cut: one too long is left out
    let fits = |url: &&String| json!(url).to_string().len() <= MAX_URL_BYTES;
    let mut links = Vec::new();
    let link = message.link.as_ref().map(|(url, text)| (url, *text));
    if let Some((url, text)) = link.filter(|(url, _)| fits(url)) {
        links.push(json!({"href": url, "text": text}));
    }
    if let Some(url) = message.runbook_url.as_ref().filter(fits) {
        links.push(json!({"href": url, "text": "Runbook"}));
    }
    let mut event = json!({
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "Lookout",
        "payload": payload,
        "links": links,
    });
    if let Some((url, _)) = link.filter(|(url, _)| fits(url)) {
        event["client_url"] = json!(url);
    }
    event
}

/// A PagerDuty integration: its routing key and the Events API endpoint.
#[derive(Debug)]
pub struct PagerDuty {
    routing_key: Secret,
    endpoint: Webhook,
}

impl PagerDuty {
    pub fn new(routing_key: Secret, endpoint: Webhook) -> PagerDuty {
        // PagerDuty may quote the key it refused: never log or report it
        PagerDuty {
            endpoint: endpoint.redacting(routing_key.clone()),
            routing_key,
        }
    }

    /// Sends each event of `payload` (built by [`events`]) with the routing key, in
    /// order, each retried until `deadline` on its own: one alert's refused or given-up
    /// event does not keep the others from PagerDuty. Each attempt is reported with its
    /// alert's `dedup_key` and numbered per alert. The outcome is the first event's that
    /// was not delivered (attempts of all counted), else delivered.
    pub async fn deliver_reporting(
        &self,
        payload: &Value,
        deadline: Instant,
        report: &(dyn Fn(Attempt) + Send + Sync),
    ) -> Outcome {
        let key = &self.routing_key.0;
        let mut total = 0;
        let mut failed: Option<Outcome> = None;
        for event in payload.as_array().map(Vec::as_slice).unwrap_or_default() {
            let mut event = event.clone();
            let dedup_key = event["dedup_key"].as_str().map(str::to_string);
            let with_alert = |attempt: Attempt| {
                report(Attempt {
                    alert: dedup_key.clone(),
                    ..attempt
                })
            };
            event["routing_key"] = json!(key);
            let outcome = self
                .endpoint
                .deliver_reporting(&event, deadline, &with_alert)
                .await;
            let (Outcome::Delivered { attempts }
            | Outcome::Rejected { attempts, .. }
            | Outcome::GaveUp { attempts, .. }) = &outcome;
            total += attempts;
            if !matches!(outcome, Outcome::Delivered { .. }) {
                failed.get_or_insert(outcome);
            }
        }
        match failed {
            None => Outcome::Delivered { attempts: total },
            Some(Outcome::Rejected { status, reason, .. }) => Outcome::Rejected {
                attempts: total,
                status,
                reason,
            },
            Some(Outcome::GaveUp { last_error, .. }) => Outcome::GaveUp {
                attempts: total,
                last_error,
            },
            Some(delivered) => delivered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn message(kind: MessageKind) -> AlertMessage {
        AlertMessage {
            kind,
            rule: "checkout_5xx".into(),
            at: DateTime::from_timestamp(1_795_341_600, 0).expect("time"),
            labels: BTreeMap::from([("team".to_string(), "payments".to_string())]),
            description: None,
            severity: "critical".into(),
            summary: "31 HTTP 500s in the last 1m".into(),
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
            context: vec!["p95 = 1.2s".into()],
            runbook_url: Some("https://runbooks.example/5xx".into()),
            link: Some((
                "http://127.0.0.1:9200/ui/search?q=x".into(),
                "Search these logs",
            )),
        }
    }

    #[test]
    fn severities_map_to_pagerdutys_four() {
        for (lookout, pagerduty) in [
            ("critical", "critical"),
            ("Page", "critical"),
            ("error", "error"),
            ("major", "error"),
            ("warning", "warning"),
            ("warn", "warning"),
            ("info", "info"),
            ("low", "info"),
            ("whatever", "warning"),
            ("", "warning"),
        ] {
            assert_eq!(severity(lookout), pagerduty, "{lookout}");
        }
    }

    #[test]
    fn a_trigger_and_its_resolve_share_the_alerts_fingerprint() {
        let trigger = events(&message(MessageKind::Firing));
        let resolve = events(&message(MessageKind::Resolved));
        let (trigger, resolve) = (&trigger[0], &resolve[0]);
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
        assert_eq!(
            trigger["dedup_key"],
            fingerprint(&alert_labels(
                &message(MessageKind::Firing),
                &message(MessageKind::Firing).alerts[0]
            ))
        );
        assert!(trigger.get("routing_key").is_none(), "added as it goes out");
        let payload = &trigger["payload"];
        assert_eq!(payload["severity"], "critical");
        assert_eq!(payload["source"], "checkout");
        assert_eq!(payload["group"], "payments");
        assert_eq!(payload["class"], "checkout_5xx");
        assert_eq!(payload["timestamp"], "2026-11-22T10:00:00.000Z");
        assert_eq!(
            payload["summary"],
            "[FIRING] checkout_5xx: 31 HTTP 500s in the last 1m"
        );
        let details = &payload["custom_details"];
        assert_eq!(details["count"], "31");
        assert_eq!(details["threshold"], "> 20");
        assert_eq!(details["sample_lines"], json!(["payment timeout"]));
        assert_eq!(details["context"], json!(["p95 = 1.2s"]));
        assert_eq!(
            trigger["links"],
            json!([
                {"href": "http://127.0.0.1:9200/ui/search?q=x", "text": "Search these logs"},
                {"href": "https://runbooks.example/5xx", "text": "Runbook"}
            ])
        );
    }

    #[test]
    fn the_worst_inputs_stay_within_pagerdutys_limits() {
        let mut worst = message(MessageKind::Firing);
        worst.summary = "\u{0}".repeat(100_000);
        worst.description = Some("\u{1}".repeat(1_000_000));
        worst.samples = (0..50).map(|_| "\"".repeat(200_000)).collect();
        worst.context = (0..50).map(|_| "y".repeat(100_000)).collect();
        worst.alerts[0].labels = (0..5000)
            .map(|number| (format!("label_{number}\u{0}"), "\u{7}".repeat(3000)))
            .collect();
        for event in events(&worst).as_array().expect("events") {
            assert!(event.to_string().len() <= MAX_EVENT_BYTES);
            let summary = event["payload"]["summary"].as_str().expect("summary");
            assert!(summary.chars().count() <= MAX_SUMMARY_CHARS);
        }
    }
}
