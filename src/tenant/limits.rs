//! Per-tenant limits: what one tenant may take of the server, so that its flood cannot
//! starve another (Mimir's `ingestion_rate` / `max_global_series_per_user`, Loki's
//! `ingestion_rate_mb`).
//!
//! - `ingest_rate_bytes` / `ingest_burst_bytes`: a [`TokenBucket`] over the request body
//!   bytes of the ingest routes (`_bulk`, `_doc`, the agent protocol); a request beyond it
//!   is refused whole with 429 (the agent backs off and retries it; nothing is lost).
//! - `max_active_series`: series in the tenant's metrics head; samples of new series
//!   beyond it are dropped and counted (the TSDB enforces it).
//! - `max_rules`: rules the tenant runs; the extra rule files are not loaded (each logged
//!   with the reason), the rules API refuses new ones (the rule manager enforces it).
//! - `max_concurrent_queries`: the threads of each of the tenant's query pools.
//!
//! Unset means unlimited (beyond the server-wide limits that exist without tenants).
//! [`TenantLimits`] holds one tenant's limits and counters; `/metrics` shows them with a
//! `tenant` label.

use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::telemetry::Counter;

/// `[limits]` (every tenant's) and `[tenants.NAME.limits]` (one tenant's overrides).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Request body bytes per second the tenant may send to the ingest routes.
    pub ingest_rate_bytes: Option<u64>,
    /// Bytes the tenant may send at once above its rate (default: one second's worth).
    pub ingest_burst_bytes: Option<u64>,
    /// Series in the tenant's metrics head at most.
    pub max_active_series: Option<usize>,
    /// Rules the tenant runs at most.
    pub max_rules: Option<usize>,
    /// Searches (and, separately, PromQL queries) of the tenant running at once.
    pub max_concurrent_queries: Option<usize>,
}

impl LimitsConfig {
    /// `self` (a tenant's overrides) over `defaults` (`[limits]`), limit by limit.
    pub fn merged_over(&self, defaults: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            ingest_rate_bytes: self.ingest_rate_bytes.or(defaults.ingest_rate_bytes),
            ingest_burst_bytes: self.ingest_burst_bytes.or(defaults.ingest_burst_bytes),
            max_active_series: self.max_active_series.or(defaults.max_active_series),
            max_rules: self.max_rules.or(defaults.max_rules),
            max_concurrent_queries: self
                .max_concurrent_queries
                .or(defaults.max_concurrent_queries),
        }
    }

    /// What is wrong, each error naming `table`'s field.
    pub fn validate(&self, table: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.ingest_rate_bytes == Some(0) {
            errors.push(format!(
                "`{table}.ingest_rate_bytes`: must be at least 1 (leave it out for no limit)"
            ));
        }
        if self.ingest_burst_bytes.is_some() && self.ingest_rate_bytes.is_none() {
            errors.push(format!(
                "`{table}.ingest_burst_bytes`: needs `ingest_rate_bytes` too (a burst of what rate?)"
            ));
        }
        if self.ingest_burst_bytes == Some(0) {
            errors.push(format!("`{table}.ingest_burst_bytes`: must be at least 1"));
        }
        if let Some(threads) = self.max_concurrent_queries
            && !(1..=256).contains(&threads)
        {
            errors.push(format!(
                "`{table}.max_concurrent_queries`: must be between 1 and 256"
            ));
        }
        errors
    }

    /// The bucket of the ingest rate limit, if there is one.
    fn ingest_bucket(&self) -> Option<TokenBucket> {
        let rate = self.ingest_rate_bytes?;
        Some(TokenBucket::new(
            rate,
            self.ingest_burst_bytes.unwrap_or(rate),
            Instant::now(),
        ))
    }
}

/// A token bucket over bytes: `rate` bytes per second refill it up to `burst`.
///
/// A request is admitted when the bucket holds at least its size, or — so that a request
/// larger than the burst is not refused forever — when the bucket is full; it then takes
/// its whole size, leaving the bucket in debt, which the rate repays before anything else
/// is admitted. Over any span the admitted bytes stay within `burst + rate × span` plus
/// one request.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_second: f64,
    burst: f64,
    /// Bytes available (negative: in debt).
    available: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate_bytes: u64, burst_bytes: u64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate_per_second: rate_bytes as f64,
            burst: burst_bytes as f64,
            available: burst_bytes as f64,
            updated: now,
        }
    }

    /// Takes `bytes` at `now` if the bucket admits them; `false` leaves it unchanged.
    pub fn try_take(&mut self, bytes: u64, now: Instant) -> bool {
        self.refill(now);
        let bytes = bytes as f64;
        if self.available >= bytes.min(self.burst) {
            self.available -= bytes;
            true
        } else {
            false
        }
    }

    /// Takes `bytes` at `now` whatever is available: the rest of a request already
    /// admitted (the bucket may go below zero, as it does after a request larger than
    /// what was available).
    pub fn take(&mut self, bytes: u64, now: Instant) {
        self.refill(now);
        self.available -= bytes as f64;
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.available = (self.available + elapsed * self.rate_per_second).min(self.burst);
        self.updated = now.max(self.updated);
    }
}

