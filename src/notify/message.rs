//! Alert messages as Slack payloads: a `text` fallback plus Block Kit blocks, always within
//! Slack's limits (checked by the tests' `check_limits`, `tests/it/support/slack_limits.rs`,
//! for the worst inputs: long summaries, huge sample lines, sixty alerts at once).
//!
//! One message per rule and tick: the alerts of a rule that change at the same tick are
//! listed together, the first [`MAX_LISTED`] in full and the rest as "+N more". A message
//! carries severity, rule, count against threshold, window, the group labels, up to five
//! sample lines (truncated), the runbook link and a link to the UI search for exactly that
//! query and window (DESIGN §6).
//!
//! For `webhook` notifiers the same message becomes Alertmanager's webhook payload
//! (version 4), so receivers written for Alertmanager work unchanged.
//!
//! A group flush sends one message per receiver: its firing alerts, and after them the
//! alerts that resolved since the last flush ([`AlertMessage::resolved`]). The line each
//! alert gets ([`alert_line`]) is the same in every notifier, only its markup differs.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::slack::{MAX_HEADER_TEXT, MAX_MESSAGE_CHARS, MAX_SECTION_TEXT};

/// Alerts listed in full in one message.
pub const MAX_LISTED: usize = 10;
/// Sample log lines in one message, and how much of each.
pub const MAX_SAMPLES: usize = 5;
pub const MAX_SAMPLE_CHARS: usize = 400;
/// One listed alert's line (labels, value): ten of them leave room for everything else
/// within the 40 000-character message limit.
pub const MAX_ALERT_LINE_CHARS: usize = 1000;
/// `context` lines in one message, and how much of each.
pub const MAX_CONTEXT_LINES: usize = 10;
pub const MAX_CONTEXT_LINE_CHARS: usize = 280;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Firing,
    Repeat,
    Resolved,
}

impl MessageKind {
    /// `firing`, `repeat` or `resolved`, as the history and the outbox name it.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Firing => "firing",
            MessageKind::Repeat => "repeat",
            MessageKind::Resolved => "resolved",
        }
    }
}

/// One alert (group) in a message.
#[derive(Debug, Clone)]
pub struct AlertLine {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// For a resolved alert: how long it fired; `reason` when not the condition.
    pub fired_for: Option<Duration>,
    pub reason: Option<String>,
    /// When it started firing (for a resolved one: the firing it ends).
    pub starts_at: Option<DateTime<Utc>>,
    /// A spike rule's value at its reference time (for a resolved one: when it last
    /// fired).
    pub reference: Option<f64>,
}

