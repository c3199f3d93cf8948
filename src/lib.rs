//! Lookout: JSON logs and Prometheus metrics in, Slack alerts out, in one binary.
//!
//! ```text
//!  app.json ──tail──▶ agent ──POST /_bulk──▶ ingest ──▶ index (tantivy, time-partitioned)
//!  (files)        checkpoints             WAL + ack         │ count / search / aggs
//!                                                           ▼
//!  queries/*.json ──▶ rules ──▶ scheduler ──▶ evaluate ──▶ alert state ──▶ notify ──▶ Slack
//! ```
//!
//! Modules follow the flow: [`ingest`] accepts batches and makes them durable, [`index`]
//! stores and searches them, [`server`] is the HTTP API, [`app`] wires everything and owns
//! shutdown.

pub mod agent;
pub mod app;
pub mod atomic_file;
pub mod audit;
pub mod backtest;
pub mod check;
pub mod config;
pub mod data_dir;
pub mod datasource;
pub mod demo;
pub mod diagnostic;
pub mod duration_serde;
pub mod fault;
pub mod http_auth;
pub mod index;
pub mod index_name;
pub mod ingest;
pub mod keys;
pub mod notify;
pub mod panic;
pub mod patterns;
pub mod promql;
pub mod relabel;
pub mod remote_write;
pub mod rules;
pub mod scheduler;
pub mod scrape;
pub mod secret;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod template;
pub mod tenant;
pub mod tsdb;

/// The stack of every thread that runs requests, rules or queries (tokio's workers and
/// blocking pool; tokio's default is 2 MiB). Recursive parsers and evaluators bound their
/// input's depth so that an accepted input needs a small part of it (`promql::depth`,
/// `index::query`'s nesting limit); Rust aborts the whole process on a stack overflow, so
/// these limits are what keeps one hostile query from taking the server down.
pub const THREAD_STACK_BYTES: usize = 8 << 20;

/// A multi-threaded tokio runtime whose threads have [`THREAD_STACK_BYTES`] of stack.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
}

/// Installs rustls' `ring` provider for every HTTPS client of the process (reqwest is
/// built without a default provider, to avoid compiling aws-lc). Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
