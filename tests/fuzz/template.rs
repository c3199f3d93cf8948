//! Alert templates: generated and mutated templates parsed (with and without a rule's
//! labels) and rendered with hostile data.

use std::collections::BTreeMap;
use std::sync::Arc;

use lookout::rules::template::{Template, TemplateData};
use proptest::prelude::*;

use crate::harness::{self, Grammar, HOSTILE, mutated, run_case};

/// Actions per generated template, and pipeline length per action.
const ACTIONS: usize = 6;
const PIPELINE: usize = 4;

fn operand() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "$value",
            "$count",
            "$window",
            "$threshold",
            "$rule",
            "$resolved",
            "$status",
            "$reference",
            "$spike_ratio",
            "$labels",
            "$labels.service",
            "$labels.job",
            "$labels.é",
            "$nope",
            "$",
            "$labels.",
        ])
        .prop_map(str::to_string),
        "\"(\\PC|\\\\[nt\"\\\\])*\"".prop_map(|text| text.to_string()),
        prop_oneof![
            any::<f64>().prop_map(|number| number.to_string()),
            Just("1e999".to_string()),
            Just("-0".to_string())
        ],
    ]
}

fn function() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            "humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "toUpper",
            "toLower", "title", "printf", "nope",
        ])
        .prop_map(str::to_string),
        1 => (0usize..65_536, "[sdfgv%xq]").prop_map(|(precision, verb)| format!("printf \"%.{precision}{verb} %s %d\"")),
        1 => "printf \"[%a-z.0-9 ]{0,12}\"",
    ]
}

fn action() -> impl Strategy<Value = String> {
    (
        "(\\{\\{|\\{\\{- )",
        operand(),
        proptest::collection::vec(
            (function(), proptest::collection::vec(operand(), 0..3)),
            0..PIPELINE,
        ),
        "(\\}\\}| -\\}\\}|\\})",
    )
        .prop_map(|(open, first, pipeline, close)| {
            let mut text = format!("{open} {first}");
            for (function, arguments) in pipeline {
                text.push_str(&format!(" | {function} {}", arguments.join(" ")));
            }
            text.push_str(&format!(" {close}"));
            text
        })
}

pub fn generated() -> BoxedStrategy<String> {
    let keyword = proptest::sample::select(vec![
        "{{ if $resolved }}",
        "{{- if $count -}}",
        "{{ if $labels.service | toUpper }}",
        "{{ else }}",
        "{{ end }}",
        "{{ if }}",
        "{{ iff $value }}",
    ])
    .prop_map(str::to_string);
    proptest::collection::vec(
        prop_oneof![3 => action(), 3 => "\\PC{0,12}", 2 => keyword],
        0..ACTIONS,
    )
    .prop_map(|parts| parts.concat())
    .boxed()
}

fn grammar() -> Arc<Grammar> {
    Arc::new(Grammar::new(
        &[
            "{{ $count }} HTTP 500s in the last {{ $window }} on {{ $labels.service }}",
            "{{ $value | humanizePercentage }} of {{ $labels.service }}'s requests logged a 500",
            "High error rate on {{ $labels.job }}",
            "{{ printf \"%.2f\" $value }} req/s ({{ $threshold }}) for {{ $rule }}",
            "{{- $labels.instance -}} is down: {{ $value | humanizeDuration }}",
            "p95 {{ if $resolved }}was{{ else }}is{{ end }} {{ $value }} ({{ $status }})",
            "disk {{ $value | humanize1024 }}B, {{ \"a\\\"b\" | toUpper }} {{ title \"x y\" }}",
            "sum(rate(http_requests_total{service=\"{{ $labels.service }}\"}[5m]))",
        ],
        &[
            "{{",
            "}}",
            "{{-",
            "-}}",
            "|",
            "$",
            "$value",
            "$labels",
            ".",
            "\"",
            "\\",
            "printf",
            "humanize",
            "%",
            "%.2f",
            "%d",
            " ",
            "if",
            "else",
            "end",
            "$resolved",
        ],
        &[("{{ ", " }}"), ("\"", "\"")],
    ))
}

fn data() -> impl Strategy<Value = TemplateData> {
    let text = prop_oneof![
        proptest::sample::select(HOSTILE).prop_map(str::to_string),
        "\\PC{0,8}"
    ];
    (
        proptest::collection::btree_map("(service|job|instance|é)", text.clone(), 0..3),
        prop_oneof![
            any::<f64>(),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            Just(1e-320),
            Just(f64::NAN)
        ],
        any::<u64>(),
        (text.clone(), text.clone(), text, any::<bool>()),
        proptest::option::of(prop_oneof![any::<f64>(), Just(0.0), Just(f64::NAN)]),
    )
        .prop_map(
            |(labels, value, count, (window, threshold, rule, resolved), reference)| TemplateData {
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                value,
                count,
                window,
                threshold,
                rule,
                resolved,
                reference,
                message: Default::default(),
            },
        )
}

#[test]
fn templates_parse_and_render_or_fail_cleanly() {
    let strategy = || {
        (
            prop_oneof![generated(), mutated(grammar(), generated(), 6)],
            any::<bool>(),
            data(),
        )
    };
    harness::check(strategy, |(text, restrict, data)| {
        // the format can come from the data too: `{{ printf $labels.service }}`
        run_case("template", format!("{:?}", (&text, &data)), move || {
            let labels = ["service".to_string(), "job".to_string()];
            let Ok(template) = Template::parse(&text, restrict.then_some(&labels[..])) else {
                return Ok(());
            };
            let _ = template.render(&data);
            Ok(())
        })
    });
}

#[test]
fn printf_with_a_huge_precision_is_capped() {
    let outcome = run_case(
        "template printf",
        "{{ printf \"%.65536f\" $value }}".to_string(),
        || {
            let template = Template::parse("{{ printf \"%.65536f\" $value }}", None)
                .map_err(|error| error.to_string())?;
            template.render(&TemplateData::default());
            Ok(())
        },
    );
    assert!(outcome.is_ok(), "{outcome:?}");
}
