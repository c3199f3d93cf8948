//! Authentication and roles: the layer between browser safety and tenant dispatch (see
//! [`super::access`]). It reads the caller's key from `Authorization`, checks the key's
//! role against the route's ([`required_role`], one table), and puts the caller's
//! [`Principal`] into the request's extensions.
//!
//! - Credentials: `Bearer TOKEN`, `ApiKey TOKEN`, `ApiKey base64(NAME:TOKEN)` (what
//!   Elasticsearch clients send for an API key: the id is the key's name) and `Basic
//!   base64(ANY:TOKEN)` for tools that only do Basic ([`parse_authorization`]).
//! - No or a wrong credential: 401 in the route's dialect, with `WWW-Authenticate:
//!   Bearer realm="lookout"`. Never `Basic`: a browser answers a Basic challenge with its
//!   login prompt and then sends the credentials with every request on its own, including
//!   the ones another site's page makes it send (CSRF). The UI asks for a key itself.
//! - A role too small for the route: 403 in the route's dialect (Elasticsearch's
//!   `security_exception`, Prometheus' `errorType`, Alertmanager's and Lookout's own).
//! - Failed authentication is limited per source address ([`FailureLimiter`]): after
//!   [`MAX_FAILURES`] different wrong credentials within [`FAILURE_WINDOW`], the address
//!   gets 429 until the window ends, whatever it sends. Other addresses are unaffected, so
//!   an attacker cannot lock a key's holder out from elsewhere; the same wrong token sent
//!   again (an agent with a stale key retrying) is not guessing and counts once, so it
//!   does not lock out the other clients of its host. Every refusal is counted in
//!   `lookout_auth_failures_total{reason}`.
//!
//! Without any key, nothing is checked and no principal is inserted (today's zero-config
//! loopback server).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::access::Role;
use super::error::{AlertmanagerError, ApiError, ErrorCode, LookoutError, PrometheusError};
use crate::keys::{Credential, KeyStore};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: health checks and the UI's files (which hold no data).
    Open,
    /// A key with at least this role.
    Needs(Role),
}

use Access::{Needs, Open};
use Role::{Admin, Edit, Ingest, Read};

