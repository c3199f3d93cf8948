//! The values of a template's pipelines and Prometheus' template functions on them:
//! `humanize`, `humanize1024`, `humanizeDuration`, `humanizePercentage`, `printf`,
//! `toUpper`, `toLower`, `title` (after Prometheus' `template/template.go`), and the
//! unit-aware [`humanize_unit`] that message `context` lines use.

/// A function a pipeline can call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Function {
    Humanize,
    Humanize1024,
    HumanizeDuration,
    HumanizePercentage,
    Printf,
    ToUpper,
    ToLower,
    Title,
}

/// The functions by the name templates call them.
pub const FUNCTIONS: &[(&str, Function)] = &[
    ("humanize", Function::Humanize),
    ("humanize1024", Function::Humanize1024),
    ("humanizeDuration", Function::HumanizeDuration),
    ("humanizePercentage", Function::HumanizePercentage),
    ("printf", Function::Printf),
    ("toUpper", Function::ToUpper),
    ("toLower", Function::ToLower),
    ("title", Function::Title),
];

/// A value in a pipeline.
#[derive(Debug, Clone)]
pub enum Val {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl Val {
    pub fn text(&self) -> String {
        match self {
            Val::Text(text) => text.clone(),
            Val::Number(number) => format_number(*number),
            Val::Bool(bool) => bool.to_string(),
        }
    }
    pub fn number(&self) -> f64 {
        match self {
            Val::Number(number) => *number,
            Val::Text(text) => text.trim().parse().unwrap_or(f64::NAN),
            Val::Bool(bool) => f64::from(u8::from(*bool)),
        }
    }
    /// Go's truth: false, zero and the empty string are false.
    pub fn truth(&self) -> bool {
        match self {
            Val::Text(text) => !text.is_empty(),
            Val::Number(number) => *number != 0.0,
            Val::Bool(bool) => *bool,
        }
    }
}

/// The result of `function` on `arguments` (a missing argument is the empty text).
pub fn call(function: Function, arguments: &[Val]) -> Val {
    let first = arguments
        .first()
        .cloned()
        .unwrap_or(Val::Text(String::new()));
    match function {
        Function::Humanize => Val::Text(humanize(
            first.number(),
            1000.0,
            &["k", "M", "G", "T", "P", "E", "Z", "Y"],
            true,
        )),
        Function::Humanize1024 => Val::Text(humanize(
            first.number(),
            1024.0,
            &["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"],
            false,
        )),
        Function::HumanizePercentage => {
            Val::Text(format!("{}%", significant(first.number() * 100.0, 4)))
        }
        Function::HumanizeDuration => Val::Text(humanize_duration(first.number())),
        Function::ToUpper => Val::Text(first.text().to_uppercase()),
        Function::ToLower => Val::Text(first.text().to_lowercase()),
        Function::Title => Val::Text(
            first
                .text()
                .split(' ')
                .map(|word| {
                    let mut chars = word.chars();
                    chars.next().map_or_else(String::new, |first| {
                        first.to_uppercase().chain(chars).collect()
                    })
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Function::Printf => Val::Text(printf(&first.text(), &arguments[1.min(arguments.len())..])),
    }
}

/// A value with its unit as a person reads it: durations with `humanizeDuration`
/// (`230ms`, `1m 5s`), bytes with `humanize1024` (`1.5MiB`), the rest with `humanize` and
/// the unit after it (`12.5/s`, `3.2k`).
pub fn humanize_unit(value: f64, unit: &str) -> String {
    const SI: &[&str] = &["k", "M", "G", "T", "P", "E", "Z", "Y"];
    match unit {
        "s" => humanize_duration(value),
        "B" => format!(
            "{}B",
            humanize(
                value,
                1024.0,
                &["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"],
                false
            )
        ),
        "B/s" => format!(
            "{}B/s",
            humanize(
                value,
                1024.0,
                &["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"],
                false
            )
        ),
        "%" => format!("{}%", significant(value, 4)),
        "" => humanize(value, 1000.0, SI, true),
        unit if unit.starts_with('/') => format!("{}{unit}", humanize(value, 1000.0, SI, true)),
        unit => format!("{} {unit}", humanize(value, 1000.0, SI, true)),
    }
}

/// Prometheus' `humanize`: SI prefixes, 4 significant digits (`1.235k`, `12.5m`).
fn humanize(value: f64, base: f64, prefixes: &[&str], small: bool) -> String {
    if value == 0.0 || !value.is_finite() {
        return format_number(value);
    }
    let mut scaled = value;
    if value.abs() >= 1.0 || !small {
        let mut prefix = "";
        for next in prefixes {
            if scaled.abs() < base {
                break;
            }
            scaled /= base;
            prefix = next;
        }
        return format!("{}{prefix}", significant(scaled, 4));
    }
    let mut prefix = "";
    for next in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if scaled.abs() >= 1.0 {
            break;
        }
        scaled *= 1000.0;
        prefix = next;
    }
    format!("{}{prefix}", significant(scaled, 4))
}

/// Prometheus' `humanizeDuration`: `1d 2h 3m 4s`, or `123.4ms` below a second.
fn humanize_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return format_number(seconds);
    }
    if seconds.abs() < 1.0 {
        if seconds == 0.0 {
            return "0s".into();
        }
        let (scaled, unit) = if seconds.abs() >= 1e-3 {
            (seconds * 1e3, "ms")
        } else {
            (seconds * 1e6, "us")
        };
        return format!("{}{unit}", significant(scaled, 4));
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    let total = seconds.abs();
    let whole = total.trunc() as u64;
    let (days, hours, minutes) = (whole / 86_400, whole / 3600 % 24, whole / 60 % 60);
    let rest = total - (whole - whole % 60) as f64;
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 {
        parts.push(format!("{minutes}m"));
    }
    parts.push(format!("{}s", significant(rest, 4)));
    format!("{sign}{}", parts.join(" "))
}

/// `%.{digits}g`-like: `digits` significant digits, no trailing zeros.
fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 || !value.is_finite() {
        return format_number(value);
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Numbers as Go prints them: integers without a fraction.
fn format_number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// The largest `%.Nf` precision honoured: more digits than an `f64` has, far below what
/// makes Rust's formatter panic (65 535).
pub const MAX_PRECISION: usize = 64;

/// A `printf` for what alert templates use: `%s %v %d %f %.Nf %g %%`.
fn printf(format: &str, arguments: &[Val]) -> String {
    let mut out = String::new();
    let mut arguments = arguments.iter();
    let mut chars = format.chars().peekable();
    while let Some(character) = chars.next() {
        if character != '%' {
            out.push(character);
            continue;
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(digit) = chars.peek().filter(|c| c.is_ascii_digit()) {
                digits.push(*digit);
                chars.next();
            }
            // Go reads `%.f` as precision 0; Rust's formatter panics past 65 535
            precision = Some(if digits.is_empty() {
                0
            } else {
                digits
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
                    .min(MAX_PRECISION)
            });
        }
        let verb = chars.next();
        let mut take = || arguments.next().cloned();
        match verb {
            Some('%') => out.push('%'),
            Some('s' | 'v') => {
                out.push_str(&take().map_or("%!v(MISSING)".into(), |value| value.text()))
            }
            Some('d') => out.push_str(&take().map_or("%!d(MISSING)".into(), |value| {
                format!("{}", value.number().round() as i64)
            })),
            Some('f') => {
                let precision = precision.unwrap_or(6);
                out.push_str(&take().map_or("%!f(MISSING)".into(), |value| {
                    format!("{:.precision$}", value.number())
                }))
            }
            Some('g') => out.push_str(
                &take().map_or("%!g(MISSING)".into(), |value| format_number(value.number())),
            ),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}
