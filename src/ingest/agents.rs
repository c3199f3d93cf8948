//! Registered agents and their watermarks (agent protocol, DESIGN §4).
//!
//! An agent's watermark T says: every line it tails that was written before T has been
//! acknowledged. The scheduler waits, for a tick at T, until every live agent's watermark
//! is at least T. An agent that deregisters, or is silent for `agent_timeout`, is no
//! longer waited for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone)]
struct AgentEntry {
    watermark_micros: Option<i64>,
    last_seen: Instant,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub id: String,
    pub watermark: Option<String>,
    pub seconds_since_seen: f64,
    pub live: bool,
}

pub struct Agents {
    entries: Mutex<HashMap<String, AgentEntry>>,
    timeout: Duration,
}

impl Agents {
    pub fn new(timeout: Duration) -> Agents {
        Agents {
            entries: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, AgentEntry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `id` is alive, with its watermark when it sent one (watermarks never
    /// move back).
    pub fn seen(&self, id: &str, watermark_micros: Option<i64>, now: Instant) {
        let mut entries = self.entries();
        let entry = entries.entry(id.to_string()).or_insert(AgentEntry {
            watermark_micros: None,
            last_seen: now,
        });
        entry.last_seen = now;
        if let Some(watermark) = watermark_micros {
            entry.watermark_micros = Some(
                entry
                    .watermark_micros
                    .map_or(watermark, |current| current.max(watermark)),
            );
        }
    }

    /// Forgets `id`; returns whether it was registered.
    pub fn deregister(&self, id: &str) -> bool {
        self.entries().remove(id).is_some()
    }

    /// The lowest watermark among live agents: `Some(None)` when a live agent has not
    /// reported one yet, `None` when no agent is live (nothing to wait for).
    pub fn min_live_watermark(&self, now: Instant) -> Option<Option<i64>> {
        let entries = self.entries();
        let mut live = entries
            .values()
            .filter(|entry| now.duration_since(entry.last_seen) < self.timeout)
            .peekable();
        live.peek()?;
        Some(
            live.map(|entry| entry.watermark_micros)
                .try_fold(i64::MAX, |low, watermark| {
                    watermark.map(|value| low.min(value))
                }),
        )
    }

    /// Drops agents silent for longer than the timeout; returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut entries = self.entries();
        let before = entries.len();
        entries.retain(|_, entry| now.duration_since(entry.last_seen) < self.timeout);
        before - entries.len()
    }

    pub fn status(&self, now: Instant) -> Vec<AgentStatus> {
        let mut list: Vec<AgentStatus> = self
            .entries()
            .iter()
            .map(|(id, entry)| AgentStatus {
                id: id.clone(),
                watermark: entry.watermark_micros.map(super::event::format_micros),
                seconds_since_seen: now.duration_since(entry.last_seen).as_secs_f64(),
                live: now.duration_since(entry.last_seen) < self.timeout,
            })
            .collect();
        list.sort_by(|left, right| left.id.cmp(&right.id));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_watermark_waits_for_live_agents_only() {
        let agents = Agents::new(Duration::from_secs(120));
        let start = Instant::now();
        assert_eq!(
            agents.min_live_watermark(start),
            None,
            "no agents: nothing to wait for"
        );
        agents.seen("a", Some(100), start);
        agents.seen("b", None, start);
        assert_eq!(
            agents.min_live_watermark(start),
            Some(None),
            "b has not reported yet"
        );
        agents.seen("b", Some(50), start);
        assert_eq!(agents.min_live_watermark(start), Some(Some(50)));
        agents.seen("b", Some(40), start);
        assert_eq!(
            agents.min_live_watermark(start),
            Some(Some(50)),
            "watermarks never move back"
        );
        let later = start + Duration::from_secs(121);
        agents.seen("a", Some(200), later);
        assert_eq!(
            agents.min_live_watermark(later),
            Some(Some(200)),
            "b went silent"
        );
        assert!(agents.deregister("a"));
        assert_eq!(agents.min_live_watermark(later), None);
    }
}
