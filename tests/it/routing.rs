//! Alertmanager's routing through the real binary (issue 16): alerts of two rules grouped
//! into one notification per `group_interval`, nested routes with `continue`, an
//! inhibition (a critical on `service=checkout` mutes that service's warning, not
//! another's), a mute interval holding a notification until it ends, and the heartbeat
//! (the dead man's switch) pinging while healthy and stopping when the rule scheduler is
//! stalled or the process is killed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Timelike, Utc};
use serde_json::{Value, json};

use crate::support::rules::{history, ingest_500s, serve_config as serve};
use crate::support::slack::{MockSlack, delivered_texts, received, start_mock};
use crate::support::{Server, listen, wait_until};

/// A log rule over `status:500` evaluated every second, firing on any match within
/// `window`, with `labels`.
fn rule(severity: &str, window: &str, labels: Value) -> Value {
    json!({
        "version": 1,
        "schedule": "* * * * * *",
        "index": "logs",
        "query": "status:500",
        "window": window,
        "threshold": {"op": ">", "value": 0},
        "severity": severity,
        "labels": labels,
        "summary": "{{ $count }} errors ({{ $rule }})"
    })
}

/// The rule names in the `text` of each message `mock` accepted (`[FIRING] name: …`).
fn rules_sent(mock: &Arc<Mutex<MockSlack>>) -> Vec<String> {
    delivered_texts(mock)
        .iter()
        .map(|text| {
            text.split("] ")
                .nth(1)
                .and_then(|rest| rest.split(':').next())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn alerts(server: &Server) -> Vec<Value> {
    let (status, body) = server.get("/api/v1/alerts").await;
    assert_eq!(status, 200, "{body}");
    body["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

// the mocks run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_of_two_rules_go_out_as_one_notification_per_group_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Arc::new(Mutex::new(MockSlack {
        alertmanager: true,
        ..MockSlack::default()
    }));
    let hook_url = start_mock(hook.clone()).await;
    let server = serve(
        dir.path(),
        &[
            // keeps firing for the whole test
            (
                "checkout_errors",
                rule("warning", "1h", json!({"service": "checkout"})),
            ),
            // resolves once its window has passed the lines
            (
                "checkout_burst",
                rule("warning", "4s", json!({"service": "checkout"})),
            ),
        ],
        r#"
[notifiers.hook]
type = "webhook"
url_env = "HOOK_URL"

[routing]
default = ["hook"]
group_by = ["service"]
group_wait = "2s"
group_interval = "6s"
"#,
        &[("HOOK_URL", &hook_url)],
    );
    ingest_500s(&server, 3).await;
    wait_until("the group's first notification", 30, received(&hook, 1)).await;
    let first = hook.lock().expect("mock").received[0].clone();
    let payload = &first.1;
    let mut names: Vec<&str> = payload["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|alert| alert["labels"]["alertname"].as_str().unwrap_or_default())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["checkout_burst", "checkout_errors"],
        "both rules in one notification: {payload}"
    );
    assert_eq!(payload["groupKey"], "{}:{service=\"checkout\"}");
    assert_eq!(payload["groupLabels"], json!({"service": "checkout"}));
    assert_eq!(payload["status"], "firing");
    // the burst resolves; the group sends its change at the next group_interval tick,
    // never sooner: one notification carrying the alert still firing and the resolve
    wait_until("the next flush of the group", 40, received(&hook, 2)).await;
    let received_now = hook.lock().expect("mock").received.clone();
    let second = &received_now[1];
    let gap = second.0 - first.0;
    assert!(
        gap >= Duration::from_millis(5800),
        "sent {gap:?} after the first: not within group_interval (6 s)"
    );
    let statuses: Vec<(&str, &str)> = second.1["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|alert| {
            (
                alert["status"].as_str().unwrap_or_default(),
                alert["labels"]["alertname"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("firing", "checkout_errors"),
            ("resolved", "checkout_burst")
        ],
        "one flush, one notification: {received_now:?}"
    );
    assert_eq!(second.1["status"], "firing");
    // the deliveries are in the history with their route and group
    let (status, body) = server.get("/_lookout/alerts/history?size=100").await;
    assert_eq!(status, 200);
    let delivery = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|event| event["type"] == "delivery" && event["outcome"] == "delivered")
        .cloned()
        .expect("a delivery in the history");
    assert_eq!(delivery["route"], "routing");
    assert_eq!(delivery["group_key"], "{}:{service=\"checkout\"}");
    wait_until(
        "the merged delivery is in each rule's history",
        30,
        || async {
            history(&server, "checkout_burst")
                .await
                .iter()
                .any(|event| {
                    let mut rules: Vec<&str> = event["rules"]
                        .as_array()
                        .map(|rules| rules.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    rules.sort_unstable();
                    event["type"] == "delivery" && rules == ["checkout_burst", "checkout_errors"]
                })
        },
    )
    .await;
    assert!(
        !server
            .output
            .lock()
            .expect("output")
            .join("\n")
            .contains(&hook_url),
        "the webhook URL is a secret"
    );
    assert_eq!(
        hook.lock().expect("mock").received.len(),
        2,
        "nothing sent when nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_routes_with_continue_reach_each_receiver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let team = Arc::new(Mutex::new(MockSlack::default()));
    let pager = Arc::new(Mutex::new(MockSlack {
        alertmanager: true,
        ..MockSlack::default()
    }));
    let (team_url, pager_url) = (
        start_mock(team.clone()).await,
        start_mock(pager.clone()).await,
    );
    let server = serve(
        dir.path(),
        &[
            (
                "pay_down",
                rule("critical", "1h", json!({"team": "payments"})),
            ),
            (
                "pay_slow",
                rule("warning", "1h", json!({"team": "payments"})),
            ),
            (
                "search_slow",
                rule("warning", "1h", json!({"team": "search"})),
            ),
        ],
        r#"
[notifiers.team]
type = "slack"
url_env = "TEAM_URL"

[notifiers.pager]
type = "webhook"
url_env = "PAGER_URL"

[routing]
default = ["ui"]

[[routing.routes]]
matchers = ['team="payments"']
receiver = "team"

  [[routing.routes.routes]]
  matchers = ['severity="critical"']
  receiver = "pager"
  continue = true

  [[routing.routes.routes]]
  matchers = ['severity=~"critical|warning"']
"#,
        &[("TEAM_URL", &team_url), ("PAGER_URL", &pager_url)],
    );
    ingest_500s(&server, 2).await;
    wait_until("the team gets both payments alerts", 30, received(&team, 2)).await;
    wait_until("the pager gets the critical", 30, received(&pager, 1)).await;
    wait_until("search_slow stays in the UI", 30, || async {
        history(&server, "search_slow")
            .await
            .iter()
            .any(|event| event["outcome"] == "ui" && event["route"] == "routing")
    })
    .await;
    let mut sent = rules_sent(&team);
    sent.sort();
    assert_eq!(sent, ["pay_down", "pay_slow"]);
    let pager_alerts = pager.lock().expect("mock").delivered[0]["alerts"].clone();
    assert_eq!(pager_alerts[0]["labels"]["alertname"], "pay_down");
    let routes_of = |events: &[Value], notifier: &str| -> Vec<String> {
        events
            .iter()
            .filter(|event| event["type"] == "delivery" && event["notifier"] == notifier)
            .filter_map(|event| event["route"].as_str().map(String::from))
            .collect()
    };
    wait_until("the deliveries are in the history", 30, || async {
        let events = history(&server, "pay_down").await;
        !routes_of(&events, "pager").is_empty() && !routes_of(&events, "team").is_empty()
    })
    .await;
    let events = history(&server, "pay_down").await;
    assert!(
        routes_of(&events, "pager")
            .iter()
            .all(|route| route == "routing.routes[0].routes[0]")
    );
    assert!(
        routes_of(&events, "team")
            .iter()
            .all(|route| route == "routing.routes[0].routes[1]"),
        "continue: the next sibling, its receiver inherited"
    );
    // the alerts API shows each alert's destinations
    let all = alerts(&server).await;
    let pay_down = all
        .iter()
        .find(|alert| alert["labels"]["alertname"] == "pay_down")
        .expect("pay_down is active");
    let notifiers: Vec<&str> = pay_down["routing"]
        .as_array()
        .expect("routing")
        .iter()
        .map(|decision| decision["notifier"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(notifiers, ["pager", "team"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_on_a_service_inhibits_its_warning_and_not_another_services() {
    let dir = tempfile::tempdir().expect("tempdir");
    let team = Arc::new(Mutex::new(MockSlack::default()));
    let team_url = start_mock(team.clone()).await;
    let server = serve(
        dir.path(),
        &[
            (
                "checkout_down",
                rule("critical", "1h", json!({"service": "checkout"})),
            ),
            (
                "checkout_slow",
                rule("warning", "1h", json!({"service": "checkout"})),
            ),
            (
                "search_slow",
                rule("warning", "1h", json!({"service": "search"})),
            ),
        ],
        r#"
[notifiers.team]
type = "slack"
url_env = "TEAM_URL"

[routing]
default = ["team"]

# warnings wait a little, so a critical of the same tick is known when they go out
[[routing.routes]]
matchers = ['severity="warning"']
group_wait = "2s"

[[inhibit_rules]]
source_matchers = ['severity="critical"']
target_matchers = ['severity="warning"']
equal = ["service"]
"#,
        &[("TEAM_URL", &team_url)],
    );
    ingest_500s(&server, 2).await;
    wait_until(
        "the critical and the other service's warning",
        30,
        received(&team, 2),
    )
    .await;
    wait_until("the inhibition is in the history", 30, || async {
        history(&server, "checkout_slow").await.iter().any(|event| {
            event["type"] == "routing"
                && event["decision"] == "inhibited"
                && event["inhibited_by"]["alertname"] == "checkout_down"
        })
    })
    .await;
    let all = alerts(&server).await;
    let routing_of = |name: &str| {
        all.iter()
            .find(|alert| alert["labels"]["alertname"] == name)
            .map(|alert| alert["routing"][0].clone())
            .unwrap_or_else(|| panic!("{name} is active: {all:?}"))
    };
    assert_eq!(
        routing_of("checkout_slow")["inhibited_by"]["alertname"],
        "checkout_down"
    );
    assert!(routing_of("search_slow").get("inhibited_by").is_none());
    assert!(
        routing_of("checkout_down").get("inhibited_by").is_none(),
        "no self-inhibition"
    );
    // the group tried again each second meanwhile, and still holds it back
    let mut sent = rules_sent(&team);
    sent.sort();
    assert_eq!(sent, ["checkout_down", "search_slow"]);
}

/// `HH:MM` of a minute of the day (1440 is `24:00`).
fn clock(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_interval_holds_a_notification_until_it_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let team = Arc::new(Mutex::new(MockSlack::default()));
    let team_url = start_mock(team.clone()).await;
    // a mute from this minute until the next minute boundary at least 15 s away, in UTC
    // (the interval's location), whatever the machine's time zone
    let now = Utc::now();
    let minute = now.hour() * 60 + now.minute();
    let end_minute = (if now.second() >= 45 {
        minute + 2
    } else {
        minute + 1
    })
    .min(1440);
    let end = now
        .with_second(0)
        .and_then(|time| time.with_nanosecond(0))
        .expect("minute start")
        + chrono::Duration::minutes(i64::from(end_minute - minute));
    let server = serve(
        dir.path(),
        &[
            (
                "checkout_down",
                rule("critical", "1h", json!({"service": "checkout"})),
            ),
            (
                "checkout_slow",
                rule("warning", "1h", json!({"service": "checkout"})),
            ),
        ],
        &format!(
            r#"
[notifiers.team]
type = "slack"
url_env = "TEAM_URL"

[routing]
default = ["team"]

[[routing.routes]]
matchers = ['severity="warning"']
mute_time_intervals = ["maintenance"]

[[time_intervals]]
name = "maintenance"
[[time_intervals.time_intervals]]
times = [{{ start_time = "{}", end_time = "{}" }}]
location = "UTC"
"#,
            clock(minute),
            clock(end_minute)
        ),
        &[("TEAM_URL", &team_url)],
    );
    ingest_500s(&server, 2).await;
    wait_until("the critical, not muted", 30, received(&team, 1)).await;
    wait_until("the warning is muted", 30, || async {
        history(&server, "checkout_slow").await.iter().any(|event| {
            event["type"] == "routing"
                && event["decision"] == "muted"
                && event["muted_by"] == "maintenance"
        })
    })
    .await;
    let muted = history(&server, "checkout_slow")
        .await
        .into_iter()
        .find(|event| event["decision"] == "muted")
        .expect("muted");
    let until = chrono::DateTime::parse_from_rfc3339(muted["muted_until"].as_str().expect("until"))
        .expect("time");
    assert_eq!(until, end, "{muted}");
    if Utc::now() < end - chrono::Duration::seconds(1) {
        let all = alerts(&server).await;
        let slow = all
            .iter()
            .find(|alert| alert["labels"]["alertname"] == "checkout_slow")
            .expect("active");
        assert_eq!(slow["routing"][0]["muted_by"], "maintenance", "{slow}");
        assert_eq!(rules_sent(&team), ["checkout_down"], "held while muted");
    }
    let wait = (end - Utc::now()).num_seconds().max(0) as u64 + 10;
    wait_until("the warning once the mute ends", wait, received(&team, 2)).await;
    let arrived = Utc::now();
    assert!(
        arrived >= end,
        "sent at {arrived}, before the mute ended at {end}"
    );
    assert_eq!(rules_sent(&team), ["checkout_down", "checkout_slow"]);
}

/// A heartbeat service on loopback answering GET `path`: when each ping arrived.
async fn ping_receiver(path: &str) -> (Arc<Mutex<Vec<std::time::Instant>>>, String) {
    let pings: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
    let recorder = pings.clone();
    let address = listen(axum::Router::new().route(
        path,
        axum::routing::get(move || {
            recorder
                .lock()
                .expect("pings")
                .push(std::time::Instant::now());
            async { "OK" }
        }),
    ))
    .await;
    (pings, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_pings_while_healthy_and_stops_when_the_scheduler_stalls_or_the_process_dies()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let (pings, address) = ping_receiver("/ping/s3cr3t-heartbeat").await;
    let url = format!("http://{address}/ping/s3cr3t-heartbeat");
    let mut every_second = rule("warning", "5s", json!({}));
    every_second["max_delay"] = json!("1s");
    let server = serve(
        dir.path(),
        &[("tick", every_second)],
        "[heartbeat]\nurl_env = \"HEARTBEAT_URL\"\ninterval = \"1s\"\n",
        &[("HEARTBEAT_URL", &url), ("LOOKOUT_TEST_HOOKS", "1")],
    );
    let count = || pings.lock().expect("pings").len();
    let last = || pings.lock().expect("pings").last().copied();
    wait_until("pings while healthy", 30, || {
        let healthy = count() >= 3;
        async move { healthy }
    })
    .await;
    // stall the rule scheduler: its ticks stop being evaluated, the pings stop once the
    // tick is overdue by max_delay (1 s) plus one interval
    std::fs::write(server.data_dir.join("state/test-stall-rules"), "").expect("hook");
    wait_until("no ping for three intervals while stalled", 30, || {
        let quiet = last().is_some_and(|at| at.elapsed() >= Duration::from_secs(3));
        async move { quiet }
    })
    .await;
    let stalled_count = count();
    std::fs::remove_file(server.data_dir.join("state/test-stall-rules")).expect("unhook");
    wait_until("pings resume once the rules run again", 30, || {
        let resumed = count() >= stalled_count + 2;
        async move { resumed }
    })
    .await;
    // /metrics counts the pings and the withheld intervals, and when the last succeeded
    let metrics = server.metrics().await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    assert!(
        value("lookout_heartbeat_pings_total") >= (stalled_count + 2) as f64,
        "{metrics}"
    );
    assert!(
        value("lookout_heartbeat_withheld_total") >= 1.0,
        "{metrics}"
    );
    assert_eq!(value("lookout_heartbeat_failures_total"), 0.0, "{metrics}");
    let last_success = value("lookout_heartbeat_last_success_timestamp_seconds");
    assert!(
        (Utc::now().timestamp() as f64 - last_success).abs() < 30.0,
        "{last_success}"
    );
    // kill -9: nothing pings any more
    let output = server.output.clone();
    server.kill();
    let killed_count = count();
    let killed_at = std::time::Instant::now();
    wait_until("three intervals after the kill", 10, || {
        let passed = killed_at.elapsed() >= Duration::from_secs(3);
        async move { passed }
    })
    .await;
    assert!(
        count() <= killed_count + 1,
        "at most a ping already under way at the kill"
    );
    let logs = output.lock().expect("output").join("\n");
    assert!(
        logs.contains("heartbeat withheld"),
        "the stall is logged: {logs}"
    );
    assert!(
        !logs.contains("s3cr3t-heartbeat"),
        "the heartbeat URL is a secret"
    );
}

// the receiver runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tenants_one_heartbeat_stops_when_any_tenants_rules_stall() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pings, address) = ping_receiver("/ping").await;
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "[heartbeat]\nurl = \"http://{address}/ping\"\ninterval = \"1s\"\n\n[tenants.team-a]\n[tenants.team-b]\n"
        ),
    )
    .expect("config");
    let queries = dir.path().join("queries");
    let mut every_second = rule("warning", "5s", json!({}));
    every_second["max_delay"] = json!("1s");
    for tenant in ["team-a", "team-b"] {
        std::fs::create_dir_all(queries.join(tenant)).expect("mkdir");
        std::fs::write(
            queries.join(tenant).join("tick.json"),
            every_second.to_string(),
        )
        .expect("rule");
    }
    let server = Server::start_with_env(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &[
            "--config",
            &config.display().to_string(),
            "--queries",
            &queries.display().to_string(),
        ],
        &[("LOOKOUT_TEST_HOOKS", "1")],
    );
    let count = || pings.lock().expect("pings").len();
    let last = || pings.lock().expect("pings").last().copied();
    wait_until("pings while every tenant is healthy", 30, || {
        let healthy = count() >= 3;
        async move { healthy }
    })
    .await;
    // one switch, not one per tenant: about one ping a second, not two
    let (before, started) = (count(), std::time::Instant::now());
    wait_until("four more seconds", 10, || {
        let passed = started.elapsed() >= Duration::from_secs(4);
        async move { passed }
    })
    .await;
    assert!(
        count() - before <= 6,
        "{} pings in 4 s: one heartbeat per tenant?",
        count() - before
    );
    // only team-b's scheduler stalls: the pings stop all the same
    let hook = server
        .data_dir
        .join("tenants/team-b/state/test-stall-rules");
    std::fs::write(&hook, "").expect("hook");
    wait_until(
        "no ping for three intervals while team-b is stalled",
        30,
        || {
            let quiet = last().is_some_and(|at| at.elapsed() >= Duration::from_secs(3));
            async move { quiet }
        },
    )
    .await;
    let stalled_count = count();
    std::fs::remove_file(&hook).expect("unhook");
    wait_until("pings resume once team-b's rules run again", 30, || {
        let resumed = count() >= stalled_count + 2;
        async move { resumed }
    })
    .await;
    let logs = server.output.lock().expect("output").join("\n");
    assert!(
        logs.contains("heartbeat withheld") && logs.contains("tenant `team-b`"),
        "the stall is logged with its tenant: {logs}"
    );
}

#[test]
fn the_example_routing_config_and_watchdog_rule_pass_lookout_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let url = "http://127.0.0.1:1/never-called";
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("check")
        .arg(root.join("config/examples/routing.toml"))
        .arg(root.join("config/examples/watchdog.json"))
        .envs(
            [
                "PAGERDUTY_ROUTING_KEY",
                "SMTP_PASSWORD",
                "SLACK_WEBHOOK_URL",
                "TEAM_WEBHOOK_URL",
                "WATCHDOG_URL",
                "HEARTBEAT_URL",
            ]
            .map(|name| (name, url)),
        )
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn a_route_naming_no_notifier_fails_lookout_check_and_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        "[notifiers.pager]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\n[[routing.routes]]\nmatchers = ['severity=\"critical\"']\nreceiver = \"pagr\"\n",
    )
    .expect("config");
    let expected = "`routing.routes[0].receiver`: no notifier is called `pagr`; define `[notifiers.pagr]` or name one of the known notifiers: `console`, `pager`, `ui`";
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("check")
        .arg(&config)
        .env_remove("SLACK_WEBHOOK_URL")
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .env_remove("SLACK_WEBHOOK_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    // it must refuse to start; a server that runs is killed at the deadline
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = serve.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = serve.kill();
            panic!("`lookout serve` started with a route naming no notifier");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_waiting_in_its_group_survives_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let team = Arc::new(Mutex::new(MockSlack::default()));
    let team_url = start_mock(team.clone()).await;
    let config = r#"
[notifiers.team]
type = "slack"
url_env = "TEAM_URL"

[routing]
default = ["team"]
group_wait = "10s"
"#;
    let rules = [(
        "checkout_down",
        rule("critical", "1h", json!({"service": "checkout"})),
    )];
    let server = serve(dir.path(), &rules, config, &[("TEAM_URL", &team_url)]);
    ingest_500s(&server, 2).await;
    let groups = server.data_dir.join("state/routing/groups.json");
    wait_until("the alert waits in its group, saved", 30, || {
        let saved = std::fs::read_to_string(&groups)
            .is_ok_and(|text| text.contains("checkout_down") && text.contains("unsent"));
        async move { saved }
    })
    .await;
    let killed_at = std::time::Instant::now();
    server.kill();
    assert!(
        team.lock().expect("mock").received.is_empty(),
        "still waiting at the kill"
    );
    // the rule's state says the alert fired: only the saved group can still send it
    let server = serve(dir.path(), &rules, config, &[("TEAM_URL", &team_url)]);
    wait_until(
        "the held notification after the restart",
        30,
        received(&team, 1),
    )
    .await;
    assert!(
        killed_at.elapsed() >= Duration::from_secs(5),
        "not before the group's wait"
    );
    assert_eq!(rules_sent(&team), ["checkout_down"]);
    wait_until(
        "its delivery is in the new server's history",
        30,
        || async {
            history(&server, "checkout_down")
                .await
                .iter()
                .any(|event| event["type"] == "delivery" && event["outcome"] == "delivered")
        },
    )
    .await;
    assert_eq!(team.lock().expect("mock").received.len(), 1, "once");
}
