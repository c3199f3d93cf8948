//! Delivery to a Slack incoming webhook, done right (DESIGN §6):
//!
//! - at most one message per second per webhook (a token bucket), so an alert storm
//!   becomes a steady trickle instead of a wall of 429s;
//! - HTTP 429 → wait what `Retry-After` says; 5xx and transport errors → exponential
//!   backoff with jitter, until the delivery's deadline;
//! - any other 4xx (`invalid_payload`, `channel_not_found`, `channel_is_archived`, …) is
//!   final: not retried, reported with Slack's reason;
//! - the webhook URL is a secret: it is never logged, and errors are stripped of it.
//!
//! [`check_limits`] holds a payload to Slack's documented limits (≤ 50 blocks, section
//! text ≤ 3000 characters, header ≤ 150, the whole message ≤ 40 000); messages are built
//! within them, and the tests' mock Slack rejects anything outside them.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::config::Secret;

pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_MESSAGE_CHARS: usize = 40_000;

/// Why a payload is outside Slack's limits, or `Ok`.
pub fn check_limits(payload: &Value) -> Result<(), String> {
    let text_length = |value: &Value| value.as_str().map_or(0, |text| text.chars().count());
    if text_length(&payload["text"]) > MAX_MESSAGE_CHARS {
        return Err(format!("`text` is over {MAX_MESSAGE_CHARS} characters"));
    }
    let serialized = payload.to_string().chars().count();
    if serialized > MAX_MESSAGE_CHARS {
        return Err(format!(
            "the message is {serialized} characters, over {MAX_MESSAGE_CHARS}"
        ));
    }
    let Some(blocks) = payload.get("blocks") else {
        return if payload["text"].is_string() {
            Ok(())
        } else {
            Err("a message needs `text` or `blocks`".into())
        };
    };
    let blocks = blocks.as_array().ok_or("`blocks` is not an array")?;
    if blocks.len() > MAX_BLOCKS {
        return Err(format!("{} blocks, over {MAX_BLOCKS}", blocks.len()));
    }
    for (number, block) in blocks.iter().enumerate() {
        match block["type"].as_str() {
            Some("header") => {
                if text_length(&block["text"]["text"]) > MAX_HEADER_TEXT {
                    return Err(format!(
                        "block {number}: header over {MAX_HEADER_TEXT} characters"
                    ));
                }
            }
            Some("section") => {
                if text_length(&block["text"]["text"]) > MAX_SECTION_TEXT {
                    return Err(format!(
                        "block {number}: section text over {MAX_SECTION_TEXT} characters"
                    ));
                }
                if let Some(fields) = block["fields"].as_array() {
                    if fields.len() > 10 {
                        return Err(format!("block {number}: over 10 fields"));
                    }
                    if fields
                        .iter()
                        .any(|field| text_length(&field["text"]) > 2000)
                    {
                        return Err(format!("block {number}: a field over 2000 characters"));
                    }
                }
            }
            Some("context" | "divider" | "actions") => {}
            other => return Err(format!("block {number}: unsupported type {other:?}")),
        }
    }
    Ok(())
}

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    /// Slack refused it for good (a 4xx other than 429): its reason.
    Rejected {
        attempts: u32,
        status: u16,
        reason: String,
    },
    /// Still failing (429, 5xx, transport) when the deadline came.
    GaveUp {
        attempts: u32,
        last_error: String,
    },
}

/// One Slack incoming webhook.
pub struct SlackWebhook {
    url: Secret,
    client: reqwest::Client,
    /// When the next message may go out (the token bucket of one message per second,
    /// with no burst).
    next_slot: tokio::sync::Mutex<Instant>,
    min_spacing: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl std::fmt::Debug for SlackWebhook {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SlackWebhook")
            .field("url", &self.url)
            .finish()
    }
}

impl SlackWebhook {
    pub fn new(url: Secret) -> SlackWebhook {
        crate::install_tls_provider();
        SlackWebhook {
            url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a client without custom TLS builds"),
            next_slot: tokio::sync::Mutex::new(Instant::now()),
            min_spacing: Duration::from_secs(1),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }

    /// Delivers `payload`, retrying as DESIGN §6 says until `deadline`.
    pub async fn deliver(&self, payload: &Value, deadline: Instant) -> Outcome {
        let body = payload.to_string();
        let mut attempts = 0;
        let mut backoff = self.backoff_min;
        loop {
            self.wait_for_slot().await;
            attempts += 1;
            let result = self
                .client
                .post(&self.url.0)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let wait = match result {
                Ok(response) if response.status().is_success() => {
                    return Outcome::Delivered { attempts };
                }
                Ok(response) if response.status() == 429 => {
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.trim().parse::<u64>().ok())
                        .map_or(backoff, Duration::from_secs);
                    tracing::warn!(retry_after = ?retry_after, "slack rate-limited the webhook (429)");
                    // the webhook is throttled as a whole: hold every message back
                    *self.next_slot.lock().await = Instant::now() + retry_after;
                    Wait {
                        delay: retry_after,
                        error: "429 rate limited".into(),
                    }
                }
                Ok(response) if response.status().is_client_error() => {
                    let status = response.status().as_u16();
                    let reason = response.text().await.unwrap_or_default();
                    let reason = reason.trim().chars().take(200).collect::<String>();
                    tracing::error!(status, %reason, "slack rejected the message; not retrying");
                    return Outcome::Rejected {
                        attempts,
                        status,
                        reason,
                    };
                }
                Ok(response) => Wait {
                    delay: jitter(backoff),
                    error: format!("HTTP {}", response.status()),
                },
                Err(error) => Wait {
                    delay: jitter(backoff),
                    // without the URL: it is the secret
                    error: error.without_url().to_string(),
                },
            };
            backoff = (backoff * 2).min(self.backoff_max);
            if Instant::now() + wait.delay > deadline {
                tracing::error!(attempts, error = %wait.error, "slack delivery gave up at its deadline");
                return Outcome::GaveUp {
                    attempts,
                    last_error: wait.error,
                };
            }
            tracing::warn!(attempts, error = %wait.error, retry_in = ?wait.delay, "slack delivery failed; retrying");
            tokio::time::sleep(wait.delay).await;
        }
    }

    /// Waits for this webhook's next free slot and takes it.
    async fn wait_for_slot(&self) {
        let mut next = self.next_slot.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        *next = Instant::now().max(*next) + self.min_spacing;
    }
}

struct Wait {
    delay: Duration,
    error: String,
}

fn jitter(delay: Duration) -> Duration {
    delay / 2 + delay.mul_f64(fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let header =
            json!({"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}});
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
}
