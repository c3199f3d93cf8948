//! Scoped keys with tenants (issue 21): two tenants with the same index name, rule name
//! and label values, each with its own ingest, read, edit and admin keys. Every read path
//! answers a key with its own tenant's data only, a key naming the other tenant in
//! `X-Scope-OrgID` is refused in the route's dialect, an operator key (`tenants =
//! ["*"]`) switches tenants, `/metrics` needs an operator key, each change lands in the
//! audit trail of its own tenant, and the UI in headless Chromium shows a tenant key only
//! its tenant (and an operator a select of the tenants).

use fantoccini::Locator;
use serde_json::{Value, json};

use crate::support::access::{
    Caller, errors_rule, forbidden_in_dialect, hits_total, key_table, metric, only_teams,
    serve_with_config, tenant_table, webhook,
};
use crate::support::browser::{browser, driver, sign_in, wait_for};
use crate::support::{bulk_body, urlencode, wait_until};

const TENANTS: [&str; 2] = ["team-a", "team-b"];
const ROLES: [&str; 4] = ["ingest", "read", "edit", "admin"];

fn token(tenant: &str, role: &str) -> String {
    format!("token-of-{tenant}-{role}")
}

const OPERATOR: &str = "token-of-the-operator";

/// Each tenant's keys, an operator key, both tenants' rules (the same `errors`, and one
/// of each's own) and scrape targets with the same metric and label values.
async fn config(dir: &std::path::Path) -> String {
    let mut config = String::new();
    for tenant in TENANTS {
        let (_, hook) = webhook().await;
        let own = &tenant[5..];
        let exposition = if own == "a" {
            "shared_metric{team=\"checkout\"} 1\na_only_metric{a_label=\"x\"} 1\n"
        } else {
            "shared_metric{team=\"checkout\"} 1\nb_only_metric{b_label=\"x\"} 1\n"
        };
        let target = crate::support::scrape::target(exposition).await;
        config.push_str(&tenant_table(tenant, &hook, &target, ""));
        let queries = dir.join("queries").join(tenant);
        std::fs::create_dir_all(&queries).expect("mkdir");
        let team = format!("team {own}");
        std::fs::write(queries.join("errors.json"), errors_rule(&team)).expect("rule");
        let mut only: Value = serde_json::from_str(&errors_rule(&team)).expect("rule");
        only["schedule"] = json!("0 0 0 1 1 *");
        std::fs::write(queries.join(format!("{own}_only.json")), only.to_string()).expect("rule");
    }
    for tenant in TENANTS {
        for role in ROLES {
            config.push_str(&key_table(
                &format!("{tenant}-{role}"),
                role,
                &format!("tenant = \"{tenant}\""),
                &token(tenant, role),
            ));
        }
    }
    config + &key_table("operator", "admin", "tenants = [\"*\"]", OPERATOR)
}

fn silence() -> Value {
    let now = chrono::Utc::now();
    json!({
        "matchers": [{"name": "alertname", "value": "errors", "isRegex": false}],
        "startsAt": now.to_rfc3339(),
        "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
        "createdBy": "team a",
        "comment": "maintenance"
    })
}

