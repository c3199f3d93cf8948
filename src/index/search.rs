//! Search execution over partitions: the ES search request model, one top-K collector
//! that sorts by score, `_doc`, `@timestamp` or any field, counting, and aggregations
//! merged across partitions.
//!
//! A search opens only the partitions whose time span overlaps the query's `@timestamp`
//! bounds. Hits are identified across partitions by `(partition, segment, doc)`, which also
//! orders `_doc` sorting and lets scroll pages continue after the last hit of the previous
//! page (search-after on pinned searchers), without deep paging. A request's own
//! `search_after` continues after a hit's sort values ([`search_after`]).

pub mod hit_fields;
pub mod scroll;
pub mod search_after;
pub mod source_filter;
mod top_hits;

use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tantivy::collector::Count;
use tantivy::query::Query as TantivyQuery;
use tantivy::schema::Value as _;
use tantivy::{DocAddress, DocId, Score, Searcher, SegmentOrdinal, TantivyDocument};

use super::aggregation;
use super::fields::DefaultFields;
use super::query::dsl::parse_query;
use super::query::{FieldRef, ParseContext, Query, QueryError, compile::compile};
use super::schema::TIMESTAMP_FIELD;
use super::store::{IndexStore, LogIndex};
pub use source_filter::{SourceFilter, filter_source};
use top_hits::{TopHits, can_place, truncate_sorted, visiting_order};

/// Largest `from + size` (Elasticsearch's `index.max_result_window`).
pub const MAX_RESULT_WINDOW: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Score,
    Doc,
    Timestamp,
    Field(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortField {
    pub key: SortKey,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrackTotalHits {
    Exact,
    UpTo(u64),
    Off,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: Query,
    pub from: usize,
    pub size: usize,
    pub sort: Vec<SortField>,
    pub source: SourceFilter,
    pub track_total_hits: TrackTotalHits,
    pub aggregations: Option<Value>,
    /// Most aggregation buckets (ES' `search.max_buckets`, 65 536).
    pub max_buckets: u32,
    /// Past this the search stops between partitions and answers with what it found
    /// (`timed_out`); none: it runs to its end.
    pub timeout: Option<std::time::Duration>,
    /// Cancelled when the client went away: the search stops between partitions.
    pub cancel: Option<tokio_util::sync::CancellationToken>,
    /// The clock and time field the request was parsed with, for the queries inside its
    /// aggregations (`filter`, `filters`); none: now and `@timestamp`.
    pub parse_context: Option<ParseContext>,
    /// `fields` and `docvalue_fields`, rendered into each hit's `fields`.
    pub fields: Vec<hit_fields::FieldRequest>,
    pub highlight: Option<hit_fields::Highlight>,
    /// The sort values hits must come strictly after (`search_after`).
    pub search_after: Option<Vec<SortValue>>,
}

impl SearchRequest {
    /// This request, stopping between partitions once `cancel` is cancelled.
    pub fn cancelled_by(self, cancel: &tokio_util::sync::CancellationToken) -> SearchRequest {
        SearchRequest {
            cancel: Some(cancel.clone()),
            ..self
        }
    }
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest {
            query: Query::MatchAll,
            from: 0,
            size: 10,
            sort: Vec::new(),
            source: SourceFilter::all(),
            track_total_hits: TrackTotalHits::Exact,
            aggregations: None,
            max_buckets: aggregation::MAX_BUCKETS,
            timeout: None,
            cancel: None,
            parse_context: None,
            fields: Vec::new(),
            highlight: None,
            search_after: None,
        }
    }
}

/// Parses a `sort` value: `"@timestamp"`, `{"f": "desc"}`, `{"f": {"order": "asc"}}`, lists
/// of those, or the URL form `f:desc,g`.
pub fn parse_sort(value: &Value) -> Result<Vec<SortField>, QueryError> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut sort = Vec::new();
    for item in items {
        match item {
            Value::String(text) => {
                for part in text.split(',').filter(|part| !part.is_empty()) {
                    let (name, order) = part.split_once(':').unwrap_or((part, ""));
                    sort.push(sort_field(name, (!order.is_empty()).then_some(order))?);
                }
            }
            Value::Object(map) => {
                for (name, options) in map {
                    let order = match options {
                        Value::String(order) => Some(order.as_str()),
                        Value::Object(options) => options.get("order").and_then(Value::as_str),
                        _ => None,
                    };
                    sort.push(sort_field(name, order)?);
                }
            }
            other => {
                return Err(QueryError::parsing(format!(
                    "[sort]: expected a field name or {{\"field\": \"asc|desc\"}}, got {other}"
                )));
            }
        }
    }
    Ok(sort)
}

