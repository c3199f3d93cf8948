//! Tenants (issue 21): two teams on one server with the same index name, rule name and
//! label values each see only their own data through every read path, one tenant's
//! ingest flood at its limit does not delay another tenant's alert, and the limits'
//! refusals show in `/metrics`.
//!
//! The callers act for a tenant with `X-Scope-OrgID` and no key configured (an operator
//! of every tenant); `tenant_keys.rs` does the same with each tenant's own keys.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::access::{
    Caller, errors_rule, hits_total, metric, only_teams, tenant_table, webhook,
};
use crate::support::slack::received;
use crate::support::{Server, bulk_body, urlencode, wait_until};

// the mock receivers and targets run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_with_the_same_names_see_only_their_own_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mock_a, hook_a) = webhook().await;
    let (mock_b, hook_b) = webhook().await;
    let target_a = crate::support::scrape::target(
        "shared_metric{team=\"checkout\"} 1\na_only_metric{a_label=\"x\"} 1\n",
    )
    .await;
    let target_b = crate::support::scrape::target(
        "shared_metric{team=\"checkout\"} 2\nb_only_metric{b_label=\"y\"} 1\n",
    )
    .await;
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        tenant_table("team-a", &hook_a, &target_a, "")
            + &tenant_table("team-b", &hook_b, &target_b, ""),
    )
    .expect("config");
    // the tenants' default rules directories: queries/NAME, which `default` does not read
    let queries = dir.path().join("queries");
    for (tenant, team) in [("team-a", "team a"), ("team-b", "team b")] {
        std::fs::create_dir_all(queries.join(tenant)).expect("mkdir");
        std::fs::write(queries.join(tenant).join("errors.json"), errors_rule(team)).expect("rule");
    }
    let server = crate::support::rules::serve_rules_with_config(dir.path(), &queries, &config, "");
    let a = Caller::new(&server, "team-a");
    let b = Caller::new(&server, "team-b");

    // a silence in A, before anything fires there
    let now = chrono::Utc::now();
    let (status, body) = a
        .post_json(
            "/api/v2/silences",
            &json!({
                "matchers": [{"name": "alertname", "value": "errors", "isRegex": false}],
                "startsAt": now.to_rfc3339(),
                "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
                "createdBy": "team a",
                "comment": "maintenance"
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, silences_b) = b.get("/api/v2/silences").await;
    assert_eq!(silences_b, json!([]), "A's silence is not B's");

    // the same index name in both; 3 lines in A, 5 in B, each with a field of its own
    for (caller, count, owner, field) in [(&a, 3, "a", "only_a"), (&b, 5, "b", "only_b")] {
        let stamp = chrono::Utc::now().to_rfc3339();
        let docs: Vec<Value> = (0..count)
            .map(|n| json!({"@timestamp": stamp, "level": "error", "owner": owner, field: n}))
            .collect();
        let (status, body) = caller
            .post_ndjson("/_bulk?refresh=true", bulk_body("logs", &docs))
            .await;
        assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    }

    for (caller, count, owner, mine, theirs) in [
        (&a, 3, "a", "only_a", "only_b"),
        (&b, 5, "b", "only_b", "only_a"),
    ] {
        let tenant = caller.tenant;
        let all = json!({"size": 100, "query": {"match_all": {}}});
        for path in ["/_search", "/*/_search", "/_all/_search", "/logs,*/_search"] {
            let (status, body) = caller.post_json(path, &all).await;
            assert_eq!(status, 200, "{tenant} {path}: {body}");
            assert_eq!(hits_total(&body), count, "{tenant} {path}: {body}");
            assert!(only_teams(&body, owner), "{tenant} {path}: {body}");
        }
        let (status, body) = caller
            .post_ndjson(
                "/_msearch",
                "{\"index\":\"*\"}\n{\"size\":100}\n{\"index\":\"_all\"}\n{}\n".to_owned(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        for response in body["responses"].as_array().expect("responses") {
            assert_eq!(hits_total(response), count, "{tenant} _msearch: {body}");
        }
        assert!(only_teams(&body["responses"][0], owner), "{body}");
        let (status, body) = caller.get("/_cat/indices?format=json").await;
        assert_eq!(status, 200, "{body}");
        let listed: Vec<(String, String)> = body
            .as_array()
            .expect("indices")
            .iter()
            .map(|entry| {
                let docs = &entry["docs.count"];
                let docs = docs
                    .as_str()
                    .map_or_else(|| docs.to_string(), str::to_owned);
                (entry["index"].as_str().unwrap_or_default().to_owned(), docs)
            })
            .collect();
        assert_eq!(
            listed,
            [("logs".to_owned(), count.to_string())],
            "{tenant}: {body}"
        );
        for path in ["/logs/_field_caps?fields=*", "/*/_field_caps?fields=*"] {
            let (status, body) = caller.get(path).await;
            assert_eq!(status, 200, "{body}");
            assert!(
                body["fields"].get(mine).is_some(),
                "{tenant} {path}: {body}"
            );
            assert!(
                body["fields"].get(theirs).is_none(),
                "{tenant} {path}: {body}"
            );
        }
        let (status, body) = caller.get("/_mapping").await;
        assert_eq!(status, 200, "{body}");
        let properties = &body["logs"]["mappings"]["properties"];
        assert!(properties.get(mine).is_some(), "{tenant}: {body}");
        assert!(properties.get(theirs).is_none(), "{tenant}: {body}");
    }

    // a scroll of A is unknown to B, and still A's
    let (status, first) = a
        .post_json("/logs/_search?scroll=1m", &json!({"size": 1}))
        .await;
    assert_eq!(status, 200, "{first}");
    let scroll_id = first["_scroll_id"].as_str().expect("scroll id").to_owned();
    let next = json!({"scroll": "1m", "scroll_id": scroll_id});
    let (status, body) = b.post_json("/_search/scroll", &next).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["type"], "search_context_missing_exception");
    let (status, body) = a.post_json("/_search/scroll", &next).await;
    assert_eq!(status, 200, "{body}");
    assert!(only_teams(&body, "a") && hits_total(&body) == 3, "{body}");

    // PromQL: the same rule name and label values, each tenant's own count and metrics
    assert_eq!(
        a.instant_value("log_matches{query=\"errors\"}")
            .await
            .as_deref(),
        Some("3")
    );
    assert_eq!(
        b.instant_value("log_matches{query=\"errors\"}")
            .await
            .as_deref(),
        Some("5")
    );
    wait_until("both tenants scraped their targets", 30, || async {
        a.instant_value("shared_metric").await.as_deref() == Some("1")
            && b.instant_value("shared_metric").await.as_deref() == Some("2")
    })
    .await;
    for (caller, mine, theirs) in [(&a, "a", "b"), (&b, "b", "a")] {
        let (_, names) = caller.get("/api/v1/label/__name__/values").await;
        let names = names["data"].as_array().expect("names").clone();
        assert!(
            names.contains(&json!(format!("{mine}_only_metric"))),
            "{names:?}"
        );
        assert!(names.contains(&json!("log_matches")), "{names:?}");
        assert!(
            !names.contains(&json!(format!("{theirs}_only_metric"))),
            "{names:?}"
        );
        let (_, labels) = caller.get("/api/v1/labels").await;
        let labels = labels["data"].as_array().expect("labels").clone();
        assert!(
            labels.contains(&json!(format!("{mine}_label"))),
            "{labels:?}"
        );
        assert!(
            !labels.contains(&json!(format!("{theirs}_label"))),
            "{labels:?}"
        );
        let (_, series) = caller
            .get(&format!(
                "/api/v1/series?match[]={}",
                urlencode("{__name__=~\".+_only_metric\"}")
            ))
            .await;
        assert_eq!(series["data"].as_array().map(Vec::len), Some(1), "{series}");
        assert_eq!(series["data"][0]["__name__"], format!("{mine}_only_metric"));
        let (_, rules) = caller.get("/_lookout/rules").await;
        let text = rules.to_string();
        assert!(text.contains(&format!("team {mine}")), "{text}");
        assert!(!text.contains(&format!("team {theirs}")), "{text}");
        let (_, rules) = caller.get("/api/v1/rules").await;
        let names: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|group| group["rules"].as_array().expect("rules"))
            .map(|rule| &rule["name"])
            .collect();
        assert_eq!(names, [&json!("errors")], "{rules}");
        assert!(
            !rules.to_string().contains(&format!("team {theirs}")),
            "{rules}"
        );
    }

    // B's alert is delivered to B's receiver; A's fires under A's silence, to nobody
    wait_until("B's alert is delivered", 30, received(&mock_b, 1)).await;
    let delivered = mock_b.lock().expect("mock").received[0].1.to_string();
    assert!(delivered.contains("team b: 5 errors"), "{delivered}");
    wait_until("A's alert fires", 30, || async {
        let (_, alerts) = a.get("/api/v1/alerts").await;
        alerts["data"]["alerts"][0]["state"] == "firing"
    })
    .await;
    let (_, alerts) = a.get("/api/v1/alerts").await;
    assert_eq!(
        alerts["data"]["alerts"].as_array().map(Vec::len),
        Some(1),
        "{alerts}"
    );
    assert!(alerts.to_string().contains("team a: 3 errors"), "{alerts}");
    assert!(
        mock_a.lock().expect("mock").received.is_empty(),
        "A is silenced"
    );
    for (caller, value, silenced) in [(&a, 3.0, true), (&b, 5.0, false)] {
        let firing = caller.only_firing_of("errors").await;
        assert_eq!(firing["value"], json!(value), "{firing}");
        assert_eq!(firing["silenced"], json!(silenced), "{firing}");
    }

    // /metrics keeps the same names of two tenants apart
    let metrics = server.metrics().await;
    for (tenant, docs) in [("team-a", 3.0), ("team-b", 5.0)] {
        let series = format!("lookout_index_docs{{tenant=\"{tenant}\",index=\"logs\"}}");
        assert_eq!(metric(&metrics, &series), docs, "{metrics}");
        let series =
            format!("lookout_rule_evaluations_total{{tenant=\"{tenant}\",rule=\"errors\"}}");
        assert!(metric(&metrics, &series) >= 1.0, "{metrics}");
    }

    // the default tenant has none of it and needs no header; naming it works too
    for path in ["/_cat/indices?format=json", "/api/v2/silences"] {
        let (status, body) = server.get(path).await;
        assert_eq!((status, body), (200, json!([])), "{path}");
    }
    let default = Caller::new(&server, "default");
    let (status, body) = default.post_json("/_search", &json!({})).await;
    assert_eq!((status, hits_total(&body)), (200, 0), "{body}");

    // an unknown tenant is refused without naming the others, in the route's dialect
    let nobody = Caller::new(&server, "team-z");
    let (status, body) = nobody.get("/_search").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["reason"]
            .as_str()
            .expect("reason")
            .contains("team-z")
    );
    assert!(!body.to_string().contains("team-a"), "{body}");
    let (status, body) = nobody.get("/api/v1/labels").await;
    assert_eq!((status, &body["status"]), (400, &json!("error")), "{body}");
    let (status, body) = server.get("/_lookout/tenants").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"tenants": [{"name": "default"}, {"name": "team-a"}, {"name": "team-b"}], "default_tenant": "default"})
    );
    // each world on disk under data/tenants/NAME, the default one on data/ as before
    let data = dir.path().join("data");
    assert!(data.join("tenants/team-a/logs/wal").is_dir());
    assert!(data.join("tenants/team-b/tsdb").is_dir());
    assert!(data.join("logs/wal").is_dir());
}

