//! Rule evaluation at scale: `RULES` (default 1000) log rules, each evaluated every minute
//! at second 0 over an index of `DOCS` (default 10 M) log lines spanning the last 24 h,
//! while live traffic keeps arriving through `_bulk` (`RATE` lines/s, default 120, 2% of
//! them 500s spread over 1000 services). Each minute 1% of the rules' services get 25
//! extra 500s, so their rules fire at the next tick and the previous ten resolve;
//! every rule notifies its own mock Slack webhook on loopback.
//!
//! Measured on the real `lookout serve` (release build): the server's CPU seconds per
//! minute (utime + stime from /proc) with the rules and, side by side, without them under
//! the same traffic; and how long after the tick each Slack POST arrives. The fired set is
//! checked against the injected one every tick.
//!
//! With `MIX=1` the same run goes on to a third server: `RULES` rules mixed across the
//! types (rule k takes the type `MIX_OF_TWENTY[k % 20]`, on service k: 45 % counts as
//! above, 20 % aggregates (p95, avg and max of `latency_ms`, cardinality of `trace_id`),
//! 10 % ratios, 10 % spikes (compare_to 1h and previous_window), 5 % new_term on
//! `error.type` and 5 % new_pattern on `message` (lookback 6 h, six hour partitions), 5 %
//! SLOs (95 % over 30 days, the default burn-rate windows)), over lines whose 500s carry an
//! `error.type` that comes and goes and a message of its own shape
//! ([`common::request_line_with_errors`]; the index is built from them for all three
//! servers). Its first ticks load the new_term and new_pattern lookbacks; the measured
//! minutes start once every rule has evaluated. Checked: the count rules' fired set as
//! above, no tick missed (`lookout_rule_missed_ticks_total`), and at the end every rule
//! healthy with an empty `lastError` (`/api/v1/rules`, read after the measured minutes).
//! Each type's share is the sum of its rules' `evaluationTime` (an evaluation's wall time,
//! concurrent evaluations overlapping) at the last tick, from that same read.
//!
//! Figures (docs/performance.md, "1 000 rules mixed across the types"): 10 M docs, 1 000
//! count rules 1.68 % of a core, 1 000 mixed rules 2.67 %.
//!
//! `cargo bench --bench rules` (env: `DOCS`, `RULES`, `RATE`, `MINUTES` (default 5),
//! `BASELINE_MINUTES` (default 2), `MIX` (default 0)).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use common::{Random, cpu_seconds, env_or, median};
use serde_json::json;

const HOUR_MICROS: i64 = 3_600_000_000;
const SERVICES: u64 = 1000;

fn service(number: u64) -> String {
    format!("svc-{number:04}")
}

/// A request line of `service`: with `mix`, one whose 500s carry an error type and message.
fn line(
    mix: bool,
    micros: i64,
    service: &str,
    status: u64,
    random: &mut Random,
) -> serde_json::Value {
    if mix {
        common::request_line_with_errors(micros, service, status, random)
    } else {
        common::request_line(micros, service, status, random)
    }
}

/// Builds the history (the 24 h before `end_micros`) into the data directory's index
/// location.
fn build_index(indices: &Path, docs: u64, end_micros: i64, mix: bool) {
    let start_micros = end_micros - 24 * HOUR_MICROS;
    common::build_store(indices, docs, |doc_seq, random| {
        let micros = start_micros + (doc_seq as i64 * 24 * HOUR_MICROS) / docs as i64;
        let status = common::http_status(random);
        let service = service(random.below(SERVICES));
        (micros, line(mix, micros, &service, status, random))
    });
}

/// The rule types of the mixed run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Count,
    Aggregate,
    Ratio,
    Spike,
    NewTerm,
    NewPattern,
    Slo,
}

