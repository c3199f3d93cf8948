//! [`Query`] → tantivy query on the log schema.
//!
//! The mapping (see `index::schema` and `index::tokenizer`): a string value is word terms,
//! its exact value in the fast column, and — when it is at most one word — a keyword term
//! (`path\0s\x01VALUE`); numbers are normalized numeric terms; the event time is the
//! `@timestamp` date field. An exact `term` therefore matches the keyword (for a value of
//! several words: the phrase of its words whose column value is exactly it) *or* the
//! number *or* the boolean the value reads as, which is what makes `status:500` find both
//! `500` and `"500"`. A word also matches the keyword of a value that is that one
//! lowercase word (such values carry no separate word term). `prefix`, `wildcard` and
//! `regexp` match the column's values ([`ColumnPatternQuery`]). No field name
//! (`FieldRef::All`) expands over the index's [`DefaultFields`].

use std::ops::Bound;
use std::sync::Arc;

use tantivy::Term;
use tantivy::query::{
    AllQuery, AutomatonWeight, BooleanQuery, EmptyQuery, EnableScoring, Occur, PhraseQuery,
    Query as TantivyQuery, RangeQuery, TermQuery, Weight,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy_fst::Automaton;
use tantivy_fst::automaton::AlwaysMatch;

use super::column::ColumnPatternQuery;
use super::{BoolQuery, FieldRef, Number, Operator, Query, QueryError, Scalar};
use crate::index::fields::DefaultFields;
use crate::index::schema::LogSchema;
use crate::index::time_window::{SegmentGate, TimeWindowQuery};
use crate::index::tokenizer::{
    KEYWORD_MAX_BYTES, is_own_keyword, keyword_token, lowercase_into, words,
};

/// Most fields a field-less query expands to (Elasticsearch's `max_clause_count` for
/// `default_field: *` is 1024 as well).
const MAX_EXPANDED_FIELDS: usize = 1024;

type Compiled = Box<dyn TantivyQuery>;

/// Separator of JSON path segments in tantivy's term keys (tantivy keeps it private).
const JSON_PATH_SEGMENT_SEP: u8 = 1;

/// Compiles `query` for `schema`; field-less clauses search `default_fields`.
pub fn compile(
    query: &Query,
    schema: &LogSchema,
    default_fields: &DefaultFields,
) -> Result<Compiled, QueryError> {
    let compiled = Compiler {
        schema,
        default_fields,
    }
    .compile(query)?;
    let (lower, upper) = query.time_bounds();
    Ok(match half_open(lower, upper) {
        (i64::MIN, i64::MAX) => compiled,
        // every match lies in this window: segments outside it are passed over first
        (lower, upper) => Box::new(SegmentGate {
            inner: compiled,
            lower,
            upper,
        }),
    })
}

/// Event-time bounds (microseconds) as the window `[lower, upper)`; unbounded ends are
/// `i64::MIN` and `i64::MAX`.
fn half_open(lower: Bound<i64>, upper: Bound<i64>) -> (i64, i64) {
    let lower = match lower {
        Bound::Unbounded => i64::MIN,
        Bound::Included(micros) => micros,
        Bound::Excluded(micros) => micros.saturating_add(1),
    };
    let upper = match upper {
        Bound::Unbounded => i64::MAX,
        Bound::Included(micros) => micros.saturating_add(1),
        Bound::Excluded(micros) => micros,
    };
    (lower, upper)
}

struct Compiler<'a> {
    schema: &'a LogSchema,
    default_fields: &'a DefaultFields,
}

