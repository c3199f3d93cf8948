//! The `filter` and `filters` bucket aggregations with Elasticsearch query DSL bodies.
//!
//! tantivy's `filter` aggregation takes a tantivy query string or a registered
//! [`QueryBuilder`]; an ES query object (`{"term": {...}}`) is neither. Each filter body is
//! parsed and compiled with the search's own query compiler into a [`CompiledFilter`],
//! which hands tantivy the compiled query. `filters` (named or anonymous, with
//! `other_bucket`) has no tantivy counterpart: it is expanded into one `filter`
//! aggregation per filter, named `NAME\u{1}INDEX` (the other bucket: `NAME\u{1}other`, a
//! `bool.must_not` of them all), and the answers are put back together into ES' `buckets`
//! by [`reassemble`].
//!
//! At most [`MAX_FILTERS`] filters per aggregation.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tantivy::aggregation::bucket::QueryBuilder;
use tantivy::query::Query as TantivyQuery;
use tantivy::schema::Schema;
use tantivy::tokenizer::TokenizerManager;

use crate::index::query::QueryError;

/// Most filters in one `filters` aggregation.
pub const MAX_FILTERS: usize = 1024;

/// Separates an expanded filter's aggregation name from its index.
pub const EXPANDED_SEPARATOR: char = '\u{1}';

/// An ES query compiled for the searched partitions, handed to tantivy's `filter`
/// aggregation. Serializes as the ES query it came from; one read back from JSON has no
/// compiled query and fails to build (nothing here reads aggregations back from JSON).
#[derive(Debug, Serialize, Deserialize)]
pub struct CompiledFilter {
    query: Value,
    #[serde(skip)]
    compiled: Option<Box<dyn TantivyQuery>>,
}

impl CompiledFilter {
    pub fn new(query: Value, compiled: Box<dyn TantivyQuery>) -> CompiledFilter {
        CompiledFilter {
            query,
            compiled: Some(compiled),
        }
    }
}

impl Clone for CompiledFilter {
    fn clone(&self) -> Self {
        CompiledFilter {
            query: self.query.clone(),
            compiled: self.compiled.as_ref().map(|query| query.box_clone()),
        }
    }
}

#[typetag::serde(name = "lookout_es_query")]
impl QueryBuilder for CompiledFilter {
    fn build_query(
        &self,
        _schema: &Schema,
        _tokenizers: &TokenizerManager,
    ) -> tantivy::Result<Box<dyn TantivyQuery>> {
        self.compiled
            .as_ref()
            .map(|query| query.box_clone())
            .ok_or_else(|| {
                tantivy::TantivyError::InvalidArgument(
                    "a filter aggregation read back from JSON has no compiled query".into(),
                )
            })
    }

    fn box_clone(&self) -> Box<dyn QueryBuilder> {
        Box::new(self.clone())
    }
}

/// How the buckets of an expanded `filters` aggregation are put back.
#[derive(Debug, Clone, PartialEq)]
pub struct FiltersShape {
    /// The filters' names; none for anonymous (array) filters.
    pub names: Option<Vec<String>>,
    pub count: usize,
    /// The other bucket's key, when asked for.
    pub other: Option<String>,
    /// Named buckets as an object (ES' default) or as a list with `key`.
    pub keyed: bool,
}

