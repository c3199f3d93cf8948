//! `lookout ship --to A --to B` (issue 17): every line reaches each destination exactly
//! once, each with its own checkpoints — with B down for a while (A goes on meanwhile)
//! and the agent killed -9 once in between.

use crate::support::{Agent, Server, agent_config, append_lines, assert_exactly_once, wait_until};

/// A loopback address free now, for a server started later.
fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .to_string()
}

/// Lines of `file` stored in `server`'s `logs`.
async fn stored(server: &Server) -> usize {
    server.seqs("logs").await.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_reaches_both_destinations_once_with_one_down_and_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a"), &[]);
    let b_address = free_address();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let file = logs.join("app.json");
    let config = agent_config(
        dir.path(),
        &a.base,
        &[&format!("{}/*.json", logs.display())],
        &format!("also_to = [\"http://{b_address}\"]"),
    );
    append_lines(&file, "app", 0..500);
    let agent = Agent::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_lookout")),
        &config,
        false,
    );
    // B is down: A gets everything anyway
    wait_until("A has the first 500 lines", 90, || async {
        stored(&a).await == 500
    })
    .await;
    append_lines(&file, "app", 500..700);
    wait_until("A has 700 lines while B is down", 90, || async {
        stored(&a).await == 700
    })
    .await;
    agent.kill();
    append_lines(&file, "app", 700..900);
    let b = Server::start_at(&dir.path().join("b"), &b_address, &[]);
    let _agent = Agent::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_lookout")),
        &config,
        false,
    );
    append_lines(&file, "app", 900..1000);
    for (name, server) in [("A", &a), ("B", &b)] {
        wait_until(&format!("{name} has all 1000 lines"), 120, || async {
            stored(server).await >= 1000
        })
        .await;
        assert_exactly_once(&server.seqs("logs").await, &[("app", 0..1000)]);
    }
    assert!(
        dir.path().join("state/destination-1").is_dir(),
        "the second destination keeps its own checkpoints"
    );
}
