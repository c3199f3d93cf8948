//! Queries: the Elasticsearch query DSL and Lucene query strings, parsed into one [`Query`]
//! tree and compiled onto the log schema.
//!
//! `dsl` reads ES JSON, `lucene` reads `query_string` syntax, `date_math` resolves
//! `now-5m/m`, `compile` turns the tree into tantivy queries. Parsing never touches an
//! index; compiling needs only the schema, so a query is compiled once per search and run
//! on every partition.

mod column;
pub mod compile;
pub mod date_math;
pub mod dsl;
pub mod lucene;
pub mod request;

use std::ops::Bound;

/// How many query objects may nest in the DSL (`bool` in `bool` …), as Elasticsearch's
/// `indices.query.max_nested_depth` (30): deep nesting only overflows stacks.
pub const MAX_NESTED_DEPTH: usize = 30;

/// How many groups and `NOT`s may nest in one Lucene query string. Elasticsearch's
/// parser has no such limit (its thread stacks are large); ours keeps the deepest
/// accepted query, with [`MAX_NESTED_DEPTH`] DSL levels around it, within a small part
/// of a thread's stack ([`crate::THREAD_STACK_BYTES`]), whatever the size of the request.
pub const MAX_LUCENE_DEPTH: usize = 100;

/// How many clauses one query string may hold, as Elasticsearch's
/// `indices.query.bool.max_clause_count` (4096): a longer query is work, not a search.
pub const MAX_CLAUSES: usize = 4096;

/// What a clause names.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldRef {
    /// `@timestamp`, the event time.
    Timestamp,
    /// `_id`.
    Id,
    /// No field, or `*`: every string value, as words.
    All,
    /// A dotted path into the document. `keyword` when named as `path.keyword`.
    Path { path: String, keyword: bool },
}

impl FieldRef {
    /// Resolves a user-given field name.
    pub fn parse(name: &str, timestamp_field: &str) -> FieldRef {
        // NUL ends a path and 0x01 separates its segments in tantivy's term keys: a name
        // holding one would be read back as another path and a type code that does not
        // exist (tantivy panics). No field is named so; such a name matches nothing.
        if name.contains(['\0', '\u{1}']) {
            return FieldRef::Path {
                path: name.replace(['\0', '\u{1}'], "\u{fffd}"),
                keyword: false,
            };
        }
        match name {
            "" | "*" | "_all" => FieldRef::All,
            "_id" => FieldRef::Id,
            name if name == timestamp_field || name == "@timestamp" => FieldRef::Timestamp,
            name => match name.strip_suffix(".keyword") {
                Some(path) => FieldRef::Path {
                    path: path.to_string(),
                    keyword: true,
                },
                None => FieldRef::Path {
                    path: name.to_string(),
                    keyword: false,
                },
            },
        }
    }
}

/// What parsing needs from outside: the clock (for `now`) and the event-time field name.
#[derive(Debug, Clone)]
pub struct ParseContext {
    pub now_micros: i64,
    pub timestamp_field: String,
}

impl ParseContext {
    pub fn field(&self, name: &str) -> FieldRef {
        FieldRef::parse(name, &self.timestamp_field)
    }
}

/// A scalar as a query gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl Scalar {
    pub fn from_json(value: &serde_json::Value) -> Option<Scalar> {
        Some(match value {
            serde_json::Value::String(text) => Scalar::Str(text.clone()),
            serde_json::Value::Bool(flag) => Scalar::Bool(*flag),
            serde_json::Value::Number(number) => {
                if let Some(value) = number.as_i64() {
                    Scalar::I64(value)
                } else if let Some(value) = number.as_u64() {
                    Scalar::U64(value)
                } else {
                    Scalar::F64(number.as_f64()?)
                }
            }
            _ => return None,
        })
    }

    /// The value as text (how a keyword would hold it).
    pub fn as_text(&self) -> String {
        match self {
            Scalar::Str(text) => text.clone(),
            Scalar::I64(value) => value.to_string(),
            Scalar::U64(value) => value.to_string(),
            Scalar::F64(value) => value.to_string(),
            Scalar::Bool(value) => value.to_string(),
        }
    }

    /// The value as a number, if it is one or reads as one.
    pub fn as_number(&self) -> Option<Number> {
        match self {
            Scalar::I64(value) => Some(Number::I64(*value)),
            Scalar::U64(value) => Some(Number::U64(*value)),
            Scalar::F64(value) => Some(Number::F64(*value)),
            Scalar::Str(text) => Number::parse(text.trim()),
            Scalar::Bool(_) => None,
        }
    }
}

