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
    let configured_keys = crate::keys::configured_keys(&config.auth)
        .map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?;
    let created_keys = crate::keys::KeyFile::in_state_dir(&config.data_dir.join("state"))
        .read()
        .map_err(anyhow::Error::new)?;
    if !config.listen.ip().is_loopback()
        && configured_keys.is_empty()
        && created_keys.is_empty()
        && !config.auth.insecure
    {
        anyhow::bail!(
            "refusing to listen on non-loopback address {} without authentication: set auth.token_env (or auth.token_file), configure [[auth.keys]], create one with `lookout keys create`, or pass --insecure",
            config.listen
        );
    }
    let tls = match config.tls.enabled() {
        true => Some(Arc::new(
            server::tls::ReloadingTls::new(server::tls::TlsFiles::from_config(&config.tls))
                .map_err(|error| anyhow::anyhow!("{error}"))?,
        )),
        false => None,
    };
    if !config.listen.ip().is_loopback() && tls.is_none() && !config.auth.insecure {
        tracing::warn!(
            listen = %config.listen,
            "listening beyond loopback without TLS: tokens and logs travel in clear; set [tls] cert_file and key_file (or auth.insecure = true on a trusted network)"
        );
    }
    if tls.is_some() && !config.agent.inputs.is_empty() && config.agent.to.is_none() {
        anyhow::bail!(
            "with [tls], the in-process agent of [[agent.inputs]] needs `agent.to`: an https:// URL whose host the certificate names (and `agent.tls_ca_file` for a private CA)"
        );
    }
    let browser_guard = server::browser_guard::BrowserGuard {
        hosts: server::browser_guard::AllowedHosts::from_config(
            &config.http.allowed_hosts,
            config.listen.ip().is_loopback(),
        )
        .map_err(anyhow::Error::msg)?,
    };
    // the port first: a taken port fails before anything is created on disk
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address: SocketAddr = listener.local_addr()?;
    let data_dir = DataDir::open(&config.data_dir)?;
    let telemetry = Arc::new(Telemetry::default());
    let disk = Arc::new(crate::storage::DiskSpace::new(
        &data_dir.root,
        config.storage.clone(),
        telemetry.clone(),
    ));
    let keys = crate::keys::KeyStore::open(configured_keys, &data_dir.state())?;
    let (scrape_jobs, scrape_warnings) = config
        .scrape_jobs()
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    for warning in scrape_warnings {
        tracing::warn!("{warning}");
    }
    let audits = Arc::new(crate::audit::Trails::default());
    let datasources = Arc::new(
        crate::datasource::Datasources::build(&config.datasources)
            .map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?,
    );
    let shared = Shared {
        datasources: &datasources,
        config: &config,
        telemetry: &telemetry,
        disk: &disk,
        address,
        keys: &keys,
        audits: &audits,
        in_flight: None,
    };
    let mut tenants: Vec<Tenant> = Vec::new();
    for spec in tenant_specs(&config, scrape_jobs) {
        let directory = if spec.is_default() {
            data_dir.layout()
        } else {
            data_dir.tenant(&spec.name)?
        };
        let in_flight = tenants
            .first()
            .map(|first| Arc::clone(&first.state.in_flight));
        let in_flight = in_flight.as_ref();
        let tenant = Tenant::start(
            &spec,
            &directory,
            &Shared {
                in_flight,
                ..shared
            },
        )
        .await;
        // a one-tenant setup reports its errors as it always did
        let tenant = if spec.is_default() {
            tenant?
        } else {
            tenant.with_context(|| format!("starting tenant `{}`", spec.name))?
        };
        tenants.push(tenant);
    }
    {
        let ingests: Vec<Arc<Ingest>> =
            tenants.iter().map(|tenant| tenant.ingest.clone()).collect();
        tenants[0].tasks.spawn(disk.clone().run(
            move || {
                let ingests = ingests.clone();
                async move {
                    let mut recovered = true;
                    for ingest in ingests {
                        recovered &= ingest.recover().await;
                    }
                    recovered
                }
            },
            tenants[0].background.clone(),
        ));
    }
    if let Some(heartbeat) = config.heartbeat.clone() {
        start_heartbeat(heartbeat, &tenants, &telemetry);
    }
    let limits = server::listener::ConnectionLimits {
        max_connections: server::listener::raise_open_file_limit(config.http.max_connections),
        header_read_timeout: config.http.header_read_timeout,
        shutdown_timeout: config.http.shutdown_timeout,
    };
    // tests and scripts wait for this line instead of sleeping; a reader that closed its
    // end after it (`lookout serve | head -1`) must not stop the server, so a failed write
    // to stdout is ignored rather than panicking as `println!` would
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on {address}");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let _ = writeln!(stdout, "web UI at {scheme}://{address}/ui/");
        let _ = stdout.flush();
    }
    tracing::info!(%address, data_dir = %config.data_dir.display(), tenants = tenants.len(), "listening");
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
    let agent = in_process_agent(&config, address, &data_dir, &keys, stopping.clone());
    let listener_state = Arc::new(server::ListenerState {
        auth: Arc::new(server::auth::Authenticator {
            keys: Arc::clone(&keys),
            failures: Default::default(),
            audits,
        }),
        browser_guard,
        telemetry: Arc::clone(&telemetry),
        body_read_timeout: config.http.body_read_timeout,
        tenants: server::dispatch::Tenants::new(
            tenants.iter().map(|tenant| Arc::clone(&tenant.state)),
        ),
    });
    server::listener::serve(
        listener,
        server::router(listener_state),
        limits,
        telemetry,
        tls,
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
    // every tenant stops as one did before tenants: background work first, then the
    // deliveries in progress, then the index commits what was acknowledged
    for tenant in &tenants {
        tenant.background.cancel();
    }
    for tenant in tenants {
        tenant.stop(config.http.shutdown_timeout).await?;
    }
    drop(data_dir);
    tracing::info!("stopped");
    Ok(())
}

