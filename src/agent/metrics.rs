//! The agent's own metrics (Prometheus text at `--metrics-listen`/metrics) and the status
//! of every tailed file, which also drives the progress bar.
//!
//! Per-file gauges carry the path as a label: bounded by the number of files tailed at
//! once, not by history (released files drop out).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use super::checkpoint::Checkpoints;
use super::fingerprint::FileIdentity;
use crate::telemetry::{
    Counter, LabeledCounter, write_counter, write_gauge_header, write_labeled_counter,
};

/// One tailed file as the tailer last saw it.
#[derive(Debug, Clone)]
pub struct FileStatus {
    pub path: String,
    pub identity: FileIdentity,
    pub generation: u64,
    pub size: u64,
    /// Offset up to which lines were read (and batched).
    pub read_offset: u64,
}

/// How far behind one file is: bytes written but not acknowledged, and for how long.
#[derive(Debug, Clone)]
pub struct FileLag {
    pub path: String,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
}

#[derive(Default)]
pub struct AgentMetrics {
    pub lines_read: Counter,
    pub bytes_read: Counter,
    pub lines_shipped: Counter,
    pub lines_duplicate: Counter,
    pub bytes_shipped: Counter,
    pub bytes_sent_compressed: Counter,
    pub batches_shipped: Counter,
    pub retries: LabeledCounter,
    pub dead_lettered: LabeledCounter,
    pub file_errors: LabeledCounter,
    pub rotations: LabeledCounter,
    pub files_opened: Counter,
    pub heartbeats: Counter,
    files: Mutex<Vec<FileStatus>>,
    /// Since when each file (by identity) has had bytes not yet acknowledged.
    behind_since: Mutex<std::collections::HashMap<FileIdentity, Instant>>,
}

impl AgentMetrics {
    pub fn publish_files(&self, files: Vec<FileStatus>) {
        *self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = files;
    }

    /// Lag of every tailed file against the acknowledged checkpoints.
    pub fn lags(&self, checkpoints: &Checkpoints) -> Vec<FileLag> {
        let files = self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut behind = self
            .behind_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let lags: Vec<FileLag> = files
            .iter()
            .map(|file| {
                let acknowledged = checkpoints
                    .get(&file.identity)
                    .filter(|checkpoint| checkpoint.generation == file.generation)
                    .map_or(0, |checkpoint| checkpoint.offset);
                let lag_bytes = file.size.saturating_sub(acknowledged);
                let lag_seconds = if lag_bytes == 0 {
                    behind.remove(&file.identity);
                    0.0
                } else {
                    now.duration_since(*behind.entry(file.identity).or_insert(now))
                        .as_secs_f64()
                };
                FileLag {
                    path: file.path.clone(),
                    lag_bytes,
                    lag_seconds,
                }
            })
            .collect();
        behind.retain(|identity, _| files.iter().any(|file| file.identity == *identity));
        lags
    }

    /// Prometheus text format 0.0.4.
    pub fn render(&self, checkpoints: &Checkpoints) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &Counter); 9] = [
            (
                "lookout_agent_lines_read_total",
                "Lines read from files (complete lines, including refused ones).",
                &self.lines_read,
            ),
            (
                "lookout_agent_bytes_read_total",
                "Bytes read from files.",
                &self.bytes_read,
            ),
            (
                "lookout_agent_lines_shipped_total",
                "Lines acknowledged by the server.",
                &self.lines_shipped,
            ),
            (
                "lookout_agent_lines_duplicate_total",
                "Lines the server already had (resent after a restart; answered noop or 409).",
                &self.lines_duplicate,
            ),
            (
                "lookout_agent_bytes_shipped_total",
                "Uncompressed bytes of acknowledged request bodies.",
                &self.bytes_shipped,
            ),
            (
                "lookout_agent_bytes_sent_total",
                "Bytes of request bodies put on the wire (compressed), retries included.",
                &self.bytes_sent_compressed,
            ),
            (
                "lookout_agent_batches_shipped_total",
                "Batches acknowledged by the server.",
                &self.batches_shipped,
            ),
            (
                "lookout_agent_files_opened_total",
                "Files started being tailed.",
                &self.files_opened,
            ),
            (
                "lookout_agent_heartbeats_total",
                "Heartbeats sent while idle.",
                &self.heartbeats,
            ),
        ];
        for (name, help, counter) in counters {
            write_counter(&mut out, name, help, counter.get());
        }
        write_labeled_counter(
            &mut out,
            "lookout_agent_retries_total",
            "Requests retried, by reason.",
            "reason",
            &self.retries,
        );
        write_labeled_counter(
            &mut out,
            "lookout_agent_dead_lettered_lines_total",
            "Lines written to the dead-letter file, by reason.",
            "reason",
            &self.dead_lettered,
        );
        write_labeled_counter(
            &mut out,
            "lookout_agent_file_errors_total",
            "Files that could not be tailed, by reason.",
            "reason",
            &self.file_errors,
        );
        write_labeled_counter(
            &mut out,
            "lookout_agent_rotations_total",
            "Rotations seen: `truncate` (copytruncate), `released` (a renamed-away or deleted file finished).",
            "kind",
            &self.rotations,
        );
        let lags = self.lags(checkpoints);
        write_gauge_header(
            &mut out,
            "lookout_agent_files_tailed",
            "Files open for reading.",
        );
        let _ = writeln!(out, "lookout_agent_files_tailed {}", lags.len());
        write_gauge_header(
            &mut out,
            "lookout_agent_file_lag_bytes",
            "Bytes of a file not yet acknowledged by the server.",
        );
        for lag in &lags {
            let _ = writeln!(
                out,
                "lookout_agent_file_lag_bytes{{path=\"{}\"}} {}",
                crate::telemetry::escape_label(&lag.path),
                lag.lag_bytes
            );
        }
        write_gauge_header(
            &mut out,
            "lookout_agent_file_lag_seconds",
            "How long a file has had bytes not yet acknowledged (0 when caught up).",
        );
        for lag in &lags {
            let _ = writeln!(
                out,
                "lookout_agent_file_lag_seconds{{path=\"{}\"}} {}",
                crate::telemetry::escape_label(&lag.path),
                lag.lag_seconds
            );
        }
        out
    }
}
