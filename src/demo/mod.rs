//! `lookout demo`: Lookout on a simulated shop, with no config. The shop ([`shop`])
//! writes JSON logs to files and serves Prometheus metrics on a loopback port; a real
//! `lookout serve` tails the files through its in-process agent (the exactly-once agent
//! protocol over loopback) and scrapes the metrics, and runs demo rules built into the
//! binary (written to the demo's own directory, never to `queries/`): a log rule with
//! metric context, a PromQL latency rule, a mixed log/metric ratio and an availability
//! SLO (shown on the UI's SLO page; it pages only at real-time speed). Every few
//! minutes an incident (checkout 5xx spike with rising latency) fires the alerts and
//! resolves them: to the console, and to Slack when `SLACK_WEBHOOK_URL` is set.
//! `--speed N` runs every schedule N times faster (tests use it).

pub mod shop;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// The demo rules: name and JSON with `@SCHEDULE@`, `@WINDOW@`, `@RANGE@`, `@FOR@`,
/// `@THRESHOLD@` and `@SLO_PAGE@` to fill in for the speed.
const RULES: &[(&str, &str)] = &[
    (
        "checkout_errors",
        include_str!("rules/checkout_errors.json"),
    ),
    (
        "checkout_latency",
        include_str!("rules/checkout_latency.json"),
    ),
    (
        "checkout_error_ratio",
        include_str!("rules/checkout_error_ratio.json"),
    ),
    (
        "checkout_availability",
        include_str!("rules/checkout_availability.json"),
    ),
];

pub struct DemoOptions {
    pub listen: SocketAddr,
    /// Where the demo keeps its data (default: a temporary directory, removed at exit).
    pub data_dir: Option<PathBuf>,
    /// How many times faster than real time the schedules run (1 = incidents every 5 min).
    pub speed: f64,
    /// Stop after this many alerts have fired and resolved (0: run until Ctrl-C).
    pub cycles: usize,
}

/// The demo's timings at `speed`.
struct Pace {
    schedule: String,
    window: Duration,
    range: Duration,
    for_duration: Duration,
    scrape_interval: Duration,
    threshold: u64,
    /// The SLO's page conditions: an SLO counts whole minutes, so it pages on the
    /// 90-second incidents only in real time (35 % of checkout failing for a minute and
    /// ≥ 7 % over five, against a 1 % budget); faster, it is charted but never pages
    /// (its windows could not follow the incidents, and the page would never resolve).
    slo_page: &'static str,
    timeline: shop::Timeline,
}

impl Pace {
    fn new(speed: f64) -> Pace {
        let scaled = |seconds: f64, floor: f64| {
            Duration::from_secs_f64((seconds / speed).max(floor))
                .as_secs()
                .max(1)
        };
        let tick = scaled(15.0, 1.0);
        let schedule = if tick == 1 {
            "* * * * * *".to_string()
        } else {
            format!("*/{tick} * * * * *")
        };
        let window = Duration::from_secs(scaled(60.0, 3.0));
        Pace {
            schedule,
            window,
            range: Duration::from_secs(scaled(60.0, 4.0)),
            for_duration: Duration::from_secs(scaled(30.0, 1.0)),
            scrape_interval: Duration::from_secs(scaled(15.0, 1.0)),
            // a third of ~6 checkout requests a second fail during an incident
            threshold: (window.as_secs() / 2).max(2),
            slo_page: if speed <= 1.0 {
                r#"[{"long_window": "5m", "short_window": "1m", "burn_rate": 4}]"#
            } else {
                "[]"
            },
            timeline: shop::Timeline {
                first: Duration::from_secs_f64(60.0 / speed),
                period: Duration::from_secs_f64(300.0 / speed),
                incident: Duration::from_secs_f64(90.0 / speed),
            },
        }
    }

