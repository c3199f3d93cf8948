//! `search_after` through the real binary: paging with the last hit's sort values visits
//! every document exactly once, in order, across segments and partitions and through
//! runs of equal timestamps — with Grafana's log request (`@timestamp` and `_doc`, both
//! directions, as its log context asks) and with a field sort.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::{Server, bulk_body};

/// 72 documents over the last three hours (three hourly partitions), four at each
/// timestamp, written in three bulk requests (three segments); `seq` numbers them.
async fn seed(server: &Server, now_millis: i64) -> BTreeMap<i64, Value> {
    let mut documents = BTreeMap::new();
    for batch in 0..3 {
        let docs: Vec<Value> = (0..24)
            .map(|index| {
                let seq = batch * 24 + index;
                // every fourth seq shares a millisecond, spread over 3 hours
                let millis = now_millis - 10_000_000 + (seq / 4) * 550_000 + 7;
                let time = chrono::DateTime::from_timestamp_millis(millis)
                    .expect("a valid time")
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                let service = ["api", "web", "db"][(seq % 3) as usize];
                let document = json!({
                    "@timestamp": time,
                    "seq": seq,
                    "service": service,
                    "message": format!("line {seq}"),
                });
                documents.insert(seq, document.clone());
                document
            })
            .collect();
        let (status, body) = server
            .post_ndjson(
                "/paged-logs/_bulk?refresh=true",
                bulk_body("paged-logs", &docs),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["errors"], json!(false), "{body}");
    }
    documents
}

/// Pages through `paged-*` with `body` (its `sort` and `size`) and `search_after`,
/// as `_msearch` with Grafana's header line; returns each hit's `seq` and sort values.
async fn page_through(server: &Server, body: &Value) -> Vec<(i64, Vec<Value>)> {
    let mut seen = Vec::new();
    let mut after: Option<Value> = None;
    for _ in 0..100 {
        let mut body = body.clone();
        if let Some(after) = &after {
            body["search_after"] = after.clone();
        }
        let header = json!({"search_type": "query_then_fetch", "ignore_unavailable": true, "index": "paged-*"});
        let (status, answer) = server
            .post_ndjson("/_msearch", format!("{header}\n{body}\n"))
            .await;
        assert_eq!(status, 200, "{answer}");
        let response = &answer["responses"][0];
        assert!(response.get("error").is_none(), "{response}");
        let hits = response["hits"]["hits"].as_array().expect("hits");
        if hits.is_empty() {
            return seen;
        }
        for hit in hits {
            let sort = hit["sort"].as_array().expect("sort values").clone();
            seen.push((hit["_source"]["seq"].as_i64().expect("seq"), sort));
        }
        after = Some(hits.last().expect("a hit")["sort"].clone());
    }
    panic!("paging did not end within 100 pages: {} hits", seen.len());
}

fn assert_each_once(seen: &[(i64, Vec<Value>)], documents: &BTreeMap<i64, Value>) {
    let mut seqs: Vec<i64> = seen.iter().map(|(seq, _)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        documents.keys().copied().collect::<Vec<_>>(),
        "every document exactly once"
    );
}

/// The order of two consecutive hits' sort values, field by field.
fn in_order(left: &[Value], right: &[Value], descending: &[bool]) -> bool {
    for ((left, right), descending) in left.iter().zip(right).zip(descending) {
        let ordering = match (left.as_f64(), right.as_f64()) {
            (Some(left), Some(right)) => left.total_cmp(&right),
            _ => left.as_str().cmp(&right.as_str()),
        };
        let ordering = if *descending {
            ordering.reverse()
        } else {
            ordering
        };
        match ordering {
            std::cmp::Ordering::Less => return true,
            std::cmp::Ordering::Greater => return false,
            std::cmp::Ordering::Equal => {}
        }
    }
    false // equal values: the tiebreaker did not break the tie
}

#[tokio::test]
async fn search_after_pages_through_every_document_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let now = chrono::Utc::now().timestamp_millis();
    let documents = seed(&server, now).await;
    let range = json!({"bool": {"filter": [{"range": {"@timestamp": {
        "gte": now - 4 * 3_600_000, "lte": now + 60_000, "format": "epoch_millis"}}}]}});

    // Grafana's logs and log context: `@timestamp` then `_doc`, as an object, 5 a page
    for direction in ["desc", "asc"] {
        let body = json!({
            "size": 5,
            "query": range,
            "sort": {"@timestamp": {"order": direction, "unmapped_type": "boolean"}, "_doc": {"order": direction}},
            "docvalue_fields": ["@timestamp"],
        });
        let seen = page_through(&server, &body).await;
        assert_each_once(&seen, &documents);
        let descending = [direction == "desc"; 2];
        for pair in seen.windows(2) {
            assert!(
                in_order(&pair[0].1, &pair[1].1, &descending),
                "{direction}: {:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
        // the times are the documents' own, to the millisecond
        for (seq, sort) in &seen {
            let time = documents[seq]["@timestamp"].as_str().expect("time");
            let millis = chrono::DateTime::parse_from_rfc3339(time)
                .expect("RFC 3339")
                .timestamp_millis();
            assert_eq!(sort[0], json!(millis), "seq {seq}");
        }
    }

    // a keyword field, then the time, then `_doc`, in a list, 7 a page
    let body = json!({
        "size": 7,
        "query": range,
        "sort": [{"service.keyword": "asc"}, {"@timestamp": "desc"}, {"_doc": "asc"}],
    });
    let seen = page_through(&server, &body).await;
    assert_each_once(&seen, &documents);
    for pair in seen.windows(2) {
        assert!(
            in_order(&pair[0].1, &pair[1].1, &[false, true, false]),
            "{:?} then {:?}",
            pair[0],
            pair[1]
        );
    }

    // without a tiebreaker, the hits equal to `search_after` are left out, as in ES
    let body = json!({"size": 100, "query": range, "sort": [{"@timestamp": "asc"}]});
    let all = page_through(&server, &body).await;
    let (status, answer) = server
        .post_json(
            "/paged-logs/_search",
            &json!({"size": 100, "query": range, "sort": [{"@timestamp": "asc"}],
                "search_after": all[0].1}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["hits"]["hits"].as_array().expect("hits").len(), 68);
}

#[tokio::test]
async fn search_after_that_does_not_fit_the_sort_is_a_clear_400() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    seed(&server, chrono::Utc::now().timestamp_millis()).await;
    for (body, says) in [
        (
            json!({"sort": [{"@timestamp": "desc"}], "search_after": [1, 2]}),
            "search_after has 2 value(s) but sort has 1.",
        ),
        (
            json!({"search_after": [1]}),
            "Sort must contain at least one field",
        ),
        (
            json!({"from": 5, "sort": ["_doc"], "search_after": [1]}),
            "`from` parameter must be set to 0",
        ),
        (
            json!({"sort": [{"@timestamp": "desc"}], "search_after": ["last tuesday"]}),
            "expected epoch milliseconds or a date for sort field `@timestamp`",
        ),
    ] {
        let (status, answer) = server.post_json("/paged-logs/_search", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let reason = answer["error"]["reason"].as_str().expect("a reason");
        assert!(reason.contains(says), "{body}: {reason}");
    }
    let (status, answer) = server
        .post_json(
            "/paged-logs/_search?scroll=1m",
            &json!({"sort": ["_doc"], "search_after": [1]}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("scroll context")),
        "{answer}"
    );
}
