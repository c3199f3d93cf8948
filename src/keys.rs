//! Scoped API keys: who may call the API, with which [`Role`] and for which tenants.
//!
//! Keys come from three places, all checked the same way:
//! - `[[auth.keys]]` in `lookout.toml` (the secret through `token_env`, `token_file` or
//!   `token_sha256`), and the single `auth.token*` as the admin key `token` of the
//!   default tenant; these cannot be revoked at run time;
//! - `data/state/keys.json`, written by `lookout keys create|revoke` and by
//!   `/_lookout/keys`: names, roles, tenants, creation times and the SHA-256 of each
//!   token, never a token itself. The file is replaced atomically under an exclusive
//!   lock (`keys.json.lock`), so the command line and a running server may both change
//!   it; the server notices a change on the next request (it compares the file's
//!   identity, size and modification time on each one), so a revoked key stops working
//!   at once whoever revoked it;
//! - keys the server makes for itself in memory (the in-process agent's ingest key).
//!
//! A presented token is hashed with SHA-256 and the digest compared with every key's in
//! constant time ([`subtle`]), so neither the token's length nor where it differs
//! shows in the time an answer takes. Tokens made here are `lk_` and 43 characters of
//! URL-safe base64: 256 bits from the operating system's random source.
//!
//! ring (SHA-256, the random source) and subtle (constant-time comparison) are already
//! in the tree through rustls: nothing new to compile or trust.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::server::access::{DEFAULT_TENANT, Principal, Role, TenantScope};

/// API authentication. With any key (`auth.token*`, `[[auth.keys]]`, or one created with
/// `lookout keys create`), every route but `/-/healthy`, `/-/ready` and the UI's files
/// needs one whose role covers it (see `keys` and `server::auth`).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The token itself (prefer `token_env` or `token_file`: config files get shared).
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// Name of an environment variable holding the token.
    pub token_env: Option<String>,
    /// File holding the token (trailing newline ignored).
    pub token_file: Option<PathBuf>,
    /// Allow a non-loopback `listen` without a token.
    pub insecure: bool,
    /// Scoped keys (`[[auth.keys]]`): name, secret, role and tenants.
    pub keys: Vec<crate::keys::KeyConfig>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AuthConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field("insecure", &self.insecure)
            .field("keys", &self.keys)
            .finish()
    }
}

impl AuthConfig {
    /// The configured token, read from wherever it is configured; an empty one is an
    /// error naming its setting.
    pub fn resolve_token(&self) -> Result<Option<String>, String> {
        crate::secret::resolve_credential(
            self.token.as_deref(),
            self.token_env.as_deref(),
            self.token_file.as_deref(),
        )
        .map_err(|(field, error)| match field {
            "value" => format!("`auth.token`: {error}"),
            field => format!("`auth.token_{field}`: {error}"),
        })
    }
}

/// The prefix of tokens Lookout makes, so a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "lk_";

/// The name of the key `auth.token*` configures.
pub const LEGACY_TOKEN_NAME: &str = "token";

/// Keys at most, configured and created together.
pub const MAX_KEYS: usize = 10_000;

/// The file of created keys, under `data/state/`.
pub const KEYS_FILE: &str = "keys.json";

/// One `[[auth.keys]]` entry as written in `lookout.toml`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Shown in logs, the audit trail and `/_lookout/whoami`; unique.
    pub name: String,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// File holding the token (surrounding whitespace ignored).
    pub token_file: Option<PathBuf>,
    /// Hex SHA-256 of the token (`printf %s TOKEN | sha256sum`): the token itself
    /// stays out of the config.
    pub token_sha256: Option<String>,
    pub role: Option<Role>,
    /// The one tenant the key acts for.
    pub tenant: Option<String>,
    /// The tenants the key acts for; `["*"]` for every tenant (an operator key).
    pub tenants: Option<Vec<String>>,
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KeyConfig")
            .field("name", &self.name)
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field(
                "token_sha256",
                &self.token_sha256.as_ref().map(|_| "<hash>"),
            )
            .field("role", &self.role)
            .field("tenant", &self.tenant)
            .field("tenants", &self.tenants)
            .finish()
    }
}

