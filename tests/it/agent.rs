//! `lookout ship` against a real `lookout serve`: rotation, truncation, deletion, restarts,
//! `kill -9`, bad input, outages and a plain Elasticsearch — every complete line indexed
//! exactly once. The server's `/_lookout/agents` watermark says when the agent has
//! everything acknowledged, so the tests wait on that, never on a sleep.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::{
    Agent, Server, agent_config, agent_config_with_input, append_lines, assert_exactly_once,
    wait_until,
};

#[tokio::test]
async fn ships_every_line_once_through_rename_rotation_restart_and_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let pattern = logs.join("*.json").display().to_string();
    let config = agent_config(dir.path(), &server.base, &[&pattern], "");
    let app = logs.join("app.json");
    append_lines(&app, "a", 0..100);
    let agent = Agent::start(&config);
    let after_first = chrono::Utc::now();
    server.wait_caught_up(after_first).await;
    assert_exactly_once(&server.seqs("logs").await, &[("a", 0..100)]);

    // rename rotation: the writer still appends to the old file through its handle
    // for a moment, then a new app.json starts
    let rotated = logs.join("app.json.1");
    let mut old_handle = std::fs::OpenOptions::new()
        .append(true)
        .open(&app)
        .expect("open");
    std::fs::rename(&app, &rotated).expect("rotate");
    {
        use std::io::Write;
        for seq in 100..150 {
            writeln!(old_handle, r#"{{"seq":{seq},"file":"a"}}"#).expect("late write");
        }
    }
    append_lines(&app, "b", 0..70);
    let after_rotation = chrono::Utc::now();
    server.wait_caught_up(after_rotation).await;
    assert_exactly_once(&server.seqs("logs").await, &[("a", 0..150), ("b", 0..70)]);

    // kill -9, more lines while it is down, restart: resumes exactly where it was
    agent.kill();
    append_lines(&app, "b", 70..100);
    let agent = Agent::start(&config);
    let after_restart = chrono::Utc::now();
    server.wait_caught_up(after_restart).await;
    assert_exactly_once(&server.seqs("logs").await, &[("a", 0..150), ("b", 0..100)]);
    let (_, found) = server
        .post_json(
            "/logs/_search",
            &json!({"size": 1, "query": {"bool": {"filter": [{"term": {"seq": 5}}, {"term": {"file": "a"}}]}}}),
        )
        .await;
    let document = &found["hits"]["hits"][0]["_source"];
    assert_eq!(
        document["log"]["file"]["path"],
        app.display().to_string(),
        "ECS fields name the file: {document}"
    );
    assert!(document["host"]["name"].is_string(), "{document}");
    assert!(document["log"]["offset"].is_u64(), "{document}");

    // a graceful stop deregisters
    assert_eq!(agent.terminate(), Some(0));
    let (_, agents) = server.get("/_lookout/agents").await;
    assert_eq!(agents["agents"], json!([]), "deregistered on SIGTERM");
}

#[tokio::test]
async fn copytruncate_reads_the_new_content_under_a_new_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let app = dir.path().join("app.json");
    let config = agent_config(dir.path(), &server.base, &[&app.display().to_string()], "");
    // the same first line before and after the truncation: same identity, so only the
    // generation tells the new offsets from the old ones
    let header = "{\"seq\":-1,\"file\":\"header\"}\n";
    std::fs::write(&app, header).expect("write");
    append_lines(&app, "first", 0..100);
    let _agent = Agent::start(&config);
    server.wait_caught_up(chrono::Utc::now()).await;
    std::fs::copy(&app, dir.path().join("app.json.1")).expect("copy");
    std::fs::write(&app, header).expect("truncate and rewrite");
    append_lines(&app, "second", 0..40);
    server.wait_caught_up(chrono::Utc::now()).await;
    let stored = server.seqs("logs").await;
    assert_eq!(
        stored.get(&("header".to_string(), -1)),
        Some(&2),
        "the header line is in both generations"
    );
    let mut without_header = stored.clone();
    without_header.remove(&("header".to_string(), -1));
    assert_exactly_once(&without_header, &[("first", 0..100), ("second", 0..40)]);
}

