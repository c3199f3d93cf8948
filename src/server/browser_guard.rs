//! Browser safety, the first layer of the listener (before authentication): what keeps a
//! web page on another origin from using the browser that visits it to change anything
//! here.
//!
//! - **`Host` against DNS rebinding.** A rebinding page reaches this server under its own
//!   name, which the browser then sends as `Host`; only the names the server answers to
//!   are accepted ([`AllowedHosts`]): `localhost`, any IP address literal (an address
//!   cannot be rebound), and `http.allowed_hosts`. With a non-loopback `listen` and no
//!   list every name is accepted: the keys protect that listener, and the names it is
//!   reached by are not known here.
//! - **Cross-site writes refused.** A request that changes state ([`changes_state`]: every
//!   route but the reads, some of which are `POST`s) is refused when the browser says it
//!   is cross-site or same-site (`Sec-Fetch-Site`), or when its `Origin` is not the
//!   server's own (`Host`). Tools other than browsers send neither header.
//! - **JSON bodies only for writes**, as Elasticsearch 8 requires: a form or a `no-cors`
//!   `fetch` can only send `text/plain`, `application/x-www-form-urlencoded` or
//!   `multipart/form-data`, so a write with a body must say `application/json`,
//!   `application/x-ndjson` or their Elasticsearch `vnd` forms. (Prometheus' form-encoded
//!   `POST /api/v1/query` is a read and stays accepted.)
//!
//! Refusals answer in the dialect of the route (`server::response`). Every answer's
//! `X-Content-Type-Options: nosniff` is set in `server::router`. This layer does not
//! authenticate; keys are the next layer's.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{AlertmanagerError, ApiError, ErrorCode, LookoutError, PrometheusError};

/// `Host` and `Origin` values longer than this are refused unparsed (a DNS name has at
/// most 253 characters; with a port and a scheme this is ample).
pub const MAX_AUTHORITY_BYTES: usize = 300;

/// What the layer checks, built once at start from the config.
#[derive(Debug, Clone)]
pub struct BrowserGuard {
    pub hosts: AllowedHosts,
}

/// The `Host` names the server answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// Every name (`"*"` in `http.allowed_hosts`, or a non-loopback `listen` without a
    /// list).
    Any,
    /// `localhost`, IP address literals and these names (each with an optional port).
    Only(Vec<HostPattern>),
}

/// One entry of `http.allowed_hosts`: a name and, optionally, the only port it is
/// accepted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    pub host: String,
    pub port: Option<u16>,
}

impl AllowedHosts {
    /// The allowed hosts of a config: `entries` as written in `http.allowed_hosts`
    /// (`"logs.example.com"`, `"logs.example.com:9200"`, `"*"`), `loopback_listen`
    /// whether `listen` is a loopback address. Errors name the bad entry.
    pub fn from_config(entries: &[String], loopback_listen: bool) -> Result<AllowedHosts, String> {
        if entries.iter().any(|entry| entry == "*") {
            return Ok(AllowedHosts::Any);
        }
        if entries.is_empty() && !loopback_listen {
            return Ok(AllowedHosts::Any);
        }
        entries
            .iter()
            .map(|entry| {
                parse_authority(entry)
                    .map(|authority| HostPattern {
                        host: authority.host,
                        port: authority.port,
                    })
                    .map_err(|reason| {
                        format!(
                            "`http.allowed_hosts` entry `{entry}` is not a host name with an optional port ({reason}); write e.g. \"logs.example.com\" or \"logs.example.com:9200\""
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AllowedHosts::Only)
    }

    /// Whether a request whose `Host` is `authority` is answered.
    pub fn allows(&self, authority: &Authority) -> bool {
        match self {
            AllowedHosts::Any => true,
            AllowedHosts::Only(patterns) => {
                authority.host == "localhost"
                    || authority.is_ip_literal()
                    || patterns.iter().any(|pattern| {
                        pattern.host == authority.host
                            && pattern.port.is_none_or(|port| Some(port) == authority.port)
                    })
            }
        }
    }
}

/// A parsed `host[:port]`: the host lowercased without a trailing dot, IPv6 in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: Option<u16>,
}

impl Authority {
    fn is_ip_literal(&self) -> bool {
        self.host.starts_with('[') || self.host.parse::<std::net::Ipv4Addr>().is_ok()
    }
}

/// Parses a `Host` value (`name`, `name:port`, `1.2.3.4:port`, `[::1]:port`). Refuses
/// anything else: user info, paths, empty names, characters no host name has.
pub fn parse_authority(text: &str) -> Result<Authority, &'static str> {
    if text.len() > MAX_AUTHORITY_BYTES {
        return Err("too long");
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (address, after) = rest.split_once(']').ok_or("`[` without `]`")?;
        address
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| "not an IPv6 address in brackets")?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("text after `]`")?),
        };
        (format!("[{}]", address.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return Err("empty host name");
        }
        // (a fuzz find: `..` once became the name `.`)
        if host.starts_with('.') || host.ends_with('.') || host.contains("..") {
            return Err("an empty label in the host name");
        }
        if !host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_'))
        {
            return Err("a host name has only letters, digits, `.`, `-` and `_`");
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(digits) => Some(
            (!digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()))
                .then(|| digits.parse::<u16>().ok())
                .flatten()
                .ok_or("the port is not a number from 0 to 65535")?,
        ),
    };
    Ok(Authority { host, port })
}

