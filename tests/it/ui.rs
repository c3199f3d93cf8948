//! The web UI in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`; `scripts/test` installs them) driven over WebDriver against a real
//! `lookout serve` with ingested logs, a firing alert and scraped metrics. Screenshots of
//! each page are saved to `target/tmp/ui-screenshots/`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::support::browser::{browser, driver, sign_in, wait_for};
use crate::support::rules::serve_rules_with_config;
use crate::support::scrape::{scrape_config, scripted_target};
use crate::support::{Server, bulk_body, wait_until};

/// Polls until an element matching `css` has the `value` attribute `value`.
async fn wait_for_value(client: &Client, css: &str, value: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut values = Vec::new();
        for element in client.find_all(Locator::Css(css)).await.unwrap_or_default() {
            values.push(
                element
                    .attr("value")
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
            );
        }
        if values.iter().any(|found| found == value) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `{css}` with value {value:?}: {values:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(client: &Client, css: &str) -> usize {
    client
        .find_all(Locator::Css(css))
        .await
        .map_or(0, |found| found.len())
}

async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

// the scrape target runs in this process while the browser works
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_alerts_and_a_promql_chart_work_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = scripted_target(Arc::new(Mutex::new(
        "# TYPE http_requests_total counter\nhttp_requests_total{service=\"checkout\"} {n}0\nhttp_requests_total{service=\"cart\"} {n}\n"
            .to_string(),
    )))
    .await;
    // a second Lookout, with a metric only it scrapes: the metrics page's other data source
    let edge_target = scripted_target(Arc::new(Mutex::new(
        "# TYPE edge_queue_depth gauge\nedge_queue_depth{queue=\"mail\"} 7\n".to_string(),
    )))
    .await;
    let edge_dir = dir.path().join("edge");
    std::fs::create_dir_all(&edge_dir).expect("mkdir");
    let edge_config = scrape_config(&edge_dir, &edge_target);
    let edge = Server::start(
        &edge_dir.join("data"),
        &["--config", edge_config.to_str().expect("utf-8")],
    );
    let config = scrape_config(dir.path(), &target);
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "\n[datasources.edge]\ntype = \"prometheus\"\nurl = \"{}\"\n",
        edge.base
    ));
    std::fs::write(&config, text).expect("config");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::write(
        queries.join("checkout_5xx.json"),
        json!({"version": 1, "schedule": "*/2 * * * * *", "query": "status:500 AND service:checkout",
               "window": "1h", "group_by": ["service"], "threshold": {"op": ">", "value": 5},
               "severity": "critical", "summary": "{{ $count }} HTTP 500s on {{ $labels.service }}",
               "notify": ["ui"]})
        .to_string(),
    )
    .expect("rule");
    let server = serve_rules_with_config(dir.path(), &queries, &config, "");
    let now = chrono::Utc::now();
    let mut docs: Vec<serde_json::Value> = (0..12)
        .map(|n| json!({"@timestamp": (now - chrono::Duration::seconds(60 * n)).to_rfc3339(),
                        "service": "checkout", "status": 500, "message": format!("payment timeout {n}")}))
        .collect();
    docs.extend((0..18).map(|n| json!({"@timestamp": (now - chrono::Duration::seconds(30 * n)).to_rfc3339(),
                                        "service": "cart", "status": 200, "message": format!("cart updated {n}")})));
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("logs", &docs))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    // a second index, as `lookout ship --index app` makes: the search page finds it too
    let billing: Vec<serde_json::Value> = (0..3)
        .map(|n| json!({"@timestamp": (now - chrono::Duration::seconds(45 * n)).to_rfc3339(),
                        "service": "billing", "status": 500, "message": format!("invoice failed {n}")}))
        .collect();
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("app", &billing))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    wait_until("the alert fires", 30, || async {
        let (_, body) = server.get("/api/v1/alerts").await;
        body["data"]["alerts"]
            .as_array()
            .is_some_and(|alerts| alerts.iter().any(|alert| alert["state"] == "firing"))
    })
    .await;
    wait_until("the counter is scraped", 30, || async {
        let (_, body) = server
            .get("/api/v1/query?query=rate(http_requests_total%5B1m%5D)")
            .await;
        body["data"]["result"]
            .as_array()
            .is_some_and(|result| result.len() == 2)
    })
    .await;

    let driver = driver().await;
    let client = browser(&driver, &dir.path().join("chromium")).await;
    // the search URL of a Slack message: rows and a histogram
    client
        .goto(&server.url("/ui/search?index=logs&q=status:500&from=now-1h&to=now"))
        .await
        .expect("open search");
    wait_for(&client, "#summary", "12 matching log lines", 1).await;
    let rows = wait_for(&client, "#hits tr.doc", "payment timeout", 12).await;
    assert_eq!(rows.len(), 12, "{rows:?}");
    assert!(
        count(&client, "svg.histogram rect.bar").await >= 1,
        "histogram bars"
    );
    // how fast it loads, for the record (not asserted: shared machines are noisy)
    let timing = client
        .execute(
            "const n = performance.getEntriesByType('navigation')[0]; return [n.domContentLoadedEventEnd, performance.now(), n.transferSize];",
            vec![],
        )
        .await
        .expect("navigation timing");
    println!(
        "ui: search page DOMContentLoaded at {} ms, rows shown by {} ms (page shell {} B)",
        timing[0], timing[1], timing[2]
    );
    assert!(
        wait_for(&client, "#fields", "service", 1).await[0].contains("checkout"),
        "the field sidebar lists top values"
    );
    screenshot(&client, "search").await;
    // absolute times: calendar pickers prefilled with the range
    client
        .find(Locator::XPath("//button[text()='Absolute…']"))
        .await
        .expect("absolute toggle")
        .click()
        .await
        .expect("click");
    let picked = client
        .find(Locator::Css("input[aria-label='From (absolute)']"))
        .await
        .expect("from picker")
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default();
    let year = chrono::Local::now().format("%Y").to_string();
    assert!(
        picked.starts_with(&year),
        "prefilled with the range's start: {picked:?}"
    );
    // expand a row: the whole document
    client
        .find(Locator::Css("#hits tr.doc"))
        .await
        .expect("a row")
        .click()
        .await
        .expect("click");
    wait_for(&client, "#hits tr.detail pre", "\"status\": 500", 1).await;
    // and by keyboard: Enter on a focused row opens it too
    let rows = client
        .find_all(Locator::Css("#hits tr.doc"))
        .await
        .expect("rows");
    rows[1].send_keys("\u{E007}").await.expect("Enter");
    let opened = client
        .find_all(Locator::Css("#hits tr.detail:not([hidden])"))
        .await
        .expect("details")
        .len();
    assert_eq!(opened, 2, "the clicked row and the one opened with Enter");
    // type a new query: the results change, and the URL is the state
    let query = client.find(Locator::Id("q")).await.expect("query bar");
    query.clear().await.expect("clear");
    query.send_keys("service:cart\u{E007}").await.expect("type");
    wait_for(&client, "#summary", "18 matching log lines", 1).await;
    let rows = wait_for(&client, "#hits tr.doc", "cart updated", 18).await;
    assert_eq!(rows.len(), 18);
    let url = client.current_url().await.expect("url");
    assert!(url.as_str().contains("q=service%3Acart"), "{url}");
    // a bad query is shown inline at its position
    let query = client.find(Locator::Id("q")).await.expect("query bar");
    query.clear().await.expect("clear");
    query.send_keys("status:(500\u{E007}").await.expect("type");
    let error = wait_for(&client, "div.error", "column", 1).await;
    assert!(
        error[0].contains('^'),
        "a caret under the position: {error:?}"
    );
    screenshot(&client, "search-error").await;
    // a range with nothing: a helpful empty state
    client
        .goto(&server.url("/ui/search?index=logs&q=status:404&from=now-1h&to=now"))
        .await
        .expect("open search");
    wait_for(&client, "#results", "No logs in this range — widen it", 1).await;

    // no index in the URL: every index but the hidden ones, as Elasticsearch's `_search`
    client
        .goto(&server.url("/ui/search?q=status:500&from=now-1h&to=now"))
        .await
        .expect("open search");
    wait_for(&client, "#summary", "15 matching log lines", 1).await;
    wait_for(&client, "#hits tr.doc", "invoice failed", 3).await;
    wait_for_value(&client, "#index", "*").await;
    // the index box offers every index the server has
    for name in ["*", "logs", "app"] {
        wait_for_value(&client, "#index-names option", name).await;
    }
    screenshot(&client, "search-every-index").await;
    // an index without the lines: the empty state offers every index
    client
        .goto(&server.url("/ui/search?index=app&q=service:checkout&from=now-1h&to=now"))
        .await
        .expect("open search");
    wait_for(&client, "#results", "or check the query and the index", 1).await;
    client
        .find(Locator::XPath("//button[text()='search every index']"))
        .await
        .expect("every-index button")
        .click()
        .await
        .expect("click");
    wait_for(&client, "#summary", "12 matching log lines", 1).await;
    let url = client.current_url().await.expect("url");
    assert!(url.as_str().contains("index=*"), "{url}");

    // the alerts page shows the firing alert
    client
        .goto(&server.url("/ui/alerts"))
        .await
        .expect("open alerts");
    let alerts = wait_for(&client, "tr.alert", "checkout_5xx", 1).await;
    assert!(alerts[0].contains("firing"), "{alerts:?}");
    assert!(alerts[0].contains("12 HTTP 500s on checkout"), "{alerts:?}");
    wait_for(&client, "#history", "inactive →", 1).await;
    screenshot(&client, "alerts").await;

    // the rules page: health, and a dry run
    client
        .goto(&server.url("/ui/rules"))
        .await
        .expect("open rules");
    wait_for(&client, "#rules", "checkout_5xx", 1).await;
    client
        .find(Locator::XPath("//button[text()='Dry run']"))
        .await
        .expect("dry run button")
        .click()
        .await
        .expect("click");
    wait_for(&client, "#rules", "Would become", 1).await;
    screenshot(&client, "rules").await;

    // a PromQL chart: one line per series, with a legend
    client
        .goto(&server.url("/ui/metrics?expr=rate(http_requests_total%5B1m%5D)&from=now-5m&to=now"))
        .await
        .expect("open metrics");
    let legend = wait_for(&client, "#output > div .legend", "service=\"checkout\"", 1).await;
    assert!(legend[0].contains("service=\"cart\""), "{legend:?}");
    assert_eq!(
        count(&client, "#output > div svg.chart path").await,
        2,
        "two lines"
    );
    // and the log counts beside them
    wait_for(&client, "#log-counts .legend", "query=\"checkout_5xx\"", 1).await;
    screenshot(&client, "metrics").await;
    // completion: metric names, then a label's values
    let expr = client
        .find(Locator::Id("expr"))
        .await
        .expect("expression input");
    expr.clear().await.expect("clear");
    expr.send_keys("http_req").await.expect("type");
    wait_for_value(&client, "#metric-names option", "http_requests_total").await;
    expr.send_keys("uests_total{service=\"")
        .await
        .expect("type");
    wait_for_value(
        &client,
        "#metric-names option",
        "http_requests_total{service=\"checkout\"",
    )
    .await;
    // the other data source's metrics, queried through this server, beside this one's logs
    wait_until("the edge scrapes its gauge", 30, || async {
        let (_, body) = edge.get("/api/v1/query?query=edge_queue_depth").await;
        body["data"]["result"]
            .as_array()
            .is_some_and(|result| result.len() == 1)
    })
    .await;
    client
        .goto(&server.url("/ui/metrics?expr=edge_queue_depth&from=now-5m&to=now"))
        .await
        .expect("open metrics");
    wait_for(&client, "#output", "No data in this range", 1).await;
    let source = client
        .wait()
        .for_element(Locator::Css("#source option[value=edge]"))
        .await
        .expect("the data source list names edge");
    source.click().await.expect("choose edge");
    client
        .find(Locator::Css("form.bar button[type=submit]"))
        .await
        .expect("run")
        .click()
        .await
        .expect("click run");
    wait_for(&client, "#output > div .legend", "queue=\"mail\"", 1).await;
    assert!(
        client
            .current_url()
            .await
            .expect("url")
            .as_str()
            .contains("source=edge"),
        "the chosen source is in the link"
    );
    screenshot(&client, "metrics-datasource").await;
    // log counts beside the metrics
    client
        .goto(&server.url(
            "/ui/metrics?expr=log_matches%7Bquery%3D%22checkout_5xx%22%7D&from=now-30m&to=now",
        ))
        .await
        .expect("open metrics");
    wait_for(&client, ".legend", "query=\"checkout_5xx\"", 1).await;
    screenshot(&client, "log-matches").await;

    client
        .goto(&server.url("/ui/targets"))
        .await
        .expect("open targets");
    wait_for(&client, "#targets", "up", 1).await;
    screenshot(&client, "targets").await;
    client.close().await.expect("close the browser");
}

