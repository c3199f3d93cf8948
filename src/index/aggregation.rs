//! Elasticsearch aggregations, run by tantivy's aggregation engine.
//!
//! tantivy's request and result JSON already follow ES; what we add: field names are
//! rewritten onto the log schema (`service` and `service.keyword` → the body column,
//! `@timestamp` stays), `calendar_interval` is turned into tantivy's `fixed_interval`
//! (minute, hour, day, week; months and years have no fixed length and are refused with a
//! hint), and per-partition results are merged before they are finalized.
//!
//! What tantivy lacks is added around it: `format` and `time_zone` of date histograms
//! (`date_format`, printed into `key_as_string`), date math in histogram bounds, `filter`
//! with ES query DSL bodies and `filters` (`filters`), `rate` (`rate`) and the parent
//! pipeline aggregations (`pipeline`), computed over the finished buckets, and `top_hits`
//! and `top_metrics` (`top_docs`), answered by a search per bucket. Aggregations
//! Elasticsearch has and tantivy does not (geo grids, the `moving_avg` Elasticsearch 8
//! removed) are refused with a hint.
//! An aggregation's keys may come in any order: each is read by its name.

mod bounds;
mod date_format;
mod filters;
mod metric_numbers;
pub mod pipeline;
mod rate;
pub mod top_docs;

use serde_json::{Map, Value};
use tantivy::Searcher;
use tantivy::aggregation::agg_req::{AggregationVariants, Aggregations};
use tantivy::aggregation::bucket::FilterAggregation;
use tantivy::aggregation::intermediate_agg_result::IntermediateAggregationResults;
use tantivy::aggregation::{
    AggContextParams, AggregationLimitsGuard, DistributedAggregationCollector,
};

use super::query::QueryError;
use super::query::date_math::{Rounding, parse_micros};
use super::schema::{BODY_FIELD, TIMESTAMP_FIELD};
pub use bounds::MAX_BUCKETS;
use bounds::{check_histogram_bounds, rewrite_interval, signed_interval_millis};
pub use date_format::{DateFormat, Zone};
use filters::{CompiledFilter, FiltersShape};

/// An `aggs` object made ready for tantivy, with what it takes to give the answer
/// Elasticsearch's shape again ([`finish`]).
#[derive(Debug, Clone)]
pub struct Translated {
    pub aggregations: Aggregations,
    shapes: Level,
}

/// Compiles the ES query of a `filter` aggregation (at JSON path `at`) for the searched
/// partitions.
pub type FilterCompiler<'a> =
    &'a dyn Fn(&Value, &str) -> Result<Box<dyn tantivy::query::Query>, QueryError>;

/// The answer shapes of one level of named aggregations, by name.
type Level = Vec<(String, Shape)>;

#[derive(Debug, Clone)]
struct Shape {
    kind: ShapeKind,
    sub: Level,
    /// The pipeline aggregations among the sub-aggregations, run over the buckets.
    pipelines: Vec<pipeline::Pipeline>,
    /// The `rate`s among the sub-aggregations, divided in each bucket.
    rates: Vec<rate::Rate>,
    /// How this aggregation's buckets are found again as queries (for the top documents
    /// of the buckets).
    bucket: Option<top_docs::BucketFilter>,
}

impl Shape {
    /// Whether a `top_hits` or `top_metrics` is at or under this aggregation.
    fn has_top_docs(&self) -> bool {
        matches!(self.kind, ShapeKind::TopDocs(_))
            || self.sub.iter().any(|(_, shape)| shape.has_top_docs())
    }
}

#[derive(Debug, Clone)]
enum ShapeKind {
    Plain,
    /// `key_as_string` printed with `format` in `zone`.
    DateHistogram {
        format: DateFormat,
        zone: Zone,
    },
    Filters(FiltersShape),
    /// tantivy leaves the deviations `null` over one value; Elasticsearch answers 0.
    ExtendedStats,
    /// Not run by tantivy: answered per bucket after it ([`top_docs`]).
    TopDocs(top_docs::TopDocs),
}

