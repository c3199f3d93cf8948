//! What every target shares: how many cases run, how one case runs (its own thread with
//! the server's stack, panics caught, time and memory bounded), and the mutator that turns
//! realistic inputs into hostile ones.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, mpsc};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseError, TestRunner};

/// Cases per target in `cargo test`; `LOOKOUT_FUZZ_CASES=N` runs N instead.
const DEFAULT_CASES: u32 = 256;

/// Stack of the server's threads that run requests, rules and queries: an input that
/// overflows it here would overflow the server.
const SERVER_STACK_BYTES: usize = lookout::THREAD_STACK_BYTES;

/// Most CPU time one case may use (its own thread's, so a loaded machine does not make a
/// case fail). Cases take milliseconds; the margin is for a debug build, not for slow
/// inputs.
pub const CASE_CPU_LIMIT: Duration = Duration::from_secs(2);

/// Longest one case may take by the wall clock before it is taken for hung: well past
/// [`CASE_CPU_LIMIT`], for a case thread waiting its turn on a loaded machine.
const CASE_WALL_LIMIT: Duration = Duration::from_secs(60);

/// Most resident memory the test process may hold after a case (checked coarsely, from
/// `/proc`, since tests of other targets run alongside).
const RESIDENT_LIMIT_BYTES: u64 = 2 << 30;

pub fn cases() -> u32 {
    std::env::var("LOOKOUT_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// The proptest configuration of every target: no persisted failures (a failing input is
/// printed, minimized), shrinking bounded in time.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        max_shrink_time: 60_000,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

/// Stack of the thread that generates and shrinks inputs: proptest's value trees of deep
/// grammars are deep themselves (and large in a debug build).
const GENERATOR_STACK_BYTES: usize = 256 << 20;

/// Checks `property` on the inputs `strategy` makes ([`cases`] of them), panicking with
/// the minimal failing input. The property runs each input through [`run_case`].
pub fn check<S>(
    strategy: impl FnOnce() -> S + Send + 'static,
    property: impl Fn(S::Value) -> Result<(), TestCaseError> + Send + 'static,
) where
    S: Strategy,
{
    quiet_case_panics();
    let name = std::thread::current()
        .name()
        .unwrap_or("fuzz target")
        .to_string();
    let outcome = std::thread::Builder::new()
        .name(name)
        .stack_size(GENERATOR_STACK_BYTES)
        .spawn(move || {
            let mut runner = TestRunner::new(config());
            runner
                .run(&strategy(), property)
                .map_err(|error| error.to_string())
        })
        .expect("a generator thread starts")
        .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(failure)) => panic!("{failure}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Leaves panics of case threads unprinted (the failure reports them, with the minimal
/// input, once shrinking is done); every other panic prints as usual.
fn quiet_case_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_case = std::thread::current()
                .name()
                .is_some_and(|name| name.starts_with(CASE_THREAD_PREFIX));
            if !in_case {
                default(info);
            }
        }));
    });
}

/// Case threads started and not yet finished, over every target of the process.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// How case threads' names start.
const CASE_THREAD_PREFIX: &str = "fuzz ";

/// Runs `case` (of the input `shown`, Debug-formatted) on a thread with the server's stack
/// size and fails (so that proptest shrinks and prints the input) when it panics, takes
/// more than [`CASE_CPU_LIMIT`] of CPU (or hangs for [`CASE_WALL_LIMIT`]), leaves the process over [`RESIDENT_LIMIT_BYTES`], or
/// returns an error. A stack overflow cannot be caught: it aborts the test process, and
/// the message names the thread, whose name carries the target and the start of the input.
pub fn run_case(
    target: &str,
    mut shown: String,
    case: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<(), TestCaseError> {
    // a thread name holds no NUL
    shown = shown.replace('\0', "\\0");
    if shown.len() > 400 {
        let mut end = 400;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    let (sender, receiver) = mpsc::channel();
    let started = Instant::now();
    RUNNING.fetch_add(1, Ordering::Relaxed);
    std::thread::Builder::new()
        .name(format!("{CASE_THREAD_PREFIX}{target}: {shown}"))
        .stack_size(SERVER_STACK_BYTES)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(case));
            RUNNING.fetch_sub(1, Ordering::Relaxed);
            let _ = sender.send((outcome, thread_cpu_time()));
        })
        .map_err(|error| TestCaseError::fail(format!("cannot spawn a case thread: {error}")))?;
    let (outcome, cpu) = match receiver.recv_timeout(CASE_WALL_LIMIT) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            // a case that timed out keeps running (a thread cannot be stopped) and slows
            // every case after it: say so, so that a slow input is not blamed on another
            let running = RUNNING.load(Ordering::Relaxed).saturating_sub(1);
            return Err(TestCaseError::fail(format!(
                "{target}: still running after {CASE_WALL_LIMIT:?} ({running} other cases running)"
            )));
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err(TestCaseError::fail(format!(
                "{target}: the case thread ended without an answer"
            )));
        }
    };
    let elapsed = started.elapsed();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(property)) => return Err(TestCaseError::fail(format!("{target}: {property}"))),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            return Err(TestCaseError::fail(format!(
                "{target}: panicked: {message}"
            )));
        }
    }
    if let Some(cpu) = cpu.filter(|cpu| *cpu > CASE_CPU_LIMIT) {
        return Err(TestCaseError::fail(format!(
            "{target}: used {cpu:?} of CPU (limit {CASE_CPU_LIMIT:?})"
        )));
    }
    if let Some(resident) = resident_bytes()
        && resident > RESIDENT_LIMIT_BYTES
    {
        return Err(TestCaseError::fail(format!(
            "{target}: the process holds {resident} bytes after a case ({elapsed:?})"
        )));
    }
    Ok(())
}

