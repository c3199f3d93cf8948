//! Lucene query-string syntax (`query_string`, `simple_query_string`, the `q=` parameter
//! and saved rules' `query`) → [`Query`].
//!
//! Hand-written rather than tantivy's `QueryParser`: ours has to know the log schema's
//! dual mapping (`status:500` matches the number and the string), `_exists_:`, `.keyword`
//! and date math on `@timestamp`, and must report errors at their column.
//!
//! Grammar (precedence low to high): `a OR b`, `a AND b` (juxtaposition follows the
//! default operator), `NOT a` / `-a` / `+a` / `!a`, then `(…)`, `field:value`,
//! `field:(…)`, `"phrase"~slop`, `[a TO b]`, `{a TO b}`, `>=a`, `/regex/`, `wild*card`,
//! `field:*`, `_exists_:field`, `value^boost` (boost ignored).

use std::ops::Bound;

use super::date_math::{Rounding, parse_micros};
use super::dsl::ParseContext;
use super::{
    BoolQuery, FieldRef, MAX_CLAUSES, MAX_LUCENE_DEPTH, Operator, Query, QueryError, Scalar,
};

#[derive(Debug, Clone)]
pub struct LuceneOptions {
    /// Fields searched by a value without `field:`; `*` means every string value.
    pub default_fields: Vec<String>,
    pub default_operator: Operator,
    /// `simple_query_string`: never fail; fall back to plain words.
    pub lenient: bool,
}

impl Default for LuceneOptions {
    fn default() -> Self {
        LuceneOptions {
            default_fields: vec!["*".to_string()],
            default_operator: Operator::Or,
            lenient: false,
        }
    }
}