fn sort_field(name: &str, order: Option<&str>) -> Result<SortField, QueryError> {
    let key = match name {
        "_score" => SortKey::Score,
        "_doc" => SortKey::Doc,
        name => match FieldRef::parse(name, TIMESTAMP_FIELD) {
            FieldRef::Timestamp => SortKey::Timestamp,
            FieldRef::Path { path, .. } => SortKey::Field(path),
            FieldRef::Id => {
                return Err(QueryError::parsing(
                    "[sort]: sorting on `_id` is not supported (as in Elasticsearch 8); sort on a field or `_doc`",
                ));
            }
            FieldRef::All => {
                return Err(QueryError::parsing(format!(
                    "[sort]: cannot sort on `{name}`"
                )));
            }
        },
    };
    let descending = match order.map(str::to_ascii_lowercase).as_deref() {
        None => key == SortKey::Score,
        Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(QueryError::parsing(format!(
                "[sort]: unknown order `{other}`; use \"asc\" or \"desc\""
            )));
        }
    };
    Ok(SortField { key, descending })
}

/// A sort value of one hit for one sort field.
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    Missing,
    Number(f64),
    Text(String),
}

impl SortValue {
    fn compare(&self, other: &SortValue, descending: bool) -> Ordering {
        // missing values sort last in both directions, like ES' default `_last`
        let ordering = match (self, other) {
            (SortValue::Missing, SortValue::Missing) => return Ordering::Equal,
            (SortValue::Missing, _) => return Ordering::Greater,
            (_, SortValue::Missing) => return Ordering::Less,
            (SortValue::Number(left), SortValue::Number(right)) => left.total_cmp(right),
            (SortValue::Text(left), SortValue::Text(right)) => left.cmp(right),
            (SortValue::Number(_), SortValue::Text(_)) => Ordering::Less,
            (SortValue::Text(_), SortValue::Number(_)) => Ordering::Greater,
        };
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            SortValue::Missing => Value::Null,
            SortValue::Number(value) if value.fract() == 0.0 && value.abs() < 9e15 => {
                json!(*value as i64)
            }
            SortValue::Number(value) => json!(value),
            SortValue::Text(text) => json!(text),
        }
    }
}

/// Unique position of a hit among the searched partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HitPosition {
    pub partition: u32,
    pub segment: SegmentOrdinal,
    pub doc: DocId,
}

#[derive(Debug, Clone)]
pub struct ScoredHit {
    pub values: Vec<SortValue>,
    pub score: Score,
    pub position: HitPosition,
}

/// One partition to search, pinned (a scroll keeps these searchers).
#[derive(Clone)]
pub struct Target {
    pub index: String,
    pub searcher: Searcher,
    /// The partition's event-time span `[start, end)`, in microseconds: every document's
    /// `@timestamp` is in it.
    pub span_micros: (i64, i64),
}

/// What a search runs over: the partitions that can hold matches, and the fields a query
/// without a field name searches.
#[derive(Clone, Default)]
pub struct Scope {
    pub targets: Vec<Target>,
    pub default_fields: DefaultFields,
}

