//! The PromQL engine (issue 5, DESIGN §7): expressions are parsed by the `promql-parser`
//! crate and evaluated here with Prometheus 3 semantics for float samples — left-open
//! range and lookback windows, staleness markers, `@` and `offset`, subqueries aligned to
//! their step, Kahan-compensated sums, and delayed `__name__` removal as an option.
//!
//! Evaluation works step by step as Prometheus' does: every instant-vector node yields
//! one vector per output step, so an instant query is a range query with one step.
//! `eval` walks the tree over the `evaluator`'s state and `value`s; `binary`, `functions`
//! and `aggregate` hold the per-step maths, `statistics` the compensated sums they share.
//! Native histograms are not stored yet: a query naming them is refused by the parser
//! or finds no histogram samples.

mod aggregate;
mod binary;
pub mod depth;
mod eval;
mod evaluator;
mod functions;
pub mod notation;
pub mod series;
mod statistics;
mod value;

use std::time::{Duration, Instant};

use crate::tsdb::head::{Labels, Matcher};

pub use value::STALE_NAN_BITS;

pub use crate::tsdb::head::Selected;

/// How the engine reads a selection (after Prometheus' `SelectHints`); a storage that
/// computes its samples (such as `log_matches`) computes only those.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hints {
    /// An instant vector selector evaluated at `first`, `first + step`, … up to `last`
    /// (`step` 0: the one time `first`), each looking back from its time.
    Instants { first: i64, step: i64, last: i64 },
    /// A range vector selector or a lookup: every sample in the range.
    Range,
}

/// Where the engine reads series from.
pub trait Storage: Sync {
    /// Series matching every matcher, with their samples in `[min_time, max_time]`
    /// (milliseconds) in time order; staleness markers included.
    fn select(&self, matchers: &[Matcher], min_time: i64, max_time: i64) -> Selected;

    /// [`Storage::select`] told how the engine will read the samples; a storage that can
    /// fail says why.
    fn select_hinted(
        &self,
        matchers: &[Matcher],
        min_time: i64,
        max_time: i64,
        _hints: Hints,
    ) -> Result<Selected, Error> {
        Ok(self.select(matchers, min_time, max_time))
    }
}

/// Several storages read as one (the TSDB and `log_matches`): selections are
/// concatenated, in label order.
pub struct Union<'a>(pub &'a [&'a dyn Storage]);

impl Storage for Union<'_> {
    fn select(&self, matchers: &[Matcher], min_time: i64, max_time: i64) -> Selected {
        self.select_hinted(matchers, min_time, max_time, Hints::Range)
            .unwrap_or_default()
    }

    fn select_hinted(
        &self,
        matchers: &[Matcher],
        min_time: i64,
        max_time: i64,
        hints: Hints,
    ) -> Result<Selected, Error> {
        let mut all: Selected = Vec::new();
        for storage in self.0 {
            all.extend(storage.select_hinted(matchers, min_time, max_time, hints)?);
        }
        if self.0.len() > 1 {
            all.sort_by(|left, right| left.0.cmp(&right.0));
        }
        Ok(all)
    }
}

impl Storage for crate::tsdb::head::Head {
    fn select(&self, matchers: &[Matcher], min_time: i64, max_time: i64) -> Selected {
        crate::tsdb::head::Head::select(self, matchers, min_time, max_time)
    }
}

impl Storage for crate::tsdb::Tsdb {
    fn select(&self, matchers: &[Matcher], min_time: i64, max_time: i64) -> Selected {
        crate::tsdb::Tsdb::select(self, matchers, min_time, max_time)
    }
}

/// The matcher groups of a series selector such as `up{job="node"}` (the `match[]`
/// parameter of the series and label APIs); one group per `or` alternative.
pub fn selector_matchers(text: &str) -> Result<Vec<Vec<Matcher>>, Error> {
    depth::check(text)?;
    match promql_parser::parser::parse(text)
        .map_err(|message| Error::BadData(parse_error(text, &message)))?
    {
        promql_parser::parser::Expr::VectorSelector(selector) => eval::matchers(&selector),
        _ => Err(Error::BadData(format!("{text:?} is not a series selector"))),
    }
}

/// The matcher groups of every series selector in `expr` (one group per `or`
/// alternative of a selector), e.g. to know which storages it can read.
pub fn selector_matcher_groups(expr: &Expr) -> Vec<Vec<Matcher>> {
    use promql_parser::parser::Expr as Node;
    struct Selectors(Vec<Vec<Matcher>>);
    impl promql_parser::util::ExprVisitor for Selectors {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, node: &Node) -> Result<bool, Self::Error> {
            let selector = match node {
                Node::VectorSelector(selector) => selector,
                Node::MatrixSelector(matrix) => &matrix.vs,
                _ => return Ok(true),
            };
            self.0.extend(eval::matchers(selector).unwrap_or_default());
            Ok(true)
        }
    }
    let mut selectors = Selectors(Vec::new());
    let _ = promql_parser::util::walk_expr(&mut selectors, &expr.ast);
    selectors.0
}