/// Parses and rewrites an ES `aggs` object. `now_micros` resolves date math in
/// histogram bounds; `compile_filter` compiles the queries of `filter`/`filters`.
pub fn translate(
    aggs: &Value,
    now_micros: i64,
    compile_filter: FilterCompiler<'_>,
) -> Result<Translated, QueryError> {
    let mut rewritten = aggs.clone();
    // refuses any pipeline or rate at the top: it has no parent's buckets to run over
    pipeline::take_level(&mut rewritten, None, "aggs")?;
    rate::take_level(&mut rewritten, &rate::Parent::default(), "aggs")?;
    let mut rewriter = Rewriter {
        now_micros,
        compile_filter,
        filters: Vec::new(),
    };
    let shapes = rewriter.rewrite_level(&mut rewritten, "aggs", &[])?;
    let mut aggregations: Aggregations =
        serde_json::from_value(rewritten).map_err(|error| QueryError {
            kind: "x_content_parse_exception",
            reason: format!("[aggs]: {error}"),
        })?;
    for (path, filter) in rewriter.filters {
        if let Some(aggregation) = find_mut(&mut aggregations, &path) {
            aggregation.agg =
                AggregationVariants::Filter(FilterAggregation::new_with_builder(Box::new(filter)));
        }
    }
    Ok(Translated {
        aggregations,
        shapes,
    })
}

/// The aggregation the names of `path` lead to.
fn find_mut<'a>(
    level: &'a mut Aggregations,
    path: &[String],
) -> Option<&'a mut tantivy::aggregation::agg_req::Aggregation> {
    let (first, rest) = path.split_first()?;
    let aggregation = level.get_mut(first)?;
    if rest.is_empty() {
        Some(aggregation)
    } else {
        find_mut(&mut aggregation.sub_aggregation, rest)
    }
}

struct Rewriter<'a> {
    now_micros: i64,
    compile_filter: FilterCompiler<'a>,
    /// Compiled `filter` queries by the names leading to their aggregation.
    filters: Vec<(Vec<String>, CompiledFilter)>,
}

/// ES aggregations answered with a clear refusal rather than tantivy's list of variants.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("geohash_grid", "geo fields are not indexed"),
    ("geotile_grid", "geo fields are not indexed"),
    (
        "moving_avg",
        "Elasticsearch 8 removed it; use `moving_fn` with a script such as `MovingFunctions.unweightedAvg(values)` (Grafana: choose Moving Function)",
    ),
    ("nested", "documents have no nested fields"),
];

