//! Follows the TSDB's write-ahead log for one remote: reads the samples records as they
//! are appended, segment after segment, resolving each sample's series from the series
//! records its segment starts with. Its [`Position`] (segment, byte offset past the last
//! record handed out) is what a remote persists once everything before it was sent, so a
//! restart resumes there and a receiver outage loses nothing the log still holds.
//!
//! A segment the TSDB deleted before the reader got to it (its samples were persisted in a
//! block and the log truncated past the reader) is skipped: its samples never reach the
//! remote, which is counted in segments and logged once per gap.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::tsdb::head::Labels;
use crate::tsdb::wal::{Record, read_records, segment_numbers};

/// Where a reader is in the log: the next byte to read of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// One sample read from the log, with the position just past its record.
#[derive(Debug, Clone)]
pub struct WalSample {
    pub labels: Labels,
    pub timestamp: i64,
    pub value: f64,
}

/// A batch of samples read from one record, ending at `end`.
#[derive(Debug)]
pub struct WalRecord {
    pub samples: Vec<WalSample>,
    pub end: Position,
}

/// Reads one TSDB's log from a position.
pub struct WalReader {
    wal_dir: PathBuf,
    position: Position,
    /// The series of the current segment, by their id in it.
    series: HashMap<u64, Labels>,
    /// Whether the series records before `position` were read (after a resume).
    primed: bool,
    /// Segments deleted before they were read.
    pub lost_segments: u64,
}

/// Bytes read from the log at a time.
const READ_BYTES: usize = 4 << 20;

impl WalReader {
    /// A reader of the log in `wal_dir` (the TSDB directory's `wal/`) from `position`, or
    /// from the oldest segment it holds.
    pub fn new(wal_dir: PathBuf, position: Option<Position>) -> std::io::Result<WalReader> {
        let position = match position {
            Some(position) => position,
            None => Position {
                segment: segment_numbers(&wal_dir)?.first().copied().unwrap_or(1),
                offset: 0,
            },
        };
        Ok(WalReader {
            wal_dir,
            primed: position.offset == 0,
            position,
            series: HashMap::new(),
            lost_segments: 0,
        })
    }

    /// Where the next read starts.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The samples records appended since the last read (possibly none), at most about
    /// `READ_BYTES` of log; moves to the next segment once the current one is complete.
    pub fn read(&mut self) -> std::io::Result<Vec<WalRecord>> {
        if !self.primed {
            self.prime()?;
        }
        let records = match read_records(
            &self.wal_dir,
            self.position.segment,
            self.position.offset,
            READ_BYTES,
        ) {
            Ok(records) => records,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.skip_lost()?;
                return Ok(Vec::new());
            }
            Err(error) => return Err(error),
        };
        if records.is_empty() {
            self.next_segment_if_complete()?;
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (record, end) in records {
            self.position.offset = end;
            match record {
                Record::Series { id, labels } => {
                    self.series.insert(id, labels.into());
                }
                Record::Samples(samples) => {
                    let samples = samples
                        .into_iter()
                        .filter_map(|(id, timestamp, value)| {
                            Some(WalSample {
                                labels: self.series.get(&id)?.clone(),
                                timestamp,
                                value,
                            })
                        })
                        .collect();
                    out.push(WalRecord {
                        samples,
                        end: self.position,
                    });
                }
            }
        }
        Ok(out)
    }

    /// After a resume mid-segment: reads the series records before the position.
    fn prime(&mut self) -> std::io::Result<()> {
        let mut offset = 0;
        while offset < self.position.offset {
            let records =
                match read_records(&self.wal_dir, self.position.segment, offset, READ_BYTES) {
                    Ok(records) => records,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                    Err(error) => return Err(error),
                };
            if records.is_empty() {
                break;
            }
            for (record, end) in records {
                if end > self.position.offset {
                    break;
                }
                offset = end;
                if let Record::Series { id, labels } = record {
                    self.series.insert(id, labels.into());
                }
            }
        }
        self.primed = true;
        Ok(())
    }