#[tokio::test]
async fn deleted_file_is_finished_through_its_handle_and_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let app = dir.path().join("app.json");
    let config = agent_config(dir.path(), &server.base, &[&app.display().to_string()], "");
    append_lines(&app, "gone", 0..10);
    let agent = Agent::start(&config);
    server.wait_caught_up(chrono::Utc::now()).await;
    let mut handle = std::fs::OpenOptions::new()
        .append(true)
        .open(&app)
        .expect("open");
    std::fs::remove_file(&app).expect("delete");
    {
        use std::io::Write;
        for seq in 10..30 {
            writeln!(handle, r#"{{"seq":{seq},"file":"gone"}}"#).expect("write after delete");
        }
    }
    drop(handle);
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(&server.seqs("logs").await, &[("gone", 0..30)]);
    // released once idle for rotate_wait (1 s here)
    wait_until("the deleted file is released", 30, || async {
        agent.log_contains("releasing it")
    })
    .await;
}

#[tokio::test]
async fn bad_lines_are_dead_lettered_with_reasons_and_their_neighbours_ship() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(logs.join("looks-like-a-file.json")).expect("a directory");
    let config = agent_config(
        dir.path(),
        &server.base,
        &[&logs.join("*.json").display().to_string()],
        "non_json = \"dead_letter\"\nmetrics_listen = \"127.0.0.1:0\"",
    );
    let mut content = Vec::new();
    content.extend_from_slice(b"{\"seq\":0,\"file\":\"bad\"}\n");
    content.extend_from_slice(b"\x00\x01\x02binary\xfe garbage\n");
    content.extend_from_slice(b"{\"seq\":1,\"file\":\"bad\"}\r\n");
    content.extend_from_slice(b"{\"text\":\"\xff invalid utf-8\"}\n");
    content.extend_from_slice(b"\n\n\r\n");
    content.extend_from_slice(b"[1,2,3]\n");
    let long_line = format!("{{\"big\":\"{}\"}}", "x".repeat(10 * 1024 * 1024));
    content.extend_from_slice(long_line.as_bytes());
    content.push(b'\n');
    content.extend_from_slice(b"not json at all\n");
    content.extend_from_slice(b"{\"seq\":2,\"file\":\"bad\"}\n");
    content.extend_from_slice(b"{\"seq\":3,\"file\":\"bad\"}"); // partial: waits for its newline
    std::fs::write(logs.join("app.json"), &content).expect("write");
    append_lines(&logs.join("replaced.json"), "replaced", 0..5);
    let agent = Agent::start(&config);
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(
        &server.seqs("logs").await,
        &[("bad", 0..3), ("replaced", 0..5)],
    );
    // a tailed file replaced by a directory: reported, and the rest keeps shipping
    std::fs::remove_file(logs.join("replaced.json")).expect("delete");
    std::fs::create_dir(logs.join("replaced.json")).expect("mkdir");
    wait_until("the directory is reported", 30, || async {
        agent.log_contains_all(&["replaced.json", "is a directory"])
    })
    .await;

    let dead = std::fs::read_to_string(dir.path().join("state/dead-letter/dead-letter.ndjson"))
        .expect("dead-letter file");
    let records: Vec<Value> = dead
        .lines()
        .map(|line| serde_json::from_str(line).expect("record is JSON"))
        .collect();
    let reasons: Vec<&str> = records
        .iter()
        .map(|record| record["reason_code"].as_str().expect("reason_code"))
        .collect();
    assert_eq!(
        reasons,
        [
            "invalid_utf8",
            "invalid_utf8",
            "not_an_object",
            "too_long",
            "not_json"
        ],
        "{dead}"
    );
    let too_long = &records[3];
    assert!(
        too_long["reason"]
            .as_str()
            .expect("reason")
            .contains("over max_line_bytes"),
        "{too_long}"
    );
    let kept = std::fs::read(
        dir.path()
            .join("state/dead-letter")
            .join(too_long["line_file"].as_str().expect("line_file")),
    )
    .expect("long line kept");
    assert_eq!(kept, long_line.as_bytes(), "the long line is kept whole");
    assert!(
        records[0]["line_base64"].is_string(),
        "binary kept as base64"
    );
    assert_eq!(records[4]["line"], "not json at all");

    // the directory that matched the glob is reported, and counted
    assert!(
        agent.log_contains("is a directory"),
        "directory not reported"
    );
    let metrics_text = metrics_of(&agent).await;
    assert!(
        metrics_text.contains("lookout_agent_dead_lettered_lines_total{reason=\"too_long\"} 1"),
        "{metrics_text}"
    );
    assert!(
        metrics_text.contains("lookout_agent_file_errors_total{reason=\"is_a_directory\"} 2"),
        "{metrics_text}"
    );

    // the partial line ships once completed
    std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("app.json"))
        .and_then(|mut file| std::io::Write::write_all(&mut file, b"\n"))
        .expect("complete the line");
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(
        &server.seqs("logs").await,
        &[("bad", 0..4), ("replaced", 0..5)],
    );
}

