//! The Elasticsearch query DSL (JSON) → [`Query`].
//!
//! Errors name the JSON path of the bad clause (`[bool][must][1][range][@timestamp]`) and
//! what to write instead, as ES' `parsing_exception` does with line and column.

use std::ops::Bound;

use serde_json::{Map, Value};

use super::date_math::{Rounding, parse_micros};
use super::lucene::{self, LuceneOptions};
// callers name it `dsl::ParseContext`; it lives in `query` so `lucene` needs nothing here
pub use super::ParseContext;
use super::{
    BoolQuery, FieldRef, MAX_NESTED_DEPTH, MinimumShouldMatch, Operator, Query, QueryError, Scalar,
};

const QUERY_NAMES: &[&str] = &[
    "match_all",
    "match_none",
    "match",
    "match_phrase",
    "multi_match",
    "term",
    "terms",
    "range",
    "exists",
    "prefix",
    "wildcard",
    "regexp",
    "ids",
    "bool",
    "query_string",
    "simple_query_string",
    "constant_score",
];

/// Parses one query object (`{"match": {...}}`).
pub fn parse_query(value: &Value, context: &ParseContext) -> Result<Query, QueryError> {
    parse_at(value, context, "", 1)
}

/// Parses the query object at JSON path `at`, the `depth`-th query object from the root.
fn parse_at(
    value: &Value,
    context: &ParseContext,
    at: &str,
    depth: usize,
) -> Result<Query, QueryError> {
    if depth > MAX_NESTED_DEPTH {
        return Err(QueryError::illegal_argument(format!(
            "The nested depth of the query exceeds the maximum nested depth for queries set in [indices.query.max_nested_depth] ({MAX_NESTED_DEPTH}) at {at}"
        )));
    }
    let object = value.as_object().ok_or_else(|| {
        QueryError::parsing(format!(
            "{at}: a query must be an object like {{\"match_all\": {{}}}}, got {}",
            kind_of(value)
        ))
    })?;
    let mut entries = object.iter();
    let (name, body) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        (None, _) => {
            return Err(QueryError::parsing(format!(
                "{at}: empty query object; use {{\"match_all\": {{}}}}"
            )));
        }
        (Some((first, _)), Some((second, _))) => {
            return Err(QueryError::parsing(format!(
                "{at}: [{first}] malformed query, expected [END_OBJECT] but found [{second}]: put each query in its own object inside a `bool`"
            )));
        }
    };
    let at = format!("{at}[{name}]");
    match name.as_str() {
        "match_all" => Ok(Query::MatchAll),
        "match_none" => Ok(Query::MatchNone),
        "match" => parse_match(body, context, &at),
        "match_phrase" => {
            let (field, options) = single_field(body, &at)?;
            let (text, options) = query_and_options(options, &at)?;
            let slop = options
                .and_then(|map| map.get("slop"))
                .map(|slop| {
                    slop.as_u64().ok_or_else(|| {
                        QueryError::parsing(format!("{at}[slop]: expected a non-negative number"))
                    })
                })
                .transpose()?
                .unwrap_or(0);
            Ok(Query::Phrase {
                field: context.field(field),
                text: text.as_text(),
                slop: u32::try_from(slop).unwrap_or(u32::MAX),
            })
        }
        "multi_match" => parse_multi_match(body, context, &at),
        "term" => {
            let (field, options) = single_field(body, &at)?;
            let (value, options) = value_and_options(options, &["value"], &at)?;
            Ok(Query::Term {
                field: context.field(field),
                value,
                case_insensitive: flag(options, "case_insensitive", &at)?,
            })
        }
        "terms" => {
            let map = object_of(body, &at)?;
            let mut field_values = map.iter().filter(|(key, _)| key.as_str() != "boost");
            let (field, values) = match (field_values.next(), field_values.next()) {
                (Some(entry), None) => entry,
                _ => {
                    return Err(QueryError::parsing(format!(
                        "{at}: expected exactly one field, like {{\"terms\": {{\"status\": [500, 503]}}}}"
                    )));
                }
            };
            let values = values
                .as_array()
                .ok_or_else(|| {
                    QueryError::parsing(format!("{at}[{field}]: expected an array of values"))
                })?
                .iter()
                .map(|value| {
                    Scalar::from_json(value).ok_or_else(|| {
                        QueryError::parsing(format!(
                            "{at}[{field}]: values must be strings, numbers or booleans"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Query::Terms {
                field: context.field(field),
                values,
            })
        }
        "range" => parse_range(body, context, &at),
        "exists" => {
            let map = object_of(body, &at)?;
            let field = map.get("field").and_then(Value::as_str).ok_or_else(|| {
                QueryError::parsing(format!("{at}: expected {{\"field\": \"NAME\"}}"))
            })?;
            Ok(Query::Exists {
                field: context.field(field),
            })
        }
        "prefix" => {
            let (field, options) = single_field(body, &at)?;
            let (value, options) = value_and_options(options, &["value", "prefix"], &at)?;
            Ok(Query::Prefix {
                field: context.field(field),
                prefix: value.as_text(),
                case_insensitive: flag(options, "case_insensitive", &at)?,
            })
        }
        "wildcard" => {
            let (field, options) = single_field(body, &at)?;
            let (value, options) = value_and_options(options, &["value", "wildcard"], &at)?;
            Ok(Query::Wildcard {
                field: context.field(field),
                pattern: value.as_text(),
                case_insensitive: flag(options, "case_insensitive", &at)?,
            })
        }
        "regexp" => {
            let (field, options) = single_field(body, &at)?;
            let (value, options) = value_and_options(options, &["value"], &at)?;
            Ok(Query::Regexp {
                field: context.field(field),
                pattern: value.as_text(),
                case_insensitive: flag(options, "case_insensitive", &at)?,
            })
        }
        "ids" => {
            let map = object_of(body, &at)?;
            let values = map
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    QueryError::parsing(format!("{at}: expected {{\"values\": [\"id\", …]}}"))
                })?
                .iter()
                .map(|value| match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect();
            Ok(Query::Ids { values })
        }
        "bool" => parse_bool(body, context, &at, depth),
        "constant_score" => {
            let map = object_of(body, &at)?;
            let filter = map
                .get("filter")
                .ok_or_else(|| QueryError::parsing(format!("{at}: expected a `filter`")))?;
            parse_at(filter, context, &format!("{at}[filter]"), depth + 1)
        }
        "query_string" | "simple_query_string" => {
            let map = object_of(body, &at)?;
            let text = map.get("query").and_then(Value::as_str).ok_or_else(|| {
                QueryError::parsing(format!("{at}: expected {{\"query\": \"LUCENE QUERY\"}}"))
            })?;
            let mut options = LuceneOptions {
                lenient: name == "simple_query_string",
                ..LuceneOptions::default()
            };
            if let Some(field) = map.get("default_field").and_then(Value::as_str) {
                options.default_fields = vec![field.to_string()];
            }
            if let Some(fields) = map.get("fields").and_then(Value::as_array) {
                options.default_fields = fields
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|field| field.split('^').next().unwrap_or(field).to_string())
                    .collect();
            }
            if let Some(operator) = map.get("default_operator") {
                options.default_operator = parse_operator(operator, &at)?;
            }
            lucene::parse(text, context, &options)
        }
        other => Err(QueryError::parsing(format!(
            "unknown query [{other}] at {at}; known queries: {}",
            QUERY_NAMES.join(", ")
        ))),
    }
}

fn parse_match(body: &Value, context: &ParseContext, at: &str) -> Result<Query, QueryError> {
    let (field, options) = single_field(body, at)?;
    let (text, options) = query_and_options(options, at)?;
    let mut operator = Operator::Or;
    let mut minimum_should_match = None;
    if let Some(options) = options {
        if let Some(value) = options.get("operator") {
            operator = parse_operator(value, at)?;
        }
        if let Some(value) = options.get("minimum_should_match") {
            minimum_should_match = Some(MinimumShouldMatch::parse(value).ok_or_else(|| {
                QueryError::parsing(format!("{at}[minimum_should_match]: expected a count like 2 or a percentage like \"75%\""))
            })?);
        }
    }
    Ok(Query::Match {
        field: context.field(field),
        text: text.as_text(),
        operator,
        minimum_should_match,
    })
}

fn parse_multi_match(body: &Value, context: &ParseContext, at: &str) -> Result<Query, QueryError> {
    let map = object_of(body, at)?;
    let text = map
        .get("query")
        .and_then(Scalar::from_json)
        .ok_or_else(|| {
            QueryError::parsing(format!(
                "{at}: expected {{\"query\": \"TEXT\", \"fields\": [...]}}"
            ))
        })?
        .as_text();
    let fields: Vec<String> = match map.get("fields") {
        Some(Value::Array(fields)) => fields
            .iter()
            .filter_map(Value::as_str)
            .map(|field| field.split('^').next().unwrap_or(field).to_string())
            .collect(),
        Some(_) => {
            return Err(QueryError::parsing(format!(
                "{at}[fields]: expected an array of field names"
            )));
        }
        None => vec!["*".to_string()],
    };
    let operator = map
        .get("operator")
        .map(|value| parse_operator(value, at))
        .transpose()?
        .unwrap_or(Operator::Or);
    let phrase = match map.get("type").and_then(Value::as_str) {
        None | Some("best_fields" | "most_fields" | "cross_fields" | "bool_prefix") => false,
        Some("phrase" | "phrase_prefix") => true,
        Some(other) => {
            return Err(QueryError::parsing(format!(
                "{at}[type]: unknown multi_match type `{other}`"
            )));
        }
    };
    let should = fields
        .iter()
        .map(|field| {
            if phrase {
                Query::Phrase {
                    field: context.field(field),
                    text: text.clone(),
                    slop: 0,
                }
            } else {
                Query::Match {
                    field: context.field(field),
                    text: text.clone(),
                    operator,
                    minimum_should_match: None,
                }
            }
        })
        .collect();
    Ok(Query::Bool(BoolQuery {
        should,
        ..BoolQuery::default()
    }))
}

fn parse_range(body: &Value, context: &ParseContext, at: &str) -> Result<Query, QueryError> {
    let (field_name, options) = single_field(body, at)?;
    let field = context.field(field_name);
    let at = format!("{at}[{field_name}]");
    let options = options.as_object().ok_or_else(|| {
        QueryError::parsing(format!(
            "{at}: expected bounds like {{\"gte\": 500, \"lt\": 600}}"
        ))
    })?;
    let format = options.get("format").and_then(Value::as_str);
    let mut lower = Bound::Unbounded;
    let mut upper = Bound::Unbounded;
    let include_lower = options
        .get("include_lower")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let include_upper = options
        .get("include_upper")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    for (key, value) in options {
        if value.is_null() {
            continue;
        }
        let (is_lower, inclusive) = match key.as_str() {
            "gte" => (true, true),
            "gt" => (true, false),
            "lte" => (false, true),
            "lt" => (false, false),
            "from" => (true, include_lower),
            "to" => (false, include_upper),
            "format" | "time_zone" | "boost" | "relation" | "include_lower" | "include_upper" => {
                continue;
            }
            other => {
                return Err(QueryError::parsing(format!(
                    "{at}: unknown range option [{other}]; use gt, gte, lt, lte, format"
                )));
            }
        };
        let scalar = Scalar::from_json(value).ok_or_else(|| {
            QueryError::parsing(format!("{at}[{key}]: expected a string, number or date"))
        })?;
        let scalar = if field == FieldRef::Timestamp {
            // gt and lte round up; gte and lt round down (ES' rule for date math rounding)
            let rounding = if is_lower != inclusive {
                Rounding::Up
            } else {
                Rounding::Down
            };
            let micros = match &scalar {
                Scalar::I64(millis) if format != Some("epoch_second") => {
                    millis.saturating_mul(1000)
                }
                other => parse_micros(&other.as_text(), context.now_micros, rounding, format)
                    .map_err(|error| {
                        QueryError::parsing(format!("{at}[{key}]: {}", error.reason))
                    })?,
            };
            Scalar::I64(micros)
        } else {
            scalar
        };
        let bound = if inclusive {
            Bound::Included(scalar)
        } else {
            Bound::Excluded(scalar)
        };
        if is_lower {
            lower = bound
        } else {
            upper = bound
        }
    }
    Ok(Query::Range {
        field,
        lower,
        upper,
    })
}

fn parse_bool(
    body: &Value,
    context: &ParseContext,
    at: &str,
    depth: usize,
) -> Result<Query, QueryError> {
    let map = object_of(body, at)?;
    let mut query = BoolQuery::default();
    for (key, value) in map {
        let target = match key.as_str() {
            "must" => &mut query.must,
            "filter" => &mut query.filter,
            "should" => &mut query.should,
            "must_not" => &mut query.must_not,
            "minimum_should_match" => {
                query.minimum_should_match = Some(MinimumShouldMatch::parse(value).ok_or_else(|| {
                    QueryError::parsing(format!("{at}[minimum_should_match]: expected a count like 1 or a percentage like \"50%\""))
                })?);
                continue;
            }
            "boost" | "_name" | "adjust_pure_negative" => continue,
            other => {
                return Err(QueryError::parsing(format!(
                    "{at}: [bool] query does not support [{other}]; use must, filter, should, must_not, minimum_should_match"
                )));
            }
        };
        match value {
            Value::Array(items) => {
                for (position, item) in items.iter().enumerate() {
                    target.push(parse_at(
                        item,
                        context,
                        &format!("{at}[{key}][{position}]"),
                        depth + 1,
                    )?);
                }
            }
            item => target.push(parse_at(item, context, &format!("{at}[{key}]"), depth + 1)?),
        }
    }
    Ok(Query::Bool(query))
}

fn parse_operator(value: &Value, at: &str) -> Result<Operator, QueryError> {
    match value.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("or") => Ok(Operator::Or),
        Some("and") => Ok(Operator::And),
        _ => Err(QueryError::parsing(format!(
            "{at}[operator]: expected \"and\" or \"or\", got {value}"
        ))),
    }
}

fn object_of<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, QueryError> {
    value.as_object().ok_or_else(|| {
        QueryError::parsing(format!("{at}: expected an object, got {}", kind_of(value)))
    })
}

/// `{"FIELD": OPTIONS}` with one field (ES' single-field query shape).
fn single_field<'a>(value: &'a Value, at: &str) -> Result<(&'a str, &'a Value), QueryError> {
    let map = object_of(value, at)?;
    let mut fields = map
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "boost" | "_name"));
    match (fields.next(), fields.next()) {
        (Some((field, options)), None) => Ok((field, options)),
        (None, _) => Err(QueryError::parsing(format!(
            "{at}: expected a field, like {{\"status\": 500}}"
        ))),
        (Some((first, _)), Some((second, _))) => Err(QueryError::parsing(format!(
            "{at}: query doesn't support multiple fields, found [{first}] and [{second}]; combine them in a `bool`"
        ))),
    }
}

