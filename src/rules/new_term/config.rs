//! The `new_term` field of a rule file and its checked form (a leaf: the rule file format
//! and the loaded rule both name it).

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The PromQL series of new terms: `log_new_terms{query="NAME"}`, the number of new values
/// at each evaluated tick.
pub const METRIC: &str = "log_new_terms";
/// Values (or combinations) a rule tracks unless `max_terms` says otherwise.
pub const DEFAULT_MAX_TERMS: u64 = 1_000_000;
/// Most values a rule may be allowed to track.
pub const MAX_MAX_TERMS: u64 = 50_000_000;
/// Most fields of one combination.
pub const MAX_FIELDS: usize = 4;
/// Longest lookback.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(366 * 86_400);

/// `new_term` in a rule file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTermConfig {
    /// The fields whose value (or combination of values) is watched, e.g. ["error.type"].
    pub fields: Vec<String>,
    /// How long a value must not have occurred before the window to be new, e.g. "7d".
    pub lookback: String,
    /// Most distinct values (combinations) tracked; past it the rule's evaluation fails
    /// (default 1 000 000).
    #[serde(default)]
    pub max_terms: Option<u64>,
}

/// A checked `new_term`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTermSettings {
    pub fields: Vec<String>,
    /// The alert label of each field (as `log_matches` names them: `error.type` →
    /// `error_type`).
    pub labels: Vec<String>,
    pub lookback: Duration,
    pub max_terms: usize,
}

impl NewTermSettings {
    /// The document fields and values of an alert's labels (for its sample lines).
    pub fn fields_of(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        self.fields
            .iter()
            .zip(&self.labels)
            .filter_map(|(field, label)| Some((field.clone(), labels.get(label)?.clone())))
            .collect()
    }
}
