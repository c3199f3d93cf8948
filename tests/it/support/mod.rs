//! What the integration tests share; no test module imports from another. Here: the real
//! `lookout` binary on `127.0.0.1:0` with a temporary data directory (waiting for its
//! `listening on ADDR` line instead of sleeping), the agent beside it, bulk bodies, and
//! bounded waits. Beside it: [`access`] (keys of known tokens, callers acting for a
//! tenant), [`pki`] (a private CA for TLS), [`slack`] (the mock Slack receiver), [`slack_limits`]
//! (Slack's message limits), [`rules`] (servers running rules, lines that fire them, alert
//! history) and [`scrape`] (scrape targets on loopback); for paging, [`pagerduty`] (a
//! mock Events API v2), [`msteams`] (a mock Teams Workflows webhook) and [`smtp`] (a real
//! SMTP server, aiosmtpd).

pub mod access;
pub mod browser;
pub mod msteams;
pub mod pagerduty;
pub mod pki;
pub mod prometheus;
pub mod rules;
pub mod scrape;
pub mod slack;
pub mod slack_limits;
pub mod smtp;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    /// Everything the server wrote to stdout and stderr (its logs), line by line.
    pub output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `lookout serve` on `data_dir` with extra arguments.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_at(data_dir, "127.0.0.1:0", extra)
    }

    /// Starts `lookout serve` on a given address (to restart a server where its agents
    /// expect it).
    pub fn start_at(data_dir: &Path, listen: &str, extra: &[&str]) -> Server {
        Server::start_with_env(data_dir, listen, extra, &[])
    }

    /// Starts `lookout serve` with extra environment variables.
    pub fn start_with_env(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        lookout::install_tls_provider();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
            .envs(env.iter().copied())
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env(
                "LOOKOUT_LOG",
                env.iter()
                    .find(|(name, _)| *name == "LOOKOUT_LOG")
                    .map_or("warn", |(_, value)| *value),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lookout");
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("server: {line}");
                sink.lock().expect("output lock").push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout piped");
        let (sender, receiver) = mpsc::channel();
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("listening on ") {
                    let _ = sender.send(address.to_string());
                }
                sink.lock().expect("output lock").push(line);
            }
        });
        let address = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed `listening on`");
        Server {
            output,
            child,
            base: format!("http://{address}"),
            data_dir: data_dir.to_path_buf(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port` the server listens on.
    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Waits until an agent's acknowledged watermark passes `time` — every line written
    /// before `time` is then durable in the server — and makes it searchable.
    pub async fn wait_caught_up(&self, time: chrono::DateTime<chrono::Utc>) {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let (_, body) = self.get("/_lookout/agents").await;
            let caught_up = body["agents"].as_array().is_some_and(|agents| {
                agents.iter().any(|agent| {
                    agent["watermark"]
                        .as_str()
                        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
                        .is_some_and(|watermark| watermark > time)
                })
            });
            if caught_up {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no agent caught up with {time} within 90 s: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, body) = self.post_json("/_refresh", &serde_json::json!({})).await;
        assert_eq!(status, 200, "{body}");
    }

    /// How many times each `seq` of `index` is stored, per value of `file`.
    pub async fn seqs(&self, index: &str) -> std::collections::BTreeMap<(String, i64), usize> {
        let mut seqs = std::collections::BTreeMap::new();
        let (status, mut body) = self
            .post_json(
                &format!("/{index}/_search?scroll=1m"),
                &serde_json::json!({"size": 5000, "_source": ["seq", "file"]}),
            )
            .await;
        if status == 404 {
            return seqs; // nothing ever created the index
        }
        assert_eq!(status, 200, "{body}");
        loop {
            let hits = body["hits"]["hits"].as_array().expect("hits").clone();
            if hits.is_empty() {
                break;
            }
            for hit in &hits {
                let source = &hit["_source"];
                let key = (
                    source["file"].as_str().unwrap_or("").to_string(),
                    source["seq"].as_i64().expect("seq"),
                );
                *seqs.entry(key).or_insert(0) += 1;
            }
            let scroll_id = body["_scroll_id"].as_str().expect("scroll id").to_string();
            let (status, next) = self
                .post_json(
                    "/_search/scroll",
                    &serde_json::json!({"scroll": "1m", "scroll_id": scroll_id}),
                )
                .await;
            assert_eq!(status, 200, "{next}");
            body = next;
        }
        seqs
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        decode(response).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        decode(response).await
    }

    pub async fn post_ndjson(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("POST ndjson");
        decode(response).await
    }

    /// Lookout's own `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn count(&self, index: &str, query: &str) -> u64 {
        let (status, body) = self
            .get(&format!("/{index}/_count?q={}", urlencode(query)))
            .await;
        assert_eq!(status, 200, "{body}");
        body["count"].as_u64().expect("count")
    }

    /// `kill -9`: no shutdown path runs.
    pub fn kill(mut self) {
        kill(&mut self.child);
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        terminate(&mut self.child)
    }
}

/// `kill -9` and reap.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGTERM, wait, and the exit code.
fn terminate(child: &mut Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().ok().and_then(|status| status.code())
}

impl Drop for Server {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

pub async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// An RFC 3339 time `seconds_ago` before now.
pub fn ago(seconds_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(seconds_ago)).to_rfc3339()
}

/// NDJSON of `index` actions for `docs`.
pub fn bulk_body(index: &str, docs: &[Value]) -> String {
    let mut body = String::new();
    for doc in docs {
        body.push_str(&format!(
            "{{\"index\":{{\"_index\":\"{index}\"}}}}\n{doc}\n"
        ));
    }
    body
}

/// A running `lookout ship`, its stderr kept for assertions.
pub struct Agent {
    pub child: Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Agent {
    /// Starts `lookout ship --config CONFIG` and waits until it has found its server.
    pub fn start(config: &Path) -> Agent {
        Agent::spawn(Command::new(env!("CARGO_BIN_EXE_lookout")), config, true)
    }

    /// Starts the agent through `command` (e.g. `setpriv ... lookout`), waiting for it to
    /// find its server when `wait` is set.
    pub fn spawn(mut command: Command, config: &Path, wait: bool) -> Agent {
        let mut child = command
            .args(["ship", "--config"])
            .arg(config)
            .env("LOOKOUT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lookout ship");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (sender, receiver) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("agent started") {
                    let _ = sender.send(());
                }
                eprintln!("agent: {line}");
                sink.lock().expect("log lock").push(line);
            }
        });
        if wait {
            receiver
                .recv_timeout(Duration::from_secs(60))
                .expect("agent logged `agent started`");
        }
        Agent { child, log }
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .any(|line| line.contains(needle))
    }

    /// Whether one log line contains every one of `needles`.
    pub fn log_contains_all(&self, needles: &[&str]) -> bool {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .any(|line| needles.iter().all(|needle| line.contains(needle)))
    }

    /// The address the agent serves `/metrics` on, from its log.
    pub fn metrics_address(&self) -> Option<String> {
        let log = self.log.lock().expect("log lock");
        log.iter()
            .filter(|line| line.contains("agent metrics at /metrics"))
            .find_map(|line| line.split("address=").nth(1))
            .map(|rest| rest.split_whitespace().next().unwrap_or(rest).to_string())
    }

    /// Peak resident memory so far, KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        kill(&mut self.child);
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        terminate(&mut self.child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Writes `config/agent.toml`-style config tuned for tests (fast polls, short backoff).
pub fn agent_config(dir: &Path, to: &str, paths: &[&str], extra: &str) -> PathBuf {
    agent_config_with_input(dir, to, paths, extra, "")
}

/// [`agent_config`] with options of the input itself (`read_from`, `exclude`, …).
pub fn agent_config_with_input(
    dir: &Path,
    to: &str,
    paths: &[&str],
    extra: &str,
    input: &str,
) -> PathBuf {
    let path = dir.join("agent.toml");
    let patterns: Vec<String> = paths.iter().map(|pattern| format!("{pattern:?}")).collect();
    std::fs::write(
        &path,
        format!(
            "to = {to:?}\nstate_dir = {:?}\npoll_interval = \"50ms\"\nrescan_interval = \"500ms\"\nrotate_wait = \"1s\"\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\nheartbeat_interval = \"200ms\"\n{extra}\n[[inputs]]\npaths = [{}]\n{input}\n",
            dir.join("state").display().to_string(),
            patterns.join(", ")
        ),
    )
    .expect("write agent config");
    path
}

/// Appends lines `{"seq": N, "file": FILE, ...}` for `seqs` to `path`.
pub fn append_lines(path: &Path, file: &str, seqs: std::ops::Range<i64>) {
    use std::io::Write;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file");
    let mut text = String::new();
    for seq in seqs {
        text.push_str(&format!(
            "{{\"@timestamp\":\"{}\",\"seq\":{seq},\"file\":\"{file}\",\"message\":\"line {seq} of {file}\"}}\n",
            chrono::Utc::now().to_rfc3339()
        ));
    }
    out.write_all(text.as_bytes()).expect("append");
}

/// Asserts each `(file, seq)` of `expected` is stored exactly once and nothing else is.
pub fn assert_exactly_once(
    stored: &std::collections::BTreeMap<(String, i64), usize>,
    expected: &[(&str, std::ops::Range<i64>)],
) {
    let mut want = std::collections::BTreeMap::new();
    for (file, seqs) in expected {
        for seq in seqs.clone() {
            want.insert((file.to_string(), seq), 1usize);
        }
    }
    let missing: Vec<_> = want
        .keys()
        .filter(|key| !stored.contains_key(*key))
        .take(10)
        .collect();
    let duplicated: Vec<_> = stored
        .iter()
        .filter(|(_, count)| **count > 1)
        .take(10)
        .collect();
    let unexpected: Vec<_> = stored
        .keys()
        .filter(|key| !want.contains_key(*key))
        .take(10)
        .collect();
    assert!(
        missing.is_empty() && duplicated.is_empty() && unexpected.is_empty(),
        "missing {missing:?}, duplicated {duplicated:?}, unexpected {unexpected:?} (stored {}, expected {})",
        stored.len(),
        want.len()
    );
}

/// Polls `condition` every 50 ms until it holds; fails with `what` after `seconds`.
/// (Waiting on an observable outcome, bounded — not sleeping and hoping.)
pub async fn wait_until<F, Fut>(what: &str, seconds: u64, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {seconds} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves `router` on a loopback port; returns `host:port`.
pub async fn listen(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    address.to_string()
}