/// Every route of the listener and what it needs, first match wins. A path segment
/// `{name}` matches any one segment, `{*rest}` one or more; `HEAD` is `GET` unless listed.
/// A request no row matches needs [`Role::Admin`], so a route added without a row here
/// is closed rather than open. docs/api.md's routes table lists the same roles (a test
/// compares them).
const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/-/healthy", Open),
    ("GET", "/-/ready", Open),
    ("GET", "/ui", Open),
    ("GET", "/ui/{*page}", Open),
    // what shippers need: the cluster's version and health, writes, the agent protocol
    ("GET", "/", Needs(Ingest)),
    ("GET", "/_cluster/health", Needs(Ingest)),
    ("GET", "/_cluster/health/{index}", Needs(Ingest)),
    ("POST|PUT", "/_bulk", Needs(Ingest)),
    ("GET|POST", "/_refresh", Needs(Ingest)),
    ("GET", "/_lookout/info", Needs(Ingest)),
    ("POST", "/_lookout/heartbeat", Needs(Ingest)),
    ("DELETE", "/_lookout/agents/{id}", Needs(Ingest)),
    ("GET", "/_lookout/whoami", Needs(Ingest)),
    ("GET", "/_lookout/agents", Needs(Read)),
    ("GET", "/_lookout/patterns", Needs(Read)),
    ("GET", "/_lookout/tenants", Needs(Read)),
    ("GET", "/_lookout/rules", Needs(Read)),
    ("GET", "/_lookout/rules/{name}", Needs(Read)),
    ("PUT|DELETE", "/_lookout/rules/{name}", Needs(Edit)),
    ("POST", "/_lookout/rules/{name}/_dry_run", Needs(Edit)),
    ("POST", "/_lookout/rules/{name}/_backtest", Needs(Edit)),
    ("GET", "/_lookout/alerts/history", Needs(Read)),
    ("GET|POST", "/_lookout/keys", Needs(Admin)),
    ("DELETE", "/_lookout/keys/{name}", Needs(Admin)),
    ("GET", "/_lookout/audit", Needs(Admin)),
    ("GET|POST", "/_search", Needs(Read)),
    ("GET|POST|DELETE", "/_search/scroll", Needs(Read)),
    ("GET|POST|DELETE", "/_search/scroll/{id}", Needs(Read)),
    ("GET|POST", "/_msearch", Needs(Read)),
    ("GET|POST", "/_count", Needs(Read)),
    ("GET", "/_cat/indices", Needs(Read)),
    ("GET", "/_cat/indices/{index}", Needs(Read)),
    ("GET", "/_mapping", Needs(Read)),
    ("GET|POST", "/_field_caps", Needs(Read)),
    ("GET", "/metrics", Needs(Read)),
    ("GET|POST", "/api/v1/query", Needs(Read)),
    ("GET|POST", "/api/v1/query_range", Needs(Read)),
    ("GET|POST", "/api/v1/series", Needs(Read)),
    ("GET|POST", "/api/v1/labels", Needs(Read)),
    ("GET", "/api/v1/label/{name}/values", Needs(Read)),
    ("GET", "/api/v1/metadata", Needs(Read)),
    ("GET|POST", "/api/v1/status/buildinfo", Needs(Read)),
    ("GET|POST", "/api/v1/status/config", Needs(Read)),
    ("GET|POST", "/api/v1/status/flags", Needs(Read)),
    ("GET|POST", "/api/v1/status/runtimeinfo", Needs(Read)),
    ("GET|POST", "/api/v1/status/tsdb", Needs(Read)),
    ("GET|POST", "/api/v1/targets/metadata", Needs(Read)),
    ("GET|POST", "/api/v1/alertmanagers", Needs(Read)),
    ("GET|POST", "/api/v1/query_exemplars", Needs(Read)),
    ("GET|POST", "/api/v1/format_query", Needs(Read)),
    ("GET", "/api/v1/rules", Needs(Read)),
    ("GET", "/api/v1/alerts", Needs(Read)),
    ("GET", "/api/v1/targets", Needs(Read)),
    ("GET", "/federate", Needs(Read)),
    ("GET", "/_lookout/datasources", Needs(Read)),
    (
        "GET|POST",
        "/_lookout/datasources/{name}/api/v1/query",
        Needs(Read),
    ),
    (
        "GET|POST",
        "/_lookout/datasources/{name}/api/v1/query_range",
        Needs(Read),
    ),
    (
        "GET|POST",
        "/_lookout/datasources/{name}/api/v1/labels",
        Needs(Read),
    ),
    (
        "GET",
        "/_lookout/datasources/{name}/api/v1/label/{label}/values",
        Needs(Read),
    ),
    ("GET", "/api/v2/silences", Needs(Read)),
    ("POST", "/api/v2/silences", Needs(Edit)),
    ("GET", "/api/v2/silence/{id}", Needs(Read)),
    ("DELETE", "/api/v2/silence/{id}", Needs(Edit)),
    ("GET", "/api/v2/alerts", Needs(Read)),
    ("GET", "/api/v2/alerts/groups", Needs(Read)),
    ("GET", "/api/v2/status", Needs(Read)),
    ("GET", "/api/v2/receivers", Needs(Read)),
    // routes under an index name come last: `{index}` matches any segment, `_`-names too
    ("POST|PUT", "/{index}/_bulk", Needs(Ingest)),
    ("POST", "/{index}/_doc", Needs(Ingest)),
    ("PUT|POST|DELETE", "/{index}/_doc/{id}", Needs(Ingest)),
    ("GET", "/{index}/_doc/{id}", Needs(Read)),
    ("PUT|POST", "/{index}/_create/{id}", Needs(Ingest)),
    ("GET|POST", "/{index}/_refresh", Needs(Ingest)),
    ("GET|POST", "/{index}/_search", Needs(Read)),
    ("GET|POST", "/{index}/_msearch", Needs(Read)),
    ("GET|POST", "/{index}/_count", Needs(Read)),
    ("GET", "/{index}/_mapping", Needs(Read)),
    ("GET|POST", "/{index}/_field_caps", Needs(Read)),
    ("GET", "/{index}", Needs(Read)),
    ("PUT|DELETE", "/{index}", Needs(Admin)),
];

