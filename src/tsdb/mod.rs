//! The metrics store (issue 5, DESIGN §7): [`chunk`], Gorilla-style compressed chunks
//! (delta-of-delta timestamps, XOR values); [`head`], the in-memory series with an
//! inverted index and out-of-order rejection; [`wal`], its segmented write-ahead log;
//! [`block`], immutable on-disk blocks (also written by `crate::scrape::import`, the
//! backfill from OpenMetrics text).
//!
//! [`Tsdb`] ties them: a batch (one scrape) is applied and logged with one fsync; once
//! the head spans one and a half block durations its oldest block-aligned range is
//! written as a block, dropped from the head, and the log segments it covered are
//! deleted; blocks past the retention are deleted whole; blocks that appear in
//! `blocks/` (an import) are picked up. Queries read the head, then the blocks, and
//! merge by timestamp.
//!
//! On a full disk (storage degraded, see [`crate::storage`]) scrapes go on: samples are
//! appended to the head and queried as usual but not logged, counted in
//! `lookout_tsdb_samples_unlogged_total` (lost if the process stops before the head is
//! persisted); no block is written and retention still deletes. A failed log write or a
//! failed block write degrades storage instead of failing the scrape; the log segment a
//! write failed in is not trusted again: once writes resume the log continues in a fresh
//! segment that starts with every series of the head. Opening on a full disk works the
//! same way.

pub mod block;
pub mod chunk;
pub mod encoding;
pub mod head;
pub mod wal;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use block::Block;
use head::{AppendError, Head, Labels, Matcher, Selected};
use wal::{Record, Wal};

/// How the store persists and forgets.
#[derive(Debug, Clone)]
pub struct TsdbOptions {
    /// Time range of a block persisted from the head (Prometheus: 2 h).
    pub block_duration: Duration,
    /// Blocks entirely older than this are deleted.
    pub retention: Duration,
    /// Series the head may hold; samples of more new series are refused
    /// ([`AppendError::SeriesLimit`], counted in `head.series_limited`). `None`: no limit.
    pub max_series: Option<usize>,
}

impl Default for TsdbOptions {
    fn default() -> Self {
        TsdbOptions {
            block_duration: Duration::from_secs(2 * 3600),
            retention: Duration::from_secs(15 * 24 * 3600),
            max_series: None,
        }
    }
}

