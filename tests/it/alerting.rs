//! The seed scenario end to end through the real binary: a rule counting `status:500`
//! over a few seconds with threshold `> 20`; 30 matching lines → exactly one firing
//! message; quiet windows → exactly one resolved message; then nothing more.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Timelike;
use serde_json::{Value, json};

use crate::support::rules::{history, ingest_500s, ingest_for, seed_rule, serve_rules};
use crate::support::slack::{MockSlack, delivered, delivered_texts, received, start_mock};
use crate::support::{Server, wait_until};

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_500s_fire_once_then_resolve_once_then_stay_quiet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queries, mock, webhook) = seed_rule(dir.path()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);
    ingest_500s(&server, 30).await;

    wait_until("the firing message", 30, received(&mock, 1)).await;
    let firing = mock.lock().expect("mock").received[0].1.to_string();
    assert!(firing.contains("[FIRING] seed_500s"), "{firing}");
    assert!(firing.contains("30 HTTP 500s in the last 5s"), "{firing}");
    assert!(firing.contains("https://runbooks.example/500s"), "{firing}");
    assert!(
        firing.contains("/ui/search?index=logs&q=status%3A500"),
        "{firing}"
    );
    assert!(
        firing.contains("Sample lines") && firing.contains("payment timeout"),
        "{firing}"
    );

    // Prometheus' API shows the firing alert and the rule's health
    let (status, alerts) = server.get("/api/v1/alerts").await;
    assert_eq!(status, 200);
    assert_eq!(alerts["status"], "success");
    let alert = &alerts["data"]["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "seed_500s", "{alerts}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alerts}");
    assert_eq!(alert["state"], "firing", "{alerts}");
    assert_eq!(alert["value"], "30", "{alerts}");
    let (_, rules) = server.get("/api/v1/rules").await;
    let rule = &rules["data"]["groups"][0]["rules"][0];
    assert_eq!(rule["name"], "seed_500s", "{rules}");
    assert_eq!(rule["health"], "ok", "{rules}");
    assert_eq!(rule["type"], "alerting", "{rules}");

    wait_until("the resolved message", 30, received(&mock, 2)).await;
    let resolved = mock.lock().expect("mock").received[1].1.to_string();
    assert!(resolved.contains("[RESOLVED] seed_500s"), "{resolved}");
    assert!(resolved.contains("fired for"), "{resolved}");

    // three more ticks of quiet: nothing more is sent (a bounded observation of absence)
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        mock.lock().expect("mock").received.len(),
        2,
        "exactly one firing and one resolved"
    );
    // the alert state is on disk for restarts
    assert!(server.data_dir.join("state/rules/seed_500s.json").exists());
    // the history holds both transitions and both deliveries, newest first
    let events = history(&server, "seed_500s").await;
    let summary: Vec<String> = events
        .iter()
        .rev()
        .map(|event| match event["type"].as_str() {
            Some("transition") => event["to"].as_str().unwrap_or("?").to_string(),
            _ => format!(
                "{} {}",
                event["kind"].as_str().unwrap_or("?"),
                event["outcome"].as_str().unwrap_or("?")
            ),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "firing",
            "firing delivered",
            "resolved",
            "resolved delivered"
        ],
        "{events:?}"
    );
    // and it is searched like logs, hidden from `*`
    let (_, found) = server
        .get("/.lookout-alerts/_search?q=rule:seed_500s%20AND%20type:delivery")
        .await;
    assert_eq!(found["hits"]["total"]["value"], 2, "{found}");
    let (_, all) = server.get("/*/_count").await;
    assert_eq!(all["count"], 30, "the history is not in `*`: {all}");
    let metrics = server.metrics().await;
    for expected in [
        "lookout_notify_messages_total{notifier=\"slack\",outcome=\"delivered\"} 2",
        "lookout_rule_healthy{rule=\"seed_500s\"} 1",
        "lookout_rule_evaluations_total{rule=\"seed_500s\"}",
        "lookout_rule_evaluation_seconds_count",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from {metrics}"
        );
    }
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_firing_sends_no_new_firing_and_the_resolve_still_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queries, mock, webhook) = seed_rule(dir.path()).await;
    let data = dir.path().join("data");
    let arguments = ["--queries", &queries.display().to_string()];
    let environment = [("SLACK_WEBHOOK_URL", webhook.as_str())];
    let server = Server::start_with_env(&data, "127.0.0.1:0", &arguments, &environment);
    ingest_500s(&server, 30).await;
    wait_until("the firing message", 30, received(&mock, 1)).await;
    // the kill comes after the delivery was recorded as done: a kill between Slack's
    // answer and that record is the one honest window (its own test below)
    let outbox = data.join("state/outbox");
    wait_until("the firing's delivery is recorded as done", 30, || {
        let done = std::fs::read_dir(&outbox).is_ok_and(|mut entries| entries.next().is_none());
        async move { done }
    })
    .await;
    server.kill();
    let _server = Server::start_with_env(&data, "127.0.0.1:0", &arguments, &environment);
    wait_until(
        "the resolved message after the restart",
        30,
        received(&mock, 2),
    )
    .await;
    let messages: Vec<String> = mock
        .lock()
        .expect("mock")
        .received
        .iter()
        .map(|(_, payload)| payload["text"].to_string())
        .collect();
    assert!(messages[0].contains("[FIRING]"), "{messages:?}");
    assert!(messages[1].contains("[RESOLVED]"), "{messages:?}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        mock.lock().expect("mock").received.len(),
        2,
        "no second firing after the restart"
    );
}

