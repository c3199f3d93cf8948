//! The head's write-ahead log: every new series and every accepted sample, appended as
//! checksummed records and fsynced once per batch (a scrape), replayed at start. Kept in
//! numbered segments so what blocks persist can be deleted.
//!
//! Record framing: `u32 length, u32 crc32(payload), payload`, little-endian. Payload:
//! `1` + series (`u64 id`, `u32 count`, then length-prefixed name and value strings), or
//! `2` + samples (`u32 count`, then `u64 id, i64 timestamp, u64 value bits` each). A torn
//! or corrupt tail (a crash mid-write) ends the replay there and is cut off, so the next
//! append starts on a clean boundary.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// One logged fact.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series {
        id: u64,
        labels: Vec<(String, String)>,
    },
    /// `(series id, timestamp ms, value)`.
    Samples(Vec<(u64, i64, f64)>),
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        match self {
            Record::Series { id, labels } => {
                out.push(1);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
                for (name, value) in labels {
                    for text in [name, value] {
                        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
                        out.extend_from_slice(text.as_bytes());
                    }
                }
            }
            Record::Samples(samples) => {
                out.push(2);
                out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
                for (id, timestamp, value) in samples {
                    out.extend_from_slice(&id.to_le_bytes());
                    out.extend_from_slice(&timestamp.to_le_bytes());
                    out.extend_from_slice(&value.to_bits().to_le_bytes());
                }
            }
        }
        let length = (out.len() - start - 8) as u32;
        let crc = crc32fast::hash(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&length.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(payload: &[u8]) -> Option<Record> {
        let mut reader = Reader(payload);
        let record = match reader.u8()? {
            1 => {
                let id = reader.u64()?;
                let count = reader.u32()?;
                let mut labels = Vec::with_capacity(count.min(1024) as usize);
                for _ in 0..count {
                    labels.push((reader.string()?, reader.string()?));
                }
                Record::Series { id, labels }
            }
            2 => {
                let count = reader.u32()?;
                let mut samples = Vec::with_capacity(count.min(1 << 16) as usize);
                for _ in 0..count {
                    samples.push((
                        reader.u64()?,
                        reader.u64()? as i64,
                        f64::from_bits(reader.u64()?),
                    ));
                }
                Record::Samples(samples)
            }
            _ => return None,
        };
        reader.0.is_empty().then_some(record)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Option<&[u8]> {
        if self.0.len() < count {
            return None;
        }
        let (head, tail) = self.0.split_at(count);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let length = self.u32()? as usize;
        String::from_utf8(self.take(length)?.to_vec()).ok()
    }
}

/// One segment's replayed records, in order.
pub struct Segment {
    pub number: u64,
    pub records: Vec<Record>,
}

/// The log: numbered segment files in `dir/wal/`, the newest open for appending.
///
/// Every segment starts with the series it needs (a full dump when it is opened), so
/// ids are only meaningful within their segment and any segment whose samples are all
/// persisted in blocks can be deleted on its own.
pub struct Wal {
    dir: std::path::PathBuf,
    file: File,
    number: u64,
    buffer: Vec<u8>,
    /// Newest sample time of every segment still on disk (`i64::MIN` when none).
    newest: std::collections::BTreeMap<u64, i64>,
}

fn segment_path(dir: &Path, number: u64) -> std::path::PathBuf {
    dir.join(format!("{number:08}"))
}

/// Reads a segment's intact records; the byte length they span.
fn read_segment(path: &Path) -> std::io::Result<(Vec<Record>, usize, usize)> {
    let bytes = std::fs::read(path)?;
    let mut records = Vec::new();
    let mut offset = 0;
    while offset + 8 <= bytes.len() {
        let length =
            u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(offset + 8..offset + 8 + length) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(record) = Record::decode(payload) else {
            break;
        };
        records.push(record);
        offset += 8 + length;
    }
    Ok((records, offset, bytes.len()))
}

fn newest_sample(records: &[Record]) -> i64 {
    records
        .iter()
        .filter_map(|record| match record {
            Record::Samples(samples) => samples.iter().map(|(_, time, _)| *time).max(),
            Record::Series { .. } => None,
        })
        .max()
        .unwrap_or(i64::MIN)
}

/// The numbers of the segments in `wal_dir` (the TSDB directory's `wal/`), oldest first.
pub fn segment_numbers(wal_dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut numbers: Vec<u64> = std::fs::read_dir(wal_dir)?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
        })
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

