//! Alert templates in Prometheus' syntax (a Go `text/template` subset): `{{ $labels.NAME }}`,
//! `{{ $value }}`, `{{ $count }}`, `{{ $window }}`, `{{ $threshold }}`, `{{ $rule }}`,
//! `{{ $resolved }}` (true in a resolve message, whose `$value` is the last value while
//! firing) and `{{ $status }}` (`firing` or `resolved`, Alertmanager's `.Status`),
//! and, in spike rules, `{{ $reference }}` (the value at the reference time) and
//! `{{ $spike_ratio }}` (the value over it; +Inf when only now has anything),
//! `{{ if PIPELINE }}…{{ else }}…{{ end }}` (Go's truth: false, 0 and "" are false),
//! pipelines (`{{ $value | humanize }}`), and Prometheus' functions `humanize`,
//! `humanize1024`, `humanizeDuration`, `humanizePercentage`, `printf`, `toUpper`,
//! `toLower`, `title`; `{{-`/`-}}` trim whitespace.
//!
//! A notifier's `title_template` and `body_template` ([`Template::parse_notifier`]) also
//! see the whole message: `{{ $severity }}`, `{{ $alerts }}` (how many alerts it carries),
//! `{{ $samples }}` and `{{ $context }}` (one line each), `{{ $link }}` (the UI search or
//! graph) and `{{ $runbook_url }}`.
//!
//! Hand-written: the Go-template crates on crates.io are unmaintained (gtmpl: last release
//! 2021, `printf` unfinished) and know nothing of Prometheus' functions. Templates are
//! parsed when a rule is loaded, so `lookout check` reports an unknown variable, function
//! or label at its column instead of an alert rendering `<no value>` at 3 a.m.
//!
//! This file parses and renders; the functions and the values they take are in
//! `functions`. A leaf (it imports nothing of Lookout) shared by rules (`summary`,
//! `description`, `context`) and notifiers (`title_template`, `body_template`).

use std::collections::BTreeMap;

mod functions;

pub use functions::humanize_unit;
use functions::{FUNCTIONS, Function, Val, call};

/// A parse error at a character column (1-based) of the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct TemplateError {
    pub column: usize,
    pub message: String,
}

/// What a template can refer to.
#[derive(Debug, Clone, Default)]
pub struct TemplateData {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub count: u64,
    pub window: String,
    pub threshold: String,
    pub rule: String,
    /// Rendering a resolve message: `value` and `count` are the last seen while firing.
    pub resolved: bool,
    /// A spike rule's value at its reference time (`$reference`; `None`: nothing then).
    pub reference: Option<f64>,
    /// The rest of the message, for notifier templates.
    pub message: MessageData,
}

/// What notifier templates see beyond a rule's templates: the whole message.
#[derive(Debug, Clone, Default)]
pub struct MessageData {
    pub severity: String,
    /// How many alerts the message carries.
    pub alerts: u64,
    pub samples: Vec<String>,
    pub context: Vec<String>,
    pub link: String,
    pub runbook_url: String,
}

#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Action(Vec<Command>),
    /// `{{ if PIPELINE }}`: what follows, up to its `Else` or `End`, renders when the
    /// pipeline is true.
    If(Vec<Command>),
    Else,
    End,
}

/// `function arguments…`, or a lone operand (first command of a pipeline only).
#[derive(Debug, Clone)]
struct Command {
    function: Option<Function>,
    arguments: Vec<Operand>,
}

#[derive(Debug, Clone)]
enum Operand {
    Labels(Option<String>),
    Value,
    Count,
    Window,
    Threshold,
    Rule,
    Resolved,
    Status,
    Reference,
    SpikeRatio,
    Severity,
    Alerts,
    Samples,
    Context,
    Link,
    RunbookUrl,
    Text(String),
    Number(f64),
}

const VARIABLES: &str = "$labels, $value, $count, $window, $threshold, $rule, $resolved, $status, $reference and $spike_ratio (spike rules)";
const NOTIFIER_VARIABLES: &str =
    "$severity, $alerts, $samples, $context, $link, $runbook_url in notifier templates";

