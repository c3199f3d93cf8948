//! The seed's severity routing end to end (issue 16's "done when"): the documented example
//! `config/examples/routing.toml`, with its URLs and SMTP server pointed at local
//! receivers, runs three rules through the real binary. The critical one pages
//! (PagerDuty: a trigger and a resolve sharing one `dedup_key`), the warning one goes to
//! email (a real SMTP server, STARTTLS required) and Slack, the info one is sent nowhere
//! but shows in the alerts API the UI reads. Each receiver gets exactly its firing and
//! resolved messages, every delivery is in the history, and no secret is in the server's
//! log or API output.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::pagerduty::{self, MockPagerDuty, ROUTING_KEY, accepted};
use crate::support::rules::{
    assert_no_secret_leaks, deliveries, history, ingest_500s, serve_config,
};
use crate::support::slack::{self, MockSlack, delivered, delivered_texts};
use crate::support::smtp;
use crate::support::wait_until;

const SMTP_PASSWORD: &str = "S3v3r1tyR0ut1ngSmtpPa55";
/// The secret path of the mock Slack's webhook URL.
const SLACK_URL_SECRET: &str = "B000/s3cr3t";

/// A log rule over `status:500` each second, firing on any match in the last 5 s, with
/// `severity` and a `service` label (different per rule: the example's inhibit rule mutes
/// a warning only for the critical's own service).
fn rule(severity: &str, service: &str) -> Value {
    json!({
        "version": 1,
        "schedule": "* * * * * *",
        "index": "logs",
        "query": "status:500",
        "window": "5s",
        "threshold": {"op": ">", "value": 0},
        "severity": severity,
        "labels": {"service": service},
        "summary": "{{ $count }} errors ({{ $rule }})"
    })
}

/// The example config with PagerDuty's endpoint and the SMTP server on loopback (the
/// private CA trusted); everything else as documented.
fn example_config(pager_url: &str, smtp_port: u16, ca: &std::path::Path) -> String {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/routing.toml"),
    )
    .expect("the example config");
    let substitutions = [
        (
            "routing_key_env = \"PAGERDUTY_ROUTING_KEY\"\n",
            format!("routing_key_env = \"PAGERDUTY_ROUTING_KEY\"\nurl = \"{pager_url}\"\n"),
        ),
        ("smtp.example.com:587", format!("127.0.0.1:{smtp_port}")),
        (
            "starttls = \"required\"\n",
            format!("starttls = \"required\"\nca_file = \"{}\"\n", ca.display()),
        ),
    ];
    substitutions.iter().fold(example, |config, (from, to)| {
        assert!(config.contains(from), "the example no longer has {from:?}");
        config.replacen(from, to, 1)
    })
}