/// Reads the intact records of segment `number` of `wal_dir` from byte `offset`, at most
/// about `max_bytes` of them, for a reader that follows the log while it is written
/// (remote write): each record with the offset just past it. A record not fully written
/// yet ends the read; the next read from the last offset returned gets it.
pub fn read_records(
    wal_dir: &Path,
    number: u64,
    offset: u64,
    max_bytes: usize,
) -> std::io::Result<Vec<(Record, u64)>> {
    use std::io::{Read, Seek};
    let mut file = File::open(segment_path(wal_dir, number))?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    Read::by_ref(&mut file)
        .take(max_bytes as u64)
        .read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let length = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let payload = match bytes.get(at + 8..at + 8 + length) {
            Some(payload) => payload,
            // a record longer than this read: read it whole
            None if records.is_empty() && at + 8 + length > max_bytes => {
                let mut rest = Vec::new();
                Read::by_ref(&mut file)
                    .take((at + 8 + length - bytes.len()) as u64)
                    .read_to_end(&mut rest)?;
                bytes.extend_from_slice(&rest);
                match bytes.get(at + 8..at + 8 + length) {
                    Some(payload) => payload,
                    None => break,
                }
            }
            None => break,
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(record) = Record::decode(payload) else {
            break;
        };
        at += 8 + length;
        records.push((record, offset + at as u64));
    }
    Ok(records)
}

