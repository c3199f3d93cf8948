//! Scrape jobs and their targets, with Prometheus' `scrape_configs` field names, and one
//! scrape of one target.
//!
//! Targets are built as Prometheus builds them: each static target starts with `job`,
//! `__address__`, `__scheme__`, `__metrics_path__`, `__scrape_interval__`,
//! `__scrape_timeout__`, `__param_NAME` and the group's labels; `relabel_configs` run over
//! them (and may drop the target); `instance` defaults to `__address__`; labels starting
//! with `__` are then removed, and the URL is built from what the relabelling left.
//!
//! A scrape asks for OpenMetrics or the text format (`Accept`, Prometheus' order), parses
//! what the `Content-Type` says, applies `metric_relabel_configs`, attaches the target's
//! labels (on a clash the scraped label is kept as `exported_NAME`, or wins with
//! `honor_labels`), enforces `sample_limit`, and adds the synthetic series `up`,
//! `scrape_duration_seconds` and `scrape_samples_scraped`. A failed
//! scrape is `up 0` with the reason (for a bad exposition: its line and column).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::exposition::{self, Format};
use crate::relabel::{Relabel, RelabelConfig};
use crate::tsdb::head::Labels;

/// One `[[scrape_configs]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub job_name: String,
    #[serde(default, with = "crate::duration_serde::option")]
    pub scrape_interval: Option<Duration>,
    #[serde(default, with = "crate::duration_serde::option")]
    pub scrape_timeout: Option<Duration>,
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    /// Files of target groups (JSON or YAML, Prometheus' file_sd format), re-read when
    /// they change.
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(default)]
    pub honor_labels: bool,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing)]
    pub bearer_token: Option<crate::secret::Secret>,
    #[serde(default)]
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// Samples per scrape at most (0: no limit); beyond, the scrape fails.
    #[serde(default)]
    pub sample_limit: usize,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

