//! Lookout's own metrics (`GET /metrics`, Prometheus text format 0.0.4).
//!
//! Hand-written rather than `prometheus-client`: that crate encodes only OpenMetrics text,
//! and `/metrics` must be the classic format Prometheus' scraper and `promtool` default
//! to. Counters and histograms are atomics; gauges about the stores are computed when
//! scraped, from the [`StoreReadings`] the server takes.

mod metric;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

pub use metric::{
    Counter, Gauge, Histogram, LabeledCounter, LabeledGauge, PairCounter, escape_label,
    write_counter, write_gauge_header, write_labeled_counter,
};

/// Counters shared by every job of a scheduler runner (`scheduler::runner::Runner`).
#[derive(Default)]
pub struct RunnerMetrics {
    pub runs: Counter,
    pub missed_ticks: Counter,
    /// From the tick to the job's start (waiting for a slot included).
    pub queue_delay: Histogram,
    pub run_seconds: Histogram,
}

/// The dead man's switch (`notify::heartbeat`).
#[derive(Default)]
pub struct HeartbeatMetrics {
    /// Pings the service answered with a 2xx.
    pub pings: Counter,
    /// Pings that failed (no answer, or not a 2xx).
    pub failures: Counter,
    /// Intervals without a ping because alerting was unhealthy.
    pub withheld: Counter,
    /// Unix time of the last successful ping (0: none yet).
    pub last_success_seconds: Gauge,
}

/// Every self-metric of the server.
#[derive(Default)]
pub struct Telemetry {
    pub ingest_docs: Counter,
    pub ingest_bytes: Counter,
    pub ingest_noop: Counter,
    /// Pieces of `_bulk` bodies handed on to be written (bodies are written piece by
    /// piece as they arrive).
    pub ingest_bulk_pieces: Counter,
    pub ingest_rejected: LabeledCounter,
    /// Documents refused by what they hold (bad JSON, event time out of range, …), by
    /// index and reason.
    pub ingest_rejected_by_index: PairCounter,
    pub ingest_time_replaced: LabeledCounter,
    pub requests_refused: LabeledCounter,
    /// Requests refused by authentication, by reason (`missing`, `wrong`, `blocked`:
    /// from a source over its failure limit, `forbidden`: a key whose role is too small).
    pub auth_failures: LabeledCounter,
    /// Request handlers that panicked (each answered 500; the server went on).
    pub handler_panics: Counter,
    /// Searches and PromQL queries stopped because their client went away, by pool.
    pub queries_cancelled: LabeledCounter,
    pub queries_running: LabeledGauge,
    pub wal_sync_seconds: Histogram,
    pub wal_records: Counter,
    pub commit_seconds: Histogram,
    /// Background refreshes skipped because the index was search-idle.
    pub refreshes_skipped: Counter,
    pub query_seconds: Histogram,
    pub retention_dropped_partitions: Counter,
    /// The rule scheduler's runs, missed ticks, queue delay and run time.
    pub scheduler: std::sync::Arc<RunnerMetrics>,
    pub rule_evaluations: LabeledCounter,
    pub rule_failures: LabeledCounter,
    /// New-term rules' searches, by rule and pass (`lookback`: the load-time pass,
    /// `window`: the ticks').
    pub new_term_searches: PairCounter,
    /// Values each new-term rule tracks.
    pub new_terms_tracked: LabeledGauge,
    /// Whether each rule's last evaluation succeeded.
    pub rule_health: Mutex<BTreeMap<String, bool>>,
    /// Alert messages by notifier and outcome (`delivered`, `rejected`, `gave_up`,
    /// `console`, `ui`).
    pub notifications: PairCounter,
    /// Delivery attempts that failed and were retried, by notifier.
    pub notification_retries: LabeledCounter,
    /// Alerts an Alertmanager peer accepted, by notifier and peer index.
    pub alertmanager_sent: PairCounter,
    /// Alerts an Alertmanager peer did not accept (refused, or failing past the retries),
    /// by notifier and peer index.
    pub alertmanager_errors: PairCounter,
    /// 1 while writes are refused (`storage::DiskSpace`).
    pub storage_degraded: Gauge,
    /// Free bytes of the data directory's file system at the last check.
    pub storage_free_bytes: Gauge,
    /// Free bytes below which writes are refused.
    pub storage_watermark_bytes: Gauge,
    /// Writes that failed, by what was written.
    pub storage_write_failures: LabeledCounter,
    /// Write requests refused whole while storage was degraded, by cause.
    pub ingest_batches_refused: LabeledCounter,
    /// Samples kept in the metrics head without reaching its write-ahead log.
    pub tsdb_samples_unlogged: Counter,
    pub heartbeat: HeartbeatMetrics,
}

