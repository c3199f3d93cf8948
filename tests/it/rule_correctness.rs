//! Rules that cannot match say so, before and after they load (issue 19): typos in a
//! field, an index and a saved-query name warn in `lookout check`, `PUT` and the dry run
//! and are flagged "never matched" at run time; `expect_matches` alerts on a dead query;
//! `lookout rules test` names its server and refuses to guess; `/api/v1/rules` agrees
//! with the files; `lookout check` reports every mistake of a file at once.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::rules::serve_rules;
use crate::support::slack::{MockSlack, delivered_texts, received, start_mock};
use crate::support::{Server, bulk_body, decode, wait_until};

fn lookout(args: &[&str], cwd: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SLACK_WEBHOOK_URL")
        .env_remove("LOOKOUT_TOKEN")
        .output()
        .expect("run lookout");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn put(server: &Server, name: &str, rule: &Value) -> (u16, Value) {
    let response = server
        .client
        .put(server.url(&format!("/_lookout/rules/{name}")))
        .json(rule)
        .send()
        .await
        .expect("put");
    decode(response).await
}

/// Log lines of now with `level`, `service` and `status`, in index `logs`.
async fn ingest(server: &Server, lines: &[Value]) {
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=wait_for", bulk_body("logs", lines))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
}

fn line(level: &str) -> Value {
    json!({"@timestamp": chrono::Utc::now().to_rfc3339(), "level": level, "service": "payments", "status": 500})
}

fn log_rule(index: &str, query: &str) -> Value {
    json!({
        "version": 1,
        "schedule": "* * * * * *",
        "index": index,
        "query": query,
        "window": "1h",
        "threshold": {"op": ">", "value": 0}
    })
}

fn strings(value: &Value) -> String {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typos_warn_in_check_put_and_dry_run_and_are_flagged_never_matched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let rules = [
        ("payments_errors", log_rule("logs", "level:ERROR")),
        ("field_typo", log_rule("logs", "levle:ERROR")),
        ("index_typo", log_rule("logz", "level:ERROR")),
        (
            "mixed_typo",
            json!({"version": 1, "schedule": "* * * * * *",
                   "promql": "log_matches{query=\"payments_erors\"} > 0"}),
        ),
    ];
    // offline: `lookout check` knows the saved queries of the files it reads
    let files: Vec<String> = rules
        .iter()
        .map(|(name, rule)| {
            let path = queries.join(format!("{name}.json"));
            std::fs::write(&path, serde_json::to_string_pretty(rule).expect("json"))
                .expect("write");
            path.display().to_string()
        })
        .collect();
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, stderr) = lookout(&args, dir.path());
    assert_eq!(code, Some(0), "warnings are not errors: {stderr}");
    let warning = stderr
        .lines()
        .find(|line| line.contains("names no saved query"))
        .unwrap_or_default();
    assert!(
        warning.starts_with(&format!("warning: {}:", files[3]))
            && warning.ends_with(": `promql`: `log_matches{query=\"payments_erors\"}` names no saved query (did you mean `payments_errors`?): it has no series, so this part of the expression is always empty"),
        "{stderr}"
    );
    assert!(stdout.contains("not checked offline"), "{stdout}");

    let server = serve_rules(dir.path(), &queries, &webhook);
    ingest(&server, &[line("ERROR"), line("INFO")]).await;
    wait_until("the four rules run", 30, || async {
        let (_, list) = server.get("/_lookout/rules").await;
        list["rules"].as_array().is_some_and(|rules| {
            rules.len() == 4 && rules.iter().all(|rule| rule["running"] == true)
        })
    })
    .await;

    // PUT answers the warnings of each typo, with the field and its position
    let mut warnings = Vec::new();
    for (name, rule) in &rules {
        let (status, answer) = put(&server, name, rule).await;
        assert!(status == 201 || status == 200, "{answer}");
        warnings.push(strings(&answer["warnings"]));
    }
    assert_eq!(warnings[0], "", "the rule without typos has no warning");
    assert!(
        warnings[1]
            .contains("`query`: field `levle` is in no document of `logs` (did you mean `level`?)"),
        "{warnings:?}"
    );
    assert!(
        warnings[2].contains("`index`: index `logz` does not exist (did you mean `logs`?)"),
        "{warnings:?}"
    );
    assert!(
        warnings[3].contains("names no saved query (did you mean `payments_errors`?)"),
        "{warnings:?}"
    );
    assert!(warnings[1].starts_with("request body:1:"), "{warnings:?}");

    // the dry run says it too, beside its count of nothing
    let (status, dry) = server
        .post_json("/_lookout/rules/field_typo/_dry_run", &json!(null))
        .await;
    assert_eq!(status, 200, "{dry}");
    assert!(
        dry["groups"]
            .as_array()
            .is_some_and(|groups| groups.iter().all(|group| group["count"] == 0.0)),
        "{dry}"
    );
    assert!(strings(&dry["warnings"]).contains("field `levle`"), "{dry}");

    // at run time: the typos never match, the good rule does
    wait_until(
        "the rules API flags the typos as never matched",
        30,
        || async {
            let (_, list) = server.get("/_lookout/rules").await;
            let flag = |name: &str| {
                list["rules"]
                    .as_array()
                    .and_then(|rules| rules.iter().find(|rule| rule["name"] == name))
                    .map(|rule| rule["never_matched"].clone())
            };
            flag("field_typo") == Some(json!(true))
                && flag("index_typo") == Some(json!(true))
                && flag("mixed_typo") == Some(json!(true))
                && flag("payments_errors") == Some(json!(false))
        },
    )
    .await;
    let (_, prometheus) = server.get("/api/v1/rules").await;
    let rule = prometheus["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|group| group["name"] == "index_typo")
        .map(|group| group["rules"][0].clone())
        .expect("listed");
    assert_eq!(rule["neverMatched"], true, "{rule}");
    assert!(strings(&rule["warnings"]).contains("`logz`"), "{rule}");
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expect_matches_rule_alerts_when_its_query_matched_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let mut rule = log_rule("logs", "level:FATAL");
    rule["window"] = json!("2s");
    rule["expect_matches"] = json!("2s");
    // the rule's own `for` does not delay the alarm
    rule["for"] = json!("1h");
    std::fs::write(queries.join("fatal_errors.json"), rule.to_string()).expect("write");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);

    wait_until("the dead-query alarm", 30, received(&mock, 1)).await;
    let texts = delivered_texts(&mock);
    assert!(
        texts[0].contains("`fatal_errors` has matched nothing for 2s"),
        "{texts:?}"
    );
    let (_, alerts) = server.get("/api/v1/alerts").await;
    assert_eq!(
        alerts["data"]["alerts"][0]["labels"]["lookout_alert"], "no_matches",
        "{alerts}"
    );
    let events = crate::support::rules::history(&server, "fatal_errors").await;
    assert!(
        events.iter().any(|event| event["from"] == "inactive"
            && event["to"] == "firing"
            && event["labels"]["lookout_alert"] == "no_matches"),
        "{events:?}"
    );

    // a match resolves it
    ingest(&server, &[line("FATAL")]).await;
    wait_until("the alarm resolves", 30, || {
        let texts = delivered_texts(&mock);
        std::future::ready(
            texts
                .iter()
                .any(|text| text.contains("`fatal_errors` matches again")),
        )
    })
    .await;
}

