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
//! - Index names follow Elasticsearch's rules ([`crate::index_name`]), which also keeps
//!   every path inside the data directory.
//!
//! This file opens, resolves, creates and deletes indices and looks documents up by id;
//! `write` is the write side (applying records, commits, the writer budget, retention),
//! `log_index` what one index holds.

mod log_index;
mod write;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{TimeZone, Utc};
use tantivy::collector::Count;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{TantivyDocument, Term};

use super::document::{DocFields, LogDoc};
use super::fields::FieldRegistry;
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

impl From<crate::index_name::InvalidIndexName> for StoreError {
    fn from(invalid: crate::index_name::InvalidIndexName) -> Self {
        StoreError::InvalidName {
            name: invalid.name,
            reason: invalid.reason,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

// the rules live in a leaf the agent uses too; callers here keep naming them `store::…`
pub use crate::index_name::{glob_match, validate_index_name};
use log_index::IndexMeta;
pub use log_index::LogIndex;

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
impl IndexStore {
    /// A store for tests at `dir`: partitions of `partition_span_micros`, nothing expires
    /// (a century's retention), one indexing thread of 20 MiB per writer.
    pub fn test_open(
        dir: &Path,
        partition_span_micros: i64,
        max_open_writers: usize,
    ) -> IndexStore {
        IndexStore::open(
            dir,
            StoreSettings {
                partition_span_micros,
                retention_micros: 100 * 366 * 86_400_000_000,
                writer: WriterOptions {
                    threads: 1,
                    memory_bytes: 20 << 20,
                },
                max_open_writers,
            },
        )
        .expect("store")
    }

    /// A new document of `index` with the line `source`, as tests write them.
    pub fn test_doc(
        &self,
        index: &str,
        id: impl Into<String>,
        timestamp_micros: i64,
        source: impl Into<bytes::Bytes>,
    ) -> WriteOp {
        WriteOp::Index {
            index: index.into(),
            doc: LogDoc {
                id: id.into(),
                timestamp_micros,
                body: super::body::Body::parse(source.into()).expect("json"),
                timestamp_key: None,
                fields: self.fields,
            },
            overwrite: false,
            explicit_id: false,
        }
    }
}

#[cfg(test)]
mod tests;
