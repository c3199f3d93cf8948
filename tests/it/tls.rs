//! HTTPS on the listener (`[tls]`, issue 21) with a private CA made here with rcgen: a
//! client trusting the CA searches and ingests, plain HTTP is refused, mutual TLS refuses
//! a client without a certificate, and a certificate replaced on disk is served to new
//! connections while `lookout ship`, with its own client certificate, keeps shipping
//! exactly once. Unusable settings stop the start; a listener beyond loopback without TLS
//! warns.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::pki::{Pki, serve_https, serve_tls, toml_path};
use crate::support::{
    Agent, Server, agent_config, ago, append_lines, assert_exactly_once, bulk_body, wait_until,
};

#[tokio::test]
async fn a_client_trusting_the_private_ca_searches_and_ingests_and_plain_http_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pki, server) = serve_https(dir.path());
    let (status, body) = server
        .post_ndjson(
            "/_bulk?refresh=true",
            bulk_body(
                "logs",
                &[json!({"@timestamp": ago(5), "message": "over tls"})],
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.count("logs", "message:tls").await, 1);
    // raw `"` in a request target, as curl sends it, over TLS too
    let port = server.base.rsplit(':').next().expect("port").to_owned();
    let mut stream = connect(&format!("127.0.0.1:{port}"), &pki).await;
    stream
        .write_all(
            b"GET /logs/_count?q=message:\"over%20tls\" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""count":1"#), "{answer}");

    // the same port in plain HTTP: an answer saying to use https, and nothing served
    let plain = server.base.replace("https://", "http://");
    let response = reqwest::get(format!("{plain}/logs/_count"))
        .await
        .expect("a plain-HTTP answer");
    assert_eq!(response.status(), 400);
    let text = response.text().await.expect("body");
    assert!(text.contains("https://"), "{text}");
    // a client that does not trust the CA is refused in the handshake
    let error = reqwest::Client::new()
        .get(format!("{}/", server.base))
        .send()
        .await
        .expect_err("an unknown CA");
    assert!(
        format!("{error:?}").to_lowercase().contains("certificate"),
        "{error:?}"
    );
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate_and_serves_one_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    pki.issue_files("server", 1);
    pki.issue_files("client", 2);
    let server = serve_tls(
        dir.path(),
        &pki,
        &format!(
            "cert_file = {}\nkey_file = {}\nclient_ca_file = {}",
            toml_path(&dir.path().join("server.crt")),
            toml_path(&dir.path().join("server.key")),
            toml_path(&pki.ca_file()),
        ),
    );
    let (status, body) = server.get("/").await;
    assert_eq!(status, 200, "{body}");
    let anonymous = pki.client(None);
    let refused = anonymous
        .get(format!("{}/logs/_count", server.base))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a client without a certificate gets no answer: {refused:?}"
    );
    // a certificate from another CA is refused too
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Pki::new(other_dir.path());
    other.issue_files("client", 3);
    let mut pem = std::fs::read(other_dir.path().join("client.crt")).expect("cert");
    pem.extend(std::fs::read(other_dir.path().join("client.key")).expect("key"));
    let stranger = reqwest::Client::builder()
        .add_root_certificate(pki.ca())
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .build()
        .expect("client");
    assert!(
        stranger
            .get(format!("{}/logs/_count", server.base))
            .send()
            .await
            .is_err(),
        "a certificate of another CA is refused"
    );
    // counted once the server's side of each handshake has ended
    wait_until("both refused handshakes are counted", 30, || async {
        server
            .metrics()
            .await
            .lines()
            .filter_map(|line| {
                line.strip_prefix("lookout_http_requests_refused_total{reason=\"tls_handshake\"} ")
            })
            .any(|count| count.parse::<u64>().is_ok_and(|count| count >= 2))
    })
    .await;
}

/// A new TLS connection to `address` trusting the CA, for `localhost`, presenting the
/// certificate `client`.
async fn connect(
    address: &str,
    pki: &Pki,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.authority.der().to_vec()))
        .expect("CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(
        CertificateDer::pem_file_iter(pki.dir.join("client.crt"))
            .expect("client.crt")
            .collect::<Result<Vec<_>, _>>()
            .expect("client certificate"),
        PrivateKeyDer::from_pem_file(pki.dir.join("client.key")).expect("client key"),
    )
    .expect("client certificate and key");
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .expect("handshake")
}

