//! The metric kinds `/metrics` is made of (counters, gauges, labelled ones, histograms;
//! atomics or a mutex-held map) and the writers of their Prometheus text lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value set when it changes.
#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter with one label.
#[derive(Default)]
pub struct LabeledCounter(Mutex<BTreeMap<String, u64>>);

impl LabeledCounter {
    pub fn add(&self, label: &str, value: u64) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(label.to_string())
            .or_default() += value;
    }
    pub fn get(&self, label: &str) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(label)
            .copied()
            .unwrap_or(0)
    }
    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A gauge with one label, moved up and down.
#[derive(Default)]
pub struct LabeledGauge(Mutex<BTreeMap<String, i64>>);

impl LabeledGauge {
    pub fn add(&self, label: &str, delta: i64) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(label.to_string())
            .or_default() += delta;
    }
    /// Sets the gauge of `label` (removes it when `value` is `None`).
    pub fn set(&self, label: &str, value: Option<i64>) {
        let mut gauges = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match value {
            Some(value) => gauges.insert(label.to_string(), value),
            None => gauges.remove(label),
        };
    }
    /// Writes the gauge in the text format, labelled `label_name`.
    pub fn write(&self, out: &mut String, name: &str, help: &str, label_name: &str) {
        write_gauge_header(out, name, help);
        let snapshot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (label, value) in snapshot {
            let _ = writeln!(
                out,
                "{name}{{{label_name}=\"{}\"}} {value}",
                escape_label(&label)
            );
        }
    }
}

/// A counter with two labels.
#[derive(Default)]
pub struct PairCounter(Mutex<BTreeMap<(String, String), u64>>);

impl PairCounter {
    pub fn add(&self, first: &str, second: &str, value: u64) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((first.to_string(), second.to_string()))
            .or_default() += value;
    }
    /// Writes the counter in the text format, labelled `names`.
    pub fn write(&self, out: &mut String, name: &str, help: &str, names: (&str, &str)) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let snapshot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for ((first, second), count) in snapshot {
            let _ = writeln!(
                out,
                "{name}{{{}=\"{}\",{}=\"{}\"}} {count}",
                names.0,
                escape_label(&first),
                names.1,
                escape_label(&second)
            );
        }
    }
}

/// Seconds, in fixed buckets from 100 µs to 10 s.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bounds: SECONDS_BUCKETS,
            counts: SECONDS_BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, duration: std::time::Duration) {
        let seconds = duration.as_secs_f64();
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(super) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {total}"
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

/// Writes one counter with its HELP and TYPE lines.
pub fn write_counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// Writes a one-label counter with its HELP and TYPE lines.
pub fn write_labeled_counter(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    counter: &LabeledCounter,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (value, count) in counter.snapshot() {
        let _ = writeln!(
            out,
            "{name}{{{label}=\"{}\"}} {count}",
            escape_label(&value)
        );
    }
}

/// Writes the HELP and TYPE lines of a gauge.
pub fn write_gauge_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