// the mocks run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_pages_warning_mails_and_slacks_info_stays_in_the_ui() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((smtp, ca)) = smtp::start_with_private_ca(dir.path(), &[], SMTP_PASSWORD) else {
        return;
    };
    let pager = Arc::new(Mutex::new(MockPagerDuty::default()));
    let pager_url = pagerduty::start_mock(pager.clone()).await;
    let slack_mock = Arc::new(Mutex::new(MockSlack::default()));
    let slack_url = slack::start_mock(slack_mock.clone()).await;
    // configured by the example, never called here
    let unused = "http://127.0.0.1:9/unused";
    let server = serve_config(
        dir.path(),
        &[
            ("checkout_errors", rule("critical", "checkout")),
            ("search_latency", rule("warning", "search")),
            ("cache_hit_ratio", rule("info", "cache")),
        ],
        &example_config(&pager_url, smtp.port, &ca),
        &[
            ("PAGERDUTY_ROUTING_KEY", ROUTING_KEY),
            ("SMTP_PASSWORD", SMTP_PASSWORD),
            ("SLACK_WEBHOOK_URL", slack_url.as_str()),
            ("TEAM_WEBHOOK_URL", unused),
            ("WATCHDOG_URL", unused),
            ("HEARTBEAT_URL", unused),
            ("LOOKOUT_LOG", "debug"),
        ],
    );
    ingest_500s(&server, 2).await;

    // info: sent nowhere, but shown in the alerts API (what the UI's alerts page reads)
    wait_until(
        "the info alert is active and routed to the UI",
        30,
        || async {
            let (_, body) = server.get("/api/v1/alerts").await;
            body["data"]["alerts"].as_array().is_some_and(|alerts| {
                alerts.iter().any(|alert| {
                    alert["labels"]["alertname"] == "cache_hit_ratio"
                        && alert["routing"][0]["notifier"] == "ui"
                })
            })
        },
    )
    .await;

    // every rule fires and resolves (the lines leave the 5 s window)
    wait_until(
        "PagerDuty accepts the trigger and the resolve",
        40,
        accepted(&pager, 2),
    )
    .await;
    wait_until("the firing and the resolved mail", 40, || {
        let count = smtp.mails().len();
        async move { count >= 2 }
    })
    .await;
    wait_until(
        "Slack gets the firing and the resolve",
        40,
        delivered(&slack_mock, 2),
    )
    .await;
    for (rule, notifier) in [
        ("checkout_errors", "pager"),
        ("search_latency", "oncall_mail"),
        ("search_latency", "slack"),
        ("cache_hit_ratio", "ui"),
    ] {
        wait_until(
            &format!("the firing and resolved deliveries of {rule} to {notifier} in the history"),
            30,
            || async { deliveries(&server, rule, notifier).await.len() >= 2 },
        )
        .await;
    }

    // critical → PagerDuty: exactly one trigger and one resolve, one incident
    let (received, events) = {
        let mock = pager.lock().expect("mock");
        (mock.received.len(), mock.accepted.clone())
    };
    assert_eq!(received, 2, "nothing else reached PagerDuty: {events:?}");
    let actions: Vec<&str> = events
        .iter()
        .map(|event| event["event_action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"], "{events:?}");
    assert_eq!(events[0]["payload"]["class"], "checkout_errors");
    assert_eq!(
        events[0]["dedup_key"], events[1]["dedup_key"],
        "one incident"
    );
    assert_eq!(events[0]["payload"]["severity"], "critical");

    // warning → email and Slack: exactly the firing and the resolve, each
    let subjects: Vec<String> = smtp
        .mails()
        .iter()
        .map(|mail| {
            assert_eq!(mail["tls"], true, "over STARTTLS: {mail}");
            assert_eq!(mail["login"], "lookout", "{mail}");
            mail["headers"]["subject"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        subjects,
        ["[FIRING] search_latency", "[RESOLVED] search_latency"]
    );
    let texts = delivered_texts(&slack_mock);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].starts_with("[FIRING] search_latency")
            && texts[1].starts_with("[RESOLVED] search_latency"),
        "{texts:?}"
    );
    assert_eq!(slack_mock.lock().expect("mock").received.len(), 2);

    // every delivery is in the history: firing then resolved, per rule and receiver
    for (rule, notifier, outcome) in [
        ("checkout_errors", "pager", "delivered"),
        ("search_latency", "oncall_mail", "delivered"),
        ("search_latency", "slack", "delivered"),
        ("cache_hit_ratio", "ui", "ui"),
    ] {
        let events = deliveries(&server, rule, notifier).await;
        let seen: Vec<(&str, &str)> = events
            .iter()
            .map(|event| {
                (
                    event["kind"].as_str().unwrap_or_default(),
                    event["outcome"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [("firing", outcome), ("resolved", outcome)],
            "{rule} → {notifier}: {events:?}"
        );
    }
    // and nowhere else: each rule reached only its own receivers
    for (rule, receivers) in [
        ("checkout_errors", &["pager"][..]),
        ("search_latency", &["oncall_mail", "slack"][..]),
        ("cache_hit_ratio", &["ui"][..]),
    ] {
        let mut notifiers: Vec<String> = history(&server, rule)
            .await
            .iter()
            .filter(|event| event["type"] == "delivery")
            .filter_map(|event| event["notifier"].as_str().map(str::to_string))
            .collect();
        notifiers.sort();
        notifiers.dedup();
        assert_eq!(notifiers, receivers, "{rule}");
    }
    assert_no_secret_leaks(
        &server,
        &["checkout_errors", "search_latency", "cache_hit_ratio"],
        &[ROUTING_KEY, SMTP_PASSWORD, SLACK_URL_SECRET],
    )
    .await;
}
