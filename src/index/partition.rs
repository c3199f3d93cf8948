//! One time partition: a tantivy index holding the events of one index whose event time
//! falls in `[start, start + span)`.
//!
//! Every commit carries, as its payload, the write-ahead-log sequence number up to which
//! this partition holds every operation, and — when the commit also holds part of later
//! records (the log thread went on applying while it was prepared) — the highest of those:
//! `"COMPLETE UPPER"`. Replay at start skips what a partition already has
//! and upserts by `_id` only the records in `(COMPLETE, UPPER]`, so replay is idempotent
//! per partition without paying a delete for every replayed document.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};

use tantivy::directory::MmapDirectory;
use tantivy::indexer::IndexWriterOptions;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term};

use super::document::LogDoc;
use super::schema::LogSchema;
use super::time_window::TimeBlocks;

/// How a new partition stores its documents: zstd at level 1 in 32 KiB blocks instead of
/// lz4 in 16 KiB ones. On high-cardinality request lines the stored lines take 0.58 of
/// lz4's bytes (4.27× against 2.46×: the partition went from 539 to 463 B a line) for the
/// same indexing CPU within the noise; at 16 KiB zstd cost 7 % more CPU per MB ingested
/// (tantivy makes a zstd context for every block), and 64 KiB saved 1 % more disk but made
/// a fetched hit dearer (every hit decompresses its block: about 35 µs more than lz4 at
/// 32 KiB, 42 µs at 64 KiB). Existing partitions keep what their `meta.json` names.
fn index_settings() -> tantivy::IndexSettings {
    tantivy::IndexSettings {
        docstore_compression: tantivy::store::Compressor::Zstd(tantivy::store::ZstdCompressor {
            compression_level: Some(1),
        }),
        docstore_blocksize: 32768,
        ..tantivy::IndexSettings::default()
    }
}

/// Decompressed store blocks a segment's searcher keeps (tantivy's default is 100, up to
/// 3.2 MB a segment at 32 KiB and kept as long as the partition's searcher: on a week of
/// hourly partitions that is gigabytes once the UI has read a little of each). Hits are
/// fetched in doc order within a segment, so two blocks serve consecutive lines.
const DOC_STORE_CACHE_BLOCKS: usize = 2;

/// Write-side bookkeeping of a partition.
#[derive(Debug, Default)]
struct WriteState {
    /// Highest WAL sequence whose operations on this partition were handed to the writer.
    applied_seq: u64,
    /// Highest WAL sequence fully committed here.
    committed_seq: u64,
    /// Highest WAL sequence of which the last commit may hold a part (≥ `committed_seq`):
    /// a replay must upsert the records up to it, and may simply add later ones.
    committed_upper: u64,
    /// Lowest WAL sequence applied since the last commit (`None`: nothing pending).
    first_pending_seq: Option<u64>,
}

pub struct Partition {
    pub start_micros: i64,
    pub end_micros: i64,
    pub dir: PathBuf,
    index: Index,
    /// The index's directory, to forget files gone from its map of open files (see
    /// [`Partition::commit`]).
    directory: MmapDirectory,
    reader: IndexReader,
    /// Keeps the time block indexes of this partition's segments (the reader holds it
    /// weakly).
    time_blocks: TimeBlocks,
    writer: Mutex<Option<IndexWriter<Box<LogDoc>>>>,
    state: Mutex<WriteState>,
    /// Tick of the last write, for least-recently-used writer eviction.
    pub last_write_tick: AtomicU64,
    /// When it was last written, in milliseconds on the store's clock: writers idle for
    /// a while are closed.
    pub last_write_ms: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("partition `{path}`: {source}")]
    Tantivy {
        path: String,
        #[source]
        source: tantivy::TantivyError,
    },
    #[error("partition `{path}`: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("partition `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Opens every segment's term dictionaries, so a partition written in a format this build
/// cannot read (before 2026-11-22 Lookout used tantivy's FST dictionary; it now uses the
/// SSTable one) fails at start with what to do, not at the first search.
fn check_term_dictionaries(
    dir: &Path,
    reader: &IndexReader,
    schema: &LogSchema,
) -> Result<(), PartitionError> {
    for segment in reader.searcher().segment_readers() {
        for field in [schema.id, schema.body] {
            if let Err(error) = segment.inverted_index(field) {
                return Err(PartitionError::Unreadable {
                    path: dir.display().to_string(),
                    reason: format!(
                        "cannot read its term dictionary ({error}); it was written by an older Lookout. Move the data directory aside and re-ingest, or run the Lookout that wrote it"
                    ),
                });
            }
        }
    }
    Ok(())
}

