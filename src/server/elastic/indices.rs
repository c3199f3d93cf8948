//! Index management: create, check, delete and describe indices, `_refresh`,
//! `_cat/indices`, `_mapping` and `_field_caps` (the types are the ones each field was
//! seen with).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::{ApiResult, OptionalIndex, Params, index_or, resolve};
use crate::index::store::LogIndex;
use crate::server::SharedState;
use crate::server::error::{ApiError, ErrorCode};
use crate::server::response::ok;

pub(super) async fn refresh(
    State(state): State<SharedState>,
    index: OptionalIndex,
    params: Params,
) -> ApiResult {
    resolve(&state, &index_or(index, "_all"), &params.0)?;
    state.ingest.refresh().await;
    Ok(ok(
        &json!({"_shards": {"total": 1, "successful": 1, "failed": 0}}),
    ))
}

// ---------------------------------------------------------------- indices

pub(super) async fn create_index(
    State(state): State<SharedState>,
    Path(index): Path<String>,
) -> ApiResult {
    if crate::index_name::is_lookout_internal(&index) {
        return Err(hidden_index(&index));
    }
    match state.store.create_index(&index) {
        Ok(true) => Ok(ok(
            &json!({"acknowledged": true, "shards_acknowledged": true, "index": index}),
        )),
        Ok(false) => Err(ApiError {
            code: ErrorCode::BadRequest,
            kind: "resource_already_exists_exception",
            reason: format!("index [{index}] already exists"),
            index: Some(index),
        }),
        Err(crate::index::StoreError::InvalidName { name, reason }) => Err(ApiError {
            code: ErrorCode::BadRequest,
            kind: "invalid_index_name_exception",
            reason: format!("Invalid index name [{name}], {reason}"),
            index: Some(name),
        }),
        Err(error) => Err(ApiError::internal("creating an index", error)),
    }
}

pub(super) async fn head_index(
    State(state): State<SharedState>,
    Path(index): Path<String>,
    params: Params,
) -> StatusCode {
    match resolve(&state, &index, &params.0) {
        Ok(found) if !found.is_empty() => StatusCode::OK,
        _ => StatusCode::NOT_FOUND,
    }
}

pub(super) async fn delete_index(
    actor: crate::server::keys::Actor,
    State(state): State<SharedState>,
    Path(index): Path<String>,
    params: Params,
) -> ApiResult {
    if state.destructive_requires_name && !names_every_index(&index) {
        return Err(ApiError::bad_request(
            "illegal_argument_exception",
            format!(
                "Wildcard expressions or all indices are not allowed: [{index}] is not a list of index names; name each index to delete, or set `index.destructive_requires_name = false` in lookout.toml"
            ),
        ));
    }
    let indices = resolve(&state, &index, &params.0)?;
    if let Some(hidden) = indices
        .iter()
        .find(|log_index| crate::index_name::is_lookout_internal(&log_index.name))
    {
        return Err(hidden_index(&hidden.name));
    }
    for log_index in indices {
        let store = state.store.clone();
        let name = log_index.name.clone();
        drop(log_index);
        let deleted = name.clone();
        tokio::task::spawn_blocking(move || store.delete_index(&deleted))
            .await
            .map_err(|error| ApiError::internal("deleting an index", error))?
            .map_err(|error| ApiError::internal("deleting an index", error))?;
        state
            .audit
            .record(actor.entry("index.delete", &name, format!("DELETE /{index}")))
            .await;
    }
    Ok(ok(&json!({"acknowledged": true})))
}

/// Whether an index expression is a list of plain names: no `_all`, no wildcard, no
/// exclusion (Elasticsearch's `action.destructive_requires_name`).
fn names_every_index(expression: &str) -> bool {
    expression.split(',').map(str::trim).all(|name| {
        !name.is_empty() && name != "_all" && !name.contains(['*', '?']) && !name.starts_with('-')
    })
}

/// The refusal of a client's write to one of Lookout's own hidden indices.
fn hidden_index(index: &str) -> ApiError {
    ApiError {
        code: ErrorCode::Forbidden,
        kind: "security_exception",
        reason: format!(
            "index [{index}] is written only by Lookout itself (its hidden `.lookout-*` indices); it cannot be created or deleted through the API"
        ),
        index: Some(index.to_owned()),
    }
}

pub(super) async fn get_index(
    State(state): State<SharedState>,
    Path(index): Path<String>,
    params: Params,
) -> ApiResult {
    let indices = resolve(&state, &index, &params.0)?;
    let mut body = Map::new();
    for log_index in indices {
        body.insert(
            log_index.name.clone(),
            json!({
                "aliases": {},
                "mappings": mapping_of(&log_index),
                "settings": {"index": {
                    "number_of_shards": "1", "number_of_replicas": "0", "uuid": log_index.uuid,
                    "creation_date": log_index.created_millis.to_string(), "provided_name": log_index.name,
                    "version": {"created": "8150099"},
                }},
            }),
        );
    }
    Ok(ok(&Value::Object(body)))
}

