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

use std::io::Write as _;
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::dead_letter::DeadLetterRecord;
use super::fingerprint::FileIdentity;
use super::line_scan::{ObjectScan, Scan, scan};

/// Where a line came from.
#[derive(Debug, Clone)]
pub struct LinePosition<'a> {
    pub identity: FileIdentity,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// What one input adds to its lines: the index they go to and static fields.
#[derive(Debug)]
pub struct InputFields {
    pub index: String,
    pub static_fields: Map<String, Value>,
    /// `,"key":value` for every static field, serialized once.
    static_json: String,
}

impl InputFields {
    pub fn new(index: &str, static_fields: Map<String, Value>) -> InputFields {
        let mut static_json = String::new();
        for (key, value) in &static_fields {
            static_json.push(',');
            static_json.push_str(&Value::String(key.clone()).to_string());
            static_json.push(':');
            static_json.push_str(&value.to_string());
        }
        InputFields {
            index: index.to_string(),
            static_fields,
            static_json,
        }
    }
}

/// One shipped line inside a batch body.
#[derive(Debug, Clone)]
pub struct BatchItem {
    /// Byte range of the action line and the document line (both newlines included).
    pub start: usize,
    pub document_start: usize,
    pub end: usize,
    /// Index into [`Batch::files`].
    pub file: usize,
    pub generation: u64,
    /// Offset just past the line in its file.
    pub offset: u64,
}

/// How far a batch takes one file: every line up to `offset` is in it or dead-lettered.
#[derive(Debug, Clone)]
pub struct FileProgress {
    pub identity: FileIdentity,
    pub source: String,
    pub generation: u64,
    pub offset: u64,
    pub path: PathBuf,
}

/// A `_bulk` body with what the shipper needs to acknowledge, retry or dead-letter it.
#[derive(Debug, Default)]
pub struct Batch {
    /// NDJSON, uncompressed.
    pub body: Vec<u8>,
    pub items: Vec<BatchItem>,
    pub files: Vec<FileProgress>,
    /// Lines refused before sending; written once the batch is acknowledged.
    pub dead_letters: Vec<DeadLetterRecord>,
    /// Set when every tailed file was at its end at this time with all it held before in
    /// this batch or earlier ones: once the batch is acknowledged, this is the agent's
    /// watermark.
    pub eof_time: Option<SystemTime>,
}

impl Batch {
    /// The document line of `item` (without its newline).
    pub fn document(&self, item: &BatchItem) -> &[u8] {
        &self.body[item.document_start..item.end - 1]
    }
}

/// Builds one [`Batch`].
#[derive(Debug)]
pub struct BatchBuilder {
    /// The host name as a JSON string literal.
    host_json: String,
    /// The last line's path, and it as a JSON string literal (lines come in runs per file).
    path_text: String,
    path_json: String,
    target: Target,
    non_json: NonJson,
    batch: Batch,
}

impl BatchBuilder {
    pub fn new(host_name: &str, target: Target, non_json: NonJson) -> BatchBuilder {
        BatchBuilder {
            host_json: Value::String(host_name.to_string()).to_string(),
            path_text: String::new(),
            path_json: "\"\"".to_string(),
            target,
            non_json,
            batch: Batch::default(),
        }
    }

    pub fn len_bytes(&self) -> usize {
        self.batch.body.len()
    }

    pub fn lines(&self) -> usize {
        self.batch.items.len()
    }

    /// Whether there is anything to ship or to dead-letter.
    pub fn is_empty(&self) -> bool {
        self.batch.items.is_empty() && self.batch.dead_letters.is_empty()
    }

    /// Whether the batch records progress of any file (even with no line to ship, e.g.
    /// when every line was dead-lettered).
    pub fn has_progress(&self) -> bool {
        !self.batch.files.is_empty()
    }

    /// Takes the batch built so far, leaving the builder empty.
    pub fn take(&mut self, eof_time: Option<SystemTime>) -> Batch {
        let mut batch = std::mem::take(&mut self.batch);
        batch.eof_time = eof_time;
        batch
    }

