//! Scraping through the real binary: `lookout serve` with `[[scrape_configs]]` scrapes
//! targets on loopback and reports their health at `/api/v1/targets` in the shape of a
//! real Prometheus response; a bad exposition makes its target `down` with the line and
//! column of the error.

use serde_json::Value;

use crate::support::scrape::target;
use crate::support::{Server, listen, urlencode, wait_until};

// the targets run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_scraped_and_their_health_is_served_in_prometheus_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = target("# TYPE requests_total counter\nrequests_total{code=\"200\"} 7\n").await;
    let bad = target("ok 1\nbroken{a=\"b\" 2\n").await;
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "[[scrape_configs]]\njob_name = \"app\"\nscrape_interval = \"1s\"\n[[scrape_configs.static_configs]]\ntargets = [\"{good}\", \"{bad}\"]\nlabels = {{ env = \"test\" }}\n"
        ),
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    let scraped = || async {
        let (_, body) = server.get("/api/v1/targets").await;
        body["data"]["activeTargets"]
            .as_array()
            .is_some_and(|targets| {
                targets.len() == 2 && targets.iter().all(|target| target["health"] != "unknown")
            })
    };
    wait_until("both targets scraped", 15, scraped).await;
    let (status, body) = server.get("/api/v1/targets").await;
    assert_eq!(status, 200);
    let targets = body["data"]["activeTargets"].as_array().expect("targets");
    let find = |address: &str| {
        targets
            .iter()
            .find(|target| target["labels"]["instance"] == address)
            .unwrap_or_else(|| panic!("{address} missing from {body}"))
    };
    let up = find(&good);
    assert_eq!(up["health"], "up", "{up}");
    assert_eq!(up["labels"]["job"], "app");
    assert_eq!(up["labels"]["env"], "test");
    assert_eq!(up["discoveredLabels"]["__scrape_interval__"], "1s");
    assert_eq!(up["scrapeUrl"], format!("http://{good}/metrics"));
    let down = find(&bad);
    assert_eq!(down["health"], "down", "{down}");
    let error = down["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("line 2, column 14"), "{error}");

    // the same fields as a real Prometheus 2.42 answer
    let real: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/testdata/prometheus-api/targets.json"),
        )
        .expect("testdata"),
    )
    .expect("json");
    let keys = |value: &Value| {
        let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(up), keys(&real["data"]["activeTargets"][0]));
    assert_eq!(keys(&body["data"]), keys(&real["data"]));
    // scrapes are stored: the metrics write-ahead log grows
    let wal = server.data_dir.join("tsdb/wal");
    wait_until("samples logged", 10, || async {
        std::fs::metadata(&wal).is_ok_and(|meta| meta.len() > 100)
    })
    .await;
}

/// The structure of a JSON value: object keys (label objects excepted), element
/// shapes, value types — what a client parsing Prometheus' answers depends on.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let inner = if key == "metric" {
                        Value::String("labels".into())
                    } else {
                        shape(value)
                    };
                    (key.clone(), inner)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.first().map(shape).into_iter().collect()),
        Value::String(_) => Value::String("string".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Null => Value::Null,
    }
}

fn real_answer(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../shared/testdata/prometheus-api/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("testdata")).expect("json")
}

