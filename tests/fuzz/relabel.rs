//! Relabeling (scrape's `relabel_configs` and `metric_relabel_configs`,
//! `alert_relabel_configs`, `write_relabel_configs`): generated and mutated TOML step lists
//! (every action, hostile regexes and templates) run over generated label sets. What
//! parses and validates must relabel any label set without panicking, leave only valid
//! label names when it keeps the set, and give the same answer twice (relabeling is a
//! function); written back as Prometheus writes it (YAML, defaults spelled out), it must
//! read as steps that relabel the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use lookout::relabel::{Relabel, RelabelConfig, is_label_name};
use proptest::prelude::*;

use crate::harness::{self, Grammar, mutated, run_case};

fn step() -> BoxedStrategy<String> {
    let action = proptest::sample::select(vec![
        "replace",
        "keep",
        "drop",
        "hashmod",
        "labelmap",
        "labeldrop",
        "labelkeep",
        "lowercase",
        "uppercase",
        "keepequal",
        "dropequal",
        "rename",
        "LabelDrop",
        "Replace",
    ]);
    let label = proptest::sample::select(vec!["a", "b", "replica", "__x", "9bad", "", "${1}"]);
    let regex = proptest::sample::select(vec![
        "(.*)",
        "f(.*)",
        "(a|b",
        "x{100000}",
        ".*(b).*",
        "(?P<n>.)",
        "\\\\",
        "",
        "[",
    ]);
    let replacement = proptest::sample::select(vec!["$1", "${1}x", "$$", "${n}", "", "$10", "${"]);
    (
        action,
        proptest::collection::vec(label.clone(), 0..3),
        proptest::option::of(regex),
        proptest::option::of(label),
        proptest::option::of(replacement),
        proptest::option::of(prop_oneof![Just(0u64), 1u64..1000, Just(u64::MAX)]),
        proptest::option::of(proptest::sample::select(vec![";", ",", ""])),
    )
        .prop_map(
            |(action, sources, regex, target, replacement, modulus, separator)| {
                let mut text = format!("[[step]]\naction = {action:?}\n");
                if let Some(separator) = separator {
                    text.push_str(&format!("separator = {separator:?}\n"));
                }
                if !sources.is_empty() {
                    text.push_str(&format!("source_labels = {sources:?}\n"));
                }
                if let Some(regex) = regex {
                    text.push_str(&format!("regex = {regex:?}\n"));
                }
                if let Some(target) = target {
                    text.push_str(&format!("target_label = {target:?}\n"));
                }
                if let Some(replacement) = replacement {
                    text.push_str(&format!("replacement = {replacement:?}\n"));
                }
                if let Some(modulus) = modulus.filter(|modulus| *modulus <= i64::MAX as u64) {
                    text.push_str(&format!("modulus = {modulus}\n"));
                }
                text
            },
        )
        .boxed()
}

fn steps() -> BoxedStrategy<String> {
    proptest::collection::vec(step(), 1..4)
        .prop_map(|steps| steps.concat())
        .boxed()
}

fn grammar() -> Arc<Grammar> {
    Arc::new(Grammar::new(
        &[
            "[[step]]\nregex = \"replica\"\naction = \"labeldrop\"\n",
            "[[step]]\nsource_labels = [\"a\", \"b\"]\nregex = \"f(.*);(.*)r\"\ntarget_label = \"${1}\"\nreplacement = \"b${1}${2}m\"\n",
        ],
        &[
            "[[step]]", "\n", "=", "\"", "$", "{", "}", "(", ")", "*", "[", "]", ",", "\\",
        ],
        &[("{", "}"), ("(", ")"), ("[", "]"), ("\"", "\"")],
    ))
}

fn label_sets() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map("[a-z_]{1,6}", "[a-zA-Z0-9;\n-]{0,8}", 0..6)
}

#[test]
fn relabel_steps_run_on_any_labels_or_are_refused_cleanly() {
    harness::check(
        || {
            (
                prop_oneof![steps(), mutated(grammar(), steps(), 6)],
                label_sets(),
            )
        },
        |(text, labels)| {
            run_case("relabel", format!("{text:?} {labels:?}"), move || {
                #[derive(serde::Deserialize)]
                struct Steps {
                    step: Vec<RelabelConfig>,
                }
                let Ok(parsed) = toml::from_str::<Steps>(&text) else {
                    return Ok(());
                };
                let Ok(relabel) = Relabel::build(&parsed.step, "alert_relabel_configs") else {
                    return Ok(());
                };
                let original = labels.clone();
                let (mut first, mut second) = (labels.clone(), labels);
                let kept = relabel.process(&mut first);
                if kept != relabel.process(&mut second) || (kept && first != second) {
                    return Err("relabeling the same labels twice differed".into());
                }
                if kept && let Some(bad) = first.keys().find(|name| !is_label_name(name)) {
                    // labelmap may only write names its template allows: still a name
                    return Err(format!("kept an invalid label name {bad:?}"));
                }
                let yaml = serde_yaml_ng::to_string(&parsed.step)
                    .map_err(|error| format!("the steps do not serialize: {error}"))?;
                let read_back: Vec<RelabelConfig> = serde_yaml_ng::from_str(&yaml)
                    .map_err(|error| format!("{yaml:?} does not read back: {error}"))?;
                let read_back = Relabel::build(&read_back, "relabel_configs")
                    .map_err(|errors| format!("{yaml:?} is refused once written: {errors:?}"))?;
                let mut third = original;
                if read_back.process(&mut third) != kept || (kept && third != first) {
                    return Err(format!("{yaml:?} relabels differently once written"));
                }
                Ok(())
            })
        },
    );
}
