//! SLOs as PromQL series: for every SLO rule `NAME` (see [`super`]),
//! `slo_sli{slo="NAME", …}` (good ÷ total over the period), `slo_error_budget_remaining`
//! (1 − errors ÷ the errors the objective allows over the period; below 0 once
//! overspent) and `slo_burn_rate{slo="NAME", window="1h", …}` (error ratio over the
//! window ÷ (1 − objective)) for each window of its conditions; per `group_by` group
//! (labels named as `log_matches` names them) or per output series of a PromQL SLO.
//! A value at t covers the whole minutes before t: `[⌊t⌋ − window, ⌊t⌋)`, ⌊t⌋ the minute
//! t is in. A window without events has no sample (no traffic burns no budget).
//!
//! Log SLOs are counted once, not at every evaluation: per group, running sums of good
//! and total events per minute are kept in memory (16 bytes per group and minute: 760 KB
//! for a 30-day period and a 3-day window), built by one date-histogram pass per query
//! (good, total) over the period and the longest window; later evaluations count again
//! only the minutes from the oldest not yet settled — younger than the rule's
//! `max_delay` when counted — to the evaluation time, so a tick every minute counts
//! about `max_delay` + 1 minute of logs, and every window is two subtractions. Times
//! before the counted span (a backtest) extend it with one pass. Logs indexed later than
//! `max_delay` after their time (a backfill) are counted by the full recount each hour
//! and by every backtest ([`SloSeries::recount`]). PromQL SLOs are evaluated on the
//! metrics store at each time, `{{ $window }}` replaced by the window.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;

use super::{SloSource, SloSpec, window_label, with_window};
use crate::index::IndexStore;
use crate::promql::{self, Engine, EngineOptions, Hints, Selected, Storage};
use crate::rules::evaluate::{SeriesSpec, count_series};
use crate::tsdb::Tsdb;
use crate::tsdb::head::{Labels, Matcher, matches_all};

/// `slo_sli`: good ÷ total over the period.
pub const SLI: &str = "slo_sli";
/// `slo_error_budget_remaining`: the fraction of the period's error budget left.
pub const BUDGET: &str = "slo_error_budget_remaining";
/// `slo_burn_rate{window=…}`.
pub const BURN_RATE: &str = "slo_burn_rate";
const METRICS: [&str; 3] = [SLI, BUDGET, BURN_RATE];
const MINUTE_MS: i64 = 60_000;
/// Counts older than this are counted again in full (backfilled logs).
const RECOUNT_EVERY_MS: i64 = 3_600_000;
/// Settled minutes counted ahead of the selection (a backtest's next ticks).
const COUNT_AHEAD_MINUTES: i64 = 7 * 1440;
/// Most evaluation times one selection may have.
const MAX_TIMES: usize = 200_000;
/// Most group-minutes one log SLO keeps (16 bytes each: 320 MB).
const MAX_CELLS: usize = 20_000_000;

/// A group's labels: `group_by` field → value (log SLOs).
type Group = BTreeMap<String, String>;

/// Running sums per minute of one group: `good[i]` events in the first `i` minutes.
#[derive(Debug, Clone, Default)]
struct Running {
    good: Vec<u64>,
    total: Vec<u64>,
}

/// The counts of one log SLO, minutes `[first, end)`.
#[derive(Debug, Default)]
struct Counts {
    first: i64,
    end: i64,
    /// Minutes before this one are final.
    settled: i64,
    /// When the span was last counted in full (ms; `None`: never).
    counted_at: Option<i64>,
    groups: BTreeMap<Group, Running>,
}

/// Whether `matchers` name one of the SLO metrics (`__name__="slo_…"`).
pub fn names_slo_series(matchers: &[Matcher]) -> bool {
    matchers.iter().any(|matcher| {
        matches!(matcher, Matcher::Equal(name, value) if name == "__name__" && METRICS.contains(&value.as_str()))
    })
}

/// Per-minute (good, total) counts of `[from, to)` (minutes) per group.
type MinuteCounts = BTreeMap<Group, (Vec<u64>, Vec<u64>)>;

impl Counts {
    /// Sums of `[from, to)` (minutes, within the span) of one group: (good, total).
    fn sums(running: &Running, first: i64, from: i64, to: i64) -> (u64, u64) {
        let (from, to) = ((from - first) as usize, (to - first) as usize);
        (
            running.good[to] - running.good[from],
            running.total[to] - running.total[from],
        )
    }