/// Parses a Prometheus duration (`5m`, `1h30m`, `250ms`) or a number of seconds, to
/// milliseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds.abs() < 9e15)
            .then(|| (seconds * 1000.0).round() as i64);
    }
    let mut total = 0i64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let number: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: i64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(unit)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// Engine settings; the defaults are Prometheus' (`--query.lookback-delta=5m`,
/// `--query.timeout=2m`, `--query.max-samples=50000000`, subquery step 1m).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub lookback_delta: Duration,
    pub timeout: Duration,
    pub max_samples: usize,
    /// The step of a subquery written without one (`[5m:]`).
    pub default_subquery_step: Duration,
    /// Prometheus 3's `delayed-name-removal`: functions and operators mark `__name__`
    /// for removal and it is dropped only from the final result, so
    /// `sum by (__name__) (rate(x[5m]))` still groups by name.
    pub delayed_name_removal: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            default_subquery_step: Duration::from_secs(60),
            delayed_name_removal: true,
        }
    }
}

/// A query failure, named by Prometheus' API `errorType`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The expression does not parse or is ill-typed (`bad_data`).
    #[error("{0}")]
    BadData(String),
    /// Evaluation failed (`execution`), e.g. duplicate series after a `by`.
    #[error("{0}")]
    Execution(String),
    /// The query ran past its timeout (`timeout`).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// More samples than `max_samples` would be held (`execution`).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// Whoever asked went away (`canceled`, Prometheus' word for a cancelled context).
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
}

impl Error {
    /// The Prometheus API's `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::BadData(_) => "bad_data",
            Error::Execution(_) | Error::TooManySamples(_) => "execution",
            Error::Timeout(_) => "timeout",
            Error::Canceled(_) => "canceled",
        }
    }
}

/// One series of a result: labels and `(time ms, value)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub timestamp: i64,
    pub value: f64,
}

/// A query result.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    Scalar { timestamp: i64, value: f64 },
    String { timestamp: i64, value: String },
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

/// Warnings and infos found while evaluating, in Prometheus' wording
/// (`PromQL warning: … (line:column)`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    fn warn(&mut self, text: String) {
        if !self.warnings.contains(&text) {
            self.warnings.push(text);
        }
    }

    fn info(&mut self, text: String) {
        if !self.infos.contains(&text) {
            self.infos.push(text);
        }
    }
}

/// A parsed expression with the text it came from (annotations point into it).
#[derive(Debug, Clone)]
pub struct Expr {
    pub ast: promql_parser::parser::Expr,
    pub text: String,
}

/// Parses `text`, rejecting what the engine does not evaluate (native-histogram-only
/// and experimental constructs) with a clear `bad_data` error.
pub fn parse(text: &str) -> Result<Expr, Error> {
    depth::check(text)?;
    let ast = promql_parser::parser::parse(text)
        .map_err(|message| Error::BadData(parse_error(text, &message)))?;
    eval::check_supported(&ast)?;
    Ok(Expr {
        ast,
        text: text.to_string(),
    })
}

/// Prometheus' parse errors read `1:5: parse error: …`; the parser crate gives no
/// position, so one is found: the end of the input for what is left open, else the first
/// character after the longest prefix that parses (where `foo bar` goes wrong: `bar`).
fn parse_error(text: &str, message: &str) -> String {
    let end = || position(text, text.trim_end().len());
    let open_ended = message.contains("unclosed") || message.contains("end of input");
    let (line, column) = if open_ended {
        end()
    } else if let Some(offset) = message
        .split('"')
        .nth(1)
        .or_else(|| {
            message
                .rsplit(": ")
                .next()
                .filter(|_| message.contains(": "))
        })
        .filter(|token| !token.is_empty())
        .and_then(|token| text.find(token))
    {
        position(text, offset)
    } else if let Some(offset) = longest_parsing_prefix(text) {
        let rest = text[offset..].trim();
        // a dangling operator: the input ended too early
        if rest.chars().all(|c| "+-*/%^=!<>~,(".contains(c))
            || rest.ends_with(['+', '-', '*', '/', '%', '^', '(', ','])
        {
            end()
        } else {
            let skipped = text[offset..].len() - text[offset..].trim_start().len();
            position(text, offset + skipped)
        }
    } else {
        (1, 1)
    };
    let message = if message == "invalid promql query" {
        let line_text = text.lines().nth(line - 1).unwrap_or("");
        let at: String = line_text
            .chars()
            .skip(column - 1)
            .take_while(|c| !c.is_whitespace())
            .collect();
        if at.is_empty() {
            "unexpected end of input".to_string()
        } else {
            format!("unexpected {at:?}")
        }
    } else {
        message.to_string()
    };
    format!("{line}:{column}: parse error: {message}")
}

