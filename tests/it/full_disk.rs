//! A full disk is a degraded mode, not an outage (DESIGN §8a), on a real small file
//! system: the data directory lives on a tmpfs mounted for the test (`mount -t tmpfs -o
//! size=…`, which needs root: CI runs as root, so a failure to mount fails the test unless
//! `LOOKOUT_SKIP_MOUNT_TESTS=1` says to skip it). Filling it makes every write of the
//! server fail with `ENOSPC` for real. Failures a tmpfs cannot produce (a failed fsync)
//! come from the log's test hook (`LOOKOUT_TEST_HOOKS=1`, see `ingest::wal`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::support::slack::{MockSlack, start_mock};
use crate::support::{
    Agent, Server, agent_config, append_lines, assert_exactly_once, bulk_body, wait_until,
};

/// A tmpfs mounted at a directory, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount`'s syntax, e.g. `16m`) at `path`, or says why not.
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|error| error.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Writes zeros into `filler` until the file system is full.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).expect("create filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        // the last bytes, below one chunk
        while file.write(&[0u8; 512]).is_ok_and(|written| written > 0) {}
        let _ = file.sync_all();
        filler
    }

    fn free_bytes(&self) -> u64 {
        let stats = rustix::fs::statvfs(&self.path).expect("statvfs");
        stats.f_bavail * stats.f_frsize
    }
}

/// Mounts a tmpfs, or returns `None` (the test skips) when it cannot be mounted and
/// `LOOKOUT_SKIP_MOUNT_TESTS=1`; otherwise a failure to mount fails the test.
fn mount_or_skip(path: &Path, size: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(path, size) {
        Ok(tmpfs) => Some(tmpfs),
        Err(reason) if std::env::var("LOOKOUT_SKIP_MOUNT_TESTS").as_deref() == Ok("1") => {
            eprintln!("skipped (LOOKOUT_SKIP_MOUNT_TESTS=1): cannot mount a tmpfs ({reason})");
            None
        }
        Err(reason) => panic!(
            "cannot mount a tmpfs at `{}` ({reason}); these tests need root, or set LOOKOUT_SKIP_MOUNT_TESTS=1 to skip them",
            path.display()
        ),
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Server config for the tests: a 1 MiB watermark checked every 100 ms, and `target`
/// scraped every 250 ms.
fn config(dir: &Path, target: &str) -> PathBuf {
    let path = dir.join("lookout.toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\nmin_free_bytes = 1048576\nmin_free_percent = 0.0\ncheck_interval = \"100ms\"\n\n[index]\nrefresh_interval = \"100ms\"\n\n[[scrape_configs]]\njob_name = \"app\"\nscrape_interval = \"250ms\"\n[[scrape_configs.static_configs]]\ntargets = [\"{target}\"]\n"
        ),
    )
    .expect("config");
    path
}

/// A rule that fires on any `status:500` in its 2-second window, checked every second.
fn rule(dir: &Path) -> PathBuf {
    let queries = dir.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::write(
        queries.join("disk_500s.json"),
        json!({
            "version": 1,
            "schedule": "* * * * * *",
            "index": "logs",
            "query": "status:500",
            "window": "2s",
            "threshold": {"op": ">", "value": 0},
            "severity": "critical",
            "summary": "{{ $count }} HTTP 500s",
        })
        .to_string(),
    )
    .expect("rule");
    queries
}

fn start(
    dir: &Path,
    data: &Path,
    listen: &str,
    target: &str,
    queries: &Path,
    webhook: &str,
) -> Server {
    Server::start_with_env(
        data,
        listen,
        &[
            "--config",
            &config(dir, target).display().to_string(),
            "--queries",
            &queries.display().to_string(),
        ],
        &[("SLACK_WEBHOOK_URL", webhook), ("LOOKOUT_LOG", "warn")],
    )
}

fn unlogged_samples(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("lookout_tsdb_samples_unlogged_total "))
        .and_then(|value| value.parse().ok())
        .expect("lookout_tsdb_samples_unlogged_total")
}