/// The head, its log and the blocks.
pub struct Tsdb {
    pub head: Head,
    wal: Mutex<Wal>,
    dir: PathBuf,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// The blocks' label sets and strings, each held once.
    interner: block::Interner,
    pub options: TsdbOptions,
    /// The log must continue in a fresh segment (with every series) before it takes
    /// samples again: a write to it failed, or samples skipped it while degraded.
    wal_stale: AtomicBool,
    /// The server's disk watch (none for tools): degrades instead of failing.
    disk: OnceLock<Arc<crate::storage::DiskSpace>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tsdb {
    /// Opens `dir` (the data directory's `tsdb/`): its blocks, then its log replayed
    /// into the head (samples a persisted block already holds are skipped).
    pub fn open(dir: &Path, options: TsdbOptions) -> std::io::Result<Tsdb> {
        let interner = block::Interner::default();
        let blocks: Vec<Arc<Block>> = block::open_all(&dir.join("blocks"), &interner)
            .into_iter()
            .map(Arc::new)
            .collect();
        let persisted = blocks
            .iter()
            .filter(|block| block.meta.source == "head")
            .map(|block| block.meta.max_time)
            .max()
            .unwrap_or(i64::MIN);
        let (mut wal, segments) = Wal::open(dir)?;
        let head = Head::new();
        if persisted > i64::MIN {
            head.truncate(persisted);
        }
        let mut replayed = 0u64;
        for segment in segments {
            let mut ids: HashMap<u64, usize> = HashMap::new();
            for record in segment.records {
                match record {
                    Record::Series { id, labels } => {
                        ids.insert(id, head.series_id(&labels.into()).0);
                    }
                    Record::Samples(samples) => {
                        for (id, timestamp, value) in samples {
                            if let Some(&series) = ids.get(&id)
                                && head.append_id(series, timestamp, value).is_ok()
                            {
                                replayed += 1;
                            }
                        }
                    }
                }
            }
        }
        // the new segment starts with every series it may refer to; on a full disk the
        // store opens anyway and starts a fresh segment once it can
        let logged = wal
            .log(&head.series_records())
            .and_then(|()| wal.remove_before(persisted).map(drop));
        if let Err(error) = &logged {
            tracing::error!(%error, "cannot write the metrics write-ahead log; samples are kept in memory until it can");
        }
        if replayed > 0 {
            tracing::info!(
                samples = replayed,
                series = head.active_series(),
                "metrics write-ahead log replayed"
            );
        }
        Ok(Tsdb {
            head,
            wal: Mutex::new(wal),
            dir: dir.to_path_buf(),
            blocks: RwLock::new(blocks),
            interner,
            options,
            wal_stale: AtomicBool::new(logged.is_err()),
            disk: OnceLock::new(),
        })
    }

    /// The write-ahead log's directory (read back by remote write).
    pub fn wal_dir(&self) -> PathBuf {
        self.dir.join("wal")
    }

    /// Makes the store degrade with `disk` instead of failing appends (the server).
    pub fn attach_disk(&self, disk: Arc<crate::storage::DiskSpace>) {
        let _ = self.disk.set(disk);
    }

    /// Logs `records` durably, first continuing in a fresh segment when the log is stale.
    fn log(&self, wal: &mut Wal, records: &[Record]) -> std::io::Result<()> {
        if self.wal_stale.load(Ordering::Relaxed) {
            wal.rotate(&self.head.series_records())?;
            self.wal_stale.store(false, Ordering::Relaxed);
            tracing::info!("metrics write-ahead log continues in a fresh segment");
        }
        let logged = wal.log(records);
        if logged.is_err() {
            self.wal_stale.store(true, Ordering::Relaxed);
        }
        logged
    }

    /// Appends a batch, logging new series and accepted samples durably (one fsync);
    /// returns each sample's result.
    pub fn append(
        &self,
        batch: &[(Labels, i64, f64)],
    ) -> std::io::Result<Vec<Result<(), AppendError>>> {
        let mut wal = lock(&self.wal);
        let mut records = Vec::new();
        let mut samples = Vec::with_capacity(batch.len());
        let mut results = Vec::with_capacity(batch.len());
        for (labels, timestamp, value) in batch {
            // the log's lock serializes appends, so the count cannot move under the check
            if let Some(max) = self.options.max_series
                && self.head.active_series() >= max
                && !self.head.contains(labels)
            {
                self.head.series_limited.fetch_add(1, Ordering::Relaxed);
                results.push(Err(AppendError::SeriesLimit));
                continue;
            }
            let (id, created) = self.head.series_id(labels);
            if created {
                records.push(Record::Series {
                    id: id as u64,
                    labels: labels.to_vec(),
                });
            }
            let result = self.head.append_id(id, *timestamp, *value);
            if result.is_ok() {
                samples.push((id as u64, *timestamp, *value));
            }
            results.push(result);
        }
        if !samples.is_empty() {
            records.push(Record::Samples(samples));
        }
        // nothing accepted and no new series: nothing to make durable
        if records.is_empty() {
            return Ok(results);
        }
        let Some(disk) = self.disk.get() else {
            self.log(&mut wal, &records)?;
            return Ok(results);
        };
        let unlogged = || {
            let samples = records.iter().map(|record| match record {
                Record::Samples(samples) => samples.len() as u64,
                Record::Series { .. } => 0,
            });
            disk.telemetry().tsdb_samples_unlogged.add(samples.sum());
        };
        if disk.degraded() {
            self.wal_stale.store(true, Ordering::Relaxed);
            unlogged();
        } else if let Err(error) = self.log(&mut wal, &records) {
            disk.write_failed("metrics write-ahead log", &error);
            unlogged();
        }
        Ok(results)
    }

    fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Series matching every matcher with their samples in `[min_time, max_time]`,
    /// from the head and the blocks, merged by timestamp and sorted by labels.
    pub fn select(&self, matchers: &[Matcher], min_time: i64, max_time: i64) -> Selected {
        // the head first: a compaction in between moves data into a block we then read
        let mut merged: Selected = self.head.select(matchers, min_time, max_time);
        let blocks = self.blocks();
        if blocks.is_empty() {
            return merged;
        }
        let mut index: HashMap<Labels, usize> = merged
            .iter()
            .enumerate()
            .map(|(i, (labels, _))| (Arc::clone(labels), i))
            .collect();
        let mut touched = vec![false; merged.len()];
        for block in blocks {
            let found = match block.select(matchers, min_time, max_time) {
                Ok(found) => found,
                Err(error) => {
                    tracing::error!(block = %block.dir.display(), %error, "cannot read a metrics block");
                    continue;
                }
            };
            for (labels, samples) in found {
                match index.get(&labels) {
                    Some(&slot) => {
                        merged[slot].1.extend(samples);
                        touched[slot] = true;
                    }
                    None => {
                        index.insert(Arc::clone(&labels), merged.len());
                        merged.push((labels, samples));
                        touched.push(true);
                    }
                }
            }
        }
        for (slot, (_, samples)) in merged.iter_mut().enumerate() {
            if touched[slot] {
                samples.sort_by_key(|(time, _)| *time);
                samples.dedup_by_key(|(time, _)| *time);
            }
        }
        merged.sort_by(|left, right| left.0.cmp(&right.0));
        merged
    }

    /// Every label name, head and blocks.
    pub fn label_names(&self) -> Vec<String> {
        let mut names: std::collections::BTreeSet<String> =
            self.head.label_names().into_iter().collect();
        for block in self.blocks() {
            names.extend(block.label_names().map(str::to_string));
        }
        names.into_iter().collect()
    }

    /// Every value of label `name`, head and blocks.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut values: std::collections::BTreeSet<String> =
            self.head.label_values(name).into_iter().collect();
        for block in self.blocks() {
            values.extend(block.label_values(name).map(str::to_string));
        }
        values.into_iter().collect()
    }

