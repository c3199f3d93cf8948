//! Notifier payloads: any alert content (huge, unicode, control characters, many alerts
//! and labels) yields, for every notifier type, a payload within its service's limits —
//! Slack's (`check_limits`, shared with the mock Slack), PagerDuty's (512 KB per event,
//! a 1 024-character summary, a severity of four), Teams' (28 KB) and a mail whose
//! subject stays one header line.

use std::collections::BTreeMap;

use chrono::DateTime;
use lookout::notify::email::{self, Addresses};
use lookout::notify::message::{AlertLine, AlertMessage, MessageKind, slack_payload};
use lookout::notify::{msteams, pagerduty};
use proptest::prelude::*;

use crate::harness::{self, HOSTILE, run_case};

#[path = "../it/support/slack_limits.rs"]
mod slack_limits;

/// Text made of hostile tokens and plain words, up to `max` pieces repeated up to
/// `repeat` times (so up to megabytes).
fn text(max: usize, repeat: usize) -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(HOSTILE.to_vec()).prop_map(str::to_string),
                "\\PC{0,12}",
                Just("\"\\<>&`*_~|\n\r\t".to_string()),
            ],
            0..max,
        ),
        1..=repeat,
    )
        .prop_map(|(pieces, repeat)| pieces.concat().repeat(repeat))
}

fn labels(max: usize) -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(text(3, 20), text(4, 300), 0..max)
}

fn message() -> impl Strategy<Value = AlertMessage> {
    (
        (
            proptest::sample::select(vec![
                MessageKind::Firing,
                MessageKind::Repeat,
                MessageKind::Resolved,
            ]),
            text(4, 200),
            labels(8),
            proptest::option::of(text(6, 3_000)),
            text(3, 10),
            text(6, 3_000),
            proptest::option::of(text(4, 500)),
        ),
        (
            text(3, 100),
            text(3, 100),
            proptest::collection::vec(
                (
                    labels(10),
                    any::<f64>(),
                    proptest::option::of(0u64..10_000_000),
                ),
                1..25,
            ),
            proptest::collection::vec(text(6, 5_000), 0..12),
            proptest::collection::vec(text(4, 1_000), 0..15),
            proptest::option::of(text(3, 2000)),
        ),
    )
        .prop_map(
            |(
                (kind, rule, rule_labels, description, severity, summary, title),
                (threshold, window, alerts, samples, context, runbook_url),
            )| {
                let alerts: Vec<AlertLine> = alerts
                    .into_iter()
                    .map(|(labels, value, fired_for)| AlertLine {
                        labels,
                        value,
                        fired_for: fired_for.map(std::time::Duration::from_secs),
                        reason: None,
                        starts_at: DateTime::from_timestamp(1_795_341_000, 0),
                        reference: None,
                    })
                    .collect();
                // a flush that also carries resolved alerts: as many again
                let resolved = if kind == MessageKind::Firing {
                    alerts.clone()
                } else {
                    Vec::new()
                };
                AlertMessage {
                    kind,
                    rule,
                    at: DateTime::from_timestamp(1_795_341_600, 0).expect("time"),
                    labels: rule_labels,
                    description,
                    severity,
                    summary,
                    title,
                    threshold,
                    window,
                    alerts,
                    resolved,
                    samples,
                    context,
                    runbook_url,
                    link: Some((
                        "http://127.0.0.1:9200/ui/search?q=x".into(),
                        "Search these logs",
                    )),
                }
            },
        )
}

#[test]
fn any_alert_yields_payloads_within_every_services_limits() {
    harness::check(message, |message| {
        run_case(
            "notifier payloads",
            format!(
                "{:?}",
                (&message.rule, &message.summary, message.alerts.len())
            ),
            move || {
                slack_limits::check_limits(&slack_payload(&message))
                    .map_err(|error| format!("slack: {error}"))?;
                for event in pagerduty::events(&message).as_array().ok_or("no events")? {
                    let size = event.to_string().len();
                    if size > pagerduty::MAX_EVENT_BYTES {
                        return Err(format!("pagerduty: an event of {size} bytes"));
                    }
                    if let Some(payload) = event.get("payload") {
                        let summary = payload["summary"].as_str().ok_or("no summary")?;
                        if summary.is_empty() || summary.chars().count() > 1024 {
                            return Err(format!(
                                "pagerduty: a summary of {} characters",
                                summary.chars().count()
                            ));
                        }
                        let severity = payload["severity"].as_str().unwrap_or_default();
                        if !["critical", "error", "warning", "info"].contains(&severity) {
                            return Err(format!("pagerduty: severity `{severity}`"));
                        }
                    }
                }
                let card = msteams::card_payload(&message).to_string().len();
                if card > msteams::MAX_PAYLOAD_BYTES {
                    return Err(format!("teams: a card of {card} bytes"));
                }
                let mail = email::payload(
                    &message,
                    &Addresses {
                        from: "alerts@lookout.example".into(),
                        to: vec!["oncall@example.com".into()],
                        cc: Vec::new(),
                        domain: "lookout.example".into(),
                    },
                );
                let subject = mail["subject"].as_str().ok_or("no subject")?;
                if subject.chars().any(char::is_control) || subject.chars().count() > 200 {
                    return Err(format!("email: subject {subject:?}"));
                }
                Ok(())
            },
        )
    });
}
