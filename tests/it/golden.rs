//! Golden Elasticsearch response shapes: `/`, `_search`, `_count`, `_bulk` with errors,
//! `_cat/indices`, an error body. Values that change between runs (times, generated ids,
//! uuids, sizes) are replaced by `<dynamic>`; everything else must match
//! `tests/golden/*.json` exactly. `LOOKOUT_UPDATE_GOLDEN=1 cargo test golden` rewrites
//! them — review the diff against Elasticsearch's reference before committing.

use serde_json::{Value, json};

use crate::support::Server;

const DYNAMIC_KEYS: &[&str] = &[
    "took",
    "uuid",
    "cluster_uuid",
    "build_hash",
    "build_date",
    "name",
    "uptime_seconds",
    "@timestamp",
    "store.size",
    "pri.store.size",
    "dataset.size",
    "_score",
    "max_score",
    "_seq_no",
];

fn normalize(value: &mut Value, generated_ids: bool) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if DYNAMIC_KEYS.contains(&key.as_str()) || (generated_ids && key == "_id") {
                    if !inner.is_null() {
                        *inner = json!("<dynamic>");
                    }
                } else {
                    normalize(inner, generated_ids);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| normalize(item, generated_ids)),
        _ => {}
    }
}

fn check(name: &str, mut value: Value, generated_ids: bool) {
    normalize(&mut value, generated_ids);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let rendered = serde_json::to_string_pretty(&value).expect("serializes") + "\n";
    if std::env::var_os("LOOKOUT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &rendered).expect("write golden");
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} exists (LOOKOUT_UPDATE_GOLDEN=1 creates it)",
            path.display()
        )
    });
    assert_eq!(rendered, golden, "{name} differs from {}", path.display());
}

#[tokio::test]
async fn responses_match_the_golden_elasticsearch_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (_, root) = server.get("/").await;
    check("root", root, false);

    let mut body = String::new();
    for (id, status, service) in [
        ("a", 500, "checkout"),
        ("b", 200, "cart"),
        ("c", 500, "cart"),
    ] {
        body.push_str(&format!(
            "{{\"index\":{{\"_index\":\"logs\",\"_id\":\"{id}\"}}}}\n{}\n",
            json!({"status": status, "service": service, "message": format!("request {id}")})
        ));
    }
    body.push_str("{\"create\":{\"_index\":\"logs\",\"_id\":\"a\"}}\n{\"dup\":true}\n");
    body.push_str("{\"index\":{\"_index\":\"logs\",\"_id\":\"bad\"}}\n[1]\n");
    let (status, bulk) = server.post_ndjson("/_bulk?refresh=true", body).await;
    assert_eq!(status, 200);
    check("bulk_with_errors", bulk, false);

    let (_, search) = server
        .post_json(
            "/logs/_search",
            &json!({"query": {"term": {"status": 500}}, "sort": [{"service.keyword": "asc"}], "_source": ["service", "status"], "aggs": {"services": {"terms": {"field": "service.keyword"}}}}),
        )
        .await;
    check("search", search, false);

    let (_, count) = server.get("/logs/_count?q=status:500").await;
    check("count", count, false);

    let (_, cat) = server.get("/_cat/indices?format=json").await;
    check("cat_indices", cat, false);

    let (_, missing) = server.get("/missing/_search").await;
    check("error_index_not_found", missing, false);
}
