//! Complete lines from a file, from a byte offset on, with the offset just past each one
//! (what the agent protocol's `offset` and the checkpoints record).
//!
//! Only complete lines come out: a last line without its newline waits for it. `\r\n`
//! ends a line like `\n` (the `\r` is not part of it). Empty lines advance the offset but
//! are not returned. A line longer than `max_line_bytes` is never split and never held in
//! memory: it is skipped to its newline and reported as [`Line::TooLong`] with its length
//! and first bytes, for the dead-letter file. Memory is bounded by `buffer_bytes` plus one
//! line.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// How much of an over-long line is kept for the dead-letter record.
pub const TOO_LONG_PREVIEW_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line (without its line ending); `end` is the offset just past it.
    Complete { text: Vec<u8>, end: u64 },
    /// A line over the limit, skipped: its length and first bytes.
    TooLong {
        length: u64,
        preview: Vec<u8>,
        end: u64,
    },
}

impl Line {
    pub fn end(&self) -> u64 {
        match self {
            Line::Complete { end, .. } | Line::TooLong { end, .. } => *end,
        }
    }
}

/// What one read found.
#[derive(Debug, Default)]
pub struct ReadResult {
    pub lines: Vec<Line>,
    /// The read reached the end of the file (as it is now): everything written so far has
    /// been returned, except a last line still waiting for its newline.
    pub at_end: bool,
}

/// Reads lines of one open file.
pub struct LineReader {
    file: File,
    /// Offset of the first byte not yet returned (the start of the pending line).
    offset: u64,
    max_line_bytes: usize,
    buffer_bytes: usize,
    /// Bytes of the current (incomplete) line read so far.
    pending: Vec<u8>,
    /// Bytes of an over-long line being skipped, if one is.
    skipping: Option<(u64, Vec<u8>)>,
    chunk: Vec<u8>,
}

impl LineReader {
    pub fn new(file: File, offset: u64, max_line_bytes: usize, buffer_bytes: usize) -> LineReader {
        LineReader {
            file,
            offset,
            max_line_bytes,
            buffer_bytes: buffer_bytes.max(4096),
            pending: Vec::new(),
            skipping: None,
            chunk: Vec::new(),
        }
    }

