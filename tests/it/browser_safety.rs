//! Browser safety on a real `lookout serve` (issue 21): writes need a JSON body and the
//! server's own origin, a foreign `Host` is refused (DNS rebinding), wildcard index
//! deletes and writes to the hidden `.lookout-*` indices are refused, every answer carries
//! `nosniff`; and in headless Chromium a page on another origin posting forms and
//! `no-cors` fetches changes nothing.

use serde_json::{Value, json};

use crate::support::browser::{browser, driver};
use crate::support::{Server, ago, bulk_body, decode, listen, wait_until};

/// A silence matching every alert until 2030: what the review's attack page created.
fn mute_everything() -> Value {
    json!({
        "matchers": [{"name": "alertname", "value": ".*", "isRegex": true, "isEqual": true}],
        "startsAt": "2024-01-01T00:00:00Z",
        "endsAt": "2030-01-01T00:00:00Z",
        "createdBy": "attacker",
        "comment": "muted",
    })
}

/// Sends `request`, checks the answer carries `nosniff`, and decodes it.
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    assert_eq!(
        response
            .headers()
            .get("x-content-type-options")
            .and_then(|value| value.to_str().ok()),
        Some("nosniff"),
        "every answer carries nosniff: {response:?}"
    );
    decode(response).await
}

async fn silences(server: &Server) -> usize {
    let (status, body) = server.get("/api/v2/silences").await;
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("a list of silences").len()
}

/// Documents of `index`, 0 when it does not exist.
async fn documents(server: &Server, index: &str) -> u64 {
    let (status, body) = server.get(&format!("/{index}/_count")).await;
    match status {
        404 => 0,
        200 => body["count"].as_u64().expect("count"),
        _ => panic!("count of {index}: {status} {body}"),
    }
}

