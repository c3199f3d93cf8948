//! Log patterns through the real binary: `GET /_lookout/patterns` on a stream of known
//! templates (counts exact under the cap), and `new_pattern` rules — a new kind of error
//! halfway through a stream fires once while the old kinds and a single odd line
//! (`min_count`) do not, in a backtest at the minutes the arithmetic gives and live to
//! Slack across a restart (the memory is rebuilt from the index, so a kind seen before
//! the restart is not new after it).

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::rules::serve_rules;
use crate::support::slack::{MockSlack, delivered_texts, start_mock};
use crate::support::{Server, bulk_body, urlencode, wait_until};

/// A whole minute at least `minutes_ago` minutes ago, in seconds since the epoch.
fn minute_ago(minutes_ago: i64) -> i64 {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago))
        .timestamp()
        .div_euclid(60)
        * 60
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .expect("time")
        .to_rfc3339()
}

/// `text` as Slack's mrkdwn has it (`&`, `<`, `>` escaped).
fn slack(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn ingest(server: &Server, docs: &[Value]) {
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("logs", docs))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
}

/// Two routine kinds, one line each a minute for `minutes` minutes from `base`.
fn routine(base: i64, minutes: i64) -> Vec<Value> {
    (0..minutes)
        .flat_map(|minute| {
            let at = rfc3339(base + minute * 60);
            [
                json!({"@timestamp": at, "service": "cart",
                       "message": format!("GET /api/v1/cart/{} returned 200 in {}.5ms", 1000 + minute, minute + 1)}),
                json!({"@timestamp": at, "service": "auth",
                       "message": format!("user {} logged in from 10.0.0.{}", 4000 + minute, minute % 250)}),
            ]
        })
        .collect()
}

/// Four known templates, 66 lines in the last hour: 30 + 30 routine lines, five declined
/// payments (the newest at `base` + 40m + 4s), one full disk.
fn known_stream() -> Vec<Value> {
    let base = minute_ago(50);
    let mut docs = routine(base, 30);
    docs.extend((0..5).map(|n| {
        json!({"@timestamp": rfc3339(base + 2400 + n), "service": "payments",
               "message": format!("payment declined for order {}: \"card expired\"", 700 + n)})
    }));
    docs.push(
        json!({"@timestamp": rfc3339(base + 2460), "service": "disk",
                     "message": "disk full on /var/lib/lookout"}),
    );
    docs
}

#[tokio::test]
async fn the_patterns_api_lists_known_templates_with_exact_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    ingest(&server, &known_stream()).await;

    let (status, body) = server
        .get("/_lookout/patterns?index=logs&from=now-2h&to=now")
        .await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<(String, u64, String)> = body["patterns"]
        .as_array()
        .expect("patterns")
        .iter()
        .map(|pattern| {
            (
                pattern["template"].as_str().expect("template").to_string(),
                pattern["count"].as_u64().expect("count"),
                pattern["sample"].as_str().expect("sample").to_string(),
            )
        })
        .collect();
    let expected = [
        (
            "GET /api/v1/cart/<*> returned <NUM> in <DUR>",
            30,
            "GET /api/v1/cart/1029 returned 200 in 30.5ms",
        ),
        (
            "user <NUM> logged in from <IP>",
            30,
            "user 4029 logged in from 10.0.0.29",
        ),
        (
            "payment declined for order <NUM>: <STR>",
            5,
            "payment declined for order 704: \"card expired\"",
        ),
        (
            "disk full on /var/lib/lookout",
            1,
            "disk full on /var/lib/lookout",
        ),
    ]
    .map(|(template, count, sample)| (template.to_string(), count, sample.to_string()));
    assert_eq!(listed, expected, "{body}");
    assert_eq!(
        (
            &body["lines_matched"],
            &body["lines_mined"],
            &body["sampled"],
            &body["templates"]
        ),
        (&json!(66), &json!(66), &json!(false), &json!(4)),
        "{body}"
    );
    // a pattern's query finds its lines (here exactly them)
    let query = body["patterns"][2]["query"].as_str().expect("query");
    assert_eq!(
        server.count("logs", query).await,
        5,
        "{query} finds the declined payments"
    );
    // the search's query and `size` narrow the answer
    let (status, body) = server
        .get("/_lookout/patterns?index=logs&q=service:payments%20OR%20service:disk&from=now-2h&size=1")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["templates"], 2, "{body}");
    assert_eq!(body["lines_matched"], 6, "{body}");
    assert_eq!(
        body["patterns"][0]["template"],
        "payment declined for order <NUM>: <STR>"
    );
    assert_eq!(body["patterns"].as_array().map(Vec::len), Some(1));
    // bad parameters say what to fix
    for (path, expected) in [
        (
            "/_lookout/patterns?size=0",
            "`size`: `0` is not a number of templates",
        ),
        (
            "/_lookout/patterns?from=yesterday",
            "`from`: `yesterday` is not a time",
        ),
        ("/_lookout/patterns?sise=3", "unknown parameter `sise`"),
        ("/_lookout/patterns?q=status:(500", ""),
        (
            "/_lookout/patterns?from=now&to=now-1h",
            "`to` is before `from`",
        ),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains(expected)),
            "{path}: {body}"
        );
    }
}