impl Rewriter<'_> {
    fn rewrite_level(
        &mut self,
        level: &mut Value,
        at: &str,
        path: &[String],
    ) -> Result<Level, QueryError> {
        let Value::Object(aggs) = level else {
            return Err(QueryError::parsing(format!(
                "[{at}]: expected an object of named aggregations"
            )));
        };
        let mut shapes = Level::new();
        // `filters` become one `filter` aggregation per filter first
        let filters: Vec<String> = aggs
            .iter()
            .filter(|(_, definition)| definition.get("filters").is_some())
            .map(|(name, _)| name.clone())
            .collect();
        let mut expanded = Vec::new();
        for name in filters {
            let queries = match aggs
                .get(&name)
                .and_then(|definition| definition["filters"].get("filters"))
            {
                Some(Value::Object(named)) => named.values().cloned().collect(),
                Some(Value::Array(anonymous)) => anonymous.clone(),
                _ => Vec::new(),
            };
            let shape = filters::expand(aggs, &name, &format!("{at}][{name}"))?;
            expanded.push((name, shape, queries));
        }
        let mut top_docs = Vec::new();
        for (name, definition) in aggs.iter_mut() {
            let at = format!("{at}][{name}");
            let Value::Object(definition) = definition else {
                return Err(QueryError::parsing(format!(
                    "[{at}]: expected an aggregation object"
                )));
            };
            if let Some(sub) = definition.remove("aggregations") {
                definition.insert("aggs".into(), sub);
            }
            let mut here: Vec<String> = path.to_vec();
            here.push(name.clone());
            let mut shape = Shape {
                kind: ShapeKind::Plain,
                sub: Level::new(),
                pipelines: Vec::new(),
                rates: Vec::new(),
                bucket: None,
            };
            if let Some((kind, body)) = definition
                .iter()
                .find(|(kind, _)| matches!(kind.as_str(), "top_hits" | "top_metrics"))
            {
                if definition.contains_key("aggs") {
                    return Err(QueryError::parsing(format!(
                        "[{at}]: a [{kind}] aggregation cannot have sub-aggregations"
                    )));
                }
                let spec = top_docs::parse(kind, body, &format!("{at}][{kind}"))?;
                shape.kind = ShapeKind::TopDocs(spec);
                top_docs.push(name.clone());
                shapes.push((name.clone(), shape));
                continue;
            }
            // the bucket's own field names and filter query, before they are rewritten
            let original = definition
                .iter()
                .find(|(kind, _)| !matches!(kind.as_str(), "aggs" | "meta"))
                .map(|(kind, body)| (kind.clone(), body.clone()));
            let parent = rate::Parent::of(definition);
            for (kind, body) in definition.iter_mut() {
                if kind == "aggs" {
                    let at = format!("{at}][aggs");
                    // pipelines first: their paths may name a rate
                    shape.pipelines = pipeline::take_level(body, parent.kind.as_deref(), &at)?;
                    shape.rates = rate::take_level(body, &parent, &at)?;
                    shape.sub = self.rewrite_level(body, &at, &here)?;
                    continue;
                }
                if kind == "meta" {
                    continue;
                }
                if let Some((_, hint)) = UNSUPPORTED.iter().find(|(name, _)| name == kind) {
                    return Err(QueryError::parsing(format!(
                        "[{at}]: the [{kind}] aggregation is not supported: {hint}; see docs/api.md"
                    )));
                }
                if kind == "filter" {
                    let compiled = (self.compile_filter)(body, &format!("{at}][filter"))?;
                    self.filters
                        .push((here.clone(), CompiledFilter::new(body.clone(), compiled)));
                    // tantivy reads a string here; the compiled query replaces it
                    *body = Value::String("*".into());
                    continue;
                }
                let Value::Object(body) = body else { continue };
                if kind == "range"
                    && body
                        .get("ranges")
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty)
                {
                    // tantivy indexes the first range unchecked
                    return Err(QueryError::parsing(format!(
                        "[{at}][range]: no `ranges` given; name at least one, like {{\"to\": 100}}"
                    )));
                }
                rewrite_field(body);
                if kind == "percentiles"
                    && let Some(Value::Array(percents)) = body.get_mut("percents")
                {
                    // Grafana sends the percents as strings ("95")
                    for percent in percents {
                        if let Some(number) = percent
                            .as_str()
                            .and_then(|text| text.trim().parse::<f64>().ok())
                        {
                            *percent = Value::from(number);
                        }
                    }
                }
                if kind == "terms" {
                    cap_terms_size(body);
                }
                if kind == "extended_stats" {
                    shape.kind = ShapeKind::ExtendedStats;
                }
                if kind == "date_histogram" {
                    rewrite_interval(body, &at)?;
                    shape.kind = self.rewrite_date_histogram(body, &at)?;
                }
                if kind == "histogram" || kind == "date_histogram" {
                    check_histogram_bounds(kind, body, &at)?;
                }
            }
            if let Some((kind, mut body)) = original {
                if let Some(fixed) = definition
                    .get("date_histogram")
                    .and_then(|rewritten| rewritten.get("fixed_interval"))
                {
                    body["fixed_interval"] = fixed.clone();
                }
                shape.bucket = Some(top_docs::bucket_filter(&kind, &body));
            }
            if let Some(top_docs::BucketFilter::Unsupported(kind)) = &shape.bucket
                && shape.has_top_docs()
            {
                return Err(QueryError::parsing(format!(
                    "[{at}]: top_hits and top_metrics are not supported under a [{kind}] aggregation; put them under terms, histogram, date_histogram, range, filter or filters"
                )));
            }
            shapes.push((name.clone(), shape));
        }
        // answered after tantivy's run, bucket by bucket
        for name in top_docs {
            aggs.remove(&name);
        }
        // the expanded filters' shapes stand for their `filters` aggregation
        for (name, filters_shape, queries) in expanded {
            let prefix = format!("{name}{}", filters::EXPANDED_SEPARATOR);
            let (sub, pipelines) = shapes
                .iter()
                .find(|(expanded, _)| expanded.starts_with(&prefix))
                .map(|(_, shape)| (shape.sub.clone(), shape.pipelines.clone()))
                .unwrap_or_default();
            shapes.retain(|(expanded, _)| !expanded.starts_with(&prefix));
            let bucket = Some(top_docs::BucketFilter::Filters {
                names: filters_shape.names.clone(),
                queries,
                other: filters_shape.other.clone(),
            });
            shapes.push((
                name,
                Shape {
                    kind: ShapeKind::Filters(filters_shape),
                    sub,
                    pipelines,
                    rates: Vec::new(),
                    bucket,
                },
            ));
        }
        Ok(shapes)
    }

    /// Takes `format` and `time_zone` out of a date histogram (tantivy knows neither),
    /// resolves date math in its bounds, and shifts its buckets to start at the zone's
    /// local boundaries (with the zone's offset at the start of the bounds, or now: a
    /// daylight saving change inside the range is not followed).
    fn rewrite_date_histogram(
        &self,
        body: &mut Map<String, Value>,
        at: &str,
    ) -> Result<ShapeKind, QueryError> {
        let format = match body.remove("format") {
            Some(Value::String(format)) => DateFormat::parse(&format)
                .map_err(|error| QueryError::parsing(format!("[{at}][date_histogram]: {error}")))?,
            Some(other) => {
                return Err(QueryError::parsing(format!(
                    "[{at}][date_histogram][format]: expected a string, got {other}"
                )));
            }
            None => DateFormat::parse("strict_date_optional_time").expect("a named format"),
        };
        let zone = match body.remove("time_zone") {
            Some(Value::String(zone)) => Zone::parse(&zone)
                .map_err(|error| QueryError::parsing(format!("[{at}][date_histogram]: {error}")))?,
            Some(other) => {
                return Err(QueryError::parsing(format!(
                    "[{at}][date_histogram][time_zone]: expected a string, got {other}"
                )));
            }
            None => Zone::default(),
        };
        let mut reference_millis = self.now_micros / 1000;
        for bounds in ["hard_bounds", "extended_bounds"] {
            let Some(Value::Object(bounds)) = body.get_mut(bounds) else {
                continue;
            };
            for end in ["min", "max"] {
                let Some(Value::String(text)) = bounds.get(end) else {
                    continue;
                };
                let micros =
                    parse_micros(text, self.now_micros, Rounding::Down, None).map_err(|error| {
                        QueryError::parsing(format!(
                            "[{at}][date_histogram][{end}]: {}",
                            error.reason
                        ))
                    })?;
                bounds.insert(end.into(), Value::from(micros / 1000));
            }
            if let Some(min) = bounds.get("min").and_then(Value::as_f64) {
                reference_millis = min as i64;
            }
        }
        let zone_millis = i64::from(zone.offset_seconds_at(reference_millis)) * 1000;
        if zone_millis != 0 {
            let offset = match body.get("offset") {
                Some(Value::String(offset)) => signed_interval_millis(offset).ok_or_else(|| {
                    QueryError::parsing(format!(
                        "[{at}][date_histogram][offset]: `{offset}` is not an offset such as \"+6h\" or \"-30m\""
                    ))
                })?,
                _ => 0,
            };
            body.insert(
                "offset".into(),
                Value::String(format!("{}ms", offset - zone_millis)),
            );
        }
        Ok(ShapeKind::DateHistogram { format, zone })
    }
}

