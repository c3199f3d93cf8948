//! Old lines never count as now (issue 19): a file of ERROR lines dated weeks ago, shipped
//! today through `_bulk` or the agent, fails line by line with the reason (the agent
//! dead-letters them once, no retry), is counted per index, and the rule watching the
//! index sends nothing; the same rule still fires on current lines, counting only them.
//! Deliberate backfill (a raised `ingest.reject_older_than`) keeps each line's own time.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::rules::serve_rules;
use crate::support::slack::{MockSlack, delivered, delivered_texts, start_mock};
use crate::support::{Agent, Server, agent_config, bulk_body, wait_until};

/// A rule firing on more than 5 ERROR lines in the last minute, checked every second.
async fn error_rule(dir: &std::path::Path) -> (std::path::PathBuf, Arc<Mutex<MockSlack>>, String) {
    let queries = dir.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::write(
        queries.join("errors.json"),
        json!({
            "version": 1,
            "schedule": "* * * * * *",
            "index": "logs",
            "query": "level:ERROR",
            "window": "1m",
            "threshold": {"op": ">", "value": 5},
            "summary": "{{ $count }} ERROR lines in the last {{ $window }}"
        })
        .to_string(),
    )
    .expect("rule");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    (queries, mock, webhook)
}

/// `count` ERROR lines stamped `days_ago` days before now.
fn error_lines(count: usize, days_ago: i64) -> Vec<Value> {
    let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
    (0..count)
        .map(|number| json!({"@timestamp": at.to_rfc3339(), "level": "ERROR", "message": format!("db down {number}")}))
        .collect()
}

/// Waits until the rule has evaluated at least two ticks after `since` (so a line
/// acknowledged before `since` was in the index for a whole evaluation).
async fn evaluated_after(server: &Server, since: chrono::DateTime<chrono::Utc>) {
    wait_until("two evaluations after the ingest", 30, || async {
        let (_, rules) = server.get("/api/v1/rules").await;
        rules["data"]["groups"][0]["rules"][0]["lastEvaluation"]
            .as_str()
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .is_some_and(|last| last > since + chrono::Duration::seconds(2))
    })
    .await;
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_lines_through_bulk_fail_with_the_reason_and_page_nobody() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queries, mock, webhook) = error_rule(dir.path()).await;
    // retention 30 days, of which 14 are accepted: a deliberate backfill window
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        "[index]\nretention = \"30d\"\n[ingest]\nreject_older_than = \"14d\"\n",
    )
    .expect("config");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &[
            "--queries",
            &queries.display().to_string(),
            "--config",
            &config.display().to_string(),
        ],
        &[("SLACK_WEBHOOK_URL", &webhook)],
    );

    // three weeks old: every item fails with the reason, nothing is stored
    let (status, body) = server
        .post_ndjson(
            "/_bulk?refresh=true",
            bulk_body("logs", &error_lines(10, 21)),
        )
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(true)), "{body}");
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 10);
    for item in items {
        let result = &item["index"];
        assert_eq!(result["status"], 400, "{item}");
        assert_eq!(result["error"]["type"], "illegal_argument_exception");
        let reason = result["error"]["reason"].as_str().expect("reason");
        assert!(
            reason.contains("is older than the retention")
                && reason.contains("now − 14days, ingest.reject_older_than"),
            "{reason}"
        );
    }
    // an hour ahead, beyond the 15-minute tolerance: refused the same way
    let (status, body) = server
        .post_ndjson(
            "/_bulk",
            bulk_body(
                "logs",
                &error_lines(1, 0)
                    .into_iter()
                    .map(|mut line| {
                        line["@timestamp"] =
                            json!((chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
                        line
                    })
                    .collect::<Vec<_>>(),
            ),
        )
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(true)), "{body}");
    let reason = body["items"][0]["index"]["error"]["reason"]
        .as_str()
        .expect("reason");
    assert!(
        reason.contains("is in the future") && reason.contains("ingest.future_tolerance"),
        "{reason}"
    );
    // ten days old: inside reject_older_than, kept at its own time
    let (status, body) = server
        .post_ndjson(
            "/_bulk?refresh=true",
            bulk_body("logs", &error_lines(10, 10)),
        )
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    let acknowledged = chrono::Utc::now();
    assert_eq!(server.count("logs", "level:ERROR").await, 10);
    assert_eq!(
        server
            .count("logs", "level:ERROR AND @timestamp:[now-11d TO now-9d]")
            .await,
        10,
        "backfilled lines keep their own time"
    );
    let metrics = server.metrics().await;
    for counted in [
        "lookout_ingest_index_lines_rejected_total{index=\"logs\",reason=\"too_old\"} 10",
        "lookout_ingest_index_lines_rejected_total{index=\"logs\",reason=\"too_new\"} 1",
    ] {
        assert!(metrics.contains(counted), "{counted} not in {metrics}");
    }

    evaluated_after(&server, acknowledged).await;
    assert!(
        mock.lock().expect("mock").received.is_empty(),
        "neither refused nor backfilled history pages anyone"
    );

    // the same rule fires on current lines, and counts only them
    let (status, body) = server
        .post_ndjson("/_bulk", bulk_body("logs", &error_lines(7, 0)))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    wait_until("the firing message", 30, delivered(&mock, 1)).await;
    let texts = delivered_texts(&mock);
    assert!(
        texts[0].contains("[FIRING] errors") && texts[0].contains("7 ERROR lines in the last 1m"),
        "{texts:?}"
    );
}