    /// Persists the head's oldest block-aligned range as a block once the head spans
    /// one and a half block durations; returns whether it did.
    pub fn compact(&self) -> std::io::Result<bool> {
        let range = self.options.block_duration.as_millis().max(1) as i64;
        let Some((oldest, newest)) = self.head.time_range() else {
            return Ok(false);
        };
        if newest - oldest < range + range / 2 {
            return Ok(false);
        }
        let start = oldest.div_euclid(range) * range;
        let end = start + range;
        let series = self.head.select(&[], start, end - 1);
        if !series.is_empty() {
            let path = block::write(&self.dir.join("blocks"), &series, start, end, "head")?;
            let opened = Arc::new(Block::open(&path, &self.interner)?);
            tracing::info!(
                block = %path.display(),
                series = opened.meta.series,
                samples = opened.meta.samples,
                bytes = opened.meta.bytes,
                "metrics head persisted"
            );
            self.swap_blocks(&[], vec![opened]);
        }
        self.head.truncate(end);
        let mut wal = lock(&self.wal);
        if let Err(error) = wal.rotate(&self.head.series_records()) {
            self.wal_stale.store(true, Ordering::Relaxed);
            return Err(error);
        }
        self.wal_stale.store(false, Ordering::Relaxed);
        wal.remove_before(end)?;
        Ok(true)
    }

