//! Scoped API keys: who may call the API, with which [`Role`] and for which tenants.
//!
//! Here: a key, its name, tenants and token digest. Beside it: [`config`] (`[auth]` of
//! `lookout.toml` into keys), [`file`] (the keys file `data/state/keys.json`) and
//! [`store`] (every key the server accepts, and checking a presented token).
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

pub mod config;
pub mod file;
pub mod store;

use serde::Serialize;

use crate::server::access::{DEFAULT_TENANT, Principal, Role, TenantScope};

pub use config::{AuthConfig, KeyConfig, configured_keys};
pub use file::KeyFile;
pub use store::{Credential, KeyChanges, KeyStore};

/// The prefix of tokens Lookout makes, so a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "lk_";

/// The name of the key `auth.token*` configures.
pub const LEGACY_TOKEN_NAME: &str = "token";

/// Keys at most, configured and created together.
pub const MAX_KEYS: usize = 10_000;

/// The file of created keys, under `data/state/`.
pub const KEYS_FILE: &str = "keys.json";

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

    /// `role R, tenants T,U` (the audit trail's summary of a key).
    pub fn describe(&self) -> String {
        let role = serde_json::to_value(self.role).unwrap_or_default();
        format!(
            "role {}, tenants {}",
            role.as_str().unwrap_or_default(),
            scope_list(&self.tenants).join(",")
        )
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

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(crate) fn from_hex(text: &str) -> Option<[u8; 32]> {
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
        let changes = store.notice_changes().expect("reload");
        let names = |keys: &[Key]| keys.iter().map(|key| key.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            (names(&changes.added), names(&changes.removed)),
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
