//! Scraping through the real binary: `lookout serve` with `[[scrape_configs]]` scrapes
//! targets on loopback and reports their health at `/api/v1/targets` in the shape of a
//! real Prometheus response; a bad exposition makes its target `down` with the line and
//! column of the error.

use serde_json::Value;

use crate::support::{Server, wait_until};

async fn target(body: &'static str) -> String {
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            ([("content-type", "text/plain; version=0.0.4")], body)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    address.to_string()
}

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
