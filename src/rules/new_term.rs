//! New-term rules (`"new_term": {"fields": […], "lookback": "7d"}`, ElastAlert2's
//! `new_term`): at tick T, each value of the fields (or combination of values, for several
//! fields) that matches the rule's query in `[T − window, T)` and did not occur in the
//! `lookback` before it is a new term, one alert per new value.
//!
//! The terms seen are kept per rule in memory ([`NewTerms`]: value → last time seen),
//! built by ONE pass over the lookback when the rule loads or after a restart, then
//! updated from each tick's window only: the lookback is never re-read at a tick (the
//! searches of both kinds are counted in `lookout_rule_new_term_searches_total`). The
//! reads are `terms` aggregations with the newest `@timestamp` of each value, paged by
//! time: a slice that holds more distinct values than one aggregation answers
//! ([`MAX_GROUPS`]) is halved until each half fits ([`read`]). A rule tracks at most
//! `max_terms` values (default [`DEFAULT_MAX_TERMS`]); past that its evaluation fails with
//! a clear error rather than forgetting values and reporting them again.
//!
//! The end of the last window checked (`through`) is persisted under
//! `state/new_terms/NAME.json` once the tick's alerts are saved, so after a restart the
//! set is rebuilt from `[through − lookback, through)` and the first window starts at
//! `through`: a value first seen while the server was down is reported, none twice.
//! A rule whose `index`, `query`, `fields` or `lookback` changed rebuilds its set; an edit
//! of anything else keeps it.
//!
//! Lifecycle: a new term's alert fires at the tick it is new (no `for`) and resolves at the
//! next tick, silently: one notification per new term, no resolved message (the history
//! records the resolution). `keep_firing_for` keeps it listed as firing for longer. What
//! it does not do: report the first occurrence's exact line (the message shows the
//! window's newest lines of the value).

pub mod config;
mod read;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use config::{
    DEFAULT_MAX_TERMS, MAX_FIELDS, MAX_LOOKBACK, MAX_MAX_TERMS, METRIC, NewTermConfig,
    NewTermSettings,
};
pub use read::{MAX_GROUPS, TermCount, read};

use super::evaluate::EvaluateError;
use super::log_matches::label_name;
use super::model::RuleFile;

/// Checks `new_term` of `file`: `Ok(None)` without one, else the settings or every
/// problem as (field, reason).
#[allow(clippy::type_complexity)]
pub fn check(file: &RuleFile) -> Result<Option<NewTermSettings>, Vec<(&'static str, String)>> {
    let Some(config) = &file.new_term else {
        return Ok(None);
    };
    let mut problems = Vec::new();
    for (field, set, why) in [
        (
            "promql",
            file.promql.is_some(),
            "a new-term rule reads logs: give `index` and `query` instead",
        ),
        (
            "record",
            file.record.is_some(),
            "a new-term rule alerts on log values; it records nothing",
        ),
        (
            "threshold",
            file.threshold.is_some(),
            "a new-term rule fires for each new value, it has no threshold; remove it",
        ),
        (
            "group_by",
            !file.group_by.is_empty(),
            "a new-term rule's alerts are per value of `new_term.fields` already; remove `group_by` (or add its fields to `new_term.fields`)",
        ),
        (
            "for",
            file.for_duration.is_some(),
            "a value is new at one tick only, so `for` would never fire; remove it (`keep_firing_for` keeps the alert listed longer)",
        ),
    ] {
        if set {
            problems.push((field, why.to_string()));
        }
    }
    if file.query.is_none() && file.promql.is_none() {
        problems.push((
            "new_term",
            "needs a log `query` whose matches are watched, e.g. \"query\": \"level:error\"".into(),
        ));
    }
    if config.fields.is_empty() || config.fields.len() > MAX_FIELDS {
        problems.push((
            "new_term",
            format!(
                "`fields` needs 1 to {MAX_FIELDS} field names, e.g. [\"error.type\"]; got {}",
                config.fields.len()
            ),
        ));
    }
    let mut labels = Vec::new();
    for field in &config.fields {
        if field.trim().is_empty() || field.len() > 256 {
            problems.push((
                "new_term",
                format!("field `{field}` must be a field name of 1 to 256 characters"),
            ));
        }
        let label = label_name(field);
        if labels.contains(&label) {
            problems.push((
                "new_term",
                format!(
                    "field `{field}` is listed twice (or gives the same label `{label}` as another)"
                ),
            ));
        }
        labels.push(label);
    }
    let lookback = match humantime::parse_duration(&config.lookback) {
        Ok(lookback) if lookback.is_zero() || lookback > MAX_LOOKBACK => {
            problems.push((
                "new_term",
                format!(
                    "`lookback` must be longer than 0s and at most 366d, e.g. \"7d\"; got `{}`",
                    config.lookback
                ),
            ));
            lookback
        }
        Ok(lookback) => lookback,
        Err(error) => {
            problems.push((
                "new_term",
                format!(
                    "`lookback`: `{}` is not a duration like \"7d\" ({error})",
                    config.lookback
                ),
            ));
            Duration::ZERO
        }
    };
    let max_terms = config.max_terms.unwrap_or(DEFAULT_MAX_TERMS);
    if max_terms == 0 || max_terms > MAX_MAX_TERMS {
        problems.push((
            "new_term",
            format!("`max_terms` must be between 1 and {MAX_MAX_TERMS}; got {max_terms}"),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(NewTermSettings {
        fields: config.fields.clone(),
        labels,
        lookback,
        max_terms: usize::try_from(max_terms).unwrap_or(usize::MAX),
    }))
}

/// Why a new-term rule could not see its tick.
#[derive(Debug, thiserror::Error)]
pub enum NewTermError {
    #[error(transparent)]
    Read(#[from] EvaluateError),
    #[error(
        "more than {max} distinct values of {fields} in the lookback and window (new_term.max_terms); raise `max_terms`, shorten `lookback` or narrow `query`"
    )]
    TooManyTerms { max: usize, fields: String },
    #[error(
        "more than {max} distinct values of {fields} within one second; a new-term rule cannot page through them: narrow `query`",
        max = MAX_GROUPS
    )]
    SliceTooDense { fields: String },
}

