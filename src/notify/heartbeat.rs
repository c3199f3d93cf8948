//! The dead man's switch (`[heartbeat]`): who alerts when Lookout is down? Lookout pings
//! a URL of an external service (Healthchecks, Dead Man's Snitch, Cronitor, …) every
//! `interval`, but only while everything alerting depends on is healthy — the rules run
//! on time, no delivery gave up recently, storage accepts writes. The service pages when
//! the pings stop: after a crash, a kill -9, a hung scheduler, a full disk or a dead
//! network alike.
//!
//! ```toml
//! [heartbeat]
//! url_env = "HEARTBEAT_URL"   # a secret: never logged
//! interval = "1m"             # configure the service's period to match, with grace
//! ```
//!
//! This module only pings; what "healthy" means is the `health` function it is given
//! (`app` wires the rule manager's and the storage's signals). A ping is a plain HTTP
//! request with a timeout; a failed ping is logged (without the URL) and not retried:
//! the next interval pings again. `/metrics` counts pings, failures and withheld
//! intervals and shows when the last ping succeeded (`lookout_heartbeat_*`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::secret::Secret;
use crate::telemetry::Telemetry;

/// `[heartbeat]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// The URL itself (prefer `url_env` or `url_file`: a ping URL is a secret).
    #[serde(default, skip_serializing)]
    pub url: Option<Secret>,
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// How often to ping while healthy.
    #[serde(
        default = "HeartbeatConfig::default_interval",
        with = "crate::duration_serde"
    )]
    pub interval: Duration,
    /// `GET` (the default), `POST` or `HEAD`.
    #[serde(default = "HeartbeatConfig::default_method")]
    pub method: String,
}

impl HeartbeatConfig {
    fn default_interval() -> Duration {
        Duration::from_secs(60)
    }

    fn default_method() -> String {
        "GET".into()
    }

    /// The configured URL; the error names the field, never the URL.
    pub fn resolve_url(&self) -> Result<String, String> {
        crate::secret::resolve_secret(
            self.url.as_ref().map(|secret| secret.0.as_str()),
            self.url_env.as_deref(),
            self.url_file.as_deref(),
        )
        .map_err(|(field, error)| format!("`heartbeat.url_{field}`: {error}"))?
        .ok_or_else(|| "`heartbeat`: set one of `url_env`, `url_file` or `url`".to_string())
    }

    /// What is wrong with the table, each error naming its field.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let sources = usize::from(self.url.is_some())
            + usize::from(self.url_env.is_some())
            + usize::from(self.url_file.is_some());
        if sources > 1 {
            errors.push("`heartbeat`: set only one of `url_env`, `url_file` or `url`".into());
        }
        match self.resolve_url() {
            Ok(url) if url.starts_with("http://") || url.starts_with("https://") => {}
            Ok(_) => errors.push("`heartbeat`: the url must start with http:// or https://".into()),
            Err(error) => errors.push(error),
        }
        if self.interval < Duration::from_secs(1) || self.interval > Duration::from_secs(86_400) {
            errors.push("`heartbeat.interval`: must be between 1s and 1d".into());
        }
        if !["GET", "POST", "HEAD"].contains(&self.method.to_uppercase().as_str()) {
            errors.push(format!(
                "`heartbeat.method`: `{}` is not GET, POST or HEAD",
                self.method
            ));
        }
        errors
    }
}