// the mock Slack runs in this process while the test plays the agent
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_line_an_agent_delivers_after_the_tick_is_counted_in_its_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::write(
        queries.join("late.json"),
        json!({
            "version": 1,
            "schedule": "*/5 * * * * *",
            "query": "message:late",
            "window": "5s",
            "threshold": {"op": ">=", "value": 1},
            "summary": "{{ $count }} late line"
        })
        .to_string(),
    )
    .expect("rule");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);
    // the next tick T, at least 2 s away
    let now = chrono::Utc::now();
    let mut tick = now + chrono::Duration::seconds(5 - now.timestamp() % 5);
    tick = tick.with_nanosecond(0).expect("whole second");
    if tick - now < chrono::Duration::seconds(2) {
        tick += chrono::Duration::seconds(5);
    }
    // an agent that is live but behind: heartbeats with a watermark before T, until T + 3 s
    let behind = (tick - chrono::Duration::seconds(1)).to_rfc3339();
    while chrono::Utc::now() < tick + chrono::Duration::seconds(3) {
        let response = server
            .client
            .post(server.url("/_lookout/heartbeat"))
            .header("X-Lookout-Agent", "late-agent")
            .header("X-Lookout-Watermark", &behind)
            .send()
            .await
            .expect("heartbeat");
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        mock.lock().expect("mock").received.is_empty(),
        "the tick waits for the agent"
    );
    // 3 s after T the agent delivers a line stamped 0.5 s before T, and its watermark
    let stamped = (tick - chrono::Duration::milliseconds(500)).to_rfc3339();
    let body = format!(
        "{{\"index\":{{\"_index\":\"logs\"}}}}\n{}\n",
        json!({"@timestamp": stamped, "message": "late"})
    );
    let response = server
        .client
        .post(server.url("/_bulk"))
        .header("content-type", "application/x-ndjson")
        .header("X-Lookout-Agent", "late-agent")
        .header(
            "X-Lookout-Watermark",
            (tick + chrono::Duration::seconds(3)).to_rfc3339(),
        )
        .body(body)
        .send()
        .await
        .expect("bulk");
    assert_eq!(response.status(), 200);
    wait_until(
        "the late line fires the window ending at T",
        30,
        received(&mock, 1),
    )
    .await;
    let firing = mock.lock().expect("mock").received[0].1.to_string();
    assert!(firing.contains("1 late line"), "{firing}");
    let window_end = format!("to={}", super::support::urlencode(&tick.to_rfc3339()));
    assert!(
        firing.contains(&window_end),
        "the window ends at T: {firing}"
    );
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_reload_live_a_broken_edit_keeps_the_last_good_rule_and_deletion_resolves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);
    // a rule written while the server runs is picked up
    let rule = queries.join("live.json");
    std::fs::write(
        &rule,
        json!({
            "version": 1,
            "schedule": "*/5 * * * * *",
            "query": "status:500",
            "window": "10s",
            "threshold": {"op": ">", "value": 20},
            "summary": "{{ $count }} errors"
        })
        .to_string(),
    )
    .expect("rule");
    ingest_500s(&server, 30).await;
    wait_until("the new rule fires", 30, received(&mock, 1)).await;
    // a broken edit: reported, and the last good version keeps running (it resolves)
    std::fs::write(&rule, "{\"version\": 1, \"schedule\": ").expect("broken edit");
    wait_until("the last good version resolves", 30, received(&mock, 2)).await;
    // and fires again on new errors; deleting the rule then resolves it at once
    ingest_500s(&server, 30).await;
    wait_until("the rule fires again", 30, received(&mock, 3)).await;
    std::fs::remove_file(&rule).expect("delete");
    wait_until(
        "deleting the rule resolves its alert",
        30,
        received(&mock, 4),
    )
    .await;
    let last = mock.lock().expect("mock").received[3].1.to_string();
    assert!(
        last.contains("[RESOLVED]") && last.contains("rule changed"),
        "{last}"
    );
    assert!(
        !server.data_dir.join("state/rules/live.json").exists(),
        "its state is gone"
    );
}