/// Everything a message says.
#[derive(Debug, Clone)]
pub struct AlertMessage {
    pub kind: MessageKind,
    pub rule: String,
    /// The evaluation (tick) that produced it.
    pub at: DateTime<Utc>,
    /// The rule's `labels`, common to every alert of the message.
    pub labels: BTreeMap<String, String>,
    pub description: Option<String>,
    pub severity: String,
    /// The rendered `summary` template (or the notifier's `body_template`).
    pub summary: String,
    /// The notifier's rendered `title_template`; `None`: the default title
    /// ([`title`]).
    pub title: Option<String>,
    pub threshold: String,
    pub window: String,
    pub alerts: Vec<AlertLine>,
    /// Alerts of the same group flush that resolved, listed after the firing ones (one
    /// notification per flush, as Alertmanager's); empty when the message is of one kind
    /// (a message of resolved alerts only has them in `alerts`, with kind `Resolved`).
    pub resolved: Vec<AlertLine>,
    /// Matching log lines, newest first.
    pub samples: Vec<String>,
    /// The rule's `context` values, one line each (`expression = value unit`).
    pub context: Vec<String>,
    pub runbook_url: Option<String>,
    /// The UI link and its text: the search of a log rule's window, or the graph of a
    /// metric rule's expression.
    pub link: Option<(String, &'static str)>,
}

/// The UI search link of DESIGN §6: `/ui/search?index=I&q=LUCENE&from=T&to=T`, or `&dsl=`
/// with the query as JSON.
pub fn search_url(
    external_url: &str,
    index: &str,
    query: &Value,
    from: &str,
    to: &str,
) -> Option<String> {
    let base = format!("{}/ui/search", external_url.trim_end_matches('/'));
    let query_parameter = match query {
        Value::String(text) => ("q", text.clone()),
        other => ("dsl", other.to_string()),
    };
    reqwest::Url::parse_with_params(
        &base,
        [
            ("index", index.to_string()),
            query_parameter,
            ("from", from.to_string()),
            ("to", to.to_string()),
        ],
    )
    .ok()
    .map(String::from)
}

/// The UI's metrics page for `expression`, the hour before `at`.
pub fn graph_url(external_url: &str, expression: &str, at: DateTime<Utc>) -> Option<String> {
    let base = format!("{}/ui/metrics", external_url.trim_end_matches('/'));
    let from = at - chrono::Duration::hours(1);
    reqwest::Url::parse_with_params(
        &base,
        [
            ("expr", expression),
            ("from", &from.to_rfc3339()),
            ("to", &at.to_rfc3339()),
        ],
    )
    .ok()
    .map(String::from)
}

/// Cuts `text` to `limit` characters, marking the cut.
pub(super) fn truncate(text: &str, limit: usize) -> String {
    // stops at the limit: texts can be megabytes, and are cut many times over
    if text.char_indices().nth(limit).is_none() {
        return text.to_string();
    }
    let end = text
        .char_indices()
        .nth(limit.saturating_sub(1))
        .map_or(0, |(at, _)| at);
    format!("{}…", &text[..end])
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value:.3}")
    }
}

pub(super) fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        _ => format!("{}h {}m", seconds / 3600, seconds / 60 % 60),
    }
}

/// How a notifier marks up an alert's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    /// Slack's mrkdwn: labels as code, the value bold, text escaped.
    Slack,
    /// Markdown (Teams' TextBlocks): labels comma-separated, the value bold.
    Markdown,
    /// Plain text (email; its HTML part escapes the line as a whole).
    Plain,
}

/// One alert of a message as every notifier lists it: its labels (`(no group)` without
/// any), its value, how long it fired (a resolved alert) and why it resolved, when not
/// by its condition.
pub fn alert_line(alert: &AlertLine, markup: Markup) -> String {
    let labels = if alert.labels.is_empty() {
        "(no group)".to_string()
    } else {
        let pairs = alert.labels.iter();
        match markup {
            Markup::Slack => pairs
                .map(|(name, value)| format!("`{}={}`", escape(name), escape(value)))
                .collect::<Vec<_>>()
                .join(" "),
            Markup::Markdown => pairs
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(", "),
            Markup::Plain => pairs
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(" "),
        }
    };
    let value = format_value(alert.value);
    let mut line = match markup {
        Markup::Slack => format!("{labels} — *{value}*"),
        Markup::Markdown => format!("{labels} — **{value}**"),
        Markup::Plain => format!("{labels} — {value}"),
    };
    if let Some(fired_for) = alert.fired_for {
        line.push_str(&format!(" — fired for {}", format_duration(fired_for)));
    }
    if let Some(reason) = &alert.reason {
        let reason = match markup {
            Markup::Slack => escape(reason),
            Markup::Markdown | Markup::Plain => reason.clone(),
        };
        line.push_str(&format!(" ({reason})"));
    }
    line
}

/// `FIRING`, `STILL FIRING` or `RESOLVED`.
pub fn status_word(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Firing => "FIRING",
        MessageKind::Repeat => "STILL FIRING",
        MessageKind::Resolved => "RESOLVED",
    }
}

/// The title of `message` in every notifier: its `title` (a notifier's
/// `title_template`), else `[FIRING ×3] rule`.
pub fn title(message: &AlertMessage) -> String {
    if let Some(title) = &message.title {
        return title.clone();
    }
    let times = |count: usize| {
        if count > 1 {
            format!(" ×{count}")
        } else {
            String::new()
        }
    };
    let resolved = if message.resolved.is_empty() {
        String::new()
    } else {
        format!(", RESOLVED{}", times(message.resolved.len()))
    };
    format!(
        "[{}{}{resolved}] {}",
        status_word(message.kind),
        times(message.alerts.len()),
        message.rule
    )
}