/// The agent's `/metrics`, from the address it logged.
async fn metrics_of(agent: &Agent) -> String {
    let address = agent
        .metrics_address()
        .expect("agent logged its metrics address");
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("agent metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn unreadable_file_is_reported_and_the_others_ship() {
    // tests run as root, which reads anything: the agent runs as `nobody` here
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    for path in [dir.path(), logs.as_path(), state.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let config = agent_config(
        dir.path(),
        &server.base,
        &[&logs.join("*.json").display().to_string()],
        "",
    );
    append_lines(&logs.join("open.json"), "open", 0..20);
    append_lines(&logs.join("secret.json"), "secret", 0..20);
    for (name, mode) in [("open.json", 0o644), ("secret.json", 0o600)] {
        std::fs::set_permissions(logs.join(name), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    }
    // a copy of the binary `nobody` can run wherever the checkout lives (e.g. under a
    // private /root)
    let binary = dir.path().join("lookout");
    std::fs::copy(env!("CARGO_BIN_EXE_lookout"), &binary).expect("copy binary");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&binary);
    let agent = Agent::spawn(command, &config, true);
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(&server.seqs("logs").await, &[("open", 0..20)]);
    assert!(
        agent.log_contains("permission_denied") && agent.log_contains("secret.json"),
        "the unreadable file is named with its reason"
    );
}

/// A proxy in front of the real server that fails requests on demand.
#[derive(Default)]
struct Faults {
    /// Statuses to answer the next `_bulk` requests with, instead of forwarding them.
    bulk_failures: std::collections::VecDeque<u16>,
    /// Answer `/_lookout/info` with 404, like Elasticsearch.
    hide_lookout: bool,
    /// Answer every `_bulk` with 503 while set.
    refuse_all: bool,
    /// Acknowledge `_bulk` without forwarding (a discarding endpoint): items counted.
    discard: bool,
    discarded_items: u64,
    bulk_requests: u64,
    /// For this many `_bulk` requests, answer every 5th item 429 and items containing
    /// `poison` 400 (like an Elasticsearch mapping conflict) without forwarding them;
    /// the rest is forwarded and the answers merged in order.
    item_faults: u32,
}

/// Answers some items of a `_bulk` body itself (429, or 400 for `poison`) and forwards the
/// others, merging the answers in request order.
async fn item_faults(
    client: &reqwest::Client,
    upstream: Option<&str>,
    body: &[u8],
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut text).expect("gzip");
    let lines: Vec<&[u8]> = text
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    let mut answers: Vec<Option<Value>> = Vec::new();
    let mut forwarded = Vec::new();
    for (number, pair) in lines.chunks(2).enumerate() {
        let document = String::from_utf8_lossy(pair[1]);
        if number % 5 == 1 {
            answers.push(Some(json!({"create": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}})));
        } else if document.contains("poison") {
            answers.push(Some(json!({"create": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [poison]"}}})));
        } else {
            answers.push(None);
            forwarded.extend_from_slice(pair[0]);
            forwarded.push(b'\n');
            forwarded.extend_from_slice(pair[1]);
            forwarded.push(b'\n');
        }
    }
    let mut upstream_items = Vec::new();
    if !forwarded.is_empty() {
        let response: Value = client
            .post(format!("{}/_bulk", upstream.expect("an upstream")))
            .header("content-type", "application/x-ndjson")
            .body(forwarded)
            .send()
            .await
            .expect("upstream")
            .json()
            .await
            .expect("json");
        upstream_items = response["items"].as_array().expect("items").clone();
    }
    let mut upstream_items = upstream_items.into_iter();
    let items: Vec<Value> = answers
        .into_iter()
        .map(|answer| answer.unwrap_or_else(|| upstream_items.next().expect("an answer")))
        .collect();
    axum::Json(json!({"errors": true, "items": items})).into_response()
}

async fn start_proxy(upstream: Option<String>, faults: Arc<Mutex<Faults>>) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::IntoResponse;
    lookout::install_tls_provider();
    let client = reqwest::Client::new();
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (client, faults, upstream) = (client.clone(), faults.clone(), upstream.clone());
        async move {
            let path = uri.path().to_string();
            let faulty_items = {
                let mut faults = faults.lock().expect("faults");
                if path == "/_lookout/info" && faults.hide_lookout {
                    return (StatusCode::NOT_FOUND, "{}").into_response();
                }
                if path.ends_with("/_bulk") {
                    faults.bulk_requests += 1;
                    if faults.refuse_all {
                        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
                    }
                    if let Some(status) = faults.bulk_failures.pop_front() {
                        return (
                            StatusCode::from_u16(status).expect("status"),
                            r#"{"error":{"type":"busy","reason":"try later"},"status":429}"#,
                        )
                            .into_response();
                    }
                    if faults.item_faults > 0 {
                        faults.item_faults -= 1;
                        true
                    } else if faults.discard {
                        let mut decoder = flate2::read::GzDecoder::new(&body[..]);
                        let mut text = Vec::new();
                        std::io::Read::read_to_end(&mut decoder, &mut text).expect("gzip");
                        let lines = text.iter().filter(|byte| **byte == b'\n').count() / 2;
                        faults.discarded_items += lines as u64;
                        let items: Vec<Value> = (0..lines)
                            .map(|_| json!({"index": {"status": 201, "result": "created"}}))
                            .collect();
                        return axum::Json(json!({"errors": false, "items": items}))
                            .into_response();
                    } else {
                        false
                    }
                } else {
                    false
                }
            };
            if faulty_items {
                return item_faults(&client, upstream.as_deref(), &body).await;
            }
            let Some(upstream) = upstream else {
                return (StatusCode::OK, r#"{"name":"discard"}"#).into_response();
            };
            let mut request = client.request(
                reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method"),
                format!("{upstream}{uri}"),
            );
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    request = request.header(name.as_str(), value.as_bytes());
                }
            }
            let response = request.body(body).send().await.expect("upstream");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("upstream body");
            (
                StatusCode::from_u16(status).expect("status"),
                [("content-type", "application/json")],
                bytes,
            )
                .into_response()
        }
    };
    let router = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("proxy");
    });
    format!("http://{address}")
}

