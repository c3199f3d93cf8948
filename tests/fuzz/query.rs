//! Lucene query strings, the ES query DSL, aggregations and URL search parameters: parsed
//! as the search API parses them, then compiled and run on a small real index (so
//! tantivy's aggregation and regex engines see the generated input too).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use lookout::index::IndexStore;
use lookout::index::document::LogDoc;
use lookout::index::partition::WriterOptions;
use lookout::index::query::dsl::{ParseContext, parse_query};
use lookout::index::query::lucene::{self, LuceneOptions};
use lookout::index::query::request::search_request;
use lookout::index::query::{Operator, Query};
use lookout::index::search::{self, Scope};
use lookout::index::store::{StoreSettings, WriteOp};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::harness::{self, Grammar, HOSTILE, mutated, run_case};

/// Nesting of generated queries; far deeper ones are the `DEEP_NESTING` tests below.
const NESTING: u32 = 24;
/// Nesting a parser must refuse with an error rather than overflow the stack.
const DEEP_NESTING: usize = 3000;

/// 2024-05-01T10:00:00Z, the fixed "now" of parsing.
const NOW_MICROS: i64 = 1_714_557_600_000_000;

const FIELDS: &[&str] = &[
    "status",
    "service",
    "service.keyword",
    "message",
    "http.path",
    "latency_ms",
    "@timestamp",
    "_id",
    "*",
    "_all",
    "tags",
    "missing.field",
    "é",
    "",
];

fn words() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            "checkout", "error", "500", "503", "timeout", "GET", "/api/v1/cart", "payments",
            "now-15m", "now-1d/d", "2024-05-01T09:00:00Z", "2024-05-01", "1714557600000",
            "3.5", "-1", "true", "null", "Ünïcödé", "日本語",
        ])
        .prop_map(str::to_string),
        2 => proptest::sample::select(HOSTILE).prop_map(str::to_string),
        1 => "[a-z0-9]{1,8}",
    ]
}

/// A Lucene query string from the grammar in `lucene.rs`, nested up to `depth`.
pub fn lucene_text(depth: u32) -> BoxedStrategy<String> {
    let field = proptest::sample::select(FIELDS);
    let simple_word = "[a-z0-9]{1,8}";
    let leaf = prop_oneof![
        words(),
        (field.clone(), words()).prop_map(|(field, word)| format!("{field}:{word}")),
        (field.clone(), "[a-z ]{0,12}", proptest::option::of(0u32..5)).prop_map(
            |(field, phrase, slop)| match slop {
                Some(slop) => format!("{field}:\"{phrase}\"~{slop}"),
                None => format!("{field}:\"{phrase}\""),
            }
        ),
        (field.clone(), words(), words(), "[\\[{]", "[\\]}]").prop_map(
            |(field, lower, upper, open, close)| format!("{field}:{open}{lower} TO {upper}{close}")
        ),
        (field.clone(), "(>=|<=|>|<)", words())
            .prop_map(|(field, op, value)| format!("{field}:{op}{value}")),
        (field.clone(), "[a-z.*+?|()\\[\\]{}0-9,^$]{0,12}")
            .prop_map(|(field, regex)| format!("{field}:/{regex}/")),
        (field.clone(), "[a-z*?]{1,8}").prop_map(|(field, glob)| format!("{field}:{glob}")),
        field.clone().prop_map(|field| format!("_exists_:{field}")),
        (simple_word, "[0-9.]{1,4}").prop_map(|(word, boost)| format!("{word}^{boost}")),
        Just("*".to_string()),
    ];
    leaf.prop_recursive(depth, 48, 4, move |inner| {
        prop_oneof![
            (inner.clone(), "( AND | OR | && | \\|\\| | )", inner.clone())
                .prop_map(|(left, op, right)| format!("{left}{op}{right}")),
            ("(NOT |-|\\+|!)", inner.clone()).prop_map(|(op, query)| format!("{op}{query}")),
            inner.clone().prop_map(|query| format!("({query})")),
            (proptest::sample::select(FIELDS), inner.clone())
                .prop_map(|(field, query)| format!("{field}:({query})")),
        ]
    })
    .boxed()
}

fn lucene_grammar() -> Arc<Grammar> {
    Arc::new(Grammar::new(
        &[
            "status:500 AND service:checkout",
            "service:checkout AND (status:[500 TO 599] OR level:error) AND NOT http.path:/health*",
            "@timestamp:[now-15m TO now] AND message:\"payment declined\"~2",
            "status:>=500 -service:canary +level:error",
            "_exists_:trace.id AND http.method:(GET OR POST)",
            "message:/time(d|out)/ AND latency_ms:{100 TO *}",
            "kubernetes.namespace:prod* && !kubernetes.container:sidecar",
            "error^2 OR warn",
            "*",
        ],
        &[
            " AND ",
            " OR ",
            " NOT ",
            "&&",
            "||",
            "!",
            "-",
            "+",
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            ":",
            "\"",
            "~",
            "^",
            "*",
            "?",
            "/",
            " TO ",
            ">=",
            "<",
            "_exists_",
            "@timestamp",
            "now-5m/m",
            "||+1h",
            "\\",
        ],
        &[
            ("(", ")"),
            ("field:(", ")"),
            ("\"", "\""),
            ("[", " TO *]"),
            ("NOT (", ")"),
        ],
    ))
}