// the mock receiver runs in this process while the flood goes on
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_at_one_tenants_ingest_limit_does_not_delay_another_tenants_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mock_b, hook_b) = webhook().await;
    let (_, hook_a) = webhook().await;
    let idle_target = crate::support::scrape::target("up_metric 1\n").await;
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        tenant_table(
            "team-a",
            &hook_a,
            &idle_target,
            "[tenants.team-a.limits]\ningest_rate_bytes = 262144\ningest_burst_bytes = 262144\n",
        ) + &tenant_table("team-b", &hook_b, &idle_target, ""),
    )
    .expect("config");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(queries.join("team-b")).expect("mkdir");
    std::fs::write(queries.join("team-b/errors.json"), errors_rule("team b")).expect("rule");
    let server = crate::support::rules::serve_rules_with_config(dir.path(), &queries, &config, "");

    // A floods: four senders of 64 KiB batches as fast as they are answered
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = Arc::new(Mutex::new((0u64, 0u64, String::new())));
    let mut flood = Vec::new();
    for sender in 0..4 {
        let (client, url) = (server.client.clone(), server.url("/_bulk"));
        let (stop, answers) = (Arc::clone(&stop), Arc::clone(&answers));
        flood.push(tokio::spawn(async move {
            let line = json!({"level": "info", "message": "x".repeat(400), "sender": sender});
            let body = bulk_body("flood", &vec![line; 150]);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let response = client
                    .post(&url)
                    .header("X-Scope-OrgID", "team-a")
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("flood POST");
                let status = response.status().as_u16();
                let text = response.text().await.expect("body");
                let mut answers = answers.lock().expect("answers");
                match status {
                    200 => answers.0 += 1,
                    429 => {
                        answers.1 += 1;
                        answers.2 = text;
                    }
                    other => panic!("flood answered {other}: {text}"),
                }
            }
        }));
    }
    wait_until("the flood is refused at A's limit", 30, || async {
        answers.lock().expect("answers").1 >= 20
    })
    .await;

    // meanwhile B's rule fires and delivers within a second of its tick; the mock stamps
    // arrivals with a monotonic clock, read against the wall clock
    let (wall, monotonic) = (chrono::Utc::now(), tokio::time::Instant::now());
    let stamp = chrono::Utc::now().to_rfc3339();
    let docs = vec![json!({"@timestamp": stamp, "level": "error", "owner": "b"}); 2];
    let response = server
        .client
        .post(server.url("/_bulk"))
        .header("X-Scope-OrgID", "team-b")
        .header("content-type", "application/x-ndjson")
        .body(bulk_body("logs", &docs))
        .send()
        .await
        .expect("B's bulk");
    assert_eq!(response.status(), 200, "B is not limited by A's limit");
    wait_until("B's alert is delivered", 30, received(&mock_b, 1)).await;
    let arrived = mock_b.lock().expect("mock").received[0].0;
    let arrived = wall + chrono::Duration::from_std(arrived - monotonic).expect("duration");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for sender in flood {
        sender.await.expect("flood sender");
    }
    let b = Caller::new(&server, "team-b");
    let (_, history) = b.get("/_lookout/alerts/history?rule=errors").await;
    let tick = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|event| event["to"] == "firing")
        .and_then(|event| event["@timestamp"].as_str())
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .expect("firing transition")
        .with_timezone(&chrono::Utc);
    let delay = arrived - tick;
    let (accepted, refused, _) = answers.lock().expect("answers").clone();
    eprintln!(
        "B's alert arrived {delay} after its tick; A's flood: {accepted} accepted, {refused} refused"
    );
    assert!(
        delay <= chrono::Duration::seconds(1),
        "B's alert of the tick at {tick} arrived {delay} after it, under A's flood"
    );

    let reason = answers.lock().expect("answers").2.clone();
    assert!(
        accepted >= 1 && refused >= 20,
        "{accepted} accepted, {refused} refused"
    );
    let reason: Value = serde_json::from_str(&reason).expect("ES error");
    assert_eq!(reason["error"]["type"], "es_rejected_execution_exception");
    assert!(
        reason["error"]["reason"]
            .as_str()
            .expect("reason")
            .contains("tenant `team-a` is over its ingest rate limit of 262144 bytes/s"),
        "{reason}"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("lookout_tenant_ingest_rate_limit_bytes{tenant=\"team-a\"} 262144\n"),
        "{metrics}"
    );
    let refused_metric = metric(
        &metrics,
        "lookout_tenant_ingest_refused_total{tenant=\"team-a\"}",
    );
    assert!(
        refused_metric >= refused as f64,
        "{refused_metric} < {refused}"
    );
    assert_eq!(
        metric(
            &metrics,
            "lookout_tenant_ingest_refused_total{tenant=\"team-b\"}"
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_and_series_limits_refuse_the_extra_and_show_it_in_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, hook) = webhook().await;
    let target = crate::support::scrape::target(
        "many{n=\"1\"} 1\nmany{n=\"2\"} 1\nmany{n=\"3\"} 1\nmany{n=\"4\"} 1\nmany{n=\"5\"} 1\n",
    )
    .await;
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        tenant_table(
            "team-a",
            &hook,
            &target,
            "[tenants.team-a.limits]\nmax_rules = 1\nmax_active_series = 3\nmax_concurrent_queries = 2\n",
        ),
    )
    .expect("config");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(queries.join("team-a")).expect("mkdir");
    for name in ["first", "second"] {
        std::fs::write(
            queries.join(format!("team-a/{name}.json")),
            errors_rule("team a"),
        )
        .expect("rule");
    }
    let server = crate::support::rules::serve_rules_with_config(dir.path(), &queries, &config, "");
    let a = Caller::new(&server, "team-a");
    wait_until("the limits refused a rule and series", 30, || async {
        let metrics = server.metrics().await;
        metric(
            &metrics,
            "lookout_tenant_rules_refused_total{tenant=\"team-a\"}",
        ) >= 1.0
            && metric(
                &metrics,
                "lookout_tenant_series_refused_samples_total{tenant=\"team-a\"}",
            ) >= 1.0
    })
    .await;
    let metrics = server.metrics().await;
    assert_eq!(
        metric(&metrics, "lookout_tenant_rules{tenant=\"team-a\"}"),
        1.0
    );
    assert_eq!(
        metric(&metrics, "lookout_tenant_max_rules{tenant=\"team-a\"}"),
        1.0
    );
    assert_eq!(
        metric(&metrics, "lookout_tenant_active_series{tenant=\"team-a\"}"),
        3.0
    );
    assert_eq!(
        metric(
            &metrics,
            "lookout_tenant_max_active_series{tenant=\"team-a\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &metrics,
            "lookout_tenant_max_concurrent_queries{tenant=\"team-a\"}"
        ),
        2.0
    );
    // the default tenant has no limits: no limit gauges, nothing refused
    assert!(
        !metrics.contains("lookout_tenant_max_rules{tenant=\"default\"}"),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "lookout_tenant_rules_refused_total{tenant=\"default\"}"
        ),
        0.0
    );
    // the rule kept out says why; the API refuses a new one and takes an edit
    let (_, files) = a.get("/_lookout/rules").await;
    assert!(files.to_string().contains("limits.max_rules"), "{files}");
    let rule: Value = serde_json::from_str(&errors_rule("team a")).expect("rule");
    let (status, body) = a.put_json("/_lookout/rules/third", &rule).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["type"], "rule_limit_reached", "{body}");
    assert!(!queries.join("team-a/third.json").exists());
    let (status, body) = a.put_json("/_lookout/rules/first", &rule).await;
    assert_eq!(
        status, 200,
        "an edit of a running rule is no new rule: {body}"
    );
    let metrics = server.metrics().await;
    assert!(
        metric(
            &metrics,
            "lookout_tenant_rules_refused_total{tenant=\"team-a\"}"
        ) >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_tenant_ships_into_that_tenant_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, hook) = webhook().await;
    let target = crate::support::scrape::target("up_metric 1\n").await;
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        tenant_table("team-a", &hook, &target, "") + &tenant_table("team-b", &hook, &target, ""),
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    let app = dir.path().join("app.json");
    crate::support::append_lines(&app, "app", 0..50);
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).expect("mkdir");
    let _agent = crate::support::Agent::start(&crate::support::agent_config(
        &agent_dir,
        &server.base,
        &[&app.display().to_string()],
        "tenant = \"team-b\"",
    ));
    let b = Caller::new(&server, "team-b");
    wait_until("the agent's lines are in team-b", 30, || async {
        let (status, body) = b.get("/logs/_count").await;
        status == 200 && body["count"] == 50
    })
    .await;
    // registered with B's ingest (its watermark gates B's rules), nowhere else
    let (_, agents) = b.get("/_lookout/agents").await;
    assert_eq!(
        agents["agents"].as_array().map(Vec::len),
        Some(1),
        "{agents}"
    );
    let a = Caller::new(&server, "team-a");
    for caller in [&a, &Caller::new(&server, "default")] {
        let (_, indices) = caller.get("/_cat/indices?format=json").await;
        assert_eq!(indices, json!([]), "{}", caller.tenant);
        let (_, agents) = caller.get("/_lookout/agents").await;
        assert_eq!(agents["agents"], json!([]), "{}", caller.tenant);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_tenant_with_its_acknowledged_documents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, hook) = webhook().await;
    let target = crate::support::scrape::target("up_metric 1\n").await;
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        tenant_table("analytics", &hook, &target, "") + &tenant_table("team-b", &hook, &target, ""),
    )
    .expect("config");
    let arguments = ["--config", &config.display().to_string()];
    let server = Server::start(&dir.path().join("data"), &arguments);
    for tenant in ["default", "analytics", "team-b"] {
        let caller = Caller::new(&server, tenant);
        let (status, body) = caller
            .post_json(
                "/logs/_doc",
                &json!({"msg": format!("before shutdown in {tenant}")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // the server's own families come once, from the default tenant, even when another
    // tenant's name sorts first
    wait_until("the disk was measured", 30, || async {
        metric(&server.metrics().await, "lookout_storage_watermark_bytes") > 0.0
    })
    .await;
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(&dir.path().join("data"), &arguments);
    for tenant in ["default", "analytics", "team-b"] {
        let caller = Caller::new(&server, tenant);
        let (status, body) = caller.get("/logs/_count?q=msg:shutdown").await;
        assert_eq!(
            (status, &body["count"]),
            (200, &json!(1)),
            "{tenant}: {body}"
        );
    }
}

/// A rule firing on any `level:error` line each second, with `severity` and the same
/// `service` label in every tenant.
fn severity_rule(severity: &str) -> String {
    json!({
        "version": 1,
        "schedule": "* * * * * *",
        "index": "logs",
        "query": "level:error",
        "window": "1h",
        "threshold": {"op": ">", "value": 0},
        "severity": severity,
        "labels": {"service": "checkout"},
        "summary": "{{ $count }} errors"
    })
    .to_string()
}

// the mock receivers run in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_inhibit_rules_do_not_mute_another_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mock_a, hook_a) = webhook().await;
    let (mock_b, hook_b) = webhook().await;
    let target = crate::support::scrape::target("up_metric 1\n").await;
    // warnings wait for their group, so the critical of the same tick is known by then
    let warnings_wait = |tenant: &str| {
        format!(
            "[[tenants.{tenant}.routing.routes]]\nmatchers = ['severity=\"warning\"']\ngroup_wait = \"2s\"\n"
        )
    };
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        tenant_table("team-a", &hook_a, &target, &warnings_wait("team-a"))
            + "[[tenants.team-a.inhibit_rules]]\nsource_matchers = ['severity=\"critical\"']\ntarget_matchers = ['severity=\"warning\"']\nequal = [\"service\"]\n"
            + &tenant_table("team-b", &hook_b, &target, &warnings_wait("team-b")),
    )
    .expect("config");
    let queries = dir.path().join("queries");
    for tenant in ["team-a", "team-b"] {
        std::fs::create_dir_all(queries.join(tenant)).expect("mkdir");
        for (name, severity) in [("down", "critical"), ("slow", "warning")] {
            std::fs::write(
                queries.join(tenant).join(format!("{name}.json")),
                severity_rule(severity),
            )
            .expect("rule");
        }
    }
    let server = crate::support::rules::serve_rules_with_config(dir.path(), &queries, &config, "");
    for tenant in ["team-a", "team-b"] {
        let docs =
            vec![json!({"@timestamp": chrono::Utc::now().to_rfc3339(), "level": "error"}); 2];
        let (status, body) = Caller::new(&server, tenant)
            .post_ndjson("/_bulk?refresh=true", bulk_body("logs", &docs))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // B has no inhibit rules of its own (and there are no top-level ones): both arrive
    wait_until("B's critical and warning", 30, received(&mock_b, 2)).await;
    let sent_b = mock_b.lock().expect("mock").received.len();
    // A's warning is inhibited by A's critical, and the history says so
    let a = Caller::new(&server, "team-a");
    wait_until("A's warning is inhibited", 30, || async {
        let (_, history) = a.get("/_lookout/alerts/history?rule=slow").await;
        history["events"].as_array().is_some_and(|events| {
            events.iter().any(|event| {
                event["decision"] == "inhibited" && event["inhibited_by"]["alertname"] == "down"
            })
        })
    })
    .await;
    let delivered_a: Vec<String> = mock_a
        .lock()
        .expect("mock")
        .received
        .iter()
        .map(|(_, body)| body.to_string())
        .collect();
    assert!(
        delivered_a.iter().all(|body| !body.contains("\"slow\"")),
        "A's warning stays muted: {delivered_a:?}"
    );
    assert!(sent_b >= 2);
    let (_, history) = Caller::new(&server, "team-b")
        .get("/_lookout/alerts/history?rule=slow")
        .await;
    let events = history["events"].as_array().expect("events");
    assert!(
        events.iter().all(|event| event["decision"] != "inhibited"),
        "B's warning was not inhibited: {history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_tenant_limit_is_audited_at_the_next_start_and_an_unchanged_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, hook) = webhook().await;
    let target = crate::support::scrape::target("up_metric 1\n").await;
    let config = dir.path().join("lookout.toml");
    let with_limit = |max_rules: u32| {
        tenant_table(
            "team-a",
            &hook,
            &target,
            &format!("[tenants.team-a.limits]\nmax_rules = {max_rules}\n"),
        )
    };
    let arguments = ["--config", &config.display().to_string()];
    let mut seen = Vec::new();
    for (max_rules, expected) in [
        (5, Some("limits.max_rules: 5 (added)")),
        (5, None),
        (2, Some("limits.max_rules: 5 → 2")),
    ] {
        std::fs::write(&config, with_limit(max_rules)).expect("config");
        let server = Server::start(&dir.path().join("data"), &arguments);
        let summaries = start_entries(&server).await;
        if let Some(expected) = expected {
            seen.push(expected);
            assert!(summaries[0].contains(expected), "{summaries:?}");
        }
        assert_eq!(
            summaries.len(),
            seen.len(),
            "one entry per change: {summaries:?}"
        );
        let (_, default) = Caller::new(&server, "default").get("/_lookout/audit").await;
        assert_eq!(
            default["entries"],
            json!([]),
            "the default tenant changed nothing"
        );
        assert_eq!(server.terminate(), Some(0));
    }
}

/// The summaries of team-a's `tenant.start` audit entries, newest first.
async fn start_entries(server: &Server) -> Vec<String> {
    let (status, body) = Caller::new(server, "team-a")
        .get("/_lookout/audit?size=100")
        .await;
    assert_eq!(status, 200, "{body}");
    body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|entry| entry["action"] == "tenant.start")
        .map(|entry| entry["summary"].as_str().unwrap_or_default().to_owned())
        .collect()
}