/// The Slack payload of `message`.
pub fn slack_payload(message: &AlertMessage) -> Value {
    let emoji = match message.kind {
        MessageKind::Firing => "🔥",
        MessageKind::Repeat => "🔁",
        MessageKind::Resolved => "✅",
    };
    let status = status_word(message.kind);
    let title = format!("{emoji} {}", title(message));
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&title, MAX_HEADER_TEXT), "emoji": true}
    })];
    if !message.summary.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&escape(&message.summary), MAX_SECTION_TEXT)}
        }));
    }
    if let Some(description) = message.description.as_ref().filter(|text| !text.is_empty()) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&escape(description), MAX_SECTION_TEXT)}
        }));
    }
    let first_value = format_value(message.alerts.first().map_or(0.0, |alert| alert.value));
    let threshold = if message.threshold.is_empty() {
        String::new()
    } else {
        format!(
            " (threshold {})",
            truncate(&escape(&message.threshold), 100)
        )
    };
    // a log rule counts in a window; a metric rule has a value
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{}", truncate(&escape(&message.severity), 200))}),
    ];
    // a resolve carries the last value while firing, and says so
    let last = if message.kind == MessageKind::Resolved {
        " (last while firing)"
    } else {
        ""
    };
    if message.window.is_empty() {
        fields.push(
            json!({"type": "mrkdwn", "text": format!("*Value{last}*\n{first_value}{threshold}")}),
        );
    } else {
        fields.push(
            json!({"type": "mrkdwn", "text": format!("*Count{last}*\n{first_value}{threshold}")}),
        );
        fields.push(json!({"type": "mrkdwn", "text": format!("*Window*\n{}", truncate(&escape(&message.window), 100))}));
    }
    fields.push(json!({"type": "mrkdwn", "text": format!("*Rule*\n{}", truncate(&escape(&message.rule), 200))}));
    blocks.push(json!({"type": "section", "fields": fields}));
    // the lines of both lists together stay within MAX_LISTED (Slack's message limit)
    let listed = |alerts: &[AlertLine], limit: usize, blocks: &mut Vec<Value>| {
        for alert in alerts.iter().take(limit) {
            let line = alert_line(alert, Markup::Slack);
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(&line, MAX_ALERT_LINE_CHARS)}
            }));
        }
        if alerts.len() > limit {
            blocks.push(json!({
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": format!("+{} more", alerts.len() - limit)}]
            }));
        }
    };
    listed(&message.alerts, MAX_LISTED, &mut blocks);
    if !message.resolved.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": "✅ *Resolved*"}
        }));
        let left = MAX_LISTED.saturating_sub(message.alerts.len());
        listed(&message.resolved, left, &mut blocks);
    }
    if message.kind != MessageKind::Resolved && !message.context.is_empty() {
        let lines: Vec<String> = message
            .context
            .iter()
            .take(MAX_CONTEXT_LINES)
            .map(|line| format!("• {}", truncate(&escape(line), MAX_CONTEXT_LINE_CHARS)))
            .collect();
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&format!("*Context*\n{}", lines.join("\n")), MAX_SECTION_TEXT)}
        }));
    }
    if message.kind != MessageKind::Resolved && !message.samples.is_empty() {
        // a code block of at most five lines, each cut, the whole within a section
        let budget = MAX_SECTION_TEXT - "*Sample lines*\n``````".len();
        let mut samples = String::new();
        for sample in message.samples.iter().take(MAX_SAMPLES) {
            let line = truncate(&escape(&sample.replace("```", "'''")), MAX_SAMPLE_CHARS);
            if samples.chars().count() + line.chars().count() + 1 > budget {
                break;
            }
            samples.push_str(&line);
            samples.push('\n');
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*Sample lines*\n```{samples}```")}
        }));
    }
    let mut links = Vec::new();
    if let Some(url) = &message.runbook_url {
        links.push(format!("<{url}|Runbook>"));
    }
    if let Some((url, text)) = &message.link {
        links.push(format!("<{url}|{text}>"));
    }
    if !links.is_empty() {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": truncate(&links.join("  ·  "), MAX_SECTION_TEXT)}]
        }));
    }
    let text = truncate(
        &format!("[{status}] {}: {}", message.rule, message.summary),
        MAX_SECTION_TEXT,
    );
    let mut payload = json!({"text": text, "blocks": blocks});
    fit_message(&mut payload);
    payload
}

