//! No request takes the server down (issue 20), through the real binary: hostile inputs
//! at and far past their limits, a subquery over ten years at one second, a panicking
//! handler and a panicking rule, slow and idle clients, thousands of connections, a huge
//! `_msearch`, a scroll held for 100 days. After each, the server still answers a normal
//! `_count`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, urlencode, wait_until};

/// A server on its own data directory and an empty rule directory, with `config`, the
/// test hooks on.
fn start(dir: &std::path::Path, config: &str) -> Server {
    let queries = dir.join("queries");
    std::fs::create_dir_all(&queries).expect("queries dir");
    let config_path = dir.join("lookout.toml");
    std::fs::write(&config_path, config).expect("config");
    Server::start_with_env(
        &dir.join("data"),
        "127.0.0.1:0",
        &[
            "--config",
            &config_path.display().to_string(),
            "--queries",
            &queries.display().to_string(),
        ],
        &[("LOOKOUT_TEST_HOOKS", "1")],
    )
}

/// The server is alive: it answers a `_count` (after whatever just happened).
async fn assert_alive(server: &Server) {
    let (status, body) = server.get("/_count?q=*").await;
    assert_eq!(status, 200, "the server answers a normal count: {body}");
}

async fn promql(server: &Server, query: &str) -> (u16, Value) {
    let response = server
        .client
        .post(server.url("/api/v1/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("query={}&time=1700000000", urlencode(query)))
        .send()
        .await
        .expect("query");
    crate::support::decode(response).await
}

/// The peak resident memory of the server so far (KiB), from `/proc`.
fn peak_rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn over_deep_queries_are_refused_and_the_server_lives_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "");
    // PromQL: the reproducers, at the limit (accepted) and far past it
    let depth = lookout::promql::depth::MAX_DEPTH;
    let at_limit = vec!["1"; depth].join("+");
    let (status, body) = promql(&server, &at_limit).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][1], json!(depth.to_string()));
    for query in [
        vec!["1"; 1000].join("+"),
        vec!["1"; 100_000].join("+"),
        format!("{}1{}", "(".repeat(3000), ")".repeat(3000)),
        format!("{}vector(1){}", "abs(".repeat(3000), ")".repeat(3000)),
        format!("{}1", "-".repeat(50_000)),
    ] {
        let (status, body) = promql(&server, &query).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["errorType"], "bad_data", "{body}");
        let error = body["error"].as_str().expect("error");
        assert!(error.contains("expression nests too deeply"), "{error}");
        assert_alive(&server).await;
    }
    let (status, body) = server
        .get(&format!(
            "/api/v1/series?match[]={}",
            urlencode(&format!("{}up{}", "(".repeat(3000), ")".repeat(3000)))
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    // Lucene in `q=` and in `query_string`, and the DSL
    let nested = |levels: usize| format!("{}a:1{}", "(".repeat(levels), ")".repeat(levels));
    let (status, body) = server
        .get(&format!("/_count?q={}", urlencode(&nested(100))))
        .await;
    assert_eq!(status, 200, "100 nested groups are accepted: {body}");
    let (status, body) = server
        .get(&format!("/_count?q={}", urlencode(&nested(3000))))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("nested groups")),
        "{body}"
    );
    let (status, body) = server
        .post_json(
            "/_search",
            &json!({"query": {"query_string": {"query": nested(5000)}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let deep_bool = (0..40).fold(
        json!({"match_all": {}}),
        |inner, _| json!({"bool": {"must": [inner]}}),
    );
    let (status, body) = server
        .post_json("/_search", &json!({"query": deep_bool}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("indices.query.max_nested_depth")),
        "{body}"
    );
    // a JSON body nested past serde_json's own limit
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let response = server
        .client
        .post(server.url("/_search"))
        .header("content-type", "application/json")
        .body(deep_json)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);
    assert_alive(&server).await;
}

#[tokio::test]
async fn a_subquery_over_ten_years_at_one_second_is_refused_before_it_holds_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "");
    let before = peak_rss_kib(&server);
    let started = Instant::now();
    let (status, body) = promql(&server, "max_over_time(vector(1)[10y:1s])").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution", "{body}");
    assert_eq!(
        body["error"],
        "query processing would load too many samples into memory in query execution"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused up front"
    );
    let growth_mib = peak_rss_kib(&server).saturating_sub(before) / 1024;
    assert!(growth_mib < 64, "RSS grew by {growth_mib} MiB");
    assert_alive(&server).await;
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "");
    for _ in 0..3 {
        let (status, body) = server.post_json("/_lookout/test/panic", &json!({})).await;
        assert_eq!(status, 500, "{body}");
        assert!(
            body["error"]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("panicked")),
            "{body}"
        );
        assert_alive(&server).await;
    }
    assert!(
        server
            .metrics()
            .await
            .contains("lookout_http_handler_panics_total 3"),
        "counted"
    );
}

