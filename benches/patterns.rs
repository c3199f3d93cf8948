//! Log template mining throughput: one thread mines varied, realistic lines — HTTP access
//! lines with ids in paths, logfmt with quoted messages and unique trace ids, Java-style
//! exceptions, retry and database messages from several services — of a few hundred
//! distinct templates, with the miner's default options (what `GET /_lookout/patterns`
//! and `new_pattern` rules use). Prints lines per second on one core and the templates
//! found, the median of the runs.
//!
//! `cargo bench --bench patterns` (env: `LINES`, default 1 000 000; `RUNS`, default 5).

mod common;

use common::{Random, env_or};
use std::time::Instant;

use lookout::patterns::{Miner, MinerOptions};

const SERVICES: [&str; 6] = ["checkout", "cart", "search", "catalog", "payments", "auth"];
const RESOURCES: [&str; 12] = [
    "cart",
    "orders",
    "items",
    "users",
    "invoices",
    "sessions",
    "reviews",
    "coupons",
    "addresses",
    "wishlists",
    "shipments",
    "refunds",
];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const EXCEPTIONS: [&str; 6] = [
    "NullPointerException",
    "IllegalStateException",
    "TimeoutException",
    "IOException",
    "SQLException",
    "IllegalArgumentException",
];
const CLASSES: [&str; 6] = [
    "OrderService",
    "CartController",
    "PaymentGateway",
    "SearchIndex",
    "UserRepository",
    "InvoiceJob",
];
const SUBSYSTEMS: [&str; 8] = [
    "scheduler",
    "replicator",
    "cache",
    "queue",
    "worker",
    "mailer",
    "indexer",
    "exporter",
];
const EVENTS: [&str; 8] = [
    "gave up",
    "reconnected",
    "stalled",
    "restarted",
    "fell behind",
    "dropped a batch",
    "hit its limit",
    "timed out",
];
const TABLES: [&str; 10] = [
    "orders", "users", "items", "carts", "payments", "sessions", "events", "audit", "stock",
    "prices",
];

fn hex(random: &mut Random, digits: usize) -> String {
    let mut text = String::with_capacity(digits);
    while text.len() < digits {
        text.push_str(&format!("{:016x}", random.next()));
    }
    text.truncate(digits);
    text
}

fn pick<'a>(random: &mut Random, from: &[&'a str]) -> &'a str {
    from[random.below(from.len() as u64) as usize]
}

/// One line of one of the ~400 templates.
fn line(random: &mut Random) -> String {
    match random.below(6) {
        // 48 templates
        0 => format!(
            "{} /api/v1/{}/{} returned {} in {}.{}ms for user {}",
            pick(random, &METHODS),
            pick(random, &RESOURCES),
            random.below(100_000),
            [200, 201, 404, 500][random.below(4) as usize],
            random.below(900),
            random.below(10),
            random.below(50_000)
        ),
        // 6 templates (the message is quoted)
        1 => format!(
            "level=error service={} msg=\"{}\" trace_id={} duration={}ms",
            pick(random, &SERVICES),
            ["connection reset", "deadline exceeded", "bad gateway"][random.below(3) as usize],
            hex(random, 32),
            random.below(5000)
        ),
        // 36 templates
        2 => format!(
            "Exception in thread \"worker-{}\" java.lang.{}: failed at com.example.{}.handle({}.java:{})",
            random.below(64),
            pick(random, &EXCEPTIONS),
            pick(random, &CLASSES),
            pick(random, &CLASSES),
            random.below(900)
        ),
        // 64 × 6 services = 384 templates
        3 => format!(
            "[{}] {} {} for job {} after {} retries",
            pick(random, &SERVICES),
            pick(random, &SUBSYSTEMS),
            pick(random, &EVENTS),
            hex(random, 8),
            random.below(10)
        ),
        // 10 templates
        4 => format!(
            "slow query on {} took {}s rows={} from {}.{}.{}.{}:5432",
            pick(random, &TABLES),
            random.below(30),
            random.below(100_000),
            10,
            random.below(256),
            random.below(256),
            random.below(256)
        ),
        // 1 template, unique ids
        _ => format!(
            "span {} finished parent={} sampled=true",
            hex(random, 16),
            hex(random, 16)
        ),
    }
}

fn main() {
    if !common::invoked_as_benchmark("patterns") {
        return;
    }
    let lines = env_or("LINES", 1_000_000) as usize;
    let runs = env_or("RUNS", 5) as usize;
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let input: Vec<String> = (0..lines).map(|_| line(&mut random)).collect();
    let bytes: usize = input.iter().map(String::len).sum();
    let mut rates = Vec::new();
    let mut templates = 0;
    for run in 1..=runs {
        let mut miner = Miner::new(MinerOptions::default());
        let started = Instant::now();
        for (at, line) in input.iter().enumerate() {
            miner.add(line, at as i64);
        }
        let seconds = started.elapsed().as_secs_f64();
        templates = miner.len();
        let rate = lines as f64 / seconds;
        println!(
            "run {run}: {lines} lines ({:.0} B on average) in {seconds:.2} s: {:.0} lines/s on one core, {templates} templates",
            bytes as f64 / lines as f64,
            rate
        );
        rates.push(rate);
    }
    let median = common::median(&mut rates);
    println!("median: {median:.0} lines/s on one core ({templates} templates)");
}