impl Scope {
    /// The partitions of `indices` that can hold matches of `query`.
    pub fn new(indices: &[Arc<LogIndex>], query: &Query) -> Scope {
        let (lower, upper): (Bound<i64>, Bound<i64>) = query.time_bounds();
        let mut default_fields = DefaultFields::default();
        for index in indices {
            default_fields.merge(index.default_fields());
        }
        let targets = indices
            .iter()
            .flat_map(|index| {
                index
                    .partitions_overlapping(lower, upper)
                    .into_iter()
                    .map(move |partition| Target {
                        index: index.name.clone(),
                        searcher: partition.searcher(),
                        span_micros: (partition.start_micros, partition.end_micros),
                    })
            })
            .collect();
        Scope {
            targets,
            default_fields,
        }
    }
}

/// What a search found, before rendering.
pub struct SearchOutcome {
    pub total: u64,
    pub hits: Vec<ScoredHit>,
    pub aggregations: Option<Value>,
    pub max_score: Option<Score>,
    /// The search stopped at its timeout, before some partitions.
    pub timed_out: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("search failed: {0}")]
    Engine(#[from] tantivy::TantivyError),
    #[error("the search was cancelled: its client went away")]
    Canceled,
}

/// Runs `request` over `scope`, returning hits strictly after `after` (scroll).
pub fn execute(
    store: &IndexStore,
    scope: &Scope,
    request: &SearchRequest,
    after: Option<Arc<ScoredHit>>,
) -> Result<SearchOutcome, SearchError> {
    let targets = &scope.targets;
    let window = request.from + request.size;
    if window > MAX_RESULT_WINDOW && after.is_none() {
        return Err(QueryError {
            kind: "illegal_argument_exception",
            reason: format!(
                "Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] but was [{window}]. Use scroll to page through more results"
            ),
        }
        .into());
    }
    let compiled: Box<dyn TantivyQuery> =
        compile(&request.query, &store.schema, &scope.default_fields)?;
    let sort = Arc::new(if request.sort.is_empty() {
        vec![SortField {
            key: SortKey::Score,
            descending: true,
        }]
    } else {
        request.sort.clone()
    });
    let context = request
        .parse_context
        .clone()
        .unwrap_or_else(|| ParseContext {
            now_micros: chrono::Utc::now().timestamp_micros(),
            timestamp_field: TIMESTAMP_FIELD.to_string(),
        });
    let compile_filter = |query: &Value, at: &str| {
        let parsed = parse_query(query, &context).map_err(|error| QueryError {
            reason: format!("[{at}]: {}", error.reason),
            ..error
        })?;
        compile(&parsed, &store.schema, &scope.default_fields)
    };
    let aggregations = request
        .aggregations
        .as_ref()
        .map(|aggs| aggregation::translate(aggs, context.now_micros, &compile_filter))
        .transpose()?;
    let mut total = 0u64;
    let mut hits = Vec::new();
    let mut intermediate: Option<
        tantivy::aggregation::intermediate_agg_result::IntermediateAggregationResults,
    > = None;
    let deadline = request
        .timeout
        .map(|timeout| std::time::Instant::now() + timeout);
    let mut timed_out = false;
    let search_after = request.search_after.clone().map(Arc::new);
    for partition in visiting_order(targets, &sort) {
        let target = &targets[partition];
        if deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) {
            timed_out = true;
            break;
        }
        // the client left: nobody reads the answer
        if request
            .cancel
            .as_ref()
            .is_some_and(tokio_util::sync::CancellationToken::is_cancelled)
        {
            return Err(SearchError::Canceled);
        }
        let top = can_place(target, &sort, &hits, window).then(|| TopHits {
            sort: sort.clone(),
            limit: window,
            partition: partition as u32,
            after: after.clone(),
            search_after: search_after.clone(),
            doc_bases: Arc::new(search_after::doc_bases(&target.searcher)),
        });
        let aggregation_collector = aggregations.as_ref().map(|aggregations| {
            aggregation::collector(
                aggregations.aggregations.clone(),
                &target.searcher,
                request.max_buckets,
            )
        });
        let (count, partition_hits, partition_aggregations) =
            if top.is_none() && aggregation_collector.is_none() {
                // only the total is wanted: tantivy counts without visiting documents
                // where it can (all documents, a term without deletes)
                let count = target.searcher.search(compiled.as_ref(), &Count)?;
                (count, None, None)
            } else {
                target
                    .searcher
                    .search(compiled.as_ref(), &(Count, top, aggregation_collector))?
            };
        total += count as u64;
        if let Some(partition_hits) = partition_hits {
            hits.extend(partition_hits);
            truncate_sorted(&sort, &mut hits, window);
        }
        if let Some(result) = partition_aggregations {
            match intermediate.as_mut() {
                Some(merged) => merged.merge_fruits(result)?,
                None => intermediate = Some(result),
            }
        }
    }
    // kept sorted and cut to `window` after every partition
    let hits: Vec<ScoredHit> = hits.into_iter().skip(request.from).collect();
    let aggregations = match aggregations {
        Some(aggregations) => {
            let mut fetch = |filters: &[Value], spec: &aggregation::top_docs::TopDocs| {
                top_documents(store, scope, request, &context, filters, spec)
                    .map_err(|error| error.to_string())
            };
            Some(aggregation::finish(
                aggregations,
                intermediate,
                request.max_buckets,
                &mut fetch,
            )?)
        }
        None => None,
    };
    let scoring = sort.iter().any(|field| field.key == SortKey::Score);
    let max_score = scoring
        .then(|| hits.iter().map(|hit| hit.score).fold(f32::NAN, f32::max))
        .filter(|score| !score.is_nan());
    Ok(SearchOutcome {
        total,
        hits,
        aggregations,
        max_score,
        timed_out,
    })
}

