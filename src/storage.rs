//! Disk health of the data directory: a full disk is a degraded mode, not an outage
//! (DESIGN §8a).
//!
//! [`DiskSpace`] consumes two signals and produces one state every writer reads:
//!
//! - free space, from `statvfs` on the data directory every `storage.check_interval`
//!   (and right after a write error): below the watermark — the larger of
//!   `storage.min_free_bytes` and `storage.min_free_percent` of the file system — the
//!   directory is *low on space*;
//! - write failures reported by the components (`ingest write-ahead log`, `index commit`,
//!   …): the directory has a *failed write* until the component that owns the failure
//!   recovered (ingest re-opens its log on a fresh segment and replays it into the index).
//!
//! Either makes the state degraded (read-only): ingest refuses batches with HTTP 429 and
//! [`DiskSpace::refusal`] as the reason, like Elasticsearch's flood-stage block; searches,
//! PromQL, rules and notifications keep running on what is in memory and on disk. The
//! state ends by itself: once free space is back above the watermark, the failure (if
//! any) is recovered by its owner and writes resume. Each change of state is logged once.
//!
//! This module decides nothing about data: it never deletes, retries or acknowledges.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::telemetry::Telemetry;

/// The free-space watermark (`[storage]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Below this many free bytes in the data directory's file system, writes are refused.
    pub min_free_bytes: u64,
    /// Below this percentage of the file system free, writes are refused (the larger of
    /// the two watermarks applies).
    pub min_free_percent: f64,
    /// How often free space is checked (also right after a failed write).
    #[serde(with = "crate::duration_serde")]
    pub check_interval: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            min_free_bytes: 1024 * 1024 * 1024,
            min_free_percent: 1.0,
            check_interval: Duration::from_secs(5),
        }
    }
}

impl StorageConfig {
    /// Errors of `[storage]`, each naming its field.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(0.0..=50.0).contains(&self.min_free_percent) {
            errors.push(
                "`storage.min_free_percent`: must be between 0 and 50 (a percentage)".to_string(),
            );
        }
        if self.check_interval < Duration::from_millis(10) {
            errors.push("`storage.check_interval`: must be at least 10ms".to_string());
        }
        errors
    }
}

/// Why writes are refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskState {
    /// `(free bytes, watermark bytes)` when free space is below the watermark.
    pub low_space: Option<(u64, u64)>,
    /// `(what, error)` of the first write that failed and is not recovered yet.
    pub failed_write: Option<(String, String)>,
}

impl DiskState {
    pub fn degraded(&self) -> bool {
        self.low_space.is_some() || self.failed_write.is_some()
    }
}

/// The running watch over the data directory's disk; one per server.
pub struct DiskSpace {
    data_dir: PathBuf,
    config: StorageConfig,
    state: watch::Sender<DiskState>,
    telemetry: Arc<Telemetry>,
}

impl DiskSpace {
    /// Watches the file system holding `data_dir`.
    pub fn new(data_dir: &Path, config: StorageConfig, telemetry: Arc<Telemetry>) -> DiskSpace {
        DiskSpace {
            data_dir: data_dir.to_path_buf(),
            config,
            state: watch::channel(DiskState::default()).0,
            telemetry,
        }
    }

    /// A watch that never sees the disk fill (tools and tests without a data directory
    /// of their own); write failures still degrade it.
    pub fn unwatched() -> DiskSpace {
        DiskSpace::new(
            Path::new(""),
            StorageConfig {
                min_free_bytes: 0,
                min_free_percent: 0.0,
                ..StorageConfig::default()
            },
            Arc::new(Telemetry::default()),
        )
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The current state.
    pub fn state(&self) -> DiskState {
        self.state.borrow().clone()
    }

    pub fn degraded(&self) -> bool {
        self.state.borrow().degraded()
    }

    /// Changes of the state.
    pub fn subscribe(&self) -> watch::Receiver<DiskState> {
        self.state.subscribe()
    }

    /// Measures free space now (a blocking `statvfs`) and updates the low-space part of
    /// the state; returns whether free space is at or above the watermark. A file system
    /// that cannot be measured counts as having space (write errors still degrade).
    pub fn check(&self) -> bool {
        if self.data_dir.as_os_str().is_empty() {
            return true;
        }
        let measured = match rustix::fs::statvfs(&self.data_dir) {
            Ok(stats) => stats,
            Err(error) => {
                tracing::debug!(%error, path = %self.data_dir.display(), "cannot measure free space");
                return true;
            }
        };
        let free = measured.f_bavail.saturating_mul(measured.f_frsize);
        let total = measured.f_blocks.saturating_mul(measured.f_frsize);
        let watermark = self.watermark_bytes(total);
        self.telemetry.storage_free_bytes.set(free);
        self.telemetry.storage_watermark_bytes.set(watermark);
        let low = (free < watermark).then_some((free, watermark));
        self.update(|state| {
            // the numbers change on every check: only entering and leaving is news
            let news = state.low_space.is_some() != low.is_some();
            state.low_space = low;
            news
        });
        low.is_none()
    }

    /// The free bytes below which writes are refused, on a file system of `total` bytes.
    pub fn watermark_bytes(&self, total: u64) -> u64 {
        let percent = (total as f64 * self.config.min_free_percent / 100.0) as u64;
        self.config.min_free_bytes.max(percent)
    }

    /// Reports a failed write of `what` (a name such as `ingest write-ahead log`): writes
    /// are refused until its owner calls [`DiskSpace::recovered`]. Counted every time,
    /// logged when it starts the degraded state.
    pub fn write_failed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.telemetry.storage_write_failures.add(what, 1);
        let error = error.to_string();
        let already_degraded = self.degraded();
        let mut first = false;
        self.update(|state| {
            if state.failed_write.is_some() {
                return false;
            }
            state.failed_write = Some((what.to_string(), error.clone()));
            first = true;
            true
        });
        if first && already_degraded {
            tracing::warn!(%what, %error, "a write failed while storage is degraded; it is recovered once there is space");
        }
        self.check();
    }

