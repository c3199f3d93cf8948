//! `new_pattern` rules: a log rule that fires for each template of its lines (mined by
//! [`crate::patterns`] from a text field) that did not occur in the lookback before its
//! window and has at least `min_count` lines in the window, one alert per template, its
//! label `pattern` the template (as first reported; later lines may widen it).
//!
//! The templates seen are kept per loaded rule in memory ([`PatternMemory`]): built by
//! one pass over the lookback at the rule's first tick — every line when the lookback has
//! at most [`LOOKBACK_SAMPLE_LINES`], else the newest lines of each of [`LOOKBACK_SLICES`]
//! equal slices of it (a template rarer than that sample shows can then be reported as
//! new) — then updated from each tick's window only: the lookback is never re-read at a
//! tick. A reloaded or restarted rule (or a dry run, a backtest: each parses the rule
//! anew) builds its memory again from the index; so does a tick that goes back in time
//! or follows a gap longer than the lookback. A template whose latest line is older than
//! the lookback is forgotten, and is new again when it returns.
//!
//! An alert resolves once the window no longer holds its template's first line (with a
//! window as long as the schedule's interval: at the next tick); `keep_firing_for` holds
//! it longer. Not PromQL-visible: a value at a past time would need the lookback mined as
//! it was then (the alerts are in `/api/v1/alerts`, the history and the rules API).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::index::IndexStore;
use crate::patterns::read::{LineQuery, ReadError, newest_lines};
use crate::patterns::{Miner, MinerOptions, mask};

/// The label that names a new template.
pub const PATTERN_LABEL: &str = "pattern";
/// Lines the first pass reads from the lookback at most.
pub const LOOKBACK_SAMPLE_LINES: usize = 200_000;
/// Slices of the lookback a sampled first pass reads the newest lines of.
pub const LOOKBACK_SLICES: usize = 32;
/// Lines of one window (or of a gap between ticks) mined at most: the newest.
pub const MAX_WINDOW_LINES: usize = 100_000;
/// The longest lookback (a year: older lines are past any sensible retention).
pub const MAX_LOOKBACK: Duration = Duration::from_secs(366 * 24 * 3600);
/// Characters of a template kept in the `pattern` label.
const MAX_LABEL_CHARS: usize = 300;

/// The `new_pattern` field of a rule file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPatternConfig {
    /// The text field whose templates are mined (default `message`).
    #[serde(default = "default_field")]
    pub field: String,
    /// How long before the window a template must not have occurred, e.g. "7d" (default).
    #[serde(default = "default_lookback")]
    pub lookback: String,
    /// Lines of a new template the window needs to fire (default 1).
    #[serde(default = "default_min_count")]
    pub min_count: u64,
}

fn default_field() -> String {
    "message".into()
}

fn default_lookback() -> String {
    "7d".into()
}

fn default_min_count() -> u64 {
    1
}

/// A checked `new_pattern`, with the memory of the templates its rule has seen.
#[derive(Debug)]
pub struct NewPattern {
    pub field: String,
    pub lookback: Duration,
    pub min_count: u64,
    memory: Mutex<Option<PatternMemory>>,
    /// Passes over a whole lookback so far (one per memory built).
    lookback_passes: std::sync::atomic::AtomicU64,
}

/// What a rule's miner has seen.
#[derive(Debug)]
struct PatternMemory {
    miner: Miner,
    /// Lines with event times before this (microseconds) are mined.
    through: i64,
    /// The start of the latest window observed.
    window_start: i64,
    /// The label each template still new was first reported under.
    labels: HashMap<u64, String>,
    /// The newest lines of each template of the latest window, by label.
    samples: HashMap<String, Vec<String>>,
}