#[tokio::test]
async fn a_panicking_rule_is_unhealthy_with_its_reason_and_the_others_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("queries dir");
    let rule = |labels: Value| {
        json!({
            "version": 1, "schedule": "* * * * * *", "index": "logs",
            "query": "status:500", "window": "1m",
            "threshold": {"op": ">", "value": 1000}, "labels": labels,
        })
        .to_string()
    };
    std::fs::write(
        queries.join("broken.json"),
        rule(json!({"lookout_test_panic": "yes"})),
    )
    .expect("rule");
    std::fs::write(queries.join("healthy.json"), rule(json!({}))).expect("rule");
    // and one whose PromQL nests too deeply: refused at load, never a crash at a tick
    let deep = vec!["1"; 5000].join("+");
    std::fs::write(
        queries.join("too_deep.json"),
        json!({"version": 1, "schedule": "* * * * * *", "promql": deep}).to_string(),
    )
    .expect("rule");
    let server = start(dir.path(), "");
    let rules = |body: &Value| -> Vec<Value> {
        body["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let mut evaluations_of_healthy = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.get("/api/v1/rules").await;
        assert_eq!(status, 200, "{body}");
        let all = rules(&body);
        let named = |name: &str| all.iter().find(|rule| rule["name"] == name).cloned();
        // refused at load: listed as a file in error, never evaluated
        let too_deep = named("too_deep").expect("every rule file is listed");
        assert_eq!(
            (&too_deep["health"], &too_deep["lastEvaluation"]),
            (&json!("err"), &json!("0001-01-01T00:00:00Z")),
            "refused at load: {body}"
        );
        if let (Some(broken), Some(healthy)) = (named("broken"), named("healthy"))
            && broken["health"] == "err"
        {
            assert!(
                broken["lastError"]
                    .as_str()
                    .is_some_and(|error| error.contains("panicked")),
                "{broken}"
            );
            evaluations_of_healthy.push(healthy["lastEvaluation"].clone());
            assert_eq!(healthy["health"], "ok", "{healthy}");
            let distinct: std::collections::BTreeSet<String> = evaluations_of_healthy
                .iter()
                .map(Value::to_string)
                .collect();
            if distinct.len() >= 3 {
                break; // the healthy rule kept its ticks while the other panicked
            }
        }
        assert!(Instant::now() < deadline, "not within 30 s: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server
            .output
            .lock()
            .expect("output")
            .iter()
            .any(|line| line.contains("too_deep") && line.contains("nests too deeply")),
        "the refusal is logged with its reason"
    );
    // the broken rule is evaluated again at every tick (it fails each time)
    let failures = |metrics: &str| {
        metrics
            .lines()
            .find(|line| {
                line.starts_with("lookout_rule_evaluation_failures_total{rule=\"broken\"}")
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let first = failures(&server.metrics().await);
    wait_until(
        "the panicking rule is retried at its next ticks",
        10,
        || async { failures(&server.metrics().await) >= first + 2 },
    )
    .await;
    assert_alive(&server).await;
}

#[tokio::test]
async fn a_huge_msearch_and_a_100_day_scroll_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "");
    let mut body = String::new();
    for _ in 0..50_000 {
        body.push_str("{}\n{\"size\":0}\n");
    }
    let response = server
        .client
        .post(server.url("/_msearch"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("send");
    let (status, answer) = crate::support::decode(response).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("split it"), "{answer}");
    let mut small = String::new();
    for _ in 0..3 {
        small.push_str("{}\n{\"size\":0}\n");
    }
    let response = server
        .client
        .post(server.url("/_msearch"))
        .header("content-type", "application/x-ndjson")
        .body(small)
        .send()
        .await
        .expect("send");
    let (status, answer) = crate::support::decode(response).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["responses"].as_array().map(Vec::len), Some(3));
    let (status, answer) = server.post_json("/_search?scroll=100d", &json!({})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("search.max_keep_alive")),
        "{answer}"
    );
    let (status, answer) = server.post_json("/_search?scroll=1m", &json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_alive(&server).await;
}

/// Reads until the server closes the connection (or `limit` passes); returns what it
/// sent and how long the connection lived.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn slow_header_idle_and_stalled_body_clients_are_cut_at_their_timeouts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(
        dir.path(),
        "[http]\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\nshutdown_timeout = \"2s\"\n",
    );
    let address = server.address().to_string();
    let slowloris = {
        let address = address.clone();
        std::thread::spawn(move || {
            // one header byte every 200 ms: never a whole head
            let mut stream = TcpStream::connect(&address).expect("connect");
            let started = Instant::now();
            for byte in
                b"GET /_count HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa"
            {
                if stream.write_all(&[*byte]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            started.elapsed()
        })
    };
    let idle = {
        let address = address.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(&address).expect("connect");
            read_until_closed(&mut stream, Duration::from_secs(10)).1
        })
    };
    let stalled = {
        let address = address.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(&address).expect("connect");
            stream
                .write_all(b"POST /_bulk HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{\"index\":{}}\n")
                .expect("write");
            read_until_closed(&mut stream, Duration::from_secs(10))
        })
    };
    let cut = slowloris.join().expect("slowloris");
    assert!(
        cut < Duration::from_secs(5),
        "the slow client was cut after {cut:?} instead of sending its 60 bytes over 12 s"
    );
    let lived = idle.join().expect("idle");
    assert!(
        lived >= Duration::from_millis(900) && lived < Duration::from_secs(5),
        "an idle connection closes at the timeout: {lived:?}"
    );
    let (answer, lived) = stalled.join().expect("stalled");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(lived < Duration::from_secs(5), "{lived:?}");
    assert_alive(&server).await;
    // SIGTERM with a request stuck in flight: the process ends within the shutdown
    // timeout rather than waiting for the client
    let mut stuck = TcpStream::connect(&address).expect("connect");
    stuck
        .write_all(b"POST /_bulk HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{")
        .expect("write");
    let started = Instant::now();
    let code = server.terminate();
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "stopped in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn thousands_of_connections_leave_bulk_and_search_working_and_the_excess_is_refused() {
    // this process needs the descriptors too
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(hard) = limit.maximum {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "[http]\nmax_connections = 2000\n");
    let held: Vec<TcpStream> = (0..1990)
        .map(|_| TcpStream::connect(server.address()).expect("connect"))
        .collect();
    let (status, body) = server
        .post_ndjson(
            "/logs/_bulk?refresh=wait_for",
            crate::support::bulk_body("logs", &[json!({"message": "still ingesting"})]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.count("logs", "message:ingesting").await, 1);
    // fill the budget; the next connections are answered 503 at once
    let more: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(server.address()).expect("connect"))
        .collect();
    let mut refused = 0;
    for mut stream in more {
        let (answer, lived) = read_until_closed(&mut stream, Duration::from_millis(300));
        if answer.starts_with("HTTP/1.1 503") {
            assert!(lived < Duration::from_millis(300));
            refused += 1;
        }
    }
    assert!(refused >= 20, "{refused} of 40 refused");
    drop(held);
    wait_until(
        "the server counts the refusals and serves again",
        10,
        || async {
            server
                .client
                .get(server.url("/metrics"))
                .send()
                .await
                .ok()
                .is_some()
        },
    )
    .await;
    assert!(
        server
            .metrics()
            .await
            .contains("lookout_http_requests_refused_total{reason=\"too_many_connections\"}"),
        "counted"
    );
    assert_alive(&server).await;
}

