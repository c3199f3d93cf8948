//! An Alertmanager cluster as a notifier (`type = "alertmanager"`): alerts are posted to
//! `POST /api/v2/alerts` on every peer, the way Prometheus' notifier does
//! (`notifier/notifier.go`, `rules/alerting.go`):
//!
//! - every peer gets every post, concurrently, each with its own timeout: a peer that is
//!   down delays none of the others (Alertmanager's HA design: never a load balancer);
//! - a firing alert is posted when it fires, then again every `resend_delay` while it
//!   fires, with `endsAt` = now + 4 × `resend_delay` (Prometheus: 4 × max(`resend_delay`,
//!   evaluation interval); Lookout resends from its own loop, not at rule ticks, so the
//!   rule's interval does not stretch the gap between posts), so Alertmanager resolves it
//!   by itself when Lookout is gone for good;
//! - a resolved alert is posted with `endsAt` = the resolve time, and again every
//!   `resend_delay` for [`RESOLVED_RETENTION`] (Prometheus' 15 minutes), so a peer that
//!   was down at the time learns it;
//! - 200 is success; a 4xx is final (the body is kept in the history); 5xx and transport
//!   errors are retried with backoff until the next resend takes over.
//!
//! Resending is always safe: Alertmanager identifies an alert by its labels and merges
//! repeats, so a post delivered twice (a restart resuming the outbox, a retry after a
//! timeout that did arrive) changes nothing a receiver sees.
//!
//! The dispatcher builds the payload ([`Alertmanager::payload`]: labels with external
//! labels and `alert_relabel_configs` applied) and records it in the outbox before it
//! is attempted; [`Alertmanager::deliver_reporting`] merges it into the table of alerts
//! this notifier tracks (`state/alertmanager/NAME.json`, so resends go on after a
//! restart) and posts it. [`Alertmanager::run_resends`] resends. Per-peer outcomes go to
//! the history (`type = "alertmanager"` events with `peer_index`) and to `/metrics`
//! (`lookout_notifications_alertmanager_sent_total` and `…_errors_total`, by notifier and
//! peer index: never a URL, which may carry credentials).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::history::History;
use super::message::{AlertMessage, MessageKind, alert_labels, format_value};
use super::notifier_config::NotifierConfig;
use super::webhook::{Attempt, Outcome};
use crate::relabel::Relabel;
use crate::secret::Secret;
use crate::telemetry::Telemetry;

/// Default `timeout`: one request to one peer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `resend_delay`.
pub const DEFAULT_RESEND_DELAY: Duration = Duration::from_secs(60);
/// How long a resolved alert keeps being resent (Prometheus' `resolvedRetention`).
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);
/// Alerts in one post (Prometheus' `maxBatchSize`).
pub const MAX_BATCH: usize = 256;
/// Alerts tracked at most; beyond, the oldest resolved ones are forgotten first.
pub const MAX_TRACKED: usize = 100_000;
/// The API path every peer is posted to.
const ALERTS_PATH: &str = "/api/v2/alerts";

/// How a request authenticates (secrets: never logged).
enum Auth {
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

/// One alert as this notifier tracks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: DateTime<Utc>,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    /// When it resolved (`None`: firing).
    #[serde(rename = "resolvedAt", default)]
    pub resolved_at: Option<DateTime<Utc>>,
    /// The evaluation that last changed it: an older message never overrides a newer.
    pub at: DateTime<Utc>,
    /// When it was last posted (not persisted: after a restart, everything is resent).
    #[serde(skip)]
    pub last_sent: Option<DateTime<Utc>>,
}

impl TrackedAlert {
    /// Alertmanager's v2 `postableAlert` of this alert, as of `now`.
    fn postable(&self, now: DateTime<Utc>, resend_delay: Duration) -> Value {
        let ends_at = self.resolved_at.unwrap_or_else(|| {
            now + chrono::Duration::from_std(resend_delay * 4)
                .unwrap_or_else(|_| chrono::Duration::minutes(4))
        });
        json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "endsAt": ends_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "generatorURL": self.generator_url,
        })
    }

    /// Whether the resend loop posts it at `now` (Prometheus' `needsSending`).
    fn needs_resend(&self, now: DateTime<Utc>, resend_delay: Duration) -> bool {
        let delay = chrono::Duration::from_std(resend_delay).unwrap_or(chrono::Duration::MAX);
        match self.last_sent {
            None => true,
            Some(last) => last + delay <= now,
        }
    }
}