impl NewPattern {
    /// Checks `config`; every problem as (field, message).
    pub fn check(config: &NewPatternConfig) -> Result<NewPattern, Vec<String>> {
        let mut errors = Vec::new();
        if config.field.trim().is_empty() {
            errors.push("`field` is empty; name the text field to mine, e.g. \"message\"".into());
        }
        let lookback = match humantime::parse_duration(&config.lookback) {
            Ok(lookback) if !lookback.is_zero() && lookback <= MAX_LOOKBACK => lookback,
            Ok(_) => {
                errors.push(format!(
                    "`lookback` must be longer than 0s and at most {}, e.g. \"7d\"",
                    humantime::format_duration(MAX_LOOKBACK)
                ));
                Duration::ZERO
            }
            Err(error) => {
                errors.push(format!(
                    "`lookback`: `{}` is not a duration like \"7d\" ({error})",
                    config.lookback
                ));
                Duration::ZERO
            }
        };
        if config.min_count == 0 {
            errors.push("`min_count` must be at least 1".into());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewPattern {
            field: config.field.clone(),
            lookback,
            min_count: config.min_count,
            memory: Mutex::new(None),
            lookback_passes: Default::default(),
        })
    }

    /// Passes over a whole lookback so far: one per memory built (the first tick, a tick
    /// back in time, a gap longer than the lookback), none at other ticks.
    pub fn lookback_passes(&self) -> u64 {
        self.lookback_passes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<PatternMemory>> {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The templates of `[tick − window, tick)` that are new, each with its lines in the
    /// window, by label (the `pattern` label's value); blocking.
    pub fn observe(
        &self,
        store: &IndexStore,
        rule_name: &str,
        (index, query): (&str, &serde_json::Value),
        window: Duration,
        tick: DateTime<Utc>,
    ) -> Result<Vec<(String, u64)>, ReadError> {
        let end = tick.timestamp_micros();
        let window_start = end.saturating_sub(micros(window));
        let lookback = micros(self.lookback);
        let lines = |from_micros, to_micros| LineQuery {
            index,
            query,
            from_micros,
            to_micros,
            field: &self.field,
        };
        let mut guard = self.lock();
        let rebuild = guard.as_ref().is_none_or(|memory| {
            window_start < memory.window_start
                || window_start.saturating_sub(memory.through) > lookback
        });
        if rebuild {
            *guard = Some(self.build(store, rule_name, &lines, window_start)?);
        }
        let memory = guard.as_mut().expect("built above");
        if memory.through < window_start {
            // ticks missed (a stall, a restart within the lookback): mine the gap
            let gap = lines(memory.through, window_start);
            let miner = &mut memory.miner;
            newest_lines(store, &gap, MAX_WINDOW_LINES, &|| false, &mut |line, at| {
                miner.add(line, at);
            })?;
            memory.through = window_start;
        }
        // the window: lines not mined yet are mined, the others matched (a late line no
        // template covers is mined too)
        let through = memory.through;
        let mut counts: HashMap<u64, u64> = HashMap::new();
        let mut samples: HashMap<u64, Vec<String>> = HashMap::new();
        let miner = &mut memory.miner;
        let max_line_bytes = miner.options().limits.max_line_bytes;
        newest_lines(
            store,
            &lines(window_start, end),
            MAX_WINDOW_LINES,
            &|| false,
            &mut |line, at| {
                let matched = if at >= through {
                    None
                } else {
                    miner.find(line)
                };
                let cluster = matched.unwrap_or_else(|| miner.add(line, at).cluster);
                *counts.entry(cluster).or_default() += 1;
                let kept = samples.entry(cluster).or_default();
                if kept.len() < crate::notify::message::MAX_SAMPLES {
                    kept.push(mask::truncate(line, max_line_bytes).to_string());
                }
            },
        )?;
        memory.through = memory.through.max(end);
        memory.window_start = window_start;
        memory
            .miner
            .forget_before(window_start.saturating_sub(lookback));
        let mut observations = Vec::new();
        let mut labels = HashMap::new();
        memory.samples.clear();
        for (cluster, count) in counts {
            let Some(template) = memory.miner.cluster(cluster) else {
                continue;
            };
            if template.first_seen < window_start {
                continue;
            }
            let label = memory
                .labels
                .remove(&cluster)
                .unwrap_or_else(|| label_of(&template.template()));
            if let Some(lines) = samples.remove(&cluster) {
                memory.samples.insert(label.clone(), lines);
            }
            observations.push((label.clone(), count));
            labels.insert(cluster, label);
        }
        // templates no longer new lose their label
        memory.labels = labels;
        Ok(observations)
    }

    /// A memory built from the lookback before `window_start`.
    fn build<'a>(
        &self,
        store: &IndexStore,
        rule_name: &str,
        lines: &dyn Fn(i64, i64) -> LineQuery<'a>,
        window_start: i64,
    ) -> Result<PatternMemory, ReadError> {
        let started = std::time::Instant::now();
        let mut miner = Miner::new(MinerOptions::default());
        let from = window_start.saturating_sub(micros(self.lookback));
        let whole = lines(from, window_start);
        let mut mined = 0u64;
        let count = newest_lines(
            store,
            &whole,
            LOOKBACK_SAMPLE_LINES,
            &|| false,
            &mut |line, at| {
                miner.add(line, at);
                mined += 1;
            },
        )?;
        let sampled = count.read < count.matched;
        if sampled {
            // too many for one pass: the newest lines of each slice instead, so that the
            // whole lookback is seen, not only its end
            miner = Miner::new(MinerOptions::default());
            mined = 0;
            let span = window_start.saturating_sub(from) / LOOKBACK_SLICES as i64;
            for slice in 0..LOOKBACK_SLICES as i64 {
                let slice_from = from.saturating_add(slice.saturating_mul(span));
                let slice_to = if slice + 1 == LOOKBACK_SLICES as i64 {
                    window_start
                } else {
                    slice_from.saturating_add(span)
                };
                newest_lines(
                    store,
                    &lines(slice_from, slice_to),
                    LOOKBACK_SAMPLE_LINES / LOOKBACK_SLICES,
                    &|| false,
                    &mut |line, at| {
                        miner.add(line, at);
                        mined += 1;
                    },
                )?;
            }
        }
        self.lookback_passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            rule = %rule_name,
            lines = mined,
            sampled,
            templates = miner.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "new_pattern: mined the lookback"
        );
        Ok(PatternMemory {
            miner,
            through: window_start,
            window_start,
            labels: HashMap::new(),
            samples: HashMap::new(),
        })
    }

