//! The tailer: finds files by glob, follows them through rename rotation, copytruncate
//! and deletion, and turns their complete lines into batches for the shipper.
//!
//! It runs on one blocking thread. `notify` events wake it early (a changed file is read
//! within milliseconds, a created or renamed one triggers a rescan); without events it
//! reads open files every `poll_interval` and expands the globs every `rescan_interval`.
//!
//! Invariants:
//! - A file is known by [`FileIdentity`] (device, inode, head checksum), never by path.
//!   An open file is followed through its handle: renamed away from the patterns or
//!   deleted, it is read to its end, kept open `rotate_wait` for late writes, then
//!   released.
//! - A file shorter than what was read, or whose head changed, was truncated in place
//!   (copytruncate): it is read again from 0 under a new truncation generation when its
//!   head is the same, or as the new content it is when the head differs.
//! - Where a file starts: this run's read position, else the acknowledged checkpoint,
//!   else `read_from`. A file that reappears with a known identity resumes, never
//!   re-reads.
//! - Memory is bounded: batches go through a bounded channel, and when the shipper is
//!   behind the tailer blocks instead of reading — the files are the buffer.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::batch::{Batch, BatchBuilder, InputFields, LinePosition, Target};
use super::checkpoint::Checkpoints;
use super::config::{AgentConfig, ReadFrom};
use super::dead_letter::{DeadLetterRecord, save_long_line};
use super::fingerprint::{FileIdentity, identify};
use super::lines::{Line, LineReader};
use super::metrics::{AgentMetrics, FileStatus};
use super::wake::{Wake, pattern_base, watch_events};

/// Bytes one read of one file takes at most.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// Bytes read from one file in one pass before the others get their turn.
const PASS_BYTES_PER_FILE: u64 = 16 * 1024 * 1024;
/// Events closer than this are served by one pass (a busy writer would otherwise wake
/// the tailer for every write).
const MIN_PASS_SPACING: Duration = Duration::from_millis(20);

/// One input, compiled.
struct Input {
    patterns: Vec<String>,
    exclude: Vec<glob::Pattern>,
    fields: InputFields,
    read_from: ReadFrom,
}

/// A file being read.
struct Tailed {
    identity: FileIdentity,
    source: String,
    generation: u64,
    path: PathBuf,
    path_text: String,
    input: usize,
    reader: LineReader,
    /// Matched by a pattern at the last scan (false once renamed away).
    matched: bool,
    /// Size at the last pass.
    last_len: u64,
    /// Since when the file has been at its end without growing.
    idle_since: Option<Instant>,
}

/// A file found but not yet identifiable (no complete first line and under 1 KiB), or
/// truncated and waiting for new content.
struct Pending {
    path: PathBuf,
    input: usize,
    file: File,
    matched: bool,
    /// Set when this file was being read and got truncated: its identity and generation
    /// then.
    truncated_from: Option<(FileIdentity, u64)>,
}

type FileKey = (u64, u64);

pub struct Tailer {
    config: AgentConfig,
    state_dir: PathBuf,
    inputs: Vec<Input>,
    files: HashMap<FileKey, Tailed>,
    pending: HashMap<FileKey, Pending>,
    /// Where this run left files it released (ahead of the checkpoints, which wait for
    /// acknowledgments).
    released: HashMap<FileIdentity, (u64, u64)>,
    checkpoints: Arc<Mutex<Checkpoints>>,
    builder: BatchBuilder,
    batch_started: Option<Instant>,
    sender: tokio::sync::mpsc::Sender<Batch>,
    wake: Arc<Wake>,
    /// Paths already warned about, with the problem, so a problem is logged once.
    warned: HashMap<PathBuf, &'static str>,
    metrics: Arc<AgentMetrics>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    /// When the last rescan began: a file created since may be unknown yet.
    last_rescan_began: SystemTime,
}