/// A number normalized as tantivy indexes JSON numbers: `i64` when it fits, then `u64`,
/// then `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    I64(i64),
    U64(u64),
    F64(f64),
}

impl Number {
    pub fn parse(text: &str) -> Option<Number> {
        if let Ok(value) = text.parse::<i64>() {
            return Some(Number::I64(value));
        }
        if let Ok(value) = text.parse::<u64>() {
            return Some(Number::U64(value));
        }
        let value = text.parse::<f64>().ok().filter(|value| value.is_finite())?;
        // "inf"/"nan" are not numbers a user means; reject words that f64 parses
        if text
            .chars()
            .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        {
            return None;
        }
        Some(Number::F64(value).normalize())
    }

    pub fn normalize(self) -> Number {
        match self {
            Number::F64(value)
                if value.fract() == 0.0 && value >= i64::MIN as f64 && value < i64::MAX as f64 =>
            {
                Number::I64(value as i64)
            }
            other => other,
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Number::I64(value) => value as f64,
            Number::U64(value) => value as f64,
            Number::F64(value) => value,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Or,
    And,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    MatchAll,
    MatchNone,
    /// Exact value: keyword, number or boolean.
    Term {
        field: FieldRef,
        value: Scalar,
        case_insensitive: bool,
    },
    Terms {
        field: FieldRef,
        values: Vec<Scalar>,
    },
    /// Analysed words of `text`, combined with `operator`.
    Match {
        field: FieldRef,
        text: String,
        operator: Operator,
        minimum_should_match: Option<MinimumShouldMatch>,
    },
    /// Words of `text` in order, at most `slop` positions apart.
    Phrase {
        field: FieldRef,
        text: String,
        slop: u32,
    },
    /// On `@timestamp` the bounds are microseconds (date math already resolved).
    Range {
        field: FieldRef,
        lower: Bound<Scalar>,
        upper: Bound<Scalar>,
    },
    Exists {
        field: FieldRef,
    },
    Prefix {
        field: FieldRef,
        prefix: String,
        case_insensitive: bool,
    },
    Wildcard {
        field: FieldRef,
        pattern: String,
        case_insensitive: bool,
    },
    Regexp {
        field: FieldRef,
        pattern: String,
        case_insensitive: bool,
    },
    Ids {
        values: Vec<String>,
    },
    Bool(BoolQuery),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BoolQuery {
    pub must: Vec<Query>,
    pub filter: Vec<Query>,
    pub should: Vec<Query>,
    pub must_not: Vec<Query>,
    pub minimum_should_match: Option<MinimumShouldMatch>,
}

/// `minimum_should_match` as ES accepts it: a count or a percentage, negative meaning
/// "all but".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinimumShouldMatch {
    Count(i64),
    Percent(i64),
}

impl MinimumShouldMatch {
    pub fn parse(value: &serde_json::Value) -> Option<MinimumShouldMatch> {
        match value {
            serde_json::Value::Number(number) => number.as_i64().map(MinimumShouldMatch::Count),
            serde_json::Value::String(text) => {
                let text = text.trim();
                match text.strip_suffix('%') {
                    Some(percent) => percent.trim().parse().ok().map(MinimumShouldMatch::Percent),
                    None => text.parse().ok().map(MinimumShouldMatch::Count),
                }
            }
            _ => None,
        }
    }

    /// How many of `clauses` optional clauses must match.
    pub fn resolve(self, clauses: usize) -> usize {
        let clauses_i = clauses as i64;
        let wanted = match self {
            MinimumShouldMatch::Count(count) if count < 0 => clauses_i + count,
            MinimumShouldMatch::Count(count) => count,
            MinimumShouldMatch::Percent(percent) if percent < 0 => {
                clauses_i - (clauses_i * -percent) / 100
            }
            MinimumShouldMatch::Percent(percent) => (clauses_i * percent) / 100,
        };
        wanted.clamp(0, clauses_i) as usize
    }
}

impl Query {
    /// The event-time bounds (microseconds) every match must fall in, as far as the query
    /// says: a `@timestamp` range at the top or under `must`/`filter`. Used to open only
    /// the partitions that can hold a match.
    pub fn time_bounds(&self) -> (Bound<i64>, Bound<i64>) {
        let mut lower = Bound::Unbounded;
        let mut upper = Bound::Unbounded;
        self.narrow_time_bounds(&mut lower, &mut upper);
        (lower, upper)
    }

    fn narrow_time_bounds(&self, lower: &mut Bound<i64>, upper: &mut Bound<i64>) {
        match self {
            Query::Range {
                field: FieldRef::Timestamp,
                lower: range_lower,
                upper: range_upper,
            } => {
                if let Some(bound) = micros_bound(range_lower) {
                    *lower = tighter_lower(lower, bound);
                }
                if let Some(bound) = micros_bound(range_upper) {
                    *upper = tighter_upper(upper, bound);
                }
            }
            Query::Bool(bool_query) => {
                for clause in bool_query.must.iter().chain(&bool_query.filter) {
                    clause.narrow_time_bounds(lower, upper);
                }
            }
            _ => {}
        }
    }
}

fn micros_bound(bound: &Bound<Scalar>) -> Option<Bound<i64>> {
    match bound {
        Bound::Included(Scalar::I64(value)) => Some(Bound::Included(*value)),
        Bound::Excluded(Scalar::I64(value)) => Some(Bound::Excluded(*value)),
        _ => None,
    }
}

fn tighter_lower(current: &Bound<i64>, new: Bound<i64>) -> Bound<i64> {
    let key = |bound: &Bound<i64>| match bound {
        Bound::Unbounded => (i64::MIN, 0),
        Bound::Included(value) => (*value, 0),
        Bound::Excluded(value) => (*value, 1),
    };
    if key(&new) > key(current) {
        new
    } else {
        *current
    }
}

fn tighter_upper(current: &Bound<i64>, new: Bound<i64>) -> Bound<i64> {
    let key = |bound: &Bound<i64>| match bound {
        Bound::Unbounded => (i64::MAX, 1),
        Bound::Included(value) => (*value, 1),
        Bound::Excluded(value) => (*value, 0),
    };
    if key(&new) < key(current) {
        new
    } else {
        *current
    }
}

/// A query that cannot be run, and where it went wrong.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{reason}")]
pub struct QueryError {
    /// ES error type (`parsing_exception`, `query_shard_exception`, …).
    pub kind: &'static str,
    pub reason: String,
}

impl QueryError {
    pub fn parsing(reason: impl Into<String>) -> QueryError {
        QueryError {
            kind: "parsing_exception",
            reason: reason.into(),
        }
    }

    pub fn illegal_argument(reason: impl Into<String>) -> QueryError {
        QueryError {
            kind: "illegal_argument_exception",
            reason: reason.into(),
        }
    }

    pub fn shard(reason: impl Into<String>) -> QueryError {
        QueryError {
            kind: "query_shard_exception",
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_should_match_follows_elasticsearch() {
        assert_eq!(MinimumShouldMatch::Count(2).resolve(3), 2);
        assert_eq!(MinimumShouldMatch::Count(-1).resolve(3), 2);
        assert_eq!(MinimumShouldMatch::Percent(75).resolve(4), 3);
        assert_eq!(MinimumShouldMatch::Percent(-25).resolve(4), 3);
        assert_eq!(MinimumShouldMatch::Count(9).resolve(3), 3);
    }

    #[test]
    fn numbers_normalize_like_tantivy_json() {
        assert_eq!(Number::parse("500"), Some(Number::I64(500)));
        assert_eq!(Number::parse("500.0"), Some(Number::I64(500)));
        assert_eq!(Number::parse("0.25"), Some(Number::F64(0.25)));
        assert_eq!(Number::parse("nan"), None);
        assert_eq!(Number::parse("checkout"), None);
    }
}