/// A histogram whose interval is so fine that the documents' own values (not its bounds,
/// which Lookout refuses up front) make more buckets than `i64` counts: tantivy multiplies
/// their count by the bucket size unchecked (`histogram.rs`,
/// `intermediate_buckets_to_final_buckets_fill_gaps`), a panic in a debug build. The
/// values are not known before the search; a tantivy bug, skipped here.
fn histogram_bucket_overflow(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            map.iter().any(|(kind, body)| {
                kind == "histogram"
                    && body
                        .get("interval")
                        .and_then(|interval| {
                            interval.as_f64().or_else(|| {
                                interval.as_str().and_then(|text| text.trim().parse().ok())
                            })
                        })
                        // the documents' values span less than 2e12
                        .is_some_and(|interval| interval > 0.0 && 2e12 / interval > 1e15)
            }) || map.values().any(histogram_bucket_overflow)
        }
        Value::Array(items) => items.iter().any(histogram_bucket_overflow),
        _ => false,
    }
}

pub fn context() -> ParseContext {
    ParseContext {
        now_micros: NOW_MICROS,
        timestamp_field: "@timestamp".into(),
    }
}

fn lucene_options() -> impl Strategy<Value = LuceneOptions> {
    (
        proptest::sample::subsequence(FIELDS, 1..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(fields, and, lenient)| LuceneOptions {
            default_fields: fields.into_iter().map(str::to_string).collect(),
            default_operator: if and { Operator::And } else { Operator::Or },
            lenient,
        })
}

/// A small store of real documents the parsed queries run on, made once.
pub fn store() -> &'static (tempfile::TempDir, Arc<IndexStore>) {
    static STORE: OnceLock<(tempfile::TempDir, Arc<IndexStore>)> = OnceLock::new();
    STORE.get_or_init(|| {
        const HOUR: i64 = 3_600_000_000;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            IndexStore::open(
                dir.path(),
                StoreSettings {
                    partition_span_micros: HOUR,
                    retention_micros: 1_000_000 * HOUR,
                    writer: WriterOptions {
                        threads: 1,
                        memory_bytes: 15 << 20,
                    },
                    max_open_writers: 2,
                },
            )
            .expect("store"),
        );
        let now = chrono::Utc::now().timestamp_micros();
        let services = ["checkout", "payments", "search", "Ünïcödé"];
        let ops = (0..40i64)
            .map(|number| {
                let body = json!({
                    "service": services[number as usize % services.len()],
                    "status": if number % 3 == 0 { json!(500) } else { json!("200") },
                    "message": format!("request {number} took {} ms: timeout error", number * 7),
                    "http": {"path": format!("/api/v1/cart/{number}"), "method": "GET"},
                    "latency_ms": number as f64 * 1.5,
                    "tags": ["a", number, null],
                    "ok": number % 2 == 0,
                });
                let source = bytes::Bytes::from(serde_json::to_vec(&body).expect("json"));
                WriteOp::Index {
                    index: "logs".into(),
                    doc: LogDoc {
                        id: format!("doc-{number}"),
                        timestamp_micros: now - number * 5 * 60_000_000,
                        body: lookout::index::body::Body::parse(source).expect("json"),
                        timestamp_key: None,
                        fields: store.fields,
                    },
                    overwrite: false,
                    explicit_id: false,
                }
            })
            .collect();
        store.apply(1, ops, false).expect("apply");
        store.commit_all().expect("commit");
        (dir, store)
    })
}

/// Compiles and counts `query` on the store: whatever parses must compile or be refused
/// with an error, never panic.
fn run_query(query: &Query) -> Result<(), String> {
    let (_, store) = store();
    let scope = Scope::new(&store.all(), query);
    let _ = query.time_bounds();
    tolerating_tantivy_seek_assertion(|| {
        let _ = search::count(store, &scope, query);
    });
    Ok(())
}

