//! `_bulk` bodies read, parsed and written piece by piece as they arrive: indexing begins
//! before a body ends, a body larger than the in-flight budget is accepted while a
//! concurrent request still gets 429 when the budget is spent, gzip decodes as it
//! arrives, a body cut midway keeps the pieces written before the cut (and an agent's
//! resend is exactly once), and an agent's watermark is recorded only with the last piece.

use std::io::Write;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{Server, ago, wait_until};

/// A request whose body the test sends part by part.
struct SlowBody {
    sender: mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    response: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
}

impl SlowBody {
    fn start(server: &Server, path: &str, headers: &[(&str, &str)]) -> SlowBody {
        let (sender, receiver) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        let mut request = server
            .client
            .post(server.url(path))
            .header("content-type", "application/x-ndjson");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = tokio::spawn(request.body(reqwest::Body::wrap_stream(stream)).send());
        SlowBody { sender, response }
    }

    async fn send(&self, bytes: impl Into<Vec<u8>>) {
        self.sender
            .send(Ok(bytes.into()))
            .await
            .expect("send a part");
    }

    /// Ends the body; the answer.
    async fn finish(self) -> (u16, Value) {
        let SlowBody { sender, response } = self;
        drop(sender);
        answer(response).await
    }

    /// The answer, the body left as it is (the sender kept until then).
    async fn answer(self) -> (u16, Value) {
        let SlowBody { sender, response } = self;
        let answered = answer(response).await;
        drop(sender);
        answered
    }
}

async fn answer(
    response: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) -> (u16, Value) {
    let response = response.await.expect("join").expect("response");
    crate::support::decode(response).await
}

/// Pairs for documents `numbers` of about 200 bytes each, tagged `part`, with explicit
/// ids `d{n}`; with `source`, each action carries the agent protocol's position.
fn pairs(numbers: std::ops::Range<usize>, part: &str, source: Option<&str>) -> String {
    let time = ago(5);
    let filler = "x".repeat(120);
    let mut body = String::new();
    for n in numbers {
        let action = match source {
            Some(source) => json!({"index": {"_id": format!("d{n}"),
                "_lookout": {"source": source, "gen": 1, "offset": (n + 1) * 1000}}}),
            None => json!({"index": {"_id": format!("d{n}")}}),
        };
        body.push_str(&action.to_string());
        body.push('\n');
        body.push_str(
            &json!({"@timestamp": time, "n": n, "part": part, "filler": filler}).to_string(),
        );
        body.push('\n');
    }
    body
}

fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// `_refresh`, then how many documents of `part` are searchable (0 before the index
/// exists).
async fn searchable(server: &Server, part: &str) -> u64 {
    let response = server
        .client
        .post(server.url("/logs/_refresh"))
        .send()
        .await
        .expect("refresh");
    if response.status() == 404 {
        return 0;
    }
    server.count("logs", &format!("part:{part}")).await
}

/// The items' `result`s, in order.
fn results(answer: &Value) -> Vec<String> {
    answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["index"]["result"].as_str().unwrap_or("").to_string())
        .collect()
}

fn assert_ids_in_order(answer: &Value, numbers: std::ops::Range<usize>) {
    let ids: Vec<&str> = answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["index"]["_id"].as_str().expect("id"))
        .collect();
    let want: Vec<String> = numbers.map(|n| format!("d{n}")).collect();
    assert_eq!(ids, want, "items in request order");
}

