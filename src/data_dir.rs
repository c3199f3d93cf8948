//! The data directory: `logs/` (partitions under `logs/indices/`, the write-ahead log
//! under `logs/wal/`), `tsdb/`, `state/`, and `lookout.lock`, held with an exclusive file
//! lock for as long as a process writes here, so two servers (or a server and
//! `tsdb import`) never write the same directory. Each tenant but `default` has the same
//! layout under `tenants/NAME/` (covered by the one lock); `default` keeps the root.

use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data directory `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "data directory `{path}` is in use by another Lookout process (lock file `{lock}`); stop it or choose another --data-dir"
    )]
    Locked { path: String, lock: String },
}

/// An opened, locked data directory. The lock is released on drop.
pub struct DataDir {
    pub root: PathBuf,
    _lock: File,
}

impl DataDir {
    pub fn open(root: &Path) -> Result<DataDir, DataDirError> {
        let io_error = |source| DataDirError::Io {
            path: root.display().to_string(),
            source,
        };
        for sub in ["logs/indices", "logs/wal", "tsdb", "state"] {
            std::fs::create_dir_all(root.join(sub)).map_err(io_error)?;
        }
        let lock_path = root.join("lookout.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked {
                    path: root.display().to_string(),
                    lock: lock_path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io_error(source)),
        }
        Ok(DataDir {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn indices(&self) -> PathBuf {
        self.layout().indices()
    }

    pub fn wal(&self) -> PathBuf {
        self.layout().wal()
    }

    pub fn state(&self) -> PathBuf {
        self.layout().state()
    }

    pub fn tsdb(&self) -> PathBuf {
        self.layout().tsdb()
    }

    /// The default tenant's directories: the root itself, today's layout.
    pub fn layout(&self) -> TenantDir {
        TenantDir {
            root: self.root.clone(),
        }
    }

    /// Another tenant's directories, `tenants/NAME/`, created if missing. `name` must be
    /// one plain path component (tenant names are, see `crate::tenant::name_error`), so a
    /// tenant's directory never leaves the data directory.
    pub fn tenant(&self, name: &str) -> Result<TenantDir, DataDirError> {
        let mut components = Path::new(name).components();
        let plain = matches!(
            (components.next(), components.next()),
            (Some(std::path::Component::Normal(_)), None)
        ) && !name.contains(['/', '\\']);
        if !plain {
            return Err(DataDirError::Io {
                path: self.root.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("tenant `{name}` cannot name a directory of its own"),
                ),
            });
        }
        let root = self.root.join("tenants").join(name);
        for sub in ["logs/indices", "logs/wal", "tsdb", "state"] {
            std::fs::create_dir_all(root.join(sub)).map_err(|source| DataDirError::Io {
                path: root.display().to_string(),
                source,
            })?;
        }
        Ok(TenantDir { root })
    }
}

/// One tenant's part of the data directory (`logs/`, `tsdb/`, `state/`).
#[derive(Debug, Clone)]
pub struct TenantDir {
    pub root: PathBuf,
}

impl TenantDir {
    pub fn indices(&self) -> PathBuf {
        self.root.join("logs/indices")
    }

    pub fn wal(&self) -> PathBuf {
        self.root.join("logs/wal")
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn tsdb(&self) -> PathBuf {
        self.root.join("tsdb")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DataDir::open(dir.path()).expect("first open");
        let error = DataDir::open(dir.path()).err().expect("locked");
        assert!(
            error
                .to_string()
                .contains("in use by another Lookout process"),
            "{error}"
        );
        drop(first);
        DataDir::open(dir.path()).expect("free again after drop");
    }

    #[test]
    fn tenants_live_under_tenants_and_default_keeps_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::open(dir.path()).expect("open");
        assert_eq!(data.layout().root, dir.path());
        let team = data.tenant("team-a").expect("team-a");
        assert_eq!(team.root, dir.path().join("tenants/team-a"));
        assert!(team.wal().is_dir() && team.tsdb().is_dir() && team.state().is_dir());
        for escape in ["..", ".", "../x", "a/../../b", "/etc", "a/b", ""] {
            assert!(data.tenant(escape).is_err(), "`{escape}` must be refused");
        }
    }
}
