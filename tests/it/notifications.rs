//! Notifications through the real binary: routes by severity to named notifiers (Slack,
//! an Alertmanager-payload webhook, UI only, an unconfigured name falling back to the
//! console), Slack's rate limit under sixty alerts at once, a refused message kept in the
//! history with Slack's reason, and `for` / `repeat_interval` timing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::rules::{history, ingest_500s, ingest_for, seed_rule, serve_rules};
use crate::support::slack::{MockSlack, received, start_mock};
use crate::support::{Server, wait_until};

fn rule(severity: &str, notify: &[&str]) -> Value {
    json!({
        "version": 1,
        "schedule": "*/5 * * * * *",
        "query": "status:500",
        "window": "5s",
        "threshold": {"op": ">", "value": 0},
        "severity": severity,
        "notify": notify,
        "summary": "500s ({{ $rule }})"
    })
}

/// The rules whose messages `mock` received, sorted.
fn rules_in(mock: &Arc<Mutex<MockSlack>>) -> Vec<String> {
    let mut rules: Vec<String> = mock
        .lock()
        .expect("mock")
        .received
        .iter()
        .map(|(_, payload)| {
            let text = payload["text"].as_str().unwrap_or_default();
            text.split("] ")
                .nth(1)
                .unwrap_or_default()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    rules.sort();
    rules
}

// the mocks run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_send_each_severity_to_its_notifiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    for (name, body) in [
        ("crit", rule("critical", &[])),
        ("note", rule("info", &[])),
        ("plain", rule("warning", &[])),
        ("named", rule("warning", &["nobody"])),
    ] {
        std::fs::write(queries.join(format!("{name}.json")), body.to_string()).expect("rule");
    }
    let team = Arc::new(Mutex::new(MockSlack::default()));
    let pager = Arc::new(Mutex::new(MockSlack {
        alertmanager: true,
        ..MockSlack::default()
    }));
    let (team_url, pager_url) = (
        start_mock(team.clone()).await,
        start_mock(pager.clone()).await,
    );
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        r#"
[notifiers.team]
type = "slack"
url_env = "TEAM_SLACK_URL"

[notifiers.pager]
type = "webhook"
url_env = "PAGER_URL"

[routing]
default = ["team"]

[[routing.routes]]
match = { severity = "info" }
notify = ["ui"]

[[routing.routes]]
match = { severity = "critical" }
notify = ["pager", "team"]
"#,
    )
    .expect("config");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &[
            "--config",
            &config.display().to_string(),
            "--queries",
            &queries.display().to_string(),
        ],
        &[("TEAM_SLACK_URL", &team_url), ("PAGER_URL", &pager_url)],
    );
    ingest_500s(&server, 3).await;
    wait_until("slack gets crit and plain", 30, received(&team, 2)).await;
    wait_until("the pager gets crit", 30, received(&pager, 1)).await;
    wait_until(
        "the ui-only and console deliveries are in the history",
        30,
        || async {
            history(&server, "note")
                .await
                .iter()
                .any(|event| event["outcome"] == "ui")
                && history(&server, "named")
                    .await
                    .iter()
                    .any(|event| event["outcome"] == "console")
        },
    )
    .await;

    assert_eq!(
        rules_in(&team),
        ["crit", "plain"],
        "info goes to the UI only, `nobody` to the console"
    );
    let page = pager.lock().expect("mock").received[0].1.clone();
    assert_eq!(page["status"], "firing", "{page}");
    assert_eq!(page["receiver"], "pager", "{page}");
    assert_eq!(
        page["alerts"][0]["labels"],
        json!({"alertname": "crit", "severity": "critical"}),
        "{page}"
    );
    assert_eq!(
        page["alerts"][0]["annotations"]["summary"], "500s (crit)",
        "{page}"
    );
    assert_eq!(
        page["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z",
        "{page}"
    );
    assert!(
        server
            .output
            .lock()
            .expect("output")
            .iter()
            .any(|line| line.contains("notifier not configured") && line.contains("nobody")),
        "a warning names the unconfigured notifier"
    );
    let metrics = server.metrics().await;
    for expected in [
        "lookout_notify_messages_total{notifier=\"pager\",outcome=\"delivered\"} 1",
        "lookout_notify_messages_total{notifier=\"team\",outcome=\"delivered\"} 2",
        "lookout_notify_messages_total{notifier=\"ui\",outcome=\"ui\"} 1",
        "lookout_notify_messages_total{notifier=\"console\",outcome=\"console\"} 1",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from {metrics}"
        );
    }

    // the resolve reaches the webhook in Alertmanager's shape too
    wait_until("the pager gets the resolve", 30, received(&pager, 2)).await;
    let resolved = pager.lock().expect("mock").received[1].1.clone();
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(
        resolved["alerts"][0]["fingerprint"], page["alerts"][0]["fingerprint"],
        "the same alert"
    );
    assert_ne!(
        resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z",
        "{resolved}"
    );
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_is_not_retried_and_the_history_keeps_slacks_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queries, mock, webhook) = seed_rule(dir.path()).await;
    mock.lock()
        .expect("mock")
        .script
        .push_back((400, None, "invalid_payload"));
    let server = serve_rules(dir.path(), &queries, &webhook);
    ingest_500s(&server, 30).await;
    wait_until("the refusal is in the history", 30, || async {
        history(&server, "seed_500s")
            .await
            .iter()
            .any(|event| event["outcome"] == "rejected")
    })
    .await;
    let events = history(&server, "seed_500s").await;
    let refused = events
        .iter()
        .find(|event| event["outcome"] == "rejected")
        .expect("refused");
    assert_eq!(refused["status"], 400, "{refused}");
    assert_eq!(refused["error"], "invalid_payload", "{refused}");
    assert_eq!(refused["kind"], "firing", "{refused}");
    assert_eq!(refused["attempt"], 1, "{refused}");
    assert_eq!(mock.lock().expect("mock").received.len(), 1, "not retried");
    let metrics = server.metrics().await;
    assert!(
        metrics
            .contains("lookout_notify_messages_total{notifier=\"slack\",outcome=\"rejected\"} 1"),
        "{metrics}"
    );
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_alerts_at_once_reach_slack_one_message_per_second_within_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    // five rules of twelve groups each fire at the same tick: sixty alerts, five messages
    for number in 0..5 {
        let mut body = rule("critical", &[]);
        body["group_by"] = json!(["service"]);
        body["summary"] = json!("errors on {{ $labels.service }}");
        std::fs::write(
            queries.join(format!("storm_{number}.json")),
            body.to_string(),
        )
        .expect("rule");
    }
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);
    let services: Vec<String> = (0..12)
        .map(|number| format!("service-{number:02}"))
        .collect();
    let services: Vec<&str> = services.iter().map(String::as_str).collect();
    ingest_for(&server, &services).await;
    wait_until("five firing messages", 40, received(&mock, 5)).await;

    let mock = mock.lock().expect("mock");
    assert_eq!(
        mock.delivered.len(),
        5,
        "every payload within Slack's limits (the mock refuses others)"
    );
    let mut arrivals: Vec<_> = mock.received.iter().map(|(at, _)| *at).collect();
    arrivals.sort();
    let gaps: Vec<Duration> = arrivals.windows(2).map(|pair| pair[1] - pair[0]).collect();
    // sent a second apart; arrivals carry the network's and a loaded machine's jitter
    assert!(
        gaps.iter().all(|gap| *gap >= Duration::from_millis(750)),
        "at most one message per second: {gaps:?}"
    );
    for (_, payload) in &mock.received {
        let text = payload.to_string();
        assert!(
            text.contains("[FIRING ×12]") && text.contains("+2 more"),
            "{text}"
        );
    }
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_holds_an_alert_pending_and_repeat_interval_announces_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::write(
        queries.join("slow.json"),
        json!({
            "version": 1,
            "schedule": "*/2 * * * * *",
            "query": "status:500",
            "window": "30s",
            "threshold": {"op": ">", "value": 20},
            "for": "3s",
            "repeat_interval": "4s",
        })
        .to_string(),
    )
    .expect("rule");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);
    ingest_500s(&server, 30).await;

    wait_until("the alert is pending", 15, || async {
        let (_, alerts) = server.get("/api/v1/alerts").await;
        alerts["data"]["alerts"][0]["state"] == "pending"
    })
    .await;
    assert!(
        mock.lock().expect("mock").received.is_empty(),
        "nothing is sent while pending"
    );
    wait_until("firing, then repeated", 30, received(&mock, 2)).await;
    let texts: Vec<String> = mock
        .lock()
        .expect("mock")
        .received
        .iter()
        .map(|(_, payload)| payload["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(texts[0].starts_with("[FIRING] slow"), "{texts:?}");
    assert!(texts[1].starts_with("[STILL FIRING] slow"), "{texts:?}");

    // the history's transition times show `for` and the repeat's spacing
    let events = history(&server, "slow").await;
    let time_of = |predicate: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .rev()
            .find(|event| predicate(event))
            .and_then(|event| {
                chrono::DateTime::parse_from_rfc3339(event["@timestamp"].as_str()?).ok()
            })
            .unwrap_or_else(|| panic!("missing event in {events:?}"))
    };
    let pending = time_of(&|event| event["to"] == "pending");
    let firing = time_of(&|event| event["to"] == "firing");
    assert!(
        firing - pending >= chrono::Duration::seconds(3),
        "{pending} → {firing}"
    );
    let first = time_of(&|event| event["kind"] == "firing" && event["outcome"] == "delivered");
    let repeat = time_of(&|event| event["kind"] == "repeat" && event["outcome"] == "delivered");
    assert!(
        repeat - first >= chrono::Duration::milliseconds(3500),
        "{first} → {repeat}"
    );
}
