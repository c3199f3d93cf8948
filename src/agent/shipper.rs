//! The shipper: sends batches to `_bulk` one at a time, in order, until each is
//! acknowledged; then writes their dead letters and moves the checkpoints.
//!
//! - One batch in flight: with Lookout's high-water marks a later batch acknowledged
//!   before an earlier one would make the earlier one's resend a `noop`, so order is part
//!   of exactly-once. The tailer builds the next batch meanwhile.
//! - Server unreachable, 429, 5xx, 401/403: retried with exponential backoff and jitter,
//!   forever (the files are the buffer; reading pauses behind the bounded channel).
//!   Other 4xx: the server's reason is logged and the batch's lines are dead-lettered.
//! - Per-item results of a 200: `noop` (Lookout) and 409 (a plain Elasticsearch's
//!   `create` of a deterministic id) are lines the server already had; 429 items are
//!   retried alone; any other failure dead-letters that line with the server's reason.
//!   (Lookout never answers an item 429 — its back-pressure is the whole request — so a
//!   retried item cannot fall under a high-water mark its neighbours raised.)
//! - With Lookout: `X-Lookout-Agent`/`X-Lookout-Watermark` on every request, a heartbeat
//!   when idle, deregistration on a graceful stop.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, BatchItem, Target};
use super::checkpoint::Checkpoints;
use super::config::AgentConfig;
use super::dead_letter::{DeadLetterFile, DeadLetterRecord};
use super::metrics::AgentMetrics;
use super::tailer::now_micros;

/// How the shipper reaches the server.
#[derive(Clone)]
pub struct Endpoint {
    pub client: reqwest::Client,
    /// Base URL without a trailing slash.
    pub base: String,
    pub token: Option<String>,
    /// Sent as `X-Scope-OrgID` (`tenant` of the config).
    pub tenant: Option<String>,
}

impl Endpoint {
    pub fn new(
        base: &str,
        token: Option<String>,
        timeout: Duration,
        extra_roots: Vec<reqwest::Certificate>,
        identity: Option<reqwest::Identity>,
    ) -> reqwest::Result<Endpoint> {
        crate::install_tls_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("lookout-agent/", env!("CARGO_PKG_VERSION")));
        for certificate in extra_roots {
            builder = builder.add_root_certificate(certificate);
        }
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        let client = builder.build()?;
        Ok(Endpoint {
            client,
            base: base.trim_end_matches('/').to_string(),
            token,
            tenant: None,
        })
    }

    /// Every request names `tenant` in `X-Scope-OrgID`.
    pub fn with_tenant(mut self, tenant: Option<String>) -> Endpoint {
        self.tenant = tenant;
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }
}

/// Asks `GET /_lookout/info` whether the server is Lookout. Retries while the server is
/// unreachable or refuses the token; `None` when cancelled first.
pub async fn detect_target(
    endpoint: &Endpoint,
    config: &AgentConfig,
    cancel: &CancellationToken,
) -> Option<Target> {
    let mut backoff = Backoff::new(config);
    loop {
        let problem = match endpoint
            .request(reqwest::Method::GET, "/_lookout/info")
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                if body["name"] == "lookout" {
                    tracing::info!(server = %endpoint.base, version = %body["version"], "shipping to Lookout (exactly-once protocol)");
                    return Some(Target::Lookout);
                }
                tracing::info!(server = %endpoint.base, "shipping to an Elasticsearch-compatible server (create with deterministic ids)");
                return Some(Target::PlainElasticsearch);
            }
            Ok(response) if matches!(response.status().as_u16(), 401 | 403) => {
                format!(
                    "the server refused our credentials ({}); check the agent's token",
                    response.status()
                )
            }
            Ok(response) if response.status().is_client_error() => {
                tracing::info!(server = %endpoint.base, status = %response.status(), "not Lookout; shipping to an Elasticsearch-compatible server (create with deterministic ids)");
                return Some(Target::PlainElasticsearch);
            }
            Ok(response) => format!("server answered {}", response.status()),
            Err(error) => format!("server unreachable: {}", describe(error)),
        };
        let delay = backoff.next();
        tracing::warn!(server = %endpoint.base, retry_in = ?delay, "{problem}");
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half of a window
/// that doubles from `backoff_min` to `backoff_max`.
struct Backoff {
    current: Duration,
    max: Duration,
    min: Duration,
}

impl Backoff {
    fn new(config: &AgentConfig) -> Backoff {
        Backoff {
            current: config.backoff_min,
            min: config.backoff_min,
            max: config.backoff_max,
        }
    }

