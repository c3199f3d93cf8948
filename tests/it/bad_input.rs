use std::io::Write;

use serde_json::{Value, json};

use crate::support::Server;

#[tokio::test]
async fn bad_bulk_lines_fail_only_their_own_item() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut body: Vec<u8> = Vec::new();
    let good = |body: &mut Vec<u8>, n: u32| {
        body.extend_from_slice(format!("{{\"index\":{{}}}}\n{{\"good\":{n}}}\n").as_bytes())
    };
    good(&mut body, 1);
    body.extend_from_slice(b"{\"index\":{}}\n{\"broken\": \n"); // malformed JSON source
    good(&mut body, 2);
    body.extend_from_slice(b"{\"index\":{}}\n[1,2,3]\n"); // not an object
    body.extend_from_slice(b"{\"index\":{}}\n\"just a string\"\n");
    body.extend_from_slice(
        format!(
            "{{\"index\":{{}}}}\n{}1{}\n",
            "{\"a\":".repeat(70),
            "}".repeat(70)
        )
        .as_bytes(),
    ); // too deep
    body.extend_from_slice(b"{\"index\":{}}\n{\"bad\":\"\xff\xfe\"}\n"); // invalid UTF-8
    body.extend_from_slice(
        format!(
            "{{\"index\":{{}}}}\n{{\"big\":\"{}\"}}\n",
            "x".repeat(1_100_000)
        )
        .as_bytes(),
    ); // over max_line_bytes
    body.extend_from_slice(b"{\"index\":\n{\"eaten\":true}\n"); // malformed action consumes the next line
    body.extend_from_slice(b"{\"index\":{\"_index\":\"Bad/Name\"}}\n{\"x\":1}\n"); // invalid index name
    good(&mut body, 3);
    let (status, result) = server.post_ndjson("/logs/_bulk?refresh=true", body).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["errors"], true);
    let statuses: Vec<u64> = result["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["index"]["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        vec![201, 400, 201, 400, 400, 400, 400, 400, 400, 400, 201]
    );
    let reasons: Vec<String> = result["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| {
            item["index"]["error"]["reason"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(reasons[0].contains("failed to parse"), "{reasons:?}");
    assert!(reasons[1].contains("must be a JSON object"), "{reasons:?}");
    assert!(reasons[3].contains("nesting depth"), "{reasons:?}");
    assert!(reasons[4].contains("invalid UTF-8"), "{reasons:?}");
    assert!(reasons[5].contains("max_line_bytes"), "{reasons:?}");
    assert!(reasons[6].contains("malformed action"), "{reasons:?}");
    assert!(reasons[7].contains("Bad/Name"), "{reasons:?}");
    assert_eq!(
        server.count("logs", "*").await,
        3,
        "the good neighbours are all indexed"
    );
    assert_eq!(server.count("logs", "eaten:true").await, 0);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("lookout_ingest_lines_rejected_total{reason=\"too_deep\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn field_type_conflicts_keep_both_documents_searchable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let docs = "{\"index\":{}}\n{\"status\":500,\"user\":\"ann\"}\n{\"index\":{}}\n{\"status\":\"five hundred\",\"user\":{\"name\":\"bob\"}}\n";
    let (_, result) = server.post_ndjson("/logs/_bulk?refresh=true", docs).await;
    assert_eq!(result["errors"], false, "{result}");
    assert_eq!(server.count("logs", "status:500").await, 1);
    assert_eq!(server.count("logs", "status:\"five hundred\"").await, 1);
    assert_eq!(server.count("logs", "user:ann").await, 1);
    assert_eq!(server.count("logs", "user.name:bob").await, 1);
    assert_eq!(
        server.count("logs", "_exists_:user").await,
        2,
        "an object and a scalar both exist"
    );
}

#[tokio::test]
async fn oversized_and_gzip_bomb_bodies_get_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "[ingest]\nmax_body_bytes = 1048576\nmax_line_bytes = 65536\nmax_in_flight_bytes = 4194304\n").expect("config");
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().expect("utf8")]);
    let big = "{\"index\":{}}\n{\"a\":1}\n".repeat(60_000);
    let (status, body) = server.post_ndjson("/logs/_bulk", big.clone()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["type"], "content_too_long_exception");

    // 50 MiB of zeros compress to ~50 KiB: the decompressed size is what counts
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b' '; 50 << 20]).expect("compress");
    let bomb = encoder.finish().expect("finish");
    assert!(bomb.len() < 1 << 20);
    // a 413 answers before the body is read and closes the connection: no pooling here
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let response = fresh
        .post(server.url("/logs/_bulk"))
        .header("content-encoding", "gzip")
        .header("content-type", "application/x-ndjson")
        .body(bomb)
        .send()
        .await
        .expect("bomb");
    assert_eq!(response.status(), 413);

    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(b"{\"index\":{}}\n{\"zipped\":true}\n")
        .expect("compress");
    let response = server
        .client
        .post(server.url("/logs/_bulk?refresh=true"))
        .header("content-encoding", "gzip")
        .header("content-type", "application/x-ndjson")
        .body(encoder.finish().expect("finish"))
        .send()
        .await
        .expect("gzip");
    assert_eq!(response.status(), 200);
    assert_eq!(server.count("logs", "zipped:true").await, 1);
}

