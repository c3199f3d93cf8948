//! High-water marks of the agent protocol: per `(source, generation)`, the byte offset up
//! to which lines are already held. An item at or below its mark is answered `noop`.
//!
//! Marks live in every write-ahead-log record that moves them and in a snapshot
//! (`state/sources.json`, written before log segments are deleted), so a restart knows
//! them exactly. Marks untouched for `source_ttl` expire.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub offset: u64,
    pub updated_micros: i64,
}

#[derive(Debug, Clone, Default)]
pub struct SourceMarks {
    marks: HashMap<(String, u64), Mark>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    marks: Vec<(String, u64, Mark)>,
}

/// Why the sources snapshot cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not a valid sources snapshot: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("`{}` has unknown version {version}", path.display())]
    UnknownVersion { path: PathBuf, version: u32 },
}

impl SourceMarks {
    pub fn get(&self, source: &str, generation: u64) -> Option<u64> {
        self.marks
            .get(&(source.to_string(), generation))
            .map(|mark| mark.offset)
    }

    /// Raises the mark to `offset` (never lowers it).
    pub fn raise(&mut self, source: &str, generation: u64, offset: u64, now_micros: i64) {
        let mark = self
            .marks
            .entry((source.to_string(), generation))
            .or_insert(Mark {
                offset,
                updated_micros: now_micros,
            });
        mark.offset = mark.offset.max(offset);
        mark.updated_micros = now_micros;
    }

    /// Puts a mark back to `offset` (`None`: no mark), undoing [`SourceMarks::raise`]s of
    /// a batch that was never acknowledged.
    pub fn restore(&mut self, source: &str, generation: u64, offset: Option<u64>) {
        let key = (source.to_string(), generation);
        match offset {
            Some(offset) => {
                if let Some(mark) = self.marks.get_mut(&key) {
                    mark.offset = offset;
                }
            }
            None => {
                self.marks.remove(&key);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.marks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    /// Forgets marks untouched since `cutoff_micros`; returns how many.
    pub fn expire(&mut self, cutoff_micros: i64) -> usize {
        let before = self.marks.len();
        self.marks
            .retain(|_, mark| mark.updated_micros >= cutoff_micros);
        before - self.marks.len()
    }

    /// Reads the snapshot at `path`; none there is no marks.
    pub fn load(path: &Path) -> Result<SourceMarks, SourcesError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SourceMarks::default());
            }
            Err(source) => {
                return Err(SourcesError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let snapshot: Snapshot =
            serde_json::from_slice(&text).map_err(|source| SourcesError::Invalid {
                path: path.to_path_buf(),
                source,
            })?;
        if snapshot.version != 1 {
            return Err(SourcesError::UnknownVersion {
                path: path.to_path_buf(),
                version: snapshot.version,
            });
        }
        Ok(SourceMarks {
            marks: snapshot
                .marks
                .into_iter()
                .map(|(source, generation, mark)| ((source, generation), mark))
                .collect(),
        })
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let snapshot = Snapshot {
            version: 1,
            marks: self
                .marks
                .iter()
                .map(|((source, generation), mark)| (source.clone(), *generation, *mark))
                .collect(),
        };
        crate::atomic_file::write(
            path,
            &serde_json::to_vec(&snapshot).expect("snapshot serializes"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_only_rise_expire_and_survive_a_snapshot() {
        let mut marks = SourceMarks::default();
        marks.raise("a", 0, 100, 1);
        marks.raise("a", 0, 50, 2);
        assert_eq!(marks.get("a", 0), Some(100));
        marks.raise("a", 1, 10, 3);
        assert_eq!(marks.get("a", 1), Some(10), "generations are separate");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sources.json");
        marks.save(&path).expect("save");
        let loaded = SourceMarks::load(&path).expect("load");
        assert_eq!(loaded.get("a", 0), Some(100));
        let mut loaded = loaded;
        assert_eq!(loaded.expire(3), 1);
        assert_eq!(loaded.get("a", 0), None);
    }
}