/// One tenant's limits as they run: the ingest bucket and what was refused.
pub struct TenantLimits {
    pub tenant: String,
    pub config: LimitsConfig,
    bucket: Option<Mutex<TokenBucket>>,
    /// Ingest bytes admitted (request bodies as read).
    pub ingest_bytes: Counter,
    /// Ingest requests refused by the rate limit.
    pub ingest_refused: Counter,
}

/// A request over the tenant's ingest rate.
#[derive(Debug, thiserror::Error)]
#[error(
    "tenant `{tenant}` is over its ingest rate limit of {rate} bytes/s (burst {burst} bytes; limits.ingest_rate_bytes); retry later with backoff, or ask for a higher limit"
)]
pub struct IngestRateExceeded {
    pub tenant: String,
    pub rate: u64,
    pub burst: u64,
}

impl TenantLimits {
    pub fn new(tenant: &str, config: LimitsConfig) -> TenantLimits {
        TenantLimits {
            tenant: tenant.to_owned(),
            bucket: config.ingest_bucket().map(Mutex::new),
            config,
            ingest_bytes: Counter::default(),
            ingest_refused: Counter::default(),
        }
    }

    /// Admits an ingest request of `bytes` under the rate limit, or says why not.
    pub fn admit_ingest(&self, bytes: u64) -> Result<(), IngestRateExceeded> {
        if let Some(bucket) = &self.bucket {
            let admitted = bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .try_take(bytes, Instant::now());
            if !admitted {
                self.ingest_refused.add(1);
                let rate = self.config.ingest_rate_bytes.unwrap_or_default();
                return Err(IngestRateExceeded {
                    tenant: self.tenant.clone(),
                    rate,
                    burst: self.config.ingest_burst_bytes.unwrap_or(rate),
                });
            }
        }
        self.ingest_bytes.add(bytes);
        Ok(())
    }

    /// Charges `bytes` more of a request [`TenantLimits::admit_ingest`] admitted (the rest
    /// of a `_bulk` body read as it arrives): never refused, the bucket goes into debt and
    /// the tenant's next requests wait for it to refill.
    pub fn charge_ingest(&self, bytes: u64) {
        if let Some(bucket) = &self.bucket {
            bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(bytes, Instant::now());
        }
        self.ingest_bytes.add(bytes);
    }
}

/// One tenant's limits and usage at scrape time, as `/metrics` shows them.
#[derive(Debug, Clone, Default)]
pub struct LimitsReading {
    pub tenant: String,
    pub config: LimitsConfig,
    pub ingest_bytes: u64,
    pub ingest_refused: u64,
    pub active_series: usize,
    pub series_refused: u64,
    pub rules: usize,
    pub rules_refused: u64,
    pub queries_running: usize,
    pub queries_refused: u64,
}

