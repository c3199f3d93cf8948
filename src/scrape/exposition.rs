//! Prometheus' text exposition format 0.0.4 and OpenMetrics 1.0, parsed into samples.
//!
//! Hand-written on purpose (issue 5): the crates on offer mis-handle escapes and commas in
//! label values, and a scrape error must say where it is (line and column) so a target's
//! `lastError` points at the exact byte. One pass over the text, one line at a time,
//! without regexes; label values are unescaped only when they contain a backslash.
//!
//! What the two formats differ in, and what is followed:
//! - timestamps: integer milliseconds in the text format, (float) seconds in OpenMetrics;
//! - OpenMetrics must end with `# EOF` and nothing after it, has no blank lines, knows
//!   `# UNIT`, the types `gaugehistogram`, `info`, `stateset`, `unknown`, and exemplars
//!   (`… # {trace_id="…"} 1.0 [timestamp]`), which are checked and dropped;
//! - both accept Prometheus 3's quoted UTF-8 names: `{"my.metric", "label.name"="v"}`.
//!
//! Values follow Go's `strconv.ParseFloat` as Prometheus uses it (`NaN`, `+Inf`, `-Inf`,
//! exponents); hex floats are not accepted.

use std::collections::HashMap;

/// Which format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header names (the text format when it names neither,
    /// as Prometheus does).
    pub fn from_content_type(content_type: &str) -> Format {
        if content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/openmetrics-text")
        {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// The `# TYPE` of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// `unknown` (OpenMetrics), `untyped` (text) or no `# TYPE` at all.
    Unknown,
}

impl MetricType {
    /// The type as Prometheus' metadata API names it.
    pub fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    fn parse(text: &str, format: Format) -> Option<MetricType> {
        Some(match (text, format) {
            ("counter", _) => MetricType::Counter,
            ("gauge", _) => MetricType::Gauge,
            ("histogram", _) => MetricType::Histogram,
            ("summary", _) => MetricType::Summary,
            ("untyped", Format::Text) | ("unknown", Format::OpenMetrics) => MetricType::Unknown,
            ("gaugehistogram", Format::OpenMetrics) => MetricType::GaugeHistogram,
            ("info", Format::OpenMetrics) => MetricType::Info,
            ("stateset", Format::OpenMetrics) => MetricType::StateSet,
            _ => return None,
        })
    }

    /// The sample-name suffixes a family of this type may use.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created", ""],
            MetricType::Histogram => &["_bucket", "_sum", "_count", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            MetricType::Summary => &["_sum", "_count", "_created", ""],
            MetricType::Info => &["_info"],
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
        }
    }
}

/// One sample of a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order of the exposition, without `__name__`.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch, when the exposition gave one.
    pub timestamp_ms: Option<i64>,
    /// The type of the family the sample belongs to.
    pub metric_type: MetricType,
    /// A `_created` sample of a counter, histogram or summary (OpenMetrics' creation
    /// time, which a scraper may drop).
    pub created: bool,
}

/// Where and why an exposition is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

/// A metric family's `# TYPE`, `# HELP` and `# UNIT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

/// Parses a whole exposition.
pub fn parse(text: &str, format: Format) -> Result<Vec<Sample>, ParseError> {
    parse_with_metadata(text, format).map(|(samples, _)| samples)
}

