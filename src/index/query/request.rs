//! Elasticsearch search requests read from their body and URL. A `_search` request
//! becomes a [`SearchRequest`]: the body's `query`, `from`/`size`, `sort`, `_source`,
//! `track_total_hits`, `aggs` and `timeout`, then the URL parameters that override them (`q` as a Lucene string with `df`, `default_operator`
//! and `lenient`, `size`, `from`, `sort`, `_source*`, `timeout`, `track_total_hits`).
//!
//! A `_count` request is its body's `query` or the URL's `q` ([`count_query`]).
//!
//! `fields`, `docvalue_fields` and `highlight` add to each hit
//! ([`crate::index::search::hit_fields`]); `search_after` continues after a hit's sort
//! values ([`crate::index::search::search_after`]).
//!
//! Keys Elasticsearch accepts that change nothing here (`version`, `script_fields`, …) are
//! ignored; an unknown key is a `parsing_exception`, as in Elasticsearch. Reads no index.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::dsl::{ParseContext, parse_query};
use super::lucene::{self, LuceneOptions};
use super::{Operator, Query, QueryError};
use crate::index::search::hit_fields::{parse_fields, parse_highlight};
use crate::index::search::{SearchRequest, SourceFilter, TrackTotalHits, parse_sort, search_after};

/// A search's `timeout` (`"500ms"`, `"10s"`): past it the search stops between
/// partitions and answers what it found with `timed_out: true`, as Elasticsearch does.
fn search_timeout(text: &str) -> Result<Duration, QueryError> {
    crate::duration_serde::parse(text)
        .map_err(|error| QueryError::illegal_argument(format!("timeout: {error}")))
}

/// Builds a search request from a JSON body and URL parameters (URL wins, as in ES).
pub fn search_request(
    body: Option<&Value>,
    params: &HashMap<String, String>,
    context: &ParseContext,
) -> Result<SearchRequest, QueryError> {
    let mut request = SearchRequest {
        parse_context: Some(context.clone()),
        ..SearchRequest::default()
    };
    let empty = Map::new();
    let body = match body {
        None => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(QueryError::parsing("the search body must be a JSON object"));
        }
    };
    let mut search_after = None;
    for (key, value) in body {
        match key.as_str() {
            "query" => request.query = parse_query(value, context)?,
            "from" => request.from = usize_of(value, "from")?,
            "size" => request.size = usize_of(value, "size")?,
            "sort" => request.sort = parse_sort(value)?,
            "_source" => request.source = crate::index::search::source_filter::parse(value)?,
            "track_total_hits" => request.track_total_hits = track_total(value)?,
            "aggs" | "aggregations" => request.aggregations = Some(value.clone()),
            "timeout" => request.timeout = Some(search_timeout(value.as_str().unwrap_or(""))?),
            "fields" | "docvalue_fields" => request.fields.extend(parse_fields(value, key)?),
            "highlight" => request.highlight = Some(parse_highlight(value)?),
            "search_after" => search_after = Some(value),
            "track_scores"
            | "version"
            | "seq_no_primary_term"
            | "stored_fields"
            | "explain"
            | "min_score"
            | "terminate_after"
            | "runtime_mappings"
            | "script_fields"
            | "pit"
            | "collapse"
            | "suggest"
            | "rescore"
            | "indices_boost"
            | "profile"
            | "stats" => {}
            other => {
                return Err(QueryError::parsing(format!(
                    "unknown key [{other}] in the search body; see docs/api.md for what is supported"
                )));
            }
        }
    }
    if let Some(text) = params.get("q") {
        let options = LuceneOptions {
            default_fields: params
                .get("df")
                .map_or_else(|| vec!["*".to_string()], |field| vec![field.clone()]),
            default_operator: match params
                .get("default_operator")
                .map(|value| value.to_ascii_lowercase())
                .as_deref()
            {
                Some("and") => Operator::And,
                _ => Operator::Or,
            },
            lenient: params.get("lenient").is_some_and(|value| value == "true"),
        };
        request.query = lucene::parse(text, context, &options)?;
    }
    if let Some(value) = params.get("timeout") {
        request.timeout = Some(search_timeout(value)?);
    }
    if let Some(value) = params.get("size") {
        request.size = value
            .parse()
            .map_err(|_| QueryError::illegal_argument(format!("size [{value}] is not a number")))?;
    }
    if let Some(value) = params.get("from") {
        request.from = value
            .parse()
            .map_err(|_| QueryError::illegal_argument(format!("from [{value}] is not a number")))?;
    }
    if let Some(value) = params.get("sort") {
        request.sort = parse_sort(&Value::String(value.clone()))?;
    }
    if let Some(value) = params.get("_source") {
        request.source = match value.as_str() {
            "false" => SourceFilter::default(),
            "true" => SourceFilter::all(),
            list => SourceFilter {
                enabled: true,
                includes: list.split(',').map(str::to_string).collect(),
                excludes: Vec::new(),
            },
        };
    }
    if let Some(value) = params.get("_source_includes") {
        request.source.includes = value.split(',').map(str::to_string).collect();
    }
    if let Some(value) = params.get("_source_excludes") {
        request.source.excludes = value.split(',').map(str::to_string).collect();
    }
    if let Some(value) = params.get("track_total_hits") {
        request.track_total_hits =
            track_total(&serde_json::from_str(value).unwrap_or(Value::String(value.clone())))?;
    }
    // read last: the URL may have changed `sort` and `from`
    if let Some(values) = search_after {
        request.search_after = Some(search_after::parse(
            values,
            &request.sort,
            request.from,
            context.now_micros,
        )?);
    }
    Ok(request)
}

