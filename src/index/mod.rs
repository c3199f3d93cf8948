//! The log index: user-named indices, each split into event-time partitions of tantivy
//! indexes (`schema`, `document`, `tokenizer`, `partition`, `store`), queried with the ES
//! query DSL and Lucene syntax (`query`), searched and aggregated (`search`,
//! `aggregation`).
//!
//! Writes arrive only from the ingest path, already durable in its write-ahead log, in
//! WAL order; the store commits partitions on the refresh interval and reports up to which
//! WAL sequence everything is committed, so the log can be truncated.

pub mod aggregation;
pub mod body;
pub mod document;
pub mod fields;
pub mod partition;
pub mod query;
pub mod schema;
pub mod search;
pub mod store;
pub mod time_window;
pub mod tokenizer;

pub use store::{IndexStore, StoreError};