    /// Adds one line, or says why it must be dead-lettered (nothing is added then; the
    /// caller passes it to [`BatchBuilder::dead_letter`]).
    pub fn push(
        &mut self,
        line: &[u8],
        position: &LinePosition<'_>,
        input: &InputFields,
    ) -> Result<(), DeadLetter> {
        let text = std::str::from_utf8(line).map_err(|error| DeadLetter {
            label: "invalid_utf8",
            reason: format!("not UTF-8 (invalid byte at {})", error.valid_up_to()),
        })?;
        let start = self.batch.body.len();
        self.write_action(position, input);
        let document_start = self.batch.body.len();
        match scan(text, &input.static_fields) {
            Scan::Object(object) if !object.merge => {
                // the fast path: the line is a JSON object whose keys leave room for ours,
                // so they are spliced in before its closing brace without re-encoding it
                let line_start = position.offset.saturating_sub(line.len() as u64 + 1);
                self.splice(text, &object, position.path, line_start, input);
            }
            Scan::Object(_) => {
                let Ok(Value::Object(document)) = serde_json::from_str::<Value>(text) else {
                    unreachable!("scanned as an object")
                };
                self.write_merged(document, line, position, input);
            }
            Scan::Other(kind) => {
                self.batch.body.truncate(start);
                return Err(DeadLetter {
                    label: "not_an_object",
                    reason: format!(
                        "a JSON {kind} is not a log event; log one JSON object per line"
                    ),
                });
            }
            Scan::NotJson(error) if self.non_json == NonJson::DeadLetter => {
                self.batch.body.truncate(start);
                return Err(DeadLetter {
                    label: "not_json",
                    reason: format!("not JSON: {error}"),
                });
            }
            Scan::NotJson(_) => {
                let mut document = Map::new();
                document.insert("message".into(), Value::String(text.to_string()));
                self.write_merged(document, line, position, input);
            }
        }
        let file = self.progress(position);
        self.batch.items.push(BatchItem {
            start,
            document_start,
            end: self.batch.body.len(),
            file,
            generation: position.generation,
            offset: position.offset,
        });
        Ok(())
    }

    /// Records a line that goes to the dead-letter file; its file's progress moves past it.
    pub fn dead_letter(&mut self, record: DeadLetterRecord, position: &LinePosition<'_>) {
        self.progress(position);
        self.batch.dead_letters.push(record);
    }

