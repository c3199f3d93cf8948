//! The agent (`lookout ship`, or `[[agent.inputs]]` inside `lookout serve`): tails JSON log
//! files and ships every complete line exactly once through rotation, restarts, crashes
//! and outages (DESIGN §4, issue 3).
//!
//! ```text
//!  files ──notify/poll──▶ tailer ──Batch (bounded channel)──▶ shipper ──POST /_bulk──▶ server
//!   (fingerprint, lines, batch)                               │ ack
//!                                     checkpoints ◀───────────┘ dead letters
//! ```
//!
//! Exactly once: every line carries its position (Lookout's `_lookout` source/generation/
//! offset, or a deterministic `_id` for a plain Elasticsearch), so the server drops what
//! it already has; checkpoints move only after acknowledgments, so nothing is skipped.
//! A restart resends at most what was in flight, and the server answers it `noop`.

pub mod batch;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod dead_letter;
pub mod fingerprint;
mod line_scan;
pub mod lines;
pub mod metrics;
pub mod shipper;
pub mod tailer;
pub mod wake;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::checkpoint::{CheckpointError, Checkpoints};
use self::config::AgentConfig;
use self::metrics::AgentMetrics;
use self::shipper::{Endpoint, Shipper};
use self::tailer::Tailer;
use self::wake::Wake;

/// Batches waiting for the shipper besides the one in flight: memory stays at a few
/// `batch_max_bytes`.
const QUEUED_BATCHES: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent: no `to` URL configured (set `to` in the config or pass --to)")]
    NoDestination,
    #[error("agent: no inputs configured (add [[inputs]] with `paths`, or pass --path)")]
    NoInputs,
    #[error("agent state directory `{path}`: {source}")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "agent state directory `{path}` is in use by another agent (lock `{lock}` is held); give each agent its own --state-dir"
    )]
    Locked { path: String, lock: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("agent: {0}")]
    Config(String),
    #[error("agent: cannot serve metrics on {address}: {source}")]
    MetricsListen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Several destinations: one agent per destination, each reading the files itself with
/// its own checkpoints (the first in the state directory, so adding a destination does
/// not move the first one's; the others in `destination-N` below it), so a dead or slow
/// destination holds up no other and none loses its place. Only the first serves
/// `metrics_listen`. Ends when every one has ended; the first error is returned.
async fn fan_out(
    config: AgentConfig,
    default_state_dir: PathBuf,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    let state_dir = config.state_dir.clone().unwrap_or(default_state_dir);
    let destinations: Vec<String> = config.to.iter().chain(&config.also_to).cloned().collect();
    let agents = destinations.into_iter().enumerate().map(|(number, to)| {
        let mut single = config.clone();
        single.to = Some(to);
        single.also_to.clear();
        if number > 0 {
            single.metrics_listen = None;
        }
        single.state_dir = Some(if number == 0 {
            state_dir.clone()
        } else {
            state_dir.join(format!("destination-{number}"))
        });
        let cancel = cancel.clone();
        run_one(single, PathBuf::new(), cancel)
    });
    futures_util::future::join_all(agents)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, AgentError>>()
        .map(|_| ())
}

/// Runs the agent (one per destination with `also_to`: see [`fan_out`]) until `cancel`,
/// then ships what it read (for up to
/// `shutdown_timeout`), saves checkpoints and deregisters.
pub async fn run(
    config: AgentConfig,
    default_state_dir: PathBuf,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    if config.also_to.is_empty() {
        run_one(config, default_state_dir, cancel).await
    } else {
        fan_out(config, default_state_dir, cancel).await
    }
}

