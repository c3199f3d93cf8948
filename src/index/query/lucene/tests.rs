//! Lucene query strings parsed into the query tree, and their errors.

use std::ops::Bound;

use super::*;
use crate::index::query::Scalar;

fn parse_default(text: &str) -> Result<Query, QueryError> {
    let context = ParseContext {
        now_micros: 1_000_000_000_000,
        timestamp_field: "@timestamp".into(),
    };
    parse(text, &context, &LuceneOptions::default())
}

fn path(name: &str) -> FieldRef {
    FieldRef::Path {
        path: name.into(),
        keyword: false,
    }
}

#[test]
fn nesting_and_clauses_are_bounded_with_the_column_where_the_limit_passed() {
    let depth = MAX_LUCENE_DEPTH;
    std::thread::Builder::new()
        .stack_size(crate::THREAD_STACK_BYTES / 8)
        .spawn(move || {
            let nested = |levels: usize| format!("{}a:1{}", "(".repeat(levels), ")".repeat(levels));
            parse_default(&nested(depth)).expect("at the limit");
            let error = parse_default(&nested(depth + 1)).expect_err("past it");
            assert!(
                error
                    .reason
                    .contains(&format!("more than {depth} nested groups"))
                    && error.reason.contains(&format!("at column {}", depth + 1)),
                "{error:?}"
            );
            for text in [
                nested(100_000),
                format!("{}a", "NOT ".repeat(100_000)),
                format!("{}a", "!".repeat(100_000)),
                format!("{}a{}", "f:(".repeat(100_000), ")".repeat(100_000)),
            ] {
                assert!(parse_default(&text).is_err(), "{}", &text[..10]);
            }
            let options = LuceneOptions {
                lenient: true,
                ..LuceneOptions::default()
            };
            let context = ParseContext {
                now_micros: 0,
                timestamp_field: "@timestamp".into(),
            };
            parse(&nested(100_000), &context, &options).expect("lenient falls back to words");
        })
        .expect("thread")
        .join()
        .expect("no overflow");
    let clauses = |count: usize| vec!["a"; count].join(" OR ");
    parse_default(&clauses(MAX_CLAUSES)).expect("at the clause limit");
    let error = parse_default(&clauses(MAX_CLAUSES + 1)).expect_err("past it");
    assert!(error.reason.contains("max_clause_count"), "{error:?}");
}

#[test]
fn and_binds_tighter_than_or() {
    let query = parse_default("status:500 AND service:checkout OR level:error").expect("valid");
    let Query::Bool(top) = query else {
        panic!("bool")
    };
    assert_eq!(top.should.len(), 2);
    let Query::Bool(left) = &top.should[0] else {
        panic!("and group")
    };
    assert_eq!(left.must.len(), 2);
    assert_eq!(
        left.must[0],
        Query::Phrase {
            field: path("status"),
            text: "500".into(),
            slop: 0
        }
    );
}

#[test]
fn parses_every_value_form() {
    let cases: Vec<(&str, Query)> = vec![
        (
            "_exists_:trace_id",
            Query::Exists {
                field: path("trace_id"),
            },
        ),
        (
            "user:*",
            Query::Exists {
                field: path("user"),
            },
        ),
        (
            "path:\\/api\\/*",
            Query::Prefix {
                field: path("path"),
                prefix: "/api/".into(),
                case_insensitive: false,
            },
        ),
        (
            "host:web-?1",
            Query::Wildcard {
                field: path("host"),
                pattern: "web-?1".into(),
                case_insensitive: false,
            },
        ),
        (
            "service.keyword:checkout",
            Query::Term {
                field: FieldRef::Path {
                    path: "service".into(),
                    keyword: true,
                },
                value: Scalar::Str("checkout".into()),
                case_insensitive: false,
            },
        ),
        (
            "status:[500 TO 599]",
            Query::Range {
                field: path("status"),
                lower: Bound::Included(Scalar::I64(500)),
                upper: Bound::Included(Scalar::I64(599)),
            },
        ),
        (
            "latency:>=0.5",
            Query::Range {
                field: path("latency"),
                lower: Bound::Included(Scalar::F64(0.5)),
                upper: Bound::Unbounded,
            },
        ),
        (
            "@timestamp:{now-1m TO *]",
            Query::Range {
                field: FieldRef::Timestamp,
                lower: Bound::Excluded(Scalar::I64(1_000_000_000_000 - 60_000_000)),
                upper: Bound::Unbounded,
            },
        ),
        (
            "message:\"connection reset\"~2",
            Query::Phrase {
                field: path("message"),
                text: "connection reset".into(),
                slop: 2,
            },
        ),
        (
            "path:/\\/api\\/.*/",
            Query::Regexp {
                field: path("path"),
                pattern: "/api/.*".into(),
                case_insensitive: false,
            },
        ),
        (
            "timeout",
            Query::Phrase {
                field: FieldRef::All,
                text: "timeout".into(),
                slop: 0,
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_default(text).expect(text), expected, "{text}");
    }
}

#[test]
fn negation_and_groups() {
    let query = parse_default("status:(500 OR 503) -service:cart").expect("valid");
    let Query::Bool(top) = query else {
        panic!("bool")
    };
    assert_eq!(top.should.len(), 1);
    assert_eq!(top.must_not.len(), 1);
    let query = parse_default("NOT level:debug").expect("valid");
    let Query::Bool(top) = query else {
        panic!("bool")
    };
    assert_eq!(top.must_not.len(), 1);
}

#[test]
fn errors_say_what_and_where() {
    let error = parse_default("status:(500").expect_err("unclosed");
    assert!(
        error.reason.contains("expected `)` at column 12"),
        "{}",
        error.reason
    );
    let error = parse_default("message:\"unterminated").expect_err("quote");
    assert!(
        error.reason.contains("unterminated `\"` at column 9"),
        "{}",
        error.reason
    );
    let error = parse_default("status:[500 599]").expect_err("no TO");
    assert!(error.reason.contains("expected `TO`"), "{}", error.reason);
    let error = parse_default("@timestamp:>now-5q").expect_err("date math");
    assert!(error.reason.contains("now-5q"), "{}", error.reason);
}

#[test]
fn simple_query_string_never_fails() {
    let context = ParseContext {
        now_micros: 0,
        timestamp_field: "@timestamp".into(),
    };
    let options = LuceneOptions {
        lenient: true,
        ..LuceneOptions::default()
    };
    assert!(parse("status:(500", &context, &options).is_ok());
}