/// A clause's value and, when given in object form, its options.
type ValueWithOptions<'a> = (Scalar, Option<&'a Map<String, Value>>);

/// A scalar given directly (`"error"`) or as `{"query": "error", …options}`.
fn query_and_options<'a>(value: &'a Value, at: &str) -> Result<ValueWithOptions<'a>, QueryError> {
    value_and_options(value, &["query"], at)
}

fn value_and_options<'a>(
    value: &'a Value,
    keys: &[&str],
    at: &str,
) -> Result<ValueWithOptions<'a>, QueryError> {
    if let Some(scalar) = Scalar::from_json(value) {
        return Ok((scalar, None));
    }
    let map = value.as_object().ok_or_else(|| {
        QueryError::parsing(format!(
            "{at}: expected a value or an object with [{}]",
            keys.join("] or [")
        ))
    })?;
    let scalar = keys
        .iter()
        .find_map(|key| map.get(*key))
        .and_then(Scalar::from_json)
        .ok_or_else(|| QueryError::parsing(format!("{at}: missing [{}]", keys[0])))?;
    Ok((scalar, Some(map)))
}

fn flag(options: Option<&Map<String, Value>>, key: &str, at: &str) -> Result<bool, QueryError> {
    match options.and_then(|map| map.get(key)) {
        None => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(other) => Err(QueryError::parsing(format!(
            "{at}[{key}]: expected true or false, got {other}"
        ))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> ParseContext {
        ParseContext {
            now_micros: 1_714_558_662_000_000,
            timestamp_field: "@timestamp".into(),
        }
    }

    #[test]
    fn parses_the_common_clauses() {
        let query = parse_query(
            &json!({"bool": {
                "must": [{"match": {"message": "timeout"}}],
                "filter": {"range": {"@timestamp": {"gte": "now-5m"}}},
                "must_not": [{"term": {"service.keyword": "cart"}}],
                "should": [{"terms": {"status": [500, "503"]}}]
            }}),
            &context(),
        )
        .expect("valid");
        let Query::Bool(bool_query) = query else {
            panic!("not a bool")
        };
        assert_eq!(bool_query.must.len(), 1);
        assert_eq!(
            bool_query.filter[0],
            Query::Range {
                field: FieldRef::Timestamp,
                lower: Bound::Included(Scalar::I64(1_714_558_662_000_000 - 300_000_000)),
                upper: Bound::Unbounded,
            }
        );
        assert_eq!(
            bool_query.must_not[0],
            Query::Term {
                field: FieldRef::Path {
                    path: "service".into(),
                    keyword: true
                },
                value: Scalar::Str("cart".into()),
                case_insensitive: false,
            }
        );
    }

    #[test]
    fn unknown_query_names_the_clause_and_where_it_is() {
        let error = parse_query(&json!({"bool": {"must": [{"mtch": {"a": 1}}]}}), &context())
            .expect_err("unknown");
        assert_eq!(error.kind, "parsing_exception");
        assert!(
            error.reason.contains("unknown query [mtch]"),
            "{}",
            error.reason
        );
        assert!(error.reason.contains("[bool][must][0]"), "{}", error.reason);
    }

    #[test]
    fn bad_date_math_in_range_is_reported_with_its_path() {
        let error = parse_query(
            &json!({"range": {"@timestamp": {"gte": "now-5q"}}}),
            &context(),
        )
        .expect_err("bad date math");
        assert!(
            error.reason.contains("[range][@timestamp][gte]"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn nesting_past_elasticsearchs_limit_is_refused_with_its_message() {
        let nested = |levels: usize| {
            (1..levels).fold(
                json!({"term": {"a": 1}}),
                |inner, _| json!({"bool": {"must": [inner]}}),
            )
        };
        parse_query(&nested(MAX_NESTED_DEPTH), &context()).expect("at the limit");
        let error = parse_query(&nested(MAX_NESTED_DEPTH + 1), &context()).expect_err("past it");
        assert_eq!(error.kind, "illegal_argument_exception");
        assert!(
            error.reason.starts_with(
                "The nested depth of the query exceeds the maximum nested depth for queries set in [indices.query.max_nested_depth]"
            ),
            "{error:?}"
        );
        let filtered = (1..MAX_NESTED_DEPTH + 1).fold(
            json!({"match_all": {}}),
            |inner, _| json!({"constant_score": {"filter": inner}}),
        );
        assert!(parse_query(&filtered, &context()).is_err());
    }

    #[test]
    fn two_queries_in_one_object_are_rejected() {
        assert!(parse_query(&json!({"match_all": {}, "term": {"a": 1}}), &context()).is_err());
    }
}