/// Caps a terms aggregation's `size`, `shard_size` and `segment_size` at one more than
/// [`MAX_BUCKETS`]: an answer with more buckets is refused anyway, and tantivy multiplies
/// the size by 10 unchecked (ElastAlert2's `new_term` asks for 2147483647 terms).
fn cap_terms_size(body: &mut Map<String, Value>) {
    let cap = u64::from(MAX_BUCKETS) + 1;
    for key in ["size", "shard_size", "segment_size"] {
        if let Some(size) = body.get_mut(key)
            && size.as_u64().is_some_and(|size| size > cap)
        {
            *size = Value::from(cap);
        }
    }
}

fn rewrite_field(body: &mut Map<String, Value>) {
    if let Some(Value::String(field)) = body.get_mut("field") {
        *field = column_name(field);
    }
}

/// The fast-field column a user field name refers to.
pub fn column_name(field: &str) -> String {
    if field == TIMESTAMP_FIELD || field == "_id" {
        return field.to_string();
    }
    let path = field.strip_suffix(".keyword").unwrap_or(field);
    format!("{BODY_FIELD}.{path}")
}

fn limits(max_buckets: u32) -> AggregationLimitsGuard {
    AggregationLimitsGuard::new(Some(512 * 1024 * 1024), Some(max_buckets))
}