impl Wal {
    /// Opens `dir/wal/`, reads every intact record of every segment (a torn tail of
    /// the newest is cut off), and opens a new segment for appending.
    pub fn open(dir: &Path) -> std::io::Result<(Wal, Vec<Segment>)> {
        let wal_dir = dir.join("wal");
        // a log from before segments: a single file, replayed as segment 0
        if wal_dir.is_file() {
            let legacy = dir.join("wal.legacy");
            std::fs::rename(&wal_dir, &legacy)?;
            std::fs::create_dir_all(&wal_dir)?;
            std::fs::rename(&legacy, segment_path(&wal_dir, 0))?;
        }
        std::fs::create_dir_all(&wal_dir)?;
        let mut numbers: Vec<u64> = std::fs::read_dir(&wal_dir)?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .and_then(|name| name.parse().ok())
            })
            .collect();
        numbers.sort_unstable();
        let mut segments = Vec::with_capacity(numbers.len());
        let mut newest = std::collections::BTreeMap::new();
        for (position, &number) in numbers.iter().enumerate() {
            let path = segment_path(&wal_dir, number);
            let (records, intact, length) = read_segment(&path)?;
            if intact < length {
                tracing::warn!(
                    path = %path.display(),
                    dropped_bytes = length - intact,
                    "metrics write-ahead log segment ends in a torn record; cutting it off"
                );
                if position + 1 == numbers.len() {
                    let file = OpenOptions::new().write(true).open(&path)?;
                    file.set_len(intact as u64)?;
                    file.sync_all()?;
                }
            }
            newest.insert(number, newest_sample(&records));
            segments.push(Segment { number, records });
        }
        let number = numbers.last().map_or(1, |last| last + 1);
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(segment_path(&wal_dir, number))?;
        File::open(&wal_dir)?.sync_all()?;
        newest.insert(number, i64::MIN);
        Ok((
            Wal {
                dir: wal_dir,
                file,
                number,
                buffer: Vec::new(),
                newest,
            },
            segments,
        ))
    }

    /// Appends `records` to the open segment and makes them durable.
    pub fn log(&mut self, records: &[Record]) -> std::io::Result<()> {
        self.buffer.clear();
        for record in records {
            record.encode(&mut self.buffer);
        }
        self.file.write_all(&self.buffer)?;
        self.file.sync_data()?;
        let newest = newest_sample(records);
        if let Some(slot) = self.newest.get_mut(&self.number) {
            *slot = (*slot).max(newest);
        }
        Ok(())
    }

    /// Starts a new segment beginning with `series` (every live series, so the new
    /// segment stands alone).
    pub fn rotate(&mut self, series: &[Record]) -> std::io::Result<()> {
        let number = self.number + 1;
        self.file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(segment_path(&self.dir, number))?;
        self.number = number;
        self.newest.insert(number, i64::MIN);
        File::open(&self.dir)?.sync_all()?;
        self.log(series)
    }

    /// Deletes the closed segments whose samples are all older than `time` (they are
    /// persisted in blocks); returns how many.
    pub fn remove_before(&mut self, time: i64) -> std::io::Result<usize> {
        let old: Vec<u64> = self
            .newest
            .iter()
            .filter(|(number, newest)| **number != self.number && **newest < time)
            .map(|(number, _)| *number)
            .collect();
        for number in &old {
            std::fs::remove_file(segment_path(&self.dir, *number))?;
            self.newest.remove(number);
        }
        Ok(old.len())
    }

    /// Segment files on disk.
    pub fn segments(&self) -> usize {
        self.newest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = vec![
            Record::Series {
                id: 0,
                labels: vec![
                    ("__name__".into(), "up".into()),
                    ("job".into(), "a \"b\"".into()),
                ],
            },
            Record::Samples(vec![
                (0, 1_000, 1.0),
                (0, 2_000, f64::from_bits(0x7ff0_0000_0000_0002)),
            ]),
        ];
        {
            let (mut wal, replayed) = Wal::open(dir.path()).expect("open");
            assert!(replayed.is_empty());
            wal.log(&records).expect("log");
        }
        // a crash mid-write leaves half a record
        let path = dir.path().join("wal/00000001");
        let mut torn = std::fs::read(&path).expect("read");
        let intact = torn.len();
        let mut extra = Vec::new();
        Record::Samples(vec![(0, 3_000, 0.0)]).encode(&mut extra);
        torn.extend_from_slice(&extra[..extra.len() - 5]);
        std::fs::write(&path, &torn).expect("write");

        let (mut wal, segments) = Wal::open(dir.path()).expect("reopen");
        let replayed = &segments[0].records;
        assert_eq!(replayed.len(), 2);
        assert_eq!(replayed[0], records[0]);
        let Record::Samples(samples) = &replayed[1] else {
            panic!("samples")
        };
        assert_eq!(samples[1].2.to_bits(), 0x7ff0_0000_0000_0002, "bits kept");
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len() as usize,
            intact,
            "tail cut"
        );
        wal.log(&[Record::Samples(vec![(0, 3_000, 2.0)])])
            .expect("log in a new segment");
        let (mut wal, segments) = Wal::open(dir.path()).expect("reopen");
        let counts: Vec<usize> = segments
            .iter()
            .map(|segment| segment.records.len())
            .collect();
        assert_eq!(counts, [2, 1], "every open starts a segment");
        // segments whose samples are all older than a time can go
        wal.rotate(&records[..1]).expect("rotate");
        assert_eq!(
            wal.remove_before(2_500).expect("remove"),
            2,
            "the segment ending at 2 000 ms and the empty one"
        );
        assert_eq!(
            wal.remove_before(3_500).expect("remove"),
            1,
            "then the one ending at 3 000 ms"
        );
        assert_eq!(wal.segments(), 1, "the open segment stays");
    }
}
