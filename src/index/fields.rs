//! The fields an index has seen: every leaf path of its documents and the kinds of value
//! found there. Free text without a field name expands over these paths (Elasticsearch's
//! `default_field: *`), and `_mapping` / `_field_caps` are answered from them.
//!
//! Recorded by the apply thread for every document, saved next to the index on commit
//! (`fields.json`) when it changed; replay re-records anything newer. At most
//! [`MAX_FIELDS`] paths are kept per index.

use std::collections::HashMap;
use std::path::Path;

use super::body::{Body, NodeRef, Part};

/// Most paths recorded per index (Elasticsearch's default `total_fields.limit` is 1000).
pub const MAX_FIELDS: usize = 10_000;

pub const KIND_TEXT: u8 = 1;
pub const KIND_LONG: u8 = 2;
pub const KIND_DOUBLE: u8 = 4;
pub const KIND_BOOLEAN: u8 = 8;

/// Most body shapes remembered as already recorded (then forgotten all at once).
const MAX_SHAPES: usize = 4096;

#[derive(Debug, Default)]
pub struct FieldRegistry {
    kinds: HashMap<String, u8>,
    /// Fingerprints of the body shapes (with the left-out key) already recorded.
    shapes: std::collections::HashSet<u64>,
    changed: bool,
    full_warned: bool,
}

/// The paths free text without a field name searches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DefaultFields {
    /// Paths that held strings.
    pub text: Vec<String>,
    /// Paths that held only numbers or booleans (searched when the text reads as one).
    pub other: Vec<String>,
}

impl FieldRegistry {
    /// Records the leaves of `body`, leaving out the top-level key `skip`. A body of a
    /// shape seen before is skipped without walking it (most lines of a log share a few
    /// shapes).
    pub fn record(&mut self, body: &Body, skip: Option<&str>) {
        let shape = {
            use std::hash::BuildHasher;
            foldhash::fast::FixedState::default().hash_one((body.shape(), skip))
        };
        if self.shapes.contains(&shape) {
            return;
        }
        let mut path = String::new();
        for (key, value) in body.entries() {
            if Some(key) == skip {
                continue;
            }
            self.record_value(&mut path, key, value);
        }
        if self.shapes.len() >= MAX_SHAPES {
            self.shapes.clear();
        }
        self.shapes.insert(shape);
    }

    fn record_value(&mut self, path: &mut String, key: &str, value: NodeRef<'_>) {
        let length = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        match value.part() {
            Part::Object(entries) => {
                for (key, value) in entries {
                    self.record_value(path, key, value);
                }
            }
            Part::Array(items) => {
                for item in items {
                    self.record_leaf(path, item);
                }
            }
            _ => self.record_leaf(path, value),
        }
        path.truncate(length);
    }

    fn record_leaf(&mut self, path: &mut String, value: NodeRef<'_>) {
        let kind = match value.part() {
            Part::Str(_) => KIND_TEXT,
            Part::F64(_) => KIND_DOUBLE,
            Part::I64(_) | Part::U64(_) => KIND_LONG,
            Part::Bool(_) => KIND_BOOLEAN,
            Part::Null => return,
            Part::Object(entries) => {
                for (key, value) in entries {
                    self.record_value(path, key, value);
                }
                return;
            }
            Part::Array(items) => {
                for item in items {
                    self.record_leaf(path, item);
                }
                return;
            }
        };
        if let Some(kinds) = self.kinds.get_mut(path.as_str()) {
            if *kinds & kind == 0 {
                *kinds |= kind;
                self.changed = true;
            }
            return;
        }
        if self.kinds.len() >= MAX_FIELDS {
            if !self.full_warned {
                self.full_warned = true;
                tracing::warn!(limit = MAX_FIELDS, path = %path, "an index has more distinct fields than are tracked; free text does not expand to the others");
            }
            return;
        }
        self.kinds.insert(path.clone(), kind);
        self.changed = true;
    }

    /// Every path with its kinds, sorted.
    pub fn all(&self) -> Vec<(String, u8)> {
        let mut all: Vec<(String, u8)> = self
            .kinds
            .iter()
            .map(|(path, kinds)| (path.clone(), *kinds))
            .collect();
        all.sort();
        all
    }

    pub fn default_fields(&self) -> DefaultFields {
        let mut fields = DefaultFields::default();
        for (path, kinds) in self.all() {
            if kinds & KIND_TEXT != 0 {
                fields.text.push(path);
            } else {
                fields.other.push(path);
            }
        }
        fields
    }

    pub fn load(path: &Path) -> FieldRegistry {
        let kinds = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<HashMap<String, u8>>(&bytes).ok())
            .unwrap_or_default();
        FieldRegistry {
            kinds,
            ..FieldRegistry::default()
        }
    }

    /// Saves the registry when it changed since the last save.
    pub fn save_if_changed(&mut self, path: &Path) -> std::io::Result<()> {
        if !self.changed {
            return Ok(());
        }
        let bytes =
            serde_json::to_vec(&self.kinds).expect("a map of strings to numbers serializes");
        crate::atomic_file::write(path, &bytes)?;
        self.changed = false;
        Ok(())
    }
}

impl DefaultFields {
    pub fn merge(&mut self, other: DefaultFields) {
        self.text.extend(other.text);
        self.other.extend(other.other);
        self.text.sort();
        self.text.dedup();
        self.other.sort();
        self.other.dedup();
        self.other
            .retain(|path| self.text.binary_search(path).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_leaf_paths_and_kinds_and_skips_the_time_key() {
        let mut registry = FieldRegistry::default();
        let body = json!({"@timestamp": "x", "http": {"status": 500, "path": "/a"}, "tags": ["a", 1.5], "ok": true, "n": null});
        registry.record(&Body::from_value(&body), Some("@timestamp"));
        assert_eq!(
            registry.all(),
            vec![
                ("http.path".to_string(), KIND_TEXT),
                ("http.status".to_string(), KIND_LONG),
                ("ok".to_string(), KIND_BOOLEAN),
                ("tags".to_string(), KIND_TEXT | KIND_DOUBLE),
            ]
        );
        let fields = registry.default_fields();
        assert_eq!(fields.text, vec!["http.path", "tags"]);
        assert_eq!(fields.other, vec!["http.status", "ok"]);
    }

    #[test]
    fn saves_only_when_changed_and_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fields.json");
        let mut registry = FieldRegistry::default();
        registry.record(&Body::from_value(&json!({"a": "x"})), None);
        registry.save_if_changed(&path).expect("save");
        std::fs::remove_file(&path).expect("remove");
        registry.save_if_changed(&path).expect("no change");
        assert!(!path.exists(), "unchanged registries are not rewritten");
        registry.record(&Body::from_value(&json!({"b": 1})), None);
        registry.save_if_changed(&path).expect("save");
        assert_eq!(FieldRegistry::load(&path).all().len(), 2);
    }
}