/// What `method path` needs (`path` without the query string, as the router sees it).
pub fn required_role(method: &Method, path: &str) -> Access {
    let method = if method == Method::HEAD {
        "HEAD"
    } else {
        method.as_str()
    };
    for (methods, pattern, access) in ROUTES {
        let method_matches = methods.split('|').any(|listed| {
            listed == method || (method == "HEAD" && listed == "GET" && !methods.contains("HEAD"))
        });
        if method_matches && path_matches(pattern, path) {
            return *access;
        }
    }
    Needs(Admin)
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let mut pattern_segments = pattern.split('/').skip(1);
    let mut path_segments = path.split('/').skip(1);
    if pattern == "/" {
        return path == "/";
    }
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return true,
            (Some(wanted), Some(_)) if wanted.starts_with("{*") => return true,
            (Some(wanted), Some(given)) => {
                let placeholder = wanted.starts_with('{') && !given.is_empty();
                if !placeholder && wanted != given {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The credential an `Authorization` header carries, if it is one of the accepted
/// forms. At most [`MAX_AUTHORIZATION_BYTES`] are looked at.
pub fn parse_authorization(header_value: &str) -> Option<Credential> {
    use base64::Engine;
    if header_value.len() > MAX_AUTHORIZATION_BYTES {
        return None;
    }
    let (scheme, credentials) = header_value.trim().split_once(' ')?;
    let credentials = credentials.trim();
    if credentials.is_empty() {
        return None;
    }
    let decoded = || {
        base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    };
    let token = |key_name: Option<&str>, token: &str| {
        (!token.trim().is_empty()).then(|| Credential {
            key_name: key_name.map(str::to_owned),
            token: token.to_owned(),
        })
    };
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => token(None, credentials),
        // an Elasticsearch API key is base64(id:key); a plain token has no `:` once
        // decoded (Lookout's tokens are base64url, whose `-` and `_` base64 rejects)
        "apikey" => match decoded().as_deref().and_then(|text| text.split_once(':')) {
            Some((name, secret)) => token(Some(name), secret),
            None => token(None, credentials),
        },
        "basic" => decoded()
            .as_deref()
            .and_then(|text| text.split_once(':'))
            .and_then(|(_, password)| token(None, password)),
        _ => None,
    }
}

/// `Authorization` headers longer than this are refused unread.
pub const MAX_AUTHORIZATION_BYTES: usize = 4096;

/// Wrong credentials from one address within [`FAILURE_WINDOW`] before it is blocked.
pub const MAX_FAILURES: u32 = 10;
/// The window failures are counted in; a blocked address waits for its end.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Source addresses tracked at most; beyond, the one that failed longest ago is
/// forgotten.
const MAX_SOURCES: usize = 10_000;

/// Failed authentications per source address, in fixed windows.
#[derive(Default)]
pub struct FailureLimiter {
    sources: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone)]
struct Window {
    started: Instant,
    failures: u32,
    /// Fingerprints (a prefix of the SHA-256) of the wrong tokens counted in it.
    seen: Vec<u64>,
}

impl FailureLimiter {
    /// How long `source` is still blocked, if it is.
    pub fn blocked(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let window = sources.get(&source)?;
        let ends = window.started + FAILURE_WINDOW;
        (window.failures >= MAX_FAILURES && now < ends).then(|| ends - now)
    }

    /// Counts a failure of `source` with a token of this fingerprint, unless the same
    /// token failed already in the window.
    pub fn failed(&self, source: IpAddr, fingerprint: u64, now: Instant) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, window| now < window.started + FAILURE_WINDOW);
            if sources.len() >= MAX_SOURCES
                && let Some(oldest) = sources
                    .iter()
                    .min_by_key(|(_, window)| window.started)
                    .map(|(address, _)| *address)
            {
                sources.remove(&oldest);
            }
        }
        let fresh = || Window {
            started: now,
            failures: 0,
            seen: Vec::new(),
        };
        let window = sources.entry(source).or_insert_with(fresh);
        if now >= window.started + FAILURE_WINDOW {
            *window = fresh();
        }
        if window.failures < MAX_FAILURES && !window.seen.contains(&fingerprint) {
            window.seen.push(fingerprint);
            window.failures += 1;
        }
    }
}

/// The server's authentication state: the keys and the failure limiter.
pub struct Authenticator {
    pub keys: std::sync::Arc<KeyStore>,
    pub failures: FailureLimiter,
    /// Every tenant's audit trail: key changes made outside the server (the command
    /// line) go to the trails of the key's tenants and the default tenant's.
    pub audits: std::sync::Arc<crate::audit::Trails>,
}

/// The API dialect a path answers errors in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Elasticsearch,
    Prometheus,
    Alertmanager,
    Lookout,
}