#[tokio::test]
async fn aggregations_count_their_empty_buckets_against_max_buckets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "");
    let docs: Vec<Value> = [0, 7200]
        .iter()
        .map(|seconds_ago| json!({"@timestamp": crate::support::ago(*seconds_ago), "message": "x"}))
        .collect();
    let (status, body) = server
        .post_ndjson(
            "/logs/_bulk?refresh=wait_for",
            crate::support::bulk_body("logs", &docs),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let histogram = |interval: &str, bounds: Option<(i64, i64)>| {
        let mut histogram =
            json!({"field": "@timestamp", "fixed_interval": interval, "min_doc_count": 0});
        if let Some((min, max)) = bounds {
            histogram["extended_bounds"] = json!({"min": min, "max": max});
        }
        json!({"size": 0, "aggs": {"over_time": {"date_histogram": histogram}}})
    };
    // two hours of data at 1 s: 7 201 buckets, fine; at 100 ms: 72 001, too many
    let (status, body) = server
        .post_json("/logs/_search", &histogram("1s", None))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .post_json("/logs/_search", &histogram("100ms", None))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["type"], "too_many_buckets_exception",
        "{body}"
    );
    // ten years of empty buckets at one second
    let now_ms = chrono::Utc::now().timestamp_millis();
    let before = peak_rss_kib(&server);
    let ten_years_ms = 10 * 365 * 86_400_000_i64;
    let (status, body) = server
        .post_json(
            "/logs/_search",
            &histogram("1s", Some((now_ms - ten_years_ms, now_ms))),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let growth_mib = peak_rss_kib(&server).saturating_sub(before) / 1024;
    assert!(growth_mib < 600, "RSS grew by {growth_mib} MiB");
    assert_alive(&server).await;
}

