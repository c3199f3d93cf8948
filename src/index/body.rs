//! [`Body`]: a log line's JSON object parsed once into a flat list of nodes whose strings
//! point into the line itself.
//!
//! Hand-written on top of serde_json's parser (which does all the validating and error
//! reporting) instead of building a `serde_json::Value`: a `Value` allocates a `String` per
//! key and per string and a `BTreeMap` per object, and that tree has to be freed again on
//! the indexing threads; building and dropping it took about a sixth of ingest's CPU. A
//! `Body` is one `Vec` of nodes plus, only for strings with escapes, one `String`.

use std::hash::{BuildHasher, Hash, Hasher};

use bytes::Bytes;
use bytestring::ByteString;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Where a string lives: in the line (`owned == false`) or in [`Body::owned`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    owned: bool,
    start: u32,
    len: u32,
}

/// One node, in document order. An object's entries follow it as `Key`, value, `Key`,
/// value…; `end` is the index just past its last descendant.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Node {
    Object { entries: u32, end: u32 },
    Array { items: u32, end: u32 },
    Key(Span),
    Str(Span),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Null,
}

/// Why a line is not a JSON text.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("invalid UTF-8 at byte {0}")]
    Utf8(usize),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

type ShapeHasher = foldhash::fast::FoldHasher<'static>;

/// A parsed JSON value (a log line's body is an object) that shares the line's bytes.
#[derive(Debug, Clone, Default)]
pub struct Body {
    /// The line, checked once to be UTF-8, so strings are sliced out of it for free.
    source: ByteString,
    owned: String,
    nodes: Vec<Node>,
    depth: usize,
    shape: u64,
}

/// A node of a [`Body`], as the readers of a body see it.
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    Object(Entries<'a>),
    Array(Items<'a>),
    Str(&'a str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Null,
}

/// A node of a body: the body and the node's index.
#[derive(Debug, Clone, Copy)]
pub struct NodeRef<'a> {
    body: &'a Body,
    index: usize,
}

impl Body {
    /// Parses `source` (a JSON text of any kind; callers check that it is an object).
    pub fn parse(source: Bytes) -> Result<Body, BodyError> {
        let source =
            ByteString::try_from(source).map_err(|error| BodyError::Utf8(error.valid_up_to()))?;
        let mut body = Body {
            source: source.clone(),
            owned: String::new(),
            nodes: Vec::with_capacity(48),
            depth: 0,
            shape: 0,
        };
        let mut shape = foldhash::fast::FixedState::default().build_hasher();
        let mut deserializer = serde_json::Deserializer::from_slice(source.as_bytes());
        Builder {
            base: source.as_ptr() as usize,
            len: source.len(),
            nodes: &mut body.nodes,
            owned: &mut body.owned,
            depth: 0,
            max_depth: &mut body.depth,
            shape: &mut shape,
        }
        .deserialize(&mut deserializer)?;
        deserializer.end()?;
        body.shape = shape.finish();
        Ok(body)
    }

    /// Parses a value already held as a `serde_json::Value` (tests, benchmarks, fixtures).
    pub fn from_value(value: &Value) -> Body {
        Body::parse(Bytes::from(
            serde_json::to_vec(value).expect("a JSON value serializes"),
        ))
        .expect("serde_json writes JSON")
    }

    /// The line the body was parsed from (returned as `_source`).
    pub fn source(&self) -> &Bytes {
        self.source.as_bytes()
    }

    /// The root node.
    pub fn root(&self) -> NodeRef<'_> {
        NodeRef {
            body: self,
            index: 0,
        }
    }

    /// Nesting depth: 1 for a flat object, 0 for a scalar.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// A fingerprint of the keys, their nesting and the kinds of the leaves (not of the
    /// values): documents of one shape have the same fields.
    pub fn shape(&self) -> u64 {
        self.shape
    }

    /// The top-level entries (none when the root is not an object).
    pub fn entries(&self) -> Entries<'_> {
        match self.root().part() {
            Part::Object(entries) => entries,
            _ => Entries {
                body: self,
                next: 0,
                remaining: 0,
            },
        }
    }

    /// The value of a top-level key (the first, when a key repeats).
    pub fn get(&self, key: &str) -> Option<NodeRef<'_>> {
        self.entries()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    fn text(&self, span: Span) -> &str {
        let (start, end) = (span.start as usize, (span.start + span.len) as usize);
        let text: &str = if span.owned {
            &self.owned
        } else {
            &self.source
        };
        // spans are cut where serde_json's strings begin and end: always char boundaries
        text.get(start..end).unwrap_or_default()
    }

    fn end_of(&self, index: usize) -> usize {
        match self.nodes.get(index) {
            Some(Node::Object { end, .. } | Node::Array { end, .. }) => *end as usize,
            _ => index + 1,
        }
    }
}