impl Partition {
    /// Opens the partition at `dir`, creating it when absent.
    pub fn open(
        dir: &Path,
        schema: &LogSchema,
        start_micros: i64,
        span_micros: i64,
    ) -> Result<Partition, PartitionError> {
        let tantivy_error = |source| PartitionError::Tantivy {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| PartitionError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let directory = MmapDirectory::open(dir).map_err(|error| tantivy_error(error.into()))?;
        let index = if dir.join("meta.json").exists() {
            Index::open(directory.clone()).map_err(tantivy_error)?
        } else {
            Index::create(directory.clone(), schema.schema.clone(), index_settings())
                .map_err(tantivy_error)?
        };
        LogSchema::register_tokenizers(&index);
        let (committed_seq, committed_upper) = parse_label(
            index
                .load_metas()
                .map_err(tantivy_error)?
                .payload
                .as_deref(),
        );
        let time_blocks = TimeBlocks::default();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .doc_store_cache_num_blocks(DOC_STORE_CACHE_BLOCKS)
            .try_into()
            .map_err(tantivy_error)?;
        check_term_dictionaries(dir, &reader, schema)?;
        time_blocks
            .refresh(&reader.searcher())
            .map_err(tantivy_error)?;
        Ok(Partition {
            start_micros,
            end_micros: start_micros + span_micros,
            dir: dir.to_path_buf(),
            index,
            directory,
            reader,
            time_blocks,
            writer: Mutex::new(None),
            state: Mutex::new(WriteState {
                applied_seq: committed_seq,
                committed_seq,
                committed_upper,
                first_pending_seq: None,
            }),
            last_write_tick: AtomicU64::new(0),
            last_write_ms: AtomicU64::new(0),
        })
    }

    fn error(&self, source: tantivy::TantivyError) -> PartitionError {
        PartitionError::Tantivy {
            path: self.dir.display().to_string(),
            source,
        }
    }

    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// WAL sequence up to which this partition's commits hold everything.
    pub fn committed_seq(&self) -> u64 {
        lock(&self.state).committed_seq
    }

    /// Whether the last commit may hold part of WAL record `seq` (one after
    /// [`Self::committed_seq`]): a replay of it must upsert rather than add.
    pub fn may_hold_part_of(&self, seq: u64) -> bool {
        seq <= lock(&self.state).committed_upper
    }

    /// Lowest WAL sequence not yet committed here, if any.
    pub fn first_pending_seq(&self) -> Option<u64> {
        lock(&self.state).first_pending_seq
    }

    pub fn has_open_writer(&self) -> bool {
        lock(&self.writer).is_some()
    }

    fn writer_guard(
        &self,
        options: &WriterOptions,
    ) -> Result<MutexGuard<'_, Option<IndexWriter<Box<LogDoc>>>>, PartitionError> {
        let mut guard = lock(&self.writer);
        if guard.is_none() {
            let writer = self
                .index
                .writer_with_options(
                    IndexWriterOptions::builder()
                        .num_worker_threads(options.threads)
                        .memory_budget_per_thread(options.memory_bytes / options.threads.max(1))
                        .build(),
                )
                .map_err(|error| self.error(error))?;
            *guard = Some(writer);
        }
        Ok(guard)
    }

    /// Records that an operation of WAL record `seq` reached the writer (called while the
    /// writer lock is held, so a concurrent commit sees either both or neither).
    fn note_applied(&self, seq: u64) {
        let mut state = lock(&self.state);
        state.applied_seq = state.applied_seq.max(seq);
        state.first_pending_seq.get_or_insert(seq);
    }

    /// Adds `doc` as part of WAL record `seq`; with `replace`, first deletes any document
    /// with the same `_id` (replay: the record may be partly committed already).
    pub fn add(
        &self,
        doc: LogDoc,
        replace: Option<Term>,
        seq: u64,
        options: &WriterOptions,
    ) -> Result<(), PartitionError> {
        let guard = self.writer_guard(options)?;
        let writer = guard.as_ref().expect("writer_guard opened the writer");
        if let Some(id_term) = replace {
            writer.delete_term(id_term);
        }
        writer
            .add_document(Box::new(doc))
            .map_err(|error| self.error(error))?;
        self.note_applied(seq);
        Ok(())
    }

    /// Deletes every document with `id` as part of WAL record `seq`.
    pub fn delete_id(
        &self,
        id_term: Term,
        seq: u64,
        options: &WriterOptions,
    ) -> Result<(), PartitionError> {
        let guard = self.writer_guard(options)?;
        let writer = guard.as_ref().expect("writer_guard opened the writer");
        writer.delete_term(id_term);
        self.note_applied(seq);
        Ok(())
    }

