//! Delivery to a webhook, done right (DESIGN §6). Slack's incoming webhooks and
//! Alertmanager-style receivers get the same treatment:
//!
//! - at most `max_per_second` messages per webhook (a token bucket without burst; Slack's
//!   is one per second), so an alert storm becomes a steady trickle, not a wall of 429s;
//! - HTTP 429 → wait what `Retry-After` says, holding back every message to that webhook;
//!   5xx and transport errors → exponential backoff with jitter, until the deadline;
//! - any other 4xx (`invalid_payload`, `channel_not_found`, `channel_is_archived`, …) is
//!   final: not retried, reported with the receiver's reason;
//! - the URL is a secret: it is never logged, and errors are stripped of it
//!   (`reqwest::Error::without_url`).
//!
//! Every attempt is reported to the caller as it ends, for the alert history.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::secret::Secret;

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    /// Refused for good (a 4xx other than 429), with the receiver's reason.
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

impl Outcome {
    /// `delivered`, `rejected` or `gave_up`: the label of the notification counters.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Rejected { .. } => "rejected",
            Outcome::GaveUp { .. } => "gave_up",
        }
    }
}

/// One HTTP attempt of a delivery, as it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// What went wrong (`None`: delivered).
    pub error: Option<String>,
    /// When the next attempt follows (`None`: this was the last).
    pub retry_in: Option<Duration>,
    /// The receiver refused the message for good (a 4xx other than 429, an SMTP 5xx).
    pub rejected: bool,
    /// The alert this attempt is for, when a message goes out as one request per alert
    /// (PagerDuty's `dedup_key`): attempts are numbered per alert then.
    pub alert: Option<String>,
}

/// One webhook: its URL, its client and its rate limit.
pub struct Webhook {
    url: Secret,
    client: reqwest::Client,
    /// When the next message may go out.
    next_slot: tokio::sync::Mutex<Instant>,
    min_spacing: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    /// A secret sent in the payloads (PagerDuty's routing key) that a receiver may quote
    /// in its answer: replaced in every answer logged or reported.
    redacted: Option<Secret>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Webhook")
            .field("url", &self.url)
            .field("min_spacing", &self.min_spacing)
            .finish()
    }
}

impl Webhook {
    /// A webhook sending at most one message per `min_spacing`.
    pub fn new(url: Secret, min_spacing: Duration) -> Webhook {
        crate::install_tls_provider();
        Webhook {
            url,
            client: shared_client(),
            next_slot: tokio::sync::Mutex::new(Instant::now()),
            min_spacing,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            redacted: None,
        }
    }

    /// The same webhook, replacing `secret` with `<redacted>` in every answer it logs or
    /// reports.
    pub fn redacting(self, secret: Secret) -> Webhook {
        Webhook {
            redacted: Some(secret),
            ..self
        }
    }

    /// A Slack incoming webhook: one message per second.
    pub fn slack(url: Secret) -> Webhook {
        Webhook::new(url, Duration::from_secs(1))
    }

    /// Delivers `payload`, retrying as DESIGN §6 says until `deadline`, telling `report`
    /// about each attempt as it ends.
    pub async fn deliver_reporting(
        &self,
        payload: &Value,
        deadline: Instant,
        report: &(dyn Fn(Attempt) + Send + Sync),
    ) -> Outcome {
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
            let (status, wait) = match result {
                Ok(response) if response.status().is_success() => {
                    report(Attempt {
                        number: attempts,
                        status: Some(response.status().as_u16()),
                        error: None,
                        retry_in: None,
                        rejected: false,
                        alert: None,
                    });
                    return Outcome::Delivered { attempts };
                }
                Ok(response) if response.status() == 429 => {
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.trim().parse::<u64>().ok())
                        .map_or(backoff, Duration::from_secs);
                    tracing::warn!(retry_after = ?retry_after, "the webhook is rate-limited (429)");
                    // the webhook is throttled as a whole: hold every message back
                    *self.next_slot.lock().await = Instant::now() + retry_after;
                    (
                        Some(429),
                        Wait {
                            delay: retry_after,
                            error: "429 rate limited".into(),
                        },
                    )
                }
                Ok(response) if response.status().is_client_error() => {
                    let status = response.status().as_u16();
                    let reason = response.text().await.unwrap_or_default();
                    // PagerDuty's `errors` list can be long: keep enough of it to act on
                    let reason = reason.trim().chars().take(1000).collect::<String>();
                    let reason = match &self.redacted {
                        Some(secret) => reason.replace(secret.0.as_str(), "<redacted>"),
                        None => reason,
                    };
                    tracing::error!(status, %reason, "the webhook rejected the message; not retrying");
                    report(Attempt {
                        number: attempts,
                        status: Some(status),
                        error: Some(reason.clone()),
                        retry_in: None,
                        rejected: true,
                        alert: None,
                    });
                    return Outcome::Rejected {
                        attempts,
                        status,
                        reason,
                    };
                }
                Ok(response) => (
                    Some(response.status().as_u16()),
                    Wait {
                        delay: jitter(backoff),
                        error: format!("HTTP {}", response.status()),
                    },
                ),
                Err(error) => (
                    None,
                    Wait {
                        delay: jitter(backoff),
                        // without the URL: it is the secret
                        error: error.without_url().to_string(),
                    },
                ),
            };
            backoff = (backoff * 2).min(self.backoff_max);
            let gives_up = Instant::now() + wait.delay > deadline;
            report(Attempt {
                number: attempts,
                status,
                error: Some(wait.error.clone()),
                retry_in: (!gives_up).then_some(wait.delay),
                rejected: false,
                alert: None,
            });
            if gives_up {
                tracing::error!(attempts, error = %wait.error, "webhook delivery gave up at its deadline");
                return Outcome::GaveUp {
                    attempts,
                    last_error: wait.error,
                };
            }
            tracing::warn!(attempts, error = %wait.error, retry_in = ?wait.delay, "webhook delivery failed; retrying");
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

/// One HTTP client for every webhook: building one parses the root certificates, which a
/// thousand notifiers made a noticeable start.
fn shared_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a client without custom TLS builds")
        })
        .clone()
}

struct Wait {
    delay: Duration,
    error: String,
}

fn jitter(delay: Duration) -> Duration {
    delay / 2 + delay.mul_f64(fastrand::f64() / 2.0)
}