    /// The offset up to which every line has been returned (where a restart resumes).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Offset of the next byte to read (past a pending incomplete line): a file shorter
    /// than this has been truncated.
    pub fn read_position(&self) -> u64 {
        self.offset
            + self.pending.len() as u64
            + self.skipping.as_ref().map_or(0, |(length, _)| *length)
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Gives the file back.
    pub fn into_file(self) -> File {
        self.file
    }

    /// Reads what is available now, up to `buffer_bytes`, and returns the complete lines
    /// in it. The file may keep growing; call again later.
    pub fn read_available(&mut self) -> std::io::Result<ReadResult> {
        self.file.seek(SeekFrom::Start(self.read_position()))?;
        // the read buffer is reused: a fresh one per call cost page faults on every read
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.resize(self.buffer_bytes, 0);
        let mut read = 0;
        while read < chunk.len() {
            let count = self.file.read(&mut chunk[read..])?;
            if count == 0 {
                break;
            }
            read += count;
        }
        let at_end = read < chunk.len();
        chunk.truncate(read);
        let mut lines = Vec::new();
        let mut start = 0;
        while start < chunk.len() {
            let newline = chunk[start..].iter().position(|byte| *byte == b'\n');
            let piece_end = newline.map_or(chunk.len(), |position| start + position);
            let piece = &chunk[start..piece_end];
            if let Some((length, preview)) = &mut self.skipping {
                *length += piece.len() as u64;
                let room = TOO_LONG_PREVIEW_BYTES.saturating_sub(preview.len());
                preview.extend_from_slice(&piece[..room.min(piece.len())]);
            } else if self.pending.len() + piece.len() > self.max_line_bytes {
                let mut preview = std::mem::take(&mut self.pending);
                preview.extend_from_slice(piece);
                let length = preview.len() as u64;
                preview.truncate(TOO_LONG_PREVIEW_BYTES);
                self.skipping = Some((length, preview));
            } else {
                self.pending.extend_from_slice(piece);
            }
            let Some(_) = newline else { break };
            // a line ends here: the newline is part of its extent
            match self.skipping.take() {
                Some((length, preview)) => {
                    self.offset += length + 1;
                    lines.push(Line::TooLong {
                        length,
                        preview,
                        end: self.offset,
                    });
                }
                None => {
                    let mut text = std::mem::take(&mut self.pending);
                    self.offset += text.len() as u64 + 1;
                    if text.last() == Some(&b'\r') {
                        text.pop();
                    }
                    if !text.is_empty() {
                        lines.push(Line::Complete {
                            text,
                            end: self.offset,
                        });
                    }
                }
            }
            start = piece_end + 1;
        }
        self.chunk = chunk;
        Ok(ReadResult { lines, at_end })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read_all(reader: &mut LineReader) -> Vec<Line> {
        let mut all = Vec::new();
        loop {
            let result = reader.read_available().expect("read");
            all.extend(result.lines);
            if result.at_end {
                return all;
            }
        }
    }

    fn complete(text: &str, end: u64) -> Line {
        Line::Complete {
            text: text.as_bytes().to_vec(),
            end,
        }
    }

    #[test]
    fn complete_lines_only_crlf_and_empty_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.json");
        std::fs::write(&path, b"{\"a\":1}\r\n\n{\"b\":2}\n{\"partial\"").expect("write");
        let mut reader = LineReader::new(File::open(&path).expect("open"), 0, 1024, 4096);
        assert_eq!(
            read_all(&mut reader),
            vec![complete("{\"a\":1}", 9), complete("{\"b\":2}", 18)]
        );
        assert_eq!(reader.offset(), 18, "the partial line is not passed");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open")
            .write_all(b":3}\n")
            .expect("append");
        assert_eq!(read_all(&mut reader), vec![complete("{\"partial\":3}", 32)]);
    }

    #[test]
    fn resuming_at_an_offset_returns_exactly_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.json");
        std::fs::write(&path, b"one\ntwo\nthree\n").expect("write");
        let mut reader = LineReader::new(File::open(&path).expect("open"), 4, 1024, 4096);
        assert_eq!(
            read_all(&mut reader),
            vec![complete("two", 8), complete("three", 14)]
        );
    }

    #[test]
    fn over_long_lines_are_reported_whole_and_neighbours_survive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.json");
        let long = "x".repeat(10 * 4096 + 7);
        std::fs::write(&path, format!("a\n{long}\nb\n")).expect("write");
        // a small buffer makes the long line span many reads
        let mut reader = LineReader::new(File::open(&path).expect("open"), 0, 1000, 4096);
        let lines = read_all(&mut reader);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], complete("a", 2));
        match &lines[1] {
            Line::TooLong {
                length,
                preview,
                end,
            } => {
                assert_eq!(*length, long.len() as u64);
                assert_eq!(preview.len(), TOO_LONG_PREVIEW_BYTES);
                assert_eq!(*end, 2 + long.len() as u64 + 1);
            }
            other => panic!("expected TooLong, got {other:?}"),
        }
        assert_eq!(lines[2], complete("b", 2 + long.len() as u64 + 1 + 2));
    }

    #[test]
    fn every_split_of_the_input_gives_the_same_lines() {
        // the file is written in two parts at every possible boundary, read between them
        let text = b"{\"a\":1}\r\n\n{\"b\":22}\nlooooooooooooooong\n{\"c\":3}\n";
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.json");
        std::fs::write(&path, text).expect("write");
        let expected = read_all(&mut LineReader::new(
            File::open(&path).expect("open"),
            0,
            12,
            4096,
        ));
        assert_eq!(expected.len(), 4);
        assert!(matches!(expected[2], Line::TooLong { length: 18, .. }));
        for split in 0..text.len() {
            std::fs::write(&path, &text[..split]).expect("write");
            let mut reader = LineReader::new(File::open(&path).expect("open"), 0, 12, 4096);
            let mut lines = read_all(&mut reader);
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("open")
                .write_all(&text[split..])
                .expect("append");
            lines.extend(read_all(&mut reader));
            assert_eq!(lines, expected, "split at {split}");
        }
    }
}
