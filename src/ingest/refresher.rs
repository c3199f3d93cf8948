//! Searchability and upkeep: the refresher commits partitions on the refresh interval
//! (or when a search or `?refresh` asks), publishes up to which record everything is
//! searchable, and at a slower pace snapshots the sources' high-water marks, truncates the
//! write-ahead log, closes idle partition writers and applies retention.
//!
//! A search-idle server (no search within `search_idle_after`) skips background commits,
//! as Elasticsearch does for a search-idle shard: the next search commits first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::group_commit::LogMessage;
use super::{Ingest, NEVER_SEARCHED, now_micros};
use crate::storage::DiskState;

/// Bytes ingested since the last commit after which a search-idle index commits anyway.
const IDLE_MAX_UNCOMMITTED_BYTES: u64 = 256 << 20;

/// How often marks are snapshotted, the log truncated and retention applied.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);
/// A partition writer not written for this long is committed and closed at maintenance
/// (its threads and indexing memory go back).
const WRITER_IDLE_CLOSE: Duration = Duration::from_secs(60);

impl Ingest {
    /// Waits until everything up to `seq` is searchable; with `force`, commits now. Returns
    /// early while a failed write keeps the index from committing (searches then see
    /// what is committed: a rule evaluates on it rather than waiting for the disk).
    pub async fn wait_searchable(&self, seq: u64, force: bool) {
        let mut disk = self.disk.subscribe();
        if disk.borrow_and_update().failed_write.is_some() {
            return;
        }
        let mut receiver = self.searchable.subscribe();
        // already searchable: no commit to ask for (a thousand rules evaluated at one
        // tick each ask; only those behind an acknowledged write should cost a commit)
        if *receiver.borrow_and_update() >= seq {
            return;
        }
        // a search-idle index has no background refresh to wait for
        if force || self.search_idle() {
            self.refresh_wanted
                .fetch_max(seq, std::sync::atomic::Ordering::SeqCst);
            self.refresh_now.notify_one();
        }
        tokio::select! {
            _ = receiver.wait_for(|searchable| *searchable >= seq) => {}
            _ = disk.wait_for(|state| state.failed_write.is_some()) => {}
        }
    }

    /// Whether no search came within `search_idle_after` (background refreshes pause).
    pub fn search_idle(&self) -> bool {
        let idle_after = self.settings.search_idle_after;
        if idle_after.is_zero() {
            return false;
        }
        let last = self
            .last_search_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if last == NEVER_SEARCHED {
            return true;
        }
        let now = self.started.elapsed().as_millis() as u64;
        now.saturating_sub(last) > idle_after.as_millis() as u64
    }