/// Parses `text`. An empty string matches everything.
pub fn parse(
    text: &str,
    context: &ParseContext,
    options: &LuceneOptions,
) -> Result<Query, QueryError> {
    if text.trim().is_empty() || text.trim() == "*" {
        return Ok(Query::MatchAll);
    }
    let mut parser = Parser {
        chars: text.chars().collect(),
        position: 0,
        depth: 0,
        clauses: 0,
        text,
        context,
        options,
    };
    match parser.parse_all() {
        Ok(query) => Ok(query),
        Err(error) if options.lenient => {
            tracing::debug!(%error, "simple_query_string fell back to words");
            Ok(Query::Match {
                field: FieldRef::All,
                text: text.to_string(),
                operator: options.default_operator,
                minimum_should_match: None,
            })
        }
        Err(error) => Err(error),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Occur {
    Should,
    Must,
    MustNot,
}

struct Parser<'a> {
    chars: Vec<char>,
    position: usize,
    /// Groups and `NOT`s open around the position, at most [`MAX_LUCENE_DEPTH`].
    depth: usize,
    /// Terms, phrases and ranges read so far, at most [`MAX_CLAUSES`].
    clauses: usize,
    text: &'a str,
    context: &'a ParseContext,
    options: &'a LuceneOptions,
}

const SPECIAL: &[char] = &['(', ')', '[', ']', '{', '}', ':', '^', '~', '"', '\\', '/'];

impl Parser<'_> {
    fn error(&self, what: impl std::fmt::Display) -> QueryError {
        QueryError::shard(format!(
            "failed to parse query [{}]: {what} at column {}",
            self.text,
            self.position + 1
        ))
    }

    /// Opens one more level of nesting, refusing past [`MAX_LUCENE_DEPTH`].
    fn descend(&mut self) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_LUCENE_DEPTH {
            return Err(self.error(format!(
                "more than {MAX_LUCENE_DEPTH} nested groups or `NOT`s; flatten the query (`a OR b OR c` needs no parentheses)"
            )));
        }
        Ok(())
    }

    /// Counts one more clause, refusing past [`MAX_CLAUSES`].
    fn count_clause(&mut self) -> Result<(), QueryError> {
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return Err(self.error(format!(
                "more than {MAX_CLAUSES} clauses (indices.query.bool.max_clause_count); use a `terms` query for long lists of values"
            )));
        }
        Ok(())
    }

    fn parse_all(&mut self) -> Result<Query, QueryError> {
        let query = self.parse_or(None)?;
        self.skip_spaces();
        if self.position < self.chars.len() {
            return Err(self.error(format!("unexpected `{}`", self.chars[self.position])));
        }
        Ok(query)
    }

    fn skip_spaces(&mut self) {
        while self
            .chars
            .get(self.position)
            .is_some_and(|c| c.is_whitespace())
        {
            self.position += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    /// True (and consumes it) when the next word is the keyword `word` or its symbol.
    fn eat_keyword(&mut self, word: &str, symbol: &str) -> bool {
        self.skip_spaces();
        let rest: String = self.chars[self.position..]
            .iter()
            .take(word.len() + 1)
            .collect();
        if rest.starts_with(word)
            && rest[word.len()..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == '(')
        {
            self.position += word.len();
            return true;
        }
        if rest.starts_with(symbol) {
            self.position += symbol.chars().count();
            return true;
        }
        false
    }

    fn at_group_end(&mut self) -> bool {
        self.skip_spaces();
        matches!(self.peek(), None | Some(')'))
    }

    /// `a OR b …`; juxtaposed clauses join here when the default operator is OR.
    fn parse_or(&mut self, field: Option<&str>) -> Result<Query, QueryError> {
        let mut clauses: Vec<(Occur, Query)> = Vec::new();
        loop {
            let clause = self.parse_and(field)?;
            clauses.push(clause);
            if self.at_group_end() {
                break;
            }
            if self.eat_keyword("OR", "||") {
                continue;
            }
            if self.options.default_operator == Operator::Or {
                continue;
            }
            return Err(self.error("expected an operator"));
        }
        Ok(combine(clauses))
    }

    /// `a AND b …`; juxtaposed clauses join here when the default operator is AND.
    fn parse_and(&mut self, field: Option<&str>) -> Result<(Occur, Query), QueryError> {
        let mut clauses = vec![self.parse_unary(field)?];
        loop {
            if self.at_group_end() {
                break;
            }
            let save = self.position;
            if self.eat_keyword("AND", "&&") {
                let (occur, query) = self.parse_unary(field)?;
                clauses.push((
                    if occur == Occur::Should {
                        Occur::Must
                    } else {
                        occur
                    },
                    query,
                ));
                continue;
            }
            if self.eat_keyword("OR", "||") {
                self.position = save;
                break;
            }
            if self.options.default_operator == Operator::And {
                let (occur, query) = self.parse_unary(field)?;
                clauses.push((
                    if occur == Occur::Should {
                        Occur::Must
                    } else {
                        occur
                    },
                    query,
                ));
                continue;
            }
            break;
        }
        if clauses.len() == 1 {
            return Ok(clauses.remove(0));
        }
        let clauses = clauses
            .into_iter()
            .map(|(occur, query)| {
                (
                    if occur == Occur::Should {
                        Occur::Must
                    } else {
                        occur
                    },
                    query,
                )
            })
            .collect();
        Ok((Occur::Should, combine(clauses)))
    }

    fn parse_unary(&mut self, field: Option<&str>) -> Result<(Occur, Query), QueryError> {
        self.skip_spaces();
        if self.eat_keyword("NOT", "!") {
            self.descend()?;
            let (_, query) = self.parse_unary(field)?;
            self.depth -= 1;
            return Ok((Occur::MustNot, query));
        }
        match self.peek() {
            Some('-') => {
                self.position += 1;
                Ok((Occur::MustNot, self.parse_primary(field)?))
            }
            Some('+') => {
                self.position += 1;
                Ok((Occur::Must, self.parse_primary(field)?))
            }
            _ => Ok((Occur::Should, self.parse_primary(field)?)),
        }
    }

    fn parse_primary(&mut self, field: Option<&str>) -> Result<Query, QueryError> {
        self.skip_spaces();
        let query = match self.peek() {
            None => return Err(self.error("expected a term, phrase or `(`")),
            Some('(') => {
                self.descend()?;
                self.position += 1;
                let query = self.parse_or(field)?;
                self.depth -= 1;
                self.skip_spaces();
                if self.peek() != Some(')') {
                    return Err(self.error("expected `)`"));
                }
                self.position += 1;
                query
            }
            Some(')') => return Err(self.error("unexpected `)`")),
            Some(_) if field.is_none() => {
                // `field:` or a bare value
                let start = self.position;
                if !matches!(self.peek(), Some('"' | '[' | '{' | '/' | '>' | '<')) {
                    let name = self.read_term()?;
                    self.skip_spaces_inline();
                    if self.peek() == Some(':') && !name.is_empty() {
                        self.position += 1;
                        return self.parse_field_value(&name);
                    }
                    self.position = start;
                }
                self.parse_value(None)?
            }
            Some(_) => self.parse_value(field)?,
        };
        self.skip_boost()?;
        Ok(query)
    }

    fn skip_spaces_inline(&mut self) {
        // field names and `:` are never separated by spaces in Lucene; keep strict
    }

    fn skip_boost(&mut self) -> Result<(), QueryError> {
        if self.peek() == Some('^') {
            self.position += 1;
            let number = self.read_term()?;
            if number.parse::<f32>().is_err() {
                return Err(self.error(format!("boost `^{number}` is not a number")));
            }
        }
        Ok(())
    }

    fn parse_field_value(&mut self, name: &str) -> Result<Query, QueryError> {
        if name == "_exists_" {
            self.count_clause()?;
            let field = self.read_term()?;
            if field.is_empty() {
                return Err(self.error("expected a field name after `_exists_:`"));
            }
            return Ok(Query::Exists {
                field: self.context.field(&field),
            });
        }
        self.skip_spaces();
        if self.peek() == Some('(') {
            self.descend()?;
            self.position += 1;
            let query = self.parse_or(Some(name))?;
            self.depth -= 1;
            self.skip_spaces();
            if self.peek() != Some(')') {
                return Err(self.error("expected `)`"));
            }
            self.position += 1;
            return Ok(query);
        }
        self.parse_value(Some(name))
    }

    /// A value for `field` (or the default fields when `None`).
    fn parse_value(&mut self, field: Option<&str>) -> Result<Query, QueryError> {
        self.count_clause()?;
        self.skip_spaces();
        match self.peek() {
            Some('"') => {
                let text = self.read_quoted('"')?;
                let mut slop = 0;
                if self.peek() == Some('~') {
                    self.position += 1;
                    let digits = self.read_term()?;
                    slop = if digits.is_empty() {
                        2
                    } else {
                        digits
                            .parse()
                            .map_err(|_| self.error(format!("slop `~{digits}` is not a number")))?
                    };
                }
                Ok(self.for_fields(field, |field| Query::Phrase {
                    field,
                    text: text.clone(),
                    slop,
                }))
            }
            Some('/') => {
                let pattern = self.read_quoted('/')?;
                Ok(self.for_fields(field, |field| Query::Regexp {
                    field,
                    pattern: pattern.clone(),
                    case_insensitive: false,
                }))
            }
            Some('[' | '{') => self.parse_bracket_range(field),
            Some('>' | '<') => {
                let upper = self.peek() == Some('<');
                self.position += 1;
                let inclusive = self.peek() == Some('=');
                if inclusive {
                    self.position += 1;
                }
                let value = self.read_term()?;
                if value.is_empty() {
                    return Err(self.error("expected a value after the comparison"));
                }
                let field_name = field.unwrap_or("*");
                let (lower_text, upper_text) = if upper {
                    (None, Some(value))
                } else {
                    (Some(value), None)
                };
                self.range(field_name, lower_text, upper_text, inclusive, inclusive)
            }
            _ => {
                let (term, wildcard) = self.read_term_with_wildcards()?;
                if term.is_empty() {
                    return Err(self.error("expected a value"));
                }
                if self.peek() == Some('~') {
                    // fuzziness is accepted and ignored: the term must match exactly
                    self.position += 1;
                    let _ = self.read_term()?;
                }
                if term == "*" {
                    return Ok(match field {
                        Some(name) => Query::Exists {
                            field: self.context.field(name),
                        },
                        None => Query::MatchAll,
                    });
                }
                if wildcard {
                    if let Some(prefix) = term
                        .strip_suffix('*')
                        .filter(|prefix| !prefix.contains(['*', '?']))
                    {
                        return Ok(self.for_fields(field, |field| Query::Prefix {
                            field,
                            prefix: prefix.to_string(),
                            case_insensitive: false,
                        }));
                    }
                    return Ok(self.for_fields(field, |field| Query::Wildcard {
                        field,
                        pattern: term.clone(),
                        case_insensitive: false,
                    }));
                }
                Ok(self.for_fields(field, |field| match field {
                    FieldRef::Path { keyword: true, .. } | FieldRef::Id => Query::Term {
                        field,
                        value: Scalar::Str(term.clone()),
                        case_insensitive: false,
                    },
                    FieldRef::Timestamp => Query::Term {
                        field,
                        value: Scalar::Str(term.clone()),
                        case_insensitive: false,
                    },
                    field => Query::Phrase {
                        field,
                        text: term.clone(),
                        slop: 0,
                    },
                }))
            }
        }
    }

    fn parse_bracket_range(&mut self, field: Option<&str>) -> Result<Query, QueryError> {
        let include_lower = self.peek() == Some('[');
        self.position += 1;
        self.skip_spaces();
        let lower = if self.peek() == Some('"') {
            self.read_quoted('"')?
        } else {
            self.read_term()?
        };
        self.skip_spaces();
        if !self.eat_keyword("TO", "TO") {
            return Err(self.error("expected `TO` in range"));
        }
        self.skip_spaces();
        let upper = if self.peek() == Some('"') {
            self.read_quoted('"')?
        } else {
            self.read_term()?
        };
        self.skip_spaces();
        let include_upper = match self.peek() {
            Some(']') => true,
            Some('}') => false,
            _ => return Err(self.error("expected `]` or `}` to close the range")),
        };
        self.position += 1;
        let lower = (lower != "*").then_some(lower);
        let upper = (upper != "*").then_some(upper);
        self.range(
            field.unwrap_or("*"),
            lower,
            upper,
            include_lower,
            include_upper,
        )
    }

    fn range(
        &self,
        field_name: &str,
        lower: Option<String>,
        upper: Option<String>,
        include_lower: bool,
        include_upper: bool,
    ) -> Result<Query, QueryError> {
        let field = self.context.field(field_name);
        if field == FieldRef::All {
            return Err(self.error("a range needs a field, like `status:[500 TO 599]`"));
        }
        let bound = |text: Option<String>,
                     inclusive: bool,
                     is_lower: bool|
         -> Result<Bound<Scalar>, QueryError> {
            let Some(text) = text else {
                return Ok(Bound::Unbounded);
            };
            let scalar = if field == FieldRef::Timestamp {
                let rounding = if is_lower != inclusive {
                    Rounding::Up
                } else {
                    Rounding::Down
                };
                Scalar::I64(
                    parse_micros(&text, self.context.now_micros, rounding, None)
                        .map_err(|error| self.error(error.reason))?,
                )
            } else {
                match super::Number::parse(&text) {
                    Some(super::Number::I64(value)) => Scalar::I64(value),
                    Some(super::Number::U64(value)) => Scalar::U64(value),
                    Some(super::Number::F64(value)) => Scalar::F64(value),
                    None => Scalar::Str(text),
                }
            };
            Ok(if inclusive {
                Bound::Included(scalar)
            } else {
                Bound::Excluded(scalar)
            })
        };
        Ok(Query::Range {
            lower: bound(lower, include_lower, true)?,
            upper: bound(upper, include_upper, false)?,
            field,
        })
    }

    /// Applies `make` to the named field, or to every default field.
    fn for_fields(&self, field: Option<&str>, make: impl Fn(FieldRef) -> Query) -> Query {
        match field {
            Some(name) => make(self.context.field(name)),
            None => {
                let mut queries: Vec<Query> = self
                    .options
                    .default_fields
                    .iter()
                    .map(|name| make(self.context.field(name)))
                    .collect();
                if queries.len() == 1 {
                    queries.remove(0)
                } else {
                    Query::Bool(BoolQuery {
                        should: queries,
                        ..BoolQuery::default()
                    })
                }
            }
        }
    }

    fn read_quoted(&mut self, quote: char) -> Result<String, QueryError> {
        let start = self.position;
        self.position += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => {
                    self.position = start;
                    return Err(self.error(format!("unterminated `{quote}`")));
                }
                Some('\\') => {
                    self.position += 1;
                    if let Some(next) = self.peek() {
                        if quote == '/' && next != '/' {
                            text.push('\\');
                        }
                        text.push(next);
                        self.position += 1;
                    }
                }
                Some(c) if c == quote => {
                    self.position += 1;
                    return Ok(text);
                }
                Some(c) => {
                    text.push(c);
                    self.position += 1;
                }
            }
        }
    }

    fn read_term(&mut self) -> Result<String, QueryError> {
        Ok(self.read_term_with_wildcards()?.0)
    }

    /// Reads a bare term up to whitespace or a special character; returns whether it had
    /// unescaped `*`/`?`.
    fn read_term_with_wildcards(&mut self) -> Result<(String, bool), QueryError> {
        let mut text = String::new();
        let mut wildcard = false;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || (SPECIAL.contains(&c) && c != '\\') {
                break;
            }
            if c == '\\' {
                self.position += 1;
                match self.peek() {
                    Some(next) => {
                        if matches!(next, '*' | '?') {
                            text.push('\\');
                        }
                        text.push(next);
                        self.position += 1;
                    }
                    None => return Err(self.error("a trailing `\\` escapes nothing")),
                }
                continue;
            }
            if matches!(c, '*' | '?') {
                wildcard = true;
            }
            text.push(c);
            self.position += 1;
        }
        if !wildcard {
            text = text.replace("\\*", "*").replace("\\?", "?");
        }
        Ok((text, wildcard))
    }
}

