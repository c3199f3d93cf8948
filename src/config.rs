//! Typed configuration of `lookout serve`: parsed from TOML with unknown fields rejected,
//! defaults as associated functions, then [`Config::validate`] collects every error with
//! its file and field. `config/lookout.toml` documents every option with its default and
//! is parsed by a test so it never goes stale.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diagnostic::toml_error;
// Named through the config by its callers (`config::Secret` in `app` and the tests,
// `config::suggestion` in `rules::check`).
pub use crate::diagnostic::suggestion;
pub use crate::secret::Secret;

/// Everything `lookout serve` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the one HTTP listener (ES API, Prometheus API, agent protocol, UI).
    pub listen: SocketAddr,
    /// Root of everything Lookout stores: `logs/`, `tsdb/`, `state/`.
    pub data_dir: PathBuf,
    /// Saved queries (alert rules), one JSON file each.
    pub queries_dir: PathBuf,
    /// Base URL put in links (Slack messages); default `http://<listen>` (`https://` with
    /// `[tls]`).
    pub external_url: Option<String>,
    /// Settings that shape what leaves this server (`[global]`, Prometheus' name).
    pub global: GlobalConfig,
    pub auth: AuthConfig,
    /// HTTPS on the listener (`[tls]`); plain HTTP without it.
    pub tls: TlsConfig,
    /// Connections and requests on the listener.
    pub http: HttpConfig,
    /// Searches of the Elasticsearch API.
    pub search: SearchConfig,
    pub ingest: IngestConfig,
    pub index: IndexConfig,
    /// Files `lookout serve` tails itself (`[[agent.inputs]]`), shipped to this server
    /// through the agent protocol; the options are those of `config/agent.toml`.
    pub agent: crate::agent::config::AgentConfig,
    /// Named notifiers (`[notifiers.NAME]`, type `slack`, `webhook`, `console` or `ui`).
    pub notifiers: std::collections::BTreeMap<String, crate::notify::notifiers::NotifierConfig>,
    /// Which notifiers an alert goes to when its rule names none.
    pub routing: crate::notify::notifiers::RoutingConfig,
    /// How alert messages are delivered.
    pub notify: crate::notify::notifiers::NotifyConfig,
    /// Alertmanager's `inhibit_rules`: firing alerts that mute others.
    pub inhibit_rules: Vec<crate::notify::route::InhibitRuleConfig>,
    /// Alertmanager's `time_intervals`, named for routes' `mute_time_intervals` and
    /// `active_time_intervals`.
    pub time_intervals: Vec<crate::notify::time_interval::TimeIntervalConfig>,
    /// Prometheus' `alert_relabel_configs`: relabeling of alerts sent to Alertmanager
    /// notifiers, after `[global] external_labels` are added (see `crate::relabel`).
    pub alert_relabel_configs: Vec<crate::relabel::RelabelConfig>,
    /// The dead man's switch: a URL pinged while alerting is healthy.
    pub heartbeat: Option<crate::notify::heartbeat::HeartbeatConfig>,
    /// Prometheus targets to scrape (`[[scrape_configs]]`, Prometheus' field names).
    pub scrape_configs: Vec<crate::scrape::target::ScrapeConfig>,
    /// An existing `prometheus.yml` whose `scrape_configs` are scraped too (read
    /// permissively: unsupported sections are ignored with a warning each).
    pub prometheus_config: Option<PathBuf>,
    /// The metrics store and the PromQL engine.
    pub metrics: MetricsConfig,
    /// Prometheus-compatible query APIs rules can evaluate on (`[datasources.NAME]`).
    pub datasources: std::collections::BTreeMap<String, crate::datasource::DatasourceConfig>,
    /// Where every scraped and recorded sample is also sent (`[[remote_write]]`,
    /// Prometheus' remote write 1.0 and field names).
    pub remote_write: Vec<crate::remote_write::RemoteWriteConfig>,
    /// The free-space watermark below which writes are refused (read-only mode).
    pub storage: crate::storage::StorageConfig,
    /// Limits of every tenant (`[tenants.NAME.limits]` overrides them); unset: unlimited.
    pub limits: crate::tenant::LimitsConfig,
    /// Tenants beside `default` (`[tenants.NAME]`), each a world of its own: see
    /// `crate::tenant`.
    pub tenants: std::collections::BTreeMap<String, crate::tenant::TenantConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9200)),
            data_dir: PathBuf::from("data"),
            queries_dir: PathBuf::from("queries"),
            external_url: None,
            global: GlobalConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            http: HttpConfig::default(),
            search: SearchConfig::default(),
            ingest: IngestConfig::default(),
            index: IndexConfig::default(),
            agent: crate::agent::config::AgentConfig::default(),
            notifiers: Default::default(),
            routing: Default::default(),
            notify: Default::default(),
            inhibit_rules: Vec::new(),
            time_intervals: Vec::new(),
            alert_relabel_configs: Vec::new(),
            heartbeat: None,
            scrape_configs: Vec::new(),
            prometheus_config: None,
            metrics: MetricsConfig::default(),
            datasources: Default::default(),
            remote_write: Vec::new(),
            storage: crate::storage::StorageConfig::default(),
            limits: crate::tenant::LimitsConfig::default(),
            tenants: Default::default(),
        }
    }
}