/// The configured tenants' specs, the default tenant first; `default` is the one built
/// from the top-level options (`scrape_configs` are its jobs, `prometheus_config`'s
/// included).
pub fn tenant_specs(
    config: &crate::config::Config,
    default_scrape: Vec<crate::scrape::target::ScrapeConfig>,
) -> Vec<crate::tenant::TenantSpec> {
    let mut specs = vec![crate::tenant::TenantSpec {
        name: crate::tenant::DEFAULT_TENANT.to_owned(),
        queries_dir: config.queries_dir.clone(),
        notifiers: config.notifiers.clone(),
        routing: config.routing.clone(),
        scrape_configs: default_scrape,
        inhibit_rules: config.inhibit_rules.clone(),
        time_intervals: config.time_intervals.clone(),
        limits: config.limits.clone(),
        slack_from_env: true,
    }];
    for (name, tenant) in &config.tenants {
        specs.push(crate::tenant::TenantSpec {
            name: name.clone(),
            queries_dir: crate::tenant::queries_dir(tenant, name, &config.queries_dir),
            notifiers: tenant.notifiers.clone(),
            routing: tenant.routing.clone(),
            scrape_configs: tenant.scrape_configs.clone(),
            inhibit_rules: tenant.inhibit_rules(&config.inhibit_rules).to_vec(),
            time_intervals: tenant.time_intervals(&config.time_intervals).to_vec(),
            limits: tenant.limits.merged_over(&config.limits),
            slack_from_env: false,
        });
    }
    specs
}

/// What every tenant's world is built with.
#[derive(Clone, Copy)]
struct Shared<'a> {
    config: &'a Config,
    telemetry: &'a Arc<Telemetry>,
    disk: &'a Arc<crate::storage::DiskSpace>,
    address: SocketAddr,
    keys: &'a Arc<crate::keys::KeyStore>,
    /// Every tenant's audit trail; each tenant adds its own as it starts.
    audits: &'a Arc<crate::audit::Trails>,
    /// `[datasources.NAME]`, which every tenant's rules may query.
    datasources: &'a Arc<crate::datasource::Datasources>,
    /// The in-flight byte budget of the first tenant, which the others share.
    in_flight: Option<&'a Arc<tokio::sync::Semaphore>>,
}

