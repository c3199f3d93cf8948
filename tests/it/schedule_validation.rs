//! Schedules are validated completely (issue 19): a 7-field schedule with a past year
//! passed `lookout check` and `PUT` (201) and the rule never ran; range messages were
//! wrong. Through the real binary, `lookout check` and `PUT /_lookout/rules/NAME` refuse
//! each with what is wrong, where, and what is allowed.

use serde_json::json;

use crate::support::Server;

/// Bad schedules and the reason each gets.
const CASES: &[(&str, &str)] = &[
    (
        "*/10 * * * * * 2020",
        "schedule `*/10 * * * * * 2020` has 7 fields; use 5 (minute hour day-of-month month day-of-week) or 6 (second minute hour day-of-month month day-of-week); a 7th (year) field is not supported",
    ),
    (
        "*/70 * * * * *",
        "schedule `*/70 * * * * *`: second step `70` in `*/70` is larger than its range 0-59; use 1-59",
    ),
    (
        "0 0 30 2 *",
        "schedule `0 0 30 2 *`: no time matches it, so it would never run; check that its day-of-month exists in its months (e.g. not February 30)",
    ),
    (
        "5m",
        "schedule `5m` has 1 field; use 5 (minute hour day-of-month month day-of-week) or 6 (second minute hour day-of-month month day-of-week)",
    ),
];

fn rule(schedule: &str) -> serde_json::Value {
    json!({"version": 1, "schedule": schedule, "query": "status:500", "window": "1m",
           "threshold": {"op": ">", "value": 20}})
}

#[tokio::test]
async fn schedules_that_cannot_run_are_refused_by_check_and_put() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files: Vec<std::path::PathBuf> = CASES
        .iter()
        .enumerate()
        .map(|(number, (schedule, _))| {
            let path = dir.path().join(format!("bad_{number}.json"));
            std::fs::write(&path, rule(schedule).to_string()).expect("write");
            path
        })
        .collect();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("check")
        .args(&files)
        .output()
        .expect("run lookout check");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for ((_, reason), path) in CASES.iter().zip(&files) {
        // `FILE:LINE:COLUMN: field: reason`
        let expected = format!("`schedule`: {reason}");
        assert!(
            stderr.lines().any(|line| line
                .strip_prefix(&format!("{}:", path.display()))
                .is_some_and(|rest| rest.ends_with(&expected))),
            "{expected}\nnot in:\n{stderr}"
        );
    }

    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--queries",
            &dir.path().join("queries").display().to_string(),
        ],
    );
    for (schedule, reason) in CASES {
        let response = server
            .client
            .put(server.url("/_lookout/rules/never"))
            .json(&rule(schedule))
            .send()
            .await
            .expect("put");
        assert_eq!(response.status(), 400, "{schedule}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["type"], "invalid_rule", "{body}");
        let answered = body["error"]["reason"].as_str().unwrap_or_default();
        assert!(
            answered.ends_with(&format!("`schedule`: {reason}")),
            "{answered}"
        );
    }
    assert!(
        !dir.path().join("queries/never.json").exists(),
        "nothing refused is written"
    );
    // the edges of the ranges are valid
    let response = server
        .client
        .put(server.url("/_lookout/rules/edges"))
        .json(&rule("59 59 23 31 12 7"))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 201);
}
