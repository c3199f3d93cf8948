//! A mock PagerDuty Events API v2 on loopback that enforces the documented contract
//! (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>): JSON content
//! type, the integration's `routing_key`, `event_action` of `trigger`/`acknowledge`/
//! `resolve`, a `dedup_key` of at most 255 characters (required to resolve), a trigger's
//! `payload` with `summary` (1–1 024 characters), `source` and `severity` (`critical`,
//! `error`, `warning`, `info`), an RFC 3339 `timestamp`, `links` of `href`/`text`, and
//! the 512 KB event limit. An invalid event gets PagerDuty's 400 body
//! (`{"status":"invalid event","message":…,"errors":[…]}`); otherwise the mock answers
//! what the test scripts, then 202.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// The routing key the mock's integration has (32 characters, like PagerDuty's).
pub const ROUTING_KEY: &str = "R0ut1ngK3yS3cr3tR0ut1ngK3yS3cr3t";

#[derive(Default)]
pub struct MockPagerDuty {
    /// (status, body) for the next valid events; then 202.
    pub script: VecDeque<(u16, Value)>,
    /// Every event received, in order.
    pub received: Vec<Value>,
    /// Events answered 202, in order.
    pub accepted: Vec<Value>,
    /// Hold the answer to the next accepted event this long (once).
    pub hold_next_answer: Option<Duration>,
}

/// Why `body` is not a valid Events API v2 event for `routing_key`, or `Ok`.
pub fn check_event(headers: &HeaderMap, body: &[u8]) -> Result<Value, String> {
    if body.len() > 512 * 1024 {
        return Err("event is larger than 512 KB".into());
    }
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err(format!(
            "content type `{content_type}` is not application/json"
        ));
    }
    let event: Value = serde_json::from_slice(body).map_err(|error| error.to_string())?;
    if event["routing_key"] != ROUTING_KEY {
        return Err("Invalid routing key".into());
    }
    let action = event["event_action"].as_str().unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        return Err(format!("'event_action' is invalid: `{action}`"));
    }
    match event.get("dedup_key") {
        Some(Value::String(key)) if !key.is_empty() && key.chars().count() <= 255 => {}
        None if action == "trigger" => {}
        _ => return Err("'dedup_key' is missing, empty or longer than 255 characters".into()),
    }
    if action == "trigger" {
        let payload = &event["payload"];
        let summary = payload["summary"].as_str().unwrap_or_default();
        if summary.is_empty() || summary.chars().count() > 1024 {
            return Err("'payload.summary' must be 1 to 1024 characters".into());
        }
        if payload["source"].as_str().is_none_or(str::is_empty) {
            return Err("'payload.source' is missing".into());
        }
        let severity = payload["severity"].as_str().unwrap_or_default();
        if !["critical", "error", "warning", "info"].contains(&severity) {
            return Err(format!("'payload.severity' is invalid: `{severity}`"));
        }
        if let Some(timestamp) = payload.get("timestamp") {
            chrono::DateTime::parse_from_rfc3339(timestamp.as_str().unwrap_or_default())
                .map_err(|error| format!("'payload.timestamp': {error}"))?;
        }
        if let Some(details) = payload.get("custom_details")
            && !details.is_object()
        {
            return Err("'payload.custom_details' is not an object".into());
        }
        for link in event["links"].as_array().into_iter().flatten() {
            if link["href"].as_str().is_none_or(str::is_empty) || !link["text"].is_string() {
                return Err("a link lacks `href` or `text`".into());
            }
        }
    }
    Ok(event)
}

/// Starts the mock; returns its endpoint URL.
pub async fn start_mock(mock: Arc<Mutex<MockPagerDuty>>) -> String {
    let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
        let mock = mock.clone();
        async move {
            let (response, hold) = {
                let mut mock = mock.lock().expect("mock");
                let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                mock.received.push(parsed);
                match check_event(&headers, &body) {
                    Err(reason) => {
                        eprintln!("mock pagerduty: invalid event: {reason}");
                        (
                            (
                                StatusCode::BAD_REQUEST,
                                axum::Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": [reason]})),
                            )
                                .into_response(),
                            None,
                        )
                    }
                    Ok(event) => match mock.script.pop_front() {
                        Some((status, answer)) => (
                            (
                                StatusCode::from_u16(status).expect("status"),
                                axum::Json(answer),
                            )
                                .into_response(),
                            None,
                        ),
                        None => {
                            let dedup_key = event["dedup_key"].clone();
                            mock.accepted.push(event);
                            (
                                (
                                    StatusCode::ACCEPTED,
                                    axum::Json(json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key})),
                                )
                                    .into_response(),
                                mock.hold_next_answer.take(),
                            )
                        }
                    },
                }
            };
            if let Some(hold) = hold {
                tokio::time::sleep(hold).await;
            }
            response
        }
    };
    let router = axum::Router::new().route("/v2/enqueue", axum::routing::post(handler));
    format!("http://{}/v2/enqueue", super::listen(router).await)
}

/// A condition for `wait_until`: the mock accepted at least `count` events.
pub fn accepted(
    mock: &Arc<Mutex<MockPagerDuty>>,
    count: usize,
) -> impl FnMut() -> std::future::Ready<bool> {
    let mock = mock.clone();
    move || std::future::ready(mock.lock().expect("mock").accepted.len() >= count)
}
