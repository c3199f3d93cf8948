//! Saved queries and alert rules (`queries/*.json`, DESIGN §5).
//!
//! This module holds the file format ([`model`]) and its loader with validation. The
//! scheduler, evaluation and alert lifecycle build on it.

pub mod model;
