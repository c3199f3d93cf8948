//! New-term rules through the real binary (issue 18 point 3): values never seen in the
//! lookback, found across a lookback of several days' partitions, reported once each
//! across a restart (a value first seen while the rule was not running is reported at its
//! first tick after), with the lookback read once per load (counted in `/metrics`),
//! combinations of two fields, a value older than the lookback new again, the sample
//! lines of the new value, the `log_new_terms` series and the dry run.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::rules::serve_rules;
use crate::support::slack::{MockSlack, start_mock};
use crate::support::{Server, bulk_body, wait_until};

/// `new_term` rule files, ticking every second over a 2-second window.
fn write_rules(queries: &std::path::Path) {
    let rules = [
        (
            "new_errors",
            json!({"version": 1, "schedule": "* * * * * *", "index": "logs",
                   "query": "level:error", "window": "2s",
                   "new_term": {"fields": ["error.type"], "lookback": "2d"},
                   "summary": "new error type {{ $labels.error_type }} ({{ $value }} lines)"}),
        ),
        (
            "new_pairs",
            json!({"version": 1, "schedule": "* * * * * *", "index": "logs",
                   "query": "level:error", "window": "2s",
                   "new_term": {"fields": ["service", "error.type"], "lookback": "2d"},
                   "summary": "new pair {{ $labels.service }}/{{ $labels.error_type }}"}),
        ),
    ];
    for (name, rule) in rules {
        std::fs::write(queries.join(format!("{name}.json")), rule.to_string()).expect("rule");
    }
}

async fn ingest(server: &Server, lines: &[(chrono::DateTime<chrono::Utc>, &str, &str, &str)]) {
    let docs: Vec<Value> = lines
        .iter()
        .map(|(at, service, kind, message)| {
            json!({"@timestamp": at.to_rfc3339(), "level": "error", "service": service,
                   "error": {"type": kind}, "message": message})
        })
        .collect();
    let (status, body) = server.post_ndjson("/_bulk", bulk_body("logs", &docs)).await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    let (status, body) = server.post_json("/logs/_refresh", &json!({})).await;
    assert_eq!(status, 200, "{body}");
}