pub fn collector(
    aggregations: Aggregations,
    searcher: &Searcher,
    max_buckets: u32,
) -> DistributedAggregationCollector {
    DistributedAggregationCollector::from_aggs(
        aggregations,
        AggContextParams::new(limits(max_buckets), searcher.index().tokenizers().clone()),
    )
}

/// Finalizes merged per-partition results into ES' response JSON; `fetch` finds the top
/// documents of `top_hits` and `top_metrics` (see [`top_docs`]).
pub fn finish(
    translated: Translated,
    merged: Option<IntermediateAggregationResults>,
    max_buckets: u32,
    fetch: &mut top_docs::Fetch<'_>,
) -> Result<Value, tantivy::TantivyError> {
    let Translated {
        aggregations,
        shapes,
    } = translated;
    let request = aggregations.clone();
    let results = merged
        .unwrap_or_default()
        .into_final_result(aggregations, limits(max_buckets))?;
    let mut results = serde_json::to_value(results)
        .map_err(|error| tantivy::TantivyError::InternalError(error.to_string()))?;
    if let Value::Object(results) = &mut results {
        metric_numbers::shape(&request, results);
        reshape(&shapes, results).map_err(tantivy::TantivyError::InvalidArgument)?;
        fill_top_docs(&shapes, results, fetch).map_err(tantivy::TantivyError::InvalidArgument)?;
    }
    // tantivy counts the buckets it collects; the empty ones `min_doc_count: 0` and
    // `extended_bounds` add at the end only count against its memory limit. Elasticsearch
    // counts every bucket of the answer.
    let buckets = count_buckets(&results);
    if buckets > u64::from(max_buckets) {
        return Err(tantivy::TantivyError::AggregationError(
            tantivy::aggregation::AggregationError::BucketLimitExceeded {
                limit: max_buckets,
                current: u32::try_from(buckets).unwrap_or(u32::MAX),
            },
        ));
    }
    Ok(results)
}

/// Gives one level of an answer the shapes tantivy does not: `filters` buckets put back
/// together, `key_as_string` in the asked format and zone, the pipeline aggregations'
/// values (an error when one cannot be computed).
fn reshape(shapes: &Level, results: &mut Map<String, Value>) -> Result<(), String> {
    for (name, shape) in shapes {
        if let ShapeKind::Filters(filters_shape) = &shape.kind {
            filters::reassemble(results, name, filters_shape);
        }
        let Some(result) = results.get_mut(name) else {
            continue;
        };
        if let ShapeKind::ExtendedStats = shape.kind {
            deviations_of_one_value(result);
            continue;
        }
        // a `filter` answers its sub-aggregations beside its `doc_count`
        if result.get("buckets").is_none() {
            if let Value::Object(single) = result {
                reshape(&shape.sub, single)?;
                pipeline::apply_all(&shape.pipelines, &mut [single])?;
            }
            continue;
        }
        let mut buckets = filters::buckets_of(result);
        for bucket in buckets.iter_mut() {
            if let ShapeKind::DateHistogram { format, zone } = &shape.kind
                && let Some(key) = bucket.get("key").and_then(Value::as_f64)
            {
                bucket.insert(
                    "key_as_string".into(),
                    Value::String(format.print(key as i64, zone)),
                );
            }
            rate::apply(&shape.rates, bucket);
            reshape(&shape.sub, bucket)?;
        }
        pipeline::apply_all(&shape.pipelines, &mut buckets)?;
    }
    Ok(())
}