    /// Replaces everything with `counted`, minutes `[from, to)`.
    fn replace(&mut self, from: i64, to: i64, counted: MinuteCounts) {
        self.first = from;
        self.end = to;
        self.groups = counted
            .into_iter()
            .map(|(group, (good, total))| {
                let mut running = Running::default();
                extend(&mut running.good, 0, &good);
                extend(&mut running.total, 0, &total);
                (group, running)
            })
            .collect();
    }

    /// Adds `counted`, minutes `[from, self.first)`, before the span.
    fn prepend(&mut self, from: i64, counted: MinuteCounts) {
        let length = (self.first - from) as usize;
        let zeros = vec![0; length];
        let old_length = (self.end - self.first) as usize;
        let mut groups = std::mem::take(&mut self.groups);
        for group in counted.keys() {
            groups.entry(group.clone()).or_insert_with(|| Running {
                good: vec![0; old_length + 1],
                total: vec![0; old_length + 1],
            });
        }
        for (group, running) in &mut groups {
            let (good, total) = counted
                .get(group)
                .map_or((&zeros, &zeros), |(good, total)| (good, total));
            running.good = prefixed(good, &running.good);
            running.total = prefixed(total, &running.total);
        }
        self.groups = groups;
        self.first = from;
    }

    /// Replaces minutes `[from, …)` (within or at the end of the span) with `counted`,
    /// minutes `[from, to)`.
    fn splice(&mut self, from: i64, to: i64, counted: MinuteCounts) {
        let keep = (from - self.first) as usize;
        let zeros = vec![0; (to - from) as usize];
        let old_length = (self.end - self.first) as usize;
        for group in counted.keys() {
            if !self.groups.contains_key(group) {
                self.groups.insert(
                    group.clone(),
                    Running {
                        good: vec![0; old_length + 1],
                        total: vec![0; old_length + 1],
                    },
                );
            }
        }
        for (group, running) in &mut self.groups {
            let (good, total) = counted
                .get(group)
                .map_or((&zeros, &zeros), |(good, total)| (good, total));
            extend(&mut running.good, keep, good);
            extend(&mut running.total, keep, total);
        }
        self.end = to;
    }
}

/// Keeps `running[..=keep]` and appends the running sums of `minutes` after it.
fn extend(running: &mut Vec<u64>, keep: usize, minutes: &[u64]) {
    if running.is_empty() {
        running.push(0);
    }
    running.truncate(keep + 1);
    let mut sum = running[keep];
    for count in minutes {
        sum += count;
        running.push(sum);
    }
}

/// The running sums of `minutes` followed by `old`'s (which start at 0) shifted by them.
fn prefixed(minutes: &[u64], old: &[u64]) -> Vec<u64> {
    let mut running = Vec::with_capacity(minutes.len() + old.len());
    extend(&mut running, 0, minutes);
    let base = *running.last().expect("extend leaves the leading 0");
    running.extend(old.iter().skip(1).map(|sum| sum + base));
    running
}

/// One SLO with its counts.
struct Slo {
    spec: SloSpec,
    counts: Mutex<Counts>,
}

/// The SLOs of the running rules, read by PromQL.
pub struct SloSeries {
    store: Arc<IndexStore>,
    tsdb: Arc<Tsdb>,
    engine: EngineOptions,
    slos: RwLock<BTreeMap<String, Arc<Slo>>>,
    /// Minutes of logs counted so far (per query: good and total each count).
    minutes_counted: AtomicU64,
}

impl SloSeries {
    pub fn new(store: Arc<IndexStore>, tsdb: Arc<Tsdb>, engine: EngineOptions) -> SloSeries {
        SloSeries {
            store,
            tsdb,
            engine,
            slos: Default::default(),
            minutes_counted: AtomicU64::new(0),
        }
    }

    /// Adds or replaces SLO `name` (`None`: removes it). An unchanged SLO keeps its
    /// counts.
    pub fn set(&self, name: &str, spec: Option<SloSpec>) {
        let mut slos = self
            .slos
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match spec {
            Some(spec) if slos.get(name).is_some_and(|slo| slo.spec == spec) => {}
            Some(spec) => {
                slos.insert(
                    name.to_string(),
                    Arc::new(Slo {
                        spec,
                        counts: Default::default(),
                    }),
                );
            }
            None => {
                slos.remove(name);
            }
        }
    }

