//! Scoped keys through the real binary: every route of docs/api.md's routes table ×
//! every role (allowed, or 403 in the route's dialect with nothing changed), an ingest key
//! that cannot read back, keys created and revoked by the command line and over HTTP
//! taking effect at once, Elasticsearch's `ApiKey` header, empty tokens refused at start,
//! the audit trail, and the failed-authentication limit per source address.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use serde_json::{Value, json};

use crate::support::access::{forbidden_in_dialect, key_table, serve_with_config};
use crate::support::{Server, decode, wait_until};

const ROLES: [&str; 4] = ["ingest", "read", "edit", "admin"];

fn token_of(role: &str) -> String {
    format!("test-token-of-the-{role}-key")
}

/// A server with one key per role (named after it, tenant `default`) and its own
/// `queries/`.
fn serve_with_keys(dir: &Path) -> Server {
    let config: String = ROLES
        .iter()
        .map(|role| key_table(role, role, "", &token_of(role)))
        .collect();
    serve_with_config(dir, &config)
}

async fn send(
    server: &Server,
    role: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = server.client.request(method, server.url(path));
    if let Some(role) = role {
        request = request.bearer_auth(token_of(role));
    }
    if let Some(body) = body {
        request = if path.contains("_bulk") || path.contains("_msearch") {
            request
                .header("content-type", "application/x-ndjson")
                .body(body.as_str().expect("NDJSON text").to_owned())
        } else {
            request.json(body)
        };
    }
    decode(request.send().await.expect("request")).await
}

fn yearly_rule() -> Value {
    json!({
        "version": 1,
        "schedule": "0 0 0 1 1 *",
        "index": "t-idx",
        "query": "status:500",
        "window": "1h",
        "threshold": {"op": ">", "value": 20},
        "severity": "critical",
        "summary": "{{ $count }} HTTP 500s"
    })
}

fn silence() -> Value {
    json!({
        "matchers": [{"name": "alertname", "value": ".*", "isRegex": true, "isEqual": true}],
        "startsAt": chrono::Utc::now().to_rfc3339(),
        "endsAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        "createdBy": "test",
        "comment": "from the access test"
    })
}

