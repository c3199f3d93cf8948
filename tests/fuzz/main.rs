//! Generated-input (fuzz) tests of every parser and decoder that reads outside input:
//! grammar-aware generators and mutations of realistic inputs (proptest, stable Rust),
//! each case run on a thread with the server's stack size.
//!
//! Properties: no panic, no stack overflow, each case in bounded time and memory, and
//! round trips where a renderer exists. `LOOKOUT_FUZZ_CASES=N` runs N cases per target
//! (the default is small enough for every `cargo test`).
//!
//! Every crash found is a named regression test beside its target. One is `#[ignore]`d: a
//! debug assertion inside tantivy that release builds do not have; run it with
//! `cargo test --test fuzz -- --ignored --exact NAME`.

mod authorization;
mod browser_guard;
mod bulk;
mod exposition;
mod filter_path;
mod harness;
mod key_order;
mod notifier;
mod patterns;
mod pipeline;
mod promql;
mod query;
mod relabel;
mod remote_query;
mod request_target;
mod routing;
mod rule;
mod schedule;
mod template;
mod tenant;
