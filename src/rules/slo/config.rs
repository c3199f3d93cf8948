//! The `slo` object of a rule file, as the user writes it (checked by [`super::derive`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `slo` object of a rule file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// The percentage of good events to reach, e.g. 99.9 (strictly between 0 and 100).
    pub objective: f64,
    /// The period the objective holds over (the error budget's period), e.g. "30d".
    #[serde(default = "default_period")]
    pub period: String,
    /// Good events: a Lucene query counted in `index` (log SLOs), or a PromQL expression
    /// with `{{ $window }}` as its range (without `index`), e.g.
    /// `sum(rate(http_requests_total{code!~"5.."}[{{ $window }}]))`.
    pub good: String,
    /// All events, in the language of `good`.
    pub total: String,
    /// The conditions that page (any one holds): default 14.4 over 1h and 5m, 6 over 6h
    /// and 30m. An empty list pages never.
    #[serde(default = "default_page")]
    pub page: Vec<BurnCondition>,
    /// The conditions that open a ticket: default 1 over 3d and 6h.
    #[serde(default = "default_ticket")]
    pub ticket: Vec<BurnCondition>,
}

/// Fires when the burn rate is above `burn_rate` over both windows.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BurnCondition {
    /// The long window, e.g. "1h": is the budget really burning?
    pub long_window: String,
    /// The short window, e.g. "5m": is it still burning (the alert resolves soon after it
    /// stops)?
    pub short_window: String,
    /// The burn-rate factor both windows must exceed, e.g. 14.4.
    pub burn_rate: f64,
}

fn default_period() -> String {
    "30d".into()
}

fn condition(long_window: &str, short_window: &str, burn_rate: f64) -> BurnCondition {
    BurnCondition {
        long_window: long_window.into(),
        short_window: short_window.into(),
        burn_rate,
    }
}

fn default_page() -> Vec<BurnCondition> {
    vec![condition("1h", "5m", 14.4), condition("6h", "30m", 6.0)]
}

fn default_ticket() -> Vec<BurnCondition> {
    vec![condition("3d", "6h", 1.0)]
}