    fn next(&mut self) -> Duration {
        let window = self.current;
        self.current = (self.current * 2).min(self.max);
        window / 2 + window.mul_f64(fastrand::f64() / 2.0)
    }

    fn reset(&mut self) {
        self.current = self.min;
    }
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The batch could not be delivered before the shutdown deadline.
pub struct Abandoned;

pub struct Shipper {
    endpoint: Endpoint,
    target: Target,
    agent_id: String,
    config: AgentConfig,
    checkpoints: Arc<Mutex<Checkpoints>>,
    dead_letters: DeadLetterFile,
    metrics: Arc<AgentMetrics>,
    /// The latest acknowledged end-of-file time.
    watermark: Option<SystemTime>,
    checkpoints_dirty: bool,
    last_request: Instant,
    backoff: Backoff,
    /// Why heartbeats fail, while they do (logged when it starts and when it ends, so an
    /// idle agent whose server is down says so).
    heartbeat_failing: Option<String>,
}

impl Shipper {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        endpoint: Endpoint,
        target: Target,
        agent_id: String,
        config: &AgentConfig,
        checkpoints: Arc<Mutex<Checkpoints>>,
        dead_letters: DeadLetterFile,
        metrics: Arc<AgentMetrics>,
    ) -> Shipper {
        Shipper {
            endpoint,
            target,
            agent_id,
            backoff: Backoff::new(config),
            config: config.clone(),
            checkpoints,
            dead_letters,
            metrics,
            watermark: None,
            checkpoints_dirty: false,
            last_request: Instant::now(),
            heartbeat_failing: None,
        }
    }

    /// Ships batches until the tailer closes the channel (it does on stop), or until
    /// `abandon` fires (the shutdown deadline). Saves the checkpoints and deregisters.
    pub async fn run(
        mut self,
        mut batches: tokio::sync::mpsc::Receiver<Batch>,
        abandon: CancellationToken,
    ) {
        let mut save = tokio::time::interval(Duration::from_secs(1));
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut graceful = true;
        loop {
            tokio::select! {
                biased;
                batch = batches.recv() => match batch {
                    Some(batch) => {
                        if self.ship(batch, &abandon).await.is_err() {
                            graceful = false;
                            break;
                        }
                    }
                    None => break,
                },
                _ = save.tick() => self.save_checkpoints(),
                _ = heartbeat.tick(), if self.target == Target::Lookout
                    && self.last_request.elapsed() >= self.config.heartbeat_interval => {
                    self.heartbeat().await;
                }
            }
        }
        drop(batches);
        self.save_checkpoints();
        if self.target == Target::Lookout {
            self.deregister(graceful).await;
        }
    }

    fn save_checkpoints(&mut self) {
        if !self.checkpoints_dirty {
            return;
        }
        let checkpoints = self
            .checkpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match checkpoints.save() {
            Ok(()) => self.checkpoints_dirty = false,
            // resending is harmless (deduplicated by the server); losing state is not:
            // keep trying on every tick
            Err(error) => tracing::error!(%error, "cannot save checkpoints"),
        }
    }

    fn watermark_header(&self, batch_eof: Option<SystemTime>) -> Option<String> {
        batch_eof.or(self.watermark).map(|time| {
            chrono::DateTime::<chrono::Utc>::from(time)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        })
    }

    async fn heartbeat(&mut self) {
        let mut request = self
            .endpoint
            .request(reqwest::Method::POST, "/_lookout/heartbeat")
            .header("X-Lookout-Agent", &self.agent_id);
        if let Some(watermark) = self.watermark_header(None) {
            request = request.header("X-Lookout-Watermark", watermark);
        }
        self.last_request = Instant::now();
        let failure = match request.send().await {
            Ok(response) if response.status().is_success() => {
                self.metrics.heartbeats.add(1);
                None
            }
            Ok(response) => Some(format!("refused with {}", response.status())),
            Err(error) => Some(error.without_url().to_string()),
        };
        match (failure, self.heartbeat_failing.is_some()) {
            (Some(error), false) => {
                tracing::warn!(%error, "the server does not answer heartbeats; lines written meanwhile are kept and shipped when it is back");
                self.heartbeat_failing = Some(error);
            }
            (None, true) => {
                tracing::info!("the server answers heartbeats again");
                self.heartbeat_failing = None;
            }
            (Some(error), true) => tracing::debug!(%error, "heartbeat failed"),
            (None, false) => {}
        }
    }