/// The query of a `_count` request: its body's `query` (the only key it may hold), then
/// the URL's `q` as a Lucene string, which wins; every document without either.
pub fn count_query(
    body: Option<&Value>,
    params: &HashMap<String, String>,
    context: &ParseContext,
) -> Result<Query, QueryError> {
    let query = match body {
        Some(Value::Object(map)) => {
            if let Some(key) = map.keys().find(|key| key.as_str() != "query") {
                return Err(QueryError::parsing(format!(
                    "request does not support [{key}]; _count takes only `query`"
                )));
            }
            match map.get("query") {
                Some(query) => parse_query(query, context)?,
                None => Query::MatchAll,
            }
        }
        Some(_) => {
            return Err(QueryError::parsing("the count body must be a JSON object"));
        }
        None => Query::MatchAll,
    };
    match params.get("q") {
        Some(text) => lucene::parse(text, context, &LuceneOptions::default()),
        None => Ok(query),
    }
}

fn usize_of(value: &Value, name: &str) -> Result<usize, QueryError> {
    value.as_u64().map(|number| number as usize).ok_or_else(|| {
        QueryError::parsing(format!(
            "[{name}] must be a non-negative number, got {value}"
        ))
    })
}

fn track_total(value: &Value) -> Result<TrackTotalHits, QueryError> {
    match value {
        Value::Bool(true) => Ok(TrackTotalHits::Exact),
        Value::Bool(false) => Ok(TrackTotalHits::Off),
        Value::Number(number) => Ok(number
            .as_u64()
            .map_or(TrackTotalHits::Exact, TrackTotalHits::UpTo)),
        Value::String(text) if text == "true" => Ok(TrackTotalHits::Exact),
        Value::String(text) if text == "false" => Ok(TrackTotalHits::Off),
        other => Err(QueryError::parsing(format!(
            "[track_total_hits] must be a boolean or a number, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> ParseContext {
        ParseContext {
            now_micros: 0,
            timestamp_field: "@timestamp".into(),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn url_parameters_override_the_body() {
        let body = json!({"size": 5, "from": 1, "_source": false, "query": {"match_all": {}}});
        let request = search_request(
            Some(&body),
            &params(&[("size", "2"), ("_source", "a,b"), ("q", "status:500")]),
            &context(),
        )
        .expect("valid");
        assert_eq!((request.size, request.from), (2, 1));
        assert_eq!(request.source.includes, ["a", "b"]);
        assert_ne!(request.query, Query::MatchAll);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_parsing_errors() {
        for (body, kind) in [
            (json!({"sise": 5}), "parsing_exception"),
            (json!({"size": -1}), "parsing_exception"),
            (json!({"track_total_hits": "many"}), "parsing_exception"),
            (json!({"timeout": "soon"}), "illegal_argument_exception"),
            (json!([1]), "parsing_exception"),
        ] {
            let error =
                search_request(Some(&body), &HashMap::new(), &context()).expect_err("refused");
            assert_eq!(error.kind, kind, "{body}");
        }
    }

    #[test]
    fn a_count_takes_only_a_query_and_q_wins() {
        let no_body = count_query(None, &HashMap::new(), &context()).expect("valid");
        assert_eq!(no_body, Query::MatchAll);
        let error = count_query(Some(&json!({"size": 1})), &HashMap::new(), &context())
            .expect_err("only query");
        assert!(error.reason.contains("_count takes only `query`"));
        let body = json!({"query": {"match_all": {}}});
        let query = count_query(Some(&body), &params(&[("q", "x")]), &context()).expect("valid");
        assert_ne!(query, Query::MatchAll);
    }
}
