//! Remote write (`[[remote_write]]`, Prometheus' remote write 1.0 and field names): every
//! sample the TSDB logs — scraped and recorded alike — is read back from its write-ahead
//! log ([`wal_reader`]) and sent to each remote as snappy-compressed protobuf
//! ([`proto`]) by a queue of shards ([`queue`]).
//!
//! Each remote has its own reader and its own [`wal_reader::Position`], persisted
//! atomically in `state/remote_write/NAME.json` once everything before it was answered,
//! so a receiver outage up to the log's span loses nothing and a restart resumes where
//! it was (resending at most what was in flight). Series get `[global] external_labels`
//! (a series' own label wins), then `write_relabel_configs`. 5xx answers and network
//! errors (and 429 with `retry_on_http_429`) are retried with backoff, forever; other 4xx
//! answers drop the batch, counted. Figures per remote on `/metrics`:
//! `lookout_remote_storage_*`.

pub mod proto;
pub mod queue;
pub mod wal_reader;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http_auth::{AuthorizationConfig, BasicAuthConfig, ClientAuth};
use crate::relabel::{Relabel, RelabelConfig};
use crate::tsdb::head::Labels;

/// `[[remote_write]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's endpoint, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// Names the remote in `/metrics` and its state file; default: `remote_N` by position.
    #[serde(default)]
    pub name: Option<String>,
    /// Longest wait for one request.
    #[serde(
        default = "RemoteWriteConfig::default_remote_timeout",
        with = "crate::duration_serde"
    )]
    pub remote_timeout: Duration,
    /// Extra HTTP headers sent with every request (not the protocol's own headers).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    #[serde(default)]
    pub authorization: Option<AuthorizationConfig>,
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Prometheus' relabelling of each series before it is sent; a dropped series is
    /// counted in `lookout_remote_storage_dropped_samples_total`.
    #[serde(default)]
    pub write_relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub queue_config: QueueConfig,
}

impl RemoteWriteConfig {
    fn default_remote_timeout() -> Duration {
        Duration::from_secs(30)
    }

    /// The remote's name: `name`, or `remote_N` (its position, from 0).
    pub fn name_at(&self, position: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("remote_{position}"))
    }

    fn auth(&self) -> ClientAuth<'_> {
        ClientAuth {
            basic_auth: self.basic_auth.as_ref(),
            authorization: self.authorization.as_ref(),
            bearer_token_env: self.bearer_token_env.as_deref(),
            bearer_token_file: self.bearer_token_file.as_deref(),
        }
    }
}

/// `queue_config`: Prometheus' names and defaults (2.42).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Samples each shard buffers.
    pub capacity: usize,
    pub max_shards: usize,
    pub min_shards: usize,
    pub max_samples_per_send: usize,
    /// Longest a sample waits in a shard for its batch to fill.
    #[serde(with = "crate::duration_serde")]
    pub batch_send_deadline: Duration,
    /// First retry delay, doubled on every retry up to `max_backoff`.
    #[serde(with = "crate::duration_serde")]
    pub min_backoff: Duration,
    #[serde(with = "crate::duration_serde")]
    pub max_backoff: Duration,
    /// Retry on HTTP 429 (Too Many Requests) rather than dropping the batch.
    pub retry_on_http_429: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 2500,
            max_shards: 200,
            min_shards: 1,
            max_samples_per_send: 500,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: false,
        }
    }
}

/// Headers a remote's `headers` may not set: the protocol's own and the authentication's.
const RESERVED_HEADERS: [&str; 6] = [
    "authorization",
    "content-encoding",
    "content-type",
    "host",
    "user-agent",
    "x-prometheus-remote-write-version",
];

/// One remote, checked.
pub struct RemoteSpec {
    pub name: String,
    pub url: reqwest::Url,
    pub headers: reqwest::header::HeaderMap,
    pub timeout: Duration,
    pub relabel: Relabel,
    pub queue: QueueConfig,
}

/// Checks every `[[remote_write]]`; each error names its field (`remote_write[N].…`).
pub fn validate(configs: &[RemoteWriteConfig]) -> Vec<String> {
    build(configs).err().unwrap_or_default()
}

