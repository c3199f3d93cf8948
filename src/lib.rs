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
pub mod config;
pub mod data_dir;
pub mod demo;
pub mod duration_serde;
pub mod error;
pub mod index;
pub mod ingest;
pub mod notify;
pub mod promql;
pub mod rules;
pub mod scheduler;
pub mod scrape;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod tsdb;

/// Installs rustls' `ring` provider for every HTTPS client of the process (reqwest is
/// built without a default provider, to avoid compiling aws-lc). Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
