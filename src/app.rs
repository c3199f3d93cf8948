//! Wires the components of `lookout serve` and owns shutdown: on SIGINT/SIGTERM the
//! listener stops accepting, in-flight requests finish, every acknowledged document is
//! committed, and the process exits 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::data_dir::DataDir;
use crate::index::IndexStore;
use crate::ingest::Ingest;
use crate::server::query_pool::QueryPool;
use crate::server::{self, AppState};
use crate::telemetry::Telemetry;

/// Runs the server until `shutdown` is cancelled (or a signal arrives).
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let token = config.auth.resolve_token().map_err(anyhow::Error::msg)?;
    if !config.listen.ip().is_loopback() && token.is_none() && !config.auth.insecure {
        anyhow::bail!(
            "refusing to listen on non-loopback address {} without authentication: set auth.token_env (or auth.token_file) or pass --insecure",
            config.listen
        );
    }
    // the port first: a taken port fails before anything is created on disk
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let data_dir = DataDir::open(&config.data_dir)?;
    let telemetry = Arc::new(Telemetry::default());
    let disk = Arc::new(crate::storage::DiskSpace::new(
        &data_dir.root,
        config.storage.clone(),
        telemetry.clone(),
    ));
    let settings = config.store_settings();
    let indices = data_dir.indices();
    let started = Instant::now();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || IndexStore::open(&indices, settings))
            .await
            .context("opening the index")??,
    );
    let ingest_settings = config.ingest_settings();
    let (wal, state_dir, ingest_store, ingest_telemetry, ingest_disk) = (
        data_dir.wal(),
        data_dir.state(),
        store.clone(),
        telemetry.clone(),
        disk.clone(),
    );
    let ingest = tokio::task::spawn_blocking(move || {
        Ingest::open(
            ingest_store,
            wal,
            state_dir,
            ingest_settings,
            ingest_telemetry,
            ingest_disk,
        )
    })
    .await
    .context("replaying the write-ahead log")??;
    tracing::info!(
        indices = store.names().len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "index opened"
    );

    let tasks = TaskTracker::new();
    let background = CancellationToken::new();
    tasks.spawn(ingest.clone().run_refresher(background.clone()));
    {
        let ingest = ingest.clone();
        tasks.spawn(disk.clone().run(
            move || {
                let ingest = ingest.clone();
                async move { ingest.recover().await }
            },
            background.clone(),
        ));
    }

    let tsdb_dir = data_dir.tsdb();
    let tsdb_options = config.metrics.tsdb_options();
    let tsdb = Arc::new(
        tokio::task::spawn_blocking(move || crate::tsdb::Tsdb::open(&tsdb_dir, tsdb_options))
            .await
            .context("opening the metrics store")?
            .context("opening the metrics store")?,
    );
    tsdb.attach_disk(disk.clone());
    let series = Arc::new(crate::rules::observe::Sources {
        store: store.clone(),
        tsdb: Arc::clone(&tsdb),
        log_matches: Arc::new(crate::rules::log_matches::LogMatches::new(store.clone())),
        engine: config.metrics.engine_options(),
    });
    let state = Arc::new(AppState {
        store: store.clone(),
        ingest: ingest.clone(),
        telemetry: Arc::clone(&telemetry),
        token,
        max_body_bytes: config.ingest.max_body_bytes,
        body_read_timeout: config.http.body_read_timeout,
        scrolls: Default::default(),
        search_timeout: config.search.default_timeout,
        search_pool: QueryPool::start(
            "search",
            config.search.max_concurrent,
            config.search.max_queued,
            Arc::clone(&telemetry),
        )
        .context("starting the search threads")?,
        promql_pool: QueryPool::start(
            "promql",
            config.metrics.query_max_concurrency,
            config.metrics.query_max_queued,
            Arc::clone(&telemetry),
        )
        .context("starting the query threads")?,
        started: Instant::now(),
        rules: Default::default(),
        silences: Arc::new(crate::rules::silence::Silences::open(&data_dir.state())),
        scrape: Default::default(),
        series: Arc::clone(&series),
    });
    tasks.spawn(Arc::clone(&tsdb).run(background.clone()));
    let (scrape_jobs, scrape_warnings) = config
        .scrape_jobs()
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    for warning in scrape_warnings {
        tracing::warn!("{warning}");
    }
    if !scrape_jobs.is_empty() {
        let manager = Arc::new(
            crate::scrape::manager::ScrapeManager::new(&scrape_jobs, tsdb)
                .map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?,
        );
        tasks.spawn(Arc::clone(&manager).run(background.clone()));
        let _ = state.scrape.set(manager);
    }
    let limits = server::listener::ConnectionLimits {
        max_connections: server::listener::raise_open_file_limit(config.http.max_connections),
        header_read_timeout: config.http.header_read_timeout,
        shutdown_timeout: config.http.shutdown_timeout,
    };
    let address: SocketAddr = listener.local_addr()?;
    // tests and scripts wait for this line instead of sleeping; a reader that closed its
    // end after it (`lookout serve | head -1`) must not stop the server, so a failed write
    // to stdout is ignored rather than panicking as `println!` would
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on {address}");
        let _ = writeln!(stdout, "web UI at http://{address}/ui/");
        let _ = stdout.flush();
    }
    tracing::info!(%address, data_dir = %config.data_dir.display(), "listening");
    let stopping = CancellationToken::new();
    {
        let (shutdown, stopping) = (shutdown.clone(), stopping.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = signal() => {}
            }
            stopping.cancel();
        });
    }
    let agent = in_process_agent(&config, address, &data_dir, stopping.clone());
    let (history, history_writer) = crate::notify::history::History::new(ingest.clone());
    tasks.spawn(history_writer.run(background.clone()));
    let notifiers = crate::notify::notifiers::Notifiers::build(
        &config.notifiers,
        &config.routing,
        std::env::var("SLACK_WEBHOOK_URL").ok(),
    )
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    let rules = start_rules(
        &config,
        address,
        (&series, &ingest, &state.telemetry, &state.silences),
        (notifiers, history),
        &data_dir,
        &background,
    );
    let _ = state.rules.set(Arc::clone(&rules));
    let telemetry = Arc::clone(&state.telemetry);
    server::listener::serve(
        listener,
        server::router(state),
        limits,
        telemetry,
        async move {
            stopping.cancelled().await;
            // the in-process agent ships what it read and deregisters through this
            // listener, so it stops first
            if let Some(agent) = agent {
                let _ = agent.await;
            }
            tracing::info!("shutting down: finishing requests, committing acknowledged documents");
        },
    )
    .await;
    background.cancel();
    rules.finish_deliveries(config.http.shutdown_timeout).await;
    tasks.close();
    tasks.wait().await;
    ingest.close().await?;
    drop(data_dir);
    tracing::info!("stopped");
    Ok(())
}