/// The `lookout_rule_new_term_searches_total` of `rule` and `pass` (0 before any).
fn searches(metrics: &str, rule: &str, pass: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("lookout_rule_new_term_searches_total{")
                && line.contains(&format!("rule=\"{rule}\""))
                && line.contains(&format!("pass=\"{pass}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Every Slack message of `rule` so far, as text (payload and all).
fn messages_of(mock: &Arc<Mutex<MockSlack>>, rule: &str) -> Vec<String> {
    mock.lock()
        .expect("mock")
        .delivered
        .iter()
        .map(Value::to_string)
        .filter(|text| text.contains(rule))
        .collect()
}

/// Every `text` of a Slack payload (header, sections, fields), recursively.
fn texts(payload: &Value, out: &mut Vec<String>) {
    match payload {
        Value::Object(object) => {
            for (key, value) in object {
                match value {
                    Value::String(text) if key == "text" => out.push(text.clone()),
                    other => texts(other, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| texts(item, out)),
        _ => {}
    }
}

/// The new values the messages of `rule` name, sorted: a one-alert message names its
/// value in its summary (`new … VALUE`), a grouped one lists each alert's labels
/// (`` `error_type=VALUE` `service=S` ``, written `S/VALUE` here).
fn reported(mock: &Arc<Mutex<MockSlack>>, rule: &str, summary_prefix: &str) -> Vec<String> {
    let payloads: Vec<Value> = mock.lock().expect("mock").delivered.clone();
    let mut found = Vec::new();
    for payload in payloads
        .iter()
        .filter(|payload| payload.to_string().contains(rule))
    {
        let mut all = Vec::new();
        texts(payload, &mut all);
        for text in all {
            if let Some(rest) = text.strip_prefix(summary_prefix) {
                found.push(rest.split(' ').next().unwrap_or_default().to_string());
            } else if let Some(rest) = text.strip_prefix("`error_type=") {
                let kind = rest.split('`').next().unwrap_or_default();
                match rest.split("`service=").nth(1) {
                    Some(service) => found.push(format!(
                        "{}/{kind}",
                        service.split('`').next().unwrap_or_default()
                    )),
                    None => found.push(kind.to_string()),
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_terms_across_partitions_and_a_restart_are_reported_once_each_and_the_lookback_is_read_once()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    let idle = dir.path().join("no_queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::create_dir_all(&idle).expect("mkdir");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let now = chrono::Utc::now;
    let hours = chrono::Duration::hours;

    // the history, days back (hourly partitions, several days apart), before the rules load
    let server = serve_rules(dir.path(), &queries, &webhook);
    ingest(
        &server,
        &[
            (now() - hours(27), "api", "Timeout", "upstream timed out"),
            (now() - hours(40), "web", "Refused", "connection refused"),
            // older than the 2-day lookback: new again when it comes back
            (now() - hours(60), "api", "OutOfMemory", "heap exhausted"),
        ],
    )
    .await;
    write_rules(&queries);
    wait_until("both rules built their sets", 30, || async {
        let metrics = server.metrics().await;
        searches(&metrics, "new_errors", "lookback") >= 1
            && searches(&metrics, "new_pairs", "lookback") >= 1
    })
    .await;
    let fresh = now();
    ingest(
        &server,
        &[
            (now(), "api", "Timeout", "upstream timed out again"),
            (now(), "api", "OutOfMemory", "heap exhausted again"),
            (now(), "web", "Brand", "brand new failure 1"),
            (now(), "web", "Brand", "brand new failure 2"),
            (now(), "web", "Timeout", "web timed out"),
        ],
    )
    .await;
    wait_until("the new values reported", 30, || {
        let found = reported(&mock, "new_errors", "new error type ");
        std::future::ready(found == ["Brand", "OutOfMemory"])
    })
    .await;
    wait_until("the new pairs reported", 30, || {
        let found = reported(&mock, "new_pairs", "new pair ");
        // api/Timeout was seen a day ago; the rest are new combinations
        std::future::ready(found == ["api/OutOfMemory", "web/Brand", "web/Timeout"])
    })
    .await;
    // the message shows lines of the new value
    let texts = messages_of(&mock, "new_errors");
    assert!(
        texts.iter().any(|text| text.contains("brand new failure")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .all(|text| !text.contains("upstream timed out again")),
        "samples are filtered to the new values: {texts:?}"
    );
    // ticks go on reading their windows only: the lookback was read once per rule
    let ticks_before = searches(&server.metrics().await, "new_errors", "window");
    wait_until("five more ticks", 30, || async {
        searches(&server.metrics().await, "new_errors", "window") >= ticks_before + 5
    })
    .await;
    let metrics = server.metrics().await;
    assert_eq!(searches(&metrics, "new_errors", "lookback"), 1, "{metrics}");
    assert_eq!(searches(&metrics, "new_pairs", "lookback"), 1, "{metrics}");
    // in PromQL: two new values at one tick
    let (status, body) = server
        .get(&format!(
            "/api/v1/query?query={}",
            crate::support::urlencode("max_over_time(log_new_terms{query=\"new_errors\"}[5m])")
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], "2", "{body}");
    // a dry run at a second after those lines lists the values new in its window, with
    // their lines, from its own set (the running one is not touched)
    let at =
        (fresh + chrono::Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (status, body) = server
        .post_json(
            &format!(
                "/_lookout/rules/new_errors/_dry_run?at={}",
                crate::support::urlencode(&at)
            ),
            &json!(null),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut groups: Vec<(String, u64)> = body["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|group| group["condition"] == json!(true))
        .map(|group| {
            let kind = group["labels"]["error_type"].as_str().unwrap_or_default();
            (
                kind.to_string(),
                group["count"].as_f64().unwrap_or(0.0) as u64,
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [("Brand".to_string(), 2), ("OutOfMemory".to_string(), 1)],
        "{body}"
    );
    let delivered_before = mock.lock().expect("mock").delivered.len();
    server.terminate();

    // while the rules do not run (the same data, no queries): a value first seen, and one
    // reported before
    let idle_server = serve_rules(dir.path(), &idle, &webhook);
    ingest(
        &idle_server,
        &[
            (now(), "api", "Gap", "seen while the rule was down"),
            (now(), "web", "Brand", "brand new failure 3"),
        ],
    )
    .await;
    idle_server.terminate();

    // the rules again: the set rebuilt once, the gap's value reported, none twice
    let server = serve_rules(dir.path(), &queries, &webhook);
    wait_until("the gap's value reported", 30, || {
        let found = reported(&mock, "new_errors", "new error type ");
        std::future::ready(found == ["Brand", "Gap", "OutOfMemory"])
    })
    .await;
    wait_until("five ticks after the restart", 30, || async {
        searches(&server.metrics().await, "new_errors", "window") >= 5
    })
    .await;
    let metrics = server.metrics().await;
    assert_eq!(searches(&metrics, "new_errors", "lookback"), 1, "{metrics}");
    let after: Vec<String> = mock.lock().expect("mock").delivered[delivered_before..]
        .iter()
        .map(Value::to_string)
        .filter(|text| text.contains("new_errors"))
        .collect();
    assert_eq!(after.len(), 1, "one message after the restart: {after:?}");
    assert!(
        after[0].contains("Gap") && !after[0].contains("new error type Brand"),
        "{after:?}"
    );
    assert!(
        messages_of(&mock, "RESOLVED").is_empty(),
        "a new term's alert resolves silently"
    );
}