/// A parsed `Origin`: scheme, host and the port (the scheme's default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `https`.
    pub secure: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Whether a page of this origin is the server a request was sent to as `host`: the
    /// same name and port. A `Host` without a port was sent to a scheme's default port,
    /// 80 or 443. The scheme is not compared: behind a proxy that ends TLS, the UI's
    /// `https` origin reaches a plain listener.
    pub fn is_of(&self, host: &Authority) -> bool {
        self.host == host.host
            && match host.port {
                Some(port) => self.port == port,
                None => self.port == 80 || self.port == 443,
            }
    }
}

/// Parses an `Origin` value (`http://host[:port]` or `https://…`); `null` and every other
/// scheme are `None`: no origin this server can be.
pub fn parse_origin(text: &str) -> Option<Origin> {
    let (authority, secure, default_port) = if let Some(rest) = text.strip_prefix("http://") {
        (rest, false, 80)
    } else if let Some(rest) = text.strip_prefix("https://") {
        (rest, true, 443)
    } else {
        return None;
    };
    let authority = parse_authority(authority).ok()?;
    Some(Origin {
        secure,
        host: authority.host,
        port: authority.port.unwrap_or(default_port),
    })
}

/// `POST` routes that change nothing: searches, counts, scrolls, field lists, refreshes,
/// Prometheus' queries, rule dry runs and backtests. `{}` is any one path segment.
const READ_POSTS: &[&str] = &[
    "/_search",
    "/{}/_search",
    "/_search/scroll",
    "/_search/scroll/{}",
    "/_msearch",
    "/{}/_msearch",
    "/_count",
    "/{}/_count",
    "/_field_caps",
    "/{}/_field_caps",
    "/_refresh",
    "/{}/_refresh",
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/status/buildinfo",
    "/api/v1/status/config",
    "/api/v1/status/flags",
    "/api/v1/status/runtimeinfo",
    "/api/v1/status/tsdb",
    "/api/v1/targets/metadata",
    "/api/v1/alertmanagers",
    "/api/v1/query_exemplars",
    "/api/v1/format_query",
    "/_lookout/datasources/{}/api/v1/query",
    "/_lookout/datasources/{}/api/v1/query_range",
    "/_lookout/datasources/{}/api/v1/labels",
    "/_lookout/rules/{}/_dry_run",
    "/_lookout/rules/{}/_backtest",
];

/// Whether a request changes state: every method but `GET`, `HEAD` and `OPTIONS`, except
/// the `POST` routes in [`READ_POSTS`].
pub fn changes_state(method: &Method, path: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    if *method != Method::POST {
        return true;
    }
    !READ_POSTS.iter().any(|pattern| path_matches(pattern, path))
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let mut segments = path.split('/');
    let mut parts = pattern.split('/');
    loop {
        match (parts.next(), segments.next()) {
            (None, None) => return true,
            (Some("{}"), Some(segment)) if !segment.is_empty() => {}
            (Some(part), Some(segment)) if part == segment => {}
            _ => return false,
        }
    }
}

/// Whether `value` is a `Content-Type` a write's body may have.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    [
        "application/json",
        "application/x-ndjson",
        "application/vnd.elasticsearch+json",
        "application/vnd.elasticsearch+x-ndjson",
    ]
    .iter()
    .any(|allowed| essence.eq_ignore_ascii_case(allowed))
}

