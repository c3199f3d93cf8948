//! Slack delivery against a mock Slack on loopback that answers what each test scripts
//! and rejects any payload outside Slack's limits, like Slack does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio::time::Instant;

use lookout::config::Secret;
use lookout::notify::slack::check_limits;
use lookout::notify::webhook::{Outcome, Webhook};

#[derive(Default)]
pub struct MockSlack {
    /// (status, Retry-After, body) for the next requests; then 200 "ok".
    pub script: VecDeque<(u16, Option<u64>, &'static str)>,
    /// When each request arrived, and its payload.
    pub received: Vec<(Instant, Value)>,
    /// Payloads answered 200 (delivered), in order.
    pub delivered: Vec<Value>,
    /// Validate payloads as Alertmanager's webhook payload instead of Slack messages.
    pub alertmanager: bool,
    /// Hold the answer to the next accepted message this long (once).
    pub hold_next_answer: Option<Duration>,
}

/// Why `payload` is not Alertmanager's webhook payload (version 4), or `Ok`.
pub fn check_alertmanager(payload: &Value) -> Result<(), String> {
    let string = |value: &Value, what: &str| {
        value
            .as_str()
            .map(|_| ())
            .ok_or_else(|| format!("`{what}` is not a string"))
    };
    if payload["version"] != "4" {
        return Err("`version` is not \"4\"".into());
    }
    for field in ["groupKey", "status", "receiver", "externalURL"] {
        string(&payload[field], field)?;
    }
    for field in ["groupLabels", "commonLabels", "commonAnnotations"] {
        if !payload[field].is_object() {
            return Err(format!("`{field}` is not an object"));
        }
    }
    let alerts = payload["alerts"]
        .as_array()
        .ok_or("`alerts` is not an array")?;
    if alerts.is_empty() {
        return Err("no alerts".into());
    }
    for alert in alerts {
        for field in [
            "status",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        ] {
            string(&alert[field], field)?;
        }
        for field in ["startsAt", "endsAt"] {
            chrono::DateTime::parse_from_rfc3339(alert[field].as_str().unwrap_or_default())
                .map_err(|error| format!("`{field}`: {error}"))?;
        }
        let labels = alert["labels"]
            .as_object()
            .ok_or("`labels` is not an object")?;
        if !labels.contains_key("alertname") || labels.values().any(|value| !value.is_string()) {
            return Err("`labels` lacks `alertname` or has a non-string value".into());
        }
    }
    Ok(())
}

/// What the mock answers to `payload`, and how long to hold the answer back.
fn answer(mock: &mut MockSlack, payload: Value) -> (axum::response::Response, Option<Duration>) {
    mock.received.push((Instant::now(), payload.clone()));
    let valid = if mock.alertmanager {
        check_alertmanager(&payload)
    } else {
        check_limits(&payload)
    };
    if let Err(reason) = valid {
        eprintln!("mock slack: invalid payload: {reason}");
        return (
            (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
            None,
        );
    }
    match mock.script.pop_front() {
        Some((status, retry_after, body)) => {
            let mut response =
                (StatusCode::from_u16(status).expect("status"), body).into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.to_string().parse().expect("header"));
            }
            (response, None)
        }
        None => {
            mock.delivered.push(payload);
            // accepted, like Slack; the answer may be held back (a sender that dies
            // meanwhile never learns of the acceptance)
            (
                (StatusCode::OK, "ok").into_response(),
                mock.hold_next_answer.take(),
            )
        }
    }
}

/// Starts the mock; returns its webhook URL.
pub async fn start_mock(mock: Arc<Mutex<MockSlack>>) -> String {
    let handler = move |body: axum::body::Bytes| {
        let mock = mock.clone();
        async move {
            let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            // the lock is released before any wait
            let (response, hold) = answer(&mut mock.lock().expect("mock"), payload);
            if let Some(hold) = hold {
                tokio::time::sleep(hold).await;
            }
            response
        }
    };
    let router =
        axum::Router::new().route("/services/T000/B000/s3cr3t", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/services/T000/B000/s3cr3t")
}

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
    let outcome = webhook.deliver(&message("firing"), deadline(30)).await;
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
    let outcome = webhook.deliver(&message("firing"), deadline(30)).await;
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
        .deliver(&json!({"text": "x", "blocks": too_big}), deadline(30))
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
                    .deliver(&message(&format!("alert {number}")), deadline(30))
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
    let outcome = webhook.deliver(&message("firing"), deadline(2)).await;
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
