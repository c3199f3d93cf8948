//! Alertmanager notification latency after the rule tick (issue 17): the real release
//! `lookout serve` with one log rule (`group_by: service`, every 5 s) posting to a real
//! `prometheus-alertmanager` 0.25 (`group_wait: 0s`, one group per service) whose
//! receiver is a webhook recorder in this process. Each round makes `SERVICES` (default
//! 50) new services breach at once; each alert's latency is from its tick (the alert's
//! `startsAt`, the evaluation that fired it) to the recorder receiving its notification.
//!
//! What Alertmanager itself adds is measured the same way without Lookout: `SERVICES`
//! alerts posted straight to `/api/v2/alerts`, from the post to the recorder.
//!
//! `cargo bench --bench alertmanager` (env: `SERVICES`, `ROUNDS` (default 2)).

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::env_or;
use serde_json::{Value, json};

/// Each received alert: its service label, its `startsAt`, when it arrived.
type Arrivals = Arc<Mutex<Vec<(String, DateTime<Utc>, DateTime<Utc>)>>>;

fn percentile(values: &mut [f64], fraction: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 * fraction).ceil() as usize).clamp(1, values.len()) - 1;
    values[index]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn start_alertmanager(dir: &std::path::Path, recorder: &str) -> (Child, String) {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: recorder\n  group_by: [alertname, service]\n  group_wait: 0s\n  group_interval: 1h\n  repeat_interval: 1h\nreceivers:\n  - name: recorder\n    webhook_configs:\n      - url: {recorder}/hook\n        send_resolved: false\n"
        ),
    )
    .expect("alertmanager.yml");
    let web = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am").display()))
        .arg(format!("--web.listen-address={web}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager (apt-get install prometheus-alertmanager)");
    (child, format!("http://{web}"))
}

/// Waits until the recorder holds `count` alerts whose service starts with `prefix`.
async fn wait_for(arrivals: &Arrivals, prefix: &str, count: usize) -> Vec<f64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let latencies: Vec<f64> = arrivals
            .lock()
            .expect("lock")
            .iter()
            .filter(|(service, _, _)| service.starts_with(prefix))
            .map(|(_, from, at)| (*at - *from).num_microseconds().unwrap_or(0) as f64 / 1e6)
            .collect();
        if latencies.len() >= count {
            return latencies;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} notifications for {prefix} within 120 s",
            latencies.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(what: &str, latencies: &mut [f64]) {
    let count = latencies.len();
    let p50 = percentile(latencies, 0.5);
    let p99 = percentile(latencies, 0.99);
    println!("{what}: {count} alerts, p50 {p50:.3} s, p99 {p99:.3} s");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !common::invoked_as_benchmark("alertmanager") {
        return;
    }
    lookout::install_tls_provider();
    let services = env_or("SERVICES", 50) as usize;
    let rounds = env_or("ROUNDS", 2) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let arrivals: Arrivals = Arc::default();
    let sink = arrivals.clone();
    let recorder = common::serve(axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                let now = Utc::now();
                for alert in body["alerts"].as_array().into_iter().flatten() {
                    let service = alert["labels"]["service"].as_str().unwrap_or_default();
                    let starts_at = alert["startsAt"]
                        .as_str()
                        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                        .map(|time| time.with_timezone(&Utc));
                    if let Some(starts_at) = starts_at {
                        sink.lock()
                            .expect("lock")
                            .push((service.to_string(), starts_at, now));
                    }
                }
                "ok"
            }
        }),
    ))
    .await;
    let (mut alertmanager, alertmanager_url) = start_alertmanager(dir.path(), &recorder);
    let client = reqwest::Client::new();
    let ready = format!("{alertmanager_url}/-/ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .get(&ready)
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
    {
        assert!(Instant::now() < deadline, "alertmanager not ready in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // what Alertmanager adds: posted straight to it, with startsAt = the post
    let mut direct = Vec::new();
    for round in 0..rounds {
        let posted = Utc::now();
        let alerts: Vec<Value> = (0..services)
            .map(|number| {
                json!({
                    "labels": {"alertname": "direct", "service": format!("direct{round}-{number}")},
                    "startsAt": posted.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                })
            })
            .collect();
        let response = client
            .post(format!("{alertmanager_url}/api/v2/alerts"))
            .json(&alerts)
            .send()
            .await
            .expect("post to alertmanager");
        assert!(response.status().is_success(), "{}", response.status());
        direct.extend(wait_for(&arrivals, &format!("direct{round}-"), services).await);
    }

    // Lookout → Alertmanager → receiver
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::write(
        queries.join("breach.json"),
        json!({
            "version": 1,
            "schedule": "*/5 * * * * *",
            "index": "logs",
            "query": "status:500",
            "window": "5s",
            "group_by": ["service"],
            "threshold": {"op": ">", "value": 0},
            "severity": "critical",
            "summary": "errors on {{ $labels.service }}"
        })
        .to_string(),
    )
    .expect("rule");
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "[notifiers.am]\ntype = \"alertmanager\"\nurls = [\"{alertmanager_url}\"]\n[routing]\ndefault = [\"am\"]\n"
        ),
    )
    .expect("config");
    let (mut lookout, base) = common::start_lookout(
        &dir.path().join("data"),
        &queries,
        &config,
        Stdio::inherit(),
    );
    let mut through_lookout = Vec::new();
    for round in 0..rounds {
        // clear of the tick, so all services breach within one window
        let into_period = Utc::now().timestamp_millis().rem_euclid(5000) as u64;
        if into_period > 3500 {
            tokio::time::sleep(Duration::from_millis(5000 - into_period + 100)).await;
        }
        let now = Utc::now().to_rfc3339();
        let mut body = String::new();
        for number in 0..services {
            body.push_str("{\"index\":{\"_index\":\"logs\"}}\n");
            body.push_str(
                &json!({"@timestamp": now, "status": 500, "service": format!("lookout{round}-{number}")})
                    .to_string(),
            );
            body.push('\n');
        }
        let response = client
            .post(format!("{base}/_bulk"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("bulk");
        assert!(response.status().is_success(), "{}", response.status());
        through_lookout.extend(wait_for(&arrivals, &format!("lookout{round}-"), services).await);
    }
    let mut by_what: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    by_what.insert("posted straight to Alertmanager → receiver", direct);
    by_what.insert(
        "rule tick → Lookout → Alertmanager → receiver",
        through_lookout,
    );
    for (what, latencies) in &mut by_what {
        report(what, latencies);
    }
    let _ = lookout.kill();
    let _ = alertmanager.kill();
}
