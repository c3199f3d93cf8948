//! The store's write side, in WAL order from the ingest log thread: applying records,
//! the open-writer budget, commits and what they make durable, the bookkeeping of failed
//! and replayed records, and retention.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{IndexStore, StoreError, WriteOp, io_error};
use crate::index::partition::{Partition, lock};

impl IndexStore {
    /// Applies the operations of WAL record `seq`, in order. During `replay`, partitions
    /// that committed `seq` already are skipped, and documents are upserted by `_id` into
    /// a partition whose last commit may hold part of the record (see
    /// [`Partition::may_hold_part_of`]); elsewhere they are added, which costs far less.
    pub fn apply(&self, seq: u64, mut ops: Vec<WriteOp>, replay: bool) -> Result<(), StoreError> {
        group_appends_by_partition(&mut ops, self.settings.partition_span_micros);
        for op in ops {
            match op {
                WriteOp::Index {
                    index,
                    doc,
                    overwrite,
                    explicit_id,
                } => {
                    let log_index = match self.get(&index) {
                        Some(found) => found,
                        None => {
                            self.create_index(&index)?;
                            self.get(&index).expect("index was just created")
                        }
                    };
                    if overwrite {
                        for partition in self.partitions_with_id(&log_index, &doc.id) {
                            if !(replay && partition.committed_seq() >= seq) {
                                self.touch_writer(&partition)?;
                                partition.delete_id(
                                    self.id_term(&doc.id),
                                    seq,
                                    &self.settings.writer,
                                )?;
                            }
                        }
                    }
                    if explicit_id {
                        lock(&log_index.pending_ids).insert(
                            doc.id.clone(),
                            (self.partition_start(doc.timestamp_micros), seq),
                        );
                    }
                    lock(&log_index.fields).record(&doc.body, doc.timestamp_key.as_deref());
                    let partition = self.partition_for(&log_index, doc.timestamp_micros)?;
                    if replay && partition.committed_seq() >= seq {
                        continue;
                    }
                    self.touch_writer(&partition)?;
                    let replace =
                        (replay && partition.may_hold_part_of(seq)).then(|| self.id_term(&doc.id));
                    partition.add(doc, replace, seq, &self.settings.writer)?;
                }
                WriteOp::Delete { index, id } => {
                    let Some(log_index) = self.get(&index) else {
                        continue;
                    };
                    for partition in self.partitions_with_id(&log_index, &id) {
                        if !(replay && partition.committed_seq() >= seq) {
                            self.touch_writer(&partition)?;
                            partition.delete_id(self.id_term(&id), seq, &self.settings.writer)?;
                        }
                    }
                    lock(&log_index.pending_ids).remove(&id);
                }
            }
        }
        self.complete_through(seq);
        Ok(())
    }

    /// Records that every operation of WAL record `seq` reached the writers: the complete
    /// sequence rises to it, and past the failed records that follow it.
    fn complete_through(&self, seq: u64) {
        let mut failed = lock(&self.failed_seqs);
        let mut complete = self.complete_seq.load(Ordering::SeqCst).max(seq);
        while failed.remove(&(complete + 1)) {
            complete += 1;
        }
        *failed = failed.split_off(&(complete + 1));
        self.complete_seq.store(complete, Ordering::SeqCst);
    }

    /// Marks `partition` as just written; opening its writer may close the least
    /// recently written one beyond `max_open_writers`.
    fn touch_writer(&self, partition: &Arc<Partition>) -> Result<(), StoreError> {
        let tick = self.write_tick.fetch_add(1, Ordering::Relaxed) + 1;
        let had_writer = partition.has_open_writer();
        partition.last_write_tick.store(tick, Ordering::Relaxed);
        partition
            .last_write_ms
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
        if had_writer {
            return Ok(());
        }
        let mut open: Vec<Arc<Partition>> = self
            .all_partitions()
            .into_iter()
            .filter(|other| other.has_open_writer() && !Arc::ptr_eq(other, partition))
            .collect();
        if open.len() < self.settings.max_open_writers {
            return Ok(());
        }
        open.sort_by_key(|other| other.last_write_tick.load(Ordering::Relaxed));
        let _guard = lock(&self.commit_lock);
        let complete = self.complete_seq.load(Ordering::SeqCst);
        for victim in &open[..=open.len() - self.settings.max_open_writers] {
            victim.commit(complete, true)?;
        }
        Ok(())
    }

    /// Commits and closes the writers of partitions not written for `idle_after` (late
    /// lines for the previous hours, a backfill that ended), so the steady state holds
    /// the writers of the partitions being written and `max_open_writers` is head room
    /// for bursts, not a standing cost. Returns how many were closed.
    pub fn close_idle_writers(&self, idle_after: std::time::Duration) -> Result<usize, StoreError> {
        let now = self.opened.elapsed().as_millis() as u64;
        let idle_after = idle_after.as_millis() as u64;
        let idle: Vec<Arc<Partition>> = self
            .all_partitions()
            .into_iter()
            .filter(|partition| {
                partition.has_open_writer()
                    && now.saturating_sub(partition.last_write_ms.load(Ordering::Relaxed))
                        >= idle_after
            })
            .collect();
        if idle.is_empty() {
            return Ok(0);
        }
        let _guard = lock(&self.commit_lock);
        let complete = self.complete_seq.load(Ordering::SeqCst);
        let mut closed = 0;
        for partition in idle {
            // written meanwhile: still in use
            if now.saturating_sub(partition.last_write_ms.load(Ordering::Relaxed)) < idle_after {
                continue;
            }
            partition.commit(complete, true)?;
            closed += 1;
        }
        Ok(closed)
    }

