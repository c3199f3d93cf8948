//! The `lookout` command: a thin CLI over the library. Errors become exit codes here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc's allocator spent a fifth of ingest CPU in malloc/free (measured with perf on
// `cargo bench --bench ingest`); mimalloc is the standard drop-in for such workloads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
    /// Validate config and rule files; every error with file and field; exit 1 on any.
    Check {
        /// Files to check: *.toml as server config, *.json as rules, directories of rules.
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOOKOUT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tantivy=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            queries,
            insecure,
        } => {
            let mut config = match config {
                Some(path) => match Config::load(&path) {
                    Ok(config) => config,
                    Err(error) => {
                        eprintln!("{error}");
                        return ExitCode::from(2);
                    }
                },
                None => Config::default(),
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
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("lookout: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(lookout::app::serve(
                config,
                tokio_util::sync::CancellationToken::new(),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("lookout: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { paths } => check(paths),
    }
}

fn check(paths: Vec<PathBuf>) -> ExitCode {
    let paths = if paths.is_empty() {
        vec![
            PathBuf::from("config/lookout.toml"),
            PathBuf::from("queries"),
        ]
    } else {
        paths
    };
    let mut errors = Vec::new();
    let mut checked = 0;
    for path in paths {
        let files: Vec<PathBuf> = if path.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|file| {
                        file.extension()
                            .is_some_and(|extension| extension == "json")
                    })
                    .collect(),
                Err(error) => {
                    errors.push(format!("{}: cannot read: {error}", path.display()));
                    continue;
                }
            }
        } else {
            vec![path]
        };
        for file in files {
            checked += 1;
            let result = match file.extension().and_then(|extension| extension.to_str()) {
                Some("toml") => Config::load(&file)
                    .map(|_| ())
                    .map_err(|error| error.errors),
                _ => lookout::rules::model::read_rule(&file)
                    .map(|_| ())
                    .map_err(|error| vec![error]),
            };
            if let Err(found) = result {
                errors.extend(found);
            }
        }
    }
    for error in &errors {
        eprintln!("{error}");
    }
    if errors.is_empty() {
        println!("{checked} file(s) OK");
        ExitCode::SUCCESS
    } else {
        eprintln!("{} error(s) in {checked} file(s)", errors.len());
        ExitCode::FAILURE
    }
}