/// The certificate a new TLS connection to `address` is served.
async fn served_certificate(address: &str, pki: &Pki) -> Vec<u8> {
    connect(address, pki)
        .await
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("a server certificate")
        .to_vec()
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_new_connections_while_an_mtls_agent_ships_exactly_once()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    let first = pki.issue_files("server", 1);
    pki.issue_files("client", 2);
    let server = serve_tls(
        dir.path(),
        &pki,
        &format!(
            "cert_file = {}\nkey_file = {}\nclient_ca_file = {}",
            toml_path(&dir.path().join("server.crt")),
            toml_path(&dir.path().join("server.key")),
            toml_path(&pki.ca_file()),
        ),
    );
    let port = server.base.rsplit(':').next().expect("port");
    let address = format!("127.0.0.1:{port}");
    assert_eq!(served_certificate(&address, &pki).await, first);

    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let app = logs.join("app.log");
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).expect("agent dir");
    let config = agent_config(
        &agent_dir,
        &server.base,
        &[&app.display().to_string()],
        &format!(
            "tls_ca_file = {}\ntls_client_cert_file = {}\ntls_client_key_file = {}",
            toml_path(&pki.ca_file()),
            toml_path(&dir.path().join("client.crt")),
            toml_path(&dir.path().join("client.key")),
        ),
    );
    append_lines(&app, "a", 0..200);
    let agent = Agent::start(&config);
    server.wait_caught_up(chrono::Utc::now()).await;

    // rotation: a half-written pair first (the certificate before its key), then the
    // key; the server keeps the old certificate until the pair fits
    let (certificate, key, second) = pki.issue(7);
    std::fs::write(dir.path().join("server.crt"), &certificate).expect("new cert");
    append_lines(&app, "a", 200..400);
    std::fs::write(dir.path().join("server.key"), &key).expect("new key");
    wait_until("new connections get the new certificate", 30, || async {
        served_certificate(&address, &pki).await == second
    })
    .await;
    append_lines(&app, "a", 400..600);
    server.wait_caught_up(chrono::Utc::now()).await;
    assert_exactly_once(&server.seqs("logs").await, &[("a", 0..600)]);
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn unusable_tls_settings_stop_the_start_naming_the_file_or_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    pki.issue_files("server", 1);
    pki.issue_files("other", 2);
    let path = |name: &str| toml_path(&dir.path().join(name));
    for (tls, expected) in [
        (
            format!(
                "cert_file = {}\nkey_file = {}",
                path("missing.crt"),
                path("server.key")
            ),
            "missing.crt`: cannot read",
        ),
        (
            format!(
                "cert_file = {}\nkey_file = {}",
                path("server.crt"),
                path("other.key")
            ),
            "other.key`: does not fit the certificate",
        ),
        (
            format!("cert_file = {}", path("server.crt")),
            "`tls.key_file`: is needed with `tls.cert_file`",
        ),
        (
            // the in-process agent cannot guess an https URL the certificate names
            format!(
                "cert_file = {}\nkey_file = {}\n[[agent.inputs]]\npaths = [\"app.log\"]",
                path("server.crt"),
                path("server.key")
            ),
            "needs `agent.to`",
        ),
    ] {
        let config = dir.path().join("lookout.toml");
        std::fs::write(&config, format!("[tls]\n{tls}\n")).expect("config");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .expect("run lookout serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{tls}: started");
        assert!(stderr.contains(expected), "{tls}: {stderr}");
    }
}

#[tokio::test]
async fn a_listener_beyond_loopback_without_tls_warns_that_tokens_travel_in_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("lookout.toml");
    std::fs::write(&config, "[auth]\ntoken = \"s3cret-token\"\n").expect("config");
    let server = Server::start_at(
        &dir.path().join("data"),
        "0.0.0.0:0",
        &["--config", config.to_str().expect("UTF-8")],
    );
    wait_until("the start warns about clear-text tokens", 30, || async {
        server
            .output
            .lock()
            .expect("output lock")
            .iter()
            .any(|line| line.contains("tokens and logs travel in clear"))
    })
    .await;
    assert!(
        !server
            .output
            .lock()
            .expect("output lock")
            .iter()
            .any(|line| line.contains("s3cret-token")),
        "the token is never logged"
    );
}

/// `lookout rules test ARGS`: its exit code, stdout and stderr.
fn rules_test(args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["rules", "test"])
        .args(args)
        .output()
        .expect("run lookout rules test");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_test_trusts_a_private_ca_given_with_ca_file_and_only_then() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pki, server) = serve_https(dir.path());
    let (status, body) = server
        .post_ndjson(
            "/_bulk?refresh=true",
            // before at least two of the rule's minutely ticks in the backtest's range
            bulk_body("logs", &[json!({"@timestamp": ago(150), "status": 500})]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rule = dir.path().join("errors.json");
    std::fs::write(
        &rule,
        json!({"version": 1, "schedule": "* * * * *", "index": "logs", "query": "status:500",
               "window": "5m", "threshold": {"op": ">", "value": 0}, "summary": "{{ $count }} 500s"})
        .to_string(),
    )
    .expect("rule");
    let rule = rule.display().to_string();
    let server_url = server.base.clone();
    let ca_file = pki.ca_file().display().to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        let without = rules_test(&[&rule, "--from", "now-10m", "--server", &server_url]);
        let with = rules_test(&[
            &rule,
            "--from",
            "now-10m",
            "--server",
            &server_url,
            "--ca-file",
            &ca_file,
        ]);
        let not_pem = rules_test(&[&rule, "--server", &server_url, "--ca-file", &rule]);
        (without, with, not_pem)
    })
    .await
    .expect("join");
    let (without, with, not_pem) = outcome;
    assert_ne!(
        without.0, 0,
        "a private CA is not trusted unasked: {without:?}"
    );
    assert!(without.2.contains("cannot reach the server"), "{without:?}");
    assert_eq!(with.0, 0, "{with:?}");
    assert!(with.1.contains("backtest of errors"), "{with:?}");
    assert!(with.1.contains("inactive → firing"), "{with:?}");
    assert_ne!(not_pem.0, 0, "{not_pem:?}");
    assert!(
        not_pem.2.contains("holds no PEM certificate"),
        "{not_pem:?}"
    );
}
