use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::index::IndexStore;

const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3600 * SECOND;
const DAY: i64 = 24 * HOUR;
/// 2026-11-22T10:00:00Z
const TICK: i64 = 1_795_341_600_000_000;

fn open_store(dir: &std::path::Path) -> Arc<IndexStore> {
    Arc::new(IndexStore::test_open(dir, DAY, 4))
}

fn add(store: &IndexStore, first_id: usize, documents: &[(i64, Value)]) {
    let ops = documents
        .iter()
        .enumerate()
        .map(|(number, (micros, body))| {
            store.test_doc(
                "logs",
                format!("{}", first_id + number),
                *micros,
                serde_json::to_vec(body).expect("json"),
            )
        })
        .collect();
    store.apply(1, ops, false).expect("apply");
    store.commit_all().expect("commit");
}

fn settings(fields: &[&str], lookback_days: u64) -> NewTermSettings {
    NewTermSettings {
        fields: fields.iter().map(|field| field.to_string()).collect(),
        labels: fields.iter().map(|field| label_name(field)).collect(),
        lookback: Duration::from_secs(lookback_days * 86_400),
        max_terms: 1000,
    }
}

/// The values new at `tick` (label values joined by `/`), sorted.
fn new_at(
    terms: &NewTerms,
    store: &IndexStore,
    settings: &NewTermSettings,
    tick: i64,
) -> Vec<String> {
    let query = json!("level:error");
    let term_query = TermQuery {
        rule: "errors",
        index: "logs",
        query: &query,
        settings,
        window: Duration::from_secs(60),
    };
    let mut found: Vec<String> = terms
        .observe(store, &term_query, tick)
        .expect("observe")
        .into_iter()
        .map(|observation| {
            settings
                .labels
                .iter()
                .map(|label| observation.labels[label].clone())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    found.sort();
    found
}

fn error(kind: &str) -> Value {
    json!({"level": "error", "error": {"type": kind}, "service": "api"})
}

#[test]
fn values_of_the_window_absent_from_the_lookback_are_new_and_reported_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    add(
        &store,
        0,
        &[
            // the lookback, across several daily partitions
            (TICK - 6 * DAY, error("Timeout")),
            (TICK - 3 * DAY, error("Refused")),
            // older than the lookback before the window: new again
            (TICK - 8 * DAY, error("OutOfMemory")),
            // not an error: never a term
            (
                TICK - 30 * SECOND,
                json!({"level": "info", "error": {"type": "Info"}}),
            ),
            // the window
            (TICK - 30 * SECOND, error("Timeout")),
            (TICK - 20 * SECOND, error("OutOfMemory")),
            (TICK - 10 * SECOND, error("NullPointer")),
            (TICK - 5 * SECOND, error("NullPointer")),
        ],
    );
    let settings = settings(&["error.type"], 7);
    let terms = NewTerms::detached();
    assert_eq!(
        new_at(&terms, &store, &settings, TICK),
        ["NullPointer", "OutOfMemory"]
    );
    let built = terms.searches("errors");
    assert_eq!(
        built,
        Searches {
            lookback: 1,
            window: 1
        }
    );
    // the next ticks read their windows only, and a value seen is not new again
    add(&store, 100, &[(TICK + 30 * SECOND, error("NullPointer"))]);
    assert!(new_at(&terms, &store, &settings, TICK + 60 * SECOND).is_empty());
    add(&store, 200, &[(TICK + 90 * SECOND, error("Disk"))]);
    assert_eq!(
        new_at(&terms, &store, &settings, TICK + 120 * SECOND),
        ["Disk"]
    );
    assert_eq!(
        terms.searches("errors"),
        Searches {
            lookback: 1,
            window: 3
        }
    );
    assert_eq!(terms.tracked("errors"), 5);
}

#[test]
fn combinations_of_two_fields_are_terms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    let line = |service: &str, kind: &str| json!({"level": "error", "service": service, "error": {"type": kind}});
    add(
        &store,
        0,
        &[
            (TICK - 2 * DAY, line("api", "Timeout")),
            (TICK - 2 * DAY, line("web", "Refused")),
            (TICK - 10 * SECOND, line("api", "Timeout")),
            (TICK - 10 * SECOND, line("api", "Refused")),
            (TICK - 10 * SECOND, line("web", "Timeout")),
            (TICK - 10 * SECOND, line("web", "Refused")),
        ],
    );
    let settings = settings(&["service", "error.type"], 7);
    assert_eq!(
        new_at(&NewTerms::detached(), &store, &settings, TICK),
        ["api/Refused", "web/Timeout"]
    );
}