/// Parses a whole exposition, keeping each family's metadata too.
pub fn parse_with_metadata(
    text: &str,
    format: Format,
) -> Result<(Vec<Sample>, HashMap<String, Metadata>), ParseError> {
    let mut metadata: HashMap<String, Metadata> = HashMap::new();
    let mut samples = Vec::new();
    let mut types: HashMap<String, MetricType> = HashMap::new();
    let mut family: Option<(String, MetricType)> = None;
    let mut saw_eof = false;
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((index, raw)) = lines.next() {
        let number = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let fail = |column: usize, message: String| ParseError {
            line: number,
            column: line[..column.min(line.len())].chars().count() + 1,
            message,
        };
        if saw_eof {
            // only the final newline may follow `# EOF`
            if line.is_empty() && lines.peek().is_none() {
                break;
            }
            return Err(fail(0, "content after `# EOF`".into()));
        }
        if line.is_empty() {
            if format == Format::OpenMetrics && lines.peek().is_some() {
                return Err(fail(0, "blank lines are not allowed in OpenMetrics".into()));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut cursor = Cursor::new(line, 1);
            if format == Format::OpenMetrics && comment == " EOF" {
                saw_eof = true;
                continue;
            }
            cursor.skip_blanks();
            let keyword = cursor.token();
            if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
                if format == Format::OpenMetrics {
                    return Err(fail(
                        1,
                        "OpenMetrics allows only `# HELP`, `# TYPE`, `# UNIT` and `# EOF`".into(),
                    ));
                }
                continue; // a plain comment
            }
            if format == Format::Text && keyword == "UNIT" {
                continue; // not a keyword of the text format: a comment
            }
            if !cursor.skip_blanks() {
                return Err(fail(
                    cursor.position,
                    format!("`# {keyword}` needs a metric name"),
                ));
            }
            let name = cursor
                .metric_name(format)
                .map_err(|(at, message)| fail(at, message))?;
            if keyword != "TYPE" {
                cursor.skip_blanks();
                let text = cursor.rest().trim_end();
                let entry = metadata.entry(name).or_insert_with(|| Metadata {
                    metric_type: MetricType::Unknown,
                    help: String::new(),
                    unit: String::new(),
                });
                if keyword == "HELP" {
                    entry.help = unescape_help(text);
                } else {
                    entry.unit = text.to_string();
                }
                continue;
            }
            cursor.skip_blanks();
            let type_at = cursor.position;
            let type_text = cursor.rest().trim_end();
            let metric_type = MetricType::parse(type_text, format)
                .ok_or_else(|| fail(type_at, format!("unknown metric type `{type_text}`")))?;
            metadata
                .entry(name.clone())
                .or_insert_with(|| Metadata {
                    metric_type,
                    help: String::new(),
                    unit: String::new(),
                })
                .metric_type = metric_type;
            if types.insert(name.clone(), metric_type).is_some() {
                return Err(fail(2, format!("a second `# TYPE` line for `{name}`")));
            }
            family = Some((name, metric_type));
            continue;
        }
        let mut sample = sample_line(line, format).map_err(|(at, message)| fail(at, message))?;
        let (metric_type, created) = match &family {
            Some((family_name, metric_type)) => {
                let suffix = sample.name.strip_prefix(family_name.as_str());
                match suffix {
                    Some(suffix) if metric_type.suffixes().contains(&suffix) => {
                        (*metric_type, suffix == "_created")
                    }
                    _ => (MetricType::Unknown, false),
                }
            }
            None => (MetricType::Unknown, false),
        };
        sample.metric_type = metric_type;
        sample.created = created;
        samples.push(sample);
    }
    if format == Format::OpenMetrics && !saw_eof {
        let last = text.trim_end_matches('\n').split('\n').count().max(1);
        return Err(ParseError {
            line: last,
            column: 1,
            message: "an OpenMetrics exposition must end with `# EOF`".into(),
        });
    }
    Ok((samples, metadata))
}

/// A `# HELP` text with its escapes (`\\`, `\n`, and `\"` in OpenMetrics) decoded.
fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

type LineError = (usize, String);

/// `name{labels} value [timestamp] [# exemplar]`.
fn sample_line(line: &str, format: Format) -> Result<Sample, LineError> {
    let mut cursor = Cursor::new(line, 0);
    let mut labels = Vec::new();
    let name = if cursor.peek() == Some('{') {
        // Prometheus 3: `{"quoted.name", label="value"}`
        cursor.advance(1);
        cursor.skip_blanks();
        let name = cursor.quoted()?;
        cursor.skip_blanks();
        match cursor.peek() {
            Some(',') => {
                cursor.advance(1);
                cursor.labels(&mut labels)?;
            }
            Some('}') => cursor.advance(1),
            _ => {
                return Err((
                    cursor.position,
                    "expected `,` or `}` after the metric name".into(),
                ));
            }
        }
        name
    } else {
        let name = cursor.metric_name(format)?;
        if cursor.peek() == Some('{') {
            cursor.advance(1);
            cursor.labels(&mut labels)?;
        }
        name
    };
    if !cursor.skip_blanks() {
        return Err((
            cursor.position,
            "expected a space and the sample's value".into(),
        ));
    }
    let value_at = cursor.position;
    let value_text = cursor.token();
    let value = parse_float(value_text)
        .ok_or_else(|| (value_at, format!("`{value_text}` is not a number")))?;
    let mut timestamp_ms = None;
    let had_blank = cursor.skip_blanks();
    if had_blank && !cursor.at_end() && cursor.peek() != Some('#') {
        let at = cursor.position;
        let text = cursor.token();
        timestamp_ms = Some(match format {
            Format::Text => text
                .parse::<i64>()
                .map_err(|_| (at, format!("`{text}` is not a timestamp in milliseconds")))?,
            Format::OpenMetrics => {
                let seconds = parse_float(text)
                    .filter(|seconds| seconds.is_finite())
                    .ok_or_else(|| (at, format!("`{text}` is not a timestamp in seconds")))?;
                (seconds * 1000.0).round() as i64
            }
        });
        cursor.skip_blanks();
    }
    if cursor.peek() == Some('#') {
        if format == Format::Text {
            return Err((cursor.position, "unexpected `#` after the value".into()));
        }
        cursor.advance(1);
        exemplar(&mut cursor)?;
    }
    if !cursor.at_end() {
        return Err((cursor.position, format!("unexpected `{}`", cursor.rest())));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
        metric_type: MetricType::Unknown,
        created: false,
    })
}

