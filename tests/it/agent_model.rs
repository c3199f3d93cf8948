//! Model-based property test of the agent: random sequences of appends (with partial
//! lines), rename rotation, copytruncate, deletion of rotated files, agent kill and
//! restart, server kill and restart (outages) — against the real binary and server. The
//! model says which lines must be indexed exactly once; lines a file lost while nobody
//! could read them (truncated or deleted while the agent or server was down, before they
//! were acknowledged) may be missing, but never doubled.
//!
//! Cases: 16 by default (each runs real processes); `LOOKOUT_PROPTEST_CASES=N` for more.
//! Regressions replay a fixed case `LOOKOUT_REPLAY_TRIES=N` times (default once).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::support::{Agent, Server, agent_config};

#[derive(Debug, Clone)]
enum Op {
    /// Appends complete lines, then maybe the first half of one more.
    Append {
        lines: u8,
        partial: bool,
    },
    RenameRotate,
    CopyTruncate,
    DeleteOldestRotated,
    KillAgent,
    StartAgent,
    KillServer,
    StartServer,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..40, any::<bool>()).prop_map(|(lines, partial)| Op::Append { lines, partial }),
        2 => Just(Op::RenameRotate),
        1 => Just(Op::CopyTruncate),
        1 => Just(Op::DeleteOldestRotated),
        1 => Just(Op::KillAgent),
        2 => Just(Op::StartAgent),
        1 => Just(Op::KillServer),
        2 => Just(Op::StartServer),
    ]
}

/// What must end up in the index.
#[derive(Default)]
struct Model {
    next_seq: i64,
    /// Lines written, by seq: whether they may be missing (lost before being read).
    lines: BTreeMap<i64, bool>,
    /// Which file each line not yet known to be acknowledged is in.
    unacknowledged: BTreeMap<i64, PathBuf>,
    /// The second half of a partial line, to finish before anything else happens.
    partial: Option<(i64, String)>,
}

