//! The log thread and the refresher against a real store and log.

use std::path::Path;

use super::wal::{LoggedDoc, LoggedOp};
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
    let (LogMessage::Append { ops, .. }, _) = append(&store, 1, now_micros() - 72 * HOUR) else {
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
