//! Lines the agent cannot ship, kept with their reason instead of being dropped:
//! `state_dir/dead-letter/dead-letter.ndjson` holds one JSON record per line (where it
//! came from, why it was refused, the line itself — as text, or base64 when it is not
//! UTF-8). A line over `max_line_bytes` is never held in memory: it is copied whole, as
//! raw bytes, into `state_dir/dead-letter/lines/` and its record names that file.
//!
//! Records are written once the batch they belong to is acknowledged, before the
//! checkpoint moves past them; a crash between the two can repeat a record (the file is
//! at-least-once), never lose one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One refused line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    pub path: String,
    pub source: String,
    pub generation: u64,
    /// Offset just past the line in its file.
    pub offset: u64,
    /// Short reason code (also the `reason` label of the metric).
    pub label: &'static str,
    pub reason: String,
    /// The line, or its first bytes when it was copied whole to `line_file`.
    pub line: Vec<u8>,
    /// For an over-long line: the file holding it whole, relative to the dead-letter
    /// directory.
    pub line_file: Option<String>,
}

/// The dead-letter directory of one agent.
pub struct DeadLetterFile {
    directory: PathBuf,
    records: File,
}

impl DeadLetterFile {
    pub fn open(state_dir: &Path) -> std::io::Result<DeadLetterFile> {
        let directory = state_dir.join("dead-letter");
        std::fs::create_dir_all(directory.join("lines"))?;
        let records = OpenOptions::new()
            .create(true)
            .append(true)
            .open(directory.join("dead-letter.ndjson"))?;
        Ok(DeadLetterFile { directory, records })
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Appends `records` durably.
    pub fn write(&mut self, records: &[DeadLetterRecord]) -> std::io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for record in records {
            let mut json = serde_json::json!({
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "path": record.path,
                "source": record.source,
                "gen": record.generation,
                "offset": record.offset,
                "reason_code": record.label,
                "reason": record.reason,
            });
            match std::str::from_utf8(&record.line) {
                Ok(text) => json["line"] = text.into(),
                Err(_) => {
                    use base64::Engine;
                    json["line_base64"] = base64::engine::general_purpose::STANDARD
                        .encode(&record.line)
                        .into();
                }
            }
            if let Some(line_file) = &record.line_file {
                json["line_file"] = line_file.as_str().into();
            }
            serde_json::to_writer(&mut out, &json).expect("a record serializes");
            out.push(b'\n');
        }
        self.records.write_all(&out)?;
        self.records.sync_data()
    }
}

/// Copies bytes `start..start + length` of `file` (an over-long line) into
/// `lines/<source>-<gen>-<offset>.line` under the dead-letter directory of `state_dir`,
/// streaming, and returns that name relative to the dead-letter directory. The name is
/// derived from the line's position, so copying the same line again after a restart
/// rewrites the same file.
pub fn save_long_line(
    state_dir: &Path,
    file: &File,
    source: &str,
    generation: u64,
    start: u64,
    length: u64,
) -> std::io::Result<String> {
    let name = format!(
        "lines/{}-{generation}-{}.line",
        source.replace(':', "_"),
        start + length + 1
    );
    let directory = state_dir.join("dead-letter");
    std::fs::create_dir_all(directory.join("lines"))?;
    let mut reader = file.try_clone()?;
    reader.seek(SeekFrom::Start(start))?;
    let mut output = File::create(directory.join(&name))?;
    let copied = std::io::copy(&mut reader.take(length), &mut output)?;
    if copied < length {
        // the file shrank under us (truncated); what was there is what is kept
        tracing::warn!(line_file = %name, copied, length, "over-long line was truncated while being copied");
    }
    output.sync_data()?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_text_or_base64_and_long_lines_are_copied_whole() {
        let state = tempfile::tempdir().expect("tempdir");
        let mut dead_letters = DeadLetterFile::open(state.path()).expect("open");
        let record = |line: &[u8]| DeadLetterRecord {
            path: "/var/log/app.json".into(),
            source: "1:2:3:0000abcd".into(),
            generation: 0,
            offset: 10,
            label: "not_an_object",
            reason: "a JSON array is not a log event".into(),
            line: line.to_vec(),
            line_file: None,
        };
        dead_letters
            .write(&[record(b"[1,2]"), record(b"\xff\xfe")])
            .expect("write");
        let text = std::fs::read_to_string(state.path().join("dead-letter/dead-letter.ndjson"))
            .expect("read");
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("json"))
            .collect();
        assert_eq!(records[0]["line"], "[1,2]");
        assert_eq!(records[0]["reason_code"], "not_an_object");
        assert_eq!(records[1]["line_base64"], "//4=");

        let source_path = state.path().join("big.json");
        let long_line = vec![b'x'; 100_000];
        let mut content = b"{}\n".to_vec();
        content.extend_from_slice(&long_line);
        content.extend_from_slice(b"\n{}\n");
        std::fs::write(&source_path, &content).expect("write");
        let file = File::open(&source_path).expect("open");
        let name =
            save_long_line(state.path(), &file, "1:2:3:0000abcd", 0, 3, 100_000).expect("copy");
        assert_eq!(
            std::fs::read(state.path().join("dead-letter").join(&name)).expect("read"),
            long_line
        );
    }
}