#[tokio::test]
async fn rules_test_names_its_server_and_refuses_to_guess() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    ingest(&server, &[line("ERROR")]).await;
    let rule = dir.path().join("errors_h19.json");
    let mut text = log_rule("logs", "level:ERROR");
    text["schedule"] = json!("0 * * * * *");
    std::fs::write(&rule, text.to_string()).expect("write");
    let rule = rule.display().to_string();

    let (code, stdout, stderr) = lookout(
        &[
            "rules",
            "test",
            &rule,
            "--from",
            "now-5m",
            "--server",
            &server.base,
        ],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!("server: {} (from --server)", server.base)),
        "{stdout}"
    );

    let config = dir.path().join("lookout.toml");
    std::fs::write(&config, format!("listen = \"{}\"\n", server.address())).expect("write");
    let config = config.display().to_string();
    let (code, stdout, stderr) = lookout(
        &[
            "rules", "test", &rule, "--from", "now-5m", "--config", &config,
        ],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "server: {} (the listen address of --config)",
            server.base
        )),
        "{stdout}"
    );

    // nobody named a server: whatever answers on the default address (nothing, or some
    // other server) is not a Lookout holding this rule's index, so it is not used
    let mut elsewhere = log_rule("h19_index_nobody_has", "level:ERROR");
    elsewhere["schedule"] = json!("0 * * * * *");
    let guess = dir.path().join("guess.json");
    std::fs::write(&guess, elsewhere.to_string()).expect("write");
    let (code, stdout, stderr) = lookout(
        &[
            "rules",
            "test",
            &guess.display().to_string(),
            "--from",
            "now-5m",
        ],
        dir.path(),
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stderr.contains(
            "no --server or --config given, and http://127.0.0.1:9200 (the default address)"
        ) && stderr.contains("pass --server URL"),
        "{stderr}"
    );
    assert!(!stdout.contains("stayed quiet"), "{stdout}");
}