/// What identifies a rule's term set: an edit of any of these rebuilds it.
fn fingerprint(index: &str, query: &serde_json::Value, settings: &NewTermSettings) -> String {
    serde_json::json!([
        index,
        query,
        settings.fields,
        settings.lookback.as_micros() as u64
    ])
    .to_string()
}

/// One rule's terms.
#[derive(Default)]
struct TermSet {
    fingerprint: String,
    /// Value(s) joined by U+001F → the newest event time seen (µs).
    terms: HashMap<Box<str>, i64>,
    /// The end (µs, exclusive) of the windows checked so far.
    through: i64,
    /// Whether the last window read had any matching value (new or not).
    window_matched: bool,
    searches: Searches,
}

/// The searches a rule's term set ran (the proof that the lookback is read once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Searches {
    /// Searches of the load-time pass over the lookback.
    pub lookback: u64,
    /// Searches of the ticks' windows.
    pub window: u64,
}

/// A value new at a tick: its alert labels and its matches in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTerm {
    pub labels: BTreeMap<String, String>,
    pub count: u64,
}

/// Where a tick looks.
pub struct TermQuery<'a> {
    pub rule: &'a str,
    pub index: &'a str,
    pub query: &'a serde_json::Value,
    pub settings: &'a NewTermSettings,
    pub window: Duration,
}

/// The term sets of the running rules (or of one replay: [`NewTerms::detached`]).
#[derive(Default)]
pub struct NewTerms {
    /// Where each rule's `through` is persisted (`None`: replays, kept in memory only).
    dir: Option<PathBuf>,
    telemetry: Option<Arc<crate::telemetry::Telemetry>>,
    sets: Mutex<HashMap<String, Arc<Mutex<TermSet>>>>,
}

#[derive(Serialize, Deserialize)]
struct Persisted {
    fingerprint: String,
    through_micros: i64,
}

const SEPARATOR: char = '\u{1f}';

impl NewTerms {
    /// The running rules' sets, their progress persisted under `dir`, their searches
    /// counted in `telemetry`.
    pub fn new(dir: PathBuf, telemetry: Arc<crate::telemetry::Telemetry>) -> NewTerms {
        NewTerms {
            dir: Some(dir),
            telemetry: Some(telemetry),
            sets: Mutex::default(),
        }
    }

