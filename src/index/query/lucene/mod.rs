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
//!
//! This file reads the structure (operators, groups, `field:`); `value` reads one value
//! (terms, phrases, ranges, regexes, wildcards) into a clause.

mod value;

use super::{
    BoolQuery, FieldRef, MAX_CLAUSES, MAX_LUCENE_DEPTH, Operator, ParseContext, Query, QueryError,
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
mod tests;