fn dialect(path: &str) -> Dialect {
    if path.starts_with("/api/v1/") {
        Dialect::Prometheus
    } else if path.starts_with("/api/v2/") {
        Dialect::Alertmanager
    } else if [
        "/_lookout/rules",
        "/_lookout/alerts",
        "/_lookout/keys",
        "/_lookout/audit",
        "/_lookout/whoami",
        "/_lookout/tenants",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix))
    {
        Dialect::Lookout
    } else {
        Dialect::Elasticsearch
    }
}

/// `error` in the dialect of `path`.
pub fn error_response(path: &str, error: ApiError) -> Response {
    match dialect(path) {
        Dialect::Elasticsearch => error.into_response(),
        Dialect::Prometheus => PrometheusError(error).into_response(),
        Dialect::Alertmanager => AlertmanagerError(error).into_response(),
        Dialect::Lookout => LookoutError(error).into_response(),
    }
}

/// The authentication layer (see the module doc).
pub async fn authenticate(
    State(state): State<std::sync::Arc<super::ListenerState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let auth = &state.auth;
    match auth.keys.notice_changes() {
        Ok(changes) => {
            for (action, key) in changes
                .added
                .iter()
                .map(|key| ("key.create", key))
                .chain(changes.removed.iter().map(|key| ("key.revoke", key)))
            {
                let entry = crate::audit::Entry {
                    key: "lookout keys (command line)".into(),
                    tenant: super::access::DEFAULT_TENANT.into(),
                    address: None,
                    action,
                    target: key.name.clone(),
                    summary: format!("noticed in the keys file; {}", key.describe()),
                };
                auth.audits
                    .record_for(entry, |tenant| key.tenants.allows(tenant))
                    .await;
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot re-read the keys file; keeping the keys read before");
        }
    }
    let path = request.uri().path().to_owned();
    let needed = match required_role(request.method(), &path) {
        Open => return next.run(request).await,
        Needs(role) => role,
    };
    if !auth.keys.enabled() {
        return next.run(request).await;
    }
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    let now = Instant::now();
    if let Some(wait) = source.and_then(|source| auth.failures.blocked(source, now)) {
        state.telemetry.auth_failures.add("blocked", 1);
        let mut response = error_response(
            &path,
            ApiError::new(
                ErrorCode::TooManyRequests,
                "security_exception",
                format!(
                    "too many failed authentications from this address; try again in {} s with a valid key",
                    wait.as_secs().max(1)
                ),
            ),
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return response;
    }
    let credential = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_authorization);
    let key = credential
        .as_ref()
        .and_then(|credential| auth.keys.authenticate(credential));
    let Some(key) = key else {
        let reason = if credential.is_some() {
            if let (Some(source), Some(credential)) = (source, &credential) {
                auth.failures
                    .failed(source, fingerprint(&credential.token), now);
            }
            "wrong"
        } else {
            "missing"
        };
        state.telemetry.auth_failures.add(reason, 1);
        let mut response = error_response(
            &path,
            ApiError::new(
                ErrorCode::Unauthorized,
                "security_exception",
                if reason == "wrong" {
                    "the key is not valid (unknown, revoked, or `ApiKey` naming another key); check the token"
                } else {
                    "missing credentials; send `Authorization: Bearer TOKEN` (or `ApiKey base64(NAME:TOKEN)`, or Basic with the token as password)"
                },
            ),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"lookout\""),
        );
        return response;
    };
    if !key.role.allows(needed) {
        state.telemetry.auth_failures.add("forbidden", 1);
        return error_response(
            &path,
            ApiError::new(
                ErrorCode::Forbidden,
                "security_exception",
                format!(
                    "action [{} {path}] is unauthorized for key [{}] with role [{}]: it needs role [{}] or above",
                    request.method(),
                    key.name,
                    role_name(key.role),
                    role_name(needed)
                ),
            ),
        );
    }
    request.extensions_mut().insert(key.principal());
    next.run(request).await
}