/// `if`, `else` or `end` when the action `chars[start..end]` is one, with where an `if`'s
/// pipeline starts.
fn keyword(chars: &[char], start: usize, end: usize) -> Option<(&'static str, usize)> {
    let mut at = start;
    while at < end && chars[at].is_whitespace() {
        at += 1;
    }
    let word_start = at;
    while at < end && chars[at].is_ascii_alphabetic() {
        at += 1;
    }
    let word: String = chars[word_start..at].iter().collect();
    let rest_is_blank = chars[at..end].iter().all(|char| char.is_whitespace());
    let followed_by_space = at < end && chars[at].is_whitespace();
    match word.as_str() {
        "if" if followed_by_space => Some(("if", at)),
        "else" if rest_is_blank => Some(("else", at)),
        "end" if rest_is_blank => Some(("end", at)),
        _ => None,
    }
}

/// The longest rendered template (bytes); the rest is cut and marked with `…`. Slack's
/// largest text field is 3 000 characters, so nothing useful is lost, and a template
/// cannot make a notification of megabytes.
const MAX_RENDERED_BYTES: usize = 16 * 1024;

impl Template {
    /// Parses `text`. With `labels`, `$labels.NAME` must name one of them (a log rule's
    /// `group_by`); without, any label is allowed.
    pub fn parse(text: &str, labels: Option<&[String]>) -> Result<Template, TemplateError> {
        Template::parse_scoped(text, labels, false)
    }

    /// Parses a notifier's `title_template` or `body_template`: any label, and the
    /// message's variables too (`$severity`, `$alerts`, `$samples`, `$context`, `$link`,
    /// `$runbook_url`).
    pub fn parse_notifier(text: &str) -> Result<Template, TemplateError> {
        Template::parse_scoped(text, None, true)
    }