/// Writes the per-tenant limit metrics: usage, limit (when set) and refusals, each with
/// a `tenant` label.
pub fn write_metrics(out: &mut String, readings: &[LimitsReading]) {
    use std::fmt::Write as _;
    type Value = fn(&LimitsReading) -> Option<f64>;
    let families: [(&str, &str, &str, Value); 12] = [
        (
            "lookout_tenant_ingest_bytes_total",
            "counter",
            "Ingest request body bytes admitted, by tenant.",
            |r| Some(r.ingest_bytes as f64),
        ),
        (
            "lookout_tenant_ingest_rate_limit_bytes",
            "gauge",
            "The tenant's ingest rate limit in bytes per second (limits.ingest_rate_bytes), when set.",
            |r| r.config.ingest_rate_bytes.map(|v| v as f64),
        ),
        (
            "lookout_tenant_ingest_refused_total",
            "counter",
            "Ingest requests refused with 429 for the tenant's ingest rate limit.",
            |r| Some(r.ingest_refused as f64),
        ),
        (
            "lookout_tenant_active_series",
            "gauge",
            "Series in the tenant's metrics head.",
            |r| Some(r.active_series as f64),
        ),
        (
            "lookout_tenant_max_active_series",
            "gauge",
            "The tenant's series limit (limits.max_active_series), when set.",
            |r| r.config.max_active_series.map(|v| v as f64),
        ),
        (
            "lookout_tenant_series_refused_samples_total",
            "counter",
            "Samples of new series dropped because the tenant was at limits.max_active_series.",
            |r| Some(r.series_refused as f64),
        ),
        (
            "lookout_tenant_rules",
            "gauge",
            "Rules the tenant runs.",
            |r| Some(r.rules as f64),
        ),
        (
            "lookout_tenant_max_rules",
            "gauge",
            "The tenant's rule limit (limits.max_rules), when set.",
            |r| r.config.max_rules.map(|v| v as f64),
        ),
        (
            "lookout_tenant_rules_refused_total",
            "counter",
            "Rules not loaded or not written because the tenant was at limits.max_rules.",
            |r| Some(r.rules_refused as f64),
        ),
        (
            "lookout_tenant_queries_running",
            "gauge",
            "Searches and PromQL queries of the tenant running now.",
            |r| Some(r.queries_running as f64),
        ),
        (
            "lookout_tenant_max_concurrent_queries",
            "gauge",
            "The tenant's limit of queries at once per pool (limits.max_concurrent_queries), when set.",
            |r| r.config.max_concurrent_queries.map(|v| v as f64),
        ),
        (
            "lookout_tenant_queries_refused_total",
            "counter",
            "Searches and PromQL queries of the tenant refused because its pools were full.",
            |r| Some(r.queries_refused as f64),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for reading in readings {
            if let Some(value) = value(reading) {
                let _ = writeln!(
                    out,
                    "{name}{{tenant=\"{}\"}} {value}",
                    crate::telemetry::escape_label(&reading.tenant)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_admits_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, 3000, start);
        let at = |millis| start + Duration::from_millis(millis);
        assert!(bucket.try_take(2000, at(0)));
        assert!(bucket.try_take(1000, at(0)));
        assert!(!bucket.try_take(1, at(0)), "the burst is spent");
        assert!(!bucket.try_take(600, at(500)), "half a second refills 500");
        assert!(bucket.try_take(500, at(500)));
        // a long pause refills up to the burst, never beyond
        assert!(bucket.try_take(3000, at(60_000)));
        assert!(!bucket.try_take(1, at(60_000)));
    }

    #[test]
    fn a_request_larger_than_the_burst_passes_on_a_full_bucket_and_leaves_a_debt() {
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        let mut bucket = TokenBucket::new(1000, 1000, start);
        assert!(
            bucket.try_take(5000, at(0)),
            "a full bucket admits anything once"
        );
        assert!(
            !bucket.try_take(1, at(3000)),
            "the debt of 4000 is not repaid yet"
        );
        assert!(!bucket.try_take(1000, at(4500)), "500 available");
        assert!(bucket.try_take(1000, at(5000)), "full again after 5 s");
        // refused attempts take nothing: the debt is repaid on time however often one
        // knocks
        for _ in 0..100 {
            assert!(!bucket.try_take(2000, at(5500)));
        }
        assert!(bucket.try_take(1000, at(6000)));
    }

    #[test]
    fn over_a_span_admitted_bytes_stay_within_burst_plus_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10_000, 20_000, start);
        let mut admitted = 0u64;
        // 1 KiB requests every millisecond for 10 s: 100 times the rate offered
        for millis in 0..10_000u64 {
            for _ in 0..10 {
                if bucket.try_take(1024, start + Duration::from_millis(millis)) {
                    admitted += 1024;
                }
            }
        }
        assert!(admitted <= 20_000 + 10_000 * 10 + 1024, "{admitted}");
        assert!(admitted >= 10_000 * 10, "{admitted}: the rate is given");
    }

    #[test]
    fn limits_refuse_beyond_the_rate_and_count_it() {
        let limits = TenantLimits::new(
            "team-a",
            LimitsConfig {
                ingest_rate_bytes: Some(100),
                ..LimitsConfig::default()
            },
        );
        limits.admit_ingest(100).expect("the first second's worth");
        let error = limits.admit_ingest(100).expect_err("over the rate");
        assert_eq!(
            error.to_string(),
            "tenant `team-a` is over its ingest rate limit of 100 bytes/s (burst 100 bytes; limits.ingest_rate_bytes); retry later with backoff, or ask for a higher limit"
        );
        assert_eq!(
            (limits.ingest_bytes.get(), limits.ingest_refused.get()),
            (100, 1)
        );
        let unlimited = TenantLimits::new("b", LimitsConfig::default());
        unlimited.admit_ingest(u64::MAX / 2).expect("no limit");
    }
}
