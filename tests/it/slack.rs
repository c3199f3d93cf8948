//! Slack delivery against the mock Slack (`support::slack`), which answers what each
//! test scripts and rejects any payload outside Slack's limits, like Slack does; and
//! those limits themselves (`support::slack_limits`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use lookout::config::Secret;
use lookout::notify::webhook::{Outcome, Webhook};

use crate::support::slack::{MockSlack, start_mock};
use crate::support::slack_limits::check_limits;

fn message(text: &str) -> Value {
    json!({
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": text}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*count* 30 > 20"}}
        ]
    })
}

fn deadline(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    mock.lock()
        .expect("mock")
        .script
        .push_back((429, Some(3), "rate_limited"));
    let webhook = Webhook::slack(Secret(start_mock(mock.clone()).await));
    let outcome = webhook
        .deliver_reporting(&message("firing"), deadline(30), &|_| {})
        .await;
    assert_eq!(outcome, Outcome::Delivered { attempts: 2 });
    let received = &mock.lock().expect("mock").received;
    let gap = received[1].0 - received[0].0;
    assert!(gap >= Duration::from_secs(3), "retried after {gap:?}");
}

#[tokio::test]
async fn server_errors_are_retried_with_growing_backoff() {
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    mock.lock()
        .expect("mock")
        .script
        .extend([(500, None, "oops"), (503, None, "busy")]);
    let webhook = Webhook::slack(Secret(start_mock(mock.clone()).await));
    let outcome = webhook
        .deliver_reporting(&message("firing"), deadline(30), &|_| {})
        .await;
    assert_eq!(outcome, Outcome::Delivered { attempts: 3 });
    let received = &mock.lock().expect("mock").received;
    let gaps: Vec<Duration> = received
        .windows(2)
        .map(|pair| pair[1].0 - pair[0].0)
        .collect();
    // one message per second at most, and a backoff of at least half its window
    assert!(
        gaps.iter().all(|gap| *gap >= Duration::from_millis(950)),
        "{gaps:?}"
    );
}

#[tokio::test]
async fn invalid_payload_is_final_and_keeps_slacks_reason() {
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = Webhook::slack(Secret(start_mock(mock.clone()).await));
    let too_big: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
    let outcome = webhook
        .deliver_reporting(
            &json!({"text": "x", "blocks": too_big}),
            deadline(30),
            &|_| {},
        )
        .await;
    assert_eq!(
        outcome,
        Outcome::Rejected {
            attempts: 1,
            status: 400,
            reason: "invalid_payload".into()
        }
    );
    assert_eq!(mock.lock().expect("mock").received.len(), 1, "not retried");
}

#[tokio::test]
async fn messages_to_one_webhook_go_out_at_most_one_per_second() {
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = Arc::new(Webhook::slack(Secret(start_mock(mock.clone()).await)));
    let sends: Vec<_> = (0..4)
        .map(|number| {
            let webhook = webhook.clone();
            tokio::spawn(async move {
                webhook
                    .deliver_reporting(&message(&format!("alert {number}")), deadline(30), &|_| {})
                    .await
            })
        })
        .collect();
    for send in sends {
        assert!(matches!(
            send.await.expect("task"),
            Outcome::Delivered { attempts: 1 }
        ));
    }
    let mut times: Vec<Instant> = mock
        .lock()
        .expect("mock")
        .received
        .iter()
        .map(|(time, _)| *time)
        .collect();
    times.sort();
    let gaps: Vec<Duration> = times.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(
        gaps.iter().all(|gap| *gap >= Duration::from_millis(950)),
        "{gaps:?}"
    );
}

#[tokio::test]
async fn an_unreachable_webhook_gives_up_at_the_deadline_without_revealing_its_url() {
    // a port nothing listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let url = format!("http://127.0.0.1:{port}/services/T000/B000/s3cr3t");
    let webhook = Webhook::slack(Secret(url));
    let outcome = webhook
        .deliver_reporting(&message("firing"), deadline(2), &|_| {})
        .await;
    let Outcome::GaveUp {
        attempts,
        last_error,
    } = outcome
    else {
        panic!("expected to give up: {outcome:?}")
    };
    assert!(attempts >= 2, "retried before the deadline");
    assert!(!last_error.contains("s3cr3t"), "{last_error}");
    assert!(!format!("{webhook:?}").contains("s3cr3t"));
}

#[test]
fn limits_are_slacks() {
    assert!(check_limits(&json!({"text": "hi"})).is_ok());
    assert!(check_limits(&json!({})).is_err());
    let section =
        |text: String| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}});
    assert!(check_limits(&json!({"text": "x", "blocks": [section("a".repeat(3000))]})).is_ok());
    assert!(
        check_limits(&json!({"text": "x", "blocks": [section("a".repeat(3001))]}))
            .expect_err("too long")
            .contains("section text over 3000")
    );
    let header = json!({"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}});
    assert!(check_limits(&json!({"text": "x", "blocks": [header]})).is_err());
    let many: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
    assert!(check_limits(&json!({"text": "x", "blocks": many})).is_err());
    let big: Vec<Value> = (0..20).map(|_| section("b".repeat(2500))).collect();
    assert!(
        check_limits(&json!({"text": "x", "blocks": big}))
            .expect_err("too big")
            .contains("over 40000")
    );
}
