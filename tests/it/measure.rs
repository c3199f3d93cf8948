//! Log rules whose value is an aggregate of a field or a ratio of two queries, through
//! the real binary: their values per service against hand-computed ones (the
//! percentile within DDSketch's 1 %), `log_aggregate` and `log_ratio` equal to the rule's
//! value at the same tick, groups without a value (no field, a denominator of 0 or under
//! its minimum) neither alerting nor failing, a text field failing the rule with a
//! reason, and bad combinations refused with field and reason.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::support::rules::serve_rules;
use crate::support::slack::{MockSlack, start_mock};
use crate::support::{Server, bulk_body, decode, urlencode, wait_until};

/// checkout's latencies, in no order; sorted by hand: 60 80 95 99 101 105 120 130 140
/// 150 160 175 190 210 220 300 410 450 500 870 (sum 4565)
const CHECKOUT: [i64; 20] = [
    120, 80, 450, 95, 300, 210, 130, 870, 60, 150, 99, 101, 500, 410, 105, 140, 160, 175, 190, 220,
];

async fn start() -> (tempfile::TempDir, Server, Arc<Mutex<MockSlack>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);
    (dir, server, mock)
}

async fn put_rule(server: &Server, name: &str, body: &Value) -> (u16, Value) {
    let request = server
        .client
        .put(server.url(&format!("/_lookout/rules/{name}")))
        .json(body);
    decode(request.send().await.expect("request")).await
}

