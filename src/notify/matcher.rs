//! Alertmanager's label matchers as routes, inhibit rules and `lookout check` read them:
//! `name=value`, `name!=value`, `name=~regex`, `name!~regex`, the value optionally in
//! double quotes with `\"`, `\n` and `\\` escapes. A list (`{a="1", b=~"x.*"}`, braces
//! optional) splits on commas outside quotes. Ported from Alertmanager's
//! `pkg/labels/parse.go` (`ParseMatcher`, `ParseMatchers`) with its test table; regexes
//! are anchored (`^(?:…)$`) and a missing label matches as the empty string, as there.
//!
//! Limits: a matcher string longer than [`MAX_MATCHER_BYTES`] is refused, and regexes
//! are compiled with a size limit, so a hostile config cannot exhaust memory.

use std::collections::BTreeMap;

/// The longest matcher (or matcher list) text accepted.
pub const MAX_MATCHER_BYTES: usize = 4096;
/// The compiled-size limit of one matcher's regex.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchType {
    /// `=`, `!=`, `=~` or `!~`.
    pub fn operator(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        }
    }
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub kind: MatchType,
    pub value: String,
    regex: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.name == other.name && self.kind == other.kind && self.value == other.value
    }
}

impl std::fmt::Display for Matcher {
    /// Alertmanager's form: `name="value"` with the value quoted and escaped.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the escapes the parser reads back: `\\`, `\"` and `\n`, nothing else
        let escaped = self
            .value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        write!(
            formatter,
            "{}{}\"{escaped}\"",
            self.name,
            self.kind.operator()
        )
    }
}

/// Why a matcher does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error(
        "bad matcher format `{0}`: write `label=value`, `label!=value`, `label=~regex` or `label!~regex`"
    )]
    Format(String),
    #[error("matcher value `{0}` contains an unescaped double quote (write `\\\"`)")]
    UnescapedQuote(String),
    #[error("invalid regex in matcher `{text}`: {error}")]
    Regex { text: String, error: String },
    #[error("matcher text is {0} bytes, more than the {MAX_MATCHER_BYTES} allowed")]
    TooLong(usize),
}

impl Matcher {
    /// A matcher of `kind` on label `name`; a regex is compiled anchored.
    pub fn new(name: &str, kind: MatchType, value: &str) -> Result<Matcher, MatcherError> {
        let regex = match kind {
            MatchType::Regex | MatchType::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(MAX_REGEX_BYTES)
                    .build()
                    .map_err(|error| MatcherError::Regex {
                        text: format!("{name}{}{value}", kind.operator()),
                        error: error.to_string(),
                    })?,
            ),
            MatchType::Equal | MatchType::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            kind,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether `value` (empty for a missing label) matches.
    pub fn matches_value(&self, value: &str) -> bool {
        match (&self.kind, &self.regex) {
            (MatchType::Equal, _) => value == self.value,
            (MatchType::NotEqual, _) => value != self.value,
            (MatchType::Regex, Some(regex)) => regex.is_match(value),
            (MatchType::NotRegex, Some(regex)) => !regex.is_match(value),
            (_, None) => unreachable!("a regex matcher is built with its regex"),
        }
    }

    /// Whether the label set matches (a missing label is the empty string).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_value(labels.get(&self.name).map_or("", String::as_str))
    }
}

/// Whether every matcher matches `labels`.
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|matcher| matcher.matches(labels))
}

