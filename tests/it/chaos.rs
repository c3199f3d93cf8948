//! Real-process chaos: a writer appends numbered lines at a steady rate and rotates by
//! rename every few seconds; the agent is `kill -9`ed again and again and the server once;
//! at the end the index holds every number exactly once.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Agent, Server, agent_config, assert_exactly_once};

const RUN: Duration = Duration::from_secs(30);
const LINES_PER_SECOND: i64 = 400;
const ROTATE_EVERY: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_agent_and_server_during_rotation_every_line_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    let address = server.address().to_string();
    // rotated files stay matched (`app.json*`): an agent that was down during a rotation
    // finds the renamed file by its identity and resumes it, never re-reads it
    let pattern = logs.join("app.json*").display().to_string();
    let config = agent_config(dir.path(), &server.base, &[&pattern], "");
    let mut agent = Some(Agent::start(&config));

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicI64::new(0));
    let writer = {
        let (stop, written, logs) = (stop.clone(), written.clone(), logs.clone());
        std::thread::spawn(move || {
            let live = logs.join("app.json");
            let mut file = open_append(&live);
            let mut rotations = 0;
            let mut last_rotation = Instant::now();
            let started = Instant::now();
            let mut seq = 0i64;
            while !stop.load(Ordering::SeqCst) {
                // steady rate: catch up to where the clock says we should be
                let due = (started.elapsed().as_secs_f64() * LINES_PER_SECOND as f64) as i64;
                while seq < due {
                    writeln!(
                        file,
                        r#"{{"@timestamp":"{}","seq":{seq},"file":"chaos","message":"chaos line {seq}"}}"#,
                        chrono::Utc::now().to_rfc3339()
                    )
                    .expect("append");
                    seq += 1;
                }
                written.store(seq, Ordering::SeqCst);
                if last_rotation.elapsed() >= ROTATE_EVERY {
                    rotations += 1;
                    std::fs::rename(&live, logs.join(format!("app.json.{rotations}")))
                        .expect("rotate");
                    file = open_append(&live);
                    last_rotation = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (seq, rotations)
        })
    };

    let started = Instant::now();
    let mut agent_kills = 0;
    let mut server_killed = false;
    while started.elapsed() < RUN {
        tokio::time::sleep(Duration::from_millis(2500 + fastrand::u64(..1500))).await;
        if !server_killed && started.elapsed() >= RUN / 2 {
            server.kill();
            tokio::time::sleep(Duration::from_millis(700)).await;
            server = Server::start_at(&data, &address, &[]);
            server_killed = true;
            continue;
        }
        agent.take().expect("running").kill();
        agent_kills += 1;
        if agent_kills % 2 == 0 {
            // down for a while: rotations and lines pile up
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        agent = Some(Agent::start(&config));
    }
    stop.store(true, Ordering::SeqCst);
    let (total, rotations) = writer.join().expect("writer");
    let finished = chrono::Utc::now();
    assert!(
        agent_kills >= 5 && server_killed && rotations >= 8,
        "{agent_kills} kills, {rotations} rotations"
    );
    assert_eq!(written.load(Ordering::SeqCst), total);

    server.wait_caught_up(finished).await;
    assert_exactly_once(&server.seqs("logs").await, &[("chaos", 0..total)]);
    eprintln!(
        "chaos: {total} lines, {rotations} rotations, {agent_kills} agent kills, 1 server kill: each line exactly once"
    );
    drop(agent);
}

fn open_append(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file")
}
