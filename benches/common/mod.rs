//! What the benchmark binaries share: a deterministic generator, environment knobs, and
//! the guard that keeps `cargo test --all-targets` from running them.

// every bench binary includes this module and uses part of it
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

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

const SERVICES: [&str; 6] = ["checkout", "cart", "search", "catalog", "payments", "auth"];
const PATHS: [&str; 8] = [
    "/api/cart",
    "/api/checkout",
    "/api/search",
    "/api/items/{id}",
    "/api/login",
    "/health",
    "/api/orders",
    "/api/pay",
];
const MESSAGES: [&str; 5] = [
    "request completed",
    "upstream timeout talking to payment backend",
    "cache miss, loading from database",
    "user session refreshed",
    "slow query detected on orders table",
];

/// Writes `lines` realistic log lines spread over the last 20 hours; returns bytes.
pub fn generate(path: &Path, lines: usize) -> u64 {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create data file"));
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let now = chrono::Utc::now().timestamp_millis();
    let span_ms = 20 * 3600 * 1000;
    let mut bytes = 0u64;
    for seq in 0..lines {
        let time = now - span_ms + (seq as i64 * span_ms) / lines as i64;
        let status = match random.below(100) {
            0..=1 => 500,
            2..=4 => 404,
            5 => 503,
            _ => 200,
        };
        let service = SERVICES[random.below(SERVICES.len() as u64) as usize];
        let level = if status >= 500 {
            "error"
        } else if status >= 400 {
            "warn"
        } else {
            "info"
        };
        let line = format!(
            "{{\"@timestamp\":\"{}\",\"level\":\"{level}\",\"service\":\"{service}\",\"host\":\"web-{:02}.eu-west-1.internal\",\"http\":{{\"method\":\"{}\",\"path\":\"{}\",\"status\":{status},\"bytes\":{}}},\"latency_ms\":{:.3},\"trace_id\":\"{:016x}{:016x}\",\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64)\",\"env\":\"production\",\"region\":\"eu-west-1\",\"message\":\"{}\"}}\n",
            chrono::DateTime::from_timestamp_millis(time)
                .expect("valid time")
                .format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            random.below(24),
            if random.below(5) == 0 { "POST" } else { "GET" },
            PATHS[random.below(PATHS.len() as u64) as usize],
            random.below(50_000),
            random.below(2_000_000) as f64 / 1000.0,
            random.next(),
            random.next(),
            MESSAGES[random.below(MESSAGES.len() as u64) as usize],
        );
        bytes += line.len() as u64;
        out.write_all(line.as_bytes()).expect("write");
    }
    out.flush().expect("flush");
    bytes
}

/// The request-log shapes the ingest figures are quoted for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// [`generate`]'s lines: paths and messages from small fixed lists (few distinct terms).
    Low,
    /// [`generate_high_cardinality`]'s: ids in paths, numbers, users and durations in
    /// messages, a unique trace id, fields that come and go.
    High,
}

impl Shape {
    pub fn parse(name: &str) -> Option<Shape> {
        match name.trim() {
            "low" => Some(Shape::Low),
            "high" => Some(Shape::High),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Shape::Low => "low-cardinality",
            Shape::High => "high-cardinality",
        }
    }

    /// Writes `lines` lines of this shape to `path`; returns bytes.
    pub fn generate(self, path: &Path, lines: usize) -> u64 {
        match self {
            Shape::Low => generate(path, lines),
            Shape::High => generate_high_cardinality(path, lines),
        }
    }
}

const RESOURCES: [&str; 8] = [
    "cart",
    "orders",
    "users",
    "items",
    "invoices",
    "sessions",
    "carts",
    "shipments",
];
const ERROR_TYPES: [&str; 7] = [
    "TimeoutError",
    "ConnectionResetError",
    "ValidationError",
    "PaymentDeclined",
    "NullPointerException",
    "DeadlineExceeded",
    "OutOfStock",
];

/// Writes `lines` request-log lines as real services log them, spread over the last 20
/// hours: ids in paths (`/api/v1/cart/2989`), numbers, user ids and durations in messages
/// (`GET /api/v1/cart/2989 returned 200 in 329.1ms for user 2989`), a unique `trace_id`,
/// and fields that come and go (`user.id`, `error.type` and `error.message` on failures,
/// `k8s.pod`, `retry`, a `tags` list, a query string); returns bytes.
pub fn generate_high_cardinality(path: &Path, lines: usize) -> u64 {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create data file"));
    let mut random = Random(0x51_7C_C1_B7_27_22_0A_95);
    let now = chrono::Utc::now().timestamp_millis();
    let span_ms = 20 * 3600 * 1000;
    let mut bytes = 0u64;
    for seq in 0..lines {
        let time = now - span_ms + (seq as i64 * span_ms) / lines as i64;
        let line = high_cardinality_line(time, &mut random);
        bytes += line.len() as u64 + 1;
        out.write_all(line.as_bytes()).expect("write");
        out.write_all(b"\n").expect("write");
    }
    out.flush().expect("flush");
    bytes
}

