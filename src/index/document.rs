//! [`LogDoc`]: one log line as tantivy indexes it, without copying the parsed JSON.
//!
//! The body is the parsed line itself ([`Body`]); tantivy walks it through [`DocValue`], which
//! keeps every string a string (tantivy's own `serde_json` adapter turns digit-led strings
//! that parse as RFC 3339 into dates, which would make `term` miss them) and leaves out the
//! top-level key the event time was read from (it lives in `@timestamp`; indexing it again
//! would put one unique keyword per line into the dictionary).

use tantivy::DateTime;
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf};
use tantivy::schema::{Document, Field, Value};

use super::body::{Body, Entries, Items, NodeRef, Part};
use super::schema::LogSchema;

/// A log line ready to be indexed.
#[derive(Debug, Clone)]
pub struct LogDoc {
    pub id: String,
    /// Event time in microseconds since the epoch.
    pub timestamp_micros: i64,
    /// The parsed line; its bytes are what `_source` returns (shared with the request
    /// body and the write-ahead log record, not copied).
    pub body: Body,
    /// The top-level key that held the event time (not indexed in the body).
    pub timestamp_key: Option<String>,
    pub fields: DocFields,
}

/// The schema fields a [`LogDoc`] writes to (copied into each doc: four `u32`s).
#[derive(Debug, Clone, Copy)]
pub struct DocFields {
    pub id: Field,
    pub timestamp: Field,
    pub source: Field,
    pub body: Field,
}

impl From<&LogSchema> for DocFields {
    fn from(schema: &LogSchema) -> Self {
        DocFields {
            id: schema.id,
            timestamp: schema.timestamp,
            source: schema.source,
            body: schema.body,
        }
    }
}

/// A value handed to tantivy: a leaf of our own or a node of the parsed body.
#[derive(Debug, Clone)]
pub enum DocValue<'a> {
    Str(&'a str),
    Bytes(&'a [u8]),
    Date(DateTime),
    /// The body's top-level object, leaving out the named key.
    Body(&'a Body, Option<&'a str>),
    Node(NodeRef<'a>),
}

impl<'a> Value<'a> for DocValue<'a> {
    type ArrayIter = NodeIter<'a>;
    type ObjectIter = BodyIter<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        match self {
            DocValue::Str(text) => ReferenceValueLeaf::Str(text).into(),
            DocValue::Bytes(bytes) => ReferenceValueLeaf::Bytes(bytes).into(),
            DocValue::Date(date) => ReferenceValueLeaf::Date(*date).into(),
            DocValue::Body(body, skip) => ReferenceValue::Object(BodyIter {
                inner: body.entries(),
                skip: *skip,
            }),
            DocValue::Node(node) => match node.part() {
                Part::Null => ReferenceValueLeaf::Null.into(),
                Part::Bool(value) => ReferenceValueLeaf::Bool(value).into(),
                Part::I64(value) => ReferenceValueLeaf::I64(value).into(),
                Part::U64(value) => match i64::try_from(value) {
                    Ok(value) => ReferenceValueLeaf::I64(value).into(),
                    Err(_) => ReferenceValueLeaf::U64(value).into(),
                },
                Part::F64(value) => ReferenceValueLeaf::F64(value).into(),
                Part::Str(text) => ReferenceValueLeaf::Str(text).into(),
                Part::Array(items) => ReferenceValue::Array(NodeIter(items)),
                Part::Object(entries) => ReferenceValue::Object(BodyIter {
                    inner: entries,
                    skip: None,
                }),
            },
        }
    }
}

/// Iterates an array's items.
#[derive(Debug, Clone)]
pub struct NodeIter<'a>(Items<'a>);

impl<'a> Iterator for NodeIter<'a> {
    type Item = DocValue<'a>;

    fn next(&mut self) -> Option<DocValue<'a>> {
        self.0.next().map(DocValue::Node)
    }
}

/// Iterates an object's entries, leaving out `skip` (top level only).
#[derive(Debug, Clone)]
pub struct BodyIter<'a> {
    inner: Entries<'a>,
    skip: Option<&'a str>,
}

impl<'a> Iterator for BodyIter<'a> {
    type Item = (&'a str, DocValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (key, value) = self.inner.next()?;
            if Some(key) == self.skip {
                continue;
            }
            return Some((key, DocValue::Node(value)));
        }
    }
}

pub struct LogDocFields<'a> {
    doc: &'a LogDoc,
    step: u8,
}

impl<'a> Iterator for LogDocFields<'a> {
    type Item = (Field, DocValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let doc = self.doc;
        let fields = doc.fields;
        self.step = self.step.saturating_add(1);
        match self.step {
            1 => Some((fields.id, DocValue::Str(&doc.id))),
            2 => Some((
                fields.timestamp,
                DocValue::Date(DateTime::from_timestamp_micros(doc.timestamp_micros)),
            )),
            3 => Some((fields.source, DocValue::Bytes(doc.body.source()))),
            4 => Some((
                fields.body,
                DocValue::Body(&doc.body, doc.timestamp_key.as_deref()),
            )),
            _ => None,
        }
    }
}

impl Document for LogDoc {
    type Value<'a> = DocValue<'a>;
    type FieldsValuesIter<'a> = LogDocFields<'a>;

    fn iter_fields_and_values(&self) -> LogDocFields<'_> {
        LogDocFields { doc: self, step: 0 }
    }
}

/// What a partition's writer takes. tantivy's writer allocates its document channel up
/// front, 10 000 slots of four documents each, at every commit: with `LogDoc` inline that
/// was 14.6 MB per open writer (heaptrack, `cargo bench --bench soak`); boxed, a slot holds
/// pointers.
impl Document for Box<LogDoc> {
    type Value<'a> = DocValue<'a>;
    type FieldsValuesIter<'a> = LogDocFields<'a>;

    fn iter_fields_and_values(&self) -> LogDocFields<'_> {
        LogDocFields { doc: self, step: 0 }
    }
}