/// A gauge value computed at scrape time.
pub struct GaugeSample {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Telemetry {
    /// Renders every metric plus `gauges`.
    pub fn render(&self, gauges: &[GaugeSample]) -> String {
        let mut out = String::new();
        let counter = write_counter;
        let labeled = write_labeled_counter;
        let histogram = |out: &mut String, name: &str, help: &str, histogram: &Histogram| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            histogram.render(out, name, "");
        };
        counter(
            &mut out,
            "lookout_ingest_docs_total",
            "Documents accepted and made durable.",
            self.ingest_docs.get(),
        );
        counter(
            &mut out,
            "lookout_ingest_bytes_total",
            "Bytes of accepted documents.",
            self.ingest_bytes.get(),
        );
        counter(
            &mut out,
            "lookout_ingest_noop_total",
            "Items answered noop because the agent protocol's high-water mark already held them.",
            self.ingest_noop.get(),
        );
        counter(
            &mut out,
            "lookout_ingest_bulk_pieces_total",
            "Pieces of _bulk bodies handed on to be written as they arrive (about 1 MiB each).",
            self.ingest_bulk_pieces.get(),
        );
        labeled(
            &mut out,
            "lookout_ingest_lines_rejected_total",
            "Bulk items rejected, by reason.",
            "reason",
            &self.ingest_rejected,
        );
        self.ingest_rejected_by_index.write(
            &mut out,
            "lookout_ingest_index_lines_rejected_total",
            "Documents refused for what they hold (too_old, too_new, invalid_json, …), by index and reason.",
            ("index", "reason"),
        );
        labeled(
            &mut out,
            "lookout_ingest_time_replaced_total",
            "Documents whose event time was missing or unparsable and replaced by the ingest time, by reason.",
            "reason",
            &self.ingest_time_replaced,
        );
        labeled(
            &mut out,
            "lookout_http_requests_refused_total",
            "Requests refused before reading them, by reason.",
            "reason",
            &self.requests_refused,
        );
        labeled(
            &mut out,
            "lookout_auth_failures_total",
            "Requests refused by authentication, by reason: missing or wrong credentials, a source blocked after too many failures, a key whose role does not cover the route.",
            "reason",
            &self.auth_failures,
        );
        counter(
            &mut out,
            "lookout_http_handler_panics_total",
            "Request handlers that panicked: a bug, answered with 500 while the server went on.",
            self.handler_panics.get(),
        );
        labeled(
            &mut out,
            "lookout_queries_cancelled_total",
            "Searches and PromQL queries stopped because their client went away, by pool.",
            "pool",
            &self.queries_cancelled,
        );
        self.queries_running.write(
            &mut out,
            "lookout_queries_running",
            "Searches and PromQL queries running now, by pool (at most its query_max_concurrency).",
            "pool",
        );
        counter(
            &mut out,
            "lookout_wal_records_total",
            "Records appended to the ingest write-ahead log.",
            self.wal_records.get(),
        );
        histogram(
            &mut out,
            "lookout_wal_sync_seconds",
            "Time of one write-ahead log group commit (write + fdatasync).",
            &self.wal_sync_seconds,
        );
        histogram(
            &mut out,
            "lookout_index_commit_seconds",
            "Time to commit all partitions with pending writes.",
            &self.commit_seconds,
        );
        counter(
            &mut out,
            "lookout_index_refreshes_skipped_total",
            "Background refreshes skipped because no search came within index.search_idle_after.",
            self.refreshes_skipped.get(),
        );
        histogram(
            &mut out,
            "lookout_query_seconds",
            "Time to execute a search or count.",
            &self.query_seconds,
        );
        counter(
            &mut out,
            "lookout_index_retention_dropped_partitions_total",
            "Partitions dropped by retention.",
            self.retention_dropped_partitions.get(),
        );
        let scheduler = &self.scheduler;
        counter(
            &mut out,
            "lookout_rule_missed_ticks_total",
            "Rule ticks skipped because the previous run (or the process) was late.",
            scheduler.missed_ticks.get(),
        );
        histogram(
            &mut out,
            "lookout_rule_queue_delay_seconds",
            "From a rule's tick to the start of its evaluation (waiting for a slot included).",
            &scheduler.queue_delay,
        );
        histogram(
            &mut out,
            "lookout_rule_evaluation_seconds",
            "Time of one rule evaluation (watermark wait, count, lifecycle).",
            &scheduler.run_seconds,
        );
        labeled(
            &mut out,
            "lookout_rule_evaluations_total",
            "Rule evaluations, by rule.",
            "rule",
            &self.rule_evaluations,
        );
        labeled(
            &mut out,
            "lookout_rule_evaluation_failures_total",
            "Rule evaluations that failed, by rule.",
            "rule",
            &self.rule_failures,
        );
        self.new_term_searches.write(
            &mut out,
            "lookout_rule_new_term_searches_total",
            "Searches of new-term rules, by rule and pass (lookback: building the set at load; window: a tick's window).",
            ("rule", "pass"),
        );
        self.new_terms_tracked.write(
            &mut out,
            "lookout_rule_new_terms_tracked",
            "Distinct values (combinations) each new-term rule tracks.",
            "rule",
        );
        self.notifications.write(
            &mut out,
            "lookout_notify_messages_total",
            "Alert messages, by notifier and how their delivery ended.",
            ("notifier", "outcome"),
        );
        labeled(
            &mut out,
            "lookout_notify_retries_total",
            "Failed delivery attempts that were retried, by notifier.",
            "notifier",
            &self.notification_retries,
        );
        for (name, help, value) in [
            (
                "lookout_heartbeat_pings_total",
                "Heartbeat pings the dead man's switch accepted.",
                self.heartbeat.pings.get(),
            ),
            (
                "lookout_heartbeat_failures_total",
                "Heartbeat pings that failed (no answer or not a 2xx).",
                self.heartbeat.failures.get(),
            ),
            (
                "lookout_heartbeat_withheld_total",
                "Heartbeat intervals without a ping because alerting was unhealthy.",
                self.heartbeat.withheld.get(),
            ),
        ] {
            counter(&mut out, name, help, value);
        }
        write_gauge_header(
            &mut out,
            "lookout_heartbeat_last_success_timestamp_seconds",
            "Unix time of the last accepted heartbeat ping (0: none yet).",
        );
        let _ = writeln!(
            out,
            "lookout_heartbeat_last_success_timestamp_seconds {}",
            self.heartbeat.last_success_seconds.get()
        );
        self.alertmanager_sent.write(
            &mut out,
            "lookout_notifications_alertmanager_sent_total",
            "Alerts an Alertmanager peer accepted, by notifier and peer index.",
            ("notifier", "peer_index"),
        );
        self.alertmanager_errors.write(
            &mut out,
            "lookout_notifications_alertmanager_errors_total",
            "Alerts an Alertmanager peer did not accept, by notifier and peer index.",
            ("notifier", "peer_index"),
        );
        write_gauge_header(
            &mut out,
            "lookout_rule_healthy",
            "1 when the rule's last evaluation succeeded, 0 when it failed.",
        );
        for (rule, healthy) in self
            .rule_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "lookout_rule_healthy{{rule=\"{}\"}} {}",
                escape_label(rule),
                u8::from(*healthy)
            );
        }
        for (name, help, value) in [
            (
                "lookout_storage_degraded",
                "1 while storage is degraded (free space below the watermark or a failed write): writes are refused with 429, searches and alerts keep working.",
                self.storage_degraded.get(),
            ),
            (
                "lookout_storage_free_bytes",
                "Free bytes of the data directory's file system at the last check.",
                self.storage_free_bytes.get(),
            ),
            (
                "lookout_storage_watermark_bytes",
                "Free bytes below which writes are refused (storage.min_free_bytes, storage.min_free_percent).",
                self.storage_watermark_bytes.get(),
            ),
        ] {
            write_gauge_header(&mut out, name, help);
            let _ = writeln!(out, "{name} {value}");
        }
        labeled(
            &mut out,
            "lookout_storage_write_failures_total",
            "Writes to the data directory that failed, by what was written.",
            "what",
            &self.storage_write_failures,
        );
        labeled(
            &mut out,
            "lookout_ingest_batches_refused_total",
            "Write requests refused whole (HTTP 429) while storage was degraded, by cause (low_space, failed_write).",
            "reason",
            &self.ingest_batches_refused,
        );
        counter(
            &mut out,
            "lookout_tsdb_samples_unlogged_total",
            "Scraped samples kept in the metrics head but not in its write-ahead log (storage degraded): lost if the server stops before the head is persisted.",
            self.tsdb_samples_unlogged.get(),
        );
        let mut last_name = "";
        for gauge in gauges {
            if gauge.name != last_name {
                write_gauge_header(&mut out, gauge.name, gauge.help);
                last_name = gauge.name;
            }
            let labels: Vec<String> = gauge
                .labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
                .collect();
            if labels.is_empty() {
                let _ = writeln!(out, "{} {}", gauge.name, gauge.value);
            } else {
                let _ = writeln!(
                    out,
                    "{}{{{}}} {}",
                    gauge.name,
                    labels.join(","),
                    gauge.value
                );
            }
        }
        out
    }
}

