//! The agent (`lookout ship`): tails JSON log files and ships every complete line exactly
//! once through rotation, restarts, crashes and outages (DESIGN §4, issue 3).
//!
//! Built so far, each with its tests: [`fingerprint`] (file identity that survives renames
//! and detects reuse), [`lines`] (complete lines with their offsets), [`batch`] (`_bulk`
//! bodies for Lookout or a plain Elasticsearch) and [`checkpoint`] (acknowledged offsets,
//! persisted atomically). The tailer, shipper and `lookout ship` command build on them.

pub mod batch;
pub mod checkpoint;
pub mod fingerprint;
pub mod lines;