/// The middleware: answers a refusal (counted in
/// `lookout_http_requests_refused_total{reason}` as `foreign_host`, `cross_site` or
/// `content_type`), or passes the request on unchanged.
pub async fn guard(
    State(state): State<std::sync::Arc<super::ListenerState>>,
    request: Request,
    next: Next,
) -> Response {
    match state
        .browser_guard
        .check(request.method(), request.uri(), request.headers())
    {
        Ok(()) => next.run(request).await,
        Err(Refusal { label, error }) => {
            state.telemetry.requests_refused.add(label, 1);
            in_dialect(request.uri().path(), error)
        }
    }
}

/// Why a request may not go on: the metric's label and the answer.
#[derive(Debug)]
pub struct Refusal {
    /// `foreign_host`, `cross_site` or `content_type`.
    pub label: &'static str,
    pub error: ApiError,
}

impl BrowserGuard {
    /// `Err` with the refusal when the request may not go on.
    pub fn check(
        &self,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        // HTTP/1.0 may omit `Host` (and absolute-form targets carry it in the URI);
        // browsers always send it, so a request without any cannot be a rebinding page's
        let host_text = headers
            .get(header::HOST)
            .map(|value| value.to_str().unwrap_or("\u{fffd}"))
            .or_else(|| uri.authority().map(|authority| authority.as_str()));
        let host = match host_text.map(parse_authority) {
            None => None,
            Some(Ok(host)) if self.hosts.allows(&host) => Some(host),
            Some(_) => {
                return Err(Refusal {
                    label: "foreign_host",
                    error: ApiError::new(
                        ErrorCode::Forbidden,
                        "security_exception",
                        format!(
                            "this server does not answer to the host `{}` (the `Host` header), which guards against DNS rebinding; if that is its name, add it to `http.allowed_hosts` in lookout.toml",
                            shortened(host_text.unwrap_or_default())
                        ),
                    ),
                });
            }
        };
        if !changes_state(method, uri.path()) {
            return Ok(());
        }
        let fetch_site = headers
            .get("sec-fetch-site")
            .and_then(|value| value.to_str().ok());
        if let Some(site @ ("cross-site" | "same-site")) = fetch_site {
            return Err(cross_site(&format!(
                "the browser marked it `Sec-Fetch-Site: {site}`"
            )));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin_text = origin.to_str().unwrap_or("\u{fffd}");
            let own = match (parse_origin(origin_text), &host) {
                (Some(origin), Some(host)) => origin.is_of(host),
                _ => false,
            };
            if !own {
                return Err(cross_site(&format!(
                    "its `Origin` `{}` is not this server's",
                    shortened(origin_text)
                )));
            }
        }
        if has_body(headers) {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .map(|value| value.to_str().unwrap_or("\u{fffd}"));
            if !content_type.is_some_and(is_json_content_type) {
                return Err(Refusal {
                    label: "content_type",
                    error: ApiError::new(
                        ErrorCode::NotAcceptable,
                        "media_type_header_exception",
                        format!(
                            "Content-Type header [{}] is not supported: a request that changes something needs a JSON body; send `Content-Type: application/json` (`application/x-ndjson` for `_bulk`), with curl `-H 'Content-Type: application/json'`",
                            shortened(content_type.unwrap_or(""))
                        ),
                    ),
                });
            }
        }
        Ok(())
    }
}

fn cross_site(why: &str) -> Refusal {
    Refusal {
        label: "cross_site",
        error: ApiError::new(
            ErrorCode::Forbidden,
            "security_exception",
            format!(
                "a cross-site request cannot change anything here ({why}); use the API from the Lookout UI itself or from a tool that is not a browser page"
            ),
        ),
    }
}

/// A request header echoed in a refusal, cut short (it is the sender's text).
fn shortened(text: &str) -> String {
    text.chars().take(100).collect()
}

/// Whether the request carries a body: a non-zero `Content-Length` or any
/// `Transfer-Encoding`.
fn has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|length| length.to_str().map_or(true, |length| length.trim() != "0"))
}

