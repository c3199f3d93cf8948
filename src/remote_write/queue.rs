//! One remote's queue: a reader task follows the write-ahead log and hands each sample to
//! the shard its series hashes to (so one series' samples stay in order), shards batch
//! up to `max_samples_per_send` or `batch_send_deadline` and send one request at a time,
//! retrying recoverable failures with exponential backoff (`min_backoff` doubling up to
//! `max_backoff`) until they succeed or Lookout stops.
//!
//! The persisted position only moves past a log record once every sample of it was
//! answered (accepted, or refused for good), so what was in flight at a crash is sent
//! again: that is the resend overlap a receiver may refuse as duplicates (a refused batch
//! of such samples is split until only what the receiver had is refused, see [`send`]).
//!
//! Shards scale between `min_shards` and `max_shards` with Prometheus' heuristic,
//! simplified: every 10 s, the shards needed to send the incoming rate plus a twentieth
//! of the backlog per second at the measured time per sample; a change of more than 30 %
//! drains the shards and starts the new number (never while sends are failing).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::proto::{self, Label};
use super::wal_reader::{Position, WalReader};
use super::{RemoteMetrics, RemoteSpec, series_to_send};

/// How often the shard count is reconsidered (Prometheus' `shardUpdateDuration`).
const RESHARD_INTERVAL: Duration = Duration::from_secs(10);

/// One remote, ready to run.
pub struct Remote {
    pub spec: Arc<RemoteSpec>,
    /// The TSDB's `wal/`.
    pub wal_dir: PathBuf,
    /// Where the position file is (`state/remote_write/`).
    pub state_dir: PathBuf,
    pub external_labels: Arc<std::collections::BTreeMap<String, String>>,
    pub metrics: Arc<RemoteMetrics>,
    /// How often the reader looks for new records once it has read everything.
    pub poll_interval: Duration,
}

/// A series as sent, with the hash that picks its shard.
#[derive(Clone)]
struct Series {
    labels: Arc<Vec<Label>>,
    hash: u64,
}

/// One sample on its way.
struct Item {
    series: Series,
    timestamp: i64,
    value: f64,
    /// Samples of its log record still unanswered.
    record: Arc<AtomicUsize>,
}

/// What the shards measured since the last look (for resharding).
#[derive(Default)]
struct SendStats {
    samples: AtomicU64,
    nanos: AtomicU64,
    failures: AtomicU64,
}

/// What every shard shares.
struct ShardContext {
    spec: Arc<RemoteSpec>,
    client: reqwest::Client,
    metrics: Arc<RemoteMetrics>,
    stats: Arc<SendStats>,
    cancel: CancellationToken,
    /// When this process started sending, ms: older samples may have been sent before.
    started_ms: i64,
}

