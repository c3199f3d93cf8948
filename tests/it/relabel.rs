//! Scrape relabelling through the real binary, on the engine `alert_relabel_configs` and
//! `write_relabel_configs` use: a `prometheus.yml` whose steps are written as Prometheus
//! writes them (every default spelled out, actions in any case) relabels targets and
//! series, `/api/v1/status/config` shows the steps as Prometheus marshals them, and a bad
//! step stops `lookout check` with its job, list, step and field.

use crate::support::scrape::target;
use crate::support::{Server, urlencode, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_relabel_steps_written_by_prometheus_relabel_targets_and_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let address = target("requests_total{code=\"200\"} 7\ngo_goroutines 12\n").await;
    let prometheus_yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &prometheus_yml,
        format!(
            r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["{address}"]
        labels:
          replica: a
          team: Checkout
    relabel_configs:
      - separator: ;
        regex: replica
        replacement: $1
        action: LabelDrop
      - source_labels: [team]
        separator: ;
        regex: (.*)
        target_label: team
        replacement: $1
        action: lowercase
    metric_relabel_configs:
      - source_labels: [__name__]
        separator: ;
        regex: go_.*
        replacement: $1
        action: drop
"#
        ),
    )
    .expect("prometheus.yml");
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!("prometheus_config = \"{}\"\n", prometheus_yml.display()),
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    let query = |promql: &'static str| {
        let server = &server;
        async move {
            let (_, body) = server
                .get(&format!("/api/v1/query?query={}", urlencode(promql)))
                .await;
            body["data"]["result"].clone()
        }
    };
    wait_until("the target is scraped", 20, || async {
        query("requests_total")
            .await
            .as_array()
            .is_some_and(|result| result.len() == 1)
    })
    .await;
    let requests = query("requests_total").await;
    let metric = &requests[0]["metric"];
    assert_eq!(metric["team"], "checkout", "lowercased: {requests}");
    assert!(metric.get("replica").is_none(), "dropped: {requests}");
    assert_eq!(metric["instance"], address.as_str(), "{requests}");
    // the same scrape stored `up` and `requests_total` but not the dropped series
    assert_eq!(query("go_goroutines").await, serde_json::json!([]));
    assert_eq!(query("up").await[0]["value"][1], "1");

    let (_, targets) = server.get("/api/v1/targets").await;
    let active = &targets["data"]["activeTargets"][0];
    assert_eq!(active["labels"]["team"], "checkout", "{targets}");
    assert_eq!(active["discoveredLabels"]["replica"], "a", "{targets}");

    // shown as Prometheus marshals the steps: defaults spelled out, actions lowercase
    let (_, status) = server.get("/api/v1/status/config").await;
    let yaml = status["data"]["yaml"].as_str().expect("yaml");
    assert!(
        yaml.contains("action: labeldrop") && yaml.contains("replacement: $1"),
        "{yaml}"
    );
    server.terminate();
}

#[test]
fn a_bad_scrape_relabel_step_is_refused_with_its_job_step_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        r#"[[scrape_configs]]
job_name = "node"
[[scrape_configs.static_configs]]
targets = ["127.0.0.1:9100"]
[[scrape_configs.relabel_configs]]
source_labels = ["__address__"]
target_label = "host"
[[scrape_configs.relabel_configs]]
source_labels = ["__address__"]
regex = "(unclosed"
action = "keep"
[[scrape_configs.metric_relabel_configs]]
source_labels = ["port"]
target_label = "expected"
separator = ","
action = "keepequal"
"#,
    )
    .expect("config");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["check", &config.display().to_string()])
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "{stderr}");
    let regex_line = stderr
        .lines()
        .find(|line| line.contains("`relabel_configs`[1]: `regex`:"))
        .unwrap_or_else(|| panic!("no regex error in {stderr}"));
    assert!(
        regex_line.contains("scrape_configs `node`")
            && regex_line.contains("not a valid RE2 regular expression")
            && regex_line.contains("unclosed group"),
        "on one line, with the job and the fix: {stderr}"
    );
    assert!(
        stderr.contains(
            "scrape_configs `node`: `metric_relabel_configs`[0]: the keepequal action takes only `source_labels` and `target_label`"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("`relabel_configs`[0]"),
        "the first step is valid: {stderr}"
    );
}
