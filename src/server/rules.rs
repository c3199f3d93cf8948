//! Lookout's own rules API: the saved queries of `queries/` as files you can list, read,
//! write and delete over HTTP, a dry run of any rule, and the alert history.
//!
//! - `GET /_lookout/rules`: every rule file, with its health or why it does not load,
//!   its warnings (what it names that the data does not have), when its query last
//!   matched and whether it never has since it loaded;
//! - `GET|PUT|DELETE /_lookout/rules/{name}`: one rule's JSON (PUT validates it exactly as
//!   `lookout check` does, writes `queries/NAME.json` only when it is valid, and answers
//!   its warnings);
//! - `POST /_lookout/rules/{name}/_dry_run[?at=T]`: the current count, the state
//!   each alert would move to and the messages it would send, for the rule on disk or the
//!   rule in the body (to try an edit before saving it), with its warnings; nothing is
//!   sent or saved;
//! - `POST /_lookout/rules/{name}/_backtest?from=T&to=T`: the rule replayed over history
//!   (T: RFC 3339 or date math such as `now-6h`; default the last hour): its timeline of
//!   transitions and the messages it would have sent (`lookout rules test` prints it);
//! - `GET /_lookout/alerts/history[?rule=NAME&size=N]`: the newest transitions,
//!   delivery attempts and routing decisions (inhibited, muted, dropped) from
//!   `.lookout-alerts`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;

use super::SharedState;
use super::error::{ErrorCode, LookoutError};
use super::response::{json_response, ok};
use crate::rules::loader::PutRuleError;
use crate::rules::manager::RuleManager;
use crate::rules::rule::LoadedRule;

/// Largest rule body accepted.
const MAX_RULE_BYTES: usize = 256 * 1024;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_lookout/rules", get(list))
        .route("/_lookout/rules/{name}", get(one).put(put).delete(delete))
        .route("/_lookout/rules/{name}/_dry_run", post(dry_run))
        .route("/_lookout/rules/{name}/_backtest", post(backtest))
        .route("/_lookout/alerts/history", get(history))
}

type Answer = Result<Response, LookoutError>;

fn manager(state: &SharedState) -> Result<&std::sync::Arc<RuleManager>, LookoutError> {
    state.rules.get().ok_or_else(|| {
        LookoutError::new(
            ErrorCode::Unavailable,
            "rules_not_started",
            "the rules are still starting; retry in a moment",
        )
    })
}

async fn list(State(state): State<SharedState>) -> Answer {
    let manager = manager(&state)?;
    let running: HashMap<String, crate::rules::manager::RuleView> = manager
        .rules_with_warnings()
        .await
        .into_iter()
        .map(|view| (view.name.clone(), view))
        .collect();
    let rules: Vec<Value> = manager
        .rule_files()
        .into_iter()
        .map(|(name, text, load_error)| {
            let view = running.get(&name);
            let status = view.map(|view| &view.status);
            json!({
                "name": name,
                "rule": serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
                "running": view.is_some(),
                "load_error": load_error,
                "health": match (status, &load_error) {
                    (_, Some(_)) => "err",
                    (Some(status), None) if status.last_error.is_some() => "err",
                    (Some(status), None) if status.last_evaluation.is_some() => "ok",
                    _ => "unknown",
                },
                "last_evaluation": status.and_then(|status| status.last_evaluation).map(|time| time.to_rfc3339()),
                "evaluation_seconds": status.map(|status| status.evaluation_seconds),
                "last_error": status.and_then(|status| status.last_error.clone()),
                "active_alerts": status.map_or(0, |status| status.alerts.len()),
                "next_evaluation": view.and_then(|view| view.next_evaluation).map(|time| time.to_rfc3339()),
                "warnings": view.map_or_else(Vec::new, |view| view.warnings.clone()),
                "last_match": status.and_then(|status| status.last_match).map(|time| time.to_rfc3339()),
                "never_matched": status.is_some_and(|status| status.never_matched()),
            })
        })
        .collect();
    Ok(ok(&json!({"rules": rules})))
}

async fn one(State(state): State<SharedState>, Path(name): Path<String>) -> Answer {
    let manager = manager(&state)?;
    let text = manager.rule_text(&name).ok_or_else(|| not_found(&name))?;
    let rule: Value = serde_json::from_str(&text).map_err(|parse_error| {
        LookoutError::new(
            ErrorCode::Internal,
            "rule_unreadable",
            format!("queries/{name}.json is not JSON: {parse_error}"),
        )
    })?;
    Ok(ok(&rule))
}

fn not_found(name: &str) -> LookoutError {
    LookoutError::new(
        ErrorCode::NotFound,
        "rule_not_found",
        format!("no rule `{name}` (no queries/{name}.json)"),
    )
}

fn body_text(body: &Bytes) -> Result<&str, LookoutError> {
    if body.len() > MAX_RULE_BYTES {
        return Err(LookoutError::new(
            ErrorCode::PayloadTooLarge,
            "rule_too_large",
            format!("a rule is at most {MAX_RULE_BYTES} bytes"),
        ));
    }
    std::str::from_utf8(body).map_err(|_| {
        LookoutError::new(
            ErrorCode::BadRequest,
            "invalid_rule",
            "the body is not UTF-8; send the rule as JSON",
        )
    })
}

