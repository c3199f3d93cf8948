//! What a hit carries beside its `_source`: `fields` (the body's `fields` and
//! `docvalue_fields`, values as arrays, `@timestamp` printed in the asked date format) and
//! `highlight` (the words of the query's `match`, `match_phrase`, `term`, `terms`,
//! `prefix` and `query_string` clauses wrapped in `pre_tags`/`post_tags`, per field, in
//! fragments of `fragment_size` characters).
//!
//! Highlighting reads the hit's `_source` with the same word splitting `match` uses
//! ([`crate::index::tokenizer::words`]); it does not re-run the query. Limits: at most
//! [`MAX_FIELD_PATTERNS`] field patterns, tags of at most [`MAX_TAG_BYTES`], at most
//! [`MAX_FRAGMENTS`] fragments per field and [`MAX_HIGHLIGHT_TERMS`] query words.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::index::aggregation::{DateFormat, Zone};
use crate::index::query::{FieldRef, Query, QueryError};
use crate::index::tokenizer::{lowercase_into, words};

/// Most patterns in `fields`, `docvalue_fields` or `highlight.fields`.
pub const MAX_FIELD_PATTERNS: usize = 1024;
/// Longest `pre_tags`/`post_tags` entry.
pub const MAX_TAG_BYTES: usize = 256;
/// Most fragments per highlighted field.
pub const MAX_FRAGMENTS: usize = 100;
/// Most distinct query words highlighted.
pub const MAX_HIGHLIGHT_TERMS: usize = 1024;

/// One entry of `fields` or `docvalue_fields`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRequest {
    /// A field name or a pattern with `*`.
    pub pattern: String,
    pub format: Option<DateFormat>,
}

/// A request's `highlight`.
#[derive(Debug, Clone, PartialEq)]
pub struct Highlight {
    pub pre_tag: String,
    pub post_tag: String,
    pub fragment_size: usize,
    pub number_of_fragments: usize,
    /// Field patterns to highlight (`*` for all).
    pub fields: Vec<String>,
    /// Highlight only fields the query names (Elasticsearch's default).
    pub require_field_match: bool,
}

/// Parses `fields` or `docvalue_fields` (named `key`): a list of names, patterns or
/// `{"field": NAME, "format": FORMAT}` objects.
pub fn parse_fields(value: &Value, key: &str) -> Result<Vec<FieldRequest>, QueryError> {
    let items = match value {
        Value::Array(items) => items.as_slice(),
        Value::String(_) | Value::Object(_) => std::slice::from_ref(value),
        other => {
            return Err(QueryError::parsing(format!(
                "[{key}]: expected a list of field names or {{\"field\": ..., \"format\": ...}}, got {other}"
            )));
        }
    };
    if items.len() > MAX_FIELD_PATTERNS {
        return Err(QueryError::illegal_argument(format!(
            "[{key}]: {} fields requested; at most {MAX_FIELD_PATTERNS} are accepted",
            items.len()
        )));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(name) => Ok(FieldRequest {
                pattern: name.clone(),
                format: None,
            }),
            Value::Object(map) => {
                let pattern = map.get("field").and_then(Value::as_str).ok_or_else(|| {
                    QueryError::parsing(format!("[{key}]: each object needs a `field` name"))
                })?;
                let format = match map.get("format") {
                    None => None,
                    Some(Value::String(format)) => {
                        Some(DateFormat::parse(format).map_err(|error| {
                            QueryError::parsing(format!("[{key}][{pattern}]: {error}"))
                        })?)
                    }
                    Some(other) => {
                        return Err(QueryError::parsing(format!(
                            "[{key}][{pattern}][format]: expected a string, got {other}"
                        )));
                    }
                };
                Ok(FieldRequest {
                    pattern: pattern.to_string(),
                    format,
                })
            }
            other => Err(QueryError::parsing(format!(
                "[{key}]: expected a field name or an object, got {other}"
            ))),
        })
        .collect()
}

