//! The ingest write-ahead log: one record per accepted batch — its documents, the agent
//! protocol's high-water marks and the agent's watermark — appended, fsynced, and only then
//! applied to the index and acknowledged.
//!
//! One thread owns the log. It takes every record waiting in its queue, writes them, calls
//! `fdatasync` once for all of them (group commit), applies them to the index in sequence
//! order and answers each submitter. Segment files are named by their first sequence
//! number; a segment is deleted once the index has committed every record in it.
//!
//! Record framing: `u32 length, u32 crc32(payload), payload`, little-endian. A torn record
//! at the end of the last segment (a crash mid-write) is cut off at start; a bad record
//! anywhere else stops the server with the file and offset, since data after it would be
//! skipped silently otherwise.
//!
//! A failed write or fsync (a full disk) leaves the tail of the segment in an unknown
//! state: the kernel may have dropped the dirty pages and will not report it twice
//! (PostgreSQL's "fsyncgate"), so an fsync that succeeds later proves nothing about them.
//! [`WalWriter::abandon`] therefore never retries: it cuts the segment back to the length
//! of its last successful fsync and closes it, and the next writer starts a fresh segment.
//! Records after the cut were never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// One document as the log keeps it; the body is parsed again from `source` on replay.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedDoc {
    pub index: String,
    pub id: String,
    pub timestamp_micros: i64,
    /// `index` action with an explicit id: replaces an existing document.
    pub overwrite: bool,
    /// The id was given by the client (tracked for `create` conflicts).
    pub explicit_id: bool,
    pub source: bytes::Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LoggedOp {
    Index(LoggedDoc),
    Delete { index: String, id: String },
}

/// High-water mark of one file generation (agent protocol).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedMark {
    pub source: String,
    pub generation: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    pub seq: u64,
    pub ops: Vec<LoggedOp>,
    pub marks: Vec<LoggedMark>,
    /// `(agent id, watermark in microseconds)`.
    pub watermark: Option<(String, i64)>,
}

