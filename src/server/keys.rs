//! Lookout's access API, in its own error shape:
//!
//! | route | what |
//! |---|---|
//! | `GET /_lookout/whoami` | the caller's key name, role, tenant scope and current tenant (the UI reads it) |
//! | `GET /_lookout/keys` | every key without secrets (admin) |
//! | `POST /_lookout/keys` | `{"name", "role", "tenant"` or `"tenants"}` → the new key and its token, shown once (admin) |
//! | `DELETE /_lookout/keys/{name}` | revokes a created key; it stops working at once (admin) |
//! | `GET /_lookout/audit[?size=N]` | the audit trail, newest first (admin) |
//!
//! [`Actor`] is who makes a request, as the audit trail records it.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};

use super::SharedState;
use super::access::{Principal, Role, TENANT_HEADER};
use super::error::{ErrorCode, LookoutError};
use super::response::{json_response, ok};
use crate::keys::{KeyError, scope_list, tenant_scope};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_lookout/whoami", get(whoami))
        .route("/_lookout/keys", get(list).post(create))
        .route("/_lookout/keys/{name}", delete(revoke))
        .route("/_lookout/audit", get(audit))
}

type Answer = Result<Response, LookoutError>;

/// Who makes a request: the principal authentication inserted (an anonymous admin
/// without keys), the tenant it acts for and its address.
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    /// `X-Scope-OrgID` when given, else the key's first tenant.
    pub tenant: String,
    pub address: Option<std::net::IpAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Actor, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .unwrap_or_else(Principal::unauthenticated_admin);
        let tenant = parts
            .headers
            .get(TENANT_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|tenant| !tenant.is_empty())
            .map_or_else(
                || principal.tenants.default_tenant().to_owned(),
                str::to_owned,
            );
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        Ok(Actor {
            principal,
            tenant,
            address,
        })
    }
}

impl Actor {
    /// An audit entry of this actor.
    pub fn entry(
        &self,
        action: &'static str,
        target: impl Into<String>,
        summary: impl Into<String>,
    ) -> crate::audit::Entry {
        crate::audit::Entry {
            key: self.principal.key_name.clone(),
            tenant: self.tenant.clone(),
            address: self.address,
            action,
            target: target.into(),
            summary: summary.into(),
        }
    }
}

async fn whoami(actor: Actor, State(state): State<SharedState>) -> Answer {
    let principal = &actor.principal;
    if !principal.tenants.allows(&actor.tenant) {
        return Err(LookoutError::new(
            ErrorCode::Forbidden,
            "security_exception",
            format!(
                "key `{}` may not act for tenant `{}` (`{TENANT_HEADER}`); its tenants: {}",
                principal.key_name,
                actor.tenant,
                scope_list(&principal.tenants).join(", ")
            ),
        ));
    }
    Ok(ok(&json!({
        "key": principal.key_name,
        "role": principal.role,
        "tenants": scope_list(&principal.tenants),
        "tenant": actor.tenant,
        "authentication": state.keys.enabled(),
    })))
}

async fn list(State(state): State<SharedState>) -> Answer {
    let keys: Vec<Value> = state
        .keys
        .list()
        .iter()
        .map(crate::keys::Key::summary)
        .collect();
    Ok(ok(&json!({"keys": keys})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    role: Role,
    tenant: Option<String>,
    tenants: Option<Vec<String>>,
}

fn key_error(error: KeyError) -> LookoutError {
    let (code, kind) = match &error {
        KeyError::Invalid(_) => (ErrorCode::BadRequest, "invalid_key"),
        KeyError::Exists(_) => (ErrorCode::Conflict, "key_exists"),
        KeyError::NotFound(_) => (ErrorCode::NotFound, "key_not_found"),
        KeyError::Configured(_) => (ErrorCode::BadRequest, "key_configured"),
        KeyError::Io { .. } | KeyError::Corrupt { .. } => {
            tracing::error!(%error, "keys file");
            return LookoutError::new(
                ErrorCode::Internal,
                "keys_file",
                "cannot change the keys file; see the server log",
            );
        }
    };
    LookoutError::new(code, kind, error.to_string())
}

async fn create(actor: Actor, State(state): State<SharedState>, body: Bytes) -> Answer {
    let request: CreateRequest = serde_json::from_slice(&body).map_err(|error| {
        LookoutError::new(
            ErrorCode::BadRequest,
            "invalid_key",
            format!(
                "a key is {{\"name\": NAME, \"role\": \"ingest|read|edit|admin\", \"tenant\": T}} or with \"tenants\": [T, …] or [\"*\"]: {error}"
            ),
        )
    })?;
    let scope =
        tenant_scope(request.tenant.as_deref(), request.tenants.as_deref()).map_err(key_error)?;
    let keys = state.keys.clone();
    let (name, role) = (request.name.clone(), request.role);
    let (key, token) = tokio::task::spawn_blocking(move || keys.create(&name, role, &scope))
        .await
        .map_err(|join_error| {
            LookoutError::new(ErrorCode::Internal, "keys_file", join_error.to_string())
        })?
        .map_err(key_error)?;
    state
        .audits
        .record_for(
            actor.entry("key.create", &key.name, key.describe()),
            |tenant| key.tenants.allows(tenant),
        )
        .await;
    let mut body = key.summary();
    body["token"] = json!(token);
    body["note"] = json!("the token is shown once; Lookout keeps only its SHA-256");
    Ok(json_response(StatusCode::CREATED, &body))
}

async fn revoke(
    actor: Actor,
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Answer {
    let keys = state.keys.clone();
    let revoked = name.clone();
    let key = tokio::task::spawn_blocking(move || keys.revoke(&revoked))
        .await
        .map_err(|join_error| {
            LookoutError::new(ErrorCode::Internal, "keys_file", join_error.to_string())
        })?
        .map_err(key_error)?;
    let summary = format!("revoked over HTTP; {}", key.describe());
    state
        .audits
        .record_for(actor.entry("key.revoke", &name, summary), |tenant| {
            key.tenants.allows(tenant)
        })
        .await;
    Ok(ok(&json!({"name": name, "result": "revoked"})))
}

async fn audit(
    State(state): State<SharedState>,
    Query(params): Query<HashMap<String, String>>,
) -> Answer {
    let size = match params.get("size").map(|size| size.parse::<usize>()) {
        None => 100,
        Some(Ok(size)) if (1..=10_000).contains(&size) => size,
        Some(_) => {
            return Err(LookoutError::new(
                ErrorCode::BadRequest,
                "invalid_parameter",
                "`size` is a number from 1 to 10000",
            ));
        }
    };
    state.ingest.before_search().await;
    state.ingest.refresh().await;
    let store = state.store.clone();
    let failed = |reason: String| LookoutError::new(ErrorCode::Internal, "search_failed", reason);
    let entries = tokio::task::spawn_blocking(move || crate::audit::recent(&store, size))
        .await
        .map_err(|join_error| failed(join_error.to_string()))?
        .map_err(failed)?;
    Ok(ok(&json!({"entries": entries})))
}
