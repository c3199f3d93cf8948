//! Prometheus' relabeling (`relabel_configs` and `metric_relabel_configs` of scrape jobs,
//! `alert_relabel_configs`, `write_relabel_configs`): a list of steps, each reading some
//! labels and rewriting, keeping or dropping the label set. Consumes a label set (name →
//! value), produces the rewritten set or "dropped"; knows nothing of targets, series or
//! alerts.
//!
//! The semantics follow Prometheus' `model/relabel/relabel.go` step for step (its test
//! table is ported below): `regex` is fully anchored (`^(?s:REGEX)$` as Prometheus 3
//! compiles it, `.` matching newlines too; RE2 syntax — the `regex` crate's, which is
//! RE2's), `$1`, `${1}`, `$name` in `replacement` and
//! `target_label` expand as Go's `Regexp.Expand` does (the `regex` crate's `expand` has the
//! same rules), a label set to the empty string is removed, `hashmod` is the last eight
//! bytes of the MD5 of the joined values, big-endian, modulo `modulus`. Label names are
//! Prometheus' classic ones (`[a-zA-Z_][a-zA-Z0-9_]*`).
//!
//! Config reads as Prometheus reads it, in TOML or in YAML: a field left out takes
//! Prometheus' default, a field written with its default value is the same as left out
//! (so a step as Prometheus writes it back, every default spelled out, reads again), and
//! `action` is case-insensitive. Steps serialize as Prometheus marshals them (defaults
//! spelled out, empty fields left out). Validation is Prometheus' `Config.Validate`, plus
//! classic label names and size limits.
//!
//! Use: parse `Vec<RelabelConfig>` with serde, build a [`Relabel`] once (with
//! [`Relabel::build`], errors naming the field, e.g. `alert_relabel_configs[2].regex`; or
//! [`Relabel::compile`], errors as [`RelabelError`]s for the caller to place), then
//! [`Relabel::process`] each label set.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// At most this many steps in one list: relabeling runs for every alert or sample sent.
pub const MAX_STEPS: usize = 256;

/// Longest `regex`, `replacement` or `target_label`, in bytes.
pub const MAX_PATTERN_BYTES: usize = 4096;

/// Compiled size limit of one `regex` (the `regex` crate's default is 10 MiB per regex;
/// hundreds of them would be a lot of memory for a config).
const REGEX_SIZE_LIMIT_BYTES: usize = 1 << 20;

/// The default `regex`: everything, captured.
const DEFAULT_REGEX: &str = "(.*)";
/// The default `replacement`: the first capture.
const DEFAULT_REPLACEMENT: &str = "$1";
/// The default `separator`.
const DEFAULT_SEPARATOR: &str = ";";

/// What a step does (Prometheus' `action`; read in any case, written lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Sets `target_label` to `replacement` (captures expanded) when `regex` matches.
    #[default]
    Replace,
    /// Keeps the set only when `regex` matches the joined source values.
    Keep,
    /// Drops the set when `regex` matches the joined source values.
    Drop,
    /// Sets `target_label` to the hash of the joined source values modulo `modulus`.
    HashMod,
    /// Copies each label whose name matches `regex` to the name `replacement` makes.
    LabelMap,
    /// Removes each label whose name matches `regex`.
    LabelDrop,
    /// Removes each label whose name does not match `regex`.
    LabelKeep,
    /// Sets `target_label` to the joined source values in lower case.
    Lowercase,
    /// Sets `target_label` to the joined source values in upper case.
    Uppercase,
    /// Keeps the set only when `target_label`'s value equals the joined source values.
    KeepEqual,
    /// Drops the set when `target_label`'s value equals the joined source values.
    DropEqual,
}

impl Action {
    /// Every action, in Prometheus' documentation order.
    const ALL: [Action; 11] = [
        Action::Replace,
        Action::Lowercase,
        Action::Uppercase,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
    ];

    /// The action as config spells it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
        }
    }
}

/// Prometheus' `Action.UnmarshalYAML`: the name in any case (`Replace`, `labelDrop`).
impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Action, D::Error> {
        let text = String::deserialize(deserializer)?;
        let lowercase = text.to_ascii_lowercase();
        Action::ALL
            .into_iter()
            .find(|action| action.name() == lowercase)
            .ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|action| action.name()).collect();
                serde::de::Error::custom(format!(
                    "unknown relabel action `{text}`; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// One relabeling step as the user writes it, with Prometheus' field names. A field left
/// out takes Prometheus' default (`separator = ";"`, `regex = "(.*)"`,
/// `replacement = "$1"`, `action = "replace"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values, joined by `separator`, the step reads.
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default)]
    pub separator: Option<String>,
    /// Matched against the whole joined value (anchored at both ends).
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub modulus: Option<u64>,
    #[serde(default)]
    pub target_label: Option<String>,
    #[serde(default)]
    pub replacement: Option<String>,
    #[serde(default)]
    pub action: Option<Action>,
}

