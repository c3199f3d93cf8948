//! The text exposition format and OpenMetrics: real scrapes cut into pieces and mutated,
//! and generated lines, parsed; what parses is rendered back (label values escaped by
//! `telemetry::escape_label`, as `/metrics` writes them) and must parse to the same samples.

use std::sync::Arc;

use lookout::scrape::exposition::{self, Format, Sample};
use lookout::telemetry::escape_label;
use proptest::prelude::*;

use crate::harness::{self, Grammar, HOSTILE, mutated, run_case};

const FILES: &[(&str, Format)] = &[
    ("node_exporter_1.5.0.prom.txt", Format::Text),
    ("alltypes.237mfs.prom.txt", Format::Text),
    ("alltypes.5mfs.om.txt", Format::OpenMetrics),
    ("1histogram.om.txt", Format::OpenMetrics),
];

/// Pieces of the real expositions in `shared/testdata/exposition`, 40 lines each (an
/// OpenMetrics piece ends with `# EOF`), with their format.
fn pieces(format: Format) -> Vec<String> {
    let mut pieces = Vec::new();
    for (name, file_format) in FILES {
        if *file_format != format {
            continue;
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata/exposition")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let lines: Vec<&str> = text.lines().filter(|line| *line != "# EOF").collect();
        for chunk in lines.chunks(40) {
            let mut piece = chunk.join("\n");
            piece.push('\n');
            if format == Format::OpenMetrics {
                piece.push_str("# EOF\n");
            }
            pieces.push(piece);
        }
    }
    pieces
}

fn grammar(format: Format) -> Arc<Grammar> {
    let pieces = pieces(format);
    let seeds: Vec<&str> = pieces.iter().map(String::as_str).collect();
    Arc::new(
        Grammar::new(
            &seeds,
            &[
                "{",
                "}",
                "=",
                ",",
                "\"",
                "\\\"",
                "\\n",
                "\\\\",
                "# HELP ",
                "# TYPE ",
                "# UNIT ",
                "# EOF",
                "\n",
                " ",
                "\t",
                "counter",
                "gauge",
                "histogram",
                "summary",
                "untyped",
                "unknown",
                "stateset",
                "_bucket",
                "_total",
                "_created",
                "le=\"+Inf\"",
                "# {",
                "1.5",
                "-Inf",
                "NaN",
                "1e-9",
                "1714550400000",
                "1714550400.123",
            ],
            &[("{", "}"), ("\"", "\""), ("{a=\"", "\"}")],
        )
        .max_repeat(64),
    )
}

/// Generated lines: metadata, samples with labels, timestamps and exemplars.
fn generated_lines(format: Format) -> BoxedStrategy<String> {
    let name = prop_oneof![
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
        "\"[a-z.é ]{1,8}\"".prop_map(|name| name.to_string()),
    ];
    let value = prop_oneof![
        any::<f64>().prop_map(|value| value.to_string()),
        proptest::sample::select(vec!["+Inf", "-Inf", "NaN", "1e400", "0x10", "1_0", ""])
            .prop_map(str::to_string),
    ];
    let label = ("[a-z_]{1,6}", "(\\PC|\\\\[n\"\\\\])*")
        .prop_map(|(name, value)| format!("{name}=\"{value}\""));
    let sample = (
        name.clone(),
        proptest::collection::vec(label.clone(), 0..4),
        value.clone(),
        proptest::option::of(prop_oneof![
            any::<i64>().prop_map(|t| t.to_string()),
            any::<f64>().prop_map(|t| t.to_string())
        ]),
        proptest::option::of((proptest::collection::vec(label, 0..2), value)),
    )
        .prop_map(|(name, labels, value, timestamp, exemplar)| {
            let mut line = if labels.is_empty() {
                name
            } else {
                format!("{name}{{{}}}", labels.join(","))
            };
            line.push(' ');
            line.push_str(&value);
            if let Some(timestamp) = timestamp {
                line.push(' ');
                line.push_str(&timestamp);
            }
            if let Some((labels, value)) = exemplar {
                line.push_str(&format!(" # {{{}}} {value}", labels.join(",")));
            }
            line
        });
    let metadata = (
        "(HELP|TYPE|UNIT)",
        name,
        "(counter|gauge|histogram|summary|info|stateset|untyped|unknown|\\PC{0,8})",
    )
        .prop_map(|(keyword, name, rest)| format!("# {keyword} {name} {rest}"));
    let line = prop_oneof![4 => sample, 1 => metadata, 1 => proptest::sample::select(HOSTILE).prop_map(str::to_string)];
    proptest::collection::vec(line, 0..12)
        .prop_map(move |lines| {
            let mut text = lines.join("\n");
            text.push('\n');
            if format == Format::OpenMetrics {
                text.push_str("# EOF\n");
            }
            text
        })
        .boxed()
}

/// A metric or label name as the text format writes it: bare when it can be, else quoted.
fn name(name: &str) -> String {
    let bare = name.chars().enumerate().all(|(at, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (at > 0 && c.is_ascii_digit())
    }) && !name.is_empty();
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", escape_label(name))
    }
}