/// `(method, path, role)` of each route of docs/api.md's routes table: cells like
/// `` `GET|POST /{index}/_search`, `/_search` `` (a path without methods takes the
/// previous ones), the role in the last column.
fn documented_routes() -> Vec<(String, String, String)> {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    let section = docs.split("## Routes").nth(1).expect("a Routes section");
    let mut routes = Vec::new();
    for row in section
        .lines()
        .skip_while(|line| !line.starts_with("| route"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
    {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        let role = cells.last().expect("a role").trim().to_owned();
        let mut methods: Vec<String> = Vec::new();
        for code in cells[0].split('`').skip(1).step_by(2) {
            let code = code.replace("\\|", "|");
            let path = match code.split_once(' ') {
                Some((listed, path)) => {
                    methods = listed.split('|').map(str::to_owned).collect();
                    path.to_owned()
                }
                None => code.clone(),
            };
            let path = path.split('[').next().unwrap_or(&path).to_owned();
            for method in &methods {
                routes.push((method.clone(), path.clone(), role.clone()));
            }
        }
    }
    routes
}

fn role_rank(role: &str) -> usize {
    ROLES
        .iter()
        .position(|known| *known == role)
        .unwrap_or_else(|| panic!("unknown role `{role}`"))
}

#[test]
fn the_routes_table_of_the_docs_lists_the_roles_the_server_enforces() {
    use lookout::server::access::Role;
    use lookout::server::auth::{Access, required_role};
    let routes = documented_routes();
    assert!(routes.len() > 50, "{routes:?}");
    for (method, path, documented) in routes {
        let expected = match documented.as_str() {
            "none" => Access::Open,
            "ingest" => Access::Needs(Role::Ingest),
            "read" => Access::Needs(Role::Read),
            "edit" => Access::Needs(Role::Edit),
            "admin" => Access::Needs(Role::Admin),
            other => panic!("{method} {path}: unknown role `{other}` in docs/api.md"),
        };
        let concrete = path
            .replace("{index}", "logs")
            .replace("{id}", "x1")
            .replace("{name}", "n1")
            .replace('…', "search");
        let method = axum::http::Method::from_bytes(method.as_bytes()).expect("method");
        assert_eq!(
            required_role(&method, &concrete),
            expected,
            "docs/api.md says `{method} {path}` needs {documented}"
        );
    }
}

/// The state a forbidden request must leave alone, as the admin sees it.
async fn snapshot(server: &Server) -> Value {
    let (_, indices) = send(
        server,
        Some("admin"),
        "GET",
        "/_cat/indices?format=json&h=index,docs.count",
        None,
    )
    .await;
    let mut indices = indices.as_array().cloned().unwrap_or_default();
    indices.sort_by_key(|index| index["index"].to_string());
    let (_, rules) = send(server, Some("admin"), "GET", "/_lookout/rules", None).await;
    let rule_names: Vec<Value> = rules["rules"]
        .as_array()
        .map(|rules| rules.iter().map(|rule| rule["name"].clone()).collect())
        .unwrap_or_default();
    let (_, silences) = send(server, Some("admin"), "GET", "/api/v2/silences", None).await;
    let (_, keys) = send(server, Some("admin"), "GET", "/_lookout/keys", None).await;
    json!({"indices": indices, "rules": rule_names, "silences": silences, "keys": keys})
}

/// Whether `body` is a 403 in the dialect of `path`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_as_the_table_says_and_a_refusal_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_with_keys(dir.path());
    // something for every route to act on
    let bulk =
        "{\"index\":{\"_index\":\"t-idx\",\"_id\":\"1\"}}\n{\"status\":500,\"message\":\"boom\"}\n";
    let (status, body) = send(
        &server,
        Some("ingest"),
        "POST",
        "/_bulk?refresh=true",
        Some(&json!(bulk)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        &server,
        Some("edit"),
        "PUT",
        "/_lookout/rules/r1",
        Some(&yearly_rule()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        &server,
        Some("edit"),
        "POST",
        "/api/v2/silences",
        Some(&silence()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let silence_id = body["silenceID"].as_str().expect("id").to_owned();

    let concrete = |path: &str| {
        path.replace("{index}", "t-idx")
            .replace("/_doc/{id}", "/_doc/1")
            .replace("/_create/{id}", "/_create/2")
            .replace("/agents/{id}", "/agents/agent-x")
            .replace("/silence/{id}", &format!("/silence/{silence_id}"))
            .replace("/_lookout/rules/{name}", "/_lookout/rules/r1")
            .replace("/_lookout/keys/{name}", "/_lookout/keys/read")
            .replace("/label/{name}", "/label/job")
            .replace('…', "search")
    };
    let body_of = |method: &str, path: &str| -> Option<Value> {
        if method == "GET" || method == "HEAD" || method == "DELETE" {
            return None;
        }
        Some(if path.contains("_bulk") {
            json!("{\"index\":{}}\n{\"status\":200}\n")
        } else if path.contains("_msearch") {
            json!("{}\n{\"query\":{\"match_all\":{}}}\n")
        } else if path.starts_with("/_lookout/rules/") && method == "PUT" {
            yearly_rule()
        } else if path == "/api/v2/silences" {
            silence()
        } else if path == "/_lookout/keys" {
            json!({"name": "made-by-the-table", "role": "read"})
        } else if path.contains("/_doc") || path.contains("/_create") {
            json!({"status": 200})
        } else if path.contains("_search") || path.contains("_count") {
            json!({"query": {"match_all": {}}})
        } else {
            json!({})
        })
    };
    let routes = documented_routes();

    // every refusal first, then the state compared, then every allowed request
    let before = snapshot(&server).await;
    let mut refused = 0;
    for (method, path, needed) in &routes {
        let path = concrete(path);
        for role in ROLES {
            if needed == "none" || role_rank(role) >= role_rank(needed) {
                continue;
            }
            let (status, body) = send(
                &server,
                Some(role),
                method,
                &path,
                body_of(method, &path).as_ref(),
            )
            .await;
            assert_eq!(status, 403, "{role} → {method} {path}: {body}");
            if method != "HEAD" {
                assert!(
                    forbidden_in_dialect(&path, &body),
                    "{role} → {method} {path}: not a 403 of the route's dialect: {body}"
                );
            }
            refused += 1;
        }
    }
    assert!(refused > 50, "{refused} refusals");
    assert_eq!(
        snapshot(&server).await,
        before,
        "a refused request changed something"
    );

    // without a key, every route but the open ones is 401
    for (method, path, needed) in &routes {
        let path = concrete(path);
        let (status, body) = send(
            &server,
            None,
            method,
            &path,
            body_of(method, &path).as_ref(),
        )
        .await;
        if needed == "none" {
            assert!(status < 400, "{method} {path} is open: {status} {body}");
        } else {
            assert_eq!(status, 401, "{method} {path} without a key: {body}");
        }
    }

    for (method, path, needed) in &routes {
        let path = concrete(path);
        for role in ROLES {
            if needed != "none" && role_rank(role) < role_rank(needed) {
                continue;
            }
            let (status, body) = send(
                &server,
                Some(role),
                method,
                &path,
                body_of(method, &path).as_ref(),
            )
            .await;
            assert!(
                status != 401 && status != 403,
                "{role} → {method} {path} is allowed: {status} {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_key_writes_but_cannot_read_back_what_it_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_with_keys(dir.path());
    let bulk =
        "{\"index\":{\"_index\":\"secret-logs\",\"_id\":\"7\"}}\n{\"message\":\"card 4111\"}\n";
    let (status, body) = send(
        &server,
        Some("ingest"),
        "POST",
        "/_bulk?refresh=true",
        Some(&json!(bulk)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"], false, "{body}");
    for (method, path) in [
        ("GET", "/secret-logs/_search?q=card"),
        ("POST", "/_search"),
        ("GET", "/secret-logs/_count"),
        ("GET", "/secret-logs/_doc/7"),
        ("GET", "/_cat/indices"),
        ("GET", "/secret-logs/_mapping"),
        ("GET", "/api/v1/query?query=log_matches"),
        ("GET", "/_lookout/alerts/history"),
    ] {
        let (status, body) = send(&server, Some("ingest"), method, path, None).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(!body.to_string().contains("4111"), "{body}");
    }
    // the reader sees it
    let (status, body) = send(&server, Some("read"), "GET", "/secret-logs/_count", None).await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(1)), "{body}");
    let (status, whoami) = send(&server, Some("ingest"), "GET", "/_lookout/whoami", None).await;
    assert_eq!(status, 200, "{whoami}");
    assert_eq!(
        whoami,
        json!({"key": "ingest", "role": "ingest", "tenants": ["default"], "tenant": "default", "authentication": true})
    );
    let response = server
        .client
        .get(server.url("/_lookout/whoami"))
        .bearer_auth(token_of("admin"))
        .header("x-scope-orgid", "team-b")
        .send()
        .await
        .expect("whoami");
    assert_eq!(response.status(), 403, "a key of `default` is not team-b's");
}

fn lookout_keys(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["keys", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run lookout keys")
}

async fn status_with(server: &Server, token: &str) -> u16 {
    server
        .client
        .get(server.url("/_cat/indices"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_and_revoked_by_the_command_line_and_over_http_take_effect_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_with_keys(dir.path());
    let data_dir = dir.path().join("data");

    let created = lookout_keys(
        &data_dir,
        &["create", "--name", "cli-reader", "--role", "read"],
    );
    assert!(created.status.success(), "{created:?}");
    let token = String::from_utf8(created.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(token.starts_with("lk_") && token.len() >= 40, "{token}");
    let stored = std::fs::read_to_string(data_dir.join("state/keys.json")).expect("keys file");
    assert!(
        !stored.contains(&token),
        "only the hash is stored: {stored}"
    );
    assert_eq!(status_with(&server, &token).await, 200);
    let listed = lookout_keys(&data_dir, &["list"]);
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listing.contains("cli-reader") && !listing.contains(&token),
        "{listing}"
    );

    let refused = lookout_keys(&data_dir, &["create", "--name", "x", "--role", "root"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown role `root`"));
    let refused = lookout_keys(
        &data_dir,
        &["create", "--name", "cli-reader", "--role", "read"],
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("exists already"),
        "{refused:?}"
    );
    let revoked = lookout_keys(&data_dir, &["revoke", "cli-reader"]);
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(
        status_with(&server, &token).await,
        401,
        "revoked by the CLI"
    );

    let (status, body) = send(
        &server,
        Some("admin"),
        "POST",
        "/_lookout/keys",
        Some(&json!({"name": "http-reader", "role": "read", "tenant": "default"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(status_with(&server, &token).await, 200);
    let (status, listed) = send(&server, Some("admin"), "GET", "/_lookout/keys", None).await;
    assert_eq!(status, 200);
    assert!(!listed.to_string().contains(&token), "{listed}");
    let (status, body) = send(
        &server,
        Some("admin"),
        "DELETE",
        "/_lookout/keys/http-reader",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_with(&server, &token).await, 401, "revoked over HTTP");

    let (status, body) = send(
        &server,
        Some("admin"),
        "DELETE",
        "/_lookout/keys/read",
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("lookout.toml")),
        "{body}"
    );
    let (status, body) = send(
        &server,
        Some("admin"),
        "POST",
        "/_lookout/keys",
        Some(&json!({"name": "read", "role": "admin"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    // every key change is in the audit trail: over HTTP with the admin's address, the
    // command line's as noticed in the keys file
    let (status, audit) = send(&server, Some("admin"), "GET", "/_lookout/audit", None).await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().expect("entries");
    let has = |action: &str, target: &str, key: &str| {
        entries.iter().any(|entry| {
            entry["action"] == action
                && entry["target"] == target
                && entry["key"].as_str().is_some_and(|name| name.contains(key))
        })
    };
    assert!(has("key.create", "http-reader", "admin"), "{audit}");
    assert!(has("key.revoke", "http-reader", "admin"), "{audit}");
    assert!(has("key.create", "cli-reader", "command line"), "{audit}");
    assert!(has("key.revoke", "cli-reader", "command line"), "{audit}");
    assert!(
        entries
            .iter()
            .filter(|entry| entry["key"] == "admin")
            .all(|entry| entry["address"] == "127.0.0.1"),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_api_keys_name_their_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_with_keys(dir.path());
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let with_header = |value: String| {
        let request = server
            .client
            .get(server.url("/_cat/indices"))
            .header("authorization", value);
        async move { request.send().await.expect("request").status().as_u16() }
    };
    assert_eq!(
        with_header(format!(
            "ApiKey {}",
            encode(&format!("read:{}", token_of("read")))
        ))
        .await,
        200
    );
    assert_eq!(
        with_header(format!(
            "ApiKey {}",
            encode(&format!("admin:{}", token_of("read")))
        ))
        .await,
        401,
        "the id names another key"
    );
    assert_eq!(
        with_header(format!("ApiKey {}", token_of("read"))).await,
        200
    );
    assert_eq!(
        with_header(format!(
            "Basic {}",
            encode(&format!("elastic:{}", token_of("read")))
        ))
        .await,
        200
    );
    let response = server
        .client
        .get(server.url("/_cat/indices"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer") && !challenge.contains("Basic"),
        "browsers must not be asked for Basic credentials: {challenge}"
    );
}

fn serve_fails(dir: &Path, config: &str, env: &[(&str, &str)]) -> String {
    let config_path = dir.join("bad.toml");
    std::fs::write(&config_path, config).expect("config");
    let output = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&config_path)
        .envs(env.iter().copied())
        .output()
        .expect("run");
    assert!(!output.status.success(), "started with {config}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn empty_tokens_stop_the_start_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = serve_fails(
        dir.path(),
        "[auth]\ntoken_env = \"LOOKOUT_TOKEN\"\n",
        &[("LOOKOUT_TOKEN", "")],
    );
    assert!(
        stderr.contains("auth.token_env") && stderr.contains("empty"),
        "{stderr}"
    );
    let blank = dir.path().join("blank-token");
    std::fs::write(&blank, "\n   \n\n").expect("token file");
    let stderr = serve_fails(
        dir.path(),
        &format!("[auth]\ntoken_file = {:?}\n", blank.display().to_string()),
        &[],
    );
    assert!(
        stderr.contains("auth.token_file") && stderr.contains("empty"),
        "{stderr}"
    );
    let stderr = serve_fails(dir.path(), "[auth]\ntoken = \"  \"\n", &[]);
    assert!(
        stderr.contains("`auth.token`") && stderr.contains("empty"),
        "{stderr}"
    );
    let stderr = serve_fails(
        dir.path(),
        &format!(
            "[[auth.keys]]\nname = \"ci\"\ntoken_file = {:?}\nrole = \"read\"\n",
            blank.display().to_string()
        ),
        &[],
    );
    assert!(
        stderr.contains("auth.keys[0].token_file") && stderr.contains("empty"),
        "{stderr}"
    );
    let stderr = serve_fails(
        dir.path(),
        "[[auth.keys]]\nname = \"ci\"\ntoken_sha256 = \"00\"\nrole = \"superuser\"\n",
        &[],
    );
    assert!(stderr.contains("superuser"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audited_changes_record_who_what_and_from_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_with_keys(dir.path());
    let bulk = "{\"index\":{\"_index\":\"doomed\"}}\n{\"status\":1}\n";
    let (status, _) = send(
        &server,
        Some("ingest"),
        "POST",
        "/_bulk?refresh=true",
        Some(&json!(bulk)),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = send(
        &server,
        Some("edit"),
        "PUT",
        "/_lookout/rules/audited",
        Some(&yearly_rule()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        &server,
        Some("edit"),
        "POST",
        "/api/v2/silences",
        Some(&silence()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let silence_id = body["silenceID"].as_str().expect("id").to_owned();
    let (status, _) = send(
        &server,
        Some("edit"),
        "DELETE",
        &format!("/api/v2/silence/{silence_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &server,
        Some("edit"),
        "DELETE",
        "/_lookout/rules/audited",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = send(&server, Some("admin"), "DELETE", "/doomed", None).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = send(&server, Some("edit"), "GET", "/_lookout/audit", None).await;
    assert_eq!(status, 403, "only admins read the audit trail: {body}");
    let (status, audit) = send(
        &server,
        Some("admin"),
        "GET",
        "/_lookout/audit?size=20",
        None,
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().expect("entries");
    let actions: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap_or(""),
                entry["target"].as_str().unwrap_or(""),
                entry["key"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("index.delete", "doomed", "admin"),
            ("rule.delete", "audited", "edit"),
            ("silence.expire", silence_id.as_str(), "edit"),
            ("silence.create", silence_id.as_str(), "edit"),
            ("rule.put", "audited", "edit"),
            // the keys of lookout.toml, new since the last start (there was none)
            ("tenant.start", "default", "lookout.toml"),
        ],
        "newest first: {audit}"
    );
    let started = entries[5]["summary"].as_str().expect("summary");
    assert!(
        started.contains("keys.read: \"role read, tenants default\" (added)"),
        "{started}"
    );
    for entry in &entries[..5] {
        assert_eq!(entry["address"], "127.0.0.1", "{entry}");
        assert_eq!(entry["tenant"], "default", "{entry}");
        assert!(entry["@timestamp"].is_string(), "{entry}");
    }
    assert!(
        entries[3]["summary"]
            .as_str()
            .is_some_and(|summary| summary.contains("alertname=~")),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_limited_per_source_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_with_keys(dir.path());
    let from = |address: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(address))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client")
    };
    let attacker = from([127, 0, 0, 1]);
    let holder = from([127, 0, 0, 2]);
    let attempt = |client: &reqwest::Client, token: String| {
        let request = client.get(server.url("/_cat/indices")).bearer_auth(token);
        async move { request.send().await.expect("request").status().as_u16() }
    };
    // an agent retrying with a stale key is not guessing: its host is not locked out
    let stale = from([127, 0, 0, 3]);
    for _ in 0..3 * lookout::server::auth::MAX_FAILURES {
        assert_eq!(attempt(&stale, "revoked-long-ago".into()).await, 401);
    }
    assert_eq!(attempt(&stale, token_of("read")).await, 200);
    for guess in 0..lookout::server::auth::MAX_FAILURES {
        assert_eq!(attempt(&attacker, format!("guess-{guess}")).await, 401);
    }
    assert_eq!(
        attempt(&attacker, token_of("read")).await,
        429,
        "a blocked address is refused even with a valid key"
    );
    assert_eq!(
        attempt(&holder, token_of("read")).await,
        200,
        "another address is not locked out"
    );
    let metrics = holder
        .get(server.url("/metrics"))
        .bearer_auth(token_of("read"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(&format!(
            "lookout_auth_failures_total{{reason=\"wrong\"}} {}",
            4 * lookout::server::auth::MAX_FAILURES
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("lookout_auth_failures_total{reason=\"blocked\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("127.0.0."), "no addresses as labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_everything_is_open_as_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, whoami) = server.get("/_lookout/whoami").await;
    assert_eq!(status, 200, "{whoami}");
    assert_eq!(whoami["authentication"], false);
    assert_eq!(whoami["role"], "admin");
    // creating a key turns authentication on at once
    let (status, body) = server
        .post_json(
            "/_lookout/keys",
            &json!({"name": "first-admin", "role": "admin"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    wait_until("authentication is on", 10, || async {
        server.get("/_cat/indices").await.0 == 401
    })
    .await;
    assert_eq!(status_with(&server, &token).await, 200);
}

/// The NDJSON body of README.md's quick start, with its `$now` filled in.
fn readme_bulk_body() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let body = readme
        .split("--data-binary @- <<NDJSON\n")
        .nth(1)
        .and_then(|rest| rest.split("\nNDJSON").next())
        .expect("README's quick start sends an NDJSON body");
    format!(
        "{}\n",
        body.replace("$now", &chrono::Utc::now().to_rfc3339())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_one_team_quick_start_works_unchanged_without_keys_or_tenants() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `lookout serve` without a config, as README's first command
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, body) = server
        .post_ndjson("/logs/_bulk?refresh=wait_for", readme_bulk_body())
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    assert_eq!(server.count("logs", "status:500").await, 2);
    // no header, no key; nothing about tenants, and the audit trail holds nothing
    let metrics = server.metrics().await;
    assert!(
        !metrics.contains("tenant=\"default\",index"),
        "one team: unlabelled as before"
    );
    let (status, audit) = server.get("/_lookout/audit").await;
    assert_eq!((status, &audit["entries"]), (200, &json!([])), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_agent_ships_with_its_own_key_when_keys_are_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app.json");
    let lines: String = (0..20)
        .map(|seq| format!("{{\"seq\":{seq},\"message\":\"line {seq}\"}}\n"))
        .collect();
    std::fs::write(&app, lines).expect("log file");
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nindex = \"shipped\"\nheartbeat_interval = \"200ms\"\npoll_interval = \"50ms\"\n[[agent.inputs]]\npaths = [{:?}]\n\n{}",
            app.display().to_string(),
            key_table("read", "read", "", &token_of("read"))
        ),
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    wait_until("the in-process agent shipped every line", 60, || async {
        let (status, body) = send(&server, Some("read"), "GET", "/shipped/_count", None).await;
        status == 200 && body["count"] == 20
    })
    .await;
}
