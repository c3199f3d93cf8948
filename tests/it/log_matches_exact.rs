//! `log_matches` is exact at every evaluation time (issue 19): through the real binary, the
//! series equals `_count` over the same `[t − window, t)` at evaluation times of every
//! millisecond class (`.000`, `.050`, `.999`, random), as instant and range queries, with
//! `offset` and `@`. It once answered 0 at every `.x50`.

use serde_json::{Value, json};

use crate::support::{Server, bulk_body, urlencode, wait_until};

/// `t` (ms) as Prometheus' API takes it, exactly: `1764750020.050`.
fn seconds(t: i64) -> String {
    format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000))
}

/// `_count` of `level:ERROR` over `[t − 1m, t)`.
async fn count_before(server: &Server, t: i64) -> f64 {
    let (status, body) = server
        .post_json(
            "/logs/_count",
            &json!({"query": {"bool": {"filter": [
                {"query_string": {"query": "level:ERROR"}},
                {"range": {"@timestamp": {"gte": t - 60_000, "lt": t, "format": "epoch_millis"}}}
            ]}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["count"].as_f64().expect("count")
}

/// The one sample of an instant query at `t` (0 when the result is empty).
async fn instant(server: &Server, query: &str, t: i64) -> f64 {
    let (status, body) = server
        .get(&format!(
            "/api/v1/query?query={}&time={}",
            urlencode(query),
            seconds(t)
        ))
        .await;
    assert_eq!(status, 200, "{query} at {t}: {body}");
    let result = body["data"]["result"].as_array().expect("vector");
    assert!(result.len() <= 1, "{body}");
    result.first().map_or(0.0, |sample| value(&sample["value"]))
}

fn value(pair: &Value) -> f64 {
    pair[1]
        .as_str()
        .and_then(|text| text.parse().ok())
        .expect("a sample value")
}

/// `(t in ms, value)` of every point of a range query.
async fn range(
    server: &Server,
    query: &str,
    start: i64,
    end: i64,
    step_ms: i64,
) -> Vec<(i64, f64)> {
    let (status, body) = server
        .get(&format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={}",
            urlencode(query),
            seconds(start),
            seconds(end),
            seconds(step_ms)
        ))
        .await;
    assert_eq!(status, 200, "{query}: {body}");
    let result = body["data"]["result"].as_array().expect("matrix");
    assert_eq!(result.len(), 1, "{body}");
    result[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|pair| {
            let t = (pair[0].as_f64().expect("time") * 1000.0).round() as i64;
            (t, value(pair))
        })
        .collect()
}

#[tokio::test]
async fn log_matches_equals_count_at_every_millisecond_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    // never fires: it exists to be read as a series
    std::fs::write(
        queries.join("payments_errors.json"),
        json!({"version": 1, "schedule": "0 0 * * * *", "query": "level:ERROR", "window": "1m",
               "threshold": {"op": ">", "value": 1e9}})
        .to_string(),
    )
    .expect("rule");
    let server = Server::start(
        &dir.path().join("data"),
        &["--queries", &queries.display().to_string()],
    );
    // a whole second well in the past, so that every window below is complete
    let base = chrono::Utc::now().timestamp_millis() / 1000 * 1000 - 30_000;
    // twelve lines at odd microseconds in the 40 s before base, and lines exactly on the
    // start or end of windows the sweep asks for
    let mut stamps: Vec<i64> = (0..12)
        .map(|n| (base - 40_000) * 1000 + n * 3_123_457)
        .collect();
    stamps.extend([-45_950, -41_050, 5_050, 12_345].map(|ms| (base + ms) * 1000));
    let lines: Vec<Value> = stamps
        .iter()
        .map(|micros| {
            let at = chrono::DateTime::from_timestamp_micros(*micros).expect("time");
            json!({"@timestamp": at.to_rfc3339(), "level": "ERROR"})
        })
        .collect();
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("logs", &lines))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    wait_until("the saved query visible as a series", 30, || async {
        let (_, body) = server.get("/api/v1/label/query/values").await;
        body["data"] == json!(["payments_errors"])
    })
    .await;

    let series = "log_matches{query=\"payments_errors\"}";
    let seed = chrono::Utc::now().timestamp_subsec_nanos() as u64 | 1;
    let mut random = seed;
    let mut next = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        (random % 20_000) as i64
    };
    // instant queries: every 50 ms of 20 s (the .x50 that failed), .999, .001, random
    let offsets: Vec<i64> = (0..20_000)
        .step_by(50)
        .chain([1, 999, 12_999, 19_999])
        .chain((0..40).map(|_| next()))
        .collect();
    let mut failures = Vec::new();
    for offset in &offsets {
        let t = base + offset;
        let (answered, counted) = (
            instant(&server, series, t).await,
            count_before(&server, t).await,
        );
        if answered != counted {
            failures.push(format!(
                "instant at +{offset} ms: {answered} ≠ _count {counted}"
            ));
        }
        // `offset 30s` is the count 30 s earlier; `@` pins the time whatever t is
        let shifted = instant(&server, &format!("{series} offset 30s"), t).await;
        let counted_earlier = count_before(&server, t - 30_000).await;
        if shifted != counted_earlier {
            failures.push(format!(
                "offset 30s at +{offset} ms: {shifted} ≠ _count {counted_earlier}"
            ));
        }
        let pinned = instant(
            &server,
            &format!("{series} @ {}", seconds(t)),
            base - 60_000,
        )
        .await;
        if pinned != counted {
            failures.push(format!("@ +{offset} ms: {pinned} ≠ _count {counted}"));
        }
    }
    // range queries from odd starts with odd steps, plain and with offset
    let start_random = next();
    for (start, step) in [(50, 50), (999, 1_001), (start_random, 1_050)] {
        let (start, end) = (base + start, base + start + 20_000.min(step * 200));
        for (query, shift) in [
            (series.to_string(), 0),
            (format!("{series} offset 1m"), 60_000),
        ] {
            let points = range(&server, &query, start, end, step).await;
            assert_eq!(points.len() as i64, (end - start) / step + 1, "{query}");
            for (t, answered) in points {
                let counted = count_before(&server, t - shift).await;
                if answered != counted {
                    failures.push(format!(
                        "{query} range point at {t}: {answered} ≠ _count {counted}"
                    ));
                }
            }
        }
    }
    // the sweep saw both a full window and boundaries moving across lines
    let all = count_before(&server, base + 10_000).await;
    assert_eq!(
        all, 15.0,
        "the 12 lines, the two on window starts and the one at +5.050 s"
    );
    assert!(failures.is_empty(), "seed {seed}:\n{}", failures.join("\n"));
}
