//! The log thread: records of decided requests are appended to the write-ahead log,
//! made durable together (group commit: one fdatasync for every record waiting), applied
//! to the index in sequence order and acknowledged.
//!
//! A record is acknowledged only once it is durable. A failed append or fsync fails its
//! whole group and every later record until a recovery ([`recover_log`]); a failed index
//! write keeps acknowledging (the log holds the records) and leaves them to the recovery's
//! replay. The thread knows nothing of requests or of HTTP: it answers each record with
//! `Ok(())` or the reason it is not durable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use super::event::EventRules;
use super::wal::{self, LoggedOp, Record, WalWriter};
use crate::index::IndexStore;
use crate::index::document::LogDoc;
use crate::index::store::WriteOp;
use crate::storage::DiskSpace;
use crate::telemetry::Telemetry;

pub(super) enum LogMessage {
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
pub(super) struct LogShared {
    /// Highest record known durable in the log.
    pub(super) synced: watch::Sender<u64>,
    /// Bumped by every failure and every recovery: a snapshot of the marks taken in one
    /// epoch is saved only if the epoch did not change until its records were durable.
    pub(super) epoch: std::sync::atomic::AtomicU64,
}

/// What the log thread works with besides its writer.
pub(super) struct LogContext {
    pub(super) store: Arc<IndexStore>,
    pub(super) telemetry: Arc<Telemetry>,
    pub(super) disk: Arc<DiskSpace>,
    pub(super) shared: Arc<LogShared>,
    pub(super) wal_dir: PathBuf,
    pub(super) rules: EventRules,
    pub(super) segment_bytes: u64,
}

/// The log thread: group commit, apply in order, acknowledge. Without a writer (a write
/// failed, or the server started read-only) every record fails until a recovery. A
/// recovery is a barrier: the records received before it finish their group commit
/// first (else the recovery would replay one of them and the group apply it again).
pub(super) fn run_log(
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

/// Rebuilds an index operation from a logged one (replay).
pub(super) fn op_from_log(op: LoggedOp, store: &IndexStore, rules: &EventRules) -> Option<WriteOp> {
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