/// Parses `highlight`.
pub fn parse_highlight(value: &Value) -> Result<Highlight, QueryError> {
    let Value::Object(map) = value else {
        return Err(QueryError::parsing(
            "[highlight]: expected an object like {\"fields\": {\"*\": {}}}",
        ));
    };
    let tag = |key: &str, default: &str| -> Result<String, QueryError> {
        let tag = match map.get(key) {
            None => default.to_string(),
            Some(Value::Array(tags)) => tags
                .first()
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_string(),
            Some(Value::String(tag)) => tag.clone(),
            Some(other) => {
                return Err(QueryError::parsing(format!(
                    "[highlight][{key}]: expected a list of strings, got {other}"
                )));
            }
        };
        if tag.len() > MAX_TAG_BYTES {
            return Err(QueryError::illegal_argument(format!(
                "[highlight][{key}]: a tag is {} bytes long; at most {MAX_TAG_BYTES} are accepted",
                tag.len()
            )));
        }
        Ok(tag)
    };
    let count = |key: &str, default: usize| -> Result<usize, QueryError> {
        match map.get(key) {
            None => Ok(default),
            Some(value) => value
                .as_u64()
                .map(|number| usize::try_from(number).unwrap_or(usize::MAX))
                .ok_or_else(|| {
                    QueryError::parsing(format!(
                        "[highlight][{key}]: expected a non-negative number, got {value}"
                    ))
                }),
        }
    };
    let fields: Vec<String> = match map.get("fields") {
        None => Vec::new(),
        Some(Value::Object(fields)) => fields.keys().cloned().collect(),
        Some(Value::Array(fields)) => fields
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|field| field.keys().cloned())
            .collect(),
        Some(other) => {
            return Err(QueryError::parsing(format!(
                "[highlight][fields]: expected an object of field names, got {other}"
            )));
        }
    };
    if fields.len() > MAX_FIELD_PATTERNS {
        return Err(QueryError::illegal_argument(format!(
            "[highlight][fields]: {} fields given; at most {MAX_FIELD_PATTERNS} are accepted",
            fields.len()
        )));
    }
    Ok(Highlight {
        pre_tag: tag("pre_tags", "<em>")?,
        post_tag: tag("post_tags", "</em>")?,
        fragment_size: count("fragment_size", 100)?,
        number_of_fragments: count("number_of_fragments", 5)?.min(MAX_FRAGMENTS),
        fields,
        require_field_match: map
            .get("require_field_match")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    })
}

/// The lowercased words a query looks for, by the field it names (`None`: any field).
#[derive(Debug, Default)]
pub struct HighlightTerms {
    terms: Vec<(Option<String>, HashSet<String>)>,
    count: usize,
}

impl HighlightTerms {
    /// The words of `query`'s positive clauses (not `must_not`).
    pub fn of(query: &Query) -> HighlightTerms {
        let mut terms = HighlightTerms::default();
        terms.collect(query);
        terms
    }

    fn add(&mut self, field: &FieldRef, text: &str, whole: bool) {
        let field = match field {
            FieldRef::Path { path, .. } => Some(path.clone()),
            FieldRef::All => None,
            FieldRef::Timestamp | FieldRef::Id => return,
        };
        let mut set = HashSet::new();
        let mut word = String::new();
        if whole {
            lowercase_into(text, &mut word);
            set.insert(std::mem::take(&mut word));
        }
        for (start, end) in words(text) {
            word.clear();
            lowercase_into(&text[start..end], &mut word);
            set.insert(word.clone());
        }
        self.count += set.len();
        if self.count <= MAX_HIGHLIGHT_TERMS {
            self.terms.push((field, set));
        }
    }

    fn collect(&mut self, query: &Query) {
        match query {
            Query::Match { field, text, .. } | Query::Phrase { field, text, .. } => {
                self.add(field, text, false);
            }
            Query::Term { field, value, .. } => self.add(field, &value.as_text(), true),
            Query::Terms { field, values } => {
                for value in values {
                    self.add(field, &value.as_text(), true);
                }
            }
            Query::Prefix { field, prefix, .. } => self.add(field, prefix, true),
            Query::Bool(bool_query) => {
                for clause in bool_query
                    .must
                    .iter()
                    .chain(&bool_query.filter)
                    .chain(&bool_query.should)
                {
                    self.collect(clause);
                }
            }
            _ => {}
        }
    }

    fn words_for(&self, path: &str, require_field_match: bool) -> HashSet<&str> {
        self.terms
            .iter()
            .filter(|(field, _)| {
                !require_field_match
                    || field
                        .as_deref()
                        .is_none_or(|field| field == path || glob_matches(field, path))
            })
            .flat_map(|(_, words)| words.iter().map(String::as_str))
            .collect()
    }
}

/// `*` in `pattern` matches any run of characters.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(mut remainder) = name.strip_prefix(head) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    let Some((last, middle)) = parts.split_last() else {
        return true;
    };
    for part in middle {
        match remainder.find(part) {
            Some(at) => remainder = &remainder[at + part.len()..],
            None => return false,
        }
    }
    remainder.len() >= last.len() && remainder.ends_with(last)
}

