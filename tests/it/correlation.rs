//! Logs and metrics in one place, through the real binary: saved log queries answer as
//! `log_matches` series (at now, in the past, per step of a range query, joined with a
//! scraped counter), the seed's Prometheus alerting rule runs as a Lookout metric rule,
//! and a log alert carries its `context` metric values to Slack.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::rules::serve_rules_with_config;
use crate::support::scrape::{scrape_config, scripted_target};
use crate::support::slack::{MockSlack, delivered, delivered_texts, start_mock};
use crate::support::{Server, bulk_body, urlencode, wait_until};

fn write_rule(queries: &std::path::Path, name: &str, rule: Value) {
    std::fs::create_dir_all(queries).expect("mkdir");
    std::fs::write(queries.join(format!("{name}.json")), rule.to_string()).expect("rule");
}

async fn instant(server: &Server, query: &str, time_ms: i64) -> Vec<Value> {
    let (status, body) = server
        .get(&format!(
            "/api/v1/query?query={}&time={}",
            urlencode(query),
            time_ms as f64 / 1000.0
        ))
        .await;
    assert_eq!(status, 200, "{query}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `label value → sample value` of an instant vector.
fn by_label(result: &[Value], label: &str) -> std::collections::BTreeMap<String, f64> {
    result
        .iter()
        .map(|sample| {
            (
                sample["metric"][label]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                sample["value"][1]
                    .as_str()
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(f64::NAN),
            )
        })
        .collect()
}

// the scrape target runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_matches_counts_from_the_index_now_in_the_past_per_step_and_beside_a_counter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    // both rules never fire; they exist to be read as series
    write_rule(
        &queries,
        "errors_by_service",
        json!({"version": 1, "schedule": "0 0 * * * *", "query": "status:500", "window": "1m",
               "group_by": ["service"], "threshold": {"op": ">", "value": 1e9}}),
    );
    write_rule(
        &queries,
        "all_500s",
        json!({"version": 1, "schedule": "0 0 * * * *", "query": {"term": {"status": 500}},
               "window": "1m", "threshold": {"op": ">", "value": 1e9}}),
    );
    let counter = Arc::new(Mutex::new(
        "# TYPE http_requests_total counter\nhttp_requests_total{service=\"checkout\"} {n}00\nhttp_requests_total{service=\"cart\"} {n}0\n"
            .to_string(),
    ));
    let target = scripted_target(counter).await;
    let config = scrape_config(dir.path(), &target);
    let server = serve_rules_with_config(dir.path(), &queries, &config, "");
    // the lines: (seconds before now, service, status)
    let now = chrono::Utc::now().timestamp_millis() / 1000 * 1000;
    let mut lines: Vec<(i64, &str, u16)> = Vec::new();
    lines.extend((0..3).map(|_| (10, "checkout", 500)));
    lines.push((10, "cart", 500));
    lines.extend((0..5).map(|_| (70, "checkout", 500)));
    lines.extend((0..2).map(|_| (1820, "checkout", 500)));
    lines.extend((0..4).map(|_| (1820, "search", 500)));
    lines.extend((0..6).map(|_| (1815, "search", 200)));
    // every 150 s over the last 40 minutes, for the range query
    lines.extend((0..16).map(|step| (2400 - step * 150, "cart", 500)));
    let docs: Vec<Value> = lines
        .iter()
        .map(|(ago, service, status)| {
            let at = chrono::DateTime::from_timestamp_millis(now - ago * 1000).expect("time");
            json!({"@timestamp": at.to_rfc3339(), "service": service, "status": status})
        })
        .collect();
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("logs", &docs))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    // a hand count of [t − 1m, t) per service, and whether it was seen within the hour
    let hand = |t: i64| {
        let mut counts = std::collections::BTreeMap::new();
        for (ago, service, status) in &lines {
            let at = now - ago * 1000;
            if *status == 500 && at >= t - 3_600_000 && at < t {
                let count = counts.entry(service.to_string()).or_insert(0.0);
                if at >= t - 60_000 {
                    *count += 1.0;
                }
            }
        }
        counts
    };
    let loaded = || async {
        let (_, body) = server.get("/api/v1/label/query/values").await;
        body["data"] == json!(["all_500s", "errors_by_service"])
    };
    wait_until("both saved queries visible as series", 30, loaded).await;

    for at in [now, now - 1_800_000] {
        let result = instant(&server, "log_matches{query=\"errors_by_service\"}", at).await;
        assert_eq!(by_label(&result, "service"), hand(at), "at {at}");
        assert!(
            result
                .iter()
                .all(|sample| sample["metric"]["__name__"] == "log_matches"),
            "{result:?}"
        );
        let total = instant(&server, "sum(log_matches{query=\"errors_by_service\"})", at).await;
        let expected: f64 = hand(at).values().sum();
        assert_eq!(by_label(&total, "x")[""], expected, "sum at {at}");
    }
    // search had matches 30 minutes ago: within the hour it answers 0, not absent
    assert_eq!(hand(now)["search"], 0.0);

    // a range query: one point per step, each the count of its own window
    let (start, end, step) = (now - 2_400_000, now, 60_000);
    let (status, body) = server
        .get(&format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=60",
            urlencode("log_matches{query=\"errors_by_service\"}"),
            start / 1000,
            end / 1000
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let series = body["data"]["result"].as_array().expect("matrix");
    let mut compared = 0;
    for series in series {
        let service = series["metric"]["service"].as_str().expect("service");
        let values = series["values"].as_array().expect("values");
        for pair in values {
            let t = (pair[0].as_f64().expect("time") * 1000.0) as i64;
            assert_eq!((t - start) % step, 0, "points sit on the steps");
            let value: f64 = pair[1].as_str().expect("value").parse().expect("number");
            assert_eq!(Some(&value), hand(t).get(service), "{service} at {t}");
            compared += 1;
        }
        // every step where the group was seen within the hour has its point
        let expected_points = (0..=40)
            .filter(|n| hand(start + n * step).contains_key(service))
            .count();
        assert_eq!(values.len(), expected_points, "{service}");
    }
    assert!(compared > 60, "{compared} points compared");

    // as a range vector: one sample every 15 s
    let grid = instant(
        &server,
        "count_over_time(log_matches{query=\"all_500s\"}[1m])",
        now,
    )
    .await;
    assert_eq!(by_label(&grid, "query")["all_500s"], 4.0, "{grid:?}");

    // series, labels and label values know log_matches
    let (_, body) = server
        .get(&format!(
            "/api/v1/series?match[]={}&start={}&end={}",
            urlencode("log_matches{query=\"errors_by_service\"}"),
            now / 1000 - 600,
            now / 1000
        ))
        .await;
    let mut services: Vec<&str> = body["data"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|labels| labels["service"].as_str())
        .collect();
    services.sort_unstable();
    assert_eq!(services, ["cart", "checkout", "search"], "{body}");
    let (_, body) = server.get("/api/v1/labels").await;
    for name in ["query", "service", "__name__"] {
        assert!(
            body["data"]
                .as_array()
                .expect("names")
                .contains(&json!(name)),
            "{body}"
        );
    }
    let (_, body) = server.get("/api/v1/label/__name__/values").await;
    assert!(
        body["data"]
            .as_array()
            .expect("names")
            .contains(&json!("log_matches")),
        "{body}"
    );

    // beside a scraped counter: errors per request, joined on service
    let scraped = || async {
        let now = chrono::Utc::now().timestamp_millis();
        instant(&server, "increase(http_requests_total[1m]) > 0", now)
            .await
            .len()
            == 2
    };
    wait_until("the counter has a rate", 30, scraped).await;
    let at = chrono::Utc::now().timestamp_millis();
    let mixed = "log_matches{query=\"errors_by_service\"} / on(service) sum by (service) (increase(http_requests_total[1m]))";
    let ratios = by_label(&instant(&server, mixed, at).await, "service");
    let logs = by_label(
        &instant(&server, "log_matches{query=\"errors_by_service\"}", at).await,
        "service",
    );
    let requests = by_label(
        &instant(
            &server,
            "sum by (service) (increase(http_requests_total[1m]))",
            at,
        )
        .await,
        "service",
    );
    assert_eq!(
        ratios.keys().collect::<Vec<_>>(),
        ["cart", "checkout"],
        "search has no requests series: {ratios:?}"
    );
    for (service, ratio) in &ratios {
        let expected = logs[service] / requests[service];
        assert!(
            (ratio - expected).abs() < 1e-9,
            "{service}: {ratio} vs {expected}"
        );
    }
}

// the target and the mock Slack run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_prometheus_rule_fires_after_for_and_resolves_with_its_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 10% of the requests fail until the test floods the successes
    let body = Arc::new(Mutex::new(
        "http_requests_total{status_code=\"500\"} {n}0\nhttp_requests_total{status_code=\"200\"} {n}00\n"
            .to_string(),
    ));
    let target = scripted_target(Arc::clone(&body)).await;
    let config = scrape_config(dir.path(), &target);
    let queries = dir.path().join("queries");
    // the seed's Prometheus rule as written, with a `for` a test can wait out
    write_rule(
        &queries,
        "HighErrorRate",
        json!({
            "version": 1,
            "schedule": "* * * * * *",
            "promql": "sum(rate(http_requests_total{status_code=~\"5..\"}[5m])) by (job) / sum(rate(http_requests_total[5m])) by (job) * 100 > 5",
            "for": "3s",
            "severity": "critical",
            "summary": "High error rate on {{ $labels.job }}",
            "description": "{{ $value | printf \"%.1f\" }}% of requests fail"
        }),
    );
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules_with_config(dir.path(), &queries, &config, &webhook);
    let pending = || async {
        let (_, body) = server.get("/api/v1/alerts").await;
        body["data"]["alerts"]
            .as_array()
            .is_some_and(|alerts| alerts.iter().any(|alert| alert["state"] == "pending"))
    };
    wait_until("the alert is pending", 30, pending).await;
    let pending_seen = std::time::Instant::now();
    wait_until("the firing message", 30, delivered(&mock, 1)).await;
    assert!(
        pending_seen.elapsed() >= std::time::Duration::from_secs(2),
        "fired only after `for`"
    );
    let firing = mock.lock().expect("mock").delivered[0].clone();
    let text = firing.to_string();
    assert!(
        text.contains("[FIRING] HighErrorRate: High error rate on app"),
        "{text}"
    );
    // 10 failures for every 100 successes
    assert!(text.contains("9.1% of requests fail"), "{text}");
    assert!(text.contains("`job=app`"), "{text}");
    assert!(text.contains("/ui/metrics?expr="), "{text}");
    // a flood of successes takes the 5-minute ratio under 5%
    *body.lock().expect("body") =
        "http_requests_total{status_code=\"500\"} 1000\nhttp_requests_total{status_code=\"200\"} 1000000000{n}\n"
            .to_string();
    wait_until("the resolved message", 30, delivered(&mock, 2)).await;
    let texts = delivered_texts(&mock);
    assert!(
        texts[1].contains("[RESOLVED] HighErrorRate: High error rate on app"),
        "{texts:?}"
    );
    assert_eq!(texts.len(), 2, "{texts:?}");
}