    /// Sets for one replay (a backtest, a dry run, a rule unit test): fresh, nothing
    /// persisted or counted in `/metrics`.
    pub fn detached() -> NewTerms {
        NewTerms::default()
    }

    fn set_of(&self, rule: &str) -> Arc<Mutex<TermSet>> {
        let mut sets = self
            .sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(sets.entry(rule.to_string()).or_default())
    }

    /// `read` of rule `rule`'s set, `default` when it has none.
    fn with_set<T>(&self, rule: &str, default: T, read: impl FnOnce(&TermSet) -> T) -> T {
        let sets = self
            .sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match sets.get(rule) {
            Some(set) => read(
                &set.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
            None => default,
        }
    }

    /// The searches rule `rule`'s set ran since it was built (zero when it has none).
    pub fn searches(&self, rule: &str) -> Searches {
        self.with_set(rule, Searches::default(), |set| set.searches)
    }

    /// Whether rule `rule`'s last window had matches with its fields (new values or not):
    /// what "the query matched" means for `expect_matches` and "never matched".
    pub fn window_matched(&self, rule: &str) -> bool {
        self.with_set(rule, false, |set| set.window_matched)
    }

    /// Values rule `rule` tracks now.
    pub fn tracked(&self, rule: &str) -> usize {
        self.with_set(rule, 0, |set| set.terms.len())
    }

    /// The heap rule `rule`'s set holds, estimated from its table: each slot of the hash
    /// table (a key pointer and length, a time, a control byte) plus the keys' bytes (not
    /// the allocator's overhead per key; the bench's resident-set growth includes it).
    pub fn heap_bytes(&self, rule: &str) -> usize {
        self.with_set(rule, 0, |set| {
            let slot = std::mem::size_of::<(Box<str>, i64)>() + 1;
            set.terms.capacity() * slot + set.terms.keys().map(|key| key.len()).sum::<usize>()
        })
    }

    /// Drops rule `rule`'s set and its persisted progress (the rule was deleted).
    pub fn forget(&self, rule: &str) {
        self.sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(rule);
        if let Some(path) = self.path(rule) {
            let _ = std::fs::remove_file(path);
        }
        if let Some(telemetry) = &self.telemetry {
            telemetry.new_terms_tracked.set(rule, None);
        }
    }

    fn path(&self, rule: &str) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(format!("{rule}.json")))
    }

    /// Where rule `rule` had checked through, when its set is `fingerprint`'s.
    fn persisted(&self, rule: &str, fingerprint: &str) -> Option<i64> {
        let text = std::fs::read(self.path(rule)?).ok()?;
        let persisted: Persisted = serde_json::from_slice(&text).ok()?;
        (persisted.fingerprint == fingerprint).then_some(persisted.through_micros)
    }

    /// Persists how far rule `rule` has checked (after its tick's alerts are saved); a
    /// failed write is logged, and the next tick writes again.
    pub fn commit(&self, rule: &str) {
        let Some(path) = self.path(rule) else {
            return;
        };
        let persisted = {
            let set = self.set_of(rule);
            let set = set
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if set.fingerprint.is_empty() {
                return;
            }
            Persisted {
                fingerprint: set.fingerprint.clone(),
                through_micros: set.through,
            }
        };
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                let bytes = serde_json::to_vec(&persisted).expect("plain data serializes");
                crate::atomic_file::write(&path, &bytes)
            });
        if let Err(error) = written {
            tracing::warn!(rule = %rule, %error, "cannot persist the new-term progress; a restart re-checks from the last saved point");
        }
    }

    /// The new terms of `query`'s rule at `tick_micros` (one observation per new value:
    /// its labels and its matches in the window), updating the rule's set; builds the
    /// set first when the rule has none (or a different one); blocking.
    pub fn observe(
        &self,
        store: &crate::index::IndexStore,
        query: &TermQuery<'_>,
        tick_micros: i64,
    ) -> Result<Vec<NewTerm>, NewTermError> {
        let settings = query.settings;
        let lookback = settings.lookback.as_micros() as i64;
        let window_start = tick_micros.saturating_sub(query.window.as_micros() as i64);
        let fingerprint = fingerprint(query.index, query.query, settings);
        let set = self.set_of(query.rule);
        let mut set = set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fields_text = || format!("`{}`", settings.fields.join("`, `"));
        let count = |pass: &str, searches: u64| {
            if let Some(telemetry) = &self.telemetry {
                telemetry.new_term_searches.add(query.rule, pass, searches);
            }
        };
        if set.fingerprint != fingerprint {
            // after a restart, go on from where the last saved tick ended (when within
            // the lookback), so values of the downtime are new and none is new twice
            let through = self
                .persisted(query.rule, &fingerprint)
                .filter(|through| {
                    *through <= tick_micros && *through >= window_start.saturating_sub(lookback)
                })
                .unwrap_or(window_start);
            let mut searches = 0;
            let seen = read(
                store,
                query.index,
                query.query,
                &settings.fields,
                (through.saturating_sub(lookback), through),
                &mut searches,
            );
            count("lookback", searches);
            let mut fresh = TermSet {
                through,
                searches: Searches {
                    lookback: searches,
                    window: 0,
                },
                ..TermSet::default()
            };
            for term in seen? {
                remember(
                    &mut fresh.terms,
                    term.values.join(&SEPARATOR.to_string()),
                    term.last_seen_micros,
                );
            }
            if fresh.terms.len() > settings.max_terms {
                return Err(NewTermError::TooManyTerms {
                    max: settings.max_terms,
                    fields: fields_text(),
                });
            }
            fresh.fingerprint = fingerprint;
            tracing::info!(rule = %query.rule, terms = fresh.terms.len(), searches, "new-term set built from the lookback");
            *set = fresh;
        }
        let from = window_start.min(set.through);
        let mut searches = 0;
        let window = read(
            store,
            query.index,
            query.query,
            &settings.fields,
            (from, tick_micros),
            &mut searches,
        );
        set.searches.window += searches;
        count("window", searches);
        set.window_matched = window.as_ref().is_ok_and(|terms| !terms.is_empty());
        let horizon = from.saturating_sub(lookback);
        let mut observations = Vec::new();
        for term in window? {
            let key = term.values.join(&SEPARATOR.to_string());
            let new = set
                .terms
                .get(key.as_str())
                .is_none_or(|seen| *seen < horizon);
            if new {
                observations.push(NewTerm {
                    labels: settings.labels.iter().cloned().zip(term.values).collect(),
                    count: term.count,
                });
            }
            remember(&mut set.terms, key, term.last_seen_micros);
        }
        // values not seen for longer than the lookback are new again: forget them
        set.terms.retain(|_, seen| *seen >= horizon);
        set.through = set.through.max(tick_micros);
        if let Some(telemetry) = &self.telemetry {
            telemetry
                .new_terms_tracked
                .set(query.rule, Some(set.terms.len() as i64));
        }
        if set.terms.len() > settings.max_terms {
            // rebuild (and fail again) at the next tick rather than run on a partial set
            set.fingerprint.clear();
            return Err(NewTermError::TooManyTerms {
                max: settings.max_terms,
                fields: fields_text(),
            });
        }
        Ok(observations)
    }
}