/// The top documents of a `top_hits` or `top_metrics` in one bucket: the request's
/// matches that match `filters` too (the bucket's queries), sorted and cut as `spec` asks,
/// rendered as hits.
fn top_documents(
    store: &IndexStore,
    scope: &Scope,
    request: &SearchRequest,
    context: &ParseContext,
    filters: &[Value],
    spec: &aggregation::top_docs::TopDocs,
) -> Result<(u64, Vec<Value>), SearchError> {
    let mut bucket = super::query::BoolQuery {
        must: vec![request.query.clone()],
        ..Default::default()
    };
    for filter in filters {
        bucket.filter.push(parse_query(filter, context)?);
    }
    let sub = SearchRequest {
        query: Query::Bool(bucket),
        from: spec.from,
        size: spec.size,
        sort: spec
            .sort
            .as_ref()
            .map(parse_sort)
            .transpose()?
            .unwrap_or_default(),
        source: spec
            .source
            .as_ref()
            .map(source_filter::parse)
            .transpose()?
            .unwrap_or_else(SourceFilter::all),
        timeout: request.timeout,
        cancel: request.cancel.clone(),
        parse_context: Some(context.clone()),
        ..SearchRequest::default()
    };
    let outcome = execute(store, scope, &sub, None)?;
    let hits = render_hits(store, &scope.targets, &outcome.hits, &sub)?;
    Ok((outcome.total, hits))
}

/// Counts matches of `query` over `scope`.
pub fn count(store: &IndexStore, scope: &Scope, query: &Query) -> Result<u64, SearchError> {
    let compiled = compile(query, &store.schema, &scope.default_fields)?;
    let targets = &scope.targets;
    let mut total = 0u64;
    for target in targets {
        total += target.searcher.search(compiled.as_ref(), &Count)? as u64;
    }
    Ok(total)
}

/// Renders hits in ES' shape, reading `_id` and `_source` from the doc store.
/// The newest `size` documents matching `query` in `indices`, rendered as hits.
pub fn newest(
    store: &IndexStore,
    indices: &[Arc<LogIndex>],
    query: Query,
    size: usize,
) -> Result<Vec<Value>, SearchError> {
    let scope = Scope::new(indices, &query);
    let request = SearchRequest {
        query,
        size,
        sort: vec![SortField {
            key: SortKey::Timestamp,
            descending: true,
        }],
        ..SearchRequest::default()
    };
    let outcome = execute(store, &scope, &request, None)?;
    render_hits(store, &scope.targets, &outcome.hits, &request)
}

