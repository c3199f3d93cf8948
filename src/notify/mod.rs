//! Notifications (DESIGN §6). Rules reach them through one handle, the [`dispatch`]
//! [`Dispatcher`](dispatch::Dispatcher): it routes a tick's alerts to notifiers, records
//! each delivery in the [`outbox`] before it is attempted, and sends it in the background
//! until its deadline (`[notify] delivery_deadline`), every attempt in the [`history`].
//! [`message`] builds alert messages (Slack Block Kit within Slack's limits,
//! Alertmanager's webhook payload), [`notifiers`] names the places they go and their
//! routes, [`webhook`] delivers with rate limit, `Retry-After`, backoff and final 4xx,
//! [`slack`] holds Slack's payload limits; [`pagerduty`] (Events API v2), [`email`]
//! (SMTP) and [`msteams`] (Adaptive Cards) build and send their services' messages
//! within those services' limits; [`alertmanager`] posts to every peer of an
//! Alertmanager cluster and resends as Prometheus does. [`route`] is Alertmanager's routing tree and inhibit
//! rules (with [`matcher`] and [`time_interval`]), [`group`] its aggregation groups,
//! [`heartbeat`] the dead man's switch. Nothing here knows rules beyond the messages it
//! is given.

pub mod alertmanager;
pub mod dispatch;
pub mod email;
pub mod group;
pub mod heartbeat;
pub mod history;
pub mod matcher;
pub mod message;
pub mod msteams;
pub mod notifier_config;
pub mod notifiers;
pub mod outbox;
pub mod pagerduty;
pub mod route;
pub mod slack;
pub mod time_interval;
pub mod webhook;
