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

use std::sync::Arc;

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
    /// `key.revoke`, `index.delete`.
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
