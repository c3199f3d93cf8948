//! Beyond one box, against a real Prometheus 2.42 (issue 17): recording rules over a
//! scraped target and over `log_matches`, remote write into Prometheus kept equal sample
//! for sample through a receiver outage and a `kill -9` of Lookout, Prometheus scraping
//! Lookout's `/federate`, and rules evaluated on a Prometheus datasource.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::prometheus::{Prometheus, free_port, query_api};
use crate::support::rules::ingest_500s;
use crate::support::scrape::scripted_target;
use crate::support::{Server, wait_until};

/// The scraped target: two counters that grow every scrape, a constant, and a flag.
const TARGET: &str = "# TYPE app_requests_total counter\n\
app_requests_total{path=\"/a\"} {n}\n\
app_requests_total{path=\"/b\"} {n}\n\
# TYPE app_temperature gauge\n\
app_temperature 21.5\n\
# TYPE app_flag gauge\n\
app_flag FLAG\n";

fn write_rule(queries: &Path, name: &str, rule: Value) {
    std::fs::write(queries.join(format!("{name}.json")), rule.to_string()).expect("rule");
}

/// The recording rules: a scraped gauge doubled, and a saved log query's counts.
fn recording_rules(queries: &Path) {
    std::fs::create_dir_all(queries).expect("mkdir");
    write_rule(
        queries,
        "temperature_doubled",
        json!({"version": 1, "record": "app:temperature:double", "promql": "app_temperature * 2",
               "schedule": "* * * * * *", "labels": {"recorded": "yes"}}),
    );
    write_rule(
        queries,
        "errors",
        json!({"version": 1, "query": "status:500", "window": "1h", "schedule": "* * * * * *",
               "threshold": {"op": ">", "value": 1_000_000}}),
    );
    write_rule(
        queries,
        "errors_recorded",
        json!({"version": 1, "record": "errors:matches", "promql": "log_matches{query=\"errors\"}",
               "schedule": "* * * * * *"}),
    );
}

fn serve(dir: &Path, config: &str, queries: &Path) -> Server {
    let path = dir.join("lookout.toml");
    std::fs::write(&path, config).expect("config");
    Server::start_with_env(
        &dir.join("data"),
        "127.0.0.1:0",
        &[
            "--config",
            &path.display().to_string(),
            "--queries",
            &queries.display().to_string(),
        ],
        &[],
    )
}

/// Lookout's answer to an instant query at `time`.
async fn lookout_query(server: &Server, query: &str, time: f64) -> Vec<Value> {
    query_api(&server.client, &server.url("/api/v1/query"), query, time).await
}

