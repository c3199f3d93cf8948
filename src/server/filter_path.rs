//! Elasticsearch's `filter_path` response filtering: `?filter_path=took,hits.hits._id`
//! keeps only the named parts of a JSON response.
//!
//! A pattern is a dotted path of object keys; `*` inside a segment matches any characters
//! of one key, `**` any number of keys, and a leading `-` makes the pattern an exclusion.
//! Arrays are transparent (`items.*.status` reaches into every element of `items`). As in
//! Elasticsearch, objects and arrays that end up empty are left out, and a response with
//! nothing left is `{}`.
//!
//! Shippers use it to shrink `_bulk` answers (Beats send
//! `filter_path=errors,items.*.error,items.*.status`), so `_bulk` writes its answer through
//! [`FilterPath::decide`] directly; every other JSON answer of the Elasticsearch API goes
//! through [`FilterPath::filter`] in a middleware.

use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Map, Value};

/// Marks a response its handler already filtered.
#[derive(Debug, Clone, Copy)]
pub struct Filtered;

/// Middleware: applies `?filter_path=` to successful JSON answers not already filtered.
/// Errors stay whole, so a filtered request still learns what went wrong.
pub async fn filter_responses(request: Request, next: Next) -> Response {
    let filter = Query::<std::collections::HashMap<String, String>>::try_from_uri(request.uri())
        .ok()
        .and_then(|query| {
            query
                .get("filter_path")
                .and_then(|text| FilterPath::parse(text))
        });
    let response = next.run(request).await;
    let Some(filter) = filter else {
        return response;
    };
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !json || !response.status().is_success() || response.extensions().get::<Filtered>().is_some()
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // answers are built in memory already; this only reads them back
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => {
            let text = serde_json::to_vec(&filter.filter(value)).expect("a JSON value serializes");
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(text))
        }
        Err(_) => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Parsed `filter_path`.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPath {
    includes: Vec<Vec<String>>,
    excludes: Vec<Vec<String>>,
}

/// What a filter does with the value at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The whole value.
    All,
    /// Some of what is inside it: look at its keys (a leaf here is left out).
    Some,
    /// It, but exclusions may remove parts of it: look at its keys (a leaf here is kept).
    AllBut,
    /// Nothing of it.
    None,
}

/// Where each pattern can be after the keys seen so far (positions into its segments).
#[derive(Debug, Clone, PartialEq)]
struct States(Vec<Vec<usize>>);

impl FilterPath {
    /// `None` when `text` names no pattern.
    pub fn parse(text: &str) -> Option<FilterPath> {
        let mut filter = FilterPath {
            includes: Vec::new(),
            excludes: Vec::new(),
        };
        for pattern in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (target, pattern) = match pattern.strip_prefix('-') {
                Some(rest) => (&mut filter.excludes, rest),
                None => (&mut filter.includes, pattern),
            };
            let segments: Vec<String> = pattern
                .split('.')
                .filter(|segment| !segment.is_empty())
                .map(str::to_string)
                .collect();
            if !segments.is_empty() {
                target.push(segments);
            }
        }
        (!filter.includes.is_empty() || !filter.excludes.is_empty()).then_some(filter)
    }

    fn start(patterns: &[Vec<String>]) -> States {
        States(
            patterns
                .iter()
                .map(|segments| closure(segments, vec![0]))
                .collect(),
        )
    }

    /// What the filter keeps of the value at `path` (object keys from the root).
    pub fn decide(&self, path: &[&str]) -> Keep {
        let mut includes = FilterPath::start(&self.includes);
        let mut excludes = FilterPath::start(&self.excludes);
        for key in path {
            includes = step(&self.includes, &includes, key);
            excludes = step(&self.excludes, &excludes, key);
        }
        self.keep(&includes, &excludes)
    }

    fn keep(&self, includes: &States, excludes: &States) -> Keep {
        if complete(&self.excludes, excludes) {
            return Keep::None;
        }
        let excluding = alive(excludes);
        if self.includes.is_empty() || complete(&self.includes, includes) {
            return if excluding { Keep::AllBut } else { Keep::All };
        }
        if alive(includes) {
            Keep::Some
        } else {
            Keep::None
        }
    }

    /// The parts of `value` the filter keeps (`{}` when nothing is left).
    pub fn filter(&self, value: Value) -> Value {
        self.filter_at(&[], value)
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    /// The parts of `value`, found at `path`, that the filter keeps; `None` when nothing.
    pub fn filter_at(&self, path: &[&str], value: Value) -> Option<Value> {
        let mut includes = FilterPath::start(&self.includes);
        let mut excludes = FilterPath::start(&self.excludes);
        for key in path {
            includes = step(&self.includes, &includes, key);
            excludes = step(&self.excludes, &excludes, key);
        }
        self.filter_value(value, &includes, &excludes)
    }

    fn filter_value(&self, value: Value, includes: &States, excludes: &States) -> Option<Value> {
        match self.keep(includes, excludes) {
            Keep::None => None,
            Keep::All => Some(value),
            keep @ (Keep::Some | Keep::AllBut) => match value {
                Value::Object(map) => {
                    let kept: Map<String, Value> = map
                        .into_iter()
                        .filter_map(|(key, inner)| {
                            let includes = step(&self.includes, includes, &key);
                            let excludes = step(&self.excludes, excludes, &key);
                            self.filter_value(inner, &includes, &excludes)
                                .map(|inner| (key, inner))
                        })
                        .collect();
                    (!kept.is_empty()).then_some(Value::Object(kept))
                }
                Value::Array(items) => {
                    let kept: Vec<Value> = items
                        .into_iter()
                        .filter_map(|item| self.filter_value(item, includes, excludes))
                        .collect();
                    (!kept.is_empty()).then_some(Value::Array(kept))
                }
                // a leaf: kept unless the patterns only want keys below it
                leaf => (keep == Keep::AllBut).then_some(leaf),
            },
        }
    }
}