#[tokio::test]
async fn bad_queries_and_unknown_indices_get_es_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (_, _) = server
        .post_ndjson("/logs/_bulk?refresh=true", "{\"index\":{}}\n{\"a\":1}\n")
        .await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"query": {"mtch": {"a": 1}}}),
            "parsing_exception",
            "unknown query [mtch]",
        ),
        (
            json!({"query": {"query_string": {"query": "status:(500"}}}),
            "query_shard_exception",
            "column",
        ),
        (
            json!({"query": {"range": {"@timestamp": {"gte": "now-5x"}}}}),
            "parsing_exception",
            "now-5x",
        ),
        (
            json!({"query": {"regexp": {"a": "[unclosed"}}}),
            "query_shard_exception",
            "invalid regular expression",
        ),
        (
            json!({"query": {"match_all": {}}, "sizee": 1}),
            "parsing_exception",
            "sizee",
        ),
    ];
    for (body, kind, fragment) in cases {
        let (status, error) = server.post_json("/logs/_search", &body).await;
        assert_eq!(status, 400, "{body} → {error}");
        assert_eq!(error["status"], 400);
        assert_eq!(error["error"]["type"], kind, "{error}");
        assert!(
            error["error"]["reason"]
                .as_str()
                .expect("reason")
                .contains(fragment),
            "{error}"
        );
        assert_eq!(error["error"]["root_cause"][0]["type"], kind);
    }
    let (status, error) = server.get("/missing/_search").await;
    assert_eq!(status, 404);
    assert_eq!(error["error"]["type"], "index_not_found_exception");
    assert_eq!(error["error"]["index"], "missing");
    for name in ["UPPER", "a*b", "_x", "a%2Fb"] {
        let response = server
            .client
            .put(server.url(&format!("/{name}")))
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), 400, "{name}");
    }
    // `..` must be sent raw: HTTP clients resolve it away before sending
    let address = server.base.trim_start_matches("http://").to_string();
    let raw = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream
            .write_all(
                b"PUT /.. HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer
    })
    .await
    .expect("raw request");
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(
        !server
            .data_dir
            .join("logs")
            .join("..")
            .join("index.json")
            .exists()
    );
    let (status, error) = server.post_ndjson("/_bulk?refresh=maybe", "").await;
    assert_eq!(status, 400, "{error}");
}

#[tokio::test]
async fn non_loopback_listen_needs_auth_and_auth_is_enforced() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(tempfile::tempdir().expect("tempdir").path())
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("without authentication"));

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("auth.toml");
    std::fs::write(&config, "[auth]\ntoken = \"s3cret-token\"\n").expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf8")],
    );
    let response = server
        .client
        .get(server.url("/_cat/indices"))
        .send()
        .await
        .expect("no auth");
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(
        server
            .client
            .get(server.url("/-/healthy"))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
    let response = server
        .client
        .get(server.url("/_cat/indices"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .expect("bearer");
    assert_eq!(response.status(), 200);
    let response = server
        .client
        .get(server.url("/_cat/indices"))
        .basic_auth("elastic", Some("s3cret-token"))
        .send()
        .await
        .expect("basic");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn concurrent_large_bodies_beyond_the_in_flight_budget_get_429() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tight.toml");
    std::fs::write(&config, "[ingest]\nmax_body_bytes = 1048576\nmax_line_bytes = 65536\nmax_in_flight_bytes = 1048576\n").expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf8")],
    );
    let line = "{\"index\":{}}\n{\"filler\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n";
    let half: String = line.repeat(600_000 / line.len());
    // the first request sends 900 KB of one document line, then waits: a line cannot be
    // cut into pieces, so the server holds all of it (a body of short lines would be
    // written piece by piece and release its budget as it goes)
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let held = format!("{{\"index\":{{}}}}\n{{\"filler\":\"{}", "x".repeat(900_000));
    sender
        .send(Ok(held.into_bytes()))
        .await
        .expect("first part");
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let slow = server
        .client
        .post(server.url("/logs/_bulk"))
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let slow = tokio::spawn(slow);
    // wait until the server holds that half (observable through its own metric)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let metrics = server.metrics().await;
        let held = metrics
            .lines()
            .find_map(|line| line.strip_prefix("lookout_ingest_in_flight_bytes "))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0);
        if held >= 900_000.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never held the first part ({held} bytes)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, body) = server.post_ndjson("/logs/_bulk", half.clone()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "es_rejected_execution_exception");
    // the first request finishes normally (its line over max_line_bytes fails its item
    // only), and then there is room again
    sender.send(Ok(b"\"}\n".to_vec())).await.expect("the rest");
    drop(sender);
    let response = slow.await.expect("join").expect("first request");
    assert_eq!(response.status(), 200);
    let (status, _) = server.post_ndjson("/logs/_bulk?refresh=true", half).await;
    assert_eq!(status, 200);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("lookout_http_requests_refused_total{reason=\"in_flight\"} 1"),
        "{metrics}"
    );
}

