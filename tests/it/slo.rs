//! SLO rules through the real binary (issue 18 point 5): a backtest over a synthetic
//! month pages on a fast burn and opens a ticket on a slow one at exactly the minutes the
//! SRE workbook's arithmetic gives (computed here from the generated counts, by hand and
//! by a model independent of the code under test); the `slo_*` series against hand
//! computation; bad SLO files refused with field and reason; a page and a ticket routed
//! by their severities to different receivers.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::rules::serve_config;
use crate::support::slack::{MockSlack, delivered, delivered_texts, start_mock};
use crate::support::{Server, bulk_body, urlencode, wait_until};

const MINUTE: i64 = 60;
/// Lines per minute of the synthetic month.
const LINES: i64 = 4;
/// Minutes in the month.
const MONTH: i64 = 30 * 1440;
/// The fast burn: every line an error for an hour, from day 10.
const FAST: i64 = 10 * 1440;
/// The slow burn: every other minute one error in four lines (12.5 %) for two days,
/// from day 20.
const SLOW: i64 = 20 * 1440;
const SLOW_MINUTES: i64 = 2 * 1440;

/// Errors in minute `m` of the month: one every 20 minutes (1.25 %, a burn rate of 0.31
/// against the 4 % budget of a 96 % objective) outside the burns.
fn errors(minute: i64) -> i64 {
    if (FAST..FAST + 60).contains(&minute) {
        LINES
    } else if (SLOW..SLOW + SLOW_MINUTES).contains(&minute) {
        i64::from((minute - SLOW) % 2 == 0)
    } else {
        i64::from(minute % 20 == 10)
    }
}

/// The SLO: 96 % of `web` lines are not 5xx over 30 days, the workbook's conditions.
fn slo_rule() -> Value {
    json!({
        "version": 1,
        "index": "web",
        "labels": {"team": "payments"},
        "slo": {"objective": 96, "period": "30d", "good": "NOT status:>=500", "total": "*"}
    })
}

/// The config: a month of logs kept, one partition a day.
const CONFIG: &str = "[index]\nretention = \"120days\"\npartition_span = \"1d\"\n";