/// What is wrong with a key, its name or the keys file; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("a key named `{0}` exists already; choose another name or revoke it first")]
    Exists(String),
    #[error("no key named `{0}`; `lookout keys list` shows the keys")]
    NotFound(String),
    #[error(
        "key `{0}` is configured in lookout.toml (`[[auth.keys]]` or `auth.token`), not created at run time; remove it there and restart to revoke it"
    )]
    Configured(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a keys file Lookout wrote: {reason}")]
    Corrupt { path: String, reason: String },
}

/// Where a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// `lookout.toml`: not revocable at run time.
    Config,
    /// `data/state/keys.json`.
    Created,
    /// Made by the server for itself, in memory.
    Internal,
}

/// One key as checked: its name, role, tenants and the digest of its token.
#[derive(Clone)]
pub struct Key {
    pub name: String,
    pub role: Role,
    pub tenants: TenantScope,
    digest: [u8; 32],
    pub source: KeySource,
    /// RFC 3339, for created keys.
    pub created: Option<String>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Key")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("tenants", &self.tenants)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Key {
    pub fn principal(&self) -> Principal {
        Principal {
            key_name: self.name.clone(),
            role: self.role,
            tenants: self.tenants.clone(),
        }
    }

    /// The key without its digest, as `keys list` and `GET /_lookout/keys` show it.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "role": self.role,
            "tenants": scope_list(&self.tenants),
            "source": self.source,
            "created": self.created,
        })
    }
}

/// A tenant scope as written: `["*"]` or the names.
pub fn scope_list(scope: &TenantScope) -> Vec<String> {
    match scope {
        TenantScope::All => vec!["*".to_owned()],
        TenantScope::Some(tenants) => tenants.clone(),
    }
}

/// SHA-256 of a token.
pub fn digest(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    bytes
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(bytes)
}

/// A new token: [`TOKEN_PREFIX`] and 256 bits from the operating system's random source.
pub fn new_token() -> Result<String, KeyError> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Io {
            path: "the operating system's random source".into(),
            source: std::io::Error::other("cannot read random bytes"),
        })?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A key name: 1–64 of letters, digits, `-`, `_`, `.`, starting with a letter or digit
/// (it appears in URLs, logs and `ApiKey` ids, which end at `:`).
pub fn validate_name(name: &str) -> Result<(), KeyError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|character: char| character.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "-_.".contains(character));
    if valid {
        Ok(())
    } else {
        Err(KeyError::Invalid(format!(
            "key name `{name}` is not allowed: use 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or digit"
        )))
    }
}

/// A tenant name: 1–64 of letters, digits, `-`, `_`, `.` (Mimir's rule, minus `/`).
pub fn validate_tenant(tenant: &str) -> Result<(), KeyError> {
    let valid = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant != "."
        && tenant != ".."
        && tenant
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "-_.".contains(character));
    if valid {
        Ok(())
    } else {
        Err(KeyError::Invalid(format!(
            "tenant `{tenant}` is not allowed: use 1 to 64 letters, digits, `-`, `_` or `.`, or `*` alone for every tenant"
        )))
    }
}