// the target runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_api_answers_in_prometheus_shapes_including_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exporter = target(
        "# HELP http_requests_total Requests served, by \\\\ code.\n# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 10\nhttp_requests_total{code=\"500\"} 1\n",
    )
    .await;
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!("[[scrape_configs]]\njob_name = \"node\"\nscrape_interval = \"1s\"\n[[scrape_configs.static_configs]]\ntargets = [\"{exporter}\"]\n"),
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    let get = |query: String| {
        let server = &server;
        async move { server.get(&query).await }
    };
    wait_until("three scrapes", 20, || async {
        let (_, body) = get(format!(
            "/api/v1/query?query={}",
            urlencode("count_over_time(up[1m])")
        ))
        .await;
        body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|count| count.parse::<f64>().ok())
            .is_some_and(|count| count >= 3.0)
    })
    .await;
    let now = chrono::Utc::now().timestamp();

    // success shapes, each against the real Prometheus answer to the same kind of query
    let cases = [
        (
            "query_vector",
            format!(
                "/api/v1/query?query={}&time={now}",
                urlencode("sum by (code) (rate(http_requests_total[5m]))")
            ),
        ),
        (
            "query_scalar",
            format!("/api/v1/query?query={}&time={now}", urlencode("1+1")),
        ),
        (
            "query_string",
            format!("/api/v1/query?query={}&time={now}", urlencode("\"hello\"")),
        ),
        (
            "query_matrix",
            format!(
                "/api/v1/query?query={}&time={now}",
                urlencode("up{job=\"node\"}[3m]")
            ),
        ),
        (
            "query_range",
            format!(
                "/api/v1/query_range?query={}&start={}&end={now}&step=1",
                urlencode("up{job=\"node\"}"),
                now - 2
            ),
        ),
        (
            "series",
            format!(
                "/api/v1/series?match[]=up&start={}&end={}",
                now - 3600,
                now + 3600
            ),
        ),
        ("labels", "/api/v1/labels".to_string()),
        ("label_values_job", "/api/v1/label/job/values".to_string()),
        (
            "label_values_name",
            format!(
                "/api/v1/label/__name__/values?match[]={}",
                urlencode("{job=\"node\"}")
            ),
        ),
    ];
    for (name, path) in &cases {
        let (status, body) = get(path.clone()).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(shape(&body), shape(&real_answer(name)), "{name}: {body}");
    }
    let (_, scalar) = get(format!(
        "/api/v1/query?query={}&time={now}",
        urlencode("1+1")
    ))
    .await;
    assert_eq!(
        scalar["data"],
        serde_json::json!({"resultType": "scalar", "result": [now, "2"]})
    );
    let (_, vector) = get(format!(
        "/api/v1/query?query={}&time={now}",
        urlencode("sum by (code) (http_requests_total)")
    ))
    .await;
    let codes: Vec<(&str, &str)> = vector["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|sample| {
            (
                sample["metric"]["code"].as_str().unwrap_or(""),
                sample["value"][1].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        codes.contains(&("200", "10")) && codes.contains(&("500", "1")),
        "{vector}"
    );
    // metadata is keyed by family: compare the entries' shape
    let (_, metadata) = get("/api/v1/metadata?limit=3".to_string()).await;
    let real = real_answer("metadata");
    let first = |body: &Value| {
        body["data"]
            .as_object()
            .and_then(|families| families.values().next().cloned())
            .unwrap_or_default()
    };
    assert_eq!(shape(&first(&metadata)), shape(&first(&real)), "{metadata}");
    assert_eq!(metadata["status"], "success");
    let (_, metadata) = get("/api/v1/metadata?metric=http_requests_total".to_string()).await;
    assert_eq!(
        metadata["data"],
        serde_json::json!({"http_requests_total": [{"type": "counter", "help": "Requests served, by \\ code.", "unit": ""}]})
    );
    let (_, names) = get(format!(
        "/api/v1/label/__name__/values?match[]={}",
        urlencode("{job=\"node\"}")
    ))
    .await;
    assert!(
        names["data"]
            .as_array()
            .expect("names")
            .iter()
            .any(|name| name == "http_requests_total"),
        "{names}"
    );

    // the form POST Prometheus clients use for long queries
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "query={}&time={now}",
            urlencode("up{job=\"node\"}")
        ))
        .send()
        .await
        .expect("post");
    let (status, posted) = crate::support::decode(response).await;
    assert_eq!(status, 200, "{posted}");
    assert_eq!(shape(&posted), shape(&real_answer("query_post_form")));
    assert_eq!(posted["data"]["result"][0]["value"][1], "1");

    // errors: the same status, errorType and (where Prometheus' text is ours) message
    let (status, body) = get(format!("/api/v1/query?query={}", urlencode("sum("))).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        real_answer("query_parse_error"),
        "the same message, position included"
    );
    for (name, path) in [
        (
            "query_bad_time",
            "/api/v1/query?query=up&time=abc".to_string(),
        ),
        (
            "query_range_too_many_points",
            format!("/api/v1/query_range?query=up&start=0&end={now}&step=1"),
        ),
        ("series_no_match", "/api/v1/series".to_string()),
    ] {
        let (status, body) = get(path).await;
        assert_eq!(status, 400, "{name}");
        assert_eq!(body, real_answer(name), "{name}");
    }
    let (status, body) = get(format!(
        "/api/v1/query?query={}",
        urlencode("http_requests_total + on() http_requests_total")
    ))
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution");
    let (status, body) = get(format!(
        "/api/v1/query?query={}",
        urlencode("histogram_count(x)")
    ))
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("native histograms"),
        "{body}"
    );
    // Prometheus' own client, unmodified (Debian's prometheus package; scripts/test installs it)
    let promtool = |args: Vec<String>| {
        let output = std::process::Command::new("promtool")
            .args(&args)
            .output()
            .expect("promtool runs (install Debian's prometheus package)");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "promtool {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let url = server.url("");
    let url = url.trim_end_matches('/').to_string();
    let instant = promtool(vec![
        "query".into(),
        "instant".into(),
        url.clone(),
        "sum by (code) (http_requests_total)".into(),
    ]);
    assert!(
        instant.contains("{code=\"200\"} => 10 @[") && instant.contains("{code=\"500\"} => 1 @["),
        "{instant}"
    );
    let range = promtool(vec![
        "query".into(),
        "range".into(),
        format!("--start={}", now - 2),
        format!("--end={now}"),
        "--step=1s".into(),
        url.clone(),
        "up".into(),
    ]);
    assert!(
        range.contains("up{instance=") && range.contains("1 @["),
        "{range}"
    );
    let series = promtool(vec![
        "query".into(),
        "series".into(),
        "--match=up".into(),
        url.clone(),
    ]);
    assert!(series.contains("__name__=\"up\""), "{series}");
    let jobs = promtool(vec![
        "query".into(),
        "labels".into(),
        url.clone(),
        "job".into(),
    ]);
    assert_eq!(jobs.trim(), "node");
    let (_, info) = get("/api/v1/status/buildinfo".to_string()).await;
    for key in real_answer("buildinfo")["data"]
        .as_object()
        .expect("object")
        .keys()
    {
        assert!(
            info["data"].get(key).is_some(),
            "buildinfo lacks {key}: {info}"
        );
    }
}