/// CPU time (user and system) of the calling thread, from `/proc/thread-self/stat`
/// (Linux only; in clock ticks of 10 ms, fine for a limit of seconds).
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // the fields after the command name, which is in parentheses and may hold spaces
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Resident set size of this process, from `/proc/self/statm` (Linux only).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Tokens any text parser should survive: odd unicode (combining marks, right-to-left
/// override, BOM, surrogate-adjacent and noncharacter code points, a 4-byte character),
/// control characters, quotes and escapes, and numbers at and past every limit.
pub const HOSTILE: &[&str] = &[
    "\u{0}",
    "\u{7f}",
    "\u{FEFF}",
    "\u{202E}",
    "\u{301}",
    "\u{FFFD}",
    "\u{FFFF}",
    "\u{10FFFF}",
    "𝔘",
    "€",
    "é",
    "ß",
    "İ",
    "\r",
    "\n",
    "\t",
    " ",
    "\\",
    "\\\\",
    "\"",
    "'",
    "`",
    "\\u0000",
    "\\ud800",
    "%",
    "%s",
    "%.99999f",
    "0",
    "-0",
    "1e308",
    "1e309",
    "-1e309",
    "4.9e-324",
    "1e-400",
    "NaN",
    "-Inf",
    "+Inf",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "0.000000000000000000000000000000000001",
    "4294967296",
    "0x1p3",
    "1_000",
];

/// One edit of a token list. Indices are resolved against the list as it is when the edit
/// applies, so a shorter list (as proptest shrinks) still gets a valid edit.
#[derive(Debug, Clone)]
pub enum Mutation {
    Insert(Index, Index),
    InsertHostile(Index, Index),
    Delete(Index),
    Duplicate(Index, usize),
    Swap(Index, Index),
    /// Tokens of another seed spliced in at a position.
    Splice(Index, Index, Index, Index),
    /// Tokens `[a, b)` wrapped in a pair of brackets, `times` times.
    Wrap(Index, Index, Index, usize),
    /// Everything from a position on dropped (a body cut short).
    Truncate(Index),
}

/// What the mutator knows of a language: realistic inputs to start from, its tokens, and
/// its brackets (opening, closing) to nest with.
pub struct Grammar {
    pub seeds: Vec<String>,
    pub tokens: Vec<String>,
    pub brackets: Vec<(String, String)>,
    /// Most repetitions of one duplication or wrap.
    pub max_repeat: usize,
}

impl Grammar {
    pub fn new(seeds: &[&str], tokens: &[&str], brackets: &[(&str, &str)]) -> Grammar {
        Grammar {
            seeds: seeds.iter().map(|seed| seed.to_string()).collect(),
            tokens: tokens.iter().map(|token| token.to_string()).collect(),
            brackets: brackets
                .iter()
                .map(|(open, close)| (open.to_string(), close.to_string()))
                .collect(),
            max_repeat: 8,
        }
    }

    pub fn max_repeat(mut self, max_repeat: usize) -> Grammar {
        self.max_repeat = max_repeat;
        self
    }
}

fn mutation(max_repeat: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<Index>()).prop_map(|(at, token)| Mutation::Insert(at, token)),
        2 => (any::<Index>(), any::<Index>())
            .prop_map(|(at, token)| Mutation::InsertHostile(at, token)),
        3 => any::<Index>().prop_map(Mutation::Delete),
        2 => (any::<Index>(), 1..=max_repeat).prop_map(|(at, times)| Mutation::Duplicate(at, times)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(first, second)| Mutation::Swap(first, second)),
        2 => (any::<Index>(), any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(seed, from, to, at)| Mutation::Splice(seed, from, to, at)),
        2 => (any::<Index>(), any::<Index>(), any::<Index>(), 1..=max_repeat)
            .prop_map(|(first, last, bracket, times)| Mutation::Wrap(first, last, bracket, times)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// Splits text into tokens: runs of word characters, runs of blanks, and single other
/// characters, so that edits keep words whole.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let class = |c: char| {
        if c.is_alphanumeric() || c == '_' || c == '.' {
            0
        } else if c == ' ' {
            1
        } else {
            2
        }
    };
    for c in text.chars() {
        match out.last_mut() {
            Some(last) if class(c) != 2 && last.chars().last().map(class) == Some(class(c)) => {
                last.push(c)
            }
            _ => out.push(c.to_string()),
        }
    }
    out
}

