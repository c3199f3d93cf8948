//! Turning tailed lines into `_bulk` request bodies.
//!
//! - Against Lookout (`GET /_lookout/info` answered), every action carries the agent
//!   protocol's `_lookout` source, generation and offset, so a resent line is a `noop`.
//! - Against a plain Elasticsearch or OpenSearch, actions are `create` with a
//!   deterministic `_id` derived from the same position, so the cluster rejects a resent
//!   line with 409 instead of storing it twice.
//! - ECS fields are added — `host.name`, `log.file.path`, `log.offset` and configured
//!   static fields — but never overwrite what the application logged.
//! - A line that is not JSON is wrapped as `{"message": "<line>"}` (or dead-lettered, if so
//!   configured); one that is JSON but not an object, or not UTF-8, is dead-lettered with
//!   its reason.

use serde_json::{Map, Value};

/// Where a line came from.
#[derive(Debug, Clone)]
pub struct LinePosition<'a> {
    /// `FileIdentity::source_id()`.
    pub source: &'a str,
    pub generation: u64,
    /// Offset just past the line.
    pub offset: u64,
    pub path: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Lookout,
    PlainElasticsearch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonJson {
    Wrap,
    DeadLetter,
}

/// Why a line goes to the dead-letter file instead of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Short label for the `reason` metric label.
    pub label: &'static str,
    pub reason: String,
}

/// Builds one `_bulk` body.
#[derive(Debug)]
pub struct BatchBuilder {
    index: String,
    host_name: String,
    static_fields: Map<String, Value>,
    target: Target,
    non_json: NonJson,
    body: Vec<u8>,
    lines: usize,
}

impl BatchBuilder {
    pub fn new(
        index: &str,
        host_name: &str,
        static_fields: Map<String, Value>,
        target: Target,
        non_json: NonJson,
    ) -> BatchBuilder {
        BatchBuilder {
            index: index.to_string(),
            host_name: host_name.to_string(),
            static_fields,
            target,
            non_json,
            body: Vec::new(),
            lines: 0,
        }
    }

    pub fn len_bytes(&self) -> usize {
        self.body.len()
    }

    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Takes the body built so far, leaving the builder empty.
    pub fn take(&mut self) -> Vec<u8> {
        self.lines = 0;
        std::mem::take(&mut self.body)
    }

    /// Adds one line, or says why it must be dead-lettered (the batch is unchanged then).
    pub fn push(&mut self, line: &[u8], position: &LinePosition<'_>) -> Result<(), DeadLetter> {
        let text = std::str::from_utf8(line).map_err(|error| DeadLetter {
            label: "invalid_utf8",
            reason: format!("not UTF-8 (invalid byte at {})", error.valid_up_to()),
        })?;
        let mut document = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(DeadLetter {
                    label: "not_an_object",
                    reason: format!(
                        "a JSON {} is not a log event; log one JSON object per line",
                        kind_of(&other)
                    ),
                });
            }
            Err(error) if self.non_json == NonJson::DeadLetter => {
                return Err(DeadLetter {
                    label: "not_json",
                    reason: format!("not JSON: {error}"),
                });
            }
            Err(_) => {
                let mut map = Map::new();
                map.insert("message".into(), Value::String(text.to_string()));
                map
            }
        };
        add_if_absent(
            &mut document,
            &["host", "name"],
            Value::String(self.host_name.clone()),
        );
        add_if_absent(
            &mut document,
            &["log", "file", "path"],
            Value::String(position.path.to_string()),
        );
        let line_start = position.offset.saturating_sub(line.len() as u64 + 1);
        add_if_absent(&mut document, &["log", "offset"], Value::from(line_start));
        for (key, value) in &self.static_fields {
            document.entry(key.clone()).or_insert_with(|| value.clone());
        }
        let action = match self.target {
            Target::Lookout => {
                serde_json::json!({"index": {"_index": self.index, "_lookout": {"source": position.source, "gen": position.generation, "offset": position.offset}}})
            }
            Target::PlainElasticsearch => {
                serde_json::json!({"create": {"_index": self.index, "_id": deterministic_id(position)}})
            }
        };
        serde_json::to_writer(&mut self.body, &action).expect("an action serializes");
        self.body.push(b'\n');
        serde_json::to_writer(&mut self.body, &document).expect("a document serializes");
        self.body.push(b'\n');
        self.lines += 1;
        Ok(())
    }
}

/// Sets `path` (nested keys) to `value` unless any step of it is already taken by the
/// application: an existing key is never overwritten, an existing scalar never replaced
/// by an object.
fn add_if_absent(document: &mut Map<String, Value>, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut current = document;
    for key in parents {
        let entry = current
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        match entry {
            Value::Object(inner) => current = inner,
            _ => return,
        }
    }
    current.entry(last.to_string()).or_insert(value);
}

