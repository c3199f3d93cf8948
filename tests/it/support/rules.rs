//! Servers that run rules, and the lines that make them fire: `lookout serve` with a
//! queries directory (and a config), the seed rule with its mock Slack, `status: 500`
//! lines kept clear of a tick, the alert history a rule left (its deliveries), and the
//! check that no secret leaks into logs or API output.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::slack::{MockSlack, start_mock};
use super::{Server, bulk_body};

/// The alert history of `rule`, newest first, once it holds at least one event.
pub async fn history(server: &Server, rule: &str) -> Vec<serde_json::Value> {
    let (status, body) = server
        .get(&format!("/_lookout/alerts/history?rule={rule}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

/// `lookout serve` on `dir/data`, running `queries`, alerting to `webhook`.
pub fn serve_rules(dir: &std::path::Path, queries: &std::path::Path, webhook: &str) -> Server {
    Server::start_with_env(
        &dir.join("data"),
        "127.0.0.1:0",
        &["--queries", &queries.display().to_string()],
        &[("SLACK_WEBHOOK_URL", webhook)],
    )
}

/// Writes the seed rule (`status:500` over 5 s, every 5 s, above 20) and starts a mock
/// Slack; returns the queries directory, the mock and its webhook URL.
pub async fn seed_rule(
    dir: &std::path::Path,
) -> (std::path::PathBuf, Arc<Mutex<MockSlack>>, String) {
    let queries = dir.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::write(
        queries.join("seed_500s.json"),
        json!({
            "version": 1,
            "schedule": "*/5 * * * * *",
            "index": "logs",
            "query": "status:500",
            "window": "5s",
            "threshold": {"op": ">", "value": 20},
            "severity": "critical",
            "summary": "{{ $count }} HTTP 500s in the last {{ $window }}",
            "runbook_url": "https://runbooks.example/500s"
        })
        .to_string(),
    )
    .expect("rule");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    (queries, mock, webhook)
}

/// Keeps clear of the last half second before a 5-second tick: lines stamped before a
/// tick but acknowledged after it would belong to a window already counted (with no agent
/// to wait for).
pub async fn clear_of_tick() {
    let into_period = chrono::Utc::now().timestamp_millis().rem_euclid(5000) as u64;
    if into_period > 4500 {
        tokio::time::sleep(Duration::from_millis(5000 - into_period + 50)).await;
    }
}

/// Ingests `count` lines with `status: 500`, stamped now.
pub async fn ingest_500s(server: &Server, count: usize) {
    clear_of_tick().await;
    let now = chrono::Utc::now().to_rfc3339();
    let lines: Vec<serde_json::Value> = (0..count)
        .map(|number| json!({"@timestamp": now, "status": 500, "message": format!("payment timeout {number}")}))
        .collect();
    let (status, body) = server
        .post_ndjson("/_bulk", bulk_body("logs", &lines))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
}

/// Ingests one `status: 500` line per service in `services`, stamped now.
pub async fn ingest_for(server: &Server, services: &[&str]) {
    clear_of_tick().await;
    let now = chrono::Utc::now().to_rfc3339();
    let lines: Vec<serde_json::Value> = services
        .iter()
        .map(|service| json!({"@timestamp": now, "service": service, "status": 500}))
        .collect();
    let (status, body) = server
        .post_ndjson("/_bulk", bulk_body("logs", &lines))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
}

/// `lookout serve` on `dir/data` with `config` and `queries`, alerting to `webhook`
/// (none: the console).
pub fn serve_rules_with_config(
    dir: &std::path::Path,
    queries: &std::path::Path,
    config: &std::path::Path,
    webhook: &str,
) -> Server {
    let env: &[(&str, &str)] = if webhook.is_empty() {
        &[]
    } else {
        &[("SLACK_WEBHOOK_URL", webhook)]
    };
    serve_rules_with_env(dir, queries, config, env)
}

/// `lookout serve` on `dir/data` with `config` and `queries`, with `env`.
fn serve_rules_with_env(
    dir: &std::path::Path,
    queries: &std::path::Path,
    config: &std::path::Path,
    env: &[(&str, &str)],
) -> Server {
    Server::start_with_env(
        &dir.join("data"),
        "127.0.0.1:0",
        &[
            "--config",
            &config.display().to_string(),
            "--queries",
            &queries.display().to_string(),
        ],
        env,
    )
}

/// `lookout serve` on `dir/data` with `config` (TOML, written to `dir/lookout.toml`) and
/// the rules in `dir/queries` (`rules` written there first), with `env`.
pub fn serve_config(
    dir: &std::path::Path,
    rules: &[(&str, serde_json::Value)],
    config: &str,
    env: &[(&str, &str)],
) -> Server {
    let queries = dir.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    for (name, body) in rules {
        std::fs::write(queries.join(format!("{name}.json")), body.to_string()).expect("rule");
    }
    let config_path = dir.join("lookout.toml");
    std::fs::write(&config_path, config).expect("config");
    serve_rules_with_env(dir, &queries, &config_path, env)
}

/// The delivery events of `rule` to `notifier` in the history, oldest first.
pub async fn deliveries(server: &Server, rule: &str, notifier: &str) -> Vec<serde_json::Value> {
    let mut events: Vec<serde_json::Value> = history(server, rule)
        .await
        .into_iter()
        .filter(|event| event["type"] == "delivery" && event["notifier"] == notifier)
        .collect();
    events.reverse();
    events
}

/// Asserts that none of `secrets` is in the server's whole log or its API output about
/// `rules` (their dry runs, the rules API, the history, the alerts).
pub async fn assert_no_secret_leaks(server: &Server, rules: &[&str], secrets: &[&str]) {
    let mut outputs: Vec<(String, String)> = Vec::new();
    for path in [
        "/_lookout/rules",
        "/_lookout/alerts/history?size=1000",
        "/api/v1/alerts",
        "/api/v1/rules",
    ] {
        outputs.push((path.to_string(), server.get(path).await.1.to_string()));
    }
    for rule in rules {
        let (_, dry_run) = server
            .post_json(&format!("/_lookout/rules/{rule}/_dry_run"), &json!(null))
            .await;
        outputs.push((format!("the dry run of {rule}"), dry_run.to_string()));
        let (_, one_rule) = server.get(&format!("/_lookout/rules/{rule}")).await;
        outputs.push((format!("/_lookout/rules/{rule}"), one_rule.to_string()));
    }
    outputs.push((
        "the logs".into(),
        server.output.lock().expect("output").join("\n"),
    ));
    for secret in secrets {
        for (place, text) in &outputs {
            assert!(!text.contains(secret), "a secret is in {place}: {text}");
        }
    }
}
