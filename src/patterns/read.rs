//! Reading the lines to mine from the index: the matches of a query in a time range,
//! newest first, in pages of [`PAGE`] (strictly after the last hit of the page before,
//! on the same searchers), up to a cap; each line's text field and event time.
//!
//! Consumes an [`IndexStore`]; searches through the same query parser, partition pruning
//! and engine as `_search`. It does not mine.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::index::IndexStore;
use crate::index::query::dsl::{ParseContext, parse_query};
use crate::index::search::{self, Scope, SearchRequest, SortField, SortKey, SortValue};

/// Hits read per search.
pub const PAGE: usize = 5_000;

/// Why lines could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("query: {0}")]
    Query(#[from] crate::index::query::QueryError),
    #[error("index `{index}`: {reason}")]
    Index { index: String, reason: String },
    #[error(transparent)]
    Search(#[from] search::SearchError),
}

/// Which lines to read.
pub struct LineQuery<'a> {
    pub index: &'a str,
    /// A Lucene string or a DSL object.
    pub query: &'a Value,
    /// `[from, to)`, microseconds since the epoch.
    pub from_micros: i64,
    pub to_micros: i64,
    /// The text field mined (a dotted path into `_source`).
    pub field: &'a str,
}

/// What a read found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCount {
    /// Lines matching the query in the range.
    pub matched: u64,
    /// Lines read (at most the cap); those without the field are read but not visited.
    pub read: u64,
}

/// Reads the newest `max_lines` matches of `lines`, newest first, calling `visit` with
/// each one's field text and event time (microseconds; millisecond precision); stops
/// early when `cancelled` says so. Blocking.
pub fn newest_lines(
    store: &IndexStore,
    lines: &LineQuery<'_>,
    max_lines: usize,
    cancelled: &dyn Fn() -> bool,
    visit: &mut dyn FnMut(&str, i64),
) -> Result<ReadCount, ReadError> {
    let rule_query = match lines.query {
        Value::String(text) => json!({"query_string": {"query": text}}),
        other => other.clone(),
    };
    let filter = json!({"bool": {"filter": [
        rule_query,
        {"range": {"@timestamp": {
            "gte": lines.from_micros as f64 / 1000.0,
            "lt": lines.to_micros as f64 / 1000.0,
            "format": "epoch_millis"
        }}}
    ]}});
    let context = ParseContext {
        now_micros: lines.to_micros,
        timestamp_field: "@timestamp".into(),
    };
    let query = parse_query(&filter, &context)?;
    // an index that does not exist yet has no lines
    let indices = store
        .resolve(lines.index, true)
        .map_err(|reason| ReadError::Index {
            index: lines.index.to_string(),
            reason,
        })?;
    let scope = Scope::new(&indices, &query);
    let matched = search::count(store, &scope, &query)?;
    let mut count = ReadCount { matched, read: 0 };
    let mut after = None;
    while (count.read as usize) < max_lines && !cancelled() {
        let request = SearchRequest {
            query: query.clone(),
            size: PAGE.min(max_lines - count.read as usize),
            sort: vec![SortField {
                key: SortKey::Timestamp,
                descending: true,
            }],
            ..SearchRequest::default()
        };
        let outcome = search::execute(store, &scope, &request, after.take())?;
        if outcome.hits.is_empty() {
            break;
        }
        let rendered = search::render_hits(store, &scope.targets, &outcome.hits, &request)?;
        for (hit, document) in outcome.hits.iter().zip(&rendered) {
            count.read += 1;
            let at = match hit.values.first() {
                Some(SortValue::Number(millis)) => (*millis as i64).saturating_mul(1000),
                _ => lines.from_micros,
            };
            if let Some(text) = field_text(&document["_source"], lines.field) {
                visit(&text, at);
            }
        }
        after = outcome.hits.last().cloned().map(Arc::new);
    }
    Ok(count)
}

/// The text of `field` in `source`: a key with dots as it is, else a path through
/// objects; numbers and booleans as their JSON text.
pub fn field_text(source: &Value, field: &str) -> Option<String> {
    let value = source.get(field).or_else(|| {
        field
            .split('.')
            .try_fold(source, |value, part| value.get(part))
    })?;
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_text_follows_flat_and_nested_keys() {
        let source =
            json!({"message": "a", "log": {"message": "b"}, "log.level": "c", "n": 3, "o": {}});
        assert_eq!(field_text(&source, "message").as_deref(), Some("a"));
        assert_eq!(field_text(&source, "log.message").as_deref(), Some("b"));
        assert_eq!(field_text(&source, "log.level").as_deref(), Some("c"));
        assert_eq!(field_text(&source, "n").as_deref(), Some("3"));
        assert_eq!(field_text(&source, "o"), None);
        assert_eq!(field_text(&source, "missing"), None);
    }
}
