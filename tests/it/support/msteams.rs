//! A mock Teams Workflows webhook on loopback that enforces what Teams accepts: a
//! `message` whose one attachment is an Adaptive Card (`contentType`
//! `application/vnd.microsoft.card.adaptive`, `type` `AdaptiveCard`, a `version`, a
//! `body` of typed elements, `Action.OpenUrl` actions with http(s) URLs), within Teams'
//! 28 KB message limit (a larger one gets 413, as Teams refuses it).

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::Value;

/// Teams' message size limit.
pub const MAX_BYTES: usize = 28 * 1024;

#[derive(Default)]
pub struct MockTeams {
    /// Payloads accepted, in order, with their size in bytes.
    pub accepted: Vec<(usize, Value)>,
    /// Payloads refused, with the reason.
    pub refused: Vec<String>,
}

/// Why `payload` is not a Teams Workflows Adaptive Card message, or `Ok`.
pub fn check_card(payload: &Value) -> Result<(), String> {
    if payload["type"] != "message" {
        return Err("`type` is not \"message\"".into());
    }
    let attachments = payload["attachments"]
        .as_array()
        .ok_or("`attachments` is not an array")?;
    let [attachment] = attachments.as_slice() else {
        return Err("not exactly one attachment".into());
    };
    if attachment["contentType"] != "application/vnd.microsoft.card.adaptive" {
        return Err("the attachment is not an Adaptive Card".into());
    }
    let card = &attachment["content"];
    if card["type"] != "AdaptiveCard" || !card["version"].is_string() {
        return Err("`content` is not an AdaptiveCard with a version".into());
    }
    let body = card["body"].as_array().ok_or("`body` is not an array")?;
    if body.is_empty() || body.iter().any(|element| !element["type"].is_string()) {
        return Err("`body` is empty or has an element without `type`".into());
    }
    for action in card["actions"].as_array().into_iter().flatten() {
        let url = action["url"].as_str().unwrap_or_default();
        if action["type"] != "Action.OpenUrl"
            || !(url.starts_with("http://") || url.starts_with("https://"))
            || !action["title"].is_string()
        {
            return Err(format!("invalid action {action}"));
        }
    }
    Ok(())
}

/// Starts the mock; returns its webhook URL (a secret, like Teams').
pub async fn start_mock(mock: Arc<Mutex<MockTeams>>) -> String {
    let handler = move |body: axum::body::Bytes| {
        let mock = mock.clone();
        async move {
            let mut mock = mock.lock().expect("mock");
            if body.len() > MAX_BYTES {
                mock.refused.push(format!("{} bytes", body.len()));
                return (StatusCode::PAYLOAD_TOO_LARGE, "message too large");
            }
            let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Err(reason) = check_card(&payload) {
                eprintln!("mock teams: invalid card: {reason}");
                mock.refused.push(reason);
                return (StatusCode::BAD_REQUEST, "invalid card");
            }
            mock.accepted.push((body.len(), payload));
            (StatusCode::ACCEPTED, "")
        }
    };
    let router = axum::Router::new().route(
        "/workflows/T3amsS3cr3tS1gnature/triggers/manual/run",
        axum::routing::post(handler),
    );
    format!(
        "http://{}/workflows/T3amsS3cr3tS1gnature/triggers/manual/run",
        super::listen(router).await
    )
}
