//! The head's write-ahead log: every new series and every accepted sample, appended as
//! checksummed records and fsynced once per batch (a scrape), replayed at start.
//!
//! Record framing: `u32 length, u32 crc32(payload), payload`, little-endian. Payload:
//! `1` + series (`u64 id`, `u32 count`, then length-prefixed name and value strings), or
//! `2` + samples (`u32 count`, then `u64 id, i64 timestamp, u64 value bits` each). A torn
//! or corrupt tail (a crash mid-write) ends the replay there and is cut off, so the next
//! append starts on a clean boundary.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
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

/// The log file, open for appending.
pub struct Wal {
    file: File,
    buffer: Vec<u8>,
}

impl Wal {
    /// Opens (or creates) `dir/wal`, reads every intact record, and cuts off a torn tail.
    pub fn open(dir: &Path) -> std::io::Result<(Wal, Vec<Record>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("wal");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut records = Vec::new();
        let mut offset = 0;
        while offset + 8 <= bytes.len() {
            let length =
                u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes")) as usize;
            let crc =
                u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4 bytes"));
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
        if offset < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = bytes.len() - offset,
                "metrics write-ahead log ends in a torn record; cutting it off"
            );
            file.set_len(offset as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        Ok((
            Wal {
                file,
                buffer: Vec::new(),
            },
            records,
        ))
    }

    /// Appends `records` and makes them durable.
    pub fn log(&mut self, records: &[Record]) -> std::io::Result<()> {
        self.buffer.clear();
        for record in records {
            record.encode(&mut self.buffer);
        }
        self.file.write_all(&self.buffer)?;
        self.file.sync_data()
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
        let path = dir.path().join("wal");
        let mut torn = std::fs::read(&path).expect("read");
        let intact = torn.len();
        let mut extra = Vec::new();
        Record::Samples(vec![(0, 3_000, 0.0)]).encode(&mut extra);
        torn.extend_from_slice(&extra[..extra.len() - 5]);
        std::fs::write(&path, &torn).expect("write");

        let (mut wal, replayed) = Wal::open(dir.path()).expect("reopen");
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
            .expect("log after the cut");
        let (_, replayed) = Wal::open(dir.path()).expect("reopen");
        assert_eq!(replayed.len(), 3, "appends continue on a clean boundary");
    }
}