/// The scope of `tenant = "T"` or `tenants = [...]`; neither means the default tenant.
pub fn tenant_scope(
    tenant: Option<&str>,
    tenants: Option<&[String]>,
) -> Result<TenantScope, KeyError> {
    match (tenant, tenants) {
        (Some(_), Some(_)) => Err(KeyError::Invalid(
            "set `tenant` or `tenants`, not both".into(),
        )),
        (Some(tenant), None) => {
            validate_tenant(tenant)?;
            Ok(TenantScope::Some(vec![tenant.to_owned()]))
        }
        (None, Some(tenants)) if tenants.iter().any(|tenant| tenant == "*") => {
            if tenants.len() == 1 {
                Ok(TenantScope::All)
            } else {
                Err(KeyError::Invalid(
                    "`*` stands alone: `tenants = [\"*\"]` for every tenant".into(),
                ))
            }
        }
        (None, Some(tenants)) => {
            if tenants.is_empty() {
                return Err(KeyError::Invalid(
                    "`tenants` is empty; name at least one tenant, or `[\"*\"]` for every tenant"
                        .into(),
                ));
            }
            for tenant in tenants {
                validate_tenant(tenant)?;
            }
            let mut unique = tenants.to_vec();
            unique.dedup();
            Ok(TenantScope::Some(unique))
        }
        (None, None) => Ok(TenantScope::Some(vec![DEFAULT_TENANT.to_owned()])),
    }
}

impl KeyConfig {
    /// The key this entry configures; errors name the field (`auth.keys[N].FIELD`).
    pub fn resolve(&self, position: usize) -> Result<Key, Vec<String>> {
        let at = |field: &str| format!("`auth.keys[{position}].{field}`");
        let mut errors = Vec::new();
        if let Err(error) = validate_name(&self.name) {
            errors.push(format!("{}: {error}", at("name")));
        }
        let role = self.role.unwrap_or_else(|| {
            errors.push(format!(
                "{}: missing; one of `ingest`, `read`, `edit`, `admin`",
                at("role")
            ));
            Role::Read
        });
        let tenants = tenant_scope(self.tenant.as_deref(), self.tenants.as_deref())
            .map_err(|error| errors.push(format!("{}: {error}", at("tenants"))))
            .unwrap_or(TenantScope::All);
        let sources = [
            self.token_env.is_some(),
            self.token_file.is_some(),
            self.token_sha256.is_some(),
        ];
        let digest = match sources.iter().filter(|set| **set).count() {
            0 => {
                errors.push(format!(
                    "{}: the key has no secret; set `token_env`, `token_file` or `token_sha256`",
                    at("token_env")
                ));
                None
            }
            1 => self.digest(&at).map_err(|error| errors.push(error)).ok(),
            _ => {
                errors.push(format!(
                    "{}: set one of `token_env`, `token_file`, `token_sha256`",
                    at("token_env")
                ));
                None
            }
        };
        match digest {
            Some(digest) if errors.is_empty() => Ok(Key {
                name: self.name.clone(),
                role,
                tenants,
                digest,
                source: KeySource::Config,
                created: None,
            }),
            _ => Err(errors),
        }
    }

    fn digest(&self, at: &dyn Fn(&str) -> String) -> Result<[u8; 32], String> {
        if let Some(hex) = &self.token_sha256 {
            return from_hex(hex).ok_or_else(|| {
                format!(
                    "{}: not a SHA-256 in hex (64 characters 0-9a-f); make one with `printf %s TOKEN | sha256sum`",
                    at("token_sha256")
                )
            });
        }
        match crate::secret::resolve_credential(
            None,
            self.token_env.as_deref(),
            self.token_file.as_deref(),
        ) {
            Ok(Some(token)) => Ok(digest(&token)),
            Ok(None) => Err(format!("{}: no secret", at("token_env"))),
            Err((field, error)) => Err(format!("{}: {error}", at(&format!("token_{field}")))),
        }
    }
}

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
struct FileStamp {
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