    /// Merges persisted blocks into longer ones, as Prometheus does: the blocks within one
    /// range of the next level (3, 9, 27 … block durations: 6 h, 18 h, 54 h from 2-hour
    /// blocks, up to a tenth of the retention and at most 31 days) become one block once
    /// that range is over (a block past it exists). Every block keeps its index in memory,
    /// so the number of blocks, not the retention, sets that memory. Returns whether it
    /// merged. Imported blocks are left as they are (their ranges may overlap the head's).
    pub fn compact_blocks(&self) -> std::io::Result<bool> {
        let base = self.options.block_duration.as_millis().max(1) as i64;
        let limit = (self.options.retention.as_millis() as i64 / 10).min(31 * 24 * 3_600_000);
        let persisted: Vec<Arc<Block>> = self
            .blocks()
            .into_iter()
            .filter(|block| block.meta.source == "head")
            .collect();
        let Some(newest) = persisted.iter().map(|block| block.meta.max_time).max() else {
            return Ok(false);
        };
        let mut range = base.saturating_mul(3);
        while range <= limit {
            let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for block in &persisted {
                let start = block.meta.min_time.div_euclid(range) * range;
                if block.meta.max_time <= start + range {
                    groups.entry(start).or_default().push(Arc::clone(block));
                }
            }
            if let Some(group) = groups
                .into_iter()
                .find(|(start, group)| group.len() > 1 && start + range <= newest)
                .map(|(_, group)| group)
            {
                self.replace_blocks(&group)?;
                return Ok(true);
            }
            range = range.saturating_mul(3);
        }
        Ok(false)
    }

    /// Replaces `removed` with `added` in the blocks queries read, kept in time order.
    fn swap_blocks(&self, removed: &[Arc<Block>], added: Vec<Arc<Block>>) {
        let mut blocks = self
            .blocks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        blocks.retain(|block| !removed.iter().any(|old| Arc::ptr_eq(old, block)));
        blocks.extend(added);
        blocks.sort_by_key(|block| (block.meta.min_time, block.meta.max_time));
    }

    /// Writes `group` merged into one block, swaps it in and deletes the group.
    fn replace_blocks(&self, group: &[Arc<Block>]) -> std::io::Result<()> {
        let path = block::merge(&self.dir.join("blocks"), group)?;
        let merged = Arc::new(Block::open(&path, &self.interner)?);
        tracing::info!(
            block = %path.display(),
            from = group.len(),
            series = merged.meta.series,
            samples = merged.meta.samples,
            "metrics blocks compacted"
        );
        self.swap_blocks(group, vec![merged]);
        // the merged block names them as its parents: a crash from here on deletes them
        // at the next start instead
        for old in group {
            if let Err(error) = std::fs::remove_dir_all(&old.dir) {
                tracing::warn!(block = %old.dir.display(), %error, "cannot delete a compacted metrics block");
            }
        }
        Ok(())
    }

