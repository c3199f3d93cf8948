//! Every key the server accepts (configured, created, internal) and the check of a
//! presented token: hashed, then compared with every key's digest in constant time.

use std::path::Path;
use std::sync::{Arc, RwLock};

use super::file::FileStamp;
use super::{Key, KeyError, KeyFile, KeySource, LEGACY_TOKEN_NAME, digest, new_token};
use crate::server::access::{Role, TenantScope};

/// The keys file's contents as last read, and the stamp they were read at.
#[derive(Default)]
struct Created {
    stamp: Option<FileStamp>,
    keys: Vec<Key>,
}

/// Every key the server accepts: configured, created (re-read when the file changes)
/// and internal. Without any, authentication is off (today's zero-config loopback).
pub struct KeyStore {
    configured: Vec<Key>,
    internal: RwLock<Vec<Key>>,
    file: KeyFile,
    created: RwLock<Created>,
    /// Held while this server changes the keys file and re-reads it, so that
    /// [`KeyStore::notice_changes`] does not report its own changes as made elsewhere.
    changing: std::sync::Mutex<()>,
}

/// The keys a re-read of the keys file found created and revoked.
#[derive(Debug, Default)]
pub struct KeyChanges {
    pub added: Vec<Key>,
    pub removed: Vec<Key>,
}

/// What a caller presented: a token, and the key name an `ApiKey id:key` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub key_name: Option<String>,
    pub token: String,
}

impl KeyStore {
    /// The store of `configured` keys and the keys file in `state_dir`; fails when the
    /// file cannot be read or a created key's name is also configured.
    pub fn open(configured: Vec<Key>, state_dir: &Path) -> Result<Arc<KeyStore>, KeyError> {
        let store = KeyStore {
            configured,
            internal: RwLock::default(),
            file: KeyFile::in_state_dir(state_dir),
            created: RwLock::default(),
            changing: std::sync::Mutex::new(()),
        };
        store.reload()?;
        let created = store.created.read().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = created
            .keys
            .iter()
            .find(|key| store.configured.iter().any(|other| other.name == key.name))
        {
            return Err(KeyError::Invalid(format!(
                "key `{}` is both configured in lookout.toml and created in {}; rename one (or `lookout keys revoke {}`)",
                key.name,
                store.file.path().display(),
                key.name
            )));
        }
        drop(created);
        Ok(Arc::new(store))
    }

    pub fn file(&self) -> &KeyFile {
        &self.file
    }

    /// Re-reads the keys file when it changed since the last read; returns the keys
    /// that appeared and disappeared. A file that cannot be read keeps the old keys
    /// (logged) so a torn edit by hand locks nobody out, nor anyone in.
    pub fn reload(&self) -> Result<KeyChanges, KeyError> {
        let stamp = self.file.stamp();
        {
            let created = self.created.read().unwrap_or_else(|p| p.into_inner());
            if created.stamp == stamp {
                return Ok(KeyChanges::default());
            }
        }
        let keys = self.file.read()?;
        let mut created = self.created.write().unwrap_or_else(|p| p.into_inner());
        let added = keys
            .iter()
            .filter(|key| !created.keys.iter().any(|old| old.name == key.name))
            .cloned()
            .collect();
        let removed = created
            .keys
            .iter()
            .filter(|old| !keys.iter().any(|key| key.name == old.name))
            .cloned()
            .collect();
        *created = Created { stamp, keys };
        Ok(KeyChanges { added, removed })
    }

    /// [`KeyStore::reload`] for changes made outside this server (the command line):
    /// the keys that appeared and disappeared, none while this server changes the file
    /// itself.
    pub fn notice_changes(&self) -> Result<KeyChanges, KeyError> {
        match self.changing.try_lock() {
            Ok(_changing) => self.reload(),
            Err(_) => Ok(KeyChanges::default()),
        }
    }

    /// Whether any key is configured or created: without one, authentication is off
    /// (keys the server makes for itself do not turn it on).
    pub fn enabled(&self) -> bool {
        !self.configured.is_empty()
            || !self
                .created
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .keys
                .is_empty()
    }

    /// Registers a key the server made for itself (kept in memory only).
    pub fn add_internal(&self, name: &str, role: Role, tenants: TenantScope) -> String {
        let token = new_token().unwrap_or_else(|_| {
            // the random source failing is not survivable for key creation; an internal
            // key is then one nobody can guess either: the digest of nothing matches no
            // token of a presented header (hashes of real tokens differ)
            String::new()
        });
        self.internal
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Key {
                name: name.to_owned(),
                role,
                tenants,
                digest: digest(&token),
                source: KeySource::Internal,
                created: None,
            });
        token
    }

    /// Every key, configured first, without secrets.
    pub fn list(&self) -> Vec<Key> {
        let created = self.created.read().unwrap_or_else(|p| p.into_inner());
        self.configured
            .iter()
            .chain(created.keys.iter())
            .cloned()
            .collect()
    }

    /// Whether a configured (or internal) key has this name.
    pub fn is_configured(&self, name: &str) -> bool {
        self.configured.iter().any(|key| key.name == name)
            || self
                .internal
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|key| key.name == name)
    }

    /// Creates a key in the keys file; the token is returned once.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        tenants: &TenantScope,
    ) -> Result<(Key, String), KeyError> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let created = self
            .file
            .create(name, role, tenants, |name| self.is_configured(name))?;
        self.reload()?;
        Ok(created)
    }

    /// Revokes a created key: it stops working before this returns. Returns the key
    /// as it was (the audit trail records it for its tenants).
    pub fn revoke(&self, name: &str) -> Result<Key, KeyError> {
        if self.is_configured(name) {
            return Err(KeyError::Configured(name.to_owned()));
        }
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        self.file.revoke(name)?;
        let changes = self.reload()?;
        changes
            .removed
            .into_iter()
            .find(|key| key.name == name)
            .ok_or_else(|| KeyError::NotFound(name.to_owned()))
    }

    /// The key a credential matches among the keys last read (call
    /// [`KeyStore::notice_changes`] first to see the file's latest). Every key's digest is
    /// compared, in constant time, whatever matched before; an `ApiKey` id must name the
    /// key (but `auth.token`'s key takes any id, as it always did).
    pub fn authenticate(&self, credential: &Credential) -> Option<Key> {
        use subtle::ConstantTimeEq;
        let presented = digest(&credential.token);
        let created = self.created.read().unwrap_or_else(|p| p.into_inner());
        let internal = self.internal.read().unwrap_or_else(|p| p.into_inner());
        let mut found: Option<&Key> = None;
        for key in self
            .configured
            .iter()
            .chain(created.keys.iter())
            .chain(internal.iter())
        {
            let equal: bool = key.digest.ct_eq(&presented).into();
            if equal && found.is_none() {
                found = Some(key);
            }
        }
        let key = found?;
        let named_right = credential.key_name.as_deref().is_none_or(|name| {
            name == key.name || (key.source == KeySource::Config && key.name == LEGACY_TOKEN_NAME)
        });
        named_right.then(|| key.clone())
    }
}
