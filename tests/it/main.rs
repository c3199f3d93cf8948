//! Integration tests: the real binary over loopback HTTP, real tantivy indexes in temp
//! directories, real processes killed with SIGKILL.

mod support;

mod access;
mod agent;
mod agent_model;
mod aggregation_shapes;
mod alerting;
mod alertmanager;
mod bad_input;
mod browser_safety;
mod chaos;
mod correlation;
mod demo;
mod docs;
mod durability;
mod elastalert;
mod event_time;
mod fan_out;
mod full_disk;
mod golden;
mod grafana;
mod grafana_dashboards;
mod grafana_prometheus;
mod ingest_search;
mod log_matches_exact;
mod metrics;
mod notifications;
mod paging;
mod relabel;
mod remote;
mod resolve_messages;
mod robustness;
mod routing;
mod rule_correctness;
mod rules_api;
mod schedule_validation;
mod search_after;
mod severity_routing;
mod slack;
mod slo;
mod tenant_keys;
mod tenants;
mod tls;
mod tooling;
mod ui;
