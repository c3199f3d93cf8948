//! One item of a write request: what it asks for ([`Item`], parsed from a `_bulk` body or
//! built by a single-document write) and what became of it ([`ItemResult`]).
//!
//! Outcomes are typed: ingest says *what* happened (created, a version conflict, a
//! rejected line); the server decides how Elasticsearch writes that (status codes, error
//! type names, `result` strings). Nothing here knows the wire format.

use super::bulk::{self, ActionKind, Pair, SourcePosition};
use super::event::{self, EventRules, Rejection, RejectionKind};

/// One item of a write request, after parsing.
#[derive(Debug)]
pub struct Item {
    pub kind: ActionKind,
    pub index: Option<String>,
    pub id: Option<String>,
    pub position: Option<SourcePosition>,
    pub prepared: Result<Option<event::Event>, Rejection>,
}

/// What became of one item of a write request, in request order.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult {
    pub kind: ActionKind,
    /// The index the item named (empty when it named none).
    pub index: String,
    /// The document's id: the one given, or the one generated for a new document.
    pub id: Option<String>,
    pub outcome: ItemOutcome,
}

impl ItemResult {
    /// Why the item was refused; `None` when it was not.
    pub fn failure(&self) -> Option<&ItemFailure> {
        match &self.outcome {
            ItemOutcome::Failed(failure) => Some(failure),
            _ => None,
        }
    }
}

/// What a write did with one item.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    /// A new document was written.
    Created,
    /// An `index` with an explicit id replaced the document of that id.
    Updated,
    /// A `delete` removed its document.
    Deleted,
    /// A `delete` named an id that does not exist; nothing was written.
    NotFound,
    /// At or below its source's high-water mark: written before, not again.
    Noop,
    /// Refused; nothing of it was written.
    Failed(ItemFailure),
}

/// Why an item was refused. The message says what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ItemFailure {
    /// Neither the action line nor the URL names an index.
    #[error(
        "Validation Failed: 1: index is missing; name it in the action line or the URL (/logs/_bulk)"
    )]
    MissingIndex,
    /// The index name breaks Elasticsearch's index-name rules.
    #[error("{reason}")]
    InvalidIndexName { reason: String },
    /// The action or document line was rejected before deciding anything.
    #[error("{}", .0.reason)]
    Rejected(Rejection),
    /// A `create` named an id that exists already.
    #[error("[{id}]: version conflict, document already exists (current version [1])")]
    AlreadyExists { id: String },
}

/// Parses a `_bulk` body into items; `default_index` comes from the URL.
pub fn parse_bulk(
    lines: &[bytes::Bytes],
    default_index: Option<&str>,
    rules: &EventRules,
    now_micros: i64,
) -> Vec<Item> {
    parse_pairs(bulk::pair_lines(lines), default_index, rules, now_micros)
}

/// Prepares the documents of paired lines (one piece of a body read as it arrives, see
/// [`bulk::Pairer`]) into items; `default_index` comes from the URL.
pub fn parse_pairs(
    pairs: Vec<Pair>,
    default_index: Option<&str>,
    rules: &EventRules,
    now_micros: i64,
) -> Vec<Item> {
    pairs
        .into_iter()
        .map(|pair| match pair {
            Pair::Ok { action, source } => Item {
                kind: action.kind,
                index: action.index.or_else(|| default_index.map(str::to_string)),
                id: action.id,
                position: action.position,
                prepared: match source {
                    Some(line) => event::prepare(&line, rules, now_micros).map(Some),
                    None => Ok(None),
                },
            },
            Pair::Bad {
                kind,
                index,
                reason,
            } => Item {
                kind,
                index: index.or_else(|| default_index.map(str::to_string)),
                id: None,
                position: None,
                prepared: Err(Rejection {
                    kind: RejectionKind::IllegalValue,
                    label: "bad_action",
                    reason,
                }),
            },
        })
        .collect()
}