/// One line of [`generate_high_cardinality`]'s shape stamped `time_ms`, without its newline.
pub fn high_cardinality_line(time_ms: i64, random: &mut Random) -> String {
    let status = match random.below(100) {
        0..=1 => 500,
        2..=4 => 404,
        5 => 503,
        6 => 429,
        _ => 200,
    };
    let service = SERVICES[random.below(SERVICES.len() as u64) as usize];
    let resource = RESOURCES[random.below(RESOURCES.len() as u64) as usize];
    let id = random.below(100_000);
    let user = random.below(50_000);
    let method = ["GET", "GET", "GET", "POST", "PUT", "DELETE"][random.below(6) as usize];
    let latency = random.below(2_000_000) as f64 / 1000.0;
    let level = if status >= 500 {
        "error"
    } else if status >= 400 {
        "warn"
    } else {
        "info"
    };
    let path = match random.below(4) {
        0 => format!("/api/v1/{resource}/{id}"),
        1 => format!("/api/v1/{resource}/{id}/items/{}", random.below(1000)),
        2 => format!("/api/v2/{resource}?page={}&limit=50", random.below(200)),
        _ => format!("/api/v1/{resource}/{id:x}-{:04x}", random.below(65536)),
    };
    let message = match (status, random.below(3)) {
        (500 | 503, 0) => format!(
            "upstream {service}-db-{} timed out after {latency:.1}ms (attempt {} of 3)",
            random.below(8),
            random.below(3) + 1
        ),
        (500 | 503, _) => format!(
            "failed to {} {resource} {id} for user {user}: connection reset by 10.{}.{}.{}",
            method.to_lowercase(),
            random.below(256),
            random.below(256),
            random.below(256)
        ),
        (404, _) => format!("{resource} {id} not found for user {user}"),
        (429, _) => format!(
            "rate limit exceeded for user {user}: {} requests in 60s",
            100 + random.below(900)
        ),
        _ => format!("{method} {path} returned {status} in {latency:.1}ms for user {user}"),
    };
    let mut line = format!(
        "{{\"@timestamp\":\"{}\",\"level\":\"{level}\",\"service\":\"{service}\",\"host\":\"{service}-{:x}-{:05x}\",\"http\":{{\"method\":\"{method}\",\"path\":\"{path}\",\"status\":{status},\"bytes\":{}}},\"latency_ms\":{latency:.3},\"trace_id\":\"{:016x}{:016x}\",\"span_id\":\"{:016x}\"",
        chrono::DateTime::from_timestamp_millis(time_ms)
            .expect("valid time")
            .format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        random.below(0xffff_ffff),
        random.below(0xfffff),
        random.below(500_000),
        random.next(),
        random.next(),
        random.next(),
    );
    if random.below(3) != 0 {
        line.push_str(&format!(",\"user\":{{\"id\":\"u-{user}\"}}"));
    }
    if status >= 500 {
        let error = ERROR_TYPES[random.below(ERROR_TYPES.len() as u64) as usize];
        line.push_str(&format!(
            ",\"error\":{{\"type\":\"{error}\",\"message\":\"{error} in {service} handler at line {}\"}}",
            random.below(900) + 10
        ));
    }
    if random.below(4) == 0 {
        line.push_str(&format!(
            ",\"k8s\":{{\"pod\":\"{service}-{:08x}-{:05x}\",\"namespace\":\"prod\"}}",
            random.below(0xffff_ffff),
            random.below(0xfffff)
        ));
    }
    if random.below(10) == 0 {
        line.push_str(&format!(",\"retry\":{}", random.below(5)));
    }
    if random.below(8) == 0 {
        line.push_str(",\"tags\":[\"canary\",\"eu-west-1\"]");
    }
    line.push_str(&format!(",\"message\":\"{message}\"}}"));
    line
}

/// utime + stime of `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