    /// Moves to the next segment when a newer one exists: the writer never appends to a
    /// segment once it opened the next, so one more read of this one finds its last
    /// records before the move.
    fn next_segment_if_complete(&mut self) -> std::io::Result<()> {
        let numbers = segment_numbers(&self.wal_dir)?;
        let Some(&next) = numbers
            .iter()
            .find(|number| **number > self.position.segment)
        else {
            return Ok(());
        };
        let rest = read_records(
            &self.wal_dir,
            self.position.segment,
            self.position.offset,
            READ_BYTES,
        )
        .unwrap_or_default();
        if !rest.is_empty() {
            // written before the rotation: the next read takes them
            return Ok(());
        }
        self.move_to(next);
        Ok(())
    }

    /// The current segment is gone: continue with the oldest one after it.
    fn skip_lost(&mut self) -> std::io::Result<()> {
        let numbers = segment_numbers(&self.wal_dir)?;
        let Some(&next) = numbers
            .iter()
            .find(|number| **number > self.position.segment)
        else {
            return Ok(());
        };
        // segments are numbered consecutively: every number before `next` was deleted
        let lost = next - self.position.segment;
        self.lost_segments += lost;
        tracing::error!(
            segment = self.position.segment,
            next_segment = next,
            lost_segments = lost,
            "remote write: the metrics write-ahead log was truncated past this remote's position; the samples of the deleted segments are not sent (the remote was down longer than the log's span)"
        );
        self.move_to(next);
        Ok(())
    }

    fn move_to(&mut self, segment: u64) {
        self.position = Position { segment, offset: 0 };
        self.series.clear();
        self.primed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::head::labels;
    use crate::tsdb::{Tsdb, TsdbOptions};

    fn read_all(reader: &mut WalReader) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        loop {
            let records = reader.read().expect("read");
            let before = reader.position();
            if records.is_empty() {
                // one more read moves past a finished segment
                let records = reader.read().expect("read");
                if records.is_empty() && reader.position() == before {
                    return out;
                }
                for record in records {
                    out.extend(sample_names(&record));
                }
                continue;
            }
            for record in records {
                out.extend(sample_names(&record));
            }
        }
    }

    fn sample_names(record: &WalRecord) -> Vec<(String, i64)> {
        record
            .samples
            .iter()
            .map(|sample| (sample.labels[0].1.clone(), sample.timestamp))
            .collect()
    }

    #[test]
    fn every_sample_is_read_once_across_segments_and_resumes() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let tsdb = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
            tsdb.append(&[(labels(&[("__name__", "a")]), 1_000, 1.0)])
                .expect("append");
            tsdb.append(&[(labels(&[("__name__", "b")]), 2_000, 2.0)])
                .expect("append");
        }
        let wal_dir = dir.path().join("wal");
        let mut reader = WalReader::new(wal_dir.clone(), None).expect("reader");
        let first = reader.read().expect("read");
        assert_eq!(first.len(), 2, "two samples records");
        let resume = first[0].end;
        // a restart of Lookout: a new segment; a reader resumes mid-segment
        {
            let tsdb = Tsdb::open(dir.path(), TsdbOptions::default()).expect("reopen");
            tsdb.append(&[(labels(&[("__name__", "a")]), 3_000, 3.0)])
                .expect("append");
        }
        let mut resumed = WalReader::new(wal_dir.clone(), Some(resume)).expect("reader");
        assert_eq!(
            read_all(&mut resumed),
            [("b".to_string(), 2_000), ("a".to_string(), 3_000)],
            "the rest of the first segment, then the next one, series resolved"
        );
        // a segment deleted before it was read is skipped and counted
        let mut behind = WalReader::new(wal_dir.clone(), Some(resume)).expect("reader");
        std::fs::remove_file(wal_dir.join(format!("{:08}", resume.segment))).expect("rm");
        assert_eq!(read_all(&mut behind), [("a".to_string(), 3_000)]);
        assert_eq!(behind.lost_segments, 1);
    }
}