/// Every cut above counts characters, but Slack counts the message as sent: a text of
/// control characters (`\u0000` is six characters in JSON) can pass each cut and still
/// make the message too long. Halves the longest text until the whole fits.
fn fit_message(payload: &mut Value) {
    fn strings(value: &Value, pointer: String, found: &mut Vec<(usize, String)>) {
        match value {
            Value::String(text) => found.push((text.len(), pointer)),
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    strings(item, format!("{pointer}/{index}"), found);
                }
            }
            Value::Object(fields) => {
                for (name, item) in fields {
                    // the names here are Block Kit's own: no `~` or `/` to escape
                    strings(item, format!("{pointer}/{name}"), found);
                }
            }
            _ => {}
        }
    }
    while payload.to_string().chars().count() > MAX_MESSAGE_CHARS {
        let mut found = Vec::new();
        strings(payload, String::new(), &mut found);
        let Some((_, pointer)) = found.into_iter().max() else {
            return;
        };
        let Some(Value::String(text)) = payload.pointer_mut(&pointer) else {
            return;
        };
        let length = text.chars().count();
        if length < 16 {
            return;
        }
        *text = truncate(text, length / 2);
    }
}

/// The labels of one alert as Alertmanager would show them: the rule's labels, the group
/// labels, `alertname` and `severity` (an alert of a message merging several rules
/// carries its own `alertname`).
pub fn alert_labels(message: &AlertMessage, alert: &AlertLine) -> BTreeMap<String, String> {
    let mut labels = message.labels.clone();
    labels.extend(alert.labels.clone());
    labels
        .entry("alertname".into())
        .or_insert_with(|| message.rule.clone());
    labels
        .entry("severity".into())
        .or_insert_with(|| message.severity.clone());
    labels
}