    /// Writes `text` (a JSON object) with our fields added before its closing brace,
    /// leaving out the ones the application already has.
    fn splice(
        &mut self,
        text: &str,
        object: &ObjectScan,
        path: &str,
        line_start: u64,
        input: &InputFields,
    ) {
        if self.path_text != path {
            self.path_text = path.to_string();
            self.path_json = Value::String(path.to_string()).to_string();
        }
        let trimmed = text.trim_end();
        let body = &mut self.batch.body;
        body.extend_from_slice(&trimmed.as_bytes()[..trimmed.len() - 1]);
        let mut separator = object.entries > 0;
        let mut field = |body: &mut Vec<u8>| {
            if separator {
                body.push(b',');
            }
            separator = true;
        };
        if !object.has_host_name {
            field(body);
            let _ = write!(body, r#""host":{{"name":{}}}"#, self.host_json);
        }
        match (object.has_log_path, object.has_log_offset) {
            (false, false) => {
                field(body);
                let _ = write!(
                    body,
                    r#""log":{{"file":{{"path":{}}},"offset":{line_start}}}"#,
                    self.path_json
                );
            }
            (false, true) => {
                field(body);
                let _ = write!(body, r#""log":{{"file":{{"path":{}}}}}"#, self.path_json);
            }
            (true, false) => {
                field(body);
                let _ = write!(body, r#""log":{{"offset":{line_start}}}"#);
            }
            (true, true) => {}
        }
        if object.static_keys_present == 0 {
            if !input.static_json.is_empty() {
                field(body);
                body.extend_from_slice(&input.static_json.as_bytes()[1..]);
            }
        } else {
            for (number, (key, value)) in input.static_fields.iter().enumerate() {
                if object.static_keys_present & (1 << number.min(63)) == 0 {
                    field(body);
                    let _ = write!(body, "{}:{value}", Value::String(key.clone()));
                }
            }
        }
        body.extend_from_slice(b"}\n");
    }

    fn write_action(&mut self, position: &LinePosition<'_>, input: &InputFields) {
        let body = &mut self.batch.body;
        let _ = match self.target {
            Target::Lookout => writeln!(
                body,
                r#"{{"index":{{"_index":"{}","_lookout":{{"source":"{}","gen":{},"offset":{}}}}}}}"#,
                input.index, position.source, position.generation, position.offset
            ),
            Target::PlainElasticsearch => writeln!(
                body,
                r#"{{"create":{{"_index":"{}","_id":"{}"}}}}"#,
                input.index,
                deterministic_id(position)
            ),
        };
    }

    /// The slow path: merges our fields into a parsed document.
    fn write_merged(
        &mut self,
        mut document: Map<String, Value>,
        line: &[u8],
        position: &LinePosition<'_>,
        input: &InputFields,
    ) {
        add_if_absent(
            &mut document,
            &["host", "name"],
            serde_json::from_str(&self.host_json).expect("a JSON string"),
        );
        add_if_absent(
            &mut document,
            &["log", "file", "path"],
            Value::String(position.path.to_string()),
        );
        let line_start = position.offset.saturating_sub(line.len() as u64 + 1);
        add_if_absent(&mut document, &["log", "offset"], Value::from(line_start));
        for (key, value) in &input.static_fields {
            document.entry(key.clone()).or_insert_with(|| value.clone());
        }
        serde_json::to_writer(&mut self.batch.body, &document).expect("a document serializes");
        self.batch.body.push(b'\n');
    }

    /// Moves `position`'s file forward in this batch; returns its index in `files`.
    fn progress(&mut self, position: &LinePosition<'_>) -> usize {
        let files = &mut self.batch.files;
        if let Some(index) = files
            .iter()
            .rposition(|file| file.identity == position.identity)
        {
            let file = &mut files[index];
            if (position.generation, position.offset) > (file.generation, file.offset) {
                file.generation = position.generation;
                file.offset = position.offset;
            }
            return index;
        }
        files.push(FileProgress {
            identity: position.identity,
            source: position.source.to_string(),
            generation: position.generation,
            offset: position.offset,
            path: PathBuf::from(position.path),
        });
        files.len() - 1
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn position(offset: u64) -> LinePosition<'static> {
        LinePosition {
            identity: FileIdentity {
                device: 2049,
                inode: 77,
                head_length: 12,
                head_crc: 0xabcd,
            },
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
        let input = InputFields::new("logs", statics);
        let mut batch = BatchBuilder::new("web-1", Target::Lookout, NonJson::Wrap);
        batch
            .push(
                br#"{"service":"checkout","host":{"ip":"10.0.0.1"},"log":"app-level"}"#,
                &position(70),
                &input,
            )
            .expect("pushed");
        batch
            .push(br#"{"msg":"fast path"}  "#, &position(95), &input)
            .expect("pushed");
        batch.push(b"{}", &position(98), &input).expect("pushed");
        let built = batch.take(None);
        assert_eq!(built.files.len(), 1);
        assert_eq!(built.files[0].offset, 98, "progress is the last line's end");
        assert_eq!(built.items.len(), 3);
        let pairs = pairs(&built.body);
        assert_eq!(
            pairs[1].1,
            json!({"msg": "fast path", "host": {"name": "web-1"}, "log": {"file": {"path": "/var/log/app.json"}, "offset": 73}, "env": "prod", "service": "default-service"}),
            "spliced in without re-encoding"
        );
        assert_eq!(
            pairs[2].1,
            json!({"host": {"name": "web-1"}, "log": {"file": {"path": "/var/log/app.json"}, "offset": 95}, "env": "prod", "service": "default-service"})
        );
        assert_eq!(
            serde_json::from_slice::<Value>(built.document(&built.items[1])).expect("json"),
            pairs[1].1,
            "items locate their documents"
        );
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
        assert!(batch.is_empty(), "take empties the builder");
    }

    #[test]
    fn plain_elasticsearch_gets_create_with_a_stable_id() {
        let input = InputFields::new("logs", Map::new());
        let mut batch = BatchBuilder::new("web-1", Target::PlainElasticsearch, NonJson::Wrap);
        batch
            .push(br#"{"a":1}"#, &position(8), &input)
            .expect("pushed");
        batch
            .push(br#"{"a":2}"#, &position(16), &input)
            .expect("pushed");
        let pairs = pairs(&batch.take(None).body);
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
        let input = InputFields::new("logs", Map::new());
        let mut wrap = BatchBuilder::new("h", Target::Lookout, NonJson::Wrap);
        wrap.push(b"plain text line", &position(16), &input)
            .expect("wrapped");
        assert_eq!(
            pairs(&wrap.take(None).body)[0].1["message"],
            "plain text line"
        );
        let mut strict = BatchBuilder::new("h", Target::Lookout, NonJson::DeadLetter);
        assert_eq!(
            strict
                .push(b"plain text line", &position(16), &input)
                .expect_err("dead letter")
                .label,
            "not_json"
        );
        assert_eq!(
            strict
                .push(b"[1,2]", &position(22), &input)
                .expect_err("dead letter")
                .label,
            "not_an_object"
        );
        assert_eq!(
            strict
                .push(b"{\"a\":\"\xff\"}", &position(32), &input)
                .expect_err("dead letter")
                .label,
            "invalid_utf8"
        );
        assert!(
            strict.is_empty() && strict.len_bytes() == 0,
            "nothing of a dead-lettered line enters the batch"
        );
    }

    #[test]
    fn the_fast_path_adds_exactly_what_merging_would() {
        let mut statics = Map::new();
        statics.insert("env".into(), json!("prod"));
        statics.insert("service".into(), json!("default"));
        let input = InputFields::new("logs", statics);
        for line in [
            r#"{"host":"web-1","msg":"scalar host"}"#,
            r#"{"log":"plain","msg":"scalar log"}"#,
            r#"{"service":"mine","n":[1,{"host":{}}]}"#,
            r#"{"log":{"level":"info"},"host":{"ip":"10.0.0.1"}}"#,
            r#"{"a":{"b":{"c":"\u00e9\n"}}}   "#,
            "{}",
        ] {
            let mut fast = BatchBuilder::new("web-9", Target::Lookout, NonJson::Wrap);
            fast.push(line.as_bytes(), &position(100), &input)
                .expect("pushed");
            let mut slow = BatchBuilder::new("web-9", Target::Lookout, NonJson::Wrap);
            let Ok(Value::Object(document)) = serde_json::from_str::<Value>(line) else {
                panic!("an object")
            };
            slow.write_merged(document, line.as_bytes(), &position(100), &input);
            let fast_document = pairs(&fast.take(None).body)[0].1.clone();
            let slow_document: Value =
                serde_json::from_slice(slow.take(None).body.trim_ascii_end()).expect("json");
            assert_eq!(fast_document, slow_document, "{line}");
        }
        // dotted keys are the application's too (the index expands them)
        let mut fast = BatchBuilder::new("web-9", Target::Lookout, NonJson::Wrap);
        fast.push(
            br#"{"host.name":"h2","log.offset":5}"#,
            &position(100),
            &input,
        )
        .expect("pushed");
        assert_eq!(
            pairs(&fast.take(None).body)[0].1,
            json!({"host.name": "h2", "log.offset": 5, "log": {"file": {"path": "/var/log/app.json"}}, "env": "prod", "service": "default"})
        );
    }
}
