//! Masking before mining: a line's variable parts become placeholders, so that lines of
//! one kind share their tokens before the parse tree sees them (drain3's "masking").
//!
//! Consumes one line of text; produces its tokens (split on whitespace), at most
//! `max_tokens` of them from the first `max_line_bytes` bytes. Placeholders:
//!
//! | placeholder | what it replaces | example |
//! |---|---|---|
//! | `<STR>` | a quoted string (`"…"`, or `'…'` opening a token) | `"out of stock"` |
//! | `<IP>` | an IPv4 or IPv6 address, with or without a port | `10.0.0.7:8080` |
//! | `<UUID>` | a UUID | `6f1c2a44-…-9d1e` |
//! | `<HEX>` | `0x…`, or 8+ hex digits with a digit among them (trace ids, hashes) | `4bf92f3577b34da6` |
//! | `<DUR>` | a number with a time unit (`ns us µs ms s m h d`, also `1h30m`) | `329.1ms` |
//! | `<NUM>` | a number (sign, decimals, exponent, a trailing `%`) | `-3.5e2` |
//! | `<ID>` | letters with 3+ digits, or 12+ characters with a digit | `req-8f3a2c1` |
//! | `<*>` | a path segment that is one of the above | `/api/v1/cart/<*>` |
//!
//! Punctuation around a token stays (`2989,` → `<NUM>,`), and `key=value` masks the value
//! only (`user=42` → `user=<NUM>`). The parse tree's own wildcards (where lines of one
//! template differ) are `<*>` too. Pure: no IO, no state.

use std::net::IpAddr;

/// Limits of one line.
#[derive(Debug, Clone, Copy)]
pub struct LineLimits {
    /// Bytes of a line considered; the rest is ignored.
    pub max_line_bytes: usize,
    /// Tokens of a line considered; the rest is ignored.
    pub max_tokens: usize,
}

/// The masked tokens of `line` within `limits`.
pub fn tokens(line: &str, limits: LineLimits) -> Vec<String> {
    let line = truncate(line, limits.max_line_bytes);
    let unquoted = mask_quotes(line);
    unquoted
        .split_whitespace()
        .take(limits.max_tokens)
        .map(mask_token)
        .collect()
}

