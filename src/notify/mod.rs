//! Notifications (issue 4, DESIGN §6). So far: [`slack`], delivery to an incoming webhook
//! with Slack's rate limit, `Retry-After`, backoff, final 4xx and payload limits.

pub mod slack;