/// One `top_hits` or `top_metrics` of one bucket to answer: where its answer goes (a
/// JSON pointer into the aggregations), the queries of the buckets above it, and whether
/// one of them is empty (then no search is needed).
struct TopDocsJob<'a> {
    /// The JSON pointer of the object the answer goes into, under `name`.
    parent: String,
    name: String,
    filters: Vec<Value>,
    empty: bool,
    spec: &'a top_docs::TopDocs,
}

/// Answers every `top_hits` and `top_metrics` of `results`: finds them all first, so that
/// a request with too many is refused before any search runs.
fn fill_top_docs(
    shapes: &Level,
    results: &mut Map<String, Value>,
    fetch: &mut top_docs::Fetch<'_>,
) -> Result<(), String> {
    let mut jobs = Vec::new();
    collect_top_docs(shapes, results, "", &mut Vec::new(), false, &mut jobs)?;
    let searches = jobs.iter().filter(|job| !job.empty).count();
    if searches > top_docs::MAX_SEARCHES {
        return Err(format!(
            "{searches} buckets ask for top_hits or top_metrics, more than {}: narrow the aggregations above them (fewer terms, a wider interval)",
            top_docs::MAX_SEARCHES
        ));
    }
    let mut root = Value::Object(std::mem::take(results));
    for job in jobs {
        let (total, hits) = if job.empty {
            (0, Vec::new())
        } else {
            fetch(&job.filters, job.spec)?
        };
        if let Some(Value::Object(parent)) = root.pointer_mut(&job.parent) {
            parent.insert(job.name, top_docs::answer(job.spec, total, hits));
        }
    }
    if let Value::Object(filled) = root {
        *results = filled;
    }
    Ok(())
}

