//! The scrape loop: every target of every job scraped on its interval (each target at its
//! own offset within the interval, so a thousand targets do not fire at once), the
//! samples stored in the TSDB with one fsync per scrape, staleness markers for series
//! that disappeared (and for all of a target's series when its scrape fails), and each
//! target's health for `/api/v1/targets`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::target::{Job, ScrapeConfig, Target, scrape};
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
}

pub struct ScrapeManager {
    /// Every target with its job, built once.
    targets: Vec<(Arc<Job>, Target)>,
    tsdb: Arc<Tsdb>,
    client: reqwest::Client,
    statuses: Mutex<BTreeMap<(String, String), TargetStatus>>,
}

impl ScrapeManager {
    /// Checks every job; the errors name job and field.
    pub fn new(configs: &[ScrapeConfig], tsdb: Arc<Tsdb>) -> Result<ScrapeManager, Vec<String>> {
        let mut jobs = Vec::new();
        let mut errors = Vec::new();
        for config in configs {
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
        let targets: Vec<(Arc<Job>, Target)> = jobs
            .iter()
            .flat_map(|job| {
                job.targets()
                    .into_iter()
                    .map(|target| (Arc::clone(job), target))
            })
            .collect();
        let statuses = targets
            .iter()
            .map(|(_, target)| {
                (
                    (target.job.clone(), target.url.clone()),
                    TargetStatus {
                        target: target.clone(),
                        health: "unknown",
                        last_error: String::new(),
                        last_scrape: None,
                        last_duration: 0.0,
                    },
                )
            })
            .collect();
        Ok(ScrapeManager {
            targets,
            tsdb,
            client,
            statuses: Mutex::new(statuses),
        })
    }

    fn lock_statuses(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), TargetStatus>> {
        self.statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every target with its last scrape.
    pub fn targets(&self) -> Vec<TargetStatus> {
        self.lock_statuses().values().cloned().collect()
    }

    /// Scrapes until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut loops = tokio::task::JoinSet::new();
        for (job, target) in &self.targets {
            loops.spawn(Arc::clone(&self).scrape_loop(
                Arc::clone(job),
                target.clone(),
                cancel.clone(),
            ));
        }
        while loops.join_next().await.is_some() {}
    }

    async fn scrape_loop(
        self: Arc<Self>,
        job: Arc<Job>,
        target: Target,
        cancel: CancellationToken,
    ) {
        // a stable offset within the interval, from the target's URL
        let offset = target
            .interval
            .mul_f64((crc32fast::hash(target.url.as_bytes()) as f64) / (u32::MAX as f64));
        tokio::select! {
            () = tokio::time::sleep(offset) => {}
            () = cancel.cancelled() => return,
        }
        let mut interval = tokio::time::interval(target.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut previous: HashSet<Labels> = HashSet::new();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = cancel.cancelled() => return,
            }
            let started = Utc::now();
            let timestamp = started.timestamp_millis();
            let result = scrape(&job, &target, &self.client).await;
            let mut batch: Vec<(Labels, i64, f64)> = Vec::with_capacity(result.samples.len() + 1);
            let mut current: HashSet<Labels> = HashSet::with_capacity(result.samples.len());
            for (labels, value, sample_timestamp) in result.samples {
                let labels: Labels = labels.into_iter().collect::<Vec<_>>().into();
                batch.push((labels.clone(), sample_timestamp.unwrap_or(timestamp), value));
                current.insert(labels);
            }
            let added = current.difference(&previous).count();
            let mut added_labels = target.labels.clone();
            added_labels.insert("__name__".into(), "scrape_series_added".into());
            let added_labels: Labels = added_labels.into_iter().collect::<Vec<_>>().into();
            batch.push((added_labels.clone(), timestamp, added as f64));
            current.insert(added_labels);
            // series gone since the last scrape end with a staleness marker
            for gone in previous.difference(&current) {
                batch.push((gone.clone(), timestamp, f64::from_bits(STALE_NAN)));
            }
            previous = current;
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
            }
        }
    }
}
