//! Spike rules through the real binary: the rule in the body of a dry run or a backtest,
//! over lines bulk-loaded at chosen event times, against hand-computed expectations —
//! up and down per group, `min_count` holding off noise in both directions, no baseline
//! (`alert_on_new_data`), `previous_window` firing and resolving when the rate settles,
//! and `1w` against lines a week old kept under a retention that reaches them.

use serde_json::{Value, json};

use crate::support::{Server, bulk_body, decode, urlencode};

/// A minute boundary `minutes_ago` minutes before now (so windows hold whole minutes).
fn minute_ago(minutes_ago: i64) -> i64 {
    (chrono::Utc::now().timestamp() - minutes_ago * 60).div_euclid(60) * 60
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .expect("time")
        .to_rfc3339()
}

/// `count` error lines of `service` at `seconds` (epoch).
fn errors(service: &str, count: usize, seconds: i64) -> Vec<Value> {
    (0..count)
        .map(|_| json!({"@timestamp": rfc3339(seconds), "level": "error", "service": service}))
        .collect()
}

async fn load(server: &Server, docs: &[Value]) {
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("logs", docs))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
}

/// POSTs `rule` to `/_lookout/rules/NAME/ACTION?QUERY` (the rule in the body, never saved).
async fn with_rule(server: &Server, action: &str, query: &str, rule: &Value) -> Value {
    let response = server
        .client
        .post(server.url(&format!("/_lookout/rules/spiky/{action}?{query}")))
        .json(rule)
        .send()
        .await
        .expect("request");
    let (status, body) = decode(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Each group of a dry run as (service, count, reference, ratio, condition).
fn groups(dry: &Value) -> Vec<(String, f64, f64, f64, bool)> {
    let mut groups: Vec<_> = dry["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|group| {
            (
                group["labels"]["service"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                group["count"].as_f64().expect("count"),
                group["reference"].as_f64().expect("reference"),
                group["spike_ratio"].as_f64().unwrap_or(f64::INFINITY),
                group["condition"].as_bool().expect("condition"),
            )
        })
        .collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    groups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spikes_up_and_down_fire_per_group_and_min_count_holds_off_noise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    // the reference window is [base, base + 5m), the current one [base + 1h, base + 1h5m)
    let base = minute_ago(120);
    let (then, now) = (base + 60, base + 3600 + 60);
    let mut docs = Vec::new();
    for (service, reference, current) in [
        ("checkout", 4, 14), // 3.5× and at least 10: up
        ("cart", 1, 3),      // 3×, but 3 < min_count: noise
        ("search", 30, 5),   // a sixth, from at least 10: down
        ("billing", 3, 1),   // a third, but from 3 < min_count: noise
        ("payments", 12, 12),
        ("fresh", 0, 50), // nothing an hour before: no baseline
    ] {
        docs.extend(errors(service, reference, then));
        docs.extend(errors(service, current, now));
    }
    load(&server, &docs).await;
    let mut rule = json!({
        "version": 1,
        "schedule": "0 0 0 1 1 *",
        "query": "level:error",
        "window": "5m",
        "group_by": ["service"],
        "spike": {"ratio": 3, "compare_to": "1h", "direction": "both", "min_count": 10}
    });
    let at = format!("at={}", urlencode(&rfc3339(base + 3600 + 300)));
    let dry = with_rule(&server, "_dry_run", &at, &rule).await;
    assert_eq!(
        dry["threshold"], "3× up or down against 1h before, min_count 10",
        "{dry}"
    );
    assert_eq!(
        dry["reference_window"],
        json!({"from": rfc3339(base), "to": rfc3339(base + 300)}),
        "{dry}"
    );
    assert_eq!(
        groups(&dry),
        [
            ("billing".to_string(), 1.0, 3.0, 1.0 / 3.0, false),
            ("cart".to_string(), 3.0, 1.0, 3.0, false),
            ("checkout".to_string(), 14.0, 4.0, 3.5, true),
            ("fresh".to_string(), 50.0, 0.0, f64::INFINITY, false),
            ("payments".to_string(), 12.0, 12.0, 1.0, false),
            ("search".to_string(), 5.0, 30.0, 5.0 / 30.0, true),
        ],
        "{dry}"
    );
    let texts: Vec<&str> = dry["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|message| message["payload"]["text"].as_str())
        .collect();
    assert!(
        texts
            .iter()
            .any(|text| text.contains("14 matches in the last 5m, 3.5× the 4 of 1h before")),
        "{texts:?}"
    );
    // up only: the drop of search no longer fires
    rule["spike"]["direction"] = "up".into();
    let up = groups(&with_rule(&server, "_dry_run", &at, &rule).await);
    let firing: Vec<&str> = up.iter().filter(|g| g.4).map(|g| g.0.as_str()).collect();
    assert_eq!(firing, ["checkout"]);
    // down only
    rule["spike"]["direction"] = "down".into();
    let down = groups(&with_rule(&server, "_dry_run", &at, &rule).await);
    let firing: Vec<&str> = down.iter().filter(|g| g.4).map(|g| g.0.as_str()).collect();
    assert_eq!(firing, ["search"]);
    // with alert_on_new_data, a group with no baseline fires once it reaches min_count
    rule["spike"]["direction"] = "up".into();
    rule["spike"]["alert_on_new_data"] = true.into();
    let new_data = groups(&with_rule(&server, "_dry_run", &at, &rule).await);
    let firing: Vec<&str> = new_data
        .iter()
        .filter(|g| g.4)
        .map(|g| g.0.as_str())
        .collect();
    assert_eq!(firing, ["checkout", "fresh"]);
    // without min_count's floor, 1 → 3 is a spike
    rule["spike"]["min_count"] = 0.into();
    rule["spike"]["alert_on_new_data"] = false.into();
    let floorless = groups(&with_rule(&server, "_dry_run", &at, &rule).await);
    let firing: Vec<&str> = floorless
        .iter()
        .filter(|g| g.4)
        .map(|g| g.0.as_str())
        .collect();
    assert_eq!(firing, ["cart", "checkout"]);
    // a week back is beyond the default retention (7 days): the dry run warns
    rule["spike"]["compare_to"] = "1w".into();
    let dry = with_rule(&server, "_dry_run", &at, &rule).await;
    assert!(
        dry["warnings"].to_string().contains(
            "`compare_to` and the window reach 7days 5m back, beyond the index retention (7days)"
        ),
        "{dry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_window_spike_fires_and_resolves_when_the_rate_settles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    // 5 errors a minute for ten minutes, 25 in the sixth: [base + 5m, base + 6m)
    let base = minute_ago(30);
    let mut docs = Vec::new();
    for minute in 0..10 {
        let count = if minute == 5 { 25 } else { 5 };
        docs.extend(errors("checkout", count, base + minute * 60 + 30));
    }
    load(&server, &docs).await;
    let rule = json!({
        "version": 1,
        "schedule": "0 * * * * *",
        "query": "level:error",
        "window": "1m",
        "group_by": ["service"],
        "spike": {"ratio": 3, "compare_to": "previous_window", "min_count": 10},
        "summary": "{{ $value }} errors on {{ $labels.service }}, {{ $spike_ratio }}× the {{ $reference }} of the minute before"
    });
    let range = format!(
        "from={}&to={}",
        urlencode(&rfc3339(base + 60)),
        urlencode(&rfc3339(base + 9 * 60))
    );
    let backtest = with_rule(&server, "_backtest", &range, &rule).await;
    let time = |seconds: i64| {
        chrono::DateTime::from_timestamp(seconds, 0)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let timeline: Vec<(String, String, f64)> = backtest["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|event| {
            (
                event["@timestamp"].as_str().unwrap_or_default().to_string(),
                event["to"].as_str().unwrap_or_default().to_string(),
                event["value"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    // fires at base + 6m (25 against 5: 5×), resolves at base + 7m (5 against 25)
    assert_eq!(
        timeline,
        [
            (time(base + 360), "firing".to_string(), 25.0),
            (time(base + 420), "resolved".to_string(), 5.0),
        ],
        "{backtest}"
    );
    let texts: Vec<&str> = backtest["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|message| message["text"].as_str())
        .collect();
    assert!(
        texts
            .iter()
            .any(|text| text.contains("25 errors on checkout, 5× the 5 of the minute before")),
        "{texts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_over_week_spike_reads_lines_a_week_old_kept_under_the_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    // a week and a window back must be inside the retention (and so accepted by ingest)
    let config = dir.path().join("lookout.toml");
    std::fs::write(&config, "[index]\nretention = \"9days\"\n").expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    let tick = minute_ago(10);
    let week = 7 * 86_400;
    let mut docs = errors("checkout", 4, tick - week - 120);
    docs.extend(errors("checkout", 14, tick - 120));
    load(&server, &docs).await;
    // the week-old lines are stored and searchable
    let (status, body) = server
        .post_json(
            "/logs/_count",
            &json!({"query": {"range": {"@timestamp": {
                "gte": rfc3339(tick - week - 300), "lt": rfc3339(tick - week)
            }}}}),
        )
        .await;
    assert_eq!((status, &body["count"]), (200, &json!(4)), "{body}");
    let rule = json!({
        "version": 1,
        "schedule": "0 0 0 1 1 *",
        "query": "level:error",
        "window": "5m",
        "group_by": ["service"],
        "spike": {"ratio": 3, "compare_to": "1w", "min_count": 10}
    });
    let at = format!("at={}", urlencode(&rfc3339(tick)));
    let dry = with_rule(&server, "_dry_run", &at, &rule).await;
    assert_eq!(
        groups(&dry),
        [("checkout".to_string(), 14.0, 4.0, 3.5, true)],
        "{dry}"
    );
}