/// Runs the rules of `queries/` on their schedules, reloading the directory as it changes.
fn start_rules(
    config: &Config,
    address: SocketAddr,
    (sources, ingest, telemetry, silences): (
        &Arc<crate::rules::observe::Sources>,
        &Arc<Ingest>,
        &Arc<Telemetry>,
        &Arc<crate::rules::silence::Silences>,
    ),
    (notifiers, history): (
        crate::notify::notifiers::Notifiers,
        crate::notify::history::History,
    ),
    data_dir: &DataDir,
    background: &CancellationToken,
) -> Arc<crate::rules::manager::RuleManager> {
    let external_url = config
        .external_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    let dispatcher = crate::notify::dispatch::Dispatcher::new(
        notifiers,
        &config.notify,
        &data_dir.state(),
        external_url.clone(),
        telemetry.clone(),
        history.clone(),
    );
    // a validated config: its inhibit rules and time intervals compile
    let dispatcher = Arc::new(
        dispatcher
            .with_alerting(&config.inhibit_rules, &config.time_intervals)
            .expect("validated config"),
    );
    let manager = Arc::new(crate::rules::manager::RuleManager::new(
        crate::rules::manager::RuleServices {
            sources: sources.clone(),
            ingest: ingest.clone(),
            telemetry: telemetry.clone(),
            silences: silences.clone(),
            history,
        },
        dispatcher,
        data_dir.state(),
        external_url,
        config.queries_dir.clone(),
    ));
    tokio::spawn(Arc::clone(&manager).run(background.clone()));
    if let Some(heartbeat) = config.heartbeat.clone() {
        let (rules, telemetry) = (Arc::clone(&manager), telemetry.clone());
        let interval = heartbeat.interval;
        let health: crate::notify::heartbeat::Health = Arc::new(move || {
            let mut problems = rules.alerting_problems(interval);
            if telemetry.storage_degraded.get() != 0 {
                problems.push("storage is degraded: ingest refuses writes".into());
            }
            problems
        });
        tokio::spawn(crate::notify::heartbeat::run(
            heartbeat,
            health,
            background.clone(),
        ));
    }
    manager
}

/// Starts `[[agent.inputs]]` in-process, shipping to this server over loopback through
/// the same exactly-once protocol as `lookout ship`.
fn in_process_agent(
    config: &Config,
    address: SocketAddr,
    data_dir: &DataDir,
    stopping: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.agent.inputs.is_empty() {
        return None;
    }
    let mut agent = config.agent.clone();
    if agent.to.is_none() {
        let host = if address.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], address.port()))
        } else {
            address
        };
        agent.to = Some(format!("http://{host}"));
    }
    if agent.token.is_none() && agent.token_env.is_none() && agent.token_file.is_none() {
        agent.token = config
            .auth
            .resolve_token()
            .ok()
            .flatten()
            .map(crate::config::Secret);
    }
    let state_dir = data_dir.state().join("agent");
    Some(tokio::spawn(async move {
        if let Err(error) = crate::agent::run(agent, state_dir, stopping).await {
            tracing::error!(%error, "in-process agent stopped");
        }
    }))
}

/// Runs `lookout ship` until SIGINT/SIGTERM, then ships what was read and deregisters.
pub async fn ship(config: crate::agent::config::AgentConfig) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("stopping: shipping what was read, then saving checkpoints");
        trigger.cancel();
    });
    crate::agent::run(config, crate::agent::default_state_dir(), cancel).await?;
    Ok(())
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