    /// Called before a search: marks the index searched, and when it was search-idle
    /// commits what is pending and waits, so the search sees everything acknowledged (as
    /// Elasticsearch does for a search-idle shard).
    pub async fn before_search(&self) {
        let idle = self.search_idle();
        self.last_search_ms.store(
            self.started.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if idle {
            self.refresh().await;
        }
    }

    /// Commits what is acknowledged now and waits until it is searchable. Batches still
    /// on their way through the log (not acknowledged yet) are not waited for: a rule's
    /// evaluation or a `_refresh` under saturating ingest waits for one commit, not for
    /// every batch queued behind the log — nor for the lock a batch holds while it waits
    /// for room in the log's queue.
    pub async fn refresh(&self) {
        let acknowledged = *self.shared.synced.borrow();
        self.wait_searchable(acknowledged, true).await;
    }

    /// Commits partitions on the refresh interval (or when asked), publishes what is
    /// searchable, snapshots the marks and truncates the log. Runs until `shutdown`.
    pub async fn run_refresher(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut interval = tokio::time::interval(self.settings.refresh_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_maintenance = Instant::now();
        let mut last_retention: Option<Instant> = None;
        let mut last_commit = (Instant::now(), self.telemetry.ingest_bytes.get());
        loop {
            let asked = tokio::select! {
                _ = interval.tick() => false,
                _ = self.refresh_now.notified() => true,
                _ = shutdown.cancelled() => break,
            };
            // at the first tick (a restart with a lower retention) and every
            // MAINTENANCE_INTERVAL after, whatever the state of the disk
            if last_retention.is_none_or(|at| at.elapsed() >= MAINTENANCE_INTERVAL) {
                last_retention = Some(Instant::now());
                self.apply_retention().await;
            }
            // search-idle: no background commit (a whole indexing run then commits like a
            // bulk loader: tantivy restarts its indexing threads at every commit), but one
            // at least every idle period or IDLE_MAX_UNCOMMITTED_BYTES, so the write-ahead
            // log stays short and a restart replays little (as Elasticsearch's translog
            // flush threshold does)
            let ingested = self.telemetry.ingest_bytes.get();
            let wanted = self
                .refresh_wanted
                .load(std::sync::atomic::Ordering::SeqCst)
                > *self.searchable.borrow();
            if !asked
                && !wanted
                && self.search_idle()
                && last_commit.0.elapsed() < self.settings.search_idle_after
                && ingested.saturating_sub(last_commit.1) < IDLE_MAX_UNCOMMITTED_BYTES
            {
                self.telemetry.refreshes_skipped.add(1);
                continue;
            }
            // a failed write leaves writers that may be dead: nothing commits until the
            // recovery has reset and replayed them
            if self.disk.state().failed_write.is_some() {
                continue;
            }
            last_commit = (Instant::now(), ingested);
            let store = self.store.clone();
            let telemetry = self.telemetry.clone();
            let committed = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let result = store.commit_all();
                telemetry.commit_seconds.observe(started.elapsed());
                result
            })
            .await;
            match committed {
                Ok(Ok(durable)) => {
                    self.searchable.send_if_modified(|current| {
                        let changed = durable > *current;
                        *current = (*current).max(durable);
                        changed
                    });
                    if last_maintenance.elapsed() >= MAINTENANCE_INTERVAL {
                        last_maintenance = Instant::now();
                        self.maintain(durable).await;
                    }
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, "index commit failed; the write-ahead log keeps everything uncommitted, replayed once the data directory accepts writes");
                    self.disk.write_failed("index commit", &error);
                }
                Err(error) => tracing::error!(%error, "index commit task failed"),
            }
        }
    }

    /// Expires marks and agents, snapshots the marks and lets the log drop what the index
    /// holds. While storage is degraded the marks stay in the log.
    async fn maintain(&self, durable: u64) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.close_idle_writers(WRITER_IDLE_CLOSE)).await
        {
            Ok(Ok(closed)) if closed > 0 => {
                tracing::debug!(closed, "idle partition writers closed")
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "closing an idle partition writer failed; the write-ahead log keeps everything uncommitted");
                self.disk.write_failed("index commit", &error);
            }
            Err(error) => tracing::error!(%error, "closing idle writers failed"),
        }
        let now = now_micros();
        let epoch = std::sync::atomic::Ordering::SeqCst;
        let snapshot = {
            let mut decide = self.decide.lock().await;
            let expired = decide
                .marks
                .expire(now - self.settings.source_ttl.as_micros() as i64);
            if expired > 0 {
                tracing::info!(expired, "source high-water marks expired");
            }
            // the snapshot holds marks of records still on their way through the log:
            // it is saved only once they are durable, and not if any of them failed
            (!self.disk.degraded()).then(|| {
                (
                    decide.marks.clone(),
                    decide.next_seq - 1,
                    self.shared.epoch.load(epoch),
                )
            })
        };
        self.agents.expire(Instant::now());
        let snapshot = match snapshot {
            Some((marks, upto, before)) => {
                let mut synced = self.shared.synced.subscribe();
                let mut disk = self.disk.subscribe();
                let durable_in_time = tokio::select! {
                    waited = synced.wait_for(|synced| *synced >= upto) => waited.is_ok(),
                    _ = disk.wait_for(DiskState::degraded) => false,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => false,
                };
                (durable_in_time && self.shared.epoch.load(epoch) == before).then_some(marks)
            }
            None => None,
        };
        let Some(snapshot) = snapshot else {
            return;
        };
        let path = self.state_dir.join("sources.json");
        let saved = tokio::task::spawn_blocking(move || snapshot.save(&path)).await;
        match saved {
            Ok(Ok(())) => {
                let _ = self.log.send(LogMessage::Truncate(durable)).await;
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot write the sources snapshot; the log is kept");
                self.disk.write_failed("sources snapshot", &error);
            }
            Err(error) => tracing::error!(%error, "maintenance task failed"),
        }
    }

    /// Drops the partitions past `index.retention`. Runs on its own schedule, also while
    /// storage is degraded: dropping whole expired partitions only frees space, and it is
    /// how lowering `index.retention` gets a full disk writable again.
    async fn apply_retention(&self) {
        let store = self.store.clone();
        let telemetry = self.telemetry.clone();
        let now = now_micros();
        let dropped = tokio::task::spawn_blocking(move || {
            // counted as each partition's directory goes (a regression: a scrape right
            // after saw the data gone but the counter still at 0)
            store.drop_expired(now, || telemetry.retention_dropped_partitions.add(1))
        })
        .await;
        match dropped {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "retention failed"),
            Err(error) => tracing::error!(%error, "retention task failed"),
        }
    }
}
