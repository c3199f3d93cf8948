//! A real Prometheus (Debian's 2.42, `/usr/bin/prometheus`) on loopback: a remote-write
//! receiver (`--web.enable-remote-write-receiver`) or a scraper of Lookout's `/federate`,
//! with its TSDB in a temporary directory; started, stopped and restarted on the same
//! port and storage, waiting on `/-/ready` rather than sleeping.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const BINARY: &str = "/usr/bin/prometheus";

pub struct Prometheus {
    child: Option<Child>,
    pub port: u16,
    storage: PathBuf,
    config: PathBuf,
    client: reqwest::Client,
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

impl Prometheus {
    /// Starts Prometheus on `port` with `config` (prometheus.yml text) and its TSDB in
    /// `dir`.
    pub async fn start(dir: &Path, port: u16, config: &str) -> Prometheus {
        // its client needs the TLS provider even when no other test installed it first
        lookout::install_tls_provider();
        std::fs::create_dir_all(dir).expect("mkdir");
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("config");
        let mut prometheus = Prometheus {
            child: None,
            port,
            storage: dir.join("tsdb"),
            config: config_path,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        };
        prometheus.restart().await;
        prometheus
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Starts it again (same port, same storage) after [`Prometheus::stop`].
    pub async fn restart(&mut self) {
        let log = std::fs::File::create(self.storage.with_extension("log")).expect("log file");
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!("--storage.tsdb.path={}", self.storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        self.child = Some(child);
        let ready = self.url("/-/ready");
        let client = self.client.clone();
        super::wait_until("prometheus ready", 60, || {
            let (client, ready) = (client.clone(), ready.clone());
            async move {
                client
                    .get(&ready)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success())
            }
        })
        .await;
    }

    /// SIGTERM and wait: the receiver is down until [`Prometheus::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// What Prometheus logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.storage.with_extension("log")).unwrap_or_default()
    }

    /// Remote-write requests it answered 400 since it (re)started (its own
    /// `prometheus_http_requests_total`): those holding a sample it already had.
    pub async fn write_requests_refused(&self) -> f64 {
        let page = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("prometheus /metrics")
            .text()
            .await
            .expect("text");
        page.lines()
            .filter(|line| {
                line.starts_with("prometheus_http_requests_total{")
                    && line.contains("code=\"400\"")
                    && line.contains("handler=\"/api/v1/write\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            // (an empty float sum is -0)
            .fold(0.0, |total, count| total + count)
    }

    /// `GET /api/v1/query` at `time` (Unix seconds); the `data.result` array.
    pub async fn query(&self, query: &str, time: f64) -> Vec<Value> {
        query_api(&self.client, &self.url("/api/v1/query"), query, time).await
    }
}

/// `GET {url}?query=…&time=…` of a Prometheus-compatible API (Lookout's too); the
/// `data.result` array.
pub async fn query_api(client: &reqwest::Client, url: &str, query: &str, time: f64) -> Vec<Value> {
    let mut url = reqwest::Url::parse(url).expect("url");
    url.query_pairs_mut()
        .append_pair("query", query)
        .append_pair("time", &format!("{time:.3}"));
    let response = client.get(url).send().await.expect("query");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "success", "{query}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