/// Writes `rule` as `queries/NAME.json` and starts a server with a mock Slack.
async fn server_with_rule(
    dir: &std::path::Path,
    name: &str,
    rule: serde_json::Value,
) -> (Server, Arc<Mutex<MockSlack>>) {
    let queries = dir.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::write(queries.join(format!("{name}.json")), rule.to_string()).expect("rule");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules(dir, &queries, &webhook);
    (server, mock)
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_groups_firing_at_one_tick_go_out_as_one_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = json!({
        "version": 1,
        "schedule": "*/5 * * * * *",
        "query": "status:500",
        "window": "5s",
        "group_by": ["service"],
        "threshold": {"op": ">", "value": 0},
        "summary": "errors on {{ $labels.service }}"
    });
    let (server, mock) = server_with_rule(dir.path(), "grouped", rule).await;
    ingest_for(&server, &["cart", "checkout", "search"]).await;
    wait_until("the grouped firing message", 30, received(&mock, 1)).await;
    let firing = mock.lock().expect("mock").received[0].1.to_string();
    assert!(firing.contains("[FIRING ×3] grouped"), "{firing}");
    for service in ["cart", "checkout", "search"] {
        assert!(firing.contains(&format!("service={service}")), "{firing}");
    }
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_goes_silent_fires_a_flatline_through_zero_fill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = json!({
        "version": 1,
        "schedule": "*/5 * * * * *",
        "query": "*",
        "window": "5s",
        "group_by": ["service"],
        "threshold": {"op": "<", "value": 1},
        "summary": "{{ $labels.service }} went quiet"
    });
    let (server, mock) = server_with_rule(dir.path(), "flatline", rule).await;
    // both services log; then only `cart` keeps logging, every second
    ingest_for(&server, &["cart", "checkout"]).await;
    let started = std::time::Instant::now();
    let keep_logging = async {
        while started.elapsed() < Duration::from_secs(25) {
            ingest_for(&server, &["cart"]).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let fired = async {
        wait_until("checkout's flatline fires", 30, received(&mock, 1)).await;
    };
    tokio::join!(keep_logging, fired);
    let messages: Vec<String> = mock
        .lock()
        .expect("mock")
        .received
        .iter()
        .map(|(_, payload)| payload.to_string())
        .collect();
    assert!(messages[0].contains("checkout went quiet"), "{messages:?}");
    assert!(
        messages
            .iter()
            .all(|message| !message.contains("service=cart")),
        "cart kept logging: {messages:?}"
    );
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_pending_when_the_server_dies_arrives_after_the_restart_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queries, mock, webhook) = seed_rule(dir.path()).await;
    // Slack is down
    mock.lock()
        .expect("mock")
        .script
        .extend(std::iter::repeat_n((503, None, "unavailable"), 10_000));
    let data = dir.path().join("data");
    let arguments = ["--queries", &queries.display().to_string()];
    let environment = [("SLACK_WEBHOOK_URL", webhook.as_str())];
    let server = Server::start_with_env(&data, "127.0.0.1:0", &arguments, &environment);
    ingest_500s(&server, 30).await;
    wait_until("the firing is being retried", 30, received(&mock, 2)).await;
    server.kill();
    // Slack is back; the restarted server delivers what was pending, then the resolve
    mock.lock().expect("mock").script.clear();
    let _server = Server::start_with_env(&data, "127.0.0.1:0", &arguments, &environment);
    wait_until(
        "the pending firing and then the resolve",
        30,
        delivered(&mock, 2),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let texts = delivered_texts(&mock);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("[FIRING]"), "{texts:?}");
    assert!(texts[1].contains("[RESOLVED]"), "{texts:?}");
    assert_eq!(
        std::fs::read_dir(data.join("state/outbox"))
            .expect("outbox")
            .count(),
        0,
        "finished deliveries leave the outbox"
    );
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_honest_window_a_message_slack_accepted_before_a_crash_is_sent_once_more() {
    // DESIGN §6: incoming webhooks have no idempotency key, so a message Slack accepted
    // while Lookout died before recording the answer is sent again — once, and only that
    let dir = tempfile::tempdir().expect("tempdir");
    let (queries, mock, webhook) = seed_rule(dir.path()).await;
    mock.lock().expect("mock").hold_next_answer = Some(Duration::from_secs(60));
    let data = dir.path().join("data");
    let arguments = ["--queries", &queries.display().to_string()];
    let environment = [("SLACK_WEBHOOK_URL", webhook.as_str())];
    let server = Server::start_with_env(&data, "127.0.0.1:0", &arguments, &environment);
    ingest_500s(&server, 30).await;
    wait_until("Slack accepted the firing", 30, delivered(&mock, 1)).await;
    server.kill();
    let _server = Server::start_with_env(&data, "127.0.0.1:0", &arguments, &environment);
    wait_until(
        "the firing again, then the resolve",
        40,
        delivered(&mock, 3),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let texts = delivered_texts(&mock);
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(
        texts[0].starts_with("[FIRING]") && texts[1] == texts[0],
        "the accepted firing is sent exactly once more: {texts:?}"
    );
    assert!(texts[2].starts_with("[RESOLVED]"), "{texts:?}");
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_url_never_appears_in_logs_or_api_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queries, mock, webhook) = seed_rule(dir.path()).await;
    // failures make the server log about the webhook: 503s, then a final 400
    mock.lock().expect("mock").script.extend([
        (503, None, "unavailable"),
        (500, None, "oops"),
        (400, None, "invalid_token"),
    ]);
    let server = Server::start_with_env(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &["--queries", &queries.display().to_string()],
        &[
            ("SLACK_WEBHOOK_URL", &webhook),
            ("LOOKOUT_LOG", "debug,tantivy=warn"),
        ],
    );
    ingest_500s(&server, 30).await;
    wait_until("three attempts, the last refused", 30, received(&mock, 3)).await;
    wait_until("the refusal is logged", 30, || {
        std::future::ready(
            server
                .output
                .lock()
                .expect("output")
                .iter()
                .any(|line| line.contains("invalid_token")),
        )
    })
    .await;
    let mut seen: Vec<String> = server.output.lock().expect("output").clone();
    for path in ["/metrics", "/_lookout/info", "/_lookout/agents", "/"] {
        let response = server
            .client
            .get(server.url(path))
            .send()
            .await
            .expect("get");
        seen.push(response.text().await.expect("text"));
    }
    let secret = "s3cr3t";
    assert!(
        webhook.contains(secret),
        "the mock's URL carries the secret path"
    );
    let leaks: Vec<&String> = seen.iter().filter(|text| text.contains(secret)).collect();
    assert!(leaks.is_empty(), "the webhook URL leaked: {leaks:?}");
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_failing_at_run_time_is_unhealthy_and_the_others_keep_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queries, mock, webhook) = seed_rule(dir.path()).await;
    std::fs::write(
        queries.join("broken_regex.json"),
        json!({
            "version": 1,
            "schedule": "*/5 * * * * *",
            "query": {"regexp": {"message": "(unclosed"}},
            "window": "5s",
            "threshold": {"op": ">", "value": 0}
        })
        .to_string(),
    )
    .expect("rule");
    let server = serve_rules(dir.path(), &queries, &webhook);
    ingest_500s(&server, 30).await;
    wait_until("the healthy rule still fires", 30, received(&mock, 1)).await;
    wait_until("the broken rule is marked unhealthy", 30, || async {
        let (_, rules) = server.get("/api/v1/rules").await;
        rules.to_string().contains("\"health\":\"err\"")
    })
    .await;
    let (_, rules) = server.get("/api/v1/rules").await;
    // one group per rule file, as Prometheus has one per rule file
    let rules: Vec<Value> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    let by_name = |name: &str| {
        rules
            .iter()
            .find(|rule| rule["name"] == name)
            .cloned()
            .expect("rule listed")
    };
    let broken = by_name("broken_regex");
    assert_eq!(broken["health"], "err", "{broken}");
    assert!(
        !broken["lastError"].as_str().expect("error").is_empty(),
        "{broken}"
    );
    assert_eq!(by_name("seed_500s")["health"], "ok");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("lookout_rule_healthy{rule=\"broken_regex\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("lookout_rule_evaluation_failures_total{rule=\"broken_regex\"}"));
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_mutes_and_expiring_it_announces_the_alert_still_firing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = json!({
        "version": 1,
        "schedule": "*/5 * * * * *",
        "query": "status:500",
        // the lines stay in three windows: time to see it silenced, then unsilenced
        "window": "15s",
        "threshold": {"op": ">", "value": 20},
        "summary": "{{ $count }} errors"
    });
    let (server, mock) = server_with_rule(dir.path(), "muted", rule).await;
    let now = chrono::Utc::now();
    let (status, created) = server
        .post_json(
            "/api/v2/silences",
            &json!({
                "matchers": [{"name": "alertname", "value": "muted", "isRegex": false}],
                "startsAt": now.to_rfc3339(),
                "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
                "createdBy": "test",
                "comment": "deploying"
            }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["silenceID"].as_str().expect("id").to_string();
    let (_, listed) = server.get("/api/v2/silences").await;
    assert_eq!(listed[0]["status"]["state"], "active", "{listed}");
    ingest_500s(&server, 30).await;
    // firing, but muted
    wait_until("the alert fires under the silence", 30, || async {
        let (_, alerts) = server.get("/api/v1/alerts").await;
        alerts["data"]["alerts"][0]["state"] == "firing"
    })
    .await;
    assert!(mock.lock().expect("mock").received.is_empty(), "muted");
    // expiring the silence: the still-firing alert is announced at the next evaluation
    let response = server
        .client
        .delete(server.url(&format!("/api/v2/silence/{id}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 200);
    wait_until("the firing is announced", 30, received(&mock, 1)).await;
    let firing = mock.lock().expect("mock").received[0].1.to_string();
    assert!(firing.contains("[FIRING] muted"), "{firing}");
    // a bad silence says what is wrong
    let (status, error) = server
        .post_json(
            "/api/v2/silences",
            &json!({"matchers": [], "startsAt": now.to_rfc3339(), "endsAt": now.to_rfc3339()}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("at least one matcher")
    );
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_sending_heartbeats_delays_no_evaluation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queries, mock, webhook) = seed_rule(dir.path()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);
    // a registered agent tailing a file nobody writes to: it only sends heartbeats
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    std::fs::write(logs.join("idle.json"), "").expect("file");
    let pattern = logs.join("*.json").display().to_string();
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).expect("mkdir");
    let _agent = crate::support::Agent::start(&crate::support::agent_config(
        &agent_dir,
        &server.base,
        &[&pattern],
        "",
    ));
    wait_until("the agent is registered", 15, || async {
        let (_, agents) = server.get("/_lookout/agents").await;
        agents["agents"]
            .as_array()
            .is_some_and(|agents| !agents.is_empty())
    })
    .await;

    ingest_500s(&server, 30).await;
    wait_until("the firing message", 30, received(&mock, 1)).await;
    // the rule waits for agents' watermarks at most max_delay (30 s by default); an idle
    // agent's heartbeats carry its watermark past the tick, so nothing waits that long
    let events = history(&server, "seed_500s").await;
    let time = |event: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(event["@timestamp"].as_str().unwrap_or_default())
            .expect("timestamp")
    };
    let tick = events
        .iter()
        .find(|event| event["to"] == "firing")
        .map(time)
        .expect("firing transition");
    let sent = events
        .iter()
        .find(|event| event["outcome"] == "delivered")
        .map(time)
        .expect("delivery");
    assert!(
        sent - tick < chrono::Duration::seconds(3),
        "evaluated at {tick}, delivered at {sent}"
    );
}
