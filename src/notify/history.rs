//! The alert history: every transition of an alert and every delivery attempt, indexed
//! into the hidden index `.lookout-alerts` (DESIGN §4–5) through the same durable ingest
//! path as logs, so it is searched like logs (`GET /.lookout-alerts/_search?q=rule:NAME`)
//! and served by `GET /_lookout/alerts/history`. Rules record transitions, the
//! [`super::dispatch::Dispatcher`] deliveries.
//!
//! Recording never blocks an evaluation or a delivery: events go through a channel to one
//! writer task, which writes whatever has queued up as one batch. While storage is
//! degraded (a full disk) the writer holds the events in memory — [`History::held`]
//! serves them to the history API meanwhile — and writes them once writes resume; beyond
//! [`MAX_QUEUED`] held events the oldest are dropped with a warning, and a shutdown while
//! degraded loses what is held (the alerts themselves are unaffected).

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::index::IndexStore;
use crate::index::search;
use crate::ingest::bulk::ActionKind;
use crate::ingest::{Ingest, Item, event};

/// The hidden index of the history.
pub const INDEX: &str = ".lookout-alerts";

/// Events queued at most; beyond, new ones are dropped (and counted in the log) rather than
/// growing memory while the index is unwritable.
const MAX_QUEUED: usize = 100_000;

/// Where history events go.
#[derive(Clone)]
pub struct History {
    sender: Option<mpsc::Sender<Value>>,
    /// Events kept in memory instead (replays show them).
    kept: Option<Arc<std::sync::Mutex<Vec<Value>>>>,
    /// Events the writer could not write yet (storage degraded), oldest first.
    held: Arc<std::sync::Mutex<Vec<Value>>>,
}