pub use crate::keys::AuthConfig;

/// `[global]`: what Prometheus' `global` section says about this server's identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalConfig {
    /// Labels added to every alert sent out and every series written to another store
    /// (remote write, federation), unless the alert or series has the label already:
    /// Prometheus' `external_labels`, e.g. `{ cluster = "eu1", replica = "a" }`.
    pub external_labels: std::collections::BTreeMap<String, String>,
}

impl GlobalConfig {
    /// One message per external label that Prometheus would refuse.
    fn errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (name, value) in &self.external_labels {
            let mut chars = name.chars();
            let valid_name = chars
                .next()
                .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name || name.starts_with("__") {
                errors.push(format!(
                    "`global.external_labels.{name}`: not a label name (letters, digits and `_`, \
                     not starting with a digit or `__`)"
                ));
            }
            if value.is_empty() {
                errors.push(format!(
                    "`global.external_labels.{name}`: empty value (an empty label is no label: \
                     remove it)"
                ));
            }
        }
        errors
    }
}

/// Searches of the Elasticsearch API (and the UI): how many run at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Searches and counts running at once, on low-priority threads (Elasticsearch's
    /// `search` thread pool: 4 on two cores); rules do not wait for them.
    pub max_concurrent: usize,
    /// Searches waiting for a slot at most; one more is answered 429 at once.
    pub max_queued: usize,
    /// A search without its own `timeout` stops after this (between partitions) and
    /// answers what it found with `timed_out: true`.
    #[serde(with = "crate::duration_serde")]
    pub default_timeout: Duration,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            max_concurrent: 4,
            max_queued: 100,
            default_timeout: Duration::from_secs(60),
        }
    }
}

/// Connections and requests on the listener: what one client can hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Open connections at most; more are refused at once (and counted). Lowered at
    /// start to what the open-file limit leaves after Lookout's own files.
    pub max_connections: usize,
    /// A connection must send a whole request head within this time of being ready for
    /// one, so it also closes a keep-alive connection idle this long.
    #[serde(with = "crate::duration_serde")]
    pub header_read_timeout: Duration,
    /// A request body that sends nothing for this long fails with 408.
    #[serde(with = "crate::duration_serde")]
    pub body_read_timeout: Duration,
    /// On SIGTERM, requests in flight get this long to finish; slower clients are cut
    /// (what was acknowledged is committed either way).
    #[serde(with = "crate::duration_serde")]
    pub shutdown_timeout: Duration,
    /// Host names the server answers to (the `Host` header, against DNS rebinding), each
    /// with an optional port: `["logs.example.com", "logs.internal:9200"]`; `["*"]` for
    /// any. `localhost` and IP addresses are always answered. Empty (the default): with a
    /// loopback `listen` only those; with any other `listen` every name (its keys protect
    /// it).
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            allowed_hosts: Vec::new(),
        }
    }
}

pub use crate::server::tls::TlsConfig;

