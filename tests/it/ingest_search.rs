use serde_json::{Value, json};

use crate::support::{Server, ago, bulk_body};

fn log_line(seq: usize, status: Value, service: &str, seconds_ago: i64) -> Value {
    json!({
        "@timestamp": ago(seconds_ago),
        "level": if seq.is_multiple_of(10) { "error" } else { "info" },
        "service": service,
        "http": {"method": "GET", "path": format!("/api/{service}/{seq}"), "status": status, "bytes": seq * 10},
        "latency": seq as f64 / 1000.0,
        "message": format!("request {seq} handled by {service}"),
    })
}

#[tokio::test]
async fn bulk_then_count_is_exact_and_status_matches_numbers_and_strings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut docs = Vec::new();
    for seq in 0..300 {
        let status = match seq % 3 {
            0 => json!(500),
            1 => json!("500"),
            _ => json!(200),
        };
        let service = if seq % 2 == 0 { "checkout" } else { "cart" };
        let mut doc = log_line(seq, status.clone(), service, 30);
        doc["status"] = status;
        docs.push(doc);
    }
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=wait_for", bulk_body("logs", &docs))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"], false, "{body}");
    assert_eq!(body["items"].as_array().expect("items").len(), 300);
    assert_eq!(body["items"][0]["index"]["status"], 201);
    assert_eq!(body["items"][0]["index"]["result"], "created");

    assert_eq!(server.count("logs", "*").await, 300);
    // 200 of the 300 have status 500, half as a number and half as a string
    assert_eq!(server.count("logs", "status:500").await, 200);
    assert_eq!(
        server
            .count("logs", "status:500 AND service:checkout")
            .await,
        100
    );
    let (_, body) = server
        .post_json("/logs/_count", &json!({"query": {"term": {"status": 500}}}))
        .await;
    assert_eq!(body["count"], 200, "{body}");
    let (_, body) = server
        .post_json(
            "/logs/_count",
            &json!({"query": {"term": {"status": "500"}}}),
        )
        .await;
    assert_eq!(body["count"], 200, "{body}");
    let (_, body) = server
        .post_json(
            "/logs/_count",
            &json!({"query": {"term": {"service.keyword": "checkout"}}}),
        )
        .await;
    assert_eq!(body["count"], 150, "{body}");
    let (_, body) = server
        .post_json(
            "/logs/_count",
            &json!({"query": {"match": {"message": "handled CHECKOUT"}}}),
        )
        .await;
    assert_eq!(
        body["count"], 300,
        "match is analysed and ORs its words: {body}"
    );
    let (_, body) = server
        .post_json("/logs/_count", &json!({"query": {"match": {"message": {"query": "handled checkout", "operator": "and"}}}}))
        .await;
    assert_eq!(body["count"], 150, "{body}");
    assert_eq!(
        server.count("logs", "http.status:[500 TO 599]").await,
        100,
        "ranges see numbers only"
    );
    assert_eq!(server.count("logs", "http.bytes:>=2990").await, 1);
    assert_eq!(
        server
            .count("logs", "_exists_:http.path AND NOT level:error")
            .await,
        270
    );
    assert_eq!(
        server.count("logs", "http.path:\\/api\\/cart\\/1*").await,
        56
    );
    assert_eq!(
        server.count("logs", "message:\"handled by cart\"").await,
        150
    );
    assert_eq!(
        server.count("logs", "@timestamp:[now-5m TO now]").await,
        300
    );
    assert_eq!(server.count("logs", "@timestamp:<now-5m").await, 0);
    // no field: every field the index has seen, like ES' default_field `*`
    assert_eq!(server.count("logs", "handled").await, 300);
    assert_eq!(
        server.count("logs", "checkout").await,
        150,
        "a one-word value is found as its keyword"
    );
    assert_eq!(server.count("logs", "CHECKOUT").await, 150);
    assert_eq!(server.count("logs", "\"request 7 handled\"").await, 1);
    assert_eq!(
        server.count("logs", "2990").await,
        1,
        "numbers are searched when the text is one"
    );
}

