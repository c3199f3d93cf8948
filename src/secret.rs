//! Secrets in configuration (tokens, passwords): given inline, through an environment
//! variable or in a file, and redacted wherever they could be printed. A leaf shared by
//! every stage's config; it imports nothing of Lookout.

use std::path::Path;

use serde::Deserialize;

/// A secret configured directly, through an environment variable or in a file, in that
/// order; an error names the source (`env` or `file`: the field is `…_env` or `…_file`)
/// and what is wrong. The secret itself never appears in an error.
pub fn resolve_secret(
    value: Option<&str>,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, (&'static str, String)> {
    if let Some(value) = value {
        return Ok(Some(value.to_string()));
    }
    if let Some(name) = env {
        return std::env::var(name)
            .map(|value| Some(value.trim().to_string()))
            .map_err(|_| ("env", format!("environment variable `{name}` is not set")));
    }
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .map(|value| Some(value.trim().to_string()))
            .map_err(|error| ("file", format!("cannot read `{}`: {error}", path.display())));
    }
    Ok(None)
}

/// [`resolve_secret`] for a credential that grants access (an API token): an empty one,
/// or one of whitespace only (a file of blank lines, `LOOKOUT_TOKEN=''`), is an error
/// rather than a secret, since it would pass for "no secret" or match an empty header.
/// The error's source is `value` for the inline secret, else `env` or `file`.
pub fn resolve_credential(
    value: Option<&str>,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, (&'static str, String)> {
    let source = match (value, env, file) {
        (Some(_), _, _) => "value",
        (None, Some(name), _) => {
            return check_not_empty(
                resolve_secret(None, Some(name), None),
                "env",
                &format!("environment variable `{name}`"),
            );
        }
        (None, None, Some(path)) => {
            return check_not_empty(
                resolve_secret(None, None, Some(path)),
                "file",
                &format!("`{}`", path.display()),
            );
        }
        (None, None, None) => return Ok(None),
    };
    check_not_empty(resolve_secret(value, None, None), source, "the value")
}

fn check_not_empty(
    resolved: Result<Option<String>, (&'static str, String)>,
    source: &'static str,
    what: &str,
) -> Result<Option<String>, (&'static str, String)> {
    match resolved? {
        Some(secret) if secret.trim().is_empty() => Err((
            source,
            format!(
                "{what} is empty (or only whitespace); set a secret there, or remove the setting to run without one"
            ),
        )),
        other => Ok(other),
    }
}

/// A secret string: redacted in `Debug`, never serialized back.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("<redacted>")
    }
}