/// When the (only) target was last scraped.
async fn last_scrape(server: &Server) -> String {
    let (status, body) = server.get("/api/v1/targets").await;
    assert_eq!(status, 200, "{body}");
    body["data"]["activeTargets"][0]["lastScrape"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The scraped `app_requests_total` through PromQL (empty when absent).
async fn scraped_value(server: &Server) -> String {
    let (status, body) = server.get("/api/v1/query?query=app_requests_total").await;
    assert_eq!(status, 200, "{body}");
    body["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn degraded(server: &Server) -> bool {
    server
        .metrics()
        .await
        .contains("\nlookout_storage_degraded 1")
}

async fn post_docs(
    server: &Server,
    docs: &[serde_json::Value],
    refresh: bool,
) -> (u16, serde_json::Value) {
    let path = if refresh {
        "/_bulk?refresh=true"
    } else {
        "/_bulk"
    };
    server.post_ndjson(path, bulk_body("logs", docs)).await
}

fn docs(
    kind: &str,
    count: usize,
    status: u16,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<serde_json::Value> {
    (0..count)
        .map(|number| json!({"@timestamp": at.to_rfc3339(), "kind": kind, "number": number, "status": status}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_searching_and_alerting_and_resumes_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let Some(tmpfs) = mount_or_skip(&data, "24m") else {
        return;
    };
    let queries = rule(dir.path());
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let target = crate::support::scrape::target("app_requests_total 7\n").await;
    let server = start(
        dir.path(),
        &data,
        "127.0.0.1:0",
        &target,
        &queries,
        &webhook,
    );
    let address = server.address().to_string();

    // an agent ships a file (its state lives outside the small disk)
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let app_log = logs.join("app.json");
    append_lines(&app_log, "app", 0..50);
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).expect("mkdir");
    let agent = Agent::start(&agent_config(
        &agent_dir,
        &server.base,
        &[&app_log.display().to_string()],
        "index = \"app\"",
    ));
    server.wait_caught_up(chrono::Utc::now()).await;

    // acknowledged before the disk fills: 500s stamped a few seconds ahead (the rule
    // fires on them while the disk is full), made searchable; and plain documents only
    // acknowledged (in the write-ahead log, maybe not committed)
    let soon = chrono::Utc::now() + chrono::Duration::seconds(4);
    let (status, body) = post_docs(&server, &docs("alert", 10, 500, soon), true).await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    let (status, body) =
        post_docs(&server, &docs("plain", 20, 200, chrono::Utc::now()), false).await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");

    let filler = tmpfs.fill();
    assert!(tmpfs.free_bytes() < 64 * 1024, "the disk is full");
    wait_until("storage degraded", 10, || degraded(&server)).await;
    let full_since = tokio::time::Instant::now();

    // ingest is refused with 429 and a reason that says what to do
    let (status, body) =
        post_docs(&server, &docs("refused", 5, 200, chrono::Utc::now()), false).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "cluster_block_exception", "{body}");
    let reason = body["error"]["reason"].as_str().expect("reason");
    assert!(reason.contains("flood-stage watermark"), "{reason}");
    assert!(
        reason.contains("free space under the data directory"),
        "{reason}"
    );
    assert!(reason.contains(&data.display().to_string()), "{reason}");
    // the agent keeps its place: lines written now are shipped once space is back
    append_lines(&app_log, "app", 50..80);

    // health says why; search and count still answer
    let (status, health) = server.get("/_cluster/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "yellow", "{health}");
    assert!(health["lookout"]["reason"].as_str().is_some(), "{health}");
    assert!(server.count("logs", "kind:alert").await == 10);
    let (status, found) = server.get("/logs/_search?q=status:500&size=1").await;
    assert_eq!(status, 200, "{found}");

    // the rule fires and resolves on the full disk; both messages are delivered
    wait_until(
        "the firing message",
        30,
        crate::support::slack::delivered(&mock, 1),
    )
    .await;
    wait_until(
        "the resolved message",
        30,
        crate::support::slack::delivered(&mock, 2),
    )
    .await;
    let messages: Vec<String> = mock
        .lock()
        .expect("mock")
        .delivered
        .iter()
        .map(|payload| payload.to_string())
        .collect();
    assert!(messages[0].contains("[FIRING] disk_500s"), "{messages:?}");
    assert!(
        mock.lock().expect("mock").received[0].0 > full_since,
        "the alert fired while the disk was full"
    );
    assert!(messages[1].contains("[RESOLVED] disk_500s"), "{messages:?}");
    // the history cannot be indexed yet: it is held, and served from memory
    let transitions = |events: Vec<serde_json::Value>| -> Vec<String> {
        events
            .iter()
            .filter(|event| event["type"] == "transition")
            .filter_map(|event| event["to"].as_str().map(str::to_string))
            .collect()
    };
    wait_until("the held history shows both transitions", 10, || async {
        transitions(crate::support::rules::history(&server, "disk_500s").await).len() >= 2
    })
    .await;
    let held = transitions(crate::support::rules::history(&server, "disk_500s").await);
    assert_eq!(held, ["resolved", "firing"], "newest first");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("lookout_ingest_batches_refused_total{reason=\"low_space\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nlookout_storage_free_bytes "),
        "{metrics}"
    );
    // scrapes go on into the head, unlogged and counted; PromQL answers from it
    wait_until("scraped samples kept unlogged", 10, || async {
        unlogged_samples(&server.metrics().await) > 0
    })
    .await;
    assert_eq!(scraped_value(&server).await, "7");

    // kill -9 on the full disk, and a start on the still-full disk: read-only, serving
    server.kill();
    let server = start(dir.path(), &data, &address, &target, &queries, &webhook);
    wait_until("storage degraded after the restart", 10, || {
        degraded(&server)
    })
    .await;
    assert!(server.count("logs", "kind:alert").await == 10);
    let (status, body) =
        post_docs(&server, &docs("refused", 5, 200, chrono::Utc::now()), false).await;
    assert_eq!(status, 429, "{body}");
    let (status, health) = server.get("/_cluster/health").await;
    assert_eq!(
        (status, &health["status"]),
        (200, &json!("yellow")),
        "{health}"
    );

    // space comes back: writes resume by themselves, nothing acknowledged is missing
    std::fs::remove_file(&filler).expect("free space");
    wait_until("writes accepted again", 30, || async {
        post_docs(&server, &docs("after", 1, 200, chrono::Utc::now()), false)
            .await
            .0
            == 200
    })
    .await;
    let (status, _) = server.post_json("/_refresh", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(server.count("logs", "kind:alert").await, 10);
    assert_eq!(server.count("logs", "kind:plain").await, 20);
    assert_eq!(server.count("logs", "kind:refused").await, 0);
    // (the history held by the killed server was lost with it, as documented; the
    // restarted one indexes what it records)
    assert!(!degraded(&server).await);
    // the metrics log is written again: samples stop being counted as unlogged
    wait_until("a scrape after the recovery", 10, || async {
        scraped_value(&server).await == "7"
    })
    .await;
    let before = unlogged_samples(&server.metrics().await);
    // two scrapes later, at least one was appended whole after `before`
    for _ in 0..2 {
        let scraped = last_scrape(&server).await;
        wait_until("the next scrape", 10, || async {
            last_scrape(&server).await != scraped
        })
        .await;
    }
    assert_eq!(unlogged_samples(&server.metrics().await), before);

    // the agent backed off through the 429s and the restart, and kept its place
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(&server.seqs("app").await, &[("app", 0..80)]);
    drop(agent);
    drop(server);
    drop(tmpfs);
}

/// `_bulk` body of agent-protocol lines `offsets` of one file, each about 1 KiB.
fn agent_batch(offsets: std::ops::Range<u64>) -> String {
    let padding = "x".repeat(1000);
    offsets
        .map(|offset| {
            format!(
                "{{\"index\":{{\"_index\":\"logs\",\"_lookout\":{{\"source\":\"2049:77:abc\",\"gen\":1,\"offset\":{offset}}}}}}}\n{}\n",
                json!({"@timestamp": chrono::Utc::now().to_rfc3339(), "offset": offset, "padding": padding})
            )
        })
        .collect()
}

// With no watermark (0 bytes) nothing refuses a batch before it reaches the write-ahead
// log, so this exercises the failed write itself: `ENOSPC` on the log's append or fsync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failing_for_lack_of_space_is_never_acknowledged_nor_taken_for_a_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let Some(tmpfs) = mount_or_skip(&data, "16m") else {
        return;
    };
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        "[storage]\nmin_free_bytes = 0\nmin_free_percent = 0.0\ncheck_interval = \"100ms\"\n",
    )
    .expect("config");
    let server = Server::start(&data, &["--config", &config.display().to_string()]);
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", agent_batch(1..11))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");

    let filler = tmpfs.fill();
    // about 2 MiB of lines: the log cannot take them
    let (status, body) = server.post_ndjson("/_bulk", agent_batch(11..2011)).await;
    assert_eq!(
        status, 429,
        "a batch that is not durable is not acknowledged: {body}"
    );
    assert_eq!(body["error"]["type"], "cluster_block_exception", "{body}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("lookout_storage_write_failures_total{what=\"ingest write-ahead log\"}"),
        "{metrics}"
    );

    // space back: the same batch (an agent's retry) is written, not answered `noop` by
    // the high-water mark the failed attempt had raised
    std::fs::remove_file(&filler).expect("free space");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let accepted = loop {
        let (status, body) = server.post_ndjson("/_bulk", agent_batch(11..2011)).await;
        if status == 200 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retried batch is not accepted within 30 s: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let items = accepted["items"].as_array().expect("items");
    assert!(
        items
            .iter()
            .all(|item| item["index"]["result"] == "created"),
        "{}",
        &accepted.to_string()[..500.min(accepted.to_string().len())]
    );
    let (status, _) = server.post_json("/_refresh", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(server.count("logs", "*").await, 2010);
    drop(server);
    drop(tmpfs);
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

// Regression: a batch whose lines were all at or below a high-water mark was answered
// `noop` at once, even when the record that raised the mark was not durable yet; that
// record then failed, its mark went back, and the lines the agent was told it need not
// resend were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_is_not_answered_noop_before_the_record_that_made_it_one_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        "[storage]\nmin_free_bytes = 0\nmin_free_percent = 0.0\ncheck_interval = \"100ms\"\n",
    )
    .expect("config");
    let server = Server::start_with_env(
        &data,
        "127.0.0.1:0",
        &["--config", &config.display().to_string()],
        &[("LOOKOUT_TEST_HOOKS", "1")],
    );
    let (status, body) = server.post_ndjson("/_bulk", agent_batch(1..11)).await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");

    // the log's fsync waits: the next batch is decided (its mark raised) but not durable
    let wal = data.join("logs/wal");
    let hold = wal.join(lookout::ingest::wal::HOLD_SYNC);
    std::fs::write(&hold, b"").expect("hold the fsync");
    let original = server.post_ndjson("/_bulk", agent_batch(11..21));
    let retry = async {
        wait_until("the original batch decided", 10, || async {
            counter(&server.metrics().await, "lookout_ingest_docs_total") >= 20
        })
        .await;
        // an agent's retry of the same lines (its first attempt timed out)
        server.post_ndjson("/_bulk", agent_batch(11..21)).await
    };
    let fail = async {
        wait_until("the retry decided as noop", 10, || async {
            counter(&server.metrics().await, "lookout_ingest_noop_total") >= 10
        })
        .await;
        // then the fsync of the original fails
        std::fs::write(wal.join(lookout::ingest::wal::FAIL_SYNC), b"").expect("fail");
        std::fs::remove_file(&hold).expect("release the fsync");
    };
    let ((original_status, original_body), (retry_status, retry_body), ()) =
        tokio::join!(original, retry, fail);
    assert_eq!(original_status, 429, "{original_body}");
    assert_eq!(
        retry_status, 429,
        "the retry was answered before the record it relied on failed: {retry_body}"
    );

    // the disk works again: the agent's next retry is written, not taken for a duplicate
    std::fs::remove_file(wal.join(lookout::ingest::wal::FAIL_SYNC)).expect("heal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let accepted = loop {
        let (status, body) = server.post_ndjson("/_bulk", agent_batch(11..21)).await;
        if status == 200 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retried batch is not accepted within 30 s: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let items = accepted["items"].as_array().expect("items");
    assert!(
        items
            .iter()
            .all(|item| item["index"]["result"] == "created"),
        "{accepted}"
    );
    let (status, _) = server.post_json("/_refresh", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(server.count("logs", "*").await, 20);
}

/// `_bulk` body of documents `ids`, each at `at` plus its hour in `hours`.
fn hourly_docs(ids: &[&str], hours: &[i64], at: chrono::DateTime<chrono::Utc>) -> String {
    ids.iter()
        .zip(hours)
        .map(|(id, hour)| {
            let time = at + chrono::Duration::hours(*hour);
            format!(
                "{{\"index\":{{\"_index\":\"logs\"}}}}\n{}\n",
                json!({"@timestamp": time.to_rfc3339(), "name": id})
            )
        })
        .collect()
}

// Regression: the recovery after a failed index write replayed the log into more hourly
// partitions than `index.max_open_writers`; evicting a writer committed it labelled with
// the sequence of records the discarded writers had held, the rest of the replay skipped
// that partition and acknowledged documents were lost (`["b5"]` missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovery_after_a_failed_index_write_keeps_every_acknowledged_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // only the index is on the small file system: the log keeps working
    let Some(tmpfs) = mount_or_skip(&data.join("logs/indices"), "4m") else {
        return;
    };
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        "[storage]\nmin_free_bytes = 0\nmin_free_percent = 0.0\ncheck_interval = \"100ms\"\n\n[index]\nrefresh_interval = \"1h\"\nmax_open_writers = 4\n",
    )
    .expect("config");
    let server = Server::start(&data, &["--config", &config.display().to_string()]);
    let start = chrono::Utc::now() - chrono::Duration::hours(12);
    // five hourly partitions, the first written again last: more than max_open_writers
    let ids = ["b0", "b1", "b2", "b3", "b4", "b5"];
    let (status, body) = server
        .post_ndjson("/_bulk", hourly_docs(&ids, &[0, 1, 2, 3, 4, 0], start))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");

    // the index's disk fills: a document for a new partition fails in the index, after
    // the log made it durable (acknowledged)
    let filler = tmpfs.fill();
    let (status, body) = server
        .post_ndjson("/_bulk", hourly_docs(&["c0"], &[6], start))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    wait_until("storage degraded", 10, || degraded(&server)).await;

    // space back: the recovery replays the log
    std::fs::remove_file(&filler).expect("free space");
    wait_until("storage recovered", 30, || async {
        !degraded(&server).await
    })
    .await;
    let (status, _) = server.post_json("/_refresh", &json!({})).await;
    assert_eq!(status, 200);
    let mut missing = Vec::new();
    for id in ids.iter().chain(&["c0"]) {
        if server.count("logs", &format!("name:{id}")).await != 1 {
            missing.push(*id);
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged records missing after recovery: {missing:?}"
    );
    // and they stay after a restart (the commits' labels are right)
    drop(server);
    let server = Server::start(&data, &["--config", &config.display().to_string()]);
    for id in ids.iter().chain(&["c0"]) {
        assert_eq!(server.count("logs", &format!("name:{id}")).await, 1, "{id}");
    }
    drop(server);
    drop(tmpfs);
}

// Regression: when cutting an abandoned log segment back failed, the recovery opened a
// fresh segment anyway; the never-acknowledged records left in the abandoned one were
// replayed at the next start (or its torn tail refused the start as corrupt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_segment_cut_keeps_storage_degraded_until_it_is_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        "[storage]\nmin_free_bytes = 0\nmin_free_percent = 0.0\ncheck_interval = \"100ms\"\n",
    )
    .expect("config");
    let start = || {
        Server::start_with_env(
            &data,
            "127.0.0.1:0",
            &["--config", &config.display().to_string()],
            &[("LOOKOUT_TEST_HOOKS", "1")],
        )
    };
    let server = start();
    let wal = data.join("logs/wal");
    let (status, body) = server.post_ndjson("/_bulk", agent_batch(1..11)).await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");

    // the fsync fails and so does the cut of the segment back to its durable length
    std::fs::write(wal.join(lookout::ingest::wal::FAIL_SYNC), b"").expect("fail");
    std::fs::write(wal.join(lookout::ingest::wal::FAIL_CUT), b"").expect("fail");
    let (status, body) = server.post_ndjson("/_bulk", agent_batch(11..21)).await;
    assert_eq!(status, 429, "{body}");
    std::fs::remove_file(wal.join(lookout::ingest::wal::FAIL_SYNC)).expect("heal");
    // the recovery waits for the cut: writes stay refused
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        degraded(&server).await,
        "recovered before the segment was cut"
    );
    std::fs::remove_file(wal.join(lookout::ingest::wal::FAIL_CUT)).expect("heal");
    wait_until("storage recovered", 30, || async {
        !degraded(&server).await
    })
    .await;

    // a restart replays nothing of the refused batch
    server.kill();
    let server = start();
    let (status, _) = server.post_json("/_refresh", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(server.count("logs", "*").await, 10);
}