fn lock(events: &std::sync::Mutex<Vec<Value>>) -> std::sync::MutexGuard<'_, Vec<Value>> {
    events
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl History {
    /// A history and the writer that indexes what it records (run it until shutdown: it
    /// drains what is queued once its token is cancelled).
    pub fn new(ingest: Arc<Ingest>) -> (History, HistoryWriter) {
        let (sender, receiver) = mpsc::channel(MAX_QUEUED);
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        (
            History {
                sender: Some(sender),
                kept: None,
                held: Arc::clone(&held),
            },
            HistoryWriter {
                ingest,
                receiver,
                held,
            },
        )
    }

    /// A history that records nothing (backtests, dry runs).
    pub fn disabled() -> History {
        History {
            sender: None,
            kept: None,
            held: Default::default(),
        }
    }

    /// A history that keeps its events in memory; [`History::take`] hands them over.
    pub fn in_memory() -> History {
        History {
            sender: None,
            kept: Some(Default::default()),
            held: Default::default(),
        }
    }

    /// The newest `size` events not written to the index yet (storage degraded), of one
    /// rule or all, newest first.
    pub fn held(&self, rule: Option<&str>, size: usize) -> Vec<Value> {
        lock(&self.held)
            .iter()
            .rev()
            .filter(|event| rule.is_none_or(|rule| of_rule(event, rule)))
            .take(size)
            .cloned()
            .collect()
    }

    /// The events kept since the last call (an in-memory history's).
    pub fn take(&self) -> Vec<Value> {
        self.kept.as_ref().map_or_else(Vec::new, |kept| {
            std::mem::take(
                &mut *kept
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
        })
    }

    /// Queues `event` (a JSON object with `@timestamp` and `type`).
    pub fn record(&self, event: Value) {
        if let Some(kept) = &self.kept {
            kept.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(event);
            return;
        }
        if let Some(sender) = &self.sender
            && let Err(error) = sender.try_send(event)
        {
            tracing::warn!(%error, "alert history event dropped");
        }
    }
}

/// Whether `event` is about `rule` (its `rule`, or one of the `rules` a grouped
/// delivery merges).
fn of_rule(event: &Value, rule: &str) -> bool {
    event["rule"] == rule
        || event["rules"]
            .as_array()
            .is_some_and(|rules| rules.iter().any(|name| name == rule))
}

/// Indexes history events as they come.
pub struct HistoryWriter {
    ingest: Arc<Ingest>,
    receiver: mpsc::Receiver<Value>,
    held: Arc<std::sync::Mutex<Vec<Value>>>,
}

/// How often held events are tried again while storage is degraded.
const RETRY_HELD: std::time::Duration = std::time::Duration::from_secs(1);

impl HistoryWriter {
    pub async fn run(self, cancel: CancellationToken) {
        let HistoryWriter {
            ingest,
            mut receiver,
            held,
        } = self;
        let mut holding = false;
        loop {
            let mut batch: Vec<Value> = Vec::new();
            let received = tokio::select! {
                received = receiver.recv_many(&mut batch, 1000) => received,
                () = cancel.cancelled() => {
                    receiver.close();
                    while let Some(event) = receiver.recv().await {
                        batch.push(event);
                    }
                    0
                }
                () = tokio::time::sleep(RETRY_HELD), if holding => usize::MAX,
            };
            // while holding, no attempt until storage says writes are accepted (and no
            // copy of what is held: up to MAX_QUEUED events, every second)
            let wait_for_storage = holding && ingest.disk().degraded();
            let pending = {
                let mut held = lock(&held);
                held.extend(batch);
                let excess = held.len().saturating_sub(MAX_QUEUED);
                if excess > 0 {
                    held.drain(..excess);
                    tracing::warn!(
                        dropped = excess,
                        "alert history events dropped: too many held while storage is degraded"
                    );
                }
                // copied, not taken: `History::held` shows them until they are indexed
                if wait_for_storage {
                    Vec::new()
                } else {
                    held.clone()
                }
            };
            if !pending.is_empty() {
                match write_batch(&ingest, &pending).await {
                    Ok(()) => {
                        lock(&held).drain(..pending.len());
                        if std::mem::take(&mut holding) {
                            tracing::info!(
                                events = pending.len(),
                                "alert history events held while storage was degraded are written"
                            );
                        }
                    }
                    Err(refused) => {
                        if !std::mem::replace(&mut holding, true) {
                            tracing::warn!(reason = %refused, "alert history events held in memory until storage accepts writes again");
                        }
                    }
                }
            }
            if received == 0 {
                let lost = lock(&held).len();
                if lost > 0 {
                    tracing::warn!(
                        events = lost,
                        "alert history events lost: shutting down while storage is degraded"
                    );
                }
                return;
            }
        }
    }
}

async fn write_batch(ingest: &Ingest, events: &[Value]) -> Result<(), crate::ingest::WriteRefused> {
    let rules = ingest.settings.rules.clone();
    let now = chrono::Utc::now().timestamp_micros();
    let items: Vec<Item> = events
        .iter()
        .map(|event| Item {
            kind: ActionKind::Index,
            index: Some(INDEX.to_string()),
            id: None,
            position: None,
            prepared: event::prepare(&bytes::Bytes::from(event.to_string()), &rules, now).map(Some),
        })
        .collect();
    let outcome = ingest.write(items, None).await?;
    for failure in outcome.items.iter().filter_map(|item| item.failure()) {
        tracing::error!(error = %failure, "cannot index an alert history event");
    }
    Ok(())
}

/// The newest `size` history events, of one rule or all, newest first.
pub fn recent(store: &IndexStore, rule: Option<&str>, size: usize) -> Result<Vec<Value>, String> {
    // a delivery merging several rules' alerts lists them in `rules`
    let filter = match rule {
        Some(rule) => json!({"bool": {
            "should": [{"term": {"rule": rule}}, {"term": {"rules": rule}}],
            "minimum_should_match": 1,
        }}),
        None => json!({"match_all": {}}),
    };
    let context = crate::index::query::dsl::ParseContext {
        now_micros: chrono::Utc::now().timestamp_micros(),
        timestamp_field: "@timestamp".into(),
    };
    let query = crate::index::query::dsl::parse_query(&filter, &context)
        .map_err(|error| error.to_string())?;
    let indices = store.resolve(INDEX, true)?;
    let hits = search::newest(store, &indices, query, size).map_err(|error| error.to_string())?;
    Ok(hits
        .into_iter()
        .map(|mut hit| hit["_source"].take())
        .collect())
}