/// ` {labels} value [timestamp]` after an exemplar's `#`: checked, then dropped.
fn exemplar(cursor: &mut Cursor<'_>) -> Result<(), LineError> {
    cursor.skip_blanks();
    if cursor.peek() != Some('{') {
        return Err((cursor.position, "an exemplar starts with `{`".into()));
    }
    cursor.advance(1);
    let mut labels = Vec::new();
    cursor.labels(&mut labels)?;
    if !cursor.skip_blanks() {
        return Err((cursor.position, "expected the exemplar's value".into()));
    }
    let at = cursor.position;
    let value = cursor.token();
    parse_float(value).ok_or_else(|| (at, format!("`{value}` is not a number")))?;
    if cursor.skip_blanks() && !cursor.at_end() {
        let at = cursor.position;
        let timestamp = cursor.token();
        parse_float(timestamp).ok_or_else(|| (at, format!("`{timestamp}` is not a timestamp")))?;
    }
    Ok(())
}

/// Go's `ParseFloat` as the formats use it: decimal numbers, `NaN`, `±Inf`.
pub fn parse_float(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let special = unsigned.eq_ignore_ascii_case("inf")
        || unsigned.eq_ignore_ascii_case("infinity")
        || unsigned.eq_ignore_ascii_case("nan");
    let plain = !unsigned.is_empty()
        && unsigned
            .bytes()
            .all(|byte| byte.is_ascii_digit() || matches!(byte, b'.' | b'e' | b'E' | b'+' | b'-'));
    if special || plain {
        text.parse::<f64>().ok()
    } else {
        None
    }
}

