//! `_bulk` NDJSON: action lines paired with source lines.
//!
//! Each action (`index`, `create`, `delete`) is followed by one source line, except
//! `delete`. A malformed action line fails its item and the next line is consumed as its
//! source, as Elasticsearch does, so one bad line never shifts the pairing of the rest.

use bytes::Bytes;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Index,
    Create,
    Delete,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Index => "index",
            ActionKind::Create => "create",
            ActionKind::Delete => "delete",
        }
    }
}

/// Where a line came from (agent protocol): file identity, truncation generation, and
/// the byte offset just past the line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePosition {
    pub source: String,
    #[serde(rename = "gen")]
    pub generation: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub kind: ActionKind,
    pub index: Option<String>,
    pub id: Option<String>,
    pub position: Option<SourcePosition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionMeta {
    #[serde(rename = "_index")]
    index: Option<String>,
    #[serde(rename = "_id")]
    id: Option<serde_json::Value>,
    #[serde(rename = "_lookout")]
    lookout: Option<SourcePosition>,
    // accepted for client compatibility, without effect
    #[serde(rename = "routing", alias = "_routing")]
    _routing: Option<serde_json::Value>,
    #[serde(rename = "pipeline")]
    _pipeline: Option<serde_json::Value>,
    #[serde(rename = "require_alias")]
    _require_alias: Option<serde_json::Value>,
    #[serde(rename = "dynamic_templates")]
    _dynamic_templates: Option<serde_json::Value>,
    #[serde(rename = "version")]
    _version: Option<serde_json::Value>,
    #[serde(rename = "version_type")]
    _version_type: Option<serde_json::Value>,
    #[serde(rename = "if_seq_no")]
    _if_seq_no: Option<serde_json::Value>,
    #[serde(rename = "if_primary_term")]
    _if_primary_term: Option<serde_json::Value>,
}

/// A bulk item before its document is prepared.
#[derive(Debug)]
pub enum Pair {
    Ok {
        action: Action,
        source: Option<Bytes>,
    },
    /// A bad action line (its source line, if any, consumed); `kind` is what the line
    /// seemed to be.
    Bad {
        kind: ActionKind,
        index: Option<String>,
        reason: String,
    },
}

/// Parses one action line.
pub fn parse_action(line: &[u8]) -> Result<Action, (ActionKind, String)> {
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|error| {
        (
            ActionKind::Index,
            format!(
                "malformed action/metadata line [{}:{}]: {error}",
                error.line(),
                error.column()
            ),
        )
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err((
            ActionKind::Index,
            "malformed action/metadata line: expected an object like {\"index\":{}}".into(),
        ));
    };
    if map.len() != 1 {
        return Err((ActionKind::Index, "malformed action/metadata line: expected exactly one action, like {\"index\":{\"_index\":\"logs\"}}".into()));
    }
    let (name, meta) = map.into_iter().next().expect("one entry");
    let kind = match name.as_str() {
        "index" => ActionKind::Index,
        "create" => ActionKind::Create,
        "delete" => ActionKind::Delete,
        "update" => {
            return Err((
                ActionKind::Index,
                "action [update] is not supported; use index to replace a document".into(),
            ));
        }
        other => {
            return Err((
                ActionKind::Index,
                format!(
                    "malformed action/metadata line: unknown action [{other}]; expected index, create or delete"
                ),
            ));
        }
    };
    let meta: ActionMeta = serde_json::from_value(meta)
        .map_err(|error| (kind, format!("malformed action/metadata line: {error}")))?;
    let id = match meta.id {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) if id.is_empty() => {
            return Err((kind, "_id must not be empty".into()));
        }
        Some(serde_json::Value::String(id)) if id.len() > 512 => {
            let start: String = id.chars().take(20).collect();
            return Err((
                kind,
                format!("_id [{start}...] is too long, must be no longer than 512 bytes"),
            ));
        }
        Some(serde_json::Value::String(id)) => Some(id),
        Some(serde_json::Value::Number(number)) => Some(number.to_string()),
        Some(other) => return Err((kind, format!("_id must be a string, got {other}"))),
    };
    if kind == ActionKind::Delete && id.is_none() {
        return Err((kind, "delete requires an _id".into()));
    }
    Ok(Action {
        kind,
        index: meta.index,
        id,
        position: meta.lookout,
    })
}

/// Pairs the non-blank lines of a body (see `ReadBody::lines`) into items.
pub fn pair_lines(lines: &[Bytes]) -> Vec<Pair> {
    let mut pairs = Vec::with_capacity(lines.len().div_ceil(2));
    let mut pairer = Pairer::default();
    for line in lines {
        if let Some(pair) = pairer.push(line.clone()) {
            pairs.push(pair);
        }
    }
    pairs.extend(pairer.finish());
    pairs
}