/// A target whose counter is the number of times it was scraped.
async fn counting_target() -> String {
    let scrapes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let scrapes = std::sync::Arc::clone(&scrapes);
            async move {
                let count = scrapes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    format!("scrapes_total {count}\n"),
                )
            }
        }),
    );
    listen(router).await
}

async fn samples(server: &Server, query: &str, start: i64, end: i64) -> Vec<(f64, String)> {
    let (status, body) = server
        .get(&format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step=0.25",
            urlencode(query)
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["result"]
        .as_array()
        .and_then(|series| series.first())
        .and_then(|series| series["values"].as_array())
        .map(|values| {
            values
                .iter()
                .map(|pair| {
                    (
                        pair[0].as_f64().unwrap_or_default(),
                        pair[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// the target runs in this process while the server is killed and restarted
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_scraping_loses_no_logged_sample_and_blocks_are_persisted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exporter = counting_target().await;
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "[metrics]\nblock_duration = \"2s\"\n[[scrape_configs]]\njob_name = \"count\"\nscrape_interval = \"250ms\"\n[[scrape_configs.static_configs]]\ntargets = [\"{exporter}\"]\n"
        ),
    )
    .expect("config");
    let data = dir.path().join("data");
    let args = ["--config", &config.display().to_string()];
    let server = Server::start(&data, &args);
    let start = chrono::Utc::now().timestamp() - 1;
    // long enough for the head to be persisted into blocks twice
    wait_until("blocks persisted", 30, || async {
        std::fs::read_dir(data.join("tsdb/blocks")).is_ok_and(|dir| dir.count() >= 2)
    })
    .await;
    wait_until("twenty scrapes", 30, || async {
        let (_, body) = server
            .get(&format!(
                "/api/v1/query?query={}",
                urlencode("max_over_time(scrapes_total[1m])")
            ))
            .await;
        body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|value| value.parse::<f64>().ok())
            .is_some_and(|value| value >= 20.0)
    })
    .await;
    let end = chrono::Utc::now().timestamp() + 1;
    let before = samples(&server, "scrapes_total", start, end).await;
    server.kill();
    // every sample but the newest scrape's was logged before the next scrape was applied
    let durable: Vec<String> = {
        let raw: Vec<String> = std::iter::once(String::new())
            .chain(before.iter().map(|(_, value)| value.clone()))
            .collect();
        let newest = before
            .last()
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        raw.into_iter()
            .filter(|value| !value.is_empty() && *value != newest)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    assert!(durable.len() >= 15, "{before:?}");

    let server = Server::start(&data, &args);
    let after = samples(&server, "scrapes_total", start, end).await;
    let after_values: std::collections::BTreeSet<String> =
        after.iter().map(|(_, value)| value.clone()).collect();
    for value in &durable {
        assert!(
            after_values.contains(value),
            "scrape {value} lost by kill -9: before {before:?}, after {after:?}"
        );
    }
    // blocks and head answer together: the counter never goes back within the range
    let numbers: Vec<f64> = after
        .iter()
        .map(|(_, value)| value.parse().unwrap_or_default())
        .collect();
    assert!(
        numbers.windows(2).all(|pair| pair[1] >= pair[0]),
        "{numbers:?}"
    );
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_a_running_server_is_picked_up_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("lookout.toml");
    std::fs::write(&config, "[metrics]\nblock_duration = \"4s\"\n").expect("config");
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", &config.display().to_string()]);
    let now = chrono::Utc::now().timestamp();
    let start = now - 3 * 3600;
    let mut text = String::from("# TYPE backfilled counter\n");
    for step in 0..480 {
        text.push_str(&format!(
            "backfilled_total{{job=\"old\"}} {} {}\n",
            step,
            start + step * 15
        ));
    }
    text.push_str("# EOF\n");
    let file = dir.path().join("backfill.om");
    std::fs::write(&file, &text).expect("file");
    let import = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args([
                "tsdb",
                "import",
                "--data-dir",
                &data.display().to_string(),
                &file.display().to_string(),
            ])
            .output()
            .expect("run import")
    };
    let output = import(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("imported 480 samples of 1 series") && stdout.contains("running server"),
        "{stdout}"
    );
    wait_until("the imported blocks answer", 20, || async {
        let (_, body) = server
            .get(&format!(
                "/api/v1/query?query={}&time={}",
                urlencode("backfilled_total"),
                start + 479 * 15
            ))
            .await;
        body["data"]["result"][0]["value"][1] == "479"
    })
    .await;
    let (_, body) = server
        .get(&format!(
            "/api/v1/query?query={}&time={}",
            urlencode("increase(backfilled_total[30m])"),
            start + 7200
        ))
        .await;
    let increase: f64 = body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|value| value.parse().ok())
        .unwrap_or_default();
    assert!((increase - 120.0).abs() < 1.0, "{body}");
    let (_, names) = server.get("/api/v1/label/__name__/values").await;
    assert!(
        names["data"]
            .as_array()
            .expect("names")
            .iter()
            .any(|name| name == "backfilled_total"),
        "{names}"
    );

    std::fs::write(&file, "backfilled_total 1\n# EOF\n").expect("file");
    let output = import(&file);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no timestamp"));
    server.terminate();
}

// the targets run in this process while the server follows the files
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_yml_is_used_as_is_and_file_sd_targets_follow_their_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = target("first_metric 1\n").await;
    let second = target("second_metric 2\n").await;
    let prometheus_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(prometheus_dir.join("targets")).expect("dirs");
    std::fs::write(
        prometheus_dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 15s\nrule_files:\n  - alerts.yml\nscrape_configs:\n  - job_name: files\n    file_sd_configs:\n      - files: [\"targets/*.json\", \"targets/*.yml\"]\n    tls_config:\n      insecure_skip_verify: true\nremote_write:\n  - url: http://192.0.2.1/write\n",
    )
    .expect("prometheus.yml");
    let first_file = prometheus_dir.join("targets/first.json");
    std::fs::write(
        &first_file,
        format!("[{{\"targets\": [\"{first}\"], \"labels\": {{\"team\": \"a\"}}}}]"),
    )
    .expect("targets");
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "prometheus_config = \"{}\"\n",
            prometheus_dir.join("prometheus.yml").display()
        ),
    )
    .expect("config");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["check", &config.display().to_string()])
        .output()
        .expect("check");
    let warnings = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{warnings}");
    for section in [
        "rule_files",
        "remote_write",
        "global.evaluation_interval",
        "tls_config",
    ] {
        assert_eq!(
            warnings.matches(section).count(),
            1,
            "one warning for {section}: {warnings}"
        );
    }
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    let up = |instance: String| {
        let server = &server;
        async move {
            let (_, body) = server
                .get(&format!(
                    "/api/v1/query?query={}",
                    urlencode(&format!("up{{instance=\"{instance}\"}}"))
                ))
                .await;
            body["data"]["result"]
                .as_array()
                .map(|result| {
                    result
                        .iter()
                        .map(|sample| sample["value"][1].as_str().unwrap_or("").to_string())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    wait_until("the first file's target is scraped", 20, || async {
        up(first.clone()).await == ["1"]
    })
    .await;
    let (_, body) = server
        .get(&format!(
            "/api/v1/query?query={}",
            urlencode("first_metric")
        ))
        .await;
    assert_eq!(body["data"]["result"][0]["metric"]["team"], "a", "{body}");
    assert_eq!(
        body["data"]["result"][0]["metric"]["job"], "files",
        "{body}"
    );

    // a new YAML file adds a target; emptying the first file removes its target
    std::fs::write(
        prometheus_dir.join("targets/second.yml"),
        format!("- targets: [\"{second}\"]\n  labels:\n    team: b\n"),
    )
    .expect("targets");
    wait_until("the second file's target is scraped", 20, || async {
        up(second.clone()).await == ["1"]
    })
    .await;
    std::fs::write(&first_file, "[]").expect("empty");
    // its series are marked stale at once instead of lingering for the 5-minute lookback
    wait_until("the removed target's series are stale", 20, || async {
        up(first.clone()).await.is_empty()
    })
    .await;
    let (_, targets) = server.get("/api/v1/targets").await;
    let active = targets["data"]["activeTargets"]
        .as_array()
        .expect("targets");
    assert_eq!(active.len(), 1, "{targets}");
    assert_eq!(active[0]["labels"]["team"], "b");
    assert!(
        active[0]["discoveredLabels"]["__meta_filepath"]
            .as_str()
            .unwrap_or_default()
            .ends_with("second.yml")
    );
    // a file that stops parsing keeps its last good targets
    std::fs::write(
        prometheus_dir.join("targets/second.yml"),
        "- targets: [unclosed\n",
    )
    .expect("broken");
    let logged = || server.output.lock().expect("output").join("\n");
    wait_until("the broken file is noticed", 20, || async {
        logged().contains("cannot read a file_sd file")
    })
    .await;
    let (_, targets) = server.get("/api/v1/targets").await;
    assert_eq!(
        targets["data"]["activeTargets"].as_array().map(Vec::len),
        Some(1),
        "{targets}"
    );
    assert_eq!(up(second.clone()).await, ["1"]);
    assert!(logged().contains("rule_files is not supported by Lookout; ignored"));
    server.terminate();
}

/// A target whose exposition (or failure) the test changes as it goes.
async fn changing_target(body: std::sync::Arc<std::sync::Mutex<Option<String>>>) -> String {
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = std::sync::Arc::clone(&body);
            async move {
                match body.lock().expect("body").clone() {
                    Some(text) => (
                        axum::http::StatusCode::OK,
                        [("content-type", "text/plain; version=0.0.4")],
                        text,
                    ),
                    None => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        [("content-type", "text/plain")],
                        "down".to_string(),
                    ),
                }
            }
        }),
    );
    listen(router).await
}

