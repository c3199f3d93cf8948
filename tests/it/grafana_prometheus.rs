//! Lookout as Grafana's Prometheus and Alertmanager data sources, through the real
//! binary: each request is the one Grafana's source sends (`pkg/promlib/client/client.go`:
//! form `POST` for queries and resource calls, `GET` fallback; `language_provider.ts`:
//! label, label-value, series and metadata lookups with `start`/`end`/`match[]`/`limit`;
//! `$__rate_interval` written as Go's `Duration.String()`, e.g. `1m0s`), and each status
//! answer has the fields of a real Prometheus 2.42 / Alertmanager 0.25 answer
//! (`tests/golden/`). `promtool` and `amtool` run against it too.

use serde_json::Value;

use crate::support::scrape::target;
use crate::support::{Server, urlencode, wait_until};

fn golden(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file")).expect("json")
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// A form `POST`, as Grafana's backend sends it.
async fn post_form(server: &Server, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body = serde_urlencoded::to_string(form).expect("form");
    let response = server
        .client
        .post(server.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST");
    crate::support::decode(response).await
}

// the target runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafanas_prometheus_requests_and_prometheus_status_pages_are_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exporter = target(
        "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 10\nhttp_requests_total{code=\"500\"} 1\n",
    )
    .await;
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!("[[scrape_configs]]\njob_name = \"app\"\nscrape_interval = \"1s\"\n[scrape_configs.basic_auth]\nusername = \"scraper\"\npassword = \"hunter2-secret\"\n[[scrape_configs.static_configs]]\ntargets = [\"{exporter}\"]\n"),
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    wait_until("two scrapes", 30, || async {
        let (_, body) = server
            .get(&format!(
                "/api/v1/query?query={}",
                urlencode("count_over_time(up[1m])")
            ))
            .await;
        body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|count| count.parse::<f64>().ok())
            .is_some_and(|count| count >= 2.0)
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    let (start, end) = ((now - 600).to_string(), (now + 60).to_string());

    // a panel: query_range as client.go's QueryRange posts it, `$__rate_interval` = 1m0s
    let (status, body) = post_form(
        &server,
        "/api/v1/query_range",
        &[
            ("query", "sum by (code) (rate(http_requests_total[1m0s]))"),
            ("start", &start),
            ("end", &end),
            ("step", "15"),
            ("timeout", "30s"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix", "{body}");
    // exemplars, as QueryExemplars posts them: well formed, empty
    let (status, body) = post_form(
        &server,
        "/api/v1/query_exemplars",
        &[
            ("query", "http_requests_total"),
            ("start", &start),
            ("end", &end),
        ],
    )
    .await;
    assert_eq!(
        (status, &body),
        (200, &golden("prometheus-2.42/query_exemplars.json"))
    );
    let (status, body) = server
        .get("/api/v1/query_exemplars?query=sum(&start=1&end=2")
        .await;
    assert_eq!(
        (status, body["errorType"].as_str()),
        (400, Some("bad_data")),
        "{body}"
    );

    // the metric browser and autocompletion (language_provider.ts)
    let range = format!("start={start}&end={end}");
    let (status, names) = server
        .get(&format!("/api/v1/label/__name__/values?{range}"))
        .await;
    assert_eq!(status, 200, "{names}");
    assert!(
        names["data"]
            .as_array()
            .expect("names")
            .contains(&Value::from("http_requests_total")),
        "{names}"
    );
    let (status, codes) = server
        .get(&format!(
            "/api/v1/label/code/values?{range}&match[]={}&limit=40000",
            urlencode("http_requests_total")
        ))
        .await;
    assert_eq!(
        (status, codes["data"].clone()),
        (200, serde_json::json!(["200", "500"])),
        "{codes}"
    );
    let (status, labels) = post_form(
        &server,
        "/api/v1/labels",
        &[
            ("start", &start),
            ("end", &end),
            ("match[]", "http_requests_total"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{labels}");
    assert!(
        labels["data"]
            .as_array()
            .expect("labels")
            .contains(&Value::from("code")),
        "{labels}"
    );
    let (status, series) = post_form(
        &server,
        "/api/v1/series",
        &[
            ("start", &start),
            ("end", &end),
            ("match[]", "{__name__=\"http_requests_total\"}"),
            ("limit", "40000"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series["data"].as_array().map(Vec::len), Some(2), "{series}");
    let (status, metadata) = server.get("/api/v1/metadata").await;
    assert_eq!(status, 200);
    assert_eq!(
        metadata["data"]["http_requests_total"][0]["type"], "counter",
        "{metadata}"
    );
    // resource calls of a POST data source go out as POST first (client.go QueryResource)
    let (status, build) = post_form(&server, "/api/v1/status/buildinfo", &[]).await;
    assert_eq!(
        (status, build["data"]["application"].as_str()),
        (200, Some("lookout")),
        "{build}"
    );

    // Prometheus' status pages, each with the fields of the real answer
    for (path, name) in [
        ("/api/v1/status/config", "status_config"),
        ("/api/v1/status/runtimeinfo", "status_runtimeinfo"),
        ("/api/v1/status/tsdb", "status_tsdb"),
        ("/api/v1/alertmanagers", "alertmanagers"),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let real = golden(&format!("prometheus-2.42/{name}.json"));
        assert_eq!(keys(&body), keys(&real), "{path}");
        assert_eq!(keys(&body["data"]), keys(&real["data"]), "{path}: {body}");
    }
    let (_, config) = server.get("/api/v1/status/config").await;
    let yaml = config["data"]["yaml"].as_str().expect("yaml");
    assert!(
        yaml.contains("job_name: app") && yaml.contains("password: <secret>"),
        "{yaml}"
    );
    assert!(!yaml.contains("hunter2"), "the password leaked: {yaml}");
    let (_, tsdb) = server.get("/api/v1/status/tsdb?limit=1").await;
    let real = golden("prometheus-2.42/status_tsdb.json");
    assert_eq!(
        keys(&tsdb["data"]["headStats"]),
        keys(&real["data"]["headStats"])
    );
    assert_eq!(
        tsdb["data"]["seriesCountByLabelValuePair"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{tsdb}"
    );
    assert_eq!(
        keys(&tsdb["data"]["seriesCountByMetricName"][0]),
        keys(&real["data"]["seriesCountByMetricName"][0])
    );
    assert!(
        tsdb["data"]["headStats"]["numSeries"].as_u64() >= Some(3),
        "{tsdb}"
    );
    let (status, bad) = server.get("/api/v1/status/tsdb?limit=-1").await;
    assert_eq!(
        (status, bad["errorType"].as_str()),
        (400, Some("bad_data")),
        "{bad}"
    );
    let (status, flags) = server.get("/api/v1/status/flags").await;
    assert_eq!(status, 200);
    assert_eq!(flags["data"]["query.lookback-delta"], "5m", "{flags}");
    let (status, metadata) = server
        .get(&format!(
            "/api/v1/targets/metadata?match_target={}",
            urlencode("{job=\"app\"}")
        ))
        .await;
    assert_eq!(status, 200, "{metadata}");
    let real = golden("prometheus-2.42/targets_metadata.json");
    assert_eq!(
        keys(&metadata["data"][0]),
        keys(&real["data"][0]),
        "{metadata}"
    );
    assert_eq!(metadata["data"][0]["metric"], "http_requests_total");
    assert_eq!(metadata["data"][0]["target"]["job"], "app");
    let (status, formatted) = server
        .get(&format!(
            "/api/v1/format_query?query={}",
            urlencode("sum(rate(x[5m]))by(job)")
        ))
        .await;
    assert_eq!(status, 200, "{formatted}");
    assert_eq!(
        formatted["data"], "sum by (job) (rate(x[5m]))",
        "{formatted}"
    );

    // promtool's `query` commands go through the same API
    let output = std::process::Command::new("promtool")
        .args(["query", "labels", &server.base, "code"])
        .output()
        .expect("promtool runs (install Debian's prometheus package)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("500"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `amtool` against `server`; its stdout, after asserting it succeeded.
fn amtool(server: &Server, args: &[&str]) -> String {
    let output = std::process::Command::new("amtool")
        .arg(format!("--alertmanager.url={}", server.base))
        .args(args)
        .output()
        .expect("amtool runs (install Debian's prometheus-alertmanager package)");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "amtool {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafanas_alertmanager_calls_and_amtool_see_alerts_and_silences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queries, _mock, webhook) = crate::support::rules::seed_rule(dir.path()).await;
    let server = crate::support::rules::serve_rules(dir.path(), &queries, &webhook);
    crate::support::rules::ingest_500s(&server, 30).await;
    wait_until("the seed rule fires", 30, || async {
        let (_, alerts) = server.get("/api/v2/alerts").await;
        alerts.as_array().is_some_and(|alerts| !alerts.is_empty())
    })
    .await;

    // Grafana's alert list and groups (alertmanager.ts: filter, silenced, inhibited, active)
    let (status, alerts) = server
        .get(&format!(
            "/api/v2/alerts?filter={}&silenced=true&inhibited=true&active=true",
            urlencode("alertname=\"seed_500s\"")
        ))
        .await;
    assert_eq!(status, 200, "{alerts}");
    let real = golden("alertmanager-0.25/alerts.json");
    let alert = &alerts[0];
    assert_eq!(keys(alert), keys(&real[0]), "{alert}");
    assert_eq!(keys(&alert["status"]), keys(&real[0]["status"]));
    assert_eq!(alert["labels"]["alertname"], "seed_500s");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["status"]["state"], "active");
    let receiver = alert["receivers"][0]["name"]
        .as_str()
        .expect("a receiver")
        .to_string();
    let (_, none) = server
        .get(&format!(
            "/api/v2/alerts?filter={}",
            urlencode("alertname=\"other\"")
        ))
        .await;
    assert_eq!(none, serde_json::json!([]));
    let (status, groups) = server.get("/api/v2/alerts/groups?active=true").await;
    assert_eq!(status, 200, "{groups}");
    let real = golden("alertmanager-0.25/alerts_groups.json");
    assert_eq!(keys(&groups[0]), keys(&real[0]), "{groups}");
    assert_eq!(groups[0]["receiver"]["name"], receiver.as_str());
    let (status, receivers) = server.get("/api/v2/receivers").await;
    assert_eq!(status, 200);
    assert!(
        receivers
            .as_array()
            .expect("receivers")
            .iter()
            .any(|r| r["name"] == receiver.as_str()),
        "{receivers}"
    );
    let (status, am_status) = server.get("/api/v2/status").await;
    assert_eq!(status, 200);
    assert_eq!(
        keys(&am_status),
        keys(&golden("alertmanager-0.25/status.json"))
    );
    let (status, bad) = server.get("/api/v2/alerts?silenced=maybe").await;
    assert_eq!(status, 400, "{bad}");

    // amtool: list the alert, silence it, see it suppressed, expire the silence
    let listed = amtool(&server, &["alert", "query", "alertname=seed_500s"]);
    assert!(listed.contains("seed_500s"), "{listed}");
    let id = amtool(
        &server,
        &[
            "silence",
            "add",
            "alertname=seed_500s",
            "--comment=deploy",
            "--author=oncall",
            "--duration=1h",
        ],
    )
    .trim()
    .to_string();
    assert!(!id.is_empty());
    let silences = amtool(&server, &["silence", "query", "alertname=seed_500s"]);
    assert!(
        silences.contains(&id) && silences.contains("oncall"),
        "{silences}"
    );
    let (_, silenced) = server.get("/api/v2/alerts?silenced=true").await;
    assert_eq!(silenced[0]["status"]["state"], "suppressed", "{silenced}");
    assert_eq!(
        silenced[0]["status"]["silencedBy"][0],
        id.as_str(),
        "{silenced}"
    );
    let (_, unsilenced) = server.get("/api/v2/alerts?silenced=false").await;
    assert_eq!(unsilenced, serde_json::json!([]));
    amtool(&server, &["silence", "expire", &id]);
    let (_, silence) = server.get(&format!("/api/v2/silence/{id}")).await;
    assert_eq!(silence["status"]["state"], "expired", "{silence}");
    let active = amtool(&server, &["silence", "query"]);
    assert!(!active.contains(&id), "{active}");
}