/// Pairs lines into items as they arrive (a body read piece by piece): an action line
/// waits for its source line; between pairs it holds nothing.
#[derive(Default)]
pub struct Pairer {
    waiting: Option<Waiting>,
}

/// An action line waiting for its source line.
enum Waiting {
    Source(Action),
    /// A bad action line: the next line is consumed as its source.
    Consumed {
        kind: ActionKind,
        index: Option<String>,
        reason: String,
    },
}

impl Pairer {
    /// Takes the next line; answers the pair it completes.
    pub fn push(&mut self, line: Bytes) -> Option<Pair> {
        match self.waiting.take() {
            Some(Waiting::Source(action)) => {
                return Some(Pair::Ok {
                    action,
                    source: Some(line),
                });
            }
            Some(Waiting::Consumed {
                kind,
                index,
                reason,
            }) => {
                return Some(Pair::Bad {
                    kind,
                    index,
                    reason,
                });
            }
            None => {}
        }
        match parse_action(&line) {
            Ok(action) if action.kind == ActionKind::Delete => Some(Pair::Ok {
                action,
                source: None,
            }),
            Ok(action) => {
                self.waiting = Some(Waiting::Source(action));
                None
            }
            Err((kind, reason)) => {
                let index = serde_json::from_slice::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|value| {
                        value
                            .as_object()?
                            .values()
                            .next()?
                            .get("_index")?
                            .as_str()
                            .map(str::to_string)
                    });
                self.waiting = Some(Waiting::Consumed {
                    kind,
                    index,
                    reason,
                });
                None
            }
        }
    }

    /// Whether a pair is complete (nothing waits for its source line).
    pub fn between_pairs(&self) -> bool {
        self.waiting.is_none()
    }

    /// At the end of the body: an action line still waiting for its source fails.
    pub fn finish(self) -> Option<Pair> {
        match self.waiting? {
            Waiting::Source(action) => Some(Pair::Bad {
                kind: action.kind,
                index: action.index,
                reason: "the action line is not followed by a document line".into(),
            }),
            Waiting::Consumed {
                kind,
                index,
                reason,
            } => Some(Pair::Bad {
                kind,
                index,
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_action_consumes_the_next_line_as_its_source() {
        let body = b"{\"index\":{}}\n{\"a\":1}\n{\"index\":\n{\"b\":2}\n{\"create\":{\"_index\":\"x\",\"_id\":7}}\n{\"c\":3}\n{\"delete\":{\"_id\":\"d\"}}";
        let lines: Vec<Bytes> = body
            .split(|byte| *byte == b'\n')
            .map(Bytes::copy_from_slice)
            .collect();
        let pairs = pair_lines(&lines);
        assert_eq!(pairs.len(), 4);
        assert!(
            matches!(&pairs[0], Pair::Ok { source: Some(line), .. } if line == &b"{\"a\":1}"[..])
        );
        assert!(matches!(&pairs[1], Pair::Bad { .. }));
        match &pairs[2] {
            Pair::Ok { action, source } => {
                assert_eq!(action.kind, ActionKind::Create);
                assert_eq!(action.id.as_deref(), Some("7"));
                assert_eq!(source.as_deref(), Some(&b"{\"c\":3}"[..]));
            }
            other => panic!("expected create, got {other:?}"),
        }
        assert!(matches!(
            &pairs[3],
            Pair::Ok {
                action: Action {
                    kind: ActionKind::Delete,
                    ..
                },
                source: None
            }
        ));
    }

    #[test]
    fn lookout_positions_are_read_from_action_lines() {
        let action = parse_action(br#"{"index":{"_index":"logs","_lookout":{"source":"2049:1234:abcd","gen":1,"offset":4096}}}"#).expect("valid");
        assert_eq!(
            action.position,
            Some(SourcePosition {
                source: "2049:1234:abcd".into(),
                generation: 1,
                offset: 4096
            })
        );
    }

    /// The error quoted the id's first 20 bytes, which can end inside a character.
    #[test]
    fn a_long_multibyte_id_is_refused_without_slicing_a_character() {
        let line = format!(r#"{{"index":{{"_id":"{}"}}}}"#, "€".repeat(200));
        let (_, reason) = parse_action(line.as_bytes()).expect_err("over 512 bytes");
        assert!(
            reason.starts_with(&format!("_id [{}...]", "€".repeat(20))),
            "{reason}"
        );
    }

    #[test]
    fn unknown_actions_and_fields_are_rejected() {
        assert!(parse_action(br#"{"upsert":{}}"#).is_err());
        assert!(parse_action(br#"{"index":{"_indx":"logs"}}"#).is_err());
        assert!(parse_action(br#"{"delete":{"_index":"logs"}}"#).is_err());
    }
}