    /// Commits every partition with pending writes; returns the WAL sequence up to which
    /// everything is now committed and searchable.
    pub fn commit_all(&self) -> Result<u64, StoreError> {
        let _guard = lock(&self.commit_lock);
        let complete = self.complete_seq.load(Ordering::SeqCst);
        for index in self.all() {
            let mut committed_any = false;
            for partition in index.partitions() {
                if partition.first_pending_seq().is_some() {
                    committed_any |= partition.commit(complete, false)?;
                }
            }
            if committed_any {
                lock(&index.pending_ids).retain(|_, (_, seq)| *seq > complete);
            }
            let fields_path = index.dir.join("fields.json");
            lock(&index.fields)
                .save_if_changed(&fields_path)
                .map_err(io_error(&fields_path))?;
        }
        Ok(self.durable_seq())
    }

    /// The WAL sequence up to which every operation is committed in tantivy: the log may
    /// drop records at or below it.
    pub fn durable_seq(&self) -> u64 {
        let complete = self.complete_seq.load(Ordering::SeqCst);
        self.all_partitions()
            .iter()
            .filter_map(|partition| partition.first_pending_seq())
            .map(|seq| seq.saturating_sub(1))
            .min()
            .unwrap_or(complete)
            .min(complete)
    }

    /// Records that WAL record `seq` has nothing to apply (its write failed and it was
    /// never acknowledged), so waiting for it to become searchable ends once every
    /// record before it is applied. Records before it that were acknowledged but not
    /// applied yet (after a failed index write) keep the complete sequence below it.
    pub fn skip(&self, seq: u64) {
        lock(&self.failed_seqs).insert(seq);
        self.complete_through(0);
    }

    /// Records that a whole replay of the write-ahead log applied every record up to
    /// `seq` the log holds: the others are committed already or failed before the log
    /// had them, so nothing up to `seq` is left to wait for.
    pub fn replayed_through(&self, seq: u64) {
        self.complete_through(seq);
    }

    /// Resets every partition to its last commit, dropping its writer and what that
    /// writer held (see [`Partition::reset_to_last_commit`]), and the complete sequence
    /// with them: nothing after the oldest commit is applied any more, so a commit during
    /// the replay that follows (a writer evicted) is labelled with what the replay
    /// applied, not with what the discarded writers had.
    pub fn reset_to_last_commits(&self) {
        let _guard = lock(&self.commit_lock);
        for partition in self.all_partitions() {
            partition.reset_to_last_commit();
        }
        self.complete_seq
            .store(self.min_committed_seq(), Ordering::SeqCst);
        self.complete_through(0);
    }

    /// Commits and closes every writer (shutdown).
    pub fn close(&self) -> Result<(), StoreError> {
        let _guard = lock(&self.commit_lock);
        let complete = self.complete_seq.load(Ordering::SeqCst);
        for partition in self.all_partitions() {
            partition.commit(complete, true)?;
        }
        Ok(())
    }

    /// Drops partitions whose events are all older than `now − retention`; calls
    /// `on_dropped` as each one's directory is gone (so a counter never lags the disk) and
    /// returns how many were dropped.
    pub fn drop_expired(
        &self,
        now_micros: i64,
        mut on_dropped: impl FnMut(),
    ) -> Result<usize, StoreError> {
        let cutoff = now_micros - self.settings.retention_micros;
        let mut dropped = 0;
        for index in self.all() {
            let expired: Vec<Arc<Partition>> = {
                let mut partitions = index
                    .partitions
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let keys: Vec<i64> = partitions
                    .values()
                    .filter(|partition| partition.end_micros <= cutoff)
                    .map(|partition| partition.start_micros)
                    .collect();
                keys.iter()
                    .filter_map(|key| partitions.remove(key))
                    .collect()
            };
            for partition in expired {
                partition.discard_writer();
                std::fs::remove_dir_all(&partition.dir).map_err(io_error(&partition.dir))?;
                tracing::info!(index = %index.name, partition = %partition.dir.display(), "retention dropped partition");
                on_dropped();
                dropped += 1;
            }
        }
        Ok(dropped)
    }
}

/// Orders a record of plain appends (generated ids: no overwrite, no delete) by index and
/// partition, stably, so each partition's writer is touched in one run. A batch whose
/// event times are spread over more partitions than `max_open_writers` (a backfill, an
/// agent catching up on several hosts' late lines) then opens each writer at most once
/// instead of evicting one every few documents — that thrash (a commit and a close per
/// eviction) once took a 200 000-line load over 6 hours of event time past five
/// minutes. Records with explicit ids keep their order: an overwrite or a delete
/// depends on what came before it.
fn group_appends_by_partition(ops: &mut [WriteOp], span_micros: i64) {
    let plain_appends = ops.iter().all(|op| {
        matches!(
            op,
            WriteOp::Index {
                overwrite: false,
                explicit_id: false,
                ..
            }
        )
    });
    if !plain_appends || ops.len() < 2 {
        return;
    }
    fn key(op: &WriteOp, span_micros: i64) -> (&str, i64) {
        match op {
            WriteOp::Index { index, doc, .. } => {
                (index, doc.timestamp_micros.div_euclid(span_micros))
            }
            WriteOp::Delete { index, .. } => (index, i64::MIN),
        }
    }
    // already grouped (the usual batch: one index, one partition) costs one pass
    if ops
        .windows(2)
        .all(|pair| key(&pair[0], span_micros) <= key(&pair[1], span_micros))
    {
        return;
    }
    ops.sort_by(|a, b| key(a, span_micros).cmp(&key(b, span_micros)));
}