impl Tailer {
    // each argument is a distinct piece of the agent's wiring (see `agent::run`)
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &AgentConfig,
        state_dir: &Path,
        host_name: &str,
        target: Target,
        checkpoints: Arc<Mutex<Checkpoints>>,
        sender: tokio::sync::mpsc::Sender<Batch>,
        wake: Arc<Wake>,
        metrics: Arc<AgentMetrics>,
    ) -> Tailer {
        let inputs = config
            .inputs
            .iter()
            .map(|input| Input {
                // absolute, so `log.file.path` says where the file really is
                patterns: input
                    .paths
                    .iter()
                    .map(|pattern| {
                        std::path::absolute(pattern).map_or_else(
                            |_| pattern.clone(),
                            |path| path.to_string_lossy().into_owned(),
                        )
                    })
                    .collect(),
                exclude: input
                    .exclude
                    .iter()
                    .filter_map(|pattern| glob::Pattern::new(pattern).ok())
                    .collect(),
                fields: InputFields::new(
                    input.index.as_deref().unwrap_or(&config.index),
                    input.fields.clone(),
                ),
                read_from: input.read_from,
            })
            .collect();
        let watcher = watch_events(Arc::clone(&wake));
        Tailer {
            config: config.clone(),
            state_dir: state_dir.to_path_buf(),
            inputs,
            files: HashMap::new(),
            pending: HashMap::new(),
            released: HashMap::new(),
            checkpoints,
            builder: BatchBuilder::new(host_name, target, config.non_json),
            batch_started: None,
            sender,
            wake,
            warned: HashMap::new(),
            metrics,
            watcher,
            watched: HashSet::new(),
            last_rescan_began: SystemTime::UNIX_EPOCH,
        }
    }

    /// Tails until [`Wake::stop`], then flushes what it read. Returns early only when the
    /// shipper is gone.
    pub fn run(mut self) {
        let mut last_rescan = Instant::now();
        let mut last_pass = Instant::now();
        let mut last_marker = Instant::now();
        let mut last_status = Instant::now();
        self.rescan();
        loop {
            let pass_time = SystemTime::now();
            let all_at_end = match self.pass() {
                Ok(all_at_end) => all_at_end,
                Err(Disconnected) => return,
            };
            last_pass = Instant::now().max(last_pass);
            let linger_over = self
                .batch_started
                .is_some_and(|started| started.elapsed() >= self.config.batch_linger);
            let watermark = if all_at_end {
                self.watermark(pass_time)
            } else {
                None
            };
            if self.builder.has_progress() && (linger_over || all_at_end && self.linger_is_zero()) {
                let eof_time = watermark;
                if self.flush(eof_time).is_err() {
                    return;
                }
                if eof_time.is_some() {
                    last_marker = Instant::now();
                }
            } else if let Some(watermark) = watermark
                && !self.builder.has_progress()
                && last_marker.elapsed() >= self.config.heartbeat_interval / 4
            {
                // nothing new: tell the shipper the watermark may move (dropped when the
                // shipper is busy — the next one will do)
                let _ = self.sender.try_send(Batch {
                    eof_time: Some(watermark),
                    ..Batch::default()
                });
                last_marker = Instant::now();
            }
            if last_status.elapsed() >= Duration::from_millis(500) {
                self.publish_status();
                last_status = Instant::now();
            }
            let mut timeout = self.config.poll_interval;
            if let Some(started) = self.batch_started {
                timeout = timeout.min(self.config.batch_linger.saturating_sub(started.elapsed()));
            }
            timeout = timeout.min(
                self.config
                    .rescan_interval
                    .saturating_sub(last_rescan.elapsed()),
            );
            // behind on some file: read on at once (only the stop and rescan flags count)
            if !all_at_end {
                timeout = Duration::ZERO;
            }
            let flags = self.wake.wait(timeout);
            if flags.stop {
                let _ = self.flush(None);
                self.publish_status();
                return;
            }
            if all_at_end && (flags.changed || flags.rescan) {
                // coalesce bursts of events into one pass
                let since = last_pass.elapsed();
                if since < MIN_PASS_SPACING {
                    std::thread::sleep(MIN_PASS_SPACING - since);
                }
            }
            if flags.rescan || last_rescan.elapsed() >= self.config.rescan_interval {
                self.rescan();
                last_rescan = Instant::now();
            }
        }
    }

    /// How far a pass that began at `pass_time` and read every known file to its end
    /// lets the watermark go: every line written before it is read. Not when a file
    /// event asked for a rescan meanwhile (a file created before the pass may be unknown
    /// yet: the next pass, after the rescan, says); and where a pattern's directory is
    /// not watched, a file created since the last rescan began would be found only at
    /// the next one, so only up to when that rescan began.
    fn watermark(&self, pass_time: SystemTime) -> Option<SystemTime> {
        if self.wake.rescan_pending() {
            return None;
        }
        let every_base_watched = self.watcher.is_some()
            && self.inputs.iter().all(|input| {
                input
                    .patterns
                    .iter()
                    .all(|pattern| self.watched.contains(&pattern_base(pattern).0))
            });
        if every_base_watched {
            Some(pass_time)
        } else {
            Some(pass_time.min(self.last_rescan_began))
        }
    }

    fn linger_is_zero(&self) -> bool {
        self.config.batch_linger.is_zero()
    }

    /// Sends the batch built so far.
    fn flush(&mut self, eof_time: Option<SystemTime>) -> Result<(), Disconnected> {
        self.batch_started = None;
        if !self.builder.has_progress() {
            return Ok(());
        }
        let batch = self.builder.take(eof_time);
        self.sender.blocking_send(batch).map_err(|_| Disconnected)
    }

    /// Expands every pattern: new files become pending, known ones are marked matched.
    fn rescan(&mut self) {
        self.last_rescan_began = SystemTime::now();
        self.watch_bases();
        let mut matched: HashSet<FileKey> = HashSet::new();
        for input_index in 0..self.inputs.len() {
            for pattern in self.inputs[input_index].patterns.clone() {
                let paths = match glob::glob(&pattern) {
                    Ok(paths) => paths,
                    Err(error) => {
                        tracing::error!(%pattern, %error, "invalid glob pattern");
                        continue;
                    }
                };
                for entry in paths {
                    let path = match entry {
                        Ok(path) => path,
                        Err(error) => {
                            let path = error.path().to_path_buf();
                            self.warn_once(&path, "unreadable_directory", &error.to_string());
                            continue;
                        }
                    };
                    if self.inputs[input_index]
                        .exclude
                        .iter()
                        .any(|exclude| exclude.matches_path(&path))
                    {
                        continue;
                    }
                    self.consider(&path, input_index, &mut matched);
                }
            }
        }
        for (key, tailed) in &mut self.files {
            tailed.matched = matched.contains(key);
        }
        self.pending.retain(|key, _| matched.contains(key));
        let now = now_micros();
        let mut checkpoints = self.lock_checkpoints();
        for tailed in self.files.values() {
            checkpoints.seen(&tailed.identity, now);
        }
        let forgotten = checkpoints.expire(now - self.config.forget_after.as_micros() as i64);
        if forgotten > 0 {
            tracing::info!(
                forgotten,
                "forgot checkpoints of files gone for longer than forget_after"
            );
        }
    }

    /// A path a pattern matched.
    fn consider(&mut self, path: &Path, input: usize, matched: &mut HashSet<FileKey>) {
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) => {
                // vanished between the glob and the stat, or a dangling link
                if error.kind() != std::io::ErrorKind::NotFound {
                    self.warn_once(path, "stat_failed", &error.to_string());
                }
                return;
            }
        };
        if metadata.is_dir() {
            self.warn_once(
                path,
                "is_a_directory",
                "is a directory, not a log file; match the files in it, e.g. `dir/*.json`",
            );
            return;
        }
        if !metadata.is_file() {
            return;
        }
        let key = (metadata.dev(), metadata.ino());
        if !matched.insert(key) {
            return; // matched by an earlier pattern or input
        }
        if let Some(tailed) = self.files.get_mut(&key) {
            if tailed.path != path {
                tracing::info!(from = %tailed.path.display(), to = %path.display(), "file renamed");
                tailed.path = path.to_path_buf();
                tailed.path_text = path.to_string_lossy().into_owned();
            }
            return;
        }
        if let Some(pending) = self.pending.get_mut(&key) {
            pending.path = path.to_path_buf();
            return;
        }
        match File::open(path) {
            Ok(file) => {
                self.warned.remove(path);
                self.pending.insert(
                    key,
                    Pending {
                        path: path.to_path_buf(),
                        input,
                        file,
                        matched: true,
                        truncated_from: None,
                    },
                );
            }
            Err(error) => {
                let label = if error.kind() == std::io::ErrorKind::PermissionDenied {
                    "permission_denied"
                } else {
                    "open_failed"
                };
                self.warn_once(path, label, &error.to_string());
            }
        }
    }

    fn warn_once(&mut self, path: &Path, label: &'static str, message: &str) {
        if self.warned.get(path) == Some(&label) {
            return;
        }
        self.warned.insert(path.to_path_buf(), label);
        self.metrics.file_errors.add(label, 1);
        tracing::warn!(path = %path.display(), reason = label, "cannot tail file: {message}");
    }

    /// Watches the directory each pattern starts in, so new files are seen at once.
    fn watch_bases(&mut self) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        use notify::Watcher;
        for input in &self.inputs {
            for pattern in &input.patterns {
                let (base, recursive) = pattern_base(pattern);
                if self.watched.contains(&base) || !base.is_dir() {
                    continue;
                }
                let mode = if recursive {
                    notify::RecursiveMode::Recursive
                } else {
                    notify::RecursiveMode::NonRecursive
                };
                match watcher.watch(&base, mode) {
                    Ok(()) => {
                        self.watched.insert(base);
                    }
                    Err(error) => {
                        tracing::warn!(directory = %base.display(), %error, "cannot watch directory; polling it");
                    }
                }
            }
        }
    }

    /// Reads every open file once; returns whether all of them are at their end.
    fn pass(&mut self) -> Result<bool, Disconnected> {
        self.identify_pending();
        let mut all_at_end = true;
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        for key in keys {
            all_at_end &= self.read_file(key)?;
        }
        // a file still pending after `identify_pending` has no complete line yet:
        // nothing of it is unread (one truncated in this pass said it is not at its end)
        Ok(all_at_end)
    }

    /// Pending files whose identity can now be taken start being read.
    fn identify_pending(&mut self) {
        let keys: Vec<FileKey> = self.pending.keys().copied().collect();
        for key in keys {
            let pending = self.pending.get_mut(&key).expect("a listed key");
            let identity = match identify(&mut pending.file) {
                Ok(Some(identity)) => identity,
                Ok(None) => continue,
                Err(error) => {
                    let path = pending.path.clone();
                    self.pending.remove(&key);
                    self.warn_once(&path, "read_failed", &error.to_string());
                    continue;
                }
            };
            let pending = self.pending.remove(&key).expect("a listed key");
            let length = pending
                .file
                .metadata()
                .map(|metadata| metadata.len())
                .unwrap_or(0);
            let known = self.known_position(&identity);
            let (generation, offset) = match (pending.truncated_from, known) {
                (Some((previous, previous_generation)), known) if previous == identity => (
                    previous_generation.max(known.map_or(0, |(generation, _)| generation)) + 1,
                    0,
                ),
                (Some(_), Some((generation, offset))) if length >= offset => (generation, offset),
                (Some(_), _) => (0, 0),
                (None, Some((generation, offset))) if length >= offset => (generation, offset),
                (None, Some((generation, _))) => {
                    tracing::info!(path = %pending.path.display(), "file shrank while the agent was away; reading it again from the start");
                    self.metrics.rotations.add("truncate", 1);
                    (generation + 1, 0)
                }
                (None, None) => match self.inputs[pending.input].read_from {
                    ReadFrom::Beginning => (0, 0),
                    ReadFrom::End => {
                        let offset = end_of_last_line(&pending.file, length);
                        // saved at once: after a crash this file is no longer new, and
                        // what was appended meanwhile must not be skipped as "before"
                        let mut checkpoints = self.lock_checkpoints();
                        checkpoints.acknowledge(identity, 0, offset, &pending.path, now_micros());
                        if let Err(error) = checkpoints.save() {
                            tracing::error!(%error, "cannot save checkpoints");
                        }
                        (0, offset)
                    }
                },
            };
            tracing::debug!(path = %pending.path.display(), source = %identity.source_id(), generation, offset, "tailing file");
            self.metrics.files_opened.add(1);
            let path_text = pending.path.to_string_lossy().into_owned();
            self.files.insert(
                key,
                Tailed {
                    identity,
                    source: identity.source_id(),
                    generation,
                    path: pending.path,
                    path_text,
                    input: pending.input,
                    reader: LineReader::new(
                        pending.file,
                        offset,
                        self.config.max_line_bytes,
                        READ_CHUNK_BYTES,
                    ),
                    matched: pending.matched,
                    last_len: length,
                    idle_since: None,
                },
            );
        }
    }

    /// This run's position of `identity`, else its checkpoint.
    fn known_position(&self, identity: &FileIdentity) -> Option<(u64, u64)> {
        let checkpoint = self
            .lock_checkpoints()
            .get(identity)
            .map(|checkpoint| (checkpoint.generation, checkpoint.offset));
        match (self.released.get(identity).copied(), checkpoint) {
            (Some(released), Some(checkpoint)) => Some(released.max(checkpoint)),
            (released, checkpoint) => released.or(checkpoint),
        }
    }

    fn lock_checkpoints(&self) -> std::sync::MutexGuard<'_, Checkpoints> {
        self.checkpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads what one file has; returns whether it is at its end.
    fn read_file(&mut self, key: FileKey) -> Result<bool, Disconnected> {
        let tailed = self.files.get_mut(&key).expect("a listed key");
        let metadata = match tailed.reader.file().metadata() {
            Ok(metadata) => metadata,
            Err(error) => {
                let path = tailed.path.clone();
                self.release(key);
                self.warn_once(&path, "read_failed", &error.to_string());
                return Ok(true);
            }
        };
        let length = metadata.len();
        let truncated = length < tailed.reader.read_position()
            || (length != tailed.last_len
                && !tailed
                    .identity
                    .matches(tailed.reader.file())
                    .unwrap_or(true));
        if truncated {
            self.truncated(key);
            // what it holds now was written before this pass and is read only by the
            // next one (once identified): not at its end, or this pass's time would
            // become a watermark that passed those lines unread
            return Ok(false);
        }
        let grew = length != tailed.last_len;
        tailed.last_len = length;
        let mut read_bytes = 0u64;
        let at_end = loop {
            let tailed = self.files.get_mut(&key).expect("a listed key");
            let before = tailed.reader.read_position();
            let result = match tailed.reader.read_available() {
                Ok(result) => result,
                Err(error) => {
                    let path = tailed.path.clone();
                    self.warn_once(&path, "read_failed", &error.to_string());
                    break true;
                }
            };
            let tailed = self.files.get_mut(&key).expect("a listed key");
            read_bytes += tailed.reader.read_position() - before;
            for line in result.lines {
                self.line(key, line)?;
            }
            if result.at_end {
                break true;
            }
            if read_bytes >= PASS_BYTES_PER_FILE {
                break false;
            }
        };
        self.metrics.bytes_read.add(read_bytes);
        let tailed = self.files.get_mut(&key).expect("a listed key");
        if grew || read_bytes > 0 || !at_end {
            tailed.idle_since = None;
        } else if tailed.idle_since.is_none() {
            tailed.idle_since = Some(Instant::now());
        }
        let gone = !tailed.matched || metadata.nlink() == 0;
        if gone
            && at_end
            && tailed
                .idle_since
                .is_some_and(|since| since.elapsed() >= self.config.rotate_wait)
        {
            tracing::info!(path = %tailed.path.display(), deleted = metadata.nlink() == 0, "finished a rotated or deleted file; releasing it");
            self.release(key);
        }
        Ok(at_end)
    }

    /// Handles one line of a file.
    fn line(&mut self, key: FileKey, line: Line) -> Result<(), Disconnected> {
        let incoming = match &line {
            Line::Complete { text, .. } => text.len(),
            Line::TooLong { .. } => 0,
        };
        if self.builder.has_progress()
            && (self.builder.len_bytes() + incoming + 512 > self.config.batch_max_bytes
                || self.builder.lines() >= self.config.batch_max_lines)
        {
            self.flush(None)?;
        }
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        let tailed = self.files.get(&key).expect("a listed key");
        let input = &self.inputs[tailed.input].fields;
        let position = LinePosition {
            identity: tailed.identity,
            source: &tailed.source,
            generation: tailed.generation,
            offset: line.end(),
            path: &tailed.path_text,
        };
        self.metrics.lines_read.add(1);
        let record =
            |label: &'static str, reason: String, line: Vec<u8>, line_file| DeadLetterRecord {
                path: tailed.path_text.clone(),
                source: tailed.source.clone(),
                generation: tailed.generation,
                offset: position.offset,
                label,
                reason,
                line,
                line_file,
            };
        match line {
            Line::Complete { text, .. } => {
                if let Err(refused) = self.builder.push(&text, &position, input) {
                    let record = record(refused.label, refused.reason, text, None);
                    self.builder.dead_letter(record, &position);
                }
            }
            Line::TooLong {
                length, preview, ..
            } => {
                let start = position.offset - length - 1;
                let reason = format!(
                    "line of {length} bytes is over max_line_bytes ({}); kept whole in the dead-letter directory",
                    self.config.max_line_bytes
                );
                let record = match save_long_line(
                    &self.state_dir,
                    tailed.reader.file(),
                    &tailed.source,
                    tailed.generation,
                    start,
                    length,
                ) {
                    Ok(name) => record("too_long", reason, preview, Some(name)),
                    Err(error) => record(
                        "too_long",
                        format!(
                            "{reason} — but copying it failed ({error}); it is still at offset {start} of the file"
                        ),
                        preview,
                        None,
                    ),
                };
                self.builder.dead_letter(record, &position);
            }
        }
        if self.builder.len_bytes() >= self.config.batch_max_bytes {
            self.flush(None)?;
        }
        Ok(())
    }

    /// A file was truncated in place: read it again as soon as it has new content.
    fn truncated(&mut self, key: FileKey) {
        let tailed = self.files.remove(&key).expect("a listed key");
        tracing::info!(path = %tailed.path.display(), "file truncated (copytruncate); reading it again from the start");
        self.metrics.rotations.add("truncate", 1);
        self.pending.insert(
            key,
            Pending {
                path: tailed.path,
                input: tailed.input,
                matched: tailed.matched,
                truncated_from: Some((tailed.identity, tailed.generation)),
                file: tailed.reader.into_file(),
            },
        );
    }

    fn release(&mut self, key: FileKey) {
        if let Some(tailed) = self.files.remove(&key) {
            self.metrics.rotations.add("released", 1);
            self.released
                .insert(tailed.identity, (tailed.generation, tailed.reader.offset()));
        }
    }

    /// Publishes what each file holds and how far it has been read, for metrics and the
    /// progress bar.
    fn publish_status(&self) {
        let status: Vec<FileStatus> = self
            .files
            .values()
            .map(|tailed| FileStatus {
                path: tailed.path_text.clone(),
                identity: tailed.identity,
                generation: tailed.generation,
                size: tailed.last_len,
                read_offset: tailed.reader.offset(),
            })
            .collect();
        self.metrics.publish_files(status);
    }
}