/// One tenant's world: index and ingest, metrics store and scrapes, rules and their
/// alerts, silences, notifiers and history, query pools, all its own.
struct Tenant {
    state: server::SharedState,
    ingest: Arc<Ingest>,
    rules: Arc<crate::rules::manager::RuleManager>,
    tasks: TaskTracker,
    background: CancellationToken,
}

impl Tenant {
    /// Opens the tenant's stores in `directory` (replaying their logs) and starts its
    /// refresher, metrics store, scrapes and rules.
    async fn start(
        spec: &crate::tenant::TenantSpec,
        directory: &crate::data_dir::TenantDir,
        shared: &Shared<'_>,
    ) -> anyhow::Result<Tenant> {
        let config = shared.config;
        // each tenant counts its own ingest, queries, rules and notifications (`/metrics`
        // labels them by tenant); the default tenant's are the listener's, as before
        let own_telemetry = Arc::new(Telemetry::default());
        let telemetry = if spec.is_default() {
            shared.telemetry
        } else {
            &own_telemetry
        };
        let settings = config.store_settings();
        let indices = directory.indices();
        let started = Instant::now();
        let store = Arc::new(
            tokio::task::spawn_blocking(move || IndexStore::open(&indices, settings))
                .await
                .context("opening the index")??,
        );
        let ingest_settings = config.ingest_settings();
        let (wal, state_dir, ingest_store, ingest_telemetry, ingest_disk) = (
            directory.wal(),
            directory.state(),
            store.clone(),
            telemetry.clone(),
            shared.disk.clone(),
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
            tenant = %spec.name,
            indices = store.names().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index opened"
        );

        let tasks = TaskTracker::new();
        let background = CancellationToken::new();
        tasks.spawn(ingest.clone().run_refresher(background.clone()));

        let tsdb_dir = directory.tsdb();
        let tsdb_options = crate::tsdb::TsdbOptions {
            max_series: spec.limits.max_active_series,
            ..config.metrics.tsdb_options()
        };
        let tsdb = Arc::new(
            tokio::task::spawn_blocking(move || crate::tsdb::Tsdb::open(&tsdb_dir, tsdb_options))
                .await
                .context("opening the metrics store")?
                .context("opening the metrics store")?,
        );
        tsdb.attach_disk(shared.disk.clone());
        let series = Arc::new(crate::rules::observe::Sources {
            store: store.clone(),
            tsdb: Arc::clone(&tsdb),
            log_matches: Arc::new(crate::rules::log_matches::LogMatches::new(store.clone())),
            slos: Arc::new(crate::rules::slo::series::SloSeries::new(
                store.clone(),
                Arc::clone(&tsdb),
                config.metrics.engine_options(),
            )),
            engine: config.metrics.engine_options(),
            datasources: Arc::clone(shared.datasources),
            new_terms: Arc::new(crate::rules::new_term::NewTerms::new(
                directory.state().join("new_terms"),
                Arc::clone(telemetry),
            )),
        });
        // every sample the default tenant's store logs goes to `[[remote_write]]` too
        let remote_write = if spec.is_default() {
            let remotes = crate::remote_write::build(&config.remote_write)
                .map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?;
            crate::remote_write::start(
                remotes,
                tsdb.wal_dir(),
                directory.state(),
                config.global.external_labels.clone(),
                &tasks,
                background.clone(),
            )
        } else {
            Default::default()
        };
        // the tenant's limit sizes its pools (each pool: searches, PromQL)
        let queries = |configured: usize| spec.limits.max_concurrent_queries.unwrap_or(configured);
        let state = Arc::new(AppState {
            tenant: spec.name.clone(),
            store: store.clone(),
            ingest: ingest.clone(),
            telemetry: Arc::clone(telemetry),
            limits: Arc::new(crate::tenant::limits::TenantLimits::new(
                &spec.name,
                spec.limits.clone(),
            )),
            max_body_bytes: config.ingest.max_body_bytes,
            in_flight: shared
                .in_flight
                .map_or_else(|| Arc::clone(&ingest.in_flight), Arc::clone),
            body_read_timeout: config.http.body_read_timeout,
            scrolls: Default::default(),
            search_timeout: config.search.default_timeout,
            search_pool: QueryPool::start(
                "search",
                queries(config.search.max_concurrent),
                config.search.max_queued,
                Arc::clone(telemetry),
            )
            .context("starting the search threads")?,
            promql_pool: QueryPool::start(
                "promql",
                queries(config.metrics.query_max_concurrency),
                config.metrics.query_max_queued,
                Arc::clone(telemetry),
            )
            .context("starting the query threads")?,
            started: Instant::now(),
            rules: Default::default(),
            silences: Arc::new(crate::rules::silence::Silences::open(&directory.state())),
            scrape: Default::default(),
            series: Arc::clone(&series),
            keys: Arc::clone(shared.keys),
            audit: Arc::new(crate::audit::Audit::new(ingest.clone())),
            audits: Arc::clone(shared.audits),
            destructive_requires_name: config.index.destructive_requires_name,
            remote_write: Arc::new(remote_write),
            external_labels: Arc::new(config.global.external_labels.clone()),
        });
        shared.audits.insert(&spec.name, Arc::clone(&state.audit));
        record_start(&state, spec, shared.keys, directory).await;
        tasks.spawn(Arc::clone(&tsdb).run(background.clone()));
        if !spec.scrape_configs.is_empty() {
            let manager = Arc::new(
                crate::scrape::manager::ScrapeManager::new(&spec.scrape_configs, tsdb)
                    .map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?,
            );
            tasks.spawn(Arc::clone(&manager).run(background.clone()));
            let _ = state.scrape.set(manager);
        }
        let (history, history_writer) = crate::notify::history::History::new(ingest.clone());
        tasks.spawn(history_writer.run(background.clone()));
        let notifiers = crate::notify::notifiers::Notifiers::build(
            &spec.notifiers,
            &spec.routing,
            std::env::var("SLACK_WEBHOOK_URL")
                .ok()
                .filter(|_| spec.slack_from_env),
        )
        .map_err(|error| anyhow::anyhow!("{error}"))?;
        let rules = start_rules(
            config,
            spec,
            shared.address,
            (&series, &ingest, &state.telemetry, &state.silences),
            (notifiers, history),
            directory,
            &background,
        );
        let _ = state.rules.set(Arc::clone(&rules));
        Ok(Tenant {
            state,
            ingest,
            rules,
            tasks,
            background,
        })
    }

