//! Slack's side of delivery: the limits of Slack's documented message format that
//! [`super::message`] builds within (a header's text ≤ 150 characters, a section's
//! ≤ 3000). Delivery itself (rate limit, `Retry-After`, backoff, final 4xx) is
//! [`super::webhook::Webhook`]'s. The tests hold payloads to all of Slack's limits with
//! `check_limits` in `tests/it/support/slack_limits.rs`, which the mock Slack shares; the
//! unit tests reach it through [`limits`].

pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_HEADER_TEXT: usize = 150;
/// The whole message as sent (JSON escapes included), with a margin under Slack's 40 000.
pub const MAX_MESSAGE_CHARS: usize = 39_000;

/// `tests/it/support/slack_limits.rs`, compiled into the unit tests too, so the message
/// builder's tests check their payloads with the same function as the mock Slack.
#[cfg(test)]
#[path = "../../tests/it/support/slack_limits.rs"]
pub(crate) mod limits;