/// What keeps the pings from going out: empty when alerting is healthy, else one reason
/// each.
pub type Health = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Pings until `cancel`, each `interval`, while `health` finds nothing wrong; logs when
/// pings stop and resume, with the reasons, and counts each outcome in `metrics`.
pub async fn run(
    config: HeartbeatConfig,
    health: Health,
    telemetry: Arc<Telemetry>,
    cancel: CancellationToken,
) {
    let metrics = &telemetry.heartbeat;
    let url = match config.resolve_url() {
        Ok(url) => url,
        Err(error) => {
            tracing::error!(%error, "heartbeat disabled");
            return;
        }
    };
    crate::install_tls_provider();
    let method = reqwest::Method::from_bytes(config.method.to_uppercase().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let client = match reqwest::Client::builder()
        .timeout(config.interval.min(Duration::from_secs(10)))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "heartbeat disabled: cannot build an HTTP client");
            return;
        }
    };
    tracing::info!(interval = ?config.interval, "heartbeat pings while alerting is healthy");
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut withheld = false;
    let mut failing = false;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let problems = health();
        if !problems.is_empty() {
            metrics.withheld.add(1);
            if !withheld {
                tracing::error!(problems = %problems.join("; "), "heartbeat withheld: alerting is unhealthy, so the dead man's switch will page");
            }
            withheld = true;
            continue;
        }
        if std::mem::take(&mut withheld) {
            tracing::info!("heartbeat resumed: alerting is healthy again");
        }
        // the URL is a secret: errors are reported without it
        match client.request(method.clone(), &url).send().await {
            Ok(response) if response.status().is_success() => {
                metrics.pings.add(1);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs());
                metrics.last_success_seconds.set(now);
                if std::mem::take(&mut failing) {
                    tracing::info!("heartbeat pings delivered again");
                }
            }
            Ok(response) => {
                metrics.failures.add(1);
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        status = response.status().as_u16(),
                        "heartbeat ping refused"
                    );
                }
            }
            Err(error) => {
                metrics.failures.add(1);
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %error.without_url(), "heartbeat ping failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_table_is_checked_and_never_shows_its_url() {
        let config: crate::config::Config = toml::from_str(
            "[heartbeat]\nurl = \"ftp://secret-host/ping\"\ninterval = \"0s\"\nmethod = \"PUT\"\n",
        )
        .expect("parses");
        let errors = config.validate("lookout.toml").expect_err("invalid").errors;
        let text = errors.join("\n");
        for expected in [
            "`heartbeat`: the url must start with http",
            "`heartbeat.interval`: must be between 1s and 1d",
            "`heartbeat.method`: `PUT` is not GET, POST or HEAD",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(!text.contains("secret-host"), "{text}");
        let good: crate::config::Config =
            toml::from_str("[heartbeat]\nurl = \"http://127.0.0.1:1/ping\"\n").expect("parses");
        good.validate("lookout.toml").expect("valid");
        let heartbeat = good.heartbeat.expect("set");
        assert_eq!(heartbeat.interval, Duration::from_secs(60));
        assert_eq!(heartbeat.method, "GET");
        assert!(!format!("{heartbeat:?}").contains("127.0.0.1"), "redacted");
    }

    #[tokio::test]
    async fn pings_only_while_healthy() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let pings = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&pings);
        let app = axum::Router::new().route(
            "/ping",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let healthy = Arc::new(AtomicBool::new(true));
        let health: Health = {
            let healthy = Arc::clone(&healthy);
            Arc::new(move || {
                if healthy.load(Ordering::SeqCst) {
                    Vec::new()
                } else {
                    vec!["rule `x` is late".into()]
                }
            })
        };
        let config = HeartbeatConfig {
            url: Some(Secret(format!("http://{address}/ping"))),
            url_env: None,
            url_file: None,
            interval: Duration::from_millis(100),
            method: "GET".into(),
        };
        let cancel = CancellationToken::new();
        let telemetry = Arc::new(Telemetry::default());
        let task = tokio::spawn(run(config, health, Arc::clone(&telemetry), cancel.clone()));
        let wait_for = |count: usize| {
            let pings = Arc::clone(&pings);
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while pings.load(Ordering::SeqCst) < count {
                    assert!(tokio::time::Instant::now() < deadline, "no ping {count}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        wait_for(3).await;
        healthy.store(false, Ordering::SeqCst);
        let stopped_at = pings.load(Ordering::SeqCst);
        // ten intervals unhealthy
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            pings.load(Ordering::SeqCst) <= stopped_at + 1,
            "at most the ping already under way"
        );
        let before = pings.load(Ordering::SeqCst);
        healthy.store(true, Ordering::SeqCst);
        wait_for(before + 2).await;
        cancel.cancel();
        task.await.expect("stops");
        let metrics = &telemetry.heartbeat;
        assert_eq!(metrics.pings.get(), pings.load(Ordering::SeqCst) as u64);
        assert!(metrics.withheld.get() >= 5, "ten intervals unhealthy");
        assert_eq!(metrics.failures.get(), 0);
        assert!(metrics.last_success_seconds.get() > 1_700_000_000);
        let text = telemetry.render(&[]);
        assert!(
            text.contains(&format!(
                "lookout_heartbeat_pings_total {}",
                metrics.pings.get()
            )),
            "{text}"
        );
        assert!(text.contains("# TYPE lookout_heartbeat_last_success_timestamp_seconds gauge"));
    }
}
