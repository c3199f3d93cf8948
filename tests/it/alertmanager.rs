//! An HA pair through a real Alertmanager 0.25 cluster (issue 17): two
//! `prometheus-alertmanager` peers gossiping on loopback, whose receiver is a webhook
//! recorder in this process, and two `lookout serve` replicas with identical rules, each
//! with its own `external_labels = { replica = … }` and `alert_relabel_configs` dropping
//! it, both posting to both peers, fed by one agent fanning out (`lookout ship --to A
//! --to B`). Alertmanager deduplicates: the recorder gets one firing
//! and one resolved notification per alert group, not two — also with one peer killed
//! before the breach, and with one Lookout replica killed (`kill -9`) while firing.
//!
//! "Not two" is an absence, so after the resolve arrives each test watches the recorder
//! for a window derived from the cluster's own timing (peer timeout, group interval and
//! Lookout's resend delay), checking the counts all along: a second notification could
//! only come within it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Agent, Server, agent_config, bulk_body, listen, wait_until};

/// `--cluster.peer-timeout`: how long the second peer waits for the first one's
/// notification to be gossiped before sending its own.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// The route's `group_interval`.
const GROUP_INTERVAL: Duration = Duration::from_secs(3);
/// Lookout's `resend_delay` in these tests.
const RESEND_DELAY: &str = "1s";

/// One cluster at a time: gossip between peers of clusters started at the same moment
/// (ports picked by the kernel, then released) must not be possible, and two clusters'
/// timing under load would blur what each test measures.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A port free on loopback now (the kernel's pick; released for the process to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// One `prometheus-alertmanager` peer.
struct Peer {
    child: Child,
    web: String,
}

impl Peer {
    /// Starts a peer with `config`, storing in `dir`, gossiping on `cluster_port` with
    /// `peers` (their cluster ports).
    fn start(dir: &Path, config: &Path, cluster_port: u16, peers: &[u16]) -> Peer {
        std::fs::create_dir_all(dir).expect("mkdir");
        let web = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new("prometheus-alertmanager");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.display()))
            .arg(format!("--web.listen-address={web}"))
            .arg(format!("--cluster.listen-address=127.0.0.1:{cluster_port}"))
            .arg(format!(
                "--cluster.advertise-address=127.0.0.1:{cluster_port}"
            ))
            .arg(format!(
                "--cluster.peer-timeout={}s",
                PEER_TIMEOUT.as_secs()
            ))
            .arg("--cluster.settle-timeout=2s")
            .arg("--cluster.gossip-interval=100ms")
            .arg("--cluster.pushpull-interval=2s")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).expect("log file"));
        for peer in peers {
            command.arg(format!("--cluster.peer=127.0.0.1:{peer}"));
        }
        Peer {
            child: command.spawn().expect("spawn prometheus-alertmanager"),
            web,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.web)
    }

    /// `kill -9`.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two peers of one cluster whose receiver posts to `recorder`, both ready and each
/// seeing the other as a member.
async fn start_cluster(dir: &Path, recorder: &str) -> Vec<Peer> {
    let config = alertmanager_config(dir, recorder);
    let ports = [free_port(), free_port()];
    let peers = vec![
        Peer::start(&dir.join("am-0"), &config, ports[0], &[ports[1]]),
        Peer::start(&dir.join("am-1"), &config, ports[1], &[ports[0]]),
    ];
    wait_ready(&peers).await;
    peers
}

/// One peer alone (a cluster of one) whose receiver posts to `recorder`, ready.
async fn start_single_peer(dir: &Path, recorder: &str) -> Peer {
    let config = alertmanager_config(dir, recorder);
    let peer = Peer::start(&dir.join("am-0"), &config, free_port(), &[]);
    wait_ready(std::slice::from_ref(&peer)).await;
    peer
}

/// The peers' `alertmanager.yml`: one group per alertname, sent at once, resolved too.
fn alertmanager_config(dir: &Path, recorder: &str) -> PathBuf {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: recorder\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: {}s\n  repeat_interval: 1h\nreceivers:\n  - name: recorder\n    webhook_configs:\n      - url: http://{recorder}/hook\n        send_resolved: true\n",
            GROUP_INTERVAL.as_secs()
        ),
    )
    .expect("alertmanager.yml");
    config
}

