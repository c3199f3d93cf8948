//! Tenant dispatch: the last layer of the listener (after browser safety and
//! authentication, see `access`). It picks the tenant of each request and runs that
//! tenant's own router, built on the tenant's own state, so isolation holds by
//! construction: a handler only ever sees one tenant's indexes, metrics, rules, alerts,
//! silences, history and scrolls, whatever wildcard or id it is given.
//!
//! The tenant is the one `X-Scope-OrgID` names, if the principal may act for it, else the
//! principal's default tenant (`default` without keys or tenants, so a one-team setup
//! needs no header). A tenant the key may not act for is refused with 403 before its
//! existence is looked at, so the answer never tells whether another tenant exists; an
//! unknown tenant is a 400 that lists nothing. Errors come in the dialect of the route.
//!
//! `X-Scope-OrgID: a|b` (Loki's multi-tenant read) is refused with a 400 that says so:
//! every answer here comes from one tenant's world, and merging several (scroll ids,
//! aggregations, PromQL over two stores) would be a second query engine; a caller asks
//! each tenant in turn instead.
//!
//! `/metrics` is the server's own and names every tenant's indexes and rules: with more
//! than one tenant it needs an operator key (`tenants = ["*"]`); a tenant key gets 403.
//!
//! `GET /_lookout/tenants` lists the tenants the caller may act for (the UI's switcher).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;
use tower::ServiceExt;

use super::access::{Principal, TENANT_HEADER, TenantScope};
use super::error::{ApiError, ErrorCode};
use super::response::ok;
use super::{ListenerState, SharedState};

/// Every tenant's state and router, by name.
pub struct Tenants {
    by_name: BTreeMap<String, (SharedState, Router)>,
}

impl Tenants {
    /// One router per tenant state (see [`super::tenant_router`]).
    pub fn new(states: impl IntoIterator<Item = SharedState>) -> Tenants {
        Tenants {
            by_name: states
                .into_iter()
                .map(|state| {
                    (
                        state.tenant.clone(),
                        (Arc::clone(&state), super::tenant_router(state)),
                    )
                })
                .collect(),
        }
    }

    /// Every tenant's state, by name.
    pub fn states(&self) -> impl Iterator<Item = &SharedState> {
        self.by_name.values().map(|(state, _)| state)
    }

    /// The router of the tenant this request acts for, or why it may not act for any.
    fn choose(&self, principal: &Principal, headers: &HeaderMap) -> Result<&Router, Refusal> {
        let named = requested_tenant(headers)?;
        let tenant = match &named {
            Some(name) => {
                if !principal.tenants.allows(name) {
                    return Err(Refusal::Forbidden(name.clone()));
                }
                name.as_str()
            }
            None => principal.tenants.default_tenant(),
        };
        match self.by_name.get(tenant) {
            Some((_, router)) => Ok(router),
            None => Err(Refusal::Unknown(tenant.to_owned())),
        }
    }
}

/// Why a request was not dispatched.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// `X-Scope-OrgID` is not one tenant name.
    BadHeader(String),
    /// The key may not act for this tenant (whether it exists is not said).
    Forbidden(String),
    /// No such tenant is configured.
    Unknown(String),
    /// The server's own metrics, which name every tenant's things, asked by a tenant key.
    OperatorOnly,
}

/// The tenant `X-Scope-OrgID` names, if it is sent.
fn requested_tenant(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let mut values = headers.get_all(TENANT_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::BadHeader(
            "send one `X-Scope-OrgID` header naming one tenant".to_owned(),
        ));
    }
    let name = value.to_str().unwrap_or_default().trim();
    if name.contains('|') {
        return Err(Refusal::BadHeader(format!(
            "`X-Scope-OrgID: {}` names several tenants (Loki's multi-tenant read), which Lookout does not merge: every answer comes from one tenant; send one request per tenant, each naming one",
            name.chars()
                .take(crate::tenant::MAX_TENANT_NAME_BYTES * 4)
                .collect::<String>()
        )));
    }
    if let Some(error) = crate::tenant::name_error(name) {
        return Err(Refusal::BadHeader(format!("`X-Scope-OrgID`: {error}")));
    }
    Ok(Some(name.to_owned()))
}