impl Compiler<'_> {
    fn compile(&self, query: &Query) -> Result<Compiled, QueryError> {
        if let Some(expanded) = self.expand_all(query)? {
            return Ok(expanded);
        }
        Ok(match query {
            Query::MatchAll => Box::new(AllQuery),
            Query::MatchNone => Box::new(EmptyQuery),
            Query::Term {
                field,
                value,
                case_insensitive,
            } => self.term(field, value, *case_insensitive)?,
            Query::Terms { field, values } => union(
                values
                    .iter()
                    .map(|value| self.term(field, value, false))
                    .collect::<Result<_, _>>()?,
            ),
            Query::Match {
                field,
                text,
                operator,
                minimum_should_match,
            } => self.text(field, text, *operator, *minimum_should_match, None)?,
            Query::Phrase { field, text, slop } => {
                self.text(field, text, Operator::And, None, Some(*slop))?
            }
            Query::Range {
                field,
                lower,
                upper,
            } => self.range(field, lower, upper)?,
            Query::Exists { field } => self.exists(field),
            Query::Prefix {
                field,
                prefix,
                case_insensitive,
            } => {
                let pattern = format!("{}.*", regex::escape(prefix));
                self.pattern(field, prefix, &pattern, *case_insensitive)?
            }
            Query::Wildcard {
                field,
                pattern,
                case_insensitive,
            } => {
                let (literal, regex) = wildcard_to_regex(pattern);
                self.pattern(field, &literal, &regex, *case_insensitive)?
            }
            Query::Regexp {
                field,
                pattern,
                case_insensitive,
            } => self.pattern(field, "", pattern, *case_insensitive)?,
            Query::Ids { values } => union(values.iter().map(|id| self.id_term(id)).collect()),
            Query::Bool(bool_query) => self.boolean(bool_query)?,
        })
    }

    /// A leaf query without a field, run on every default field; `None` for other queries.
    fn expand_all(&self, query: &Query) -> Result<Option<Compiled>, QueryError> {
        let (field, text) = match query {
            Query::Term { field, value, .. } => (field, value.as_text()),
            Query::Terms { field, .. }
            | Query::Wildcard { field, .. }
            | Query::Regexp { field, .. } => (field, String::new()),
            Query::Match { field, text, .. } | Query::Phrase { field, text, .. } => {
                (field, text.clone())
            }
            Query::Prefix { field, prefix, .. } => (field, prefix.clone()),
            _ => return Ok(None),
        };
        if *field != FieldRef::All {
            return Ok(None);
        }
        let typed = Number::parse(text.trim()).is_some() || text.trim().parse::<bool>().is_ok();
        let paths: Vec<&String> = self
            .default_fields
            .text
            .iter()
            .chain(self.default_fields.other.iter().filter(|_| typed))
            .collect();
        if paths.len() > MAX_EXPANDED_FIELDS {
            return Err(QueryError::shard(format!(
                "a query without a field would search {} fields, more than {MAX_EXPANDED_FIELDS}; name the field, like `message:{text}`",
                paths.len()
            )));
        }
        let per_field = paths
            .into_iter()
            .map(|path| {
                let mut named = query.clone();
                if let Query::Term { field, .. }
                | Query::Terms { field, .. }
                | Query::Match { field, .. }
                | Query::Phrase { field, .. }
                | Query::Prefix { field, .. }
                | Query::Wildcard { field, .. }
                | Query::Regexp { field, .. } = &mut named
                {
                    *field = FieldRef::Path {
                        path: path.clone(),
                        keyword: false,
                    };
                }
                self.compile(&named)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(union(per_field)))
    }

    fn boolean(&self, query: &BoolQuery) -> Result<Compiled, QueryError> {
        let mut clauses: Vec<(Occur, Compiled)> = Vec::new();
        for clause in query.must.iter().chain(&query.filter) {
            clauses.push((Occur::Must, self.compile(clause)?));
        }
        let required = clauses.len();
        for clause in &query.should {
            clauses.push((Occur::Should, self.compile(clause)?));
        }
        for clause in &query.must_not {
            clauses.push((Occur::MustNot, self.compile(clause)?));
        }
        if clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        }
        // ES: with no must/filter, at least one should must match; otherwise none need to
        let minimum = match query.minimum_should_match {
            Some(minimum) => minimum.resolve(query.should.len()),
            None if required == 0 && !query.should.is_empty() => 1,
            None => 0,
        };
        if minimum > 0 && required > 0 {
            // tantivy's minimum applies to should clauses only when musts are present too
            return Ok(Box::new(BooleanQuery::with_minimum_required_clauses(
                clauses, minimum,
            )));
        }
        if minimum > 1 {
            return Ok(Box::new(BooleanQuery::with_minimum_required_clauses(
                clauses, minimum,
            )));
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    fn json_term(&self, path: &str) -> Term {
        Term::from_field_json_path(self.schema.body, path, true)
    }

    fn keyword_term(&self, path: &str, value: &str) -> Option<Term> {
        let mut term = self.json_term(path);
        term.append_type_and_str(&keyword_token(value)?);
        Some(term)
    }

    fn number_term(&self, path: &str, number: Number) -> Term {
        let mut term = self.json_term(path);
        match number.normalize() {
            Number::I64(value) => term.append_type_and_fast_value(value),
            Number::U64(value) => term.append_type_and_fast_value(value),
            Number::F64(value) => term.append_type_and_fast_value(value),
        }
        term
    }

    fn id_term(&self, id: &str) -> Compiled {
        Box::new(TermQuery::new(
            Term::from_field_text(self.schema.id, id),
            IndexRecordOption::Basic,
        ))
    }

    /// Exact value: keyword, number or boolean, whichever the value can be.
    fn term(
        &self,
        field: &FieldRef,
        value: &Scalar,
        case_insensitive: bool,
    ) -> Result<Compiled, QueryError> {
        match field {
            FieldRef::Id => Ok(self.id_term(&value.as_text())),
            FieldRef::Timestamp => {
                let micros = match value {
                    Scalar::I64(millis) => millis.saturating_mul(1000),
                    other => super::date_math::parse_absolute(&other.as_text(), None)?,
                };
                Ok(self.timestamp_range(Bound::Included(micros), Bound::Included(micros)))
            }
            FieldRef::All => self.text(field, &value.as_text(), Operator::And, None, Some(0)),
            FieldRef::Path { path, keyword } => {
                let text = value.as_text();
                if case_insensitive {
                    return self.pattern(field, "", &regex::escape(&text), true);
                }
                let mut variants: Vec<Compiled> = Vec::new();
                if let Some(term) = self.keyword_term(path, &text) {
                    variants.push(Box::new(TermQuery::new(term, IndexRecordOption::Basic)));
                } else if let Some(exact) = self.column_exact(path, &text) {
                    variants.push(exact);
                }
                if !keyword {
                    variants.extend(self.typed_variants(path, value));
                }
                Ok(union(variants))
            }
        }
    }

    /// A string of several words (no keyword term, see `tokenizer`): the phrase of its
    /// words, checked against the exact value in the fast column. `None` when the value is
    /// too long to be kept at all.
    fn column_exact(&self, path: &str, value: &str) -> Option<Compiled> {
        if value.len() > KEYWORD_MAX_BYTES {
            return None;
        }
        let mut exact = self.json_term(path);
        exact.append_type_and_str(value);
        // a string range over a fast JSON path reads the column (`range` below)
        let column: Compiled = Box::new(RangeQuery::new(
            Bound::Included(exact.clone()),
            Bound::Included(exact),
        ));
        let mut word = String::new();
        let phrase: Vec<Term> = words(value)
            .map(|(start, end)| {
                lowercase_into(&value[start..end], &mut word);
                let mut term = self.json_term(path);
                term.append_type_and_str(&word);
                term
            })
            .collect();
        if phrase.len() < 2 {
            return Some(column);
        }
        Some(Box::new(BooleanQuery::intersection(vec![
            Box::new(PhraseQuery::new(phrase)),
            column,
        ])))
    }

    /// The number or boolean a value reads as, as terms on `path`.
    fn typed_variants(&self, path: &str, value: &Scalar) -> Vec<Compiled> {
        let mut variants: Vec<Compiled> = Vec::new();
        if let Some(number) = value.as_number() {
            variants.push(Box::new(TermQuery::new(
                self.number_term(path, number),
                IndexRecordOption::Basic,
            )));
        }
        let flag = match value {
            Scalar::Bool(flag) => Some(*flag),
            Scalar::Str(text) => text.parse::<bool>().ok(),
            _ => None,
        };
        if let Some(flag) = flag {
            let mut term = self.json_term(path);
            term.append_type_and_fast_value(flag);
            variants.push(Box::new(TermQuery::new(term, IndexRecordOption::Basic)));
        }
        variants
    }

    /// Analysed text: words joined by `operator`, or a phrase when `slop` is given.
    fn text(
        &self,
        field: &FieldRef,
        text: &str,
        operator: Operator,
        minimum_should_match: Option<super::MinimumShouldMatch>,
        slop: Option<u32>,
    ) -> Result<Compiled, QueryError> {
        let path = match field {
            FieldRef::Path {
                path,
                keyword: false,
            } => path.as_str(),
            FieldRef::All => {
                let query = Query::Match {
                    field: FieldRef::All,
                    text: text.to_string(),
                    operator,
                    minimum_should_match,
                };
                return Ok(self
                    .expand_all(&query)?
                    .unwrap_or_else(|| Box::new(EmptyQuery)));
            }
            _ => return self.term(field, &Scalar::Str(text.to_string()), false),
        };
        let mut word = String::new();
        let words_found: Vec<String> = words(text)
            .map(|(start, end)| {
                lowercase_into(&text[start..end], &mut word);
                word.clone()
            })
            .collect();
        let word_term = |word: &str| {
            let mut term = self.json_term(path);
            term.append_type_and_str(word);
            term
        };
        // a value that is exactly one lowercase word is indexed as its keyword only
        let word_or_keyword = |word: &String| -> Compiled {
            let word_query: Compiled = Box::new(TermQuery::new(
                word_term(word),
                IndexRecordOption::WithFreqs,
            ));
            match self
                .keyword_term(path, word)
                .filter(|_| is_own_keyword(word))
            {
                Some(keyword) => union(vec![
                    word_query,
                    Box::new(TermQuery::new(keyword, IndexRecordOption::Basic)),
                ]),
                None => word_query,
            }
        };
        let words_query: Option<Compiled> = match (words_found.len(), slop) {
            (0, _) => None,
            (1, _) => Some(word_or_keyword(&words_found[0])),
            (_, Some(slop)) => {
                let mut phrase =
                    PhraseQuery::new(words_found.iter().map(|word| word_term(word)).collect());
                phrase.set_slop(slop);
                Some(Box::new(phrase))
            }
            (count, None) => {
                let clauses: Vec<Compiled> = words_found.iter().map(word_or_keyword).collect();
                Some(match (operator, minimum_should_match) {
                    (Operator::And, _) => Box::new(BooleanQuery::intersection(clauses)),
                    (Operator::Or, Some(minimum)) => {
                        Box::new(BooleanQuery::union_with_minimum_required_clauses(
                            clauses,
                            minimum.resolve(count).max(1),
                        ))
                    }
                    (Operator::Or, None) => Box::new(BooleanQuery::union(clauses)),
                })
            }
        };
        let mut variants: Vec<Compiled> = words_query.into_iter().collect();
        variants.extend(self.typed_variants(path, &Scalar::Str(text.trim().to_string())));
        Ok(union(variants))
    }

    /// An event-time window, through the sparse block index (see `time_window`).
    fn timestamp_range(&self, lower: Bound<i64>, upper: Bound<i64>) -> Compiled {
        match half_open(lower, upper) {
            (i64::MIN, i64::MAX) => Box::new(AllQuery),
            (lower, upper) => Box::new(TimeWindowQuery { lower, upper }),
        }
    }

    fn range(
        &self,
        field: &FieldRef,
        lower: &Bound<Scalar>,
        upper: &Bound<Scalar>,
    ) -> Result<Compiled, QueryError> {
        match field {
            FieldRef::Timestamp => {
                let micros = |bound: &Bound<Scalar>| -> Result<Bound<i64>, QueryError> {
                    Ok(match bound {
                        Bound::Unbounded => Bound::Unbounded,
                        Bound::Included(Scalar::I64(value)) => Bound::Included(*value),
                        Bound::Excluded(Scalar::I64(value)) => Bound::Excluded(*value),
                        Bound::Included(other) | Bound::Excluded(other) => {
                            return Err(QueryError::parsing(format!(
                                "failed to parse date field [{}]",
                                other.as_text()
                            )));
                        }
                    })
                };
                Ok(self.timestamp_range(micros(lower)?, micros(upper)?))
            }
            FieldRef::Path { path, .. } => {
                if matches!((lower, upper), (Bound::Unbounded, Bound::Unbounded)) {
                    return Ok(self.exists(field));
                }
                let numeric = [lower, upper].iter().all(|bound| match bound {
                    Bound::Unbounded => true,
                    Bound::Included(value) | Bound::Excluded(value) => value.as_number().is_some(),
                });
                if numeric {
                    // f64 bounds: tantivy converts them into each column's numeric type
                    let to_term = |value: &Scalar| {
                        let mut term = self.json_term(path);
                        term.append_type_and_fast_value(
                            value.as_number().map_or(0.0, Number::as_f64),
                        );
                        term
                    };
                    return Ok(Box::new(RangeQuery::new(
                        lower.as_ref().map(to_term),
                        upper.as_ref().map(to_term),
                    )));
                }
                let to_term = |value: &Scalar| {
                    let mut term = self.json_term(path);
                    term.append_type_and_str(&value.as_text());
                    term
                };
                Ok(Box::new(RangeQuery::new(
                    lower.as_ref().map(to_term),
                    upper.as_ref().map(to_term),
                )))
            }
            FieldRef::Id | FieldRef::All => Err(QueryError::shard(
                "range queries need a field with values, like `status` or `@timestamp`",
            )),
        }
    }

    fn exists(&self, field: &FieldRef) -> Compiled {
        match field {
            FieldRef::Path { path, .. } => {
                let exact = self.json_term(path).serialized_value_bytes().to_vec();
                // the path itself (any type), or any field below it (`http` exists when
                // `http.status` does)
                let mut nested = exact.clone();
                if let Some(last) = nested.last_mut() {
                    *last = JSON_PATH_SEGMENT_SEP;
                }
                union(vec![
                    Box::new(KeyRangeQuery::new(self.schema.body, AlwaysMatch, exact)),
                    Box::new(KeyRangeQuery::new(self.schema.body, AlwaysMatch, nested)),
                ])
            }
            _ => Box::new(AllQuery),
        }
    }

    /// A regex over the values of `field` (in its fast column), over `_id`s, or (no field)
    /// over the default fields; `literal` is a known literal prefix of every match, which
    /// narrows the dictionary scan.
    fn pattern(
        &self,
        field: &FieldRef,
        literal: &str,
        regex: &str,
        case_insensitive: bool,
    ) -> Result<Compiled, QueryError> {
        let (field_handle, key_prefix) = match field {
            FieldRef::Path { path, .. } => {
                let flags = if case_insensitive { "(?i)" } else { "" };
                let automaton =
                    tantivy_fst::Regex::new(&format!("{flags}(?:{regex})")).map_err(|error| {
                        QueryError::shard(format!("invalid regular expression `{regex}`: {error}"))
                    })?;
                let literal = if case_insensitive { "" } else { literal };
                return Ok(Box::new(ColumnPatternQuery::new(
                    self.json_term(path).get_full_path(&self.schema.schema),
                    automaton,
                    literal.as_bytes().to_vec(),
                )));
            }
            FieldRef::All => {
                let query = Query::Regexp {
                    field: FieldRef::All,
                    pattern: regex.to_string(),
                    case_insensitive,
                };
                return Ok(self
                    .expand_all(&query)?
                    .unwrap_or_else(|| Box::new(EmptyQuery)));
            }
            FieldRef::Id => (self.schema.id, Vec::new()),
            FieldRef::Timestamp => {
                return Err(QueryError::shard(
                    "pattern queries do not apply to `@timestamp`; use a range",
                ));
            }
        };
        let escaped_prefix: String = String::from_utf8_lossy(&key_prefix)
            .chars()
            .map(|c| {
                if c.is_control() {
                    format!("\\x{:02x}", c as u32)
                } else {
                    regex::escape(&c.to_string())
                }
            })
            .collect();
        let flags = if case_insensitive { "(?i)" } else { "" };
        let full = format!("{escaped_prefix}{flags}(?:{regex})");
        let automaton = tantivy_fst::Regex::new(&full).map_err(|error| {
            QueryError::shard(format!("invalid regular expression `{regex}`: {error}"))
        })?;
        let mut narrowed = key_prefix;
        if !case_insensitive {
            narrowed.extend_from_slice(literal.as_bytes());
        }
        Ok(Box::new(KeyRangeQuery::new(
            field_handle,
            automaton,
            narrowed,
        )))
    }
}

/// Keys of `field`'s term dictionary that start with `prefix` and match `automaton`.
struct KeyRangeQuery<A> {
    field: Field,
    automaton: Arc<A>,
    prefix: Vec<u8>,
}

impl<A> KeyRangeQuery<A> {
    fn new(field: Field, automaton: A, prefix: Vec<u8>) -> Self {
        KeyRangeQuery {
            field,
            automaton: Arc::new(automaton),
            prefix,
        }
    }
}

impl<A> Clone for KeyRangeQuery<A> {
    fn clone(&self) -> Self {
        KeyRangeQuery {
            field: self.field,
            automaton: self.automaton.clone(),
            prefix: self.prefix.clone(),
        }
    }
}

impl<A> std::fmt::Debug for KeyRangeQuery<A> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KeyRangeQuery")
            .field("field", &self.field)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish()
    }
}