/// One peer's outcome of a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOutcome {
    Accepted {
        attempts: u32,
    },
    Rejected {
        attempts: u32,
        status: u16,
        body: String,
    },
    Failed {
        attempts: u32,
        error: String,
    },
}

/// What the dispatcher gives a running notifier: counters, history and state directory.
struct Attached {
    telemetry: Arc<Telemetry>,
    history: History,
    state_file: Option<PathBuf>,
}

/// An Alertmanager cluster: its peers, credentials, timing and the alerts it tracks.
pub struct Alertmanager {
    name: String,
    /// `…/api/v2/alerts` of every peer.
    peers: Vec<String>,
    auth: Option<Auth>,
    client: reqwest::Client,
    resend_delay: Duration,
    tracked: Mutex<BTreeMap<BTreeMap<String, String>, TrackedAlert>>,
    attached: OnceLock<Attached>,
    backoff_min: Duration,
}

impl std::fmt::Debug for Alertmanager {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Alertmanager")
            .field("name", &self.name)
            .field("peers", &self.peers.len())
            .field("resend_delay", &self.resend_delay)
            .finish()
    }
}

/// The errors of an `alertmanager` table, each starting with its field name and a
/// backtick (just the backtick for the table itself); never a secret's value.
pub fn validate(notifier: &NotifierConfig) -> Vec<String> {
    let mut errors = Vec::new();
    if notifier.urls.is_empty() {
        errors.push(
            "urls`: list every peer of the Alertmanager cluster, e.g. `urls = [\"http://am-1:9093\", \"http://am-2:9093\"]` (not a load balancer: each peer must get every alert)"
                .into(),
        );
    }
    if notifier.urls.len() > 64 {
        errors.push("urls`: at most 64 peers".into());
    }
    for (index, url) in notifier.urls.iter().enumerate() {
        match reqwest::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            // a URL may hold credentials: say where, not what
            _ => errors.push(format!(
                "urls`: entry {index} is not an http:// or https:// URL"
            )),
        }
    }
    let bearer_sources = usize::from(notifier.bearer_token_env.is_some())
        + usize::from(notifier.bearer_token_file.is_some());
    if bearer_sources > 1 {
        errors.push(
            "bearer_token_env`: give one of `bearer_token_env` or `bearer_token_file`".into(),
        );
    }
    if bearer_sources > 0 && notifier.basic_auth.is_some() {
        errors.push("basic_auth`: give either `basic_auth` or a bearer token, not both".into());
    }
    if let Err(error) = resolve_auth(notifier) {
        errors.push(error);
    }
    if let Some(timeout) = notifier.timeout
        && (timeout < Duration::from_millis(10) || timeout > Duration::from_secs(300))
    {
        errors.push("timeout`: must be between 10ms and 5m".into());
    }
    if let Some(delay) = notifier.resend_delay
        && (delay < Duration::from_millis(100) || delay > Duration::from_secs(3600))
    {
        errors.push("resend_delay`: must be between 100ms and 1h".into());
    }
    errors
}