/// What `/metrics` reports about the stores, read when it is scraped (the server reads
/// them off the index, the ingest path and the metrics store; this module names them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreReadings {
    pub indices: Vec<IndexReading>,
    /// No search came within `index.search_idle_after`.
    pub search_idle: bool,
    /// Decoded request bytes held in memory.
    pub in_flight_bytes: u64,
    pub tsdb_head_series: usize,
    pub tsdb_blocks: usize,
    pub tsdb_blocks_bytes: u64,
    /// Samples the metrics head refused, by why (counters kept by the head).
    pub tsdb_out_of_order_samples: u64,
    pub tsdb_duplicate_samples: u64,
    pub tsdb_out_of_bounds_samples: u64,
}

/// One index's size, as `/metrics` reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexReading {
    pub name: String,
    pub partitions: usize,
    pub docs: u64,
    pub disk_bytes: u64,
}

impl StoreReadings {
    /// The readings as gauges, grouped by name (in index order within a name).
    pub fn gauges(&self) -> Vec<GaugeSample> {
        let mut gauges = Vec::new();
        for index in &self.indices {
            gauges.push(GaugeSample {
                name: "lookout_index_partitions",
                help: "Open time partitions per index.",
                labels: vec![("index", index.name.clone())],
                value: index.partitions as f64,
            });
            gauges.push(GaugeSample {
                name: "lookout_index_docs",
                help: "Searchable documents per index.",
                labels: vec![("index", index.name.clone())],
                value: index.docs as f64,
            });
            gauges.push(GaugeSample {
                name: "lookout_index_size_bytes",
                help: "Bytes on disk per index.",
                labels: vec![("index", index.name.clone())],
                value: index.disk_bytes as f64,
            });
        }
        gauges.push(GaugeSample {
            name: "lookout_index_search_idle",
            help: "1 while no search came within index.search_idle_after (background refreshes pause; the next search refreshes first).",
            labels: Vec::new(),
            value: if self.search_idle { 1.0 } else { 0.0 },
        });
        gauges.push(GaugeSample {
            name: "lookout_ingest_in_flight_bytes",
            help: "Decoded request bytes held in memory right now (beyond ingest.max_in_flight_bytes requests get 429).",
            labels: Vec::new(),
            value: self.in_flight_bytes as f64,
        });
        for (name, help, value) in [
            (
                "lookout_tsdb_head_series",
                "Series held in the metrics head.",
                self.tsdb_head_series as f64,
            ),
            (
                "lookout_tsdb_blocks",
                "Persisted metrics blocks.",
                self.tsdb_blocks as f64,
            ),
            (
                "lookout_tsdb_blocks_bytes",
                "Bytes of the metrics blocks (chunks and index).",
                self.tsdb_blocks_bytes as f64,
            ),
        ] {
            gauges.push(GaugeSample {
                name,
                help,
                labels: Vec::new(),
                value,
            });
        }
        gauges.sort_by_key(|gauge| gauge.name);
        gauges
    }

