use serde_json::json;

use crate::support::{Server, ago};

#[tokio::test]
async fn acknowledged_documents_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut body = String::new();
    for seq in 0..2000 {
        body.push_str(&format!(
            "{{\"index\":{{\"_index\":\"logs\"}}}}\n{}\n",
            json!({"@timestamp": ago(60), "seq": seq, "msg": "crash test"})
        ));
    }
    let (status, result) = server.post_ndjson("/_bulk", body).await;
    assert_eq!(status, 200);
    assert_eq!(result["errors"], false);
    // kill -9 right after the acknowledgment: no refresh, no commit, no shutdown path
    server.kill();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        server.count("logs", "*").await,
        2000,
        "every acknowledged document is back after replay"
    );
    assert_eq!(server.count("logs", "seq:1999").await, 1);
    // and replaying again (a second crash) does not duplicate anything
    server.kill();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.count("logs", "*").await, 2000);
}

#[tokio::test]
async fn replayed_agent_batches_are_noops_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let batch = |from: u64, to: u64| {
        let mut body = String::new();
        for offset in from..to {
            body.push_str(&format!(
                "{{\"index\":{{\"_index\":\"logs\",\"_lookout\":{{\"source\":\"2049:77:abc\",\"gen\":0,\"offset\":{}}}}}}}\n{}\n",
                (offset + 1) * 100,
                json!({"@timestamp": ago(30), "line": offset})
            ));
        }
        body
    };
    let server = Server::start(dir.path(), &[]);
    let (_, first) = server.post_ndjson("/_bulk", batch(0, 50)).await;
    assert_eq!(first["items"][0]["index"]["result"], "created");
    let (_, again) = server.post_ndjson("/_bulk", batch(0, 50)).await;
    assert!(
        again["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|item| item["index"]["result"] == "noop" && item["index"]["status"] == 200),
        "{again}"
    );
    server.kill();

    let server = Server::start(dir.path(), &[]);
    // an agent that crashed before saving its checkpoint resends an overlapping batch
    let (_, overlap) = server
        .post_ndjson("/_bulk?refresh=true", batch(40, 60))
        .await;
    let results: Vec<&str> = overlap["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["index"]["result"].as_str().expect("result"))
        .collect();
    assert_eq!(
        results.iter().filter(|result| **result == "noop").count(),
        10
    );
    assert_eq!(
        results
            .iter()
            .filter(|result| **result == "created")
            .count(),
        10
    );
    assert_eq!(
        server.count("logs", "*").await,
        60,
        "each line exactly once"
    );

    // a new truncation generation of the same file starts over
    let body = format!(
        "{{\"index\":{{\"_index\":\"logs\",\"_lookout\":{{\"source\":\"2049:77:abc\",\"gen\":1,\"offset\":100}}}}}}\n{}\n",
        json!({"line": "after copytruncate"})
    );
    let (_, result) = server.post_ndjson("/_bulk?refresh=true", body).await;
    assert_eq!(result["items"][0]["index"]["result"], "created");
}

#[tokio::test]
async fn sigterm_commits_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (status, _) = server
        .post_json("/logs/_doc", &json!({"msg": "before shutdown"}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.count("logs", "msg:shutdown").await, 1);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _server = Server::start(dir.path(), &[]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run second server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another Lookout process"),
        "{stderr}"
    );
}

#[tokio::test]
async fn agents_heartbeat_and_deregister() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (status, info) = server.get("/_lookout/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["protocol"], 1);
    let watermark = ago(1);
    let response = server
        .client
        .post(server.url("/_lookout/heartbeat"))
        .header("X-Lookout-Agent", "host-1")
        .header("X-Lookout-Watermark", &watermark)
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(response.status(), 200);
    let (_, agents) = server.get("/_lookout/agents").await;
    assert_eq!(agents["agents"][0]["id"], "host-1");
    assert_eq!(agents["agents"][0]["live"], true);
    let response = server
        .client
        .delete(server.url("/_lookout/agents/host-1"))
        .send()
        .await
        .expect("deregister");
    assert_eq!(response.status(), 200);
    let (_, agents) = server.get("/_lookout/agents").await;
    assert_eq!(agents["agents"], json!([]));
    let response = server
        .client
        .post(server.url("/_lookout/heartbeat"))
        .header("X-Lookout-Agent", "h")
        .header("X-Lookout-Watermark", "yesterday")
        .send()
        .await
        .expect("bad");
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn the_write_ahead_log_is_truncated_behind_commits_without_losing_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("small-wal.toml");
    // never search-idle: commits follow the refresh interval instead of waiting up to
    // search_idle_after (30 s, the deadline below: the test raced it under load)
    std::fs::write(
        &config,
        "[ingest]\nwal_segment_bytes = 4096\n[index]\nsearch_idle_after = \"0s\"\n",
    )
    .expect("config");
    let data = dir.path().join("data");
    let config_arg = config.to_str().expect("utf8").to_string();
    let server = Server::start(&data, &["--config", &config_arg]);
    let batch = |from: u64| {
        let mut body = String::new();
        for offset in from..from + 20 {
            body.push_str(&format!(
                "{{\"index\":{{\"_index\":\"logs\",\"_lookout\":{{\"source\":\"wal-test\",\"gen\":0,\"offset\":{}}}}}}}\n{}\n",
                offset + 1,
                json!({"@timestamp": ago(10), "line": offset, "padding": "p".repeat(200)})
            ));
        }
        body
    };
    for round in 0..30 {
        let (status, result) = server.post_ndjson("/_bulk", batch(round * 20)).await;
        assert_eq!(status, 200);
        assert_eq!(result["errors"], false);
    }
    let wal_segments = || {
        std::fs::read_dir(data.join("logs/wal"))
            .expect("wal dir")
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".wal"))
            .count()
    };
    let written = wal_segments();
    assert!(written > 10, "small segments rotate: {written}");
    // maintenance (every few seconds) deletes segments the index has committed
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while wal_segments() > 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "segments were not truncated: {} left",
            wal_segments()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // one more batch after truncation, then a crash
    let (_, result) = server.post_ndjson("/_bulk", batch(600)).await;
    assert_eq!(result["errors"], false);
    server.kill();

    let server = Server::start(&data, &["--config", &config_arg]);
    assert_eq!(
        server.count("logs", "*").await,
        620,
        "every line is there once after truncation, crash and replay"
    );
    // the high-water marks survived truncation through the snapshot
    let (_, again) = server.post_ndjson("/_bulk?refresh=true", batch(0)).await;
    assert!(
        again["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|item| item["index"]["result"] == "noop"),
        "{again}"
    );
    assert_eq!(server.count("logs", "*").await, 620);
}

#[tokio::test]
async fn overwrites_across_partitions_survive_a_crash_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = std::sync::Arc::new(Server::start(dir.path(), &[]));
    // 4 writers, each owning 50 ids, each id written 3 times with event times in three
    // different hours (three partitions); the last version must be the one that remains
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            for version in 1..=3 {
                let mut body = String::new();
                for key in 0..50 {
                    body.push_str(&format!(
                        "{{\"index\":{{\"_index\":\"logs\",\"_id\":\"w{writer}-k{key}\"}}}}\n{}\n",
                        json!({"@timestamp": ago(version * 3600 + 60), "version": version, "writer": writer})
                    ));
                }
                let (status, result) = server.post_ndjson("/_bulk", body).await;
                assert_eq!(status, 200);
                assert_eq!(result["errors"], false, "{result}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let server = std::sync::Arc::into_inner(server).expect("no other owners");
    server.kill();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.count("logs", "*").await, 200, "one document per id");
    assert_eq!(
        server.count("logs", "version:3").await,
        200,
        "the last version of each id"
    );
    let (_, doc) = server.get("/logs/_doc/w2-k7").await;
    assert_eq!(doc["_source"]["version"], 3);
}