    /// The newest lines of the template labelled by `labels` in the latest window.
    pub fn samples(&self, labels: &std::collections::BTreeMap<String, String>) -> Vec<String> {
        let Some(label) = labels.get(PATTERN_LABEL) else {
            return Vec::new();
        };
        self.lock()
            .as_ref()
            .and_then(|memory| memory.samples.get(label).cloned())
            .unwrap_or_default()
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// A template as a label value: at most [`MAX_LABEL_CHARS`] characters.
fn label_of(template: &str) -> String {
    if template.chars().count() <= MAX_LABEL_CHARS {
        return template.to_string();
    }
    let mut label: String = template.chars().take(MAX_LABEL_CHARS - 1).collect();
    label.push('…');
    label
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;

    const MINUTE: i64 = 60_000_000;
    const HOUR: i64 = 60 * MINUTE;
    /// 2026-11-22T10:00:00Z
    const START: i64 = 1_795_341_600_000_000;

    fn store() -> (tempfile::TempDir, Arc<IndexStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = IndexStore::test_open(dir.path(), HOUR, 2);
        (dir, Arc::new(store))
    }

    fn write(store: &IndexStore, first_id: usize, lines: &[(i64, Value)]) {
        let ops = lines
            .iter()
            .enumerate()
            .map(|(number, (micros, body))| {
                store.test_doc(
                    "logs",
                    format!("{}", first_id + number),
                    *micros,
                    serde_json::to_vec(body).expect("json"),
                )
            })
            .collect();
        store.apply(1, ops, false).expect("apply");
        store.commit_all().expect("commit");
    }

    /// One line a minute of two known kinds for `minutes` minutes from `from`.
    fn routine(from: i64, minutes: i64) -> Vec<(i64, Value)> {
        (0..minutes)
            .flat_map(|minute| {
                let at = from + minute * MINUTE;
                [
                    (at, json!({"message": format!("GET /cart/{minute} returned 200 in {minute}ms")})),
                    (at + 1, json!({"message": format!("user u{minute}x logged in from 10.0.0.{}", minute % 200)})),
                ]
            })
            .collect()
    }

    fn observe(rule: &NewPattern, store: &IndexStore, tick: i64) -> Vec<(String, f64)> {
        let mut seen: Vec<(String, f64)> = rule
            .observe(
                store,
                "test",
                ("logs", &json!("*")),
                Duration::from_secs(60),
                DateTime::from_timestamp_micros(tick).expect("time"),
            )
            .expect("observe")
            .into_iter()
            .map(|(label, count)| (label, count as f64))
            .collect();
        seen.sort_by(|left, right| left.0.cmp(&right.0));
        seen
    }

    fn rule(lookback: &str, min_count: u64) -> NewPattern {
        NewPattern::check(&NewPatternConfig {
            field: "message".into(),
            lookback: lookback.into(),
            min_count,
        })
        .expect("valid")
    }

    #[test]
    fn a_new_kind_is_new_in_its_first_window_only_and_the_lookback_is_read_once() {
        let (_dir, store) = store();
        // two hours of routine lines, spanning partitions
        write(&store, 0, &routine(START, 120));
        let rule = rule("1h", 3);
        let tick = START + 121 * MINUTE;
        assert_eq!(
            observe(&rule, &store, tick),
            [],
            "routine kinds are not new"
        );
        assert_eq!(rule.lookback_passes(), 1);
        // a new kind: four lines in the next minute, and one odd line
        let mut next = routine(tick, 1);
        for number in 0..4 {
            next.push((
                tick + number * 1000,
                json!({"message": format!("payment declined for order {number}: \"card expired\"")}),
            ));
        }
        next.push((tick + 5000, json!({"message": "odd line seen once"})));
        write(&store, 10_000, &next);
        let later = tick + MINUTE;
        assert_eq!(
            observe(&rule, &store, later),
            [
                ("odd line seen once".to_string(), 1.0),
                ("payment declined for order <NUM>: <STR>".to_string(), 4.0),
            ],
            "each new template with its lines in the window (min_count is the threshold's)"
        );
        assert_eq!(
            rule.samples(
                &[(
                    PATTERN_LABEL.to_string(),
                    "payment declined for order <NUM>: <STR>".to_string()
                )]
                .into()
            )
            .len(),
            4
        );
        // the same tick again (a dry run) answers the same
        assert_eq!(observe(&rule, &store, later).len(), 2);
        // the next minute: the kind occurred in the lookback now
        write(
            &store,
            20_000,
            &[(
                later + 1000,
                json!({"message": "payment declined for order 9: \"card expired\""}),
            )],
        );
        assert_eq!(observe(&rule, &store, later + MINUTE), []);
        assert_eq!(
            rule.lookback_passes(),
            1,
            "ticks never re-read the lookback"
        );
        // a tick back in time rebuilds from the index
        assert_eq!(observe(&rule, &store, tick).len(), 0);
        assert_eq!(rule.lookback_passes(), 2);
    }

    #[test]
    fn a_template_older_than_the_lookback_is_new_again() {
        let (_dir, store) = store();
        write(
            &store,
            0,
            &[(START, json!({"message": "cache warmed in 30s"}))],
        );
        write(&store, 1, &routine(START + MINUTE, 90));
        let rule = rule("30m", 1);
        // at first the lookback holds it (its window start − 30m ≤ START)
        assert_eq!(observe(&rule, &store, START + 31 * MINUTE), []);
        // ticks ten minutes apart: each mines the gap since the last
        for minutes in (41..=91).step_by(10) {
            assert_eq!(observe(&rule, &store, START + minutes * MINUTE), []);
        }
        let tick = START + 92 * MINUTE;
        write(
            &store,
            1000,
            &[(tick - 1000, json!({"message": "cache warmed in 12s"}))],
        );
        assert_eq!(
            observe(&rule, &store, tick),
            [("cache warmed in <DUR>".to_string(), 1.0)]
        );
        assert_eq!(
            rule.lookback_passes(),
            1,
            "the gap was mined, not the lookback"
        );
    }

    #[test]
    fn rule_files_refuse_what_a_new_pattern_rule_cannot_honour() {
        use crate::rules::check::check_rule;
        let good = r#"{"version": 1, "index": "logs", "query": "level:error",
            "new_pattern": {"lookback": "7d", "min_count": 3},
            "summary": "new kind of error: {{ $labels.pattern }} ({{ $value }} lines)"}"#;
        let rule = check_rule(good, "new_errors", "q.json").expect("valid");
        let new_pattern = rule.new_pattern.as_ref().expect("new_pattern");
        assert_eq!(new_pattern.field, "message");
        assert_eq!(rule.threshold_text(), ">= 3");
        let bad = r#"{"version": 1, "query": "x", "group_by": ["service"],
            "threshold": {"op": ">", "value": 1}, "expect_matches": "1h",
            "new_pattern": {"min_count": 0}}"#;
        let joined = check_rule(bad, "bad", "q.json")
            .err()
            .expect("invalid")
            .join("\n");
        for expected in [
            "`threshold`: a `new_pattern` rule fires on templates not seen",
            "`group_by`: a `new_pattern` rule has one alert per new template",
            "`expect_matches`: a `new_pattern` rule sees only new templates",
            "`new_pattern`: `min_count` must be at least 1",
        ] {
            assert!(joined.contains(expected), "{expected}: {joined}");
        }
        let metric = r#"{"version": 1, "promql": "up", "new_pattern": {}}"#;
        let joined = check_rule(metric, "bad", "q.json")
            .err()
            .expect("invalid")
            .join("\n");
        assert!(
            joined.contains("`promql`: `new_pattern` mines log lines"),
            "{joined}"
        );
        let typo = r#"{"version": 1, "query": "x", "new_pattern": {"min_cuont": 2}}"#;
        let joined = check_rule(typo, "bad", "q.json")
            .err()
            .expect("invalid")
            .join("\n");
        assert!(
            joined.contains("`new_pattern`: unknown field `min_cuont`"),
            "{joined}"
        );
    }

