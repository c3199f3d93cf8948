//! `lookout demo --speed`: the whole pipeline on a simulated shop — logs shipped by the
//! agent, metrics scraped, demo rules fired and resolved — to the console and to a mock
//! Slack, within the time CI allows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::slack::{MockSlack, delivered_texts, start_mock};

// the mock Slack runs in this process while the demo runs
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_fires_and_resolves_an_alert_with_its_context_within_three_minutes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let data = dir.path().join("demo");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args([
            "demo",
            "--speed",
            "20",
            "--listen",
            "127.0.0.1:0",
            "--cycles",
            "1",
            "--data-dir",
        ])
        .arg(&data)
        .env("SLACK_WEBHOOK_URL", &webhook)
        .env("LOOKOUT_LOG", "warn")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn demo");
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("one fire → resolve cycle within 3 minutes")
        .expect("demo output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "What to look at:",
        "/ui/search?index=logs&q=",
        "demo: incident: checkout starts failing",
        "alert \"[FIRING] checkout_errors:",
        "alert \"[RESOLVED] checkout_errors:",
        "demo: 1 fire → resolve cycle(s) seen and every alert resolved; stopping",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    // the same alerts reached Slack, every payload within Slack's limits (the mock
    // refuses any other), the firing one with the checkout's metrics as context
    let texts = delivered_texts(&mock);
    assert!(
        texts
            .iter()
            .any(|text| text.starts_with("[FIRING] checkout_errors"))
            && texts
                .iter()
                .any(|text| text.starts_with("[RESOLVED] checkout_errors")),
        "{texts:?}"
    );
    // it stops after the last alert resolved, not before: every rule that fired resolved
    // (`--cycles` once stopped while another rule of the incident was still firing)
    for text in &texts {
        if let Some(rest) = text.strip_prefix("[FIRING] ") {
            let rule = rest.split(':').next().unwrap_or_default();
            assert!(
                texts
                    .iter()
                    .any(|text| text.starts_with(&format!("[RESOLVED] {rule}:"))),
                "{rule} fired and never resolved: {texts:?}"
            );
        }
    }
    let firing = mock
        .lock()
        .expect("mock")
        .delivered
        .iter()
        .find(|payload| {
            payload["text"]
                .as_str()
                .is_some_and(|text| text.starts_with("[FIRING] checkout_errors"))
        })
        .cloned()
        .expect("firing payload");
    let body = firing.to_string();
    assert!(body.contains("*Context*"), "{body}");
    assert!(
        body.contains("http_request_duration_seconds_bucket{service=\\\"checkout\\\"}"),
        "{body}"
    );
    assert!(body.contains("Sample lines"), "{body}");
    // the logs went through the agent: its checkpoints exist
    assert!(data.join("data/state/agent").exists());
}
