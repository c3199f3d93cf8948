//! [`LogDoc`]: one log line as tantivy indexes it, without copying the parsed JSON.
//!
//! The body is the parsed object itself; tantivy walks it through [`DocValue`], which
//! keeps every string a string (tantivy's own `serde_json` adapter turns digit-led strings
//! that parse as RFC 3339 into dates, which would make `term` miss them) and leaves out the
//! top-level key the event time was read from (it lives in `@timestamp`; indexing it again
//! would put one unique keyword per line into the dictionary).

use serde_json::{Map, Value as Json};
use tantivy::DateTime;
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf};
use tantivy::schema::{Document, Field, Value};

use super::schema::LogSchema;

/// A log line ready to be indexed.
#[derive(Debug, Clone)]
pub struct LogDoc {
    pub id: String,
    /// Event time in microseconds since the epoch.
    pub timestamp_micros: i64,
    /// The line as it will be returned in `_source` (shared with the request body and
    /// the write-ahead log record, not copied).
    pub source: bytes::Bytes,
    pub body: Map<String, Json>,
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
    Body(&'a Map<String, Json>, Option<&'a str>),
    Node(&'a Json),
}

impl<'a> Value<'a> for DocValue<'a> {
    type ArrayIter = NodeIter<'a>;
    type ObjectIter = BodyIter<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        match self {
            DocValue::Str(text) => ReferenceValueLeaf::Str(text).into(),
            DocValue::Bytes(bytes) => ReferenceValueLeaf::Bytes(bytes).into(),
            DocValue::Date(date) => ReferenceValueLeaf::Date(*date).into(),
            DocValue::Body(map, skip) => ReferenceValue::Object(BodyIter {
                inner: map.iter(),
                skip: *skip,
            }),
            DocValue::Node(node) => match node {
                Json::Null => ReferenceValueLeaf::Null.into(),
                Json::Bool(value) => ReferenceValueLeaf::Bool(*value).into(),
                Json::Number(number) => {
                    if let Some(value) = number.as_i64() {
                        ReferenceValueLeaf::I64(value).into()
                    } else if let Some(value) = number.as_u64() {
                        ReferenceValueLeaf::U64(value).into()
                    } else {
                        ReferenceValueLeaf::F64(number.as_f64().unwrap_or(f64::NAN)).into()
                    }
                }
                Json::String(text) => ReferenceValueLeaf::Str(text).into(),
                Json::Array(items) => ReferenceValue::Array(NodeIter(items.iter())),
                Json::Object(map) => ReferenceValue::Object(BodyIter {
                    inner: map.iter(),
                    skip: None,
                }),
            },
        }
    }
}

/// Iterates an array's items.
#[derive(Debug, Clone)]
pub struct NodeIter<'a>(std::slice::Iter<'a, Json>);

impl<'a> Iterator for NodeIter<'a> {
    type Item = DocValue<'a>;

    fn next(&mut self) -> Option<DocValue<'a>> {
        self.0.next().map(DocValue::Node)
    }
}

/// Iterates an object's entries, leaving out `skip` (top level only).
#[derive(Debug, Clone)]
pub struct BodyIter<'a> {
    inner: serde_json::map::Iter<'a>,
    skip: Option<&'a str>,
}

impl<'a> Iterator for BodyIter<'a> {
    type Item = (&'a str, DocValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (key, value) = self.inner.next()?;
            if Some(key.as_str()) == self.skip {
                continue;
            }
            return Some((key.as_str(), DocValue::Node(value)));
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
            3 => Some((fields.source, DocValue::Bytes(&doc.source))),
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
