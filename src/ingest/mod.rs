//! Ingest: `_bulk` and single-document writes become durable, then searchable.
//!
//! ```text
//!  request ──parse (blocking pool)──▶ decide (one lock: seq, noop by mark, 409 by id)
//!          ──▶ log thread: append · fdatasync (group commit) · apply to index · ack
//!          ──▶ response; agent watermark recorded
//!  refresher: every refresh_interval commit partitions ─▶ searchable seq ─▶ WAL truncation
//! ```
//!
//! Invariants: a response is sent only after its record is fsynced; records are applied in
//! sequence order; an item at or below its source's high-water mark is `noop`.
//!
//! A full disk degrades instead of stopping (see [`crate::storage`]):
//!
//! - While storage is degraded every write request is refused whole (HTTP 429 with the
//!   reason), before anything is decided.
//! - A failed append or fsync of the log fails every record of its group commit and every
//!   later one with an error, never an acknowledgment; the segment is cut back to its last
//!   durable length and abandoned ([`wal::WalWriter::abandon`]); the high-water marks the
//!   failed batches raised are put back, so an agent's retry is not mistaken for a
//!   duplicate.
//! - A failed index write (a tantivy writer killed by a full disk) or commit keeps the
//!   record acknowledged — it is durable in the log, which is not truncated past it — and
//!   degrades storage.
//! - Recovery, once space is back ([`Ingest::recover`]): every partition is reset to its
//!   last commit, the log is replayed into it and committed, and a fresh segment opens.
//! - Start-up on a full disk (or one that fails while replaying) opens read-only: what is
//!   committed is searched, the log is kept whole for that recovery.

pub mod agents;
pub mod bulk;
pub mod event;
pub mod sources;
pub mod wal;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};

use crate::index::IndexStore;
use crate::index::document::LogDoc;
use crate::index::store::{WriteOp, validate_index_name};
use crate::storage::{DiskSpace, DiskState};
use crate::telemetry::Telemetry;
use agents::Agents;
use bulk::{ActionKind, Pair, SourcePosition};
use event::{EventRules, IdGenerator, Rejection, TimeSource};
use sources::SourceMarks;
use wal::{LoggedDoc, LoggedMark, LoggedOp, Record, WalWriter};

/// What ingest runs with.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub rules: EventRules,
    pub source_ttl: Duration,
    pub agent_timeout: Duration,
    pub max_in_flight_bytes: u64,
    pub wal_segment_bytes: u64,
    pub refresh_interval: Duration,
    /// See `index.search_idle_after` (zero: never idle).
    pub search_idle_after: Duration,
}

/// One item of a write request, after parsing.
#[derive(Debug)]
pub struct Item {
    pub kind: ActionKind,
    pub index: Option<String>,
    pub id: Option<String>,
    pub position: Option<SourcePosition>,
    pub prepared: Result<Option<event::Event>, Rejection>,
}

