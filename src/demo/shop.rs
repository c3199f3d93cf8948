//! A small simulated shop (checkout, cart, search): it writes one JSON log line per
//! request to `<dir>/<service>.json` and counts the same requests as Prometheus metrics
//! (`http_requests_total`, `http_request_duration_seconds`), so logs and metrics tell
//! one story. Every `period` an incident starts: for `incident` the checkout answers
//! 5xx to a third of its requests, slower and slower.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// The shop's services: name, requests per second, typical latency (s), paths.
const SERVICES: &[(&str, f64, f64, &[&str])] = &[
    (
        "checkout",
        6.0,
        0.12,
        &["/api/checkout", "/api/checkout/confirm"],
    ),
    ("cart", 9.0, 0.03, &["/api/cart", "/api/cart/items"]),
    (
        "search",
        14.0,
        0.05,
        &["/api/search", "/api/search/suggest"],
    ),
];

/// Upper bounds of the latency histogram's buckets (seconds).
const BUCKETS: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// When incidents happen.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub first: Duration,
    pub period: Duration,
    pub incident: Duration,
}

impl Timeline {
    /// How far into an incident `elapsed` is, if one is on.
    pub fn incident_at(&self, elapsed: Duration) -> Option<Duration> {
        let since_first = elapsed.checked_sub(self.first)?;
        let into =
            Duration::from_nanos((since_first.as_nanos() % self.period.as_nanos().max(1)) as u64);
        (into < self.incident).then_some(into)
    }
}

#[derive(Default)]
struct Metrics {
    /// (service, method, status) → requests
    requests: BTreeMap<(String, &'static str, u16), u64>,
    /// service → (bucket counts, sum, count)
    durations: BTreeMap<String, (Vec<u64>, f64, u64)>,
}

/// The shop: its metrics and where it logs.
pub struct Shop {
    metrics: Mutex<Metrics>,
    pub log_dir: PathBuf,
    pub timeline: Timeline,
    started: Instant,
}

impl Shop {
    pub fn new(log_dir: &Path, timeline: Timeline) -> std::io::Result<Arc<Shop>> {
        std::fs::create_dir_all(log_dir)?;
        Ok(Arc::new(Shop {
            metrics: Mutex::default(),
            log_dir: log_dir.to_path_buf(),
            timeline,
            started: Instant::now(),
        }))
    }

    /// The metrics in Prometheus' text format.
    pub fn exposition(&self) -> String {
        let metrics = self
            .metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::from(
            "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n",
        );
        for ((service, method, status), count) in &metrics.requests {
            out.push_str(&format!(
                "http_requests_total{{service=\"{service}\",method=\"{method}\",status_code=\"{status}\"}} {count}\n"
            ));
        }
        out.push_str("# HELP http_request_duration_seconds Request latency.\n# TYPE http_request_duration_seconds histogram\n");
        for (service, (buckets, sum, count)) in &metrics.durations {
            for (bound, bucket) in BUCKETS.iter().zip(buckets) {
                out.push_str(&format!(
                    "http_request_duration_seconds_bucket{{service=\"{service}\",le=\"{bound}\"}} {bucket}\n"
                ));
            }
            out.push_str(&format!(
                "http_request_duration_seconds_bucket{{service=\"{service}\",le=\"+Inf\"}} {count}\nhttp_request_duration_seconds_sum{{service=\"{service}\"}} {sum}\nhttp_request_duration_seconds_count{{service=\"{service}\"}} {count}\n"
            ));
        }
        out
    }