#[tokio::test]
async fn indexing_begins_before_the_body_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let body = SlowBody::start(&server, "/logs/_bulk", &[]);
    // ~3 MiB: pieces of about 1 MiB are written while the client holds the rest
    let first = pairs(0..12_000, "first", None);
    assert!(first.len() > 2 << 20, "{}", first.len());
    body.send(first).await;
    wait_until(
        "documents of the first part searchable while the body is open",
        60,
        || async { searchable(&server, "first").await > 0 },
    )
    .await;
    let metrics = server.metrics().await;
    assert!(
        metric(&metrics, "lookout_ingest_bulk_pieces_total") >= 1.0,
        "{metrics}"
    );
    assert_eq!(searchable(&server, "second").await, 0, "not sent yet");
    body.send(pairs(12_000..13_000, "second", None)).await;
    let (status, answer) = body.finish().await;
    assert_eq!(status, 200, "{answer}");
    // one answer for the whole body, its items in request order
    assert_eq!(answer["errors"], false, "{answer}");
    assert_ids_in_order(&answer, 0..13_000);
    assert!(results(&answer).iter().all(|result| result == "created"));
    assert_eq!(searchable(&server, "first").await, 12_000);
    assert_eq!(searchable(&server, "second").await, 1_000);
    // what an earlier piece did to an explicit id holds for a later piece, as in one
    // piece: a `delete`, then (over 1 MiB later) a `create` of that id, then a conflict
    let again = format!(
        "{{\"delete\":{{\"_id\":\"d0\"}}}}\n{}{}{}",
        pairs(13_000..19_000, "third", None),
        pairs(0..1, "third", None).replace("\"index\"", "\"create\""),
        pairs(0..1, "third", None).replace("\"index\"", "\"create\"")
    );
    let (status, answer) = server.post_ndjson("/logs/_bulk", again).await;
    assert_eq!(status, 200, "{answer}");
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items.len(), 6_003);
    assert_eq!(items[0]["delete"]["result"], "deleted", "{}", items[0]);
    assert_eq!(items[6_001]["create"]["status"], 201, "{}", items[6_001]);
    assert_eq!(items[6_002]["create"]["status"], 409, "{}", items[6_002]);
    let metrics = server.metrics().await;
    assert!(
        metric(&metrics, "lookout_ingest_bulk_pieces_total") >= 4.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_larger_than_the_in_flight_budget_is_accepted_piece_by_piece() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tight.toml");
    // a 1 MiB budget, 8 MiB bodies: pieces of 256 KiB are charged one at a time
    std::fs::write(
        &config,
        "[ingest]\nmax_body_bytes = 8388608\nmax_line_bytes = 65536\nmax_in_flight_bytes = 1048576\n",
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf8")],
    );
    let big = pairs(0..16_000, "big", None);
    assert!(big.len() > 3 << 20, "{}", big.len());
    let (status, answer) = server.post_ndjson("/logs/_bulk?refresh=true", big).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["errors"], false);
    assert_ids_in_order(&answer, 0..16_000);
    // `refresh=true` waited for the last piece
    assert_eq!(server.count("logs", "part:big").await, 16_000);
    let metrics = server.metrics().await;
    assert!(
        metric(&metrics, "lookout_ingest_bulk_pieces_total") >= 8.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "lookout_ingest_in_flight_bytes"), 0.0);
}

#[tokio::test]
async fn a_gzip_body_is_decoded_and_written_as_it_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let text = format!(
        "{}{}",
        pairs(0..12_000, "first", None),
        pairs(12_000..13_000, "second", None)
    );
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).expect("compress");
    let compressed = encoder.finish().expect("finish");
    // the compressed bytes of the first part (a little less: its last lines may still
    // sit in the encoder's window)
    let first_part = pairs(0..12_000, "first", None).len();
    let cut = compressed.len() * first_part / text.len() * 9 / 10;
    let body = SlowBody::start(&server, "/logs/_bulk", &[("content-encoding", "gzip")]);
    body.send(compressed[..cut].to_vec()).await;
    wait_until(
        "documents of the gzip body searchable while the body is open",
        60,
        || async { searchable(&server, "first").await > 0 },
    )
    .await;
    assert_eq!(searchable(&server, "second").await, 0, "not sent yet");
    body.send(compressed[cut..].to_vec()).await;
    let (status, answer) = body.finish().await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["errors"], false);
    assert_ids_in_order(&answer, 0..13_000);
    assert_eq!(searchable(&server, "first").await, 12_000);
    assert_eq!(searchable(&server, "second").await, 1_000);

    // a corrupt gzip body: 400, whatever was written before the corruption stays
    let mut corrupt = compressed.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle..middle + 64].fill(0xff);
    let response = server
        .client
        .post(server.url("/logs/_bulk"))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(corrupt)
        .send()
        .await
        .expect("corrupt");
    let (status, answer) = crate::support::decode(response).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("gzip")),
        "{answer}"
    );
}