/// Applies `mutations` to the tokens of `seed`.
pub fn mutate(grammar: &Grammar, seed: &str, mutations: &[Mutation]) -> String {
    let mut tokens = tokens(seed);
    for mutation in mutations {
        let position = |index: &Index, tokens: &Vec<String>| index.index(tokens.len() + 1);
        match mutation {
            Mutation::Insert(at, token) if !grammar.tokens.is_empty() => {
                let at = position(at, &tokens);
                tokens.insert(at, token.get(&grammar.tokens).clone());
            }
            Mutation::Insert(..) => {}
            Mutation::InsertHostile(at, token) => {
                let at = position(at, &tokens);
                tokens.insert(at, token.get(HOSTILE).to_string());
            }
            Mutation::Delete(at) if !tokens.is_empty() => {
                tokens.remove(at.index(tokens.len()));
            }
            Mutation::Duplicate(at, times) if !tokens.is_empty() => {
                let at = at.index(tokens.len());
                let token = tokens[at].clone();
                for _ in 0..*times {
                    tokens.insert(at, token.clone());
                }
            }
            Mutation::Swap(first, second) if !tokens.is_empty() => {
                let (first, second) = (first.index(tokens.len()), second.index(tokens.len()));
                tokens.swap(first, second);
            }
            Mutation::Splice(seed, from, to, at) => {
                let other = self::tokens(seed.get::<String>(&grammar.seeds));
                let (from, to) = (from.index(other.len() + 1), to.index(other.len() + 1));
                let (from, to) = (from.min(to), from.max(to));
                let at = position(at, &tokens);
                tokens.splice(at..at, other[from..to].iter().cloned());
            }
            Mutation::Wrap(first, last, bracket, times) if !grammar.brackets.is_empty() => {
                let (first, last) = (position(first, &tokens), position(last, &tokens));
                let (first, last) = (first.min(last), first.max(last));
                let (open, close) = bracket.get(&grammar.brackets);
                for _ in 0..*times {
                    tokens.insert(last, close.clone());
                    tokens.insert(first, open.clone());
                }
            }
            Mutation::Truncate(at) => {
                let at = position(at, &tokens);
                tokens.truncate(at);
            }
            _ => {}
        }
    }
    tokens.concat()
}

/// A seed of `grammar`, or one that `generated` makes, mutated by up to `edits` edits.
pub fn mutated(
    grammar: std::sync::Arc<Grammar>,
    generated: BoxedStrategy<String>,
    edits: usize,
) -> impl Strategy<Value = String> {
    let seeds = grammar.seeds.clone();
    let seed = prop_oneof![proptest::sample::select(seeds), generated];
    let mutations = proptest::collection::vec(mutation(grammar.max_repeat), 0..=edits);
    (seed, mutations).prop_map(move |(seed, mutations)| mutate(&grammar, &seed, &mutations))
}

/// Any JSON value, nested up to `depth` arrays and objects.
pub fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        proptest::sample::select(HOSTILE).prop_map(|text| Value::String(text.to_string())),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_@.]{0,6}|\\PC{0,4}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// JSON text nested `depth` arrays deep around `inner` (a value past serde_json's
/// recursion limit of 128 must be refused, not overflow anything).
pub fn nested_json_text(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// The CPU limit reads this thread's own CPU time: it grows with work done here (spun
/// until it has, within a generous deadline for a loaded machine).
#[test]
fn a_case_threads_cpu_time_is_read() {
    let before = thread_cpu_time().expect("/proc/thread-self/stat");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut spin = 0u64;
    loop {
        for _ in 0..1_000_000 {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let now = thread_cpu_time().expect("/proc/thread-self/stat");
        if now >= before + Duration::from_millis(50) {
            break;
        }
        assert!(Instant::now() < deadline, "CPU time stuck at {now:?}");
    }
}