    /// `GET /_lookout/patterns`' reading, here for the store this module's tests build.
    #[test]
    fn top_patterns_past_the_cap_are_of_the_newest_lines_and_say_so() {
        let (_dir, store) = store();
        write(&store, 0, &routine(START, 30));
        let lines = LineQuery {
            index: "logs",
            query: &json!("*"),
            from_micros: START,
            to_micros: START + HOUR,
            field: "message",
        };
        let all =
            crate::patterns::top_patterns(&store, &lines, 10, 1000, &|| false).expect("mined");
        assert_eq!(
            (all.lines_matched, all.lines_mined, all.sampled),
            (60, 60, false)
        );
        assert_eq!(
            all.patterns
                .iter()
                .map(|pattern| (pattern.template.as_str(), pattern.count))
                .collect::<Vec<_>>(),
            [
                ("GET /cart/<*> returned <NUM> in <DUR>", 30),
                ("user <*> logged in from <IP>", 30)
            ]
        );
        assert_eq!(
            all.patterns[0].sample, "GET /cart/29 returned 200 in 29ms",
            "the newest line"
        );
        let sample = crate::patterns::top_patterns(&store, &lines, 1, 7, &|| false).expect("mined");
        assert_eq!(
            (sample.lines_matched, sample.lines_mined, sample.sampled),
            (60, 7, true)
        );
        assert_eq!((sample.templates, sample.patterns.len()), (2, 1));
    }

    #[test]
    fn settings_are_checked_with_what_to_fix() {
        let errors = NewPattern::check(&NewPatternConfig {
            field: " ".into(),
            lookback: "a week".into(),
            min_count: 0,
        })
        .expect_err("invalid");
        let joined = errors.join("\n");
        assert!(joined.contains("`field` is empty"), "{joined}");
        assert!(
            joined.contains("`lookback`: `a week` is not a duration"),
            "{joined}"
        );
        assert!(
            joined.contains("`min_count` must be at least 1"),
            "{joined}"
        );
        let errors = NewPattern::check(&NewPatternConfig {
            field: "message".into(),
            lookback: "18446744073709551615s".into(),
            min_count: 1,
        })
        .expect_err("too long");
        assert!(errors[0].contains("at most 1year"), "{errors:?}");
    }
}