    /// The owner of the failed write recovered from it.
    pub fn recovered(&self) {
        self.update(|state| state.failed_write.take().is_some());
    }

    /// Why a write is refused now, or `None` when writes are accepted: what is wrong and
    /// what to do, for the client (ES' flood-stage wording first, so ES tooling that
    /// looks for it recognizes the block).
    pub fn refusal(&self) -> Option<String> {
        let state = self.state.borrow();
        let cause = match (&state.low_space, &state.failed_write) {
            (Some((free, watermark)), _) => format!(
                "only {} free in the file system of `{}`, below the storage watermark of {} (storage.min_free_bytes, storage.min_free_percent)",
                bytes(*free),
                self.data_dir.display(),
                bytes(*watermark)
            ),
            (None, Some((what, error))) => format!(
                "a write of the {what} failed ({error}); it is retried once the file system of `{}` has space and accepts writes again",
                self.data_dir.display()
            ),
            (None, None) => return None,
        };
        Some(format!(
            "index blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block]; {cause}. Lookout is read-only: searches, rules and alerts keep working; free space under the data directory (DATA_DIR `{}`, e.g. lower index.retention or metrics.retention, or delete files) and writes resume by themselves",
            self.data_dir.display()
        ))
    }

    fn update(&self, change: impl FnOnce(&mut DiskState) -> bool) {
        let mut before = None;
        self.state.send_if_modified(|state| {
            let snapshot = state.clone();
            let news = change(state);
            if news {
                before = Some(snapshot);
            }
            news
        });
        let Some(before) = before else {
            return;
        };
        let after = self.state();
        self.telemetry
            .storage_degraded
            .set(u64::from(after.degraded()));
        match (before.degraded(), after.degraded()) {
            (false, true) => {
                tracing::error!(
                    reason = %self.refusal().unwrap_or_default(),
                    "storage degraded: writes are refused, searches and alerts keep working"
                )
            }
            (true, false) => tracing::warn!(
                data_dir = %self.data_dir.display(),
                "storage recovered: writes are accepted again"
            ),
            (true, true) | (false, false) => {}
        }
    }

    /// Checks free space every `check_interval` until `cancel`, calling `recover` while a
    /// failed write waits for space (it returns whether its owner recovered).
    pub async fn run<F, Fut>(
        self: Arc<Self>,
        mut recover: F,
        cancel: tokio_util::sync::CancellationToken,
    ) where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut interval = tokio::time::interval(self.config.check_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = cancel.cancelled() => return,
            }
            let disk = Arc::clone(&self);
            let space = tokio::task::spawn_blocking(move || disk.check())
                .await
                .unwrap_or(true);
            if space && self.state.borrow().failed_write.is_some() && recover().await {
                self.recovered();
            }
        }
    }
}

/// `1.5 GiB`-style sizes for messages.
fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_larger_watermark_applies() {
        let disk = DiskSpace::new(
            Path::new("/"),
            StorageConfig {
                min_free_bytes: 1000,
                min_free_percent: 5.0,
                check_interval: Duration::from_secs(1),
            },
            Arc::new(Telemetry::default()),
        );
        assert_eq!(disk.watermark_bytes(10_000), 1000);
        assert_eq!(disk.watermark_bytes(100_000), 5000);
    }

    #[test]
    fn a_failed_write_degrades_until_recovered_and_the_reason_says_what_to_do() {
        let disk = DiskSpace::unwatched();
        assert!(!disk.degraded());
        assert_eq!(disk.refusal(), None);
        disk.write_failed("ingest write-ahead log", &"No space left on device");
        disk.write_failed("index commit", &"ignored: the first failure is the reason");
        let reason = disk.refusal().expect("degraded");
        assert!(reason.contains("flood-stage watermark"), "{reason}");
        assert!(reason.contains("ingest write-ahead log"), "{reason}");
        assert!(reason.contains("DATA_DIR"), "{reason}");
        assert_eq!(
            disk.telemetry()
                .storage_write_failures
                .get("ingest write-ahead log"),
            1
        );
        disk.recovered();
        assert!(!disk.degraded());
    }

    #[test]
    fn free_space_below_the_watermark_degrades_and_above_it_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = |min_free_bytes| StorageConfig {
            min_free_bytes,
            min_free_percent: 0.0,
            check_interval: Duration::from_secs(1),
        };
        let telemetry = Arc::new(Telemetry::default());
        let full = DiskSpace::new(dir.path(), config(u64::MAX), telemetry.clone());
        assert!(!full.check());
        assert!(full.degraded());
        assert!(
            full.refusal()
                .expect("degraded")
                .contains("below the storage watermark")
        );
        assert_eq!(telemetry.storage_degraded.get(), 1);
        let roomy = DiskSpace::new(dir.path(), config(0), telemetry.clone());
        assert!(roomy.check());
        assert!(!roomy.degraded());
        assert!(telemetry.storage_free_bytes.get() > 0);
    }

    #[test]
    fn sizes_read_like_sizes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1024 * 1024 * 1024), "1.0 GiB");
    }
}