    fn rule(&self, template: &str) -> String {
        let seconds = |duration: Duration| format!("{}s", duration.as_secs());
        template
            .replace("@SCHEDULE@", &self.schedule)
            .replace("@WINDOW@", &seconds(self.window))
            .replace("@RANGE@", &seconds(self.range))
            .replace("@FOR@", &seconds(self.for_duration))
            .replace("@THRESHOLD@", &self.threshold.to_string())
            .replace("@SLO_PAGE@", self.slo_page)
    }
}

/// Runs the demo until Ctrl-C (or `cycles` fire → resolve cycles).
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let speed = if options.speed.is_finite() && options.speed > 0.0 {
        options.speed
    } else {
        anyhow::bail!("--speed must be a positive number, e.g. 10");
    };
    let temporary;
    let dir: &Path = match &options.data_dir {
        Some(dir) => dir,
        None => {
            temporary = tempfile::Builder::new()
                .prefix("lookout-demo-")
                .tempdir()
                .context("creating the demo directory")?;
            temporary.path()
        }
    };
    let pace = Pace::new(speed);
    let queries = dir.join("demo-rules");
    std::fs::create_dir_all(&queries).context("creating the demo rules directory")?;
    for (name, template) in RULES {
        crate::atomic_file::write(
            &queries.join(format!("{name}.json")),
            pace.rule(template).as_bytes(),
        )
        .with_context(|| format!("writing the demo rule {name}"))?;
    }
    let shop = shop::Shop::new(&dir.join("shop-logs"), pace.timeline)
        .context("creating the shop's log directory")?;
    let metrics = {
        let shop = Arc::clone(&shop);
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let shop = Arc::clone(&shop);
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        shop.exposition(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the shop's metrics port")?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    };
    // the server's address, known before it starts so the banner can name it
    let listen = {
        let probe = std::net::TcpListener::bind(options.listen)
            .with_context(|| format!("cannot listen on {}", options.listen))?;
        probe.local_addr()?
    };
    let config_path = dir.join("lookout.toml");
    let config_text = format!(
        "listen = \"{listen}\"\ndata_dir = {data:?}\nqueries_dir = {queries:?}\n\n[[agent.inputs]]\npaths = [{logs:?}]\n\n[agent]\nbatch_linger = \"200ms\"\n\n[[scrape_configs]]\njob_name = \"shop\"\nscrape_interval = \"{scrape}s\"\nscrape_timeout = \"{scrape}s\"\n[[scrape_configs.static_configs]]\ntargets = [\"{metrics}\"]\n\n# Lookout itself, for contrib/grafana's health dashboard\n[[scrape_configs]]\njob_name = \"lookout\"\nscrape_interval = \"{scrape}s\"\nscrape_timeout = \"{scrape}s\"\n[[scrape_configs.static_configs]]\ntargets = [\"{listen}\"]\n",
        data = dir.join("data").display().to_string(),
        queries = queries.display().to_string(),
        logs = dir.join("shop-logs/*.json").display().to_string(),
        scrape = pace.scrape_interval.as_secs(),
    );
    // alerts print here, and go to Slack too when SLACK_WEBHOOK_URL is set
    let slack = std::env::var("SLACK_WEBHOOK_URL").is_ok_and(|url| !url.is_empty());
    let routing = if slack {
        "[routing]\ndefault = [\"console\", \"slack\"]\n"
    } else {
        "[routing]\ndefault = [\"console\"]\n"
    };
    std::fs::write(&config_path, format!("{config_text}\n{routing}"))
        .context("writing the demo config")?;
    let config =
        crate::config::Config::load(&config_path).map_err(|error| anyhow::anyhow!("{error}"))?;
    let base = format!("http://{listen}");
    print_banner(&base, &metrics, dir, &pace, (speed, slack));

    let shutdown = CancellationToken::new();
    let shop_task = tokio::spawn(Arc::clone(&shop).run(shutdown.clone(), |on| {
        if on {
            println!("demo: incident: checkout starts failing (5xx spike, rising latency)");
        } else {
            println!("demo: incident over: checkout recovers");
        }
    }));
    if options.cycles > 0 {
        tokio::spawn(stop_after_cycles(
            base.clone(),
            options.cycles,
            shutdown.clone(),
        ));
    }
    let served = crate::app::serve(config, shutdown.clone()).await;
    shutdown.cancel();
    let _ = shop_task.await;
    served
}

fn print_banner(
    base: &str,
    metrics: &SocketAddr,
    dir: &Path,
    pace: &Pace,
    (speed, slack): (f64, bool),
) {
    let search = format!(
        "{base}/ui/search?index=logs&q={}&from=now-15m&to=now",
        "service%3Acheckout%20AND%20status%3A%5B500%20TO%20599%5D"
    );
    println!(
        "Lookout demo{}: a small shop (checkout, cart, search)
  logs      {logs}/*.json, shipped by the agent
  metrics   http://{metrics}/metrics, scraped every {scrape}s
  rules     {rules} (built in; `lookout serve` never loads them)
  incidents every {period}s, lasting {incident}s: checkout 5xx spike with rising latency

What to look at:
  UI             {base}/ui/
  the incident   {search}
  the SLO        {base}/ui/slos (checkout: 99 % not 5xx over a day{slo_pages})
  alerts         curl -s {base}/api/v1/alerts
  log counts     curl -s '{base}/api/v1/query?query=log_matches'
  logs ⋈ metrics curl -s '{base}/api/v1/query?query=log_matches%7Bquery%3D%22checkout_errors%22%7D%20%2F%20on(service)%20sum%20by%20(service)%20(increase(http_requests_total%5B{window}s%5D))'
  search         curl -s '{base}/logs/_search?q=status:503&size=3'
Alerts print here{slack}. Ctrl-C stops the demo.",
        if speed == 1.0 {
            String::new()
        } else {
            format!(" at {speed}× speed")
        },
        logs = dir.join("shop-logs").display(),
        scrape = pace.scrape_interval.as_secs(),
        rules = dir.join("demo-rules").display(),
        period = pace.timeline.period.as_secs(),
        incident = pace.timeline.incident.as_secs(),
        window = pace.window.as_secs(),
        slo_pages = if pace.slo_page == "[]" {
            "; it pages at real-time speed only"
        } else {
            ", pages when an incident burns it 4× too fast"
        },
        slack = if slack {
            " and go to Slack (SLACK_WEBHOOK_URL is set)"
        } else {
            " (set SLACK_WEBHOOK_URL to send them to Slack too)"
        },
    );
}

/// Stops the demo once `cycles` alerts of `checkout_errors` have fired and resolved and
/// no alert of any rule is still active (so the last incident's resolves are all sent;
/// the shutdown lets their deliveries finish).
async fn stop_after_cycles(base: String, cycles: usize, shutdown: CancellationToken) {
    let client = reqwest::Client::new();
    let url = format!("{base}/_lookout/alerts/history?rule=checkout_errors&size=1000");
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = shutdown.cancelled() => return,
        }
        let Ok(response) = client.get(&url).send().await else {
            continue;
        };
        let Ok(body) = response.json::<serde_json::Value>().await else {
            continue;
        };
        let resolved = body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|event| event["type"] == "transition" && event["to"] == "resolved")
            .count();
        if resolved < cycles {
            continue;
        }
        let quiet = match client.get(format!("{base}/api/v1/alerts")).send().await {
            Ok(response) => response
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|body| body["data"]["alerts"].as_array().is_some_and(Vec::is_empty)),
            Err(_) => false,
        };
        if quiet {
            println!(
                "demo: {resolved} fire → resolve cycle(s) seen and every alert resolved; stopping"
            );
            shutdown.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_rules_load_at_every_speed() {
        for speed in [1.0, 4.0, 20.0, 100.0] {
            let pace = Pace::new(speed);
            for (name, template) in RULES {
                crate::rules::rule::LoadedRule::parse(&pace.rule(template), name, name)
                    .unwrap_or_else(|error| panic!("speed {speed}: {error}"));
            }
        }
        assert_eq!(Pace::new(1.0).schedule, "*/15 * * * * *");
        assert_eq!(Pace::new(20.0).schedule, "* * * * * *");
    }
}
