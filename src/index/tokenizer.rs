//! Tokenizers of the log schema.
//!
//! Every string leaf of a log line is indexed in one JSON field, as lowercased words (what
//! `match` and free text use) and, when it is at most [`KEYWORD_MAX_BYTES`] long, as its
//! exact value in the field's fast column (what `terms`, aggregations, sorting and string
//! ranges read). A value that is at most one word (`checkout`, `GET`, `/health`, a hex
//! trace id) also gets an exact keyword term (the whole value, marked with
//! [`KEYWORD_MARK`] so it never collides with a word), and when it is one lowercase word
//! its word would repeat that keyword, so it is left out and word queries look for the
//! keyword too ([`is_own_keyword`]).
//!
//! A value of several words (`GET /api/v1/cart/2989 returned 200`, `checkout-7f3a-01`) has
//! no keyword term: such values are mostly unique in log lines, and a unique term per
//! value and line cost as much to index as all the words of the line together (see
//! docs/performance.md). An exact `term` on such a value is the phrase of its words,
//! checked against the fast column's exact value; `prefix`, `wildcard` and `regexp` match
//! the column's values. Keywords longer than [`KEYWORD_MAX_BYTES`] are kept neither as
//! terms nor in the column, like Elasticsearch's dynamic mapping (`ignore_above: 256`), so
//! long messages do not bloat the term dictionary or the columnar store.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Name under which [`BodyTokenizer`] is registered.
pub const BODY_TOKENIZER: &str = "lookout_body";
/// Name under which [`KeywordTokenizer`] is registered (fast-field columns).
pub const KEYWORD_TOKENIZER: &str = "lookout_keyword";

/// Marks a keyword token in the body field's term dictionary.
pub const KEYWORD_MARK: char = '\u{1}';
/// Longest string kept as a keyword, in bytes.
pub const KEYWORD_MAX_BYTES: usize = 256;
/// Longest word kept, in bytes (longer ones are noise: hashes, base64).
const WORD_MAX_BYTES: usize = 255;

/// Splits text into lowercased alphanumeric words, as `match` queries see it.
///
/// Hand-written rather than tantivy's `SimpleTokenizer` + `LowerCaser` chain so the body
/// tokenizer can emit the keyword token and the words from one pass.
pub fn words(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        loop {
            let (start, first) = chars.next()?;
            if !first.is_alphanumeric() {
                continue;
            }
            let mut end = start + first.len_utf8();
            while let Some(&(index, next)) = chars.peek() {
                if !next.is_alphanumeric() {
                    break;
                }
                end = index + next.len_utf8();
                chars.next();
            }
            if end - start <= WORD_MAX_BYTES {
                return Some((start, end));
            }
        }
    })
}

/// Whether `value` is a single word that is its own lowercase form: such a value is
/// indexed as a keyword only, and a word query for it must also match that keyword.
pub fn is_own_keyword(value: &str) -> bool {
    if value.is_ascii() {
        return !value.is_empty()
            && value.len() <= KEYWORD_MAX_BYTES
            && value
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit());
    }
    value.len() <= KEYWORD_MAX_BYTES
        && !value.is_empty()
        && value.chars().all(|c| {
            c.is_alphanumeric() && !c.is_uppercase() && c.to_lowercase().eq(std::iter::once(c))
        })
}

/// Lowercases `word` into `out` (ASCII fast path).
pub fn lowercase_into(word: &str, out: &mut String) {
    out.clear();
    if word.is_ascii() {
        out.push_str(word);
        out.make_ascii_lowercase();
    } else {
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
}

/// Whether `value` gets a keyword term: at most [`KEYWORD_MAX_BYTES`] long and at most
/// one word. Longer values are in neither the dictionary nor the fast column; values of
/// several words are in the fast column only (see the module documentation).
pub fn has_keyword_term(value: &str) -> bool {
    value.len() <= KEYWORD_MAX_BYTES && words(value).nth(1).is_none()
}

/// The keyword form of a string value as stored in the term dictionary, or `None` when the
/// value has no keyword term ([`has_keyword_term`]).
pub fn keyword_token(value: &str) -> Option<String> {
    has_keyword_term(value).then(|| {
        let mut token = String::with_capacity(value.len() + 1);
        token.push(KEYWORD_MARK);
        token.push_str(value);
        token
    })
}

/// Keyword token (for a short value of at most one word) followed by lowercased words. Keeps its token and
/// word list between values, as tantivy's own tokenizers do, so a value costs no
/// allocation.
#[derive(Clone, Default)]
pub struct BodyTokenizer {
    token: Token,
    spans: Vec<(usize, usize)>,
}

/// The whole value as one token when short enough, nothing otherwise.
#[derive(Clone, Default)]
pub struct KeywordTokenizer {
    token: Token,
}

pub struct WordStream<'a> {
    text: &'a str,
    spans: &'a [(usize, usize)],
    next: usize,
    keyword: bool,
    token: &'a mut Token,
}