pub fn render_hits(
    store: &IndexStore,
    targets: &[Target],
    hits: &[ScoredHit],
    request: &SearchRequest,
) -> Result<Vec<Value>, SearchError> {
    let scoring =
        request.sort.is_empty() || request.sort.iter().any(|field| field.key == SortKey::Score);
    let highlight_terms = request
        .highlight
        .as_ref()
        .map(|_| hit_fields::HighlightTerms::of(&request.query));
    let mut rendered = Vec::with_capacity(hits.len());
    for hit in hits {
        let target = &targets[hit.position.partition as usize];
        let document: TantivyDocument = target
            .searcher
            .doc(DocAddress::new(hit.position.segment, hit.position.doc))?;
        let id = document
            .get_first(store.fields.id)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
            .to_string();
        let mut object = Map::new();
        object.insert("_index".into(), json!(target.index));
        object.insert("_id".into(), json!(id));
        object.insert(
            "_score".into(),
            if scoring && request.sort.iter().all(|field| field.key == SortKey::Score) {
                json!(hit.score)
            } else {
                Value::Null
            },
        );
        let source = document
            .get_first(store.fields.source)
            .and_then(|value| value.as_bytes())
            .unwrap_or(b"{}");
        let mut value: Value = serde_json::from_slice(source).unwrap_or_else(|_| json!({}));
        if !request.fields.is_empty() || request.highlight.is_some() {
            let timestamp = target
                .searcher
                .segment_reader(hit.position.segment)
                .fast_fields()
                .date(TIMESTAMP_FIELD)
                .ok()
                .and_then(|column| column.first(hit.position.doc))
                .map(|date| date.into_timestamp_micros());
            let highlight = request.highlight.as_ref().zip(highlight_terms.as_ref());
            hit_fields::render(&mut object, &value, timestamp, &request.fields, highlight);
        }
        if request.source.enabled {
            filter_source(&mut value, &request.source);
            object.insert("_source".into(), value);
        }
        if !request.sort.is_empty() {
            object.insert(
                "sort".into(),
                Value::Array(
                    request
                        .sort
                        .iter()
                        .zip(&hit.values)
                        .map(|(field, value)| match field.key {
                            SortKey::Score => json!(hit.score),
                            // ES renders date sort values as epoch milliseconds
                            SortKey::Timestamp => match value {
                                SortValue::Number(millis) => json!(millis.floor() as i64),
                                other => other.to_json(),
                            },
                            _ => value.to_json(),
                        })
                        .collect(),
                ),
            );
        }
        rendered.push(Value::Object(object));
    }
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_specs_parse_in_every_es_form() {
        let sort =
            parse_sort(&json!([{"@timestamp": {"order": "desc"}}, "_doc", {"http.status": "asc"}]))
                .expect("valid");
        assert_eq!(
            sort,
            vec![
                SortField {
                    key: SortKey::Timestamp,
                    descending: true
                },
                SortField {
                    key: SortKey::Doc,
                    descending: false
                },
                SortField {
                    key: SortKey::Field("http.status".into()),
                    descending: false
                },
            ]
        );
        assert_eq!(
            parse_sort(&json!("status:desc,_score"))
                .expect("url form")
                .len(),
            2
        );
        assert!(parse_sort(&json!({"status": "up"})).is_err());
    }

    #[test]
    fn missing_sort_values_sort_last_both_ways() {
        assert_eq!(
            SortValue::Missing.compare(&SortValue::Number(1.0), false),
            Ordering::Greater
        );
        assert_eq!(
            SortValue::Missing.compare(&SortValue::Number(1.0), true),
            Ordering::Greater
        );
        assert_eq!(
            SortValue::Number(2.0).compare(&SortValue::Number(1.0), true),
            Ordering::Less
        );
    }
}
