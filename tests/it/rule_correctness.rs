//! `lookout check` reports every mistake of a file at once, with one position format
//! and suggestions for misspelt keys, and in a directory without `config/` or `queries/`
//! checks what exists and names what it skipped (issue 19).

use std::path::Path;
use std::process::Command;

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