/// Every leaf of `source` by its dotted path, arrays flattened into their values.
fn leaves<'a>(source: &'a Value, prefix: &str, out: &mut Vec<(String, &'a Value)>) {
    match source {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(value, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                leaves(item, prefix, out);
            }
        }
        leaf => out.push((prefix.to_string(), leaf)),
    }
}

/// Adds `fields` and `highlight` to a rendered hit. `timestamp_micros` is the hit's event
/// time, printed for `@timestamp`.
pub fn render(
    hit: &mut Map<String, Value>,
    source: &Value,
    timestamp_micros: Option<i64>,
    requested: &[FieldRequest],
    highlight: Option<(&Highlight, &HighlightTerms)>,
) {
    if !requested.is_empty() {
        let mut all = Vec::new();
        leaves(source, "", &mut all);
        let mut fields = Map::new();
        for request in requested {
            if glob_matches(&request.pattern, "@timestamp")
                && let Some(micros) = timestamp_micros
            {
                let format = request.format.clone().unwrap_or_else(|| {
                    DateFormat::parse("strict_date_optional_time").expect("a named format")
                });
                let printed = match &format {
                    // keep the microseconds the event time has
                    DateFormat::Pattern(_) => print_micros(&format, micros),
                    _ => format.print(micros.div_euclid(1000), &Zone::default()),
                };
                fields.insert("@timestamp".into(), json!([printed]));
            }
            for (path, value) in &all {
                if path == "@timestamp" || !glob_matches(&request.pattern, path) {
                    continue;
                }
                if let Value::Array(values) = fields
                    .entry(path.clone())
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    values.push((*value).clone());
                }
            }
        }
        if !fields.is_empty() {
            hit.insert("fields".into(), Value::Object(fields));
        }
    }
    if let Some((highlight, terms)) = highlight {
        let mut all = Vec::new();
        leaves(source, "", &mut all);
        let mut highlighted = Map::new();
        for (path, value) in all {
            let Value::String(text) = value else { continue };
            if !highlight
                .fields
                .iter()
                .any(|field| glob_matches(field, &path))
            {
                continue;
            }
            let wanted = terms.words_for(&path, highlight.require_field_match);
            if wanted.is_empty() {
                continue;
            }
            let fragments = highlight_text(text, &wanted, highlight);
            if fragments.is_empty() {
                continue;
            }
            if let Value::Array(list) = highlighted
                .entry(path)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                list.extend(fragments.into_iter().map(Value::String));
            }
        }
        if !highlighted.is_empty() {
            hit.insert("highlight".into(), Value::Object(highlighted));
        }
    }
}

fn print_micros(format: &DateFormat, micros: i64) -> String {
    use chrono::{TimeZone, Utc};
    let DateFormat::Pattern(_) = format else {
        return format.print(micros.div_euclid(1000), &Zone::default());
    };
    // print at millisecond precision, then put the microseconds in the fraction when
    // the format prints more than three digits
    let millis_text = format.print(micros.div_euclid(1000), &Zone::default());
    let extra = micros.rem_euclid(1000);
    if extra == 0 {
        return millis_text;
    }
    let Some(date) = Utc.timestamp_micros(micros).single() else {
        return millis_text;
    };
    let nanos = date.timestamp_subsec_nanos();
    let millis_fraction = format!(".{:03}", nanos / 1_000_000);
    let full_fraction = {
        let mut digits = format!("{nanos:09}");
        while digits.len() > 3 && digits.ends_with('0') {
            digits.pop();
        }
        format!(".{digits}")
    };
    if format == &DateFormat::parse("strict_date_optional_time_nanos").expect("a named format") {
        millis_text.replacen(&millis_fraction, &full_fraction, 1)
    } else {
        millis_text
    }
}

