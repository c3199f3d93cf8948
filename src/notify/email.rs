//! Email over SMTP with `lettre`: one multipart/alternative mail per message (plain
//! text and HTML with the same content as the Slack message), threaded — the firing
//! mail's `Message-ID` is stable for the alert and its firing episode, and the repeat and
//! the resolve carry `In-Reply-To`/`References` to it, so mail clients show one thread
//! per incident.
//!
//! Transport security (`smtp = "host:port"`): port 465 is implicit TLS (SMTPS, RFC 8314);
//! any other port speaks STARTTLS as `starttls` says — `required` (the default: no
//! cleartext fallback), `opportunistic` (when the server offers it), `none` (cleartext;
//! loopback relays only). Servers are verified like every outbound TLS connection of
//! Lookout (the system's roots), plus the PEM `ca_file` when set (a private CA).
//!
//! SMTP replies: 4xx (transient) and connection errors are retried with backoff until
//! the delivery deadline; 5xx (permanent) are final, reported with the server's text.
//! The password is a secret, never logged; it is not in the payload built here (nor in
//! the outbox, the dry run or the history).

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use serde_json::{Value, json};
use tokio::time::Instant;

use super::message::{
    AlertMessage, MAX_CONTEXT_LINE_CHARS, MAX_CONTEXT_LINES, MAX_LISTED, MAX_SAMPLE_CHARS,
    MAX_SAMPLES, Markup, MessageKind, alert_labels, alert_line, fingerprint, format_value, title,
    truncate,
};
use super::notifier_config::NotifierConfig;
use super::webhook::{Attempt, Outcome};

pub use super::notifier_config::StartTls;

/// The SMTP port of implicit TLS.
pub const IMPLICIT_TLS_PORT: u16 = 465;
/// A subject at most (characters).
const MAX_SUBJECT_CHARS: usize = 200;
/// A text of the body (summary, description) at most (characters).
const MAX_TEXT_CHARS: usize = 10_000;

/// `host:port` of `smtp`, or what is wrong with it.
pub fn parse_server(smtp: &str) -> Result<(String, u16), String> {
    let (host, port) = smtp
        .rsplit_once(':')
        .ok_or_else(|| format!("`{smtp}` is not `host:port`"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{smtp}`: the port is not a number from 1 to 65535"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("`{smtp}` is not `host:port`"));
    }
    Ok((host.to_string(), port))
}

fn mailbox(address: &str) -> Result<Mailbox, String> {
    address
        .parse::<Mailbox>()
        .map_err(|error| format!("`{address}` is not an email address ({error})"))
}

/// The errors of an email notifier's fields, each with its field (`smtp`, `from`, …).
pub fn validate(config: &NotifierConfig) -> Vec<String> {
    let mut errors = Vec::new();
    match config.smtp.as_deref().map(parse_server) {
        None => errors.push("smtp`: an email notifier needs `smtp = \"host:port\"`".into()),
        Some(Err(error)) => errors.push(format!("smtp`: {error}")),
        Some(Ok((_, port))) => {
            if port == IMPLICIT_TLS_PORT && config.starttls.is_some() {
                errors.push(format!(
                    "starttls`: port {IMPLICIT_TLS_PORT} is implicit TLS; remove `starttls`"
                ));
            }
        }
    }
    match config.from.as_deref().map(mailbox) {
        None => errors.push("from`: an email notifier needs a `from` address".into()),
        Some(Err(error)) => errors.push(format!("from`: {error}")),
        Some(Ok(_)) => {}
    }
    if config.to.is_empty() {
        errors.push("to`: name at least one recipient".into());
    }
    for (field, addresses) in [("to", &config.to), ("cc", &config.cc)] {
        for (number, address) in addresses.iter().enumerate() {
            if let Err(error) = mailbox(address) {
                errors.push(format!("{field}[{number}]`: {error}"));
            }
        }
    }
    let passwords = usize::from(config.password.is_some())
        + usize::from(config.password_env.is_some())
        + usize::from(config.password_file.is_some());
    if passwords > 1 {
        errors.push("password`: give one of `password_env`, `password_file` or `password`".into());
    }
    if passwords == 1 && config.username.is_none() {
        errors.push("username`: a password needs its `username`".into());
    }
    if passwords == 0 && config.username.is_some() {
        errors.push(
            "password`: a `username` needs one of `password_env`, `password_file` or `password`"
                .into(),
        );
    }
    if let Err((field, error)) = resolve_password(config) {
        errors.push(format!("password_{field}`: {error}"));
    }
    if let Some(path) = &config.ca_file {
        match std::fs::read(path) {
            Ok(pem) => {
                if Certificate::from_pem(&pem).is_err() {
                    errors.push(format!(
                        "ca_file`: `{}` holds no PEM certificate",
                        path.display()
                    ));
                }
            }
            Err(error) => errors.push(format!(
                "ca_file`: cannot read `{}`: {error}",
                path.display()
            )),
        }
    }
    errors
}

fn resolve_password(config: &NotifierConfig) -> Result<Option<String>, (&'static str, String)> {
    crate::secret::resolve_secret(
        config.password.as_ref().map(|secret| secret.0.as_str()),
        config.password_env.as_deref(),
        config.password_file.as_deref(),
    )
}

/// An email notifier: its SMTP transport and addresses.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    addresses: Addresses,
    backoff_min: Duration,
    backoff_max: Duration,
}

