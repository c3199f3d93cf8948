//! The alert history: every transition of an alert and every delivery attempt, indexed
//! into the hidden index `.lookout-alerts` (DESIGN §4–5) through the same durable ingest
//! path as logs, so it is searched like logs (`GET /.lookout-alerts/_search?q=rule:NAME`)
//! and served by `GET /_lookout/alerts/history`.
//!
//! Recording never blocks an evaluation or a delivery: events go through a channel to one
//! writer task, which writes whatever has queued up as one batch. While storage is
//! degraded (a full disk) the writer holds its batch and writes it once writes resume;
//! events beyond the queue's bound are dropped with a warning, and a shutdown while
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
}

impl History {
    /// A history and the writer that indexes what it records (run it until shutdown: it
    /// drains what is queued once its token is cancelled).
    pub fn new(ingest: Arc<Ingest>) -> (History, HistoryWriter) {
        let (sender, receiver) = mpsc::channel(MAX_QUEUED);
        (
            History {
                sender: Some(sender),
                kept: None,
            },
            HistoryWriter { ingest, receiver },
        )
    }

    /// A history that records nothing (backtests, dry runs).
    pub fn disabled() -> History {
        History {
            sender: None,
            kept: None,
        }
    }

    /// A history that keeps its events in memory; [`History::take`] hands them over.
    pub fn in_memory() -> History {
        History {
            sender: None,
            kept: Some(Default::default()),
        }
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

/// Indexes history events as they come.
pub struct HistoryWriter {
    ingest: Arc<Ingest>,
    receiver: mpsc::Receiver<Value>,
}

impl HistoryWriter {
    pub async fn run(self, cancel: CancellationToken) {
        let HistoryWriter {
            ingest,
            mut receiver,
        } = self;
        let mut batch: Vec<Value> = Vec::new();
        loop {
            let received = tokio::select! {
                received = receiver.recv_many(&mut batch, 1000) => received,
                () = cancel.cancelled() => {
                    receiver.close();
                    while let Some(event) = receiver.recv().await {
                        batch.push(event);
                    }
                    0
                }
            };
            if !batch.is_empty() {
                write_until_accepted(&ingest, std::mem::take(&mut batch), &cancel).await;
            }
            if received == 0 {
                return;
            }
        }
    }
}

/// Writes `events`, waiting out a degraded storage (until `cancel`).
async fn write_until_accepted(ingest: &Ingest, events: Vec<Value>, cancel: &CancellationToken) {
    let mut disk = ingest.disk().subscribe();
    let mut waited = false;
    loop {
        let Err(refused) = write_batch(ingest, &events).await else {
            if waited {
                tracing::info!(
                    events = events.len(),
                    "alert history events held while storage was degraded are written"
                );
            }
            return;
        };
        if !waited {
            tracing::warn!(events = events.len(), reason = %refused, "alert history events held until storage accepts writes again");
            waited = true;
        }
        tokio::select! {
            _ = disk.wait_for(|state| !state.degraded()) => {}
            _ = cancel.cancelled() => {
                tracing::warn!(events = events.len(), "alert history events lost: shutting down while storage is degraded");
                return;
            }
        }
        // the state may flip back before the write: retry at most every second
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = cancel.cancelled() => {}
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
    for item in outcome.items.iter().filter(|item| item.error.is_some()) {
        tracing::error!(error = ?item.error, "cannot index an alert history event");
    }
    Ok(())
}

/// The newest `size` history events, of one rule or all, newest first.
pub fn recent(store: &IndexStore, rule: Option<&str>, size: usize) -> Result<Vec<Value>, String> {
    let filter = match rule {
        Some(rule) => json!({"term": {"rule": rule}}),
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