/// Byte length of the longest prefix (at a character boundary, not ending in space)
/// that parses on its own, if one is found within a small budget: each attempt is a whole
/// parse (regex matchers compile again each time), so the search stops after 50 ms.
fn longest_parsing_prefix(text: &str) -> Option<usize> {
    if text.len() > 4096 {
        return None;
    }
    let deadline = Instant::now() + Duration::from_millis(50);
    text.char_indices()
        .map(|(offset, c)| offset + c.len_utf8())
        .filter(|&offset| !text[..offset].ends_with(char::is_whitespace))
        .rev()
        .take_while(|_| Instant::now() < deadline)
        .find(|&offset| promql_parser::parser::parse(&text[..offset]).is_ok())
}

/// The 1-based line and column of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.chars().count(), |newline| {
            before[newline + 1..].chars().count()
        })
        + 1;
    (line, column)
}

/// Evaluates expressions against a [`Storage`].
pub struct Engine {
    pub options: EngineOptions,
    /// Cancelled when whoever asked went away: evaluation stops at its next deadline
    /// check.
    cancel: tokio_util::sync::CancellationToken,
}

impl Engine {
    pub fn new(options: EngineOptions) -> Engine {
        Engine {
            options,
            cancel: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// This engine, stopping its evaluations once `cancel` is cancelled.
    pub fn cancelled_by(self, cancel: &tokio_util::sync::CancellationToken) -> Engine {
        Engine {
            cancel: cancel.clone(),
            ..self
        }
    }

    /// Evaluates `expr` at `time` (ms).
    pub fn instant(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        time: i64,
    ) -> Result<(QueryValue, Annotations), Error> {
        let mut evaluator = evaluator::Evaluator::new(
            storage,
            &self.options,
            &expr.text,
            time,
            time,
            1,
            deadline(&self.options),
        )
        .cancelled_by(&self.cancel);
        let value = evaluator.evaluate(&expr.ast)?;
        let result = evaluator.finish_instant(value, time)?;
        Ok((result, evaluator.annotations))
    }

    /// Evaluates `expr` at every `step` from `start` to `end` (ms), Prometheus'
    /// `query_range`: the result is always a matrix.
    pub fn range(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<(Vec<Series>, Annotations), Error> {
        if step <= 0 {
            return Err(Error::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(Error::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        let mut evaluator = evaluator::Evaluator::new(
            storage,
            &self.options,
            &expr.text,
            start,
            end,
            step,
            deadline(&self.options),
        )
        .cancelled_by(&self.cancel);
        match eval::value_type(&expr.ast) {
            promql_parser::parser::value::ValueType::Vector
            | promql_parser::parser::value::ValueType::Scalar => {}
            other => {
                return Err(Error::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    eval::type_name(other)
                )));
            }
        }
        let value = evaluator.evaluate(&expr.ast)?;
        let series = evaluator.finish_range(value)?;
        Ok((series, evaluator.annotations))
    }
}

fn deadline(options: &EngineOptions) -> Instant {
    Instant::now() + options.timeout
}

/// Formats a float as Prometheus' API does (Go's `strconv.FormatFloat(f, 'f', -1, 64)`
/// for finite values; `NaN`, `+Inf`, `-Inf`).
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_selector_of_an_expression_is_found() {
        let expr =
            parse("rate(a_total[5m]) / on(service) log_matches{query=\"q\"} or sum(b) > bool 1")
                .expect("valid");
        let names: Vec<String> = selector_matcher_groups(&expr)
            .iter()
            .map(|group| {
                group
                    .iter()
                    .find(|matcher| matcher.name() == "__name__")
                    .map_or_else(String::new, |matcher| format!("{matcher:?}"))
            })
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names[1].contains("log_matches"), "{names:?}");
    }

    #[test]
    fn parse_errors_carry_a_position_when_the_parser_names_a_token() {
        let error = parse("sum(rate(x[5m])").expect_err("unbalanced");
        assert_eq!(error.error_type(), "bad_data");
        // Prometheus: "1:5: parse error: unclosed left parenthesis" for `sum(`
        assert_eq!(
            parse("sum(").expect_err("open").to_string(),
            "1:5: parse error: unclosed left parenthesis"
        );
        assert_eq!(
            parse("foo bar").expect_err("two names").to_string(),
            "1:5: parse error: unexpected \"bar\""
        );
        assert!(
            parse("1 +")
                .expect_err("dangling")
                .to_string()
                .starts_with("1:4: parse error")
        );
        assert!(
            parse("up[5x]")
                .expect_err("duration")
                .to_string()
                .starts_with("1:4: parse error")
        );
        assert_eq!(position("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn too_many_samples_and_a_timeout_are_errors_not_exhaustion() {
        let head = crate::tsdb::head::Head::new();
        let series = crate::tsdb::head::labels(&[("__name__", "x")]);
        for step in 0..1000 {
            head.append(&series, step * 15_000, step as f64)
                .expect("append");
        }
        let expr = parse("sum_over_time(x[1h])").expect("parse");
        let limited = Engine::new(EngineOptions {
            max_samples: 100,
            ..EngineOptions::default()
        });
        let error = limited
            .instant(&head, &expr, 15_000_000)
            .expect_err("too many samples");
        assert_eq!(error.error_type(), "execution");
        assert!(error.to_string().contains("too many samples"), "{error}");
        let hurried = Engine::new(EngineOptions {
            timeout: Duration::ZERO,
            ..EngineOptions::default()
        });
        let error = hurried
            .range(&head, &expr, 0, 15_000_000, 15_000)
            .expect_err("timeout");
        assert_eq!(error.error_type(), "timeout");
        let fine = Engine::new(EngineOptions::default());
        // every subquery step counts, and is refused before it is allocated
        let started = Instant::now();
        for text in [
            "max_over_time(vector(1)[10y:1s])",
            "max_over_time(max_over_time(x[1m])[10y:1s])",
            "sum_over_time(sum_over_time(x[5m:1s])[3y:1m])",
        ] {
            let error = fine
                .instant(&head, &parse(text).expect("parse"), 15_000_000)
                .expect_err(text);
            assert!(matches!(error, Error::TooManySamples(_)), "{text}: {error}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused up front"
        );
        let (value, _) = fine.instant(&head, &expr, 15_000_000).expect("evaluates");
        assert!(
            matches!(value, QueryValue::Vector(ref samples) if samples.len() == 1),
            "{value:?}"
        );
    }

    #[test]
    fn utf8_label_names_are_accepted_and_byte_escapes_refused() {
        let head = crate::tsdb::head::Head::new();
        head.append(
            &crate::tsdb::head::labels(&[("__name__", "x"), ("a", "1")]),
            0,
            1.0,
        )
        .expect("append");
        let engine = Engine::new(EngineOptions::default());
        let run = |query: &str| engine.instant(&head, &parse(query).expect("parse"), 0);
        let (value, _) =
            run(r#"label_replace(x, "café", "$1", "a", "(.*)")"#).expect("a UTF-8 name is fine");
        let QueryValue::Vector(samples) = value else {
            panic!("vector")
        };
        assert!(
            samples[0]
                .labels
                .iter()
                .any(|(name, value)| name == "café" && value == "1")
        );
        assert!(
            run(r#"label_replace(x, "\xff", "", "a", "(.*)")"#).is_err(),
            "not UTF-8 in Go"
        );
        assert!(run(r#"count_values("a\xc5z", x)"#).is_err());
    }

    #[test]
    fn the_deepest_accepted_expressions_evaluate_in_half_the_thread_stack_of_a_debug_build() {
        let depth = depth::MAX_DEPTH;
        let deepest = [
            vec!["x"; depth].join(" + "),
            vec!["1"; depth].join(" * "),
            format!("{}x{}", "(".repeat(depth - 1), ")".repeat(depth - 1)),
            format!("{}x{}", "abs(".repeat(depth - 1), ")".repeat(depth - 1)),
            format!("{}x", "-".repeat(depth - 1)),
            format!(
                "{}x{}",
                "max_over_time((".repeat((depth - 1) / 3),
                ")[1m:15s])".repeat((depth - 1) / 3)
            ),
        ];
        for text in deepest {
            let start = text[..12].to_string();
            std::thread::Builder::new()
                .stack_size(crate::THREAD_STACK_BYTES / 2)
                .spawn(move || {
                    let head = crate::tsdb::head::Head::new();
                    let series = crate::tsdb::head::labels(&[("__name__", "x")]);
                    head.append(&series, 0, 1.0).expect("append");
                    let expr = parse(&text).expect("at the limit: accepted");
                    let engine = Engine::new(EngineOptions::default());
                    engine.instant(&head, &expr, 60_000).expect("evaluates");
                    engine
                        .range(&head, &expr, 0, 60_000, 15_000)
                        .expect("evaluates as a range");
                    let _ = selector_matcher_groups(&expr);
                    drop(expr);
                    let past = format!("((({text})))");
                    assert!(parse(&past).is_err(), "deeper is refused");
                })
                .expect("thread")
                .join()
                .unwrap_or_else(|_| panic!("`{start}…` failed"));
        }
    }

    #[test]
    fn durations_read_as_prometheus_writes_them() {
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("60"), Some(60_000));
        assert_eq!(parse_duration("0.5"), Some(500));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn values_format_as_prometheus_does() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
