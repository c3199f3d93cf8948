//! A resolve message carries the last value seen while firing, labelled so (issue 19): it
//! once rendered `$value` as 0 (`[RESOLVED] checkout_latency: p95 latency of checkout is
//! 0s`). Templates tell a resolve from a firing with `$resolved` / `$status`.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::rules::serve_rules_with_config;
use crate::support::scrape::{scrape_config, scripted_target};
use crate::support::slack::{MockSlack, delivered, delivered_texts, start_mock};
use crate::support::{bulk_body, wait_until};

/// The text of every section field of a delivered Slack payload, joined.
fn fields(payload: &Value) -> String {
    payload["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|block| block["fields"].as_array().cloned().unwrap_or_default())
        .map(|field| field["text"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

// the target and the mock Slack run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_messages_carry_the_last_value_while_firing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gauge = Arc::new(Mutex::new(
        "# TYPE checkout_p95_seconds gauge\ncheckout_p95_seconds{service=\"checkout\"} 1.5\n"
            .to_string(),
    ));
    let target = scripted_target(Arc::clone(&gauge)).await;
    let config = scrape_config(dir.path(), &target);
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let rules = [
        (
            "checkout_latency",
            json!({"version": 1, "schedule": "* * * * * *",
                   "promql": "checkout_p95_seconds > 1",
                   "summary": "p95 latency of {{ $labels.service }} {{ if $resolved }}was{{ else }}is{{ end }} {{ $value | humanizeDuration }} ({{ $status }})"}),
        ),
        (
            "errors",
            json!({"version": 1, "schedule": "* * * * * *", "query": "level:ERROR",
                   "window": "3s", "threshold": {"op": ">", "value": 3}}),
        ),
    ];
    for (name, rule) in rules {
        std::fs::write(queries.join(format!("{name}.json")), rule.to_string()).expect("rule");
    }
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules_with_config(dir.path(), &queries, &config, &webhook);

    // the metric rule: fires at 1.5 s, rises to 2.5 s while firing, then recovers
    wait_until("the latency firing", 30, delivered(&mock, 1)).await;
    assert!(
        delivered_texts(&mock)[0]
            .contains("[FIRING] checkout_latency: p95 latency of checkout is 1.5s (firing)"),
        "{:?}",
        delivered_texts(&mock)
    );
    *gauge.lock().expect("gauge") = "checkout_p95_seconds{service=\"checkout\"} 2.5\n".to_string();
    wait_until("the firing alert at 2.5", 30, || async {
        let (_, body) = server.get("/api/v1/alerts").await;
        body["data"]["alerts"][0]["value"] == "2.5"
    })
    .await;
    *gauge.lock().expect("gauge") = "checkout_p95_seconds{service=\"checkout\"} 0.2\n".to_string();
    wait_until("the latency resolve", 30, delivered(&mock, 2)).await;
    let resolve = mock.lock().expect("mock").delivered[1].clone();
    assert_eq!(
        resolve["text"], "[RESOLVED] checkout_latency: p95 latency of checkout was 2.5s (resolved)",
        "{resolve}"
    );
    assert!(
        fields(&resolve).contains("*Value (last while firing)*\n2.5"),
        "{resolve}"
    );

    // the log rule, with the default summary: 5 ERROR lines fire it, the window passes
    let now = chrono::Utc::now().to_rfc3339();
    let lines: Vec<Value> = (0..5)
        .map(|number| json!({"@timestamp": now, "level": "ERROR", "n": number}))
        .collect();
    let (status, body) = server
        .post_ndjson("/_bulk", bulk_body("logs", &lines))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    wait_until("the log rule's firing and resolve", 30, delivered(&mock, 4)).await;
    let texts = delivered_texts(&mock);
    assert_eq!(
        texts[2..],
        [
            "[FIRING] errors: 5 matches in the last 3s",
            "[RESOLVED] errors: 5 matches in the last 3s (last value while firing)"
        ],
        "{texts:?}"
    );
    let resolve = mock.lock().expect("mock").delivered[3].clone();
    assert!(
        fields(&resolve).contains("*Count (last while firing)*\n5"),
        "{resolve}"
    );
}