#[test]
fn a_restart_goes_on_from_the_last_committed_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    add(
        &store,
        0,
        &[
            (TICK - 2 * DAY, error("Timeout")),
            (TICK - 10 * SECOND, error("Refused")),
        ],
    );
    let settings = settings(&["error.type"], 7);
    let telemetry = Arc::new(crate::telemetry::Telemetry::default());
    let running = NewTerms::new(state.path().to_path_buf(), Arc::clone(&telemetry));
    assert_eq!(new_at(&running, &store, &settings, TICK), ["Refused"]);
    running.commit("errors");
    // down for five minutes: a value first seen then is new at the first tick after,
    // the one reported before is not new twice
    add(
        &store,
        100,
        &[
            (TICK + 100 * SECOND, error("Disk")),
            (TICK + 290 * SECOND, error("Refused")),
        ],
    );
    let restarted = NewTerms::new(state.path().to_path_buf(), telemetry);
    assert_eq!(
        new_at(&restarted, &store, &settings, TICK + 300 * SECOND),
        ["Disk"]
    );
    // an edited rule (another lookback) starts over from its window
    let edited = NewTerms::new(state.path().to_path_buf(), Arc::default());
    let mut longer = settings.clone();
    longer.lookback = Duration::from_secs(1);
    assert_eq!(
        new_at(&edited, &store, &longer, TICK + 300 * SECOND),
        ["Refused"]
    );
}

#[test]
fn a_lookback_with_more_values_than_one_aggregation_answers_is_paged_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    let distinct = MAX_GROUPS + MAX_GROUPS / 2;
    let documents: Vec<(i64, Value)> = (0..distinct)
        .map(|number| {
            (
                TICK - HOUR - (number as i64) * SECOND / 10,
                json!({"level": "error", "user": format!("u{number}")}),
            )
        })
        .collect();
    add(&store, 0, &documents);
    let mut searches = 0;
    let terms = read(
        &store,
        "logs",
        &json!("level:error"),
        &["user".to_string()],
        (TICK - DAY, TICK),
        &mut searches,
    )
    .expect("read");
    assert_eq!(terms.len(), distinct);
    assert!(searches >= 3, "the range was split: {searches} searches");
    // each value's newest time is its event time
    let first = terms.iter().find(|term| term.values == ["u0"]).expect("u0");
    assert_eq!(first.last_seen_micros, TICK - HOUR);
    assert_eq!(first.count, 1);
}

#[test]
fn more_values_than_max_terms_fail_the_evaluation_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    let documents: Vec<(i64, Value)> = (0..5)
        .map(|number| (TICK - HOUR, error(&format!("E{number}"))))
        .collect();
    add(&store, 0, &documents);
    let mut small = settings(&["error.type"], 7);
    small.max_terms = 3;
    let query = json!("level:error");
    let error = NewTerms::detached()
        .observe(
            &store,
            &TermQuery {
                rule: "errors",
                index: "logs",
                query: &query,
                settings: &small,
                window: Duration::from_secs(60),
            },
            TICK,
        )
        .expect_err("too many");
    assert!(
        error
            .to_string()
            .contains("more than 3 distinct values of `error.type`")
            && error.to_string().contains("raise `max_terms`"),
        "{error}"
    );
}

#[test]
fn new_term_refuses_what_it_cannot_honour() {
    let text = r#"{"version": 1, "query": "level:error", "threshold": {"op": ">", "value": 1},
        "group_by": ["service"], "for": "5m",
        "new_term": {"fields": [], "lookback": "seven days"}}"#;
    let errors = crate::rules::check::check_rule(text, "bad", "bad.json")
        .err()
        .expect("invalid")
        .join("\n");
    for expected in [
        "`threshold`: a new-term rule fires for each new value",
        "`group_by`: a new-term rule's alerts",
        "`for`: a value is new at one tick only",
        "`new_term`: `fields` needs 1 to 4 field names",
        "`new_term`: `lookback`: `seven days` is not a duration",
    ] {
        assert!(errors.contains(expected), "{expected} in {errors}");
    }
    let good = r#"{"version": 1, "query": "level:error",
        "summary": "new {{ $labels.error_type }}",
        "new_term": {"fields": ["error.type"], "lookback": "7d"}}"#;
    let rule = crate::rules::rule::LoadedRule::parse(good, "good", "good.json").expect("valid");
    let settings = rule.new_term.expect("new_term");
    assert_eq!(settings.labels, ["error_type"]);
    assert_eq!(settings.lookback, Duration::from_secs(7 * 86_400));
    assert_eq!(settings.max_terms, 1_000_000);
}
