//! Headless Chromium for the browser tests (Debian's `chromium` and `chromium-driver`;
//! `scripts/test` installs them), driven over WebDriver on loopback, and the steps the
//! UI tests share (waiting for text, signing in with a key).

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::wait_until;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free loopback port, stopped when dropped.
pub struct Driver {
    child: std::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn driver() -> Driver {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "the browser test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver (scripts/test does)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let child = std::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let status = format!("{}/status", driver.url);
    wait_until("chromedriver ready", 30, || async {
        client
            .get(&status)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    })
    .await;
    driver
}

pub async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            // as root Chromium needs --no-sandbox; the rest keeps it off the network
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1300,900",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Polls until `css` matches at least `count` elements whose text contains `text`.
pub async fn wait_for(client: &Client, css: &str, text: &str, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut texts = Vec::new();
        for element in client.find_all(Locator::Css(css)).await.unwrap_or_default() {
            texts.push(element.text().await.unwrap_or_default());
        }
        let matching = texts.iter().filter(|found| found.contains(text)).count();
        if matching >= count {
            return texts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{count} × `{css}` containing {text:?}: found {texts:?} in\n{}",
            client.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs in through the UI's key form with `token` (the form must be showing).
pub async fn sign_in(client: &Client, token: &str) {
    wait_for(client, "#key-form", "API key", 1).await;
    let input = client.find(Locator::Id("key")).await.expect("key input");
    input.clear().await.expect("clear");
    input.send_keys(token).await.expect("type the key");
    client
        .find(Locator::Css("#key-form button[type=submit]"))
        .await
        .expect("sign in button")
        .click()
        .await
        .expect("click");
}
