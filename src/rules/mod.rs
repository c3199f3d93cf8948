//! Saved queries and alert rules (`queries/*.json`, DESIGN §5).
//!
//! This module holds the file format ([`model`]) and its loader with validation, and the
//! alert lifecycle as a pure state machine ([`alert_state`]), and the count of a rule's
//! window ([`evaluate`]), which [`log_matches`] also serves to PromQL as series. The manager, persistence and notification build on them.

pub mod alert_state;
pub mod backtest;
pub mod evaluate;
pub mod fixtures;
pub mod history;
pub mod log_matches;
pub mod manager;
pub mod model;
pub mod observe;
pub mod silence;
pub mod template;