/// A rule over every line: new templates with at least 3 lines in a minute.
fn new_errors_rule(schedule: &str, window: &str, lookback: &str) -> Value {
    json!({"version": 1, "schedule": schedule, "index": "logs", "query": "*",
           "window": window, "new_pattern": {"field": "message", "lookback": lookback, "min_count": 3},
           "summary": "new kind of log line: {{ $labels.pattern }} ({{ $value }} lines)"})
}

#[tokio::test]
async fn a_backtest_fires_once_for_a_new_kind_halfway_and_not_for_an_odd_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);
    let base = minute_ago(90);
    let mut docs = routine(base, 60);
    // halfway: a new kind, four lines in the minute from base + 30m
    docs.extend((0..4).map(|n| {
        json!({"@timestamp": rfc3339(base + 1800 + 5 + n), "service": "payments",
               "message": format!("payment declined for order {}: \"card expired\"", 700 + n)})
    }));
    // ten minutes later: one odd line, below min_count
    docs.push(
        json!({"@timestamp": rfc3339(base + 2405), "service": "disk",
                     "message": "disk full on /var/lib/lookout"}),
    );
    ingest(&server, &docs).await;

    let rule = new_errors_rule("0 * * * * *", "1m", "7d");
    let path = format!(
        "/_lookout/rules/new_errors/_backtest?from={}&to={}",
        urlencode(&rfc3339(base + 1200)),
        urlencode(&rfc3339(base + 3000))
    );
    let (status, body) = server.post_json(&path, &rule).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["evaluations"], 31, "{body}");
    let time = |seconds: i64| {
        chrono::DateTime::from_timestamp(seconds, 0)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let timeline: Vec<(String, String, String, f64)> = body["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|event| {
            (
                event["@timestamp"].as_str().expect("time").to_string(),
                event["to"].as_str().expect("to").to_string(),
                event["labels"]["pattern"]
                    .as_str()
                    .expect("pattern")
                    .to_string(),
                event["value"].as_f64().expect("value"),
            )
        })
        .collect();
    let template = "payment declined for order <NUM>: <STR>".to_string();
    assert_eq!(
        timeline,
        [
            // the tick after the new kind's minute: its window holds the first line
            (time(base + 1860), "firing".into(), template.clone(), 4.0),
            // the next tick: the kind is in the lookback now
            (time(base + 1920), "resolved".into(), template.clone(), 0.0),
        ],
        "{body}"
    );
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{body}");
    let firing = messages[0]["payload"].to_string();
    assert!(
        firing.contains(&slack(
            "new kind of log line: payment declined for order <NUM>: <STR> (4 lines)"
        )) && firing.contains("payment declined for order 703"),
        "the message names the template and shows its lines: {firing}"
    );
    assert!(
        mock.lock().expect("mock").received.is_empty(),
        "a backtest sends nothing"
    );
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_patterns_fire_live_and_a_restart_rebuilds_what_was_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::write(
        queries.join("new_errors.json"),
        new_errors_rule("* * * * * *", "2s", "1h").to_string(),
    )
    .expect("rule");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);
    ingest(&server, &routine(minute_ago(20), 15)).await;
    let evaluated = |server: &Server| {
        let server_url = server.url("/_lookout/rules");
        async move {
            let body: Value = reqwest::get(&server_url)
                .await
                .expect("rules")
                .json()
                .await
                .expect("json");
            body["rules"][0]["health"] == "ok"
        }
    };
    wait_until("the rule evaluates", 30, || evaluated(&server)).await;
    // stamped a second ahead, so that both ticks whose window holds them come after
    // they are searchable
    let ahead = |kind: &str, count: i64| -> Vec<Value> {
        let at = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
        (0..count)
            .map(|n| match kind {
                "timeout" => json!({"@timestamp": at,
                    "message": format!("upstream timeout after {}s calling inventory", 30 + n)}),
                _ => json!({"@timestamp": at,
                    "message": format!("cache shard {n} evicted under memory pressure")}),
            })
            .collect()
    };
    ingest(&server, &ahead("timeout", 3)).await;
    let fired = |mock: &Arc<Mutex<MockSlack>>, needle: &str| {
        delivered_texts(mock)
            .iter()
            .filter(|text| text.starts_with("[FIRING]") && text.contains(needle))
            .count()
    };
    wait_until("the new kind fires", 30, || {
        std::future::ready(fired(&mock, "upstream timeout after <DUR> calling inventory") == 1)
    })
    .await;

    // a restart: the memory is rebuilt from the index at the first tick
    server.terminate();
    let server = serve_rules(dir.path(), &queries, &webhook);
    wait_until("the rule evaluates again", 30, || evaluated(&server)).await;
    ingest(&server, &ahead("timeout", 3)).await;
    ingest(&server, &ahead("cache", 3)).await;
    wait_until("the other new kind fires", 30, || {
        std::future::ready(fired(&mock, "cache shard <NUM> evicted under memory pressure") == 1)
    })
    .await;
    let texts = delivered_texts(&mock);
    assert_eq!(
        fired(&mock, "upstream timeout"),
        1,
        "a kind seen before the restart is not new after it: {texts:?}"
    );
    assert!(
        !texts
            .iter()
            .any(|text| text.contains("GET /api") || text.contains("logged in")),
        "the routine kinds never fire: {texts:?}"
    );
}

