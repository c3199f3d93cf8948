//! Scrape targets on loopback for `[[scrape_configs]]`, and the config that scrapes one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::listen;

/// A target serving `body` on every scrape; returns `host:port`.
pub async fn target(body: &'static str) -> String {
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            ([("content-type", "text/plain; version=0.0.4")], body)
        }),
    );
    listen(router).await
}

/// A target serving whatever `body` holds when scraped (`{n}` becomes the scrape number).
pub async fn scripted_target(body: Arc<Mutex<String>>) -> String {
    let scrapes = Arc::new(AtomicU64::new(0));
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (body, scrapes) = (Arc::clone(&body), Arc::clone(&scrapes));
            async move {
                let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
                let text = body.lock().expect("body").replace("{n}", &n.to_string());
                ([("content-type", "text/plain; version=0.0.4")], text)
            }
        }),
    );
    listen(router).await
}

/// A config scraping `target` every second as job `app`, written into `dir`.
pub fn scrape_config(dir: &std::path::Path, target: &str) -> std::path::PathBuf {
    let config = dir.join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "[[scrape_configs]]\njob_name = \"app\"\nscrape_interval = \"1s\"\n[[scrape_configs.static_configs]]\ntargets = [\"{target}\"]\n"
        ),
    )
    .expect("config");
    config
}