#[tokio::test]
async fn old_lines_shipped_by_the_agent_are_dead_lettered_once_not_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queries, mock, webhook) = error_rule(dir.path()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);
    let app = dir.path().join("app.json");
    let mut text = String::new();
    for line in error_lines(10, 21) {
        text.push_str(&format!("{line}\n"));
    }
    text.push_str(&format!(
        "{}\n",
        json!({"@timestamp": chrono::Utc::now().to_rfc3339(), "level": "INFO", "message": "current"})
    ));
    std::fs::write(&app, text).expect("write");
    let config = agent_config(
        dir.path(),
        &server.base,
        &[&app.display().to_string()],
        "metrics_listen = \"127.0.0.1:0\"",
    );
    let agent = Agent::start(&config);
    server.wait_caught_up(chrono::Utc::now()).await;
    let acknowledged = chrono::Utc::now();
    assert_eq!(server.count("logs", "*").await, 1, "only the current line");

    let dead_letters = dir.path().join("state/dead-letter/dead-letter.ndjson");
    let records = std::fs::read_to_string(&dead_letters).expect("dead letters");
    let records: Vec<Value> = records
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    assert_eq!(records.len(), 10, "each old line once: {records:?}");
    for record in &records {
        assert_eq!(record["reason_code"], "rejected_by_server");
        let reason = record["reason"].as_str().expect("reason");
        assert!(
            reason.contains("400 illegal_argument_exception")
                && reason.contains("is older than the retention"),
            "{reason}"
        );
        assert!(record["line"].as_str().expect("line").contains("db down"));
    }
    let address = agent.metrics_address().expect("agent metrics address");
    let agent_metrics = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("agent metrics")
        .text()
        .await
        .expect("text");
    assert!(
        agent_metrics
            .contains("lookout_agent_dead_lettered_lines_total{reason=\"rejected_by_server\"} 10"),
        "{agent_metrics}"
    );
    assert!(
        !agent_metrics.contains("lookout_agent_retries_total{"),
        "nothing was retried: {agent_metrics}"
    );
    assert!(
        server.metrics().await.contains(
            "lookout_ingest_index_lines_rejected_total{index=\"logs\",reason=\"too_old\"} 10"
        ),
        "refused once each"
    );

    evaluated_after(&server, acknowledged).await;
    assert!(
        mock.lock().expect("mock").received.is_empty(),
        "old lines page nobody"
    );
}