const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "write-ahead log `{path}` is corrupt at byte {offset}: {reason}; move the file aside to start (the records in it after that point are lost)"
    )]
    Corrupt {
        path: String,
        offset: u64,
        reason: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(VERSION);
        put_u32(out, self.ops.len());
        for op in &self.ops {
            match op {
                LoggedOp::Index(doc) => {
                    out.push(1);
                    put_str(out, &doc.index);
                    put_str(out, &doc.id);
                    out.extend_from_slice(&doc.timestamp_micros.to_le_bytes());
                    out.push(u8::from(doc.overwrite) | (u8::from(doc.explicit_id) << 1));
                    put_bytes(out, &doc.source);
                }
                LoggedOp::Delete { index, id } => {
                    out.push(2);
                    put_str(out, index);
                    put_str(out, id);
                }
            }
        }
        put_u32(out, self.marks.len());
        for mark in &self.marks {
            put_str(out, &mark.source);
            out.extend_from_slice(&mark.generation.to_le_bytes());
            out.extend_from_slice(&mark.offset.to_le_bytes());
        }
        match &self.watermark {
            Some((agent, micros)) => {
                out.push(1);
                put_str(out, agent);
                out.extend_from_slice(&micros.to_le_bytes());
            }
            None => out.push(0),
        }
        let payload_length = out.len() - start - 8;
        let crc = crc32fast::hash(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&(payload_length as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    pub fn decode(payload: &[u8]) -> Option<Record> {
        let mut reader = Reader {
            bytes: payload,
            position: 0,
        };
        let seq = reader.u64()?;
        if reader.u8()? != VERSION {
            return None;
        }
        let op_count = reader.u32()?;
        let mut ops = Vec::with_capacity(op_count.min(1 << 20));
        for _ in 0..op_count {
            ops.push(match reader.u8()? {
                1 => {
                    let index = reader.string()?;
                    let id = reader.string()?;
                    let timestamp_micros = reader.u64()? as i64;
                    let flags = reader.u8()?;
                    let source = bytes::Bytes::copy_from_slice(reader.bytes()?);
                    LoggedOp::Index(LoggedDoc {
                        index,
                        id,
                        timestamp_micros,
                        overwrite: flags & 1 != 0,
                        explicit_id: flags & 2 != 0,
                        source,
                    })
                }
                2 => LoggedOp::Delete {
                    index: reader.string()?,
                    id: reader.string()?,
                },
                _ => return None,
            });
        }
        let mark_count = reader.u32()?;
        let mut marks = Vec::with_capacity(mark_count.min(1 << 20));
        for _ in 0..mark_count {
            marks.push(LoggedMark {
                source: reader.string()?,
                generation: reader.u64()?,
                offset: reader.u64()?,
            });
        }
        let watermark = match reader.u8()? {
            1 => Some((reader.string()?, reader.u64()? as i64)),
            _ => None,
        };
        (reader.position == payload.len()).then_some(Record {
            seq,
            ops,
            marks,
            watermark,
        })
    }
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&(value as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let slice = self
            .bytes
            .get(self.position..self.position.checked_add(count)?)?;
        self.position += count;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let length = self.u32()?;
        self.take(length)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

/// The segment files of a log directory, oldest first: `(first seq, path)`.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(first) = name
            .strip_suffix(".wal")
            .and_then(|stem| stem.parse::<u64>().ok())
        {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Reads every record of the log in `dir`, in order, calling `visit` for each. A torn
/// record at the end of the last segment is cut off (the file is truncated there).
/// Returns the highest sequence seen.
pub fn replay(
    dir: &Path,
    mut visit: impl FnMut(Record) -> Result<(), WalError>,
) -> Result<u64, WalError> {
    let segments = segments(dir)?;
    let mut last_seq = 0;
    for (position, (_, path)) in segments.iter().enumerate() {
        let is_last = position + 1 == segments.len();
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(io_error(path))?;
        let mut offset = 0usize;
        while offset < bytes.len() {
            let problem = if bytes.len() - offset < 8 {
                Some("record header cut short".to_string())
            } else {
                let length =
                    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
                        as usize;
                let crc =
                    u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4 bytes"));
                match bytes.get(offset + 8..offset + 8 + length) {
                    None => Some(format!("record of {length} bytes cut short")),
                    Some(payload) if crc32fast::hash(payload) != crc => {
                        Some("checksum mismatch".to_string())
                    }
                    Some(payload) => match Record::decode(payload) {
                        Some(record) => {
                            last_seq = last_seq.max(record.seq);
                            visit(record)?;
                            offset += 8 + length;
                            None
                        }
                        None => Some("record does not decode".to_string()),
                    },
                }
            };
            if let Some(reason) = problem {
                if !is_last {
                    return Err(WalError::Corrupt {
                        path: path.display().to_string(),
                        offset: offset as u64,
                        reason,
                    });
                }
                tracing::warn!(path = %path.display(), offset, %reason, "cutting off a torn write-ahead log tail (a crash interrupted its last write; that batch was never acknowledged)");
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_error(path))?;
                file.set_len(offset as u64).map_err(io_error(path))?;
                file.sync_all().map_err(io_error(path))?;
                break;
            }
        }
    }
    Ok(last_seq)
}

/// Test hook ([`crate::fault`]): while a file named [`HOLD_SYNC`] is in the log
/// directory an fsync of the log waits, and while one named [`FAIL_SYNC`] is there it
/// fails with `EIO` — the failures of a real disk that a full tmpfs cannot produce.
#[cfg(debug_assertions)]
fn injected_sync_fault(dir: &Path) -> std::io::Result<()> {
    if !crate::fault::enabled() {
        return Ok(());
    }
    while dir.join(HOLD_SYNC).exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if dir.join(FAIL_SYNC).exists() {
        return Err(std::io::Error::from_raw_os_error(
            rustix::io::Errno::IO.raw_os_error(),
        ));
    }
    Ok(())
}

/// Test hook (debug builds, `LOOKOUT_TEST_HOOKS=1`): while a file of this name is in the
/// log directory, an fsync of the log waits.
pub const HOLD_SYNC: &str = "test-hold-sync";
/// Test hook (debug builds, `LOOKOUT_TEST_HOOKS=1`): while a file of this name is in the
/// log directory, an fsync of the log fails with `EIO`.
pub const FAIL_SYNC: &str = "test-fail-sync";
/// Test hook (debug builds, `LOOKOUT_TEST_HOOKS=1`): while a file of this name is in the
/// log directory, cutting an abandoned segment back fails with `EIO`.
pub const FAIL_CUT: &str = "test-fail-cut";

/// A segment to cut back to its last durable length (see [`WalWriter::abandon`]).
#[derive(Debug, Clone)]
pub struct SegmentCut {
    path: PathBuf,
    length: u64,
}

impl SegmentCut {
    /// Cuts the segment and waits until the disk has the cut; an error leaves it to do.
    pub fn complete(&self) -> Result<(), WalError> {
        #[cfg(debug_assertions)]
        if crate::fault::enabled()
            && self
                .path
                .parent()
                .is_some_and(|dir| dir.join(FAIL_CUT).exists())
        {
            return Err(WalError::Io {
                path: self.path.display().to_string(),
                source: std::io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()),
            });
        }
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .and_then(|file| {
                file.set_len(self.length)?;
                file.sync_all()
            })
            .map_err(io_error(&self.path))?;
        tracing::warn!(
            path = %self.path.display(),
            length = self.length,
            "write-ahead log segment cut back to its last durable length and closed"
        );
        Ok(())
    }
}

/// The open log: appends records to the current segment.
pub struct WalWriter {
    dir: PathBuf,
    segment_bytes: u64,
    file: BufWriter<File>,
    path: PathBuf,
    written: u64,
    /// Length of the segment at its last successful fsync: everything before it is durable.
    durable_length: u64,
    buffer: Vec<u8>,
}

impl WalWriter {
    /// Opens a new segment starting at `next_seq` (a fresh segment after every start keeps
    /// replayed segments immutable).
    pub fn open(dir: &Path, next_seq: u64, segment_bytes: u64) -> Result<WalWriter, WalError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let path = dir.join(format!("{next_seq:020}.wal"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        File::open(dir)
            .and_then(|directory| directory.sync_all())
            .map_err(io_error(dir))?;
        let written = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            segment_bytes,
            file: BufWriter::with_capacity(1 << 20, file),
            path,
            written,
            durable_length: written,
            buffer: Vec::new(),
        })
    }

    /// Appends `record` (buffered; durable only after [`WalWriter::sync`]).
    pub fn append(&mut self, record: &Record) -> Result<(), WalError> {
        if self.written >= self.segment_bytes {
            self.sync()?;
            *self = WalWriter::open(&self.dir, record.seq, self.segment_bytes)?;
        }
        self.buffer.clear();
        record.encode(&mut self.buffer);
        self.file
            .write_all(&self.buffer)
            .map_err(io_error(&self.path))?;
        self.written += self.buffer.len() as u64;
        Ok(())
    }

    /// Writes out buffered records and waits until the disk has them.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.file.flush().map_err(io_error(&self.path))?;
        #[cfg(debug_assertions)]
        injected_sync_fault(&self.dir).map_err(io_error(&self.path))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(io_error(&self.path))?;
        self.durable_length = self.written;
        Ok(())
    }

    /// Gives the segment up after a failed write or fsync: drops what is buffered and
    /// closes it, and returns the cut back to its last durable length, which the caller
    /// completes ([`SegmentCut::complete`]) before any new segment opens: a segment
    /// followed by another must end with its last acknowledged record (else replay
    /// would find whole records of never-acknowledged batches, or a torn one). The fsync
    /// is not retried on this file.
    pub fn abandon(self) -> SegmentCut {
        let (_file, _unwritten) = self.file.into_parts();
        SegmentCut {
            path: self.path,
            length: self.durable_length,
        }
    }

    /// Deletes segments whose records are all at or below `durable_seq`; the current
    /// segment is kept.
    pub fn truncate(&self, durable_seq: u64) -> Result<usize, WalError> {
        let all = segments(&self.dir)?;
        let mut deleted = 0;
        for pair in all.windows(2) {
            let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
            if *path == self.path {
                break;
            }
            if next_first.saturating_sub(1) <= durable_seq {
                std::fs::remove_file(path).map_err(io_error(path))?;
                deleted += 1;
            } else {
                break;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record {
            seq,
            ops: vec![
                LoggedOp::Index(LoggedDoc {
                    index: "logs".into(),
                    id: format!("id-{seq}"),
                    timestamp_micros: 1_700_000_000_000_000 + seq as i64,
                    overwrite: seq.is_multiple_of(2),
                    explicit_id: true,
                    source: bytes::Bytes::from_static(br#"{"status":500}"#),
                }),
                LoggedOp::Delete {
                    index: "logs".into(),
                    id: "gone".into(),
                },
            ],
            marks: vec![LoggedMark {
                source: "dev:ino:crc".into(),
                generation: 2,
                offset: 99,
            }],
            watermark: Some(("agent-1".into(), 1_700_000_000_000_000)),
        }
    }

    #[test]
    fn records_round_trip_and_replay_in_order_across_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = WalWriter::open(dir.path(), 1, 200).expect("open");
        for seq in 1..=5 {
            writer.append(&record(seq)).expect("append");
        }
        writer.sync().expect("sync");
        assert!(
            segments(dir.path()).expect("list").len() > 1,
            "small segment size rotates"
        );
        let mut seen = Vec::new();
        let last = replay(dir.path(), |record| {
            seen.push(record);
            Ok(())
        })
        .expect("replay");
        assert_eq!(last, 5);
        assert_eq!(seen, (1..=5).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn torn_tail_is_cut_off_and_earlier_records_survive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = WalWriter::open(dir.path(), 1, 1 << 20).expect("open");
        writer.append(&record(1)).expect("append");
        writer.append(&record(2)).expect("append");
        writer.sync().expect("sync");
        let (_, path) = segments(dir.path())
            .expect("list")
            .pop()
            .expect("one segment");
        let length = std::fs::metadata(&path).expect("meta").len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(length - 5)
            .expect("truncate");
        let mut seen = Vec::new();
        replay(dir.path(), |record| {
            seen.push(record.seq);
            Ok(())
        })
        .expect("replay");
        assert_eq!(seen, vec![1]);
        let mut again = 0;
        replay(dir.path(), |_| {
            again += 1;
            Ok(())
        })
        .expect("replay twice");
        assert_eq!(again, 1, "the tail was cut off for good");
    }

    #[test]
    fn an_abandoned_segment_keeps_what_was_synced_and_the_log_goes_on_in_a_fresh_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = WalWriter::open(dir.path(), 1, 1 << 20).expect("open");
        writer.append(&record(1)).expect("append");
        writer.sync().expect("sync");
        // as if the fsync of record 2 had failed: it is written (buffered), never synced
        writer.append(&record(2)).expect("append");
        writer.file.flush().expect("flush");
        writer.abandon().complete().expect("cut");
        let mut writer = WalWriter::open(dir.path(), 3, 1 << 20).expect("fresh segment");
        writer.append(&record(3)).expect("append");
        writer.sync().expect("sync");
        let mut seen = Vec::new();
        replay(dir.path(), |record| {
            seen.push(record.seq);
            Ok(())
        })
        .expect("replay: the cut segment is not corrupt");
        assert_eq!(seen, vec![1, 3], "the unsynced record 2 is gone");
    }

    #[test]
    fn corruption_before_the_last_segment_refuses_to_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = WalWriter::open(dir.path(), 1, 100).expect("open");
        for seq in 1..=3 {
            writer.append(&record(seq)).expect("append");
        }
        writer.sync().expect("sync");
        let (_, first) = segments(dir.path()).expect("list").remove(0);
        let mut bytes = std::fs::read(&first).expect("read");
        bytes[12] ^= 0xff;
        std::fs::write(&first, bytes).expect("write");
        let error = replay(dir.path(), |_| Ok(())).expect_err("corrupt");
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
    }

    #[test]
    fn truncate_keeps_segments_with_undurable_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = WalWriter::open(dir.path(), 1, 100).expect("open");
        for seq in 1..=4 {
            writer.append(&record(seq)).expect("append");
        }
        writer.sync().expect("sync");
        let before = segments(dir.path()).expect("list").len();
        assert_eq!(writer.truncate(0).expect("truncate"), 0);
        let deleted = writer.truncate(2).expect("truncate");
        assert!(deleted >= 1 && deleted < before);
        let mut first_left = None;
        replay(dir.path(), |record| {
            first_left.get_or_insert(record.seq);
            Ok(())
        })
        .expect("replay");
        assert_eq!(first_left, Some(3));
    }
}