async fn dry_run_buttons(client: &Client) -> usize {
    client
        .find_all(Locator::XPath("//button[text()='Dry run']"))
        .await
        .map_or(0, |found| found.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_asks_for_a_key_and_shows_only_what_the_key_may_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = String::new();
    for role in ["read", "edit", "admin"] {
        config.push_str(&crate::support::access::key_table(
            &format!("ui-{role}"),
            role,
            "",
            &format!("ui-token-{role}"),
        ));
    }
    let server = crate::support::access::serve_with_config(dir.path(), &config);
    let response = server
        .client
        .put(server.url("/_lookout/rules/ui_rule"))
        .bearer_auth("ui-token-edit")
        .json(
            &json!({"version": 1, "schedule": "0 0 0 1 1 *", "index": "logs",
                      "query": "status:500", "window": "1h",
                      "threshold": {"op": ">", "value": 1}, "severity": "warning",
                      "summary": "{{ $count }} errors"}),
        )
        .send()
        .await
        .expect("put rule");
    assert_eq!(response.status(), 201);

    let driver = driver().await;
    let client = browser(&driver, &dir.path().join("chromium")).await;
    client
        .goto(&server.url("/ui/rules"))
        .await
        .expect("open rules");
    // the page's files load without a key, and the UI asks for one (no browser prompt)
    sign_in(&client, "not-a-key").await;
    wait_for(&client, "#main .error", "not valid", 1).await;
    sign_in(&client, "ui-token-read").await;
    wait_for(&client, "#rules", "ui_rule", 1).await;
    wait_for(&client, "#who", "ui-read (read)", 1).await;
    wait_for(&client, "#tenant", "default", 1).await;
    assert_eq!(
        dry_run_buttons(&client).await,
        0,
        "a read key edits nothing"
    );
    assert_eq!(
        count(&client, "nav a[data-page='audit']:not([hidden])").await,
        0
    );
    screenshot(&client, "rules-read-key").await;

    client
        .find(Locator::Id("sign-out"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("click");
    sign_in(&client, "ui-token-edit").await;
    wait_for(&client, "#who", "ui-edit (edit)", 1).await;
    wait_for(&client, "#rules", "ui_rule", 1).await;
    assert_eq!(dry_run_buttons(&client).await, 1, "an edit key dry-runs");

    // an admin sees the audit trail, with who changed the rule and from where
    client
        .find(Locator::Id("sign-out"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("click");
    sign_in(&client, "ui-token-admin").await;
    wait_for(&client, "#who", "ui-admin (admin)", 1).await;
    client
        .goto(&server.url("/ui/audit"))
        .await
        .expect("open audit");
    wait_for(&client, "tr.audit-entry", "rule.put", 1).await;
    let entries = wait_for(&client, "tr.audit-entry", "ui-edit", 1).await;
    assert!(entries[0].contains("127.0.0.1"), "{entries:?}");
    assert_eq!(
        count(&client, "nav a[data-page='audit']:not([hidden])").await,
        1
    );
    screenshot(&client, "audit").await;
    client.close().await.expect("close the browser");
}