    /// Serves requests until `cancel`: every 100 ms each service handles its share,
    /// logging a line and counting it. `on_incident` hears when incidents start and end.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken, on_incident: impl Fn(bool)) {
        let mut files = BTreeMap::new();
        for (service, ..) in SERVICES {
            let path = self.log_dir.join(format!("{service}.json"));
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                Ok(file) => {
                    files.insert(*service, std::io::BufWriter::new(file));
                }
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "demo: cannot write logs");
                    return;
                }
            }
        }
        let mut owed = [0.0f64; 3];
        let mut in_incident = false;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => break,
            }
            let incident = self.timeline.incident_at(self.started.elapsed());
            if incident.is_some() != in_incident {
                in_incident = incident.is_some();
                on_incident(in_incident);
            }
            for (number, (service, rate, latency, paths)) in SERVICES.iter().enumerate() {
                owed[number] += rate * 0.1;
                while owed[number] >= 1.0 {
                    owed[number] -= 1.0;
                    let line = self.request(service, *latency, paths, incident);
                    if let Some(file) = files.get_mut(service) {
                        let _ = writeln!(file, "{line}");
                    }
                }
            }
            for file in files.values_mut() {
                let _ = file.flush();
            }
        }
    }

    /// One request: its log line, and its count in the metrics.
    fn request(
        &self,
        service: &str,
        latency: f64,
        paths: &[&str],
        incident: Option<Duration>,
    ) -> serde_json::Value {
        let failing = service == "checkout" && incident.is_some();
        // latency: lognormal-ish around the typical value; during an incident the
        // checkout slows down the longer it lasts
        let jitter = (fastrand::f64() * 2.0 - 1.0) * 0.5;
        let mut seconds = latency * (1.0 + jitter).max(0.2);
        if let (true, Some(into)) = (failing, incident) {
            seconds = 0.6 + into.as_secs_f64().min(10.0) * 0.15 + fastrand::f64() * 0.5;
        }
        let status: u16 = if failing && fastrand::f64() < 0.35 {
            [500, 502, 503][fastrand::usize(0..3)]
        } else if service == "search" && fastrand::f64() < 0.02 {
            404
        } else {
            200
        };
        let method = if service == "search" { "GET" } else { "POST" };
        let path = paths[fastrand::usize(0..paths.len())];
        {
            let mut metrics = self
                .metrics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *metrics
                .requests
                .entry((service.to_string(), method, status))
                .or_default() += 1;
            let (buckets, sum, count) = metrics
                .durations
                .entry(service.to_string())
                .or_insert_with(|| (vec![0; BUCKETS.len()], 0.0, 0));
            for (bound, bucket) in BUCKETS.iter().zip(buckets.iter_mut()) {
                if seconds <= *bound {
                    *bucket += 1;
                }
            }
            *sum += seconds;
            *count += 1;
        }
        let message = match status {
            500 => "payment gateway timeout after retries".to_string(),
            502 => "upstream payments-api returned an invalid response".to_string(),
            503 => "payments-api unavailable, circuit breaker open".to_string(),
            404 => format!("no results page for {path}"),
            _ => format!("{method} {path} served"),
        };
        serde_json::json!({
            "@timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "level": if status >= 500 { "error" } else { "info" },
            "service": service,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": (seconds * 1000.0).round(),
            "trace_id": format!("{:016x}", fastrand::u64(..)),
            "message": message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incidents_come_every_period_and_last_their_length() {
        let timeline = Timeline {
            first: Duration::from_secs(60),
            period: Duration::from_secs(300),
            incident: Duration::from_secs(90),
        };
        assert_eq!(timeline.incident_at(Duration::from_secs(59)), None);
        assert_eq!(
            timeline.incident_at(Duration::from_secs(61)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(timeline.incident_at(Duration::from_secs(151)), None);
        assert!(timeline.incident_at(Duration::from_secs(365)).is_some());
    }

    #[test]
    fn logs_and_metrics_count_the_same_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shop = Shop::new(
            dir.path(),
            Timeline {
                first: Duration::ZERO,
                period: Duration::from_secs(10),
                incident: Duration::from_secs(10),
            },
        )
        .expect("shop");
        let lines: Vec<serde_json::Value> = (0..200)
            .map(|_| {
                shop.request(
                    "checkout",
                    0.1,
                    &["/api/checkout"],
                    Some(Duration::from_secs(3)),
                )
            })
            .collect();
        let failures = lines
            .iter()
            .filter(|line| line["status"].as_u64() >= Some(500))
            .count();
        assert!(failures > 20 && failures < 150, "{failures} of 200 fail");
        let exposition = shop.exposition();
        let counted: u64 = exposition
            .lines()
            .filter(|line| line.starts_with("http_requests_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(counted, 200);
        assert!(
            exposition.contains("http_request_duration_seconds_count{service=\"checkout\"} 200")
        );
        // the exposition is valid text format
        crate::scrape::exposition::parse(&exposition, crate::scrape::exposition::Format::Text)
            .expect("valid exposition");
    }
}