/// Errors of fields only an `alertmanager` notifier takes, set on another kind.
pub fn foreign_fields(notifier: &NotifierConfig) -> Vec<String> {
    [
        ("urls", !notifier.urls.is_empty()),
        ("basic_auth", notifier.basic_auth.is_some()),
        ("bearer_token_env", notifier.bearer_token_env.is_some()),
        ("bearer_token_file", notifier.bearer_token_file.is_some()),
        ("timeout", notifier.timeout.is_some()),
        ("resend_delay", notifier.resend_delay.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(field, _)| {
        format!(
            "{field}`: only an alertmanager notifier takes `{field}`, not a {} one",
            notifier.kind.name()
        )
    })
    .collect()
}

fn resolve_auth(notifier: &NotifierConfig) -> Result<Option<Auth>, String> {
    if let Some(basic) = &notifier.basic_auth {
        let password = crate::secret::resolve_secret(
            None,
            basic.password_env.as_deref(),
            basic.password_file.as_deref(),
        )
        .map_err(|(field, error)| format!("basic_auth.password_{field}`: {error}"))?
        .ok_or_else(|| {
            "basic_auth`: give the password with `password_env` or `password_file`".to_string()
        })?;
        if basic.password_env.is_some() && basic.password_file.is_some() {
            return Err("basic_auth`: give one of `password_env` or `password_file`".into());
        }
        return Ok(Some(Auth::Basic {
            username: basic.username.clone(),
            password: Secret(password),
        }));
    }
    let token = crate::secret::resolve_credential(
        None,
        notifier.bearer_token_env.as_deref(),
        notifier.bearer_token_file.as_deref(),
    )
    .map_err(|(field, error)| format!("bearer_token_{field}`: {error}"))?;
    Ok(token.map(|token| Auth::Bearer(Secret(token))))
}

impl Alertmanager {
    /// Builds notifier `name` of a validated table; the error names the field.
    pub fn new(name: &str, config: &NotifierConfig) -> Result<Alertmanager, String> {
        crate::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(config.timeout.unwrap_or(DEFAULT_TIMEOUT))
            .build()
            .map_err(|error| format!("`: cannot build its HTTP client: {error}"))?;
        let peers = config
            .urls
            .iter()
            .map(|url| format!("{}{ALERTS_PATH}", url.trim_end_matches('/')))
            .collect();
        Ok(Alertmanager {
            name: name.to_string(),
            peers,
            auth: resolve_auth(config)?,
            client,
            resend_delay: config.resend_delay.unwrap_or(DEFAULT_RESEND_DELAY),
            tracked: Mutex::default(),
            attached: OnceLock::new(),
            backoff_min: Duration::from_millis(200),
        })
    }

    /// Connects the notifier to the server's counters and history, and loads the alerts
    /// it tracked before a restart from `state_dir/alertmanager/NAME.json` (`None`: not
    /// persisted). Only the first call counts.
    pub fn attach(&self, telemetry: Arc<Telemetry>, history: History, state_dir: Option<&Path>) {
        let state_file = state_dir.and_then(|directory| {
            let directory = directory.join("alertmanager");
            match std::fs::create_dir_all(&directory) {
                Ok(()) => Some(directory.join(format!("{}.json", self.name))),
                Err(error) => {
                    tracing::error!(notifier = %self.name, %error, "cannot create the alertmanager state directory; tracked alerts are not kept across restarts");
                    None
                }
            }
        });
        if let Some(path) = &state_file
            && let Ok(bytes) = std::fs::read(path)
        {
            match serde_json::from_slice::<Vec<TrackedAlert>>(&bytes) {
                Ok(alerts) => {
                    let mut tracked = self.lock();
                    for alert in alerts {
                        tracked.insert(alert.labels.clone(), alert);
                    }
                }
                Err(error) => {
                    tracing::error!(notifier = %self.name, %error, "unreadable alertmanager state; starting without it")
                }
            }
        }
        let _ = self.attached.set(Attached {
            telemetry,
            history,
            state_file,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<BTreeMap<String, String>, TrackedAlert>> {
        self.tracked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every peer's `…/api/v2/alerts` endpoint as Prometheus' `/api/v1/alertmanagers`
    /// lists them: user names and passwords in a URL are left out.
    pub fn endpoints(&self) -> Vec<String> {
        self.peers
            .iter()
            .map(|peer| without_credentials(peer))
            .collect()
    }

    /// How many peers it posts to.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The alerts it tracks (firing, and resolved within [`RESOLVED_RETENTION`]).
    pub fn tracked(&self) -> Vec<TrackedAlert> {
        self.lock().values().cloned().collect()
    }

    /// What the outbox records for `message`: `{"alerts": [TrackedAlert…]}`, labels with
    /// `external_labels` added (an alert's own label wins) and then `relabel` applied;
    /// alerts `relabel` drops are left out.
    pub fn payload(
        message: &AlertMessage,
        external_labels: &BTreeMap<String, String>,
        relabel: &Relabel,
    ) -> Value {
        let mut annotations = BTreeMap::new();
        if !message.summary.is_empty() {
            annotations.insert("summary".to_string(), message.summary.clone());
        }
        if let Some(description) = &message.description {
            annotations.insert("description".into(), description.clone());
        }
        if let Some(url) = &message.runbook_url {
            annotations.insert("runbook_url".into(), url.clone());
        }
        if !message.samples.is_empty() {
            annotations.insert("samples".into(), message.samples.join("\n"));
        }
        if !message.context.is_empty() {
            annotations.insert("context".into(), message.context.join("\n"));
        }
        // the message's own alerts (resolved ones when it is a resolve), then those of the
        // same flush that resolved
        let kind_resolved = (message.kind == MessageKind::Resolved).then_some(message.at);
        let alerts: Vec<TrackedAlert> = message
            .alerts
            .iter()
            .map(|alert| (alert, kind_resolved))
            .chain(
                message
                    .resolved
                    .iter()
                    .map(|alert| (alert, Some(message.at))),
            )
            .filter_map(|(alert, resolved_at)| {
                let mut labels = alert_labels(message, alert);
                with_external_labels(&mut labels, external_labels);
                if !relabel.process(&mut labels) || labels.is_empty() {
                    return None;
                }
                let mut annotations = annotations.clone();
                annotations.insert("value".into(), format_value(alert.value));
                if let Some(reason) = &alert.reason {
                    annotations.insert("resolve_reason".into(), reason.clone());
                }
                Some(TrackedAlert {
                    labels,
                    annotations,
                    starts_at: alert.starts_at.unwrap_or(message.at),
                    generator_url: message
                        .link
                        .as_ref()
                        .map(|(url, _)| url.clone())
                        .unwrap_or_default(),
                    resolved_at,
                    at: message.at,
                    last_sent: None,
                })
            })
            .collect();
        json!({ "alerts": alerts })
    }

    /// Merges a recorded payload into the tracked alerts (a newer evaluation wins) and
    /// posts those alerts, as they now stand, to every peer; 5xx and transport errors are
    /// retried until `deadline` or the next resend, whichever comes first. Reports one
    /// [`Attempt`] for the whole: delivered when at least one peer accepted (each peer's
    /// outcome is in the history and `/metrics`).
    pub async fn deliver_reporting(
        &self,
        payload: &Value,
        deadline: tokio::time::Instant,
        report: &(dyn Fn(Attempt) + Send + Sync),
    ) -> Outcome {
        let incoming: Vec<TrackedAlert> = payload
            .get("alerts")
            .cloned()
            .and_then(|alerts| serde_json::from_value(alerts).ok())
            .unwrap_or_default();
        let now = Utc::now();
        let batch: Vec<TrackedAlert> = {
            let mut tracked = self.lock();
            let mut batch = Vec::new();
            for alert in incoming {
                let current = tracked
                    .entry(alert.labels.clone())
                    .or_insert_with(|| alert.clone());
                if alert.at >= current.at {
                    *current = alert;
                }
                current.last_sent = Some(now);
                batch.push(current.clone());
            }
            batch
        };
        if batch.is_empty() {
            report(Attempt {
                number: 1,
                status: None,
                error: None,
                retry_in: None,
                rejected: false,
                alert: None,
            });
            return Outcome::Delivered { attempts: 0 };
        }
        self.save().await;
        let retry_until = deadline.min(tokio::time::Instant::now() + self.resend_delay);
        let outcomes = self
            .post_to_every_peer(&batch, retry_until, "transition")
            .await;
        let attempts = outcomes.iter().map(PeerOutcome::attempts).sum::<u32>();
        let accepted = outcomes
            .iter()
            .any(|outcome| matches!(outcome, PeerOutcome::Accepted { .. }));
        let rejected = outcomes.iter().find_map(|outcome| match outcome {
            PeerOutcome::Rejected { status, body, .. } => Some((*status, body.clone())),
            _ => None,
        });
        let summary = summarize(&outcomes);
        match (accepted, rejected) {
            (true, _) => {
                report(Attempt {
                    number: attempts,
                    status: Some(200),
                    error: None,
                    retry_in: None,
                    rejected: false,
                    alert: None,
                });
                Outcome::Delivered { attempts }
            }
            (false, Some((status, body))) => {
                report(Attempt {
                    number: attempts,
                    status: Some(status),
                    error: Some(summary),
                    retry_in: None,
                    rejected: true,
                    alert: None,
                });
                Outcome::Rejected {
                    attempts,
                    status,
                    reason: body,
                }
            }
            (false, None) => {
                report(Attempt {
                    number: attempts,
                    status: None,
                    error: Some(summary.clone()),
                    retry_in: None,
                    rejected: false,
                    alert: None,
                });
                Outcome::GaveUp {
                    attempts,
                    last_error: summary,
                }
            }
        }
    }

    /// Resends what is due every `resend_delay` (firing alerts, and resolved ones within
    /// [`RESOLVED_RETENTION`]) until `cancel`; forgets resolved alerts past it.
    pub async fn run_resends(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        let period =
            (self.resend_delay / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            self.resend_due(Utc::now()).await;
        }
    }

    /// One pass of [`Alertmanager::run_resends`] at `now`.
    pub async fn resend_due(&self, now: DateTime<Utc>) {
        let retention =
            chrono::Duration::from_std(RESOLVED_RETENTION).expect("fifteen minutes fit");
        let (due, forgot) = {
            let mut tracked = self.lock();
            let before = tracked.len();
            tracked.retain(|_, alert| alert.resolved_at.is_none_or(|at| at + retention > now));
            if tracked.len() > MAX_TRACKED {
                let mut resolved: Vec<(DateTime<Utc>, BTreeMap<String, String>)> = tracked
                    .values()
                    .filter_map(|alert| alert.resolved_at.map(|at| (at, alert.labels.clone())))
                    .collect();
                resolved.sort();
                for (_, labels) in resolved.into_iter().take(tracked.len() - MAX_TRACKED) {
                    tracked.remove(&labels);
                }
            }
            let forgot = tracked.len() != before;
            let mut due = Vec::new();
            for alert in tracked.values_mut() {
                if alert.needs_resend(now, self.resend_delay) {
                    alert.last_sent = Some(now);
                    due.push(alert.clone());
                }
            }
            (due, forgot)
        };
        if forgot {
            self.save().await;
        }
        if due.is_empty() {
            return;
        }
        // one attempt per peer: the next resend is the retry
        self.post_to_every_peer(&due, tokio::time::Instant::now(), "resend")
            .await;
    }

    /// Posts `alerts` (in batches of [`MAX_BATCH`]) to every peer at once, each retrying
    /// 5xx and transport errors until `retry_until`; one outcome per peer, each also in
    /// the history and the counters.
    async fn post_to_every_peer(
        &self,
        alerts: &[TrackedAlert],
        retry_until: tokio::time::Instant,
        why: &'static str,
    ) -> Vec<PeerOutcome> {
        let now = Utc::now();
        let bodies: Vec<String> = alerts
            .chunks(MAX_BATCH)
            .map(|chunk| {
                Value::Array(
                    chunk
                        .iter()
                        .map(|alert| alert.postable(now, self.resend_delay))
                        .collect(),
                )
                .to_string()
            })
            .collect();
        let posts = self.peers.iter().enumerate().map(|(index, url)| {
            let bodies = &bodies;
            async move {
                let mut outcome = PeerOutcome::Accepted { attempts: 0 };
                let mut attempts_so_far = 0;
                for body in bodies {
                    outcome = self.post_to_peer(url, body, retry_until).await;
                    attempts_so_far += outcome.attempts();
                    if !matches!(outcome, PeerOutcome::Accepted { .. }) {
                        break;
                    }
                }
                outcome.set_attempts(attempts_so_far);
                self.account(index, alerts.len(), &outcome, why);
                outcome
            }
        });
        futures_util::future::join_all(posts).await
    }

    /// One peer, one body, retried until `retry_until`.
    async fn post_to_peer(
        &self,
        url: &str,
        body: &str,
        retry_until: tokio::time::Instant,
    ) -> PeerOutcome {
        let mut attempts = 0;
        let mut backoff = self.backoff_min;
        loop {
            attempts += 1;
            let mut request = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string());
            request = match &self.auth {
                Some(Auth::Basic { username, password }) => {
                    request.basic_auth(username, Some(&password.0))
                }
                Some(Auth::Bearer(token)) => request.bearer_auth(&token.0),
                None => request,
            };
            let error = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    return PeerOutcome::Accepted { attempts };
                }
                Ok(response) if response.status().is_client_error() => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    return PeerOutcome::Rejected {
                        attempts,
                        status,
                        body: body.trim().chars().take(1000).collect(),
                    };
                }
                Ok(response) => format!("HTTP {}", response.status()),
                // without the URL: it may carry credentials
                Err(error) => error.without_url().to_string(),
            };
            let delay = backoff / 2 + backoff.mul_f64(fastrand::f64() / 2.0);
            if tokio::time::Instant::now() + delay > retry_until {
                return PeerOutcome::Failed { attempts, error };
            }
            tokio::time::sleep(delay).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Counts a peer's outcome and records it in the history (a resend only when it
    /// failed: a healthy cluster's minutely resends are not news).
    fn account(&self, peer_index: usize, alerts: usize, outcome: &PeerOutcome, why: &str) {
        let Some(attached) = self.attached.get() else {
            return;
        };
        let peer = peer_index.to_string();
        let alerts_count = alerts as u64;
        match outcome {
            PeerOutcome::Accepted { .. } => {
                attached
                    .telemetry
                    .alertmanager_sent
                    .add(&self.name, &peer, alerts_count);
            }
            PeerOutcome::Rejected { .. } | PeerOutcome::Failed { .. } => {
                attached
                    .telemetry
                    .alertmanager_errors
                    .add(&self.name, &peer, alerts_count);
                tracing::warn!(notifier = %self.name, peer_index, outcome = ?outcome, why, "alertmanager peer did not accept the alerts");
            }
        }
        if why == "resend" && matches!(outcome, PeerOutcome::Accepted { .. }) {
            return;
        }
        let mut event = json!({
            "@timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "type": "alertmanager",
            "notifier": self.name,
            "peer_index": peer_index,
            "peers": self.peers.len(),
            "alerts": alerts,
            "why": why,
            "attempts": outcome.attempts(),
        });
        let (name, detail) = match outcome {
            PeerOutcome::Accepted { .. } => ("accepted", String::new()),
            PeerOutcome::Rejected { status, body, .. } => {
                event["status"] = (*status).into();
                event["error"] = body.clone().into();
                ("rejected", format!(": HTTP {status} {body}"))
            }
            PeerOutcome::Failed { error, .. } => {
                event["error"] = error.clone().into();
                ("failed", format!(": {error}"))
            }
        };
        event["outcome"] = name.into();
        event["message"] = format!(
            "{} peer {peer_index} {why} of {alerts} alerts: {name}{detail}",
            self.name
        )
        .into();
        attached.history.record(event);
    }

    /// Writes the tracked alerts to the state file (atomically, off the runtime).
    async fn save(&self) {
        let Some(path) = self
            .attached
            .get()
            .and_then(|attached| attached.state_file.clone())
        else {
            return;
        };
        let alerts: Vec<TrackedAlert> = self.lock().values().cloned().collect();
        let bytes = serde_json::to_vec(&alerts).expect("tracked alerts serialize");
        let name = self.name.clone();
        let written =
            tokio::task::spawn_blocking(move || crate::atomic_file::write(&path, &bytes)).await;
        if let Ok(Err(error)) = written {
            tracing::error!(notifier = %name, %error, "cannot save the tracked alerts; a restart may resend fewer");
        }
    }
}

impl PeerOutcome {
    fn attempts(&self) -> u32 {
        match self {
            PeerOutcome::Accepted { attempts }
            | PeerOutcome::Rejected { attempts, .. }
            | PeerOutcome::Failed { attempts, .. } => *attempts,
        }
    }

    fn set_attempts(&mut self, total: u32) {
        match self {
            PeerOutcome::Accepted { attempts }
            | PeerOutcome::Rejected { attempts, .. }
            | PeerOutcome::Failed { attempts, .. } => *attempts = total,
        }
    }
}

/// `peer 0: accepted; peer 1: HTTP 503` for the delivery's history event.
fn summarize(outcomes: &[PeerOutcome]) -> String {
    outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| match outcome {
            PeerOutcome::Accepted { .. } => format!("peer {index}: accepted"),
            PeerOutcome::Rejected { status, body, .. } => {
                format!("peer {index}: HTTP {status} {body}")
            }
            PeerOutcome::Failed { error, .. } => format!("peer {index}: {error}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Adds `[global] external_labels` to an alert's labels; a label the alert has wins.
pub fn with_external_labels(
    labels: &mut BTreeMap<String, String>,
    external_labels: &BTreeMap<String, String>,
) {
    for (name, value) in external_labels {
        labels.entry(name.clone()).or_insert_with(|| value.clone());
    }
}

/// `url` without the user name and password it may carry.
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::AlertLine;

    fn message(kind: MessageKind) -> AlertMessage {
        AlertMessage {
            kind,
            rule: "checkout_5xx".into(),
            at: DateTime::from_timestamp(1_795_341_600, 0).expect("time"),
            labels: BTreeMap::from([("team".to_string(), "payments".to_string())]),
            description: Some("too many 500s".into()),
            severity: "critical".into(),
            summary: "31 HTTP 500s".into(),
            title: None,
            threshold: "> 20".into(),
            window: "1m".into(),
            alerts: vec![
                AlertLine {
                    labels: BTreeMap::from([
                        ("service".to_string(), "checkout".to_string()),
                        ("cluster".to_string(), "own".to_string()),
                    ]),
                    value: 31.0,
                    fired_for: None,
                    reason: None,
                    starts_at: DateTime::from_timestamp(1_795_341_540, 0),
                    reference: None,
                },
                AlertLine {
                    labels: BTreeMap::from([("service".to_string(), "drop-me".to_string())]),
                    value: 25.0,
                    fired_for: None,
                    reason: None,
                    starts_at: None,
                    reference: None,
                },
            ],
            resolved: Vec::new(),
            samples: vec!["line one".into(), "line two".into()],
            context: vec!["p99 = 3.2 s".into()],
            runbook_url: Some("https://runbooks/checkout".into()),
            link: Some(("http://lookout/ui/search?q=x".into(), "Search these logs")),
        }
    }

    fn relabel(toml_text: &str) -> Relabel {
        #[derive(Deserialize)]
        struct Steps {
            #[serde(default)]
            step: Vec<crate::relabel::RelabelConfig>,
        }
        let steps: Steps = toml::from_str(toml_text).expect("steps");
        Relabel::build(&steps.step, "alert_relabel_configs").expect("valid")
    }

    #[test]
    fn payload_has_external_labels_under_the_alerts_own_then_relabels() {
        let external = BTreeMap::from([
            ("cluster".to_string(), "eu1".to_string()),
            ("replica".to_string(), "a".to_string()),
        ]);
        let steps = relabel(
            r#"[[step]]
            regex = "replica"
            action = "labeldrop"
            [[step]]
            source_labels = ["service"]
            regex = "drop-me"
            action = "drop""#,
        );
        let payload = Alertmanager::payload(&message(MessageKind::Firing), &external, &steps);
        let alerts: Vec<TrackedAlert> =
            serde_json::from_value(payload["alerts"].clone()).expect("alerts");
        assert_eq!(alerts.len(), 1, "the relabel step dropped the second alert");
        let alert = &alerts[0];
        let expected: BTreeMap<String, String> = [
            ("alertname", "checkout_5xx"),
            ("cluster", "own"),
            ("service", "checkout"),
            ("severity", "critical"),
            ("team", "payments"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
        assert_eq!(alert.labels, expected, "own label wins, replica dropped");
        assert_eq!(alert.annotations["summary"], "31 HTTP 500s");
        assert_eq!(alert.annotations["description"], "too many 500s");
        assert_eq!(
            alert.annotations["runbook_url"],
            "https://runbooks/checkout"
        );
        assert_eq!(alert.annotations["samples"], "line one\nline two");
        assert_eq!(alert.annotations["context"], "p99 = 3.2 s");
        assert_eq!(alert.annotations["value"], "31");
        assert_eq!(alert.generator_url, "http://lookout/ui/search?q=x");
        assert_eq!(alert.resolved_at, None);
        assert_eq!(
            alert.starts_at,
            DateTime::from_timestamp(1_795_341_540, 0).expect("time")
        );
    }

    #[test]
    fn firing_alerts_end_four_resend_delays_ahead_and_resolved_ones_at_their_resolve() {
        let now = DateTime::from_timestamp(1_795_341_700, 0).expect("time");
        let payload = Alertmanager::payload(
            &message(MessageKind::Firing),
            &BTreeMap::new(),
            &Relabel::default(),
        );
        let firing: Vec<TrackedAlert> =
            serde_json::from_value(payload["alerts"].clone()).expect("alerts");
        let postable = firing[0].postable(now, Duration::from_secs(60));
        assert_eq!(postable["endsAt"], "2026-11-22T10:05:40.000Z");
        assert_eq!(postable["startsAt"], "2026-11-22T09:59:00.000Z");
        let resolved: Vec<TrackedAlert> = serde_json::from_value(
            Alertmanager::payload(
                &message(MessageKind::Resolved),
                &BTreeMap::new(),
                &Relabel::default(),
            )["alerts"]
                .clone(),
        )
        .expect("alerts");
        assert_eq!(
            resolved[0].postable(now, Duration::from_secs(60))["endsAt"],
            "2026-11-22T10:00:00.000Z",
            "the resolve time"
        );
    }

    #[test]
    fn resends_follow_prometheus_needs_sending() {
        let at = DateTime::from_timestamp(1_795_341_600, 0).expect("time");
        let mut alert = TrackedAlert {
            labels: BTreeMap::from([("alertname".to_string(), "a".to_string())]),
            annotations: BTreeMap::new(),
            starts_at: at,
            generator_url: String::new(),
            resolved_at: None,
            at,
            last_sent: None,
        };
        let delay = Duration::from_secs(60);
        assert!(alert.needs_resend(at, delay), "never sent");
        alert.last_sent = Some(at);
        assert!(!alert.needs_resend(at + chrono::Duration::seconds(59), delay));
        assert!(alert.needs_resend(at + chrono::Duration::seconds(60), delay));
    }

    #[test]
    fn alertmanager_tables_are_checked_field_by_field_without_secrets() {
        let config: crate::config::Config = toml::from_str(
            r#"
            [notifiers.empty]
            type = "alertmanager"
            [notifiers.bad]
            type = "alertmanager"
            urls = ["ftp://user:hunter2@am:9093", "http://am-2:9093"]
            bearer_token_env = "LOOKOUT_TEST_UNSET_TOKEN"
            timeout = "1ms"
            resend_delay = "2h"
            [notifiers.both]
            type = "alertmanager"
            urls = ["http://am:9093"]
            bearer_token_file = "/nonexistent/token"
            basic_auth = { username = "lookout" }
            [notifiers.hook]
            type = "webhook"
            url = "http://127.0.0.1:1/"
            urls = ["http://am:9093"]
            resend_delay = "1m"
            "#,
        )
        .expect("parses");
        let errors = config.validate("lookout.toml").expect_err("invalid").errors;
        let text = errors.join("\n");
        for expected in [
            "`notifiers.empty.urls`: list every peer of the Alertmanager cluster",
            "`notifiers.bad.urls`: entry 0 is not an http:// or https:// URL",
            "`notifiers.bad.bearer_token_env`: environment variable `LOOKOUT_TEST_UNSET_TOKEN` is not set",
            "`notifiers.bad.timeout`: must be between 10ms and 5m",
            "`notifiers.bad.resend_delay`: must be between 100ms and 1h",
            "`notifiers.both.basic_auth`: give either `basic_auth` or a bearer token, not both",
            "`notifiers.hook.urls`: only an alertmanager notifier takes `urls`, not a webhook one",
            "`notifiers.hook.resend_delay`: only an alertmanager notifier takes `resend_delay`",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn endpoints_list_each_peers_alerts_url_without_credentials() {
        let config: crate::config::Config = toml::from_str(
            r#"
            [notifiers.am]
            type = "alertmanager"
            urls = ["http://am-1:9093", "https://ops:hunter2@am-2:9093/prefix/"]
            "#,
        )
        .expect("parses");
        let alertmanager = Alertmanager::new("am", &config.notifiers["am"]).expect("builds");
        assert_eq!(
            alertmanager.endpoints(),
            vec![
                "http://am-1:9093/api/v2/alerts".to_string(),
                "https://am-2:9093/prefix/api/v2/alerts".to_string()
            ]
        );
    }
}
