//! ElastAlert2 (PyPI `elastalert2`, unmodified) runs each of its rule types against a
//! real Lookout with `elastalert-test-rule` and alerts: any (with `query_key`,
//! `aggregation` and `max_query_size` small enough to scroll), blacklist, whitelist,
//! change, frequency (plain, `use_count_query`, `use_terms_query`), spike, flatline,
//! new_term, cardinality, metric_aggregation, spike_aggregation, percentage_match.
//!
//! ElastAlert2 pins an Elasticsearch 7 client, which conflicts with the 8.x client the
//! other tests use; scripts/test installs it into its own virtualenv,
//! `~/.cache/lookout-elastalert2` (or `LOOKOUT_ELASTALERT2=DIR`).

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{Server, bulk_body};

/// The virtualenv ElastAlert2 is installed in.
fn elastalert_bin() -> PathBuf {
    let dir = std::env::var_os("LOOKOUT_ELASTALERT2").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/lookout-elastalert2")
        },
        PathBuf::from,
    );
    let bin = dir.join("bin/elastalert-test-rule");
    assert!(
        bin.exists(),
        "ElastAlert2 is not installed at {}: run scripts/test, which installs it there",
        dir.display()
    );
    bin
}

/// Thirty lines over the last hour (one every two minutes; every third an error, users
/// u0–u3, latency rising 0..290) and a burst of twenty errors from user u9 with latency
/// 5000 between twenty and fifteen minutes ago; one line of a new user two minutes from
/// now.
fn documents() -> Vec<Value> {
    let now = chrono::Utc::now();
    let mut docs: Vec<Value> = (0..30i64)
        .map(|index| {
            let time = now - chrono::Duration::minutes(60 - 2 * index);
            let error = index % 3 == 0;
            json!({
                "@timestamp": time.to_rfc3339(),
                "level": if error { "error" } else { "info" },
                "user": format!("u{}", index % 4),
                "status": if error { 500 } else { 200 },
                "latency": index * 10,
                "message": format!("request {index}"),
            })
        })
        .collect();
    // a user first seen after now: new to new_term, whose terms window ends now
    docs.push(json!({
        "@timestamp": (now + chrono::Duration::minutes(2)).to_rfc3339(),
        "level": "info",
        "user": "newcomer",
        "status": 200,
        "latency": 1,
        "message": "first visit",
    }));
    docs.extend((0..20i64).map(|index| {
        let time = now - chrono::Duration::seconds(20 * 60 - 15 * index);
        json!({
            "@timestamp": time.to_rfc3339(),
            "level": "error",
            "user": "u9",
            "status": 503,
            "latency": 5000,
            "message": format!("burst {index}"),
        })
    }));
    docs
}

