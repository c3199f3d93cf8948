//! Keys and tenants for the access tests: `[[auth.keys]]` tables of known tokens (only
//! their SHA-256 in the config, as an operator writes it), a server started with such a
//! config, and [`Caller`], a client acting for one tenant either with `X-Scope-OrgID` or
//! with a key of that tenant.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::Server;
use super::slack::{MockSlack, start_mock};

/// The lowercase hex SHA-256 of `text` (what `token_sha256` holds).
pub fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// An `[[auth.keys]]` table for `token`; `scope` is a TOML line such as
/// `tenant = "team-a"` or `tenants = ["*"]`, or empty (the default tenant).
pub fn key_table(name: &str, role: &str, scope: &str, token: &str) -> String {
    format!(
        "[[auth.keys]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nrole = \"{role}\"\n{scope}\n\n",
        sha256_hex(token)
    )
}

/// `lookout serve` on `dir/data` with `config` written to `dir/lookout.toml` and the
/// rules of `dir/queries` (made if missing).
pub fn serve_with_config(dir: &Path, config: &str) -> Server {
    let config_path = dir.join("lookout.toml");
    std::fs::write(&config_path, config).expect("config");
    let queries = dir.join("queries");
    std::fs::create_dir_all(&queries).expect("queries");
    super::rules::serve_rules_with_config(dir, &queries, &config_path, "")
}

/// A client acting for one tenant: with a key (and no header, the key's own tenant) or,
/// without keys, naming the tenant in `X-Scope-OrgID`.
pub struct Caller<'a> {
    pub server: &'a Server,
    pub tenant: &'static str,
    /// The token sent as `Authorization: Bearer`, if any.
    pub token: Option<String>,
    /// `X-Scope-OrgID` to send (by default the tenant when there is no token).
    pub header: Option<String>,
}

impl<'a> Caller<'a> {
    /// Acts for `tenant` through `X-Scope-OrgID`, without a key.
    pub fn new(server: &'a Server, tenant: &'static str) -> Caller<'a> {
        Caller {
            server,
            tenant,
            token: None,
            header: Some(tenant.to_owned()),
        }
    }

    /// Acts with `token`, a key of `tenant`, sending no header.
    pub fn with_key(server: &'a Server, tenant: &'static str, token: &str) -> Caller<'a> {
        Caller {
            server,
            tenant,
            token: Some(token.to_owned()),
            header: None,
        }
    }

    /// The same caller naming `tenant` in `X-Scope-OrgID`.
    pub fn naming(&self, tenant: &str) -> Caller<'a> {
        Caller {
            server: self.server,
            tenant: self.tenant,
            token: self.token.clone(),
            header: Some(tenant.to_owned()),
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.server.client.request(method, self.server.url(path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(tenant) = &self.header {
            request = request.header("X-Scope-OrgID", tenant);
        }
        request
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.request(reqwest::Method::GET, path).send().await;
        super::decode(response.expect("GET")).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let response = self.request(reqwest::Method::DELETE, path).send().await;
        super::decode(response.expect("DELETE")).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await;
        super::decode(response.expect("POST")).await
    }

    pub async fn post_ndjson(&self, path: &str, body: String) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await;
        super::decode(response.expect("POST ndjson")).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::PUT, path)
            .json(body)
            .send()
            .await;
        super::decode(response.expect("PUT")).await
    }

    /// The one `firing` transition of `rule` in the tenant's alert history.
    pub async fn only_firing_of(&self, rule: &str) -> Value {
        let (status, history) = self
            .get(&format!("/_lookout/alerts/history?rule={rule}"))
            .await;
        assert_eq!(status, 200, "{history}");
        let firing: Vec<&Value> = history["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|event| event["to"] == "firing")
            .collect();
        assert_eq!(firing.len(), 1, "{}: {history}", self.tenant);
        firing[0].clone()
    }

    /// The instant value of `query`'s only series, as Prometheus writes it.
    pub async fn instant_value(&self, query: &str) -> Option<String> {
        let (status, body) = self
            .get(&format!("/api/v1/query?query={}", super::urlencode(query)))
            .await;
        assert_eq!(status, 200, "{body}");
        let result = body["data"]["result"].as_array()?.clone();
        assert!(result.len() <= 1, "{query}: {body}");
        result
            .first()
            .and_then(|series| series["value"][1].as_str().map(str::to_owned))
    }
}

/// The rule both tenants have under the same name, with the same labels; only the
/// summary says whose it is.
pub fn errors_rule(team: &str) -> String {
    json!({
        "version": 1,
        "schedule": "*/5 * * * * *",
        "index": "logs",
        "query": "level:error",
        "window": "1m",
        "threshold": {"op": ">", "value": 0},
        "labels": {"team": "checkout"},
        "summary": format!("{team}: {{{{ $count }}}} errors")
    })
    .to_string()
}

/// A webhook receiver of Alertmanager's payload.
pub async fn webhook() -> (Arc<Mutex<MockSlack>>, String) {
    let mock = Arc::new(Mutex::new(MockSlack {
        alertmanager: true,
        ..MockSlack::default()
    }));
    let url = start_mock(mock.clone()).await;
    (mock, url)
}

pub fn tenant_table(name: &str, webhook: &str, target: &str, extra: &str) -> String {
    format!(
        "[tenants.{name}]\n\
         [tenants.{name}.notifiers.hook]\ntype = \"webhook\"\nurl = \"{webhook}\"\n\
         [tenants.{name}.routing]\ndefault = [\"hook\"]\n\
         [[tenants.{name}.scrape_configs]]\njob_name = \"app\"\nscrape_interval = \"1s\"\n\
         [[tenants.{name}.scrape_configs.static_configs]]\ntargets = [\"{target}\"]\n\
         {extra}"
    )
}

pub fn hits_total(body: &Value) -> u64 {
    body["hits"]["total"]["value"].as_u64().expect("hits.total")
}

/// Every hit of `body` is `team`'s.
pub fn only_teams(body: &Value, team: &str) -> bool {
    body["hits"]["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .all(|hit| hit["_source"]["owner"] == team)
}

/// The value of the sample `series` (name and labels as written) in `metrics`.
pub fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
}

/// Whether `body` is a 403 refusal in the dialect of `path`'s API: Elasticsearch's
/// `security_exception`, Prometheus' `errorType`, Alertmanager's or Lookout's own.
pub fn forbidden_in_dialect(path: &str, body: &Value) -> bool {
    if path.starts_with("/api/v1/") {
        body["status"] == "error" && body["errorType"] == "security_exception"
    } else if path.starts_with("/api/v2/") {
        body["code"] == 403 && body["message"].is_string()
    } else if [
        "/_lookout/rules",
        "/_lookout/alerts",
        "/_lookout/keys",
        "/_lookout/audit",
        "/_lookout/tenants",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix))
    {
        body["error"]["type"] == "security_exception"
            && body["status"] == 403
            && body["error"].get("root_cause").is_none()
    } else {
        body["error"]["type"] == "security_exception"
            && body["error"]["root_cause"][0]["type"] == "security_exception"
            && body["status"] == 403
    }
}