// the proxy runs in this process while `Agent::start` blocks one thread
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_429_and_503_for_a_while_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let faults = Arc::new(Mutex::new(Faults::default()));
    faults.lock().expect("faults").bulk_failures = [429, 503, 429, 429, 503, 500, 429, 503]
        .into_iter()
        .collect();
    let proxy = start_proxy(Some(server.base.clone()), faults.clone()).await;
    let app = dir.path().join("app.json");
    let config = agent_config(
        dir.path(),
        &proxy,
        &[&app.display().to_string()],
        "batch_max_lines = 100",
    );
    append_lines(&app, "busy", 0..2000);
    let agent = Agent::start(&config);
    // more lines while the agent is retrying
    append_lines(&app, "busy", 2000..3000);
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(&server.seqs("logs").await, &[("busy", 0..3000)]);
    assert!(
        faults.lock().expect("faults").bulk_failures.is_empty(),
        "every planned failure was served"
    );
    assert!(agent.log_contains("retrying"), "retries are logged");
}

// the proxy runs in this process while `Agent::start` blocks one thread
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_while_the_server_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Mutex::new(Faults {
        refuse_all: true,
        ..Faults::default()
    }));
    let proxy = start_proxy(None, faults.clone()).await;
    let app = dir.path().join("app.json");
    let config = agent_config(dir.path(), &proxy, &[&app.display().to_string()], "");
    // 64 MiB of lines waiting while every request is refused
    let lines = 230_000i64;
    let padding = "p".repeat(256);
    let mut text = String::with_capacity(80 * 1024 * 1024);
    for seq in 0..lines {
        text.push_str(&format!(
            "{{\"seq\":{seq},\"file\":\"big\",\"padding\":\"{padding}\"}}\n"
        ));
    }
    std::fs::write(&app, text).expect("write");
    let size = std::fs::metadata(&app).expect("size").len();
    assert!(size > 60 * 1024 * 1024, "{size}");
    let agent = Agent::start(&config);
    let refused_until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < refused_until {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        faults.lock().expect("faults").bulk_requests >= 2,
        "retrying"
    );
    let peak_refused = agent.peak_rss_kib();
    {
        let mut faults = faults.lock().expect("faults");
        faults.refuse_all = false;
        faults.discard = true;
    }
    wait_until("every line shipped", 120, || async {
        faults.lock().expect("faults").discarded_items >= lines as u64
    })
    .await;
    let peak = agent.peak_rss_kib();
    assert_eq!(
        faults.lock().expect("faults").discarded_items,
        lines as u64,
        "nothing lost, nothing sent twice"
    );
    // the files are the buffer: a 64 MiB backlog does not become 64 MiB of memory (a
    // debug build's code alone is ~14 MiB of it; `cargo bench --bench agent` measures the
    // release binary against the 32 MiB target)
    assert!(
        peak_refused < 40 * 1024 && peak < 40 * 1024,
        "peak RSS {peak_refused} KiB while refused, {peak} KiB overall"
    );
}

