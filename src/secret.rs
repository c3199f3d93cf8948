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

/// A secret string: redacted in `Debug`, never serialized back.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("<redacted>")
    }
}
