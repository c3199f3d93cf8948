//! Saved queries and alert rules (`queries/*.json`, DESIGN §5).
//!
//! The file format ([`model`]); the alert lifecycle as a pure state machine
//! ([`alert_state`]); the count of a log rule's window ([`evaluate`]), which
//! [`log_matches`] also serves to PromQL as series; what a rule sees at a tick and its
//! `context` values ([`observe`]); every error of a rule file at once ([`check`]); rules
//! that cannot match, before and after they load ([`dead_query`]); the manager that runs rules, persists their state and
//! notifies ([`manager`]), with replays for backtests ([`backtest`]) and rule unit tests
//! ([`fixtures`]).

pub mod alert_state;
pub mod backtest;
pub mod check;
pub mod compose;
pub mod dead_query;
pub mod evaluate;
pub mod fixtures;
pub mod lifecycle;
pub mod loader;
pub mod log_matches;
pub mod manager;
pub mod model;
pub mod observe;
pub mod rule;
pub mod silence;
pub mod state_store;
pub mod template;