/// The fragments of `text` holding a wanted word, with the words wrapped in tags.
fn highlight_text(text: &str, wanted: &HashSet<&str>, highlight: &Highlight) -> Vec<String> {
    let mut word = String::new();
    let spans: Vec<(usize, usize)> = words(text)
        .filter(|(start, end)| {
            word.clear();
            lowercase_into(&text[*start..*end], &mut word);
            wanted.contains(word.as_str())
        })
        .collect();
    // a whole value asked for as a keyword (`term`)
    let spans = if spans.is_empty() {
        word.clear();
        lowercase_into(text, &mut word);
        if wanted.contains(word.as_str()) {
            vec![(0, text.len())]
        } else {
            return Vec::new();
        }
    } else {
        spans
    };
    let tagged = |from: usize, to: usize| {
        let mut out = String::new();
        let mut at = from;
        for (start, end) in spans
            .iter()
            .filter(|(start, end)| *start >= from && *end <= to)
        {
            out.push_str(&text[at..*start]);
            out.push_str(&highlight.pre_tag);
            out.push_str(&text[*start..*end]);
            out.push_str(&highlight.post_tag);
            at = *end;
        }
        out.push_str(&text[at..to]);
        out
    };
    // `number_of_fragments: 0` or a fragment as long as the value: the whole value
    if highlight.number_of_fragments == 0 || text.len() <= highlight.fragment_size {
        return vec![tagged(0, text.len())];
    }
    let mut fragments = Vec::new();
    let mut covered = 0;
    for (start, _) in &spans {
        if *start < covered || fragments.len() >= highlight.number_of_fragments {
            continue;
        }
        let from = floor_boundary(text, start.saturating_sub(highlight.fragment_size / 4));
        let to = floor_boundary(
            text,
            from.saturating_add(highlight.fragment_size.max(1))
                .min(text.len()),
        );
        let to = spans
            .iter()
            .find(|(start, end)| *start < to && *end > to)
            .map_or(to, |(_, end)| *end);
        fragments.push(tagged(from, to));
        covered = to;
    }
    fragments
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::query::Operator;

    fn grafana_highlight() -> Highlight {
        parse_highlight(
            &json!({"pre_tags": ["@HIGHLIGHT@"], "post_tags": ["@/HIGHLIGHT@"],
            "fragment_size": 2147483647u64, "fields": {"*": {}}}),
        )
        .expect("valid")
    }

    #[test]
    fn query_words_are_wrapped_in_the_tags_in_their_fields() {
        let query = Query::Match {
            field: FieldRef::All,
            text: "Timeout".into(),
            operator: Operator::Or,
            minimum_should_match: None,
        };
        let terms = HighlightTerms::of(&query);
        let mut hit = Map::new();
        let source = json!({"message": "upstream timeout after 30s", "level": "error", "n": 3});
        render(
            &mut hit,
            &source,
            None,
            &[],
            Some((&grafana_highlight(), &terms)),
        );
        assert_eq!(
            hit["highlight"],
            json!({"message": ["upstream @HIGHLIGHT@timeout@/HIGHLIGHT@ after 30s"]})
        );
    }

    #[test]
    fn long_values_are_cut_into_fragments_around_the_words() {
        let highlight = Highlight {
            fragment_size: 20,
            ..grafana_highlight()
        };
        let text = format!("{} needle {}", "a ".repeat(50), "b ".repeat(50));
        let wanted: HashSet<&str> = ["needle"].into_iter().collect();
        let fragments = highlight_text(&text, &wanted, &highlight);
        assert_eq!(fragments.len(), 1);
        assert!(fragments[0].contains("@HIGHLIGHT@needle@/HIGHLIGHT@"));
        assert!(fragments[0].len() < 60, "{}", fragments[0]);
    }

    #[test]
    fn fields_print_the_timestamp_in_the_asked_format() {
        let requested = parse_fields(
            &json!([{"field": "@timestamp", "format": "strict_date_optional_time_nanos"}, "service*"]),
            "fields",
        )
        .expect("valid");
        let mut hit = Map::new();
        let source = json!({"@timestamp": "x", "service": {"name": "api"}, "other": 1});
        render(
            &mut hit,
            &source,
            Some(1_668_422_437_218_123),
            &requested,
            None,
        );
        assert_eq!(
            hit["fields"],
            json!({"@timestamp": ["2022-11-14T10:40:37.218123Z"], "service.name": ["api"]})
        );
    }

    #[test]
    fn bad_highlight_and_fields_are_refused() {
        assert!(parse_highlight(&json!("x")).is_err());
        assert!(parse_highlight(&json!({"pre_tags": ["x".repeat(MAX_TAG_BYTES + 1)]})).is_err());
        assert!(parse_fields(&json!([{"format": "epoch_millis"}]), "fields").is_err());
        assert!(parse_fields(&json!([{"field": "t", "format": "yyyy-QQ"}]), "fields").is_err());
        assert!(glob_matches("*", "a.b"));
        assert!(glob_matches("a*c", "abc"));
        assert!(!glob_matches("a*c", "ab"));
    }
}
