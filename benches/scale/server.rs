//! The real release `lookout serve` on the scale curve's data directory, and the requests
//! the bench sends it: `_count`, the UI's search, a `terms` aggregation, PromQL's
//! `query_range`, `_bulk`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running server and how long it took to start.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// Process start → `_count` answers 200.
    pub ready: Duration,
    pub client: reqwest::Client,
}

/// Where the server runs: its data directory, rules and config.
pub struct Setup {
    pub data: PathBuf,
    pub queries: PathBuf,
    pub config: PathBuf,
}

impl Setup {
    /// Writes the config (`retention`, hourly partitions) and the saved query
    /// `errors_by_service` (`http.status:500` per service over a minute, a threshold never
    /// reached) that `log_matches` reads. The rule runs once a day at midnight: a tick asks
    /// for a commit, which would cut the write-ahead log the bench fills (`log_matches` is
    /// computed from the index whatever the schedule).
    pub fn write(work: &Path, retention: &str) -> Setup {
        let queries = work.join("queries");
        std::fs::create_dir_all(&queries).expect("queries dir");
        std::fs::write(
            queries.join("errors_by_service.json"),
            json!({
                "version": 1,
                "schedule": "0 0 0 * * *",
                "index": "logs",
                "query": "http.status:500",
                "group_by": ["service"],
                "window": "1m",
                "threshold": {"op": ">", "value": 1_000_000_000u64},
            })
            .to_string(),
        )
        .expect("rule");
        let config = work.join("lookout.toml");
        std::fs::write(
            &config,
            format!("[index]\nretention = \"{retention}\"\npartition_span = \"1h\"\n"),
        )
        .expect("config");
        Setup {
            data: work.join("data"),
            queries,
            config,
        }
    }

    /// Where the store of the index `logs` lives inside the data directory.
    pub fn indices(&self) -> PathBuf {
        self.data.join("logs/indices")
    }

    /// The ingest write-ahead log's directory.
    pub fn wal(&self) -> PathBuf {
        self.data.join("logs/wal")
    }

    /// Starts `lookout serve` and waits (deadline 10 minutes) until `_count` answers.
    pub async fn start(&self) -> Server {
        let started = Instant::now();
        let (child, base) = tokio::task::block_in_place(|| {
            super::common::start_lookout(&self.data, &self.queries, &self.config, Stdio::inherit())
        });
        let client = reqwest::Client::new();
        let deadline = started + Duration::from_secs(600);
        loop {
            let answer = client.get(format!("{base}/logs/_count")).send().await;
            if answer.is_ok_and(|response| response.status().is_success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "`_count` did not answer within 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Server {
            child,
            base,
            ready: started.elapsed(),
            client,
        }
    }
}

/// The UI's search body (`src/server/ui/app.js`, `run`): the query and the time range as
/// filters, the newest 50 lines by `@timestamp`, the total, and the date histogram at the
/// UI's interval for the range.
pub fn ui_search_body(query: &str, start_ms: i64, end_ms: i64, interval: &str) -> Value {
    json!({
        "query": {"bool": {"filter": [
            {"query_string": {"query": query}},
            {"range": {"@timestamp": {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}},
        ]}},
        "size": 50, "from": 0, "sort": [{"@timestamp": "desc"}], "track_total_hits": true,
        "aggs": {"over_time": {"date_histogram": {
            "field": "@timestamp", "fixed_interval": interval, "min_doc_count": 0,
            "extended_bounds": {"min": start_ms, "max": end_ms - 1},
        }}},
    })
}

/// The interval the UI draws its histogram at for a range (`niceInterval`: the first of
/// its steps at least a sixtieth of the range).
pub fn ui_interval(range_ms: i64) -> String {
    const STEPS: [i64; 13] = [
        1_000,
        5_000,
        10_000,
        30_000,
        60_000,
        300_000,
        600_000,
        1_800_000,
        3_600_000,
        10_800_000,
        43_200_000,
        86_400_000,
        604_800_000,
    ];
    let wanted = range_ms as f64 / 60.0;
    let chosen = STEPS
        .iter()
        .find(|&&step| step as f64 >= wanted)
        .copied()
        .unwrap_or(STEPS[STEPS.len() - 1]);
    format!("{}s", chosen / 1000)
}

/// A time filter with a Lucene query, as `_count`'s and `_search`'s body.
pub fn filtered(query: &str, start_ms: i64, end_ms: i64) -> Value {
    json!({"bool": {"filter": [
        {"query_string": {"query": query}},
        {"range": {"@timestamp": {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}},
    ]}})
}

impl Server {
    /// POSTs `body` to `path`; the answer must be 200 and JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let text = response.text().await.expect("answer");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).expect("json answer")
    }

    pub async fn count(&self, query: &str, start_ms: i64, end_ms: i64) -> u64 {
        let answer = self
            .post(
                "/logs/_count",
                &json!({"query": filtered(query, start_ms, end_ms)}),
            )
            .await;
        answer["count"].as_u64().expect("count")
    }

    /// `_count` of everything in `index`.
    pub async fn count_all(&self, index: &str) -> u64 {
        let response = self
            .client
            .get(format!("{}/{index}/_count", self.base))
            .send()
            .await
            .expect("count");
        let answer: Value = response.json().await.expect("count json");
        answer["count"].as_u64().expect("count")
    }

    /// `GET /api/v1/query_range`; returns the number of series.
    pub async fn query_range(&self, query: &str, start_s: f64, end_s: f64, step: &str) -> usize {
        // reqwest is built without its `query` feature: the few characters a selector has
        // are escaped here
        let escaped: String = query
            .bytes()
            .map(|byte| match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (byte as char).to_string(),
                _ => format!("%{byte:02X}"),
            })
            .collect();
        let response = self
            .client
            .get(format!(
                "{}/api/v1/query_range?query={escaped}&start={start_s:.3}&end={end_s:.3}&step={step}",
                self.base
            ))
            .send()
            .await
            .expect("query_range");
        let status = response.status();
        let answer: Value = response.json().await.expect("query_range json");
        assert!(status.is_success(), "query_range: {status} {answer}");
        answer["data"]["result"].as_array().map_or(0, Vec::len)
    }

    /// POSTs one `_bulk` body to `index`; every item must be created.
    pub async fn bulk(&self, index: &str, body: Vec<u8>) {
        let url = format!("{}/{index}/_bulk?filter_path=errors", self.base);
        crate::common::post_bulk(&self.client, &url, &body).await;
    }

    /// Deletes `index`.
    pub async fn delete_index(&self, index: &str) {
        let response = self
            .client
            .delete(format!("{}/{index}", self.base))
            .send()
            .await
            .expect("delete index");
        assert!(
            response.status().is_success(),
            "delete `{index}`: {}",
            response.status()
        );
    }

    /// SIGINT, then waits for the process to end (it commits and closes the index).
    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait for lookout");
        assert!(status.success(), "lookout serve ended with {status}");
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}