// the target and the mock Slack run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_alert_carries_its_context_metric_values_to_slack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = Arc::new(Mutex::new(
        "# TYPE http_requests_total counter\nhttp_requests_total{service=\"checkout\"} {n}000\nhttp_requests_total{service=\"cart\"} {n}\n# TYPE http_request_duration_seconds histogram\nhttp_request_duration_seconds_bucket{service=\"checkout\",le=\"0.1\"} {n}\nhttp_request_duration_seconds_bucket{service=\"checkout\",le=\"1\"} {n}0\nhttp_request_duration_seconds_bucket{service=\"checkout\",le=\"+Inf\"} {n}0\n"
            .to_string(),
    ));
    let target = scripted_target(body).await;
    let config = scrape_config(dir.path(), &target);
    let queries = dir.path().join("queries");
    write_rule(
        &queries,
        "checkout_5xx",
        json!({
            "version": 1,
            "schedule": "*/2 * * * * *",
            "query": "status:500",
            "window": "2s",
            "group_by": ["service"],
            "threshold": {"op": ">", "value": 2},
            "summary": "{{ $count }} HTTP 500s on {{ $labels.service }}",
            "context": [
                "sum(rate(http_requests_total{service=\"{{ $labels.service }}\"}[1m]))",
                "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{service=\"{{ $labels.service }}\"}[1m])))"
            ]
        }),
    );
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules_with_config(dir.path(), &queries, &config, &webhook);
    let scraped = || async {
        let now = chrono::Utc::now().timestamp_millis();
        !instant(&server, "rate(http_requests_total[1m]) > 0", now)
            .await
            .is_empty()
    };
    wait_until("the counter has a rate", 30, scraped).await;
    // lines acknowledged after the tick that ends their 2 s window are never counted (a
    // plain `_bulk` has no watermark to wait for): stamp them clear of the next tick
    let into_period = chrono::Utc::now().timestamp_millis().rem_euclid(2000) as u64;
    if into_period > 1500 {
        tokio::time::sleep(std::time::Duration::from_millis(2000 - into_period + 50)).await;
    }
    let lines: Vec<Value> = (0..5)
        .map(|_| json!({"@timestamp": chrono::Utc::now().to_rfc3339(), "service": "checkout", "status": 500}))
        .collect();
    let (status, response) = server
        .post_ndjson("/_bulk", bulk_body("logs", &lines))
        .await;
    assert_eq!(status, 200, "{response}");
    wait_until("the firing message", 30, delivered(&mock, 1)).await;
    let firing = mock.lock().expect("mock").delivered[0].clone();
    let context = firing["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .filter_map(|block| block["text"]["text"].as_str())
        .find(|text| text.starts_with("*Context*"))
        .unwrap_or_else(|| panic!("a context section: {firing}"))
        .to_string();
    // each value is the expression's at the tick, which ends the search link's window
    let tick = firing.to_string();
    let tick = tick
        .split("&to=")
        .nth(1)
        .and_then(|rest| rest.split('|').next())
        .map(|encoded| encoded.replace("%3A", ":").replace("%2B", "+"))
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(&text).ok())
        .unwrap_or_else(|| panic!("the search link's end: {firing}"))
        .timestamp_millis();
    let at_tick = |query: &'static str| {
        let server = &server;
        async move {
            let result = instant(server, query, tick).await;
            result[0]["value"][1]
                .as_str()
                .and_then(|value| value.parse::<f64>().ok())
                .expect("a value")
        }
    };
    let rate_line = context
        .lines()
        .find(|line| line.contains("http_requests_total{service=\"checkout\"}"))
        .unwrap_or_else(|| panic!("the request rate, labels substituted: {context}"));
    let value = rate_line.rsplit(" = ").next().expect("a value");
    let value = value
        .strip_suffix("/s")
        .unwrap_or_else(|| panic!("per second: {rate_line}"));
    let rate: f64 = match value.strip_suffix('k') {
        Some(thousands) => thousands.parse::<f64>().map(|number| number * 1000.0),
        None => value.parse(),
    }
    .unwrap_or_else(|_| panic!("a number: {rate_line}"));
    let expected = at_tick("sum(rate(http_requests_total{service=\"checkout\"}[1m]))").await;
    assert!(
        (rate - expected).abs() <= expected * 1e-3,
        "{rate_line} vs {expected}"
    );
    let latency_line = context
        .lines()
        .find(|line| line.contains("histogram_quantile"))
        .unwrap_or_else(|| panic!("the p95: {context}"));
    let expected = at_tick("histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{service=\"checkout\"}[1m])))").await;
    assert!(
        latency_line.ends_with(&format!("= {}ms", (expected * 1000.0).round())),
        "{latency_line} vs {expected} s"
    );
    assert!(latency_line.ends_with("ms"), "a duration: {latency_line}");
}

