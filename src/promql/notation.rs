//! The value and series notation of Prometheus' test files, shared by the PromQL
//! conformance runner and `lookout rules test --fixtures` (promtool's `input_series`):
//! `metric{label="v"}` series and value sequences such as `0+10x3 _ 1-2x2 stale`.

use promql_parser::parser::Expr;

use crate::tsdb::head::Labels;

/// Staleness marker bits (Prometheus' `StaleNaN`).
const STALE_NAN: u64 = super::STALE_NAN_BITS;

/// One value of a sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Point {
    Value(f64),
    Missing,
    Histogram,
}

pub fn parse_number(token: &str) -> Option<f64> {
    let lower = token.to_ascii_lowercase();
    let (sign, body) = match lower.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, lower.strip_prefix('+').unwrap_or(&lower)),
    };
    let value = match body {
        "inf" => f64::INFINITY,
        "nan" => f64::NAN,
        _ if body.starts_with("0x") => i64::from_str_radix(&body[2..], 16).ok()? as f64,
        _ => body.parse::<f64>().ok()?,
    };
    Some(sign * value)
}

/// Expands a value sequence (`1+2x3 _ stale {{…}}`).
pub fn parse_values(text: &str) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            let end = rest.find("}}").ok_or("unterminated histogram")? + 2;
            let mut tail = &rest[end..];
            // {{h}}xN or {{h}}+{{d}}xN
            let mut count = 1;
            if tail.starts_with('+') || tail.starts_with('-') {
                let inner_end = tail.find("}}").ok_or("unterminated histogram")? + 2;
                tail = &tail[inner_end..];
            }
            if let Some(after) = tail.strip_prefix('x') {
                let digits = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                count = after[..digits]
                    .parse::<usize>()
                    .map_err(|_| "bad histogram repeat")?
                    + 1;
                tail = &after[digits..];
            }
            out.extend(std::iter::repeat_n(Point::Histogram, count));
            rest = tail.trim_start();
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..end];
        rest = rest[end..].trim_start();
        if token == "_" {
            out.push(Point::Missing);
            continue;
        }
        if token == "stale" {
            out.push(Point::Value(f64::from_bits(STALE_NAN)));
            continue;
        }
        if let Some(times) = token.strip_prefix("_x") {
            let n: usize = times.parse().map_err(|_| format!("bad token {token:?}"))?;
            out.extend(std::iter::repeat_n(Point::Missing, n));
            continue;
        }
        // a+bxN, a-bxN, axN (before numbers: `0x59` is 0 sixty times, `0x3d` is hex)
        let repeat = token.rfind('x').filter(|&x| {
            x > 0 && x + 1 < token.len() && token[x + 1..].chars().all(|c| c.is_ascii_digit())
        });
        let Some(x) = repeat else {
            out.push(Point::Value(
                parse_number(token).ok_or_else(|| format!("bad token {token:?}"))?,
            ));
            continue;
        };
        let times: usize = token[x + 1..]
            .parse()
            .map_err(|_| format!("bad token {token:?}"))?;
        let head = &token[..x];
        let split = head
            .char_indices()
            .skip(1)
            .find(|(i, c)| {
                (*c == '+' || *c == '-') && !head[..*i].to_ascii_lowercase().ends_with('e')
            })
            .map(|(i, _)| i);
        let (start, delta) = match split {
            Some(i) => {
                let start =
                    parse_number(&head[..i]).ok_or_else(|| format!("bad token {token:?}"))?;
                let delta =
                    parse_number(&head[i + 1..]).ok_or_else(|| format!("bad token {token:?}"))?;
                (start, if &head[i..=i] == "-" { -delta } else { delta })
            }
            None => (
                parse_number(head).ok_or_else(|| format!("bad token {token:?}"))?,
                0.0,
            ),
        };
        for i in 0..=times {
            out.push(Point::Value(start + delta * i as f64));
        }
    }
    Ok(out)
}

/// Splits `metric{labels} values` into its label set and the rest.
pub fn parse_series_line(line: &str) -> Result<(Labels, String), String> {
    let line = line.trim();
    let mut end = 0;
    let bytes = line.as_bytes();
    // metric name (possibly absent)
    while end < bytes.len() && !bytes[end].is_ascii_whitespace() && bytes[end] != b'{' {
        end += 1;
    }
    if end < bytes.len() && bytes[end] == b'{' {
        let mut quote: Option<u8> = None;
        while end < bytes.len() {
            let byte = bytes[end];
            match quote {
                Some(_) if byte == b'\\' => end += 1,
                Some(q) if byte == q => quote = None,
                Some(_) => {}
                None if byte == b'"' || byte == b'\'' || byte == b'`' => quote = Some(byte),
                None if byte == b'}' => {
                    end += 1;
                    break;
                }
                None => {}
            }
            end += 1;
        }
    }
    let selector = &line[..end];
    let rest = line[end..].to_string();
    let compact: String = selector.chars().filter(|c| !c.is_whitespace()).collect();
    if compact == "{}" {
        return Ok((Labels::from(Vec::new()), rest));
    }
    let expr = promql_parser::parser::parse(selector)
        .map_err(|error| format!("bad series {selector:?}: {error}"))?;
    let Expr::VectorSelector(selector) = expr else {
        return Err(format!("not a series: {selector:?}"));
    };
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(name) = selector.name {
        labels.push(("__name__".into(), name));
    }
    for matcher in selector.matchers.matchers {
        labels.retain(|(name, _)| name != &matcher.name);
        labels.push((matcher.name, matcher.value));
    }
    labels.sort();
    Ok((labels.into(), rest))
}