fn stamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn ingest(server: &Server, lines: &[Value]) {
    let (status, body) = server.post_ndjson("/_bulk", bulk_body("logs", lines)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"], false, "{body}");
}

/// A rule that never runs on its own during a test (once a year): only dry runs
/// evaluate it.
fn yearly(measure: (&str, Value)) -> Value {
    let mut rule = json!({
        "version": 1,
        "schedule": "0 0 0 1 1 *",
        "index": "logs",
        "query": "*",
        "window": "5m",
        "group_by": ["service"],
        "threshold": {"op": ">", "value": 0},
    });
    rule[measure.0] = measure.1;
    rule
}

/// The value of each group of a dry run at `at`, by service.
async fn dry_run(server: &Server, name: &str, at: &str) -> BTreeMap<String, f64> {
    let (status, dry) = server
        .post_json(
            &format!("/_lookout/rules/{name}/_dry_run?at={}", urlencode(at)),
            &json!(null),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    dry["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|group| {
            (
                group["labels"]["service"]
                    .as_str()
                    .expect("service")
                    .to_string(),
                group["value"].as_f64().expect("a value"),
            )
        })
        .collect()
}

/// Waits until the rule manager runs `name` (its series exist from then on).
async fn wait_running(server: &Server, name: &str) {
    wait_until(&format!("`{name}` runs"), 15, || async {
        let (_, list) = server.get("/_lookout/rules").await;
        list["rules"].as_array().is_some_and(|rules| {
            rules
                .iter()
                .any(|rule| rule["name"] == name && rule["running"] == true)
        })
    })
    .await;
}

/// `metric{query="name"}` at `at`, by service (values as Prometheus prints them).
async fn instant(server: &Server, metric: &str, name: &str, at: &str) -> BTreeMap<String, f64> {
    let query = format!("{metric}{{query=\"{name}\"}}");
    let (status, body) = server
        .get(&format!(
            "/api/v1/query?query={}&time={}",
            urlencode(&query),
            urlencode(at)
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .map(|series| {
            let value: f64 = series["value"][1]
                .as_str()
                .and_then(|text| text.parse().ok())
                .expect("a number");
            (
                series["metric"]["service"]
                    .as_str()
                    .expect("service")
                    .to_string(),
                value,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_per_service_match_hand_computed_values_and_log_aggregate() {
    let (_dir, server, _mock) = start().await;
    // the five minutes before a whole minute, ten minutes ago
    let now = Utc::now();
    let tick =
        DateTime::from_timestamp(now.timestamp() - now.timestamp() % 60 - 600, 0).expect("a time");
    let at = |seconds_before: i64| stamp(tick - chrono::Duration::seconds(seconds_before));
    let mut lines: Vec<Value> = CHECKOUT
        .iter()
        .enumerate()
        .map(|(n, latency)| {
            json!({"@timestamp": at(290 - 14 * n as i64), "service": "checkout",
                "latency_ms": latency, "user": format!("u{}", n % 5)})
        })
        .collect();
    for (n, latency) in [30, 40, 50].into_iter().enumerate() {
        lines.push(json!({"@timestamp": at(100 - n as i64), "service": "cart",
            "latency_ms": latency, "user": format!("u{}", n % 2)}));
    }
    // lines without the field: left out; search has no value at all
    lines.push(json!({"@timestamp": at(50), "service": "cart", "user": "u9"}));
    lines.push(json!({"@timestamp": at(50), "service": "search", "message": "no latency"}));
    // outside the window: before it, and at its (exclusive) end
    lines.push(json!({"@timestamp": at(301), "service": "cart", "latency_ms": 1}));
    lines.push(json!({"@timestamp": at(0), "service": "cart", "latency_ms": 1000}));
    ingest(&server, &lines).await;

    let tick_text = stamp(tick);
    let cases = [
        (
            "sum_latency",
            json!({"op": "sum", "field": "latency_ms"}),
            4565.0,
            120.0,
        ),
        (
            "avg_latency",
            json!({"op": "avg", "field": "latency_ms"}),
            228.25,
            40.0,
        ),
        (
            "min_latency",
            json!({"op": "min", "field": "latency_ms"}),
            60.0,
            30.0,
        ),
        (
            "max_latency",
            json!({"op": "max", "field": "latency_ms"}),
            870.0,
            50.0,
        ),
        // checkout u0–u4; cart u0, u1 and u9 (the line without latency has a user)
        (
            "users",
            json!({"op": "cardinality", "field": "user"}),
            5.0,
            3.0,
        ),
    ];
    for (name, aggregate, checkout, cart) in cases {
        let (status, answer) = put_rule(&server, name, &yearly(("aggregate", aggregate))).await;
        assert_eq!(status, 201, "{answer}");
        wait_running(&server, name).await;
        let values = dry_run(&server, name, &tick_text).await;
        assert_eq!(
            values,
            BTreeMap::from([
                ("cart".to_string(), cart),
                ("checkout".to_string(), checkout)
            ]),
            "{name}: search has lines but no value"
        );
        assert_eq!(
            instant(&server, "log_aggregate", name, &tick_text).await,
            values,
            "{name}: log_aggregate at the tick is the rule's value"
        );
    }

    // a field no document has is a warning at its key, with the near miss
    let typo = yearly(("aggregate", json!({"op": "max", "field": "latency_msec"})));
    let (status, dry) = server
        .post_json("/_lookout/rules/max_latency/_dry_run", &typo)
        .await;
    assert_eq!(status, 200, "{dry}");
    let warnings = dry["warnings"].to_string();
    assert!(
        warnings.contains(
            "`aggregate`: field `latency_msec` is in no document of `logs` (did you mean `latency_ms`?)"
        ),
        "{warnings}"
    );

    // p95 of 20 values is the one at rank ⌊0.95 · 19⌋ = 18 of the sorted list: 500; p50
    // at rank 9: 150; cart's three values answer rank ⌊0.95 · 2⌋ = ⌊0.5 · 2⌋ = 1: 40;
    // DDSketch answers within 1 %
    for (name, percentile, checkout, cart) in [("p95", 95, 500.0, 40.0), ("p50", 50, 150.0, 40.0)] {
        let aggregate =
            json!({"op": "percentile", "field": "latency_ms", "percentile": percentile});
        let (status, answer) = put_rule(&server, name, &yearly(("aggregate", aggregate))).await;
        assert_eq!(status, 201, "{answer}");
        wait_running(&server, name).await;
        let values = dry_run(&server, name, &tick_text).await;
        assert_eq!(values.len(), 2, "{values:?}");
        assert!(
            (values["checkout"] - checkout).abs() <= checkout * 0.01,
            "{name}: {values:?}"
        );
        assert!(
            (values["cart"] - cart).abs() <= cart * 0.01,
            "{name}: {values:?}"
        );
        let series = instant(&server, "log_aggregate", name, &tick_text).await;
        // the same number, to the precision Prometheus' JSON prints
        for (service, value) in &values {
            assert!(
                (series[service] - value).abs() <= value.abs() * 1e-12,
                "{name}: {series:?} against {values:?}"
            );
        }
    }

    // the series API lists the groups with a value, and `__name__` the new metric
    let five_minutes_before = stamp(tick - chrono::Duration::seconds(300));
    let (status, found) = server
        .get(&format!(
            "/api/v1/series?match[]={}&start={}&end={}",
            urlencode("log_aggregate{query=\"p95\"}"),
            urlencode(&five_minutes_before),
            urlencode(&tick_text)
        ))
        .await;
    assert_eq!(status, 200, "{found}");
    let services: Vec<&str> = found["data"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|labels| labels["service"].as_str())
        .collect();
    assert_eq!(services, ["cart", "checkout"], "{found}");
    let (status, names) = server.get("/api/v1/label/__name__/values").await;
    assert_eq!(status, 200, "{names}");
    let names = names["data"].to_string();
    assert!(
        names.contains("\"log_aggregate\"") && names.contains("\"log_matches\""),
        "{names}"
    );

    // a backtest replays the p95 rule at the minute before the tick and at the tick:
    // checkout fires at the first (its window holds the first 17 latencies, whose rank
    // ⌊0.95 · 16⌋ = 15 is 500 > 400), cart (40) never does
    let mut slow = yearly((
        "aggregate",
        json!({"op": "percentile", "field": "latency_ms", "percentile": 95}),
    ));
    slow["schedule"] = json!("0 * * * * *");
    slow["threshold"] = json!({"op": ">", "value": 400});
    let (status, answer) = put_rule(&server, "slow", &slow).await;
    assert_eq!(status, 201, "{answer}");
    let (status, backtest) = server
        .post_json(
            &format!(
                "/_lookout/rules/slow/_backtest?from={}&to={}",
                urlencode(&stamp(tick - chrono::Duration::seconds(60))),
                urlencode(&tick_text)
            ),
            &json!(null),
        )
        .await;
    assert_eq!(status, 200, "{backtest}");
    let firing: Vec<(String, String)> = backtest["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|event| event["to"] == "firing")
        .map(|event| {
            (
                event["labels"]["service"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                event["@timestamp"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(firing.len(), 1, "{backtest}");
    assert_eq!(firing[0].0, "checkout", "{backtest}");
    let fired_at: DateTime<Utc> = firing[0].1.parse().expect("a time");
    assert_eq!(fired_at, tick - chrono::Duration::seconds(60), "{backtest}");
    let text = backtest["messages"][0]["payload"]["text"]
        .as_str()
        .unwrap_or_default();
    // without a summary the message says what the value is
    let value: f64 = text
        .strip_prefix("[FIRING] slow: p95 of `latency_ms` = ")
        .and_then(|rest| rest.strip_suffix(" in the last 5m"))
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!((value - 500.0).abs() <= 5.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratios_without_a_denominator_neither_alert_nor_fail_and_a_text_field_fails_with_a_reason()
{
    let (_dir, server, mock) = start().await;
    let at = |seconds_before: i64| stamp(Utc::now() - chrono::Duration::seconds(seconds_before));
    let mut lines = Vec::new();
    // checkout: 5 of 20 requests fail, 25 %
    for n in 0..20 {
        let status = if n % 4 == 0 { 500 } else { 200 };
        lines.push(
            json!({"@timestamp": at(60), "service": "checkout", "request": true, "status": status}),
        );
    }
    // cart: 3 of 3 fail, under min_denominator 5
    for _ in 0..3 {
        lines
            .push(json!({"@timestamp": at(60), "service": "cart", "request": true, "status": 503}));
    }
    // worker: errors but no request at all, a denominator of 0
    for _ in 0..4 {
        lines.push(
            json!({"@timestamp": at(60), "service": "worker", "status": 500, "latency_ms": "412"}),
        );
    }
    ingest(&server, &lines).await;
    let ratio = json!({
        "version": 1,
        "schedule": "* * * * * *",
        "index": "logs",
        "query": "status:>=500",
        "window": "1h",
        "group_by": ["service"],
        "ratio": {"denominator": "request:true", "min_denominator": 5},
        "threshold": {"op": ">", "value": 0.05},
        "summary": "{{ humanizePercentage $value }} of {{ $labels.service }}'s requests failed",
    });
    let (status, answer) = put_rule(&server, "failing_share", &ratio).await;
    assert_eq!(status, 201, "{answer}");
    // a numeric aggregate of a field sent as text: the rule fails and says why
    let text_field = json!({
        "version": 1,
        "schedule": "* * * * * *",
        "index": "logs",
        "query": "service:worker",
        "window": "1h",
        "aggregate": {"op": "avg", "field": "latency_ms"},
        "threshold": {"op": ">", "value": 1},
    });
    let (status, answer) = put_rule(&server, "text_latency", &text_field).await;
    assert_eq!(status, 201, "{answer}");

    let rules = || async {
        let (status, list) = server.get("/_lookout/rules").await;
        assert_eq!(status, 200, "{list}");
        let rules: BTreeMap<String, Value> = list["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|rule| {
                (
                    rule["name"].as_str().unwrap_or_default().to_string(),
                    rule.clone(),
                )
            })
            .collect();
        rules
    };
    wait_until("checkout's share fires and both rules ran", 20, || async {
        let rules = rules().await;
        rules
            .get("failing_share")
            .is_some_and(|rule| rule["active_alerts"] == 1)
            && rules
                .get("text_latency")
                .is_some_and(|rule| rule["health"] == "err")
    })
    .await;
    let rules = rules().await;
    let share = &rules["failing_share"];
    assert_eq!(
        share["health"], "ok",
        "no division by zero, no error: {share}"
    );
    assert_eq!(share["last_error"], Value::Null, "{share}");
    let reason = rules["text_latency"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        reason,
        "`aggregate`: field `latency_ms` of index `logs` holds text, not JSON numbers: `avg` needs numbers (send \"latency_ms\": 412, not \"412\"), or use op `cardinality`"
    );

    // only checkout alerts: cart is under its minimum, worker has no denominator
    let (status, alerts) = server.get("/api/v1/alerts").await;
    assert_eq!(status, 200, "{alerts}");
    let firing: Vec<&Value> = alerts["data"]["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|alert| alert["labels"]["alertname"] == "failing_share")
        .collect();
    assert_eq!(firing.len(), 1, "{alerts}");
    assert_eq!(firing[0]["labels"]["service"], "checkout", "{alerts}");
    wait_until("the Slack message", 10, || async {
        mock.lock().expect("mock").delivered.iter().any(|message| {
            message
                .to_string()
                .contains("25% of checkout's requests failed")
        })
    })
    .await;
    let sent = mock.lock().expect("mock").delivered.clone();
    assert!(
        sent.iter().all(|message| {
            let text = message.to_string();
            !text.contains("cart's") && !text.contains("worker's")
        }),
        "{sent:?}"
    );
    // log_ratio: checkout only, 0.25
    let now = stamp(Utc::now());
    assert_eq!(
        instant(&server, "log_ratio", "failing_share", &now).await,
        BTreeMap::from([("checkout".to_string(), 0.25)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_combinations_are_refused_with_field_and_reason() {
    let (dir, server, _mock) = start().await;
    let metric = json!({"version": 1, "promql": "up", "aggregate": {"op": "avg", "field": "x"}});
    let both = json!({"version": 1, "query": "*", "threshold": {"op": ">", "value": 1},
        "aggregate": {"op": "avg", "field": "x"}, "ratio": {"denominator": "*"}});
    let no_percentile = yearly(("aggregate", json!({"op": "percentile", "field": "x"})));
    let bad_percentile = yearly((
        "aggregate",
        json!({"op": "percentile", "field": "x", "percentile": 101}),
    ));
    let unknown_op = yearly(("aggregate", json!({"op": "median", "field": "x"})));
    let bad_denominator = yearly(("ratio", json!({"denominator": "status:(500"})));
    for (body, expected) in [
        (&metric, "`aggregate`: belongs to log rules (with `query`)"),
        (
            &both,
            "`ratio`: a rule's value is either an `aggregate` or a `ratio`, not both",
        ),
        (
            &no_percentile,
            "`aggregate`: op `percentile` needs `percentile`, e.g. \"percentile\": 95",
        ),
        (
            &bad_percentile,
            "`aggregate`: `percentile` must be above 0 and at most 100 (e.g. 95 or 99.9), not 101",
        ),
        (
            &unknown_op,
            "`aggregate`: unknown variant `median`, expected one of `avg`, `min`, `max`, `sum`, `percentile`, `cardinality`",
        ),
        (&bad_denominator, "`ratio`: `denominator`: "),
    ] {
        let (status, answer) = put_rule(&server, "refused", body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["type"], "invalid_rule", "{answer}");
        let reason = answer["error"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(expected), "{expected:?} in {reason}");
    }
    assert!(!dir.path().join("queries/refused.json").exists());
}
