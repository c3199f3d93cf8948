//! `_source` filtering: the includes and excludes of a search (dotted paths, `*`
//! wildcards) applied to each hit's source, as Elasticsearch filters it.

use serde_json::{Map, Value};

use crate::index::query::QueryError;

/// `_source` filtering: `includes`/`excludes` patterns, or no source at all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceFilter {
    pub enabled: bool,
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
}

impl SourceFilter {
    pub fn all() -> Self {
        SourceFilter {
            enabled: true,
            includes: Vec::new(),
            excludes: Vec::new(),
        }
    }
}

/// A `_source` parameter: `false`, a pattern, a list, or `includes`/`excludes`.
pub fn parse(value: &Value) -> Result<SourceFilter, QueryError> {
    let list = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(text)) => vec![text.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    };
    Ok(match value {
        Value::Bool(enabled) => SourceFilter {
            enabled: *enabled,
            ..SourceFilter::default()
        },
        Value::String(_) | Value::Array(_) => SourceFilter {
            enabled: true,
            includes: list(Some(value)),
            excludes: Vec::new(),
        },
        Value::Object(map) => SourceFilter {
            enabled: true,
            includes: list(map.get("includes").or_else(|| map.get("include"))),
            excludes: list(map.get("excludes").or_else(|| map.get("exclude"))),
        },
        other => {
            return Err(QueryError::parsing(format!(
                "[_source] must be a boolean, string, array or object, got {other}"
            )));
        }
    })
}

/// Applies `_source` includes/excludes (dotted paths, `*` wildcards) in place.
pub fn filter_source(value: &mut Value, filter: &SourceFilter) {
    if filter.includes.is_empty() && filter.excludes.is_empty() {
        return;
    }
    let Value::Object(map) = value else { return };
    let mut flat = Vec::new();
    flatten_paths(map, String::new(), &mut flat);
    let keep = |path: &str| {
        let matches = |pattern: &String| {
            crate::index::store::glob_match(pattern, path)
                || path.starts_with(&format!("{pattern}."))
        };
        (filter.includes.is_empty() || filter.includes.iter().any(matches))
            && !filter.excludes.iter().any(matches)
    };
    let mut result = Map::new();
    for (path, leaf) in flat {
        if keep(&path) {
            insert_path(&mut result, &path, leaf);
        }
    }
    *map = result;
}

fn flatten_paths(map: &Map<String, Value>, prefix: String, out: &mut Vec<(String, Value)>) {
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten_paths(inner, path, out),
            other => out.push((path, other.clone())),
        }
    }
}

fn insert_path(map: &mut Map<String, Value>, path: &str, leaf: Value) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_string(), leaf);
        }
        Some((head, rest)) => {
            let entry = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                insert_path(inner, rest, leaf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn source_filtering_keeps_and_drops_dotted_paths() {
        let mut source = json!({"a": 1, "http": {"status": 500, "path": "/x"}, "msg": "m"});
        filter_source(
            &mut source,
            &SourceFilter {
                enabled: true,
                includes: vec!["http.*".into(), "a".into()],
                excludes: vec!["http.path".into()],
            },
        );
        assert_eq!(source, json!({"a": 1, "http": {"status": 500}}));
    }
}
