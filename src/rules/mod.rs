//! Saved queries and alert rules (`queries/*.json`, DESIGN §5).
//!
//! The file format ([`model`]) and a rule ready to run ([`rule`]), built only by
//! [`check`], which reports every error of a rule file at once; the `queries/` directory,
//! its API writes and its watcher ([`loader`]). At a tick: what a rule sees and its
//! `context` values ([`observe`]), from the count of a log rule's window ([`evaluate`]),
//! which [`log_matches`] also serves to PromQL as series; each alert's lifecycle step
//! ([`lifecycle`]) over the pure state machine ([`alert_state`]), muted by [`silence`]s;
//! the messages it sends ([`compose`], rendering [`template`]s), handed to
//! [`crate::notify::dispatch`]; the states persisted ([`state_store`]). Rules that cannot
//! match, before and after they load ([`dead_query`]). The [`manager`] runs all of it on
//! the scheduler, with replays for backtests and rule unit tests ([`fixtures`]). A spike
//! rule's value now against its value at a reference time ([`spike`]) wraps what
//! `observe` sees.

pub mod alert_state;
pub mod check;
pub mod compose;
pub mod dead_query;
pub mod evaluate;
pub mod fixtures;
pub mod lifecycle;
pub mod loader;
pub mod log_matches;
pub mod manager;
pub mod measure;
pub mod model;
pub mod new_pattern;
pub mod new_term;
pub mod observe;
pub mod recording;
pub mod rule;
pub mod silence;
pub mod slo;
pub mod spike;
pub mod state_store;
/// The template engine is a leaf shared with `notify` (notifier templates); rules
/// reach it by its old path.
pub use crate::template;