/// Writes `log_new_terms{query="RULE"}` = `count` at `tick` into the TSDB (a failed write
/// is logged: the alerts do not depend on it).
pub fn record_count(
    tsdb: &crate::tsdb::Tsdb,
    rule: &str,
    tick: chrono::DateTime<chrono::Utc>,
    count: usize,
) {
    let labels: crate::tsdb::head::Labels = Arc::from(vec![
        ("__name__".to_string(), METRIC.to_string()),
        ("query".to_string(), rule.to_string()),
    ]);
    let written = tsdb.append(&[(labels, tick.timestamp_millis(), count as f64)]);
    let refused = written.as_ref().map_or(None, |results| {
        results.iter().find_map(|result| result.as_ref().err())
    });
    match (written.as_ref().err(), refused) {
        (Some(error), _) => tracing::warn!(rule = %rule, %error, "cannot write log_new_terms"),
        (None, Some(error)) => {
            tracing::debug!(rule = %rule, ?error, "log_new_terms sample refused")
        }
        _ => {}
    }
}

/// Keeps the newer of the known and the new last-seen time of `key`.
fn remember(terms: &mut HashMap<Box<str>, i64>, key: String, seen_micros: i64) {
    match terms.get_mut(key.as_str()) {
        Some(known) => *known = (*known).max(seen_micros),
        None => {
            terms.insert(key.into_boxed_str(), seen_micros);
        }
    }
}

#[cfg(test)]
mod tests;