/// A stable `_id` for a line: the same position always gives the same id.
pub fn deterministic_id(position: &LinePosition<'_>) -> String {
    use base64::Engine;
    let key = format!(
        "{}|{}|{}",
        position.source, position.generation, position.offset
    );
    let first = crc32fast::hash(key.as_bytes());
    let second = crc32fast::hash(format!("{key}|lookout").as_bytes());
    let mut bytes = Vec::with_capacity(8 + 8 + 4);
    bytes.extend_from_slice(&position.offset.to_be_bytes());
    bytes.extend_from_slice(&position.generation.to_be_bytes()[4..]);
    bytes.extend_from_slice(&first.to_be_bytes());
    bytes.extend_from_slice(&second.to_be_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn position(offset: u64) -> LinePosition<'static> {
        LinePosition {
            source: "2049:77:12:abcd",
            generation: 0,
            offset,
            path: "/var/log/app.json",
        }
    }

    fn pairs(body: &[u8]) -> Vec<(Value, Value)> {
        let lines: Vec<Value> = body
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_slice(line).expect("json"))
            .collect();
        lines
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect()
    }

    #[test]
    fn lookout_actions_carry_positions_and_ecs_fields_never_overwrite() {
        let mut statics = Map::new();
        statics.insert("env".into(), json!("prod"));
        statics.insert("service".into(), json!("default-service"));
        let mut batch = BatchBuilder::new("logs", "web-1", statics, Target::Lookout, NonJson::Wrap);
        batch
            .push(
                br#"{"service":"checkout","host":{"ip":"10.0.0.1"},"log":"app-level"}"#,
                &position(70),
            )
            .expect("pushed");
        let pairs = pairs(&batch.take());
        let (action, document) = &pairs[0];
        assert_eq!(
            action,
            &json!({"index": {"_index": "logs", "_lookout": {"source": "2049:77:12:abcd", "gen": 0, "offset": 70}}})
        );
        assert_eq!(
            document["service"], "checkout",
            "the application's value wins"
        );
        assert_eq!(document["env"], "prod");
        assert_eq!(
            document["host"],
            json!({"ip": "10.0.0.1", "name": "web-1"}),
            "merged into the application's object"
        );
        assert_eq!(
            document["log"], "app-level",
            "a scalar is not replaced by ECS fields"
        );
        assert_eq!(batch.lines(), 0, "take empties the builder");
    }

    #[test]
    fn plain_elasticsearch_gets_create_with_a_stable_id() {
        let mut batch = BatchBuilder::new(
            "logs",
            "web-1",
            Map::new(),
            Target::PlainElasticsearch,
            NonJson::Wrap,
        );
        batch.push(br#"{"a":1}"#, &position(8)).expect("pushed");
        batch.push(br#"{"a":2}"#, &position(16)).expect("pushed");
        let pairs = pairs(&batch.take());
        let id = |pair: &(Value, Value)| pair.0["create"]["_id"].as_str().expect("id").to_string();
        assert_ne!(id(&pairs[0]), id(&pairs[1]));
        assert_eq!(
            id(&pairs[0]),
            deterministic_id(&position(8)),
            "a resend gets the same id"
        );
        assert_eq!(
            pairs[0].1["log"],
            json!({"file": {"path": "/var/log/app.json"}, "offset": 0})
        );
    }

    #[test]
    fn bad_lines_are_wrapped_or_dead_lettered_with_a_reason() {
        let mut wrap = BatchBuilder::new("logs", "h", Map::new(), Target::Lookout, NonJson::Wrap);
        wrap.push(b"plain text line", &position(16))
            .expect("wrapped");
        assert_eq!(pairs(&wrap.take())[0].1["message"], "plain text line");
        let mut strict = BatchBuilder::new(
            "logs",
            "h",
            Map::new(),
            Target::Lookout,
            NonJson::DeadLetter,
        );
        assert_eq!(
            strict
                .push(b"plain text line", &position(16))
                .expect_err("dead letter")
                .label,
            "not_json"
        );
        assert_eq!(
            strict
                .push(b"[1,2]", &position(22))
                .expect_err("dead letter")
                .label,
            "not_an_object"
        );
        assert_eq!(
            strict
                .push(b"{\"a\":\"\xff\"}", &position(32))
                .expect_err("dead letter")
                .label,
            "invalid_utf8"
        );
        assert_eq!(
            strict.lines(),
            0,
            "nothing of a dead-lettered line enters the batch"
        );
    }
}
