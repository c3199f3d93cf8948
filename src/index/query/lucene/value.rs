//! One value of a Lucene query string, for a field or the default fields: a term, a
//! `"phrase"~slop`, `[a TO b]` / `{a TO b}`, `>=a`, `/regex/`, `wild*card` or `*`, with
//! date math on the event-time field.

use std::ops::Bound;

use super::Parser;
use crate::index::query::date_math::{Rounding, parse_micros};
use crate::index::query::{BoolQuery, FieldRef, Number, Query, QueryError, Scalar};

const SPECIAL: &[char] = &['(', ')', '[', ']', '{', '}', ':', '^', '~', '"', '\\', '/'];

impl Parser<'_> {
    /// A value for `field` (or the default fields when `None`).
    pub(super) fn parse_value(&mut self, field: Option<&str>) -> Result<Query, QueryError> {
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

    pub(super) fn parse_bracket_range(&mut self, field: Option<&str>) -> Result<Query, QueryError> {
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

    pub(super) fn range(
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
                match Number::parse(&text) {
                    Some(Number::I64(value)) => Scalar::I64(value),
                    Some(Number::U64(value)) => Scalar::U64(value),
                    Some(Number::F64(value)) => Scalar::F64(value),
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
    pub(super) fn for_fields(
        &self,
        field: Option<&str>,
        make: impl Fn(FieldRef) -> Query,
    ) -> Query {
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

    pub(super) fn read_quoted(&mut self, quote: char) -> Result<String, QueryError> {
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

    pub(super) fn read_term(&mut self) -> Result<String, QueryError> {
        Ok(self.read_term_with_wildcards()?.0)
    }

    /// Reads a bare term up to whitespace or a special character; returns whether it had
    /// unescaped `*`/`?`.
    pub(super) fn read_term_with_wildcards(&mut self) -> Result<(String, bool), QueryError> {
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
