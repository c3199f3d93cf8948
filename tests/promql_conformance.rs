//! Runs Prometheus' PromQL conformance scripts (the `.test` language described in
//! `../shared/testdata/promql/FORMAT.md`) against Lookout's engine: the copies in
//! `tests/promql/` and, when `LOOKOUT_PROMQL_TESTDATA` names a directory, every `.test`
//! file in it. Like Prometheus' harness, every instant evaluation is also re-run with
//! `@` pinned at other times and as a one-step range query. Evaluations needing native
//! histograms or experimental syntax are skipped and listed with their reason.
//!
//! `cargo test --test promql_conformance -- --nocapture` prints the details.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lookout::promql::notation::{Point, parse_number, parse_series_line, parse_values};
use lookout::promql::{self, Annotations, Engine, EngineOptions, QueryValue, Series, Storage};
use lookout::tsdb::head::{Labels, Matcher};
use promql_parser::parser::{AtModifier, Expr};

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
/// Functions whose value depends on the evaluation time even with `@` everywhere.
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "end",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "range",
    "start",
    "step",
    "time",
    "timestamp",
];
const EXPERIMENTAL_SYNTAX: &[&str] = &[
    "anchored",
    "smoothed",
    "fill(",
    "fill_left",
    "fill_right",
    "fill (",
    "step()",
    "range()",
];

#[derive(Default)]
struct TestStorage {
    floats: BTreeMap<Labels, Vec<(i64, f64)>>,
    histograms: BTreeMap<Labels, Vec<i64>>,
    touched_histogram: AtomicBool,
}

impl Storage for TestStorage {
    fn select(&self, matchers: &[Matcher], min_time: i64, max_time: i64) -> promql::Selected {
        let matches = |labels: &Labels| lookout::tsdb::head::matches_all(matchers, labels);
        for (labels, times) in &self.histograms {
            if matches(labels)
                && times
                    .iter()
                    .any(|time| (min_time..=max_time).contains(time))
            {
                self.touched_histogram.store(true, Ordering::Relaxed);
            }
        }
        self.floats
            .iter()
            .filter(|(labels, _)| matches(labels))
            .map(|(labels, points)| {
                let points: Vec<(i64, f64)> = points
                    .iter()
                    .copied()
                    .filter(|(time, _)| (min_time..=max_time).contains(time))
                    .collect();
                (Arc::clone(labels), points)
            })
            .filter(|(_, points)| !points.is_empty())
            .collect()
    }
}

#[derive(Default, Debug)]
struct Expectations {
    fail: bool,
    fail_message: Option<String>,
    fail_regex: Option<String>,
    ordered: bool,
    warn: Vec<Option<Matcher2>>,
    info: Vec<Option<Matcher2>>,
    no_warn: bool,
    no_info: bool,
    range_vector: Option<(i64, i64, i64)>,
    string: Option<String>,
    scalar: Option<f64>,
    series: Vec<(Labels, Vec<Point>)>,
    histogram_literal: bool,
}

#[derive(Debug, Clone)]
enum Matcher2 {
    Message(String),
    Regex(String),
}

enum Kind {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
    skipped: Vec<String>,
}

fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        let seconds: i64 = text.parse().map_err(|_| format!("bad duration {text:?}"))?;
        return Ok(if negative {
            -seconds * 1000
        } else {
            seconds * 1000
        });
    }
    let mut total = 0i64;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("bad duration {text:?}"))?;
        if digits == 0 {
            return Err(format!("bad duration {text:?}"));
        }
        let number: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            other => return Err(format!("bad duration unit {other:?} in {text:?}")),
        };
        total += number * unit;
        rest = &rest[unit_len..];
    }
    Ok(if negative { -total } else { total })
}

