//! Paging through the real binary, against local receivers that enforce each service's
//! contract: PagerDuty's Events API v2 (trigger and resolve sharing one `dedup_key`, 429
//! and 500 retried, 400 final with PagerDuty's errors in the history, the same
//! `dedup_key` resent after a kill -9 that followed PagerDuty's acceptance), email to a
//! real SMTP server (STARTTLS required with a private CA, or none; multipart; the resolve
//! threaded to the firing mail; 4xx retried, 5xx final with the server's text), Teams
//! (Adaptive Cards within 28 KB even for huge alerts), templates, the dry run's payload
//! for every notifier type, PagerDuty's attempts numbered per alert when one flush
//! carries several, and no secret in logs or API output, failed deliveries included.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::msteams::{self, MockTeams};
use crate::support::pagerduty::{self, MockPagerDuty, ROUTING_KEY, accepted};
use crate::support::rules::{
    assert_no_secret_leaks, deliveries, ingest_500s, ingest_for, serve_config,
};
use crate::support::smtp::{self, SmtpServer};
use crate::support::wait_until;

const SMTP_PASSWORD: &str = "Sm7pPa55w0rdS3cr3t";

/// A rule counting `status:500` over 5 s every 5 s, alerting above 0.
fn write_rule(queries: &Path, name: &str, severity: &str, notify: &[&str]) {
    std::fs::create_dir_all(queries).expect("mkdir");
    std::fs::write(
        queries.join(format!("{name}.json")),
        json!({
            "version": 1,
            "schedule": "*/5 * * * * *",
            "query": "status:500",
            "window": "5s",
            "threshold": {"op": ">", "value": 0},
            "severity": severity,
            "notify": notify,
            "summary": "{{ $count }} HTTP 500s in the last {{ $window }}",
            "runbook_url": "https://runbooks.example/500s"
        })
        .to_string(),
    )
    .expect("rule");
}