    /// Opens blocks that appeared in `blocks/` since (a `lookout tsdb import`).
    pub fn reload_blocks(&self) -> usize {
        let known: std::collections::HashSet<PathBuf> = self
            .blocks()
            .iter()
            .map(|block| block.dir.clone())
            .collect();
        let Ok(entries) = std::fs::read_dir(self.dir.join("blocks")) else {
            return 0;
        };
        let mut added = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !path.is_dir() || known.contains(&path) {
                continue;
            }
            match Block::open(&path, &self.interner) {
                Ok(block) => added.push(Arc::new(block)),
                Err(error) => {
                    tracing::warn!(block = %path.display(), %error, "skipping an unreadable metrics block")
                }
            }
        }
        let count = added.len();
        if count > 0 {
            tracing::info!(blocks = count, "metrics blocks picked up");
            self.swap_blocks(&[], added);
        }
        count
    }

    /// Deletes blocks entirely older than `now - retention`; returns how many.
    pub fn apply_retention(&self, now: i64) -> usize {
        let cutoff = now - self.options.retention.as_millis() as i64;
        let expired: Vec<Arc<Block>> = {
            let mut blocks = self
                .blocks
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (expired, kept): (Vec<_>, Vec<_>) = blocks
                .drain(..)
                .partition(|block| block.meta.max_time <= cutoff);
            *blocks = kept;
            expired
        };
        for block in &expired {
            if let Err(error) = std::fs::remove_dir_all(&block.dir) {
                tracing::error!(block = %block.dir.display(), %error, "cannot delete an expired metrics block");
            }
        }
        if self
            .head
            .time_range()
            .is_some_and(|(oldest, _)| oldest < cutoff)
        {
            self.head.truncate(cutoff);
        }
        expired.len()
    }

    /// Blocks held, with their metadata.
    pub fn block_metas(&self) -> Vec<block::BlockMeta> {
        self.blocks()
            .iter()
            .map(|block| block.meta.clone())
            .collect()
    }

    /// Compacts, applies retention and picks up imported blocks, every quarter block
    /// duration (between 200 ms and 60 s: within a minute with the default 2 h).
    pub async fn run(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        let tick = (self.options.block_duration / 4)
            .clamp(Duration::from_millis(200), Duration::from_secs(60));
        let mut failing = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            // degraded: no block is written (the head holds on), retention still frees
            let compact = !self.disk.get().is_some_and(|disk| disk.degraded());
            let tsdb = Arc::clone(&self);
            let outcome = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                tsdb.reload_blocks();
                let compacted = (|| {
                    while compact && tsdb.compact()? {}
                    while compact && tsdb.compact_blocks()? {}
                    Ok(())
                })();
                tsdb.apply_retention(chrono::Utc::now().timestamp_millis());
                // what merged and expired blocks held, once no query holds it (a block in
                // a query's hands is swept at a later tick)
                tsdb.interner.sweep();
                compacted
            })
            .await;
            match outcome {
                Ok(Ok(())) => {
                    if compact && std::mem::take(&mut failing) {
                        tracing::info!("metrics store maintenance works again");
                    }
                }
                Ok(Err(error)) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::error!(%error, "metrics store maintenance failed; the head keeps the samples, retrying");
                    }
                    if let Some(disk) = self.disk.get() {
                        disk.write_failed("metrics block", &error);
                    }
                }
                Err(error) => tracing::error!(%error, "metrics store maintenance panicked"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn while_degraded_samples_stay_queryable_unlogged_and_the_log_resumes_in_a_fresh_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = head::labels(&[("__name__", "up"), ("job", "node")]);
        let born_degraded = head::labels(&[("__name__", "up"), ("job", "late")]);
        let disk = Arc::new(crate::storage::DiskSpace::unwatched());
        {
            let tsdb = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
            tsdb.attach_disk(disk.clone());
            tsdb.append(&[(up.clone(), 0, 1.0)]).expect("append");
            disk.write_failed("metrics write-ahead log", &"No space left on device");
            // a series first seen while degraded: not logged, but queryable
            let results = tsdb
                .append(&[
                    (up.clone(), 15_000, 1.0),
                    (born_degraded.clone(), 15_000, 1.0),
                ])
                .expect("a degraded append does not fail");
            assert!(results.iter().all(Result::is_ok));
            assert_eq!(disk.telemetry().tsdb_samples_unlogged.get(), 2);
            assert_eq!(tsdb.select(&[], 0, i64::MAX).len(), 2);
            disk.recovered();
            tsdb.append(&[(born_degraded.clone(), 30_000, 2.0)])
                .expect("append");
        }
        let tsdb = Tsdb::open(dir.path(), TsdbOptions::default()).expect("reopen");
        let late = tsdb.select(
            &[head::Matcher::Equal("job".into(), "late".into())],
            0,
            i64::MAX,
        );
        // the fresh segment starts with every series, so the sample logged after the
        // recovery finds its series; the unlogged one is gone, as counted
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].1, vec![(30_000, 2.0)]);
        let node = tsdb.select(
            &[head::Matcher::Equal("job".into(), "node".into())],
            0,
            i64::MAX,
        );
        assert_eq!(node[0].1, vec![(0, 1.0)]);
    }

    #[test]
    fn a_reopened_store_has_every_logged_sample_and_still_refuses_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = head::labels(&[("__name__", "up"), ("job", "node")]);
        let load = head::labels(&[("__name__", "node_load1"), ("job", "node")]);
        {
            let tsdb = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
            for step in 0..200 {
                let results = tsdb
                    .append(&[
                        (up.clone(), step * 15_000, 1.0),
                        (load.clone(), step * 15_000, step as f64 / 10.0),
                    ])
                    .expect("append");
                assert!(results.iter().all(Result::is_ok));
            }
            let refused = tsdb.append(&[(up.clone(), 0, 1.0)]).expect("append");
            assert_eq!(refused, [Err(AppendError::OutOfOrder)]);
        }
        let tsdb = Tsdb::open(dir.path(), TsdbOptions::default()).expect("reopen");
        assert_eq!(tsdb.head.active_series(), 2);
        let all = tsdb.select(
            &[head::Matcher::Equal("job".into(), "node".into())],
            0,
            i64::MAX,
        );
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|(_, samples)| samples.len() == 200));
        assert_eq!(
            tsdb.append(&[(load.clone(), 15_000, 0.0)]).expect("append"),
            [Err(AppendError::OutOfOrder)],
            "the replayed head knows each series' newest sample"
        );
        // a second restart replays the segment the first one started
        drop(tsdb);
        let tsdb = Tsdb::open(dir.path(), TsdbOptions::default()).expect("reopen again");
        assert_eq!(
            tsdb.select(&[], 0, i64::MAX)
                .iter()
                .map(|(_, samples)| samples.len())
                .sum::<usize>(),
            400
        );
    }

    #[test]
    fn chunks_straddling_a_block_boundary_do_not_make_compaction_repeat_a_block() {
        // the soak found it: scrapes that started 20 minutes past the hour fill chunks
        // (120 samples, 30 minutes) across every hour boundary; truncation keeps those
        // chunks, and the head's oldest sample stayed before the persisted block, so the
        // same block was written again and again (thousands, with their open files)
        let dir = tempfile::tempdir().expect("tempdir");
        let options = TsdbOptions {
            block_duration: Duration::from_secs(3600),
            retention: Duration::from_secs(100 * 3600),
            max_series: None,
        };
        let up = head::labels(&[("__name__", "up"), ("job", "node")]);
        let tsdb = Tsdb::open(dir.path(), options).expect("open");
        let offset = 20 * 60_000;
        for step in 0..(6 * 240i64) {
            tsdb.append(&[(up.clone(), offset + step * 15_000, step as f64)])
                .expect("append");
        }
        let mut persisted = 0;
        while tsdb.compact().expect("compact") {
            persisted += 1;
            assert!(persisted <= 10, "compaction repeats itself");
        }
        let ranges: Vec<(i64, i64)> = tsdb
            .block_metas()
            .iter()
            .map(|meta| (meta.min_time, meta.max_time))
            .collect();
        let distinct: std::collections::BTreeSet<_> = ranges.iter().collect();
        assert_eq!(
            distinct.len(),
            ranges.len(),
            "one block per range: {ranges:?}"
        );
        assert_eq!(persisted, 5, "{ranges:?}");
        let everything = tsdb.select(&[], 0, i64::MAX);
        assert_eq!(everything[0].1.len(), 6 * 240, "no sample lost or doubled");
    }

    #[test]
    fn persisted_blocks_are_compacted_by_levels_and_queries_see_the_same_history() {
        const HOUR: i64 = 3_600_000;
        let dir = tempfile::tempdir().expect("tempdir");
        let options = TsdbOptions {
            block_duration: Duration::from_secs(3600),
            // a tenth of it: blocks of up to 9 hours
            retention: Duration::from_secs(100 * 3600),
            max_series: None,
        };
        let up = head::labels(&[("__name__", "up"), ("job", "node")]);
        let gone = head::labels(&[("__name__", "up"), ("job", "batch")]);
        let tsdb = Tsdb::open(dir.path(), options.clone()).expect("open");
        for minute in 0..12 * 60i64 {
            let mut samples = vec![(up.clone(), minute * 60_000, minute as f64)];
            if minute < 100 {
                samples.push((gone.clone(), minute * 60_000, 1.0));
            }
            tsdb.append(&samples).expect("append");
        }
        while tsdb.compact().expect("compact") {}
        assert_eq!(tsdb.block_metas().len(), 11, "hours 0 to 10 persisted");
        let hour_zero = tsdb.blocks()[0].dir.clone();
        let kept = dir.path().join("hour-zero");
        std::fs::create_dir(&kept).expect("mkdir");
        for file in ["chunks", "index", "meta.json"] {
            std::fs::copy(hour_zero.join(file), kept.join(file)).expect("copy");
        }
        let before = tsdb.select(&[], 0, i64::MAX);
        let mut merges = 0;
        while tsdb.compact_blocks().expect("compact blocks") {
            merges += 1;
        }
        let ranges = |tsdb: &Tsdb| -> Vec<(i64, i64)> {
            tsdb.block_metas()
                .iter()
                .map(|meta| (meta.min_time / HOUR, meta.max_time / HOUR))
                .collect()
        };
        // hours 0–3, 3–6, 6–9 merge; 9–12 is not over yet; then the three make 0–9
        assert_eq!(merges, 4);
        assert_eq!(ranges(&tsdb), [(0, 9), (9, 10), (10, 11)]);
        assert_eq!(tsdb.select(&[], 0, i64::MAX), before, "the same samples");
        let on_disk = || {
            std::fs::read_dir(dir.path().join("blocks"))
                .expect("blocks")
                .count()
        };
        assert_eq!(on_disk(), 3, "the merged blocks are deleted");
        assert!(
            !tsdb.compact_blocks().expect("compact blocks"),
            "nothing left to merge"
        );
        drop(tsdb);
        // a block whose deletion was cut short by a crash is deleted at the next start
        std::fs::rename(&kept, &hour_zero).expect("put back");
        let tsdb = Tsdb::open(dir.path(), options).expect("reopen");
        assert_eq!(ranges(&tsdb), [(0, 9), (9, 10), (10, 11)]);
        assert_eq!(tsdb.select(&[], 0, i64::MAX), before, "no sample twice");
        assert_eq!(on_disk(), 3);
    }

    #[test]
    fn the_head_is_persisted_into_blocks_and_queries_see_one_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = TsdbOptions {
            block_duration: Duration::from_secs(3600),
            retention: Duration::from_secs(10 * 3600),
            max_series: None,
        };
        let up = head::labels(&[("__name__", "up"), ("job", "node")]);
        let tsdb = Tsdb::open(dir.path(), options.clone()).expect("open");
        // 4 hours at 15 s
        for step in 0..960i64 {
            tsdb.append(&[(up.clone(), step * 15_000, step as f64)])
                .expect("append");
        }
        let mut persisted = 0;
        while tsdb.compact().expect("compact") {
            persisted += 1;
        }
        assert_eq!(
            persisted, 3,
            "hours 0 to 2 go to blocks; the head keeps less than one and a half hours"
        );
        assert_eq!(
            tsdb.block_metas()
                .iter()
                .map(|meta| meta.samples)
                .sum::<u64>(),
            720
        );
        let everything = tsdb.select(&[], 0, i64::MAX);
        assert_eq!(
            everything[0].1.len(),
            960,
            "head and blocks merge without gaps or duplicates"
        );
        assert!(
            everything[0]
                .1
                .windows(2)
                .all(|pair| pair[1].0 - pair[0].0 == 15_000)
        );
        assert_eq!(
            tsdb.append(&[(up.clone(), 0, 1.0)]).expect("append"),
            [Err(AppendError::OutOfBounds)]
        );
        drop(tsdb);

        // a restart replays only what the blocks do not hold
        let tsdb = Tsdb::open(dir.path(), options).expect("reopen");
        assert_eq!(tsdb.select(&[], 0, i64::MAX)[0].1.len(), 960);
        assert_eq!(
            tsdb.head
                .time_range()
                .map(|(oldest, _)| oldest >= 3 * 3_600_000 - 30 * 60_000),
            Some(true)
        );
        // retention deletes whole blocks once they are entirely too old
        assert_eq!(tsdb.apply_retention(11 * 3_600_000), 1);
        assert_eq!(tsdb.select(&[], 0, i64::MAX)[0].1.len(), 720);
        assert_eq!(
            std::fs::read_dir(dir.path().join("blocks"))
                .expect("blocks")
                .count(),
            2
        );
    }
}