#[tokio::test]
async fn writes_need_json_and_the_servers_own_origin_and_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let client = &server.client;
    let silence = mute_everything().to_string();
    let document = bulk_body("logs", &[json!({"@timestamp": ago(5), "message": "m"})]);

    // a form's text/plain body is refused before it is read, in each API's dialect
    let (status, body) = send(
        client
            .post(server.url("/api/v2/silences"))
            .header("content-type", "text/plain")
            .body(silence.clone()),
    )
    .await;
    assert_eq!(status, 406, "{body}");
    assert_eq!(body["code"], 406, "Alertmanager's shape: {body}");
    let (status, body) = send(
        client
            .post(server.url("/_bulk?refresh=true"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(document.clone()),
    )
    .await;
    assert_eq!(status, 406, "{body}");
    assert_eq!(body["error"]["type"], "media_type_header_exception");
    let reason = body["error"]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("-H 'Content-Type: application/json'"),
        "{reason}"
    );
    let (status, body) = send(
        client
            .put(server.url("/_lookout/rules/muted"))
            .body(r#"{"query": "*"}"#),
    )
    .await;
    assert_eq!((status, &body["status"]), (406, &json!(406)), "{body}");
    assert_eq!(silences(&server).await, 0);
    assert_eq!(documents(&server, "logs").await, 0);

    // another origin's write is refused; the server's own origin's goes through
    let (status, body) = send(
        client
            .post(server.url("/_bulk?refresh=true"))
            .header("content-type", "application/x-ndjson")
            .header("origin", "http://evil.example")
            .body(document.clone()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "security_exception", "{body}");
    let (status, body) = send(
        client
            .post(server.url("/api/v2/silences"))
            .header("sec-fetch-site", "cross-site")
            .json(&mute_everything()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(silences(&server).await, 0);
    assert_eq!(documents(&server, "logs").await, 0);
    let (status, body) = send(
        client
            .post(server.url("/_bulk?refresh=true"))
            .header("content-type", "application/x-ndjson")
            .header("origin", server.base.clone())
            .header("sec-fetch-site", "same-origin")
            .body(document.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(documents(&server, "logs").await, 1);
    // reads are not writes: Prometheus' form-encoded query from anywhere is answered
    let (status, body) = send(
        client
            .post(server.url("/api/v1/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "http://grafana.example")
            .body("query=1"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // a foreign Host (a DNS-rebinding page's) is refused, reads included
    let port = server
        .address()
        .rsplit(':')
        .next()
        .expect("port")
        .to_owned();
    let (status, body) = send(
        client
            .get(server.url("/logs/_search"))
            .header("host", format!("rebind.evil.example:{port}")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let reason = body["error"]["reason"].as_str().expect("reason");
    assert!(reason.contains("http.allowed_hosts"), "{reason}");
    let (status, body) = send(
        client
            .get(server.url("/api/v1/query?query=1"))
            .header("host", format!("rebind.evil.example:{port}")),
    )
    .await;
    assert_eq!((status, &body["status"]), (403, &json!("error")), "{body}");
    assert_eq!(
        body["errorType"], "security_exception",
        "Prometheus' shape: {body}"
    );
    let (status, _) = send(
        client
            .get(server.url("/"))
            .header("host", format!("localhost:{port}")),
    )
    .await;
    assert_eq!(status, 200);

    // the UI's 404 is JSON and does not echo the path
    let (status, body) =
        send(client.get(server.url("/ui/%3Cscript%3Ealert(1)%3C%2Fscript%3E"))).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.is_object(), "{body}");
    assert!(!body.to_string().contains("script"), "{body}");

    let metrics = server.metrics().await;
    for reason in ["content_type", "cross_site", "foreign_host"] {
        assert!(
            metrics.contains(&format!(
                "lookout_http_requests_refused_total{{reason=\"{reason}\"}}"
            )),
            "{reason} refusals are counted"
        );
    }
}

#[tokio::test]
async fn wildcard_deletes_and_writes_to_hidden_indices_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let client = &server.client;
    for index in ["logs-a", "logs-b"] {
        let (status, body) = server
            .post_ndjson(
                "/_bulk?refresh=true",
                bulk_body(index, &[json!({"@timestamp": ago(5), "message": "m"})]),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    for expression in ["_all", "*", ".*", "logs-*", "logs-a,logs-*"] {
        let (status, body) = send(client.delete(server.url(&format!("/{expression}")))).await;
        assert_eq!(status, 400, "DELETE /{expression}: {body}");
        assert_eq!(
            body["error"]["type"], "illegal_argument_exception",
            "{body}"
        );
        let reason = body["error"]["reason"].as_str().expect("reason");
        assert!(
            reason.starts_with("Wildcard expressions or all indices are not allowed"),
            "{reason}"
        );
    }
    assert_eq!(documents(&server, "logs-a").await, 1);
    assert_eq!(documents(&server, "logs-b").await, 1);
    let (status, body) = send(client.delete(server.url("/logs-a"))).await;
    assert_eq!(status, 200, "a named index is deleted: {body}");
    assert_eq!(documents(&server, "logs-a").await, 0);

    // forged alert history: the hidden index's item fails, the others are written
    let mut body = bulk_body(
        ".lookout-alerts",
        &[json!({"@timestamp": ago(5), "rule": "checkout", "transition": "resolved"})],
    );
    body.push_str(&bulk_body(
        "logs-b",
        &[json!({"@timestamp": ago(5), "message": "beside"})],
    ));
    body.push_str("{\"delete\":{\"_index\":\".lookout-alerts\",\"_id\":\"x\"}}\n");
    let (status, answer) = server.post_ndjson("/_bulk?refresh=true", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["errors"], true, "{answer}");
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items[0]["index"]["status"], 403, "{answer}");
    assert_eq!(items[0]["index"]["error"]["type"], "security_exception");
    assert_eq!(items[1]["index"]["status"], 201, "{answer}");
    assert_eq!(items[2]["delete"]["status"], 403, "{answer}");
    assert_eq!(documents(&server, "logs-b").await, 2);
    assert_eq!(documents(&server, ".lookout-alerts").await, 0);
    let (status, body) = send(
        client
            .put(server.url("/.lookout-alerts/_doc/forged?refresh=true"))
            .json(&json!({"@timestamp": ago(5), "rule": "checkout"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "security_exception", "{body}");
    let (status, body) = send(client.put(server.url("/.lookout-audit"))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(documents(&server, ".lookout-alerts").await, 0);
}

#[tokio::test]
async fn wildcard_deletes_go_through_with_destructive_requires_name_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("lookout.toml");
    std::fs::write(&config, "[index]\ndestructive_requires_name = false\n").expect("config");
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().expect("UTF-8")]);
    for index in ["logs-a", "logs-b", "other"] {
        let (status, body) = server
            .post_ndjson(
                "/_bulk?refresh=true",
                bulk_body(index, &[json!({"@timestamp": ago(5), "message": "m"})]),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = send(server.client.delete(server.url("/logs-*"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(documents(&server, "logs-a").await, 0);
    assert_eq!(documents(&server, "other").await, 1);
    let (status, body) = send(server.client.delete(server.url("/_all"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(documents(&server, "other").await, 0);
}

/// Sum of the browser-safety refusals in `/metrics`.
async fn refusals(server: &Server) -> u64 {
    server
        .metrics()
        .await
        .lines()
        .filter(|line| {
            line.starts_with("lookout_http_requests_refused_total{reason=\"cross_site\"}")
                || line.starts_with("lookout_http_requests_refused_total{reason=\"content_type\"}")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The attack page of the security review, served from another origin: two forms
/// (`text/plain`, the one encoding that can carry JSON) and two `no-cors` fetches, to
/// `/api/v2/silences` and `/_bulk`. It counts its four requests done in its title.
fn attack_page(target: &str) -> String {
    let silence = mute_everything().to_string();
    // a text/plain form sends `name=value`: the JSON is split around one `=`
    let (silence_name, silence_value) = (
        format!("{}, \"pad\": \"", &silence[..silence.len() - 1]),
        "\"}",
    );
    let bulk_name = "{\"index\":{\"_index\":\"pwned\"}}\n{\"message\":\"pwned\",\"pad\":\"";
    let bulk_value = "\"}\n";
    let attribute = |text: &str| {
        text.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('\n', "&#10;")
    };
    format!(
        r#"<!doctype html><html><head><title>loading</title></head><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="silence" action="{target}/api/v2/silences" method="POST" enctype="text/plain" target="sink1">
<input name="{}" value="{}"></form>
<form id="bulk" action="{target}/_bulk?refresh=true" method="POST" enctype="text/plain" target="sink2">
<input name="{}" value="{}"></form>
<script>
let done = 0;
const finished = () => {{ done += 1; document.title = "done " + done; }};
for (const frame of document.querySelectorAll("iframe")) {{
  frame.addEventListener("load", finished, {{ once: true }});
}}
document.getElementById("silence").submit();
document.getElementById("bulk").submit();
fetch("{target}/api/v2/silences", {{ mode: "no-cors", method: "POST", body: {silence_json} }})
  .then(finished, finished);
fetch("{target}/_bulk?refresh=true", {{ mode: "no-cors", method: "POST",
  body: '{{"index":{{"_index":"pwned"}}}}\n{{"message":"pwned"}}\n' }}).then(finished, finished);
</script></body></html>"#,
        attribute(&silence_name),
        attribute(silence_value),
        attribute(bulk_name),
        attribute(bulk_value),
        silence_json = serde_json::to_string(&silence).expect("a JSON string"),
    )
}

// the attack page's server runs in this process while the browser works
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_changes_nothing_through_the_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let page = attack_page(&server.base);
    let attacker = listen(axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    ))
    .await;
    let driver = driver().await;
    let profile = tempfile::tempdir().expect("profile");
    let client = browser(&driver, profile.path()).await;
    client
        .goto(&format!("http://{attacker}/"))
        .await
        .expect("open the attack page");
    // the page's four requests reached the server and were refused
    wait_until("the attack page's requests are refused", 30, || async {
        refusals(&server).await >= 4
    })
    .await;
    wait_until("the attack page saw its requests finish", 30, || async {
        client.title().await.is_ok_and(|title| title == "done 4")
    })
    .await;
    client.close().await.expect("close the browser");
    assert_eq!(silences(&server).await, 0, "no silence was created");
    assert_eq!(
        documents(&server, "pwned").await,
        0,
        "no document was written"
    );

    // the same requests from a tool, with a JSON type, are valid: the browser's were
    // refused for where they came from and how, not for what they said
    let (status, body) = server
        .post_json("/api/v2/silences", &mute_everything())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(silences(&server).await, 1);
}
