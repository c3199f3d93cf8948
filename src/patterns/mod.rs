//! Log patterns: the templates of a text field's lines, mined online with a Drain parse
//! tree ([`drain`]) after masking their variable parts ([`mask`]), from lines read out of
//! the index ([`read`]).
//!
//! Two users: `GET /_lookout/patterns` (the top templates of a search, [`top_patterns`])
//! and `new_pattern` rules (templates that did not occur in a lookback,
//! `crate::rules::new_pattern`). Patterns are not stored: they are mined when asked.

pub mod drain;
pub mod mask;
pub mod read;

use std::collections::HashMap;

pub use drain::{Cluster, Miner, MinerOptions, WILDCARD};

use crate::index::IndexStore;

/// Lines `GET /_lookout/patterns` mines at most (the newest of the matches); beyond it
/// the answer is of a sample, and says so.
pub const MAX_LINES_MINED: usize = 50_000;

/// One template of a search's lines.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pattern {
    pub template: String,
    /// Mined lines it took.
    pub count: u64,
    /// Its newest line.
    pub sample: String,
    /// A Lucene query for its literal tokens (matches a superset of its lines).
    pub query: String,
}

/// The top templates of some lines.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PatternSummary {
    pub patterns: Vec<Pattern>,
    /// Templates found (before `size` cut the list).
    pub templates: usize,
    pub lines_matched: u64,
    pub lines_mined: u64,
    /// Whether only the newest [`MAX_LINES_MINED`] lines were mined.
    pub sampled: bool,
    /// Templates forgotten past the miner's cluster cap (their counts are lost).
    pub templates_forgotten: u64,
}

/// The `size` templates with the most lines among the newest `max_lines` matches of
/// `lines` (ties: the template text), each with its newest line; blocking.
pub fn top_patterns(
    store: &IndexStore,
    lines: &read::LineQuery<'_>,
    size: usize,
    max_lines: usize,
    cancelled: &dyn Fn() -> bool,
) -> Result<PatternSummary, read::ReadError> {
    let mut miner = Miner::new(MinerOptions::default());
    let mut samples: HashMap<u64, String> = HashMap::new();
    let mut order = 0i64;
    let count = read::newest_lines(store, lines, max_lines, cancelled, &mut |line, _| {
        // newest first: a cluster's first line is its newest
        order -= 1;
        let added = miner.add(line, order);
        if added.created {
            samples.insert(
                added.cluster,
                mask::truncate(line, miner.options().limits.max_line_bytes).to_string(),
            );
        }
    })?;
    Ok(summarize(&miner, &mut samples, lines.field, size, count))
}

fn summarize(
    miner: &Miner,
    samples: &mut HashMap<u64, String>,
    field: &str,
    size: usize,
    count: read::ReadCount,
) -> PatternSummary {
    let mut clusters: Vec<&Cluster> = miner.clusters().collect();
    clusters.sort_by(|left, right| {
        right
            .size
            .cmp(&left.size)
            .then_with(|| left.tokens.cmp(&right.tokens))
    });
    let templates = clusters.len();
    let patterns = clusters
        .into_iter()
        .take(size)
        .map(|cluster| Pattern {
            template: cluster.template(),
            count: cluster.size,
            sample: samples.remove(&cluster.id).unwrap_or_default(),
            query: literal_query(field, &cluster.tokens),
        })
        .collect();
    PatternSummary {
        patterns,
        templates,
        lines_matched: count.matched,
        lines_mined: count.read,
        sampled: count.read < count.matched,
        templates_forgotten: miner.forgotten(),
    }
}

/// Literal fragments a query for a template keeps at most.
const MAX_QUERY_FRAGMENTS: usize = 12;

/// A Lucene query for the literal parts of a template's tokens (placeholders and
/// wildcards dropped; fragments without a letter or digit too): `field:"GET" AND
/// field:"/api/v1/cart/" AND …`. `*` for a template of placeholders only.
pub fn literal_query(field: &str, tokens: &[Box<str>]) -> String {
    let mut fragments: Vec<String> = Vec::new();
    for token in tokens {
        for fragment in literal_fragments(token) {
            if !fragments.contains(&fragment) {
                fragments.push(fragment);
            }
        }
    }
    if fragments.is_empty() {
        return "*".into();
    }
    let field = escape_field(field);
    fragments
        .iter()
        .take(MAX_QUERY_FRAGMENTS)
        .map(|fragment| {
            let quoted = fragment.replace('\\', "\\\\").replace('"', "\\\"");
            format!("{field}:\"{quoted}\"")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The parts of `token` between its placeholders (`<NUM>`, `<*>`, …) that have a letter
/// or digit.
fn literal_fragments(token: &str) -> Vec<String> {
    let mut fragments = Vec::new();
    let mut rest = token;
    loop {
        let placeholder = [
            "<*>", "<NUM>", "<DUR>", "<IP>", "<UUID>", "<HEX>", "<ID>", "<STR>",
        ]
        .iter()
        .filter_map(|placeholder| rest.find(placeholder).map(|at| (at, placeholder.len())))
        .min();
        let (literal, next) = match placeholder {
            Some((at, length)) => (&rest[..at], Some(&rest[at + length..])),
            None => (rest, None),
        };
        if literal.chars().any(char::is_alphanumeric) {
            fragments.push(literal.to_string());
        }
        match next {
            Some(next) => rest = next,
            None => return fragments,
        }
    }
}

/// A field name for a Lucene query: its special characters escaped.
fn escape_field(field: &str) -> String {
    let mut escaped = String::with_capacity(field.len());
    for char in field.chars() {
        if "+-=&|><!(){}[]^\"~*?:\\/ ".contains(char) {
            escaped.push('\\');
        }
        escaped.push(char);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_query_keeps_its_literal_parts() {
        let tokens: Vec<Box<str>> = "GET /api/v1/cart/<*> returned <NUM> in <DUR> : user=<NUM>"
            .split(' ')
            .map(Into::into)
            .collect();
        assert_eq!(
            literal_query("message", &tokens),
            "message:\"GET\" AND message:\"/api/v1/cart/\" AND message:\"returned\" AND message:\"in\" AND message:\"user=\""
        );
        let only_values: Vec<Box<str>> = vec!["<NUM>".into(), "<*>".into()];
        assert_eq!(literal_query("message", &only_values), "*");
        let quoted: Vec<Box<str>> = vec!["say\"hi\\".into()];
        assert_eq!(
            literal_query("log.msg", &quoted),
            "log.msg:\"say\\\"hi\\\\\""
        );
    }
}
