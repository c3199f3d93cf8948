//! The audit trail: every write that changes behaviour (rule writes and deletes,
//! silences, key creation and revocation, index deletion) as a document of the hidden
//! index `.lookout-audit`, written through the same durable ingest path as logs (like
//! the alert history) and served newest first by `GET /_lookout/audit`.
//!
//! An entry says who (the key's name and tenant), what (an action such as `rule.put`,
//! its target and a short summary: never a secret), when and from which address. It is
//! written before the change's answer is sent, so whoever sees the answer finds the
//! entry. A write that fails (storage degraded) is logged, with the entry's fields, and
//! does not undo the change.
//!
//! Each tenant has its own trail in its own store. A key change is recorded in the trail
//! of every tenant the key may act for (each tenant's trail for an operator key), and of
//! the tenant it was made from ([`Trails`]). Tenant limits and keys from `lookout.toml`
//! change only with a restart: a `tenant.start` entry records them when they differ from
//! the last start's ([`Audit::record_start`]).
//!
//! Not audited: reads (searches, listings), writes of data (`_bulk`, documents: they
//! change data, not behaviour), alerts firing and resolving (the alert history has them),
//! and config changes other than limits and keys (the file and its history are the
//! record).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use crate::index::IndexStore;
use crate::index::search;
use crate::ingest::bulk::ActionKind;
use crate::ingest::{Ingest, Item, event};

/// The hidden index of the audit trail.
pub const INDEX: &str = ".lookout-audit";

/// One audited change.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key's name (`anonymous` without authentication).
    pub key: String,
    /// The tenant the change was made for (empty when it is not a tenant's).
    pub tenant: String,
    /// The caller's address, when known.
    pub address: Option<std::net::IpAddr>,
    /// `rule.put`, `rule.delete`, `silence.create`, `silence.expire`, `key.create`,
    /// `key.revoke`, `index.delete`, `tenant.start`.
    pub action: &'static str,
    /// What was changed: a rule, silence, key or index name.
    pub target: String,
    /// A short description, never a secret.
    pub summary: String,
}

impl Entry {
    fn document(&self) -> Value {
        json!({
            "@timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "key": self.key,
            "tenant": self.tenant,
            "address": self.address.map(|address| address.to_string()),
            "action": self.action,
            "target": self.target,
            "summary": self.summary,
        })
    }
}

/// Where audit entries go.
pub struct Audit {
    ingest: Option<Arc<Ingest>>,
}

impl Audit {
    pub fn new(ingest: Arc<Ingest>) -> Audit {
        Audit {
            ingest: Some(ingest),
        }
    }

    /// An audit trail that only logs (no index).
    pub fn disabled() -> Audit {
        Audit { ingest: None }
    }

    /// Writes `entry` durably (logged at info level too).
    pub async fn record(&self, entry: Entry) {
        tracing::info!(
            key = %entry.key,
            tenant = %entry.tenant,
            address = ?entry.address,
            action = entry.action,
            target = %entry.target,
            summary = %entry.summary,
            "audit"
        );
        let Some(ingest) = &self.ingest else {
            return;
        };
        let rules = ingest.settings.rules.clone();
        let now = chrono::Utc::now().timestamp_micros();
        let item = Item {
            kind: ActionKind::Index,
            index: Some(INDEX.to_string()),
            id: None,
            position: None,
            prepared: event::prepare(
                &bytes::Bytes::from(entry.document().to_string()),
                &rules,
                now,
            )
            .map(Some),
        };
        match ingest.write(vec![item], None).await {
            Ok(outcome) => {
                for failure in outcome.items.iter().filter_map(|item| item.failure()) {
                    tracing::error!(error = %failure, action = entry.action, target = %entry.target, "cannot index an audit entry");
                }
            }
            Err(refused) => {
                tracing::error!(reason = %refused, action = entry.action, target = %entry.target, "audit entry not written: storage refuses writes");
            }
        }
    }
}

/// The file in a tenant's state directory holding what its last start recorded.
const START_FILE: &str = "audit-start.json";