/// Rule k's type in the mixed run is `MIX_OF_TWENTY[k % 20]`: 9 counts, 4 aggregates, 2
/// ratios, 2 spikes, one new_term, one new_pattern and one SLO in twenty, interleaved so
/// that each minute's injected services (ten consecutive numbers) hit several types.
const MIX_OF_TWENTY: [Kind; 20] = [
    Kind::Count,
    Kind::Aggregate,
    Kind::Count,
    Kind::Ratio,
    Kind::Count,
    Kind::Spike,
    Kind::Count,
    Kind::Aggregate,
    Kind::Count,
    Kind::NewTerm,
    Kind::Count,
    Kind::Aggregate,
    Kind::Count,
    Kind::Ratio,
    Kind::Count,
    Kind::Spike,
    Kind::Count,
    Kind::Aggregate,
    Kind::NewPattern,
    Kind::Slo,
];

impl Kind {
    /// What its rules' names start with (then the service).
    fn prefix(self) -> &'static str {
        match self {
            Kind::Count => "",
            Kind::Aggregate => "agg-",
            Kind::Ratio => "ratio-",
            Kind::Spike => "spike-",
            Kind::NewTerm => "newterm-",
            Kind::NewPattern => "pattern-",
            Kind::Slo => "slo-",
        }
    }

    fn of_rule(name: &str) -> Kind {
        [
            Kind::Aggregate,
            Kind::Ratio,
            Kind::Spike,
            Kind::NewTerm,
            Kind::NewPattern,
            Kind::Slo,
        ]
        .into_iter()
        .find(|kind| name.starts_with(kind.prefix()))
        .unwrap_or(Kind::Count)
    }

    /// Rule `number`'s type: a count unless `mix`.
    fn of_number(number: u64, mix: bool) -> Kind {
        if mix {
            MIX_OF_TWENTY[(number % 20) as usize]
        } else {
            Kind::Count
        }
    }
}

/// Rule `number`, on service `number`, of type `kind`, every minute at second 0. Counts:
/// `status:500` over 1 m above 20. Aggregates over 5 m of the service's lines: p95 of
/// `latency_ms` above 1950, its avg above 1500, its max above 2000, the cardinality of
/// `trace_id` above 500. Ratios: its 500s over all its lines in 5 m above 0.2 (at least 10
/// lines). Spikes: its errors in 5 m at least 3 × those an hour before, or those of the
/// previous 5 m, at least 10. new_term (`error.type`) and new_pattern (`message`, at least
/// one line) on its errors over 1 m, lookback 6 h. SLOs: 95 % of its lines not 5xx over 30
/// days, the default page and ticket windows.
fn rule(number: u64, kind: Kind) -> serde_json::Value {
    let name = service(number);
    let errors = format!("level:error AND service:{name}");
    let mut rule = match kind {
        Kind::Count => json!({
            "query": format!("status:500 AND service:{name}"),
            "window": "1m",
            "threshold": {"op": ">", "value": 20},
            "severity": "critical",
            "summary": "{{ $count }} HTTP 500s in the last {{ $window }}",
        }),
        Kind::Aggregate => {
            let (aggregate, above) = match number % 20 {
                1 => (
                    json!({"op": "percentile", "field": "latency_ms", "percentile": 95}),
                    1950,
                ),
                7 => (json!({"op": "avg", "field": "latency_ms"}), 1500),
                11 => (json!({"op": "max", "field": "latency_ms"}), 2000),
                _ => (json!({"op": "cardinality", "field": "trace_id"}), 500),
            };
            json!({
                "query": format!("service:{name}"),
                "window": "5m",
                "aggregate": aggregate,
                "threshold": {"op": ">", "value": above},
                "severity": "warning",
            })
        }
        Kind::Ratio => json!({
            "query": format!("status:500 AND service:{name}"),
            "window": "5m",
            "ratio": {"denominator": format!("service:{name}"), "min_denominator": 10},
            "threshold": {"op": ">", "value": 0.2},
            "severity": "warning",
        }),
        Kind::Spike => json!({
            "query": errors,
            "window": "5m",
            "spike": {
                "ratio": 3,
                "compare_to": if number % 20 == 5 { "1h" } else { "previous_window" },
                "direction": "up",
                "min_count": 10,
            },
            "severity": "warning",
        }),
        Kind::NewTerm => json!({
            "query": errors,
            "window": "1m",
            "new_term": {"fields": ["error.type"], "lookback": "6h"},
            "severity": "warning",
        }),
        Kind::NewPattern => json!({
            "query": errors,
            "window": "1m",
            "new_pattern": {"field": "message", "lookback": "6h", "min_count": 1},
            "severity": "warning",
        }),
        Kind::Slo => json!({
            "slo": {
                "objective": 95,
                "period": "30d",
                "good": format!("service:{name} AND NOT status:>=500"),
                "total": format!("service:{name}"),
            },
        }),
    };
    let fields = rule.as_object_mut().expect("an object");
    fields.insert("version".into(), json!(1));
    fields.insert("schedule".into(), json!("0 * * * * *"));
    fields.insert("index".into(), json!("logs"));
    fields.insert(
        "notify".into(),
        json!([format!("hook_{}{name}", kind.prefix())]),
    );
    rule
}

