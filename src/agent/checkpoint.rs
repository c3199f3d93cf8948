//! The agent's checkpoints: for every file it tails, by [`FileIdentity`], the truncation
//! generation and the byte offset up to which the server has acknowledged its lines.
//!
//! Saved only after acknowledgments (never ahead of them), as one versioned JSON file
//! replaced atomically (`atomic_file`), so a crash at any point leaves the previous or the
//! new state and a restart resumes exactly there; a leftover temporary file from an
//! interrupted save is discarded. A checkpoint moves only forward. Files not seen on disk
//! for longer than a configurable time are forgotten.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fingerprint::FileIdentity;

const VERSION: u32 = 1;
const FILE_NAME: &str = "checkpoints.json";

/// Where one file stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    pub identity: FileIdentity,
    /// Truncation generation (bumped on copytruncate).
    pub generation: u64,
    /// Byte offset just past the last acknowledged line.
    pub offset: u64,
    /// The path the file was last seen at (for people; identity is what counts).
    pub path: PathBuf,
    /// When the file was last seen on disk, microseconds since the epoch.
    pub last_seen_micros: i64,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    files: Vec<FileCheckpoint>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoints `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "checkpoints `{path}` are unreadable ({reason}); move the file aside to start over (files are then read again from where `read_from` says, and Lookout's high-water marks drop what it already has)"
    )]
    Corrupt { path: String, reason: String },
}

/// All checkpoints of one agent, kept in `state_dir/checkpoints.json`.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    files: HashMap<FileIdentity, FileCheckpoint>,
}

impl Checkpoints {
    /// Loads the checkpoints of `state_dir` (none yet is an empty set).
    pub fn load(state_dir: &Path) -> Result<Checkpoints, CheckpointError> {
        let path = state_dir.join(FILE_NAME);
        let io_error = |source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io_error)?;
        let leftover = crate::atomic_file::temporary_path(&path);
        if leftover.exists() {
            tracing::warn!(path = %leftover.display(), "discarding the remains of an interrupted checkpoint save");
            std::fs::remove_file(&leftover).map_err(io_error)?;
        }
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Checkpoints {
                    path,
                    files: HashMap::new(),
                });
            }
            Err(error) => return Err(io_error(error)),
        };
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        let saved: Saved =
            serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
        if saved.version != VERSION {
            return Err(corrupt(format!(
                "version {} is not one this agent reads ({VERSION})",
                saved.version
            )));
        }
        let files = saved
            .files
            .into_iter()
            .map(|file| (file.identity, file))
            .collect();
        Ok(Checkpoints { path, files })
    }

    pub fn get(&self, identity: &FileIdentity) -> Option<&FileCheckpoint> {
        self.files.get(identity)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Records that the server acknowledged `identity` up to `offset` in `generation`.
    /// Returns `false` (and changes nothing) when that would move the checkpoint back.
    pub fn acknowledge(
        &mut self,
        identity: FileIdentity,
        generation: u64,
        offset: u64,
        path: &Path,
        now_micros: i64,
    ) -> bool {
        match self.files.get_mut(&identity) {
            Some(current) if (generation, offset) < (current.generation, current.offset) => false,
            Some(current) => {
                current.generation = generation;
                current.offset = offset;
                current.path = path.to_path_buf();
                current.last_seen_micros = now_micros;
                true
            }
            None => {
                self.files.insert(
                    identity,
                    FileCheckpoint {
                        identity,
                        generation,
                        offset,
                        path: path.to_path_buf(),
                        last_seen_micros: now_micros,
                    },
                );
                true
            }
        }
    }

    /// Notes that `identity` is still on disk.
    pub fn seen(&mut self, identity: &FileIdentity, now_micros: i64) {
        if let Some(current) = self.files.get_mut(identity) {
            current.last_seen_micros = now_micros;
        }
    }

    /// Forgets files not seen since `cutoff_micros`; returns how many.
    pub fn expire(&mut self, cutoff_micros: i64) -> usize {
        let before = self.files.len();
        self.files
            .retain(|_, file| file.last_seen_micros >= cutoff_micros);
        before - self.files.len()
    }

    /// Saves atomically and durably.
    pub fn save(&self) -> Result<(), CheckpointError> {
        let mut files: Vec<FileCheckpoint> = self.files.values().cloned().collect();
        files.sort_by(|left, right| left.path.cmp(&right.path));
        let bytes = serde_json::to_vec_pretty(&Saved {
            version: VERSION,
            files,
        })
        .expect("checkpoints serialize");
        crate::atomic_file::write(&self.path, &bytes).map_err(|source| CheckpointError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(inode: u64) -> FileIdentity {
        FileIdentity {
            device: 2049,
            inode,
            head_length: 40,
            head_crc: 0xabcd,
        }
    }

    #[test]
    fn checkpoints_only_move_forward_and_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut checkpoints = Checkpoints::load(dir.path()).expect("load");
        assert!(checkpoints.is_empty());
        let path = Path::new("/var/log/app.json");
        assert!(checkpoints.acknowledge(identity(1), 0, 4096, path, 10));
        assert!(
            !checkpoints.acknowledge(identity(1), 0, 100, path, 11),
            "never back"
        );
        assert!(
            checkpoints.acknowledge(identity(1), 1, 10, path, 12),
            "a new generation starts over"
        );
        checkpoints.save().expect("save");
        let loaded = Checkpoints::load(dir.path()).expect("reload");
        let file = loaded.get(&identity(1)).expect("kept");
        assert_eq!((file.generation, file.offset), (1, 10));
    }

    #[test]
    fn an_interrupted_save_leaves_the_previous_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut checkpoints = Checkpoints::load(dir.path()).expect("load");
        checkpoints.acknowledge(identity(1), 0, 500, Path::new("a.json"), 1);
        checkpoints.save().expect("save");
        // a crash mid-save leaves a half-written temporary file behind
        let temporary = crate::atomic_file::temporary_path(&dir.path().join(FILE_NAME));
        std::fs::write(&temporary, b"{\"version\":1,\"fil").expect("torn write");
        let loaded = Checkpoints::load(dir.path()).expect("load after crash");
        assert_eq!(loaded.get(&identity(1)).map(|file| file.offset), Some(500));
        assert!(!temporary.exists(), "the remains are cleaned up");
    }

    #[test]
    fn corrupt_or_unknown_versions_are_reported_not_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), b"not json").expect("write");
        let error = Checkpoints::load(dir.path()).expect_err("corrupt");
        assert!(error.to_string().contains("move the file aside"), "{error}");
        std::fs::write(dir.path().join(FILE_NAME), b"{\"version\":9,\"files\":[]}").expect("write");
        assert!(
            Checkpoints::load(dir.path())
                .expect_err("version")
                .to_string()
                .contains("version 9")
        );
    }

    #[test]
    fn files_gone_too_long_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut checkpoints = Checkpoints::load(dir.path()).expect("load");
        checkpoints.acknowledge(identity(1), 0, 1, Path::new("old.json"), 100);
        checkpoints.acknowledge(identity(2), 0, 1, Path::new("new.json"), 100);
        checkpoints.seen(&identity(2), 500);
        assert_eq!(checkpoints.expire(300), 1);
        assert!(checkpoints.get(&identity(1)).is_none());
        assert_eq!(checkpoints.len(), 1);
    }
}