// the proxy runs in this process while `Agent::start` blocks one thread
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_elasticsearch_gets_deterministic_ids_and_resends_are_deduplicated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let faults = Arc::new(Mutex::new(Faults {
        hide_lookout: true,
        ..Faults::default()
    }));
    let proxy = start_proxy(Some(server.base.clone()), faults.clone()).await;
    let app = dir.path().join("app.json");
    let config = agent_config(dir.path(), &proxy, &[&app.display().to_string()], "");
    append_lines(&app, "es", 0..500);
    let agent = Agent::start(&config);
    assert!(agent.log_contains("Elasticsearch-compatible"));
    // no watermarks without the protocol: wait for the count, then for the checkpoint
    wait_for_count(&server, 500).await;
    agent.kill();
    // forget the checkpoints: everything is resent, and 409s keep it single
    std::fs::remove_file(dir.path().join("state/checkpoints.json")).ok();
    append_lines(&app, "es", 500..600);
    let agent = Agent::start(&config);
    wait_for_count(&server, 600).await;
    let end = std::fs::metadata(&app).expect("size").len().to_string();
    wait_until("the checkpoint reaches the end", 60, || async {
        std::fs::read_to_string(dir.path().join("state/checkpoints.json"))
            .is_ok_and(|text| text.contains(&end))
    })
    .await;
    server.post_json("/_refresh", &json!({})).await;
    assert_exactly_once(&server.seqs("logs").await, &[("es", 0..600)]);
    drop(agent);
}

async fn wait_for_count(server: &Server, expected: u64) {
    wait_until(&format!("{expected} lines counted"), 60, || async {
        server.post_json("/_refresh", &json!({})).await;
        let (status, body) = server.get("/logs/_count").await;
        // 404 until the first line created the index
        status == 200 && body["count"].as_u64() >= Some(expected)
    })
    .await;
}

#[tokio::test]
async fn serve_tails_its_own_agent_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app.json");
    append_lines(&app, "inproc", 0..50);
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nindex = \"logs\"\nheartbeat_interval = \"200ms\"\npoll_interval = \"50ms\"\n[[agent.inputs]]\npaths = [{:?}]\nfields = {{ service = \"checkout\" }}\n",
            app.display().to_string()
        ),
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(&server.seqs("logs").await, &[("inproc", 0..50)]);
    assert_eq!(server.count("logs", "service:checkout").await, 50);
    let checkpoints = server.data_dir.join("state/agent/checkpoints.json");
    assert_eq!(server.terminate(), Some(0));
    assert!(
        checkpoints.exists(),
        "the agent's state lives in the data directory, saved on shutdown"
    );
}