impl Refusal {
    fn error(self) -> ApiError {
        match self {
            Refusal::BadHeader(reason) => {
                ApiError::bad_request("illegal_argument_exception", reason)
            }
            Refusal::Forbidden(tenant) => ApiError::new(
                ErrorCode::Forbidden,
                "security_exception",
                format!(
                    "this key may not act for tenant `{tenant}` (X-Scope-OrgID); use a key of that tenant"
                ),
            ),
            Refusal::OperatorOnly => ApiError::new(
                ErrorCode::Forbidden,
                "security_exception",
                "`/metrics` names every tenant's indexes and rules: it needs an operator key (`tenants = [\"*\"]`); a tenant sees its own series through PromQL",
            ),
            Refusal::Unknown(tenant) => ApiError::bad_request(
                "illegal_argument_exception",
                format!(
                    "no tenant `{tenant}` (X-Scope-OrgID); GET /_lookout/tenants lists the tenants this key may use"
                ),
            ),
        }
    }
}

/// Answers `error` in the dialect of the API `path` belongs to, as authentication does
/// (a refused tenant is a `security_exception` everywhere; Prometheus' bad input is
/// `bad_data`).
fn in_dialect(path: &str, mut error: ApiError) -> Response {
    if path.starts_with("/api/v1/") && error.code == ErrorCode::BadRequest {
        error.kind = "bad_data";
    }
    super::auth::error_response(path, error)
}

/// The 403 of the server's own pages (`/metrics`), which name every tenant's things,
/// for a caller that is not an operator while more than one tenant exists.
pub fn refuse_unless_operator(listener: &ListenerState, request: &Request) -> Option<Response> {
    let several = listener.tenants.by_name.len() > 1;
    (several && principal(request).tenants != TenantScope::All)
        .then(|| in_dialect(request.uri().path(), Refusal::OperatorOnly.error()))
}

/// The principal authentication left, or the unauthenticated admin of every tenant when
/// no key is configured.
fn principal(request: &Request) -> Principal {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::unauthenticated_admin)
}

/// Runs `request` on its tenant's router.
pub async fn dispatch(State(listener): State<Arc<ListenerState>>, request: Request) -> Response {
    let principal = principal(&request);
    match listener.tenants.choose(&principal, request.headers()) {
        Ok(router) => match router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        },
        Err(refusal) => in_dialect(request.uri().path(), refusal.error()),
    }
}

/// `GET /_lookout/tenants`.
pub fn routes() -> Router<Arc<ListenerState>> {
    Router::new().route("/_lookout/tenants", get(list))
}

/// The tenants the caller may act for, and the one it acts for without a header.
async fn list(State(listener): State<Arc<ListenerState>>, request: Request) -> Response {
    let principal = principal(&request);
    let tenants: Vec<serde_json::Value> = listener
        .tenants
        .by_name
        .keys()
        .filter(|name| principal.tenants.allows(name))
        .map(|name| json!({"name": name}))
        .collect();
    ok(&json!({
        "tenants": tenants,
        "default_tenant": principal.tenants.default_tenant(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::access::Role;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(TENANT_HEADER, HeaderValue::from_str(value).expect("value"));
        }
        headers
    }

    #[test]
    fn the_header_must_name_one_valid_tenant() {
        assert_eq!(requested_tenant(&headers(&[])), Ok(None));
        assert_eq!(
            requested_tenant(&headers(&["team-a"])),
            Ok(Some("team-a".to_owned()))
        );
        for bad in [&["../x"][..], &["Team"], &["a", "b"], &[""], &["a|b"]] {
            assert!(
                matches!(requested_tenant(&headers(bad)), Err(Refusal::BadHeader(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_foreign_tenant_is_forbidden_whether_or_not_it_exists() {
        let tenants = Tenants {
            by_name: BTreeMap::new(),
        };
        let key = Principal {
            key_name: "team-a-reader".to_owned(),
            role: Role::Read,
            tenants: TenantScope::Some(vec!["team-a".to_owned()]),
        };
        // no tenant exists here at all, yet the answer is the same 403 for any other name
        for other in ["team-b", "no-such-team"] {
            let refusal = tenants.choose(&key, &headers(&[other])).err();
            assert_eq!(refusal, Some(Refusal::Forbidden(other.to_owned())));
        }
        let refusal = tenants
            .choose(&Principal::unauthenticated_admin(), &headers(&["team-z"]))
            .err();
        assert_eq!(refusal, Some(Refusal::Unknown("team-z".to_owned())));
        let error = Refusal::Unknown("team-z".to_owned()).error();
        assert_eq!(error.code, ErrorCode::BadRequest);
        assert!(!error.reason.contains("team-a"), "{}", error.reason);
    }

    #[test]
    fn several_tenants_in_one_header_are_refused_saying_what_to_do() {
        let Err(Refusal::BadHeader(reason)) = requested_tenant(&headers(&["team-a|team-b"])) else {
            panic!("`a|b` must be refused");
        };
        assert!(
            reason.contains("names several tenants") && reason.contains("one request per tenant"),
            "{reason}"
        );
    }
}