/// Runs `search`, letting one known panic pass: tantivy's debug assertion in
/// `PhraseScorer::seek_danger` (`target (0) should be greater than or equal to doc
/// (2147483647)`), which a `must_not` phrase of several words that matches nothing in a
/// segment trips when its `Exclude` starts (`NOT 3.5` on a text field). A debug build
/// only: release builds have no such check. See `a_negated_phrase_trips_a_tantivy_debug_assertion`.
fn tolerating_tantivy_seek_assertion(search: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(search)) {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        if !message.contains("should be greater than or equal to doc") {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Runs a whole search body (query, aggregations, sort, paging) with URL parameters.
pub fn run_search(body: &Value, params: &HashMap<String, String>) -> Result<(), String> {
    let Ok(request) = search_request(Some(body), params, &context()) else {
        return Ok(());
    };
    let (_, store) = store();
    let scope = Scope::new(&store.all(), &request.query);
    let mut rendered = Ok(());
    tolerating_tantivy_seek_assertion(|| {
        if let Ok(outcome) = search::execute(store, &scope, &request, None) {
            rendered = search::render_hits(store, &scope.targets, &outcome.hits, &request)
                .map(|_| ())
                .map_err(|error| format!("hits found cannot be rendered: {error}"));
        }
    });
    rendered
}

fn check_lucene(text: String, options: LuceneOptions) -> Result<(), TestCaseError> {
    run_case(
        "lucene",
        format!("{:?}", (&text, &options)),
        move || match lucene::parse(&text, &context(), &options) {
            Ok(query) => run_query(&query),
            Err(_) if options.lenient => Err("simple_query_string must never fail".into()),
            Err(error)
                if error.kind == "parsing_exception" || error.kind == "query_shard_exception" =>
            {
                Ok(())
            }
            Err(error) => Err(format!("unexpected error kind `{}`", error.kind)),
        },
    )
}

/// A DSL query object, nested up to `depth` bool/constant_score levels.
pub fn dsl_query(depth: u32) -> BoxedStrategy<Value> {
    let field = || proptest::sample::select(FIELDS);
    let scalar = || {
        prop_oneof![
            words().prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ]
    };
    let bound_key = proptest::sample::select(vec!["gte", "gt", "lte", "lt", "from", "to"]);
    let leaf = prop_oneof![
        Just(json!({"match_all": {}})),
        Just(json!({"match_none": {}})),
        (field(), words()).prop_map(|(field, text)| json!({"match": {field: text}})),
        (field(), words(), "(and|or|AND|xor)", scalar()).prop_map(
            |(field, text, operator, msm)| json!({"match": {field: {"query": text, "operator": operator, "minimum_should_match": msm}}})
        ),
        (field(), words(), scalar())
            .prop_map(|(field, text, slop)| json!({"match_phrase": {field: {"query": text, "slop": slop}}})),
        (words(), proptest::collection::vec(field(), 0..3), "(best_fields|phrase|phrase_prefix|nope)")
            .prop_map(|(text, fields, kind)| json!({"multi_match": {"query": text, "fields": fields, "type": kind}})),
        (field(), scalar()).prop_map(|(field, value)| json!({"term": {field: value}})),
        (field(), scalar(), scalar()).prop_map(
            |(field, value, flag)| json!({"term": {field: {"value": value, "case_insensitive": flag}}})
        ),
        (field(), proptest::collection::vec(scalar(), 0..4))
            .prop_map(|(field, values)| json!({"terms": {field: values}})),
        (field(), proptest::collection::btree_map(bound_key, scalar(), 0..3), proptest::option::of("(epoch_millis|epoch_second|strict_date_optional_time|yyyy)"))
            .prop_map(|(field, bounds, format)| {
                let mut options: serde_json::Map<String, Value> = bounds.into_iter().map(|(key, value)| (key.to_string(), value)).collect();
                if let Some(format) = format {
                    options.insert("format".into(), format.into());
                }
                json!({"range": {field: options}})
            }),
        field().prop_map(|field| json!({"exists": {"field": field}})),
        ("(prefix|wildcard|regexp)", field(), "[a-z.*?+|()\\[\\]{}0-9]{0,10}")
            .prop_map(|(kind, field, pattern)| json!({kind: {field: {"value": pattern}}})),
        proptest::collection::vec(scalar(), 0..3).prop_map(|values| json!({"ids": {"values": values}})),
        ("(query_string|simple_query_string)", lucene_text(2), proptest::option::of(field()), "(AND|OR|and|x)")
            .prop_map(|(kind, text, default_field, operator)| {
                json!({kind: {"query": text, "default_field": default_field, "default_operator": operator}})
            }),
    ];
    leaf.prop_recursive(depth, 64, 4, |inner| {
        let clauses = || {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                inner.clone(),
            ]
        };
        prop_oneof![
            (clauses(), clauses(), clauses(), clauses(), proptest::option::of(-3i64..5)).prop_map(
                |(must, should, filter, must_not, msm)| {
                    let mut body = json!({"must": must, "should": should, "filter": filter, "must_not": must_not});
                    if let Some(msm) = msm {
                        body["minimum_should_match"] = msm.into();
                    }
                    json!({"bool": body})
                }
            ),
            inner.clone().prop_map(|filter| json!({"constant_score": {"filter": filter, "boost": 1.2}})),
        ]
    })
    .boxed()
}

/// An `aggs` object: bucket and metric aggregations with parameters at and past their
/// limits, nested up to `depth`.
/// Date formats of `date_histogram` and `fields`: Elasticsearch's names, patterns and
/// broken ones.
const DATE_FORMATS: &[&str] = &[
    "epoch_millis",
    "epoch_second",
    "strict_date_optional_time",
    "strict_date_optional_time_nanos",
    "yyyy-MM-dd HH:mm:ss",
    "dd/MMM/yyyy:hh:mm a XXX",
    "EEEE yy-M-d k 'h' SSSSSSSSSSSS",
    "yyyy-QQ",
    "'unclosed",
    "''",
    "",
    "||",
    "epoch_millis||yyyy",
];

const TIME_ZONES: &[&str] = &[
    "UTC",
    "+02:00",
    "-0530",
    "+2",
    "Europe/Berlin",
    "America/St_Johns",
    "+99:00",
    "Mars/Base",
    "",
    "-",
    "+:",
];

pub fn aggregations(depth: u32) -> BoxedStrategy<Value> {
    let field = || proptest::sample::select(FIELDS);
    let number = || {
        prop_oneof![
            (0.0f64..1e4).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            Just(json!(0)),
            Just(json!(-1)),
            Just(json!(1e-300)),
            Just(json!(1e300)),
            Just(json!(4294967296u64)),
            Just(json!("10")),
        ]
    };
    let metric = prop_oneof![
        ("(avg|min|max|sum|value_count|stats|extended_stats|cardinality)", field())
            .prop_map(|(kind, field)| json!({kind: {"field": field}})),
        (field(), proptest::collection::vec(number(), 0..3))
            .prop_map(|(field, percents)| json!({"percentiles": {"field": field, "percents": percents}})),
        (number(), proptest::collection::vec(field(), 0..2))
            .prop_map(|(size, fields)| json!({"top_hits": {"size": size, "sort": [{"@timestamp": "desc"}], "_source": fields}})),
    ];
    let path = || {
        prop_oneof![
            Just("_count".to_string()),
            Just("_key".to_string()),
            "[a-z0-9]{1,3}",
            "[a-z0-9]{1,3}(\\.avg|\\[99\\]|>_count|>[a-z0-9]{1,2}|\\._bucket_count)",
            proptest::sample::select(HOSTILE).prop_map(str::to_string),
        ]
    };
    let gap = || proptest::sample::select(vec!["skip", "insert_zeros", "keep_values", "none"]);
    let script = || {
        prop_oneof![
            proptest::sample::select(crate::pipeline::SCRIPT_SEEDS).prop_map(str::to_string),
            words(),
        ]
    };
    // inside a histogram they run over its buckets; elsewhere they are refused
    let pipeline = prop_oneof![
        (path(), gap(), proptest::option::of("(1m|second|day|5s|x|0s)")).prop_map(
            |(path, gap, unit)| json!({"derivative": {"buckets_path": path, "gap_policy": gap, "unit": unit}})
        ),
        path().prop_map(|path| json!({"cumulative_sum": {"buckets_path": path}})),
        (path(), number(), number(), script(), gap()).prop_map(
            |(path, window, shift, script, gap)| json!({"moving_fn": {"buckets_path": path, "window": window, "shift": shift, "script": script, "gap_policy": gap}})
        ),
        (path(), number(), gap()).prop_map(
            |(path, lag, gap)| json!({"serial_diff": {"buckets_path": path, "lag": lag, "gap_policy": gap}})
        ),
        (path(), path(), script(), gap()).prop_map(
            |(first, second, script, gap)| json!({"bucket_script": {"buckets_path": {"var1": first, "var2": second}, "script": script, "gap_policy": gap}})
        ),
    ];
    let metric = prop_oneof![4 => metric, 1 => pipeline];
    let bucket = prop_oneof![
        (field(), number(), number(), "(_count|_key|2)", "(asc|desc|up)").prop_map(
            |(field, size, min_doc_count, key, order)| json!({"terms": {"field": field, "size": size, "min_doc_count": min_doc_count, "order": {key: order}}})
        ),
        (field(), "(second|minute|hour|day|week|month|1m|30s|0s|5x|999999999d)", number(), number())
            .prop_map(|(field, interval, min, max)| json!({"date_histogram": {"field": field, "calendar_interval": interval, "min_doc_count": 0, "extended_bounds": {"min": min, "max": max}}})),
        (field(), "(30s|1m|1h|0ms|-5m|1d|1000000000000d)")
            .prop_map(|(field, interval)| json!({"date_histogram": {"field": field, "fixed_interval": interval}})),
        (
            field(),
            proptest::sample::select(DATE_FORMATS),
            proptest::sample::select(TIME_ZONES),
            prop_oneof![number(), Just(json!("now-1h")), Just(json!("now/d")), Just(json!("2024-05-01||+1M"))],
        )
            .prop_map(|(field, format, zone, min)| json!({"date_histogram": {"field": field, "fixed_interval": "1h", "format": format, "time_zone": zone, "min_doc_count": 0, "extended_bounds": {"min": min, "max": "now"}}})),
        (proptest::collection::btree_map("[a-z:*]{1,4}", dsl_query(1), 0..3), any::<bool>()).prop_map(
            |(filters, other)| json!({"filters": {"filters": Value::Object(filters.into_iter().collect()), "other_bucket": other}})
        ),
        proptest::collection::vec(dsl_query(1), 0..3)
            .prop_map(|filters| json!({"filters": {"filters": filters, "other_bucket_key": "rest"}})),
        dsl_query(1).prop_map(|filter| json!({"filter": filter})),
        (field(), number(), number(), number()).prop_map(
            |(field, interval, min, max)| json!({"histogram": {"field": field, "interval": interval, "extended_bounds": {"min": min, "max": max}}})
        ),
        (field(), proptest::collection::vec((proptest::option::of(number()), proptest::option::of(number())), 0..3)).prop_map(
            |(field, ranges)| {
                let ranges: Vec<Value> = ranges.into_iter().map(|(from, to)| json!({"from": from, "to": to})).collect();
                json!({"range": {"field": field, "ranges": ranges}})
            }
        ),
    ];
    let level = |kinds: BoxedStrategy<Value>| {
        proptest::collection::btree_map("[a-z0-9]{1,3}", kinds, 1..3)
            .prop_map(|map| Value::Object(map.into_iter().collect()))
    };
    let leaf = level(prop_oneof![metric.clone(), bucket.clone()].boxed());
    leaf.prop_recursive(depth, 24, 2, move |inner| {
        let with_sub = (bucket.clone(), inner).prop_map(|(mut bucket, sub)| {
            bucket["aggs"] = sub;
            bucket
        });
        level(prop_oneof![metric.clone(), with_sub].boxed())
    })
    .boxed()
}

fn search_body(depth: u32) -> impl Strategy<Value = Value> {
    (
        proptest::option::of(dsl_query(depth)),
        proptest::option::of(aggregations(2)),
        proptest::option::of(0u64..20),
        proptest::option::of(prop_oneof![
            Just(json!([{"@timestamp": {"order": "desc", "unmapped_type": "boolean"}}])),
            Just(json!(["_score", {"latency_ms": "asc"}])),
            Just(json!("status:desc")),
            harness::json_value(2),
        ]),
        proptest::option::of(harness::json_value(1)),
        proptest::option::of(prop_oneof![
            Just(json!({"pre_tags": ["@HIGHLIGHT@"], "post_tags": ["@/HIGHLIGHT@"], "fragment_size": 2147483647u64, "fields": {"*": {}}})),
            (0u64..40, 0u64..4, proptest::sample::select(FIELDS)).prop_map(|(size, fragments, field)| json!({"fragment_size": size, "number_of_fragments": fragments, "fields": {field: {}}, "require_field_match": false})),
            harness::json_value(2),
        ]),
        proptest::option::of(prop_oneof![
            (proptest::sample::select(FIELDS), proptest::sample::select(DATE_FORMATS))
                .prop_map(|(field, format)| json!([{"field": field, "format": format}, "*"])),
            harness::json_value(1),
        ]),
        proptest::option::of(prop_oneof![
            proptest::collection::vec(
                prop_oneof![
                    any::<i64>().prop_map(Value::from),
                    any::<f64>().prop_map(Value::from),
                    words().prop_map(Value::from),
                    Just(Value::Null),
                ],
                0..4
            )
            .prop_map(Value::from),
            harness::json_value(1),
        ]),
    )
        .prop_map(|(query, aggs, size, sort, source, highlight, fields, search_after)| {
            let mut body = serde_json::Map::new();
            for (key, value) in [
                ("query", query),
                ("aggs", aggs),
                ("size", size.map(Value::from)),
                ("sort", sort),
                ("_source", source),
                ("highlight", highlight),
                ("fields", fields),
                ("search_after", search_after),
            ] {
                if let Some(value) = value {
                    body.insert(key.into(), value);
                }
            }
            Value::Object(body)
        })
}

/// Search bodies as Kibana and Grafana send them.
pub const SEARCH_SEEDS: &[&str] = &[
    r#"{"size":0,"aggs":{"2":{"date_histogram":{"field":"@timestamp","min_doc_count":0,"extended_bounds":{"min":1714554000000,"max":1714557600000},"format":"epoch_millis","fixed_interval":"10m"},"aggs":{"1":{"sum":{"field":"latency_ms"}},"3":{"derivative":{"buckets_path":"1","unit":"1m"}},"4":{"cumulative_sum":{"buckets_path":"_count"}},"5":{"moving_fn":{"buckets_path":"1","window":"5","script":"MovingFunctions.unweightedAvg(values)"}},"6":{"serial_diff":{"buckets_path":"1","lag":1}},"7":{"bucket_script":{"buckets_path":{"var1":"1","var2":"_count"},"script":"params.var1 * 100 / params.var2"}},"8":{"percentiles":{"field":"latency_ms","percents":["99"]}},"9":{"bucket_script":{"buckets_path":{"p":"8[99]","c":"4"},"script":{"source":"params.p - params.c"},"gap_policy":"insert_zeros"}}}}}}"#,
    r#"{"size":10,"query":{"bool":{"filter":[{"range":{"@timestamp":{"format":"epoch_millis","gte":1714554000000,"lte":1714557600000}}}]}},"sort":{"@timestamp":{"order":"asc","unmapped_type":"boolean"},"_doc":{"order":"asc"}},"search_after":[1714555000000,4294967299],"docvalue_fields":["@timestamp"]}"#,
    r#"{"docvalue_fields":["@timestamp"],"query":{"bool":{"filter":[{"range":{"@timestamp":{"format":"epoch_millis","gte":1714554000000,"lte":1714557600000}}},{"query_string":{"analyze_wildcard":true,"query":"message:timeout"}}]}},"size":500,"sort":{"@timestamp":{"order":"desc","unmapped_type":"boolean"},"_doc":{"order":"desc"}},"highlight":{"pre_tags":["@HIGHLIGHT@"],"post_tags":["@/HIGHLIGHT@"],"fragment_size":2147483647,"fields":{"*":{}}},"fields":[{"field":"@timestamp","format":"strict_date_optional_time_nanos"}]}"#,
    r#"{"size":0,"aggs":{"3":{"filters":{"filters":{"errors":{"query_string":{"query":"status:500","analyze_wildcard":true}}},"other_bucket":true},"aggs":{"2":{"date_histogram":{"field":"@timestamp","fixed_interval":"10m","format":"yyyy-MM-dd HH:mm","time_zone":"Europe/Berlin","min_doc_count":0,"extended_bounds":{"min":"now-1h","max":"now"}}}}},"f":{"aggs":{"n":{"terms":{"field":"service"}}},"filter":{"term":{"service":"checkout"}}}}}"#,
    r#"{"size":0,"query":{"bool":{"filter":[{"range":{"@timestamp":{"gte":1714554000000,"lte":1714557600000,"format":"epoch_millis"}}},{"query_string":{"analyze_wildcard":true,"query":"service:checkout AND status:500"}}]}},"aggs":{"2":{"date_histogram":{"interval":"1m","field":"@timestamp","min_doc_count":0,"extended_bounds":{"min":1714554000000,"max":1714557600000},"format":"epoch_millis"},"aggs":{"3":{"terms":{"field":"service.keyword","size":10,"order":{"_count":"desc"},"min_doc_count":1}}}}}}"#,
    r#"{"sort":[{"@timestamp":{"order":"desc","unmapped_type":"boolean"}}],"size":500,"version":true,"query":{"bool":{"must":[],"filter":[{"match_all":{}},{"match_phrase":{"service":"checkout"}},{"range":{"@timestamp":{"gte":"now-15m","lte":"now","format":"strict_date_optional_time"}}}],"should":[],"must_not":[]}},"_source":{"excludes":[]},"track_total_hits":true}"#,
    r#"{"query":{"bool":{"must":[{"match":{"message":{"query":"timeout error","operator":"and"}}}],"must_not":[{"term":{"http.path.keyword":"/health"}}]}},"aggs":{"latency":{"percentiles":{"field":"latency_ms","percents":[50,95,99]}},"by_status":{"histogram":{"field":"status","interval":100}}}}"#,
    r#"{"query":{"constant_score":{"filter":{"terms":{"status":[500,503,"504"]}}}},"aggs":{"svc":{"terms":{"field":"service"},"aggs":{"avg_latency":{"avg":{"field":"latency_ms"}},"top":{"top_hits":{"size":1}}}}}}"#,
    r#"{"query":{"multi_match":{"query":"checkout payments","fields":["service","message"],"type":"best_fields"}},"from":5,"size":5,"sort":["_score",{"latency_ms":"asc"}]}"#,
    r#"{"query":{"bool":{"should":[{"prefix":{"service":"check"}},{"wildcard":{"http.path":{"value":"/api/*/cart"}}},{"regexp":{"message":"time(d|out)"}}],"minimum_should_match":1}}}"#,
    r#"{"query":{"range":{"@timestamp":{"gt":"2024-05-01T09:00:00Z||-1h/h","lt":"now/d","time_zone":"+02:00"}}},"aggs":{"per_hour":{"date_histogram":{"field":"@timestamp","calendar_interval":"hour"}}}}"#,
    r#"{"query":{"exists":{"field":"trace.id"}},"aggs":{"r":{"range":{"field":"latency_ms","ranges":[{"to":10},{"from":10,"to":100},{"from":100}]}},"s":{"extended_stats":{"field":"latency_ms"}},"c":{"cardinality":{"field":"service"}}}}"#,
];

fn search_grammar() -> Arc<Grammar> {
    Arc::new(
        Grammar::new(
            SEARCH_SEEDS,
            &[
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "\"",
                "null",
                "true",
                "0",
                "-1",
                "1e999",
                "\"bool\"",
                "\"must\"",
                "\"aggs\"",
                "\"query\"",
                "\"field\"",
                "\"interval\"",
                "\"size\"",
                "\"terms\"",
                "\"range\"",
                "\"gte\"",
                "\"now-1M\"",
            ],
            &[
                ("[", "]"),
                ("{\"bool\":{\"must\":[", "]}}"),
                ("{\"a\":", "}"),
                ("{\"constant_score\":{\"filter\":", "}}"),
            ],
        )
        .max_repeat(40),
    )
}

fn url_params() -> impl Strategy<Value = HashMap<String, String>> {
    proptest::collection::hash_map(
        proptest::sample::select(vec![
            "q",
            "df",
            "default_operator",
            "lenient",
            "size",
            "from",
            "sort",
            "_source",
            "_source_includes",
            "track_total_hits",
        ])
        .prop_map(str::to_string),
        prop_oneof![lucene_text(2), words(), Just("true".to_string())],
        0..3,
    )
}

#[test]
fn lucene_query_strings_parse_compile_and_run_or_fail_cleanly() {
    let strategy = || {
        (
            prop_oneof![
                lucene_text(NESTING),
                mutated(lucene_grammar(), lucene_text(3), 6)
            ],
            lucene_options(),
        )
    };
    harness::check(strategy, |(text, options)| check_lucene(text, options));
}

#[test]
fn dsl_queries_parse_compile_and_run_or_fail_cleanly() {
    harness::check(
        || dsl_query(NESTING),
        |query| {
            run_case("dsl", format!("{query:?}"), move || {
                match parse_query(&query, &context()) {
                    Ok(query) => run_query(&query),
                    Err(error) => match error.kind {
                        "parsing_exception"
                        | "query_shard_exception"
                        | "illegal_argument_exception" => Ok(()),
                        other => Err(format!("unexpected error kind `{other}`")),
                    },
                }
            })
        },
    );
}

#[test]
fn search_bodies_and_aggregations_run_or_fail_cleanly() {
    harness::check(
        || (search_body(4), url_params()),
        |(body, params)| {
            prop_assume!(!histogram_bucket_overflow(&body));
            run_case("search", format!("{:?}", (&body, &params)), move || {
                run_search(&body, &params)
            })
        },
    );
}

#[test]
fn mutated_search_bodies_run_or_fail_cleanly() {
    let strategy = || {
        let generated = search_body(2).prop_map(|body| body.to_string()).boxed();
        mutated(search_grammar(), generated, 8)
    };
    harness::check(strategy, |text| {
        run_case("search text", format!("{text:?}"), move || {
            // the body as the search route reads it: invalid JSON is a 400 before parsing
            match serde_json::from_str::<Value>(&text) {
                Ok(body) if histogram_bucket_overflow(&body) => Ok(()),
                Ok(body) => run_search(&body, &HashMap::new()),
                Err(_) => Ok(()),
            }
        })
    });
}

/// `status:(((…(500)…)))`: each parenthesis is a recursion of `parse_or` → `parse_primary`.
#[test]
fn lucene_deep_nesting_is_refused() {
    let text = format!(
        "{}status:500{}",
        "(".repeat(DEEP_NESTING),
        ")".repeat(DEEP_NESTING)
    );
    let outcome = run_case(
        "lucene deep",
        "3000 × `(` around `status:500`".to_string(),
        move || {
            lucene::parse(&text, &context(), &LuceneOptions::default())
                .map(|_| ())
                .or(Ok(()))
        },
    );
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// `NOT NOT … NOT a`: each `NOT` is a recursion of `parse_unary`.
#[test]
fn lucene_deep_negation_is_refused() {
    let text = format!("{}a", "NOT ".repeat(DEEP_NESTING));
    let outcome = run_case(
        "lucene not",
        "3000 × `NOT ` before `a`".to_string(),
        move || {
            lucene::parse(&text, &context(), &LuceneOptions::default())
                .map(|_| ())
                .or(Ok(()))
        },
    );
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// A `bool` query nested 3000 deep (built as a value: serde_json's parser stops at 128,
/// but rules and internal callers build values directly).
#[test]
fn dsl_deep_nesting_is_refused() {
    let outcome = run_case(
        "dsl deep",
        "3000 × `{\"bool\":{\"must\":[…]}}`".to_string(),
        move || {
            // wrapped by moving (`json!` would copy the inner value at every level)
            let object = |key: &str, value: Value| {
                Value::Object(serde_json::Map::from_iter([(key.to_string(), value)]))
            };
            let mut query = json!({"match_all": {}});
            for _ in 0..DEEP_NESTING {
                query = object("bool", object("must", Value::Array(vec![query])));
            }
            let error = parse_query(&query, &context())
                .map(|_| ())
                .expect_err("too deep");
            assert_eq!(error.kind, "illegal_argument_exception");
            // dropping the value recurses too: leak it, this test is about the parser
            std::mem::forget(query);
            Ok(())
        },
    );
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// `now€`: `date_math::apply_math` takes one character as the operator and slices one
/// byte past it.
#[test]
fn date_math_with_a_multibyte_operator_is_an_error() {
    let outcome = run_case("date math", "@timestamp:>now€".to_string(), move || {
        let _ = lucene::parse("@timestamp:>now€", &context(), &LuceneOptions::default());
        Ok(())
    });
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// `extended_bounds` up to 1e300 with an interval of 5222: the bucket count saturates
/// `i64` and tantivy's memory estimate overflows.
#[test]
fn histogram_bounds_past_max_buckets_are_refused_before_tantivy() {
    let body = json!({"aggs": {"0": {"histogram": {"field": "status", "interval": 5222,
        "extended_bounds": {"min": 0, "max": 1e300}}}}});
    let outcome = run_case("histogram bounds", body.to_string(), move || {
        run_search(&body, &HashMap::new())
    });
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// The same with the interval written as a string, under another aggregation (found by
/// the fuzzer: the check read only numeric intervals).
#[test]
fn histogram_bounds_with_a_string_interval_are_refused_before_tantivy() {
    let body = json!({"aggs": {"a": {"aggs": {"a": {"avg": {"field": "status"}}},
        "histogram": {"extended_bounds": {"max": 1e300, "min": 0.0}, "field": "status", "interval": "10"}}}});
    let outcome = run_case("histogram string interval", body.to_string(), move || {
        run_search(&body, &HashMap::new())
    });
    assert!(outcome.is_ok(), "{outcome:?}");
}

#[test]
fn date_histogram_intervals_past_a_century_are_refused() {
    let body = json!({"aggs": {"a": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1000000000000d"}}}});
    let outcome = run_case("date interval", body.to_string(), move || {
        run_search(&body, &HashMap::new())
    });
    assert!(outcome.is_ok(), "{outcome:?}");
}

#[test]
fn date_math_past_the_range_of_time_is_an_error() {
    let outcome = run_case(
        "date math range",
        "@timestamp:[now-429496729615m TO now]".to_string(),
        move || {
            let _ = lucene::parse(
                "@timestamp:[now-429496729615m TO now]",
                &context(),
                &LuceneOptions::default(),
            );
            Ok(())
        },
    );
    assert!(outcome.is_ok(), "{outcome:?}");
}

#[test]
#[ignore = "a tantivy debug assertion (release builds have none): a negated phrase that matches nothing trips it"]
fn a_negated_phrase_trips_a_tantivy_debug_assertion() {
    let outcome = run_case(
        "negated phrase",
        "NOT 3.5 (df=http.path)".to_string(),
        || {
            let options = LuceneOptions {
                default_fields: vec!["http.path".into()],
                ..LuceneOptions::default()
            };
            let query =
                lucene::parse("NOT 3.5", &context(), &options).map_err(|error| error.reason)?;
            let (_, store) = store();
            let _ = search::count(store, &Scope::new(&store.all(), &query), &query);
            Ok(())
        },
    );
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// The minimal input the fuzzer found (default field `service`).
#[test]
fn a_nul_in_a_field_name_matches_nothing_instead_of_panicking_in_tantivy() {
    const TEXT: &str =
        " AND message:/time(d|out)/\0@timestamp:[now-15m TO now] AND latency_ms:{100 TO *}";
    let outcome = run_case("nul", format!("{TEXT:?}"), || {
        let options = LuceneOptions {
            default_fields: vec!["service".into()],
            ..LuceneOptions::default()
        };
        let query = lucene::parse(TEXT, &context(), &options).map_err(|error| error.reason)?;
        let (_, store) = store();
        let _ = search::count(store, &Scope::new(&store.all(), &query), &query);
        Ok(())
    });
    assert!(outcome.is_ok(), "{outcome:?}");
}