impl TokenStream for WordStream<'_> {
    fn advance(&mut self) -> bool {
        if self.keyword {
            self.keyword = false;
            self.token.text.clear();
            self.token.text.push(KEYWORD_MARK);
            self.token.text.push_str(self.text);
            self.token.offset_from = 0;
            self.token.offset_to = self.text.len();
            self.token.position = 0;
            return true;
        }
        let Some(&(start, end)) = self.spans.get(self.next) else {
            return false;
        };
        lowercase_into(&self.text[start..end], &mut self.token.text);
        self.token.offset_from = start;
        self.token.offset_to = end;
        self.token.position = self.next;
        self.next += 1;
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// Emits the unmarked raw value (fast-field columns are not shared with words).
pub struct RawStream<'a> {
    text: Option<&'a str>,
    token: &'a mut Token,
}

impl TokenStream for RawStream<'_> {
    fn advance(&mut self) -> bool {
        let Some(text) = self.text.take() else {
            return false;
        };
        self.token.text.clear();
        self.token.text.push_str(text);
        self.token.offset_from = 0;
        self.token.offset_to = text.len();
        self.token.position = 0;
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

impl Tokenizer for BodyTokenizer {
    type TokenStream<'a> = WordStream<'a>;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
        self.spans.clear();
        let own_keyword = is_own_keyword(text);
        if !own_keyword {
            self.spans.extend(words(text));
        }
        self.token.reset();
        // the same rule as `has_keyword_term`, from the words already split
        let keyword = own_keyword || (text.len() <= KEYWORD_MAX_BYTES && self.spans.len() <= 1);
        WordStream {
            text,
            spans: &self.spans,
            next: 0,
            keyword,
            token: &mut self.token,
        }
    }
}

impl Tokenizer for KeywordTokenizer {
    type TokenStream<'a> = RawStream<'a>;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> RawStream<'a> {
        self.token.reset();
        RawStream {
            text: (text.len() <= KEYWORD_MAX_BYTES).then_some(text),
            token: &mut self.token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens<T: Tokenizer>(mut tokenizer: T, text: &str) -> Vec<(String, usize)> {
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while let Some(token) = stream.next() {
            out.push((token.text.clone(), token.position));
        }
        out
    }

    #[test]
    fn body_tokenizer_emits_marked_keyword_then_lowercased_words() {
        assert_eq!(
            tokens(BodyTokenizer::default(), "/Health"),
            vec![("\u{1}/Health".to_string(), 0), ("health".to_string(), 0),]
        );
        assert_eq!(
            tokens(BodyTokenizer::default(), "GET"),
            vec![("\u{1}GET".to_string(), 0), ("get".to_string(), 0)]
        );
    }

    #[test]
    fn values_of_several_words_have_words_only_and_a_fast_keyword() {
        let value = "GET /api/Cart 500";
        assert_eq!(
            tokens(BodyTokenizer::default(), value),
            vec![
                ("get".to_string(), 0),
                ("api".to_string(), 1),
                ("cart".to_string(), 2),
                ("500".to_string(), 3),
            ]
        );
        assert!(!has_keyword_term(value));
        assert_eq!(keyword_token(value), None);
        assert_eq!(
            tokens(KeywordTokenizer::default(), value),
            vec![(value.to_string(), 0)]
        );
        assert!(has_keyword_term("/health"));
        assert!(has_keyword_term("--"));
        assert!(has_keyword_term(""));
    }

    #[test]
    fn long_values_are_words_only_and_have_no_fast_keyword() {
        let long = "word ".repeat(100);
        let body = tokens(BodyTokenizer::default(), &long);
        assert_eq!(body.len(), 100);
        assert!(body.iter().all(|(text, _)| text == "word"));
        assert!(tokens(KeywordTokenizer::default(), &long).is_empty());
        assert_eq!(tokens(KeywordTokenizer::default(), "Checkout").len(), 1);
    }

    #[test]
    fn unicode_words_are_lowercased() {
        assert_eq!(
            tokens(BodyTokenizer::default(), "Ärger über"),
            vec![("ärger".to_string(), 0), ("über".to_string(), 1),]
        );
    }

    #[test]
    fn a_single_lowercase_word_is_indexed_as_its_keyword_only() {
        assert_eq!(
            tokens(BodyTokenizer::default(), "checkout"),
            vec![("\u{1}checkout".to_string(), 0)]
        );
        assert_eq!(tokens(BodyTokenizer::default(), "Checkout").len(), 2);
        assert_eq!(tokens(BodyTokenizer::default(), "check-out").len(), 2);
        assert!(is_own_keyword("4bf92f3577b34da6"));
        assert!(!is_own_keyword("Ärger"));
        assert!(!is_own_keyword("a b"));
    }
}
