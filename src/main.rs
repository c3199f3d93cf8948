//! The `lookout` command: a thin CLI over the library. Errors become exit codes here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc's allocator spent a fifth of ingest CPU in malloc/free (measured with perf on
// `cargo bench --bench ingest`); mimalloc is the standard drop-in for such workloads.
// Built without the `mimalloc` feature, the system allocator stays (for heap profilers).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use lookout::agent::cli::{ShipFlags, ship_config};
use lookout::config::Config;

#[derive(Parser)]
#[command(
    name = "lookout",
    version,
    about = "Log alerting in one binary: JSON logs and Prometheus metrics in, Slack alerts out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: Elasticsearch-compatible ingest and search, the agent protocol,
    /// metrics. With no config it runs on embedded defaults (127.0.0.1:9200, ./data).
    Serve {
        /// TOML config file (see config/lookout.toml); flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:9200 (a non-loopback address needs auth or --insecure).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory (index, write-ahead log, state).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Directory of saved queries (alert rules).
        #[arg(long)]
        queries: Option<PathBuf>,
        /// Allow a non-loopback --listen without auth.token.
        #[arg(long)]
        insecure: bool,
    },
    /// Run the agent: tail JSON log files and ship every complete line exactly once to
    /// Lookout (or any Elasticsearch-compatible `_bulk` endpoint).
    Ship {
        /// TOML config file (see config/agent.toml); flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: ShipFlags,
    },
    /// Metrics store tools.
    Tsdb {
        #[command(subcommand)]
        command: TsdbCommand,
    },
    /// A self-contained demonstration, no config needed: a simulated shop logs and serves
    /// metrics, Lookout ships, scrapes and alerts on them; an incident every few minutes
    /// fires and resolves alerts (printed here; to Slack too when SLACK_WEBHOOK_URL is set).
    Demo {
        /// Address of the demo's Lookout server.
        #[arg(long, default_value = "127.0.0.1:9200")]
        listen: SocketAddr,
        /// Keep the demo's data here (default: a temporary directory removed at exit).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Run the schedules this many times faster (1: an incident every 5 minutes).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Stop after this many alerts fired and resolved (0: run until Ctrl-C).
        #[arg(long, default_value_t = 0)]
        cycles: usize,
    },
    /// Rule tools: backtests and rule unit tests.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// API keys: create (the token is printed once), list, revoke. Created keys live in
    /// DATA_DIR/state/keys.json as hashes; a running server sees changes at once.
    Keys {
        /// Server config file, for data_dir and the configured keys' names.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Data directory (default: the config's, else ./data).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Validate config and rule files; every error with file and field; exit 1 on any.
    Check {
        /// Files to check: *.toml as server config, *.json as rules, directories of rules.
        paths: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Backtest RULE.json over the indexed history of a running server (prints when it
    /// would have fired and resolved, and the messages it would have sent; sends
    /// nothing), or run rule unit tests with --fixtures (exit 1 on a mismatch).
    Test {
        /// The rule file to backtest (its file name is the rule name).
        #[arg(required_unless_present = "fixtures")]
        rule: Option<PathBuf>,
        /// Start of the backtest: RFC 3339 or relative (now-6h).
        #[arg(long, default_value = "now-1h")]
        from: String,
        /// End of the backtest: RFC 3339 or relative.
        #[arg(long, default_value = "now")]
        to: String,
        /// The server whose index is replayed (default: the config's listen address;
        /// without either, http://127.0.0.1:9200 only if it is a Lookout holding the
        /// rule's index). The report names the server it used.
        #[arg(long)]
        server: Option<String>,
        /// Server config file, for the listen address and the auth token.
        #[arg(long)]
        config: Option<PathBuf>,
        /// PEM file of the certificate authorities to trust for an https --server (a
        /// private CA), beside the system's; the server's certificate is always checked.
        #[arg(long, value_name = "PATH")]
        ca_file: Option<PathBuf>,
        /// A rule unit test file in `promtool test rules`' YAML layout plus `input_logs`.
        #[arg(long, conflicts_with = "rule")]
        fixtures: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its token (shown this once; only its hash is stored).
    Create {
        /// The key's name (letters, digits, `-`, `_`, `.`), shown in logs and the audit trail.
        #[arg(long)]
        name: String,
        /// ingest (writes only), read, edit (rules, silences) or admin.
        #[arg(long)]
        role: String,
        /// The one tenant the key acts for (default: `default`).
        #[arg(long, conflicts_with = "tenants")]
        tenant: Option<String>,
        /// Several tenants, comma-separated, or `*` for every tenant (an operator key).
        #[arg(long, value_delimiter = ',')]
        tenants: Option<Vec<String>>,
    },
    /// List the keys (configured and created), never their secrets.
    List,
    /// Revoke a created key; it stops working at once, also in a running server.
    Revoke {
        /// The key's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum TsdbCommand {
    /// Backfill an OpenMetrics text file (timestamps on every sample, ending in `# EOF`)
    /// into blocks, like `promtool tsdb create-blocks-from openmetrics`. A running server
    /// picks the blocks up within a minute.
    Import {
        /// Server config file, for data_dir and metrics.block_duration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (default: the config's, else ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The OpenMetrics file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOOKOUT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tantivy=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    lookout::install_tls_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            queries,
            insecure,
        } => {
            let mut config = match server_config(config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(data_dir) = data_dir {
                config.data_dir = data_dir;
            }
            if let Some(queries) = queries {
                config.queries_dir = queries;
            }
            config.auth.insecure |= insecure;
            run(lookout::app::serve(
                config,
                tokio_util::sync::CancellationToken::new(),
            ))
        }
        Command::Ship { config, flags } => match ship_config(config.as_deref(), flags) {
            Ok(config) => run(lookout::app::ship(config)),
            Err(errors) => {
                for error in errors {
                    eprintln!("{error}");
                }
                ExitCode::from(2)
            }
        },
        Command::Tsdb {
            command:
                TsdbCommand::Import {
                    config,
                    data_dir,
                    file,
                },
        } => tsdb_import(config, data_dir, &file),
        Command::Check { paths } => check(paths),
        Command::Keys {
            config,
            data_dir,
            command,
        } => keys(config, data_dir, command),
        Command::Demo {
            listen,
            data_dir,
            speed,
            cycles,
        } => run(lookout::demo::run(lookout::demo::DemoOptions {
            listen,
            data_dir,
            speed,
            cycles,
        })),
        Command::Rules {
            command:
                RulesCommand::Test {
                    rule,
                    from,
                    to,
                    server,
                    config,
                    ca_file,
                    fixtures,
                },
        } => match (fixtures, rule) {
            (Some(fixtures), _) => rules_fixtures(&fixtures),
            (None, Some(rule)) => rules_backtest(&rule, (&from, &to), server, config, ca_file),
            (None, None) => ExitCode::from(2),
        },
    }
}

fn rules_fixtures(path: &std::path::Path) -> ExitCode {
    let outcome = lookout::runtime()
        .map_err(|error| error.to_string())
        .and_then(|runtime| {
            runtime
                .block_on(lookout::rules::fixtures::run(path))
                .map_err(|error| error.to_string())
        });
    match outcome {
        Ok(report) => {
            for failure in &report.failures {
                println!("FAILED {failure}");
            }
            println!(
                "{}: {} passed, {} failed",
                path.display(),
                report.passed,
                report.failures.len()
            );
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("lookout rules test: {error}");
            ExitCode::from(2)
        }
    }
}

fn rules_backtest(
    rule: &std::path::Path,
    (from, to): (&str, &str),
    server: Option<String>,
    config: Option<PathBuf>,
    ca_file: Option<PathBuf>,
) -> ExitCode {
    let chosen_by = match (&server, &config) {
        (Some(_), _) => lookout::backtest::ServerChoice::Flag,
        (None, Some(_)) => lookout::backtest::ServerChoice::Config,
        (None, None) => lookout::backtest::ServerChoice::Default,
    };
    let config = match server_config(config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let url = server.unwrap_or_else(|| {
        let mut address = config.listen;
        if address.ip().is_unspecified() {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{address}")
    });
    let token = match config.auth.resolve_token() {
        Ok(token) => token.or_else(|| std::env::var("LOOKOUT_TOKEN").ok()),
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let server = lookout::backtest::Server {
        url,
        token,
        chosen_by,
        ca_file,
    };
    let outcome = lookout::runtime()
        .map_err(|error| error.to_string())
        .and_then(|runtime| runtime.block_on(lookout::backtest::run(&server, rule, from, to)));
    match outcome {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("lookout rules test: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The server config at `path` (the defaults without one); exit code 2 when it is wrong.
fn server_config(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    match path {
        Some(path) => Config::load(&path).map_err(|error| {
            eprintln!("{error}");
            ExitCode::from(2)
        }),
        None => Ok(Config::default()),
    }
}

fn tsdb_import(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    file: &std::path::Path,
) -> ExitCode {
    let config = match server_config(config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let data_dir = data_dir.unwrap_or(config.data_dir);
    match lookout::scrape::import::import(&data_dir, file, config.metrics.block_duration) {
        Ok(report) => {
            let time = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map_or_else(|| ms.to_string(), |time| time.to_rfc3339())
            };
            println!(
                "imported {} samples of {} series into {} blocks ({} to {}) in {}",
                report.samples,
                report.series,
                report.blocks,
                time(report.min_time),
                time(report.max_time),
                data_dir.join("tsdb/blocks").display()
            );
            if report.server_running {
                println!(
                    "a running server holds the data directory; it picks the new blocks up within a minute"
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("lookout tsdb import: {error}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc by default commits arena memory eagerly and gives freed pages back late. Both
/// options off cost nothing measurable and keep far less memory resident:
/// - the agent: 60 MiB RSS on a 64 MiB backlog, against 24 MiB with them off;
/// - the server, `cargo bench --bench soak` (20 min): heap 275–285 MiB, against 119–131
///   MiB, at the same CPU; `cargo bench --bench ingest` (1 M varied lines): 26.6 against
///   28.5 MB/s, peak RSS 517 against 337 MiB.
///
/// mimalloc reads its options from the environment when the process starts, so `lookout`
/// re-executes itself once with them set (same pid, same arguments), unless they are set.
fn tune_allocator() {
    if !cfg!(feature = "mimalloc") {
        return;
    }
    use std::os::unix::process::CommandExt;
    const OPTIONS: [(&str, &str); 2] = [
        ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
        ("MIMALLOC_PURGE_DELAY", "0"),
    ];
    if OPTIONS
        .iter()
        .any(|(name, _)| std::env::var_os(name).is_some())
    {
        return;
    }
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(executable)
        .args(std::env::args_os().skip(1))
        .envs(OPTIONS)
        .exec();
    // exec returns only when it failed: run as we are
    eprintln!("lookout: cannot re-execute with allocator options ({error}); continuing");
}

fn run(future: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match lookout::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("lookout: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lookout: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `lookout keys`: works on the keys file directly (under its lock), so it needs no
/// running server and a running one sees the change at its next request.
fn keys(config: Option<PathBuf>, data_dir: Option<PathBuf>, command: KeysCommand) -> ExitCode {
    use lookout::keys::{KeyFile, configured_keys, tenant_scope};
    let config = match server_config(config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let data_dir = data_dir.unwrap_or_else(|| config.data_dir.clone());
    let file = KeyFile::in_state_dir(&data_dir.join("state"));
    let configured = match configured_keys(&config.auth) {
        Ok(keys) => keys,
        Err(errors) => {
            for error in errors {
                eprintln!("lookout keys: {error}");
            }
            return ExitCode::from(2);
        }
    };
    let outcome = match command {
        KeysCommand::Create {
            name,
            role,
            tenant,
            tenants,
        } => {
            let role = match serde_json::from_value::<lookout::server::access::Role>(
                serde_json::Value::String(role.clone()),
            ) {
                Ok(role) => role,
                Err(_) => {
                    eprintln!(
                        "lookout keys create: unknown role `{role}`; use ingest, read, edit or admin"
                    );
                    return ExitCode::from(2);
                }
            };
            tenant_scope(tenant.as_deref(), tenants.as_deref())
                .and_then(|scope| {
                    file.create(&name, role, &scope, |name| {
                        configured.iter().any(|key| key.name == name)
                    })
                })
                .map(|(key, token)| {
                    eprintln!(
                        "created key `{}` (role {}, tenants {}) in {}; its token is printed once, on stdout:",
                        key.name,
                        lookout::server::auth::role_name(key.role),
                        lookout::keys::scope_list(&key.tenants).join(","),
                        file.path().display()
                    );
                    println!("{token}");
                })
        }
        KeysCommand::List => file.read().map(|created| {
            println!(
                "{:<24} {:<7} {:<9} {:<21} TENANTS",
                "NAME", "ROLE", "SOURCE", "CREATED"
            );
            for key in configured.iter().chain(created.iter()) {
                println!(
                    "{:<24} {:<7} {:<9} {:<21} {}",
                    key.name,
                    lookout::server::auth::role_name(key.role),
                    match key.source {
                        lookout::keys::KeySource::Config => "config",
                        lookout::keys::KeySource::Created => "created",
                        lookout::keys::KeySource::Internal => "internal",
                    },
                    key.created.as_deref().unwrap_or("-"),
                    lookout::keys::scope_list(&key.tenants).join(",")
                );
            }
        }),
        KeysCommand::Revoke { name } => {
            if configured.iter().any(|key| key.name == name) {
                Err(lookout::keys::KeyError::Configured(name))
            } else {
                file.revoke(&name).map(|()| {
                    eprintln!("revoked key `{name}`");
                })
            }
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lookout keys: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `lookout check`: prints the report in order; exit 1 on any error.
fn check(paths: Vec<PathBuf>) -> ExitCode {
    let report = lookout::check::check(paths);
    for line in &report.lines {
        match line {
            lookout::check::Line::Note(text) => println!("{text}"),
            lookout::check::Line::Problem(text) => eprintln!("{text}"),
        }
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