/// Prometheus' marshalling of a step (`/api/v1/status/config` shows it): the defaults
/// spelled out, empty `source_labels`, `modulus` and `target_label` left out, in
/// Prometheus' field order. What it writes reads back as the same step.
impl Serialize for RelabelConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if !self.source_labels.is_empty() {
            map.serialize_entry("source_labels", &self.source_labels)?;
        }
        map.serialize_entry("separator", self.separator())?;
        map.serialize_entry("regex", self.regex())?;
        if self.modulus() != 0 {
            map.serialize_entry("modulus", &self.modulus())?;
        }
        if !self.target_label().is_empty() {
            map.serialize_entry("target_label", self.target_label())?;
        }
        map.serialize_entry("replacement", self.replacement())?;
        map.serialize_entry("action", &self.action())?;
        map.end()
    }
}

impl RelabelConfig {
    /// `separator`, or its default.
    pub fn separator(&self) -> &str {
        self.separator.as_deref().unwrap_or(DEFAULT_SEPARATOR)
    }

    /// `regex`, or its default.
    pub fn regex(&self) -> &str {
        self.regex.as_deref().unwrap_or(DEFAULT_REGEX)
    }

    /// `modulus`, or 0 (none).
    pub fn modulus(&self) -> u64 {
        self.modulus.unwrap_or(0)
    }

    /// `target_label`, or the empty string (none).
    pub fn target_label(&self) -> &str {
        self.target_label.as_deref().unwrap_or_default()
    }

    /// `replacement`, or its default.
    pub fn replacement(&self) -> &str {
        self.replacement.as_deref().unwrap_or(DEFAULT_REPLACEMENT)
    }

    /// `action`, or its default.
    pub fn action(&self) -> Action {
        self.action.unwrap_or_default()
    }
}

/// One problem of a list of steps: where it is and what to do about it. Shown alone it
/// names the list `steps` (`` `steps[2].regex`: … ``); [`RelabelError::at`] names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.at("steps"))]
pub struct RelabelError {
    /// The step's place in the list; `None`: the list as a whole.
    pub step: Option<usize>,
    /// The step's field at fault; `None`: the step as a whole.
    pub field: Option<&'static str>,
    /// What is wrong and what to write instead.
    pub problem: String,
}

impl RelabelError {
    /// The problem placed in the list found at `list`:
    /// `` `alert_relabel_configs[2].regex`: … ``.
    pub fn at(&self, list: &str) -> String {
        let step = self
            .step
            .map(|step| format!("[{step}]"))
            .unwrap_or_default();
        let field = self
            .field
            .map(|field| format!(".{field}"))
            .unwrap_or_default();
        format!("`{list}{step}{field}`: {}", self.problem)
    }
}

/// One step, checked and compiled.
#[derive(Debug, Clone)]
struct Step {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    /// Whether `regex` is the default (the fast path of `replace`).
    default_regex: bool,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
}

/// A list of relabeling steps, ready to run.
#[derive(Debug, Clone, Default)]
pub struct Relabel {
    steps: Vec<Step>,
}

/// Whether `name` is a classic Prometheus label name.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prometheus' `relabelTarget`: a label name in which `$1`, `${1}`, `$name` may stand for
/// parts.
fn is_label_template(template: &str) -> bool {
    static TEMPLATE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$")
                .expect("a valid pattern")
        })
        .is_match(template)
}