/// The shipper is gone (shutdown after its timeout): stop reading.
struct Disconnected;

/// Offset just past the last newline of the first `length` bytes (where "read from the
/// end" starts, so a half-written last line is not shipped as a fragment).
fn end_of_last_line(file: &File, length: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut end = length;
    let mut buffer = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buffer.len() as u64);
        let chunk = &mut buffer[..(end - start) as usize];
        if file.read_exact_at(chunk, start).is_err() {
            return 0;
        }
        if let Some(position) = chunk.iter().rposition(|byte| *byte == b'\n') {
            return start + position as u64 + 1;
        }
        end = start;
    }
    0
}

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::agent::config::InputConfig;

    /// A tailer of `dir/app.json*` whose batches nobody ships (the test reads its builder).
    fn tailer(dir: &Path) -> (Tailer, tokio::sync::mpsc::Receiver<Batch>) {
        let config = AgentConfig {
            inputs: vec![InputConfig {
                paths: vec![dir.join("app.json*").display().to_string()],
                ..InputConfig::default()
            }],
            ..AgentConfig::default()
        };
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir).expect("mkdir");
        let checkpoints = Checkpoints::load(&state_dir).expect("checkpoints");
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let tailer = Tailer::new(
            &config,
            &state_dir,
            "test-host",
            Target::Lookout,
            Arc::new(Mutex::new(checkpoints)),
            sender,
            Arc::new(Wake::default()),
            Arc::new(AgentMetrics::default()),
        );
        (tailer, receiver)
    }

    fn write_lines(path: &Path, seqs: std::ops::Range<u32>, truncate: bool) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(!truncate)
            .truncate(truncate)
            .open(path)
            .expect("open");
        for seq in seqs {
            writeln!(file, r#"{{"seq":{seq}}}"#).expect("write");
        }
    }

    /// Passes until one reports every file at its end (as the run loop does before it
    /// claims an end-of-file time), at most `limit`.
    fn pass_to_end(tailer: &mut Tailer, limit: usize) {
        for _ in 0..limit {
            let Ok(all_at_end) = tailer.pass() else {
                panic!("the receiver is alive")
            };
            if all_at_end {
                return;
            }
        }
        panic!("no pass reached the end of every file in {limit} passes");
    }

    /// Regression: a file created after the last rescan and before a pass is unknown to
    /// that pass, which still reads every known file to its end; its time must not
    /// become a watermark that passes the new file's lines before a rescan finds it.
    #[test]
    fn a_file_created_before_a_pass_holds_the_watermark_until_a_rescan_finds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_lines(&dir.path().join("app.json"), 0..5, false);
        let (mut tailer, _receiver) = tailer(dir.path());
        tailer.rescan();
        pass_to_end(&mut tailer, 10);
        let _ = tailer.wake.wait(Duration::ZERO);
        assert!(
            tailer.watcher.is_some(),
            "inotify watches the directory here"
        );
        let quiet = SystemTime::now();
        assert_eq!(tailer.watermark(quiet), Some(quiet));

        write_lines(&dir.path().join("app.json.1"), 0..5, false);
        let pass_time = SystemTime::now();
        assert!(
            matches!(tailer.pass(), Ok(true)),
            "the known file is at its end"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !tailer.wake.rescan_pending() {
            assert!(Instant::now() < deadline, "no file event for the new file");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(tailer.watermark(pass_time), None);

        let _ = tailer.wake.wait(Duration::ZERO);
        tailer.rescan();
        pass_to_end(&mut tailer, 10);
        let after = SystemTime::now();
        assert_eq!(tailer.watermark(after), Some(after));
        assert_eq!(tailer.files.len(), 2, "the new file is tailed");
    }

    /// Without file events (a directory that cannot be watched), a file created since
    /// the last rescan is found only at the next one: the watermark stays at when that
    /// rescan began.
    #[test]
    fn without_file_events_the_watermark_waits_for_the_next_rescan() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_lines(&dir.path().join("app.json"), 0..5, false);
        let (mut tailer, _receiver) = tailer(dir.path());
        tailer.watcher = None;
        tailer.rescan();
        let rescanned = tailer.last_rescan_began;
        pass_to_end(&mut tailer, 10);
        let later = rescanned + Duration::from_secs(5);
        assert_eq!(tailer.watermark(later), Some(rescanned));
    }

    /// Regression (the agent model's flake): a pass that found a file truncated and
    /// rewritten reported it at its end, so the watermark passed the new lines unread.
    #[test]
    fn a_pass_reports_the_end_only_after_reading_what_a_truncated_file_holds_anew() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.json");
        write_lines(&path, 0..20, false);
        let (mut tailer, _receiver) = tailer(dir.path());
        tailer.rescan();
        pass_to_end(&mut tailer, 4);
        assert_eq!(tailer.builder.lines(), 20);
        // copytruncate, then the application writes on (less than was there before)
        write_lines(&path, 20..23, true);
        pass_to_end(&mut tailer, 4);
        assert_eq!(
            tailer.builder.lines(),
            23,
            "every line written before the pass that reported the end is read by then"
        );
    }
}