    /// The counters the metrics head keeps, after the rest of `/metrics`.
    fn write_counters(&self, out: &mut String) {
        for (name, help, value) in [
            (
                "lookout_tsdb_out_of_order_samples_total",
                "Samples refused: older than their series' newest.",
                self.tsdb_out_of_order_samples,
            ),
            (
                "lookout_tsdb_duplicate_samples_total",
                "Samples refused: a different value for a timestamp already stored.",
                self.tsdb_duplicate_samples,
            ),
            (
                "lookout_tsdb_out_of_bounds_samples_total",
                "Samples refused: older than what the head holds (already in blocks).",
                self.tsdb_out_of_bounds_samples,
            ),
        ] {
            write_counter(out, name, help, value);
        }
    }
}

impl Telemetry {
    /// The whole `/metrics` page: every self-metric, then what `readings` say.
    pub fn render_with(&self, readings: &StoreReadings) -> String {
        let mut text = self.render(&readings.gauges());
        readings.write_counters(&mut text);
        text
    }
}

/// Families about the server rather than a tenant (the disk, memory in flight, the
/// listener's panics): with tenants, written once and unlabelled, from the first page.
pub const SERVER_WIDE_FAMILIES: &[&str] = &[
    "lookout_http_handler_panics_total",
    "lookout_ingest_in_flight_bytes",
    "lookout_storage_degraded",
    "lookout_storage_free_bytes",
    "lookout_storage_watermark_bytes",
    "lookout_storage_write_failures_total",
    "lookout_tsdb_samples_unlogged_total",
];