/// Checks `configs` (found at `field`, e.g. `alert_relabel_configs`): one message per
/// problem, naming the step and its field, saying what to write instead.
pub fn validate(configs: &[RelabelConfig], field: &str) -> Vec<String> {
    match Relabel::build(configs, field) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

impl Relabel {
    /// Compiles `configs` (found at `field`); the error lists every problem, as
    /// [`validate`] does.
    pub fn build(configs: &[RelabelConfig], field: &str) -> Result<Relabel, Vec<String>> {
        Relabel::compile(configs)
            .map_err(|errors| errors.iter().map(|error| error.at(field)).collect())
    }

    /// Compiles `configs`; the error lists every problem with its step and field, for the
    /// caller to say where the list is.
    pub fn compile(configs: &[RelabelConfig]) -> Result<Relabel, Vec<RelabelError>> {
        if configs.len() > MAX_STEPS {
            return Err(vec![RelabelError {
                step: None,
                field: None,
                problem: format!("{} steps; at most {MAX_STEPS} are allowed", configs.len()),
            }]);
        }
        let mut errors = Vec::new();
        let mut steps = Vec::new();
        for (index, config) in configs.iter().enumerate() {
            match Step::build(config) {
                Ok(step) => steps.push(step),
                Err(step_errors) => errors.extend(step_errors.into_iter().map(
                    |(field, problem)| RelabelError {
                        step: Some(index),
                        field,
                        problem,
                    },
                )),
            }
        }
        if errors.is_empty() {
            Ok(Relabel { steps })
        } else {
            Err(errors)
        }
    }

    /// Whether there are no steps (every label set is kept unchanged).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs the steps over `labels`, in order; returns `false` when a step drops the set
    /// (`labels` is then left half-rewritten: drop it).
    pub fn process(&self, labels: &mut BTreeMap<String, String>) -> bool {
        self.steps.iter().all(|step| step.apply(labels))
    }
}

impl Step {
    /// Prometheus' `Config.Validate` (a field holding its default counts as left out),
    /// plus classic label names and size limits; each error names its field (`None`: the
    /// step as a whole).
    fn build(config: &RelabelConfig) -> Result<Step, Vec<(Option<&'static str>, String)>> {
        let mut errors: Vec<(Option<&'static str>, String)> = Vec::new();
        let action = config.action();
        let name = action.name();
        for (field, text) in [
            ("regex", &config.regex),
            ("replacement", &config.replacement),
            ("target_label", &config.target_label),
            ("separator", &config.separator),
        ] {
            if text
                .as_ref()
                .is_some_and(|text| text.len() > MAX_PATTERN_BYTES)
            {
                errors.push((
                    Some(field),
                    format!("longer than {MAX_PATTERN_BYTES} bytes"),
                ));
            }
        }
        if config.source_labels.len() > MAX_STEPS {
            errors.push((
                Some("source_labels"),
                format!("more than {MAX_STEPS} labels"),
            ));
        }
        for label in &config.source_labels {
            if !is_label_name(label) {
                errors.push((
                    Some("source_labels"),
                    format!(
                        "`{label}` is not a label name (letters, digits and `_`, not starting with a digit)"
                    ),
                ));
            }
        }
        let regex_text = config.regex();
        let regex = match regex::RegexBuilder::new(&format!("^(?s:{regex_text})$"))
            .size_limit(REGEX_SIZE_LIMIT_BYTES)
            .build()
        {
            Ok(regex) => Some(regex),
            Err(error) => {
                // the regex crate's message spans lines: keep its gist on one
                let error = error.to_string().replace('\n', " ");
                errors.push((
                    Some("regex"),
                    format!("not a valid RE2 regular expression: {error}"),
                ));
                None
            }
        };
        let target_label = config.target_label();
        let replacement = config.replacement();
        let separator = config.separator();
        let modulus = config.modulus();
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && target_label.is_empty() {
            errors.push((
                Some("target_label"),
                format!("the {name} action needs a `target_label`"),
            ));
        } else if needs_target {
            let valid = if action == Action::Replace && target_label.contains('$') {
                is_label_template(target_label)
            } else {
                is_label_name(target_label)
            };
            if !valid {
                errors.push((
                    Some("target_label"),
                    format!(
                        "`{target_label}` is not a valid target label for the {name} action (a label name{})",
                        if action == Action::Replace {
                            ", in which `$1` or `${name}` may stand for captures"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        if action == Action::HashMod && modulus == 0 {
            errors.push((
                Some("modulus"),
                "the hashmod action needs a `modulus` above 0".into(),
            ));
        }
        if matches!(
            action,
            Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual
        ) && replacement != DEFAULT_REPLACEMENT
        {
            errors.push((
                Some("replacement"),
                format!("the {name} action takes no `replacement`"),
            ));
        }
        if matches!(action, Action::KeepEqual | Action::DropEqual)
            && (regex_text != DEFAULT_REGEX || separator != DEFAULT_SEPARATOR || modulus != 0)
        {
            errors.push((
                None,
                format!("the {name} action takes only `source_labels` and `target_label`"),
            ));
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (!config.source_labels.is_empty()
                || !target_label.is_empty()
                || separator != DEFAULT_SEPARATOR
                || replacement != DEFAULT_REPLACEMENT
                || modulus != 0)
        {
            errors.push((None, format!("the {name} action takes only `regex`")));
        }
        if action == Action::LabelMap && !is_label_template(replacement) {
            errors.push((
                Some("replacement"),
                format!(
                    "`{replacement}` is not a valid label name template for the labelmap action"
                ),
            ));
        }
        match regex {
            Some(regex) if errors.is_empty() => Ok(Step {
                source_labels: config.source_labels.clone(),
                separator: separator.to_string(),
                regex,
                default_regex: regex_text == DEFAULT_REGEX,
                modulus,
                target_label: target_label.to_string(),
                replacement: replacement.to_string(),
                action,
            }),
            _ => Err(errors),
        }
    }

    /// One step of Prometheus' `relabel()`; `false`: drop the set.
    fn apply(&self, labels: &mut BTreeMap<String, String>) -> bool {
        let value = self
            .source_labels
            .iter()
            .map(|name| labels.get(name).map_or("", String::as_str))
            .collect::<Vec<&str>>()
            .join(&self.separator);
        match self.action {
            Action::Drop => return !self.regex.is_match(&value),
            Action::Keep => return self.regex.is_match(&value),
            Action::DropEqual => {
                return labels.get(&self.target_label).map_or("", String::as_str) != value;
            }
            Action::KeepEqual => {
                return labels.get(&self.target_label).map_or("", String::as_str) == value;
            }
            Action::Replace => {
                // Prometheus' fast path: add (or remove) a constant label
                if value.is_empty()
                    && self.default_regex
                    && !self.target_label.contains('$')
                    && !self.replacement.contains('$')
                {
                    set(labels, self.target_label.clone(), self.replacement.clone());
                    return true;
                }
                let Some(captures) = self.regex.captures(&value) else {
                    return true;
                };
                let mut target = String::new();
                captures.expand(&self.target_label, &mut target);
                if !is_label_name(&target) {
                    return true;
                }
                let mut replaced = String::new();
                captures.expand(&self.replacement, &mut replaced);
                set(labels, target, replaced);
            }
            Action::Lowercase => set(labels, self.target_label.clone(), value.to_lowercase()),
            Action::Uppercase => set(labels, self.target_label.clone(), value.to_uppercase()),
            Action::HashMod => {
                use md5::Digest;
                let digest = md5::Md5::digest(value.as_bytes());
                let last_eight: [u8; 8] = digest[8..16]
                    .try_into()
                    .expect("an MD5 digest has 16 bytes");
                let modulo = u64::from_be_bytes(last_eight) % self.modulus;
                set(labels, self.target_label.clone(), modulo.to_string());
            }
            Action::LabelMap => {
                let matching: Vec<(String, String)> = labels
                    .iter()
                    .filter(|(name, _)| self.regex.is_match(name))
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                for (name, value) in matching {
                    let renamed = self.regex.replace_all(&name, self.replacement.as_str());
                    // as `replace` does with its target (Prometheus' labelmap does not
                    // check): a template that expands to no valid name sets nothing
                    if is_label_name(&renamed) {
                        set(labels, renamed.into_owned(), value);
                    }
                }
            }
            Action::LabelDrop => labels.retain(|name, _| !self.regex.is_match(name)),
            Action::LabelKeep => labels.retain(|name, _| self.regex.is_match(name)),
        }
        true
    }
}

/// Prometheus' `labels.Builder.Set`: an empty value removes the label.
fn set(labels: &mut BTreeMap<String, String>, name: String, value: String) {
    if value.is_empty() {
        labels.remove(&name);
    } else {
        labels.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    /// Steps written as TOML, the way users write them.
    fn steps(toml_text: &str) -> Relabel {
        #[derive(Deserialize)]
        struct Steps {
            step: Vec<RelabelConfig>,
        }
        let parsed: Steps = toml::from_str(toml_text).expect("the steps parse");
        Relabel::build(&parsed.step, "relabel_configs").expect("the steps are valid")
    }

    /// Prometheus' `TestRelabel` table (model/relabel/relabel_test.go), case for case:
    /// the input, the steps, and the output (`None`: dropped).
    #[test]
    fn prometheus_relabel_table() {
        let abc = [("a", "foo"), ("b", "bar"), ("c", "baz")];
        let ports = [
            ("__tmp_port", "1234"),
            ("__port1", "1234"),
            ("__port2", "5678"),
        ];
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: Vec<(Pairs, &str, Option<Pairs>)> = vec![
            (
                &abc,
                r#"[[step]]
                source_labels = ["a"]
                regex = "f(.*)"
                target_label = "d"
                separator = ";"
                replacement = "ch${1}-ch${1}"
                action = "replace""#,
                Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "choo-choo")]),
            ),
            (
                &abc,
                r#"[[step]]
                source_labels = ["a", "b"]
                regex = "f(.*);(.*)r"
                target_label = "a"
                replacement = "b${1}${2}m"
                [[step]]
                source_labels = ["c", "a"]
                regex = "(b).*b(.*)ba(.*)"
                target_label = "d"
                replacement = "$1$2$2$3""#,
                Some(&[("a", "boobam"), ("b", "bar"), ("c", "baz"), ("d", "boooom")]),
            ),
            (
                &[("a", "foo")],
                r#"[[step]]
                source_labels = ["a"]
                regex = ".*o.*"
                action = "drop"
                [[step]]
                source_labels = ["a"]
                regex = "f(.*)"
                target_label = "d"
                replacement = "ch$1-ch$1""#,
                None,
            ),
            (
                &[("a", "foo"), ("b", "bar")],
                r#"[[step]]
                source_labels = ["a"]
                regex = ".*o.*"
                action = "drop""#,
                None,
            ),
            (
                &[("a", "abc")],
                r#"[[step]]
                source_labels = ["a"]
                regex = ".*(b).*"
                target_label = "d"
                replacement = "$1""#,
                Some(&[("a", "abc"), ("d", "b")]),
            ),
            (
                &[("a", "foo")],
                r#"[[step]]
                source_labels = ["a"]
                regex = "no-match"
                action = "drop""#,
                Some(&[("a", "foo")]),
            ),
            (
                &[("a", "foo")],
                r#"[[step]]
                source_labels = ["a"]
                regex = "f|o"
                action = "drop""#,
                Some(&[("a", "foo")]),
            ),
            (
                &[("a", "foo")],
                r#"[[step]]
                source_labels = ["a"]
                regex = "no-match"
                action = "keep""#,
                None,
            ),
            (
                &[("a", "foo")],
                r#"[[step]]
                source_labels = ["a"]
                regex = "f.*"
                action = "keep""#,
                Some(&[("a", "foo")]),
            ),
            // no replacement must be applied if there is no match
            (
                &[("a", "boo")],
                r#"[[step]]
                source_labels = ["a"]
                regex = "f"
                target_label = "b"
                replacement = "bar""#,
                Some(&[("a", "boo")]),
            ),
            (
                &abc,
                r#"[[step]]
                source_labels = ["c"]
                target_label = "d"
                action = "hashmod"
                modulus = 1000"#,
                Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")]),
            ),
            (
                &[("a", "foo\nbar")],
                r#"[[step]]
                source_labels = ["a"]
                target_label = "b"
                action = "hashmod"
                modulus = 1000"#,
                Some(&[("a", "foo\nbar"), ("b", "734")]),
            ),
            (
                &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
                r#"[[step]]
                regex = "(b.*)"
                replacement = "bar_${1}"
                action = "labelmap""#,
                Some(&[
                    ("a", "foo"),
                    ("b1", "bar"),
                    ("b2", "baz"),
                    ("bar_b1", "bar"),
                    ("bar_b2", "baz"),
                ]),
            ),
            (
                &[
                    ("a", "foo"),
                    ("__meta_my_bar", "aaa"),
                    ("__meta_my_baz", "bbb"),
                    ("__meta_other", "ccc"),
                ],
                r#"[[step]]
                regex = "__meta_(my.*)"
                replacement = "${1}"
                action = "labelmap""#,
                Some(&[
                    ("a", "foo"),
                    ("__meta_my_bar", "aaa"),
                    ("__meta_my_baz", "bbb"),
                    ("__meta_other", "ccc"),
                    ("my_bar", "aaa"),
                    ("my_baz", "bbb"),
                ]),
            ),
            // a target label made of captures
            (
                &[("a", "some-name-value")],
                r#"[[step]]
                source_labels = ["a"]
                regex = "some-([^-]+)-([^,]+)"
                replacement = "${2}"
                target_label = "${1}""#,
                Some(&[("a", "some-name-value"), ("name", "value")]),
            ),
            // an empty replacement (a capture that does not exist) sets nothing
            (
                &[("a", "some-name-value")],
                r#"[[step]]
                source_labels = ["a"]
                regex = "some-([^-]+)-([^,]+)"
                replacement = "${3}"
                target_label = "${1}""#,
                Some(&[("a", "some-name-value")]),
            ),
            // target labels that expand to invalid names are skipped
            (
                &[("a", "some-name-0")],
                r#"[[step]]
                source_labels = ["a"]
                regex = "some-([^-]+)-([^,]+)"
                replacement = "${1}"
                target_label = "${3}"
                [[step]]
                source_labels = ["a"]
                regex = "some-([^-]+)-([^,]+)"
                replacement = "${1}"
                target_label = "${3}"
                [[step]]
                source_labels = ["a"]
                regex = "some-([^-]+)(-[^,]+)"
                replacement = "${1}"
                target_label = "${3}""#,
                Some(&[("a", "some-name-0")]),
            ),
            // a more complex real-life-like use
            (
                &[("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar")],
                r#"[[step]]
                source_labels = ["__meta_sd_tags"]
                regex = "(?:.+,|^)path:(/[^,]+).*"
                replacement = "${1}"
                target_label = "__metrics_path__"
                [[step]]
                source_labels = ["__meta_sd_tags"]
                regex = "(?:.+,|^)job:([^,]+).*"
                replacement = "${1}"
                target_label = "job"
                [[step]]
                source_labels = ["__meta_sd_tags"]
                regex = "(?:.+,|^)label:([^=]+)=([^,]+).*"
                replacement = "${2}"
                target_label = "${1}""#,
                Some(&[
                    ("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar"),
                    ("__metrics_path__", "/secret"),
                    ("job", "some-job"),
                    ("foo", "bar"),
                ]),
            ),
            // prometheus/prometheus#12283
            (
                &[
                    ("__meta_kubernetes_pod_container_port_name", "foo"),
                    ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
                ],
                r#"[[step]]
                regex = "^__meta_kubernetes_pod_container_port_name$"
                action = "labeldrop"
                [[step]]
                source_labels = ["__meta_kubernetes_pod_annotation_XXX_metrics_port"]
                regex = "(.+)"
                replacement = "metrics"
                target_label = "__meta_kubernetes_pod_container_port_name"
                [[step]]
                source_labels = ["__meta_kubernetes_pod_container_port_name"]
                regex = "^metrics$"
                action = "keep""#,
                Some(&[
                    ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
                    ("__meta_kubernetes_pod_container_port_name", "metrics"),
                ]),
            ),
            (
                &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
                r#"[[step]]
                regex = "(b.*)"
                action = "labelkeep""#,
                Some(&[("b1", "bar"), ("b2", "baz")]),
            ),
            (
                &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
                r#"[[step]]
                regex = "(b.*)"
                action = "labeldrop""#,
                Some(&[("a", "foo")]),
            ),
            (
                &[("foo", "bAr123Foo")],
                r#"[[step]]
                source_labels = ["foo"]
                action = "uppercase"
                target_label = "foo_uppercase"
                [[step]]
                source_labels = ["foo"]
                action = "lowercase"
                target_label = "foo_lowercase""#,
                Some(&[
                    ("foo", "bAr123Foo"),
                    ("foo_lowercase", "bar123foo"),
                    ("foo_uppercase", "BAR123FOO"),
                ]),
            ),
            (
                &ports,
                r#"[[step]]
                source_labels = ["__tmp_port"]
                action = "keepequal"
                target_label = "__port1""#,
                Some(&ports),
            ),
            (
                &ports,
                r#"[[step]]
                source_labels = ["__tmp_port"]
                action = "dropequal"
                target_label = "__port1""#,
                None,
            ),
            (
                &ports,
                r#"[[step]]
                source_labels = ["__tmp_port"]
                action = "dropequal"
                target_label = "__port2""#,
                Some(&ports),
            ),
            (
                &ports,
                r#"[[step]]
                source_labels = ["__tmp_port"]
                action = "keepequal"
                target_label = "__port2""#,
                None,
            ),
        ];
        for (index, (input, toml_text, output)) in cases.into_iter().enumerate() {
            let mut relabeled = labels(input);
            let kept = steps(toml_text).process(&mut relabeled);
            match output {
                Some(output) => {
                    assert!(kept, "case {index}: dropped");
                    assert_eq!(relabeled, labels(output), "case {index}");
                }
                None => assert!(!kept, "case {index}: kept {relabeled:?}"),
            }
        }
    }

    /// Prometheus' `TestRelabelValidate`, with Lookout's messages.
    #[test]
    fn invalid_steps_are_refused_with_the_field_and_the_fix() {
        let cases = [
            (
                RelabelConfig {
                    action: Some(Action::Replace),
                    ..Default::default()
                },
                "`alert_relabel_configs[0].target_label`: the replace action needs a `target_label`",
            ),
            (
                RelabelConfig {
                    action: Some(Action::Lowercase),
                    ..Default::default()
                },
                "the lowercase action needs a `target_label`",
            ),
            (
                RelabelConfig {
                    action: Some(Action::Lowercase),
                    target_label: Some("${3}".into()),
                    ..Default::default()
                },
                "`${3}` is not a valid target label for the lowercase action",
            ),
            (
                RelabelConfig {
                    source_labels: vec!["a".into()],
                    regex: Some("some-([^-]+)-([^,]+)".into()),
                    replacement: Some("${1}".into()),
                    target_label: Some("0${3}".into()),
                    ..Default::default()
                },
                "`0${3}` is not a valid target label for the replace action",
            ),
            (
                RelabelConfig {
                    source_labels: vec!["a".into()],
                    regex: Some("some-([^-]+)-([^,]+)".into()),
                    replacement: Some("${1}".into()),
                    target_label: Some("-${3}".into()),
                    ..Default::default()
                },
                "`-${3}` is not a valid target label for the replace action",
            ),
            (
                RelabelConfig {
                    action: Some(Action::HashMod),
                    target_label: Some("shard".into()),
                    ..Default::default()
                },
                "`alert_relabel_configs[0].modulus`: the hashmod action needs a `modulus` above 0",
            ),
            (
                RelabelConfig {
                    regex: Some("(".into()),
                    action: Some(Action::Drop),
                    ..Default::default()
                },
                "`alert_relabel_configs[0].regex`: not a valid RE2 regular expression",
            ),
            (
                RelabelConfig {
                    regex: Some("replica".into()),
                    source_labels: vec!["a".into()],
                    action: Some(Action::LabelDrop),
                    ..Default::default()
                },
                "`alert_relabel_configs[0]`: the labeldrop action takes only `regex`",
            ),
            (
                RelabelConfig {
                    source_labels: vec!["a".into()],
                    target_label: Some("b".into()),
                    regex: Some("x".into()),
                    action: Some(Action::KeepEqual),
                    ..Default::default()
                },
                "the keepequal action takes only `source_labels` and `target_label`",
            ),
            (
                RelabelConfig {
                    source_labels: vec!["not-a-label".into()],
                    action: Some(Action::Drop),
                    ..Default::default()
                },
                "`alert_relabel_configs[0].source_labels`: `not-a-label` is not a label name",
            ),
        ];
        for (config, expected) in cases {
            let errors = validate(std::slice::from_ref(&config), "alert_relabel_configs");
            assert!(
                errors.iter().any(|error| error.contains(expected)),
                "{config:?}: expected {expected:?} in {errors:?}"
            );
        }
        let valid = RelabelConfig {
            source_labels: vec!["a".into()],
            regex: Some("some-([^-]+)-([^,]+)".into()),
            replacement: Some("${1}".into()),
            target_label: Some("${3}".into()),
            ..Default::default()
        };
        assert_eq!(validate(&[valid], "x"), Vec::<String>::new());
        let too_many = vec![RelabelConfig::default(); MAX_STEPS + 1];
        assert!(validate(&too_many, "x")[0].contains("at most 256"));
        let unknown =
            toml::from_str::<RelabelConfig>("action = \"rename\"").expect_err("an unknown action");
        assert!(unknown.to_string().contains("rename"), "{unknown}");
    }

    /// Prometheus' `TestTargetLabelValidity`.
    #[test]
    fn target_label_templates_follow_prometheus() {
        for (template, valid) in [
            ("-label", false),
            ("label", true),
            ("label${1}", true),
            ("${1}label", true),
            ("${1}", true),
            ("${", false),
            ("$", false),
            ("${}", false),
            ("foo${", false),
            ("$1", true),
            ("asd$2asd", true),
            ("-foo${1}bar-", false),
            ("_${1}_", true),
            ("foo${bar}foo", true),
        ] {
            assert_eq!(is_label_template(template), valid, "{template:?}");
        }
    }

    #[test]
    fn dropping_the_replica_label_makes_replicas_alerts_identical() {
        let relabel = steps(
            r#"[[step]]
            regex = "replica"
            action = "labeldrop""#,
        );
        let mut from_a = labels(&[("alertname", "checkout_5xx"), ("replica", "a")]);
        let mut from_b = labels(&[("alertname", "checkout_5xx"), ("replica", "b")]);
        assert!(relabel.process(&mut from_a) && relabel.process(&mut from_b));
        assert_eq!(from_a, from_b);
        assert_eq!(from_a, labels(&[("alertname", "checkout_5xx")]));
    }

    /// Steps written as YAML, the way `prometheus.yml` holds them.
    fn yaml_steps(yaml: &str) -> Result<Relabel, Vec<RelabelError>> {
        let parsed: Vec<RelabelConfig> = serde_yaml_ng::from_str(yaml).expect("the steps parse");
        Relabel::compile(&parsed)
    }

    /// From the old scrape engine's tests: sources joined by `;`, captures expanded, a
    /// replacement that expands to nothing removes the target label.
    #[test]
    fn replace_joins_sources_expands_groups_and_deletes_on_empty() {
        let relabel = steps(
            r#"[[step]]
            source_labels = ["a", "b"]
            regex = "f(.*);(.*)r"
            target_label = "a"
            replacement = "ch${1}-ch${2}"
            [[step]]
            source_labels = ["c"]
            regex = "no-match"
            target_label = "d"
            [[step]]
            source_labels = ["__address__"]
            regex = "([^:]+):\\d+"
            target_label = "host"
            [[step]]
            source_labels = ["empty"]
            target_label = "b""#,
        );
        let mut relabeled = labels(&[
            ("a", "foo"),
            ("b", "bar"),
            ("c", "baz"),
            ("__address__", "db-1:9100"),
        ]);
        assert!(relabel.process(&mut relabeled));
        assert_eq!(
            relabeled,
            labels(&[
                ("a", "choo-chba"),
                ("c", "baz"),
                ("__address__", "db-1:9100"),
                ("host", "db-1"),
            ]),
            "an empty replacement deletes `b`"
        );
    }

    #[test]
    fn keep_and_drop_match_the_whole_joined_value() {
        let keep = steps(
            r#"[[step]]
            source_labels = ["job"]
            regex = "api|web"
            action = "keep""#,
        );
        assert!(keep.process(&mut labels(&[("job", "api")])));
        assert!(
            !keep.process(&mut labels(&[("job", "api-canary")])),
            "anchored at the end"
        );
        let drop = steps(
            r#"[[step]]
            source_labels = ["__name__"]
            regex = "go_.*"
            action = "drop""#,
        );
        assert!(!drop.process(&mut labels(&[("__name__", "go_goroutines")])));
        assert!(drop.process(&mut labels(&[("__name__", "up")])));
        assert!(
            drop.process(&mut labels(&[("__name__", "my_go_thing")])),
            "anchored at the start"
        );
    }

    #[test]
    fn hashmod_is_the_last_eight_bytes_of_the_md5_big_endian() {
        let relabel = steps(
            r#"[[step]]
            source_labels = ["__address__"]
            target_label = "shard"
            modulus = 1000
            action = "hashmod""#,
        );
        // the MD5 of "foo" is acbd18db4cc2f85cedef654fccc4a4d8; its last 8 bytes,
        // big-endian, are 0xedef654fccc4a4d8 = 17145033699835028696
        let mut relabeled = labels(&[("__address__", "foo")]);
        assert!(relabel.process(&mut relabeled));
        assert_eq!(
            relabeled["shard"],
            (17_145_033_699_835_028_696u64 % 1000).to_string()
        );
    }

    /// A Kubernetes-style chain: pod labels mapped, `__meta_` labels dropped, a value
    /// upper-cased.
    #[test]
    fn labelmap_then_labeldrop_then_uppercase() {
        let relabel = steps(
            r#"[[step]]
            regex = "__meta_kubernetes_pod_label_(.+)"
            action = "labelmap"
            [[step]]
            regex = "__meta_.*"
            action = "labeldrop"
            [[step]]
            source_labels = ["app"]
            target_label = "app_upper"
            action = "uppercase""#,
        );
        let mut relabeled = labels(&[
            ("__meta_kubernetes_pod_label_app", "shop"),
            ("__meta_other", "x"),
            ("job", "k8s"),
        ]);
        assert!(relabel.process(&mut relabeled));
        assert_eq!(
            relabeled,
            labels(&[("app", "shop"), ("app_upper", "SHOP"), ("job", "k8s")])
        );
    }

    /// Regression: the old scrape engine set a `lowercase`/`uppercase` target to the
    /// empty string; Prometheus' `labels.Builder.Set` removes it.
    #[test]
    fn lowercase_of_nothing_removes_the_target_label() {
        let relabel = steps(
            r#"[[step]]
            source_labels = ["missing"]
            target_label = "team"
            action = "lowercase""#,
        );
        let mut relabeled = labels(&[("team", "Checkout"), ("job", "api")]);
        assert!(relabel.process(&mut relabeled));
        assert_eq!(relabeled, labels(&[("job", "api")]));
    }

    /// A step as Prometheus writes it back (`/api/v1/status/config`, promtool), every
    /// default spelled out and the action in any case, reads as the step it came from.
    #[test]
    fn steps_as_prometheus_writes_them_read_back() {
        let relabel = yaml_steps(
            r#"
- separator: ;
  regex: replica
  replacement: $1
  action: labeldrop
- source_labels: [__tmp_port]
  separator: ;
  regex: (.*)
  target_label: __port1
  replacement: $1
  action: keepequal
- source_labels: [job]
  separator: ;
  regex: (.*)
  target_label: job_lower
  replacement: $1
  action: LowerCase
- source_labels: [job]
  separator: ;
  regex: (.*)
  modulus: 4
  target_label: copy
  replacement: $1
  action: Replace
"#,
        )
        .expect("valid as Prometheus writes them");
        let mut relabeled = labels(&[
            ("replica", "a"),
            ("__tmp_port", "80"),
            ("__port1", "80"),
            ("job", "API"),
        ]);
        assert!(relabel.process(&mut relabeled));
        assert_eq!(
            relabeled,
            labels(&[
                ("__tmp_port", "80"),
                ("__port1", "80"),
                ("job", "API"),
                ("job_lower", "api"),
                ("copy", "API"),
            ]),
            "a modulus on replace is ignored, as Prometheus ignores it"
        );
    }

    /// What a step serializes to is what Prometheus marshals, and it reads back as the
    /// same step.
    #[test]
    fn steps_serialize_as_prometheus_marshals_them() {
        let configs: Vec<RelabelConfig> = serde_yaml_ng::from_str(
            "- {source_labels: [a], target_label: b}\n- {regex: replica, action: labeldrop}\n- {source_labels: [a], target_label: s, modulus: 8, action: hashmod}\n",
        )
        .expect("parses");
        assert_eq!(
            serde_json::to_value(&configs).expect("serializes"),
            serde_json::json!([
                {"source_labels": ["a"], "separator": ";", "regex": "(.*)", "target_label": "b", "replacement": "$1", "action": "replace"},
                {"separator": ";", "regex": "replica", "replacement": "$1", "action": "labeldrop"},
                {"source_labels": ["a"], "separator": ";", "regex": "(.*)", "modulus": 8, "target_label": "s", "replacement": "$1", "action": "hashmod"},
            ])
        );
        let yaml = serde_yaml_ng::to_string(&configs).expect("serializes");
        let written: Vec<RelabelConfig> = serde_yaml_ng::from_str(&yaml).expect("reads back");
        let written = Relabel::compile(&written).expect("valid after the round trip");
        let original = Relabel::compile(&configs).expect("valid");
        for input in [
            labels(&[("a", "x"), ("replica", "r")]),
            labels(&[("a", "y"), ("b", "z")]),
        ] {
            let (mut first, mut second) = (input.clone(), input);
            assert_eq!(original.process(&mut first), written.process(&mut second));
            assert_eq!(first, second);
        }
    }

    /// Fields Prometheus' `Validate` refuses when they differ from their default, and
    /// the errors' places.
    #[test]
    fn non_default_fields_an_action_does_not_take_are_refused_where_they_are() {
        let errors = yaml_steps(
            r#"
- {regex: replica, separator: ",", action: labeldrop}
- {source_labels: [a], target_label: b, regex: "x", action: dropequal}
- {source_labels: [a], target_label: b, replacement: "$2", action: uppercase}
- {regex: "(", action: drop}
- {source_labels: [a], regex: ".*", action: keep}
"#,
        )
        .expect_err("invalid");
        let placed: Vec<String> = errors
            .iter()
            .map(|error| error.at("relabel_configs"))
            .collect();
        assert_eq!(
            placed[..3],
            [
                "`relabel_configs[0]`: the labeldrop action takes only `regex`",
                "`relabel_configs[1]`: the dropequal action takes only `source_labels` and `target_label`",
                "`relabel_configs[2].replacement`: the uppercase action takes no `replacement`",
            ],
            "{errors:?}"
        );
        let regex = &errors.get(3).expect("the regex error");
        assert_eq!((regex.step, regex.field), (Some(3), Some("regex")));
        assert!(!regex.problem.contains('\n'), "one line: {}", regex.problem);
        assert_eq!(errors.len(), 4, "the keep step is valid: {errors:?}");
    }

    #[test]
    fn an_unknown_action_lists_the_known_ones() {
        let error = serde_yaml_ng::from_str::<RelabelConfig>("action: rename")
            .expect_err("an unknown action");
        let message = error.to_string();
        assert!(
            message.contains("unknown relabel action `rename`")
                && message.contains("labeldrop")
                && message.contains("keepequal"),
            "{message}"
        );
    }
}