    fn parse_scoped(
        text: &str,
        labels: Option<&[String]>,
        notifier: bool,
    ) -> Result<Template, TemplateError> {
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut position = 0;
        // the `{{ if }}`s not ended yet: where each opened, and whether it had its `else`
        let mut open_ifs: Vec<(usize, bool)> = Vec::new();
        while position < chars.len() {
            if chars[position] == '{' && chars.get(position + 1) == Some(&'{') {
                let open = position;
                let mut start = position + 2;
                if chars.get(start) == Some(&'-')
                    && chars.get(start + 1).is_some_and(|c| c.is_whitespace())
                {
                    literal.truncate(literal.trim_end().len());
                    start += 1;
                }
                let close = (start..chars.len().saturating_sub(1))
                    .find(|at| chars[*at] == '}' && chars[at + 1] == '}')
                    .ok_or_else(|| TemplateError {
                        column: open + 1,
                        message: "`{{` without its closing `}}`".into(),
                    })?;
                let (mut end, mut trim_after) = (close, false);
                if close > start
                    && chars[close - 1] == '-'
                    && chars
                        .get(close.wrapping_sub(2))
                        .is_some_and(|c| c.is_whitespace())
                {
                    end = close - 1;
                    trim_after = true;
                }
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                let unopened = |what: &str| TemplateError {
                    column: open + 1,
                    message: format!("`{{{{ {what} }}}}` without its `{{{{ if … }}}}`"),
                };
                match keyword(&chars, start, end) {
                    Some(("if", pipeline)) => {
                        parts.push(Part::If(parse_pipeline(
                            &chars, pipeline, end, labels, notifier,
                        )?));
                        open_ifs.push((open, false));
                    }
                    Some(("else", _)) => match open_ifs.last_mut() {
                        Some((_, seen_else)) if !*seen_else => {
                            *seen_else = true;
                            parts.push(Part::Else);
                        }
                        Some(_) => {
                            return Err(TemplateError {
                                column: open + 1,
                                message: "a second `{{ else }}` for one `{{ if … }}`".into(),
                            });
                        }
                        None => return Err(unopened("else")),
                    },
                    Some(_) => {
                        open_ifs.pop().ok_or_else(|| unopened("end"))?;
                        parts.push(Part::End);
                    }
                    None => parts.push(Part::Action(parse_pipeline(
                        &chars, start, end, labels, notifier,
                    )?)),
                }
                position = close + 2;
                if trim_after {
                    while position < chars.len() && chars[position].is_whitespace() {
                        position += 1;
                    }
                }
            } else {
                literal.push(chars[position]);
                position += 1;
            }
        }
        if let Some((open, _)) = open_ifs.last() {
            return Err(TemplateError {
                column: open + 1,
                message: "`{{ if … }}` without its `{{ end }}`".into(),
            });
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Whether the template refers to variable `$name` anywhere.
    pub fn mentions(&self, name: &str) -> bool {
        let operand_is = |operand: &Operand| match operand {
            Operand::Reference => name == "reference",
            Operand::SpikeRatio => name == "spike_ratio",
            _ => false,
        };
        self.parts.iter().any(|part| match part {
            Part::Action(commands) | Part::If(commands) => commands
                .iter()
                .any(|command| command.arguments.iter().any(operand_is)),
            _ => false,
        })
    }

    pub fn render(&self, data: &TemplateData) -> String {
        let mut out = String::new();
        // per open `if`: whether its enclosing text renders, and whether its branch does
        let mut branches: Vec<(bool, bool)> = Vec::new();
        let mut rendering = true;
        for part in &self.parts {
            match part {
                Part::If(commands) => {
                    let truth =
                        rendering && evaluate(commands, data).is_some_and(|value| value.truth());
                    branches.push((rendering, truth));
                    rendering = truth;
                }
                Part::Else => {
                    if let Some((outer, truth)) = branches.last() {
                        rendering = *outer && !*truth;
                    }
                }
                Part::End => {
                    rendering = branches.pop().is_none_or(|(outer, _)| outer);
                }
                _ if !rendering => {}
                Part::Text(text) => out.push_str(text),
                Part::Action(commands) => {
                    if let Some(result) = evaluate(commands, data) {
                        out.push_str(&result.text());
                    }
                }
            }
            if out.len() > MAX_RENDERED_BYTES {
                let mut cut = MAX_RENDERED_BYTES;
                while !out.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.truncate(cut);
                out.push('…');
                break;
            }
        }
        out
    }
}

/// `value ÷ reference` (a spike rule's `$spike_ratio`): +Inf when only the value is
/// there, 1 when neither is (unchanged).
pub fn spike_ratio(value: f64, reference: Option<f64>) -> f64 {
    match reference.unwrap_or(0.0) {
        reference if reference != 0.0 => value / reference,
        _ if value == 0.0 => 1.0,
        _ => f64::INFINITY,
    }
}

/// The value of a pipeline: each command's result is the last argument of the next.
fn evaluate(commands: &[Command], data: &TemplateData) -> Option<Val> {
    let mut result: Option<Val> = None;
    for command in commands {
        let mut arguments: Vec<Val> = command
            .arguments
            .iter()
            .map(|operand| operand_value(operand, data))
            .collect();
        if let Some(previous) = result.take() {
            arguments.push(previous);
        }
        result = Some(match command.function {
            None => arguments.pop().unwrap_or(Val::Text(String::new())),
            Some(function) => call(function, &arguments),
        });
    }
    result
}

fn operand_value(operand: &Operand, data: &TemplateData) -> Val {
    match operand {
        Operand::Labels(Some(name)) => {
            Val::Text(data.labels.get(name).cloned().unwrap_or_default())
        }
        Operand::Labels(None) => Val::Text(
            data.labels
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Operand::Value => Val::Number(data.value),
        Operand::Count => Val::Number(data.count as f64),
        Operand::Window => Val::Text(data.window.clone()),
        Operand::Threshold => Val::Text(data.threshold.clone()),
        Operand::Rule => Val::Text(data.rule.clone()),
        Operand::Resolved => Val::Bool(data.resolved),
        Operand::Status => Val::Text(if data.resolved { "resolved" } else { "firing" }.into()),
        Operand::Reference => Val::Number(data.reference.unwrap_or(0.0)),
        Operand::SpikeRatio => Val::Number(spike_ratio(data.value, data.reference)),
        Operand::Severity => Val::Text(data.message.severity.clone()),
        Operand::Alerts => Val::Number(data.message.alerts as f64),
        Operand::Samples => Val::Text(data.message.samples.join("\n")),
        Operand::Context => Val::Text(data.message.context.join("\n")),
        Operand::Link => Val::Text(data.message.link.clone()),
        Operand::RunbookUrl => Val::Text(data.message.runbook_url.clone()),
        Operand::Text(text) => Val::Text(text.clone()),
        Operand::Number(number) => Val::Number(*number),
    }
}

/// Parses the inside of one `{{ … }}` (characters `start..end`).
fn parse_pipeline(
    chars: &[char],
    start: usize,
    end: usize,
    labels: Option<&[String]>,
    notifier: bool,
) -> Result<Vec<Command>, TemplateError> {
    let error = |at: usize, message: String| TemplateError {
        column: at + 1,
        message,
    };
    let mut commands = Vec::new();
    let mut command = Command {
        function: None,
        arguments: Vec::new(),
    };
    let mut at = start;
    let mut expect_command_start = true;
    loop {
        while at < end && chars[at].is_whitespace() {
            at += 1;
        }
        if at >= end {
            break;
        }
        let token_start = at;
        match chars[at] {
            '|' => {
                if expect_command_start {
                    return Err(error(at, "`|` needs something before it".into()));
                }
                commands.push(std::mem::replace(
                    &mut command,
                    Command {
                        function: None,
                        arguments: Vec::new(),
                    },
                ));
                expect_command_start = true;
                at += 1;
                continue;
            }
            '"' => {
                let mut text = String::new();
                at += 1;
                loop {
                    match chars.get(at) {
                        Some('"') if at < end => break,
                        Some('\\') if at + 1 < end => {
                            text.push(match chars[at + 1] {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                            at += 2;
                        }
                        Some(other) if at < end => {
                            text.push(*other);
                            at += 1;
                        }
                        _ => return Err(error(token_start, "unterminated string".into())),
                    }
                }
                at += 1;
                command.arguments.push(Operand::Text(text));
            }
            '$' => {
                at += 1;
                let name_start = at;
                while at < end
                    && (chars[at].is_alphanumeric() || chars[at] == '_' || chars[at] == '.')
                {
                    at += 1;
                }
                let name: String = chars[name_start..at].iter().collect();
                let (variable, field) = match name.split_once('.') {
                    Some((variable, field)) => (variable.to_string(), Some(field.to_string())),
                    None => (name.clone(), None),
                };
                let operand = match (variable.as_str(), &field) {
                    ("labels", field) => {
                        if let (Some(field), Some(allowed)) = (field, labels)
                            && !allowed.iter().any(|label| label == field)
                        {
                            return Err(error(
                                token_start,
                                format!(
                                    "`$labels.{field}` is not a label of this rule (its labels come from `group_by`: {})",
                                    if allowed.is_empty() {
                                        "none".to_string()
                                    } else {
                                        allowed.join(", ")
                                    }
                                ),
                            ));
                        }
                        Operand::Labels(field.clone())
                    }
                    ("value", None) => Operand::Value,
                    ("count", None) => Operand::Count,
                    ("window", None) => Operand::Window,
                    ("threshold", None) => Operand::Threshold,
                    ("rule", None) => Operand::Rule,
                    ("resolved", None) => Operand::Resolved,
                    ("status", None) => Operand::Status,
                    ("reference", None) => Operand::Reference,
                    ("spike_ratio", None) => Operand::SpikeRatio,
                    ("severity", None) if notifier => Operand::Severity,
                    ("alerts", None) if notifier => Operand::Alerts,
                    ("samples", None) if notifier => Operand::Samples,
                    ("context", None) if notifier => Operand::Context,
                    ("link", None) if notifier => Operand::Link,
                    ("runbook_url", None) if notifier => Operand::RunbookUrl,
                    (
                        "severity" | "alerts" | "samples" | "context" | "link" | "runbook_url",
                        None,
                    ) => {
                        return Err(error(
                            token_start,
                            format!(
                                "`${name}` is only known to notifier templates (`title_template`, `body_template`)"
                            ),
                        ));
                    }
                    _ if notifier => {
                        return Err(error(
                            token_start,
                            format!(
                                "unknown variable `${name}`; known: {VARIABLES}, {NOTIFIER_VARIABLES}"
                            ),
                        ));
                    }
                    _ => {
                        return Err(error(
                            token_start,
                            format!("unknown variable `${name}`; known: {VARIABLES}"),
                        ));
                    }
                };
                command.arguments.push(operand);
            }
            character if character.is_ascii_digit() || character == '-' => {
                while at < end
                    && (chars[at].is_ascii_alphanumeric() || matches!(chars[at], '.' | '-' | '+'))
                {
                    at += 1;
                }
                let text: String = chars[token_start..at].iter().collect();
                let number = text
                    .parse::<f64>()
                    .map_err(|_| error(token_start, format!("`{text}` is not a number")))?;
                command.arguments.push(Operand::Number(number));
            }
            character if character.is_alphabetic() => {
                while at < end && (chars[at].is_alphanumeric() || chars[at] == '_') {
                    at += 1;
                }
                let name: String = chars[token_start..at].iter().collect();
                if !expect_command_start {
                    return Err(error(
                        token_start,
                        format!("`{name}` must start a command (after `{{{{` or `|`)"),
                    ));
                }
                let function = FUNCTIONS
                    .iter()
                    .find(|(known, _)| *known == name)
                    .map(|(_, function)| *function)
                    .ok_or_else(|| {
                        let known: Vec<&str> = FUNCTIONS.iter().map(|(name, _)| *name).collect();
                        error(
                            token_start,
                            format!("unknown function `{name}`; known: {}", known.join(", ")),
                        )
                    })?;
                command.function = Some(function);
            }
            other => return Err(error(at, format!("unexpected `{other}`"))),
        }
        expect_command_start = false;
    }
    if expect_command_start {
        return Err(error(
            start,
            if commands.is_empty() {
                "empty action `{{ }}`".into()
            } else {
                "`|` needs a command after it".into()
            },
        ));
    }
    commands.push(command);
    for (number, command) in commands.iter().enumerate() {
        if command.function.is_none() && (number > 0 || command.arguments.len() != 1) {
            return Err(error(
                start,
                "an action is one value, or a function with its arguments".into(),
            ));
        }
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::functions::MAX_PRECISION;
    use super::*;

    fn data() -> TemplateData {
        TemplateData {
            labels: BTreeMap::from([("service".to_string(), "checkout".to_string())]),
            value: 1234.5678,
            count: 31,
            window: "1m".into(),
            threshold: "> 20".into(),
            rule: "checkout_5xx".into(),
            resolved: false,
            reference: None,
            message: MessageData::default(),
        }
    }

    fn render(text: &str) -> String {
        Template::parse(text, Some(&["service".to_string()]))
            .expect("valid")
            .render(&data())
    }

    #[test]
    fn renders_like_prometheus() {
        let table = [
            (
                "{{ $count }} HTTP 500s in the last {{ $window }} on {{ $labels.service }}",
                "31 HTTP 500s in the last 1m on checkout",
            ),
            (
                "{{ $rule }}: {{ $value }} {{ $threshold }}",
                "checkout_5xx: 1234.5678 > 20",
            ),
            ("{{ $value | humanize }}", "1.235k"),
            ("{{ humanize 0.0125 }}", "12.5m"),
            ("{{ humanize1024 1048576 }}", "1Mi"),
            ("{{ humanizePercentage 0.1234 }}", "12.34%"),
            ("{{ humanizeDuration 93784 }}", "1d 2h 3m 4s"),
            ("{{ humanizeDuration 0.25 }}", "250ms"),
            ("{{ printf \"%.2f\" $value }}", "1234.57"),
            ("{{ $value | printf \"%.1f req/s\" }}", "1234.6 req/s"),
            (
                "{{ printf \"%d errors on %s\" $count $labels.service }}",
                "31 errors on checkout",
            ),
            ("{{ $labels.service | toUpper }}", "CHECKOUT"),
            ("{{ title \"payment backend\" }}", "Payment Backend"),
            ("a  {{- $count -}}  b", "a31b"),
            ("{{ $labels }}", "service=checkout"),
        ];
        for (template, expected) in table {
            assert_eq!(render(template), expected, "{template}");
        }
    }

    #[test]
    fn the_messages_variables_are_for_notifier_templates_only() {
        let text = "{{ $severity }} ×{{ $alerts }}: {{ $samples }} | {{ $context }} | {{ $link }} {{ $runbook_url }}";
        let error = Template::parse(text, None).expect_err("a rule's template");
        assert_eq!(error.column, 4, "{error}");
        assert!(
            error.message.contains("only known to notifier templates"),
            "{error}"
        );
        let data = TemplateData {
            message: MessageData {
                severity: "critical".into(),
                alerts: 2,
                samples: vec!["a".into(), "b".into()],
                context: vec!["p95 = 1s".into()],
                link: "http://ui".into(),
                runbook_url: "http://runbook".into(),
            },
            ..data()
        };
        assert_eq!(
            Template::parse_notifier(text).expect("valid").render(&data),
            "critical ×2: a\nb | p95 = 1s | http://ui http://runbook"
        );
        let unknown = Template::parse_notifier("{{ $nope }}").expect_err("unknown");
        assert!(unknown.message.contains("$runbook_url"), "{unknown}");
    }

    #[test]
    fn a_template_tells_a_resolve_from_a_firing() {
        let text = "{{ $status }}: p95 {{ if $resolved }}was {{ $value }} when it last fired{{ else }}is {{ $value }}{{ end }}{{ if $count }} ({{ $count }}){{ end }}";
        let template = Template::parse(text, None).expect("valid");
        assert_eq!(template.render(&data()), "firing: p95 is 1234.5678 (31)");
        let resolved = TemplateData {
            resolved: true,
            count: 0,
            ..data()
        };
        assert_eq!(
            template.render(&resolved),
            "resolved: p95 was 1234.5678 when it last fired"
        );
        // nested, with pipelines and Go's truth (0 and "" are false)
        let nested = Template::parse(
            "{{ if $resolved }}R{{ if $labels.service | toUpper }}[{{ $labels.service }}]{{ else }}-{{ end }}{{ else }}F{{ if 0 }}zero{{ end }}{{ end }}{{ $resolved }}",
            None,
        )
        .expect("valid");
        assert_eq!(nested.render(&resolved), "R[checkout]true");
        assert_eq!(nested.render(&data()), "Ffalse");
        let error = |text: &str| Template::parse(text, None).expect_err(text).to_string();
        assert_eq!(
            error("a {{ if $resolved }}b"),
            "column 3: `{{ if … }}` without its `{{ end }}`"
        );
        assert_eq!(
            error("a {{ end }}"),
            "column 3: `{{ end }}` without its `{{ if … }}`"
        );
        assert_eq!(
            error("{{ else }}"),
            "column 1: `{{ else }}` without its `{{ if … }}`"
        );
        assert!(error("{{ if 1 }}{{ else }}{{ else }}{{ end }}").contains("a second `{{ else }}`"));
        assert!(
            error("{{ if }}").contains("empty action"),
            "{}",
            error("{{ if }}")
        );
    }

    #[test]
    fn printf_precision_and_the_output_are_bounded() {
        // `%.65536f` made Rust's formatter panic, and the rule stopped evaluating
        let wide = render("{{ printf \"%.65536f\" $value }}");
        assert_eq!(wide.len(), "1234".len() + 1 + MAX_PRECISION, "{wide}");
        assert_eq!(
            render("{{ printf \"%.99999999999999999999999f\" 1 }}").len(),
            2 + MAX_PRECISION
        );
        assert_eq!(render("{{ printf \"%.f\" 2.5 }}"), "2");
        let long = Template::parse(&"{{ $labels }} x".repeat(50_000), None).expect("parses");
        let rendered = long.render(&data());
        assert!(
            rendered.len() <= MAX_RENDERED_BYTES + '…'.len_utf8(),
            "{}",
            rendered.len()
        );
        assert!(rendered.ends_with('…'));
    }

    #[test]
    fn mistakes_are_found_at_their_column() {
        let error = |text: &str| {
            Template::parse(text, Some(&["service".to_string()])).expect_err("invalid")
        };
        let unknown = error("count: {{ $cuont }}");
        assert_eq!(unknown.column, 11);
        assert!(
            unknown.message.contains("unknown variable `$cuont`"),
            "{unknown}"
        );
        let label = error("{{ $labels.host }}");
        assert!(
            label
                .message
                .contains("`$labels.host` is not a label of this rule"),
            "{label}"
        );
        assert!(label.message.contains("`group_by`: service"), "{label}");
        assert!(
            error("{{ humanise $value }}")
                .message
                .contains("unknown function `humanise`")
        );
        assert!(error("{{ $value ").message.contains("without its closing"));
        assert!(error("{{ }}").message.contains("empty action"));
        assert!(
            error("{{ $value | }}")
                .message
                .contains("needs a command after it")
        );
        // without a label list (metric rules), any label goes
        assert!(Template::parse("{{ $labels.job }}", None).is_ok());
    }
}
