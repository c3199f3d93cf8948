//! Integration tests: the real binary over loopback HTTP, real tantivy indexes in temp
//! directories, real processes killed with SIGKILL.

mod support;

mod agent;
mod agent_model;
mod alerting;
mod bad_input;
mod chaos;
mod correlation;
mod demo;
mod durability;
mod full_disk;
mod golden;
mod ingest_search;
mod metrics;
mod notifications;
mod robustness;
mod rule_correctness;
mod rules_api;
mod slack;
mod tooling;
mod ui;