// the target runs in this process while the server scrapes it
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_series_and_failed_scrapes_are_marked_stale_and_new_series_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = std::sync::Arc::new(std::sync::Mutex::new(Some("a 1\nb 2\n".to_string())));
    let address = changing_target(std::sync::Arc::clone(&body)).await;
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!("[[scrape_configs]]\njob_name = \"t\"\nscrape_interval = \"250ms\"\n[[scrape_configs.static_configs]]\ntargets = [\"{address}\"]\n"),
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    let value = |query: &'static str| {
        let server = &server;
        async move {
            let (_, body) = server
                .get(&format!("/api/v1/query?query={}", urlencode(query)))
                .await;
            body["data"]["result"]
                .as_array()
                .and_then(|result| result.first())
                .and_then(|sample| sample["value"][1].as_str().map(str::to_string))
        }
    };
    wait_until("a and b scraped", 20, || async {
        value("b").await.as_deref() == Some("2")
    })
    .await;
    // b vanishes: it is stale at once, not for the 5-minute lookback; c is a new series
    *body.lock().expect("body") = Some("a 1\nc 3\n".into());
    wait_until("c scraped", 20, || async {
        value("c").await.as_deref() == Some("3")
    })
    .await;
    assert_eq!(value("b").await, None, "the vanished series is stale");
    assert_eq!(value("a").await.as_deref(), Some("1"));
    let (_, added) = server
        .get(&format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=0.25",
            urlencode("scrape_series_added"),
            chrono::Utc::now().timestamp() - 20,
            chrono::Utc::now().timestamp() + 1
        ))
        .await;
    let counts: Vec<&str> = added["data"]["result"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{added}"))
        .iter()
        .filter_map(|pair| pair[1].as_str())
        .collect();
    assert!(
        counts.contains(&"2") && counts.contains(&"1"),
        "the first scrape adds a and b, the change adds c: {counts:?}"
    );
    // a failing scrape: up 0 and every series stale
    *body.lock().expect("body") = None;
    wait_until("the target is down", 20, || async {
        value("up").await.as_deref() == Some("0")
    })
    .await;
    assert_eq!(value("a").await, None);
    assert_eq!(value("c").await, None);
    *body.lock().expect("body") = Some("a 5\n".into());
    wait_until("a is back", 20, || async {
        value("a").await.as_deref() == Some("5")
    })
    .await;
    // a sample older than its series' newest is refused and counted
    *body.lock().expect("body") = Some("a 6 1000\n".into());
    let counted = |text: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix("lookout_tsdb_out_of_order_samples_total "))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    wait_until("the out-of-order sample is counted", 20, || async {
        counted(&server.metrics().await) >= 1.0
    })
    .await;
    assert_eq!(
        value("a").await.as_deref(),
        Some("5"),
        "the old sample is not stored"
    );
    assert!(server.metrics().await.contains("lookout_tsdb_head_series "));
    server.terminate();
}
