//! The rules API through the real binary: rules written, validated, read, listed and
//! deleted as files in `queries/`, and a dry run that shows the count, the state it would
//! move to and the message it would send, without sending anything.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::rules::{history, ingest_500s, serve_rules};
use crate::support::slack::{MockSlack, start_mock};
use crate::support::{Server, decode, wait_until};

async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = server.client.request(method, server.url(path));
    if let Some(body) = body {
        request = request.json(body);
    }
    decode(request.send().await.expect("request")).await
}

async fn put_rule(server: &Server, name: &str, body: &Value) -> (u16, Value) {
    send(
        server,
        reqwest::Method::PUT,
        &format!("/_lookout/rules/{name}"),
        Some(body),
    )
    .await
}

/// A rule that never runs on its own during a test (once a year), so only the dry run
/// evaluates it.
fn yearly_rule() -> Value {
    json!({
        "version": 1,
        "schedule": "0 0 0 1 1 *",
        "index": "logs",
        "query": "status:500",
        "window": "1h",
        "threshold": {"op": ">", "value": 20},
        "severity": "critical",
        "summary": "{{ $count }} HTTP 500s in the last {{ $window }}"
    })
}

// the mock Slack runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_written_validated_listed_dry_run_and_deleted_as_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    let mock = Arc::new(Mutex::new(MockSlack::default()));
    let webhook = start_mock(mock.clone()).await;
    let server = serve_rules(dir.path(), &queries, &webhook);

    // invalid rules are refused with file-less errors naming the field, and not written
    let mut bad_cron = yearly_rule();
    bad_cron["schedule"] = json!("61 * * * *");
    let mut unknown_field = yearly_rule();
    unknown_field["treshold"] = json!(3);
    let mut bad_template = yearly_rule();
    bad_template["summary"] = json!("{{ $labels.service }}");
    for (body, expected) in [
        (&bad_cron, "`schedule`"),
        (&unknown_field, "unknown field `treshold`"),
        (&bad_template, "`summary`"),
    ] {
        let (status, answer) = put_rule(&server, "broken", body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["type"], "invalid_rule");
        let reason = answer["error"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(expected), "{reason}");
    }
    let (status, answer) = put_rule(&server, "..%2Fescape", &yearly_rule()).await;
    assert_eq!(status, 400, "a name is never a path: {answer}");
    assert!(!queries.join("broken.json").exists() && !dir.path().join("escape.json").exists());

    // a valid rule becomes queries/NAME.json and starts running
    let (status, answer) = put_rule(&server, "api_rule", &yearly_rule()).await;
    assert_eq!(
        (status, &answer["result"]),
        (201, &json!("created")),
        "{answer}"
    );
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(queries.join("api_rule.json")).expect("written"),
    )
    .expect("json");
    assert_eq!(on_disk, yearly_rule());
    let (status, answer) = put_rule(&server, "api_rule", &yearly_rule()).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("updated")),
        "{answer}"
    );
    let (status, rule) = server.get("/_lookout/rules/api_rule").await;
    assert_eq!((status, rule), (200, yearly_rule()));
    wait_until("the rule runs", 15, || async {
        let (_, list) = server.get("/_lookout/rules").await;
        list["rules"].as_array().is_some_and(|rules| {
            rules
                .iter()
                .any(|rule| rule["name"] == "api_rule" && rule["running"] == true)
        })
    })
    .await;

    // the dry run counts now, says where the alert would go, and shows the message
    ingest_500s(&server, 30).await;
    let (status, dry) = server
        .post_json("/_lookout/rules/api_rule/_dry_run", &json!(null))
        .await;
    assert_eq!(status, 200, "{dry}");
    let group = &dry["groups"][0];
    assert_eq!(group["count"], 30.0, "{dry}");
    assert_eq!(group["condition"], true, "{dry}");
    assert_eq!(group["state"], "inactive", "{dry}");
    assert_eq!(group["would_become"], "firing", "{dry}");
    let message = &dry["messages"][0];
    assert_eq!(message["notifier"], "slack", "{dry}");
    assert_eq!(message["kind"], "firing", "{dry}");
    let text = message["payload"]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("[FIRING] api_rule: 30 HTTP 500s in the last 1h"),
        "{text}"
    );

    // an edit can be tried before it is saved
    let mut stricter = yearly_rule();
    stricter["threshold"] = json!({"op": ">", "value": 50});
    let (status, dry) = server
        .post_json("/_lookout/rules/api_rule/_dry_run", &stricter)
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["groups"][0]["would_become"], "inactive", "{dry}");
    assert_eq!(dry["messages"], json!([]), "{dry}");

    // nothing was sent, recorded or saved by the dry runs
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(mock.lock().expect("mock").received.is_empty());
    assert!(history(&server, "api_rule").await.is_empty());
    assert!(!server.data_dir.join("state/rules/api_rule.json").exists());

    // delete: the file goes, the rule stops
    let (status, answer) = send(
        &server,
        reqwest::Method::DELETE,
        "/_lookout/rules/api_rule",
        None,
    )
    .await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("deleted")),
        "{answer}"
    );
    assert!(!queries.join("api_rule.json").exists());
    let (status, answer) = server.get("/_lookout/rules/api_rule").await;
    assert_eq!(
        (status, &answer["error"]["type"]),
        (404, &json!("rule_not_found"))
    );
    let (status, _) = send(
        &server,
        reqwest::Method::DELETE,
        "/_lookout/rules/api_rule",
        None,
    )
    .await;
    assert_eq!(status, 404);
    wait_until("the rule stops", 15, || async {
        let (_, list) = server.get("/api/v1/rules").await;
        list["data"]["groups"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
}