    /// The SLOs, by name.
    pub fn specs(&self) -> Vec<SloSpec> {
        self.all().iter().map(|slo| slo.spec.clone()).collect()
    }

    /// Registers `spec` for a backtest of a rule that may not be running (a file not
    /// saved yet) until the returned guard drops; refused when a running SLO of that
    /// name is defined differently (its alerts read its series meanwhile).
    pub fn register_for_replay(&self, spec: SloSpec) -> Result<ReplayRegistration<'_>, String> {
        let mut slos = self
            .slos
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = spec.name.clone();
        match slos.get(&name) {
            Some(running) if running.spec == spec => Ok(ReplayRegistration {
                series: self,
                added: None,
            }),
            Some(_) => Err(format!(
                "SLO `{name}` runs with another definition; backtest the edited SLO under another rule name, or save it first"
            )),
            None => {
                slos.insert(
                    name.clone(),
                    Arc::new(Slo {
                        spec,
                        counts: Default::default(),
                    }),
                );
                Ok(ReplayRegistration {
                    series: self,
                    added: Some(name),
                })
            }
        }
    }

    /// Forgets SLO `name`'s counts: the next selection counts its span in full (a
    /// backtest sees every log indexed by now).
    pub fn recount(&self, name: &str) {
        if let Some(slo) = self.all().iter().find(|slo| slo.spec.name == name) {
            *slo.counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Counts::default();
        }
    }

    /// Minutes of logs counted since start (good and total each count): the cost.
    pub fn minutes_counted(&self) -> u64 {
        self.minutes_counted.load(Ordering::Relaxed)
    }

    fn all(&self) -> Vec<Arc<Slo>> {
        self.slos
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The label sets of every SLO series with a sample now (for `/api/v1/labels` and
    /// `/api/v1/label/NAME/values` without `match[]`); a log SLO counts its logs, so call
    /// it off the async runtime.
    pub fn series_now(&self) -> Vec<Labels> {
        let all = [Matcher::NotEqual("__name__".into(), String::new())];
        let now = chrono::Utc::now().timestamp_millis();
        promql::series::SeriesSource::series(self, &all, now, now).unwrap_or_else(|error| {
            tracing::warn!(%error, "listing the SLO series failed");
            Vec::new()
        })
    }

    /// Whether `expr` selects the series of a log SLO (and so reads the index).
    pub fn read_by(&self, expr: &promql::Expr) -> bool {
        promql::selector_matcher_groups(expr)
            .iter()
            .any(|matchers| {
                self.candidates(matchers)
                    .iter()
                    .any(|slo| matches!(slo.spec.source, SloSource::Logs { .. }))
            })
    }

    /// The SLOs whose series `matchers` can select.
    fn candidates(&self, matchers: &[Matcher]) -> Vec<Arc<Slo>> {
        self.all()
            .into_iter()
            .filter(|slo| {
                matchers.iter().all(|matcher| match matcher.name() {
                    "__name__" => METRICS.iter().any(|metric| matcher.matches(metric)),
                    "slo" => matcher.matches(&slo.spec.name),
                    _ => true,
                })
            })
            .collect()
    }

    /// The series of `matchers` with a sample at each of `times` (ascending, ms), as of
    /// wall-clock time `now` (ms: what is settled).
    pub fn select_at(
        &self,
        matchers: &[Matcher],
        times: &[i64],
        now: i64,
    ) -> Result<Selected, promql::Error> {
        let mut selected = Vec::new();
        for slo in self.candidates(matchers) {
            let series = match &slo.spec.source {
                SloSource::Logs { .. } => self.log_series(&slo, times, now),
                SloSource::Promql { good, total } => {
                    self.promql_series(&slo.spec, good, total, times)
                }
            }
            .map_err(|error| {
                promql::Error::Execution(format!("slo `{}`: {error}", slo.spec.name))
            })?;
            selected.extend(
                series
                    .into_iter()
                    .filter(|(labels, points)| !points.is_empty() && matches_all(matchers, labels)),
            );
        }
        selected.sort_by(|left, right| left.0.cmp(&right.0));
        Ok(selected)
    }

    /// A log SLO's series at `times`.
    fn log_series(&self, slo: &Slo, times: &[i64], now: i64) -> Result<Selected, String> {
        let (Some(&first_time), Some(&last_time)) = (times.first(), times.last()) else {
            return Ok(Vec::new());
        };
        let spec = &slo.spec;
        let SloSource::Logs { group_by, .. } = &spec.source else {
            return Ok(Vec::new());
        };
        let minutes = |duration: Duration| (duration.as_secs() / 60) as i64;
        let reach = spec
            .windows
            .iter()
            .map(|window| minutes(*window))
            .chain([minutes(spec.period)])
            .max()
            .unwrap_or(1);
        let from = first_time.div_euclid(MINUTE_MS) - reach;
        let to = last_time.div_euclid(MINUTE_MS);
        let counts = self.ensure(slo, from, to, now)?;
        let mut selected = Vec::new();
        let allowed = 1.0 - spec.objective;
        for (group, running) in &counts.groups {
            let mut base: Vec<(String, String)> = vec![("slo".into(), spec.name.clone())];
            for field in group_by {
                if let Some(value) = group.get(field) {
                    base.push((crate::rules::log_matches::label_name(field), value.clone()));
                }
            }
            let sums = |window: i64, time: i64| {
                let end = time.div_euclid(MINUTE_MS);
                Counts::sums(running, counts.first, end - window, end)
            };
            let period = minutes(spec.period);
            let mut sli = Vec::new();
            let mut budget = Vec::new();
            for &time in times {
                let (good, total) = sums(period, time);
                if total > 0 {
                    let bad = total.saturating_sub(good) as f64;
                    sli.push((time, 1.0 - bad / total as f64));
                    budget.push((time, 1.0 - bad / total as f64 / allowed));
                }
            }
            selected.push((labelled(&base, SLI, None), sli));
            selected.push((labelled(&base, BUDGET, None), budget));
            for window in &spec.windows {
                let points = times
                    .iter()
                    .filter_map(|&time| {
                        let (good, total) = sums(minutes(*window), time);
                        let bad = total.saturating_sub(good) as f64;
                        (total > 0).then(|| (time, bad / total as f64 / allowed))
                    })
                    .collect();
                selected.push((labelled(&base, BURN_RATE, Some(*window)), points));
            }
        }
        Ok(selected)
    }

    /// Counts of minutes `[from, to)` ready, as of `now` (ms).
    fn ensure<'a>(
        &self,
        slo: &'a Slo,
        from: i64,
        to: i64,
        now: i64,
    ) -> Result<std::sync::MutexGuard<'a, Counts>, String> {
        let spec = &slo.spec;
        if to - from > super::MAX_MINUTES {
            return Err(format!(
                "the selection spans {} days with the period and windows; at most {} days of minutes are counted at once, select a shorter range",
                (to - from) / 1440,
                super::MAX_MINUTES / 1440
            ));
        }
        let mut counts = slo
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let horizon = (now - spec.max_delay.as_millis() as i64).div_euclid(MINUTE_MS);
        let full = match counts.counted_at {
            None => true,
            Some(at) => {
                now - at >= RECOUNT_EVERY_MS
                    || counts.end.max(to) - counts.first.min(from) > super::MAX_MINUTES
            }
        };
        if full {
            // the span counted before and the one asked for, when both fit
            let (from, to) = match counts.counted_at {
                Some(_) if counts.end.max(to) - counts.first.min(from) <= super::MAX_MINUTES => {
                    (counts.first.min(from), counts.end.max(to))
                }
                _ => (from, to),
            };
            let counted = self.count_minutes(spec, from, to)?;
            counts.replace(from, to, counted);
            counts.settled = horizon.clamp(from, to);
            counts.counted_at = Some(now);
        } else {
            if from < counts.first {
                let first = counts.first;
                let counted = self.count_minutes(spec, from, first)?;
                counts.prepend(from, counted);
            }
            if to > counts.settled {
                // settled minutes ahead of `to` (a backtest moving forward) are counted
                // in the same pass, up to a week, rather than one pass per tick
                let ahead = horizon.min(to + COUNT_AHEAD_MINUTES);
                let (settled, end) = (counts.settled, counts.end.max(to).max(ahead));
                let counted = self.count_minutes(spec, settled, end)?;
                counts.splice(settled, end, counted);
                counts.settled = horizon.clamp(settled, end);
            }
        }
        let cells = counts.groups.len() * (counts.end - counts.first) as usize;
        if cells > MAX_CELLS {
            *counts = Counts::default();
            return Err(format!(
                "{} groups over {} minutes is more than the {MAX_CELLS} group-minutes kept in memory; group by fewer values or shorten the period",
                cells / (to - from).max(1) as usize,
                to - from
            ));
        }
        Ok(counts)
    }

    /// Good and total events per minute of `[from, to)` per group: one date-histogram
    /// pass per query.
    fn count_minutes(&self, spec: &SloSpec, from: i64, to: i64) -> Result<MinuteCounts, String> {
        let SloSource::Logs {
            index,
            good,
            total,
            group_by,
        } = &spec.source
        else {
            return Ok(MinuteCounts::new());
        };
        let mut counted = MinuteCounts::new();
        if to <= from {
            return Ok(counted);
        }
        // a count at the end of each minute covers that minute
        let times: Vec<i64> = (from + 1..=to).map(|minute| minute * MINUTE_MS).collect();
        for (is_good, query) in [(true, good), (false, total)] {
            let spec = SeriesSpec {
                index,
                query: &Value::String(query.clone()),
                group_by,
                window_ms: MINUTE_MS,
                group_ttl_ms: MINUTE_MS,
            };
            let series = count_series(&self.store, &spec, &times).map_err(|error| {
                format!(
                    "counting `{}`: {error}",
                    if is_good { "good" } else { "total" }
                )
            })?;
            for (group, minutes) in series {
                let entry = counted
                    .entry(group)
                    .or_insert_with(|| (vec![0; times.len()], vec![0; times.len()]));
                let target = if is_good { &mut entry.0 } else { &mut entry.1 };
                for (slot, count) in target.iter_mut().zip(minutes) {
                    *slot = count.unwrap_or(0);
                }
            }
            self.minutes_counted
                .fetch_add(times.len() as u64, Ordering::Relaxed);
        }
        Ok(counted)
    }

    /// A PromQL SLO's series at `times`: good ÷ total over each window, on the metrics
    /// store.
    fn promql_series(
        &self,
        spec: &SloSpec,
        good: &str,
        total: &str,
        times: &[i64],
    ) -> Result<Selected, String> {
        let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
            return Ok(Vec::new());
        };
        let step = if times.len() > 1 {
            times[1] - times[0]
        } else {
            1
        };
        let engine = Engine::new(self.engine.clone());
        let allowed = 1.0 - spec.objective;
        let ratio = |window: Duration| -> Result<Vec<promql::Series>, String> {
            let label = window_label(window);
            let text = format!(
                "({}) / ({})",
                with_window(good, &label),
                with_window(total, &label)
            );
            let expr = promql::parse(&text).map_err(|error| error.to_string())?;
            engine
                .range(&*self.tsdb, &expr, first, last, step)
                .map(|(series, _)| series)
                .map_err(|error| error.to_string())
        };
        let base_of = |labels: &Labels| -> Vec<(String, String)> {
            let mut base: Vec<(String, String)> = labels
                .iter()
                .filter(|(name, _)| name != "__name__" && name != "slo" && name != "window")
                .cloned()
                .collect();
            base.push(("slo".into(), spec.name.clone()));
            base
        };
        let finite = |points: &[(i64, f64)], map: &dyn Fn(f64) -> f64| -> Vec<(i64, f64)> {
            points
                .iter()
                .filter(|(_, value)| value.is_finite())
                .map(|(time, value)| (*time, map(*value)))
                .collect()
        };
        let mut selected = Vec::new();
        for series in ratio(spec.period)? {
            let base = base_of(&series.labels);
            selected.push((
                labelled(&base, SLI, None),
                finite(&series.points, &|ratio| ratio),
            ));
            selected.push((
                labelled(&base, BUDGET, None),
                finite(&series.points, &|ratio| 1.0 - (1.0 - ratio) / allowed),
            ));
        }
        for window in &spec.windows {
            for series in ratio(*window)? {
                let base = base_of(&series.labels);
                selected.push((
                    labelled(&base, BURN_RATE, Some(*window)),
                    finite(&series.points, &|ratio| (1.0 - ratio) / allowed),
                ));
            }
        }
        Ok(selected)
    }
}