// the mocks run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_triggers_and_resolves_with_one_dedup_key_retrying_429_and_500_not_400() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    write_rule(&queries, "crit", "critical", &["pager"]);
    write_rule(&queries, "refused", "error", &["pager_refusing"]);
    let pager = Arc::new(Mutex::new(MockPagerDuty::default()));
    pager.lock().expect("mock").script.extend([
        (429, json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly"})),
        (500, json!({"status": "error"})),
    ]);
    let refusing = Arc::new(Mutex::new(MockPagerDuty::default()));
    refusing.lock().expect("mock").script.push_back((
        400,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["'payload.component' is not allowed here"]}),
    ));
    let (pager_url, refusing_url) = (
        pagerduty::start_mock(pager.clone()).await,
        pagerduty::start_mock(refusing.clone()).await,
    );
    let server = serve_config(
        dir.path(),
        &[],
        &format!(
            r#"
[notifiers.pager]
type = "pagerduty"
routing_key_env = "PD_KEY"
url = "{pager_url}"

[notifiers.pager_refusing]
type = "pagerduty"
routing_key_env = "PD_KEY"
url = "{refusing_url}"
"#
        ),
        &[("PD_KEY", ROUTING_KEY), ("LOOKOUT_LOG", "info")],
    );
    ingest_500s(&server, 3).await;
    wait_until("PagerDuty accepts the trigger", 30, accepted(&pager, 1)).await;
    wait_until("and the resolve", 40, accepted(&pager, 2)).await;
    let (trigger, resolve) = {
        let mock = pager.lock().expect("mock");
        (mock.accepted[0].clone(), mock.accepted[1].clone())
    };
    assert_eq!(trigger["event_action"], "trigger", "{trigger}");
    assert_eq!(resolve["event_action"], "resolve", "{resolve}");
    assert_eq!(trigger["dedup_key"], resolve["dedup_key"], "one incident");
    assert_eq!(trigger["payload"]["severity"], "critical", "{trigger}");
    assert_eq!(trigger["payload"]["class"], "crit", "{trigger}");
    assert_eq!(
        trigger["payload"]["summary"], "[FIRING] crit: 3 HTTP 500s in the last 5s",
        "{trigger}"
    );
    assert_eq!(trigger["payload"]["custom_details"]["count"], "3");
    assert!(
        trigger["payload"]["custom_details"]["sample_lines"][0]
            .as_str()
            .is_some_and(|line| line.contains("payment timeout")),
        "{trigger}"
    );
    assert_eq!(trigger["links"][1]["href"], "https://runbooks.example/500s");
    assert!(
        trigger["links"][0]["href"]
            .as_str()
            .is_some_and(|url| url.contains("/ui/search?")),
        "{trigger}"
    );
    assert_eq!(
        pager.lock().expect("mock").received.len(),
        4,
        "429, 500, then the trigger accepted; the resolve"
    );
    let crit = deliveries(&server, "crit", "pager").await;
    let outcomes: Vec<(&str, Option<u64>)> = crit
        .iter()
        .map(|event| {
            (
                event["outcome"].as_str().unwrap_or_default(),
                event["status"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("retrying", Some(429)),
            ("retrying", Some(500)),
            ("delivered", Some(202)),
            ("delivered", Some(202))
        ],
        "every attempt is in the history: {crit:?}"
    );

    wait_until("the 400 is in the history", 30, || async {
        deliveries(&server, "refused", "pager_refusing")
            .await
            .iter()
            .any(|event| event["outcome"] == "rejected")
    })
    .await;
    let refused = deliveries(&server, "refused", "pager_refusing").await;
    assert_eq!(refused[0]["status"], 400, "{refused:?}");
    assert!(
        refused[0]["error"]
            .as_str()
            .is_some_and(|error| error.contains("'payload.component' is not allowed here")),
        "PagerDuty's errors are kept: {refused:?}"
    );
    let triggers = refusing
        .lock()
        .expect("mock")
        .received
        .iter()
        .filter(|event| event["event_action"] == "trigger")
        .count();
    assert_eq!(triggers, 1, "a 400 is not retried");
    assert_no_secret_leaks(&server, &["crit"], &[ROUTING_KEY]).await;
}

// the mock runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_pagerduty_accepted_before_a_kill_9_is_resent_with_the_same_dedup_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_rule(&dir.path().join("queries"), "crit", "critical", &["pager"]);
    let pager = Arc::new(Mutex::new(MockPagerDuty::default()));
    // accepted, but the answer never reaches Lookout before it dies
    pager.lock().expect("mock").hold_next_answer = Some(Duration::from_secs(60));
    let url = pagerduty::start_mock(pager.clone()).await;
    let config = format!(
        "[notifiers.pager]\ntype = \"pagerduty\"\nrouting_key_env = \"PD_KEY\"\nurl = \"{url}\"\n"
    );
    let env = [("PD_KEY", ROUTING_KEY)];
    let server = serve_config(dir.path(), &[], &config, &env);
    ingest_500s(&server, 3).await;
    wait_until("PagerDuty accepted the trigger", 30, accepted(&pager, 1)).await;
    server.kill();
    let _server = serve_config(dir.path(), &[], &config, &env);
    wait_until("the resend after the restart, then the resolve", 40, || {
        let pager = pager.clone();
        async move {
            let mock = pager.lock().expect("mock");
            mock.accepted
                .iter()
                .any(|event| event["event_action"] == "resolve")
        }
    })
    .await;
    let events = pager.lock().expect("mock").accepted.clone();
    let keys: Vec<(&str, &str)> = events
        .iter()
        .map(|event| {
            (
                event["event_action"].as_str().unwrap_or_default(),
                event["dedup_key"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(keys.len(), 3, "trigger, its resend, resolve: {keys:?}");
    assert_eq!(keys[0].0, "trigger");
    assert_eq!(keys[1].0, "trigger", "the outbox resends the trigger");
    assert!(
        keys.iter().all(|(_, key)| *key == keys[0].1),
        "one dedup_key, so PagerDuty dedupes the resend into the same incident: {keys:?}"
    );
}

// the mock runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_alert_reaches_teams_as_an_adaptive_card_within_28_kb_with_templates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::write(
        queries.join("wide.json"),
        json!({
            "version": 1,
            "schedule": "*/5 * * * * *",
            "query": "status:500",
            "window": "5s",
            "group_by": ["service"],
            "threshold": {"op": ">", "value": 0},
            "severity": "warning",
            "notify": ["teams"],
            // 3 000 control characters, each six bytes once escaped in JSON
            "summary": "\u{1}".repeat(3000),
            "runbook_url": "https://runbooks.example/500s"
        })
        .to_string(),
    )
    .expect("rule");
    let teams = Arc::new(Mutex::new(MockTeams::default()));
    let url = msteams::start_mock(teams.clone()).await;
    let server = serve_config(
        dir.path(),
        &[],
        r#"
[notifiers.teams]
type = "msteams"
url_env = "TEAMS_URL"
title_template = "{{ $severity | toUpper }} {{ $rule }}: {{ $alerts }} services"
"#,
        &[("TEAMS_URL", &url), ("LOOKOUT_LOG", "info")],
    );
    // forty services with long names of control characters (keywords are indexed up to
    // 256 bytes), sample lines full of them: far beyond 28 KB if nothing were cut
    let services: Vec<String> = (0..40)
        .map(|number| format!("svc-{number:02}-{}", "\u{1}".repeat(240)))
        .collect();
    let names: Vec<&str> = services.iter().map(String::as_str).collect();
    ingest_for(&server, &names).await;
    wait_until("Teams accepts the firing and the resolve", 40, || {
        let teams = teams.clone();
        async move { teams.lock().expect("mock").accepted.len() >= 2 }
    })
    .await;
    let (refused, accepted) = {
        let mock = teams.lock().expect("mock");
        (mock.refused.clone(), mock.accepted.clone())
    };
    assert!(refused.is_empty(), "{refused:?}");
    let (size, firing) = &accepted[0];
    assert!(*size <= msteams::MAX_BYTES, "{size} bytes");
    let card = &firing["attachments"][0]["content"];
    assert_eq!(
        card["body"][0]["text"], "WARNING wide: 40 services",
        "{card}"
    );
    assert!(
        card.to_string().contains("were cut to fit Teams' 28 KB"),
        "the card says it was cut"
    );
    assert_eq!(card["actions"][1]["url"], "https://runbooks.example/500s");
    assert!(
        accepted[1].1["attachments"][0]["content"]["body"][0]["text"]
            .as_str()
            .is_some_and(|title| title.contains("40 services")),
        "the resolve"
    );
    assert_no_secret_leaks(&server, &["wide"], &["T3amsS3cr3tS1gnature"]).await;
}

fn email_config(port: u16, starttls: &str, ca: Option<&Path>) -> String {
    let mut config = format!(
        r#"
[notifiers.mail]
type = "email"
smtp = "127.0.0.1:{port}"
starttls = "{starttls}"
from = "Lookout <alerts@lookout.example>"
to = ["oncall@example.com", "Team Lead <lead@example.com>"]
cc = ["audit@example.com"]
"#
    );
    if let Some(ca) = ca {
        config.push_str(&format!(
            "ca_file = \"{}\"\nusername = \"lookout\"\npassword_env = \"SMTP_PASSWORD\"\n",
            ca.display()
        ));
    }
    config
}

// the SMTP server runs beside the test while it waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_over_required_starttls_with_a_private_ca_threads_the_resolve_to_the_firing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((smtp, ca)) = smtp::start_with_private_ca(dir.path(), &[], SMTP_PASSWORD) else {
        return;
    };
    write_rule(&dir.path().join("queries"), "warn", "warning", &["mail"]);
    let server = serve_config(
        dir.path(),
        &[],
        &email_config(smtp.port, "required", Some(&ca)),
        &[("SMTP_PASSWORD", SMTP_PASSWORD), ("LOOKOUT_LOG", "debug")],
    );
    ingest_500s(&server, 3).await;
    wait_until("the firing and the resolve mails", 40, || {
        let count = smtp.mails().len();
        async move { count >= 2 }
    })
    .await;
    let mails = smtp.mails();
    let (firing, resolved) = (&mails[0], &mails[1]);
    for mail in [firing, resolved] {
        assert_eq!(mail["tls"], true, "over STARTTLS: {mail}");
        assert_eq!(mail["login"], "lookout", "authenticated: {mail}");
        assert_eq!(mail["content_type"], "multipart/alternative", "{mail}");
        assert_eq!(mail["parts"], json!(["text/plain", "text/html"]), "{mail}");
        assert_eq!(
            mail["rcpt_tos"],
            json!([
                "oncall@example.com",
                "lead@example.com",
                "audit@example.com"
            ]),
            "{mail}"
        );
    }
    assert_eq!(firing["headers"]["subject"], "[FIRING] warn", "{firing}");
    let text = firing["bodies"][0].as_str().unwrap_or_default();
    for expected in [
        "3 HTTP 500s in the last 5s",
        "Count: 3 (threshold > 0)",
        "payment timeout",
        "Runbook: https://runbooks.example/500s",
    ] {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
    assert!(
        firing["bodies"][1]
            .as_str()
            .is_some_and(|html| html.contains("<h2>[FIRING] warn</h2>")),
        "{firing}"
    );
    let firing_id = firing["headers"]["message-id"]
        .as_str()
        .expect("message id");
    assert!(firing_id.ends_with("@lookout.example>"), "{firing_id}");
    assert_eq!(resolved["headers"]["subject"], "[RESOLVED] warn");
    assert_eq!(resolved["headers"]["in-reply-to"], firing_id, "threaded");
    assert_eq!(resolved["headers"]["references"], firing_id, "threaded");
    assert_no_secret_leaks(&server, &["warn"], &[SMTP_PASSWORD]).await;
}

// the SMTP server runs beside the test while it waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_without_tls_retries_a_4xx_and_keeps_a_5xx_with_the_servers_text() {
    if let Err(reason) = smtp::available() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp = SmtpServer::start(
        dir.path(),
        None,
        &[
            "451 4.3.0 Mailbox busy, try again",
            "550 5.7.1 Relaying denied by policy",
        ],
        ("lookout", SMTP_PASSWORD),
    );
    write_rule(&dir.path().join("queries"), "warn", "warning", &["mail"]);
    let server = serve_config(dir.path(), &[], &email_config(smtp.port, "none", None), &[]);
    ingest_500s(&server, 3).await;
    wait_until("the resolve mail after the refused firing", 40, || {
        let count = smtp.mails().len();
        async move { count >= 1 }
    })
    .await;
    let mails = smtp.mails();
    assert_eq!(
        mails.len(),
        1,
        "the refused firing is not resent: {mails:?}"
    );
    assert_eq!(mails[0]["tls"], false);
    assert_eq!(mails[0]["headers"]["subject"], "[RESOLVED] warn");
    wait_until("every attempt is in the history", 30, || async {
        deliveries(&server, "warn", "mail").await.len() >= 3
    })
    .await;
    let events = deliveries(&server, "warn", "mail").await;
    let outcomes: Vec<(&str, &str, Option<u64>)> = events
        .iter()
        .map(|event| {
            (
                event["kind"].as_str().unwrap_or_default(),
                event["outcome"].as_str().unwrap_or_default(),
                event["status"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("firing", "retrying", Some(451)),
            ("firing", "rejected", Some(550)),
            ("resolved", "delivered", Some(250))
        ],
        "{events:?}"
    );
    assert!(
        events[1]["error"]
            .as_str()
            .is_some_and(|error| error.contains("Relaying denied by policy")),
        "the server's text is kept: {events:?}"
    );
}

// the mocks run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_shows_the_exact_payload_of_every_notifier_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_rule(
        &dir.path().join("queries"),
        "all",
        "critical",
        &["pager", "mail", "teams", "hook", "chat", "ui"],
    );
    let server = serve_config(
        dir.path(),
        &[],
        &format!(
            r#"
[notifiers.pager]
type = "pagerduty"
routing_key = "{ROUTING_KEY}"
url = "http://127.0.0.1:9/v2/enqueue"

[notifiers.mail]
type = "email"
smtp = "127.0.0.1:9"
from = "alerts@lookout.example"
to = ["oncall@example.com"]
username = "lookout"
password = "{SMTP_PASSWORD}"
body_template = "{{{{ $count }}}} errors; see {{{{ $runbook_url }}}}"

[notifiers.teams]
type = "msteams"
url = "http://127.0.0.1:9/workflows/T3amsS3cr3tS1gnature"

[notifiers.hook]
type = "webhook"
url = "http://127.0.0.1:9/hook"

[notifiers.chat]
type = "slack"
url = "http://127.0.0.1:9/services/T000/B000/s3cr3t"

[notify]
delivery_deadline = "1s"
"#
        ),
        &[],
    );
    ingest_500s(&server, 3).await;
    let (status, body) = server
        .post_json("/_lookout/rules/all/_dry_run", &json!(null))
        .await;
    assert_eq!(status, 200, "{body}");
    let messages = body["messages"].as_array().expect("messages");
    let payload = |notifier: &str| {
        messages
            .iter()
            .find(|message| message["notifier"] == notifier)
            .map(|message| message["payload"].clone())
            .unwrap_or_else(|| panic!("no {notifier} message in {body}"))
    };
    let pager = payload("pager");
    assert_eq!(pager[0]["event_action"], "trigger", "{pager}");
    assert_eq!(pager[0]["payload"]["severity"], "critical", "{pager}");
    assert!(pager[0]["dedup_key"].is_string(), "{pager}");
    let mail = payload("mail");
    assert_eq!(mail["subject"], "[FIRING] all", "{mail}");
    assert_eq!(mail["to"], json!(["oncall@example.com"]), "{mail}");
    assert!(
        mail["message_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("<lookout."))
    );
    assert!(
        mail["text"]
            .as_str()
            .is_some_and(|text| text.contains("3 errors; see https://runbooks.example/500s")),
        "the body template: {mail}"
    );
    assert!(
        mail["html"]
            .as_str()
            .is_some_and(|html| html.contains("<html>"))
    );
    let teams = payload("teams");
    msteams::check_card(&teams).expect("an Adaptive Card message");
    assert_eq!(payload("hook")["version"], "4");
    assert!(payload("chat")["blocks"].is_array());
    assert_eq!(payload("ui"), Value::Null, "UI only: nothing is sent");
    assert_no_secret_leaks(
        &server,
        &["all"],
        &[ROUTING_KEY, SMTP_PASSWORD, "T3amsS3cr3tS1gnature", "s3cr3t"],
    )
    .await;
}

// the mocks run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flush_to_pagerduty_numbers_attempts_per_alert_and_failures_leak_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    // the mail server refuses every message for good
    let Some((smtp, ca)) =
        smtp::start_with_private_ca(dir.path(), &["554 5.7.1 relaying denied"; 4], SMTP_PASSWORD)
    else {
        return;
    };
    let queries = dir.path().join("queries");
    write_rule(&queries, "crit_a", "critical", &[]);
    write_rule(&queries, "crit_b", "critical", &[]);
    write_rule(&queries, "warn", "warning", &["chat", "teams", "mail"]);
    // the first event is retried (500), then refused (400, quoting the routing key as
    // PagerDuty may); the other alert's event of the same flush is accepted at once
    let pager = Arc::new(Mutex::new(MockPagerDuty::default()));
    pager.lock().expect("mock").script.extend([
        (500, json!({"status": "error"})),
        (
            400,
            json!({"status": "invalid event", "message": "Event object is invalid", "errors": [format!("routing key {ROUTING_KEY} is disabled")]}),
        ),
    ]);
    let pager_url = pagerduty::start_mock(pager.clone()).await;
    let slack_secret = "SlackT0kenS3cr3tPath";
    let teams_secret = "TeamsS1gnatureS3cr3t";
    let config = format!(
        r#"
[notify]
delivery_deadline = "3s"

[notifiers.pager]
type = "pagerduty"
routing_key_env = "PD_KEY"
url = "{pager_url}"

[notifiers.chat]
type = "slack"
url_env = "CHAT_URL"

[notifiers.teams]
type = "msteams"
url_env = "TEAMS_URL"

{mail}
[routing]
group_by = ["severity"]

[[routing.routes]]
matchers = ['severity="critical"']
receiver = "pager"
group_wait = "2s"
"#,
        mail = email_config(smtp.port, "required", Some(&ca))
    );
    // nothing listens on port 9: every Slack and Teams attempt fails until the deadline
    let (chat_url, teams_url) = (
        format!("http://127.0.0.1:9/services/T000/B000/{slack_secret}"),
        format!("http://127.0.0.1:9/workflows/{teams_secret}"),
    );
    let server = serve_config(
        dir.path(),
        &[],
        &config,
        &[
            ("PD_KEY", ROUTING_KEY),
            ("SMTP_PASSWORD", SMTP_PASSWORD),
            ("CHAT_URL", chat_url.as_str()),
            ("TEAMS_URL", teams_url.as_str()),
            ("LOOKOUT_LOG", "debug"),
        ],
    );
    ingest_500s(&server, 3).await;
    wait_until(
        "PagerDuty accepts the other alert's trigger",
        30,
        accepted(&pager, 1),
    )
    .await;
    let trigger_events = || async {
        let mut events = deliveries(&server, "crit_a", "pager").await;
        events.extend(deliveries(&server, "crit_b", "pager").await);
        events.retain(|event| event["kind"] == "firing");
        events
    };
    wait_until(
        "the three attempts of the one flush are in the history",
        30,
        || async { trigger_events().await.len() >= 3 },
    )
    .await;
    let events = trigger_events().await;
    let mut per_alert: std::collections::BTreeMap<String, Vec<(u64, String)>> = Default::default();
    for event in &events {
        let mut rules: Vec<&str> = event["rules"]
            .as_array()
            .map(|rules| rules.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        rules.sort_unstable();
        assert_eq!(rules, ["crit_a", "crit_b"], "one flush: {event}");
        let key = event["dedup_key"]
            .as_str()
            .expect("each attempt names its alert");
        per_alert.entry(key.to_string()).or_default().push((
            event["attempt"].as_u64().unwrap_or_default(),
            event["outcome"].as_str().unwrap_or_default().to_string(),
        ));
    }
    // a merged delivery is in both rules' history: count each attempt once
    for attempts in per_alert.values_mut() {
        attempts.sort();
        attempts.dedup();
    }
    let mut numbered: Vec<Vec<(u64, String)>> = per_alert.into_values().collect();
    numbered.sort();
    assert_eq!(
        numbered,
        [
            vec![(1, "delivered".to_string())],
            vec![(1, "retrying".to_string()), (2, "rejected".to_string())],
        ],
        "attempts numbered per alert, the refusal of one not holding back the other: {events:?}"
    );
    // the failed deliveries of every kind are logged and in the history
    for notifier in ["chat", "teams", "mail"] {
        wait_until(
            &format!("the failed delivery to {notifier}"),
            30,
            || async {
                deliveries(&server, "warn", notifier)
                    .await
                    .iter()
                    .any(|event| event["outcome"] == "gave_up" || event["outcome"] == "rejected")
            },
        )
        .await;
    }
    wait_until("the failures are logged", 30, || {
        let logged = server
            .output
            .lock()
            .expect("output")
            .iter()
            .filter(|line| line.contains("alert not delivered"))
            .count();
        async move { logged >= 4 }
    })
    .await;
    assert_no_secret_leaks(
        &server,
        &["crit_a", "crit_b", "warn"],
        &[ROUTING_KEY, SMTP_PASSWORD, slack_secret, teams_secret],
    )
    .await;
}