/// Peak RSS (VmHWM) of `pid`, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Resident set (VmRSS) and its anonymous part (RssAnon: heap, not mapped index files) of
/// `pid`, in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// Median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The `lookout` binary as a command, under `WRAPPER` when set (a profiler command such
/// as `perf record -g -o FILE --`; CPU figures are then the wrapper's).
pub fn lookout_command() -> std::process::Command {
    let wrapper: Vec<String> = std::env::var("WRAPPER")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    match wrapper.split_first() {
        Some((program, arguments)) => {
            let mut command = std::process::Command::new(program);
            command.args(arguments).arg(env!("CARGO_BIN_EXE_lookout"));
            command
        }
        None => std::process::Command::new(env!("CARGO_BIN_EXE_lookout")),
    }
}

/// Reads a child's stdout until `listening on ADDR`; returns `http://ADDR`.
pub fn wait_listening(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout piped"));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).expect("read stdout") > 0,
            "server exited before listening"
        );
        if let Some(address) = line.trim().strip_prefix("listening on ") {
            return format!("http://{address}");
        }
    }
}

/// Builds the index `logs` of `docs` documents through `IndexStore::apply`, the path the
/// server's log thread uses (without HTTP and the write-ahead log, which the ingest
/// benchmark measures), with hour partitions; `document(seq, random)` gives each
/// document's event time (micros) and body, in time order.
pub fn build_store(
    dir: &Path,
    docs: u64,
    mut document: impl FnMut(u64, &mut Random) -> (i64, serde_json::Value),
) -> std::sync::Arc<lookout::index::IndexStore> {
    let mut random = Random(0x2545_F491_4F6C_DD1D);
    write_store(dir, 7 * 24 * 3_600_000_000, 0, docs, |doc_seq| {
        let (micros, body) = document(doc_seq, &mut random);
        let source = bytes::Bytes::from(serde_json::to_vec(&body).expect("json"));
        (micros, source)
    })
}

/// Opens (or creates) the store at `dir` with hourly partitions, as the benches write it.
pub fn open_store(dir: &Path, retention_micros: i64) -> std::sync::Arc<lookout::index::IndexStore> {
    let settings = lookout::index::store::StoreSettings {
        partition_span_micros: 3_600_000_000,
        retention_micros,
        writer: lookout::index::partition::WriterOptions {
            threads: 2,
            memory_bytes: 256 << 20,
        },
        max_open_writers: 2,
    };
    std::sync::Arc::new(lookout::index::IndexStore::open(dir, settings).expect("store"))
}

/// Adds `docs` documents to the index `logs` of the store at `dir` (created if new) through
/// `IndexStore::apply` in batches of 10 000, committing every 500 000 and at the end, then
/// closes the store; `document(seq)` gives each one's event time (micros) and JSON source,
/// in time order. Documents get the ids `first_id..` and the write sequence numbers follow
/// the store's highest committed one, so a server (whose write-ahead log goes on from
/// there) and this can take turns on the same data directory.
pub fn write_store(
    dir: &Path,
    retention_micros: i64,
    first_id: u64,
    docs: u64,
    mut document: impl FnMut(u64) -> (i64, bytes::Bytes),
) -> std::sync::Arc<lookout::index::IndexStore> {
    use lookout::index::document::LogDoc;
    use lookout::index::store::WriteOp;
    let store = open_store(dir, retention_micros);
    let mut seq = store.max_committed_seq();
    let mut batch = Vec::new();
    for doc_seq in 0..docs {
        let (micros, source) = document(doc_seq);
        let body = lookout::index::body::Body::parse(source).expect("json");
        batch.push(WriteOp::Index {
            index: "logs".into(),
            doc: LogDoc {
                id: format!("{:016x}", first_id + doc_seq),
                timestamp_micros: micros,
                body,
                timestamp_key: Some("@timestamp".into()),
                fields: store.fields,
            },
            overwrite: false,
            explicit_id: false,
        });
        if batch.len() == 10_000 {
            seq += 1;
            store
                .apply(seq, std::mem::take(&mut batch), false)
                .expect("apply");
        }
        if doc_seq % 500_000 == 499_999 {
            store.commit_all().expect("commit");
        }
    }
    seq += 1;
    store.apply(seq, batch, false).expect("apply");
    store.close().expect("close");
    store
}

/// An HTTP status as request logs have them: 2% 500s, 3% 404s, the rest 200s.
pub fn http_status(random: &mut Random) -> u64 {
    match random.below(100) {
        0..=1 => 500,
        2..=4 => 404,
        _ => 200,
    }
}