#[tokio::test]
async fn a_query_whose_client_leaves_is_stopped_and_frees_its_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(
        dir.path(),
        "[metrics]\nquery_max_concurrency = 1\nquery_max_queued = 0\nquery_timeout = \"10m\"\n",
    );
    // ≈ 11 M subquery steps: seconds of work, far more than the test waits for
    let heavy = urlencode("count_over_time(vector(1)[3h:1ms])");
    let mut client = TcpStream::connect(server.address()).expect("connect");
    write!(
        client,
        "GET /api/v1/query?query={heavy}&time=1700000000 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .expect("send");
    // (watched on /metrics: a probing query could take the slot first)
    wait_until("the heavy query runs", 30, || async {
        server
            .metrics()
            .await
            .contains("lookout_queries_running{pool=\"promql\"} 1\n")
    })
    .await;
    // it holds the one slot: a small query is refused while it runs
    assert_eq!(promql(&server, "1").await.0, 503);
    drop(client);
    wait_until(
        "the query is cancelled once its client left",
        30,
        || async {
            server
                .metrics()
                .await
                .contains("lookout_queries_cancelled_total{pool=\"promql\"} 1\n")
        },
    )
    .await;
    let (status, body) = promql(&server, "1").await;
    assert_eq!(status, 200, "the slot is free again: {body}");
    assert_alive(&server).await;
}