    async fn deregister(&mut self, graceful: bool) {
        if !graceful {
            // what was read is not all delivered: stay registered so alert evaluation
            // keeps waiting for it (up to the server's agent timeout)
            return;
        }
        let result = self
            .endpoint
            .request(
                reqwest::Method::DELETE,
                &format!("/_lookout/agents/{}", self.agent_id),
            )
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() || response.status() == 404 => {
                tracing::info!(agent = %self.agent_id, "deregistered")
            }
            Ok(response) => tracing::warn!(status = %response.status(), "deregistration refused"),
            Err(error) => tracing::warn!(error = %error.without_url(), "deregistration failed"),
        }
    }

    /// Delivers one batch (retrying as needed), then records its dead letters and
    /// progress.
    async fn ship(&mut self, batch: Batch, abandon: &CancellationToken) -> Result<(), Abandoned> {
        let mut dead_letters = Vec::new();
        let mut pending: Vec<usize> = (0..batch.items.len()).collect();
        while !pending.is_empty() {
            // the whole batch goes as built; a retry of some items only is rebuilt
            let body: std::borrow::Cow<'_, [u8]> = if pending.len() == batch.items.len() {
                std::borrow::Cow::Borrowed(&batch.body)
            } else {
                let mut body = Vec::new();
                for &index in &pending {
                    let item = &batch.items[index];
                    body.extend_from_slice(&batch.body[item.start..item.end]);
                }
                std::borrow::Cow::Owned(body)
            };
            match self.send(&body, batch.eof_time).await {
                Delivery::Retry(reason) => {
                    self.metrics.retries.add(reason, 1);
                    self.wait(abandon).await?;
                }
                Delivery::Refused(reason) => {
                    for &index in &pending {
                        dead_letters.push(self.refused_record(
                            &batch,
                            &batch.items[index],
                            &reason,
                        ));
                    }
                    pending.clear();
                }
                Delivery::Accepted(response) => {
                    self.backoff.reset();
                    if response.items.len() != pending.len() && response.errors {
                        tracing::error!(
                            sent = pending.len(),
                            answered = response.items.len(),
                            "bulk response does not match the request; retrying it whole"
                        );
                        self.metrics.retries.add("malformed_response", 1);
                        self.wait(abandon).await?;
                        continue;
                    }
                    let mut retry = Vec::new();
                    for (position, &index) in pending.iter().enumerate() {
                        let Some(result) = response
                            .items
                            .get(position)
                            .and_then(|item| item.values().next())
                        else {
                            // `errors: false` with items omitted (filter_path): all accepted
                            self.count_shipped(false);
                            continue;
                        };
                        match result.status {
                            200..=299 => {
                                self.count_shipped(result.result.as_deref() == Some("noop"))
                            }
                            409 if self.target == Target::PlainElasticsearch => {
                                self.count_shipped(true)
                            }
                            429 => retry.push(index),
                            status => {
                                let reason = item_reason(status, result.error.as_ref());
                                dead_letters.push(self.refused_record(
                                    &batch,
                                    &batch.items[index],
                                    &reason,
                                ));
                            }
                        }
                    }
                    if !retry.is_empty() {
                        self.metrics.retries.add("item_429", 1);
                        self.wait(abandon).await?;
                    }
                    pending = retry;
                }
            }
        }
        dead_letters.extend(batch.dead_letters);
        for record in &dead_letters {
            self.metrics.dead_lettered.add(record.label, 1);
        }
        if !dead_letters.is_empty() {
            for record in &dead_letters {
                tracing::warn!(path = %record.path, offset = record.offset, reason = %record.reason, "line dead-lettered");
            }
            if let Err(error) = self.dead_letters.write(&dead_letters) {
                // not acknowledging keeps the lines in the file: they are read again and
                // retried after a restart, never lost
                tracing::error!(%error, directory = %self.dead_letters.directory().display(), "cannot write dead letters; stopping before moving past them");
                return Err(Abandoned);
            }
        }
        if !batch.items.is_empty() {
            self.metrics.batches_shipped.add(1);
            self.metrics.bytes_shipped.add(batch.body.len() as u64);
        }
        let now = now_micros();
        {
            let mut checkpoints = self
                .checkpoints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for file in &batch.files {
                checkpoints.acknowledge(
                    file.identity,
                    file.generation,
                    file.offset,
                    &file.path,
                    now,
                );
                self.checkpoints_dirty = true;
            }
        }
        if let Some(eof_time) = batch.eof_time {
            self.watermark = Some(eof_time);
        }
        Ok(())
    }

    fn count_shipped(&self, duplicate: bool) {
        self.metrics.lines_shipped.add(1);
        if duplicate {
            self.metrics.lines_duplicate.add(1);
        }
    }

    fn refused_record(&self, batch: &Batch, item: &BatchItem, reason: &str) -> DeadLetterRecord {
        let file = &batch.files[item.file];
        DeadLetterRecord {
            path: file.path.to_string_lossy().into_owned(),
            source: file.source.clone(),
            generation: item.generation,
            offset: item.offset,
            label: "rejected_by_server",
            reason: reason.to_string(),
            line: batch.document(item).to_vec(),
            line_file: None,
        }
    }

    /// Sleeps the next backoff delay, unless the shutdown deadline comes first.
    async fn wait(&mut self, abandon: &CancellationToken) -> Result<(), Abandoned> {
        let delay = self.backoff.next();
        tokio::select! {
            () = abandon.cancelled() => Err(Abandoned),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }

    async fn send(&mut self, body: &[u8], eof_time: Option<SystemTime>) -> Delivery {
        let (payload, gzip) = if self.config.gzip_level > 0 {
            (compress(body, self.config.gzip_level), true)
        } else {
            (body.to_vec(), false)
        };
        self.metrics.bytes_sent_compressed.add(payload.len() as u64);
        let mut request = self
            .endpoint
            // only what acknowledging needs: a fraction of the full answer's bytes
            .request(
                reqwest::Method::POST,
                "/_bulk?filter_path=errors,items.*.status,items.*.result,items.*.error",
            )
            .header(CONTENT_TYPE, "application/x-ndjson");
        if gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        if self.target == Target::Lookout {
            request = request.header("X-Lookout-Agent", &self.agent_id);
            if let Some(watermark) = self.watermark_header(eof_time) {
                request = request.header("X-Lookout-Watermark", watermark);
            }
        }
        self.last_request = Instant::now();
        let response = match request.body(payload).send().await {
            Ok(response) => response,
            Err(error) => {
                let reason = if error.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                };
                tracing::warn!(server = %self.endpoint.base, error = %describe(error), "bulk request failed; retrying");
                return Delivery::Retry(reason);
            }
        };
        let status = response.status();
        let text = match response.bytes().await {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(error = %error.without_url(), "bulk response cut off; retrying");
                return Delivery::Retry("unreachable");
            }
        };
        match status.as_u16() {
            200..=299 => match serde_json::from_slice::<BulkResponse>(&text) {
                Ok(response) => Delivery::Accepted(response),
                Err(error) => {
                    tracing::error!(%error, "bulk response is not valid JSON; retrying");
                    Delivery::Retry("malformed_response")
                }
            },
            429 => {
                tracing::debug!("server busy (429); backing off");
                Delivery::Retry("429")
            }
            401 | 403 => {
                tracing::error!(status = %status, reason = %server_reason(&text), "the server refused our credentials; check the agent's token (retrying)");
                Delivery::Retry("unauthorized")
            }
            400..=499 => {
                let reason = format!(
                    "server refused the batch ({status}): {}",
                    server_reason(&text)
                );
                tracing::error!(%reason, "batch refused; its lines go to the dead-letter file");
                Delivery::Refused(reason)
            }
            _ => {
                tracing::warn!(status = %status, reason = %server_reason(&text), "server error; retrying");
                Delivery::Retry("5xx")
            }
        }
    }
}

enum Delivery {
    Accepted(BulkResponse),
    Retry(&'static str),
    Refused(String),
}

fn compress(body: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::new(level),
    );
    encoder.write_all(body).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// The `reason` of an Elasticsearch error body, or the body's start.
fn server_reason(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if let Some(reason) = parsed
        .as_ref()
        .and_then(|value| value["error"]["reason"].as_str())
    {
        return reason.to_string();
    }
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}

fn item_reason(status: u16, error: Option<&serde_json::Value>) -> String {
    match error {
        Some(error) => format!(
            "server rejected the line ({status} {}): {}",
            error["type"].as_str().unwrap_or("error"),
            error["reason"].as_str().unwrap_or("no reason given")
        ),
        None => format!("server rejected the line ({status})"),
    }
}

/// A transport error with its causes (reqwest's own text is only "error sending
/// request"; the cause says connection refused, or which certificate check failed).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The agent's id, kept in the state directory so a restarted agent is the same agent to
/// the server.
pub fn agent_id(state_dir: &Path, host_name: &str) -> std::io::Result<String> {
    let path = state_dir.join("agent-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let id = format!("{host_name}-{:016x}", fastrand::u64(..));
    crate::atomic_file::write(&path, id.as_bytes())?;
    Ok(id)
}
