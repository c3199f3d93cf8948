//! The scrape loop: every target of every job scraped on its interval (each target at its
//! own offset within the interval, so a thousand targets do not fire at once), targets
//! following their file_sd files (checked every second; a removed target's series are
//! marked stale), the
//! samples stored in the TSDB with one fsync per scrape, staleness markers for series
//! that disappeared (and for all of a target's series when its scrape fails), and each
//! target's health for `/api/v1/targets`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::target::{
    Job, ScrapeConfig, SeriesCache, StaticConfig, Target, read_target_file, scrape,
};
use crate::tsdb::Tsdb;
use crate::tsdb::head::Labels;

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// One target's last scrape, as `/api/v1/targets` shows it.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    pub target: Target,
    pub health: &'static str,
    pub last_error: String,
    pub last_scrape: Option<DateTime<Utc>>,
    pub last_duration: f64,
    /// The families' metadata of its last successful scrape (`/api/v1/targets/metadata`).
    pub metadata: HashMap<String, crate::scrape::exposition::Metadata>,
}

pub struct ScrapeManager {
    jobs: Vec<Arc<Job>>,
    tsdb: Arc<Tsdb>,
    client: reqwest::Client,
    statuses: Mutex<BTreeMap<(String, String), TargetStatus>>,
    /// Parsed file_sd files with the (modified time, length) they were read at.
    files: Mutex<HashMap<PathBuf, FileGroups>>,
    /// Every scraped family's type, help and unit (`/api/v1/metadata`).
    metadata: Mutex<BTreeMap<String, crate::scrape::exposition::Metadata>>,
}

struct FileGroups {
    stamp: (std::time::SystemTime, u64),
    read_at: std::time::Instant,
    groups: Vec<StaticConfig>,
}

/// How often file_sd files are checked for changes.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// Prometheus' default `refresh_interval`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