/// One request-log line of `service` with `status`, stamped `micros`.
pub fn request_line(
    micros: i64,
    service: &str,
    status: u64,
    random: &mut Random,
) -> serde_json::Value {
    serde_json::json!({
        "@timestamp": chrono::DateTime::from_timestamp_micros(micros).expect("time").to_rfc3339(),
        "level": if status == 500 { "error" } else { "info" },
        "service": service,
        "status": status,
        "http": {"method": "GET", "path": "/api/items", "bytes": random.below(50_000)},
        "latency_ms": random.below(2_000_000) as f64 / 1000.0,
        "trace_id": format!("{:016x}{:016x}", random.next(), random.next()),
        "message": "request completed",
    })
}

/// Error types whose presence rotates with the hour: at UTC hour h a failed request's type
/// is one of `CHANGING_ERRORS[(h + 0..3) % 24]`, so each type occurs three hours a day and
/// one comes back every hour after 21 hours away (new to a lookback of less than that).
const CHANGING_ERRORS: [&str; 24] = [
    "TimeoutError",
    "ConnectionResetError",
    "ValidationError",
    "PaymentDeclined",
    "NullPointerException",
    "DeadlineExceeded",
    "OutOfStock",
    "RateLimited",
    "AuthExpired",
    "SchemaMismatch",
    "DiskFull",
    "DnsFailure",
    "TlsHandshakeError",
    "PoolExhausted",
    "LockTimeout",
    "SerializationError",
    "QuotaExceeded",
    "UpstreamUnavailable",
    "InvalidCursor",
    "ChecksumMismatch",
    "DuplicateKey",
    "CircuitOpen",
    "StaleRead",
    "ConfigMissing",
];

/// [`request_line`] whose 500s also carry an `error.type` that comes and goes (see
/// `CHANGING_ERRORS`) and a message of that type's own shape with numbers and ids in it
/// (`DiskFull: POST /api/items/4711 failed after 523.1 ms on web-07 (attempt 2 of 3)`):
/// what `new_term` and `new_pattern` rules read. Other lines are [`request_line`]'s.
pub fn request_line_with_errors(
    micros: i64,
    service: &str,
    status: u64,
    random: &mut Random,
) -> serde_json::Value {
    let mut line = request_line(micros, service, status, random);
    if status == 500 {
        let hour = micros.div_euclid(3_600_000_000) as u64;
        let kind = ((hour + random.below(3)) % CHANGING_ERRORS.len() as u64) as usize;
        let error = CHANGING_ERRORS[kind];
        let method = ["GET", "POST", "PUT", "DELETE"][kind % 4];
        let message = format!(
            "{error}: {method} /api/items/{} failed after {:.1} ms on web-{:02} (attempt {} of 3)",
            random.below(100_000),
            line["latency_ms"].as_f64().unwrap_or_default(),
            random.below(24),
            random.below(3) + 1
        );
        line["error"] = serde_json::json!({"type": error});
        line["message"] = message.into();
    }
    line
}

/// POSTs one NDJSON `_bulk` body to `url`, again after 50 ms while the server answers
/// 429; the answer must be a success without item errors.
pub async fn post_bulk(client: &reqwest::Client, url: &str, body: &[u8]) {
    loop {
        let response = client
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(body.to_vec())
            .send()
            .await
            .expect("bulk");
        if response.status() == 429 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        }
        assert!(
            response.status().is_success(),
            "bulk failed: {}",
            response.status()
        );
        let answer: serde_json::Value = response.json().await.expect("bulk json");
        assert_eq!(answer["errors"], false, "bulk item errors");
        return;
    }
}

/// Serves `router` on a loopback port in the current runtime; returns `http://ADDR`.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

/// Starts the release `lookout serve` on a loopback port with `data`, `queries` and
/// `config`, its logs at `warn` to `stderr`; returns it and `http://ADDR`.
pub fn start_lookout(
    data: &Path,
    queries: &Path,
    config: &Path,
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    let mut child = lookout_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--queries")
        .arg(queries)
        .arg("--config")
        .arg(config)
        .env("LOOKOUT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn lookout serve");
    let base = wait_listening(&mut child);
    (child, base)
}

/// Bytes of the files under `dir` that `keep` keeps (recursively; 0 when absent).
pub fn directory_bytes(dir: &std::path::Path, keep: &dyn Fn(&std::path::Path) -> bool) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += directory_bytes(&path, keep);
        } else if keep(&path) {
            total += entry.metadata().map_or(0, |meta| meta.len());
        }
    }
    total
}