struct Cursor<'a> {
    line: &'a str,
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(line: &'a str, position: usize) -> Cursor<'a> {
        Cursor { line, position }
    }

    fn rest(&self) -> &'a str {
        &self.line[self.position..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.position >= self.line.len()
    }

    fn advance(&mut self, bytes: usize) {
        self.position += bytes;
    }

    /// Skips spaces and tabs; returns whether there were any.
    fn skip_blanks(&mut self) -> bool {
        let start = self.position;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.position += 1;
        }
        self.position > start
    }

    /// Everything up to the next blank.
    fn token(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        self.position += end;
        &rest[..end]
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`, or a quoted name.
    fn metric_name(&mut self, _format: Format) -> Result<String, LineError> {
        self.name(true, "metric")
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, or a quoted name.
    fn label_name(&mut self) -> Result<String, LineError> {
        self.name(false, "label")
    }

    /// A metric (`colons`) or label name, or a quoted one.
    fn name(&mut self, colons: bool, what: &str) -> Result<String, LineError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let rest = self.rest();
        let end = rest
            .char_indices()
            .find(|(at, char)| {
                !(char.is_ascii_alphabetic()
                    || *char == '_'
                    || (colons && *char == ':')
                    || (*at > 0 && char.is_ascii_digit()))
            })
            .map_or(rest.len(), |(at, _)| at);
        if end == 0 {
            return Err((
                self.position,
                match self.peek() {
                    Some(char) => format!("`{char}` cannot start a {what} name"),
                    None => format!("expected a {what} name"),
                },
            ));
        }
        self.position += end;
        Ok(rest[..end].to_string())
    }

    /// A `"…"` string with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Result<String, LineError> {
        let start = self.position;
        if self.peek() != Some('"') {
            return Err((start, "expected `\"`".into()));
        }
        self.position += 1;
        let body_start = self.position;
        let bytes = self.line.as_bytes();
        let mut escaped = false;
        while self.position < bytes.len() {
            match bytes[self.position] {
                b'\\' => {
                    escaped = true;
                    self.position += 2;
                }
                b'"' => {
                    let body = &self.line[body_start..self.position];
                    self.position += 1;
                    return if escaped {
                        unescape(body).map_err(|offset| {
                            (
                                body_start + offset,
                                "invalid escape: only `\\\\`, `\\\"` and `\\n` are allowed".into(),
                            )
                        })
                    } else {
                        Ok(body.to_string())
                    };
                }
                _ => self.position += 1,
            }
        }
        Err((start, "a quoted string is not closed".into()))
    }

    /// `name="value", …}` after the `{`; a trailing comma is allowed.
    fn labels(&mut self, labels: &mut Vec<(String, String)>) -> Result<(), LineError> {
        loop {
            self.skip_blanks();
            if self.peek() == Some('}') {
                self.position += 1;
                return Ok(());
            }
            let name_at = self.position;
            let name = self.label_name()?;
            self.skip_blanks();
            if self.peek() != Some('=') {
                return Err((self.position, format!("expected `=` after label `{name}`")));
            }
            self.position += 1;
            self.skip_blanks();
            let value = self.quoted()?;
            if labels.iter().any(|(existing, _)| *existing == name) {
                return Err((name_at, format!("label `{name}` appears twice")));
            }
            labels.push((name, value));
            self.skip_blanks();
            match self.peek() {
                Some(',') => self.position += 1,
                Some('}') => {
                    self.position += 1;
                    return Ok(());
                }
                _ => return Err((self.position, "expected `,` or `}` after a label".into())),
            }
        }
    }
}