/// The remotes ready to run, or every error.
pub fn build(configs: &[RemoteWriteConfig]) -> Result<Vec<RemoteSpec>, Vec<String>> {
    let mut errors = Vec::new();
    let mut specs = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (position, config) in configs.iter().enumerate() {
        let prefix = format!("remote_write[{position}]");
        let mut error = |field: &str, message: String| {
            errors.push(format!("`{prefix}.{field}`: {message}"));
        };
        let name = config.name_at(position);
        if name.is_empty()
            || !name
                .chars()
                .all(|char| char.is_ascii_alphanumeric() || char == '_' || char == '-')
        {
            error(
                "name",
                format!("`{name}` must be [A-Za-z0-9_-]+ (it names a state file)"),
            );
        }
        if !names.insert(name.clone()) {
            error("name", format!("`{name}` is used by another remote"));
        }
        let url = reqwest::Url::parse(&config.url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
        if url.is_none() {
            error(
                "url",
                format!(
                    "`{}` is not an http(s) URL like \"http://prometheus:9090/api/v1/write\"",
                    config.url
                ),
            );
        }
        if config.remote_timeout.is_zero() {
            error("remote_timeout", "must be longer than 0s".into());
        }
        let queue = &config.queue_config;
        for (field, ok) in [
            ("capacity", queue.capacity >= 1),
            ("min_shards", queue.min_shards >= 1),
            (
                "max_shards",
                queue.max_shards >= queue.min_shards && queue.max_shards <= 1000,
            ),
            ("max_samples_per_send", queue.max_samples_per_send >= 1),
            ("batch_send_deadline", !queue.batch_send_deadline.is_zero()),
            ("max_backoff", queue.max_backoff >= queue.min_backoff),
        ] {
            if !ok {
                error(
                    &format!("queue_config.{field}"),
                    match field {
                        "max_shards" => "must be between min_shards and 1000".into(),
                        "batch_send_deadline" => "must be longer than 0s".into(),
                        "max_backoff" => "must be at least min_backoff".into(),
                        _ => "must be at least 1".into(),
                    },
                );
            }
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (header, value) in &config.headers {
            if RESERVED_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
                error(
                    &format!("headers.{header}"),
                    "is set by Lookout itself (authentication goes in basic_auth, authorization or bearer_token_env)".into(),
                );
                continue;
            }
            match (
                reqwest::header::HeaderName::from_bytes(header.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) {
                (Ok(header), Ok(value)) => {
                    headers.insert(header, value);
                }
                _ => error(
                    &format!("headers.{header}"),
                    "is not a valid HTTP header name and value".into(),
                ),
            }
        }
        match config.auth().header(&prefix) {
            Ok(Some(auth)) => match reqwest::header::HeaderValue::from_str(&auth.0) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    headers.insert(reqwest::header::AUTHORIZATION, value);
                }
                Err(_) => errors.push(format!(
                    "`{prefix}`: the credentials are not valid in an HTTP header"
                )),
            },
            Ok(None) => {}
            Err(message) => errors.push(message),
        }
        let relabel = Relabel::build(
            &config.write_relabel_configs,
            &format!("{prefix}.write_relabel_configs"),
        )
        .unwrap_or_else(|problems| {
            errors.extend(problems);
            Relabel::default()
        });
        if let Some(url) = url {
            specs.push(RemoteSpec {
                name,
                url,
                headers,
                timeout: config.remote_timeout,
                relabel,
                queue: config.queue_config.clone(),
            });
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

/// A series as it is sent: external labels added (its own win), then relabelled; `None`
/// when relabelling drops it.
///
pub fn series_to_send(
    labels: &Labels,
    external_labels: &BTreeMap<String, String>,
    relabel: &Relabel,
) -> Option<Arc<Vec<proto::Label>>> {
    let mut set: BTreeMap<String, String> = external_labels.clone();
    for (name, value) in labels.iter() {
        set.insert(name.clone(), value.clone());
    }
    if !relabel.process(&mut set) {
        return None;
    }
    // a series without a name (relabelled away) is not a series a receiver takes
    if !set.contains_key("__name__") {
        return None;
    }
    Some(Arc::new(
        set.into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| proto::Label { name, value })
            .collect(),
    ))
}

/// One remote's figures (`lookout_remote_storage_*{remote="NAME"}`).
#[derive(Debug, Default)]
pub struct RemoteMetrics {
    pub name: String,
    pub samples: AtomicU64,
    pub failed_samples: AtomicU64,
    pub retried_samples: AtomicU64,
    pub dropped_samples: AtomicU64,
    pub pending_samples: AtomicI64,
    /// Newest sample time read from the log, ms.
    pub highest_in_ms: AtomicI64,
    /// Newest sample time the remote accepted, ms.
    pub highest_sent_ms: AtomicI64,
    pub shards: AtomicU64,
    /// Log segments deleted before they were read.
    pub lost_segments: AtomicU64,
}

/// Every remote's figures, for `/metrics`.
#[derive(Debug, Default)]
pub struct RemoteWriters {
    pub remotes: Vec<Arc<RemoteMetrics>>,
}

impl RemoteWriters {
    /// Appends the `lookout_remote_storage_*` families to a `/metrics` page.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.remotes.is_empty() {
            return;
        }
        type Read = fn(&RemoteMetrics) -> f64;
        let families: [(&str, &str, &str, Read); 9] = [
            (
                "samples_total",
                "counter",
                "Samples the remote accepted.",
                |m| m.samples.load(Ordering::Relaxed) as f64,
            ),
            (
                "failed_samples_total",
                "counter",
                "Samples the remote refused for good (a 4xx answer), not retried.",
                |m| m.failed_samples.load(Ordering::Relaxed) as f64,
            ),
            (
                "retried_samples_total",
                "counter",
                "Samples sent again after a recoverable failure (5xx, 429, network).",
                |m| m.retried_samples.load(Ordering::Relaxed) as f64,
            ),
            (
                "dropped_samples_total",
                "counter",
                "Samples not sent: their series was dropped by write_relabel_configs.",
                |m| m.dropped_samples.load(Ordering::Relaxed) as f64,
            ),
            (
                "samples_pending",
                "gauge",
                "Samples read from the write-ahead log and not answered yet.",
                |m| m.pending_samples.load(Ordering::Relaxed) as f64,
            ),
            (
                "highest_timestamp_in_seconds",
                "gauge",
                "Newest sample time read from the write-ahead log for the remote.",
                |m| m.highest_in_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "queue_highest_sent_timestamp_seconds",
                "gauge",
                "Newest sample time the remote accepted.",
                |m| m.highest_sent_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            ("shards", "gauge", "Shards sending in parallel.", |m| {
                m.shards.load(Ordering::Relaxed) as f64
            }),
            (
                "wal_segments_lost_total",
                "counter",
                "Write-ahead log segments deleted before the remote read them (an outage longer than the log's span).",
                |m| m.lost_segments.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (suffix, kind, help, read) in families {
            let name = format!("lookout_remote_storage_{suffix}");
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for remote in &self.remotes {
                let _ = writeln!(
                    out,
                    "{name}{{remote=\"{}\"}} {}",
                    crate::telemetry::escape_label(&remote.name),
                    read(remote)
                );
            }
        }
    }
}

/// Starts every remote of `specs` on the TSDB log in `wal_dir`, positions kept in
/// `state_dir/remote_write/`; they stop on `cancel`, persisting their positions.
pub fn start(
    specs: Vec<RemoteSpec>,
    wal_dir: PathBuf,
    state_dir: PathBuf,
    external_labels: BTreeMap<String, String>,
    tasks: &tokio_util::task::TaskTracker,
    cancel: tokio_util::sync::CancellationToken,
) -> RemoteWriters {
    let external_labels = Arc::new(external_labels);
    let mut writers = RemoteWriters::default();
    for spec in specs {
        let metrics = Arc::new(RemoteMetrics {
            name: spec.name.clone(),
            highest_in_ms: AtomicI64::new(0),
            highest_sent_ms: AtomicI64::new(0),
            ..Default::default()
        });
        writers.remotes.push(Arc::clone(&metrics));
        let remote = queue::Remote {
            spec: Arc::new(spec),
            wal_dir: wal_dir.clone(),
            state_dir: state_dir.join("remote_write"),
            external_labels: Arc::clone(&external_labels),
            metrics,
            poll_interval: Duration::from_millis(50),
        };
        let name = remote.spec.name.clone();
        tasks.spawn(tracing::Instrument::instrument(
            remote.run(cancel.clone()),
            tracing::info_span!("remote_write", remote = %name),
        ));
    }
    writers
}