#[tokio::test]
async fn the_prometheus_rules_api_agrees_with_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    let mut every_ten = log_rule("logs", "level:ERROR");
    every_ten["schedule"] = json!("*/10 * * * * *");
    every_ten["severity"] = json!("critical");
    every_ten["labels"] = json!({"team": "payments"});
    std::fs::write(queries.join("every_ten.json"), every_ten.to_string()).expect("write");
    let mut plain = log_rule("logs", "level:ERROR");
    plain["schedule"] = json!("0 */5 * * * *");
    std::fs::write(queries.join("plain.json"), plain.to_string()).expect("write");
    std::fs::write(
        queries.join("broken.json"),
        json!({"version": 1, "schedule": "*/30 * * * * *", "query": "level:ERROR", "severity": "info"}).to_string(),
    )
    .expect("write");
    let server = Server::start(
        &dir.path().join("data"),
        &["--queries", &queries.display().to_string()],
    );

    wait_until("the two good rules run", 30, || async {
        let (_, answer) = server.get("/api/v1/rules").await;
        answer["data"]["groups"].as_array().is_some_and(|groups| {
            groups
                .iter()
                .filter(|group| group["rules"][0]["health"] != "err")
                .count()
                == 2
        })
    })
    .await;
    let (_, answer) = server.get("/api/v1/rules").await;
    let groups = answer["data"]["groups"].clone();
    assert_eq!(groups.as_array().map(Vec::len), Some(3), "{groups}");
    let group = |name: &str| {
        groups
            .as_array()
            .and_then(|groups| groups.iter().find(|group| group["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no group {name}: {groups}"))
    };
    let ten = group("every_ten");
    assert_eq!(ten["interval"], 10.0, "{ten}");
    assert!(
        ten["file"]
            .as_str()
            .is_some_and(|file| file.ends_with("every_ten.json")),
        "{ten}"
    );
    assert_eq!(
        ten["rules"][0]["labels"],
        json!({"severity": "critical", "team": "payments"}),
        "{ten}"
    );
    let plain = group("plain");
    assert_eq!(plain["interval"], 300.0, "{plain}");
    assert_eq!(
        plain["rules"][0]["labels"],
        json!({"severity": "warning"}),
        "{plain}"
    );
    let broken = group("broken");
    assert_eq!(broken["interval"], 30.0, "{broken}");
    let rule = &broken["rules"][0];
    assert_eq!(rule["health"], "err", "{broken}");
    assert!(
        rule["lastError"]
            .as_str()
            .is_some_and(|error| error.contains("`threshold`: a log rule needs one")),
        "{broken}"
    );
    assert_eq!(rule["labels"], json!({"severity": "info"}), "{broken}");
}

#[test]
fn check_reports_every_mistake_of_a_file_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = dir.path().join("three_mistakes.json");
    std::fs::write(
        &rule,
        r#"{
  "version": 1,
  "query": "status:500",
  "treshold": {"op": ">", "value": 20},
  "window": "five minutes",
  "summary": "{{ $labels.host }} is failing"
}"#,
    )
    .expect("write");
    let (code, _, stderr) = lookout(&["check", &rule.display().to_string()], dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    let file = rule.display().to_string();
    for expected in [
        format!("{file}:4:3: unknown field `treshold`, did you mean `threshold`?"),
        format!("{file}:5:3: `window`: `five minutes` is not a duration"),
        format!("{file}:6:3: `summary`: "),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }
    assert!(
        !stderr.contains(" at line "),
        "one position format: {stderr}"
    );

    // config files print positions the same way, with the same suggestions
    let config = dir.path().join("typo.toml");
    std::fs::write(&config, "[ingest]\nmax_body_byte = 1\n").expect("write");
    let (code, _, stderr) = lookout(&["check", &config.display().to_string()], dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:2:1: unknown field `max_body_byte`, expected one of",
            config.display()
        )) && stderr.contains("; did you mean `max_body_bytes`?"),
        "{stderr}"
    );

    // a fresh directory: what exists is checked, what does not is named as skipped
    let fresh = tempfile::tempdir().expect("tempdir");
    let (code, stdout, stderr) = lookout(&["check"], fresh.path());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("skipped config/lookout.toml: not here")
            && stdout.contains("skipped queries: not here")
            && stdout.contains("nothing to check here"),
        "{stdout}"
    );
    std::fs::create_dir(fresh.path().join("queries")).expect("mkdir");
    std::fs::copy(&rule, fresh.path().join("queries/three_mistakes.json")).expect("copy");
    let (code, stdout, stderr) = lookout(&["check"], fresh.path());
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("skipped config/agent.toml"), "{stdout}");
    assert!(stderr.contains("3 error(s) in 1 file(s)"), "{stderr}");
}