impl ScrapeManager {
    /// Checks every job; the errors name job and field.
    pub fn new(configs: &[ScrapeConfig], tsdb: Arc<Tsdb>) -> Result<ScrapeManager, Vec<String>> {
        let mut jobs = Vec::new();
        let mut errors = Vec::new();
        let mut names = HashSet::new();
        for config in configs {
            if !names.insert(config.job_name.clone()) {
                errors.push(format!(
                    "scrape_configs: job_name `{}` is used twice; job names must be unique",
                    config.job_name
                ));
            }
            match Job::new(config.clone()) {
                Ok(job) => jobs.push(Arc::new(job)),
                Err(found) => errors.extend(found),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        crate::install_tls_provider();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|error| vec![format!("cannot build the scrape client: {error}")])?;
        let manager = ScrapeManager {
            jobs,
            tsdb,
            client,
            statuses: Mutex::new(BTreeMap::new()),
            files: Mutex::new(HashMap::new()),
            metadata: Mutex::new(BTreeMap::new()),
        };
        let targets = manager.discover();
        manager.track(&targets);
        Ok(manager)
    }

    fn lock_statuses(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), TargetStatus>> {
        self.statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every scraped family's metadata, by family name.
    pub fn metadata(&self) -> BTreeMap<String, crate::scrape::exposition::Metadata> {
        self.metadata
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every job's config, as given (`/api/v1/status/config`).
    pub fn configs(&self) -> Vec<ScrapeConfig> {
        self.jobs.iter().map(|job| job.config.clone()).collect()
    }

    /// Every target with its last scrape.
    pub fn targets(&self) -> Vec<TargetStatus> {
        self.lock_statuses().values().cloned().collect()
    }

    /// Every job's targets: static ones and those in its file_sd files (re-read when
    /// changed; a file that no longer parses keeps its last good groups).
    fn discover(&self) -> Vec<(Arc<Job>, Target)> {
        let mut files = self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut seen: HashSet<PathBuf> = HashSet::new();
        let mut targets = Vec::new();
        let mut keys = HashSet::new();
        for job in &self.jobs {
            let mut groups = job.config.static_configs.clone();
            for file_sd in &job.config.file_sd_configs {
                let refresh = file_sd.refresh_interval.unwrap_or(DEFAULT_REFRESH);
                for pattern in &file_sd.files {
                    let paths = glob::glob(pattern)
                        .map(|paths| paths.filter_map(Result::ok).collect::<Vec<_>>())
                        .unwrap_or_default();
                    for path in paths {
                        seen.insert(path.clone());
                        let Ok(metadata) = std::fs::metadata(&path) else {
                            continue;
                        };
                        let stamp = (
                            metadata.modified().unwrap_or(std::time::UNIX_EPOCH),
                            metadata.len(),
                        );
                        let fresh = files.get(&path).is_some_and(|cached| {
                            cached.stamp == stamp && cached.read_at.elapsed() < refresh
                        });
                        if !fresh {
                            match read_target_file(&path) {
                                Ok(read) => {
                                    tracing::info!(job = %job.config.job_name, file = %path.display(), groups = read.len(), "file_sd targets read");
                                    files.insert(
                                        path.clone(),
                                        FileGroups {
                                            stamp,
                                            read_at: std::time::Instant::now(),
                                            groups: read,
                                        },
                                    );
                                }
                                Err(error) => {
                                    if files.get(&path).is_none_or(|cached| cached.stamp != stamp) {
                                        tracing::error!(job = %job.config.job_name, %error, "cannot read a file_sd file; keeping its last good targets");
                                    }
                                    if let Some(cached) = files.get_mut(&path) {
                                        cached.stamp = stamp;
                                        cached.read_at = std::time::Instant::now();
                                    }
                                }
                            }
                        }
                        if let Some(cached) = files.get(&path) {
                            groups.extend(cached.groups.iter().cloned());
                        }
                    }
                }
            }
            for target in job.targets_of(&groups) {
                if keys.insert((target.job.clone(), target.url.clone())) {
                    targets.push((Arc::clone(job), target));
                } else {
                    tracing::debug!(job = %target.job, url = %target.url, "duplicate target ignored");
                }
            }
        }
        // a deleted file's targets go away
        files.retain(|path, _| seen.contains(path));
        targets
    }

    /// Statuses for exactly these targets (new ones `unknown`).
    fn track(&self, targets: &[(Arc<Job>, Target)]) {
        let mut statuses = self.lock_statuses();
        let wanted: HashSet<(String, String)> = targets
            .iter()
            .map(|(_, target)| (target.job.clone(), target.url.clone()))
            .collect();
        statuses.retain(|key, _| wanted.contains(key));
        for (_, target) in targets {
            let key = (target.job.clone(), target.url.clone());
            let unchanged = statuses
                .get(&key)
                .is_some_and(|status| status.target == *target);
            if !unchanged {
                statuses.insert(
                    key,
                    TargetStatus {
                        target: target.clone(),
                        health: "unknown",
                        last_error: String::new(),
                        last_scrape: None,
                        last_duration: 0.0,
                        metadata: HashMap::new(),
                    },
                );
            }
        }
    }

    /// Scrapes until `cancel`, following target changes in file_sd files.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut loops = tokio::task::JoinSet::new();
        let mut running: HashMap<(String, String), (Target, CancellationToken)> = HashMap::new();
        let mut targets = self.discover();
        loop {
            let wanted: HashMap<(String, String), &(Arc<Job>, Target)> = targets
                .iter()
                .map(|entry| ((entry.1.job.clone(), entry.1.url.clone()), entry))
                .collect();
            running.retain(|key, (target, stop)| {
                let keep = wanted.get(key).is_some_and(|(_, wanted)| wanted == target);
                if !keep {
                    stop.cancel();
                }
                keep
            });
            for (key, (job, target)) in &wanted {
                if !running.contains_key(key) {
                    let stop = cancel.child_token();
                    running.insert(key.clone(), (target.clone(), stop.clone()));
                    loops.spawn(Arc::clone(&self).scrape_loop(
                        Arc::clone(job),
                        target.clone(),
                        stop,
                        cancel.clone(),
                    ));
                }
            }
            self.track(&targets);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(DISCOVERY_INTERVAL) => {}
            }
            while loops.try_join_next().is_some() {}
            let manager = Arc::clone(&self);
            targets = match tokio::task::spawn_blocking(move || manager.discover()).await {
                Ok(found) => found,
                Err(error) => {
                    tracing::error!(%error, "target discovery panicked");
                    targets
                }
            };
        }
        while loops.join_next().await.is_some() {}
    }

    /// Scrapes one target until `stop`; a target that went away (stopped while the
    /// server keeps running) gets staleness markers for all its series.
    async fn scrape_loop(
        self: Arc<Self>,
        job: Arc<Job>,
        target: Target,
        stop: CancellationToken,
        shutdown: CancellationToken,
    ) {
        // a stable offset within the interval, from the target's URL
        let offset = target
            .interval
            .mul_f64((crc32fast::hash(target.url.as_bytes()) as f64) / (u32::MAX as f64));
        tokio::select! {
            () = tokio::time::sleep(offset) => {}
            () = stop.cancelled() => return,
        }
        let mut interval = tokio::time::interval(target.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut cache = SeriesCache::default();
        let mut synthetic: Vec<Labels> = Vec::new();
        let mut added_labels = target.labels.clone();
        added_labels.insert("__name__".into(), "scrape_series_added".into());
        let added_labels: Labels = added_labels.into_iter().collect::<Vec<_>>().into();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = stop.cancelled() => break,
            }
            let started = Utc::now();
            let timestamp = started.timestamp_millis();
            let result = scrape(&job, &target, &self.client, &mut cache).await;
            if result.error.is_none() && !cache.metadata.is_empty() {
                let mut metadata = self
                    .metadata
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (family, entry) in &cache.metadata {
                    if metadata.get(family) != Some(entry) {
                        metadata.insert(family.clone(), entry.clone());
                    }
                }
            }
            let mut batch: Vec<(Labels, i64, f64)> = Vec::with_capacity(result.samples.len() + 1);
            for (labels, value, sample_timestamp) in result.samples {
                batch.push((labels, sample_timestamp.unwrap_or(timestamp), value));
            }
            synthetic = batch[batch.len() - 3..]
                .iter()
                .map(|(labels, _, _)| Arc::clone(labels))
                .collect();
            synthetic.push(Arc::clone(&added_labels));
            batch.push((Arc::clone(&added_labels), timestamp, result.added as f64));
            // series gone since the last scrape end with a staleness marker (all of them
            // when the scrape failed)
            for labels in cache.gone() {
                batch.push((labels, timestamp, f64::from_bits(STALE_NAN)));
            }
            let tsdb = Arc::clone(&self.tsdb);
            let stored = tokio::task::spawn_blocking(move || tsdb.append(&batch)).await;
            if let Ok(Err(error)) | Err(error) = stored.map_err(std::io::Error::other) {
                tracing::error!(job = %target.job, %error, "cannot store a scrape");
            }
            let mut statuses = self.lock_statuses();
            if let Some(status) = statuses.get_mut(&(target.job.clone(), target.url.clone())) {
                status.health = if result.error.is_none() { "up" } else { "down" };
                status.last_error = result.error.unwrap_or_default();
                status.last_scrape = Some(started);
                status.last_duration = result.duration.as_secs_f64();
                if status.health == "up" && status.metadata != cache.metadata {
                    status.metadata = cache.metadata.clone();
                }
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        let timestamp = Utc::now().timestamp_millis();
        let batch: Vec<(Labels, i64, f64)> = cache
            .current()
            .into_iter()
            .chain(synthetic)
            .map(|labels| (labels, timestamp, f64::from_bits(STALE_NAN)))
            .collect();
        let tsdb = Arc::clone(&self.tsdb);
        if let Ok(Err(error)) | Err(error) =
            tokio::task::spawn_blocking(move || tsdb.append(&batch))
                .await
                .map_err(std::io::Error::other)
        {
            tracing::error!(job = %target.job, %error, "cannot mark a removed target's series stale");
        }
        tracing::info!(job = %target.job, url = %target.url, "target removed; its series are marked stale");
    }
}