impl Audit {
    /// Records a `tenant.start` entry when `settings` (a JSON object of objects, such
    /// as `{"limits": …, "keys": …}`) differ from the ones of the last start recorded in
    /// `state_dir` (nothing recorded counts as no limits and no keys, so a setup without
    /// either never gets one); the summary lists what changed (`limits.max_rules: 5 →
    /// 2`). Returns whether an entry was written.
    pub async fn record_start(
        &self,
        tenant: &str,
        state_dir: &std::path::Path,
        settings: Value,
    ) -> bool {
        let path = state_dir.join(START_FILE);
        let last: Value = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_else(|| json!({}));
        let changed = changes(&last, &settings);
        if changed.is_empty() {
            return false;
        }
        self.record(Entry {
            key: "lookout.toml".into(),
            tenant: tenant.into(),
            address: None,
            action: "tenant.start",
            target: tenant.into(),
            summary: format!(
                "started with changed limits or keys: {}",
                changed.join("; ")
            ),
        })
        .await;
        if let Err(error) = crate::atomic_file::write(&path, settings.to_string().as_bytes()) {
            tracing::warn!(path = %path.display(), %error, "cannot record the settings of this start; the next start records them again");
        }
        true
    }
}

/// What differs between two objects of objects, field by field:
/// `section.field: old → new`, `added` or `removed`.
fn changes(last: &Value, now: &Value) -> Vec<String> {
    let flat = |value: &Value| -> BTreeMap<String, String> {
        let mut fields = BTreeMap::new();
        for (section, inner) in value.as_object().into_iter().flatten() {
            for (field, value) in inner.as_object().into_iter().flatten() {
                if !value.is_null() {
                    fields.insert(format!("{section}.{field}"), value.to_string());
                }
            }
        }
        fields
    };
    let (last, now) = (flat(last), flat(now));
    let mut changed = Vec::new();
    for (field, value) in &now {
        match last.get(field) {
            None => changed.push(format!("{field}: {value} (added)")),
            Some(old) if old != value => changed.push(format!("{field}: {old} → {value}")),
            Some(_) => {}
        }
    }
    for (field, value) in &last {
        if !now.contains_key(field) {
            changed.push(format!("{field}: {value} (removed)"));
        }
    }
    changed
}

/// Every tenant's audit trail, for changes that concern several tenants (keys).
#[derive(Default)]
pub struct Trails {
    by_tenant: RwLock<BTreeMap<String, Arc<Audit>>>,
}

impl Trails {
    pub fn insert(&self, tenant: &str, audit: Arc<Audit>) {
        self.by_tenant
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_owned(), audit);
    }

    /// Records `entry` in the trail of its own tenant and of each tenant `concerns`
    /// accepts, once each.
    pub async fn record_for(&self, entry: Entry, concerns: impl Fn(&str) -> bool) {
        let trails: Vec<(String, Arc<Audit>)> = self
            .by_tenant
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(tenant, _)| **tenant == entry.tenant || concerns(tenant))
            .map(|(tenant, audit)| (tenant.clone(), Arc::clone(audit)))
            .collect();
        for (_, audit) in trails {
            audit.record(entry.clone()).await;
        }
    }
}

/// The newest `size` audit entries, newest first.
pub fn recent(store: &IndexStore, size: usize) -> Result<Vec<Value>, String> {
    let context = crate::index::query::dsl::ParseContext {
        now_micros: chrono::Utc::now().timestamp_micros(),
        timestamp_field: "@timestamp".into(),
    };
    let query = crate::index::query::dsl::parse_query(&json!({"match_all": {}}), &context)
        .map_err(|error| error.to_string())?;
    let indices = store.resolve(INDEX, true)?;
    let hits = search::newest(store, &indices, query, size).map_err(|error| error.to_string())?;
    Ok(hits
        .into_iter()
        .map(|mut hit| hit["_source"].take())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_lists_what_changed_since_the_last_one() {
        let last = json!({"limits": {"max_rules": 5, "ingest_rate_bytes": null}, "keys": {"ci": "read team-a", "old": "edit team-a"}});
        let now = json!({"limits": {"max_rules": 2, "ingest_rate_bytes": 1024}, "keys": {"ci": "read team-a", "new": "ingest team-a"}});
        assert_eq!(
            changes(&last, &now),
            [
                "keys.new: \"ingest team-a\" (added)",
                "limits.ingest_rate_bytes: 1024 (added)",
                "limits.max_rules: 5 → 2",
                "keys.old: \"edit team-a\" (removed)",
            ]
        );
        assert!(
            changes(
                &json!({}),
                &json!({"limits": {"max_rules": null}, "keys": {}})
            )
            .is_empty()
        );
    }
}
