//! Grafana's Elasticsearch data source against a real Lookout: the requests it sends
//! (tests/fixtures/grafana/, one `_msearch` header line and body each, in the shapes of
//! Grafana's own request fixtures) get the answers its response parser reads — bucket
//! `key` and `key_as_string`, `doc_count`, the metric values by aggregation id, hits with
//! `highlight`, `fields` and `sort`.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{Server, bulk_body};

const FIXTURES: &str = "tests/fixtures/grafana";
const NAMES: &[&str] = &[
    "metric_simple",
    "metric_complex",
    "terms_by_metric",
    "filters",
    "histogram",
    "metrics",
    "date_pattern",
    "logs",
    "logs_volume",
    "raw_data",
    "raw_document",
    "pipelines",
    "top_metrics",
];

/// Six documents, one every ten minutes over the last hour: `label` a/b, `float` 10..60,
/// `level` error for the first and fourth, `timeout` in their messages.
fn documents(now_millis: i64) -> Vec<Value> {
    (0..6)
        .map(|index| {
            let millis = now_millis - (55 - 10 * index) * 60_000;
            let time = chrono::DateTime::from_timestamp_millis(millis)
                .expect("a valid time")
                .to_rfc3339();
            let error = index == 0 || index == 3;
            json!({
                "@timestamp": time,
                "label": if index % 2 == 0 { "a" } else { "b" },
                "float": 10 * (index + 1),
                "level": if error { "error" } else { "info" },
                "message": if error { format!("upstream timeout {index}") } else { "ok".to_string() },
                "secret": "hidden",
            })
        })
        .collect()
}

/// The `_msearch` body Grafana sends for `names`, the time range filled in.
fn msearch_body(names: &[&str], from: i64, to: i64) -> String {
    let mut body = String::new();
    for name in names {
        let text = std::fs::read_to_string(Path::new(FIXTURES).join(format!("{name}.json")))
            .expect("fixture exists");
        let text = text
            .replace("\"$FROM\"", &from.to_string())
            .replace("\"$TO\"", &to.to_string());
        let fixture: Value = serde_json::from_str(&text).expect("fixture is JSON");
        body.push_str(&format!("{}\n{}\n", fixture["header"], fixture["body"]));
    }
    body
}

fn buckets(value: &Value) -> &Vec<Value> {
    value["buckets"].as_array().expect("a list of buckets")
}

fn doc_counts(value: &Value) -> u64 {
    buckets(value)
        .iter()
        .map(|bucket| bucket["doc_count"].as_u64().expect("doc_count"))
        .sum()
}

