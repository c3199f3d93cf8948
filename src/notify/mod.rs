//! Notifications (DESIGN §6): [`message`] builds alert messages (Slack Block Kit within
//! Slack's limits, Alertmanager's webhook payload), [`notifiers`] names the places they go
//! and routes alerts there, [`webhook`] delivers with rate limit, `Retry-After`, backoff
//! and final 4xx, [`outbox`] records deliveries before they are attempted, [`slack`] holds
//! Slack's payload limits.

pub mod dispatch;
pub mod history;
pub mod message;
pub mod notifiers;
pub mod outbox;
pub mod slack;
pub mod webhook;