/// The `(action, target)` of every entry of the tenant's audit trail, newest first.
async fn audit_of(admin: &Caller<'_>) -> Vec<(String, String)> {
    let (status, body) = admin.get("/_lookout/audit?size=100").await;
    assert_eq!(status, 200, "{body}");
    body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap_or_default().to_owned(),
                entry["target"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn has(audit: &[(String, String)], action: &str, target: &str) -> bool {
    audit.iter().any(|(a, t)| a == action && t == target)
}

// the scrape targets and webhooks run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenants_keys_see_only_their_tenant_and_an_operator_switches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path()).await;
    let server = serve_with_config(dir.path(), &config);
    let key =
        |tenant: &'static str, role: &str| Caller::with_key(&server, tenant, &token(tenant, role));
    let operator = Caller::with_key(&server, "default", OPERATOR);

    // each tenant's ingest key writes the same index; it cannot read back what it wrote
    for (tenant, count, owner, field) in
        [("team-a", 3, "a", "only_a"), ("team-b", 5, "b", "only_b")]
    {
        let stamp = chrono::Utc::now().to_rfc3339();
        let docs: Vec<Value> = (0..count)
            .map(|n| json!({"@timestamp": stamp, "level": "error", "owner": owner, field: n}))
            .collect();
        let ingest = key(tenant, "ingest");
        let (status, body) = ingest
            .post_ndjson("/_bulk?refresh=true", bulk_body("logs", &docs))
            .await;
        assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
        for path in [
            "/logs/_search",
            "/logs/_count",
            "/_cat/indices",
            "/api/v1/labels",
        ] {
            let (status, body) = ingest.get(path).await;
            assert_eq!(status, 403, "{tenant} ingest {path}: {body}");
            assert!(forbidden_in_dialect(path, &body), "{path}: {body}");
        }
    }
    // A's edit key silences A's `errors` before anything fires
    let (status, body) = key("team-a", "edit")
        .post_json("/api/v2/silences", &silence())
        .await;
    assert_eq!(status, 200, "{body}");
    let silence_id = body["silenceID"].as_str().expect("silence id").to_owned();

    for (tenant, count, owner, mine, theirs) in [
        ("team-a", 3, "a", "only_a", "only_b"),
        ("team-b", 5, "b", "only_b", "only_a"),
    ] {
        let reader = key(tenant, "read");
        let all = json!({"size": 100, "query": {"match_all": {}}});
        for path in ["/_search", "/*/_search", "/_all/_search", "/logs,*/_search"] {
            let (status, body) = reader.post_json(path, &all).await;
            assert_eq!(status, 200, "{tenant} {path}: {body}");
            assert_eq!(hits_total(&body), count, "{tenant} {path}: {body}");
            assert!(only_teams(&body, owner), "{tenant} {path}: {body}");
        }
        let (status, body) = reader.get("/*/_count").await;
        assert_eq!((status, &body["count"]), (200, &json!(count)), "{body}");
        let (status, body) = reader
            .post_ndjson(
                "/_msearch",
                "{\"index\":\"*\"}\n{\"size\":100}\n".to_owned(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(hits_total(&body["responses"][0]), count, "{body}");
        assert!(only_teams(&body["responses"][0], owner), "{body}");
        let (_, body) = reader.get("/_cat/indices?format=json").await;
        let names: Vec<&str> = body
            .as_array()
            .expect("indices")
            .iter()
            .filter_map(|entry| entry["index"].as_str())
            .collect();
        assert_eq!(names, ["logs"], "{tenant}: {body}");
        for path in ["/*/_field_caps?fields=*", "/_mapping"] {
            let (status, body) = reader.get(path).await;
            assert_eq!(status, 200, "{body}");
            let text = body.to_string();
            assert!(
                text.contains(mine) && !text.contains(theirs),
                "{tenant} {path}: {text}"
            );
        }
        // PromQL over log_matches of the same rule name, and each tenant's own series
        assert_eq!(
            reader.instant_value("log_matches{query=\"errors\"}").await,
            Some(count.to_string()),
            "{tenant}"
        );
        let own = &tenant[5..];
        wait_until("the tenant scraped its target", 30, || async {
            reader.instant_value("shared_metric").await.as_deref() == Some("1")
        })
        .await;
        let (_, names) = reader.get("/api/v1/label/__name__/values").await;
        let text = names.to_string();
        assert!(text.contains(&format!("{own}_only_metric")), "{text}");
        let other = if own == "a" { "b" } else { "a" };
        assert!(!text.contains(&format!("{other}_only_metric")), "{text}");
        let (_, labels) = reader.get("/api/v1/labels").await;
        assert!(
            !labels.to_string().contains(&format!("{other}_label")),
            "{labels}"
        );
        let (_, series) = reader
            .get(&format!(
                "/api/v1/series?match[]={}",
                urlencode("{__name__=~\".+_only_metric\"}")
            ))
            .await;
        assert_eq!(series["data"].as_array().map(Vec::len), Some(1), "{series}");
        let (_, metadata) = reader.get("/api/v1/metadata").await;
        assert!(
            !metadata
                .to_string()
                .contains(&format!("{other}_only_metric")),
            "{metadata}"
        );
        // rules, alerts and silences
        for path in ["/_lookout/rules", "/api/v1/rules"] {
            let (status, body) = reader.get(path).await;
            assert_eq!(status, 200, "{body}");
            let text = body.to_string();
            assert!(text.contains(&format!("{own}_only")), "{path}: {text}");
            assert!(!text.contains(&format!("{other}_only")), "{path}: {text}");
            assert!(!text.contains(&format!("team {other}")), "{path}: {text}");
        }
        let (_, silences) = reader.get("/api/v2/silences").await;
        let listed = silences.as_array().map_or(0, Vec::len);
        assert_eq!(listed, usize::from(own == "a"), "{tenant}: {silences}");
    }

    // both tenants' `errors` fire; each history and alert list holds its own only
    for (tenant, value) in [("team-a", 3.0), ("team-b", 5.0)] {
        let reader = key(tenant, "read");
        wait_until("the tenant's alert fires", 30, || async {
            let (_, alerts) = reader.get("/api/v1/alerts").await;
            alerts["data"]["alerts"][0]["state"] == "firing"
        })
        .await;
        let (_, alerts) = reader.get("/api/v1/alerts").await;
        assert_eq!(
            alerts["data"]["alerts"].as_array().map(Vec::len),
            Some(1),
            "{alerts}"
        );
        let firing = reader.only_firing_of("errors").await;
        assert_eq!(firing["value"], json!(value), "{tenant}: {firing}");
        let (_, tenants) = reader.get("/_lookout/tenants").await;
        assert_eq!(tenants["tenants"], json!([{"name": tenant}]), "{tenants}");
    }

    // A's keys naming B are refused in each dialect, and nothing of B's is in the answer
    for role in ROLES {
        let to_b = key("team-a", role).naming("team-b");
        for path in [
            "/logs/_search",
            "/api/v1/query?query=shared_metric",
            "/api/v2/silences",
            "/_lookout/rules",
            "/_lookout/audit",
        ] {
            let (status, body) = to_b.get(path).await;
            assert_eq!(status, 403, "{role} {path}: {body}");
            assert!(forbidden_in_dialect(path, &body), "{role} {path}: {body}");
            assert!(!body.to_string().contains("team b"), "{body}");
        }
    }

    // the operator switches tenants; without a header it acts for `default`
    for (tenant, count) in [("team-a", 3), ("team-b", 5), ("default", 0)] {
        let (status, body) = operator.naming(tenant).get("/*/_count").await;
        assert_eq!(
            (status, &body["count"]),
            (200, &json!(count)),
            "{tenant}: {body}"
        );
    }
    let (_, body) = operator.get("/*/_count").await;
    assert_eq!(body["count"], 0, "{body}");
    let (_, tenants) = operator.get("/_lookout/tenants").await;
    assert_eq!(
        tenants["tenants"],
        json!([{"name": "default"}, {"name": "team-a"}, {"name": "team-b"}])
    );
    // Loki's multi-tenant read is refused, saying what to do instead
    let (status, body) = operator.naming("team-a|team-b").get("/logs/_search").await;
    assert_eq!(status, 400, "{body}");
    let reason = body["error"]["reason"].as_str().expect("reason");
    assert!(reason.contains("one request per tenant"), "{reason}");
    let (status, body) = operator
        .naming("team-a|team-b")
        .get("/api/v1/query?query=up")
        .await;
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("bad_data")),
        "{body}"
    );

    // /metrics names every tenant's indexes and rules: operators only
    for role in ROLES.iter().skip(1) {
        let (status, body) = key("team-a", role).get("/metrics").await;
        assert_eq!(status, 403, "{role}: {body}");
        assert!(forbidden_in_dialect("/metrics", &body), "{body}");
        assert!(!body.to_string().contains("team-b"), "{body}");
    }
    let response = operator
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    let metrics = response.text().await.expect("metrics text");
    for (tenant, docs) in [("team-a", 3.0), ("team-b", 5.0)] {
        let series = format!("lookout_index_docs{{tenant=\"{tenant}\",index=\"logs\"}}");
        assert_eq!(metric(&metrics, &series), docs, "{metrics}");
    }

    // every change lands in its own tenant's audit trail, and in no other's
    let edit_a = key("team-a", "edit");
    let rule: Value = serde_json::from_str(&errors_rule("team a")).expect("rule");
    let (status, body) = edit_a.put_json("/_lookout/rules/audited", &rule).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = edit_a.delete("/_lookout/rules/audited").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = edit_a
        .delete(&format!("/api/v2/silence/{silence_id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = key("team-a", "ingest")
        .post_ndjson(
            "/_bulk?refresh=true",
            bulk_body("scratch", &[json!({"n": 1})]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = key("team-a", "admin").delete("/scratch").await;
    assert_eq!(status, 200, "{body}");
    let (status, created) = operator
        .post_json(
            "/_lookout/keys",
            &json!({"name": "b-shipper", "role": "ingest", "tenant": "team-b"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let shipper = Caller::with_key(&server, "team-b", created["token"].as_str().expect("token"));
    let (status, _) = shipper
        .post_ndjson("/_bulk", bulk_body("logs", &[json!({"owner": "b"})]))
        .await;
    assert_eq!(status, 200);
    let (status, body) = operator.delete("/_lookout/keys/b-shipper").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = shipper
        .post_ndjson("/_bulk", bulk_body("logs", &[json!({"owner": "b"})]))
        .await;
    assert_eq!(status, 401, "a revoked key stops working at once");

    let audit_a = audit_of(&key("team-a", "admin")).await;
    let audit_b = audit_of(&key("team-b", "admin")).await;
    let audit_default = audit_of(&operator).await;
    for (action, target) in [
        ("silence.create", silence_id.as_str()),
        ("rule.put", "audited"),
        ("rule.delete", "audited"),
        ("silence.expire", silence_id.as_str()),
        ("index.delete", "scratch"),
    ] {
        assert!(has(&audit_a, action, target), "{action} in A: {audit_a:?}");
        assert!(
            !has(&audit_b, action, target),
            "{action} not in B: {audit_b:?}"
        );
        assert!(
            !has(&audit_default, action, target),
            "{action}: {audit_default:?}"
        );
    }
    for action in ["key.create", "key.revoke"] {
        assert!(has(&audit_b, action, "b-shipper"), "{action}: {audit_b:?}");
        assert!(
            has(&audit_default, action, "b-shipper"),
            "made from default"
        );
        assert!(!has(&audit_a, action, "b-shipper"), "{action}: {audit_a:?}");
    }
    // the keys of lookout.toml are recorded at the first start, each tenant its own
    assert!(has(&audit_a, "tenant.start", "team-a"), "{audit_a:?}");
    let (_, body) = key("team-a", "admin").get("/_lookout/audit").await;
    let started = body.to_string();
    assert!(
        started.contains("keys.team-a-read") && !started.contains("keys.team-b-read"),
        "{started}"
    );

    // the UI with A's read key shows A's rules only, and no tenant switcher
    let driver = driver().await;
    let client = browser(&driver, &dir.path().join("chromium")).await;
    client
        .goto(&server.url("/ui/rules"))
        .await
        .expect("open rules");
    sign_in(&client, &token("team-a", "read")).await;
    let rules = wait_for(&client, "#rules", "a_only", 1).await.concat();
    assert!(!rules.contains("b_only"), "{rules}");
    wait_for(&client, "#tenant", "team-a", 1).await;
    assert!(
        client.find(Locator::Css("select#tenant")).await.is_err(),
        "one tenant, no switcher"
    );
    client
        .goto(&server.url("/ui/alerts"))
        .await
        .expect("open alerts");
    let alerts = wait_for(&client, "#active", "team a: 3 errors", 1)
        .await
        .concat();
    assert!(!alerts.contains("team b"), "{alerts}");
    // the operator gets a select of the tenants and switches to B
    client
        .find(Locator::Id("sign-out"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("click");
    client
        .goto(&server.url("/ui/rules"))
        .await
        .expect("open rules");
    sign_in(&client, OPERATOR).await;
    let options = wait_for(&client, "select#tenant", "team-b", 1)
        .await
        .concat();
    assert!(
        options.contains("default") && options.contains("team-a"),
        "{options}"
    );
    client
        .find(Locator::Css("select#tenant"))
        .await
        .expect("tenant select")
        .select_by_value("team-b")
        .await
        .expect("choose team-b");
    let rules = wait_for(&client, "#rules", "b_only", 1).await.concat();
    assert!(!rules.contains("a_only"), "{rules}");
    client.close().await.expect("close the browser");
}