/// Limits and rules for accepting log lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request body accepted (compressed size as sent, and decompressed size).
    pub max_body_bytes: u64,
    /// Largest single NDJSON line.
    pub max_line_bytes: u64,
    /// Decoded bytes of all requests in flight together (a `_bulk` body counts only its
    /// pieces not written yet); beyond it requests get 429.
    pub max_in_flight_bytes: u64,
    /// Deepest JSON nesting accepted in a document.
    pub max_depth: usize,
    /// Where the event time is read from, in order.
    pub timestamp_fields: Vec<String>,
    /// Event times further than this in the future fail their item.
    #[serde(with = "crate::duration_serde")]
    pub future_tolerance: Duration,
    /// Event times older than this fail their item, never re-stamped as now (default: the
    /// retention; at most the retention).
    #[serde(with = "crate::duration_serde::option")]
    pub reject_older_than: Option<Duration>,
    /// How long per-file high-water marks of the agent protocol are kept (default: the
    /// retention).
    #[serde(with = "crate::duration_serde::option")]
    pub source_ttl: Option<Duration>,
    /// An agent silent this long is no longer waited for.
    #[serde(with = "crate::duration_serde")]
    pub agent_timeout: Duration,
    /// Size at which the write-ahead log starts a new segment file.
    pub wal_segment_bytes: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 100 * 1024 * 1024,
            max_line_bytes: 1024 * 1024,
            max_in_flight_bytes: 256 * 1024 * 1024,
            max_depth: 64,
            timestamp_fields: vec![
                "@timestamp".into(),
                "timestamp".into(),
                "time".into(),
                "ts".into(),
            ],
            future_tolerance: Duration::from_secs(15 * 60),
            reject_older_than: None,
            source_ttl: None,
            agent_timeout: Duration::from_secs(120),
            wal_segment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The tantivy index: partitions, retention, writers, refresh.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Documents older than this (event time) are dropped, a whole partition at a time.
    #[serde(with = "crate::duration_serde")]
    pub retention: Duration,
    /// Event-time span of one partition (must divide a day).
    #[serde(with = "crate::duration_serde")]
    pub partition_span: Duration,
    /// Acknowledged documents become searchable within this time.
    #[serde(with = "crate::duration_serde")]
    pub refresh_interval: Duration,
    /// With no search for this long the index is search-idle (Elasticsearch's
    /// `index.search.idle.after`): background refreshes pause (at most this long between
    /// commits) and the next search refreshes first and waits. A server nobody has
    /// searched yet is idle. `0s` never idles.
    #[serde(with = "crate::duration_serde")]
    pub search_idle_after: Duration,
    /// Indexing memory of one open partition writer, split among its threads.
    pub writer_memory_bytes: u64,
    /// Indexing threads of one partition writer.
    pub writer_threads: usize,
    /// Partition writers kept open at once (least recently used is closed first; one not
    /// written for a minute is closed at maintenance).
    pub max_open_writers: usize,
    /// Index deletion must name every index (Elasticsearch's
    /// `action.destructive_requires_name`): `DELETE /_all`, `/*` or `/logs-*` are refused.
    pub destructive_requires_name: bool,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            retention: Duration::from_secs(7 * 24 * 3600),
            partition_span: Duration::from_secs(3600),
            refresh_interval: Duration::from_millis(500),
            search_idle_after: Duration::from_secs(30),
            writer_memory_bytes: 128 * 1024 * 1024,
            writer_threads: 2,
            max_open_writers: 4,
            destructive_requires_name: true,
        }
    }
}

/// The metrics store and PromQL (`[metrics]`), Prometheus' defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Metrics older than this are deleted, a whole block at a time.
    #[serde(with = "crate::duration_serde")]
    pub retention: Duration,
    /// Time range of a block persisted from the in-memory head.
    #[serde(with = "crate::duration_serde")]
    pub block_duration: Duration,
    /// How far back an instant selector looks for a sample (`--query.lookback-delta`).
    #[serde(with = "crate::duration_serde")]
    pub lookback_delta: Duration,
    /// A query running longer fails with `errorType` `timeout` (`--query.timeout`).
    #[serde(with = "crate::duration_serde")]
    pub query_timeout: Duration,
    /// A query holding more samples fails instead of exhausting memory
    /// (`--query.max-samples`).
    pub query_max_samples: usize,
    /// PromQL queries of the API run at most this many at once
    /// (`--query.max-concurrency`), on low-priority threads; rules have their own.
    pub query_max_concurrency: usize,
    /// Queries waiting for a slot at most; one more is answered 503 at once.
    pub query_max_queued: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            retention: Duration::from_secs(15 * 24 * 3600),
            block_duration: Duration::from_secs(2 * 3600),
            lookback_delta: Duration::from_secs(300),
            query_timeout: Duration::from_secs(120),
            query_max_samples: 50_000_000,
            query_max_concurrency: 4,
            query_max_queued: 100,
        }
    }
}