impl<A> TantivyQuery for KeyRangeQuery<A>
where
    A: Automaton + Send + Sync + 'static,
    A::State: Clone,
{
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(AutomatonWeight::<A>::new_for_json_path(
            self.field,
            self.automaton.clone(),
            &self.prefix,
        )))
    }
}

fn union(mut queries: Vec<Compiled>) -> Compiled {
    match queries.len() {
        0 => Box::new(EmptyQuery),
        1 => queries.remove(0),
        _ => Box::new(BooleanQuery::union(queries)),
    }
}

/// `web-*-01?` → (literal prefix `web-`, regex `web\-.*\-01.`). `\*` stays literal.
fn wildcard_to_regex(pattern: &str) -> (String, String) {
    let mut regex = String::new();
    let mut literal = String::new();
    let mut in_prefix = true;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                in_prefix = false;
                regex.push_str(".*");
            }
            '?' => {
                in_prefix = false;
                regex.push('.');
            }
            '\\' => {
                let next = chars.next().unwrap_or('\\');
                if in_prefix {
                    literal.push(next);
                }
                regex.push_str(&regex::escape(&next.to_string()));
            }
            c => {
                if in_prefix {
                    literal.push(c);
                }
                regex.push_str(&regex::escape(&c.to_string()));
            }
        }
    }
    (literal, regex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_translate_to_anchored_regex_with_literal_prefix() {
        assert_eq!(
            wildcard_to_regex("web-*-0?"),
            ("web-".into(), "web\\-.*\\-0.".into())
        );
        assert_eq!(
            wildcard_to_regex("a\\*b*"),
            ("a*b".into(), "a\\*b.*".into())
        );
    }
}
