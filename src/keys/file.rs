//! The keys file of a data directory's `state/` (`keys.json`): names, roles, tenants,
//! creation times and the SHA-256 of each token, never a token. Changed under an
//! exclusive lock (`keys.json.lock`) and replaced atomically, so the command line and a
//! running server may both change it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    KEYS_FILE, Key, KeyError, KeySource, MAX_KEYS, digest, from_hex, new_token, scope_list,
    tenant_scope, to_hex, validate_name,
};
use crate::server::access::{Role, TenantScope};

/// The keys file as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<StoredKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    name: String,
    role: Role,
    tenants: Vec<String>,
    sha256: String,
    created: String,
}

impl StoredKey {
    fn key(&self) -> Result<Key, String> {
        validate_name(&self.name).map_err(|error| error.to_string())?;
        let tenants = tenant_scope(None, Some(&self.tenants))
            .map_err(|error| format!("key `{}`: {error}", self.name))?;
        let digest = from_hex(&self.sha256)
            .ok_or_else(|| format!("key `{}`: `sha256` is not 64 hex digits", self.name))?;
        Ok(Key {
            name: self.name.clone(),
            role: self.role,
            tenants,
            digest,
            source: KeySource::Created,
            created: Some(self.created.clone()),
        })
    }
}

/// The keys file of a data directory's `state/`: read, changed under its lock, replaced
/// atomically. Used by the command line directly and by the server through [`KeyStore`].
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
}

/// A file's identity and version as far as the server's reload cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    inode: u64,
    length: u64,
    modified: Option<std::time::SystemTime>,
}

impl KeyFile {
    pub fn in_state_dir(state_dir: &Path) -> KeyFile {
        KeyFile {
            path: state_dir.join(KEYS_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> KeyError {
        KeyError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    pub(super) fn stamp(&self) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(&self.path).ok()?;
        Some(FileStamp {
            inode: metadata.ino(),
            length: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }

    /// The created keys (none when the file does not exist).
    pub fn read(&self) -> Result<Vec<Key>, KeyError> {
        self.read_stored()?
            .keys
            .iter()
            .map(StoredKey::key)
            .collect::<Result<_, _>>()
            .map_err(|reason| KeyError::Corrupt {
                path: self.path.display().to_string(),
                reason,
            })
    }

    fn read_stored(&self) -> Result<KeysFile, KeyError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(KeysFile::default());
            }
            Err(error) => return Err(self.io(error)),
        };
        serde_json::from_str(&text).map_err(|error| KeyError::Corrupt {
            path: self.path.display().to_string(),
            reason: error.to_string(),
        })
    }

    /// Runs `change` on the stored keys under the file's exclusive lock and writes the
    /// result atomically.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut Vec<StoredKey>) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| self.io(error))?;
        }
        let lock_path = self.path.with_file_name(format!("{KEYS_FILE}.lock"));
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| self.io(error))?;
        lock.lock().map_err(|error| self.io(error))?;
        let mut stored = self.read_stored()?;
        let result = change(&mut stored.keys)?;
        let mut text = serde_json::to_string_pretty(&stored).expect("keys serialize");
        text.push('\n');
        crate::atomic_file::write(&self.path, text.as_bytes()).map_err(|error| self.io(error))?;
        Ok(result)
    }

    /// Stores a new key and returns it with its token, the only time the token exists.
    /// `taken` says whether a name is used elsewhere (the config's keys).
    pub fn create(
        &self,
        name: &str,
        role: Role,
        tenants: &TenantScope,
        taken: impl Fn(&str) -> bool,
    ) -> Result<(Key, String), KeyError> {
        validate_name(name)?;
        if let TenantScope::Some(list) = tenants {
            tenant_scope(None, Some(list))?;
        }
        let token = new_token()?;
        let stored = StoredKey {
            name: name.to_owned(),
            role,
            tenants: scope_list(tenants),
            sha256: to_hex(&digest(&token)),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let key = stored.key().map_err(KeyError::Invalid)?;
        self.change(|keys| {
            if taken(name) || keys.iter().any(|key| key.name == name) {
                return Err(KeyError::Exists(name.to_owned()));
            }
            if keys.len() >= MAX_KEYS {
                return Err(KeyError::Invalid(format!(
                    "at most {MAX_KEYS} keys; revoke some first"
                )));
            }
            keys.push(stored);
            Ok(())
        })?;
        Ok((key, token))
    }

    /// Removes a created key.
    pub fn revoke(&self, name: &str) -> Result<(), KeyError> {
        self.change(|keys| {
            let before = keys.len();
            keys.retain(|key| key.name != name);
            if keys.len() == before {
                Err(KeyError::NotFound(name.to_owned()))
            } else {
                Ok(())
            }
        })
    }
}