    fn stamp(&self) -> Option<FileStamp> {
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

    /// Re-reads the keys file when it changed since the last read; returns the names
    /// that appeared and disappeared. A file that cannot be read keeps the old keys
    /// (logged) so a torn edit by hand locks nobody out, nor anyone in.
    pub fn reload(&self) -> Result<(Vec<String>, Vec<String>), KeyError> {
        let stamp = self.file.stamp();
        {
            let created = self.created.read().unwrap_or_else(|p| p.into_inner());
            if created.stamp == stamp {
                return Ok((Vec::new(), Vec::new()));
            }
        }
        let keys = self.file.read()?;
        let mut created = self.created.write().unwrap_or_else(|p| p.into_inner());
        let added = keys
            .iter()
            .filter(|key| !created.keys.iter().any(|old| old.name == key.name))
            .map(|key| key.name.clone())
            .collect();
        let removed = created
            .keys
            .iter()
            .filter(|old| !keys.iter().any(|key| key.name == old.name))
            .map(|key| key.name.clone())
            .collect();
        *created = Created { stamp, keys };
        Ok((added, removed))
    }

    /// [`KeyStore::reload`] for changes made outside this server (the command line):
    /// the names that appeared and disappeared, none while this server changes the file
    /// itself.
    pub fn notice_changes(&self) -> Result<(Vec<String>, Vec<String>), KeyError> {
        match self.changing.try_lock() {
            Ok(_changing) => self.reload(),
            Err(_) => Ok((Vec::new(), Vec::new())),
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

    /// Revokes a created key: it stops working before this returns.
    pub fn revoke(&self, name: &str) -> Result<(), KeyError> {
        if self.is_configured(name) {
            return Err(KeyError::Configured(name.to_owned()));
        }
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        self.file.revoke(name)?;
        self.reload()?;
        Ok(())
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

/// The configured keys of `[auth]`: `auth.token*` as the admin key `token`, then
/// `[[auth.keys]]`; every error at once, each naming its field.
pub fn configured_keys(auth: &AuthConfig) -> Result<Vec<Key>, Vec<String>> {
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    match auth.resolve_token() {
        Ok(Some(token)) => keys.push(Key {
            name: LEGACY_TOKEN_NAME.to_owned(),
            role: Role::Admin,
            tenants: TenantScope::Some(vec![DEFAULT_TENANT.to_owned()]),
            digest: digest(&token),
            source: KeySource::Config,
            created: None,
        }),
        Ok(None) => {}
        Err(error) => errors.push(error),
    }
    for (position, config) in auth.keys.iter().enumerate() {
        match config.resolve(position) {
            Ok(key) => {
                if keys.iter().any(|other: &Key| other.name == key.name) {
                    errors.push(format!(
                        "`auth.keys[{position}].name`: `{}` names another key too; key names are unique{}",
                        key.name,
                        if key.name == LEGACY_TOKEN_NAME {
                            " (`token` is the key `auth.token` configures)"
                        } else {
                            ""
                        }
                    ));
                } else {
                    keys.push(key);
                }
            }
            Err(found) => errors.extend(found),
        }
    }
    if errors.is_empty() {
        Ok(keys)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_config(name: &str, sha: &str) -> KeyConfig {
        KeyConfig {
            name: name.into(),
            token_sha256: Some(sha.into()),
            role: Some(Role::Read),
            tenant: Some("team-a".into()),
            ..KeyConfig::default()
        }
    }

    #[test]
    fn tokens_are_prefixed_long_and_different() {
        let first = new_token().expect("token");
        let second = new_token().expect("token");
        assert!(first.starts_with(TOKEN_PREFIX));
        assert_eq!(first.len(), TOKEN_PREFIX.len() + 43);
        assert_ne!(first, second);
    }

    #[test]
    fn digest_matches_sha256sum() {
        // printf %s abc | sha256sum
        assert_eq!(
            to_hex(&digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(from_hex(&to_hex(&digest("abc"))), Some(digest("abc")));
        assert_eq!(from_hex("xyz"), None);
    }

    #[test]
    fn key_config_errors_name_the_field() {
        let sha = to_hex(&digest("s3cret"));
        assert!(key_config("ci", &sha).resolve(0).is_ok());
        let cases: Vec<(KeyConfig, &str)> = vec![
            (key_config("bad name", &sha), "auth.keys[0].name"),
            (key_config("ci", "not-hex"), "auth.keys[0].token_sha256"),
            (
                KeyConfig {
                    tenants: Some(vec!["b".into()]),
                    ..key_config("ci", &sha)
                },
                "not both",
            ),
            (
                KeyConfig {
                    tenant: None,
                    tenants: Some(vec!["*".into(), "a".into()]),
                    ..key_config("ci", &sha)
                },
                "stands alone",
            ),
            (
                KeyConfig {
                    role: None,
                    ..key_config("ci", &sha)
                },
                "auth.keys[0].role",
            ),
            (
                KeyConfig {
                    token_sha256: None,
                    ..key_config("ci", &sha)
                },
                "has no secret",
            ),
            (
                KeyConfig {
                    token_env: Some("LOOKOUT_TEST_SURELY_UNSET_VARIABLE".into()),
                    ..key_config("ci", &sha)
                },
                "set one of",
            ),
        ];
        for (config, expected) in cases {
            let errors = config.resolve(0).expect_err("invalid");
            assert!(
                errors.iter().any(|error| error.contains(expected)),
                "{expected}: {errors:?}"
            );
        }
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "\n  \n").expect("write");
        let config = KeyConfig {
            token_sha256: None,
            token_file: Some(file),
            ..key_config("ci", "")
        };
        let errors = config.resolve(3).expect_err("empty");
        assert!(
            errors[0].contains("auth.keys[3].token_file") && errors[0].contains("empty"),
            "{errors:?}"
        );
    }

    #[test]
    fn duplicate_names_are_refused_with_the_legacy_token_named() {
        let sha = to_hex(&digest("x"));
        let auth = AuthConfig {
            token: Some("s3cret".into()),
            keys: vec![
                key_config("token", &sha),
                key_config("a", &sha),
                key_config("a", &sha),
            ],
            ..Default::default()
        };
        let errors = configured_keys(&auth).expect_err("duplicates");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("auth.token"), "{errors:?}");
        assert!(errors[1].contains("`a` names another key"), "{errors:?}");
    }

    #[test]
    fn created_keys_work_at_once_and_stop_at_once_even_when_another_process_revokes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(Vec::new(), dir.path()).expect("store");
        assert!(!store.enabled());
        let (key, token) = store
            .create("agent", Role::Ingest, &TenantScope::Some(vec!["a".into()]))
            .expect("create");
        assert_eq!(key.role, Role::Ingest);
        assert!(store.enabled());
        let credential = Credential {
            key_name: None,
            token: token.clone(),
        };
        assert_eq!(
            store.authenticate(&credential).map(|key| key.name),
            Some("agent".into())
        );
        let stored = std::fs::read_to_string(store.file().path()).expect("file");
        assert!(!stored.contains(&token), "the token is never stored");
        // the command line revokes through the file, not through this store
        KeyFile::in_state_dir(dir.path())
            .revoke("agent")
            .expect("revoke");
        assert_eq!(
            store.notice_changes().expect("reload"),
            (Vec::new(), vec!["agent".to_owned()])
        );
        assert!(store.authenticate(&credential).is_none());
        assert!(matches!(
            store.revoke("agent"),
            Err(KeyError::NotFound(name)) if name == "agent"
        ));
    }

    #[test]
    fn an_api_key_id_must_name_its_key_and_configured_keys_cannot_be_revoked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = AuthConfig {
            token: Some("legacy".into()),
            keys: vec![key_config("reader", &to_hex(&digest("s3cret")))],
            ..Default::default()
        };
        let store =
            KeyStore::open(configured_keys(&auth).expect("keys"), dir.path()).expect("store");
        let with = |name: Option<&str>, token: &str| {
            store.authenticate(&Credential {
                key_name: name.map(str::to_owned),
                token: token.to_owned(),
            })
        };
        assert!(with(Some("reader"), "s3cret").is_some());
        assert!(with(Some("someone-else"), "s3cret").is_none());
        assert!(with(Some("any-id"), "legacy").is_some());
        assert!(with(None, "s3cre").is_none());
        assert!(matches!(
            store.revoke("reader"),
            Err(KeyError::Configured(_))
        ));
        assert!(matches!(
            store.create("reader", Role::Read, &TenantScope::All),
            Err(KeyError::Exists(_))
        ));
    }
}
