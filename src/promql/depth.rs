//! The nesting guard: a PromQL expression is refused before it reaches the parser when its
//! syntax tree could be deeper than [`MAX_DEPTH`].
//!
//! Everything that walks an expression recurses on its depth: the `promql-parser` crate
//! (its type checks call `value_type`, which recurses, once per binary node — quadratic in
//! a long chain), our evaluator, our visitors and the tree's `Drop`. `1+1+…+1` with a few
//! thousand terms overflows any thread's stack, and Rust aborts the process on a stack
//! overflow. Prometheus' Go stacks grow; ours do not, so the depth is bounded up front, on
//! the text, in linear time.
//!
//! The bound: every node on a path from the root to a leaf is an operator (binary or
//! unary: one token each), a subquery or range (one `[` each), or a parenthesised node
//! (`(…)`, a call, an aggregation), whose parentheses enclose every node below it on
//! that path. So the depth is at most the number of operator tokens plus `[` plus the
//! deepest parenthesis nesting, plus the leaf. The count is conservative (operators in
//! different branches add up), which only matters for expressions with hundreds of
//! operators — none that a person or Grafana writes.
//!
//! Not a lexer: strings (with escapes), `#` comments and label matchers `{…}` are skipped
//! as the real lexer would; anything it would reject is left for it to reject.

/// The deepest expression accepted: operators, subqueries and nested parentheses
/// together. Hand-written queries and Grafana's stay far below (a few dozen); at the limit,
/// parsing, evaluating and dropping an expression needs under 3 MiB of stack in a debug
/// build (about 10 KiB a level; tested in half of the stack) and less in a release build,
/// of the 8 MiB every thread of the server has ([`crate::THREAD_STACK_BYTES`]).
pub const MAX_DEPTH: usize = 256;

/// Refuses `text` when its syntax tree could be deeper than [`MAX_DEPTH`], with
/// Prometheus' parse-error shape and the position where the limit was passed.
pub fn check(text: &str) -> Result<(), super::Error> {
    let mut operators = 0usize;
    let mut nesting = 0usize;
    let mut deepest = 0usize;
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        match bytes[at] {
            quote @ (b'"' | b'\'' | b'`') => at = skip_string(bytes, at, quote),
            b'#' => {
                at = bytes[at..]
                    .iter()
                    .position(|&byte| byte == b'\n')
                    .map_or(bytes.len(), |newline| at + newline);
            }
            b'{' => at = skip_braces(bytes, at),
            b'(' => {
                nesting += 1;
                deepest = deepest.max(nesting);
                at += 1;
            }
            b')' => {
                nesting = nesting.saturating_sub(1);
                at += 1;
            }
            b'[' | b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => {
                operators += 1;
                at += 1;
            }
            b'=' | b'!' | b'<' | b'>' => {
                operators += 1;
                at += 1;
                if bytes.get(at) == Some(&b'=') {
                    at += 1;
                }
            }
            byte if byte.is_ascii_digit() || byte == b'.' => at = skip_number(bytes, at),
            byte if byte.is_ascii_alphabetic() || byte == b'_' || byte == b':' => {
                let end = bytes[at..]
                    .iter()
                    .position(|&byte| {
                        !(byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':')
                    })
                    .map_or(bytes.len(), |length| at + length);
                if matches!(&text[at..end], "and" | "or" | "unless" | "atan2") {
                    operators += 1;
                }
                at = end;
            }
            _ => at += 1,
        }
        if operators + deepest + 1 > MAX_DEPTH {
            let (line, column) = super::position(text, start);
            return Err(super::Error::BadData(format!(
                "{line}:{column}: parse error: expression nests too deeply: more than {MAX_DEPTH} operators, subqueries and parentheses (Lookout's limit, which keeps every query within its thread's stack); split it into recording rules or simpler queries"
            )));
        }
    }
    Ok(())
}

/// The index just past the string literal opening at `start` (or the end of the text).
fn skip_string(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if quote != b'`' => at += 2,
            byte if byte == quote => return at + 1,
            _ => at += 1,
        }
    }
    bytes.len()
}

/// The index just past the label matchers `{…}` opening at `start`; strings inside may
/// hold `}`.
fn skip_braces(bytes: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            quote @ (b'"' | b'\'' | b'`') => at = skip_string(bytes, at, quote),
            b'}' => return at + 1,
            _ => at += 1,
        }
    }
    bytes.len()
}

/// The index just past the number or duration at `start` (`1e-3`, `0x1f`, `5m30s`,
/// `1.5e+10`): a sign right after an exponent belongs to the number.
fn skip_number(bytes: &[u8], start: usize) -> usize {
    let hex = bytes[start..].starts_with(b"0x") || bytes[start..].starts_with(b"0X");
    let mut at = start;
    while at < bytes.len() {
        let byte = bytes[at];
        let exponent_sign = (byte == b'-' || byte == b'+')
            && !hex
            && at > start
            && matches!(bytes[at - 1], b'e' | b'E');
        if byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'_' || exponent_sign {
            at += 1;
        } else {
            break;
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_queries_pass() {
        for query in [
            r#"sum by (job) (rate(http_requests_total{code=~"5..", path!="/a(b"}[5m]))"#,
            r#"histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) > 0.4"#,
            r#"max_over_time(sum by (job) (rate(x[5m]))[1h:1m] offset -5m) # a (comment ((("#,
            r#"1e-3 + 0x1F - 1.5e+10 and on(a) b unless c or atan2(d, e)"#,
            r#"log_matches{query="checkout_5xx"} / on(service) sum by (service) (increase(http_requests_total[1m]))"#,
        ] {
            check(query).expect(query);
        }
    }

    #[test]
    fn a_long_operator_chain_is_refused_at_its_position() {
        let at_limit = vec!["1"; MAX_DEPTH].join("+");
        check(&at_limit).expect("MAX_DEPTH - 1 operators and a leaf fit");
        let past = vec!["1"; MAX_DEPTH + 1].join("+");
        let error = check(&past).expect_err("one operator too many");
        assert_eq!(error.error_type(), "bad_data");
        let column = 2 * MAX_DEPTH; // the operator that passed the limit
        assert!(
            error.to_string().starts_with(&format!(
                "1:{column}: parse error: expression nests too deeply"
            )),
            "{error}"
        );
    }

    #[test]
    fn deep_parentheses_and_calls_are_refused_far_past_the_limit() {
        for text in [
            format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("{}x{}", "abs(".repeat(100_000), ")".repeat(100_000)),
            format!("{}x", "-".repeat(100_000)),
            format!("x{}", "[1m:]".repeat(100_000)),
        ] {
            assert!(check(&text).is_err(), "{}", &text[..20]);
        }
        // strings and matchers are not structure
        let quoted = format!(
            "x{{a=\"{}\"}} + \"{}\"",
            "(".repeat(10_000),
            "+".repeat(10_000)
        );
        check(&quoted).expect("brackets and operators inside strings do not count");
    }
}