/// Replaces the `filters` aggregation `name` at one level (`aggs`) by its expanded
/// `filter` aggregations; returns how to reassemble them.
pub fn expand(
    aggs: &mut Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<FiltersShape, QueryError> {
    let Some(Value::Object(mut definition)) = aggs.remove(name) else {
        return Err(QueryError::parsing(format!(
            "[{at}]: expected an aggregation object"
        )));
    };
    let sub = definition.remove("aggs");
    let Some(Value::Object(body)) = definition.remove("filters") else {
        return Err(QueryError::parsing(format!(
            "[{at}][filters]: expected an object like {{\"filters\": {{\"errors\": {{\"term\": {{\"level\": \"error\"}}}}}}}}"
        )));
    };
    if let Some(other) = definition.keys().find(|key| key.as_str() != "meta") {
        return Err(QueryError::parsing(format!(
            "[{at}]: found two aggregation types in one definition: [filters] and [{other}]"
        )));
    }
    let mut other_key = None;
    let mut other_wanted = false;
    let mut keyed = true;
    let mut filters = None;
    for (key, value) in body {
        match key.as_str() {
            "filters" => filters = Some(value),
            "other_bucket" => other_wanted = value.as_bool().unwrap_or(false),
            "other_bucket_key" => {
                other_key = Some(value.as_str().map(str::to_string).ok_or_else(|| {
                    QueryError::parsing(format!(
                        "[{at}][filters][other_bucket_key]: expected a string"
                    ))
                })?);
            }
            "keyed" => keyed = value.as_bool().unwrap_or(true),
            other => {
                return Err(QueryError::parsing(format!(
                    "[{at}][filters]: unknown key [{other}]; expected filters, other_bucket, other_bucket_key or keyed"
                )));
            }
        }
    }
    let (names, queries): (Option<Vec<String>>, Vec<Value>) = match filters {
        Some(Value::Object(named)) => {
            let (names, queries) = named.into_iter().unzip();
            (Some(names), queries)
        }
        Some(Value::Array(anonymous)) => (None, anonymous),
        _ => {
            return Err(QueryError::parsing(format!(
                "[{at}][filters]: `filters` must be an object of named queries or an array of queries"
            )));
        }
    };
    if queries.len() > MAX_FILTERS {
        return Err(QueryError::illegal_argument(format!(
            "[{at}][filters]: {} filters given; at most {MAX_FILTERS} are accepted",
            queries.len()
        )));
    }
    let other = (other_wanted || other_key.is_some())
        .then(|| other_key.unwrap_or_else(|| "_other_".to_string()));
    let with_sub = |filter: Value| {
        let mut expanded = Map::new();
        expanded.insert("filter".into(), filter);
        if let Some(sub) = &sub {
            expanded.insert("aggs".into(), sub.clone());
        }
        Value::Object(expanded)
    };
    if other.is_some() {
        let must_not = Value::Array(queries.clone());
        aggs.insert(
            format!("{name}{EXPANDED_SEPARATOR}other"),
            with_sub(json!({"bool": {"must_not": must_not}})),
        );
    }
    let count = queries.len();
    for (index, query) in queries.into_iter().enumerate() {
        aggs.insert(
            format!("{name}{EXPANDED_SEPARATOR}{index}"),
            with_sub(query),
        );
    }
    Ok(FiltersShape {
        names,
        count,
        other,
        keyed,
    })
}

/// Puts the expanded answers of the `filters` aggregation `name` back into one
/// `{"buckets": ...}` in `results` (one level of an aggregation answer); returns the
/// buckets, for their sub-aggregations to be shaped.
pub fn reassemble(results: &mut Map<String, Value>, name: &str, shape: &FiltersShape) {
    let mut take = |suffix: &str| {
        results
            .remove(&format!("{name}{EXPANDED_SEPARATOR}{suffix}"))
            .unwrap_or_else(|| json!({"doc_count": 0}))
    };
    let mut buckets: Vec<(Option<String>, Value)> = (0..shape.count)
        .map(|index| {
            let key = shape.names.as_ref().map(|names| names[index].clone());
            (key, take(&index.to_string()))
        })
        .collect();
    if let Some(other) = &shape.other {
        buckets.push((Some(other.clone()), take("other")));
    }
    let answer = if shape.names.is_some() && shape.keyed {
        Value::Object(
            buckets
                .into_iter()
                .map(|(key, bucket)| (key.unwrap_or_default(), bucket))
                .collect(),
        )
    } else {
        Value::Array(
            buckets
                .into_iter()
                .map(|(key, mut bucket)| {
                    if let (Some(key), Some(true), Value::Object(map)) =
                        (key, shape.names.as_ref().map(|_| true), &mut bucket)
                    {
                        map.insert("key".into(), Value::String(key));
                    }
                    bucket
                })
                .collect(),
        )
    };
    results.insert(name.to_string(), json!({ "buckets": answer }));
}

/// The buckets of an answer (`{"buckets": [...]}` or `{"buckets": {...}}`), mutably.
pub fn buckets_of(result: &mut Value) -> Vec<&mut Map<String, Value>> {
    match result.get_mut("buckets") {
        Some(Value::Array(buckets)) => buckets
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .collect(),
        Some(Value::Object(keyed)) => keyed
            .values_mut()
            .filter_map(Value::as_object_mut)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_filters_expand_and_reassemble_with_the_other_bucket() {
        let mut aggs = json!({"f": {"aggs": {"n": {"max": {"field": "x"}}},
            "filters": {"other_bucket": true, "filters": {"errors": {"term": {"level": "error"}}}}}});
        let level = aggs.as_object_mut().expect("object");
        let shape = expand(level, "f", "aggs][f").expect("valid");
        assert_eq!(shape.names.as_deref(), Some(&["errors".to_string()][..]));
        assert_eq!(
            level["f\u{1}0"],
            json!({"filter": {"term": {"level": "error"}}, "aggs": {"n": {"max": {"field": "x"}}}})
        );
        assert!(level.contains_key("f\u{1}other"));
        let mut results = json!({"f\u{1}0": {"doc_count": 2}, "f\u{1}other": {"doc_count": 5}});
        let results = results.as_object_mut().expect("object");
        reassemble(results, "f", &shape);
        assert_eq!(
            results["f"],
            json!({"buckets": {"errors": {"doc_count": 2}, "_other_": {"doc_count": 5}}})
        );
    }

    #[test]
    fn anonymous_filters_answer_a_list() {
        let mut aggs =
            json!({"f": {"filters": {"filters": [{"match_all": {}}, {"match_none": {}}]}}});
        let level = aggs.as_object_mut().expect("object");
        let shape = expand(level, "f", "f").expect("valid");
        let mut results = json!({"f\u{1}0": {"doc_count": 3}, "f\u{1}1": {"doc_count": 0}});
        let results = results.as_object_mut().expect("object");
        reassemble(results, "f", &shape);
        assert_eq!(
            results["f"],
            json!({"buckets": [{"doc_count": 3}, {"doc_count": 0}]})
        );
    }

    #[test]
    fn malformed_filters_are_refused_with_the_fix() {
        for bad in [
            json!({"f": {"filters": []}}),
            json!({"f": {"filters": {"filters": 3}}}),
            json!({"f": {"filters": {"filters": {}, "other": 1}}}),
            json!({"f": {"filters": {"filters": {}}, "terms": {"field": "x"}}}),
        ] {
            let mut aggs = bad.clone();
            let level = aggs.as_object_mut().expect("object");
            assert!(expand(level, "f", "f").is_err(), "{bad}");
        }
    }
}