#[tokio::test]
async fn a_body_cut_midway_keeps_its_written_pieces_and_the_agents_resend_is_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("timeout.toml");
    std::fs::write(&config, "[http]\nbody_read_timeout = \"2s\"\n").expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf8")],
    );
    let source = "2049:77:cafe";
    let watermark = chrono::Utc::now().to_rfc3339();
    let headers = [
        ("x-lookout-agent", "agent-1"),
        ("x-lookout-watermark", watermark.as_str()),
    ];
    let whole = pairs(0..14_000, "all", Some(source));
    // the client sends ~3 MiB, then half a line, then nothing: the body timeout cuts it
    let first = pairs(0..12_000, "all", Some(source));
    let body = SlowBody::start(&server, "/logs/_bulk", &headers);
    body.send(first.clone()).await;
    body.send(whole[first.len()..first.len() + 100].to_string())
        .await;
    let (status, answer) = body.answer().await;
    assert_eq!(status, 408, "{answer}");
    let written = searchable(&server, "all").await;
    assert!(
        written > 0 && written <= 12_000,
        "the pieces handed on before the cut are written: {written}"
    );
    let (_, agents) = server.get("/_lookout/agents").await;
    let recorded = agents["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|agent| agent["id"] == "agent-1")
        .map(|agent| agent["watermark"].clone());
    assert!(
        matches!(recorded, None | Some(Value::Null)),
        "no watermark from a body that failed: {agents}"
    );

    // the agent resends the whole batch: what was written is `noop`, the rest created
    let (status, answer) = {
        let response = server
            .client
            .post(server.url("/logs/_bulk"))
            .header("content-type", "application/x-ndjson")
            .header("x-lookout-agent", "agent-1")
            .header("x-lookout-watermark", watermark.as_str())
            .body(whole)
            .send()
            .await
            .expect("resend");
        crate::support::decode(response).await
    };
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["errors"], false);
    let results = results(&answer);
    let noops = results.iter().filter(|result| *result == "noop").count();
    assert_eq!(noops as u64, written, "{:?}", &results[..5]);
    assert!(
        results[..noops].iter().all(|result| result == "noop")
            && results[noops..].iter().all(|result| result == "created"),
        "the written pieces are a prefix"
    );
    assert_eq!(searchable(&server, "all").await, 14_000, "exactly once");
    let (_, agents) = server.get("/_lookout/agents").await;
    let agent = agents["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|agent| agent["id"] == "agent-1")
        .cloned()
        .expect("agent registered");
    assert!(!agent["watermark"].is_null(), "{agents}");
}

#[tokio::test]
async fn an_agents_watermark_is_recorded_only_with_the_last_piece() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let watermark = chrono::Utc::now().to_rfc3339();
    let body = SlowBody::start(
        &server,
        "/logs/_bulk",
        &[
            ("x-lookout-agent", "agent-2"),
            ("x-lookout-watermark", watermark.as_str()),
        ],
    );
    body.send(pairs(0..12_000, "first", Some("1:2:3"))).await;
    wait_until("the first pieces written", 60, || async {
        searchable(&server, "first").await > 0
    })
    .await;
    let (_, agents) = server.get("/_lookout/agents").await;
    let before = agents["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|agent| agent["id"] == "agent-2")
        .map(|agent| agent["watermark"].clone());
    assert!(
        matches!(before, None | Some(Value::Null)),
        "the watermark waits for the last piece: {agents}"
    );
    body.send(pairs(12_000..12_100, "second", Some("1:2:3")))
        .await;
    let (status, answer) = body.finish().await;
    assert_eq!(status, 200, "{answer}");
    let (_, agents) = server.get("/_lookout/agents").await;
    let after = agents["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|agent| agent["id"] == "agent-2")
        .map(|agent| agent["watermark"].clone())
        .expect("agent registered");
    assert!(!after.is_null(), "{agents}");
}