async fn put(
    actor: super::keys::Actor,
    State(state): State<SharedState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Answer {
    let manager = manager(&state)?;
    let text = body_text(&body)?;
    match manager.put_rule(&name, text) {
        Ok(created) => {
            state
                .audit
                .record(actor.entry(
                    "rule.put",
                    &name,
                    format!(
                        "{} queries/{name}.json ({} bytes)",
                        if created { "created" } else { "updated" },
                        text.len()
                    ),
                ))
                .await;
            let origin = "request body";
            let warnings = match LoadedRule::parse(text, &name, origin) {
                Ok(rule) => manager.warnings(&rule, text, origin).await,
                Err(_) => Vec::new(),
            };
            for warning in &warnings {
                tracing::warn!(rule = %name, %warning, "rule written through the API may never match");
            }
            Ok(json_response(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &json!({"name": name, "result": if created { "created" } else { "updated" }, "warnings": warnings}),
            ))
        }
        Err(PutRuleError::Invalid(reason)) => Err(LookoutError::new(
            ErrorCode::BadRequest,
            "invalid_rule",
            reason,
        )),
        Err(PutRuleError::LimitReached(reason)) => Err(LookoutError::new(
            ErrorCode::Conflict,
            "rule_limit_reached",
            reason,
        )),
        Err(PutRuleError::Io(io_error)) => Err(LookoutError::new(
            ErrorCode::Internal,
            "io_error",
            format!("cannot write queries/{name}.json: {io_error}"),
        )),
    }
}

async fn delete(
    actor: super::keys::Actor,
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Answer {
    let manager = manager(&state)?;
    match manager.delete_rule(&name) {
        Ok(true) => {
            state
                .audit
                .record(actor.entry("rule.delete", &name, format!("deleted queries/{name}.json")))
                .await;
            Ok(ok(&json!({"name": name, "result": "deleted"})))
        }
        Ok(false) => Err(not_found(&name)),
        Err(io_error) => Err(LookoutError::new(
            ErrorCode::Internal,
            "io_error",
            format!("cannot delete queries/{name}.json: {io_error}"),
        )),
    }
}

async fn dry_run(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Answer {
    let manager = manager(&state)?;
    let at = time_parameter(&params, "at", "now")?;
    let (rule, text, origin) = rule_of(manager, &name, &body)?;
    let mut result = manager.dry_run(&rule, at).await.map_err(|reason| {
        LookoutError::new(
            ErrorCode::BadRequest,
            "evaluation_failed",
            reason.to_string(),
        )
    })?;
    result["warnings"] = manager.warnings(&rule, &text, &origin).await.into();
    Ok(ok(&result))
}

/// The time parameter `field` (RFC 3339 or date math such as `now-6h`), else `default`.
fn time_parameter(
    params: &HashMap<String, String>,
    field: &'static str,
    default: &str,
) -> Result<chrono::DateTime<chrono::Utc>, LookoutError> {
    let text = params.get(field).map_or(default, String::as_str);
    crate::index::query::date_math::parse_micros(
        text,
        chrono::Utc::now().timestamp_micros(),
        crate::index::query::date_math::Rounding::Down,
        None,
    )
    .ok()
    .and_then(chrono::DateTime::from_timestamp_micros)
    .ok_or_else(|| {
        LookoutError::new(
            ErrorCode::BadRequest,
            "invalid_parameter",
            format!(
                "`{field}`: `{text}` is not a time; use RFC 3339 (2026-11-22T10:00:00Z) or date math (now-6h)"
            ),
        )
    })
}

/// The rule in the body, or else rule `name` on disk, with its text and how errors name it.
fn rule_of(
    manager: &RuleManager,
    name: &str,
    body: &Bytes,
) -> Result<(std::sync::Arc<LoadedRule>, String, String), LookoutError> {
    let empty = body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null";
    let (text, origin) = if empty {
        let text = manager.rule_text(name).ok_or_else(|| not_found(name))?;
        (text, format!("queries/{name}.json"))
    } else {
        (body_text(body)?.to_string(), "request body".to_string())
    };
    let rule = LoadedRule::parse(&text, name, &origin)
        .map(std::sync::Arc::new)
        .map_err(|reason| {
            LookoutError::new(ErrorCode::BadRequest, "invalid_rule", reason.to_string())
        })?;
    Ok((rule, text, origin))
}

async fn backtest(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Answer {
    let manager = manager(&state)?;
    let from = time_parameter(&params, "from", "now-1h")?;
    let to = time_parameter(&params, "to", "now")?;
    if to < from {
        return Err(LookoutError::new(
            ErrorCode::BadRequest,
            "invalid_parameter",
            format!("`to` ({to}) is before `from` ({from})"),
        ));
    }
    let (rule, _, _) = rule_of(manager, &name, &body)?;
    let result = manager.backtest(rule, from, to).await.map_err(|reason| {
        LookoutError::new(
            ErrorCode::BadRequest,
            "evaluation_failed",
            reason.to_string(),
        )
    })?;
    Ok(ok(&result))
}

async fn history(
    State(state): State<SharedState>,
    Query(params): Query<HashMap<String, String>>,
) -> Answer {
    state.ingest.before_search().await;
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
    let rule = params.get("rule").cloned();
    let store = state.store.clone();
    // events not indexed yet (storage degraded) are the newest
    let held = state.rules.get().map_or_else(Vec::new, |rules| {
        rules.history().held(rule.as_deref(), size)
    });
    state.ingest.refresh().await;
    let failed = |reason: String| LookoutError::new(ErrorCode::Internal, "search_failed", reason);
    let events = tokio::task::spawn_blocking(move || {
        crate::notify::history::recent(&store, rule.as_deref(), size)
    })
    .await
    .map_err(|join_error| failed(join_error.to_string()))?
    .map_err(failed)?;
    // an event held when `held` was read may have been indexed since (the writer drains
    // what it wrote): shown once, from the index
    let mut held = held;
    held.retain(|event| !events.contains(event));
    let events: Vec<Value> = held.into_iter().chain(events).take(size).collect();
    Ok(ok(&json!({"events": events})))
}