/// Who a mail is from and to, and the domain of its `Message-ID`s.
#[derive(Debug, Clone)]
pub struct Addresses {
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub domain: String,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Email")
            .field("addresses", &self.addresses)
            .finish()
    }
}

impl Email {
    /// The notifier of a validated `[notifiers.NAME]` table of type `email`; an error
    /// names the field (`smtp`, `ca_file`, …) it comes from.
    pub fn new(config: &NotifierConfig) -> Result<Email, String> {
        crate::install_tls_provider();
        let (host, port) = parse_server(config.smtp.as_deref().unwrap_or_default())
            .map_err(|error| format!("smtp`: {error}"))?;
        let mut tls = TlsParameters::builder(host.clone());
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|error| format!("ca_file`: cannot read `{}`: {error}", path.display()))?;
            let certificate = Certificate::from_pem(&pem)
                .map_err(|error| format!("ca_file`: `{}`: {error}", path.display()))?;
            tls = tls.add_root_certificate(certificate);
        }
        let tls = tls
            .build_rustls()
            .map_err(|error| format!("smtp`: cannot set up TLS: {error}"))?;
        let mode = if port == IMPLICIT_TLS_PORT {
            Tls::Wrapper(tls)
        } else {
            match config.starttls.unwrap_or(StartTls::Required) {
                StartTls::Required => Tls::Required(tls),
                StartTls::Opportunistic => Tls::Opportunistic(tls),
                StartTls::None => Tls::None,
            }
        };
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(mode)
            .timeout(Some(Duration::from_secs(10)));
        if let (Some(username), Some(password)) = (
            &config.username,
            resolve_password(config)
                .map_err(|(field, error)| format!("password_{field}`: {error}"))?,
        ) {
            transport = transport.credentials(Credentials::new(username.clone(), password));
        }
        let from = config.from.clone().unwrap_or_default();
        let domain = mailbox(&from)
            .map(|mailbox| mailbox.email.domain().to_string())
            .map_err(|error| format!("from`: {error}"))?;
        Ok(Email {
            transport: transport.build(),
            addresses: Addresses {
                from,
                to: config.to.clone(),
                cc: config.cc.clone(),
                domain,
            },
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        })
    }

    /// The mail of `message` as [`payload`] builds it.
    pub fn payload(&self, message: &AlertMessage) -> Value {
        payload(message, &self.addresses)
    }

    /// Sends the mail `payload` (built by [`payload`]), retrying 4xx replies and
    /// connection errors as DESIGN §6 says until `deadline`, telling `report` about
    /// each attempt as it ends.
    pub async fn deliver_reporting(
        &self,
        payload: &Value,
        deadline: Instant,
        report: &(dyn Fn(Attempt) + Send + Sync),
    ) -> Outcome {
        let mail = match mail(payload) {
            Ok(mail) => mail,
            Err(reason) => {
                report(Attempt {
                    number: 1,
                    status: None,
                    error: Some(reason.clone()),
                    retry_in: None,
                    rejected: true,
                    alert: None,
                });
                return Outcome::Rejected {
                    attempts: 1,
                    status: 0,
                    reason,
                };
            }
        };
        let mut attempts = 0;
        let mut backoff = self.backoff_min;
        loop {
            attempts += 1;
            let error = match self.transport.send(mail.clone()).await {
                Ok(response) => {
                    report(Attempt {
                        number: attempts,
                        status: Some(u16::from(response.code())),
                        error: None,
                        retry_in: None,
                        rejected: false,
                        alert: None,
                    });
                    return Outcome::Delivered { attempts };
                }
                Err(error) => error,
            };
            let status = error.status().map(u16::from);
            let reason = truncate(&error.to_string(), 1000);
            if error.is_permanent() {
                tracing::error!(status, %reason, "the SMTP server refused the mail; not retrying");
                report(Attempt {
                    number: attempts,
                    status,
                    error: Some(reason.clone()),
                    retry_in: None,
                    rejected: true,
                    alert: None,
                });
                return Outcome::Rejected {
                    attempts,
                    status: status.unwrap_or_default(),
                    reason,
                };
            }
            let delay = backoff / 2 + backoff.mul_f64(fastrand::f64() / 2.0);
            backoff = (backoff * 2).min(self.backoff_max);
            let gives_up = Instant::now() + delay > deadline;
            report(Attempt {
                number: attempts,
                status,
                error: Some(reason.clone()),
                retry_in: (!gives_up).then_some(delay),
                rejected: false,
                alert: None,
            });
            if gives_up {
                tracing::error!(attempts, error = %reason, "email delivery gave up at its deadline");
                return Outcome::GaveUp {
                    attempts,
                    last_error: reason,
                };
            }
            tracing::warn!(attempts, error = %reason, retry_in = ?delay, "email delivery failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// The `lettre` mail of a payload built by [`payload`].
fn mail(payload: &Value) -> Result<lettre::Message, String> {
    let text = |field: &str| payload[field].as_str().unwrap_or_default().to_string();
    let mut builder = lettre::Message::builder()
        .from(mailbox(&text("from"))?)
        .subject(text("subject"))
        .message_id(Some(text("message_id")));
    for address in payload["to"].as_array().into_iter().flatten() {
        builder = builder.to(mailbox(address.as_str().unwrap_or_default())?);
    }
    for address in payload["cc"].as_array().into_iter().flatten() {
        builder = builder.cc(mailbox(address.as_str().unwrap_or_default())?);
    }
    if let Some(parent) = payload["in_reply_to"].as_str() {
        builder = builder
            .in_reply_to(parent.to_string())
            .references(parent.to_string());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            text("text"),
            text("html"),
        ))
        .map_err(|error| format!("cannot build the mail: {error}"))
}

/// The thread of the alerts of `message`: their fingerprints and the second each started
/// firing, so one firing episode keeps one thread and the next firing starts another.
fn thread(message: &AlertMessage) -> String {
    let mut alerts: Vec<String> = message
        .alerts
        .iter()
        .map(|alert| {
            format!(
                "{}.{}",
                fingerprint(&alert_labels(message, alert)),
                alert.starts_at.unwrap_or(message.at).timestamp()
            )
        })
        .collect();
    alerts.sort();
    match alerts.as_slice() {
        [one] => one.clone(),
        many => {
            // many alerts: a fingerprint of their list (as labels `0`, `1`, …)
            let list = many
                .iter()
                .enumerate()
                .map(|(number, alert)| (number.to_string(), alert.clone()))
                .collect();
            format!("group.{}", fingerprint(&list))
        }
    }
}

/// Strips line breaks and other control characters (a header must stay one line).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|char| if char.is_control() { ' ' } else { char })
        .collect()
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The mail of `message` from and to `addresses`: headers (`from`, `to`, `cc`, `subject`,
/// `message_id`, `in_reply_to`) and both parts (`text`, `html`), as the dry run shows it.
pub fn payload(message: &AlertMessage, addresses: &Addresses) -> Value {
    let thread = thread(message);
    let domain = &addresses.domain;
    let firing_id = format!("<lookout.{thread}@{domain}>");
    let (message_id, in_reply_to) = match message.kind {
        MessageKind::Firing if message.resolved.is_empty() => (firing_id, None),
        // a flush that also resolves alerts is news in the thread, not its first mail
        // again (a client would drop a second mail with the first one's Message-ID)
        MessageKind::Firing | MessageKind::Repeat => (
            format!(
                "<lookout.{thread}.repeat.{}@{domain}>",
                message.at.timestamp()
            ),
            Some(firing_id),
        ),
        MessageKind::Resolved => (
            format!("<lookout.{thread}.resolved@{domain}>"),
            Some(firing_id),
        ),
    };
    let subject = one_line(&truncate(&title(message), MAX_SUBJECT_CHARS));
    let (text, html) = bodies(message);
    let mut mail = json!({
        "from": addresses.from,
        "to": addresses.to,
        "cc": addresses.cc,
        "subject": subject,
        "message_id": message_id,
        "text": text,
        "html": html,
    });
    if let Some(parent) = in_reply_to {
        mail["in_reply_to"] = json!(parent);
        mail["references"] = json!(parent);
    }
    mail
}

/// The plain-text and HTML bodies, with the Slack message's content.
fn bodies(message: &AlertMessage) -> (String, String) {
    let title = title(message);
    let mut text = format!("{title}\n\n");
    let mut html = format!(
        "<html><body>\n<h2>{}</h2>\n",
        escape_html(&truncate(&title, MAX_SUBJECT_CHARS))
    );
    for paragraph in [Some(&message.summary), message.description.as_ref()]
        .into_iter()
        .flatten()
        .filter(|text| !text.is_empty())
    {
        let paragraph = truncate(paragraph, MAX_TEXT_CHARS);
        text.push_str(&format!("{paragraph}\n\n"));
        html.push_str(&format!("<p>{}</p>\n", escape_html(&paragraph)));
    }
    let last = if message.kind == MessageKind::Resolved {
        " (last while firing)"
    } else {
        ""
    };
    let first_value = format_value(message.alerts.first().map_or(0.0, |alert| alert.value));
    let threshold = if message.threshold.is_empty() {
        String::new()
    } else {
        format!(" (threshold {})", truncate(&message.threshold, 100))
    };
    let mut facts = vec![("Severity".to_string(), truncate(&message.severity, 200))];
    if message.window.is_empty() {
        facts.push((format!("Value{last}"), format!("{first_value}{threshold}")));
    } else {
        facts.push((format!("Count{last}"), format!("{first_value}{threshold}")));
        facts.push(("Window".into(), truncate(&message.window, 100)));
    }
    facts.push(("Rule".into(), truncate(&message.rule, 200)));
    html.push_str("<table>\n");
    for (name, value) in &facts {
        text.push_str(&format!("{name}: {value}\n"));
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
            escape_html(name),
            escape_html(value)
        ));
    }
    html.push_str("</table>\n");
    for (heading, alerts) in [("Alerts", &message.alerts), ("Resolved", &message.resolved)] {
        if alerts.is_empty() && heading == "Resolved" {
            continue;
        }
        text.push_str(&format!("\n{heading}:\n"));
        html.push_str(&format!("<h3>{heading}</h3>\n<ul>\n"));
        for alert in alerts.iter().take(MAX_LISTED) {
            let line = truncate(&alert_line(alert, Markup::Plain), 1000);
            text.push_str(&format!("- {line}\n"));
            html.push_str(&format!("<li>{}</li>\n", escape_html(&line)));
        }
        if alerts.len() > MAX_LISTED {
            let more = format!("+{} more", alerts.len() - MAX_LISTED);
            text.push_str(&format!("{more}\n"));
            html.push_str(&format!("<li>{more}</li>\n"));
        }
        html.push_str("</ul>\n");
    }
    if message.kind != MessageKind::Resolved && !message.context.is_empty() {
        text.push_str("\nContext:\n");
        html.push_str("<h3>Context</h3>\n<ul>\n");
        for line in message.context.iter().take(MAX_CONTEXT_LINES) {
            let line = truncate(line, MAX_CONTEXT_LINE_CHARS);
            text.push_str(&format!("- {line}\n"));
            html.push_str(&format!("<li>{}</li>\n", escape_html(&line)));
        }
        html.push_str("</ul>\n");
    }
    if message.kind != MessageKind::Resolved && !message.samples.is_empty() {
        text.push_str("\nSample lines:\n");
        html.push_str("<h3>Sample lines</h3>\n<pre>");
        for line in message.samples.iter().take(MAX_SAMPLES) {
            let line = one_line(&truncate(line, MAX_SAMPLE_CHARS));
            text.push_str(&format!("  {line}\n"));
            html.push_str(&format!("{}\n", escape_html(&line)));
        }
        html.push_str("</pre>\n");
    }
    let mut links = Vec::new();
    if let Some((url, label)) = &message.link {
        links.push((label.to_string(), url.clone()));
    }
    if let Some(url) = &message.runbook_url {
        links.push(("Runbook".to_string(), url.clone()));
    }
    if !links.is_empty() {
        text.push('\n');
        html.push_str("<p>");
        for (number, (label, url)) in links.iter().enumerate() {
            text.push_str(&format!("{label}: {url}\n"));
            if number > 0 {
                html.push_str(" · ");
            }
            html.push_str(&format!(
                "<a href=\"{}\">{}</a>",
                escape_html(url),
                escape_html(label)
            ));
        }
        html.push_str("</p>\n");
    }
    html.push_str("</body></html>\n");
    (text, html)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::DateTime;

    use super::*;
    use crate::notify::message::AlertLine;

    fn message(kind: MessageKind) -> AlertMessage {
        let starts_at = DateTime::from_timestamp(1_795_341_000, 0);
        AlertMessage {
            kind,
            rule: "checkout_5xx".into(),
            at: DateTime::from_timestamp(1_795_341_600, 0).expect("time"),
            labels: BTreeMap::new(),
            description: None,
            severity: "warning".into(),
            summary: "31 HTTP 500s <in> checkout".into(),
            title: None,
            threshold: "> 20".into(),
            window: "1m".into(),
            alerts: vec![AlertLine {
                labels: BTreeMap::from([("service".to_string(), "checkout".to_string())]),
                value: 31.0,
                fired_for: (kind == MessageKind::Resolved).then(|| Duration::from_secs(600)),
                reason: None,
                starts_at,
                reference: None,
            }],
            resolved: Vec::new(),
            samples: vec!["payment\r\ntimeout".into()],
            context: Vec::new(),
            runbook_url: Some("https://runbooks.example/5xx".into()),
            link: Some((
                "http://127.0.0.1:9200/ui/search?q=x&y".into(),
                "Search these logs",
            )),
        }
    }

    fn addresses() -> Addresses {
        Addresses {
            from: "Lookout <alerts@example.com>".into(),
            to: vec!["oncall@example.com".into()],
            cc: Vec::new(),
            domain: "example.com".into(),
        }
    }

    #[test]
    fn the_resolve_threads_to_the_firing_mail() {
        let firing = payload(&message(MessageKind::Firing), &addresses());
        let repeat = payload(&message(MessageKind::Repeat), &addresses());
        let resolved = payload(&message(MessageKind::Resolved), &addresses());
        assert!(firing.get("in_reply_to").is_none());
        assert_eq!(resolved["in_reply_to"], firing["message_id"]);
        assert_eq!(resolved["references"], firing["message_id"]);
        assert_eq!(repeat["in_reply_to"], firing["message_id"]);
        let ids = [&firing, &repeat, &resolved].map(|mail| mail["message_id"].clone());
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
            "{ids:?}"
        );
        assert!(
            firing["message_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("<lookout.") && id.ends_with("@example.com>"))
        );
        assert_eq!(resolved["subject"], "[RESOLVED] checkout_5xx");
    }

    #[test]
    fn both_parts_carry_the_slack_messages_content_escaped() {
        let mail = payload(&message(MessageKind::Firing), &addresses());
        let (text, html) = (
            mail["text"].as_str().expect("text"),
            mail["html"].as_str().expect("html"),
        );
        for expected in [
            "[FIRING] checkout_5xx",
            "Count: 31 (threshold > 20)",
            "service=checkout — 31",
            "payment  timeout",
            "Runbook: https://runbooks.example/5xx",
        ] {
            assert!(text.contains(expected), "{expected} missing from {text}");
        }
        assert!(html.contains("31 HTTP 500s &lt;in&gt; checkout"), "{html}");
        assert!(
            html.contains(
                "<a href=\"http://127.0.0.1:9200/ui/search?q=x&amp;y\">Search these logs</a>"
            ),
            "{html}"
        );
        let built = mail_bytes(&mail);
        assert!(built.contains("multipart/alternative"), "{built}");
        assert!(built.contains("Message-ID: <lookout."), "{built}");
    }

    fn mail_bytes(payload: &Value) -> String {
        String::from_utf8(mail(payload).expect("builds").formatted()).expect("utf-8")
    }

    #[test]
    fn a_title_with_line_breaks_stays_one_header_line() {
        let mut hostile = message(MessageKind::Firing);
        hostile.title = Some("one\r\nBcc: everyone@example.com".into());
        let mail = payload(&hostile, &addresses());
        assert_eq!(mail["subject"], "one  Bcc: everyone@example.com");
        let bytes = mail_bytes(&mail);
        let headers = bytes.split("\r\n\r\n").next().unwrap_or_default();
        assert!(!headers.contains("\r\nBcc:"), "{headers}");
    }

    #[test]
    fn smtp_servers_parse_as_host_and_port() {
        assert_eq!(
            parse_server("mail.example.com:587"),
            Ok(("mail.example.com".into(), 587))
        );
        assert_eq!(parse_server("[::1]:25"), Ok(("::1".into(), 25)));
        for bad in ["mail.example.com", ":25", "host:0", "host:99999", "host:x"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }
}