/// The result of one item, rendered in ES' `_bulk` item shape.
#[derive(Debug, Clone)]
pub struct ItemResult {
    pub kind: ActionKind,
    pub index: String,
    pub id: Option<String>,
    pub status: u16,
    pub result: Option<&'static str>,
    pub error: Option<(&'static str, String)>,
}

impl ItemResult {
    fn failed(
        kind: ActionKind,
        index: String,
        id: Option<String>,
        status: u16,
        error_kind: &'static str,
        reason: String,
    ) -> ItemResult {
        ItemResult {
            kind,
            index,
            id,
            status,
            result: None,
            error: Some((error_kind, reason)),
        }
    }
}

/// Parses a `_bulk` body into items; `default_index` comes from the URL.
pub fn parse_bulk(
    lines: &[bytes::Bytes],
    default_index: Option<&str>,
    rules: &EventRules,
    now_micros: i64,
) -> Vec<Item> {
    bulk::pair_lines(lines)
        .into_iter()
        .map(|pair| match pair {
            Pair::Ok { action, source } => Item {
                kind: action.kind,
                index: action.index.or_else(|| default_index.map(str::to_string)),
                id: action.id,
                position: action.position,
                prepared: match source {
                    Some(line) => event::prepare(&line, rules, now_micros).map(Some),
                    None => Ok(None),
                },
            },
            Pair::Bad {
                kind,
                index,
                reason,
            } => Item {
                kind,
                index: index.or_else(|| default_index.map(str::to_string)),
                id: None,
                position: None,
                prepared: Err(Rejection {
                    kind: "illegal_argument_exception",
                    label: "bad_action",
                    reason,
                }),
            },
        })
        .collect()
}

enum LogMessage {
    /// Answered `Err(reason)` when the record could not be made durable.
    Append {
        record: Record,
        ops: Vec<WriteOp>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Truncate(u64),
    /// Recover from failed writes: answered with the index's durable sequence and the
    /// records that failed since the last recovery.
    Recover {
        reply: oneshot::Sender<Result<(u64, Vec<u64>), String>>,
    },
}

/// What the log thread and the request side share.
struct LogShared {
    /// Highest record known durable in the log.
    synced: watch::Sender<u64>,
    /// Bumped by every failure and every recovery: a snapshot of the marks taken in one
    /// epoch is saved only if the epoch did not change until its records were durable.
    epoch: std::sync::atomic::AtomicU64,
}

struct DecideState {
    next_seq: u64,
    marks: SourceMarks,
    /// `(index, id)` of explicit-id writes on their way through the log.
    reserved_ids: HashMap<(String, String), u64>,
    /// Whether an id exists after the items decided so far in the current request (so a
    /// `create` after an `index` of the same id in one `_bulk` conflicts, and a `delete`
    /// in between frees it).
    batch_ids: HashMap<(String, String), bool>,
    /// Per record on its way through the log, the marks it raised and their previous
    /// offsets, to put back if the record fails.
    undo_marks: std::collections::BTreeMap<u64, Vec<UndoMark>>,
    /// The marks the current request raised so far, with their previous offsets.
    batch_marks: Vec<UndoMark>,
    /// Whether an item of the current request is `noop` by a mark that a record still
    /// on its way through the log raised (that record may fail and its mark go back).
    batch_noop_undurable: bool,
}

/// A high-water mark a record raised, and its offset before, put back if the record
/// fails.
#[derive(Debug, Clone)]
struct UndoMark {
    source: String,
    generation: u64,
    /// `None`: there was no mark.
    previous: Option<u64>,
}

/// The ingest component; one per server.
pub struct Ingest {
    pub store: Arc<IndexStore>,
    pub settings: IngestSettings,
    pub agents: Agents,
    pub telemetry: Arc<Telemetry>,
    /// Decoded request bytes in flight, in KiB permits.
    pub in_flight: Arc<Semaphore>,
    ids: IdGenerator,
    decide: tokio::sync::Mutex<DecideState>,
    log: mpsc::Sender<LogMessage>,
    searchable: watch::Sender<u64>,
    refresh_now: Notify,
    /// The highest record someone waits to see searchable: the refresher commits (even
    /// search-idle) until it is, so a commit that ran before that record was applied is
    /// followed by another one rather than by silence.
    refresh_wanted: std::sync::atomic::AtomicU64,
    /// When the last search asked for fresh results (ms since `started`;
    /// [`NEVER_SEARCHED`] before the first: a fresh server is search-idle).
    last_search_ms: std::sync::atomic::AtomicU64,
    started: Instant,
    state_dir: PathBuf,
    disk: Arc<DiskSpace>,
    shared: Arc<LogShared>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error(transparent)]
    Store(#[from] crate::index::StoreError),
    #[error("{0}")]
    State(String),
}

/// A write request refused whole because storage is degraded (HTTP 429).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct WriteRefused {
    pub reason: String,
}

/// The outcome of a write request.
pub struct WriteOutcome {
    pub seq: u64,
    pub items: Vec<ItemResult>,
}

/// Bytes ingested since the last commit after which a search-idle index commits anyway.
const IDLE_MAX_UNCOMMITTED_BYTES: u64 = 256 << 20;

/// How often marks are snapshotted, the log truncated and retention applied.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);
/// A partition writer not written for this long is committed and closed at maintenance
/// (its threads and indexing memory go back).
const WRITER_IDLE_CLOSE: Duration = Duration::from_secs(60);

/// `Ingest::last_search_ms` before any search.
const NEVER_SEARCHED: u64 = u64::MAX;

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Ingest {
    /// Replays the log in `wal_dir` into `store`, then starts the log thread. Below the
    /// free-space watermark, or when replaying, committing or opening the log fails for
    /// lack of space, it opens read-only instead: what is committed is searchable, the log
    /// is kept whole and replayed by [`Ingest::recover`] once there is space.
    pub fn open(
        store: Arc<IndexStore>,
        wal_dir: PathBuf,
        state_dir: PathBuf,
        settings: IngestSettings,
        telemetry: Arc<Telemetry>,
        disk: Arc<DiskSpace>,
    ) -> Result<Arc<Ingest>, IngestError> {
        std::fs::create_dir_all(&wal_dir).map_err(|error| {
            IngestError::State(format!("cannot create `{}`: {error}", wal_dir.display()))
        })?;
        std::fs::create_dir_all(&state_dir).map_err(|error| {
            IngestError::State(format!("cannot create `{}`: {error}", state_dir.display()))
        })?;
        let mut marks =
            SourceMarks::load(&state_dir.join("sources.json")).map_err(IngestError::State)?;
        let committed = store.min_committed_seq();
        let started = Instant::now();
        let mut replayed = 0u64;
        // on a full disk nothing is applied (a writer would only die committing it): the
        // marks are read, the records stay in the log for later
        let mut apply_failure: Option<IngestError> = (!disk.check()).then(|| {
            IngestError::State("free space is below the storage watermark at start".into())
        });
        let last_seq = wal::replay(&wal_dir, |record| {
            for mark in &record.marks {
                marks.raise(&mark.source, mark.generation, mark.offset, now_micros());
            }
            if record.seq <= committed || apply_failure.is_some() {
                return Ok(());
            }
            let ops = record
                .ops
                .into_iter()
                .filter_map(|op| op_from_log(op, &store, &settings.rules))
                .collect();
            match store.apply(record.seq, ops, true) {
                Ok(()) => replayed += 1,
                Err(error) => apply_failure = Some(error.into()),
            }
            Ok(())
        })?;
        if replayed > 0 {
            tracing::info!(
                records = replayed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "replayed the write-ahead log"
            );
        }
        let next_seq = last_seq.max(store.max_committed_seq()) + 1;
        let opened = match apply_failure {
            Some(error) => Err(error),
            None => (|| -> Result<(WalWriter, u64), IngestError> {
                store.replayed_through(next_seq - 1);
                let durable = store.commit_all()?;
                let writer = WalWriter::open(&wal_dir, next_seq, settings.wal_segment_bytes)?;
                marks
                    .save(&state_dir.join("sources.json"))
                    .map_err(|error| {
                        IngestError::State(format!("cannot write sources snapshot: {error}"))
                    })?;
                writer.truncate(durable)?;
                Ok((writer, durable))
            })(),
        };
        let (writer, durable) = match opened {
            Ok((writer, durable)) => (Some(writer), durable),
            Err(error) => {
                store.reset_to_last_commits();
                disk.write_failed("ingest write-ahead log replay", &error);
                tracing::error!(%error, "started read-only: the write-ahead log is kept and replayed once the data directory has space");
                (None, store.durable_seq())
            }
        };

        let (log, log_receiver) = mpsc::channel(1024);
        let (searchable, _) = watch::channel(durable);
        let shared = Arc::new(LogShared {
            synced: watch::channel(next_seq - 1).0,
            epoch: std::sync::atomic::AtomicU64::new(0),
        });
        let permits =
            (settings.max_in_flight_bytes / 1024).min(Semaphore::MAX_PERMITS as u64) as usize;
        let context = LogContext {
            store: store.clone(),
            telemetry: telemetry.clone(),
            disk: disk.clone(),
            shared: shared.clone(),
            wal_dir,
            rules: settings.rules.clone(),
            segment_bytes: settings.wal_segment_bytes,
        };
        let ingest = Arc::new(Ingest {
            agents: Agents::new(settings.agent_timeout),
            in_flight: Arc::new(Semaphore::new(permits)),
            ids: IdGenerator::default(),
            decide: tokio::sync::Mutex::new(DecideState {
                next_seq,
                marks,
                reserved_ids: HashMap::new(),
                batch_ids: HashMap::new(),
                undo_marks: Default::default(),
                batch_marks: Vec::new(),
                batch_noop_undurable: false,
            }),
            log,
            searchable,
            refresh_now: Notify::new(),
            refresh_wanted: std::sync::atomic::AtomicU64::new(0),
            last_search_ms: std::sync::atomic::AtomicU64::new(NEVER_SEARCHED),
            started: Instant::now(),
            state_dir,
            store,
            settings,
            telemetry,
            disk,
            shared,
        });
        std::thread::Builder::new()
            .name("lookout-wal".into())
            .spawn(move || {
                // a bug here would leave the server accepting batches nobody logs:
                // stop instead, and let the restart replay the write-ahead log
                let logged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_log(writer, next_seq - 1, context, log_receiver)
                }));
                if let Err(panic) = logged {
                    fatal(&format!(
                        "the write-ahead log thread panicked: {}",
                        crate::panic::message(&*panic)
                    ));
                }
            })
            .map_err(|error| IngestError::State(format!("cannot start the log thread: {error}")))?;
        Ok(ingest)
    }

    /// The disk watch writes are refused by.
    pub fn disk(&self) -> &Arc<DiskSpace> {
        &self.disk
    }

    /// Writes `items`: decides each, logs the accepted ones durably, applies them, and
    /// returns per-item results in request order. Refused whole, with nothing of it
    /// acknowledged, while storage is degraded or when the log fails to make it durable.
    pub async fn write(
        &self,
        items: Vec<Item>,
        watermark: Option<(String, i64)>,
    ) -> Result<WriteOutcome, WriteRefused> {
        if let Some(reason) = self.disk.refusal() {
            let cause = if self.disk.state().low_space.is_some() {
                "low_space"
            } else {
                "failed_write"
            };
            self.telemetry.ingest_batches_refused.add(cause, 1);
            return Err(WriteRefused { reason });
        }
        let now = now_micros();
        let mut results = Vec::with_capacity(items.len());
        let mut ops = Vec::with_capacity(items.len());
        let mut logged = Vec::with_capacity(items.len());
        let mut marks: Vec<LoggedMark> = Vec::new();
        let mut decide = self.decide.lock().await;
        decide.batch_ids.clear();
        decide.batch_marks.clear();
        decide.batch_noop_undurable = false;
        for item in items {
            let index = item.index.clone().unwrap_or_default();
            let result = self.decide_item(
                item,
                &index,
                now,
                &mut decide,
                &mut ops,
                &mut logged,
                &mut marks,
            );
            results.push(result);
        }
        let seq = decide.next_seq;
        // a `noop` by the mark of a record not durable yet is not answered before that
        // record: an empty record logged behind it fails with it (then this request is
        // refused, and the agent's retry finds the mark put back) or is durable after it
        if ops.is_empty() && marks.is_empty() && watermark.is_none() && !decide.batch_noop_undurable
        {
            // nothing to log (all noops or failures): report the last record logged, which
            // is what `?refresh` must wait for — `seq` itself is never written
            let logged_before = seq - 1;
            drop(decide);
            return Ok(WriteOutcome {
                seq: logged_before,
                items: results,
            });
        }
        decide.next_seq += 1;
        for op in &logged {
            if let LoggedOp::Index(LoggedDoc {
                index,
                id,
                explicit_id: true,
                ..
            }) = op
            {
                decide.reserved_ids.insert((index.clone(), id.clone()), seq);
            }
        }
        let undo = std::mem::take(&mut decide.batch_marks);
        if !undo.is_empty() {
            decide.undo_marks.insert(seq, undo);
        }
        let record = Record {
            seq,
            ops: logged,
            marks,
            watermark: watermark.clone(),
        };
        let (reply, acknowledged) = oneshot::channel();
        if self
            .log
            .send(LogMessage::Append { record, ops, reply })
            .await
            .is_err()
        {
            fatal("the write-ahead log thread is gone");
        }
        drop(decide);
        let durable = match acknowledged.await {
            Ok(durable) => durable,
            Err(_) => fatal("the write-ahead log thread stopped before acknowledging"),
        };
        let mut decide = self.decide.lock().await;
        decide
            .reserved_ids
            .retain(|_, reserved_seq| *reserved_seq != seq);
        if durable.is_ok() {
            // a failed record's undo waits for the recovery, which puts the marks back
            decide.undo_marks.remove(&seq);
        }
        drop(decide);
        if let Err(error) = durable {
            self.telemetry.ingest_batches_refused.add("failed_write", 1);
            return Err(WriteRefused {
                reason: self.disk.refusal().unwrap_or(error),
            });
        }
        if let Some((agent, micros)) = watermark {
            self.agents.seen(&agent, Some(micros), Instant::now());
        }
        Ok(WriteOutcome {
            seq,
            items: results,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_item(
        &self,
        item: Item,
        index: &str,
        now: i64,
        decide: &mut DecideState,
        ops: &mut Vec<WriteOp>,
        logged: &mut Vec<LoggedOp>,
        marks: &mut Vec<LoggedMark>,
    ) -> ItemResult {
        let Item {
            kind,
            id,
            position,
            prepared,
            ..
        } = item;
        if index.is_empty() {
            self.telemetry.ingest_rejected.add("no_index", 1);
            return ItemResult::failed(kind, String::new(), id, 400, "action_request_validation_exception", "Validation Failed: 1: index is missing; name it in the action line or the URL (/logs/_bulk)".into());
        }
        if let Err(error) = validate_index_name(index) {
            self.telemetry.ingest_rejected.add("invalid_index_name", 1);
            return ItemResult::failed(
                kind,
                index.to_string(),
                id,
                400,
                "invalid_index_name_exception",
                error.to_string(),
            );
        }
        let event = match prepared {
            Err(rejection) => {
                self.telemetry.ingest_rejected.add(rejection.label, 1);
                self.telemetry
                    .ingest_rejected_by_index
                    .add(index, rejection.label, 1);
                return ItemResult::failed(
                    kind,
                    index.to_string(),
                    id,
                    400,
                    rejection.kind,
                    rejection.reason,
                );
            }
            Ok(event) => event,
        };
        if let Some(position) = &position {
            let held = decide.marks.get(&position.source, position.generation);
            if held.is_some_and(|offset| position.offset <= offset) {
                self.telemetry.ingest_noop.add(1);
                let undurable = decide.undo_marks.values().flatten().any(|undo| {
                    undo.source == position.source && undo.generation == position.generation
                });
                decide.batch_noop_undurable |= undurable;
                return ItemResult {
                    kind,
                    index: index.to_string(),
                    id,
                    status: 200,
                    result: Some("noop"),
                    error: None,
                };
            }
        }
        let explicit_id = id.is_some();
        let exists = |id: &str| {
            let key = (index.to_string(), id.to_string());
            match decide.batch_ids.get(&key) {
                Some(exists) => *exists,
                None => decide.reserved_ids.contains_key(&key) || self.store.id_exists(index, id),
            }
        };
        let (status, result, op) = match (kind, event) {
            (ActionKind::Delete, _) => {
                let id = id.clone().expect("delete actions carry an id");
                if !exists(&id) {
                    return ItemResult {
                        kind,
                        index: index.to_string(),
                        id: Some(id),
                        status: 404,
                        result: Some("not_found"),
                        error: None,
                    };
                }
                (
                    200,
                    "deleted",
                    LoggedOp::Delete {
                        index: index.to_string(),
                        id,
                    },
                )
            }
            (_, None) => unreachable!("index and create actions carry a source"),
            (kind, Some(event)) => {
                let id = id.clone().unwrap_or_else(|| self.ids.next_id());
                let existed = explicit_id && exists(&id);
                if kind == ActionKind::Create && existed {
                    self.telemetry.ingest_rejected.add("version_conflict", 1);
                    return ItemResult::failed(
                        kind,
                        index.to_string(),
                        Some(id.clone()),
                        409,
                        "version_conflict_engine_exception",
                        format!(
                            "[{id}]: version conflict, document already exists (current version [1])"
                        ),
                    );
                }
                match event.time_source {
                    TimeSource::Event => {}
                    TimeSource::MissingUsedIngestTime => {
                        self.telemetry.ingest_time_replaced.add("missing", 1)
                    }
                    TimeSource::InvalidUsedIngestTime => {
                        self.telemetry.ingest_time_replaced.add("invalid", 1)
                    }
                }
                self.telemetry.ingest_docs.add(1);
                self.telemetry.ingest_bytes.add(event.source.len() as u64);
                let overwrite = existed && kind == ActionKind::Index;
                ops.push(WriteOp::Index {
                    index: index.to_string(),
                    doc: LogDoc {
                        id: id.clone(),
                        timestamp_micros: event.timestamp_micros,
                        body: event.body,
                        timestamp_key: event.timestamp_key,
                        fields: self.store.fields,
                    },
                    overwrite,
                    explicit_id,
                });
                let (status, result) = if existed {
                    (200, "updated")
                } else {
                    (201, "created")
                };
                (
                    status,
                    result,
                    LoggedOp::Index(LoggedDoc {
                        index: index.to_string(),
                        id,
                        timestamp_micros: event.timestamp_micros,
                        overwrite,
                        explicit_id,
                        source: event.source,
                    }),
                )
            }
        };
        if let LoggedOp::Delete { index, id } = &op {
            ops.push(WriteOp::Delete {
                index: index.clone(),
                id: id.clone(),
            });
        }
        let id = match &op {
            LoggedOp::Index(doc) => doc.id.clone(),
            LoggedOp::Delete { id, .. } => id.clone(),
        };
        if explicit_id || kind == ActionKind::Delete {
            let exists_now = !matches!(op, LoggedOp::Delete { .. });
            decide
                .batch_ids
                .insert((index.to_string(), id.clone()), exists_now);
        }
        logged.push(op);
        if let Some(position) = position {
            if !decide.batch_marks.iter().any(|undo| {
                undo.source == position.source && undo.generation == position.generation
            }) {
                let previous = decide.marks.get(&position.source, position.generation);
                decide.batch_marks.push(UndoMark {
                    source: position.source.clone(),
                    generation: position.generation,
                    previous,
                });
            }
            decide
                .marks
                .raise(&position.source, position.generation, position.offset, now);
            match marks.iter_mut().find(|mark| {
                mark.source == position.source && mark.generation == position.generation
            }) {
                Some(mark) => mark.offset = mark.offset.max(position.offset),
                None => marks.push(LoggedMark {
                    source: position.source,
                    generation: position.generation,
                    offset: position.offset,
                }),
            }
        }
        ItemResult {
            kind,
            index: index.to_string(),
            id: Some(id),
            status,
            result: Some(result),
            error: None,
        }
    }

    /// Decoded request bytes currently held (in KiB permits, reported in bytes).
    pub fn in_flight_bytes(&self) -> u64 {
        let total = (self.settings.max_in_flight_bytes / 1024).min(Semaphore::MAX_PERMITS as u64);
        (total - self.in_flight.available_permits() as u64) * 1024
    }

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

    /// Recovers from failed writes once there is space again: resets the index to its
    /// last commits, replays the log into it, commits, opens a fresh log segment and puts
    /// back the marks of the records that failed. Holds the decide lock throughout, so no
    /// request is decided meanwhile. Returns whether it succeeded (if not, storage stays
    /// degraded and the next check tries again).
    pub async fn recover(&self) -> bool {
        let mut decide = self.decide.lock().await;
        let (reply, answer) = oneshot::channel();
        if self.log.send(LogMessage::Recover { reply }).await.is_err() {
            fatal("the write-ahead log thread is gone");
        }
        let (durable, failed) = match answer.await {
            Ok(Ok(recovered)) => recovered,
            Ok(Err(error)) => {
                tracing::debug!(%error, "recovery from the failed write is not possible yet");
                return false;
            }
            Err(_) => fatal("the write-ahead log thread stopped while recovering"),
        };
        let mut failed = failed;
        failed.sort_unstable();
        for seq in failed.iter().rev() {
            for undo in decide.undo_marks.remove(seq).into_iter().flatten().rev() {
                decide
                    .marks
                    .restore(&undo.source, undo.generation, undo.previous);
            }
        }
        decide.undo_marks.clear();
        drop(decide);
        self.searchable.send_if_modified(|current| {
            let changed = durable > *current;
            *current = (*current).max(durable);
            changed
        });
        tracing::info!(
            failed_batches = failed.len(),
            "recovered from the failed write: the write-ahead log is replayed and committed"
        );
        true
    }

    /// Flushes everything: the last records are applied, every partition committed.
    pub async fn close(&self) -> Result<(), IngestError> {
        // taking the lock waits for in-flight decisions; acknowledged records are applied
        let _decide = self.decide.lock().await;
        if let Some((what, _)) = self.disk.state().failed_write {
            tracing::warn!(%what, "not committing at shutdown after a failed write: the write-ahead log keeps everything acknowledged for the next start");
            return Ok(());
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.close())
            .await
            .map_err(|error| IngestError::State(error.to_string()))??;
        Ok(())
    }
}

/// Rebuilds an index operation from a logged one (replay).
fn op_from_log(op: LoggedOp, store: &IndexStore, rules: &EventRules) -> Option<WriteOp> {
    match op {
        LoggedOp::Delete { index, id } => Some(WriteOp::Delete { index, id }),
        LoggedOp::Index(doc) => {
            let body = crate::index::body::Body::parse(doc.source.clone()).ok()?;
            let timestamp_key = rules
                .timestamp_fields
                .iter()
                .find(|field| body.get(field).is_some())
                .cloned();
            Some(WriteOp::Index {
                index: doc.index,
                doc: LogDoc {
                    id: doc.id,
                    timestamp_micros: doc.timestamp_micros,
                    body,
                    timestamp_key,
                    fields: store.fields,
                },
                overwrite: doc.overwrite,
                explicit_id: doc.explicit_id,
            })
        }
    }
}

fn fatal(message: &str) -> ! {
    tracing::error!("{message}; stopping so a restart replays the write-ahead log");
    eprintln!("lookout: fatal: {message}");
    std::process::abort()
}

/// What the log thread works with besides its writer.
struct LogContext {
    store: Arc<IndexStore>,
    telemetry: Arc<Telemetry>,
    disk: Arc<DiskSpace>,
    shared: Arc<LogShared>,
    wal_dir: PathBuf,
    rules: EventRules,
    segment_bytes: u64,
}

/// The log thread: group commit, apply in order, acknowledge. Without a writer (a write
/// failed, or the server started read-only) every record fails until a recovery. A
/// recovery is a barrier: the records received before it finish their group commit
/// first (else the recovery would replay one of them and the group apply it again).
fn run_log(
    mut writer: Option<WalWriter>,
    mut last_seq: u64,
    context: LogContext,
    mut receiver: mpsc::Receiver<LogMessage>,
) {
    let mut group = GroupState::default();
    let mut batch = std::collections::VecDeque::new();
    loop {
        if batch.is_empty() {
            let Some(first) = receiver.blocking_recv() else {
                break;
            };
            batch.push_back(first);
            while batch.len() < 512 {
                match receiver.try_recv() {
                    Ok(message) => batch.push_back(message),
                    Err(_) => break,
                }
            }
        }
        let started = Instant::now();
        let mut appended = Vec::new();
        let mut failure: Option<String> = None;
        let mut recover = None;
        while let Some(message) = batch.pop_front() {
            match message {
                LogMessage::Append { record, ops, reply } => {
                    last_seq = last_seq.max(record.seq);
                    if failure.is_none() {
                        match writer.as_mut().map(|writer| writer.append(&record)) {
                            Some(Ok(())) => {}
                            Some(Err(error)) => failure = Some(error.to_string()),
                            None => {
                                failure = Some(
                                    "the write-ahead log is closed after a failed write".into(),
                                )
                            }
                        }
                    }
                    appended.push((record.seq, ops, reply));
                }
                LogMessage::Truncate(durable) => {
                    let Some(writer) = writer.as_ref() else {
                        continue;
                    };
                    match writer.truncate(durable) {
                        Ok(deleted) if deleted > 0 => {
                            tracing::debug!(deleted, durable, "write-ahead log segments deleted")
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "cannot delete write-ahead log segments")
                        }
                    }
                }
                LogMessage::Recover { reply } => {
                    recover = Some(reply);
                    break;
                }
            }
        }
        if !appended.is_empty() {
            finish_group(
                &mut writer,
                appended,
                failure,
                started,
                &mut group,
                &context,
            );
        }
        if let Some(reply) = recover {
            let recovered = recover_log(&mut writer, last_seq, &mut group, &context)
                .map(|durable| (durable, std::mem::take(&mut group.failed)));
            if recovered.is_ok() {
                group.index_failed = false;
                context
                    .shared
                    .epoch
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                context.shared.synced.send_replace(last_seq);
            }
            let _ = reply.send(recovered);
        }
    }
    if let Some(Err(error)) = writer.as_mut().map(WalWriter::sync) {
        tracing::error!(%error, "final write-ahead log sync failed");
    }
}

/// What the log thread remembers between groups.
#[derive(Default)]
struct GroupState {
    /// Records answered with an error since the last recovery.
    failed: Vec<u64>,
    /// An index write failed: records are acknowledged (durable in the log) but not
    /// applied until the recovery replays them.
    index_failed: bool,
    /// The cut of an abandoned segment that failed: the recovery completes it first.
    pending_cut: Option<wal::SegmentCut>,
}

type Appended = (u64, Vec<WriteOp>, oneshot::Sender<Result<(), String>>);

/// Ends a group commit: fsyncs the records appended since the last one, then applies and
/// acknowledges them, or (when appending or the fsync failed) fails every one of them.
fn finish_group(
    writer: &mut Option<WalWriter>,
    appended: Vec<Appended>,
    mut failure: Option<String>,
    started: Instant,
    group: &mut GroupState,
    context: &LogContext,
) {
    let LogContext {
        store, telemetry, ..
    } = context;
    if failure.is_none()
        && let Some(Err(error)) = writer.as_mut().map(WalWriter::sync)
    {
        failure = Some(error.to_string());
    }
    if let Some(error) = failure {
        // nothing of this group is durable: none of it is acknowledged, and the
        // segment is given up rather than trusted after a failed fsync
        if let Some(abandoned) = writer.take() {
            let cut = abandoned.abandon();
            if let Err(error) = cut.complete() {
                tracing::warn!(%error, "cannot cut the abandoned write-ahead log segment yet; the recovery does it before a new segment opens");
                group.pending_cut = Some(cut);
            }
            context
                .shared
                .epoch
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            context.disk.write_failed("ingest write-ahead log", &error);
        }
        for (seq, _, reply) in appended {
            store.skip(seq);
            group.failed.push(seq);
            let _ = reply.send(Err(error.clone()));
        }
        return;
    }
    telemetry.wal_sync_seconds.observe(started.elapsed());
    telemetry.wal_records.add(appended.len() as u64);
    if let Some((seq, _, _)) = appended.last() {
        context.shared.synced.send_replace(*seq);
    }
    for (seq, ops, reply) in appended {
        // durable in the log: acknowledged even when the index fails it (the log keeps
        // it until the index has it; the recovery replays it)
        if !group.index_failed
            && let Err(error) = store.apply(seq, ops, false)
        {
            group.index_failed = true;
            context.disk.write_failed("index", &error);
        }
        let _ = reply.send(Ok(()));
    }
}

/// Recovery from failed writes, on the log thread: the index goes back to its last
/// commits, the whole log is replayed into it (but the records that failed) and
/// committed, and a fresh segment opens after `last_seq`. Returns the index's durable
/// sequence.
fn recover_log(
    writer: &mut Option<WalWriter>,
    last_seq: u64,
    group: &mut GroupState,
    context: &LogContext,
) -> Result<u64, String> {
    let store = &context.store;
    if let Some(current) = writer.as_mut() {
        current.sync().map_err(|error| error.to_string())?;
    }
    // the abandoned segment must end with its last durable record before the replay
    // reads it and before a fresh segment follows it
    if let Some(cut) = &group.pending_cut {
        cut.complete().map_err(|error| error.to_string())?;
        group.pending_cut = None;
    }
    let failed = &group.failed;
    store.reset_to_last_commits();
    let committed = store.min_committed_seq();
    let failed: std::collections::HashSet<u64> = failed.iter().copied().collect();
    let mut apply_failure = None;
    wal::replay(&context.wal_dir, |record| {
        if record.seq <= committed || failed.contains(&record.seq) || apply_failure.is_some() {
            return Ok(());
        }
        let seq = record.seq;
        let ops = record
            .ops
            .into_iter()
            .filter_map(|op| op_from_log(op, store, &context.rules))
            .collect();
        if let Err(error) = store.apply(seq, ops, true) {
            apply_failure = Some(error.to_string());
        }
        Ok(())
    })
    .map_err(|error| error.to_string())?;
    let reset = |error: String| {
        store.reset_to_last_commits();
        error
    };
    if let Some(error) = apply_failure {
        return Err(reset(error));
    }
    store.replayed_through(last_seq);
    let durable = store
        .commit_all()
        .map_err(|error| reset(error.to_string()))?;
    let fresh = WalWriter::open(&context.wal_dir, last_seq + 1, context.segment_bytes)
        .map_err(|error| error.to_string())?;
    *writer = Some(fresh);
    Ok(durable)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::index::partition::WriterOptions;
    use crate::index::store::StoreSettings;

    const HOUR: i64 = 3_600_000_000;

    fn rules() -> EventRules {
        EventRules {
            timestamp_fields: vec!["@timestamp".into()],
            max_depth: 20,
            max_line_bytes: 1 << 20,
            reject_older_than_micros: i64::MAX / 4,
            future_tolerance_micros: i64::MAX / 4,
        }
    }

    fn store(dir: &Path) -> Arc<IndexStore> {
        store_keeping(dir, i64::MAX / 4)
    }

    fn store_keeping(dir: &Path, retention_micros: i64) -> Arc<IndexStore> {
        Arc::new(
            IndexStore::open(
                dir,
                StoreSettings {
                    partition_span_micros: HOUR,
                    retention_micros,
                    writer: WriterOptions {
                        threads: 1,
                        memory_bytes: 15 << 20,
                    },
                    max_open_writers: 4,
                },
            )
            .expect("store"),
        )
    }

    fn context(store: &Arc<IndexStore>, wal_dir: &Path) -> LogContext {
        LogContext {
            store: store.clone(),
            telemetry: Arc::new(Telemetry::default()),
            disk: Arc::new(DiskSpace::unwatched()),
            shared: Arc::new(LogShared {
                synced: watch::channel(0).0,
                epoch: std::sync::atomic::AtomicU64::new(0),
            }),
            wal_dir: wal_dir.to_path_buf(),
            rules: rules(),
            segment_bytes: 1 << 20,
        }
    }

    fn settings() -> IngestSettings {
        IngestSettings {
            rules: rules(),
            source_ttl: Duration::from_secs(3600),
            agent_timeout: Duration::from_secs(60),
            max_in_flight_bytes: 64 << 20,
            wal_segment_bytes: 1 << 20,
            refresh_interval: Duration::from_millis(20),
            search_idle_after: Duration::ZERO,
        }
    }

    /// An `Append` of one document with a generated id, and where its answer arrives.
    fn append(
        store: &IndexStore,
        seq: u64,
        timestamp_micros: i64,
    ) -> (LogMessage, oneshot::Receiver<Result<(), String>>) {
        let record = Record {
            seq,
            ops: vec![LoggedOp::Index(LoggedDoc {
                index: "logs".into(),
                id: format!("generated-{seq}"),
                timestamp_micros,
                overwrite: false,
                explicit_id: false,
                source: bytes::Bytes::from_static(br#"{"message":"hello"}"#),
            })],
            ..Record::default()
        };
        let ops = record
            .ops
            .iter()
            .cloned()
            .filter_map(|op| op_from_log(op, store, &rules()))
            .collect();
        let (reply, answer) = oneshot::channel();
        (LogMessage::Append { record, ops, reply }, answer)
    }

    // Regression: a recovery handled in the middle of a group commit replayed the record
    // appended before it, and the group then applied that record a second time.
    #[test]
    fn a_record_in_the_same_group_as_a_recovery_is_applied_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir.path().join("indices"));
        let wal_dir = dir.path().join("wal");
        let writer = WalWriter::open(&wal_dir, 1, 1 << 20).expect("log");
        let (sender, receiver) = mpsc::channel(16);
        let (message, acknowledged) = append(&store, 1, 1_795_341_600_000_000);
        sender.try_send(message).expect("queued");
        let (reply, recovered) = oneshot::channel();
        sender
            .try_send(LogMessage::Recover { reply })
            .expect("queued");
        drop(sender);
        // both messages wait in the queue: the log thread takes them as one group
        run_log(Some(writer), 0, context(&store, &wal_dir), receiver);
        assert_eq!(acknowledged.blocking_recv().expect("answered"), Ok(()));
        recovered
            .blocking_recv()
            .expect("answered")
            .expect("recovered");
        store.commit_all().expect("commit");
        let logs = store.get("logs").expect("index");
        assert_eq!(logs.doc_count(), 1, "applied once");
    }

    // Regression: retention ran only after a successful commit, and nothing commits while
    // a failed write is recorded, so lowering `index.retention` could not free a full disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_drops_expired_partitions_while_storage_is_degraded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_keeping(&dir.path().join("indices"), 24 * HOUR);
        let (LogMessage::Append { ops, .. }, _) = append(&store, 1, now_micros() - 72 * HOUR)
        else {
            unreachable!("append builds an Append")
        };
        store.apply(1, ops, false).expect("apply");
        store.commit_all().expect("commit");
        let disk = Arc::new(DiskSpace::unwatched());
        let ingest = Ingest::open(
            store.clone(),
            dir.path().join("wal"),
            dir.path().join("state"),
            settings(),
            Arc::new(Telemetry::default()),
            disk.clone(),
        )
        .expect("open");
        disk.write_failed("index", &"No space left on device (os error 28)");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let refresher = tokio::spawn(ingest.clone().run_refresher(shutdown.clone()));
        let logs = store.get("logs").expect("index");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !logs.partitions().is_empty() {
            assert!(Instant::now() < deadline, "the expired partition is kept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(disk.degraded(), "still waiting for the recovery");
        shutdown.cancel();
        refresher.await.expect("refresher");
    }
}