/// The [`TopDocsJob`]s of one level at JSON pointer `at`; `path` holds the queries of the
/// buckets above.
fn collect_top_docs<'a>(
    level: &'a Level,
    results: &Map<String, Value>,
    at: &str,
    path: &mut Vec<Value>,
    empty: bool,
    jobs: &mut Vec<TopDocsJob<'a>>,
) -> Result<(), String> {
    let escape = |name: &str| name.replace('~', "~0").replace('/', "~1");
    for (name, shape) in level {
        let here = format!("{at}/{}", escape(name));
        if let ShapeKind::TopDocs(spec) = &shape.kind {
            jobs.push(TopDocsJob {
                parent: at.to_string(),
                name: name.clone(),
                filters: path.clone(),
                empty,
                spec,
            });
            continue;
        }
        if !shape.has_top_docs() {
            continue;
        }
        let Some(Value::Object(result)) = results.get(name) else {
            continue;
        };
        let filter = shape
            .bucket
            .as_ref()
            .ok_or_else(|| format!("[{name}]: its buckets cannot hold top_hits"))?;
        let mut visit = |bucket: &Map<String, Value>, key: Option<&str>, pointer: String| {
            let none = bucket.get("doc_count").and_then(Value::as_u64) == Some(0);
            path.push(filter.query(bucket, key)?);
            let outcome = collect_top_docs(&shape.sub, bucket, &pointer, path, empty || none, jobs);
            path.pop();
            outcome
        };
        let anonymous =
            matches!(&shape.kind, ShapeKind::Filters(filters) if filters.names.is_none());
        match result.get("buckets") {
            // a `filter` answers its sub-aggregations beside its `doc_count`
            None => visit(result, None, here)?,
            Some(Value::Array(buckets)) => {
                for (position, bucket) in buckets.iter().enumerate() {
                    let Value::Object(bucket) = bucket else {
                        continue;
                    };
                    let key = match bucket.get("key") {
                        _ if anonymous => Some(position.to_string()),
                        Some(Value::String(key)) => Some(key.clone()),
                        _ => None,
                    };
                    visit(bucket, key.as_deref(), format!("{here}/buckets/{position}"))?;
                }
            }
            Some(Value::Object(buckets)) => {
                for (key, bucket) in buckets {
                    if let Value::Object(bucket) = bucket {
                        visit(bucket, Some(key), format!("{here}/buckets/{}", escape(key)))?;
                    }
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Over exactly one value every deviation and variance is 0 and the bounds are the mean,
/// as Elasticsearch answers (tantivy answers `null`).
fn deviations_of_one_value(result: &mut Value) {
    let Value::Object(stats) = result else { return };
    if stats.get("count").and_then(Value::as_u64) != Some(1) {
        return;
    }
    let Some(mean) = stats.get("avg").and_then(Value::as_f64) else {
        return;
    };
    for key in [
        "std_deviation",
        "std_deviation_population",
        "std_deviation_sampling",
        "variance",
        "variance_population",
        "variance_sampling",
    ] {
        if stats.get(key).is_some_and(Value::is_null) {
            stats.insert(key.into(), Value::from(0.0));
        }
    }
    if stats
        .get("std_deviation_bounds")
        .is_some_and(Value::is_null)
    {
        let bound = Value::from(mean);
        stats.insert(
            "std_deviation_bounds".into(),
            serde_json::json!({
                "upper": bound, "lower": bound,
                "upper_population": bound, "lower_population": bound,
                "upper_sampling": bound, "lower_sampling": bound,
            }),
        );
    }
}

/// Every bucket of an aggregation answer, at every level.
fn count_buckets(results: &Value) -> u64 {
    let mut count = 0;
    let mut pending = vec![results];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => {
                match map.get("buckets") {
                    Some(Value::Array(buckets)) => count += buckets.len() as u64,
                    Some(Value::Object(buckets)) => count += buckets.len() as u64,
                    _ => {}
                }
                pending.extend(map.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Rewrites `aggs` in place as [`translate`] does, with no filter queries allowed.
    fn rewrite_level(aggs: &mut Value, at: &str) -> Result<Level, QueryError> {
        let refuse = |_: &Value, _: &str| -> Result<Box<dyn tantivy::query::Query>, QueryError> {
            Err(QueryError::parsing("no filters here"))
        };
        Rewriter {
            now_micros: 0,
            compile_filter: &refuse,
            filters: Vec::new(),
        }
        .rewrite_level(aggs, at, &[])
    }

    /// A range aggregation without ranges panicked inside tantivy's range collector.
    #[test]
    fn a_range_aggregation_without_ranges_is_refused() {
        let mut aggs = json!({"r": {"range": {"field": "status", "ranges": []}}});
        let error = rewrite_level(&mut aggs, "aggs").expect_err("no ranges");
        assert!(
            error.reason.contains("no `ranges` given"),
            "{}",
            error.reason
        );
    }

    /// ElastAlert2's `new_term` asks for 2147483647 terms; tantivy multiplied that by 10
    /// and overflowed.
    #[test]
    fn a_terms_size_past_max_buckets_is_capped() {
        let mut aggs = json!({"values": {"terms": {"field": "user", "size": 2147483647u64}}});
        rewrite_level(&mut aggs, "aggs").expect("valid");
        assert_eq!(aggs["values"]["terms"]["size"], json!(MAX_BUCKETS + 1));
    }

    #[test]
    fn fields_and_calendar_intervals_are_rewritten() {
        let mut aggs = json!({
            "per_minute": {"date_histogram": {"field": "@timestamp", "calendar_interval": "minute"},
                "aggregations": {"services": {"terms": {"field": "service.keyword"}}}}
        });
        rewrite_level(&mut aggs, "aggs").expect("valid");
        assert_eq!(
            aggs,
            json!({"per_minute": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"},
                "aggs": {"services": {"terms": {"field": "body.service"}}}}})
        );
        let mut monthly =
            json!({"m": {"date_histogram": {"field": "@timestamp", "calendar_interval": "month"}}});
        assert!(rewrite_level(&mut monthly, "aggs").is_err());
    }
}