// the browser works while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_page_patterns_tab_lists_templates_and_a_click_filters_to_one() {
    use crate::support::browser::{browser, driver, wait_for};
    use fantoccini::Locator;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    ingest(&server, &known_stream()).await;
    let driver = driver().await;
    let client = browser(&driver, &dir.path().join("chromium")).await;
    client
        .goto(&server.url("/ui/search?index=logs&q=*&from=now-2h&to=now"))
        .await
        .expect("open search");
    wait_for(&client, "#summary", "66 matching log lines", 1).await;
    // the Patterns tab: the four templates, largest first, with counts and newest lines
    client
        .find(Locator::Id("tab-patterns"))
        .await
        .expect("patterns tab")
        .click()
        .await
        .expect("click");
    let rows = wait_for(&client, "#patterns tr.pattern", "payment declined", 1).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let third: Vec<&str> = rows[2].split_whitespace().take(6).collect();
    assert_eq!(
        third,
        ["5", "payment", "declined", "for", "order", "<NUM>:"],
        "{rows:?}"
    );
    assert!(
        rows[2].contains("payment declined for order 704: \"card expired\""),
        "the newest line: {rows:?}"
    );
    wait_for(
        &client,
        "#patterns-summary",
        "4 patterns in all 66 matching lines",
        1,
    )
    .await;
    let url = client.current_url().await.expect("url");
    assert!(
        url.as_str().contains("view=patterns"),
        "the URL keeps the tab: {url}"
    );
    // a click on a pattern searches its lines
    client
        .find(Locator::XPath(
            "//button[contains(@class, 'template') and starts-with(text(), 'payment declined')]",
        ))
        .await
        .expect("the pattern")
        .click()
        .await
        .expect("click");
    wait_for(&client, "#summary", "5 matching log lines", 1).await;
    let rows = wait_for(&client, "#hits tr.doc", "payment declined for order", 5).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    let url = client.current_url().await.expect("url");
    assert!(
        url.as_str().contains("q=message%3A%22payment%22")
            && !url.as_str().contains("view=patterns"),
        "{url}"
    );
}