impl<'a> NodeRef<'a> {
    pub fn part(self) -> Part<'a> {
        let body = self.body;
        match body.nodes.get(self.index).copied().unwrap_or(Node::Null) {
            Node::Object { entries, .. } => Part::Object(Entries {
                body,
                next: self.index + 1,
                remaining: entries,
            }),
            Node::Array { items, .. } => Part::Array(Items {
                body,
                next: self.index + 1,
                remaining: items,
            }),
            Node::Key(span) | Node::Str(span) => Part::Str(body.text(span)),
            Node::I64(value) => Part::I64(value),
            Node::U64(value) => Part::U64(value),
            Node::F64(value) => Part::F64(value),
            Node::Bool(value) => Part::Bool(value),
            Node::Null => Part::Null,
        }
    }

    /// The node as a `serde_json::Value` (for the few places that want one).
    pub fn to_value(self) -> Value {
        match self.part() {
            Part::Object(entries) => Value::Object(
                entries
                    .map(|(key, node)| (key.to_string(), node.to_value()))
                    .collect(),
            ),
            Part::Array(items) => Value::Array(items.map(NodeRef::to_value).collect()),
            Part::Str(text) => Value::String(text.to_string()),
            Part::I64(value) => Value::from(value),
            Part::U64(value) => Value::from(value),
            Part::F64(value) => Value::from(value),
            Part::Bool(value) => Value::Bool(value),
            Part::Null => Value::Null,
        }
    }
}

/// An object's entries, in document order.
#[derive(Debug, Clone, Copy)]
pub struct Entries<'a> {
    body: &'a Body,
    next: usize,
    remaining: u32,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, NodeRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let body = self.body;
        let key = match body.nodes.get(self.next) {
            Some(Node::Key(span)) => body.text(*span),
            _ => "",
        };
        let value = self.next + 1;
        self.next = body.end_of(value);
        Some((key, NodeRef { body, index: value }))
    }
}

/// An array's items.
#[derive(Debug, Clone, Copy)]
pub struct Items<'a> {
    body: &'a Body,
    next: usize,
    remaining: u32,
}

impl<'a> Iterator for Items<'a> {
    type Item = NodeRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let item = NodeRef {
            body: self.body,
            index: self.next,
        };
        self.next = self.body.end_of(self.next);
        Some(item)
    }
}

/// Builds the nodes as serde_json's parser reports what it reads.
struct Builder<'b> {
    base: usize,
    len: usize,
    nodes: &'b mut Vec<Node>,
    owned: &'b mut String,
    depth: usize,
    max_depth: &'b mut usize,
    shape: &'b mut ShapeHasher,
}

impl Builder<'_> {
    /// A span for a string serde_json read: in the line when it was borrowed from it,
    /// copied otherwise (it had escapes).
    fn span(&mut self, text: &str, borrowed: bool) -> Span {
        let at = text.as_ptr() as usize;
        if borrowed && at >= self.base && at + text.len() <= self.base + self.len {
            return Span {
                owned: false,
                start: (at - self.base) as u32,
                len: text.len() as u32,
            };
        }
        let start = self.owned.len() as u32;
        self.owned.push_str(text);
        Span {
            owned: true,
            start,
            len: text.len() as u32,
        }
    }

    fn leaf(&mut self, node: Node, kind: u8) {
        self.shape.write_u8(kind);
        self.nodes.push(node);
    }
}

