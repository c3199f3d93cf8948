//! contrib/grafana: the provisioning files name the three data sources on Lookout's
//! APIs, and every panel query of every shipped dashboard returns data from a running
//! `lookout demo` (which scrapes its shop and itself), sent as Grafana's Prometheus data
//! source sends it: template variables resolved through `/api/v1/label/NAME/values`,
//! `$__rate_interval` interpolated as Grafana's backend does (`max(interval + scrape,
//! 4 × scrape)` as Go's `Duration.String()`), a form `POST` to `/api/v1/query_range`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

fn contrib() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/grafana")
}

fn dashboards() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(contrib().join("dashboards")).expect("dashboards") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("dashboard");
        let dashboard: Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        found.push((path.display().to_string(), dashboard));
    }
    assert!(
        found.len() >= 2,
        "the health and logs-and-metrics dashboards"
    );
    found
}

#[test]
fn the_provisioning_file_names_the_three_data_sources_the_dashboards_use() {
    let text = std::fs::read_to_string(contrib().join("provisioning/datasources/lookout.yaml"))
        .expect("provisioning file");
    let provisioning: serde_json::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    let sources = provisioning["datasources"].as_array().expect("datasources");
    let types: Vec<&str> = sources
        .iter()
        .filter_map(|source| source["type"].as_str())
        .collect();
    assert_eq!(types, ["elasticsearch", "prometheus", "alertmanager"]);
    for source in sources {
        assert_eq!(source["url"], "${LOOKOUT_URL}", "{source}");
    }
    assert_eq!(sources[2]["jsonData"]["implementation"], "prometheus");
    let uids: Vec<&str> = sources
        .iter()
        .filter_map(|source| source["uid"].as_str())
        .collect();
    for (path, dashboard) in dashboards() {
        for panel in dashboard["panels"].as_array().expect("panels") {
            let uid = panel["datasource"]["uid"].as_str().unwrap_or_default();
            assert!(
                uids.contains(&uid),
                "{path}: panel {} uses {uid:?}",
                panel["title"]
            );
        }
    }
}

/// Grafana's `$__rate_interval` for a 15 s step and a 15 s scrape interval (the data
/// source's `timeInterval`): `max(15s + 15s, 4 × 15s)` written as Go writes durations.
const RATE_INTERVAL: &str = "1m0s";

async fn query_range(client: &reqwest::Client, base: &str, expr: &str) -> (u16, Value) {
    let end = chrono::Utc::now().timestamp();
    let form = [
        ("query", expr.to_string()),
        ("start", (end - 600).to_string()),
        ("end", end.to_string()),
        ("step", "15".to_string()),
    ];
    let response = client
        .post(format!("{base}/api/v1/query_range"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).expect("form"))
        .send()
        .await
        .expect("query_range");
    crate::support::decode(response).await
}

/// Each variable's value when a dashboard opens: `label_values(METRIC, LABEL)` resolved
/// as Grafana does, then All (`allValue`) where offered, else the first value.
async fn variables(
    client: &reqwest::Client,
    base: &str,
    dashboard: &Value,
) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        let name = variable["name"].as_str().expect("name").to_string();
        if variable["type"] == "constant" {
            values.insert(
                name,
                variable["query"].as_str().unwrap_or_default().to_string(),
            );
            continue;
        }
        let definition = variable["definition"].as_str().expect("definition");
        let inner = definition
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
            .expect("label_values(metric, label)");
        let (metric, label) = inner.split_once(',').expect("metric, label");
        let url = format!(
            "{base}/api/v1/label/{}/values?match[]={}",
            label.trim(),
            crate::support::urlencode(metric.trim())
        );
        let response = client.get(url).send().await.expect("label values");
        let (status, body) = crate::support::decode(response).await;
        assert_eq!(status, 200, "{definition}: {body}");
        // Grafana's first option of an `includeAll` variable is All (its `allValue`)
        if let Some(first) = body["data"][0].as_str() {
            let value = match variable["includeAll"].as_bool() {
                Some(true) => variable["allValue"].as_str().unwrap_or(first),
                _ => first,
            };
            values.insert(name, value.to_string());
        }
    }
    values
}

// the demo runs as a child process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_query_returns_data_from_the_demo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let _demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args([
            "demo",
            "--speed",
            "20",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("demo"))
        .env("LOOKOUT_LOG", "warn")
        .env_remove("SLACK_WEBHOOK_URL")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn demo");
    lookout::install_tls_provider();
    let client = reqwest::Client::new();
    crate::support::wait_until("the demo's server is ready", 60, || async {
        client
            .get(format!("{base}/-/ready"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    })
    .await;

    let mut queries: Vec<(String, String)> = Vec::new();
    let mut links = Vec::new();
    let all = dashboards();
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    // every variable resolves once the demo has scraped and its rules have run
    let mut resolved: Vec<(String, Value, BTreeMap<String, String>)> = Vec::new();
    for (path, dashboard) in &all {
        loop {
            let values = variables(&client, &base, dashboard).await;
            let wanted = dashboard["templating"]["list"]
                .as_array()
                .map_or(0, Vec::len);
            if values.len() == wanted {
                resolved.push((path.clone(), dashboard.clone(), values));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path}: variables unresolved: {values:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for (path, dashboard, values) in &resolved {
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let mut expr = target["expr"]
                    .as_str()
                    .expect("expr")
                    .replace("$__rate_interval", RATE_INTERVAL);
                for (name, value) in values {
                    expr = expr.replace(&format!("${name}"), value);
                }
                assert!(!expr.contains('$'), "{path}: uninterpolated {expr}");
                queries.push((format!("{path}: {}", panel["title"]), expr));
            }
            for link in panel["fieldConfig"]["defaults"]["links"]
                .as_array()
                .into_iter()
                .flatten()
            {
                // Grafana's `${__from:date:iso}`: the panel's time range in RFC 3339
                let now = chrono::Utc::now();
                let url = link["url"]
                    .as_str()
                    .expect("url")
                    .replace("${lookout_url}", &base)
                    .replace(
                        "${__from:date:iso}",
                        &(now - chrono::Duration::hours(1))
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    )
                    .replace(
                        "${__to:date:iso}",
                        &now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    );
                links.push(url);
            }
        }
        for link in dashboard["links"].as_array().into_iter().flatten() {
            links.push(
                link["url"]
                    .as_str()
                    .expect("url")
                    .replace("${lookout_url}", &base),
            );
        }
    }
    assert!(queries.len() >= 12, "{queries:?}");
    // the demo's rules and scrapes fill every series within the deadline
    let mut empty: Vec<String> = queries.iter().map(|(panel, _)| panel.clone()).collect();
    while !empty.is_empty() {
        empty.clear();
        for (panel, expr) in &queries {
            let (status, body) = query_range(&client, &base, expr).await;
            assert_eq!(status, 200, "{panel}: `{expr}` failed: {body}");
            let has_data = body["data"]["result"].as_array().is_some_and(|series| {
                series
                    .iter()
                    .any(|one| one["values"].as_array().is_some_and(|v| !v.is_empty()))
            });
            if !has_data {
                empty.push(format!("{panel}: `{expr}`"));
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "panels without data: {empty:#?}"
        );
        if !empty.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    // links lead to the UI's search
    assert!(!links.is_empty());
    for link in links {
        assert!(
            link.starts_with(&format!("{base}/ui/search?")) && !link.contains('$'),
            "{link}"
        );
        let page = client.get(&link).send().await.expect("link");
        assert_eq!(page.status(), 200, "{link}");
    }
}