// the proxy runs in this process while `Agent::start` blocks one thread
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_failures_in_a_200_are_retried_or_dead_lettered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    // Elasticsearch mode: Lookout never answers items 429 (its back-pressure is the whole
    // request), a plain cluster does
    let faults = Arc::new(Mutex::new(Faults {
        hide_lookout: true,
        item_faults: u32::MAX,
        ..Faults::default()
    }));
    let proxy = start_proxy(Some(server.base.clone()), faults.clone()).await;
    let app = dir.path().join("app.json");
    let config = agent_config(
        dir.path(),
        &proxy,
        &[&app.display().to_string()],
        "batch_max_lines = 100\nmetrics_listen = \"127.0.0.1:0\"",
    );
    let mut text = String::new();
    for seq in 0..300 {
        if seq % 100 == 42 {
            text.push_str(&format!(
                "{{\"seq\":{seq},\"file\":\"poisoned\",\"poison\":true}}\n"
            ));
        } else {
            text.push_str(&format!("{{\"seq\":{seq},\"file\":\"items\"}}\n"));
        }
    }
    std::fs::write(&app, text).expect("write");
    let agent = Agent::start(&config);
    wait_for_count(&server, 297).await;
    let dead_letters = dir.path().join("state/dead-letter/dead-letter.ndjson");
    wait_until("the poisoned lines are dead-lettered", 60, || async {
        std::fs::read_to_string(&dead_letters).map_or(0, |text| text.lines().count()) >= 3
    })
    .await;
    let records = std::fs::read_to_string(&dead_letters).expect("dead letters");
    for record in records.lines() {
        let record: Value = serde_json::from_str(record).expect("json");
        assert_eq!(record["reason_code"], "rejected_by_server");
        assert!(
            record["reason"]
                .as_str()
                .expect("reason")
                .contains("mapper_parsing_exception"),
            "{record}"
        );
        assert!(record["line"].as_str().expect("line").contains("poison"));
    }
    server.post_json("/_refresh", &json!({})).await;
    let expected: Vec<i64> = (0..300).filter(|seq| seq % 100 != 42).collect();
    let stored = server.seqs("logs").await;
    assert_eq!(stored.len(), expected.len(), "{stored:?}");
    for seq in expected {
        assert_eq!(
            stored.get(&("items".to_string(), seq)),
            Some(&1),
            "seq {seq}"
        );
    }
    let metrics_text = metrics_of(&agent).await;
    assert!(
        metrics_text.contains("lookout_agent_retries_total{reason=\"item_429\"}"),
        "{metrics_text}"
    );
}

#[tokio::test]
async fn read_from_end_skips_what_was_there_before_the_first_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let app = dir.path().join("app.json");
    let config = agent_config_with_input(
        dir.path(),
        &server.base,
        &[&app.display().to_string()],
        "",
        "read_from = \"end\"",
    );
    append_lines(&app, "old", 0..10);
    let agent = Agent::start(&config);
    server.wait_caught_up(chrono::Utc::now()).await;
    append_lines(&app, "new", 0..5);
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(&server.seqs("logs").await, &[("new", 0..5)]);
    // after a restart the checkpoint rules, not read_from
    agent.kill();
    append_lines(&app, "new", 5..8);
    let _agent = Agent::start(&config);
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(&server.seqs("logs").await, &[("new", 0..8)]);
}

#[tokio::test]
async fn globs_reach_nested_directories_excludes_skip_and_a_returning_file_is_not_reread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(logs.join("x/y")).expect("mkdir");
    let config = agent_config_with_input(
        dir.path(),
        &server.base,
        &[&logs.join("**/*.json").display().to_string()],
        "",
        &format!(
            "exclude = [{:?}]",
            logs.join("**/skip-*.json").display().to_string()
        ),
    );
    append_lines(&logs.join("a.json"), "a", 0..10);
    append_lines(&logs.join("x/b.json"), "b", 0..10);
    append_lines(&logs.join("x/y/c.json"), "c", 0..10);
    append_lines(&logs.join("x/skip-d.json"), "d", 0..10);
    let _agent = Agent::start(&config);
    server.wait_caught_up(chrono::Utc::now()).await;
    // a directory created later, deeper down
    std::fs::create_dir_all(logs.join("new/deep")).expect("mkdir");
    append_lines(&logs.join("new/deep/e.json"), "e", 0..10);
    wait_until("the new nested file is shipped", 30, || async {
        server.post_json("/_refresh", &json!({})).await;
        server.count("logs", "file:e").await == 10
    })
    .await;
    // a.json leaves the patterns and comes back: the same identity, not read again
    std::fs::rename(logs.join("a.json"), logs.join("a.json.away")).expect("rename");
    append_lines(&logs.join("x/b.json"), "b", 10..12);
    server.wait_caught_up(chrono::Utc::now()).await;
    std::fs::rename(logs.join("a.json.away"), logs.join("a.json")).expect("rename back");
    append_lines(&logs.join("a.json"), "a", 10..15);
    wait_until("the returned file's new lines are shipped", 30, || async {
        server.post_json("/_refresh", &json!({})).await;
        server.count("logs", "file:a").await >= 15
    })
    .await;
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(
        &server.seqs("logs").await,
        &[("a", 0..15), ("b", 0..12), ("c", 0..10), ("e", 0..10)],
    );
}

