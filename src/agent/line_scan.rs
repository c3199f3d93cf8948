//! What a tailed line is, found without building it: valid JSON or not, an object or
//! not, and which of the fields the agent adds (`host.name`, `log.file.path`,
//! `log.offset`, static fields) its top level already holds. [`super::batch`] splices
//! its fields into an object that leaves room for them (the fast path) and parses only
//! the others.

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// What a line is, found without building it.
pub(super) enum Scan {
    Object(ObjectScan),
    /// Valid JSON but not an object.
    Other(&'static str),
    NotJson(serde_json::Error),
}

/// What the top level of an object holds of the fields the agent adds.
#[derive(Default)]
pub(super) struct ObjectScan {
    pub(super) entries: usize,
    /// `host` is an object, or `log`/`log.file` is: ours must be merged into it (the
    /// slow path).
    pub(super) merge: bool,
    /// The application has `host.name` (or a scalar `host`, which cannot take one).
    pub(super) has_host_name: bool,
    pub(super) has_log_path: bool,
    pub(super) has_log_offset: bool,
    /// Bit n: the n-th static field's key is taken.
    pub(super) static_keys_present: u64,
}

/// Validates `text` as JSON with `IgnoredAny` (no allocation) and looks at the top-level
/// keys only.
pub(super) fn scan(text: &str, static_fields: &Map<String, Value>) -> Scan {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let result = TopLevel { static_fields }
        .deserialize(&mut deserializer)
        .and_then(|scan| deserializer.end().map(|()| scan));
    match result {
        Ok(scan) => scan,
        Err(error) => Scan::NotJson(error),
    }
}

struct TopLevel<'a> {
    static_fields: &'a Map<String, Value>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Scan;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Scan, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A top-level key, as far as the agent's fields are concerned.
enum Key {
    Other,
    Host,
    HostName,
    Log,
    LogFile,
    LogFilePath,
    LogOffset,
    Static(usize),
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Scan;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan, A::Error> {
        let mut object = ObjectScan::default();
        while let Some(key) = map.next_key_seed(KeyCheck {
            static_fields: self.static_fields,
        })? {
            object.entries += 1;
            let is_object = match key {
                Key::Other | Key::Static(_) => {
                    map.next_value::<IgnoredAny>()?;
                    false
                }
                _ => map.next_value_seed(IsObject)?,
            };
            match key {
                Key::Other => {}
                Key::Static(number) => object.static_keys_present |= 1 << number.min(63),
                Key::HostName => object.has_host_name = true,
                Key::Host if is_object => object.merge = true,
                Key::Host => object.has_host_name = true,
                Key::Log | Key::LogFile if is_object => object.merge = true,
                Key::Log => {
                    object.has_log_path = true;
                    object.has_log_offset = true;
                }
                Key::LogFile | Key::LogFilePath => object.has_log_path = true,
                Key::LogOffset => object.has_log_offset = true,
            }
        }
        Ok(Scan::Object(object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scan, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scan::Other("array"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Scan, E> {
        Ok(Scan::Other("boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Scan, E> {
        Ok(Scan::Other("number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Scan, E> {
        Ok(Scan::Other("number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scan, E> {
        Ok(Scan::Other("number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Scan, E> {
        Ok(Scan::Other("string"))
    }
    fn visit_unit<E>(self) -> Result<Scan, E> {
        Ok(Scan::Other("null"))
    }
}

/// Classifies a top-level key. Dotted keys count: the index expands `host.name` into
/// `host` → `name`.
struct KeyCheck<'a> {
    static_fields: &'a Map<String, Value>,
}

impl<'de> DeserializeSeed<'de> for KeyCheck<'_> {
    type Value = Key;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyCheck<'_> {
    type Value = Key;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "host" => Key::Host,
            "host.name" => Key::HostName,
            "log" => Key::Log,
            "log.file" => Key::LogFile,
            "log.file.path" => Key::LogFilePath,
            "log.offset" => Key::LogOffset,
            _ => match self.static_fields.keys().position(|name| name == key) {
                Some(number) => Key::Static(number),
                None => Key::Other,
            },
        })
    }
}

/// Consumes a value, saying whether it is an object.
struct IsObject;

impl<'de> DeserializeSeed<'de> for IsObject {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IsObject {
    type Value = bool;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}