fn default_scheme() -> String {
    "http".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One `file_sd_configs` entry: globs of files holding `[{targets, labels}]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    pub files: Vec<String>,
    /// Files are re-read at least this often even when they look unchanged.
    #[serde(default, with = "crate::duration_serde::option")]
    pub refresh_interval: Option<Duration>,
}

/// Reads a file_sd file: a list of `{targets, labels}` groups, JSON (`.json`) or YAML
/// (`.yml`, `.yaml`); each group gets `__meta_filepath`.
pub fn read_target_file(path: &std::path::Path) -> Result<Vec<StaticConfig>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .unwrap_or_default();
    let mut groups: Vec<StaticConfig> = match extension {
        "json" => {
            serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?
        }
        "yml" | "yaml" => serde_yaml_ng::from_str(&text)
            .map_err(|error| format!("{}: {error}", path.display()))?,
        _ => {
            return Err(format!(
                "{}: a file_sd file must end in .json, .yml or .yaml",
                path.display()
            ));
        }
    };
    for group in &mut groups {
        group
            .labels
            .insert("__meta_filepath".into(), path.display().to_string());
    }
    Ok(groups)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default, skip_serializing)]
    pub password: Option<crate::secret::Secret>,
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
}

/// Prometheus' defaults: scrape every minute, time out after 10 s.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A target ready to scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub job: String,
    pub url: String,
    /// The labels every scraped series gets (`job`, `instance`, static and relabelled).
    pub labels: BTreeMap<String, String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// The labels before relabelling (`/api/v1/targets`' `discoveredLabels`).
    pub discovered: BTreeMap<String, String>,
}

/// A job's checked settings.
pub struct Job {
    pub config: ScrapeConfig,
    relabel: Relabel,
    metric_relabel: Relabel,
    authorization: Option<String>,
}

impl Job {
    /// Checks a job; every error names its field.
    pub fn new(config: ScrapeConfig) -> Result<Job, Vec<String>> {
        let mut errors = Vec::new();
        let field = |name: &str| format!("scrape_configs `{}`: `{name}`", config.job_name);
        // `scrape_configs `node`: `relabel_configs`[2]: `regex`: …`
        let compile = |steps: &[RelabelConfig], name: &str, errors: &mut Vec<String>| {
            Relabel::compile(steps).unwrap_or_else(|found| {
                errors.extend(found.into_iter().map(|error| {
                    let step = error.step.map(|step| format!("[{step}]"));
                    let step_field = error.field.map(|name| format!(" `{name}`:"));
                    format!(
                        "{}{}:{} {}",
                        field(name),
                        step.unwrap_or_default(),
                        step_field.unwrap_or_default(),
                        error.problem
                    )
                }));
                Relabel::default()
            })
        };
        let relabel = compile(&config.relabel_configs, "relabel_configs", &mut errors);
        let metric_relabel = compile(
            &config.metric_relabel_configs,
            "metric_relabel_configs",
            &mut errors,
        );
        if config.job_name.is_empty() {
            errors.push("scrape_configs: `job_name` must not be empty".into());
        }
        if !matches!(config.scheme.as_str(), "http" | "https") {
            errors.push(format!("{}: must be http or https", field("scheme")));
        }
        for (number, file_sd) in config.file_sd_configs.iter().enumerate() {
            for pattern in &file_sd.files {
                if let Err(error) = glob::Pattern::new(pattern) {
                    errors.push(format!(
                        "{}[{number}].files: `{pattern}`: {error}",
                        field("file_sd_configs")
                    ));
                }
            }
        }
        if !config.metrics_path.starts_with('/') {
            errors.push(format!("{}: must start with /", field("metrics_path")));
        }
        let interval = config.scrape_interval.unwrap_or(DEFAULT_INTERVAL);
        if config
            .scrape_timeout
            .unwrap_or(DEFAULT_TIMEOUT.min(interval))
            > interval
        {
            errors.push(format!(
                "{}: must not exceed scrape_interval",
                field("scrape_timeout")
            ));
        }
        let authorization = match (
            &config.basic_auth,
            &config.bearer_token,
            &config.bearer_token_file,
        ) {
            (Some(_), Some(_) | None, Some(_)) | (Some(_), Some(_), None) => {
                errors.push(format!(
                    "{}: basic_auth and bearer_token are exclusive",
                    field("basic_auth")
                ));
                None
            }
            (Some(basic), None, None) => {
                let password = crate::secret::resolve_secret(
                    basic.password.as_ref().map(|secret| secret.0.as_str()),
                    None,
                    basic.password_file.as_deref(),
                )
                .map_err(|(_, error)| {
                    errors.push(format!("{}: {error}", field("basic_auth.password_file")))
                })
                .ok()
                .flatten()
                .unwrap_or_default();
                use base64::Engine;
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{password}", basic.username))
                ))
            }
            (None, token, file) => crate::secret::resolve_secret(
                token.as_ref().map(|secret| secret.0.as_str()),
                None,
                file.as_deref(),
            )
            .map_err(|(_, error)| errors.push(format!("{}: {error}", field("bearer_token_file"))))
            .ok()
            .flatten()
            .map(|token| format!("Bearer {token}")),
        };
        if errors.is_empty() {
            Ok(Job {
                config,
                relabel,
                metric_relabel,
                authorization,
            })
        } else {
            Err(errors)
        }
    }

    /// The job's static targets after `relabel_configs`.
    pub fn targets(&self) -> Vec<Target> {
        self.targets_of(&self.config.static_configs)
    }

    /// The targets of `groups` (static or discovered) after `relabel_configs`.
    pub fn targets_of(&self, groups: &[StaticConfig]) -> Vec<Target> {
        let config = &self.config;
        let interval = config.scrape_interval.unwrap_or(DEFAULT_INTERVAL);
        let timeout = config
            .scrape_timeout
            .unwrap_or(DEFAULT_TIMEOUT.min(interval));
        let mut targets = Vec::new();
        for group in groups {
            for address in &group.targets {
                let mut labels: BTreeMap<String, String> = group.labels.clone();
                labels.insert("job".into(), config.job_name.clone());
                labels.insert("__address__".into(), address.clone());
                labels.insert("__scheme__".into(), config.scheme.clone());
                labels.insert("__metrics_path__".into(), config.metrics_path.clone());
                labels.insert("__scrape_interval__".into(), prometheus_duration(interval));
                labels.insert("__scrape_timeout__".into(), prometheus_duration(timeout));
                for (name, values) in &config.params {
                    if let Some(first) = values.first() {
                        labels.insert(format!("__param_{name}"), first.clone());
                    }
                }
                let discovered = labels.clone();
                if !self.relabel.process(&mut labels) {
                    continue;
                }
                let Some(address) = labels.get("__address__").cloned() else {
                    continue;
                };
                labels
                    .entry("instance".into())
                    .or_insert_with(|| address.clone());
                let scheme = labels.get("__scheme__").cloned().unwrap_or_default();
                let path = labels.get("__metrics_path__").cloned().unwrap_or_default();
                let query: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(name, value)| {
                        Some((name.strip_prefix("__param_")?.to_string(), value.clone()))
                    })
                    .collect();
                let parsed = if query.is_empty() {
                    reqwest::Url::parse(&format!("{scheme}://{address}{path}"))
                } else {
                    reqwest::Url::parse_with_params(&format!("{scheme}://{address}{path}"), &query)
                };
                let url = match parsed {
                    Ok(url) => url.to_string(),
                    Err(error) => {
                        tracing::warn!(job = %config.job_name, %address, %error, "target dropped: not a URL");
                        continue;
                    }
                };
                labels.retain(|name, _| !name.starts_with("__"));
                targets.push(Target {
                    job: config.job_name.clone(),
                    url,
                    labels,
                    interval,
                    timeout,
                    discovered,
                });
            }
        }
        targets
    }
}

/// A duration as Prometheus prints it (`5s`, `1m`, `500ms`).
pub fn prometheus_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if duration.subsec_millis() != 0 {
        format!("{}ms", duration.as_millis())
    } else if seconds.is_multiple_of(60) && seconds > 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// A label's value in a label set.
pub fn label<'l>(labels: &'l Labels, name: &str) -> Option<&'l str> {
    labels
        .iter()
        .find(|(label, _)| label == name)
        .map(|(_, value)| value.as_str())
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What a target's scrape loop remembers between scrapes, as Prometheus' scrape cache
/// does: each exposition series (keyed by its name and labels as written) with its final
/// labels, or `None` when metric relabelling dropped it. A series seen before skips
/// relabelling, label merging and label-set hashing; the scrape numbers tell which
/// series disappeared.
#[derive(Default)]
pub struct SeriesCache {
    entries: FastMap<String, CacheEntry>,
    finals: FastMap<Labels, String>,
    scrape: u64,
    /// The families' metadata of the last successful scrape.
    pub metadata: HashMap<String, exposition::Metadata>,
}

struct CacheEntry {
    labels: Option<Labels>,
    seen: u64,
}

impl SeriesCache {
    /// The final label sets of the last scrape.
    pub fn current(&self) -> Vec<Labels> {
        self.entries
            .values()
            .filter(|entry| entry.seen == self.scrape)
            .filter_map(|entry| entry.labels.clone())
            .collect()
    }

    /// The final label sets seen in the previous scrape but not in the last one; entries
    /// unseen for longer are forgotten.
    pub fn gone(&mut self) -> Vec<Labels> {
        let (current, previous) = (self.scrape, self.scrape.saturating_sub(1));
        let gone = self
            .entries
            .values()
            .filter(|entry| entry.seen == previous && previous > 0)
            .filter_map(|entry| entry.labels.clone())
            .collect();
        let finals = &mut self.finals;
        self.entries.retain(|_, entry| {
            let keep = entry.seen + 1 >= current;
            if !keep && let Some(labels) = &entry.labels {
                finals.remove(labels);
            }
            keep
        });
        gone
    }
}

/// What one scrape produced.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// Every series with its final labels (`__name__` included) and value, synthetic
    /// ones too.
    pub samples: Vec<(Labels, f64, Option<i64>)>,
    /// Series not seen in the previous scrape (`scrape_series_added`).
    pub added: usize,
    /// Why the scrape failed (`up` is then 0).
    pub error: Option<String>,
    pub duration: Duration,
}

/// Prometheus' `Accept` header: OpenMetrics first, then the text format.
pub const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";

/// Scrapes `target` once: its series and the synthetic `up`, `scrape_duration_seconds`
/// and `scrape_samples_scraped` (`scrape_series_added` and staleness markers need the
/// previous scrape: the scrape loop adds them).
pub async fn scrape(
    job: &Job,
    target: &Target,
    client: &reqwest::Client,
    cache: &mut SeriesCache,
) -> Scrape {
    let started = std::time::Instant::now();
    cache.scrape += 1;
    let result = fetch(job, target, client, cache).await;
    let duration = started.elapsed();
    let (mut samples, added, error) = match result {
        Ok((samples, added)) => (samples, added, None),
        Err(error) => (Vec::new(), 0, Some(error)),
    };
    let scraped = samples.len();
    let synthetic = |name: &str, value: f64| {
        let mut labels = target.labels.clone();
        labels.insert("__name__".into(), name.into());
        let labels: Labels = labels.into_iter().collect::<Vec<_>>().into();
        (labels, value, None)
    };
    samples.push(synthetic("up", if error.is_none() { 1.0 } else { 0.0 }));
    samples.push(synthetic("scrape_duration_seconds", duration.as_secs_f64()));
    samples.push(synthetic("scrape_samples_scraped", scraped as f64));
    Scrape {
        samples,
        added,
        error,
        duration,
    }
}

type Series = (Labels, f64, Option<i64>);

/// The scrape's series and how many are new since the previous scrape.
async fn fetch(
    job: &Job,
    target: &Target,
    client: &reqwest::Client,
    cache: &mut SeriesCache,
) -> Result<(Vec<Series>, usize), String> {
    let mut request = client
        .get(&target.url)
        .header("accept", ACCEPT)
        .header(
            "x-prometheus-scrape-timeout-seconds",
            format!("{}", target.timeout.as_secs_f64()),
        )
        .timeout(target.timeout);
    if let Some(authorization) = &job.authorization {
        request = request.header("authorization", authorization);
    }
    let response = request
        .send()
        .await
        .map_err(|error| error.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("server returned HTTP status {}", response.status()));
    }
    let format = Format::from_content_type(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default(),
    );
    let body = response
        .text()
        .await
        .map_err(|error| error.without_url().to_string())?;
    let (parsed, metadata) =
        exposition::parse_with_metadata(&body, format).map_err(|error| error.to_string())?;
    cache.metadata = metadata;
    if job.config.sample_limit > 0 && parsed.len() > job.config.sample_limit {
        return Err(format!(
            "sample limit exceeded: {} samples, limit {}",
            parsed.len(),
            job.config.sample_limit
        ));
    }
    let scrape = cache.scrape;
    let mut series = Vec::with_capacity(parsed.len());
    let mut added = 0;
    let mut key = String::new();
    for sample in parsed {
        key.clear();
        key.push_str(&sample.name);
        for (name, value) in &sample.labels {
            key.push('\u{0}');
            key.push_str(name);
            key.push('\u{0}');
            key.push_str(value);
        }
        if let Some(entry) = cache.entries.get_mut(key.as_str()) {
            if entry.seen == scrape {
                return Err(format!("duplicate series {}", key.replace('\u{0}', " ")));
            }
            let returning = entry.seen + 1 != scrape;
            entry.seen = scrape;
            if let Some(labels) = &entry.labels {
                series.push((Arc::clone(labels), sample.value, sample.timestamp_ms));
                added += usize::from(returning);
            }
            continue;
        }
        let labels = final_labels(job, target, sample.name, sample.labels);
        if let Some(labels) = &labels {
            if let Some(other) = cache.finals.get(labels)
                && cache
                    .entries
                    .get(other.as_str())
                    .is_some_and(|entry| entry.seen == scrape)
            {
                return Err(format!("duplicate series {}", describe(labels)));
            }
            cache.finals.insert(Arc::clone(labels), key.clone());
            series.push((Arc::clone(labels), sample.value, sample.timestamp_ms));
            added += 1;
        }
        cache.entries.insert(
            key.clone(),
            CacheEntry {
                labels,
                seen: scrape,
            },
        );
    }
    Ok((series, added))
}

/// A new series' labels: metric relabelling, then the target's labels (a clash keeps
/// the scraped value as `exported_NAME`, or the scraped value wins with `honor_labels`).
fn final_labels(
    job: &Job,
    target: &Target,
    name: String,
    scraped: Vec<(String, String)>,
) -> Option<Labels> {
    let mut labels: BTreeMap<String, String> = scraped.into_iter().collect();
    labels.insert("__name__".into(), name);
    if !job.metric_relabel.process(&mut labels) {
        return None;
    }
    for (name, value) in &target.labels {
        match labels.get(name) {
            Some(_) if job.config.honor_labels => {}
            Some(existing) if existing != value && !existing.is_empty() => {
                let existing = existing.clone();
                labels.insert(format!("exported_{name}"), existing);
                labels.insert(name.clone(), value.clone());
            }
            _ => {
                labels.insert(name.clone(), value.clone());
            }
        }
    }
    labels.retain(|_, value| !value.is_empty());
    Some(labels.into_iter().collect::<Vec<_>>().into())
}

fn describe(labels: &Labels) -> String {
    let name = label(labels, "__name__").unwrap_or_default();
    let rest: Vec<String> = labels
        .iter()
        .filter(|(label, _)| label != "__name__")
        .map(|(label, value)| format!("{label}={value:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(toml_text: &str) -> Job {
        Job::new(toml::from_str(toml_text).expect("parses")).expect("valid")
    }

    #[test]
    fn targets_are_built_and_relabelled_as_prometheus_does() {
        let job = job(r#"
            job_name = "node"
            scrape_interval = "15s"
            metrics_path = "/probe"
            params = { module = ["http_2xx"] }
            [[static_configs]]
            targets = ["db-1:9100", "db-2:9100"]
            labels = { env = "prod" }
            [[relabel_configs]]
            source_labels = ["__address__"]
            regex = "db-2:.*"
            action = "drop"
            [[relabel_configs]]
            source_labels = ["__address__"]
            regex = "([^:]+):.*"
            target_label = "host"
        "#);
        let targets = job.targets();
        assert_eq!(targets.len(), 1, "db-2 dropped");
        let target = &targets[0];
        assert_eq!(target.url, "http://db-1:9100/probe?module=http_2xx");
        assert_eq!(
            target.labels,
            BTreeMap::from([
                ("env".to_string(), "prod".to_string()),
                ("host".to_string(), "db-1".to_string()),
                ("instance".to_string(), "db-1:9100".to_string()),
                ("job".to_string(), "node".to_string()),
            ])
        );
        assert_eq!(
            (target.interval, target.timeout),
            (Duration::from_secs(15), Duration::from_secs(10))
        );
    }

    #[test]
    fn bad_jobs_name_their_fields() {
        let errors = Job::new(
            toml::from_str(
                r#"
                job_name = "x"
                scheme = "ftp"
                scrape_interval = "5s"
                scrape_timeout = "10s"
                [[relabel_configs]]
                regex = "("
            "#,
            )
            .expect("parses"),
        )
        .err()
        .expect("invalid");
        let text = errors.join("\n");
        for expected in [
            "`scheme`",
            "`scrape_timeout`",
            "`relabel_configs`[0]: `regex`",
        ] {
            assert!(text.contains(expected), "{expected} missing from {text}");
        }
    }

    async fn serve(body: &'static str, content_type: &'static str) -> String {
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: axum::http::HeaderMap| async move {
                assert!(
                    headers["accept"]
                        .to_str()
                        .is_ok_and(|accept| accept.contains("openmetrics")),
                    "Prometheus' Accept header"
                );
                ([("content-type", content_type)], body)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        address.to_string()
    }

    fn client() -> reqwest::Client {
        crate::install_tls_provider();
        reqwest::Client::new()
    }

    #[tokio::test]
    async fn a_scrape_labels_relabels_and_adds_the_synthetic_series() {
        let address = serve(
            "# TYPE requests_total counter\nrequests_total{code=\"200\",job=\"app\"} 7\nrequests_total{code=\"500\"} 1\ngo_goroutines 12\n# EOF\n",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .await;
        let job = job(&format!(
            r#"
            job_name = "api"
            [[static_configs]]
            targets = ["{address}"]
            [[metric_relabel_configs]]
            source_labels = ["__name__"]
            regex = "go_.*"
            action = "drop"
        "#
        ));
        let target = &job.targets()[0];
        let scrape = scrape(&job, target, &client(), &mut SeriesCache::default()).await;
        assert_eq!(scrape.error, None);
        let find = |name: &str, code: Option<&str>| {
            scrape
                .samples
                .iter()
                .find(|(labels, _, _)| {
                    label(labels, "__name__") == Some(name) && label(labels, "code") == code
                })
                .unwrap_or_else(|| panic!("{name} missing from {:?}", scrape.samples))
                .clone()
        };
        let ok = find("requests_total", Some("200"));
        assert_eq!(label(&ok.0, "job"), Some("api"));
        assert_eq!(
            label(&ok.0, "exported_job"),
            Some("app"),
            "a clashing scraped label is kept as exported_"
        );
        assert_eq!(label(&ok.0, "instance"), Some(address.as_str()));
        assert_eq!(find("up", None).1, 1.0);
        assert_eq!(
            find("scrape_samples_scraped", None).1,
            2.0,
            "after metric relabelling"
        );
        assert!(
            !scrape
                .samples
                .iter()
                .any(|(labels, _, _)| label(labels, "__name__") == Some("go_goroutines"))
        );
    }

    #[tokio::test]
    async fn a_bad_exposition_is_up_0_with_its_line_and_column() {
        let address = serve("ok 1\nbroken{a=\"b\" 2\n", "text/plain; version=0.0.4").await;
        let job = job(&format!(
            "job_name = \"bad\"\n[[static_configs]]\ntargets = [\"{address}\"]\n"
        ));
        let scrape = scrape(
            &job,
            &job.targets()[0],
            &client(),
            &mut SeriesCache::default(),
        )
        .await;
        let error = scrape.error.expect("failed");
        assert!(error.contains("line 2, column 14"), "{error}");
        let up = scrape
            .samples
            .iter()
            .find(|(labels, _, _)| label(labels, "__name__") == Some("up"))
            .expect("up");
        assert_eq!(up.1, 0.0);
        assert_eq!(scrape.samples.len(), 3, "only the synthetic series");
    }
}