#[tokio::test]
async fn a_token_is_sent_and_a_wrong_one_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_config = dir.path().join("lookout.toml");
    std::fs::write(&server_config, "[auth]\ntoken = \"s3cret-token\"\n").expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &server_config.display().to_string()],
    );
    let app = dir.path().join("app.json");
    append_lines(&app, "auth", 0..20);
    let wrong = agent_config(
        dir.path(),
        &server.base,
        &[&app.display().to_string()],
        "token = \"wrong\"",
    );
    let refused = Agent::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_lookout")),
        &wrong,
        false,
    );
    wait_until("the refused token is reported", 30, || async {
        refused.log_contains("check the agent's token")
    })
    .await;
    assert!(
        !refused.log_contains("wrong"),
        "the token itself is never logged"
    );
    refused.kill();
    let right = agent_config(
        dir.path(),
        &server.base,
        &[&app.display().to_string()],
        "token_env = \"LOOKOUT_TEST_AGENT_TOKEN\"",
    );
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"));
    command.env("LOOKOUT_TEST_AGENT_TOKEN", "s3cret-token");
    let _agent = Agent::spawn(command, &right, true);
    let client = reqwest::Client::new();
    wait_until("lines shipped with the token", 60, || async {
        let response = client
            .get(server.url("/logs/_count"))
            .bearer_auth("s3cret-token")
            .send()
            .await
            .expect("count");
        response.status() == 200
            && response.json::<Value>().await.expect("json")["count"].as_u64() == Some(20)
    })
    .await;
}

#[tokio::test]
async fn ships_over_https_to_a_server_with_a_private_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    // a private CA and a server certificate it signed, for 127.0.0.1
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (ca, ca_key, cert, key) = (
        path("ca.pem"),
        path("ca.key"),
        path("cert.pem"),
        path("key.pem"),
    );
    std::fs::write(
        path("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    for arguments in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=lookout test CA",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &path("leaf.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &path("leaf.csr"),
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &path("leaf.ext"),
            "-out",
            &cert,
        ],
    ] {
        let status = std::process::Command::new("openssl")
            .args(&arguments)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {arguments:?}");
    }
    let count_file = dir.path().join("received");
    let mut tls_server = KillOnDrop(
        std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/agent/tls_bulk_server.py"
            ))
            .args([&cert, &key])
            .arg(&count_file)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let port = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(tls_server.0.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        line.trim().trim_start_matches("listening on ").to_string()
    };
    let app = dir.path().join("app.json");
    append_lines(&app, "tls", 0..50);
    let config = agent_config(
        dir.path(),
        &format!("https://127.0.0.1:{port}"),
        &[&app.display().to_string()],
        &format!("tls_ca_file = {ca:?}"),
    );
    let agent = Agent::start(&config);
    wait_until("50 lines received over TLS", 60, || async {
        std::fs::read_to_string(&count_file).is_ok_and(|count| count == "50")
    })
    .await;
    drop(agent);
}

/// A helper process killed when the test ends, even by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// the proxy runs in this process while `Agent::start` blocks one thread
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_with_a_4xx_is_dead_lettered_not_retried_forever() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let faults = Arc::new(Mutex::new(Faults::default()));
    faults.lock().expect("faults").bulk_failures = [400].into_iter().collect();
    let proxy = start_proxy(Some(server.base.clone()), faults.clone()).await;
    let app = dir.path().join("app.json");
    let config = agent_config(dir.path(), &proxy, &[&app.display().to_string()], "");
    append_lines(&app, "refused", 0..10);
    let agent = Agent::start(&config);
    let dead_letters = dir.path().join("state/dead-letter/dead-letter.ndjson");
    wait_until("the refused batch is dead-lettered", 30, || async {
        std::fs::read_to_string(&dead_letters).map_or(0, |text| text.lines().count()) == 10
    })
    .await;
    let records = std::fs::read_to_string(&dead_letters).expect("dead letters");
    assert!(
        records.contains("try later"),
        "the server's reason is kept: {records}"
    );
    assert!(agent.log_contains("batch refused"));
    // what comes after ships normally
    append_lines(&app, "after", 0..5);
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(&server.seqs("logs").await, &[("after", 0..5)]);
}