impl MetricsConfig {
    pub fn tsdb_options(&self) -> crate::tsdb::TsdbOptions {
        crate::tsdb::TsdbOptions {
            block_duration: self.block_duration,
            retention: self.retention,
            max_series: None,
        }
    }

    pub fn engine_options(&self) -> crate::promql::EngineOptions {
        crate::promql::EngineOptions {
            lookback_delta: self.lookback_delta,
            timeout: self.query_timeout,
            max_samples: self.query_max_samples,
            ..crate::promql::EngineOptions::default()
        }
    }
}

/// Every problem found in a config file, each naming the file and field.
#[derive(Debug, thiserror::Error)]
#[error("{}", .errors.join("\n"))]
pub struct ConfigError {
    pub errors: Vec<String>,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            errors: vec![format!("{}: cannot read: {error}", path.display())],
        })?;
        let config: Config = toml::from_str(&text).map_err(|error| ConfigError {
            errors: vec![toml_error(&path.display().to_string(), &text, &error)],
        })?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Checks what types cannot; `origin` names the file in messages.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &str, message: &str| {
            if !ok {
                errors.push(format!("{origin}: `{field}`: {message}"));
            }
        };
        for (field, threads) in [
            ("search.max_concurrent", self.search.max_concurrent),
            (
                "metrics.query_max_concurrency",
                self.metrics.query_max_concurrency,
            ),
        ] {
            check(
                (1..=256).contains(&threads),
                field,
                "must be between 1 and 256",
            );
        }
        check(
            self.http.max_connections >= 8,
            "http.max_connections",
            "must be at least 8",
        );
        for (field, timeout) in [
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.body_read_timeout", self.http.body_read_timeout),
        ] {
            check(
                timeout >= Duration::from_millis(100),
                field,
                "must be at least 100ms",
            );
        }
        let span = self.index.partition_span.as_secs();
        check(
            span >= 60 && 86_400 % span == 0 && self.index.partition_span.subsec_nanos() == 0,
            "index.partition_span",
            "must be whole seconds, at least 1m, and divide a day (e.g. \"1h\", \"6h\", \"1d\")",
        );
        check(
            self.index.retention >= self.index.partition_span,
            "index.retention",
            "must be at least one partition_span",
        );
        check(
            self.index.refresh_interval >= Duration::from_millis(10),
            "index.refresh_interval",
            "must be at least 10ms",
        );
        check(
            self.index.writer_threads >= 1 && self.index.writer_threads <= 8,
            "index.writer_threads",
            "must be between 1 and 8",
        );
        check(
            self.index.writer_memory_bytes / self.index.writer_threads.max(1) as u64
                >= 15 * 1024 * 1024,
            "index.writer_memory_bytes",
            "must give each writer thread at least 15 MiB (tantivy's minimum)",
        );
        check(
            self.index.max_open_writers >= 1,
            "index.max_open_writers",
            "must be at least 1",
        );
        check(
            self.ingest.max_line_bytes >= 1024,
            "ingest.max_line_bytes",
            "must be at least 1024",
        );
        check(
            self.ingest.max_body_bytes >= self.ingest.max_line_bytes,
            "ingest.max_body_bytes",
            "must be at least ingest.max_line_bytes",
        );
        // `_bulk` bodies are held piece by piece, other bodies whole (a single document
        // is at most max_line_bytes): room for a document of max_line_bytes while the
        // next one arrives
        check(
            self.ingest.max_in_flight_bytes >= 2 * self.ingest.max_line_bytes,
            "ingest.max_in_flight_bytes",
            "must be at least twice ingest.max_line_bytes, or a document of max_line_bytes could find no room",
        );
        check(
            self.reject_older_than() <= self.index.retention,
            "ingest.reject_older_than",
            &format!(
                "is longer than index.retention ({}): lines that old would be accepted and then dropped by retention; raise index.retention too, or lower this",
                humantime::format_duration(self.index.retention)
            ),
        );
        check(
            self.ingest.max_depth >= 1,
            "ingest.max_depth",
            "must be at least 1",
        );
        check(
            !self.ingest.timestamp_fields.is_empty(),
            "ingest.timestamp_fields",
            "must name at least one field",
        );
        if let Some(url) = &self.external_url {
            check(
                url.starts_with("http://") || url.starts_with("https://"),
                "external_url",
                "must start with http:// or https://",
            );
        }
        errors.extend(
            self.storage
                .validate()
                .into_iter()
                .map(|error| format!("{origin}: {error}")),
        );
        if let Err(error) = crate::server::browser_guard::AllowedHosts::from_config(
            &self.http.allowed_hosts,
            self.listen.ip().is_loopback(),
        ) {
            errors.push(format!("{origin}: {error}"));
        }
        let tls_error = match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), Some(_)) => crate::server::tls::TlsFiles::from_config(&self.tls)
                .load()
                .err()
                .map(|error| error.to_string()),
            (None, None) if self.tls.client_ca_file.is_some() => Some(
                "`tls.client_ca_file`: needs `tls.cert_file` and `tls.key_file` (mutual TLS is part of HTTPS)".to_owned(),
            ),
            (None, None) => None,
            (Some(_), None) => Some("`tls.key_file`: is needed with `tls.cert_file`".to_owned()),
            (None, Some(_)) => Some("`tls.cert_file`: is needed with `tls.key_file`".to_owned()),
        };
        errors.extend(tls_error.map(|error| format!("{origin}: {error}")));
        if let Err(found) = crate::keys::configured_keys(&self.auth) {
            errors.extend(found.into_iter().map(|error| format!("{origin}: {error}")));
        }
        if let Err(agent_errors) = self.agent.validate(origin, "agent.") {
            errors.extend(agent_errors);
        }
        for scrape in &self.scrape_configs {
            if let Err(found) = crate::scrape::target::Job::new(scrape.clone()) {
                errors.extend(found.into_iter().map(|error| format!("{origin}: {error}")));
            }
        }
        if let Some(path) = &self.prometheus_config {
            match crate::scrape::prometheus_yml::load(path) {
                Ok((jobs, _)) => {
                    for scrape in jobs {
                        if let Err(found) = crate::scrape::target::Job::new(scrape) {
                            errors.extend(
                                found
                                    .into_iter()
                                    .map(|error| format!("{}: {error}", path.display())),
                            );
                        }
                    }
                }
                Err(error) => errors.push(format!("{origin}: prometheus_config: {error}")),
            }
        }
        if let Err(found) = crate::datasource::Datasources::build(&self.datasources) {
            errors.extend(found.into_iter().map(|error| format!("{origin}: {error}")));
        }
        errors.extend(
            crate::remote_write::validate(&self.remote_write)
                .into_iter()
                .map(|error| format!("{origin}: {error}")),
        );
        errors.extend(crate::notify::notifiers::validate(&self.notifiers, origin));
        errors.extend(crate::notify::notifiers::validate_receivers(
            &self.notifiers,
            &self.routing,
            origin,
        ));
        let intervals = crate::notify::time_interval::TimeIntervals::build(&self.time_intervals)
            .unwrap_or_else(|found| {
                errors.extend(found.into_iter().map(|error| format!("{origin}: {error}")));
                Default::default()
            });
        errors.extend(
            crate::notify::route::validate(&self.routing, &self.inhibit_rules, &intervals)
                .into_iter()
                .map(|error| format!("{origin}: {error}")),
        );
        if let Some(heartbeat) = &self.heartbeat {
            errors.extend(
                heartbeat
                    .validate()
                    .into_iter()
                    .map(|error| format!("{origin}: {error}")),
            );
        }
        errors.extend(crate::tenant::validate(
            &self.tenants,
            &crate::tenant::TopLevel {
                limits: &self.limits,
                queries_dir: &self.queries_dir,
                inhibit_rules: &self.inhibit_rules,
                time_intervals: &self.time_intervals,
            },
            origin,
        ));
        errors.extend(
            self.global
                .errors()
                .into_iter()
                .map(|error| format!("{origin}: {error}")),
        );
        errors.extend(
            crate::relabel::validate(&self.alert_relabel_configs, "alert_relabel_configs")
                .into_iter()
                .map(|error| format!("{origin}: {error}")),
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { errors })
        }
    }

    /// Every scrape job: `[[scrape_configs]]` and those of `prometheus_config`, with a
    /// warning for each section of the latter Lookout ignores.
    pub fn scrape_jobs(
        &self,
    ) -> Result<(Vec<crate::scrape::target::ScrapeConfig>, Vec<String>), String> {
        let mut jobs = self.scrape_configs.clone();
        let mut warnings = Vec::new();
        if let Some(path) = &self.prometheus_config {
            let (more, found) = crate::scrape::prometheus_yml::load(path)?;
            jobs.extend(more);
            warnings = found;
        }
        Ok((jobs, warnings))
    }

    /// How long the agent protocol's high-water marks live.
    pub fn source_ttl(&self) -> Duration {
        self.ingest.source_ttl.unwrap_or(self.index.retention)
    }

    /// Event times older than this are refused.
    pub fn reject_older_than(&self) -> Duration {
        self.ingest
            .reject_older_than
            .unwrap_or(self.index.retention)
    }

    /// The index settings of this config.
    pub fn store_settings(&self) -> crate::index::store::StoreSettings {
        crate::index::store::StoreSettings {
            partition_span_micros: micros(self.index.partition_span),
            retention_micros: micros(self.index.retention),
            writer: crate::index::partition::WriterOptions {
                threads: self.index.writer_threads,
                memory_bytes: self.index.writer_memory_bytes as usize,
            },
            max_open_writers: self.index.max_open_writers,
        }
    }

    /// The ingest settings of this config.
    pub fn ingest_settings(&self) -> crate::ingest::IngestSettings {
        crate::ingest::IngestSettings {
            rules: crate::ingest::event::EventRules {
                timestamp_fields: self.ingest.timestamp_fields.clone(),
                max_depth: self.ingest.max_depth,
                max_line_bytes: self.ingest.max_line_bytes as usize,
                reject_older_than_micros: micros(self.reject_older_than()),
                future_tolerance_micros: micros(self.ingest.future_tolerance),
            },
            source_ttl: self.source_ttl(),
            agent_timeout: self.ingest.agent_timeout,
            max_in_flight_bytes: self.ingest.max_in_flight_bytes,
            wal_segment_bytes: self.ingest.wal_segment_bytes,
            refresh_interval: self.index.refresh_interval,
            search_idle_after: self.index.search_idle_after,
        }
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn external_labels_must_be_prometheus_label_names_with_values() {
        let config: super::Config = toml::from_str(
            "[global]\nexternal_labels = { cluster = \"eu1\", \"1x\" = \"a\", __meta = \"b\", replica = \"\" }\n",
        )
        .unwrap();
        let errors = config.validate("lookout.toml").unwrap_err().errors;
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("external_labels.1x")));
        assert!(errors.iter().any(|e| e.contains("external_labels.__meta")));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("external_labels.replica") && e.contains("empty"))
        );
        let good: super::Config =
            toml::from_str("[global]\nexternal_labels = { cluster = \"eu1\" }\n").unwrap();
        good.validate("lookout.toml").unwrap();
        assert_eq!(good.global.external_labels["cluster"], "eu1");
    }

    use super::*;

    #[test]
    fn shipped_config_file_parses_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lookout.toml");
        let config = Config::load(&path).expect("config/lookout.toml is valid");
        let defaults = Config::default();
        assert_eq!(
            serde_json::to_value(&config).expect("serializes"),
            serde_json::to_value(&defaults).expect("serializes"),
            "config/lookout.toml must document the defaults"
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_reported_with_file_and_field() {
        let error = toml::from_str::<Config>("[index]\nretension = \"7d\"\n").expect_err("typo");
        assert!(error.to_string().contains("retension"), "{error}");

        let config: Config =
            toml::from_str("[index]\npartition_span = \"7m\"\nretention = \"1m\"\n")
                .expect("parses");
        let error = config.validate("lookout.toml").expect_err("invalid");
        assert_eq!(error.errors.len(), 2, "{error}");
        assert!(
            error.errors[0].starts_with("lookout.toml: `index.partition_span`"),
            "{error}"
        );

        let config: Config =
            toml::from_str("[ingest]\nreject_older_than = \"30d\"\n").expect("parses");
        let error = config
            .validate("lookout.toml")
            .expect_err("beyond the retention");
        assert_eq!(
            error.errors,
            [
                "lookout.toml: `ingest.reject_older_than`: is longer than index.retention (7days): lines that old would be accepted and then dropped by retention; raise index.retention too, or lower this"
            ]
        );
    }

    #[test]
    fn token_is_redacted_in_debug_output() {
        let auth = AuthConfig {
            token: Some("s3cret".into()),
            ..AuthConfig::default()
        };
        assert!(!format!("{auth:?}").contains("s3cret"));
    }
}