/// An SLO registered for a backtest; removed when dropped if the backtest added it.
pub struct ReplayRegistration<'a> {
    series: &'a SloSeries,
    added: Option<String>,
}

impl Drop for ReplayRegistration<'_> {
    fn drop(&mut self) {
        if let Some(name) = &self.added {
            self.series.set(name, None);
        }
    }
}

/// `base` with the metric name and the window.
fn labelled(base: &[(String, String)], metric: &str, window: Option<Duration>) -> Labels {
    let mut pairs = base.to_vec();
    pairs.push(("__name__".into(), metric.into()));
    if let Some(window) = window {
        pairs.push(("window".into(), window_label(window)));
    }
    pairs.sort();
    pairs.into()
}

/// The evaluation times of a selection: the engine's instants, or one a minute.
fn times(min_time: i64, max_time: i64, hints: Hints) -> Result<Vec<i64>, promql::Error> {
    let (first, step, last) = match hints {
        Hints::Instants { first, step, last } if step <= 0 || first >= last => (first, 1, first),
        Hints::Instants { first, step, last } => (first, step, last),
        Hints::Range => {
            let first = min_time.div_euclid(MINUTE_MS) * MINUTE_MS;
            let first = if first < min_time {
                first + MINUTE_MS
            } else {
                first
            };
            if max_time < first {
                return Ok(Vec::new());
            }
            (first, MINUTE_MS, max_time)
        }
    };
    let count = ((last - first) / step) as usize + 1;
    if count > MAX_TIMES {
        return Err(promql::Error::Execution(format!(
            "slo series: more than {MAX_TIMES} evaluation times in one selection; use a larger step or a shorter range"
        )));
    }
    Ok((0..count as i64).map(|i| first + i * step).collect())
}