pub(super) async fn cat_indices(
    state: State<SharedState>,
    index: OptionalIndex,
    params: Params,
) -> ApiResult {
    // document counts come from what is searchable
    state.ingest.before_search().await;
    cat(&state.0, &index_or(index, "*"), &params.0)
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["b", "kb", "mb", "gb", "tb"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}b")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

fn cat(state: &SharedState, expression: &str, params: &HashMap<String, String>) -> ApiResult {
    let indices = resolve(state, expression, params)?;
    let raw_bytes = params.get("bytes").is_some_and(|unit| unit == "b");
    let rows: Vec<Vec<(&str, String)>> = indices
        .iter()
        .map(|index| {
            let size = index.disk_bytes();
            let size_text = if raw_bytes {
                size.to_string()
            } else {
                human_bytes(size)
            };
            vec![
                ("health", "green".to_string()),
                ("status", "open".to_string()),
                ("index", index.name.clone()),
                ("uuid", index.uuid.clone()),
                ("pri", "1".to_string()),
                ("rep", "0".to_string()),
                ("docs.count", index.doc_count().to_string()),
                ("docs.deleted", "0".to_string()),
                ("store.size", size_text.clone()),
                ("pri.store.size", size_text.clone()),
                ("dataset.size", size_text),
            ]
        })
        .collect();
    if params.get("format").is_some_and(|format| format == "json") {
        let body: Vec<Value> = rows
            .into_iter()
            .map(|row| {
                Value::Object(
                    row.into_iter()
                        .map(|(key, value)| (key.to_string(), json!(value)))
                        .collect(),
                )
            })
            .collect();
        return Ok(ok(&Value::Array(body)));
    }
    let header: Vec<&str> = [
        "health",
        "status",
        "index",
        "uuid",
        "pri",
        "rep",
        "docs.count",
        "docs.deleted",
        "store.size",
        "pri.store.size",
        "dataset.size",
    ]
    .to_vec();
    let mut table: Vec<Vec<String>> = Vec::new();
    if params.contains_key("v") {
        table.push(header.iter().map(|name| name.to_string()).collect());
    }
    table.extend(
        rows.into_iter()
            .map(|row| row.into_iter().map(|(_, value)| value).collect()),
    );
    let widths: Vec<usize> = (0..header.len())
        .map(|column| table.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(column, cell)| format!("{cell:width$}", width = widths[column]))
            .collect();
        text.push_str(line.join(" ").trim_end());
        text.push('\n');
    }
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    Ok(response)
}

/// The ES type names of each field path seen in `index`.
pub fn field_types(index: &LogIndex) -> BTreeMap<String, BTreeSet<&'static str>> {
    use crate::index::fields::{KIND_BOOLEAN, KIND_DOUBLE, KIND_LONG, KIND_TEXT};
    let mut fields: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    fields
        .entry("@timestamp".into())
        .or_default()
        .insert("date");
    for (path, kinds) in index.fields() {
        let entry = fields.entry(path).or_default();
        for (bit, name) in [
            (KIND_TEXT, "text"),
            (KIND_LONG, "long"),
            (KIND_DOUBLE, "double"),
            (KIND_BOOLEAN, "boolean"),
        ] {
            if kinds & bit != 0 {
                entry.insert(name);
            }
        }
    }
    fields
}

fn mapping_of(index: &LogIndex) -> Value {
    let mut properties = Map::new();
    for (path, kinds) in field_types(index) {
        // one type per field in a mapping: text wins (it is searchable as both)
        let kind = if kinds.contains("text") {
            "text"
        } else if kinds.contains("double") {
            "double"
        } else {
            kinds.iter().next().copied().unwrap_or("keyword")
        };
        let leaf = if kind == "text" {
            json!({"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}})
        } else {
            json!({"type": kind})
        };
        let mut target = &mut properties;
        let segments: Vec<&str> = path.split('.').collect();
        for segment in &segments[..segments.len() - 1] {
            let entry = target
                .entry(segment.to_string())
                .or_insert_with(|| json!({"properties": {}}));
            if entry.get("properties").is_none() {
                entry["properties"] = json!({});
            }
            target = entry["properties"]
                .as_object_mut()
                .expect("properties is an object");
        }
        target.insert(segments[segments.len() - 1].to_string(), leaf);
    }
    json!({"properties": properties})
}

pub(super) async fn mapping(
    State(state): State<SharedState>,
    index: OptionalIndex,
    params: Params,
) -> ApiResult {
    let indices = resolve(&state, &index_or(index, "*"), &params.0)?;
    let body: Map<String, Value> = indices
        .iter()
        .map(|index| (index.name.clone(), json!({"mappings": mapping_of(index)})))
        .collect();
    Ok(ok(&Value::Object(body)))
}

pub(super) async fn field_caps(
    State(state): State<SharedState>,
    index: OptionalIndex,
    params: Params,
) -> ApiResult {
    let indices = resolve(&state, &index_or(index, "*"), &params.0)?;
    let wanted: Vec<String> = params
        .get("fields")
        .map(|fields| fields.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| vec!["*".into()]);
    let mut fields: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for log_index in &indices {
        for (path, kinds) in field_types(log_index) {
            let entry = fields.entry(path.clone()).or_default();
            entry.extend(kinds.iter().copied());
            if kinds.contains("text") {
                fields
                    .entry(format!("{path}.keyword"))
                    .or_default()
                    .insert("keyword");
            }
        }
    }
    let body: Map<String, Value> = fields
        .into_iter()
        .filter(|(path, _)| wanted.iter().any(|pattern| crate::index::store::glob_match(pattern, path)))
        .map(|(path, kinds)| {
            let caps: Map<String, Value> = kinds
                .into_iter()
                .map(|kind| (kind.to_string(), json!({"type": kind, "metadata_field": false, "searchable": true, "aggregatable": kind != "text"})))
                .collect();
            (path, Value::Object(caps))
        })
        .collect();
    Ok(ok(
        &json!({"indices": indices.iter().map(|index| index.name.clone()).collect::<Vec<_>>(), "fields": body}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lists_of_plain_names_may_be_deleted_by_default() {
        for named in ["logs", "logs,metrics", "logs-2024.01.01", " logs , other "] {
            assert!(names_every_index(named), "{named}");
        }
        for destructive in [
            "_all",
            "*",
            ".*",
            "logs-*",
            "logs,*",
            "logs,-other",
            "log?",
            "",
            "logs,",
        ] {
            assert!(!names_every_index(destructive), "{destructive}");
        }
    }
}