#[tokio::test]
async fn search_returns_es_shapes_with_sort_paging_source_filtering_and_aggregations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let docs: Vec<Value> = (0..50)
        .map(|seq| {
            log_line(
                seq,
                json!(if seq < 10 { 500 } else { 200 }),
                if seq % 2 == 0 { "checkout" } else { "cart" },
                600 - seq as i64,
            )
        })
        .collect();
    let (status, _) = server
        .post_ndjson("/logs/_bulk?refresh=true", bulk_body("logs", &docs))
        .await;
    assert_eq!(status, 200);

    let (status, body) = server
        .post_json(
            "/logs/_search",
            &json!({
                "query": {"bool": {"filter": [{"range": {"@timestamp": {"gte": "now-1h"}}}], "must_not": [{"term": {"http.status": 500}}]}},
                "sort": [{"@timestamp": "desc"}],
                "from": 5, "size": 3,
                "_source": ["http.*", "service"],
                "aggs": {
                    "per_service": {"terms": {"field": "service.keyword"}},
                    "per_minute": {"date_histogram": {"field": "@timestamp", "calendar_interval": "minute"}},
                    "latency": {"avg": {"field": "latency"}}
                }
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["timed_out"], false);
    assert!(body["took"].is_u64());
    assert_eq!(body["_shards"]["failed"], 0);
    assert_eq!(
        body["hits"]["total"],
        json!({"value": 40, "relation": "eq"})
    );
    let hits = body["hits"]["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 3);
    // newest first: seq 49, 48, … so from=5 starts at seq 44
    assert_eq!(hits[0]["_source"]["http"]["path"], "/api/checkout/44");
    assert_eq!(hits[0]["_index"], "logs");
    assert!(hits[0]["_id"].is_string());
    assert!(
        hits[0]["_source"].get("message").is_none(),
        "source filtering drops message"
    );
    assert!(hits[0]["sort"][0].is_i64());
    let buckets = body["aggregations"]["per_service"]["buckets"]
        .as_array()
        .expect("terms buckets");
    assert_eq!(
        buckets
            .iter()
            .map(|bucket| bucket["doc_count"].as_u64().expect("count"))
            .sum::<u64>(),
        40
    );
    assert!(
        !body["aggregations"]["per_minute"]["buckets"]
            .as_array()
            .expect("histogram")
            .is_empty()
    );
    assert!(body["aggregations"]["latency"]["value"].as_f64().is_some());

    let (status, body) = server.get("/logs/_search?q=service:cart&size=0").await;
    assert_eq!(status, 200);
    assert_eq!(body["hits"]["total"]["value"], 25);
}

#[tokio::test]
async fn index_patterns_span_indices_and_partitions_and_scroll_pages_through_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    for (index, hours) in [("logs-checkout", [0i64, 3, 7]), ("logs-cart", [1, 2, 30])] {
        let mut docs = Vec::new();
        for hour in hours {
            for seq in 0..40 {
                docs.push(log_line(seq, json!(200), index, hour * 3600 + 60));
            }
        }
        let (status, body) = server.post_ndjson("/_bulk", bulk_body(index, &docs)).await;
        assert_eq!(status, 200);
        assert_eq!(body["errors"], false);
    }
    let (status, _) = server.post_json("/_refresh", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(server.count("logs-*", "*").await, 240);
    assert_eq!(server.count("logs-checkout,logs-cart", "*").await, 240);
    assert_eq!(
        server.count("logs-*", "@timestamp:[now-4h TO now]").await,
        160
    );
    let (status, body) = server.get("/nope-*/_count").await;
    assert_eq!(
        (status, &body["count"]),
        (200, &json!(0)),
        "a pattern matching nothing is empty, not an error"
    );

    let partitions = std::fs::read_dir(dir.path().join("logs/indices/logs-cart"))
        .expect("index dir")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with('p'))
        .count();
    assert_eq!(
        partitions, 3,
        "events of three different hours landed in three partitions"
    );

    let (status, first) = server
        .post_json(
            "/logs-*/_search?scroll=1m",
            &json!({"size": 70, "sort": ["_doc"]}),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let mut seen: std::collections::HashSet<String> = first["hits"]["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| hit["_id"].as_str().expect("id").to_string())
        .collect();
    let scroll_id = first["_scroll_id"].as_str().expect("scroll id").to_string();
    loop {
        let (status, page) = server
            .post_json(
                "/_search/scroll",
                &json!({"scroll": "1m", "scroll_id": scroll_id}),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let hits = page["hits"]["hits"].as_array().expect("hits");
        if hits.is_empty() {
            break;
        }
        for hit in hits {
            assert!(
                seen.insert(hit["_id"].as_str().expect("id").to_string()),
                "a scroll never repeats a hit"
            );
        }
    }
    assert_eq!(seen.len(), 240);
    let response = server
        .client
        .delete(server.url("/_search/scroll"))
        .json(&json!({"scroll_id": scroll_id}))
        .send()
        .await
        .expect("clear");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn documents_by_id_index_overwrites_and_create_conflicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let response = server
        .client
        .put(server.url("/logs/_doc/a1?refresh=true"))
        .json(&json!({"msg": "first", "@timestamp": ago(10)}))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 201);
    let response = server
        .client
        .put(server.url("/logs/_doc/a1?refresh=true"))
        .json(&json!({"msg": "second", "@timestamp": ago(7200)}))
        .send()
        .await
        .expect("put again");
    assert_eq!(response.status(), 200, "index on an existing id overwrites");
    let (status, doc) = server.get("/logs/_doc/a1").await;
    assert_eq!(status, 200);
    assert_eq!(doc["_source"]["msg"], "second");
    assert_eq!(
        server.count("logs", "*").await,
        1,
        "the old version in another partition is gone"
    );

    let body = "{\"create\":{\"_index\":\"logs\",\"_id\":\"a1\"}}\n{\"msg\":\"third\"}\n{\"create\":{\"_index\":\"logs\",\"_id\":\"b2\"}}\n{\"msg\":\"new\"}\n";
    let (_, result) = server.post_ndjson("/_bulk?refresh=true", body).await;
    assert_eq!(result["errors"], true);
    assert_eq!(result["items"][0]["create"]["status"], 409);
    assert_eq!(
        result["items"][0]["create"]["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(result["items"][1]["create"]["status"], 201);
    let (status, _) = server.get("/logs/_doc/missing").await;
    assert_eq!(status, 404);
    let response = server
        .client
        .delete(server.url("/logs/_doc/b2?refresh=true"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 200);
    assert_eq!(server.count("logs", "*").await, 1);
}

#[tokio::test]
async fn cluster_info_cat_indices_mapping_and_index_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let response = server
        .client
        .get(server.url("/"))
        .send()
        .await
        .expect("root");
    assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
    assert_eq!(response.headers()["content-type"], "application/json");
    let (_, root) = crate::support::decode(response).await;
    assert!(
        root["version"]["number"]
            .as_str()
            .expect("version")
            .starts_with("8.")
    );
    assert_eq!(root["tagline"], "You Know, for Search");

    let response = server
        .client
        .put(server.url("/app"))
        .send()
        .await
        .expect("create index");
    assert_eq!(response.status(), 200);
    let response = server
        .client
        .put(server.url("/app"))
        .send()
        .await
        .expect("create again");
    assert_eq!(response.status(), 400);
    let (_, body) = server
        .post_ndjson(
            "/app/_bulk?refresh=true",
            bulk_body(
                "app",
                &[json!({"user": {"id": 7, "name": "ann"}, "ok": true})],
            ),
        )
        .await;
    assert_eq!(body["errors"], false);
    let (_, mapping) = server.get("/app/_mapping").await;
    assert_eq!(
        mapping["app"]["mappings"]["properties"]["user"]["properties"]["id"]["type"],
        "long"
    );
    assert_eq!(
        mapping["app"]["mappings"]["properties"]["user"]["properties"]["name"]["fields"]["keyword"]
            ["type"],
        "keyword"
    );
    let (_, cat) = server.get("/_cat/indices?format=json").await;
    assert_eq!(cat[0]["index"], "app");
    assert_eq!(cat[0]["docs.count"], "1");
    let text = server
        .client
        .get(server.url("/_cat/indices?v"))
        .send()
        .await
        .expect("cat")
        .text()
        .await
        .expect("text");
    assert!(text.starts_with("health status index"), "{text}");
    assert_eq!(
        server
            .client
            .head(server.url("/app"))
            .send()
            .await
            .expect("head")
            .status(),
        200
    );
    assert_eq!(
        server
            .client
            .delete(server.url("/app"))
            .send()
            .await
            .expect("delete")
            .status(),
        200
    );
    assert_eq!(
        server
            .client
            .head(server.url("/app"))
            .send()
            .await
            .expect("head")
            .status(),
        404
    );
    assert!(
        !dir.path().join("logs/indices/app").exists(),
        "files are removed"
    );

    let metrics = server.metrics().await;
    // the document of `app`, and the audit trail's entry of its deletion (.lookout-audit)
    assert!(metrics.contains("lookout_ingest_docs_total 2"), "{metrics}");
    assert!(metrics.contains("# TYPE lookout_wal_sync_seconds histogram"));
}

#[tokio::test]
async fn acknowledged_documents_become_searchable_without_an_explicit_refresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (status, _) = server
        .post_ndjson(
            "/_bulk",
            bulk_body("logs", &[json!({"fresh": true, "@timestamp": ago(1)})]),
        )
        .await;
    assert_eq!(status, 200);
    let acknowledged = std::time::Instant::now();
    // the default refresh interval is 500 ms; allow CI some slack, but not forever
    loop {
        let (_, body) = server.get("/logs/_count?q=fresh:true").await;
        if body["count"] == 1 {
            break;
        }
        assert!(
            acknowledged.elapsed() < std::time::Duration::from_secs(3),
            "not searchable 3 s after the acknowledgment"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(acknowledged.elapsed() < std::time::Duration::from_secs(3));
}

/// `lookout_index_refreshes_skipped_total` from the metrics text.
fn skipped_refreshes(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("lookout_index_refreshes_skipped_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_search_idle_index_pauses_background_refreshes_and_the_next_search_sees_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        "[index]\nrefresh_interval = \"100ms\"\nsearch_idle_after = \"1s\"\n",
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    // no search for a second: idle, and the refresher skips its ticks (the metrics
    // endpoint is not a search)
    crate::support::wait_until("the index goes search-idle", 30, || async {
        let metrics = server.metrics().await;
        metrics.contains("lookout_index_search_idle 1") && skipped_refreshes(&metrics) > 0
    })
    .await;
    let lines: Vec<Value> = (0..50)
        .map(|seq| json!({"idle": true, "seq": seq, "@timestamp": ago(1)}))
        .collect();
    let (status, body) = server
        .post_ndjson("/_bulk", bulk_body("logs", &lines))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    // the first search refreshes before it reads: everything acknowledged is there
    assert_eq!(server.count("logs", "idle:true").await, 50);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("lookout_index_search_idle 0"),
        "a search wakes it"
    );
}

#[tokio::test]
async fn msearch_and_field_caps_answer_in_es_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let docs: Vec<Value> = (0..10)
        .map(|seq| log_line(seq, json!(if seq < 4 { 500 } else { 200 }), "checkout", 30))
        .collect();
    server
        .post_ndjson("/logs/_bulk?refresh=true", bulk_body("logs", &docs))
        .await;
    let body = "{\"index\":\"logs\"}\n{\"query\":{\"term\":{\"http.status\":500}},\"size\":0}\n{}\n{\"query\":{\"match_all\":{}},\"size\":1}\n{\"index\":\"missing\"}\n{}\n";
    let (status, result) = server.post_ndjson("/_msearch", body).await;
    assert_eq!(status, 200, "{result}");
    let responses = result["responses"].as_array().expect("responses");
    assert_eq!(responses[0]["hits"]["total"]["value"], 4);
    assert_eq!(responses[0]["status"], 200);
    assert_eq!(
        responses[1]["hits"]["hits"].as_array().expect("hits").len(),
        1
    );
    assert_eq!(responses[2]["status"], 404);
    assert_eq!(responses[2]["error"]["type"], "index_not_found_exception");

    let (status, caps) = server.get("/logs/_field_caps?fields=http.*,service*").await;
    assert_eq!(status, 200);
    assert_eq!(caps["indices"], json!(["logs"]));
    assert_eq!(caps["fields"]["http.status"]["long"]["aggregatable"], true);
    assert_eq!(
        caps["fields"]["service.keyword"]["keyword"]["type"],
        "keyword"
    );
    assert!(
        caps["fields"].get("message").is_none(),
        "only the requested fields"
    );
}

/// `filter_path` as Beats send it to `_bulk`, and on the search API through the middleware;
/// errors are never filtered.
#[tokio::test]
async fn filter_path_shrinks_bulk_and_search_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let body = "{\"index\":{\"_index\":\"logs\"}}\n{\"msg\":\"one\"}\n{\"create\":{\"_index\":\"logs\",\"_id\":\"x\"}}\n{\"msg\":\"two\"}\n{\"create\":{\"_index\":\"logs\",\"_id\":\"x\"}}\n{\"msg\":\"again\"}\n";
    let (status, answer) = server
        .post_ndjson(
            "/_bulk?refresh=true&filter_path=errors,items.*.error,items.*.status",
            body,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"errors": true, "items": [
            {"index": {"status": 201}},
            {"create": {"status": 201}},
            {"create": {"status": 409, "error": {
                "type": "version_conflict_engine_exception",
                "reason": "[x]: version conflict, document already exists (current version [1])",
                "index": "logs"}}}
        ]})
    );
    let (_, answer) = server
        .post_ndjson(
            "/_bulk?filter_path=errors,items.*.error",
            "{\"index\":{\"_index\":\"logs\"}}\n{\"msg\":\"three\"}\n",
        )
        .await;
    assert_eq!(
        answer,
        json!({"errors": false}),
        "successful items leave nothing"
    );

    let (status, answer) = server
        .post_json(
            "/logs/_search?filter_path=hits.total.value,hits.hits._source.msg&refresh=true",
            &json!({"query": {"term": {"_id": "x"}}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"hits": {"total": {"value": 1}, "hits": [{"_source": {"msg": "two"}}]}})
    );
    let (_, answer) = server
        .post_json("/logs/_count?filter_path=-_shards", &json!({}))
        .await;
    assert_eq!(answer, json!({"count": 3}));
    let (status, answer) = server
        .post_json(
            "/logs/_search?filter_path=took",
            &json!({"query": {"bogus": {}}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]["reason"].as_str().is_some(),
        "errors stay whole: {answer}"
    );
}

/// Values of several words have no keyword term (only words and the fast column, see
/// `index::tokenizer`): `term`, `terms`, patterns and `.keyword` still match whole values
/// exactly, and a value over 256 bytes is found by its words only.
#[tokio::test]
async fn strings_of_several_words_match_exactly_by_term_and_by_patterns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let long = "word ".repeat(60);
    let docs = vec![
        json!({"@timestamp": ago(30), "host": "checkout-7f3a-01", "tags": ["a b", "c"],
               "message": "GET /api/v1/cart/2989 returned 200"}),
        json!({"@timestamp": ago(30), "host": "checkout-7f3a-02",
               "message": "GET /api/v1/cart/2989 returned 200 in 5ms"}),
        json!({"@timestamp": ago(30), "host": "Checkout-7f3a-01",
               "message": "get api v1 cart 2989 returned 200"}),
        json!({"@timestamp": ago(30), "host": "web-01", "message": long.clone()}),
    ];
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=wait_for", bulk_body("logs", &docs))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"], false, "{body}");
    let cases = [
        (
            json!({"term": {"message": "GET /api/v1/cart/2989 returned 200"}}),
            1,
        ),
        (
            json!({"term": {"message.keyword": "GET /api/v1/cart/2989 returned 200"}}),
            1,
        ),
        (json!({"term": {"message.keyword": "GET /api/v1/cart"}}), 0),
        (
            json!({"terms": {"host.keyword": ["checkout-7f3a-01", "checkout-7f3a-02"]}}),
            2,
        ),
        (
            json!({"term": {"host": {"value": "CHECKOUT-7F3A-01", "case_insensitive": true}}}),
            2,
        ),
        (json!({"term": {"tags": "a b"}}), 1),
        (json!({"wildcard": {"host": "checkout-*-0?"}}), 2),
        (json!({"wildcard": {"message.keyword": "*returned 200"}}), 2),
        (json!({"prefix": {"message": "GET /api/v1"}}), 2),
        (
            json!({"regexp": {"host.keyword": "[cC]heckout-7f3a-0[12]"}}),
            3,
        ),
        (json!({"term": {"message.keyword": long.clone()}}), 0),
        (json!({"match": {"message": "word"}}), 1),
        (json!({"match": {"message": "cart 2989"}}), 3),
    ];
    for (query, expected) in cases {
        let (status, body) = server
            .post_json("/logs/_count", &json!({"query": query}))
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(body["count"], expected, "{query}: {body}");
    }
    let (_, body) = server
        .post_json(
            "/logs/_search",
            &json!({"size": 0, "aggs": {"hosts": {"terms": {"field": "host.keyword"}}}}),
        )
        .await;
    assert_eq!(
        body["aggregations"]["hosts"]["buckets"]
            .as_array()
            .map(Vec::len),
        Some(4),
        "{body}"
    );
}