#[test]
fn lookout_check_reports_every_error_with_file_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good_rule =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("queries/checkout_5xx.json");
    let good_config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lookout.toml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("check")
        .arg(&good_rule)
        .arg(&good_config)
        .env_remove("SLACK_WEBHOOK_URL")
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 file(s) OK"));
    // the example rule names `slack`, which nothing configures here: a warning, not an error
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("checkout_5xx.json: `notify`: notifier `slack` is not configured; its alerts go to the console"),
        "{stderr}"
    );

    let bad_config = dir.path().join("bad.toml");
    std::fs::write(
        &bad_config,
        "[index]\npartition_span = \"7m\"\nretention = \"1m\"\n",
    )
    .expect("write");
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[ingest]\nmax_body_byte = 1\n").expect("write");
    let bad_rule = dir.path().join("bad_rule.json");
    std::fs::write(
        &bad_rule,
        "{\"version\": 1,\n \"threshold\": {\"op\": \"=>\", \"value\": 1}}",
    )
    .expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("check")
        .args([&bad_config, &typo, &bad_rule])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml: `index.partition_span`"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.toml: `index.retention`"), "{stderr}");
    assert!(
        stderr.contains("typo.toml") && stderr.contains("max_body_byte"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad_rule.json:2:") && stderr.contains("=>"),
        "{stderr}"
    );
    // every error of a file, not only its first: the rule also lacks `query`
    assert!(
        stderr.contains("bad_rule.json: `query`: a rule needs `query`"),
        "{stderr}"
    );
    assert!(stderr.contains("5 error(s) in 3 file(s)"), "{stderr}");
}

/// Sends `requests` raw on one keep-alive connection (the last asks to close) and returns
/// everything the server answered.
async fn raw_exchange(server: &Server, requests: Vec<u8>) -> String {
    let address = server.address().to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream.write_all(&requests).expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .expect("raw exchange")
}

#[tokio::test]
async fn raw_comparison_operators_in_q_work_as_curl_sends_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut body = String::new();
    for (latency, message) in [(120, "fast"), (640, "slow db query"), (905, "slow cache")] {
        body.push_str(&format!(
            "{{\"index\":{{}}}}\n{{\"latency_ms\":{latency},\"message\":\"{message}\"}}\n"
        ));
    }
    let (status, result) = server.post_ndjson("/app/_bulk?refresh=true", body).await;
    assert_eq!(
        (status, &result["errors"]),
        (200, &json!(false)),
        "{result}"
    );
    // what `curl 'localhost:9200/app/_count?q=latency_ms:>500'` sends: the `>` raw; then a
    // body-carrying request and a raw `"` on the same keep-alive connection
    let search = "{\"query\":{\"match\":{\"message\":\"cache\"}}}";
    let requests = format!(
        "GET /app/_count?q=latency_ms:>500 HTTP/1.1\r\nHost: localhost\r\n\r\n\
         POST /app/_count HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{search}\
         GET /app/_count?q=message:\"db\" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        search.len()
    );
    let answer = raw_exchange(&server, requests.into_bytes()).await;
    let counts: Vec<&str> = answer
        .match_indices("\"count\":")
        .map(|(at, _)| &answer[at..at + 9])
        .collect();
    assert_eq!(
        counts,
        ["\"count\":2", "\"count\":1", "\"count\":1"],
        "{answer}"
    );
    assert!(!answer.contains("400 Bad Request"), "{answer}");
}