fn lookout(args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(args)
        .env("LOOKOUT_LOG", "warn")
        .output()
        .expect("run lookout");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_rule_tests_pass_and_a_wrong_expectation_fails_with_a_readable_diff() {
    let queries = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
    let fixtures = queries.join("rules.test.yml");
    let (code, stdout, stderr) = lookout(&[
        "rules",
        "test",
        "--fixtures",
        &fixtures.display().to_string(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("35 passed, 0 failed"), "{stdout}");

    // the same tests with two expectations wrong
    let dir = tempfile::tempdir().expect("tempdir");
    // every rule the fixtures name
    for entry in std::fs::read_dir(&queries).expect("queries/") {
        let path = entry.expect("entry").path();
        if path
            .extension()
            .is_some_and(|extension| extension == "json")
        {
            let file = path.file_name().expect("a file name");
            std::fs::copy(&path, dir.path().join(file)).expect("copy");
        }
    }
    let text = std::fs::read_to_string(&fixtures).expect("fixtures");
    let wrong = text
        .replace("summary: 25 HTTP 500s", "summary: 24 HTTP 500s")
        .replace("value: 4", "value: 5");
    assert_ne!(wrong, text);
    let broken = dir.path().join("rules.test.yml");
    std::fs::write(&broken, wrong).expect("write");
    let (code, stdout, stderr) =
        lookout(&["rules", "test", "--fixtures", &broken.display().to_string()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("33 passed, 2 failed"), "{stdout}");
    for expected in [
        "FAILED checkout 5xx fires on 25 errors in a minute and resolves when they stop: alertname: checkout_5xx, time: 3m:",
        "  - expected, not firing: labels {alertname=\"checkout_5xx\", service=\"checkout\", severity=\"critical\", team=\"payments\"} annotations {description=\"checkout is answering HTTP 500\", runbook_url=\"https://runbooks.example/checkout-5xx\", summary=\"24 HTTP 500s in the last 1m on checkout\"}",
        "  + firing, not expected: labels {alertname=\"checkout_5xx\", service=\"checkout\", severity=\"critical\", team=\"payments\"} annotations {description=\"checkout is answering HTTP 500\", runbook_url=\"https://runbooks.example/checkout-5xx\", summary=\"25 HTTP 500s in the last 1m on checkout\"}",
        "  - expected, not found: {query=\"checkout_5xx\", service=\"checkout\"} 5",
        "  + found, not expected: {query=\"checkout_5xx\", service=\"checkout\"} 4",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_over_indexed_history_prints_the_known_timeline_and_sends_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = Server::start_with_env(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &["--queries", &queries.display().to_string()],
        &[("SLACK_WEBHOOK_URL", &webhook)],
    );
    // an incident half an hour ago: 25 checkout 500s at base + 2m10s, 30 more at base + 5m5s
    let base = (chrono::Utc::now() - chrono::Duration::minutes(30))
        .timestamp()
        .div_euclid(60)
        * 60;
    let at = |seconds: i64| {
        chrono::DateTime::from_timestamp(base + seconds, 0)
            .expect("time")
            .to_rfc3339()
    };
    let mut docs: Vec<Value> = (0..25)
        .map(|_| json!({"@timestamp": at(130), "status": 500, "service": "checkout"}))
        .collect();
    docs.extend(
        (0..30).map(|_| json!({"@timestamp": at(305), "status": 500, "service": "checkout"})),
    );
    docs.extend(
        (0..40).map(|_| json!({"@timestamp": at(140), "status": 200, "service": "checkout"})),
    );
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("logs", &docs))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    let rule = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("queries/checkout_5xx.json");
    let (from, to) = (at(0), at(480));
    let server_url = server.base.clone();
    let rule_path = rule.display().to_string();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        lookout(&[
            "rules",
            "test",
            &rule_path,
            "--server",
            &server_url,
            "--from",
            &from,
            "--to",
            &to,
        ])
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let time = |seconds: i64| {
        chrono::DateTime::from_timestamp(base + seconds, 0)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let timeline: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains(" → ") && line.contains("value"))
        .collect();
    let expected = [
        format!(
            "  {}  inactive → firing    value 25.0  {{service=checkout}}",
            time(180)
        ),
        format!(
            "  {}  firing   → resolved  value 0.0  {{service=checkout}}",
            time(240)
        ),
        format!(
            "  {}  inactive → firing    value 30.0  {{service=checkout}}",
            time(360)
        ),
        format!(
            "  {}  firing   → resolved  value 0.0  {{service=checkout}}",
            time(420)
        ),
    ];
    assert_eq!(timeline, expected, "{stdout}");
    assert!(stdout.contains("backtest of checkout_5xx"), "{stdout}");
    assert!(stdout.contains(": 9 evaluations"), "{stdout}");
    assert!(
        stdout.contains("messages it would have sent (4):"),
        "{stdout}"
    );
    assert!(
        stdout.contains("→ slack: [FIRING] checkout_5xx: 25 HTTP 500s in the last 1m on checkout"),
        "{stdout}"
    );
    assert!(
        mock.lock().expect("mock").received.is_empty(),
        "a backtest sends nothing"
    );
    // a rule that does not load is refused with its file and field
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"version": 1, "query": "status:500"}"#).expect("write");
    let (code, _, stderr) = lookout(&[
        "rules",
        "test",
        &bad.display().to_string(),
        "--server",
        &server.base,
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("bad.json: `threshold`"), "{stderr}");
}