#[tokio::test]
async fn grafana_requests_get_the_answers_its_parser_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let now = chrono::Utc::now().timestamp_millis();
    let (status, body) = server
        .post_ndjson(
            "/grafana-logs/_bulk?refresh=true",
            bulk_body("grafana-logs", &documents(now)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (from, to) = (now - 3_600_000, now);
    let (status, body) = server
        .post_ndjson(
            "/_msearch?max_concurrent_shard_requests=5",
            msearch_body(NAMES, from, to),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let responses = body["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), NAMES.len(), "{body}");
    for (name, response) in NAMES.iter().zip(responses) {
        assert!(
            response.get("error").is_none(),
            "{name}: {}",
            response["error"]
        );
    }
    let answer = |name: &str| &responses[NAMES.iter().position(|n| *n == name).expect("named")];

    // time series: every bucket of the range, keys as epoch_millis strings
    let series = &answer("metric_simple")["aggregations"]["2"];
    assert!(buckets(series).len() >= 6, "{series}");
    assert_eq!(doc_counts(series), 6);
    for bucket in buckets(series) {
        let key = bucket["key"].as_f64().expect("numeric key") as i64;
        assert_eq!(bucket["key_as_string"], json!(key.to_string()), "{bucket}");
        assert!(key >= from - 600_000 && key <= to, "{bucket}");
        if bucket["doc_count"] != 0 {
            assert!(bucket["1"]["value"].is_number(), "{bucket}");
        }
    }

    // terms ordered by key, descending, each with its own date histogram
    let terms = &answer("metric_complex")["aggregations"]["4"];
    let keys: Vec<&Value> = buckets(terms).iter().map(|bucket| &bucket["key"]).collect();
    assert_eq!(keys, [&json!("b"), &json!("a")], "{terms}");
    for bucket in buckets(terms) {
        assert_eq!(doc_counts(&bucket["2"]), 3, "{bucket}");
        let with_docs: Vec<&Value> = buckets(&bucket["2"])
            .iter()
            .filter(|inner| inner["doc_count"] != 0)
            .collect();
        assert!(
            with_docs
                .iter()
                .all(|inner| inner["1"]["value"].is_number() && inner["3"]["value"].is_number())
        );
    }

    // terms ordered by a metric: b (mean 40) before a (mean 30)
    let terms = &answer("terms_by_metric")["aggregations"]["3"];
    let keys: Vec<&Value> = buckets(terms).iter().map(|bucket| &bucket["key"]).collect();
    assert_eq!(keys, [&json!("b"), &json!("a")], "{terms}");
    assert_eq!(buckets(terms)[0]["1"]["value"], json!(40.0));

    // filters: named buckets, each with a histogram
    let filters = &answer("filters")["aggregations"]["3"]["buckets"];
    assert_eq!(filters["level:error"]["doc_count"], json!(2), "{filters}");
    assert_eq!(filters["*"]["doc_count"], json!(6), "{filters}");
    assert_eq!(doc_counts(&filters["level:error"]["2"]), 2);

    // histogram on a number
    let histogram = &answer("histogram")["aggregations"]["3"];
    let keys: Vec<f64> = buckets(histogram)
        .iter()
        .map(|bucket| bucket["key"].as_f64().expect("key"))
        .collect();
    assert_eq!(keys, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0], "{histogram}");

    // the metrics Grafana asks for, as its parser reads them
    let metrics = &answer("metrics")["aggregations"]["2"];
    let bucket = buckets(metrics)
        .iter()
        .find(|bucket| bucket["doc_count"] == 1)
        .expect("a bucket with one document");
    for path in [
        &bucket["1"]["avg"],
        &bucket["1"]["std_deviation"],
        &bucket["1"]["std_deviation_bounds"]["upper"],
        &bucket["5"]["values"]["95.0"],
        &bucket["7"]["value"],
        &bucket["8"]["value"],
        &bucket["9"]["value"],
    ] {
        assert!(path.is_number(), "{bucket}");
    }
    assert_eq!(bucket["6"]["value"], json!(1), "{bucket}");

    // a date pattern in a time zone: the key printed two hours ahead of UTC
    let hours = &answer("date_pattern")["aggregations"]["2"];
    assert!(!buckets(hours).is_empty(), "{hours}");
    for bucket in buckets(hours) {
        let key = bucket["key"].as_f64().expect("key") as i64;
        let local = chrono::DateTime::from_timestamp_millis(key + 7_200_000)
            .expect("valid")
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        assert_eq!(bucket["key_as_string"], json!(local), "{bucket}");
        assert!(
            local.ends_with(":00:00"),
            "buckets start on local hours: {local}"
        );
    }

    // logs: the two timeout lines, newest first, highlighted, with nanosecond times
    let logs = &answer("logs");
    let hits = logs["hits"]["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 2, "{logs}");
    for hit in hits {
        assert!(
            hit["highlight"]["message"][0]
                .as_str()
                .expect("a highlighted message")
                .contains("@HIGHLIGHT@timeout@/HIGHLIGHT@"),
            "{hit}"
        );
        let time = hit["fields"]["@timestamp"][0].as_str().expect("a time");
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(time)
                .expect("RFC 3339")
                .timestamp_millis(),
            hit["sort"][0].as_i64().expect("sort value"),
            "{hit}"
        );
        assert!(time.ends_with('Z'), "{time}");
    }
    assert!(hits[0]["sort"][0].as_i64() > hits[1]["sort"][0].as_i64());
    assert_eq!(doc_counts(&logs["aggregations"]["1"]), 2);

    // logs volume: per level within each interval
    let volume = &answer("logs_volume")["aggregations"]["3"];
    let mut levels = std::collections::BTreeMap::new();
    for bucket in buckets(volume) {
        for level in buckets(&bucket["2"]) {
            *levels
                .entry(level["key"].as_str().expect("level").to_string())
                .or_insert(0) += level["doc_count"].as_u64().expect("count");
        }
    }
    assert_eq!(levels.get("error"), Some(&2), "{volume}");
    assert_eq!(levels.get("info"), Some(&4), "{volume}");

    // raw data and raw documents: every line, newest first, `_source` filtered
    let raw = answer("raw_data")["hits"]["hits"].as_array().expect("hits");
    assert_eq!(raw.len(), 6);
    let times: Vec<i64> = raw
        .iter()
        .map(|hit| hit["sort"][0].as_i64().expect("sort"))
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "{times:?}");
    let documents = &answer("raw_document")["hits"];
    assert_eq!(documents["total"]["value"], json!(6));
    for hit in documents["hits"].as_array().expect("hits") {
        assert!(hit["_source"].get("secret").is_none(), "{hit}");
        assert!(hit["_source"]["message"].is_string(), "{hit}");
    }

    assert_pipelines(&answer("pipelines")["aggregations"]["2"]);
    assert_top_metrics(
        &answer("top_metrics")["aggregations"]["2"],
        &self::documents(now),
    );
}

/// The pipeline metrics and rates Grafana sends, computed as Elasticsearch 8 computes them over
/// the six documents (sums 10, 20, … 60, one per ten-minute bucket, maybe an empty
/// bucket at either end of the range).
/// Grafana's "Top Metrics" per time bucket: the newest document's values in each bucket
/// holding one, an empty `top` in the empty buckets `min_doc_count: 0` adds.
fn assert_top_metrics(histogram: &Value, documents: &[Value]) {
    let mut with_documents = 0;
    for bucket in buckets(histogram) {
        let key = bucket["key"].as_f64().expect("key") as i64;
        let newest = documents
            .iter()
            .filter(|document| {
                let millis = chrono::DateTime::parse_from_rfc3339(
                    document["@timestamp"].as_str().expect("time"),
                )
                .expect("rfc3339")
                .timestamp_millis();
                (key..key + 600_000).contains(&millis)
            })
            .max_by_key(|document| document["@timestamp"].as_str().map(str::to_string));
        let top = bucket["1"]["top"].as_array().expect("top");
        match newest {
            Some(document) => {
                with_documents += 1;
                assert_eq!(top.len(), 1, "{bucket}");
                assert_eq!(top[0]["metrics"]["float"], document["float"], "{bucket}");
                assert_eq!(top[0]["metrics"]["label"], document["label"], "{bucket}");
                assert!(top[0]["sort"][0].is_number(), "{bucket}");
            }
            None => assert!(top.is_empty(), "{bucket}"),
        }
    }
    assert_eq!(with_documents, 6, "{histogram}");
}

fn assert_pipelines(histogram: &Value) {
    let buckets = buckets(histogram);
    assert_eq!(doc_counts(histogram), 6, "{histogram}");
    let filled: Vec<usize> = (0..buckets.len())
        .filter(|index| buckets[*index]["doc_count"] == 1)
        .collect();
    assert_eq!(filled.len(), 6, "{histogram}");
    assert!(
        filled.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{histogram}"
    );
    // the first bucket has no derivative or serial difference: ES omits them
    for absent in ["3", "6", "8"] {
        assert!(buckets[0].get(absent).is_none(), "{absent}: {}", buckets[0]);
    }
    let mut total = 0.0;
    for (order, index) in filled.iter().enumerate() {
        let bucket = &buckets[*index];
        let sum = 10.0 * (order as f64 + 1.0);
        total += sum;
        assert_eq!(bucket["1"]["value"], json!(sum), "{bucket}");
        assert_eq!(
            bucket["4"]["value"],
            json!(total),
            "cumulative sum: {bucket}"
        );
        assert_eq!(
            bucket["7"]["value"],
            json!(sum * 100.0),
            "bucket script: {bucket}"
        );
        // rates: per minute of the sum, per second of the documents
        assert_eq!(bucket["11"]["value"], json!(sum / 10.0), "{bucket}");
        assert_eq!(bucket["12"]["value"], json!(1.0 / 600.0), "{bucket}");
        let median = bucket["9"]["values"]["50.0"].as_f64().expect("a median");
        assert_eq!(bucket["10"]["value"], json!(median - total), "{bucket}");
        if order == 0 {
            // the window before the first value is empty: null, as unweightedAvg's NaN
            assert_eq!(bucket["5"]["value"], Value::Null, "{bucket}");
            continue;
        }
        // after a filled bucket: a rise of 10 over 10 minutes, 1 a minute
        assert_eq!(bucket["3"]["value"], json!(10.0), "derivative: {bucket}");
        assert_eq!(bucket["3"]["normalized_value"], json!(1.0), "{bucket}");
        assert_eq!(bucket["6"]["value"], json!(10.0), "serial diff: {bucket}");
        assert_eq!(
            bucket["8"]["value"],
            json!(0.0),
            "count derivative: {bucket}"
        );
        assert_eq!(
            bucket["13"]["value"],
            json!(1.0),
            "rate derivative: {bucket}"
        );
        // the mean of the (at most) two values before this one
        let window = if order == 1 { 10.0 } else { sum - 15.0 };
        assert_eq!(
            bucket["5"]["value"],
            json!(window),
            "moving average: {bucket}"
        );
    }
    // empty buckets: no moving_fn value (skip), zeros in the insert_zeros script
    for (index, bucket) in buckets.iter().enumerate() {
        if filled.contains(&index) {
            continue;
        }
        assert!(
            bucket.get("5").is_none() && bucket.get("7").is_none(),
            "{bucket}"
        );
        assert_eq!(
            bucket["4"]["value"],
            json!(if index < filled[0] { 0.0 } else { 210.0 })
        );
        assert_eq!(bucket["10"]["value"], json!(0.0), "{bucket}");
    }
}

/// Elasticsearch 8 has no `moving_avg` (Grafana's legacy moving average) and runs no
/// arbitrary Painless here: each answers a 400 that names it and says what to use.
#[tokio::test]
async fn removed_and_unsupported_pipelines_are_clear_400s() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let now = chrono::Utc::now().timestamp_millis();
    let (status, body) = server
        .post_ndjson(
            "/grafana-logs/_bulk?refresh=true",
            bulk_body("grafana-logs", &documents(now)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let histogram = |pipeline: Value| {
        json!({"size": 0, "aggs": {"2": {
            "date_histogram": {"field": "@timestamp", "fixed_interval": "10m", "min_doc_count": 0},
            "aggs": {"1": {"sum": {"field": "float"}}, "3": pipeline}}}})
    };
    for (request, says) in [
        (
            histogram(
                json!({"moving_avg": {"buckets_path": "1", "model": "holt", "window": 5, "settings": {"alpha": 0.5, "beta": 0.5}}}),
            ),
            "Elasticsearch 8 removed it; use `moving_fn`",
        ),
        (
            histogram(
                json!({"moving_fn": {"buckets_path": "1", "window": 5, "script": "values.length > 0 ? values[0] : 0"}}),
            ),
            "the script `values.length > 0 ? values[0] : 0` is not supported",
        ),
        (
            histogram(
                json!({"bucket_script": {"buckets_path": {"a": "1"}, "script": "Math.sqrt(params.a)"}}),
            ),
            "the script `Math.sqrt(params.a)` is not supported",
        ),
        (
            histogram(json!({"derivative": {"buckets_path": "9"}})),
            "No aggregation found for path [9]",
        ),
        (
            histogram(
                json!({"moving_fn": {"buckets_path": "1", "window": 5, "script": "MovingFunctions.holtWinters(values, 0.3, 0.1, 0.1, 4, false)"}}),
            ),
            "Holt-Winters aggregation requires at least (2 * period == 2 * 4 == 8) data-points",
        ),
        (
            json!({"size": 0, "aggs": {"d": {"derivative": {"buckets_path": "_count"}}}}),
            "must have a histogram, date_histogram or auto_date_histogram as parent",
        ),
    ] {
        let (status, answer) = server.post_json("/grafana-*/_search", &request).await;
        assert_eq!(status, 400, "{request}: {answer}");
        let reason = answer["error"]["reason"].as_str().expect("a reason");
        assert!(reason.contains(says), "{request}: {reason}");
    }
}

/// Keys in any order: every fixture's body with its objects' keys reversed answers the
/// same aggregations and hits.
#[tokio::test]
async fn grafana_requests_answer_the_same_with_keys_reversed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let now = chrono::Utc::now().timestamp_millis();
    let (status, body) = server
        .post_ndjson(
            "/grafana-logs/_bulk?refresh=true",
            bulk_body("grafana-logs", &documents(now)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let forward = msearch_body(NAMES, now - 3_600_000, now);
    let reversed: String = forward
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("JSON line");
            format!("{}\n", reverse_keys(&value))
        })
        .collect();
    let (_, first) = server.post_ndjson("/_msearch", forward).await;
    let (_, second) = server.post_ndjson("/_msearch", reversed).await;
    for (one, other) in first["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .zip(second["responses"].as_array().expect("responses"))
    {
        assert_eq!(one["aggregations"], other["aggregations"]);
        assert_eq!(one["hits"]["total"], other["hits"]["total"]);
    }
}

/// `value` as JSON text with every object's keys in reverse order (serde_json's own
/// map sorts them, so the text is written here).
fn reverse_keys(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let members: Vec<String> = map
                .iter()
                .rev()
                .map(|(key, value)| {
                    format!("{}:{}", Value::String(key.clone()), reverse_keys(value))
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(reverse_keys).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// Grafana's field pickers: `_mapping` and `_field_caps` on the index pattern.
#[tokio::test]
async fn field_pickers_read_the_index_pattern_mapping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let now = chrono::Utc::now().timestamp_millis();
    let (status, body) = server
        .post_ndjson(
            "/grafana-logs/_bulk?refresh=true",
            bulk_body("grafana-logs", &documents(now)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, mapping) = server.get("/grafana-*/_mapping").await;
    assert_eq!(status, 200, "{mapping}");
    let properties = &mapping["grafana-logs"]["mappings"]["properties"];
    assert_eq!(properties["@timestamp"]["type"], json!("date"), "{mapping}");
    assert!(properties["float"]["type"].is_string(), "{mapping}");
    let (status, caps) = server.get("/grafana-*/_field_caps?fields=*").await;
    assert_eq!(status, 200, "{caps}");
    assert!(caps["fields"]["level"].is_object(), "{caps}");
}

/// What Grafana's raw document and table panels and Kibana-style clients also send:
/// `track_total_hits` as true, false or a number, `_source` includes and excludes with
/// wildcards, and `hard_bounds` (numbers or date math) that keep buckets within them.
#[tokio::test]
async fn total_hits_source_filtering_and_hard_bounds_answer_as_elasticsearch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let now = chrono::Utc::now().timestamp_millis();
    let (status, body) = server
        .post_ndjson(
            "/grafana-logs/_bulk?refresh=true",
            bulk_body("grafana-logs", &documents(now)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let search = |body: Value| {
        let server = &server;
        async move {
            let (status, answer) = server.post_json("/grafana-*/_search", &body).await;
            assert_eq!(status, 200, "{body}: {answer}");
            answer
        }
    };
    let answer = search(json!({"size": 0, "track_total_hits": 2})).await;
    assert_eq!(
        answer["hits"]["total"],
        json!({"value": 2, "relation": "gte"})
    );
    let answer = search(json!({"size": 0, "track_total_hits": true})).await;
    assert_eq!(
        answer["hits"]["total"],
        json!({"value": 6, "relation": "eq"})
    );
    let answer = search(json!({"size": 0, "track_total_hits": false})).await;
    assert!(answer["hits"].get("total").is_none(), "{answer}");

    let answer =
        search(json!({"size": 6, "_source": {"includes": ["l*", "float"], "excludes": ["label"]}}))
            .await;
    for hit in answer["hits"]["hits"].as_array().expect("hits") {
        let keys: Vec<&String> = hit["_source"]
            .as_object()
            .expect("a source")
            .keys()
            .collect();
        assert_eq!(keys, ["float", "level"], "{hit}");
    }
    let answer = search(json!({"size": 1, "_source": false})).await;
    assert!(
        answer["hits"]["hits"][0].get("_source").is_none(),
        "{answer}"
    );

    let answer = search(json!({"size": 0, "aggs": {
        "h": {"histogram": {"field": "float", "interval": 10, "hard_bounds": {"min": 20, "max": 40}}},
        "d": {"date_histogram": {"field": "@timestamp", "fixed_interval": "10m", "min_doc_count": 0,
            "hard_bounds": {"min": "now-30m", "max": "now"}}}}}))
    .await;
    let keys: Vec<f64> = buckets(&answer["aggregations"]["h"])
        .iter()
        .map(|bucket| bucket["key"].as_f64().expect("a key"))
        .collect();
    assert_eq!(keys, [20.0, 30.0, 40.0], "{answer}");
    let dates = buckets(&answer["aggregations"]["d"]);
    assert!(!dates.is_empty(), "{answer}");
    for bucket in dates {
        let key = bucket["key"].as_f64().expect("a key") as i64;
        assert!(key >= now - 40 * 60_000 && key <= now, "{bucket}");
    }
    // the documents 25, 15 and 5 minutes old
    assert_eq!(doc_counts(&answer["aggregations"]["d"]), 3, "{answer}");
}

/// `top_hits` and `top_metrics` answer per bucket from the documents themselves, also
/// where a field exists in one daily partition only (tantivy's own `top_hits` panicked on
/// that), with clear errors for what they cannot do.
#[tokio::test]
async fn top_hits_and_top_metrics_answer_per_bucket_across_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    // two days: `latency_ms` only on the second, `region` only on the first
    let day = |days_ago: i64, time: &str| {
        let date = (chrono::Utc::now() - chrono::Duration::days(days_ago)).date_naive();
        format!("{date}T{time}Z")
    };
    let documents = vec![
        json!({"@timestamp": day(2, "10:00:00"), "service": "cart", "region": "eu", "n": 1}),
        json!({"@timestamp": day(2, "11:00:00"), "service": "checkout", "region": "us", "n": 2}),
        json!({"@timestamp": day(1, "09:00:00"), "service": "cart", "latency_ms": 120, "n": 3}),
        json!({"@timestamp": day(1, "09:30:00"), "service": "cart", "latency_ms": 80, "n": 4}),
        json!({"@timestamp": day(1, "10:00:00"), "service": "checkout", "latency_ms": 300, "n": 5}),
    ];
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("shop", &documents))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    let search = |body: Value| {
        let server = &server;
        async move { server.post_json("/shop/_search", &body).await }
    };

    // the newest line per service, its source filtered, the bucket's total
    let (status, answer) = search(json!({"size": 0, "aggs": {"by_service": {
        "terms": {"field": "service", "order": {"_key": "asc"}},
        "aggs": {"newest": {"top_hits": {"size": 1, "sort": [{"@timestamp": {"order": "desc"}}],
                                          "_source": {"includes": ["n", "latency_ms"]}}}}}}}))
    .await;
    assert_eq!(status, 200, "{answer}");
    let services = buckets(&answer["aggregations"]["by_service"]);
    let newest: Vec<(&Value, &Value, &Value)> = services
        .iter()
        .map(|bucket| {
            let hits = &bucket["newest"]["hits"];
            (
                &bucket["key"],
                &hits["total"]["value"],
                &hits["hits"][0]["_source"],
            )
        })
        .collect();
    assert_eq!(
        newest,
        [
            (
                &json!("cart"),
                &json!(3),
                &json!({"n": 4, "latency_ms": 80})
            ),
            (
                &json!("checkout"),
                &json!(2),
                &json!({"n": 5, "latency_ms": 300})
            ),
        ]
    );
    assert_eq!(
        services[0]["newest"]["hits"]["hits"][0]["_index"],
        json!("shop")
    );

    // the slowest request per day, and a field the first day never had
    let (status, answer) = search(json!({"size": 0, "aggs": {"days": {
        "date_histogram": {"field": "@timestamp", "calendar_interval": "day"},
        "aggs": {"slowest": {"top_metrics": {"metrics": [{"field": "latency_ms"}, {"field": "region"}],
                                            "sort": {"latency_ms": "desc"}}}}}}}))
    .await;
    assert_eq!(status, 200, "{answer}");
    let days: Vec<&Value> = buckets(&answer["aggregations"]["days"])
        .iter()
        .map(|bucket| &bucket["slowest"]["top"][0]["metrics"])
        .collect();
    assert_eq!(days.len(), 2, "{answer}");
    assert_eq!(days[1], &json!({"latency_ms": 300, "region": null}));
    assert_eq!(days[0]["latency_ms"], Value::Null, "{answer}");

    // under a filters aggregation, with its other bucket
    let (status, answer) = search(json!({"size": 0, "aggs": {"kinds": {
        "filters": {"filters": {"slow": {"range": {"latency_ms": {"gte": 100}}}}, "other_bucket_key": "rest"},
        "aggs": {"top": {"top_metrics": {"metrics": {"field": "n"}, "sort": [{"n": "asc"}], "size": 5}}}}}}))
    .await;
    assert_eq!(status, 200, "{answer}");
    let values = |bucket: &str| -> Vec<Value> {
        answer["aggregations"]["kinds"]["buckets"][bucket]["top"]["top"]
            .as_array()
            .expect("top")
            .iter()
            .map(|entry| entry["metrics"]["n"].clone())
            .collect()
    };
    assert_eq!(values("slow"), [json!(3), json!(5)]);
    assert_eq!(values("rest"), [json!(1), json!(2), json!(4)]);

    // one search per bucket, bounded: more buckets than that is refused before any runs
    let many: Vec<Value> = (0..1001)
        .map(|n| json!({"@timestamp": day(1, "12:00:00"), "order": format!("o-{n}")}))
        .collect();
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("orders", &many))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)));
    let (status, answer) = server
        .post_json(
            "/orders/_search",
            &json!({"size": 0, "aggs": {"o": {"terms": {"field": "order", "size": 2000},
                     "aggs": {"t": {"top_hits": {"size": 1}}}}}}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("1001 buckets ask for top_hits")),
        "{answer}"
    );

    // what they cannot do is a 400 that says so
    for (request, expected) in [
        (
            json!({"aggs": {"t": {"top_metrics": {"metrics": {"field": "n"}}}}}),
            "[sort] is required",
        ),
        (
            json!({"aggs": {"t": {"top_hits": {"size": 500}}}}),
            "must be less than or equal to: [100]",
        ),
        (
            json!({"aggs": {"t": {"top_hits": {"highlight": {"fields": {"*": {}}}}}}}),
            "[highlight] is not supported",
        ),
        (
            json!({"aggs": {"s": {"multi_terms": {"terms": [{"field": "service"}, {"field": "n"}]}, "aggs": {"t": {"top_hits": {}}}}}}),
            "not supported under a [multi_terms] aggregation",
        ),
    ] {
        let (status, answer) = search(request).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains(expected)),
            "{expected}: {answer}"
        );
    }
}