    /// Finishes the deliveries in progress and commits every acknowledged document
    /// (after `background` was cancelled).
    async fn stop(self, shutdown_timeout: std::time::Duration) -> anyhow::Result<()> {
        self.background.cancel();
        self.rules.finish_deliveries(shutdown_timeout).await;
        self.tasks.close();
        self.tasks.wait().await;
        self.ingest.close().await?;
        Ok(())
    }
}

/// Audits the tenant's limits and keys when they differ from its last start's (they
/// change only with the config, at a restart).
async fn record_start(
    state: &AppState,
    spec: &crate::tenant::TenantSpec,
    keys: &crate::keys::KeyStore,
    directory: &crate::data_dir::TenantDir,
) {
    let keys: serde_json::Map<String, serde_json::Value> = keys
        .list()
        .iter()
        .filter(|key| key.tenants.allows(&spec.name))
        .map(|key| (key.name.clone(), key.describe().into()))
        .collect();
    let limits = serde_json::to_value(&spec.limits).unwrap_or_default();
    state
        .audit
        .record_start(
            &spec.name,
            &directory.state(),
            serde_json::json!({"limits": limits, "keys": keys}),
        )
        .await;
}

/// Runs the rules of the tenant's queries directory on their schedules, reloading the
/// directory as it changes.
fn start_rules(
    config: &Config,
    spec: &crate::tenant::TenantSpec,
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
    directory: &crate::data_dir::TenantDir,
    background: &CancellationToken,
) -> Arc<crate::rules::manager::RuleManager> {
    let external_url = config.external_url.clone().unwrap_or_else(|| {
        let scheme = if config.tls.enabled() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{address}")
    });
    let dispatcher = crate::notify::dispatch::Dispatcher::new(
        notifiers,
        &config.notify,
        &directory.state(),
        external_url.clone(),
        telemetry.clone(),
        history.clone(),
    );
    // a validated config: the tenant's inhibit rules and time intervals compile
    let dispatcher = Arc::new(
        dispatcher
            .with_alerting(&spec.inhibit_rules, &spec.time_intervals)
            .expect("validated config")
            .with_external_labels(
                config.global.external_labels.clone(),
                crate::relabel::Relabel::build(
                    &config.alert_relabel_configs,
                    "alert_relabel_configs",
                )
                .expect("validated config"),
            ),
    );
    let manager = Arc::new(
        crate::rules::manager::RuleManager::new(
            crate::rules::manager::RuleServices {
                sources: sources.clone(),
                ingest: ingest.clone(),
                telemetry: telemetry.clone(),
                silences: silences.clone(),
                history,
            },
            dispatcher,
            directory.state(),
            external_url,
            spec.queries_dir.clone(),
        )
        .with_max_rules(spec.limits.max_rules),
    );
    tokio::spawn(Arc::clone(&manager).run(background.clone()));
    manager
}

