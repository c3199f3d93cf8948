//! The store's write path against real partitions: replays, failed records, the writer
//! budget, and partition directory names.

use super::*;

const HOUR: i64 = 3_600_000_000;

fn doc(store: &IndexStore, id: &str, timestamp_micros: i64) -> WriteOp {
    store.test_doc(
        "logs",
        id,
        timestamp_micros,
        format!(r#"{{"name":"{id}"}}"#),
    )
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

// A commit prepared while the log thread is inside a record holds part of it: its label
// says so, and a replay after a crash upserts that record (no duplicate) and simply adds
// the records after it (a delete per replayed document made replaying a large log slow).
#[test]
fn a_replay_upserts_only_the_records_a_commit_may_hold_part_of() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = 1_795_341_600_000_000;
    let docs = |store: &IndexStore| -> u64 {
        let logs = store.get("logs").expect("index");
        logs.partitions()
            .iter()
            .map(|partition| partition.searcher().num_docs())
            .sum()
    };
    {
        let store = store_with_writers(dir.path(), 4);
        store
            .apply(1, vec![doc(&store, "b0", start)], false)
            .expect("apply");
        store
            .apply(2, vec![doc(&store, "b1", start)], false)
            .expect("apply");
        // a commit labelled with record 1 complete, prepared after record 2 was applied
        let partition = store.get("logs").expect("index").partitions()[0].clone();
        assert!(partition.commit(1, false).expect("commit"));
        assert!(partition.may_hold_part_of(2));
        assert!(!partition.may_hold_part_of(3));
        // the process dies here: the writer is dropped uncommitted
    }
    let store = store_with_writers(dir.path(), 4);
    let partition = store.get("logs").expect("index").partitions()[0].clone();
    assert_eq!(partition.committed_seq(), 1);
    assert!(
        partition.may_hold_part_of(2),
        "the label survives a restart"
    );
    assert!(!partition.may_hold_part_of(3));
    store
        .apply(2, vec![doc(&store, "b1", start)], true)
        .expect("replay");
    store
        .apply(3, vec![doc(&store, "b2", start)], true)
        .expect("replay");
    store.replayed_through(3);
    store.commit_all().expect("commit");
    assert_eq!(docs(&store), 3, "record 2 upserted, not added twice");
    assert_eq!(ids(&store), ["b0", "b1", "b2"]);
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
    IndexStore::test_open(dir, HOUR, max_open_writers)
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

// Regression: partitions' readers had tantivy warmers, and tantivy starts a thread for
// every reader with warmers that never ends: one more thread for every partition ever
// opened, so a server's threads grew with the hours it had seen.
#[test]
fn partitions_start_no_thread_that_outlives_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_writers(dir.path(), 4);
    let start = 1_795_341_600_000_000;
    let ops = (0..6)
        .map(|hour| doc(&store, &format!("b{hour}"), start + hour * HOUR))
        .collect();
    store.apply(1, ops, false).expect("apply");
    store.commit_all().expect("commit");
    assert_eq!(ids(&store).len(), 6);
    let warming_threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.starts_with("tantivy-warm"))
        .collect();
    assert_eq!(warming_threads, Vec::<String>::new());
}