impl Storage for SloSeries {
    fn select(&self, matchers: &[Matcher], min_time: i64, max_time: i64) -> Selected {
        self.select_hinted(matchers, min_time, max_time, Hints::Range)
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "slo series selection failed");
                Vec::new()
            })
    }

    fn select_hinted(
        &self,
        matchers: &[Matcher],
        min_time: i64,
        max_time: i64,
        hints: Hints,
    ) -> Result<Selected, promql::Error> {
        if self.candidates(matchers).is_empty() {
            return Ok(Vec::new());
        }
        let now = chrono::Utc::now().timestamp_millis();
        self.select_at(matchers, &times(min_time, max_time, hints)?, now)
    }
}

impl promql::series::SeriesSource for SloSeries {
    /// The SLO series with a sample at the end of the range (or now, if sooner).
    fn series(
        &self,
        matchers: &[Matcher],
        _start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, promql::Error> {
        if self.candidates(matchers).is_empty() {
            return Ok(Vec::new());
        }
        let now = chrono::Utc::now().timestamp_millis();
        Ok(self
            .select_at(matchers, &[end.min(now)], now)?
            .into_iter()
            .map(|(labels, _)| labels)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22T00:00:00Z, ms.
    const DAY_START: i64 = 1_795_305_600_000;

    /// Per minute m of the first two hours: 10 lines of service `a`, of which 5 are
    /// errors in minutes 100..110; 4 lines of service `b`, none an error.
    fn lines() -> Vec<(i64, Value)> {
        let mut lines = Vec::new();
        for minute in 0..120 {
            for line in 0..10 {
                let error = (100..110).contains(&minute) && line < 5;
                let status = if error { 500 } else { 200 };
                let time = DAY_START + minute * MINUTE_MS + line * 1000;
                lines.push((time, serde_json::json!({"service": "a", "status": status})));
            }
            for line in 0..4 {
                let time = DAY_START + minute * MINUTE_MS + 30_000 + line;
                lines.push((time, serde_json::json!({"service": "b", "status": 200})));
            }
        }
        lines
    }

    fn series_with(lines: &[(i64, Value)]) -> (tempfile::TempDir, SloSeries) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(IndexStore::test_open(
            &dir.path().join("logs"),
            86_400_000_000,
            2,
        ));
        let ops = lines
            .iter()
            .enumerate()
            .map(|(number, (millis, body))| {
                store.test_doc(
                    "logs",
                    format!("{number}"),
                    millis * 1000,
                    serde_json::to_vec(body).expect("json"),
                )
            })
            .collect();
        store.apply(1, ops, false).expect("apply");
        store.commit_all().expect("commit");
        let tsdb =
            Arc::new(Tsdb::open(&dir.path().join("tsdb"), Default::default()).expect("tsdb"));
        let series = SloSeries::new(store, tsdb, EngineOptions::default());
        series.set(
            "checkout",
            Some(SloSpec {
                name: "checkout".into(),
                objective: 0.99,
                period: Duration::from_secs(7200),
                windows: vec![Duration::from_secs(300), Duration::from_secs(3600)],
                source: SloSource::Logs {
                    index: "logs".into(),
                    good: "NOT status:>=500".into(),
                    total: "*".into(),
                    group_by: vec!["service".into()],
                },
                max_delay: Duration::from_secs(30),
            }),
        );
        (dir, series)
    }

    fn value(
        selected: &Selected,
        metric: &str,
        service: &str,
        window: Option<&str>,
    ) -> Option<f64> {
        selected
            .iter()
            .find(|(labels, _)| {
                let get = |name: &str| {
                    labels
                        .iter()
                        .find(|(label, _)| label == name)
                        .map(|(_, value)| value.as_str())
                };
                get("__name__") == Some(metric)
                    && get("service") == Some(service)
                    && get("slo") == Some("checkout")
                    && get("window") == window
            })
            .and_then(|(_, points)| points.last().map(|(_, value)| *value))
    }

    #[test]
    fn values_are_the_hand_computed_ratios_and_a_tick_counts_only_the_newest_minutes() {
        let (_dir, series) = series_with(&lines());
        let all = [Matcher::Regex(
            "__name__".into(),
            regex::Regex::new("^(?:slo_.*)$").expect("regex"),
        )];
        let at = DAY_START + 120 * MINUTE_MS;
        let selected = series.select_at(&all, &[at], at).expect("selects");
        // service a, minutes 60..120: 600 lines, 50 errors; budget 1 % → burn 8.33…
        let burn_1h = value(&selected, BURN_RATE, "a", Some("1h")).expect("a 1h burn rate");
        assert!((burn_1h - (50.0 / 600.0) / 0.01).abs() < 1e-9, "{burn_1h}");
        // minutes 115..120 had no error
        assert_eq!(value(&selected, BURN_RATE, "a", Some("5m")), Some(0.0));
        // the period (2 h): 1 200 lines, 50 errors
        let sli = value(&selected, SLI, "a", None).expect("an SLI");
        assert!((sli - (1.0 - 50.0 / 1200.0)).abs() < 1e-12, "{sli}");
        let budget = value(&selected, BUDGET, "a", None).expect("a budget");
        assert!(
            (budget - (1.0 - (50.0 / 1200.0) / 0.01)).abs() < 1e-9,
            "{budget}"
        );
        assert_eq!(value(&selected, SLI, "b", None), Some(1.0));
        assert_eq!(value(&selected, BUDGET, "b", None), Some(1.0));
        // the first selection counted the period once per query
        assert_eq!(series.minutes_counted(), 2 * 120);

        // the next tick, a minute later: only the unsettled minute (younger than
        // `max_delay` when counted) and the new one are counted again
        let next = at + MINUTE_MS;
        let selected = series.select_at(&all, &[next], next).expect("selects");
        assert_eq!(series.minutes_counted(), 2 * 120 + 2 * 2);
        let burn_1h = value(&selected, BURN_RATE, "a", Some("1h")).expect("a 1h burn rate");
        // minutes 61..121: 590 lines (minute 120 is empty), 50 errors
        assert!((burn_1h - (50.0 / 590.0) / 0.01).abs() < 1e-9, "{burn_1h}");

        // a time before the counted span extends it with one pass of the missing minutes
        let earlier = DAY_START + 105 * MINUTE_MS;
        let selected = series.select_at(&all, &[earlier], next).expect("selects");
        assert_eq!(series.minutes_counted(), 2 * 120 + 2 * 2 + 2 * 15);
        // minutes 100..105: 50 lines, 25 errors
        let burn_5m = value(&selected, BURN_RATE, "a", Some("5m")).expect("a 5m burn rate");
        assert!((burn_5m - 0.5 / 0.01).abs() < 1e-9, "{burn_5m}");
    }

    #[test]
    fn a_window_without_events_has_no_sample() {
        let (_dir, series) = series_with(&lines());
        let all = [Matcher::Equal("__name__".into(), BURN_RATE.into())];
        let later = DAY_START + 300 * MINUTE_MS;
        let selected = series.select_at(&all, &[later], later).expect("selects");
        // three hours after the last line: no window has an event
        assert_eq!(selected, Vec::new());
    }
}