/// Each rule type with options that make it alert on [`documents`].
const RULES: &[(&str, &str)] = &[
    (
        "any",
        "type: any\nfilter:\n- term:\n    level: error\nquery_key: user\nmax_query_size: 5\naggregation:\n  minutes: 10\n",
    ),
    (
        "blacklist",
        "type: blacklist\ncompare_key: user\nblacklist: [u1]\n",
    ),
    (
        "whitelist",
        "type: whitelist\ncompare_key: user\nwhitelist: [u0]\nignore_null: true\n",
    ),
    (
        "change",
        "type: change\ncompare_key: level\nquery_key: user\nignore_null: true\ntimeframe:\n  hours: 2\n",
    ),
    (
        "frequency",
        "type: frequency\nnum_events: 5\ntimeframe:\n  hours: 1\nfilter:\n- term:\n    level: error\n",
    ),
    (
        "frequency_count_query",
        "type: frequency\nnum_events: 5\ntimeframe:\n  hours: 1\nuse_count_query: true\ndoc_type: _doc\n",
    ),
    (
        "frequency_terms_query",
        "type: frequency\nnum_events: 5\ntimeframe:\n  hours: 1\nuse_terms_query: true\nquery_key: user\ndoc_type: _doc\n",
    ),
    (
        "spike",
        "type: spike\nspike_height: 3\nspike_type: up\ntimeframe:\n  minutes: 10\nthreshold_cur: 10\n",
    ),
    (
        "flatline",
        "type: flatline\nthreshold: 1000\ntimeframe:\n  minutes: 30\n",
    ),
    (
        "new_term",
        "type: new_term\nfields: [user]\nterms_window_size:\n  hours: 1\n",
    ),
    (
        "cardinality",
        "type: cardinality\ncardinality_field: user\nmax_cardinality: 2\ntimeframe:\n  hours: 1\n",
    ),
    (
        "metric_aggregation",
        "type: metric_aggregation\nmetric_agg_key: latency\nmetric_agg_type: max\nmax_threshold: 1000\nbuffer_time:\n  minutes: 15\n",
    ),
    (
        "spike_aggregation",
        "type: spike_aggregation\nmetric_agg_key: latency\nmetric_agg_type: max\nspike_height: 3\nspike_type: up\ntimeframe:\n  minutes: 10\nbuffer_time:\n  minutes: 10\n",
    ),
    (
        "percentage_match",
        "type: percentage_match\nmatch_bucket_filter:\n- term:\n    level: error\nmax_percentage: 10\nbuffer_time:\n  minutes: 90\n",
    ),
];

/// The matches `elastalert-test-rule` reports over all its query windows.
fn matches_reported(output: &str) -> u64 {
    output
        .lines()
        .filter(|line| line.starts_with("elastalert_status - "))
        .filter_map(|line| {
            let rest = &line[line.find("'matches': ")? + "'matches': ".len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test]
async fn every_elastalert2_rule_type_alerts_against_lookout() {
    let test_rule = elastalert_bin();
    let data = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(data.path(), &[]);
    let (status, body) = server
        .post_ndjson(
            "/app-logs/_bulk?refresh=true",
            bulk_body("app-logs", &documents()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"], json!(false), "{body}");
    let (host, port) = server
        .address()
        .rsplit_once(':')
        .expect("an address with a port");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).expect("rules dir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "rules_folder: {}\nrun_every:\n  minutes: 1\nbuffer_time:\n  minutes: 90\nes_host: {host}\nes_port: {port}\nwriteback_index: elastalert_status\nalert_time_limit:\n  days: 1\n",
            rules_dir.display()
        ),
    )
    .expect("config written");
    let time = |minutes: i64| {
        (chrono::Utc::now() + chrono::Duration::minutes(minutes))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    // the hour of data; flatline and percentage_match look at whole windows of the last
    // day; new_term runs on to past the new user's line
    let window = |name: &str| -> Vec<String> {
        match name {
            "flatline" | "percentage_match" => vec!["--days".into(), "1".into()],
            "new_term" => vec!["--start".into(), time(-58), "--end".into(), time(5)],
            _ => vec!["--start".into(), time(-58)],
        }
    };
    let mut failures = Vec::new();
    for (name, body) in RULES {
        let rule = rules_dir.join(format!("{name}.yaml"));
        std::fs::write(
            &rule,
            format!(
                "name: {name}\nindex: app-logs\ntimestamp_field: \"@timestamp\"\nalert: debug\n{body}"
            ),
        )
        .expect("rule written");
        let command = test_rule.clone();
        let (config, rule, window) = (config.clone(), rule.clone(), window(name));
        let output = tokio::task::spawn_blocking(move || {
            Command::new(command)
                .arg("--config")
                .arg(&config)
                .arg(&rule)
                .args(&window)
                .output()
                .expect("elastalert-test-rule runs")
        })
        .await
        .expect("joined");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let matches = matches_reported(&text);
        if !output.status.success() || text.contains("Traceback") || matches == 0 {
            failures.push(format!(
                "rule type `{name}`: exit {:?}, {matches} matches\n{}",
                output.status.code(),
                text.lines().rev().take(25).collect::<Vec<_>>().join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