fn combine(mut clauses: Vec<(Occur, Query)>) -> Query {
    if clauses.len() == 1 && clauses[0].0 != Occur::MustNot {
        return clauses.remove(0).1;
    }
    let mut query = BoolQuery::default();
    for (occur, clause) in clauses {
        match occur {
            Occur::Should => query.should.push(clause),
            Occur::Must => query.must.push(clause),
            Occur::MustNot => query.must_not.push(clause),
        }
    }
    Query::Bool(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_default(text: &str) -> Result<Query, QueryError> {
        let context = ParseContext {
            now_micros: 1_000_000_000_000,
            timestamp_field: "@timestamp".into(),
        };
        parse(text, &context, &LuceneOptions::default())
    }

    fn path(name: &str) -> FieldRef {
        FieldRef::Path {
            path: name.into(),
            keyword: false,
        }
    }

    #[test]
    fn nesting_and_clauses_are_bounded_with_the_column_where_the_limit_passed() {
        let depth = MAX_LUCENE_DEPTH;
        std::thread::Builder::new()
            .stack_size(crate::THREAD_STACK_BYTES / 8)
            .spawn(move || {
                let nested =
                    |levels: usize| format!("{}a:1{}", "(".repeat(levels), ")".repeat(levels));
                parse_default(&nested(depth)).expect("at the limit");
                let error = parse_default(&nested(depth + 1)).expect_err("past it");
                assert!(
                    error
                        .reason
                        .contains(&format!("more than {depth} nested groups"))
                        && error.reason.contains(&format!("at column {}", depth + 1)),
                    "{error:?}"
                );
                for text in [
                    nested(100_000),
                    format!("{}a", "NOT ".repeat(100_000)),
                    format!("{}a", "!".repeat(100_000)),
                    format!("{}a{}", "f:(".repeat(100_000), ")".repeat(100_000)),
                ] {
                    assert!(parse_default(&text).is_err(), "{}", &text[..10]);
                }
                let options = LuceneOptions {
                    lenient: true,
                    ..LuceneOptions::default()
                };
                let context = ParseContext {
                    now_micros: 0,
                    timestamp_field: "@timestamp".into(),
                };
                parse(&nested(100_000), &context, &options).expect("lenient falls back to words");
            })
            .expect("thread")
            .join()
            .expect("no overflow");
        let clauses = |count: usize| vec!["a"; count].join(" OR ");
        parse_default(&clauses(MAX_CLAUSES)).expect("at the clause limit");
        let error = parse_default(&clauses(MAX_CLAUSES + 1)).expect_err("past it");
        assert!(error.reason.contains("max_clause_count"), "{error:?}");
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let query = parse_default("status:500 AND service:checkout OR level:error").expect("valid");
        let Query::Bool(top) = query else {
            panic!("bool")
        };
        assert_eq!(top.should.len(), 2);
        let Query::Bool(left) = &top.should[0] else {
            panic!("and group")
        };
        assert_eq!(left.must.len(), 2);
        assert_eq!(
            left.must[0],
            Query::Phrase {
                field: path("status"),
                text: "500".into(),
                slop: 0
            }
        );
    }

    #[test]
    fn parses_every_value_form() {
        let cases: Vec<(&str, Query)> = vec![
            (
                "_exists_:trace_id",
                Query::Exists {
                    field: path("trace_id"),
                },
            ),
            (
                "user:*",
                Query::Exists {
                    field: path("user"),
                },
            ),
            (
                "path:\\/api\\/*",
                Query::Prefix {
                    field: path("path"),
                    prefix: "/api/".into(),
                    case_insensitive: false,
                },
            ),
            (
                "host:web-?1",
                Query::Wildcard {
                    field: path("host"),
                    pattern: "web-?1".into(),
                    case_insensitive: false,
                },
            ),
            (
                "service.keyword:checkout",
                Query::Term {
                    field: FieldRef::Path {
                        path: "service".into(),
                        keyword: true,
                    },
                    value: Scalar::Str("checkout".into()),
                    case_insensitive: false,
                },
            ),
            (
                "status:[500 TO 599]",
                Query::Range {
                    field: path("status"),
                    lower: Bound::Included(Scalar::I64(500)),
                    upper: Bound::Included(Scalar::I64(599)),
                },
            ),
            (
                "latency:>=0.5",
                Query::Range {
                    field: path("latency"),
                    lower: Bound::Included(Scalar::F64(0.5)),
                    upper: Bound::Unbounded,
                },
            ),
            (
                "@timestamp:{now-1m TO *]",
                Query::Range {
                    field: FieldRef::Timestamp,
                    lower: Bound::Excluded(Scalar::I64(1_000_000_000_000 - 60_000_000)),
                    upper: Bound::Unbounded,
                },
            ),
            (
                "message:\"connection reset\"~2",
                Query::Phrase {
                    field: path("message"),
                    text: "connection reset".into(),
                    slop: 2,
                },
            ),
            (
                "path:/\\/api\\/.*/",
                Query::Regexp {
                    field: path("path"),
                    pattern: "/api/.*".into(),
                    case_insensitive: false,
                },
            ),
            (
                "timeout",
                Query::Phrase {
                    field: FieldRef::All,
                    text: "timeout".into(),
                    slop: 0,
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_default(text).expect(text), expected, "{text}");
        }
    }

    #[test]
    fn negation_and_groups() {
        let query = parse_default("status:(500 OR 503) -service:cart").expect("valid");
        let Query::Bool(top) = query else {
            panic!("bool")
        };
        assert_eq!(top.should.len(), 1);
        assert_eq!(top.must_not.len(), 1);
        let query = parse_default("NOT level:debug").expect("valid");
        let Query::Bool(top) = query else {
            panic!("bool")
        };
        assert_eq!(top.must_not.len(), 1);
    }

    #[test]
    fn errors_say_what_and_where() {
        let error = parse_default("status:(500").expect_err("unclosed");
        assert!(
            error.reason.contains("expected `)` at column 12"),
            "{}",
            error.reason
        );
        let error = parse_default("message:\"unterminated").expect_err("quote");
        assert!(
            error.reason.contains("unterminated `\"` at column 9"),
            "{}",
            error.reason
        );
        let error = parse_default("status:[500 599]").expect_err("no TO");
        assert!(error.reason.contains("expected `TO`"), "{}", error.reason);
        let error = parse_default("@timestamp:>now-5q").expect_err("date math");
        assert!(error.reason.contains("now-5q"), "{}", error.reason);
    }

    #[test]
    fn simple_query_string_never_fails() {
        let context = ParseContext {
            now_micros: 0,
            timestamp_field: "@timestamp".into(),
        };
        let options = LuceneOptions {
            lenient: true,
            ..LuceneOptions::default()
        };
        assert!(parse("status:(500", &context, &options).is_ok());
    }
}