/// The services whose count rules should fire at the tick ending minute `minute`
/// (minutes since the epoch): all of them get 25 extra 500s in that minute.
fn firing_set(minute: i64, rules: u64) -> BTreeSet<u64> {
    let firing = (rules / 100).max(1);
    (0..firing)
        .map(|offset| (minute as u64 * firing + offset) % rules)
        .collect()
}

/// One POST the mock Slack received: when, on which hook, firing or resolved.
#[derive(Clone)]
struct Post {
    at: DateTime<Utc>,
    hook: String,
    firing: bool,
}

async fn start_mock(posts: Arc<Mutex<Vec<Post>>>) -> String {
    let handler = move |axum::extract::Path(hook): axum::extract::Path<String>,
                        body: axum::body::Bytes| {
        let posts = posts.clone();
        async move {
            let at = Utc::now();
            let payload: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let firing = payload["text"]
                .as_str()
                .is_some_and(|text| text.starts_with("[FIRING"));
            posts.lock().expect("posts").push(Post { at, hook, firing });
            "ok"
        }
    };
    common::serve(axum::Router::new().route("/hook/{hook}", axum::routing::post(handler))).await
}

/// Writes `rules` rules (mixed across the types when `mix`) into `work/NAME/queries` and a
/// config naming one Slack notifier per rule; returns both paths.
fn write_rules(work: &Path, name: &str, rules: u64, mock: &str, mix: bool) -> (PathBuf, PathBuf) {
    let queries = work.join(name).join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let mut config = String::new();
    for number in 0..rules {
        let kind = Kind::of_number(number, mix);
        let name = format!("{}{}", kind.prefix(), service(number));
        std::fs::write(
            queries.join(format!("{name}.json")),
            rule(number, kind).to_string(),
        )
        .expect("rule");
        config.push_str(&format!(
            "[notifiers.hook_{name}]\ntype = \"slack\"\nurl = \"{mock}/hook/{name}\"\n\n"
        ));
    }
    let config_path = work.join(name).join("lookout.toml");
    std::fs::write(&config_path, config).expect("config");
    (queries, config_path)
}

fn start_server(data: &Path, queries: &Path, config: &Path) -> (Child, String) {
    common::start_lookout(data, queries, config, Stdio::inherit())
}