/// Unescapes a quoted string's body; the error is the byte offset of a bad escape.
fn unescape(body: &str) -> Result<String, usize> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((at, char)) = chars.next() {
        if char != '\\' {
            out.push(char);
            continue;
        }
        match chars.next() {
            Some((_, '\\')) => out.push('\\'),
            Some((_, '"')) => out.push('"'),
            Some((_, 'n')) => out.push('\n'),
            _ => return Err(at),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata/exposition")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    /// Lines that are samples (neither comments nor blank), counted independently.
    fn sample_lines(text: &str) -> usize {
        text.lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .count()
    }

    #[test]
    fn real_expositions_parse_completely() {
        for (name, format) in [
            ("node_exporter_1.5.0.prom.txt", Format::Text),
            ("alltypes.237mfs.prom.txt", Format::Text),
            ("alltypes.5mfs.om.txt", Format::OpenMetrics),
            ("1histogram.om.txt", Format::OpenMetrics),
        ] {
            let text = testdata(name);
            let samples = parse(&text, format).unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(samples.len(), sample_lines(&text), "{name}");
        }
    }

    #[test]
    fn a_node_exporter_scrape_keeps_types_labels_and_special_values() {
        let samples =
            parse(&testdata("node_exporter_1.5.0.prom.txt"), Format::Text).expect("parses");
        let find = |name: &str| {
            samples
                .iter()
                .find(|sample| sample.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        assert_eq!(
            find("go_gc_duration_seconds_count").metric_type,
            MetricType::Summary
        );
        assert_eq!(find("go_goroutines").metric_type, MetricType::Gauge);
        let all_types = parse(&testdata("alltypes.237mfs.prom.txt"), Format::Text).expect("parses");
        let bucket = all_types
            .iter()
            .find(|sample| sample.name.ends_with("_bucket"))
            .expect("a histogram");
        assert_eq!(bucket.metric_type, MetricType::Histogram);
        assert!(bucket.labels.iter().any(|(name, _)| name == "le"));
    }

    #[test]
    fn open_metrics_exemplars_timestamps_and_created_series() {
        let samples =
            parse(&testdata("alltypes.5mfs.om.txt"), Format::OpenMetrics).expect("parses");
        let created = samples
            .iter()
            .find(|sample| sample.name == "promhttp_metric_handler_errors_created")
            .expect("created");
        assert!(created.created);
        assert_eq!(created.metric_type, MetricType::Counter);
        assert_eq!(created.value, 1.726839813016397e9);
        let with_exemplar = samples
            .iter()
            .find(|sample| {
                sample.name == "rpc_durations_histogram_seconds_bucket"
                    && sample.labels == [("le".to_string(), "-0.0002899999999999998".to_string())]
            })
            .expect("bucket with an exemplar");
        assert_eq!(
            (with_exemplar.value, with_exemplar.timestamp_ms),
            (3.0, None)
        );
        let timed = parse(
            "# TYPE a gauge\na 1 1700000000.5\n# EOF\n",
            Format::OpenMetrics,
        )
        .expect("parses");
        assert_eq!(timed[0].timestamp_ms, Some(1_700_000_000_500));
    }

    #[test]
    fn escapes_commas_braces_and_quoted_names_in_label_values() {
        let text = concat!(
            "# TYPE http_requests_total counter\n",
            "http_requests_total{path=\"/a,b\",msg=\"say \\\"hi\\\"\\n\",dir=\"C:\\\\x\",brace=\"}{\",} 12 1700000000000\n",
            "{\"my.metric\", \"label.name\"=\"v\"} -Inf\n",
            "nan_metric NaN\n",
            "\tspaced_metric\t 3e-2\n",
        );
        let samples = parse(text, Format::Text);
        // a leading tab is not a metric name
        let error = samples.expect_err("tab");
        assert_eq!((error.line, error.column), (5, 1), "{error}");
        let samples = parse(
            text.trim_end().rsplit_once('\n').expect("lines").0,
            Format::Text,
        )
        .expect("parses");
        assert_eq!(
            samples[0].labels,
            [
                ("path".to_string(), "/a,b".to_string()),
                ("msg".to_string(), "say \"hi\"\n".to_string()),
                ("dir".to_string(), "C:\\x".to_string()),
                ("brace".to_string(), "}{".to_string()),
            ]
        );
        assert_eq!(samples[0].value, 12.0);
        assert_eq!(samples[0].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(samples[0].metric_type, MetricType::Counter);
        assert_eq!(samples[1].name, "my.metric");
        assert_eq!(
            samples[1].labels,
            [("label.name".to_string(), "v".to_string())]
        );
        assert_eq!(samples[1].value, f64::NEG_INFINITY);
        assert!(samples[2].value.is_nan());
    }

    #[test]
    fn malformed_lines_say_where_and_what() {
        let cases: [(&str, Format, (usize, usize), &str); 11] = [
            ("a{b=\"c\" 1\n", Format::Text, (1, 9), "expected `,` or `}`"),
            ("a{b=c} 1\n", Format::Text, (1, 5), "expected `\"`"),
            (
                "a{b=\"c\",b=\"d\"} 1\n",
                Format::Text,
                (1, 9),
                "appears twice",
            ),
            ("a{b=\"\\t\"} 1\n", Format::Text, (1, 6), "invalid escape"),
            ("ok 1\na 1x\n", Format::Text, (2, 3), "`1x` is not a number"),
            (
                "a 1 12.5\n",
                Format::Text,
                (1, 5),
                "not a timestamp in milliseconds",
            ),
            (
                "# TYPE a gauge\n# TYPE a counter\n",
                Format::Text,
                (2, 3),
                "second `# TYPE`",
            ),
            (
                "# TYPE a histogramm\n",
                Format::Text,
                (1, 10),
                "unknown metric type",
            ),
            (
                "a 1\n",
                Format::OpenMetrics,
                (1, 1),
                "must end with `# EOF`",
            ),
            (
                "a 1\n# EOF\nb 2\n",
                Format::OpenMetrics,
                (3, 1),
                "after `# EOF`",
            ),
            ("a{b=\"c} 1\n", Format::Text, (1, 5), "not closed"),
        ];
        for (text, format, (line, column), expected) in cases {
            let error = parse(text, format).expect_err(text);
            assert!(error.message.contains(expected), "{text:?}: {error}");
            assert_eq!(
                (error.line, error.column),
                (line, column),
                "{text:?}: {error}"
            );
        }
    }

    #[test]
    fn content_types_choose_the_format() {
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type("text/plain; version=0.0.4"),
            Format::Text
        );
        assert_eq!(Format::from_content_type(""), Format::Text);
    }
}
