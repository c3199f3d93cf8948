//! `[auth]` of `lookout.toml` into keys: `auth.token*` (the admin key `token` of the
//! default tenant) and `[[auth.keys]]`, each secret read from the environment, a file or
//! given as its SHA-256; every error names its field (`auth.keys[N].FIELD`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Key, KeySource, LEGACY_TOKEN_NAME, digest, from_hex, tenant_scope, validate_name};
use crate::server::access::{DEFAULT_TENANT, Role, TenantScope};

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
    pub keys: Vec<KeyConfig>,
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
