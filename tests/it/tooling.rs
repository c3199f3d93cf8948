//! Real tools against the real server: the official Elasticsearch Python client, and
//! strace watching the ordering of the write-ahead log's fsync and the acknowledgment.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{Server, ago};

#[tokio::test]
async fn the_official_elasticsearch_python_client_works_unmodified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/es_client/check.py");
    let base = server.base.clone();
    let output =
        tokio::task::spawn_blocking(move || Command::new("python3").arg(script).arg(base).output())
            .await
            .expect("join")
            .expect("python3 runs (scripts/test installs it with the `elasticsearch` package)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the ES client checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[tokio::test]
async fn the_python_client_uses_scoped_keys_as_api_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = crate::support::access::serve_with_config(
        dir.path(),
        &(crate::support::access::key_table("shipper", "ingest", "", "py-ingest-token")
            + &crate::support::access::key_table("reader", "read", "", "py-read-token")),
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/es_client/api_key.py");
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .args([base.as_str(), "py-ingest-token", "py-read-token"])
            .output()
    })
    .await
    .expect("join")
    .expect("python3 runs (scripts/test installs it with the `elasticsearch` package)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the API key checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all api key checks passed"), "{stdout}");
}

/// A `kill -9` cannot prove this (the page cache survives it), so strace watches the
/// syscalls: the response to a `_bulk` request is written only after an `fdatasync` of the
/// write-ahead log has returned.
#[tokio::test]
async fn the_acknowledgment_waits_for_the_write_ahead_log_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("trace.txt");
    let mut child = Command::new("strace")
        .args([
            "-f",
            "-ttt",
            "-T",
            "-y",
            "-s",
            "128",
            "-e",
            "trace=fdatasync,fsync,write,writev,sendto,sendmsg",
            "-o",
        ])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_lookout"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("LOOKOUT_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("strace is installed (scripts/test installs it)");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines.next().expect("server output").expect("line");
        if let Some(address) = line.strip_prefix("listening on ") {
            break address.to_string();
        }
    };
    lookout::install_tls_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let body = format!(
        "{{\"index\":{{\"_index\":\"logs\"}}}}\n{}\n",
        json!({"@timestamp": ago(1), "marker": "fsync-order"})
    );
    let response = client
        .post(format!("http://{address}/_bulk"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("bulk");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    assert!(text.contains("\"errors\":false"), "{text}");
    // strace does not pass signals on: stop the traced server, its child
    let _ = Command::new("pkill")
        .args(["-TERM", "-P", &child.id().to_string()])
        .status();
    let _ = child.wait();

    let trace = std::fs::read_to_string(&trace).expect("trace written");
    // completion time of every fdatasync/fsync on a .wal file
    let mut wal_syncs_done: Vec<f64> = Vec::new();
    let mut pending: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut response_at: Option<f64> = None;
    for line in trace.lines() {
        // `PID  TIME SYSCALL…`; strace pads the pid column with extra spaces
        let mut parts = line.split_whitespace();
        let (Some(pid), Some(time)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(rest) = line.split_once(time).map(|(_, rest)| rest.trim_start()) else {
            continue;
        };
        let Ok(time) = time.parse::<f64>() else {
            continue;
        };
        let duration = rest
            .rsplit('<')
            .next()
            .and_then(|tail| tail.trim_end_matches('>').parse::<f64>().ok())
            .unwrap_or(0.0);
        let is_wal_sync = (rest.starts_with("fdatasync(") || rest.starts_with("fsync("))
            && rest.contains(".wal>");
        if is_wal_sync && rest.contains("<unfinished ...>") {
            pending.insert(pid.to_string(), true);
        } else if is_wal_sync {
            wal_syncs_done.push(time + duration);
        } else if rest.starts_with("<... fdatasync resumed>")
            || rest.starts_with("<... fsync resumed>")
        {
            if pending.remove(pid).is_some() {
                wal_syncs_done.push(time);
            }
        } else if response_at.is_none() && rest.contains("\\\"errors\\\":false") {
            response_at = Some(time);
        }
    }
    let response_at =
        response_at.unwrap_or_else(|| panic!("the bulk response write is in the trace:\n{trace}"));
    assert!(
        wal_syncs_done.iter().any(|done| *done <= response_at),
        "no write-ahead log fsync finished before the response was written at {response_at}; syncs finished at {wal_syncs_done:?}"
    );
}

#[tokio::test]
async fn retention_drops_whole_old_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keep_long = dir.path().join("long.toml");
    std::fs::write(&keep_long, "[index]\nretention = \"4h\"\n").expect("config");
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", keep_long.to_str().expect("utf8")]);
    let old = format!(
        "{{\"index\":{{}}}}\n{}\n",
        json!({"@timestamp": ago(150 * 60), "age": "old"})
    );
    let new = format!(
        "{{\"index\":{{}}}}\n{}\n",
        json!({"@timestamp": ago(60), "age": "new"})
    );
    let (_, result) = server
        .post_ndjson("/logs/_bulk?refresh=true", format!("{old}{new}"))
        .await;
    assert_eq!(result["errors"], false);
    assert_eq!(server.count("logs", "*").await, 2);
    let partitions = |path: &std::path::Path| {
        std::fs::read_dir(path.join("logs/indices/logs"))
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with('p'))
            .count()
    };
    assert_eq!(partitions(&data), 2);
    drop(server);

    let keep_short = dir.path().join("short.toml");
    std::fs::write(&keep_short, "[index]\nretention = \"1h\"\n").expect("config");
    let server = Server::start(&data, &["--config", keep_short.to_str().expect("utf8")]);
    // maintenance runs every few seconds: wait for the whole observable outcome (search,
    // disk and counter: searches stop seeing a partition just before its directory goes),
    // bounded
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let count = server.count("logs", "*").await;
        let on_disk = partitions(&data);
        let metrics = server.metrics().await;
        let counted = metrics.contains("lookout_index_retention_dropped_partitions_total 1\n");
        if count == 1 && on_disk == 1 && counted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not drop the old partition within 30 s: {count} documents, \
             {on_disk} partition directories, metrics:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.count("logs", "age:new").await, 1);
}

/// `serve` once created its data directory before finding its port taken; it now fails
/// on the port first, leaving nothing behind, and a server that starts prints its UI.
#[test]
fn serve_fails_on_a_taken_port_before_creating_anything_and_prints_its_ui() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let data = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["serve", "--listen", &address, "--data-dir"])
        .arg(&data)
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
    assert!(!data.exists(), "the data directory was created");
    drop(taken);

    let server = Server::start(&data, &[]);
    // the output is read by another thread: it may lag behind the listening socket
    let wanted = format!("web UI at {}/ui/", server.base);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let printed = server.output.lock().expect("output").clone();
        if printed.iter().any(|line| line.contains(&wanted)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{printed:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// An idle agent whose server went away said nothing at the default log level; it now
/// warns once when its heartbeats start failing.
#[tokio::test]
async fn an_idle_agent_says_when_its_server_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let pattern = logs.join("*.json").display().to_string();
    let config = crate::support::agent_config(dir.path(), &server.base, &[&pattern], "");
    let agent = crate::support::Agent::start(&config);
    server.kill();
    crate::support::wait_until("the agent warns that heartbeats fail", 30, || {
        std::future::ready(agent.log_contains("the server does not answer heartbeats"))
    })
    .await;
    agent.kill();
}