/// Renders samples in the text format (quoted names in the `{"name", …}` form).
fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    for sample in samples {
        let labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(label, value)| format!("{}=\"{}\"", name(label), escape_label(value)))
            .collect();
        let metric = name(&sample.name);
        if metric.starts_with('"') {
            out.push('{');
            out.push_str(&metric);
            for label in &labels {
                out.push(',');
                out.push_str(label);
            }
            out.push('}');
        } else {
            out.push_str(&metric);
            if !labels.is_empty() {
                out.push('{');
                out.push_str(&labels.join(","));
                out.push('}');
            }
        }
        let value = if sample.value.is_nan() {
            "NaN".to_string()
        } else if sample.value.is_infinite() {
            if sample.value > 0.0 {
                "+Inf".into()
            } else {
                "-Inf".into()
            }
        } else {
            format!("{:e}", sample.value)
        };
        out.push(' ');
        out.push_str(&value);
        if let Some(timestamp) = sample.timestamp_ms {
            out.push_str(&format!(" {timestamp}"));
        }
        out.push('\n');
    }
    out
}

/// A sample's name, labels, value bits (one NaN for every NaN) and timestamp.
type Essence = (String, Vec<(String, String)>, u64, Option<i64>);

/// What samples are, apart from their family type (rendering drops `# TYPE`).
fn essence(samples: &[Sample]) -> Vec<Essence> {
    samples
        .iter()
        .map(|sample| {
            let bits = if sample.value.is_nan() {
                f64::NAN.to_bits()
            } else {
                sample.value.to_bits()
            };
            (
                sample.name.clone(),
                sample.labels.clone(),
                bits,
                sample.timestamp_ms,
            )
        })
        .collect()
}

fn check(text: String, format: Format) -> Result<(), TestCaseError> {
    run_case("exposition", format!("{:?}", (&text, format)), move || {
        let Ok((samples, _)) = exposition::parse_with_metadata(&text, format) else {
            return Ok(());
        };
        let rendered = render(&samples);
        let again = exposition::parse(&rendered, Format::Text)
            .map_err(|error| format!("rendered samples do not parse: {error}\n{rendered}"))?;
        if essence(&again) != essence(&samples) {
            return Err(format!(
                "samples changed in a render round trip:\n{rendered}"
            ));
        }
        Ok(())
    })
}

#[test]
fn text_expositions_parse_or_fail_cleanly_and_round_trip() {
    harness::check(
        || mutated(grammar(Format::Text), generated_lines(Format::Text), 8),
        |text| check(text, Format::Text),
    );
}

#[test]
fn open_metrics_expositions_parse_or_fail_cleanly_and_round_trip() {
    harness::check(
        || {
            mutated(
                grammar(Format::OpenMetrics),
                generated_lines(Format::OpenMetrics),
                8,
            )
        },
        |text| check(text, Format::OpenMetrics),
    );
}
