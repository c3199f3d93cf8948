//! One user-named index: its event-time partitions, the fields it has seen, and the
//! explicit ids written since their partition's last commit. [`IndexStore`](super::IndexStore)
//! creates, opens, writes and drops them; this file answers what an index holds.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::index::fields::{DefaultFields, FieldRegistry};
use crate::index::partition::{Partition, lock};

/// What `index.json` records of an index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct IndexMeta {
    pub(super) name: String,
    pub(super) uuid: String,
    pub(super) created_millis: i64,
}

/// One user-named index.
pub struct LogIndex {
    pub name: String,
    pub uuid: String,
    pub created_millis: i64,
    pub(super) dir: PathBuf,
    pub(super) partitions: RwLock<BTreeMap<i64, Arc<Partition>>>,
    /// Explicit ids written since their partition's last commit: id → (partition, seq).
    pub(super) pending_ids: Mutex<HashMap<String, (i64, u64)>>,
    pub(super) fields: Mutex<FieldRegistry>,
}

impl LogIndex {
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Partitions that can hold events in the given event-time bounds (microseconds).
    pub fn partitions_overlapping(
        &self,
        lower: Bound<i64>,
        upper: Bound<i64>,
    ) -> Vec<Arc<Partition>> {
        self.partitions()
            .into_iter()
            .filter(|partition| {
                let after_lower = match lower {
                    Bound::Unbounded => true,
                    Bound::Included(value) | Bound::Excluded(value) => partition.end_micros > value,
                };
                let before_upper = match upper {
                    Bound::Unbounded => true,
                    Bound::Included(value) => partition.start_micros <= value,
                    Bound::Excluded(value) => partition.start_micros < value,
                };
                after_lower && before_upper
            })
            .collect()
    }

    /// The fields this index has seen, with their kinds (`fields::KIND_*`), sorted.
    pub fn fields(&self) -> Vec<(String, u8)> {
        lock(&self.fields).all()
    }

    pub fn default_fields(&self) -> DefaultFields {
        lock(&self.fields).default_fields()
    }

    pub fn doc_count(&self) -> u64 {
        self.partitions()
            .iter()
            .map(|partition| partition.searcher().num_docs())
            .sum()
    }

    pub fn disk_bytes(&self) -> u64 {
        self.partitions()
            .iter()
            .map(|partition| partition.disk_bytes())
            .sum()
    }
}
