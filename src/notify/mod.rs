//! Notifications (issue 4, DESIGN §6). So far: [`message`], alert messages as Slack
//! payloads within Slack's limits, and [`slack`], delivery to an incoming webhook with
//! Slack's rate limit, `Retry-After`, backoff, final 4xx and payload limits.

pub mod message;
pub mod outbox;
pub mod slack;