fn almost_equal(a: f64, b: f64) -> bool {
    if a.to_bits() == STALE_NAN || b.to_bits() == STALE_NAN {
        return a.to_bits() == b.to_bits();
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    let epsilon = 1e-6;
    let sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || sum < min_normal {
        return diff < epsilon * min_normal;
    }
    diff / sum.min(f64::MAX) < epsilon
}

fn format_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// Compares an instant result with the expectations.
fn compare_instant(expected: &Expectations, result: &QueryValue) -> Result<(), String> {
    if let Some(string) = &expected.string {
        return match result {
            QueryValue::String { value, .. } if value == string => Ok(()),
            other => Err(format!("expected string {string:?}, got {other:?}")),
        };
    }
    if let Some(scalar) = expected.scalar {
        return match result {
            QueryValue::Scalar { value, .. } if almost_equal(*value, scalar) => Ok(()),
            other => Err(format!("expected scalar {scalar}, got {other:?}")),
        };
    }
    if let Some((start, _, step)) = expected.range_vector {
        let QueryValue::Matrix(series) = result else {
            return Err(format!("expected a range vector, got {result:?}"));
        };
        return compare_matrix(&expected.series, series, start, step);
    }
    let samples = match result {
        QueryValue::Vector(samples) => samples,
        other => return Err(format!("expected an instant vector, got {other:?}")),
    };
    if samples.len() != expected.series.len() {
        return Err(format!(
            "expected {} samples, got {}: {}",
            expected.series.len(),
            samples.len(),
            samples
                .iter()
                .map(|sample| format!("{} {}", format_labels(&sample.labels), sample.value))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    for (position, (labels, points)) in expected.series.iter().enumerate() {
        let Some(found) = samples.iter().position(|sample| sample.labels == *labels) else {
            return Err(format!(
                "expected series {} not in the result",
                format_labels(labels)
            ));
        };
        if expected.ordered && found != position {
            return Err(format!(
                "series {} at position {found}, expected {position}",
                format_labels(labels)
            ));
        }
        let Some(Point::Value(value)) = points.first() else {
            return Err("expected line without a value".into());
        };
        if !almost_equal(*value, samples[found].value) {
            return Err(format!(
                "{}: expected {value}, got {}",
                format_labels(labels),
                samples[found].value
            ));
        }
    }
    Ok(())
}

fn compare_matrix(
    expected: &[(Labels, Vec<Point>)],
    series: &[Series],
    start: i64,
    step: i64,
) -> Result<(), String> {
    let expected: Vec<&(Labels, Vec<Point>)> = expected
        .iter()
        .filter(|(_, points)| points.iter().any(|point| matches!(point, Point::Value(_))))
        .collect();
    if series.len() != expected.len() {
        return Err(format!(
            "expected {} series, got {}: {}",
            expected.len(),
            series.len(),
            series
                .iter()
                .map(|series| format!("{} {:?}", format_labels(&series.labels), series.points))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    for (labels, points) in expected {
        let Some(found) = series.iter().find(|series| series.labels == *labels) else {
            return Err(format!(
                "expected series {} not in the result",
                format_labels(labels)
            ));
        };
        let want: Vec<(i64, f64)> = points
            .iter()
            .enumerate()
            .filter_map(|(i, point)| match point {
                Point::Value(value) => Some((start + i as i64 * step, *value)),
                _ => None,
            })
            .collect();
        if want.len() != found.points.len()
            || want
                .iter()
                .zip(&found.points)
                .any(|(a, b)| a.0 != b.0 || !almost_equal(a.1, b.1))
        {
            return Err(format!(
                "{}: expected {want:?}, got {:?}",
                format_labels(labels),
                found.points
            ));
        }
    }
    Ok(())
}

fn check_annotations(expected: &Expectations, annotations: &Annotations) -> Result<(), String> {
    let check = |kind: &str,
                 wanted: &[Option<Matcher2>],
                 none: bool,
                 actual: &[String]|
     -> Result<(), String> {
        if none && !actual.is_empty() {
            return Err(format!("expected no {kind} annotations, got {actual:?}"));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        if actual.is_empty() {
            return Err(format!("expected {kind} annotations, got none"));
        }
        let matches = |matcher: &Option<Matcher2>, text: &str| match matcher {
            None => true,
            Some(Matcher2::Message(message)) => text == message,
            Some(Matcher2::Regex(pattern)) => regex::Regex::new(&format!("^(?:{pattern})$"))
                .is_ok_and(|regex| regex.is_match(text)),
        };
        for text in actual {
            if !wanted.iter().any(|matcher| matches(matcher, text)) {
                return Err(format!("unexpected {kind} annotation {text:?}"));
            }
        }
        for matcher in wanted {
            if !actual.iter().any(|text| matches(matcher, text)) {
                return Err(format!(
                    "no {kind} annotation matches {matcher:?}; got {actual:?}"
                ));
            }
        }
        Ok(())
    };
    check(
        "warn",
        &expected.warn,
        expected.no_warn,
        &annotations.warnings,
    )?;
    check("info", &expected.info, expected.no_info, &annotations.infos)
}

/// Pins every selector and subquery without `@` at `time` (not inside subqueries).
fn pin_at(expr: &mut Expr, time: SystemTime) {
    match expr {
        Expr::Aggregate(aggregate) => {
            pin_at(&mut aggregate.expr, time);
            if let Some(param) = &mut aggregate.param {
                pin_at(param, time);
            }
        }
        Expr::Unary(unary) => pin_at(&mut unary.expr, time),
        Expr::Binary(binary) => {
            pin_at(&mut binary.lhs, time);
            pin_at(&mut binary.rhs, time);
        }
        Expr::Paren(paren) => pin_at(&mut paren.expr, time),
        Expr::Subquery(subquery) => {
            if subquery.at.is_none() {
                subquery.at = Some(AtModifier::At(time));
            }
        }
        Expr::VectorSelector(selector) => {
            if selector.at.is_none() {
                selector.at = Some(AtModifier::At(time));
            }
        }
        Expr::MatrixSelector(matrix) => {
            if matrix.vs.at.is_none() {
                matrix.vs.at = Some(AtModifier::At(time));
            }
        }
        Expr::Call(call) => {
            for arg in &mut call.args.args {
                pin_at(arg, time);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis((-ms) as u64)
    }
}

struct Runner {
    storage: TestStorage,
    engine: Engine,
    tally: Tally,
    file: String,
}

impl Runner {
    fn load(&mut self, step: i64, lines: &[(usize, String)], nhcb: bool) -> Result<(), String> {
        for (_, line) in lines {
            if line.contains("@st") {
                continue;
            }
            let (labels, values) = parse_series_line(line)?;
            let points = parse_values(&values)?;
            for (i, point) in points.iter().enumerate() {
                let time = i as i64 * step;
                match point {
                    Point::Value(value) => {
                        let series = self.storage.floats.entry(Arc::clone(&labels)).or_default();
                        series.retain(|(t, _)| *t != time);
                        series.push((time, *value));
                        series.sort_by_key(|(t, _)| *t);
                    }
                    Point::Histogram => self
                        .storage
                        .histograms
                        .entry(Arc::clone(&labels))
                        .or_default()
                        .push(time),
                    Point::Missing => {}
                }
            }
            if nhcb {
                // The native histogram with custom buckets this family would also get.
                let name = labels
                    .iter()
                    .find(|(name, _)| name == "__name__")
                    .map(|(_, value)| value.clone())
                    .unwrap_or_default();
                for suffix in ["_bucket", "_count", "_sum"] {
                    if let Some(base) = name.strip_suffix(suffix) {
                        let histogram: Vec<(String, String)> = labels
                            .iter()
                            .filter(|(label, _)| label != "le")
                            .map(|(label, value)| {
                                if label == "__name__" {
                                    (label.clone(), base.to_string())
                                } else {
                                    (label.clone(), value.clone())
                                }
                            })
                            .collect();
                        let times = self.storage.histograms.entry(histogram.into()).or_default();
                        times.extend((0..points.len()).map(|i| i as i64 * step));
                    }
                }
            }
        }
        Ok(())
    }

    fn eval(
        &mut self,
        line_number: usize,
        command: &str,
        kind: Kind,
        text: &str,
        expected: Expectations,
    ) {
        let label = format!("{}:{line_number}: {command}", self.file);
        if expected.histogram_literal {
            self.tally.skipped.push(format!(
                "{label} — needs native histograms (histogram literal in the expected result)"
            ));
            return;
        }
        let parsed = match promql::parse(text) {
            Ok(parsed) => parsed,
            Err(error) => {
                let message = error.to_string();
                if message.contains("not supported") || message.contains("native histograms") {
                    self.tally.skipped.push(format!("{label} — {message}"));
                } else if EXPERIMENTAL_SYNTAX
                    .iter()
                    .any(|marker| text.contains(marker))
                {
                    self.tally.skipped.push(format!(
                        "{label} — experimental syntax the parser does not read: {message}"
                    ));
                } else if expected.fail {
                    self.tally.passed += 1;
                } else {
                    self.tally
                        .failed
                        .push(format!("{label} — parse error: {message}"));
                }
                return;
            }
        };
        self.storage
            .touched_histogram
            .store(false, Ordering::Relaxed);
        let outcome = match kind {
            Kind::Instant(time) => self.check_instant(&parsed, time, &expected),
            Kind::Range { start, end, step } => {
                self.check_range(&parsed, start, end, step, &expected)
            }
        };
        if self.storage.touched_histogram.load(Ordering::Relaxed) {
            self.tally.skipped.push(format!(
                "{label} — needs native histograms (selects histogram samples)"
            ));
            return;
        }
        match outcome {
            Ok(()) => self.tally.passed += 1,
            Err(error) => self.tally.failed.push(format!("{label} — {error}")),
        }
    }

    fn check_failure(
        expected: &Expectations,
        result: Result<(), promql::Error>,
    ) -> Result<(), String> {
        match result {
            Ok(()) => Err("expected the query to fail, it succeeded".into()),
            Err(error) => {
                let message = error.to_string();
                if let Some(want) = &expected.fail_message
                    && &message != want
                {
                    return Err(format!("error {message:?}, expected {want:?}"));
                }
                if let Some(pattern) = &expected.fail_regex
                    && !regex::Regex::new(pattern).is_ok_and(|regex| regex.is_match(&message))
                {
                    return Err(format!("error {message:?} does not match {pattern:?}"));
                }
                Ok(())
            }
        }
    }

    fn check_instant(
        &self,
        expr: &promql::Expr,
        time: i64,
        expected: &Expectations,
    ) -> Result<(), String> {
        let result = self.engine.instant(&self.storage, expr, time);
        if expected.fail {
            return Self::check_failure(expected, result.map(|_| ()));
        }
        let (value, annotations) = result.map_err(|error| format!("unexpected error: {error}"))?;
        compare_instant(expected, &value)?;
        check_annotations(expected, &annotations)?;
        // Hidden check 1: the same result with `@` pinned, evaluated at other times.
        if !AT_UNSAFE
            .iter()
            .any(|name| expr.text.contains(&format!("{name}(")))
        {
            let mut pinned = expr.clone();
            pin_at(&mut pinned.ast, system_time(time));
            let times = if time == 0 {
                vec![-1000, 0, 1000]
            } else {
                vec![-10 * time, 0, time / 5, time, 10 * time]
            };
            for at in times {
                let (value, _) =
                    self.engine
                        .instant(&self.storage, &pinned, at)
                        .map_err(|error| {
                            format!("with @ {time} evaluated at {at}: unexpected error: {error}")
                        })?;
                compare_instant(expected, &value)
                    .map_err(|error| format!("with @ {time} evaluated at {at}: {error}"))?;
            }
        }
        // Hidden check 2: as a range query around `time`.
        let range_safe = !["start()", "end()", "range()", "step()"]
            .iter()
            .any(|call| expr.text.contains(call));
        if range_safe
            && !expected.ordered
            && expected.range_vector.is_none()
            && expected.string.is_none()
        {
            let (series, _) = self
                .engine
                .range(&self.storage, expr, time - 60_000, time + 60_000, 60_000)
                .map_err(|error| format!("as a range query: unexpected error: {error}"))?;
            let at_time: Vec<lookout::promql::Sample> = series
                .iter()
                .filter_map(|series| {
                    series
                        .points
                        .iter()
                        .find(|(t, _)| *t == time)
                        .map(|(_, value)| lookout::promql::Sample {
                            labels: Arc::clone(&series.labels),
                            timestamp: time,
                            value: *value,
                        })
                })
                .collect();
            let as_instant = match value {
                QueryValue::Scalar { .. } => QueryValue::Scalar {
                    timestamp: time,
                    value: at_time.first().map_or(f64::NAN, |sample| sample.value),
                },
                _ => QueryValue::Vector(at_time),
            };
            compare_instant(expected, &as_instant)
                .map_err(|error| format!("as a range query: {error}"))?;
        }
        Ok(())
    }

    fn check_range(
        &self,
        expr: &promql::Expr,
        start: i64,
        end: i64,
        step: i64,
        expected: &Expectations,
    ) -> Result<(), String> {
        let result = self.engine.range(&self.storage, expr, start, end, step);
        if expected.fail {
            return Self::check_failure(expected, result.map(|_| ()));
        }
        let (series, annotations) = result.map_err(|error| format!("unexpected error: {error}"))?;
        compare_matrix(&expected.series, &series, start, step)?;
        check_annotations(expected, &annotations)
    }
}

fn parse_expect(line: &str, expected: &mut Expectations) -> Result<bool, String> {
    let Some(rest) = line.strip_prefix("expect ") else {
        return Ok(false);
    };
    let rest = rest.trim();
    if let Some(range) = rest.strip_prefix("range vector ") {
        let parts: Vec<&str> = range.split_whitespace().collect();
        if parts.len() != 6 || parts[0] != "from" || parts[2] != "to" || parts[4] != "step" {
            return Err(format!("bad expect range vector line {line:?}"));
        }
        expected.range_vector = Some((
            parse_duration(parts[1])?,
            parse_duration(parts[3])?,
            parse_duration(parts[5])?,
        ));
        return Ok(true);
    }
    if let Some(string) = rest.strip_prefix("string ") {
        let string = string.trim();
        expected.string = Some(string[1..string.len() - 1].to_string());
        return Ok(true);
    }
    let (kind, matcher) = match rest.split_once(char::is_whitespace) {
        Some((kind, matcher)) => (kind, Some(matcher.trim())),
        None => (rest, None),
    };
    let matcher = match matcher {
        None => None,
        Some(text) => {
            if let Some(message) = text.strip_prefix("msg:") {
                Some(Matcher2::Message(message.trim().to_string()))
            } else if let Some(pattern) = text.strip_prefix("regex:") {
                Some(Matcher2::Regex(pattern.trim().to_string()))
            } else {
                return Err(format!("bad expect line {line:?}"));
            }
        }
    };
    match kind {
        "fail" => {
            expected.fail = true;
            match matcher {
                Some(Matcher2::Message(message)) => expected.fail_message = Some(message),
                Some(Matcher2::Regex(pattern)) => expected.fail_regex = Some(pattern),
                None => {}
            }
        }
        "ordered" => expected.ordered = true,
        "warn" => expected.warn.push(matcher),
        "info" => expected.info.push(matcher),
        "no_warn" => expected.no_warn = true,
        "no_info" => expected.no_info = true,
        _ => return Err(format!("bad expect line {line:?}")),
    }
    Ok(true)
}

fn run_file(path: &Path) -> Result<Tally, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let lines: Vec<(usize, String)> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let line = line.trim();
            (
                i + 1,
                if line.starts_with('#') {
                    String::new()
                } else {
                    line.to_string()
                },
            )
        })
        .collect();
    let options = EngineOptions {
        max_samples: 10_000_000,
        ..EngineOptions::default()
    };
    let mut runner = Runner {
        storage: TestStorage::default(),
        engine: Engine::new(options),
        tally: Tally::default(),
        file: path
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned()),
    };
    let mut i = 0;
    while i < lines.len() {
        let (number, line) = &lines[i];
        i += 1;
        if line.is_empty() {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if lower == "clear" {
            runner.storage = TestStorage::default();
            continue;
        }
        let mut body = Vec::new();
        while i < lines.len() && !lines[i].1.is_empty() {
            body.push(lines[i].clone());
            i += 1;
        }
        if lower.starts_with("load") {
            let (command, step) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("{number}: bad load"))?;
            let step = parse_duration(step)?;
            runner
                .load(step, &body, command.eq_ignore_ascii_case("load_with_nhcb"))
                .map_err(|error| format!("{number}: {error}"))?;
            continue;
        }
        if !lower.starts_with("eval") {
            return Err(format!(
                "{}:{number}: unknown command {line:?}",
                path.display()
            ));
        }
        let (command, rest) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{number}: bad eval"))?;
        let mut expected = Expectations::default();
        match command.to_ascii_lowercase().as_str() {
            "eval" => {}
            "eval_fail" => expected.fail = true,
            "eval_warn" => expected.warn.push(None),
            "eval_info" => expected.info.push(None),
            "eval_ordered" => expected.ordered = true,
            other => return Err(format!("{number}: unknown command {other}")),
        }
        let rest = rest.trim();
        let (kind, expr) = if let Some(instant) = rest.strip_prefix("instant") {
            let instant = instant
                .trim()
                .strip_prefix("at")
                .ok_or_else(|| format!("{number}: bad eval instant"))?
                .trim();
            let (time, expr) = instant
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("{number}: bad eval instant"))?;
            (
                Kind::Instant(parse_duration(time)?),
                expr.trim().to_string(),
            )
        } else if let Some(range) = rest.strip_prefix("range") {
            let range = range
                .trim()
                .strip_prefix("from")
                .ok_or_else(|| format!("{number}: bad eval range"))?
                .trim();
            let (start, range) = range
                .split_once(" to ")
                .ok_or_else(|| format!("{number}: bad eval range"))?;
            let (end, range) = range
                .trim()
                .split_once(" step ")
                .ok_or_else(|| format!("{number}: bad eval range"))?;
            let (step, expr) = range
                .trim()
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("{number}: bad eval range"))?;
            (
                Kind::Range {
                    start: parse_duration(start)?,
                    end: parse_duration(end)?,
                    step: parse_duration(step)?,
                },
                expr.trim().to_string(),
            )
        } else {
            return Err(format!("{number}: bad eval {line:?}"));
        };
        let mut body_error = None;
        for (_, body_line) in &body {
            if let Some(message) = body_line.strip_prefix("expected_fail_message") {
                expected.fail_message = Some(message.trim().to_string());
                continue;
            }
            if let Some(pattern) = body_line.strip_prefix("expected_fail_regexp") {
                expected.fail_regex = Some(pattern.trim().to_string());
                continue;
            }
            match parse_expect(body_line, &mut expected) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => {
                    body_error = Some(error);
                    break;
                }
            }
            if body_line.contains("{{") {
                expected.histogram_literal = true;
                continue;
            }
            if let Some(value) = parse_number(body_line) {
                expected.scalar = Some(value);
                continue;
            }
            match parse_series_line(body_line)
                .and_then(|(labels, values)| Ok((labels, parse_values(&values)?)))
            {
                Ok(series) => expected.series.push(series),
                Err(error) => {
                    body_error = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = body_error {
            runner.tally.failed.push(format!(
                "{}:{number}: cannot read the expectations: {error}",
                runner.file
            ));
            continue;
        }
        runner.eval(*number, line, kind, &expr, expected);
    }
    Ok(runner.tally)
}

fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "test"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn run_dir(dir: &Path, report: &Mutex<Vec<String>>) -> Tally {
    let mut total = Tally::default();
    for file in test_files(dir) {
        match run_file(&file) {
            Ok(tally) => {
                report.lock().expect("report").push(format!(
                    "{}: {} passed, {} failed, {} skipped",
                    file.display(),
                    tally.passed,
                    tally.failed.len(),
                    tally.skipped.len()
                ));
                total.passed += tally.passed;
                total.failed.extend(tally.failed);
                total.skipped.extend(tally.skipped);
            }
            Err(error) => total.failed.push(format!(
                "{}: the script does not parse: {error}",
                file.display()
            )),
        }
    }
    total
}

#[test]
fn promql_conformance() {
    let report = Mutex::new(Vec::new());
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql");
    let tally = run_dir(&shared, &report);
    let extra =
        std::env::var_os("LOOKOUT_PROMQL_TESTDATA").map(|dir| run_dir(Path::new(&dir), &report));
    for line in report.lock().expect("report").iter() {
        eprintln!("{line}");
    }
    let all_tallies: Vec<&Tally> = std::iter::once(&tally).chain(extra.as_ref()).collect();
    for tally in &all_tallies {
        for failure in &tally.failed {
            eprintln!("FAILED {failure}");
        }
        for skip in &tally.skipped {
            eprintln!("SKIPPED {skip}");
        }
    }
    let passed: usize = all_tallies.iter().map(|tally| tally.passed).sum();
    let failed: usize = all_tallies.iter().map(|tally| tally.failed.len()).sum();
    let skipped: usize = all_tallies.iter().map(|tally| tally.skipped.len()).sum();
    eprintln!("promql conformance: {passed} passed, {failed} failed, {skipped} skipped");
    let shared_rate = tally.passed as f64 / (tally.passed + tally.failed.len()).max(1) as f64;
    assert!(tally.passed > 0, "no evaluation ran");
    assert!(
        shared_rate >= 0.97,
        "the shared scripts pass {:.1}% of their evaluations, below the 97% target",
        shared_rate * 100.0
    );
}

#[test]
fn a_wrong_expectation_fails_and_a_right_one_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "load 1m\n  up{job=\"a\"} 0+1x10\n\neval instant at 5m up\n  up{job=\"a\"} 5\n\neval instant at 5m up\n  up{job=\"a\"} 6\n\neval instant at 5m rate(up[5m])\n  {job=\"a\"} 0.016666666\n";
    let path = dir.path().join("self.test");
    std::fs::write(&path, script).expect("write");
    let tally = run_file(&path).expect("run");
    assert_eq!(tally.passed, 2, "{:?}", tally.failed);
    assert_eq!(tally.failed.len(), 1, "the evaluation expecting 6 fails");
    assert!(
        tally.failed[0].contains("expected 6"),
        "{}",
        tally.failed[0]
    );
}

#[test]
fn value_sequences_expand_as_prometheus_does() {
    let values = parse_values("0+10x3 _ 1-2x2 stale _x2 3x1 0x3d").expect("parse");
    let plain: Vec<String> = values
        .iter()
        .map(|point| match point {
            Point::Value(value) if value.to_bits() == STALE_NAN => "stale".into(),
            Point::Value(value) => value.to_string(),
            Point::Missing => "_".into(),
            Point::Histogram => "h".into(),
        })
        .collect();
    assert_eq!(
        plain,
        [
            "0", "10", "20", "30", "_", "1", "-1", "-3", "stale", "_", "_", "3", "3", "61"
        ]
    );
    assert_eq!(parse_duration("1h30m").expect("duration"), 5_400_000);
    assert!(parse_duration("5x").is_err());
}
