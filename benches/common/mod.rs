//! What the benchmark binaries share: a deterministic generator, environment knobs, and
//! the guard that keeps `cargo test --all-targets` from running them.

/// A small deterministic generator (xorshift), so runs are comparable.
pub struct Random(pub u64);

impl Random {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// The environment variable `name` as a number, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench binaries without
/// it, and then nothing heavy should happen. Returns whether to run.
pub fn invoked_as_benchmark(name: &str) -> bool {
    let benchmark = std::env::args().any(|argument| argument == "--bench");
    if !benchmark {
        println!("{name} benchmark: run it with `cargo bench --bench {name}`");
    }
    benchmark
}
