//! A mock Slack on loopback that records what it receives, answers what each test
//! scripts, and rejects any payload outside Slack's limits, like Slack does (or, set to,
//! anything that is not Alertmanager's webhook payload); with the `wait_until` conditions
//! and readers the alerting tests share.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::Value;
use tokio::time::Instant;

use super::slack_limits::check_limits;

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

/// A condition for `wait_until`: the mock received at least `count` messages.
pub fn received(
    mock: &Arc<Mutex<MockSlack>>,
    count: usize,
) -> impl FnMut() -> std::future::Ready<bool> {
    let mock = mock.clone();
    move || std::future::ready(mock.lock().expect("mock").received.len() >= count)
}

/// A condition for `wait_until`: the mock accepted at least `count` messages.
pub fn delivered(
    mock: &Arc<Mutex<MockSlack>>,
    count: usize,
) -> impl FnMut() -> std::future::Ready<bool> {
    let mock = mock.clone();
    move || std::future::ready(mock.lock().expect("mock").delivered.len() >= count)
}

/// The `text` of every message the mock accepted, in order.
pub fn delivered_texts(mock: &Arc<Mutex<MockSlack>>) -> Vec<String> {
    mock.lock()
        .expect("mock")
        .delivered
        .iter()
        .map(|payload| payload["text"].as_str().unwrap_or_default().to_string())
        .collect()
}