/// [`run`] to the one destination `to`.
async fn run_one(
    config: AgentConfig,
    default_state_dir: PathBuf,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    let to = config.to.clone().ok_or(AgentError::NoDestination)?;
    if config.inputs.iter().all(|input| input.paths.is_empty()) {
        return Err(AgentError::NoInputs);
    }
    let state_dir = config.state_dir.clone().unwrap_or(default_state_dir);
    let state_error = |source| AgentError::StateDir {
        path: state_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&state_dir).map_err(state_error)?;
    let _lock = lock_state_dir(&state_dir)?;
    let host_name = config.host_name.clone().unwrap_or_else(host_name);
    let checkpoints = Arc::new(Mutex::new(Checkpoints::load(&state_dir)?));
    let dead_letters = dead_letter::DeadLetterFile::open(&state_dir).map_err(state_error)?;
    let agent_id = shipper::agent_id(&state_dir, &host_name).map_err(state_error)?;
    let token = config.resolve_token().map_err(AgentError::Config)?;
    let extra_roots = match &config.tls_ca_file {
        Some(path) => std::fs::read(path)
            .ok()
            .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).ok())
            .ok_or_else(|| {
                AgentError::Config(format!(
                    "tls_ca_file `{}` holds no PEM certificate",
                    path.display()
                ))
            })?,
        None => Vec::new(),
    };
    let identity = config
        .client_identity()
        .map_err(|(field, error)| AgentError::Config(format!("{field}: {error}")))?;
    let endpoint = Endpoint::new(&to, token, config.request_timeout, extra_roots, identity)
        .map_err(|error| AgentError::Config(format!("HTTP client: {error}")))?
        .with_tenant(config.tenant.clone());
    let metrics = Arc::new(AgentMetrics::default());
    if let Some(address) = config.metrics_listen {
        serve_metrics(address, &metrics, &checkpoints, &cancel).await?;
    }
    let Some(target) = shipper::detect_target(&endpoint, &config, &cancel).await else {
        return Ok(());
    };
    let (sender, receiver) = tokio::sync::mpsc::channel(QUEUED_BATCHES);
    let wake = Arc::new(Wake::default());
    let tailer = Tailer::new(
        &config,
        &state_dir,
        &host_name,
        target,
        Arc::clone(&checkpoints),
        sender,
        Arc::clone(&wake),
        Arc::clone(&metrics),
    );
    let tailer = std::thread::Builder::new()
        .name("lookout-tailer".into())
        .spawn(move || tailer.run())
        .map_err(state_error)?;
    // on cancel: the tailer flushes and stops; the shipper gets `shutdown_timeout` to
    // deliver what was read before it gives up (the rest is read again next start)
    let abandon = CancellationToken::new();
    {
        let (cancel, abandon, wake) = (cancel.clone(), abandon.clone(), Arc::clone(&wake));
        let shutdown_timeout = config.shutdown_timeout;
        tokio::spawn(async move {
            cancel.cancelled().await;
            wake.stop();
            tokio::time::sleep(shutdown_timeout).await;
            abandon.cancel();
        });
    }
    let progress = show_progress(&metrics, &checkpoints, &cancel);
    tracing::info!(agent = %agent_id, server = %to, inputs = config.inputs.len(), "agent started");
    Shipper::new(
        endpoint,
        target,
        agent_id,
        &config,
        Arc::clone(&checkpoints),
        dead_letters,
        Arc::clone(&metrics),
    )
    .run(receiver, abandon)
    .await;
    wake.stop();
    let _ = tokio::task::spawn_blocking(move || tailer.join()).await;
    if let Some(progress) = progress {
        progress.abort();
    }
    tracing::info!(lines = metrics.lines_shipped.get(), "agent stopped");
    Ok(())
}

/// One agent per state directory: two would overwrite each other's checkpoints.
fn lock_state_dir(state_dir: &Path) -> Result<std::fs::File, AgentError> {
    let lock_path = state_dir.join("agent.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| AgentError::StateDir {
            path: state_dir.display().to_string(),
            source,
        })?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::Locked {
            path: state_dir.display().to_string(),
            lock: lock_path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(AgentError::StateDir {
            path: state_dir.display().to_string(),
            source,
        }),
    }
}

/// This machine's host name (`host.name` of every event).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

async fn serve_metrics(
    address: std::net::SocketAddr,
    metrics: &Arc<AgentMetrics>,
    checkpoints: &Arc<Mutex<Checkpoints>>,
    cancel: &CancellationToken,
) -> Result<(), AgentError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| AgentError::MetricsListen { address, source })?;
    let (metrics, checkpoints) = (Arc::clone(metrics), Arc::clone(checkpoints));
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (metrics, checkpoints) = (Arc::clone(&metrics), Arc::clone(&checkpoints));
            async move {
                let checkpoints = checkpoints
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(&checkpoints),
                )
            }
        }),
    );
    let local = listener.local_addr().unwrap_or(address);
    tracing::info!(address = %local, "agent metrics at /metrics");
    let cancel = cancel.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
    });
    Ok(())
}

/// A progress bar of bytes not yet acknowledged, on a terminal, while catching up.
fn show_progress(
    metrics: &Arc<AgentMetrics>,
    checkpoints: &Arc<Mutex<Checkpoints>>,
    cancel: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let (metrics, checkpoints, cancel) =
        (Arc::clone(metrics), Arc::clone(checkpoints), cancel.clone());
    Some(tokio::spawn(async move {
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} catching up {bar:30} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left)",
        )
        .expect("a valid template");
        let mut bar: Option<indicatif::ProgressBar> = None;
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        while !cancel.is_cancelled() {
            ticker.tick().await;
            let lags = {
                let checkpoints = checkpoints
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                metrics.lags(&checkpoints)
            };
            let remaining: u64 = lags.iter().map(|lag| lag.lag_bytes).sum();
            match &bar {
                None if remaining > 8 * 1024 * 1024 => {
                    let new = indicatif::ProgressBar::new(remaining).with_style(style.clone());
                    bar = Some(new);
                }
                Some(current) if remaining == 0 => {
                    current.finish_and_clear();
                    bar = None;
                }
                Some(current) => {
                    let total = current.length().unwrap_or(0).max(remaining);
                    current.set_length(total);
                    current.set_position(total - remaining);
                }
                None => {}
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }))
}

/// Resolves the state directory of `lookout ship` when none is configured.
pub fn default_state_dir() -> PathBuf {
    PathBuf::from("agent-state")
}