/// Waits until every one of `peers` is ready and sees all of them as members.
async fn wait_ready(peers: &[Peer]) {
    lookout::install_tls_provider();
    let client = reqwest::Client::new();
    for peer in peers {
        let status = format!("{}/api/v2/status", peer.url());
        wait_until("the alertmanager peer sees its whole cluster", 60, || {
            let (client, status) = (client.clone(), status.clone());
            async move {
                let Ok(response) = client.get(&status).send().await else {
                    return false;
                };
                let body: Value = response.json().await.unwrap_or_default();
                body["cluster"]["status"] == "ready"
                    && body["cluster"]["peers"].as_array().map_or(0, Vec::len) == peers.len()
            }
        })
        .await;
    }
}

/// What the recorder received: each notification's `status` and group labels.
type Received = Arc<Mutex<Vec<Value>>>;

async fn start_recorder() -> (Received, String) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("recorder lock").push(body);
                "ok"
            }
        }),
    );
    (received, listen(router).await)
}

/// Notifications of `status` (`firing`, `resolved`) the recorder got for rule `alertname`.
fn count(received: &Received, alertname: &str, status: &str) -> usize {
    received
        .lock()
        .expect("recorder lock")
        .iter()
        .filter(|body| body["status"] == status && body["groupLabels"]["alertname"] == alertname)
        .count()
}

/// The rule both replicas run: more than 20 `status:500` lines within `window`, every
/// second.
fn rule(window: &str) -> Value {
    json!({
        "version": 1,
        "schedule": "* * * * * *",
        "index": "logs",
        "query": "status:500",
        "window": window,
        "threshold": {"op": ">", "value": 20},
        "severity": "critical",
        "labels": {"team": "payments"},
        "summary": "{{ $count }} HTTP 500s"
    })
}

/// A Lookout replica named `replica` posting to every peer in `peer_urls`.
fn start_replica(dir: &Path, replica: &str, peer_urls: &[String]) -> Server {
    start_replica_with(dir, replica, peer_urls, RESEND_DELAY, "4s")
}

/// [`start_replica`] with a `resend_delay` and the rule's `window`; started again with
/// the same arguments, it is the same replica restarted (same data).
fn start_replica_with(
    dir: &Path,
    replica: &str,
    peer_urls: &[String],
    resend_delay: &str,
    window: &str,
) -> Server {
    let dir = dir.join(format!("lookout-{replica}"));
    let queries = dir.join("queries");
    std::fs::create_dir_all(&queries).expect("mkdir");
    std::fs::write(queries.join("checkout_5xx.json"), rule(window).to_string()).expect("rule");
    let urls: Vec<String> = peer_urls.iter().map(|url| format!("{url:?}")).collect();
    let config = dir.join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "[global]\nexternal_labels = {{ replica = \"{replica}\", cluster = \"test\" }}\n\n[[alert_relabel_configs]]\nregex = \"replica\"\naction = \"labeldrop\"\n\n[notifiers.am]\ntype = \"alertmanager\"\nurls = [{}]\nresend_delay = \"{resend_delay}\"\ntimeout = \"2s\"\n\n[routing]\ndefault = [\"am\"]\n",
            urls.join(", ")
        ),
    )
    .expect("config");
    Server::start(
        &dir.join("data"),
        &[
            "--config",
            &config.display().to_string(),
            "--queries",
            &queries.display().to_string(),
        ],
    )
}

/// One agent process fanning out to both replicas, `lookout ship --to A --to B`,
/// tailing `logs/app.json` under `dir`; returns it and the file.
fn start_agent(dir: &Path, replicas: [&Server; 2]) -> (Agent, PathBuf) {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let file = logs.join("app.json");
    std::fs::write(&file, "").expect("log file");
    let config = agent_config(
        dir,
        &replicas[0].base,
        &[&format!("{}/*.json", logs.display())],
        "",
    );
    // `Agent::spawn` appends `ship --config FILE`; the destinations go after it
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!(
            "exec \"$0\" \"$@\" --to {} --to {}",
            replicas[0].base, replicas[1].base
        ),
        env!("CARGO_BIN_EXE_lookout"),
    ]);
    (Agent::spawn(command, &config, true), file)
}