/// Parses one matcher (Alertmanager's `ParseMatcher`).
pub fn parse_matcher(text: &str) -> Result<Matcher, MatcherError> {
    if text.len() > MAX_MATCHER_BYTES {
        return Err(MatcherError::TooLong(text.len()));
    }
    let format = || MatcherError::Format(text.trim().to_string());
    let trimmed = text.trim_start();
    let name_end = trimmed
        .char_indices()
        .find(|&(index, character)| {
            !(character.is_ascii_alphabetic()
                || character == '_'
                || character == ':'
                || (index > 0 && character.is_ascii_digit()))
        })
        .map_or(trimmed.len(), |(index, _)| index);
    if name_end == 0 {
        return Err(format());
    }
    let name = &trimmed[..name_end];
    let rest = trimmed[name_end..].trim_start();
    // `=~` before `=`, as Alertmanager's regex alternation orders them
    let (kind, rest) = if let Some(rest) = rest.strip_prefix("=~") {
        (MatchType::Regex, rest)
    } else if let Some(rest) = rest.strip_prefix("!=") {
        (MatchType::NotEqual, rest)
    } else if let Some(rest) = rest.strip_prefix("!~") {
        (MatchType::NotRegex, rest)
    } else if let Some(rest) = rest.strip_prefix('=') {
        (MatchType::Equal, rest)
    } else {
        return Err(format());
    };
    let raw = rest.trim();
    let (raw, mut expect_trailing_quote) = match raw.strip_prefix('"') {
        Some(inner) => (inner, true),
        None => (raw, false),
    };
    let mut value = String::with_capacity(raw.len());
    let mut escaped = false;
    let mut characters = raw.chars().peekable();
    while let Some(character) = characters.next() {
        if escaped {
            escaped = false;
            match character {
                'n' => value.push('\n'),
                '"' | '\\' => value.push(character),
                // a spurious escape: the backslash is literal
                other => {
                    value.push('\\');
                    value.push(other);
                }
            }
            continue;
        }
        let last = characters.peek().is_none();
        match character {
            '\\' if !last => escaped = true,
            '\\' => value.push('\\'),
            '"' => {
                if !expect_trailing_quote || !last {
                    return Err(MatcherError::UnescapedQuote(rest.trim().to_string()));
                }
                expect_trailing_quote = false;
            }
            other => value.push(other),
        }
    }
    if expect_trailing_quote {
        return Err(MatcherError::UnescapedQuote(rest.trim().to_string()));
    }
    Matcher::new(name, kind, &value)
}

