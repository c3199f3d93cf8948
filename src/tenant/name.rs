//! What may name a tenant: 1 to 64 lowercase letters, digits, `-` and `_`, so that a
//! name is one plain path component (`data_dir/tenants/NAME/`) and a clean header value.
//! A leaf: the agent, the config and the server all check names here.

/// Longest tenant name, in bytes.
pub const MAX_TENANT_NAME_BYTES: usize = 64;

/// Why `name` cannot name a tenant, or `None`.
pub fn name_error(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_TENANT_NAME_BYTES {
        // a long name is not echoed whole
        let shown: String = name.chars().take(MAX_TENANT_NAME_BYTES).collect();
        let more = if shown.len() < name.len() { "…" } else { "" };
        return Some(format!(
            "tenant name `{shown}{more}` must be 1 to {MAX_TENANT_NAME_BYTES} characters"
        ));
    }
    if !name.bytes().all(|byte| {
        byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
    }) {
        return Some(format!(
            "tenant name `{name}` may hold only lowercase letters, digits, `-` and `_` (it names a directory under the data directory)"
        ));
    }
    None
}