/// One dead man's switch for the whole server (however many tenants): it pings only
/// while every tenant's rules tick on time and deliver, and storage accepts writes.
fn start_heartbeat(
    heartbeat: crate::notify::heartbeat::HeartbeatConfig,
    tenants: &[Tenant],
    telemetry: &Arc<Telemetry>,
) {
    let rules: Vec<(String, Arc<crate::rules::manager::RuleManager>)> = tenants
        .iter()
        .map(|tenant| (tenant.state.tenant.clone(), Arc::clone(&tenant.rules)))
        .collect();
    let storage = Arc::clone(telemetry);
    let interval = heartbeat.interval;
    let health: crate::notify::heartbeat::Health = Arc::new(move || {
        let mut problems = Vec::new();
        for (tenant, manager) in &rules {
            for problem in manager.alerting_problems(interval) {
                problems.push(if rules.len() > 1 {
                    format!("tenant `{tenant}`: {problem}")
                } else {
                    problem
                });
            }
        }
        if storage.storage_degraded.get() != 0 {
            problems.push("storage is degraded: ingest refuses writes".into());
        }
        problems
    });
    tenants[0].tasks.spawn(crate::notify::heartbeat::run(
        heartbeat,
        health,
        Arc::clone(telemetry),
        tenants[0].background.clone(),
    ));
}

/// Starts `[[agent.inputs]]` in-process, shipping to this server over loopback through
/// the same exactly-once protocol as `lookout ship`.
fn in_process_agent(
    config: &Config,
    address: SocketAddr,
    data_dir: &DataDir,
    keys: &crate::keys::KeyStore,
    stopping: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.agent.inputs.is_empty() {
        return None;
    }
    let mut agent = config.agent.clone();
    let to_this_server = agent.to.is_none();
    if to_this_server {
        let host = if address.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], address.port()))
        } else {
            address
        };
        agent.to = Some(format!("http://{host}"));
    }
    if agent.token.is_none() && agent.token_env.is_none() && agent.token_file.is_none() {
        agent.token = if to_this_server {
            // its own ingest key, in memory only: whatever keys are configured or created
            // later, the in-process agent can write to this server and do nothing else
            Some(crate::config::Secret(keys.add_internal(
                "lookout-agent",
                crate::server::access::Role::Ingest,
                crate::server::access::TenantScope::Some(vec![
                    crate::server::access::DEFAULT_TENANT.to_owned(),
                ]),
            )))
        } else {
            config
                .auth
                .resolve_token()
                .ok()
                .flatten()
                .map(crate::config::Secret)
        };
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