/// A prefix of a token's SHA-256: tells repeated wrong tokens apart without keeping them.
fn fingerprint(token: &str) -> u64 {
    let digest = crate::keys::digest(token);
    u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Ingest => "ingest",
        Role::Read => "read",
        Role::Edit => "edit",
        Role::Admin => "admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn encode(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn every_documented_authorization_form_is_parsed() {
        let plain = |token: &str| {
            Some(Credential {
                key_name: None,
                token: token.into(),
            })
        };
        assert_eq!(parse_authorization("Bearer s3cret"), plain("s3cret"));
        assert_eq!(parse_authorization("bearer  s3cret "), plain("s3cret"));
        assert_eq!(parse_authorization("ApiKey s3cret"), plain("s3cret"));
        assert_eq!(
            parse_authorization("ApiKey lk_ab-c_d"),
            plain("lk_ab-c_d"),
            "a Lookout token is not base64"
        );
        assert_eq!(
            parse_authorization(&format!("ApiKey {}", encode("ci:s3cret"))),
            Some(Credential {
                key_name: Some("ci".into()),
                token: "s3cret".into()
            })
        );
        assert_eq!(
            parse_authorization(&format!("Basic {}", encode("anyone:s3cret"))),
            plain("s3cret")
        );
        for refused in [
            "s3cret".to_owned(),
            "Bearer".to_owned(),
            "Bearer    ".to_owned(),
            format!("Basic {}", encode("user-only")),
            format!("Basic {}", encode("user: ")),
            "Digest s3cret".to_owned(),
            format!("Bearer {}", "x".repeat(MAX_AUTHORIZATION_BYTES)),
        ] {
            assert_eq!(parse_authorization(&refused), None, "{refused}");
        }
    }

    #[test]
    fn routes_need_the_roles_of_the_table() {
        let cases = [
            (Method::GET, "/-/healthy", Open),
            (Method::GET, "/ui/assets/app.js", Open),
            (Method::GET, "/ui/search", Open),
            (Method::POST, "/_bulk", Needs(Ingest)),
            (Method::POST, "/logs/_bulk", Needs(Ingest)),
            (Method::HEAD, "/", Needs(Ingest)),
            (Method::GET, "/logs/_search", Needs(Read)),
            (Method::HEAD, "/logs", Needs(Read)),
            (Method::GET, "/logs/_doc/1", Needs(Read)),
            (Method::DELETE, "/logs/_doc/1", Needs(Ingest)),
            (Method::DELETE, "/logs", Needs(Admin)),
            (Method::DELETE, "/_all", Needs(Admin)),
            (Method::PUT, "/_lookout/rules/r", Needs(Edit)),
            (Method::GET, "/_lookout/rules/r", Needs(Read)),
            (Method::POST, "/api/v2/silences", Needs(Edit)),
            (Method::GET, "/api/v1/label/job/values", Needs(Read)),
            (Method::DELETE, "/_lookout/keys/ci", Needs(Admin)),
            // unknown routes are closed
            (Method::POST, "/_lookout/something_new", Needs(Admin)),
            (Method::PATCH, "/logs/_search", Needs(Admin)),
            (Method::GET, "/logs/_search/extra", Needs(Admin)),
        ];
        for (method, path, access) in cases {
            assert_eq!(required_role(&method, path), access, "{method} {path}");
        }
    }

    #[test]
    fn a_source_is_blocked_after_its_failures_and_others_are_not() {
        let limiter = FailureLimiter::default();
        let attacker: IpAddr = [10, 0, 0, 1].into();
        let holder: IpAddr = [10, 0, 0, 2].into();
        let start = Instant::now();
        for _ in 0..3 * MAX_FAILURES {
            limiter.failed(attacker, 7, start);
        }
        assert_eq!(
            limiter.blocked(attacker, start),
            None,
            "the same wrong token again is not guessing"
        );
        for attempt in 1..MAX_FAILURES {
            limiter.failed(attacker, u64::from(attempt), start);
            assert_eq!(limiter.blocked(attacker, start), None, "{attempt}");
        }
        limiter.failed(attacker, 1000, start);
        assert!(limiter.blocked(attacker, start).is_some());
        assert_eq!(limiter.blocked(holder, start), None);
        let later = start + FAILURE_WINDOW;
        assert_eq!(limiter.blocked(attacker, later), None, "the block ends");
        limiter.failed(attacker, 1001, later);
        assert_eq!(limiter.blocked(attacker, later), None, "a new window");
    }

    #[test]
    fn tracked_sources_are_bounded() {
        let limiter = FailureLimiter::default();
        let now = Instant::now();
        for index in 0..(MAX_SOURCES as u32 + 10) {
            limiter.failed(IpAddr::from(index.to_be_bytes()), 1, now);
        }
        assert_eq!(limiter.sources.lock().expect("lock").len(), MAX_SOURCES);
    }
}