/// A vector result by its labels (`cluster`, the external label, left out), value as text.
fn by_labels(result: &[Value]) -> BTreeMap<String, String> {
    result
        .iter()
        .map(|series| {
            let mut metric = series["metric"].as_object().cloned().unwrap_or_default();
            metric.remove("cluster");
            (
                Value::Object(metric).to_string(),
                series["value"][1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn now_seconds() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// `lookout_remote_storage_NAME{remote="prom"}` on Lookout's `/metrics`.
async fn remote_figure(server: &Server, name: &str) -> f64 {
    let text = server.metrics().await;
    let prefix = format!("lookout_remote_storage_{name}{{remote=\"prom\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or(f64::NAN)
}

async fn single_value(server: &Server, query: &str) -> Option<f64> {
    let result = lookout_query(server, query, now_seconds()).await;
    result.first()?["value"][1].as_str()?.parse().ok()
}

/// How long the receiver is down (the issue's two minutes).
const OUTAGE: Duration = Duration::from_secs(120);
const MAX_SAMPLES_PER_SEND: usize = 100;

/// Lasts about three minutes: the run before the outage, the two-minute outage (Lookout
/// killed -9 and restarted after the first), and Prometheus catching up.
#[tokio::test(flavor = "multi_thread")]
async fn remote_write_keeps_prometheus_equal_sample_for_sample_through_an_outage_and_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut receiver = Prometheus::start(
        &dir.path().join("prometheus"),
        port,
        "global:\n  scrape_interval: 1m\n",
    )
    .await;
    let body = Arc::new(Mutex::new(TARGET.replace("FLAG", "0")));
    let target = scripted_target(body).await;
    let queries = dir.path().join("queries");
    recording_rules(&queries);
    let config = format!(
        r#"
[global]
external_labels = {{ cluster = "test" }}

[[scrape_configs]]
job_name = "app"
scrape_interval = "200ms"
[[scrape_configs.static_configs]]
targets = ["{target}"]

[[remote_write]]
url = "http://127.0.0.1:{port}/api/v1/write"
name = "prom"
[remote_write.queue_config]
batch_send_deadline = "200ms"
min_backoff = "50ms"
max_backoff = "500ms"
max_shards = 4
max_samples_per_send = {MAX_SAMPLES_PER_SEND}
"#
    );
    let server = serve(dir.path(), &config, &queries);
    ingest_500s(&server, 7).await;

    // recording rules, queried back through PromQL and shown as Prometheus shows them
    wait_until("the recorded series", 60, || async {
        single_value(
            &server,
            "app:temperature:double{job=\"app\", recorded=\"yes\"}",
        )
        .await
            == Some(43.0)
            && single_value(&server, "errors:matches{query=\"errors\"}").await == Some(7.0)
    })
    .await;
    let (_, rules) = server.get("/api/v1/rules").await;
    let recording: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules"))
        .filter(|rule| rule["type"] == "recording")
        .collect();
    assert_eq!(recording.len(), 2, "{rules}");
    assert!(
        recording
            .iter()
            .any(|rule| rule["name"] == "app:temperature:double"
                && rule["labels"] == json!({"recorded": "yes"})
                && rule["health"] == "ok"),
        "{rules}"
    );

    let lookout_count = |server: &Server| {
        let server_url = server.url("/api/v1/query");
        let client = server.client.clone();
        async move {
            let result = query_api(
                &client,
                &server_url,
                "count_over_time(app_requests_total{path=\"/a\"}[10m])",
                now_seconds(),
            )
            .await;
            result
                .first()
                .and_then(|series| series["value"][1].as_str()?.parse::<u64>().ok())
                .unwrap_or(0)
        }
    };
    wait_until("samples reach prometheus", 60, || async {
        !receiver
            .query("app_requests_total{path=\"/a\"}", now_seconds())
            .await
            .is_empty()
    })
    .await;

    // the receiver goes down for OUTAGE; halfway through, Lookout is killed -9 (what it
    // had read but not had answered is only in its log) and restarted
    receiver.stop();
    let stopped = Instant::now();
    let before = lookout_count(&server).await;
    wait_until(
        "half the outage, scrapes going on",
        OUTAGE.as_secs(),
        || async { stopped.elapsed() >= OUTAGE / 2 && lookout_count(&server).await >= before + 40 },
    )
    .await;
    // at most one batch per shard can have been answered after the position was saved
    let overlap_bound = remote_figure(&server, "shards").await * MAX_SAMPLES_PER_SEND as f64;
    server.kill();
    let server = serve(dir.path(), &config, &queries);
    let before = lookout_count(&server).await;
    wait_until(
        "the rest of the outage, scrapes going on",
        OUTAGE.as_secs(),
        || async { stopped.elapsed() >= OUTAGE && lookout_count(&server).await >= before + 40 },
    )
    .await;
    receiver.restart().await;

    // everything up to a moment both sides have passed is the same, sample for sample
    let end = now_seconds();
    let queries_compared = [
        "count_over_time(app_requests_total[10m])",
        "sum_over_time(app_requests_total[10m])",
        "count_over_time(app_temperature[10m])",
        "count_over_time({__name__=\"app:temperature:double\"}[10m])",
        "count_over_time({__name__=\"errors:matches\"}[10m])",
        "count_over_time(up[10m])",
    ];
    let differences = Arc::new(Mutex::new(Vec::new()));
    wait_until("prometheus catches up", 90, || async {
        let mut found = Vec::new();
        for query in queries_compared {
            let (ours, theirs) = (
                by_labels(&lookout_query(&server, query, end).await),
                by_labels(&receiver.query(query, end).await),
            );
            if ours.is_empty() || ours != theirs {
                found.push(format!("{query}: lookout {ours:?} prometheus {theirs:?}"));
            }
        }
        let equal = found.is_empty();
        *differences.lock().expect("differences") = found;
        equal
    })
    .await;
    let samples: u64 = by_labels(&lookout_query(&server, queries_compared[0], end).await)
        .values()
        .map(|count| count.parse::<u64>().expect("a count"))
        .sum();
    assert!(samples >= 160, "{samples} samples of app_requests_total");
    // what the restarted Lookout resent that Prometheus already had: refused (400, out of
    // order or duplicate) and, split down to single samples, counted as failed
    let refused = remote_figure(&server, "failed_samples_total").await;
    let refused_requests = receiver.write_requests_refused().await;
    let out_of_order = receiver
        .log()
        .matches("Out of order sample from remote write")
        .count();
    eprintln!(
        "remote write through a {} s outage and a kill -9: {samples} samples of app_requests_total \
         equal on both sides; resent samples prometheus refused as out-of-order/duplicate: \
         {refused} (in {refused_requests} refused requests, {out_of_order} out-of-order lines \
         in its log; resend overlap at most {overlap_bound})",
        OUTAGE.as_secs()
    );
    assert!(
        refused <= overlap_bound,
        "{refused} samples refused, beyond the resend overlap ({overlap_bound})"
    );
    assert_eq!(
        refused > 0.0,
        refused_requests > 0.0,
        "lookout's refused samples are prometheus' refusals"
    );
    assert_eq!(
        remote_figure(&server, "wal_segments_lost_total").await,
        0.0,
        "the outage was shorter than the log's span"
    );
    assert!(remote_figure(&server, "samples_total").await > 0.0);
    assert!(remote_figure(&server, "retried_samples_total").await > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_federating_lookout_sees_the_same_values_and_a_datasource_rule_fires_and_resolves()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let closed = free_port();
    let body = Arc::new(Mutex::new(TARGET.replace("FLAG", "0")));
    let target = scripted_target(Arc::clone(&body)).await;
    let queries = dir.path().join("queries");
    recording_rules(&queries);
    write_rule(
        &queries,
        "flag_up",
        json!({"version": 1, "datasource": "central", "promql": "app_flag{job=\"app\"} > 0",
               "schedule": "* * * * * *", "summary": "the flag is up"}),
    );
    write_rule(
        &queries,
        "remote_down",
        json!({"version": 1, "datasource": "down", "promql": "up", "schedule": "* * * * * *"}),
    );
    let config = format!(
        r#"
[global]
external_labels = {{ cluster = "fed" }}

[[scrape_configs]]
job_name = "app"
scrape_interval = "200ms"
[[scrape_configs.static_configs]]
targets = ["{target}"]

[datasources.central]
type = "prometheus"
url = "http://127.0.0.1:{port}"
timeout = "5s"

[datasources.down]
type = "prometheus"
url = "http://127.0.0.1:{closed}"
timeout = "2s"
"#
    );
    let server = serve(dir.path(), &config, &queries);
    ingest_500s(&server, 3).await;
    let federating = Prometheus::start(
        &dir.path().join("prometheus"),
        port,
        &format!(
            r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: federate
    honor_labels: true
    metrics_path: /federate
    params:
      'match[]': ['{{job="app"}}', '{{__name__=~"errors:.*"}}']
    static_configs:
      - targets: ['{}']
"#,
            server.address()
        ),
    )
    .await;

    // every sample Prometheus federated is one of Lookout's, labels and all
    wait_until("federated samples", 60, || async {
        federating
            .query(
                "count_over_time(app_requests_total{path=\"/a\"}[10m])",
                now_seconds(),
            )
            .await
            .first()
            .and_then(|series| series["value"][1].as_str()?.parse::<u64>().ok())
            .is_some_and(|count| count >= 5)
    })
    .await;
    let at = now_seconds();
    for metric in ["app_requests_total", "app_temperature", "errors:matches"] {
        let query = format!("{{__name__=\"{metric}\"}}[10m]");
        let theirs = federating.query(&query, at).await;
        let ours = lookout_query(&server, &query, at).await;
        assert!(!theirs.is_empty(), "{metric} federated");
        for series in &theirs {
            assert_eq!(
                series["metric"]["cluster"], "fed",
                "external label: {series}"
            );
            let mut labels = series["metric"].as_object().cloned().expect("labels");
            labels.remove("cluster");
            // a series without `job` (a recorded one) gets the federating job's, as
            // with Prometheus' own /federate
            if labels.get("job") == Some(&json!("federate")) {
                labels.remove("job");
            }
            let own = ours
                .iter()
                .find(|candidate| candidate["metric"] == Value::Object(labels.clone()))
                .unwrap_or_else(|| panic!("{metric}: {labels:?} not in lookout: {ours:?}"));
            let own_samples = own["values"].as_array().expect("samples");
            for sample in series["values"].as_array().expect("samples") {
                assert!(
                    own_samples.contains(sample),
                    "{metric}: federated sample {sample} is not lookout's"
                );
            }
        }
    }

    // the UI's metrics page charts the datasource through Lookout: the relayed range
    // query is Prometheus' own answer, and the list names no URL
    let (status, list) = server.get("/_lookout/datasources").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list,
        json!({"datasources": [{"name": "central", "type": "prometheus"},
                               {"name": "down", "type": "prometheus"}]})
    );
    let range = format!(
        "query=sum%20by%20(path)(app_requests_total)&start={}&end={at}&step=2",
        at - 60.0
    );
    let (status, relayed) = server
        .get(&format!(
            "/_lookout/datasources/central/api/v1/query_range?{range}"
        ))
        .await;
    assert_eq!(status, 200, "{relayed}");
    let own: Value = reqwest::get(federating.url(&format!("/api/v1/query_range?{range}")))
        .await
        .expect("prometheus answers")
        .json()
        .await
        .expect("json");
    assert_eq!(relayed, own, "the relayed answer is Prometheus' own");
    assert!(
        !relayed["data"]["result"]
            .as_array()
            .expect("result")
            .is_empty(),
        "{relayed}"
    );
    let (status, names) = server
        .get("/_lookout/datasources/central/api/v1/label/__name__/values")
        .await;
    assert_eq!(status, 200, "{names}");
    assert!(
        names["data"]
            .as_array()
            .expect("names")
            .contains(&json!("app_requests_total")),
        "{names}"
    );
    // the remote's own errors come back as it gave them; Lookout's say what to do
    let (status, refused) = server
        .get("/_lookout/datasources/central/api/v1/query?query=sum(")
        .await;
    assert_eq!((status, &refused["errorType"]), (400, &json!("bad_data")));
    let (status, unknown) = server
        .get("/_lookout/datasources/nowhere/api/v1/query?query=up")
        .await;
    assert_eq!(status, 404, "{unknown}");
    assert!(
        unknown["error"]
            .as_str()
            .is_some_and(|error| error.contains("GET /_lookout/datasources")),
        "{unknown}"
    );
    let (status, down) = server
        .get("/_lookout/datasources/down/api/v1/query?query=up")
        .await;
    assert_eq!((status, &down["errorType"]), (503, &json!("unavailable")));
    let (status, odd) = server
        .get("/_lookout/datasources/central/api/v1/query?query=up&dedup=false")
        .await;
    assert_eq!((status, &odd["errorType"]), (400, &json!("bad_data")));

    // a rule evaluated on the datasource fires and resolves like a local one
    *body.lock().expect("body") = TARGET.replace("FLAG", "1");
    wait_until("the datasource rule fires", 60, || async {
        let (_, alerts) = server.get("/api/v1/alerts").await;
        alerts["data"]["alerts"].as_array().is_some_and(|alerts| {
            alerts.iter().any(|alert| {
                alert["labels"]["alertname"] == "flag_up" && alert["state"] == "firing"
            })
        })
    })
    .await;
    *body.lock().expect("body") = TARGET.replace("FLAG", "0");
    wait_until("the datasource rule resolves", 60, || async {
        crate::support::rules::history(&server, "flag_up")
            .await
            .iter()
            .any(|event| event["type"] == "transition" && event["to"] == "resolved")
    })
    .await;

    // a datasource that is down is the rule's last error
    wait_until("the unreachable datasource is an error", 30, || async {
        let (_, rules) = server.get("/api/v1/rules").await;
        rules["data"]["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|group| group["rules"].as_array().expect("rules"))
            .any(|rule| {
                rule["name"] == "remote_down"
                    && rule["health"] == "err"
                    && rule["lastError"]
                        .as_str()
                        .is_some_and(|error| error.contains("datasource `down`: cannot reach"))
            })
    })
    .await;
}