    /// Commits what was applied and makes it searchable. `complete_seq` is the highest WAL
    /// record fully applied before this call (read by the caller *before* committing):
    /// it is recorded as the payload with the highest record applied so far (the writer
    /// lock is held, so no more can be), and replay re-applies the records between the
    /// two — of which the commit may hold a part — as upserts. Returns whether anything
    /// was committed. With `close`, the writer is dropped.
    pub fn commit(&self, complete_seq: u64, close: bool) -> Result<bool, PartitionError> {
        let mut guard = lock(&self.writer);
        let (seq, upper, pending) = {
            let state = lock(&self.state);
            let seq = complete_seq.max(state.committed_seq);
            (
                seq,
                state.applied_seq.max(seq),
                state.first_pending_seq.is_some(),
            )
        };
        let committed = match guard.as_mut() {
            Some(writer) if pending => {
                let mut prepared = writer.prepare_commit().map_err(|error| self.error(error))?;
                prepared.set_payload(&label(seq, upper));
                prepared.commit().map_err(|error| self.error(error))?;
                true
            }
            _ => false,
        };
        if close && let Some(writer) = guard.take() {
            writer
                .wait_merging_threads()
                .map_err(|error| self.error(error))?;
        }
        drop(guard);
        if committed {
            self.reader.reload().map_err(|error| self.error(error))?;
            self.time_blocks
                .refresh(&self.reader.searcher())
                .map_err(|error| self.error(error))?;
            // tantivy's `MmapDirectory` keeps every file it ever opened in a map (a weak
            // reference each) and drops the dead ones only when asked for its cache's
            // state: segments come and go with each commit and merge, so unasked the map
            // grew by ~14 MB an hour in the soak (heaptrack). Asking purges it.
            drop(self.directory.get_cache_info());
            let mut state = lock(&self.state);
            state.committed_seq = seq;
            state.committed_upper = upper;
            // operations applied after `seq` was read are in the commit but not in its
            // label: pending until a later commit labels them. A closed writer has no
            // later commit, and holds nothing uncommitted: the log may drop them (the
            // low label only makes a replay upsert them again)
            state.first_pending_seq = (state.applied_seq > seq && !close).then_some(seq + 1);
        }
        Ok(committed)
    }

    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| entry.metadata().ok())
                    .map(|metadata| metadata.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// A commit's payload: the complete sequence and the upper one.
fn label(complete: u64, upper: u64) -> String {
    format!("{complete} {upper}")
}

/// Reads [`label`]'s payload as `(complete, upper)`. A payload of only the complete
/// sequence (written before the upper one was recorded) may hold part of any later record:
/// its upper is unbounded (replay upserts everything, as it did then). `(0, 0)` when the
/// partition was never committed.
fn parse_label(payload: Option<&str>) -> (u64, u64) {
    let Some(payload) = payload else {
        return (0, 0);
    };
    match payload.split_once(' ') {
        Some((complete, upper)) => {
            let complete = complete.parse().unwrap_or(0);
            (complete, upper.parse().unwrap_or(u64::MAX).max(complete))
        }
        None => match payload.parse() {
            Ok(complete) => (complete, u64::MAX),
            Err(_) => (0, u64::MAX),
        },
    }
}

/// How partition writers are opened.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    pub threads: usize,
    pub memory_bytes: usize,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the state kept
/// here stays consistent: every update is a single assignment).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Partition {
    /// Drops the writer without committing (the partition is being deleted).
    pub fn discard_writer(&self) {
        if let Some(mut writer) = lock(&self.writer).take() {
            let _ = writer.rollback();
        }
    }

    /// Drops the writer and everything it held uncommitted, and forgets that anything
    /// is pending: the partition is back at its last commit. After a failed write (a
    /// writer whose indexing thread died on a full disk is "killed" and refuses every
    /// later operation) the write-ahead log is replayed from there.
    pub fn reset_to_last_commit(&self) {
        self.discard_writer();
        let mut state = lock(&self.state);
        state.applied_seq = state.committed_seq;
        state.first_pending_seq = None;
    }
}

#[cfg(test)]
mod tests {
    use super::{label, parse_label};

    #[test]
    fn commit_labels_round_trip_and_old_ones_upsert_every_later_record() {
        assert_eq!(parse_label(Some(&label(7, 7))), (7, 7));
        assert_eq!(parse_label(Some(&label(7, 9))), (7, 9));
        assert_eq!(label(7, 9), "7 9");
        assert_eq!(label(7, 7), "7 7");
        assert_eq!(parse_label(None), (0, 0), "never committed: holds nothing");
        assert_eq!(
            parse_label(Some("7")).1,
            u64::MAX,
            "before the upper was labelled"
        );
        assert_eq!(parse_label(Some("garbage")), (0, u64::MAX));
        assert_eq!(
            parse_label(Some("9 3")),
            (9, 9),
            "an upper below is the complete"
        );
    }
}