/// Live traffic until `stop`: `rate` lines a second, and 25 500s for each service of the
/// current minute's firing set, ten seconds into the minute.
async fn traffic(
    base: String,
    (rate, rules, mix): (u64, u64, bool),
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let client = reqwest::Client::new();
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let mut injected_minute = -1;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        interval.tick().await;
        let now = Utc::now();
        let micros = now.timestamp_micros();
        let mut body = String::new();
        let mut push = |value: serde_json::Value| {
            body.push_str("{\"index\":{}}\n");
            body.push_str(&value.to_string());
            body.push('\n');
        };
        for _ in 0..rate {
            let status = common::http_status(&mut random);
            let service = service(random.below(SERVICES));
            push(line(mix, micros, &service, status, &mut random));
        }
        let minute = now.timestamp() / 60;
        if now.second() >= 10 && now.second() < 50 && injected_minute != minute {
            injected_minute = minute;
            for number in firing_set(minute, rules) {
                for _ in 0..25 {
                    push(line(mix, micros, &service(number), 500, &mut random));
                }
            }
        }
        let response = client
            .post(format!("{base}/logs/_bulk"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("bulk");
        assert!(
            response.status().is_success(),
            "bulk: {}",
            response.status()
        );
    }
}

/// Waits until the wall clock reaches `second` past a minute.
async fn until_second(second: u32) -> DateTime<Utc> {
    loop {
        let now = Utc::now();
        let wait = (60 + i64::from(second) - i64::from(now.second())) % 60;
        if wait == 0 {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(
            (wait * 1000 - i64::from(now.timestamp_subsec_millis())).max(1) as u64,
        ))
        .await;
    }
}

/// The rules `/api/v1/rules` lists (one per group).
async fn listed_rules(client: &reqwest::Client, base: &str) -> Vec<serde_json::Value> {
    let answer: serde_json::Value = client
        .get(format!("{base}/api/v1/rules"))
        .send()
        .await
        .expect("rules API")
        .json()
        .await
        .expect("rules JSON");
    answer["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn last_evaluation(rule: &serde_json::Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(rule["lastEvaluation"].as_str()?)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// The value of the unlabelled series `name` on `/metrics`.
async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} on /metrics"))
}

/// The latest whole minute up to `time`.
fn minute_of(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(time.timestamp().div_euclid(60) * 60, 0).expect("time")
}

/// Waits (up to 20 minutes) until each of the `rules` rules has evaluated at the latest
/// tick: the load passes of the first ticks are done and the rules keep up.
async fn until_rules_keep_up(client: &reqwest::Client, base: &str, rules: usize) {
    let deadline = Instant::now() + Duration::from_secs(20 * 60);
    let started = Instant::now();
    loop {
        let tick = minute_of(Utc::now());
        let listed = listed_rules(client, base).await;
        let behind = listed
            .iter()
            .filter(|rule| last_evaluation(rule).is_none_or(|time| time < tick))
            .count();
        if listed.len() == rules && behind == 0 {
            println!(
                "all {rules} rules evaluated at the tick {tick} ({:.0} s after the warm-up)",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after 20 minutes {behind} of {} rules (of {rules}) still had not evaluated at the latest tick",
            listed.len()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// What a server's measured minutes gave.
struct Measured {
    /// Server CPU seconds per minute.
    cpu_per_minute: f64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Per rule type, from `/api/v1/rules` read after the measured minutes: the rules
    /// that evaluated at the latest tick and the sum of their `evaluationTime` there.
    evaluations: BTreeMap<Kind, (u64, f64)>,
    /// Ticks the scheduler missed over the measured minutes.
    missed_ticks: f64,
    /// The rules listed at the end, and those not healthy then (name: lastError).
    listed: usize,
    unhealthy: Vec<String>,
}

/// Runs a server under traffic for `minutes` whole minutes (after one minute of warm-up
/// and, with `rules` loaded, until every rule keeps up); returns what it measured.
async fn measure(
    data: &Path,
    (queries, config): (&Path, &Path),
    (rate, rules, mix): (u64, u64, bool),
    loaded: usize,
    minutes: u64,
) -> Measured {
    let (mut child, base) = start_server(data, queries, config);
    let client = reqwest::Client::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(traffic(base.clone(), (rate, rules, mix), stop.clone()));
    // warm up through one tick (and the rules' load passes), then measure from 30 s into
    // a minute, whole minutes
    until_second(30).await;
    until_second(30).await;
    if loaded > 0 {
        until_rules_keep_up(&client, &base, loaded).await;
        until_second(30).await;
    }
    let missed_before = metric(&client, &base, "lookout_rule_missed_ticks_total").await;
    let (started, cpu_before) = (Utc::now(), cpu_seconds(child.id()));
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(60 * minutes)).await;
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let cpu_per_minute = cpu / (wall.elapsed().as_secs_f64() / 60.0);
    let ended = Utc::now();
    let missed_ticks =
        metric(&client, &base, "lookout_rule_missed_ticks_total").await - missed_before;
    // after the measured minutes, so the read costs them nothing: the rules' health and
    // each type's evaluation time at the latest tick
    let listed = listed_rules(&client, &base).await;
    let tick = minute_of(Utc::now());
    let mut evaluations: BTreeMap<Kind, (u64, f64)> = BTreeMap::new();
    for rule in listed
        .iter()
        .filter(|rule| last_evaluation(rule) == Some(tick))
    {
        let sum = evaluations
            .entry(Kind::of_rule(rule["name"].as_str().unwrap_or_default()))
            .or_default();
        sum.0 += 1;
        sum.1 += rule["evaluationTime"].as_f64().unwrap_or_default();
    }
    let unhealthy = listed
        .iter()
        .filter(|rule| {
            rule["health"] != "ok"
                || rule["lastError"]
                    .as_str()
                    .is_some_and(|error| !error.is_empty())
        })
        .map(|rule| format!("{}: {} {}", rule["name"], rule["health"], rule["lastError"]))
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.expect("traffic");
    // a graceful stop (SIGTERM), so the next run opens a clean data directory
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    Measured {
        cpu_per_minute,
        from: started,
        to: ended,
        evaluations,
        missed_ticks,
        listed: listed.len(),
        unhealthy,
    }
}

/// Checks the Slack POSTs of the ticks between `from` and `to`: the count rules' fired set
/// against the injected one at each tick; prints the POSTs' delays after their tick and,
/// per rule type, the firing POSTs.
fn check_posts(posts: &[Post], (from, to): (DateTime<Utc>, DateTime<Utc>), rules: u64, mix: bool) {
    let mut delays = Vec::new();
    let mut mismatched = 0;
    let mut ticks = 0;
    let mut firing_by_kind: BTreeMap<Kind, u64> = BTreeMap::new();
    let mut tick = (from.timestamp() / 60 + 1) * 60;
    while tick <= to.timestamp() {
        ticks += 1;
        let in_tick: Vec<&Post> = posts
            .iter()
            .filter(|post| post.at.timestamp() >= tick && post.at.timestamp() < tick + 60)
            .collect();
        let fired: BTreeSet<String> = in_tick
            .iter()
            .filter(|post| post.firing && Kind::of_rule(&post.hook) == Kind::Count)
            .map(|post| post.hook.clone())
            .collect();
        let expected: BTreeSet<String> = firing_set(tick / 60 - 1, rules)
            .into_iter()
            .filter(|number| Kind::of_number(*number, mix) == Kind::Count)
            .map(service)
            .collect();
        if fired != expected {
            mismatched += 1;
            println!("tick {tick}: count rules fired {fired:?}, expected {expected:?}");
        }
        for post in in_tick {
            if post.firing {
                *firing_by_kind.entry(Kind::of_rule(&post.hook)).or_default() += 1;
            }
            delays.push((post.at.timestamp_micros() - tick * 1_000_000) as f64 / 1e6);
        }
        tick += 60;
    }
    delays.sort_by(f64::total_cmp);
    let at = |fraction: f64| {
        delays
            .get(((delays.len() as f64 * fraction) as usize).min(delays.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let mut sorted = delays.clone();
    println!(
        "{} Slack POSTs over {ticks} ticks ({mismatched} ticks whose count rules' fired set differed from the injected one): after the tick p50 {:.3} s, p99 {:.3} s, max {:.3} s; firing POSTs by rule type {firing_by_kind:?}",
        delays.len(),
        if sorted.is_empty() {
            0.0
        } else {
            median(&mut sorted)
        },
        at(0.99),
        delays.last().copied().unwrap_or_default()
    );
}

/// Prints a rule run's figures against the baseline.
fn report(label: &str, measured: &Measured, baseline: f64, rules: u64) {
    let own = measured.cpu_per_minute - baseline;
    println!(
        "{label}: {:.2} CPU-s per minute ({:.2}% of a core); rules alone: {own:.2} CPU-s per minute ({:.2}% of a core); {} ticks missed; {} rules listed, {} unhealthy at the end",
        measured.cpu_per_minute,
        measured.cpu_per_minute / 60.0 * 100.0,
        own / 60.0 * 100.0,
        measured.missed_ticks,
        measured.listed,
        measured.unhealthy.len()
    );
    for unhealthy in &measured.unhealthy {
        println!("  unhealthy: {unhealthy}");
    }
    assert_eq!(measured.listed as u64, rules, "{label}: rules listed");
    let total: f64 = measured
        .evaluations
        .values()
        .map(|(_, seconds)| seconds)
        .sum();
    for (kind, (evaluations, seconds)) in &measured.evaluations {
        println!(
            "  {kind:?}: {evaluations} rules evaluated at the last tick, {:.2} ms each on average (evaluationTime), {:.1}% of that tick's evaluation time",
            seconds / *evaluations as f64 * 1000.0,
            seconds / total.max(f64::MIN_POSITIVE) * 100.0
        );
    }
}

fn main() {
    if !common::invoked_as_benchmark("rules") {
        return;
    }
    lookout::install_tls_provider();
    let docs = env_or("DOCS", 10_000_000);
    let rules = env_or("RULES", 1000);
    let rate = env_or("RATE", 120);
    let minutes = env_or("MINUTES", 5);
    let baseline_minutes = env_or("BASELINE_MINUTES", 2);
    let mix = env_or("MIX", 0) == 1;
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");

    let started = Instant::now();
    build_index(
        &data.join("logs/indices"),
        docs,
        Utc::now().timestamp_micros(),
        mix,
    );
    println!(
        "index: {docs} docs over the last 24 h built in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let mock = start_mock(posts.clone()).await;

        let empty_queries = work.path().join("no-queries");
        std::fs::create_dir_all(&empty_queries).expect("mkdir");
        let empty_config = work.path().join("empty.toml");
        std::fs::write(&empty_config, "").expect("config");
        let baseline = measure(
            &data,
            (&empty_queries, &empty_config),
            (rate, rules, mix),
            0,
            baseline_minutes,
        )
        .await
        .cpu_per_minute;
        println!(
            "without rules: {baseline:.2} CPU-s per minute ({:.2}% of a core), {rate} lines/s of traffic",
            baseline / 60.0 * 100.0
        );

        let (queries, config) = write_rules(work.path(), "count", rules, &mock, false);
        let counts = measure(&data, (&queries, &config), (rate, rules, mix), rules as usize, minutes).await;
        report(&format!("with {rules} count rules every minute"), &counts, baseline, rules);
        check_posts(&posts.lock().expect("posts").clone(), (counts.from, counts.to), rules, false);

        if mix {
            let (queries, config) = write_rules(work.path(), "mix", rules, &mock, true);
            let mixed = measure(&data, (&queries, &config), (rate, rules, mix), rules as usize, minutes).await;
            report(&format!("with {rules} mixed rules every minute"), &mixed, baseline, rules);
            check_posts(&posts.lock().expect("posts").clone(), (mixed.from, mixed.to), rules, true);
        }
    });
}