/// Merges the `/metrics` pages of several tenants (tenant, page; the first is the one
/// server-wide families are read from) into one page: each family once with its HELP and
/// TYPE, then its samples from every page with a `tenant` label, so a rule, notifier or
/// index of the same name in two tenants stays two series.
pub fn merge_tenant_pages(pages: &[(String, String)]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (number, (tenant, page)) in pages.iter().enumerate() {
        let mut current = String::new();
        for line in page.lines() {
            if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
            {
                current = rest.split(' ').next().unwrap_or_default().to_owned();
                let (header, _) = families.entry(current.clone()).or_insert_with(|| {
                    order.push(current.clone());
                    Default::default()
                });
                if !header.iter().any(|known| known == line) {
                    header.push(line.to_owned());
                }
                continue;
            }
            let Some((_, samples)) = families.get_mut(&current) else {
                continue;
            };
            if SERVER_WIDE_FAMILIES.contains(&current.as_str()) {
                if number == 0 {
                    samples.push(line.to_owned());
                }
            } else {
                samples.push(with_tenant_label(line, tenant));
            }
        }
    }
    let mut out = String::new();
    for name in order {
        let (header, samples) = &families[&name];
        for line in header.iter().chain(samples) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `line` (one sample of the text format) with `tenant="…"` as its first label.
fn with_tenant_label(line: &str, tenant: &str) -> String {
    let label = format!("tenant=\"{}\"", escape_label(tenant));
    match line.find(['{', ' ']) {
        Some(at) if line[at..].starts_with('{') => {
            format!("{}{{{label},{}", &line[..at], &line[at + 1..])
        }
        Some(at) => format!("{}{{{label}}}{}", &line[..at], &line[at..]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_readings_are_gauges_grouped_by_name_then_head_counters() {
        let readings = StoreReadings {
            indices: vec![
                IndexReading {
                    name: "app".into(),
                    partitions: 2,
                    docs: 10,
                    disk_bytes: 4096,
                },
                IndexReading {
                    name: "logs".into(),
                    partitions: 1,
                    docs: 3,
                    disk_bytes: 512,
                },
            ],
            search_idle: true,
            in_flight_bytes: 7,
            tsdb_head_series: 5,
            tsdb_blocks: 1,
            tsdb_blocks_bytes: 100,
            tsdb_out_of_order_samples: 4,
            tsdb_duplicate_samples: 0,
            tsdb_out_of_bounds_samples: 2,
        };
        let text = Telemetry::default().render_with(&readings);
        assert!(text.contains(
            "# TYPE lookout_index_docs gauge\nlookout_index_docs{index=\"app\"} 10\nlookout_index_docs{index=\"logs\"} 3\n"
        ));
        assert!(text.contains("lookout_index_search_idle 1\n"));
        assert!(text.contains("lookout_ingest_in_flight_bytes 7\n"));
        assert!(text.contains("lookout_tsdb_blocks_bytes 100\n"));
        assert!(text.ends_with(
            "# TYPE lookout_tsdb_out_of_bounds_samples_total counter\nlookout_tsdb_out_of_bounds_samples_total 2\n"
        ));
    }

    #[test]
    fn tenant_pages_merge_into_one_family_each_with_tenant_labels() {
        let page = |rule: &str, runs: u64, free: u64| {
            let telemetry = Telemetry::default();
            telemetry.rule_evaluations.add(rule, runs);
            telemetry.storage_free_bytes.set(free);
            telemetry
                .wal_sync_seconds
                .observe(std::time::Duration::from_millis(1));
            telemetry.render_with(&StoreReadings::default())
        };
        let merged = merge_tenant_pages(&[
            ("default".to_owned(), page("errors", 1, 100)),
            ("team-a".to_owned(), page("errors", 7, 0)),
        ]);
        assert!(merged.contains(
            "# TYPE lookout_rule_evaluations_total counter\nlookout_rule_evaluations_total{tenant=\"default\",rule=\"errors\"} 1\nlookout_rule_evaluations_total{tenant=\"team-a\",rule=\"errors\"} 7\n"
        ), "{merged}");
        assert!(
            merged.contains("lookout_wal_records_total{tenant=\"team-a\"} 0\n"),
            "{merged}"
        );
        assert!(
            merged.contains("lookout_wal_sync_seconds_bucket{tenant=\"team-a\",le=\"0.001\"} 1\n"),
            "{merged}"
        );
        assert!(
            merged.contains("lookout_wal_sync_seconds_count{tenant=\"default\"} 1\n"),
            "{merged}"
        );
        // the disk is the server's: once, unlabelled, from the first page
        assert!(
            merged.contains("\nlookout_storage_free_bytes 100\n"),
            "{merged}"
        );
        let samples = merged
            .lines()
            .filter(|line| line.starts_with("lookout_storage_free_bytes"));
        assert_eq!(samples.count(), 1, "{merged}");
        assert_eq!(
            merged
                .matches("# TYPE lookout_rule_evaluations_total")
                .count(),
            1
        );
    }
}
