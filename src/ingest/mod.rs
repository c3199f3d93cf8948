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
//!
//! Rooms: [`bulk`] and [`event`] parse lines, [`item`] holds requests' items and their
//! typed outcomes (the server words them for Elasticsearch), `decide` decides items under
//! the lock, `group_commit` is the log thread over [`wal`], `refresher` makes records
//! searchable and keeps the log short, [`sources`] and [`agents`] hold what agents told.
//! This file wires them: opening (replay), writing a request, recovering, closing.

pub mod agents;
pub mod bulk;
mod decide;
pub mod event;
mod group_commit;
pub mod item;
mod refresher;
pub mod sources;
pub mod wal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};

use crate::index::IndexStore;
use crate::storage::DiskSpace;
use crate::telemetry::Telemetry;
use agents::Agents;
use decide::{DecideState, Decided, RequestDecision};
use event::{EventRules, IdGenerator};
use group_commit::{LogContext, LogMessage, LogShared, op_from_log, run_log};
pub use item::{Item, ItemFailure, ItemOutcome, ItemResult, parse_bulk, parse_pairs};
use sources::SourceMarks;
use wal::{Record, WalWriter};

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
    #[error(transparent)]
    Sources(#[from] sources::SourcesError),
    #[error("{0}")]
    State(String),
}

/// A write request refused whole because storage is degraded (HTTP 429).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct WriteRefused {
    pub reason: String,
}

/// What the pieces of one request written so far did to explicit ids (whether each exists
/// after them), for [`Ingest::write_piece`].
#[derive(Default)]
pub struct RequestIds {
    ids: std::collections::HashMap<(String, String), bool>,
}

/// The outcome of a write request.
pub struct WriteOutcome {
    pub seq: u64,
    pub items: Vec<ItemResult>,
}

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
        let mut marks = SourceMarks::load(&state_dir.join("sources.json"))?;
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
            decide: tokio::sync::Mutex::new(DecideState::new(next_seq, marks)),
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
        self.write_piece(items, watermark, &mut RequestIds::default())
            .await
    }

    /// [`Ingest::write`] for one piece of a request written piece by piece (a `_bulk`
    /// body read as it arrives): each piece is its own record, and `request` carries what
    /// the earlier pieces did to explicit ids, so the items decide as they would in one
    /// piece.
    pub async fn write_piece(
        &self,
        items: Vec<Item>,
        watermark: Option<(String, i64)>,
        request: &mut RequestIds,
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
        let mut decide = self.decide.lock().await;
        decide.batch_ids = std::mem::take(&mut request.ids);
        let Decided {
            results,
            ops,
            logged,
            marks,
        } = RequestDecision {
            store: &self.store,
            telemetry: &self.telemetry,
            ids: &self.ids,
            now_micros: now,
            state: &mut decide,
        }
        .decide_all(items);
        request.ids = std::mem::take(&mut decide.batch_ids);
        // a `noop` by the mark of a record not durable yet is not answered before that
        // record: an empty record logged behind it fails with it (then this request is
        // refused, and the agent's retry finds the mark put back) or is durable after it
        if ops.is_empty() && marks.is_empty() && watermark.is_none() && !decide.batch_noop_undurable
        {
            // nothing to log (all noops or failures): report the last record logged, which
            // is what `?refresh` must wait for — the next sequence is never written
            let logged_before = decide.next_seq - 1;
            drop(decide);
            return Ok(WriteOutcome {
                seq: logged_before,
                items: results,
            });
        }
        let seq = decide.reserve_record(&logged);
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
        // a failed record's marks wait for the recovery, which puts them back
        self.decide
            .lock()
            .await
            .record_answered(seq, durable.is_ok());
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

    /// Decoded request bytes currently held (in KiB permits, reported in bytes).
    pub fn in_flight_bytes(&self) -> u64 {
        let total = (self.settings.max_in_flight_bytes / 1024).min(Semaphore::MAX_PERMITS as u64);
        (total - self.in_flight.available_permits() as u64) * 1024
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
        decide.put_back_marks(&failed);
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

fn fatal(message: &str) -> ! {
    tracing::error!("{message}; stopping so a restart replays the write-ahead log");
    eprintln!("lookout: fatal: {message}");
    std::process::abort()
}

#[cfg(test)]
mod tests;
