//! Silences: label matchers over a time range that mute notifications without touching
//! alert state (DESIGN §5), in Alertmanager's `/api/v2/silences` shape so `amtool`-style
//! clients and people used to it feel at home. Persisted in `state/silences.json`
//! (atomically, on every change).

use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// What a client posts.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceRequest {
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
    pub updated_at: DateTime<Utc>,
}

impl Silence {
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if now < self.starts_at {
            "pending"
        } else if now < self.ends_at {
            "active"
        } else {
            "expired"
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|matcher| {
            let value = labels.get(&matcher.name).map_or("", String::as_str);
            let found = if matcher.is_regex {
                // Alertmanager anchors regex matchers
                regex::Regex::new(&format!("^(?:{})$", matcher.value))
                    .is_ok_and(|regex| regex.is_match(value))
            } else {
                value == matcher.value
            };
            found == matcher.is_equal
        })
    }
}

/// Why a silence was not created or expired.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error(
        "a silence needs at least one matcher, e.g. {{\"name\": \"alertname\", \"value\": \"checkout_5xx\"}}"
    )]
    NoMatcher,
    #[error("matcher `{name}`: `{value}` is not a valid regex")]
    BadRegex { name: String, value: String },
    #[error("endsAt must be after startsAt")]
    EndsBeforeStart,
    #[error("cannot save silences: {0}")]
    Save(std::io::Error),
}

pub struct Silences {
    path: PathBuf,
    silences: Mutex<Vec<Silence>>,
}

impl Silences {
    /// Loads `state_dir/silences.json` (none when missing or unreadable).
    pub fn open(state_dir: &std::path::Path) -> Silences {
        let path = state_dir.join("silences.json");
        let silences = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Silences {
            path,
            silences: Mutex::new(silences),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Silence>> {
        self.silences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&self, silences: &[Silence]) -> std::io::Result<()> {
        crate::atomic_file::write(
            &self.path,
            &serde_json::to_vec_pretty(silences).expect("silences serialize"),
        )
    }

    /// Creates a silence; a mistake is returned as what to fix.
    pub fn create(&self, request: SilenceRequest) -> Result<String, SilenceError> {
        if request.matchers.is_empty() {
            return Err(SilenceError::NoMatcher);
        }
        for matcher in &request.matchers {
            if matcher.is_regex && regex::Regex::new(&matcher.value).is_err() {
                return Err(SilenceError::BadRegex {
                    name: matcher.name.clone(),
                    value: matcher.value.clone(),
                });
            }
        }
        if request.ends_at <= request.starts_at {
            return Err(SilenceError::EndsBeforeStart);
        }
        let now = Utc::now();
        let silence = Silence {
            id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            matchers: request.matchers,
            starts_at: request.starts_at,
            ends_at: request.ends_at,
            created_by: request.created_by,
            comment: request.comment,
            updated_at: now,
        };
        let id = silence.id.clone();
        let mut silences = self.lock();
        silences.push(silence);
        self.save(&silences).map_err(SilenceError::Save)?;
        Ok(id)
    }

    /// Expires a silence now; `false` when there is no such silence.
    pub fn expire(&self, id: &str) -> Result<bool, SilenceError> {
        let mut silences = self.lock();
        let now = Utc::now();
        let Some(silence) = silences.iter_mut().find(|silence| silence.id == id) else {
            return Ok(false);
        };
        if silence.ends_at > now {
            silence.ends_at = now;
            silence.updated_at = now;
        }
        self.save(&silences).map_err(SilenceError::Save)?;
        Ok(true)
    }

    pub fn list(&self) -> Vec<Silence> {
        self.lock().clone()
    }

    /// The ids of the active silences that match `labels` at `now`.
    pub fn silenced_by(
        &self,
        labels: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|silence| silence.state(now) == "active" && silence.matches(labels))
            .map(|silence| silence.id.clone())
            .collect()
    }

    /// Whether an active silence matches `labels` at `now`.
    pub fn silenced(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
        self.lock()
            .iter()
            .any(|silence| silence.state(now) == "active" && silence.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_select_alerts_while_active() {
        let state = tempfile::tempdir().expect("tempdir");
        let silences = Silences::open(state.path());
        let now = Utc::now();
        let request = |matchers: Vec<Matcher>| SilenceRequest {
            matchers,
            starts_at: now - chrono::Duration::minutes(1),
            ends_at: now + chrono::Duration::hours(1),
            created_by: "oncall".into(),
            comment: "deploy".into(),
        };
        let matcher = |name: &str, value: &str, is_regex: bool, is_equal: bool| Matcher {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal,
        };
        let id = silences
            .create(request(vec![
                matcher("alertname", "checkout_.*", true, true),
                matcher("env", "dev", false, false),
            ]))
            .expect("created");
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(silences.silenced(
            &labels(&[("alertname", "checkout_5xx"), ("env", "prod")]),
            now
        ));
        assert!(!silences.silenced(
            &labels(&[("alertname", "checkout_5xx"), ("env", "dev")]),
            now
        ));
        assert!(
            !silences.silenced(&labels(&[("alertname", "xcheckout_5xx")]), now),
            "anchored"
        );
        // persisted, then expired
        let reopened = Silences::open(state.path());
        assert_eq!(reopened.list().len(), 1);
        assert!(reopened.expire(&id).expect("expired"));
        assert!(!reopened.silenced(&labels(&[("alertname", "checkout_5xx")]), Utc::now()));
        assert!(silences.create(request(Vec::new())).is_err());
        assert!(
            silences
                .create(request(vec![matcher("a", "(", true, true)]))
                .is_err()
        );
    }
}
