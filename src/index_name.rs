//! Elasticsearch's index names: the rules a name must follow (which also keep every
//! index directory inside the data directory) and `*` patterns over names.
//!
//! A leaf: the agent checks its configured index here, the index store checks the names
//! it creates, ingest checks each item's index, without any of them depending on another.

/// Whether `name` is one of Lookout's own hidden indices (`.lookout-alerts`, the alert
/// history; `.lookout-audit`): written only by Lookout itself, never through the API.
pub fn is_lookout_internal(name: &str) -> bool {
    name.starts_with(".lookout-")
}

/// An index name Elasticsearch would refuse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid index name [{name}], {reason}")]
pub struct InvalidIndexName {
    pub name: String,
    pub reason: String,
}

/// Checks `name` against Elasticsearch's index-name rules.
pub fn validate_index_name(name: &str) -> Result<(), InvalidIndexName> {
    let invalid = |reason: &str| {
        Err(InvalidIndexName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
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

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (position, part) in parts.iter().enumerate() {
        if position == 0 {
            let Some(stripped) = rest.strip_prefix(part) else {
                return false;
            };
            rest = stripped;
        } else if position == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(found) = rest.find(part) else {
                return false;
            };
            rest = &rest[found + part.len()..];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_follow_elasticsearch_rules() {
        for good in ["logs", "logs-checkout", ".lookout-alerts", "a.b_c"] {
            assert!(validate_index_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", ".", "..", "Logs", "_logs", "-x", "a/b", "a\\b", "a*", "a?b", "a,b", "a#", "a b",
            "../etc",
        ] {
            assert!(validate_index_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs_match_like_elasticsearch_patterns() {
        assert!(glob_match("logs-*", "logs-checkout"));
        assert!(glob_match("*", "logs"));
        assert!(glob_match("l*s-*t", "logs-checkout"));
        assert!(!glob_match("logs-*", "logs"));
        assert!(!glob_match("logs", "logs-a"));
    }
}
