//! Deliveries recorded before they are attempted (`state/outbox/*.json`, one file each,
//! written atomically), removed once they end — delivered, refused for good, or past
//! their deadline. At start every recorded delivery is attempted again, so a restart
//! while Slack is down delivers the message afterwards, once.
//!
//! The honest limits (DESIGN §6): Slack's incoming webhooks have no idempotency key, so a
//! crash after Slack accepted a message but before its record was removed sends it once
//! more; and the record is written just before the alert state, so a crash between the
//! two writes can repeat a notice rather than lose it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub rule: String,
    /// The notifier it goes to (records from before notifiers had names went to Slack).
    #[serde(default = "slack")]
    pub notifier: String,
    /// `firing`, `repeat` or `resolved`.
    #[serde(default)]
    pub kind: String,
    /// How many alerts the message carries.
    #[serde(default)]
    pub alerts: usize,
    pub payload: Value,
    pub created: DateTime<Utc>,
    /// Retries stop here.
    pub deadline: DateTime<Utc>,
    /// The route it took (its config path) and its group, for the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_key: Option<String>,
    /// The rules whose alerts a grouped message merges (empty: only `rule`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

fn slack() -> String {
    "slack".into()
}

pub struct Outbox {
    directory: PathBuf,
}

impl Outbox {
    pub fn open(state_dir: &Path) -> std::io::Result<Outbox> {
        let directory = state_dir.join("outbox");
        std::fs::create_dir_all(&directory)?;
        Ok(Outbox { directory })
    }

    /// Records `delivery` durably; returns its id.
    pub fn record(&self, delivery: &Delivery) -> std::io::Result<String> {
        let id = format!(
            "{}-{:08x}",
            delivery.created.timestamp_micros(),
            fastrand::u32(..)
        );
        crate::atomic_file::write(
            &self.directory.join(format!("{id}.json")),
            &serde_json::to_vec(delivery).expect("a delivery serializes"),
        )?;
        Ok(id)
    }

    /// The delivery ended (whatever the outcome): forget it.
    pub fn complete(&self, id: &str) {
        if let Err(error) = std::fs::remove_file(self.directory.join(format!("{id}.json"))) {
            tracing::error!(%error, delivery = id, "cannot remove a finished delivery from the outbox");
        }
    }

    /// Every recorded delivery, oldest first.
    pub fn pending(&self) -> Vec<(String, Delivery)> {
        let Ok(entries) = std::fs::read_dir(&self.directory) else {
            return Vec::new();
        };
        let mut pending: Vec<(String, Delivery)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let path = entry.path();
                let id = path.file_stem()?.to_str()?.to_string();
                if path.extension()? != "json" {
                    return None; // a leftover temporary file from an interrupted write
                }
                match std::fs::read(&path)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<Delivery>(&bytes).ok())
                {
                    Some(delivery) => Some((id, delivery)),
                    None => {
                        tracing::error!(path = %path.display(), "unreadable outbox record; moving it aside");
                        let _ = std::fs::rename(&path, path.with_extension("corrupt"));
                        None
                    }
                }
            })
            .collect();
        pending.sort_by_key(|(_, delivery)| delivery.created);
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_deliveries_survive_until_completed() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        let delivery = |rule: &str, seconds: i64| Delivery {
            rule: rule.into(),
            notifier: "slack".into(),
            kind: "firing".into(),
            alerts: 1,
            payload: serde_json::json!({"text": rule}),
            created: DateTime::from_timestamp(1_795_341_600 + seconds, 0).expect("time"),
            deadline: DateTime::from_timestamp(1_795_342_200, 0).expect("time"),
            route: None,
            group_key: None,
            rules: Vec::new(),
        };
        let second = outbox.record(&delivery("second", 5)).expect("record");
        let first = outbox.record(&delivery("first", 0)).expect("record");
        std::fs::write(state.path().join("outbox/leftover.json.tmp"), "{").expect("tmp");
        let reopened = Outbox::open(state.path()).expect("open");
        let pending: Vec<String> = reopened
            .pending()
            .into_iter()
            .map(|(_, delivery)| delivery.rule)
            .collect();
        assert_eq!(
            pending,
            ["first", "second"],
            "oldest first, leftovers ignored"
        );
        reopened.complete(&first);
        reopened.complete(&second);
        assert!(reopened.pending().is_empty());
    }
}
