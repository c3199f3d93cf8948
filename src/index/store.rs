//! [`IndexStore`]: the user-named indices under `data/logs/indices/`, each a set of
//! event-time partitions.
//!
//! - Writes come from one thread (the ingest log) in WAL order through [`IndexStore::apply`];
//!   the refresher calls [`IndexStore::commit_all`] on the refresh interval.
//! - At most `max_open_writers` partition writers are open; opening one more commits and
//!   closes the least recently written.
//! - Retention drops whole partitions whose end is older than `now − retention`.
//! - A failed write (a full disk kills a tantivy writer's indexing thread, after which the
//!   writer refuses everything) is not repaired here: ingest resets every partition to
//!   its last commit ([`IndexStore::reset_to_last_commits`]) and replays its write-ahead
//!   log, which keeps every record the index has not committed.
//! - Index names follow Elasticsearch's rules, which also keeps every path inside the data
//!   directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use tantivy::collector::Count;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{TantivyDocument, Term};

use super::document::{DocFields, LogDoc};
use super::fields::{DefaultFields, FieldRegistry};
use super::partition::{Partition, PartitionError, WriterOptions, lock};
use super::schema::LogSchema;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("index `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid index name [{name}], {reason}")]
    InvalidName { name: String, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Checks `name` against Elasticsearch's index-name rules ([`crate::index_name`]).
pub fn validate_index_name(name: &str) -> Result<(), StoreError> {
    crate::index_name::check_index_name(name).map_err(|reason| StoreError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// A write, in WAL order.
#[derive(Debug)]
pub enum WriteOp {
    /// `explicit_id`: the client named the id (tracked until committed, for conflicts).
    Index {
        index: String,
        doc: LogDoc,
        overwrite: bool,
        explicit_id: bool,
    },
    Delete {
        index: String,
        id: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexMeta {
    name: String,
    uuid: String,
    created_millis: i64,
}

/// One user-named index.
pub struct LogIndex {
    pub name: String,
    pub uuid: String,
    pub created_millis: i64,
    dir: PathBuf,
    partitions: RwLock<BTreeMap<i64, Arc<Partition>>>,
    /// Explicit ids written since their partition's last commit: id → (partition, seq).
    pending_ids: Mutex<HashMap<String, (i64, u64)>>,
    fields: Mutex<FieldRegistry>,
}

impl LogIndex {
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Partitions that can hold events in the given event-time bounds (microseconds).
    pub fn partitions_overlapping(
        &self,
        lower: Bound<i64>,
        upper: Bound<i64>,
    ) -> Vec<Arc<Partition>> {
        self.partitions()
            .into_iter()
            .filter(|partition| {
                let after_lower = match lower {
                    Bound::Unbounded => true,
                    Bound::Included(value) | Bound::Excluded(value) => partition.end_micros > value,
                };
                let before_upper = match upper {
                    Bound::Unbounded => true,
                    Bound::Included(value) => partition.start_micros <= value,
                    Bound::Excluded(value) => partition.start_micros < value,
                };
                after_lower && before_upper
            })
            .collect()
    }

    /// The fields this index has seen, with their kinds (`fields::KIND_*`), sorted.
    pub fn fields(&self) -> Vec<(String, u8)> {
        lock(&self.fields).all()
    }

    pub fn default_fields(&self) -> DefaultFields {
        lock(&self.fields).default_fields()
    }

    pub fn doc_count(&self) -> u64 {
        self.partitions()
            .iter()
            .map(|partition| partition.searcher().num_docs())
            .sum()
    }

    pub fn disk_bytes(&self) -> u64 {
        self.partitions()
            .iter()
            .map(|partition| partition.disk_bytes())
            .sum()
    }
}

/// Settings the store runs with (from `IndexConfig`).
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    pub partition_span_micros: i64,
    pub retention_micros: i64,
    pub writer: WriterOptions,
    pub max_open_writers: usize,
}

pub struct IndexStore {
    root: PathBuf,
    pub schema: LogSchema,
    pub fields: DocFields,
    settings: StoreSettings,
    indices: RwLock<BTreeMap<String, Arc<LogIndex>>>,
    write_tick: AtomicU64,
    /// The clock of `Partition::last_write_ms`.
    opened: std::time::Instant,
    /// Highest WAL record up to which every record's operations have reached the writers
    /// (or the record failed before the log had it): the label of a commit.
    complete_seq: AtomicU64,
    /// Records above `complete_seq` that failed before the log had them (never
    /// acknowledged, never replayed): `complete_seq` passes over them once every record
    /// before them is applied, never before.
    failed_seqs: Mutex<BTreeSet<u64>>,
    /// Serializes commits (the refresher, `?refresh=true`, eviction, shutdown).
    commit_lock: Mutex<()>,
}

impl IndexStore {
    /// Opens every index under `root` (creating `root`).
    pub fn open(root: &Path, settings: StoreSettings) -> Result<IndexStore, StoreError> {
        std::fs::create_dir_all(root).map_err(io_error(root))?;
        let schema = LogSchema::new();
        let fields = DocFields::from(&schema);
        let store = IndexStore {
            root: root.to_path_buf(),
            schema,
            fields,
            settings,
            indices: RwLock::new(BTreeMap::new()),
            write_tick: AtomicU64::new(0),
            opened: std::time::Instant::now(),
            complete_seq: AtomicU64::new(0),
            failed_seqs: Mutex::new(BTreeSet::new()),
            commit_lock: Mutex::new(()),
        };
        let mut indices = BTreeMap::new();
        for entry in std::fs::read_dir(root).map_err(io_error(root))? {
            let entry = entry.map_err(io_error(root))?;
            let meta_path = entry.path().join("index.json");
            let Ok(text) = std::fs::read_to_string(&meta_path) else {
                tracing::warn!(path = %entry.path().display(), "directory without index.json in the index root; ignored");
                continue;
            };
            let meta: IndexMeta = serde_json::from_str(&text).map_err(|error| StoreError::Io {
                path: meta_path.display().to_string(),
                source: std::io::Error::other(error),
            })?;
            let index = store.open_index(meta, entry.path())?;
            indices.insert(index.name.clone(), Arc::new(index));
        }
        *store
            .indices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = indices;
        let committed = store.min_committed_seq();
        store.complete_seq.store(committed, Ordering::SeqCst);
        Ok(store)
    }

    fn open_index(&self, meta: IndexMeta, dir: PathBuf) -> Result<LogIndex, StoreError> {
        let fields = FieldRegistry::load(&dir.join("fields.json"));
        let mut partitions = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(start_micros) = parse_partition_dir(&name) else {
                continue;
            };
            let partition = Partition::open(
                &entry.path(),
                &self.schema,
                start_micros,
                self.settings.partition_span_micros,
            )?;
            partitions.insert(start_micros, Arc::new(partition));
        }
        Ok(LogIndex {
            name: meta.name,
            uuid: meta.uuid,
            created_millis: meta.created_millis,
            dir,
            fields: Mutex::new(fields),
            partitions: RwLock::new(partitions),
            pending_ids: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// The lowest WAL sequence every partition has committed (replay starts after it).
    pub fn min_committed_seq(&self) -> u64 {
        self.all_partitions()
            .iter()
            .map(|partition| partition.committed_seq())
            .min()
            .unwrap_or(0)
    }

    /// The highest WAL sequence any partition has committed (sequences continue after it
    /// even when every log segment is gone).
    pub fn max_committed_seq(&self) -> u64 {
        self.all_partitions()
            .iter()
            .map(|partition| partition.committed_seq())
            .max()
            .unwrap_or(0)
    }

    pub fn get(&self, name: &str) -> Option<Arc<LogIndex>> {
        self.indices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.indices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Arc<LogIndex>> {
        self.indices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.all()
            .iter()
            .flat_map(|index| index.partitions())
            .collect()
    }

    /// Resolves an index expression: names, comma lists, `*` patterns, `_all`. Hidden
    /// indices (`.name`) match only patterns that start with `.`. With `ignore_missing`
    /// a concrete name that does not exist is skipped instead of failing.
    pub fn resolve(
        &self,
        expression: &str,
        ignore_missing: bool,
    ) -> Result<Vec<Arc<LogIndex>>, String> {
        let indices = self
            .indices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found: BTreeMap<String, Arc<LogIndex>> = BTreeMap::new();
        for part in expression
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (exclude, pattern) = match part.strip_prefix('-') {
                Some(rest) if !found.is_empty() => (true, rest),
                _ => (false, part),
            };
            if pattern == "_all" || pattern.contains('*') {
                let pattern = if pattern == "_all" { "*" } else { pattern };
                for (name, index) in indices.iter() {
                    if name.starts_with('.') && !pattern.starts_with('.') {
                        continue;
                    }
                    if glob_match(pattern, name) {
                        if exclude {
                            found.remove(name);
                        } else {
                            found.insert(name.clone(), index.clone());
                        }
                    }
                }
            } else if let Some(index) = indices.get(pattern) {
                if exclude {
                    found.remove(pattern);
                } else {
                    found.insert(pattern.to_string(), index.clone());
                }
            } else if !ignore_missing && !exclude {
                return Err(pattern.to_string());
            }
        }
        Ok(found.into_values().collect())
    }

    /// Creates `name`; returns `false` when it already exists.
    pub fn create_index(&self, name: &str) -> Result<bool, StoreError> {
        validate_index_name(name)?;
        let mut indices = self
            .indices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if indices.contains_key(name) {
            return Ok(false);
        }
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let meta = IndexMeta {
            name: name.to_string(),
            uuid: new_uuid(),
            created_millis: Utc::now().timestamp_millis(),
        };
        let meta_path = dir.join("index.json");
        crate::atomic_file::write(
            &meta_path,
            &serde_json::to_vec(&meta).expect("IndexMeta serializes"),
        )
        .map_err(io_error(&meta_path))?;
        let index = self.open_index(meta, dir)?;
        indices.insert(name.to_string(), Arc::new(index));
        Ok(true)
    }

    /// Deletes `name` and its files; returns `false` when it did not exist.
    pub fn delete_index(&self, name: &str) -> Result<bool, StoreError> {
        let removed = self
            .indices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
        let Some(index) = removed else {
            return Ok(false);
        };
        for partition in index.partitions() {
            // writers hold the directory lock: close them without committing
            partition.discard_writer();
        }
        std::fs::remove_dir_all(&index.dir).map_err(io_error(&index.dir))?;
        Ok(true)
    }

    fn partition_start(&self, timestamp_micros: i64) -> i64 {
        timestamp_micros.div_euclid(self.settings.partition_span_micros)
            * self.settings.partition_span_micros
    }

    fn partition_for(
        &self,
        index: &LogIndex,
        timestamp_micros: i64,
    ) -> Result<Arc<Partition>, StoreError> {
        let start = self.partition_start(timestamp_micros);
        if let Some(partition) = index
            .partitions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&start)
        {
            return Ok(partition.clone());
        }
        let mut partitions = index
            .partitions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(partition) = partitions.get(&start) {
            return Ok(partition.clone());
        }
        let dir = index.dir.join(partition_dir_name(start));
        let partition = Arc::new(Partition::open(
            &dir,
            &self.schema,
            start,
            self.settings.partition_span_micros,
        )?);
        partitions.insert(start, partition.clone());
        Ok(partition)
    }

    fn id_term(&self, id: &str) -> Term {
        Term::from_field_text(self.fields.id, id)
    }

    /// Partitions of `index` that hold (or may hold, uncommitted) a document with `id`.
    pub fn partitions_with_id(&self, index: &LogIndex, id: &str) -> Vec<Arc<Partition>> {
        let term = self.id_term(id);
        let query = TermQuery::new(term.clone(), IndexRecordOption::Basic);
        let mut holding: Vec<Arc<Partition>> = index
            .partitions()
            .into_iter()
            .filter(|partition| {
                let searcher = partition.searcher();
                searcher.doc_freq(&term).unwrap_or(0) > 0
                    && searcher.search(&query, &Count).unwrap_or(0) > 0
            })
            .collect();
        if let Some((start, _)) = lock(&index.pending_ids).get(id).copied()
            && !holding
                .iter()
                .any(|partition| partition.start_micros == start)
            && let Some(partition) = index
                .partitions
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&start)
        {
            holding.push(partition.clone());
        }
        holding
    }

    /// Whether a document with `id` exists in `index` (committed or pending).
    pub fn id_exists(&self, index_name: &str, id: &str) -> bool {
        self.get(index_name)
            .is_some_and(|index| !self.partitions_with_id(&index, id).is_empty())
    }

    /// The stored `_source` of the document `id`, newest partition first.
    pub fn get_source(&self, index: &LogIndex, id: &str) -> Option<Vec<u8>> {
        let query = TermQuery::new(self.id_term(id), IndexRecordOption::Basic);
        for partition in index.partitions().iter().rev() {
            let searcher = partition.searcher();
            let Ok(hits) = searcher.search(&query, &tantivy::collector::DocSetCollector) else {
                continue;
            };
            if let Some(address) = hits.into_iter().next() {
                let document: TantivyDocument = searcher.doc(address).ok()?;
                return document
                    .get_first(self.fields.source)
                    .and_then(|value| value.as_bytes())
                    .map(<[u8]>::to_vec);
            }
        }
        None
    }

    /// Applies the operations of WAL record `seq`, in order. During `replay`, partitions
    /// that committed `seq` already are skipped and documents are upserted by `_id`,
    /// since a commit may hold part of a record.
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
                    let replace = replay.then(|| self.id_term(&doc.id));
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

/// `20261121T2200Z`-style directory names: readable and sortable.
fn partition_dir_name(start_micros: i64) -> String {
    let time = Utc
        .timestamp_micros(start_micros)
        .single()
        .unwrap_or_default();
    format!("p{}", time.format("%Y%m%dT%H%M%SZ"))
}

fn parse_partition_dir(name: &str) -> Option<i64> {
    let text = name.strip_prefix('p')?;
    chrono::NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|time| time.and_utc().timestamp_micros())
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (position, part) in parts.iter().enumerate() {
        if position == 0 {
            let Some(stripped) = rest.strip_prefix(part) else {
                return false;
            };
            rest = stripped;
        } else if position == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(found) = rest.find(part) else {
                return false;
            };
            rest = &rest[found + part.len()..];
        }
    }
    true
}

/// A random id in ES' style (20 URL-safe base64 characters).
pub fn new_uuid() -> String {
    use base64::Engine;
    let bytes: [u8; 15] = std::array::from_fn(|_| fastrand_byte());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn fastrand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 24) as u8
}

static NEXT: AtomicU64 = AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::partition::WriterOptions;

    #[test]
    fn index_names_follow_elasticsearch_rules() {
        for good in ["logs", "logs-checkout", ".lookout-alerts", "a.b_c"] {
            assert!(validate_index_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", ".", "..", "Logs", "_logs", "-x", "a/b", "a\\b", "a*", "a?b", "a,b", "a#", "a b",
            "../etc",
        ] {
            assert!(validate_index_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs_match_like_elasticsearch_patterns() {
        assert!(glob_match("logs-*", "logs-checkout"));
        assert!(glob_match("*", "logs"));
        assert!(glob_match("l*s-*t", "logs-checkout"));
        assert!(!glob_match("logs-*", "logs"));
        assert!(!glob_match("logs", "logs-a"));
    }

    const HOUR: i64 = 3_600_000_000;

    fn doc(store: &IndexStore, id: &str, timestamp_micros: i64) -> WriteOp {
        let source = bytes::Bytes::from(format!(r#"{{"name":"{id}"}}"#));
        WriteOp::Index {
            index: "logs".into(),
            doc: LogDoc {
                id: id.to_string(),
                timestamp_micros,
                body: crate::index::body::Body::parse(source).expect("json"),
                timestamp_key: None,
                fields: store.fields,
            },
            overwrite: false,
            explicit_id: false,
        }
    }

    fn ids(store: &IndexStore) -> Vec<String> {
        let mut found: Vec<String> = (0..6)
            .map(|number| format!("b{number}"))
            .filter(|id| store.id_exists("logs", id))
            .collect();
        found.sort();
        found
    }

    // Regression: a replay evicting a writer committed it labelled with the sequence the
    // discarded writers had reached, so the rest of the replay skipped that partition
    // and acknowledged documents were lost.
    #[test]
    fn a_replay_that_evicts_writers_keeps_every_document_of_the_replayed_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_writers(dir.path(), 4);
        let start = 1_795_341_600_000_000;
        // five hourly partitions, the first one written again at the end
        let ops = |store: &IndexStore| -> Vec<WriteOp> {
            [0, 1, 2, 3, 4, 0]
                .iter()
                .enumerate()
                .map(|(number, hour)| doc(store, &format!("b{number}"), start + hour * HOUR))
                .collect()
        };
        store.apply(1, ops(&store), false).expect("apply");
        // a later record fails (a full disk), then the recovery resets and replays
        store.skip(2);
        store.reset_to_last_commits();
        store.apply(1, ops(&store), true).expect("replay");
        store.replayed_through(2);
        assert_eq!(store.commit_all().expect("commit"), 2);
        store.reset_to_last_commits();
        assert_eq!(ids(&store), ["b0", "b1", "b2", "b3", "b4", "b5"]);
    }

    #[test]
    fn a_failed_record_after_unapplied_ones_does_not_complete_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_writers(dir.path(), 4);
        store.apply(1, vec![], false).expect("apply");
        // records 2 and 3 acknowledged but not applied (a failed index write), 4 failed
        store.skip(4);
        assert_eq!(store.durable_seq(), 1);
        store.apply(2, vec![], true).expect("replay");
        store.apply(3, vec![], true).expect("replay");
        assert_eq!(store.durable_seq(), 4, "the failed record is passed over");
    }

    fn store_with_writers(dir: &Path, max_open_writers: usize) -> IndexStore {
        IndexStore::open(
            dir,
            StoreSettings {
                partition_span_micros: HOUR,
                retention_micros: 1000 * HOUR * 24 * 365,
                writer: WriterOptions {
                    threads: 1,
                    memory_bytes: 15 << 20,
                },
                max_open_writers,
            },
        )
        .expect("store")
    }

    // Regression: documents of one batch spread over more partitions than there are
    // writers evicted a writer (commit and close) every few documents.
    #[test]
    fn a_batch_over_more_partitions_than_writers_opens_each_writer_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_writers(dir.path(), 2);
        let start = 1_795_341_600_000_000;
        let ops: Vec<WriteOp> = (0..60)
            .map(|number| doc(&store, &format!("d{number}"), start + (number % 6) * HOUR))
            .collect();
        store.apply(1, ops, false).expect("apply");
        store.commit_all().expect("commit");
        let logs = store.get("logs").expect("index");
        let segments: Vec<usize> = logs
            .partitions()
            .iter()
            .map(|partition| partition.searcher().segment_readers().len())
            .collect();
        assert_eq!(
            segments, [1; 6],
            "one segment per partition: no eviction mid-batch"
        );
        let docs: u64 = logs
            .partitions()
            .iter()
            .map(|partition| partition.searcher().num_docs())
            .sum();
        assert_eq!(docs, 60);
    }

    #[test]
    fn idle_writers_are_committed_and_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_writers(dir.path(), 4);
        let start = 1_795_341_600_000_000;
        store
            .apply(
                1,
                vec![doc(&store, "a", start), doc(&store, "b", start + HOUR)],
                false,
            )
            .expect("apply");
        let logs = store.get("logs").expect("index");
        assert_eq!(
            store
                .close_idle_writers(std::time::Duration::from_secs(3600))
                .expect("close"),
            0,
            "just written: kept open"
        );
        assert_eq!(
            store
                .close_idle_writers(std::time::Duration::ZERO)
                .expect("close"),
            2
        );
        assert!(
            logs.partitions()
                .iter()
                .all(|partition| !partition.has_open_writer())
        );
        // what they held is committed: searchable without another commit
        let docs: u64 = logs
            .partitions()
            .iter()
            .map(|partition| partition.searcher().num_docs())
            .sum();
        assert_eq!(docs, 2);
        assert_eq!(store.durable_seq(), 1);
    }

    #[test]
    fn partition_dir_names_round_trip() {
        let start = 1_714_557_600_000_000;
        assert_eq!(partition_dir_name(start), "p20240501T100000Z");
        assert_eq!(parse_partition_dir(&partition_dir_name(start)), Some(start));
    }
}