/// `text` cut to at most `max_bytes` bytes, at a character boundary.
pub fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `line` with its quoted strings replaced by `<STR>`. A `"` opens a string anywhere; a
/// `'` only where a token (or a `key=` value) starts, so apostrophes in words stay.
fn mask_quotes(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains(['"', '\'']) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut previous: Option<char> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((start, char)) = chars.next() {
        let opens = char == '"'
            || (char == '\''
                && previous.is_none_or(|before| {
                    before.is_whitespace() || matches!(before, '=' | '(' | '[' | ':' | ',')
                }));
        if !opens {
            out.push(char);
            previous = Some(char);
            continue;
        }
        match line[start + 1..].find(char) {
            Some(length) => {
                out.push_str("<STR>");
                let end = start + 1 + length; // the closing quote
                while chars.peek().is_some_and(|(at, _)| *at <= end) {
                    chars.next();
                }
                previous = Some(char);
            }
            None => {
                out.push(char);
                previous = Some(char);
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// One whitespace-free token, masked.
fn mask_token(token: &str) -> String {
    if token == "<STR>" {
        return token.to_string();
    }
    let core_start = token
        .find(|char: char| !is_leading_punctuation(char))
        .unwrap_or(token.len());
    let core_end = token
        .rfind(|char: char| !is_trailing_punctuation(char))
        .map_or(core_start, |at| {
            at + token[at..].chars().next().map_or(0, char::len_utf8)
        })
        .max(core_start);
    let (prefix, core, suffix) = (
        &token[..core_start],
        &token[core_start..core_end],
        &token[core_end..],
    );
    let masked = mask_core(core);
    if masked.is_none() && prefix.is_empty() && suffix.is_empty() {
        return token.to_string();
    }
    let mut out = String::with_capacity(token.len());
    out.push_str(prefix);
    match masked {
        Some(masked) => out.push_str(&masked),
        None => out.push_str(core),
    }
    out.push_str(suffix);
    out
}

fn is_leading_punctuation(char: char) -> bool {
    matches!(char, '(' | '[' | '{' | '<' | ',' | ';')
}

fn is_trailing_punctuation(char: char) -> bool {
    matches!(
        char,
        ')' | ']' | '}' | '>' | ',' | ';' | '.' | ':' | '!' | '?'
    )
}

/// The masked form of a token without its punctuation; `None` when it stays as it is.
fn mask_core(core: &str) -> Option<String> {
    // every placeholder but `<STR>` needs a digit (hex without one reads as a word)
    if !core.bytes().any(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if let Some(kind) = classify(core) {
        return Some(kind.to_string());
    }
    if let Some((key, value)) = core.split_once('=')
        && !key.is_empty()
    {
        let value = match classify(value) {
            Some(kind) => kind.to_string(),
            None => mask_path(value).unwrap_or_else(|| value.to_string()),
        };
        return Some(format!("{key}={value}"));
    }
    mask_path(core)
}

/// `core` with its variable path segments (split on `/`) as `<*>`; `None` when it has no
/// `/` or nothing in it varies.
fn mask_path(core: &str) -> Option<String> {
    if !core.contains('/') {
        return None;
    }
    let mut changed = false;
    let segments: Vec<&str> = core
        .split('/')
        .map(|segment| {
            // a query string's values vary too: `?page=2` keeps its key
            if classify(segment).is_some() {
                changed = true;
                "<*>"
            } else {
                segment
            }
        })
        .collect();
    changed.then(|| segments.join("/"))
}

/// The placeholder of a whole token, if it is a value.
fn classify(text: &str) -> Option<&'static str> {
    if text.is_empty() || !text.bytes().any(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if is_number(text) {
        return Some("<NUM>");
    }
    if is_duration(text) {
        return Some("<DUR>");
    }
    if is_ip(text) {
        return Some("<IP>");
    }
    if is_uuid(text) {
        return Some("<UUID>");
    }
    if is_hex(text) {
        return Some("<HEX>");
    }
    if is_id(text) {
        return Some("<ID>");
    }
    None
}

/// A decimal number: sign, digits, decimals, exponent, a trailing `%`.
fn is_number(text: &str) -> bool {
    let text = text.strip_suffix('%').unwrap_or(text);
    let text = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    mantissa_ok
        && exponent
            .is_none_or(|exponent| digits(exponent.strip_prefix(['-', '+']).unwrap_or(exponent)))
}

/// Numbers with time units, one or more (`329.1ms`, `1h30m`, `2.5s`).
fn is_duration(text: &str) -> bool {
    let mut rest = text;
    let mut parts = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|char: char| !(char.is_ascii_digit() || char == '.'))
            .unwrap_or(rest.len());
        if number_end == 0 || !rest[..number_end].bytes().any(|byte| byte.is_ascii_digit()) {
            return false;
        }
        rest = &rest[number_end..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h", "d"]
            .into_iter()
            .find(|unit| rest.starts_with(unit));
        let Some(unit) = unit else {
            return false;
        };
        rest = &rest[unit.len()..];
        parts += 1;
    }
    parts > 0
}

fn is_ip(text: &str) -> bool {
    if text.parse::<IpAddr>().is_ok() || text.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    // `10.0.0.7:8080`-like without a valid port is still an address with something after
    text.rsplit_once(':').is_some_and(|(address, port)| {
        address.parse::<std::net::Ipv4Addr>().is_ok()
            && port.bytes().all(|byte| byte.is_ascii_digit())
    })
}

fn is_uuid(text: &str) -> bool {
    let lengths = [8, 4, 4, 4, 12];
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts.iter().zip(lengths).all(|(part, length)| {
            part.len() == length && part.bytes().all(|byte| byte.is_ascii_hexdigit())
        })
}

fn is_hex(text: &str) -> bool {
    if let Some(digits) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_hexdigit());
    }
    text.len() >= 8 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// An identifier with digits: letters with 3+ digits (`user1234`, `req-8f3a2c1`), or a
/// long token (12+ characters) with any digit. `v1`, `http2`, `ipv4` stay words.
fn is_id(text: &str) -> bool {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let word = text
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'));
    word && (digits >= 3 || (digits >= 1 && text.len() >= 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: LineLimits = LineLimits {
        max_line_bytes: 4096,
        max_tokens: 64,
    };

    fn masked(line: &str) -> String {
        tokens(line, LIMITS).join(" ")
    }

    #[test]
    fn variable_parts_become_placeholders() {
        let table = [
            (
                "GET /api/v1/cart/2989 returned 200 in 329.1ms for user 2989",
                "GET /api/v1/cart/<*> returned <NUM> in <DUR> for user <NUM>",
            ),
            (
                "connection from 10.0.0.7:8080 reset after 1h30m",
                "connection from <IP> reset after <DUR>",
            ),
            (
                "trace=4bf92f3577b34da6a3ce929d0e0e4736 span 0x1f2e",
                "trace=<HEX> span <HEX>",
            ),
            (
                "order 6f1c2a44-5b7e-4c1d-9a2b-3c4d5e6f9d1e failed: \"out of stock\"",
                "order <UUID> failed: <STR>",
            ),
            (
                "retry (3 of 5), backoff=2.5s",
                "retry (<NUM> of <NUM>), backoff=<DUR>",
            ),
            ("request req-8f3a2c1 from ::1", "request <ID> from <IP>"),
            (
                "user's cart is empty at 50%.",
                "user's cart is empty at <NUM>.",
            ),
            ("http2 v1 ipv4 stay words", "http2 v1 ipv4 stay words"),
            ("-3.5e2 and +7", "<NUM> and <NUM>"),
            ("query='select 1' done", "query=<STR> done"),
        ];
        for (line, expected) in table {
            assert_eq!(masked(line), expected, "{line}");
        }
    }

    #[test]
    fn limits_cut_long_lines_and_many_tokens() {
        let limits = LineLimits {
            max_line_bytes: 10,
            max_tokens: 3,
        };
        assert_eq!(tokens("a b c d e f", limits), ["a", "b", "c"]);
        assert_eq!(tokens("ééééééé", limits), ["ééééé"]);
        assert!(tokens("", limits).is_empty());
        assert_eq!(tokens("\"unclosed quote", LIMITS), ["\"unclosed", "quote"]);
    }
}