/// 25 `status:500` lines appended to the agent's file; waits until each replica stored
/// them, exactly once.
async fn breach(file: &Path, replicas: &[&Server]) {
    use std::io::Write;
    let now = chrono::Utc::now().to_rfc3339();
    let lines: String = (0..25)
        .map(|number| {
            format!(
                "{}\n",
                json!({"@timestamp": now, "status": 500, "message": format!("payment timeout {number}")})
            )
        })
        .collect();
    std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .and_then(|mut out| out.write_all(lines.as_bytes()))
        .expect("append");
    for replica in replicas {
        wait_until("the agent shipped the lines to the replica", 30, || async {
            stored_500s(replica).await >= 25
        })
        .await;
        assert_eq!(stored_500s(replica).await, 25, "each line exactly once");
    }
}

/// `status:500` lines `replica` holds (0 before its index exists).
async fn stored_500s(replica: &Server) -> u64 {
    let (status, body) = replica.get("/logs/_count?q=status:500").await;
    if status == 200 {
        body["count"].as_u64().expect("count")
    } else {
        0
    }
}

/// Whether `replica`'s `/metrics` shows peer `peer_index` accepted at least one alert.
async fn peer_accepted(replica: &Server, peer_index: usize) -> bool {
    replica.metrics().await.lines().any(|line| {
        line.starts_with(&format!(
            "lookout_notifications_alertmanager_sent_total{{notifier=\"am\",peer_index=\"{peer_index}\"}}"
        )) && !line.ends_with(" 0")
    })
}

