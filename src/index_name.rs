//! Elasticsearch's index-name rules, shared by the index (which creates indices) and the
//! agent (which names the index it ships to) so that neither imports the other. A leaf:
//! it imports nothing of Lookout.

/// Why `name` breaks Elasticsearch's index-name rules, or `Ok` when it does not.
pub fn check_index_name(name: &str) -> Result<(), String> {
    let invalid = |reason: &str| Err(reason.to_string());
    if name.is_empty() {
        return invalid("must not be empty");
    }
    if name == "." || name == ".." {
        return invalid("must not be '.' or '..'");
    }
    if name.len() > 255 {
        return invalid("must not be longer than 255 bytes");
    }
    if name.starts_with(['-', '_', '+']) {
        return invalid("must not start with '_', '-', or '+'");
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return invalid("must be lowercase");
    }
    if let Some(bad) = name.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        ) || c.is_control()
    }) {
        return invalid(&format!(
            "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?, #, :] (found `{}`)",
            bad.escape_default()
        ));
    }
    Ok(())
}