/// Prometheus' label-set fingerprint (FNV-1a 64 over sorted names and values, each
/// followed by 0xff), so the `fingerprint` of a webhook alert is the one Alertmanager
/// would compute. Hand-written: eight lines, not worth a hashing crate.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in labels {
        for byte in name
            .bytes()
            .chain([0xff])
            .chain(value.bytes())
            .chain([0xff])
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Alertmanager's webhook payload (version 4) of `message`, as sent to `receiver`.
pub fn alertmanager_payload(message: &AlertMessage, receiver: &str, external_url: &str) -> Value {
    let status = if message.kind == MessageKind::Resolved {
        "resolved"
    } else {
        "firing"
    };
    let mut annotations = serde_json::Map::new();
    if !message.summary.is_empty() {
        annotations.insert("summary".into(), json!(message.summary));
    }
    if let Some(description) = &message.description {
        annotations.insert("description".into(), json!(description));
    }
    if let Some(url) = &message.runbook_url {
        annotations.insert("runbook_url".into(), json!(url));
    }
    let resolved_status = message
        .alerts
        .iter()
        .map(|alert| (alert, status))
        .chain(message.resolved.iter().map(|alert| (alert, "resolved")));
    let alerts: Vec<Value> = resolved_status
        .map(|(alert, status)| {
            let labels = alert_labels(message, alert);
            let mut alert_annotations = annotations.clone();
            alert_annotations.insert("value".into(), json!(format_value(alert.value)));
            if let Some(reason) = &alert.reason {
                alert_annotations.insert("resolve_reason".into(), json!(reason));
            }
            json!({
                "status": status,
                "labels": labels,
                "annotations": alert_annotations,
                "startsAt": alert.starts_at.unwrap_or(message.at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                // Alertmanager's zero time for an alert that has not ended
                "endsAt": if status == "resolved" {
                    message.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                } else {
                    "0001-01-01T00:00:00Z".to_string()
                },
                "generatorURL": message.link.as_ref().map(|(url, _)| url.clone()).unwrap_or_default(),
                "fingerprint": fingerprint(&labels),
            })
        })
        .collect();
    let group_labels = BTreeMap::from([("alertname".to_string(), message.rule.clone())]);
    // labels every alert shares
    let mut common: BTreeMap<String, String> = message
        .alerts
        .first()
        .map(|alert| alert_labels(message, alert))
        .unwrap_or_default();
    for alert in message.alerts.iter().chain(&message.resolved) {
        let labels = alert_labels(message, alert);
        common.retain(|name, value| labels.get(name) == Some(value));
    }
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", message.rule),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::slack::limits::check_limits;

    fn message(kind: MessageKind, alerts: usize) -> AlertMessage {
        AlertMessage {
            kind,
            rule: "checkout_5xx".into(),
            at: DateTime::from_timestamp(1_795_341_600, 0).expect("time"),
            labels: BTreeMap::from([("team".to_string(), "payments".to_string())]),
            description: None,
            severity: "critical".into(),
            summary: "31 HTTP 500s in the last 1m on checkout".into(),
            title: None,
            threshold: "> 20".into(),
            window: "1m".into(),
            alerts: (0..alerts)
                .map(|number| AlertLine {
                    labels: BTreeMap::from([("service".to_string(), format!("svc-{number}"))]),
                    value: 31.0,
                    fired_for: (kind == MessageKind::Resolved).then(|| Duration::from_secs(754)),
                    reason: None,
                    starts_at: DateTime::from_timestamp(1_795_340_946, 0),
                    reference: None,
                })
                .collect(),
            resolved: Vec::new(),
            samples: vec![
                r#"{"status":500,"service":"checkout","message":"payment <backend> timeout"}"#
                    .into(),
            ],
            context: vec![
                "sum(rate(http_requests_total{service=\"checkout\"}[5m])) = 12.5/s".into(),
            ],
            runbook_url: Some("https://runbooks.example/checkout-5xx".into()),
            link: search_url(
                "http://127.0.0.1:9200",
                "logs",
                &json!("status:500 AND service:checkout"),
                "2026-11-22T09:59:00Z",
                "2026-11-22T10:00:00Z",
            )
            .map(|url| (url, "Search these logs")),
        }
    }

    #[test]
    fn a_firing_message_says_what_fired_and_links_to_the_logs() {
        let payload = slack_payload(&message(MessageKind::Firing, 1));
        check_limits(&payload).expect("within Slack's limits");
        let text = payload.to_string();
        assert!(text.contains("[FIRING] checkout_5xx"), "{text}");
        assert!(text.contains("31 (threshold &gt; 20)"), "{text}");
        assert!(text.contains("`service=svc-0`"), "{text}");
        assert!(
            text.contains("payment &lt;backend&gt; timeout"),
            "escaped for mrkdwn: {text}"
        );
        assert!(text.contains("<https://runbooks.example/checkout-5xx|Runbook>"));
        assert!(
            text.contains("*Context*\\n• sum(rate(http_requests_total{service=\\\"checkout\\\"}[5m])) = 12.5/s"),
            "{text}"
        );
        assert!(
            text.contains("http://127.0.0.1:9200/ui/search?index=logs&q=status%3A500+AND+service%3Acheckout&from=2026-11-22T09%3A59%3A00Z&to=2026-11-22T10%3A00%3A00Z"),
            "{text}"
        );
    }

    #[test]
    fn a_resolved_message_says_how_long_it_fired() {
        let payload = slack_payload(&message(MessageKind::Resolved, 1));
        check_limits(&payload).expect("within Slack's limits");
        let text = payload.to_string();
        assert!(text.contains("[RESOLVED] checkout_5xx"));
        assert!(text.contains("fired for 12m 34s"), "{text}");
        assert!(!text.contains("Sample lines"), "no samples when resolved");
    }

    #[test]
    fn the_worst_inputs_stay_within_slacks_limits() {
        let mut worst = message(MessageKind::Firing, 60);
        worst.summary = "s".repeat(10_000);
        worst.description = Some("d".repeat(10_000));
        worst.rule = "r".repeat(500);
        worst.samples = (0..20).map(|_| "x".repeat(100_000)).collect();
        worst.context = (0..50).map(|_| "y".repeat(10_000)).collect();
        worst.alerts[0].labels = (0..200)
            .map(|number| (format!("label_{number}"), "v".repeat(100)))
            .collect();
        let payload = slack_payload(&worst);
        check_limits(&payload).expect("within Slack's limits");
        let text = payload.to_string();
        assert!(text.contains("+50 more"), "sixty alerts, ten listed");
        assert!(text.contains("[FIRING ×60]"));
    }

    #[test]
    fn control_characters_escaped_in_json_still_fit_the_message() {
        // each `\0` is one character but six as sent (`\u0000`): every cut holds, the
        // whole message would not (the notifier fuzz test's case)
        let mut worst = message(MessageKind::Firing, 12);
        worst.summary = "\0".repeat(5_000);
        worst.description = Some("\r".repeat(5_000));
        worst.severity = "\0".repeat(500);
        for alert in &mut worst.alerts {
            alert.labels = BTreeMap::from([(String::new(), "\0".repeat(2_000))]);
        }
        worst.samples = (0..5).map(|_| "\0".repeat(1_000)).collect();
        worst.context = (0..10).map(|_| "\0".repeat(300)).collect();
        let payload = slack_payload(&worst);
        check_limits(&payload).expect("within Slack's limits");
        assert!(
            payload.to_string().contains("[FIRING ×12]"),
            "the text stays"
        );
    }

    #[test]
    fn the_webhook_payload_is_alertmanagers() {
        let payload = alertmanager_payload(
            &message(MessageKind::Resolved, 2),
            "pager",
            "http://127.0.0.1:9200",
        );
        assert_eq!(payload["version"], "4");
        assert_eq!(payload["status"], "resolved");
        assert_eq!(payload["receiver"], "pager");
        assert_eq!(payload["groupLabels"], json!({"alertname": "checkout_5xx"}));
        assert_eq!(
            payload["commonLabels"],
            json!({"alertname": "checkout_5xx", "severity": "critical", "team": "payments"}),
            "service differs between the two alerts"
        );
        let alert = &payload["alerts"][0];
        assert_eq!(
            alert["labels"],
            json!({"alertname": "checkout_5xx", "severity": "critical", "team": "payments", "service": "svc-0"})
        );
        assert_eq!(alert["status"], "resolved");
        assert_eq!(alert["startsAt"], "2026-11-22T09:49:06.000Z");
        assert_eq!(alert["endsAt"], "2026-11-22T10:00:00.000Z");
        assert_eq!(
            alert["annotations"]["runbook_url"],
            "https://runbooks.example/checkout-5xx"
        );
        assert!(
            alert["generatorURL"]
                .as_str()
                .is_some_and(|url| url.contains("/ui/search?"))
        );
        // Prometheus' fingerprint of {} is the FNV-1a offset basis
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        assert_eq!(alert["fingerprint"].as_str().map(str::len), Some(16));
    }

    #[test]
    fn a_dsl_query_goes_into_the_link_as_json() {
        let url = search_url(
            "https://lookout.example/",
            "logs-*",
            &json!({"term": {"status": 500}}),
            "now-5m",
            "now",
        )
        .expect("url");
        assert_eq!(
            url,
            "https://lookout.example/ui/search?index=logs-*&dsl=%7B%22term%22%3A%7B%22status%22%3A500%7D%7D&from=now-5m&to=now"
        );
    }
}