/// Waits for one firing and then one resolved notification of the rule, then watches for
/// a second of either over the window in which the cluster could still send one.
async fn expect_one_firing_and_one_resolved(received: &Received) {
    wait_until("the firing notification", 90, || async {
        count(received, "checkout_5xx", "firing") >= 1
    })
    .await;
    wait_until("the resolved notification", 90, || async {
        count(received, "checkout_5xx", "resolved") >= 1
    })
    .await;
    // the latest a duplicate could come: the second peer's wait, two group intervals,
    // and a replica's resend in flight
    let window = PEER_TIMEOUT * 2 + GROUP_INTERVAL * 2 + Duration::from_secs(2);
    let until = std::time::Instant::now() + window;
    while std::time::Instant::now() < until {
        let (firing, resolved) = (
            count(received, "checkout_5xx", "firing"),
            count(received, "checkout_5xx", "resolved"),
        );
        assert_eq!(
            (firing, resolved),
            (1, 1),
            "one firing and one resolved notification, not two: {:#?}",
            received.lock().expect("recorder lock")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bodies = received.lock().expect("recorder lock");
    let alert = &bodies[0]["alerts"][0];
    assert_eq!(alert["labels"]["cluster"], "test", "external labels added");
    assert!(
        alert["labels"].get("replica").is_none(),
        "alert_relabel_configs dropped the replica label: {alert}"
    );
    assert_eq!(alert["labels"]["team"], "payments");
    assert_eq!(alert["annotations"]["summary"], "25 HTTP 500s");
    assert!(
        alert["generatorURL"]
            .as_str()
            .is_some_and(|url| url.contains("/ui/search")),
        "{alert}"
    );
}

fn data_dir(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}

// the recorder runs in this process while the test waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_through_two_alertmanager_peers_notify_once() {
    let _cluster = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (received, recorder) = start_recorder().await;
    let peers = start_cluster(&data_dir(&dir), &recorder).await;
    let urls: Vec<String> = peers.iter().map(Peer::url).collect();
    let a = start_replica(dir.path(), "a", &urls);
    let b = start_replica(dir.path(), "b", &urls);
    let (_agent, file) = start_agent(dir.path(), [&a, &b]);
    // Prometheus' /api/v1/alertmanagers lists every peer's alerts endpoint
    wait_until("the rules are running", 60, || async {
        a.get("/api/v1/alertmanagers").await.1["data"]["activeAlertmanagers"]
            .as_array()
            .is_some_and(|active| !active.is_empty())
    })
    .await;
    let (_, listed) = a.get("/api/v1/alertmanagers").await;
    let endpoints: Vec<String> = urls
        .iter()
        .map(|url| serde_json::json!({ "url": format!("{url}/api/v2/alerts") }).to_string())
        .collect();
    let active: Vec<String> = listed["data"]["activeAlertmanagers"]
        .as_array()
        .expect("activeAlertmanagers")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(active, endpoints, "{listed}");
    breach(&file, &[&a, &b]).await;
    // both replicas really posted to both peers: the deduplication is Alertmanager's
    for replica in [&a, &b] {
        for peer in 0..2 {
            wait_until("every replica's alerts reach every peer", 60, || {
                peer_accepted(replica, peer)
            })
            .await;
        }
    }
    expect_one_firing_and_one_resolved(&received).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_alertmanager_peer_killed_before_the_breach_the_other_notifies_once() {
    let _cluster = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (received, recorder) = start_recorder().await;
    let mut peers = start_cluster(&data_dir(&dir), &recorder).await;
    let urls: Vec<String> = peers.iter().map(Peer::url).collect();
    let a = start_replica(dir.path(), "a", &urls);
    let b = start_replica(dir.path(), "b", &urls);
    let (_agent, file) = start_agent(dir.path(), [&a, &b]);
    peers[0].kill();
    breach(&file, &[&a, &b]).await;
    expect_one_firing_and_one_resolved(&received).await;
    // the dead peer is counted and in the history, by index (never its URL)
    let metrics = a.metrics().await;
    assert!(
        metrics.lines().any(|line| line.starts_with(
            "lookout_notifications_alertmanager_errors_total{notifier=\"am\",peer_index=\"0\"}"
        ) && !line.ends_with(" 0")),
        "{metrics}"
    );
    let (status, body) = a.get("/_lookout/alerts/history?rule=checkout_5xx").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.to_string().contains(&peers[0].web),
        "no peer URL in the history: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_replica_killed_while_firing_the_survivor_resolves_once() {
    let _cluster = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (received, recorder) = start_recorder().await;
    let peers = start_cluster(&data_dir(&dir), &recorder).await;
    let urls: Vec<String> = peers.iter().map(Peer::url).collect();
    let a = start_replica(dir.path(), "a", &urls);
    let b = start_replica(dir.path(), "b", &urls);
    let (_agent, file) = start_agent(dir.path(), [&a, &b]);
    breach(&file, &[&a, &b]).await;
    wait_until("the firing notification", 90, || async {
        count(&received, "checkout_5xx", "firing") >= 1
    })
    .await;
    for peer in 0..2 {
        wait_until("replica a's alerts reach every peer", 60, || {
            peer_accepted(&a, peer)
        })
        .await;
    }
    a.kill();
    expect_one_firing_and_one_resolved(&received).await;
    drop(b);
}

/// Lines that breach the rule, posted straight to `replica`.
async fn breach_directly(replica: &Server) {
    let now = chrono::Utc::now().to_rfc3339();
    let lines: Vec<Value> = (0..25)
        .map(|number| json!({"@timestamp": now, "status": 500, "message": format!("payment timeout {number}")}))
        .collect();
    let (status, body) = replica
        .post_ndjson("/_bulk", bulk_body("logs", &lines))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
}

/// `lookout_notifications_alertmanager_{what}_total` of peer `peer_index` (0 when absent).
async fn peer_figure(replica: &Server, what: &str, peer_index: usize) -> f64 {
    let prefix = format!(
        "lookout_notifications_alertmanager_{what}_total{{notifier=\"am\",peer_index=\"{peer_index}\"}} "
    );
    replica
        .metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_answering_4xx_is_recorded_and_not_retried() {
    let _cluster = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (received, recorder) = start_recorder().await;
    let peer = start_single_peer(dir.path(), &recorder).await;
    // a peer refusing every post as Alertmanager refuses an invalid one
    let refused: Received = Arc::default();
    let sink = refused.clone();
    let refusing = listen(axum::Router::new().route(
        "/api/v2/alerts",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("refused lock").push(body);
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    r#"{"code":400,"message":"invalid label set"}"#,
                )
            }
        }),
    ))
    .await;
    let urls = [format!("http://{refusing}"), peer.url()];
    // no resends within the test: every post the refusing peer gets is a first attempt
    let replica = start_replica_with(dir.path(), "a", &urls, "1h", "4s");
    breach_directly(&replica).await;
    expect_one_firing_and_one_resolved(&received).await;

    // the refusing peer got the firing post and the resolved post, each once: a 4xx is
    // final, never retried
    let posts = refused.lock().expect("refused lock").clone();
    assert_eq!(posts.len(), 2, "{posts:#?}");
    assert!(
        posts[0][0]["endsAt"].as_str() > posts[1][0]["endsAt"].as_str(),
        "firing (ends hours ahead), then resolved: {posts:#?}"
    );
    assert_eq!(peer_figure(&replica, "errors", 0).await, 2.0);
    assert_eq!(peer_figure(&replica, "sent", 0).await, 0.0);
    assert!(peer_figure(&replica, "sent", 1).await >= 2.0);
    // alertmanager events are the notifier's, not a rule's: the whole history
    let rejections = || async {
        let (status, body) = replica.get("/_lookout/alerts/history?size=1000").await;
        assert_eq!(status, 200, "{body}");
        body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|event| event["type"] == "alertmanager" && event["outcome"] == "rejected")
            .cloned()
            .collect::<Vec<Value>>()
    };
    wait_until("both refusals in the history", 30, || async {
        rejections().await.len() >= 2
    })
    .await;
    let rejections = rejections().await;
    assert_eq!(rejections.len(), 2, "{rejections:#?}");
    for event in &rejections {
        assert_eq!(
            (&event["peer_index"], &event["status"], &event["attempts"]),
            (&json!(0), &json!(400), &json!(1)),
            "{event}"
        );
        assert!(
            event["error"]
                .as_str()
                .is_some_and(|error| error.contains("invalid label set")),
            "the peer's answer is kept: {event}"
        );
    }
}

