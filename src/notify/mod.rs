//! Notifications (DESIGN §6). Rules reach them through one handle, the [`dispatch`]
//! [`Dispatcher`](dispatch::Dispatcher): it routes a tick's alerts to notifiers, records
//! each delivery in the [`outbox`] before it is attempted, and sends it in the background
//! until its deadline (`[notify] delivery_deadline`), every attempt in the [`history`].
//! [`message`] builds alert messages (Slack Block Kit within Slack's limits,
//! Alertmanager's webhook payload), [`notifiers`] names the places they go and their
//! routes, [`webhook`] delivers with rate limit, `Retry-After`, backoff and final 4xx,
//! [`slack`] holds Slack's payload limits; [`pagerduty`] (Events API v2), [`email`]
//! (SMTP) and [`msteams`] (Adaptive Cards) build and send their services' messages
//! within those services' limits. Nothing here knows rules beyond the messages it is
//! given.

pub mod dispatch;
pub mod email;
pub mod history;
pub mod message;
pub mod msteams;
pub mod notifiers;
pub mod outbox;
pub mod pagerduty;
pub mod slack;
pub mod webhook;