/// Adds the positions reachable by letting a `**` match no key.
fn closure(segments: &[String], mut positions: Vec<usize>) -> Vec<usize> {
    let mut next = 0;
    while next < positions.len() {
        let position = positions[next];
        if segments
            .get(position)
            .is_some_and(|segment| segment == "**")
            && !positions.contains(&(position + 1))
        {
            positions.push(position + 1);
        }
        next += 1;
    }
    positions
}

fn step(patterns: &[Vec<String>], states: &States, key: &str) -> States {
    States(
        patterns
            .iter()
            .zip(&states.0)
            .map(|(segments, positions)| {
                let mut next = Vec::new();
                let mut push = |position: usize| {
                    if !next.contains(&position) {
                        next.push(position);
                    }
                };
                for &position in positions {
                    match segments.get(position).map(String::as_str) {
                        // the pattern already matched an ancestor: its whole subtree
                        None => push(position),
                        Some("**") => push(position),
                        Some(glob) if glob_matches(glob, key) => push(position + 1),
                        Some(_) => {}
                    }
                }
                closure(segments, next)
            })
            .collect(),
    )
}

fn complete(patterns: &[Vec<String>], states: &States) -> bool {
    patterns
        .iter()
        .zip(&states.0)
        .any(|(segments, positions)| positions.contains(&segments.len()))
}

fn alive(states: &States) -> bool {
    states.0.iter().any(|positions| !positions.is_empty())
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_matches(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*` at all
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bulk_answer() -> Value {
        json!({
            "took": 3,
            "errors": true,
            "items": [
                {"index": {"_index": "logs", "_id": "a", "result": "created", "status": 201,
                           "_shards": {"total": 1, "successful": 1, "failed": 0}}},
                {"create": {"_index": "logs", "_id": "b", "status": 409,
                            "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}}
            ]
        })
    }

    fn filtered(filter: &str, value: Value) -> Value {
        FilterPath::parse(filter).expect("a filter").filter(value)
    }

    #[test]
    fn keeps_named_paths_through_arrays() {
        assert_eq!(
            filtered("errors,items.*.error,items.*.status", bulk_answer()),
            json!({"errors": true, "items": [
                {"index": {"status": 201}},
                {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}}
            ]})
        );
    }

    #[test]
    fn leaves_out_what_ends_up_empty() {
        let mut answer = bulk_answer();
        answer["items"].as_array_mut().expect("items").pop();
        assert_eq!(
            filtered("errors,items.*.error", answer.clone()),
            json!({"errors": true})
        );
        assert_eq!(filtered("nothing.here", answer), json!({}));
    }

    #[test]
    fn double_star_and_partial_globs() {
        assert_eq!(
            filtered("**.status", bulk_answer())["items"],
            json!([{"index": {"status": 201}}, {"create": {"status": 409}}])
        );
        assert_eq!(
            filtered("items.*._sh*.tot*", bulk_answer()),
            json!({"items": [{"index": {"_shards": {"total": 1}}}]})
        );
        assert_eq!(
            filtered(
                "**._id",
                json!({"hits": {"hits": [{"_id": "1", "_source": {"_id": 3}}]}})
            ),
            json!({"hits": {"hits": [{"_id": "1", "_source": {"_id": 3}}]}})
        );
    }

    #[test]
    fn exclusions() {
        assert_eq!(
            filtered("-items,-took", bulk_answer()),
            json!({"errors": true})
        );
        assert_eq!(
            filtered("-**._shards", bulk_answer())["items"][0],
            json!({"index": {"_index": "logs", "_id": "a", "result": "created", "status": 201}})
        );
        assert_eq!(
            filtered("items,-items.*._index", bulk_answer())["items"][1],
            json!({"create": {"_id": "b", "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}})
        );
    }

    #[test]
    fn decisions_for_writers() {
        let filter = FilterPath::parse("errors,items.*.status").expect("a filter");
        assert_eq!(filter.decide(&["errors"]), Keep::All);
        assert_eq!(filter.decide(&["took"]), Keep::None);
        assert_eq!(filter.decide(&["items"]), Keep::Some);
        assert_eq!(filter.decide(&["items", "index"]), Keep::Some);
        assert_eq!(filter.decide(&["items", "index", "status"]), Keep::All);
        assert_eq!(filter.decide(&["items", "index", "_id"]), Keep::None);
        assert_eq!(FilterPath::parse(" , "), None);
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("st*s", "status"));
        assert!(glob_matches("*tus", "status"));
        assert!(!glob_matches("st*x", "status"));
        assert!(glob_matches("a*b*c", "aXbYc"));
        assert!(!glob_matches("a*b*c", "acb"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
    }
}