impl<'de> DeserializeSeed<'de> for &mut Builder<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Builder<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<(), E> {
        let span = self.span(text, true);
        self.leaf(Node::Str(span), b's');
        Ok(())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        let span = self.span(text, false);
        self.leaf(Node::Str(span), b's');
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.leaf(Node::I64(value), b'i');
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        // the same kind as i64: both are `long` fields
        self.leaf(Node::U64(value), b'i');
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.leaf(Node::F64(value), b'f');
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.leaf(Node::Bool(value), b'b');
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf(Node::Null, b'n');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = self.nodes.len();
        self.nodes.push(Node::Null);
        self.shape.write_u8(b'{');
        self.depth += 1;
        *self.max_depth = (*self.max_depth).max(self.depth);
        let mut entries = 0u32;
        while map.next_key_seed(Key(&mut *self))?.is_some() {
            map.next_value_seed(&mut *self)?;
            entries += 1;
        }
        self.depth -= 1;
        self.shape.write_u8(b'}');
        self.nodes[at] = Node::Object {
            entries,
            end: self.nodes.len() as u32,
        };
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = self.nodes.len();
        self.nodes.push(Node::Null);
        self.shape.write_u8(b'[');
        self.depth += 1;
        *self.max_depth = (*self.max_depth).max(self.depth);
        let mut items = 0u32;
        while seq.next_element_seed(&mut *self)?.is_some() {
            items += 1;
        }
        self.depth -= 1;
        self.shape.write_u8(b']');
        self.nodes[at] = Node::Array {
            items,
            end: self.nodes.len() as u32,
        };
        Ok(())
    }
}

/// Reads an object key into a `Key` node.
struct Key<'k, 'b>(&'k mut Builder<'b>);

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<(), E> {
        text.hash(self.0.shape);
        let span = self.0.span(text, true);
        self.0.nodes.push(Node::Key(span));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        text.hash(self.0.shape);
        let span = self.0.span(text, false);
        self.0.nodes.push(Node::Key(span));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_every_kind_of_value() {
        let value = json!({
            "a": "plain", "escaped": "tab\there \"quoted\" é",
            "n": -3, "u": 18446744073709551615u64, "f": 1.5, "t": true, "z": null,
            "nested": {"deeper": {"x": [1, "two", {"three": 3}, [], {}]}},
            "": "empty key", "k\u{e9}y\n": "escaped key"
        });
        let body = Body::from_value(&value);
        assert_eq!(body.root().to_value(), value);
        assert_eq!(body.depth(), 5);
        let keys: Vec<&str> = body.entries().map(|(key, _)| key).collect();
        assert_eq!(keys.len(), value.as_object().expect("object").len());
    }

    #[test]
    fn strings_without_escapes_point_into_the_line() {
        let body =
            Body::parse(Bytes::from_static(br#"{"msg":"hello","esc":"a\nb"}"#)).expect("parses");
        assert_eq!(body.owned, "a\nb", "only the escaped string is copied");
        let parts: Vec<(&str, String)> = body
            .entries()
            .map(|(key, node)| (key, node.to_value().to_string()))
            .collect();
        assert_eq!(
            parts,
            vec![("msg", "\"hello\"".into()), ("esc", "\"a\\nb\"".into())]
        );
    }

    #[test]
    fn shape_follows_keys_and_kinds_not_values() {
        let shape = |text: &'static str| {
            Body::parse(Bytes::from_static(text.as_bytes()))
                .expect("json")
                .shape()
        };
        assert_eq!(
            shape(r#"{"a":"x","b":{"c":1}}"#),
            shape(r#"{"a":"y","b":{"c":2}}"#)
        );
        assert_ne!(shape(r#"{"a":"x"}"#), shape(r#"{"a":1}"#));
        assert_ne!(shape(r#"{"a":1}"#), shape(r#"{"b":1}"#));
        assert_ne!(shape(r#"{"a":{"b":1}}"#), shape(r#"{"a":{},"b":1}"#));
    }

    #[test]
    fn errors_are_serde_jsons() {
        let Err(BodyError::Json(error)) = Body::parse(Bytes::from_static(b"{\"a\": tru}")) else {
            panic!("invalid JSON")
        };
        assert_eq!((error.line(), error.column()), (1, 10));
        assert!(matches!(
            Body::parse(Bytes::from_static(b"{\"a\": \"\xff\"}")),
            Err(BodyError::Utf8(7))
        ));
        assert!(Body::parse(Bytes::from_static(b"{} trailing")).is_err());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(
            Body::parse(Bytes::from(deep)).is_err(),
            "serde_json's recursion limit"
        );
    }
}
