//! How Lookout authenticates to the Prometheus-compatible APIs it calls (remote-write
//! receivers, query datasources), with Prometheus' field names: `basic_auth` (username,
//! password from env or file), `authorization` (type and credentials from env or file) or
//! `bearer_token_env`/`bearer_token_file`. Secrets come from the environment or files
//! only, so a config never holds one and none is ever printed: the resolved header is
//! redacted in `Debug`.

use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::secret::resolve_credential;

/// `basic_auth`: Prometheus' HTTP basic authentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    pub username: String,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password (trailing whitespace trimmed).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// `authorization`: an `Authorization: TYPE CREDENTIALS` header (Prometheus' name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// The scheme, `Bearer` by default.
    #[serde(default = "AuthorizationConfig::default_type", rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub credentials_env: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

impl AuthorizationConfig {
    fn default_type() -> String {
        "Bearer".into()
    }
}

/// The authentication settings of one client, borrowed from its config.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientAuth<'a> {
    pub basic_auth: Option<&'a BasicAuthConfig>,
    pub authorization: Option<&'a AuthorizationConfig>,
    pub bearer_token_env: Option<&'a str>,
    pub bearer_token_file: Option<&'a std::path::Path>,
}

/// An `Authorization` header value, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthHeader(pub String);

impl std::fmt::Debug for AuthHeader {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("<redacted>")
    }
}

impl ClientAuth<'_> {
    /// The `Authorization` header these settings make (`None`: no authentication). An
    /// error names the field of `prefix` (e.g. `remote_write[0]`) and what to fix; it
    /// never holds the secret.
    pub fn header(&self, prefix: &str) -> Result<Option<AuthHeader>, String> {
        let set = usize::from(self.basic_auth.is_some())
            + usize::from(self.authorization.is_some())
            + usize::from(self.bearer_token_env.is_some() || self.bearer_token_file.is_some());
        if set > 1 {
            return Err(format!(
                "`{prefix}`: give one of `basic_auth`, `authorization` or `bearer_token_env`/`bearer_token_file`, not several"
            ));
        }
        if let Some(basic) = self.basic_auth {
            if basic.username.is_empty() {
                return Err(format!("`{prefix}.basic_auth.username`: empty"));
            }
            let password = resolve_credential(
                None,
                basic.password_env.as_deref(),
                basic.password_file.as_deref(),
            )
            .map_err(|(source, error)| format!("`{prefix}.basic_auth.password_{source}`: {error}"))?
            .unwrap_or_default();
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{password}", basic.username));
            return Ok(Some(AuthHeader(format!("Basic {token}"))));
        }
        if let Some(authorization) = self.authorization {
            if authorization.kind.trim().is_empty() || authorization.kind.contains(' ') {
                return Err(format!(
                    "`{prefix}.authorization.type`: `{}` is not a scheme like \"Bearer\"",
                    authorization.kind
                ));
            }
            let credentials = resolve_credential(
                None,
                authorization.credentials_env.as_deref(),
                authorization.credentials_file.as_deref(),
            )
            .map_err(|(source, error)| {
                format!("`{prefix}.authorization.credentials_{source}`: {error}")
            })?
            .ok_or_else(|| {
                format!("`{prefix}.authorization`: give `credentials_env` or `credentials_file`")
            })?;
            return Ok(Some(AuthHeader(format!(
                "{} {credentials}",
                authorization.kind
            ))));
        }
        let token = resolve_credential(None, self.bearer_token_env, self.bearer_token_file)
            .map_err(|(source, error)| format!("`{prefix}.bearer_token_{source}`: {error}"))?;
        Ok(token.map(|token| AuthHeader(format!("Bearer {token}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_and_bearer_tokens_make_headers_and_errors_name_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").expect("write");
        let basic = BasicAuthConfig {
            username: "lookout".into(),
            password_env: None,
            password_file: Some(password.clone()),
        };
        let header = ClientAuth {
            basic_auth: Some(&basic),
            ..Default::default()
        }
        .header("remote_write[0]")
        .expect("valid")
        .expect("a header");
        assert_eq!(header.0, "Basic bG9va291dDpzM2NyZXQ=");
        assert_eq!(format!("{header:?}"), "<redacted>");
        let header = ClientAuth {
            bearer_token_file: Some(&password),
            ..Default::default()
        }
        .header("x")
        .expect("valid");
        assert_eq!(header, Some(AuthHeader("Bearer s3cret".into())));
        let missing = ClientAuth {
            bearer_token_env: Some("LOOKOUT_TEST_SURELY_UNSET_TOKEN"),
            ..Default::default()
        }
        .header("datasources.prom")
        .expect_err("unset");
        assert!(
            missing.starts_with("`datasources.prom.bearer_token_env`: environment variable"),
            "{missing}"
        );
        let both = ClientAuth {
            basic_auth: Some(&basic),
            bearer_token_file: Some(&password),
            ..Default::default()
        }
        .header("x")
        .expect_err("two");
        assert!(both.contains("not several"), "{both}");
        assert_eq!(ClientAuth::default().header("x"), Ok(None));
    }
}