/// Start of the month: midnight UTC 32 days ago (seconds).
fn month_start() -> i64 {
    let today = chrono::Utc::now().timestamp().div_euclid(86_400) * 86_400;
    today - 32 * 86_400
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .expect("a time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Ingests the month: `LINES` lines a minute, the first `errors(m)` of them 500s.
async fn ingest_month(server: &Server, start: i64) {
    for day in 0..30 {
        let mut docs = Vec::with_capacity(1440 * LINES as usize);
        for minute in day * 1440..(day + 1) * 1440 {
            for line in 0..LINES {
                let status = if line < errors(minute) { 503 } else { 200 };
                docs.push(json!({
                    "@timestamp": rfc3339(start + minute * MINUTE + line * 15),
                    "status": status,
                    "service": "checkout",
                }));
            }
        }
        let (status, body) = server.post_ndjson("/_bulk", bulk_body("web", &docs)).await;
        assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    }
    let (status, body) = server.post_json("/web/_refresh", &json!({})).await;
    assert_eq!(status, 200, "{body}");
}

/// Errors and lines in minutes `[from, to)` of the month (nothing outside it).
fn counts(from: i64, to: i64) -> (i64, i64) {
    let (from, to) = (from.max(0), to.min(MONTH));
    if to <= from {
        return (0, 0);
    }
    ((from..to).map(errors).sum(), (to - from) * LINES)
}

/// Whether the error ratio over the `window` minutes before minute `tick` is above
/// `numerator / denominator` (burn rate × budget, as a fraction), in integers.
fn above(tick: i64, window: i64, numerator: i64, denominator: i64) -> bool {
    let (errors, lines) = counts(tick - window, tick);
    lines > 0 && errors * denominator > lines * numerator
}

/// The workbook's conditions at minute `tick` against a 4 % budget: 14.4 × 4 % = 72/125
/// over 1h and 5m, or 6 × 4 % = 6/25 over 6h and 30m; a ticket: 1 × 4 % = 1/25 over 3d
/// and 6h.
fn page(tick: i64) -> bool {
    (above(tick, 60, 72, 125) && above(tick, 5, 72, 125))
        || (above(tick, 360, 6, 25) && above(tick, 30, 6, 25))
}

fn ticket(tick: i64) -> bool {
    above(tick, 3 * 1440, 1, 25) && above(tick, 360, 1, 25)
}

/// (minute, alert, from, to) of every change of `condition` over the ticks 1..=MONTH.
fn model_transitions(alert: &str, condition: fn(i64) -> bool) -> Vec<(i64, String, String)> {
    let mut firing = false;
    let mut changes = Vec::new();
    for tick in 1..=MONTH {
        let now = condition(tick);
        if now != firing {
            let (from, to) = if now {
                ("inactive", "firing")
            } else {
                ("firing", "resolved")
            };
            changes.push((tick, format!("{alert} {from}"), to.to_string()));
            firing = now;
        }
    }
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_backtest_pages_on_the_fast_burn_and_tickets_on_the_slow_one_at_the_workbook_minutes()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_config(
        dir.path(),
        &[("checkout_availability", slo_rule())],
        CONFIG,
        &[],
    );
    let start = month_start();
    ingest_month(&server, start).await;

    // by hand, from the generated counts:
    // page at FAST + 35: the 1h window [FAST − 25, FAST + 35) holds 35 × 4 burst errors
    // and the baseline error of minute FAST − 10: 141 of 240 = 58.75 % > 57.6 % (burn
    // 14.69 > 14.4; at FAST + 34: 137 of 240, burn 14.27); the 5m window is all errors
    // (burn 25). It resolves at FAST + 63: the 5m window [FAST + 58, FAST + 63) holds 8
    // errors of 20 (burn 10; at FAST + 62: 12 of 20, burn 15). The 6h/30m condition never
    // holds (240 errors at most in 6h: 16.7 % < 24 %).
    // ticket at SLOW + 1057: the 3d window [SLOW − 3263, SLOW + 1057) holds the 163
    // baseline errors before SLOW and the 529 errors of the even minutes 0..=1056:
    // 692 of 17 280 = 4.005 % > 4 % (at SLOW + 1056: 691, 3.999 %); the 6h window holds
    // 180 of 1 440 (12.5 %). It resolves at SLOW + 3153: the 6h window [SLOW + 2793,
    // SLOW + 3153) holds 43 slow and 14 baseline errors: 57 of 1 440 = 3.96 % (at
    // SLOW + 3152: 58, 4.03 %).
    let by_hand = [
        (FAST + 35, "page inactive", "firing"),
        (FAST + 63, "page firing", "resolved"),
        (SLOW + 1057, "ticket inactive", "firing"),
        (SLOW + 3153, "ticket firing", "resolved"),
    ];
    let mut model = model_transitions("page", page);
    model.extend(model_transitions("ticket", ticket));
    model.sort();
    let model: Vec<(i64, &str, &str)> = model
        .iter()
        .map(|(tick, what, to)| (*tick, what.as_str(), to.as_str()))
        .collect();
    assert_eq!(model, by_hand, "the model agrees with the hand arithmetic");

    // a tick a minute through the server's backtest, over the day around the fast burn
    // and the four days around the slow one (the model covers the whole month: nothing
    // else fires)
    let mut events: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for (from, to) in [
        (FAST - 720, FAST + 720),
        (SLOW - 720, SLOW + 3 * 1440 + 720),
    ] {
        let path = format!(
            "/_lookout/rules/checkout_availability/_backtest?from={}&to={}",
            urlencode(&rfc3339(start + from * MINUTE)),
            urlencode(&rfc3339(start + to * MINUTE)),
        );
        let (status, body) = server.post_json(&path, &Value::Null).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["evaluations"], to - from + 1);
        events.extend(body["timeline"].as_array().cloned().unwrap_or_default());
        messages.extend(body["messages"].as_array().cloned().unwrap_or_default());
    }
    let timeline: Vec<(i64, String, String)> = events
        .iter()
        .filter(|event| event["to"] == "firing" || event["to"] == "resolved")
        .map(|event| {
            let at =
                chrono::DateTime::parse_from_rfc3339(event["@timestamp"].as_str().expect("at"))
                    .expect("a time")
                    .timestamp();
            assert_eq!(event["labels"]["slo"], "checkout_availability", "{event}");
            let alert = event["labels"]["slo_alert"].as_str().expect("slo_alert");
            let severity = if alert == "page" {
                "critical"
            } else {
                "warning"
            };
            assert_eq!(event["labels"]["severity"], severity, "{event}");
            assert_eq!(event["severity"], severity, "{event}");
            (
                (at - start) / MINUTE,
                format!("{alert} {}", event["from"].as_str().expect("from")),
                event["to"].as_str().expect("to").to_string(),
            )
        })
        .collect();
    let timeline: Vec<(i64, &str, &str)> = timeline
        .iter()
        .map(|(tick, what, to)| (*tick, what.as_str(), to.as_str()))
        .collect();
    assert_eq!(timeline, by_hand, "{events:?}");
    // a rule file not saved on the server (`lookout rules test FILE` posts it) replays the
    // same: its SLO exists for the backtest only
    let path = format!(
        "/_lookout/rules/checkout_draft/_backtest?from={}&to={}",
        urlencode(&rfc3339(start + (FAST - 60) * MINUTE)),
        urlencode(&rfc3339(start + (FAST + 120) * MINUTE)),
    );
    let (status, body) = server.post_json(&path, &slo_rule()).await;
    assert_eq!(status, 200, "{body}");
    let draft: Vec<(i64, &str)> = body["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter(|event| event["to"] == "firing" || event["to"] == "resolved")
        .map(|event| {
            let at =
                chrono::DateTime::parse_from_rfc3339(event["@timestamp"].as_str().expect("at"))
                    .expect("a time")
                    .timestamp();
            ((at - start) / MINUTE, event["to"].as_str().expect("to"))
        })
        .collect();
    assert_eq!(
        draft,
        [(FAST + 35, "firing"), (FAST + 63, "resolved")],
        "{body}"
    );
    // … and is gone after it: only the running SLO has series
    let (status, series) = server
        .get(&format!(
            "/api/v1/series?{}={}",
            urlencode("match[]"),
            urlencode("slo_sli")
        ))
        .await;
    assert_eq!(status, 200, "{series}");
    let text = series.to_string();
    assert!(
        text.contains("checkout_availability") && !text.contains("checkout_draft"),
        "{text}"
    );

    // the page's value is the 1h burn rate: 141 / 240 / 0.04
    let fired = events
        .iter()
        .find(|event| event["to"] == "firing" && event["labels"]["slo_alert"] == "page")
        .expect("the page fired");
    let value = fired["value"].as_f64().expect("a value");
    assert!((value - 141.0 / 240.0 / 0.04).abs() < 1e-9, "{fired}");
    // the messages name the SLO, the burn rate and the budget left
    let page_message = messages
        .iter()
        .find(|message| message["kind"] == "firing")
        .expect("a firing message");
    let text = page_message.to_string();
    assert!(
        text.contains(
            "SLO checkout_availability (96% over 30d): page, the error budget burns 14.7× too fast"
        ),
        "{text}"
    );
    assert!(text.contains("slo_error_budget_remaining"), "{text}");

    // the series at FAST + 30 minutes, by hand
    let at = start + (FAST + 30) * MINUTE;
    let query = |expr: &str| format!("/api/v1/query?query={}&time={at}", urlencode(expr));
    let value_of = |body: &Value| -> f64 {
        body["data"]["result"][0]["value"][1]
            .as_str()
            .expect("a sample")
            .parse()
            .expect("a number")
    };
    // 1h: 30 burst minutes (120 errors) and the baseline errors of FAST − 30 and
    // FAST − 10, in 240 lines
    let (status, body) = server
        .get(&query(
            r#"slo_burn_rate{slo="checkout_availability", window="1h"}"#,
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        (value_of(&body) - 122.0 / 240.0 / 0.04).abs() < 1e-9,
        "{body}"
    );
    assert_eq!(body["data"]["result"][0]["metric"]["team"], Value::Null);
    // the period reaches back before the month: every line from its start, FAST + 30
    // minutes of 4 lines; errors: the 720 baseline minutes before FAST and 120 burst ones
    let lines = (FAST + 30) * LINES;
    let (status, body) = server
        .get(&query(r#"slo_sli{slo="checkout_availability"}"#))
        .await;
    assert_eq!(status, 200, "{body}");
    let sli = 1.0 - 840.0 / lines as f64;
    assert!((value_of(&body) - sli).abs() < 1e-12, "{body}");
    let (status, body) = server
        .get(&query(
            r#"slo_error_budget_remaining{slo="checkout_availability"}"#,
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let budget = 1.0 - (840.0 / lines as f64) / 0.04;
    assert!((value_of(&body) - budget).abs() < 1e-9, "{body}");
    // every window of the conditions is a series
    let (status, body) = server
        .get(&query(
            r#"count by (window) (slo_burn_rate{slo="checkout_availability"})"#,
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut windows: Vec<&str> = body["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .map(|sample| sample["metric"]["window"].as_str().expect("window"))
        .collect();
    windows.sort();
    assert_eq!(windows, ["1h", "30m", "3d", "5m", "6h"]);
}

/// Grafana's metric and label pickers list the SLO series: `/api/v1/labels` and
/// `/api/v1/label/NAME/values` without `match[]` name them, their windows and groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slo_series_are_listed_by_the_label_apis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = json!({
        "version": 1,
        "index": "web",
        "group_by": ["service"],
        "slo": {"objective": 99, "period": "1d", "good": "NOT status:>=500", "total": "*"}
    });
    let server = serve_config(dir.path(), &[("checkout_availability", rule)], "", &[]);
    // lines in the minute before this one, for two services
    let minute = chrono::Utc::now().timestamp().div_euclid(60) * 60;
    let docs: Vec<Value> = (0..10)
        .map(|line| {
            let service = if line % 2 == 0 { "cart" } else { "pay" };
            json!({"@timestamp": rfc3339(minute - 30), "status": 200 + line * 10, "service": service})
        })
        .collect();
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("web", &docs))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");

    let (status, body) = server.get("/api/v1/labels").await;
    assert_eq!(status, 200, "{body}");
    for name in ["__name__", "slo", "window", "service"] {
        assert!(
            body["data"]
                .as_array()
                .expect("names")
                .contains(&json!(name)),
            "{name}: {body}"
        );
    }
    let values = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .expect("values")
            .iter()
            .map(|value| value.as_str().expect("a string").to_string())
            .collect()
    };
    let (status, body) = server.get("/api/v1/label/__name__/values").await;
    assert_eq!(status, 200, "{body}");
    let names = values(&body);
    for metric in ["slo_burn_rate", "slo_error_budget_remaining", "slo_sli"] {
        assert!(names.contains(&metric.to_string()), "{metric}: {body}");
    }
    let (_, body) = server.get("/api/v1/label/slo/values").await;
    assert_eq!(values(&body), ["checkout_availability"], "{body}");
    // the workbook's default windows: 5m and 1h, 30m and 6h (pages), 6h and 3d (tickets)
    let (_, body) = server.get("/api/v1/label/window/values").await;
    assert_eq!(values(&body), ["1h", "30m", "3d", "5m", "6h"], "{body}");
    let (_, body) = server.get("/api/v1/label/service/values").await;
    assert_eq!(values(&body), ["cart", "pay"], "{body}");
}

fn lookout(args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(args)
        .env("LOOKOUT_LOG", "warn")
        .output()
        .expect("run lookout");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_slo_files_are_refused_with_field_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("checkout_availability.json");
    std::fs::write(
        &path,
        json!({
            "version": 1,
            "index": "web",
            "threshold": {"op": ">", "value": 1},
            "slo": {
                "objective": 100,
                "period": "30x",
                "good": "status:(",
                "total": "*",
                "page": [{"long_window": "5m", "short_window": "1h", "burn_rate": 14.4}],
                "ticket": [{"long_window": "3d", "short_window": "6h", "burn_rate": -1}]
            }
        })
        .to_string(),
    )
    .expect("write");
    let (code, _, stderr) = lookout(&["check", &path.display().to_string()]);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "`threshold`: an SLO rule's alerts come from its `slo`",
        "`slo.objective`: 100 is not a percentage strictly between 0 and 100",
        "`slo.period`: `30x` is not a duration",
        "`slo.page[0].short_window`: `1h` must be shorter than long_window `5m`",
        "`slo.ticket[0].burn_rate`: -1 must be a number above 0",
        "`slo.good`: Lucene query",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    // an unknown key of the slo object is named too
    std::fs::write(
        &path,
        r#"{"version": 1, "index": "web", "slo": {"objective": 99.9, "good": "*", "total": "*", "windows": []}}"#,
    )
    .expect("write");
    let (code, _, stderr) = lookout(&["check", &path.display().to_string()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("`slo`: unknown field `windows`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_goes_to_the_critical_route_and_a_ticket_to_the_warning_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pages = Arc::new(Mutex::new(MockSlack::default()));
    let tickets = Arc::new(Mutex::new(MockSlack::default()));
    let (pages_url, tickets_url) = (
        start_mock(pages.clone()).await,
        start_mock(tickets.clone()).await,
    );
    let config = "[notifiers.pages]\ntype = \"slack\"\nurl_env = \"PAGES_URL\"\n\
        [notifiers.tickets]\ntype = \"slack\"\nurl_env = \"TICKETS_URL\"\n\
        [routing]\ndefault = [\"tickets\"]\n\
        [[routing.routes]]\nmatchers = ['severity=\"critical\"']\nnotify = [\"pages\"]\n\
        [[routing.routes]]\nmatchers = ['severity=\"warning\"']\nnotify = [\"tickets\"]\n";
    // every second; all errors over 2m and 1m pages (25 > 10), and tickets (25 > 1)
    let rule = json!({
        "version": 1,
        "schedule": "* * * * * *",
        "index": "web",
        "slo": {
            "objective": 96, "period": "1d", "good": "NOT status:>=500", "total": "*",
            "page": [{"long_window": "2m", "short_window": "1m", "burn_rate": 10}],
            "ticket": [{"long_window": "3m", "short_window": "1m", "burn_rate": 1}]
        }
    });
    let server = serve_config(
        dir.path(),
        &[("checkout_availability", rule)],
        config,
        &[("PAGES_URL", &pages_url), ("TICKETS_URL", &tickets_url)],
    );
    // errors in the two whole minutes before now and in this one: whenever the next
    // tick is, its last whole minute holds errors only
    let now = chrono::Utc::now().timestamp();
    let minute = now.div_euclid(60) * 60;
    let docs: Vec<Value> = [minute - 90, minute - 30, now - 1]
        .iter()
        .flat_map(|at| (0..5).map(move |_| json!({"@timestamp": rfc3339(*at), "status": 500})))
        .collect();
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("web", &docs))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");
    wait_until("the page delivered", 30, delivered(&pages, 1)).await;
    wait_until("the ticket delivered", 30, delivered(&tickets, 1)).await;
    let page_texts = delivered_texts(&pages);
    let ticket_texts = delivered_texts(&tickets);
    assert!(
        page_texts
            .iter()
            .all(|text| text.contains("page") && !text.contains("ticket")),
        "{page_texts:?}"
    );
    assert!(
        ticket_texts
            .iter()
            .all(|text| text.contains("ticket") && !text.contains(": page")),
        "{ticket_texts:?}"
    );
    assert!(
        page_texts[0].contains("SLO checkout_availability (96% over 1d)"),
        "{page_texts:?}"
    );
}

// the browser works while this process serves nothing but waits
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slo_page_shows_the_objective_sli_budget_and_burn_chart_in_a_real_browser() {
    use crate::support::browser::{browser, driver, wait_for};
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = json!({
        "version": 1,
        "index": "web",
        "description": "checkout answers",
        "slo": {"objective": 99, "period": "1d", "good": "NOT status:>=500", "total": "*"}
    });
    let server = serve_config(dir.path(), &[("checkout_availability", rule)], "", &[]);
    // 100 lines in the two whole minutes before now, 2 of them errors: SLI 98 %, and
    // 2 % errors against a 1 % budget spend it twice: −100 % left
    let minute = chrono::Utc::now().timestamp().div_euclid(60) * 60;
    let docs: Vec<Value> = (0..100)
        .map(|line| {
            let at = if line < 50 { minute - 90 } else { minute - 30 };
            let status = if line % 50 == 0 { 500 } else { 200 };
            json!({"@timestamp": rfc3339(at), "status": status})
        })
        .collect();
    let (status, body) = server
        .post_ndjson("/_bulk?refresh=true", bulk_body("web", &docs))
        .await;
    assert_eq!((status, &body["errors"]), (200, &json!(false)), "{body}");

    let driver = driver().await;
    let client = browser(&driver, &dir.path().join("chromium")).await;
    client
        .goto(&server.url("/ui/slos"))
        .await
        .expect("the SLO page");
    wait_for(&client, "article.slo h2", "checkout_availability", 1).await;
    wait_for(
        &client,
        "article.slo p",
        "Objective 99 % over 1d — checkout answers",
        1,
    )
    .await;
    wait_for(&client, ".slo-sli", "98.000 %", 1).await;
    wait_for(&client, ".slo-budget.error", "-100.000 %", 1).await;
    // the burn-rate chart, one line per window with events in it
    wait_for(&client, "article.slo .legend", "window=\"5m\"", 1).await;
    let charts = client
        .find_all(fantoccini::Locator::Css("article.slo svg.chart path"))
        .await
        .expect("chart lines");
    assert!(!charts.is_empty(), "a burn-rate line");
    // linked from the navigation, marked as the current page
    let link = client
        .find(fantoccini::Locator::Css("nav a[href=\"/ui/slos\"]"))
        .await
        .expect("a navigation link");
    assert_eq!(
        link.attr("aria-current")
            .await
            .expect("attribute")
            .as_deref(),
        Some("page")
    );
    client.close().await.expect("close the browser");
}