/// Parses a comma-separated list of matchers, braces optional (Alertmanager's
/// `ParseMatchers`).
pub fn parse_matchers(text: &str) -> Result<Vec<Matcher>, MatcherError> {
    if text.len() > MAX_MATCHER_BYTES {
        return Err(MatcherError::TooLong(text.len()));
    }
    let text = text.strip_prefix('{').unwrap_or(text);
    let text = text.strip_suffix('}').unwrap_or(text);
    let mut tokens = Vec::new();
    let mut token = String::new();
    let (mut inside_quotes, mut escaped) = (false, false);
    for character in text.chars() {
        match character {
            ',' if !inside_quotes => {
                tokens.push(std::mem::take(&mut token));
                continue;
            }
            '"' => {
                if escaped {
                    escaped = false;
                } else {
                    inside_quotes = !inside_quotes;
                }
            }
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
        token.push(character);
    }
    if !token.trim().is_empty() {
        tokens.push(token);
    }
    tokens.iter().map(|token| parse_matcher(token)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(name: &str, kind: MatchType, value: &str) -> Matcher {
        Matcher::new(name, kind, value).expect("valid")
    }

    /// Alertmanager's `TestMatchers` table (pkg/labels/parse_test.go), the cases this
    /// parser shares with it.
    #[test]
    fn parses_alertmanagers_matcher_table() {
        use MatchType::*;
        let cases: Vec<(&str, Result<Vec<Matcher>, &str>)> = vec![
            ("{}", Ok(vec![])),
            (",", Err("bad matcher format")),
            ("{,}", Err("bad matcher format")),
            ("{foo='}", Ok(vec![matcher("foo", Equal, "'")])),
            ("{foo=`}", Ok(vec![matcher("foo", Equal, "`")])),
            ("{foo=\\\"}", Ok(vec![matcher("foo", Equal, "\"")])),
            ("{foo=bar}", Ok(vec![matcher("foo", Equal, "bar")])),
            ("{foo=\"bar\"}", Ok(vec![matcher("foo", Equal, "bar")])),
            ("{foo=~bar.*}", Ok(vec![matcher("foo", Regex, "bar.*")])),
            ("{foo=~\"bar.*\"}", Ok(vec![matcher("foo", Regex, "bar.*")])),
            ("{foo!=bar}", Ok(vec![matcher("foo", NotEqual, "bar")])),
            ("{foo!=\"bar\"}", Ok(vec![matcher("foo", NotEqual, "bar")])),
            ("{foo!~bar.*}", Ok(vec![matcher("foo", NotRegex, "bar.*")])),
            (
                "{foo!~\"bar.*\"}",
                Ok(vec![matcher("foo", NotRegex, "bar.*")]),
            ),
            (
                "{foo=\"bar\", baz!=\"quux\"}",
                Ok(vec![
                    matcher("foo", Equal, "bar"),
                    matcher("baz", NotEqual, "quux"),
                ]),
            ),
            (
                "{foo=\"bar\", baz!~\"quux.*\"}",
                Ok(vec![
                    matcher("foo", Equal, "bar"),
                    matcher("baz", NotRegex, "quux.*"),
                ]),
            ),
            (
                "{foo=\"bar\",baz!~\".*quux\", derp=\"wat\"}",
                Ok(vec![
                    matcher("foo", Equal, "bar"),
                    matcher("baz", NotRegex, ".*quux"),
                    matcher("derp", Equal, "wat"),
                ]),
            ),
            (
                "{foo=\"bar\", baz!=\"quux\", derp=\"wat\"}",
                Ok(vec![
                    matcher("foo", Equal, "bar"),
                    matcher("baz", NotEqual, "quux"),
                    matcher("derp", Equal, "wat"),
                ]),
            ),
            (
                "{foo=\"bar\", baz!~\".*quux.*\", derp=\"wat\"}",
                Ok(vec![
                    matcher("foo", Equal, "bar"),
                    matcher("baz", NotRegex, ".*quux.*"),
                    matcher("derp", Equal, "wat"),
                ]),
            ),
            (
                "{foo=\"bar\", instance=~\"some-api.*\"}",
                Ok(vec![
                    matcher("foo", Equal, "bar"),
                    matcher("instance", Regex, "some-api.*"),
                ]),
            ),
            ("{foo=\"\"}", Ok(vec![matcher("foo", Equal, "")])),
            (
                "{foo=\"bar,quux\", job=\"job1\"}",
                Ok(vec![
                    matcher("foo", Equal, "bar,quux"),
                    matcher("job", Equal, "job1"),
                ]),
            ),
            (
                "{foo = \"bar\", dings != \"bums\", }",
                Ok(vec![
                    matcher("foo", Equal, "bar"),
                    matcher("dings", NotEqual, "bums"),
                ]),
            ),
            (
                "foo=bar,dings!=bums",
                Ok(vec![
                    matcher("foo", Equal, "bar"),
                    matcher("dings", NotEqual, "bums"),
                ]),
            ),
            (
                "{quote=\"She said: \\\"Hi, ladies! That's gender-neutral…\\\"\"}",
                Ok(vec![matcher(
                    "quote",
                    Equal,
                    "She said: \"Hi, ladies! That's gender-neutral…\"",
                )]),
            ),
            (
                "statuscode=~\"5..\"",
                Ok(vec![matcher("statuscode", Regex, "5..")]),
            ),
            (
                "tags=~\"^(?:1|2)$\"",
                Ok(vec![matcher("tags", Regex, "^(?:1|2)$")]),
            ),
            (
                "trailing=\"\\\\\"",
                Ok(vec![matcher("trailing", Equal, "\\")]),
            ),
            ("{foo=~\"invalid[regexp\"}", Err("invalid regex")),
            ("{foo=\"bar\"\"}", Err("unescaped double quote")),
            ("{foo=\"bar}", Err("unescaped double quote")),
            ("{foo=bar\"}", Err("unescaped double quote")),
            (
                "{foo=\"new\\nline\"}",
                Ok(vec![matcher("foo", Equal, "new\nline")]),
            ),
            (
                "{foo=\"tab\\tliteral\"}",
                Ok(vec![matcher("foo", Equal, "tab\\tliteral")]),
            ),
            ("{9foo=\"bar\"}", Err("bad matcher format")),
            ("{foo==\"bar\"}", Err("unescaped double quote")),
        ];
        for (input, want) in cases {
            match (parse_matchers(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
                (Err(error), Err(want)) => {
                    assert!(error.to_string().contains(want), "{input}: {error}")
                }
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn regexes_are_anchored_and_a_missing_label_is_empty() {
        let labels = BTreeMap::from([("service".to_string(), "checkout-api".to_string())]);
        let matches = |text: &str| parse_matcher(text).expect("parses").matches(&labels);
        assert!(matches("service=~checkout.*"));
        assert!(!matches("service=~checkout"), "anchored at the end");
        assert!(!matches("service=~api"), "anchored at the start");
        assert!(matches("service!~api"));
        assert!(matches("team=\"\""), "a missing label is the empty string");
        assert!(matches("team!=payments"));
        assert!(!matches("team=~.+"));
        assert_eq!(
            parse_matcher("a=~\"x\\\"y\"").expect("parses").to_string(),
            "a=~\"x\\\"y\""
        );
    }

    #[test]
    fn overlong_matchers_are_refused() {
        let long = format!("a=\"{}\"", "x".repeat(MAX_MATCHER_BYTES));
        assert!(matches!(
            parse_matchers(&long),
            Err(MatcherError::TooLong(_))
        ));
    }
}