struct Shards {
    senders: Vec<mpsc::Sender<Vec<Item>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Shards {
    fn start(count: usize, context: &Arc<ShardContext>) -> Shards {
        let queue = &context.spec.queue;
        let chunks = (queue.capacity / queue.max_samples_per_send).max(1);
        let (senders, tasks) = (0..count)
            .map(|_| {
                let (sender, receiver) = mpsc::channel(chunks);
                let task = tokio::spawn(run_shard(receiver, Arc::clone(context)));
                (sender, task)
            })
            .unzip();
        context
            .metrics
            .shards
            .store(count as u64, Ordering::Relaxed);
        Shards { senders, tasks }
    }

    /// Lets every shard send what it holds, then stop.
    async fn drain(self) {
        drop(self.senders);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

impl Remote {
    fn state_path(&self) -> PathBuf {
        self.state_dir.join(format!("{}.json", self.spec.name))
    }

    fn load_position(&self) -> Option<Position> {
        let text = std::fs::read(self.state_path()).ok()?;
        match serde_json::from_slice(&text) {
            Ok(position) => Some(position),
            Err(error) => {
                tracing::error!(path = %self.state_path().display(), %error, "unreadable remote write position; starting from the oldest write-ahead log segment");
                None
            }
        }
    }

    async fn save_position(&self, position: Position) {
        let (dir, path) = (self.state_dir.clone(), self.state_path());
        let saved = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let bytes = serde_json::to_vec(&position).expect("a position serializes");
            crate::atomic_file::write(&path, &bytes)
        })
        .await;
        if let Ok(Err(error)) = saved {
            tracing::warn!(%error, "cannot save the remote write position; a restart resends more");
        }
    }

    /// Follows the log and sends until `cancel`; then saves the position.
    pub async fn run(self, cancel: CancellationToken) {
        let client = match reqwest::Client::builder()
            .timeout(self.spec.timeout)
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot build the remote write client");
                return;
            }
        };
        let context = Arc::new(ShardContext {
            spec: Arc::clone(&self.spec),
            client,
            metrics: Arc::clone(&self.metrics),
            stats: Default::default(),
            cancel: cancel.child_token(),
            started_ms: chrono::Utc::now().timestamp_millis(),
        });
        let saved = self.load_position();
        let mut reader = loop {
            match WalReader::new(self.wal_dir.clone(), saved) {
                Ok(reader) => break Some(reader),
                Err(error) => {
                    tracing::error!(%error, "cannot read the metrics write-ahead log; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => break None,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let Some(mut current) = reader.take() else {
            return;
        };
        let mut shard_count = self.spec.queue.min_shards;
        let mut shards = Shards::start(shard_count, &context);
        let mut unanswered: VecDeque<(Position, Arc<AtomicUsize>)> = VecDeque::new();
        let mut saved_position = saved;
        let mut last_save = Instant::now();
        let mut cache: HashMap<usize, (crate::tsdb::head::Labels, Option<Series>)> = HashMap::new();
        let mut cache_segment = current.position().segment;
        let mut read_since = 0u64;
        let mut last_reshard = Instant::now();
        while !cancel.is_cancelled() {
            let (returned, records) = tokio::task::spawn_blocking(move || {
                let records = current.read();
                (current, records)
            })
            .await
            .expect("reading the log does not panic");
            current = returned;
            let records = match records {
                Ok(records) => records,
                Err(error) => {
                    tracing::error!(%error, "cannot read the metrics write-ahead log; retrying");
                    Vec::new()
                }
            };
            self.metrics
                .lost_segments
                .store(current.lost_segments, Ordering::Relaxed);
            if current.position().segment != cache_segment {
                cache.clear();
                cache_segment = current.position().segment;
            }
            let idle = records.is_empty();
            let mut buckets: Vec<Vec<Item>> = (0..shard_count).map(|_| Vec::new()).collect();
            for record in records {
                let counter = Arc::new(AtomicUsize::new(0));
                let mut kept = 0;
                for sample in record.samples {
                    self.metrics
                        .highest_in_ms
                        .fetch_max(sample.timestamp, Ordering::Relaxed);
                    let key = Arc::as_ptr(&sample.labels) as *const u8 as usize;
                    let series = cache
                        .entry(key)
                        .or_insert_with(|| {
                            let series = series_to_send(
                                &sample.labels,
                                &self.external_labels,
                                &self.spec.relabel,
                            )
                            .map(|labels| {
                                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                                for label in labels.iter() {
                                    label.name.hash(&mut hasher);
                                    label.value.hash(&mut hasher);
                                }
                                Series {
                                    labels,
                                    hash: hasher.finish(),
                                }
                            });
                            (Arc::clone(&sample.labels), series)
                        })
                        .1
                        .clone();
                    let Some(series) = series else {
                        self.metrics.dropped_samples.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    kept += 1;
                    let shard = (series.hash % shard_count as u64) as usize;
                    buckets[shard].push(Item {
                        series,
                        timestamp: sample.timestamp,
                        value: sample.value,
                        record: Arc::clone(&counter),
                    });
                }
                counter.store(kept, Ordering::Relaxed);
                read_since += kept as u64;
                self.metrics
                    .pending_samples
                    .fetch_add(kept as i64, Ordering::Relaxed);
                unanswered.push_back((record.end, counter));
            }
            for (shard, bucket) in buckets.into_iter().enumerate() {
                if bucket.is_empty() {
                    continue;
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    sent = shards.senders[shard].send(bucket) => {
                        if sent.is_err() {
                            tracing::error!("a remote write shard stopped");
                        }
                    }
                }
            }
            // the position moves past records whose samples were all answered
            let mut answered = None;
            while let Some((end, counter)) = unanswered.front() {
                if counter.load(Ordering::Acquire) > 0 {
                    break;
                }
                answered = Some(*end);
                unanswered.pop_front();
            }
            if unanswered.is_empty() {
                answered = Some(current.position());
            }
            if let Some(position) = answered
                && Some(position) != saved_position
                && last_save.elapsed() >= Duration::from_millis(100)
            {
                self.save_position(position).await;
                saved_position = Some(position);
                last_save = Instant::now();
            }
            if last_reshard.elapsed() >= RESHARD_INTERVAL {
                let elapsed = last_reshard.elapsed().as_secs_f64();
                let wanted = self.desired_shards(&context.stats, read_since, elapsed, shard_count);
                last_reshard = Instant::now();
                read_since = 0;
                if wanted != shard_count {
                    tracing::info!(from = shard_count, to = wanted, "remote write resharding");
                    shards.drain().await;
                    shard_count = wanted;
                    shards = Shards::start(shard_count, &context);
                }
            }
            if idle {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = tokio::time::sleep(self.poll_interval) => {}
                }
            }
        }
        context.cancel.cancel();
        shards.drain().await;
        let mut answered = saved_position;
        while let Some((end, counter)) = unanswered.front() {
            if counter.load(Ordering::Acquire) > 0 {
                break;
            }
            answered = Some(*end);
            unanswered.pop_front();
        }
        if unanswered.is_empty() {
            answered = Some(current.position());
        }
        if let Some(position) = answered
            && answered != saved_position
        {
            self.save_position(position).await;
        }
    }

    /// The shard count for the last interval's incoming rate and backlog (see the
    /// module doc); `current` unless the change is over 30 % and sends succeed.
    fn desired_shards(
        &self,
        stats: &SendStats,
        read: u64,
        elapsed_seconds: f64,
        current: usize,
    ) -> usize {
        let sent = stats.samples.swap(0, Ordering::Relaxed);
        let nanos = stats.nanos.swap(0, Ordering::Relaxed);
        let failures = stats.failures.swap(0, Ordering::Relaxed);
        if failures > 0 || sent == 0 {
            return current;
        }
        let seconds_per_sample = nanos as f64 / 1e9 / sent as f64;
        let rate_in = read as f64 / elapsed_seconds.max(0.001);
        let backlog = self.metrics.pending_samples.load(Ordering::Relaxed).max(0) as f64;
        let desired = (seconds_per_sample * (rate_in + backlog / 20.0)).ceil() as usize;
        let queue = &self.spec.queue;
        let desired = desired.clamp(queue.min_shards, queue.max_shards);
        let change = (desired as f64 - current as f64).abs() / current as f64;
        if change > 0.3 { desired } else { current }
    }
}

/// One shard: batches what it receives and sends it, one request at a time.
async fn run_shard(mut receiver: mpsc::Receiver<Vec<Item>>, context: Arc<ShardContext>) {
    let queue = &context.spec.queue;
    let mut batch: Vec<Item> = Vec::with_capacity(queue.max_samples_per_send);
    let mut deadline = tokio::time::Instant::now() + queue.batch_send_deadline;
    loop {
        tokio::select! {
            received = receiver.recv() => match received {
                Some(items) => {
                    if batch.is_empty() {
                        deadline = tokio::time::Instant::now() + queue.batch_send_deadline;
                    }
                    // filled a batch at a time from the front: splitting the rest off a
                    // long backlog would copy it again for every batch sent
                    let mut items = items.into_iter();
                    loop {
                        let room = queue.max_samples_per_send - batch.len();
                        batch.extend(items.by_ref().take(room));
                        if batch.len() < queue.max_samples_per_send {
                            break;
                        }
                        let full = std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(queue.max_samples_per_send),
                        );
                        if !send(&context, full).await {
                            return;
                        }
                        deadline = tokio::time::Instant::now() + queue.batch_send_deadline;
                    }
                }
                None => {
                    if !batch.is_empty() {
                        send(&context, batch).await;
                    }
                    return;
                }
            },
            _ = tokio::time::sleep_until(deadline), if !batch.is_empty() => {
                let full = std::mem::take(&mut batch);
                if !send(&context, full).await {
                    return;
                }
            }
            _ = context.cancel.cancelled() => return,
        }
    }
}

/// The request of `items`: one time series per series, samples in order.
pub fn write_request(items: &[(Arc<Vec<Label>>, i64, f64)]) -> proto::WriteRequest {
    let mut index: HashMap<*const Vec<Label>, usize> = HashMap::new();
    let mut request = proto::WriteRequest::default();
    for (labels, timestamp, value) in items {
        let slot = *index.entry(Arc::as_ptr(labels)).or_insert_with(|| {
            request.timeseries.push(proto::TimeSeries {
                labels: labels.as_ref().clone(),
                samples: Vec::new(),
            });
            request.timeseries.len() - 1
        });
        request.timeseries[slot].samples.push(proto::Sample {
            value: *value,
            timestamp: *timestamp,
        });
    }
    request
}

/// How one batch ended.
enum Answer {
    Accepted,
    /// Refused for good (a 4xx other than a retried 429), with the reason.
    Refused(String),
    /// Lookout stops before an answer.
    Cancelled,
}

/// Sends `items` until they are answered; `false` when Lookout stops first (they stay
/// unanswered, so the position does not pass them).
///
/// A receiver refuses a whole request for one sample it already has (Prometheus answers
/// 400 "out of order sample"), so a refused batch holding samples older than this
/// process — possibly sent before a restart, the resend overlap — is split in halves and
/// each sent again, down to single samples: the new samples of the overlap get in, and
/// only those the receiver already had are refused.
async fn send(context: &ShardContext, mut items: Vec<Item>) -> bool {
    let metrics = &context.metrics;
    let count = items.len() as u64;
    match deliver(context, &items).await {
        Answer::Cancelled => return false,
        Answer::Accepted => {
            metrics.samples.fetch_add(count, Ordering::Relaxed);
            let newest = items.iter().map(|item| item.timestamp).max().unwrap_or(0);
            metrics.highest_sent_ms.fetch_max(newest, Ordering::Relaxed);
        }
        Answer::Refused(_)
            if items.len() > 1 && items.iter().any(|item| item.timestamp < context.started_ms) =>
        {
            let second = items.split_off(items.len() / 2);
            return Box::pin(send(context, items)).await && Box::pin(send(context, second)).await;
        }
        Answer::Refused(error) => {
            metrics.failed_samples.fetch_add(count, Ordering::Relaxed);
            tracing::warn!(samples = count, %error, "remote write refused a batch; dropped (not retried)");
        }
    }
    for item in &items {
        item.record.fetch_sub(1, Ordering::AcqRel);
    }
    metrics
        .pending_samples
        .fetch_sub(count as i64, Ordering::Relaxed);
    true
}

/// Sends `items` in one request, retrying recoverable failures with backoff.
async fn deliver(context: &ShardContext, items: &[Item]) -> Answer {
    let spec = &context.spec;
    let metrics = &context.metrics;
    let count = items.len() as u64;
    let request = write_request(
        &items
            .iter()
            .map(|item| (Arc::clone(&item.series.labels), item.timestamp, item.value))
            .collect::<Vec<_>>(),
    );
    let body = bytes::Bytes::from(proto::encode(&request));
    let mut backoff = spec.queue.min_backoff;
    loop {
        let started = Instant::now();
        let result = context
            .client
            .post(spec.url.clone())
            .headers(spec.headers.clone())
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                reqwest::header::USER_AGENT,
                concat!("lookout/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.clone())
            .send()
            .await;
        let error = match result {
            Ok(response) if response.status().is_success() => {
                context.stats.samples.fetch_add(count, Ordering::Relaxed);
                context
                    .stats
                    .nanos
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                return Answer::Accepted;
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                let error = format!("HTTP {status}: {}", text.trim());
                let retry = status.is_server_error()
                    || (status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        && spec.queue.retry_on_http_429);
                if !retry {
                    return Answer::Refused(error);
                }
                error
            }
            Err(error) => crate::datasource::error_chain(&error),
        };
        context.stats.failures.fetch_add(1, Ordering::Relaxed);
        metrics.retried_samples.fetch_add(count, Ordering::Relaxed);
        tracing::warn!(samples = count, %error, retry_in = ?backoff, "remote write failed; retrying");
        tokio::select! {
            _ = context.cancel.cancelled() => return Answer::Cancelled,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(spec.queue.max_backoff);
    }
}