/// `error` in the error shape of the API `path` belongs to.
pub fn in_dialect(path: &str, error: ApiError) -> Response {
    if path.starts_with("/api/v1/") {
        PrometheusError(error).into_response()
    } else if path.starts_with("/api/v2/") {
        AlertmanagerError(error).into_response()
    } else if path.starts_with("/_lookout/rules") || path.starts_with("/_lookout/alerts") {
        LookoutError(error).into_response()
    } else {
        error.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, Uri};

    /// Every route of docs/api.md's table (`{name}` is a path segment), with whether it
    /// changes state.
    const ROUTES: &[(&str, &str, bool)] = &[
        ("GET", "/", false),
        ("GET", "/_cluster/health", false),
        ("POST", "/_bulk", true),
        ("POST", "/{index}/_bulk", true),
        ("POST", "/{index}/_doc", true),
        ("PUT", "/{index}/_doc/{id}", true),
        ("PUT", "/{index}/_create/{id}", true),
        ("GET", "/{index}/_doc/{id}", false),
        ("HEAD", "/{index}/_doc/{id}", false),
        ("DELETE", "/{index}/_doc/{id}", true),
        ("GET", "/{index}/_search", false),
        ("POST", "/{index}/_search", false),
        ("POST", "/_search/scroll", false),
        ("DELETE", "/_search/scroll", true),
        ("POST", "/_msearch", false),
        ("GET", "/{index}/_count", false),
        ("POST", "/{index}/_count", false),
        ("POST", "/{index}/_refresh", false),
        ("PUT", "/{index}", true),
        ("HEAD", "/{index}", false),
        ("DELETE", "/{index}", true),
        ("GET", "/{index}", false),
        ("GET", "/{index}/_mapping", false),
        ("GET", "/{index}/_field_caps", false),
        ("GET", "/_cat/indices", false),
        ("GET", "/api/v2/silences", false),
        ("POST", "/api/v2/silences", true),
        ("GET", "/api/v2/silence/{id}", false),
        ("DELETE", "/api/v2/silence/{id}", true),
        ("GET", "/api/v1/rules", false),
        ("GET", "/api/v1/alerts", false),
        ("GET", "/_lookout/rules", false),
        ("GET", "/_lookout/rules/{name}", false),
        ("PUT", "/_lookout/rules/{name}", true),
        ("DELETE", "/_lookout/rules/{name}", true),
        ("POST", "/_lookout/rules/{name}/_dry_run", false),
        ("POST", "/_lookout/rules/{name}/_backtest", false),
        ("GET", "/_lookout/alerts/history", false),
        ("GET", "/api/v1/targets", false),
        ("GET", "/api/v1/query", false),
        ("POST", "/api/v1/query", false),
        ("GET", "/api/v1/query_range", false),
        ("POST", "/api/v1/query_range", false),
        ("GET", "/api/v1/series", false),
        ("POST", "/api/v1/series", false),
        ("GET", "/api/v1/labels", false),
        ("GET", "/api/v1/label/{name}/values", false),
        ("GET", "/api/v1/metadata", false),
        ("GET", "/api/v1/status/buildinfo", false),
        ("POST", "/api/v1/status/buildinfo", false),
        ("GET", "/api/v1/status/config", false),
        ("POST", "/api/v1/status/config", false),
        ("GET", "/api/v1/status/flags", false),
        ("POST", "/api/v1/status/flags", false),
        ("GET", "/api/v1/status/runtimeinfo", false),
        ("POST", "/api/v1/status/runtimeinfo", false),
        ("GET", "/api/v1/status/tsdb", false),
        ("POST", "/api/v1/status/tsdb", false),
        ("GET", "/api/v1/targets/metadata", false),
        ("POST", "/api/v1/targets/metadata", false),
        ("GET", "/api/v1/alertmanagers", false),
        ("POST", "/api/v1/alertmanagers", false),
        ("GET", "/api/v1/query_exemplars", false),
        ("POST", "/api/v1/query_exemplars", false),
        ("GET", "/api/v1/format_query", false),
        ("POST", "/api/v1/format_query", false),
        ("GET", "/api/v2/alerts", false),
        ("GET", "/api/v2/alerts/groups", false),
        ("GET", "/api/v2/status", false),
        ("GET", "/api/v2/receivers", false),
        ("GET", "/metrics", false),
        ("GET", "/federate", false),
        ("GET", "/_lookout/datasources", false),
        ("GET", "/_lookout/datasources/{name}/api/v1/query", false),
        ("POST", "/_lookout/datasources/{name}/api/v1/query", false),
        (
            "GET",
            "/_lookout/datasources/{name}/api/v1/query_range",
            false,
        ),
        (
            "POST",
            "/_lookout/datasources/{name}/api/v1/query_range",
            false,
        ),
        ("GET", "/_lookout/datasources/{name}/api/v1/labels", false),
        ("POST", "/_lookout/datasources/{name}/api/v1/labels", false),
        (
            "GET",
            "/_lookout/datasources/{name}/api/v1/label/{label}/values",
            false,
        ),
        ("GET", "/ui/…", false),
        ("GET", "/-/healthy", false),
        ("GET", "/-/ready", false),
        // the agent protocol (docs/agent.md) and routes docs/api.md names in prose
        ("POST", "/_lookout/heartbeat", true),
        ("DELETE", "/_lookout/agents/{id}", true),
        ("GET", "/_lookout/agents", false),
        ("GET", "/_lookout/patterns", false),
        ("GET", "/_lookout/info", false),
        ("GET", "/_lookout/whoami", false),
        ("GET", "/_lookout/tenants", false),
        ("GET", "/_lookout/keys", false),
        ("POST", "/_lookout/keys", true),
        ("DELETE", "/_lookout/keys/{name}", true),
        ("GET", "/_lookout/audit", false),
        ("POST", "/_search", false),
        ("POST", "/_search/scroll/{id}", false),
        ("POST", "/{index}/_msearch", false),
        ("POST", "/_count", false),
        ("POST", "/_refresh", false),
        ("POST", "/{index}/_field_caps", false),
        ("POST", "/api/v1/labels", false),
        ("POST", "/{index}/_doc/{id}", true),
        // look-alikes of reads that are not
        ("POST", "/{index}/_doc/_search", true),
        ("POST", "/_search/scroll/{id}/{more}", true),
        ("POST", "//_search", true),
        ("POST", "/api/v1/query/{more}", true),
        ("PATCH", "/_search", true),
    ];

    /// `{name}` segments as a request has them.
    fn concrete(path: &str) -> String {
        path.split('/')
            .map(|segment| match segment.starts_with('{') {
                true => "x",
                false => segment,
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn every_documented_route_is_classified_as_a_read_or_a_write() {
        for &(method, path, writes) in ROUTES {
            let method = Method::from_bytes(method.as_bytes()).expect("a method");
            assert_eq!(
                changes_state(&method, &concrete(path)),
                writes,
                "{method} {path}"
            );
        }
        // a route added to the docs gets a line here, and so a decision
        let api = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md"),
        )
        .expect("docs/api.md");
        let mut documented = 0;
        for row in api.lines().filter(|line| line.starts_with("| `")) {
            let first_cell = row.split(" | ").next().unwrap_or_default();
            for route in first_cell.split('`').skip(1).step_by(2) {
                let Some((methods, path)) = route.split_once(' ') else {
                    continue; // a path that shares the methods of the one before
                };
                let path = path.split(['[', '?']).next().unwrap_or(path);
                for method in methods.split("\\|") {
                    documented += 1;
                    assert!(
                        ROUTES.iter().any(|&(m, p, _)| m == method && p == path),
                        "docs/api.md documents `{method} {path}`: classify it in ROUTES"
                    );
                }
            }
        }
        assert!(documented > 40, "the routes table was read: {documented}");
    }

    #[test]
    fn host_values_parse_into_a_lowercase_name_and_an_optional_port() {
        let parsed = |text| parse_authority(text).map(|a| (a.host, a.port));
        assert_eq!(
            parsed("LocalHost:9200"),
            Ok(("localhost".into(), Some(9200)))
        );
        assert_eq!(
            parsed("logs.example.com."),
            Ok(("logs.example.com".into(), None))
        );
        assert_eq!(parsed("[::1]:80"), Ok(("[::1]".into(), Some(80))));
        assert_eq!(parsed("[::1]"), Ok(("[::1]".into(), None)));
        for bad in [
            "",
            ":80",
            "a:",
            "a:b",
            "a:99999",
            "evil.com@localhost",
            "localhost/x",
            "[::1",
            "[zz]:1",
            "[::1]x",
            "a b",
            "..",
            ".a",
            "a..b",
        ] {
            assert!(parse_authority(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn loopback_default_accepts_localhost_and_addresses_only() {
        let hosts = AllowedHosts::from_config(&[], true).expect("valid");
        let allows = |text| hosts.allows(&parse_authority(text).expect("parses"));
        for good in [
            "localhost",
            "localhost:9200",
            "127.0.0.1:9200",
            "[::1]:9200",
            "10.1.2.3",
        ] {
            assert!(allows(good), "{good}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example:9200",
            "127.0.0.1.nip.io",
        ] {
            assert!(!allows(bad), "{bad}");
        }
        assert_eq!(
            AllowedHosts::from_config(&[], false).expect("valid"),
            AllowedHosts::Any
        );
        assert_eq!(
            AllowedHosts::from_config(&["*".into()], true).expect("valid"),
            AllowedHosts::Any
        );
    }

    #[test]
    fn configured_hosts_match_by_name_and_port_when_given() {
        let hosts = AllowedHosts::from_config(
            &["Logs.Example.com".into(), "other.example:9443".into()],
            false,
        )
        .expect("valid");
        let allows = |text| hosts.allows(&parse_authority(text).expect("parses"));
        assert!(allows("logs.example.com:9200"));
        assert!(allows("other.example:9443"));
        assert!(!allows("other.example:9200"));
        assert!(!allows("evil.example"));
        let error = AllowedHosts::from_config(&["http://x".into()], true).expect_err("a URL");
        assert!(error.contains("`http://x`"), "{error}");
    }

    #[test]
    fn origins_are_http_or_https_with_the_default_port() {
        assert_eq!(
            parse_origin("http://localhost"),
            Some(Origin {
                secure: false,
                host: "localhost".into(),
                port: 80
            })
        );
        assert_eq!(
            parse_origin("https://a.example:8443").map(|o| o.port),
            Some(8443)
        );
        assert_eq!(parse_origin("null"), None);
        assert_eq!(parse_origin("file://"), None);
        assert_eq!(parse_origin("http://a/b"), None);
    }

    fn check(method: &str, path: &str, headers: &[(&str, &str)]) -> Result<(), u16> {
        let guard = BrowserGuard {
            hosts: AllowedHosts::from_config(&[], true).expect("valid"),
        };
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        guard
            .check(
                &Method::from_bytes(method.as_bytes()).expect("method"),
                &path.parse::<Uri>().expect("uri"),
                &map,
            )
            .map_err(|refusal| refusal.error.code.status().as_u16())
    }

    #[test]
    fn writes_need_a_json_body_and_the_servers_own_origin() {
        let host = ("host", "127.0.0.1:9200");
        let json = ("content-type", "application/json");
        let length = ("content-length", "2");
        assert_eq!(
            check("POST", "/api/v2/silences", &[host, json, length]),
            Ok(())
        );
        assert_eq!(
            check(
                "POST",
                "/api/v2/silences",
                &[host, ("content-type", "text/plain"), length]
            ),
            Err(406)
        );
        assert_eq!(check("POST", "/api/v2/silences", &[host, length]), Err(406));
        // a body-less write (the agent's heartbeat) needs no type
        assert_eq!(check("POST", "/_lookout/heartbeat", &[host]), Ok(()));
        assert_eq!(
            check(
                "POST",
                "/_lookout/heartbeat",
                &[host, ("content-length", "0")]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                "POST",
                "/_bulk",
                &[
                    host,
                    (
                        "content-type",
                        "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
                    ),
                    length
                ]
            ),
            Ok(())
        );
        // reads take what Prometheus and curl send
        assert_eq!(
            check(
                "POST",
                "/api/v1/query",
                &[
                    host,
                    ("content-type", "application/x-www-form-urlencoded"),
                    length,
                    ("origin", "http://evil.example")
                ]
            ),
            Ok(())
        );
        let origin = |value| ("origin", value);
        assert_eq!(
            check(
                "POST",
                "/_bulk",
                &[host, json, length, origin("http://127.0.0.1:9200")]
            ),
            Ok(())
        );
        // behind a proxy that ends TLS the UI's origin is https, its Host without a port
        let bare = ("host", "localhost");
        assert_eq!(
            check(
                "POST",
                "/_bulk",
                &[bare, json, length, origin("https://localhost")]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                "POST",
                "/_bulk",
                &[bare, json, length, origin("http://localhost:8080")]
            ),
            Err(403)
        );
        for foreign in [
            "http://evil.example",
            "http://127.0.0.1:9300",
            "http://127.0.0.1",
            "null",
        ] {
            assert_eq!(
                check("POST", "/_bulk", &[host, json, length, origin(foreign)]),
                Err(403),
                "{foreign}"
            );
        }
        for site in ["cross-site", "same-site"] {
            assert_eq!(
                check("DELETE", "/logs", &[host, ("sec-fetch-site", site)]),
                Err(403)
            );
        }
        assert_eq!(
            check(
                "DELETE",
                "/logs",
                &[host, ("sec-fetch-site", "same-origin")]
            ),
            Ok(())
        );
        assert_eq!(
            check("GET", "/", &[("host", "evil.example:9200")]),
            Err(403)
        );
        assert_eq!(check("GET", "/", &[]), Ok(()));
    }
}
