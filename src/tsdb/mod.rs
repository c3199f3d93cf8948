//! The metrics store (issue 5, DESIGN §7): [`chunk`], Gorilla-style compressed chunks
//! (delta-of-delta timestamps, XOR values); [`head`], the in-memory series with an
//! inverted index and out-of-order rejection; [`wal`], its write-ahead log. [`Tsdb`] ties
//! them: a batch (one scrape) is applied and logged with one fsync, and a restart replays
//! the log. On-disk blocks and retention come next.

pub mod chunk;
pub mod head;
pub mod wal;

use std::path::Path;
use std::sync::Mutex;

use head::{AppendError, Head, Labels};
use wal::{Record, Wal};

/// The head and its log.
pub struct Tsdb {
    pub head: Head,
    wal: Mutex<Wal>,
}

impl Tsdb {
    /// Opens `dir` (the data directory's `tsdb/`), replaying its log into the head.
    pub fn open(dir: &Path) -> std::io::Result<Tsdb> {
        let (wal, records) = Wal::open(dir)?;
        let head = Head::new();
        let mut replayed = 0u64;
        for record in records {
            match record {
                Record::Series { id, labels } => {
                    let labels: Labels = labels.into();
                    let (assigned, _) = head.series_id(&labels);
                    if assigned as u64 != id {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "{}: series {id} replays as {assigned}; the log is inconsistent",
                                dir.display()
                            ),
                        ));
                    }
                }
                Record::Samples(samples) => {
                    for (id, timestamp, value) in samples {
                        if (id as usize) < head.series_count()
                            && head.append_id(id as usize, timestamp, value).is_ok()
                        {
                            replayed += 1;
                        }
                    }
                }
            }
        }
        if replayed > 0 {
            tracing::info!(
                samples = replayed,
                series = head.series_count(),
                "metrics write-ahead log replayed"
            );
        }
        Ok(Tsdb {
            head,
            wal: Mutex::new(wal),
        })
    }

    /// Appends a batch, logging new series and accepted samples durably (one fsync);
    /// returns each sample's result.
    pub fn append(
        &self,
        batch: &[(Labels, i64, f64)],
    ) -> std::io::Result<Vec<Result<(), AppendError>>> {
        let mut wal = self
            .wal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut records = Vec::new();
        let mut samples = Vec::with_capacity(batch.len());
        let mut results = Vec::with_capacity(batch.len());
        for (labels, timestamp, value) in batch {
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
        if !records.is_empty() {
            wal.log(&records)?;
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_store_has_every_logged_sample_and_still_refuses_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = head::labels(&[("__name__", "up"), ("job", "node")]);
        let load = head::labels(&[("__name__", "node_load1"), ("job", "node")]);
        {
            let tsdb = Tsdb::open(dir.path()).expect("open");
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
        let tsdb = Tsdb::open(dir.path()).expect("reopen");
        assert_eq!(tsdb.head.series_count(), 2);
        let all = tsdb.head.select(
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
    }
}