struct World {
    dir: tempfile::TempDir,
    live: PathBuf,
    config: PathBuf,
    data: PathBuf,
    address: String,
    server: Option<Server>,
    agent: Option<Agent>,
    rotated: Vec<PathBuf>,
    rotations: usize,
    model: Model,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).expect("mkdir");
        let data = dir.path().join("data");
        let server = Server::start(&data, &[]);
        let address = server.address().to_string();
        let pattern = logs.join("app.json*").display().to_string();
        let config = agent_config(dir.path(), &server.base, &[&pattern], "");
        World {
            live: logs.join("app.json"),
            dir,
            config,
            data,
            address,
            server: Some(server),
            agent: None,
            rotated: Vec::new(),
            rotations: 0,
            model: Model::default(),
        }
    }

    fn append(&mut self, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.live)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .expect("append");
    }

    fn line(seq: i64) -> String {
        format!(r#"{{"seq":{seq},"file":"model","message":"model line {seq}"}}"#)
    }

    fn finish_partial(&mut self) {
        if let Some((seq, rest)) = self.model.partial.take() {
            self.append(&rest);
            self.model.lines.insert(seq, false);
            self.model.unacknowledged.insert(seq, self.live.clone());
        }
    }

    /// When both processes are up, waits until everything written is acknowledged.
    async fn settle(&mut self) -> bool {
        let (Some(server), Some(_)) = (&self.server, &self.agent) else {
            return false;
        };
        server.wait_caught_up(chrono::Utc::now()).await;
        self.model.unacknowledged.clear();
        true
    }

    /// `path` loses its content: lines in it that may not have been read become optional.
    async fn losing(&mut self, path: &Path) {
        if self.settle().await {
            return;
        }
        for (seq, file) in &self.model.unacknowledged {
            if file == path {
                self.model.lines.insert(*seq, true);
            }
        }
    }

    async fn apply(&mut self, op: &Op) {
        self.finish_partial();
        match op {
            Op::Append { lines, partial } => {
                let mut text = String::new();
                for _ in 0..*lines {
                    let seq = self.model.next_seq;
                    self.model.next_seq += 1;
                    text.push_str(&World::line(seq));
                    text.push('\n');
                    self.model.lines.insert(seq, false);
                    self.model.unacknowledged.insert(seq, self.live.clone());
                }
                if *partial {
                    let seq = self.model.next_seq;
                    self.model.next_seq += 1;
                    let line = World::line(seq);
                    let (head, tail) = line.split_at(line.len() / 2);
                    text.push_str(head);
                    self.model.partial = Some((seq, format!("{tail}\n")));
                }
                self.append(&text);
            }
            Op::RenameRotate => {
                if self.live.exists() {
                    self.rotations += 1;
                    let rotated = self.live.with_extension(format!("json.{}", self.rotations));
                    std::fs::rename(&self.live, &rotated).expect("rotate");
                    for file in self.model.unacknowledged.values_mut() {
                        if *file == self.live {
                            *file = rotated.clone();
                        }
                    }
                    self.rotated.push(rotated);
                }
            }
            Op::CopyTruncate => {
                if self.live.exists() {
                    let live = self.live.clone();
                    self.losing(&live).await;
                    // the copy is outside the pattern, as logrotate's would usually be
                    self.rotations += 1;
                    std::fs::copy(&live, live.with_extension(format!("bak{}", self.rotations)))
                        .expect("copy");
                    std::fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .open(&live)
                        .expect("truncate");
                }
            }
            Op::DeleteOldestRotated => {
                if !self.rotated.is_empty() {
                    let oldest = self.rotated.remove(0);
                    self.losing(&oldest).await;
                    std::fs::remove_file(&oldest).expect("delete");
                }
            }
            Op::KillAgent => {
                if let Some(agent) = self.agent.take() {
                    agent.kill();
                }
            }
            Op::StartAgent => {
                if self.agent.is_none() {
                    // an agent starts only once it reached its server; without one it
                    // waits in the background
                    let wait = self.server.is_some();
                    self.agent = Some(Agent::spawn(
                        std::process::Command::new(env!("CARGO_BIN_EXE_lookout")),
                        &self.config,
                        wait,
                    ));
                }
            }
            Op::KillServer => {
                if let Some(server) = self.server.take() {
                    server.kill();
                }
            }
            Op::StartServer => {
                if self.server.is_none() {
                    self.server = Some(Server::start_at(&self.data, &self.address, &[]));
                }
            }
        }
    }

    async fn check(mut self) -> Result<(), TestCaseError> {
        self.finish_partial();
        if self.server.is_none() {
            self.server = Some(Server::start_at(&self.data, &self.address, &[]));
        }
        if self.agent.is_none() {
            self.agent = Some(Agent::start(&self.config));
        }
        assert!(self.settle().await);
        let server = self.server.as_ref().expect("running");
        let stored = if self.model.lines.is_empty() {
            BTreeMap::new()
        } else {
            server.seqs("logs").await
        };
        for (seq, optional) in &self.model.lines {
            let count = stored
                .get(&("model".to_string(), *seq))
                .copied()
                .unwrap_or(0);
            prop_assert!(
                count == 1 || (*optional && count == 0),
                "line {seq} stored {count} times (optional: {optional})"
            );
        }
        for (file, seq) in stored.keys() {
            prop_assert!(
                file == "model" && self.model.lines.contains_key(seq),
                "unexpected line {file}/{seq}"
            );
        }
        drop(self.dir);
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("LOOKOUT_PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(16)
}

/// Runs one case: the agent and server start, `ops` happen, then the model is checked.
fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut world = World::new();
        world.apply(&Op::StartAgent).await;
        for op in ops {
            world.apply(op).await;
        }
        world.check().await
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_complete_line_is_indexed_exactly_once(
        ops in proptest::collection::vec(op(), 5..25)
    ) {
        run_case(&ops)?;
    }
}

/// Regression: lines appended to a copytruncated file (then renamed away) before the
/// tailer's next pass were missing although the watermark had passed them. Replayed
/// `LOOKOUT_REPLAY_TRIES` times (default 1), since it depends on timing.
#[test]
fn lines_appended_after_a_copytruncate_are_read_before_the_watermark_passes_them() {
    use Op::*;
    let append = |lines, partial| Append { lines, partial };
    // the shrunk case as CI reported it (its starts are no-ops: both already run)
    let ops = [
        CopyTruncate,
        append(39, false),
        append(35, true),
        RenameRotate,
        StartServer,
        StartAgent,
        StartServer,
        append(7, true),
        StartServer,
        StartServer,
        DeleteOldestRotated,
        CopyTruncate,
        append(32, false),
        StartServer,
        append(18, false),
        CopyTruncate,
        StartServer,
        DeleteOldestRotated,
        DeleteOldestRotated,
        StartAgent,
        append(5, false),
        RenameRotate,
        CopyTruncate,
    ];
    let tries: usize = std::env::var("LOOKOUT_REPLAY_TRIES")
        .ok()
        .and_then(|tries| tries.parse().ok())
        .unwrap_or(1);
    for attempt in 0..tries {
        if let Err(failure) = run_case(&ops) {
            panic!("attempt {attempt} of {tries}: {failure}");
        }
    }
}

/// Known bug, open (found 2026-12-05 by `every_complete_line_is_indexed_exactly_once`): after
/// this sequence a line written after the copytruncate is now and then stored twice (line 4
/// of the model, in about 1 of 12 rounds on a 2-core machine). Run it with `--ignored`; it
/// fails until the tailer's copytruncate handling is fixed.
#[test]
#[ignore = "known bug: a line written after a copytruncate is sometimes shipped twice"]
fn a_copytruncate_after_a_partial_line_ships_every_later_line_once() {
    for round in 0..30 {
        let ops = [
            Op::Append {
                lines: 1,
                partial: true,
            },
            Op::CopyTruncate,
            Op::Append {
                lines: 2,
                partial: false,
            },
            Op::Append {
                lines: 24,
                partial: true,
            },
            Op::StartServer,
        ];
        if let Err(error) = run_case(&ops) {
            panic!("round {round}: {error}");
        }
    }
}