/// The alert fires through a single peer, Lookout is killed -9 and restarted before the
/// `endsAt` it last posted: it resends what it tracked (`state/alertmanager/am.json`), so
/// Alertmanager never ends the alert on its own and the receiver gets one firing and one
/// resolved notification, the resolve when the rule resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_while_firing_resends_its_alerts_without_a_second_notification() {
    let _cluster = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (received, recorder) = start_recorder().await;
    let peer = start_single_peer(dir.path(), &recorder).await;
    let urls = [peer.url()];
    // endsAt is 4 × 5 s ahead of each post: the restart fits well within it
    let (resend_delay, window) = ("5s", "40s");
    let replica = start_replica_with(dir.path(), "a", &urls, resend_delay, window);
    let breached = chrono::Utc::now();
    breach_directly(&replica).await;
    wait_until("the firing notification", 60, || async {
        count(&received, "checkout_5xx", "firing") >= 1
    })
    .await;
    let state = dir.path().join("lookout-a/data/state/alertmanager/am.json");
    let tracked = std::fs::read_to_string(&state).expect("the tracked alerts are saved");
    assert!(tracked.contains("checkout_5xx"), "{tracked}");
    replica.kill();
    let replica = start_replica_with(dir.path(), "a", &urls, resend_delay, window);
    wait_until("the restarted replica resends the alert", 30, || async {
        peer_figure(&replica, "sent", 0).await >= 1.0
    })
    .await;
    expect_one_firing_and_one_resolved(&received).await;
    // resolved by Lookout when its window passed, not by Alertmanager at an old endsAt
    let bodies = received.lock().expect("recorder lock").clone();
    let resolved = bodies
        .iter()
        .find(|body| body["status"] == "resolved")
        .expect("the resolved notification");
    let ends_at = resolved["alerts"][0]["endsAt"]
        .as_str()
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .expect("endsAt");
    assert!(
        ends_at >= breached + chrono::Duration::seconds(35),
        "resolved at {ends_at}, before the breach ({breached}) left the 40 s window: {resolved}"
    );
}
