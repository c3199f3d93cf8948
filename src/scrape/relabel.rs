//! Prometheus' relabelling (`relabel_configs`, `metric_relabel_configs`), with its field
//! names and defaults: `source_labels`, `separator` (`;`), `target_label`, `regex`
//! (`(.*)`, anchored), `modulus`, `replacement` (`$1`), `action` (`replace`). Actions:
//! `replace`, `keep`, `drop`, `hashmod`, `labelmap`, `labeldrop`, `labelkeep`, and
//! Prometheus 3's `lowercase`, `uppercase`, `keepequal`, `dropequal`.
//!
//! `hashmod` is Prometheus' exactly: the last 8 bytes of the MD5 of the joined source
//! values, big-endian, modulo `modulus`, so targets shard the same way as in Prometheus.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
    KeepEqual,
    DropEqual,
}

/// One relabelling rule, as written in config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default)]
    pub target_label: Option<String>,
    #[serde(default = "default_regex")]
    pub regex: String,
    #[serde(default)]
    pub modulus: Option<u64>,
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default)]
    pub action: Action,
}

fn default_separator() -> String {
    ";".into()
}

fn default_regex() -> String {
    "(.*)".into()
}

fn default_replacement() -> String {
    "$1".into()
}

/// A rule ready to apply.
#[derive(Debug, Clone)]
pub struct Relabel {
    config: RelabelConfig,
    regex: regex::Regex,
}

impl Relabel {
    /// Checks a rule; the error says which field is wrong and why.
    pub fn new(config: RelabelConfig) -> Result<Relabel, String> {
        let regex = regex::Regex::new(&format!("^(?s:{})$", config.regex))
            .map_err(|error| format!("`regex`: {error}"))?;
        let needs_target = matches!(
            config.action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && config.target_label.is_none() {
            return Err(
                format!("`target_label`: the {:?} action needs one", config.action).to_lowercase(),
            );
        }
        if config.action == Action::HashMod && config.modulus.unwrap_or(0) == 0 {
            return Err("`modulus`: the hashmod action needs a modulus above 0".into());
        }
        if matches!(config.action, Action::LabelDrop | Action::LabelKeep)
            && (!config.source_labels.is_empty() || config.target_label.is_some())
        {
            return Err(
                "`source_labels`/`target_label`: labeldrop and labelkeep take only `regex`".into(),
            );
        }
        Ok(Relabel { config, regex })
    }
}

/// Applies `rules` in order; `None` when a rule drops the target or series.
pub fn apply(
    rules: &[Relabel],
    mut labels: BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    for rule in rules {
        let config = &rule.config;
        let value = config
            .source_labels
            .iter()
            .map(|name| labels.get(name).map_or("", String::as_str))
            .collect::<Vec<_>>()
            .join(&config.separator);
        let target = config.target_label.as_deref().unwrap_or_default();
        match config.action {
            Action::Keep if !rule.regex.is_match(&value) => return None,
            Action::Drop if rule.regex.is_match(&value) => return None,
            Action::Keep | Action::Drop => {}
            Action::KeepEqual if labels.get(target).map_or("", String::as_str) != value => {
                return None;
            }
            Action::DropEqual if labels.get(target).map_or("", String::as_str) == value => {
                return None;
            }
            Action::KeepEqual | Action::DropEqual => {}
            Action::Replace => {
                let Some(captures) = rule.regex.captures(&value) else {
                    continue;
                };
                let mut name = String::new();
                captures.expand(target, &mut name);
                let mut replaced = String::new();
                captures.expand(&config.replacement, &mut replaced);
                if !valid_label_name(&name) {
                    continue;
                }
                if replaced.is_empty() {
                    labels.remove(&name);
                } else {
                    labels.insert(name, replaced);
                }
            }
            Action::Lowercase => {
                labels.insert(target.to_string(), value.to_lowercase());
            }
            Action::Uppercase => {
                labels.insert(target.to_string(), value.to_uppercase());
            }
            Action::HashMod => {
                use md5::Digest;
                let digest = md5::Md5::digest(value.as_bytes());
                let tail: [u8; 8] = digest[8..16].try_into().expect("md5 has 16 bytes");
                let modulus = config.modulus.unwrap_or(1);
                labels.insert(
                    target.to_string(),
                    (u64::from_be_bytes(tail) % modulus).to_string(),
                );
            }
            Action::LabelMap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(name, value)| {
                        let captures = rule.regex.captures(name)?;
                        let mut renamed = String::new();
                        captures.expand(&config.replacement, &mut renamed);
                        Some((renamed, value.clone()))
                    })
                    .collect();
                labels.extend(mapped);
            }
            Action::LabelDrop => labels.retain(|name, _| !rule.regex.is_match(name)),
            Action::LabelKeep => labels.retain(|name, _| rule.regex.is_match(name)),
        }
    }
    Some(labels)
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|char| char.is_ascii_alphanumeric() || char == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml_like: serde_json::Value) -> Vec<Relabel> {
        serde_json::from_value::<Vec<RelabelConfig>>(yaml_like)
            .expect("config")
            .into_iter()
            .map(|config| Relabel::new(config).expect("valid"))
            .collect()
    }

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn replace_joins_sources_expands_groups_and_deletes_on_empty() {
        let rules = rules(serde_json::json!([
            {"source_labels": ["a", "b"], "regex": "f(.*);(.*)r", "target_label": "a", "replacement": "ch${1}-ch${2}"},
            {"source_labels": ["c"], "regex": "no-match", "target_label": "d"},
            {"source_labels": ["__address__"], "regex": "([^:]+):\\d+", "target_label": "host"},
            {"source_labels": ["empty"], "target_label": "b"},
        ]));
        let out = apply(
            &rules,
            set(&[
                ("a", "foo"),
                ("b", "bar"),
                ("c", "baz"),
                ("__address__", "db-1:9100"),
            ]),
        )
        .expect("kept");
        assert_eq!(
            out,
            set(&[
                ("a", "choo-chba"),
                ("c", "baz"),
                ("__address__", "db-1:9100"),
                ("host", "db-1")
            ]),
            "an empty replacement deletes `b`"
        );
    }

    #[test]
    fn keep_drop_and_the_equal_variants_decide_on_the_whole_value() {
        let keep = rules(
            serde_json::json!([{"source_labels": ["job"], "regex": "api|web", "action": "keep"}]),
        );
        assert!(apply(&keep, set(&[("job", "api")])).is_some());
        assert!(
            apply(&keep, set(&[("job", "api-canary")])).is_none(),
            "anchored"
        );
        let drop = rules(
            serde_json::json!([{"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}]),
        );
        assert!(apply(&drop, set(&[("__name__", "go_goroutines")])).is_none());
        assert!(apply(&drop, set(&[("__name__", "up")])).is_some());
        let keep_equal = rules(
            serde_json::json!([{"source_labels": ["port"], "target_label": "expected", "action": "keepequal"}]),
        );
        assert!(apply(&keep_equal, set(&[("port", "80"), ("expected", "80")])).is_some());
        assert!(apply(&keep_equal, set(&[("port", "80"), ("expected", "81")])).is_none());
    }

    #[test]
    fn hashmod_shards_like_prometheus() {
        let rules = rules(serde_json::json!([
            {"source_labels": ["__address__"], "target_label": "shard", "modulus": 1000, "action": "hashmod"}
        ]));
        // the MD5 of "foo" is acbd18db4cc2f85cedef654fccc4a4d8; its last 8 bytes,
        // big-endian, are 0xedef654fccc4a4d8 = 17145033699835028696
        let out = apply(&rules, set(&[("__address__", "foo")])).expect("kept");
        assert_eq!(
            out["shard"],
            (17_145_033_699_835_028_696u64 % 1000).to_string()
        );
    }

    #[test]
    fn labelmap_labeldrop_labelkeep_and_case() {
        let rules = rules(serde_json::json!([
            {"regex": "__meta_kubernetes_pod_label_(.+)", "action": "labelmap"},
            {"regex": "__meta_.*", "action": "labeldrop"},
            {"source_labels": ["app"], "target_label": "app_upper", "action": "uppercase"},
        ]));
        let out = apply(
            &rules,
            set(&[
                ("__meta_kubernetes_pod_label_app", "shop"),
                ("__meta_other", "x"),
                ("job", "k8s"),
            ]),
        )
        .expect("kept");
        assert_eq!(
            out,
            set(&[("app", "shop"), ("app_upper", "SHOP"), ("job", "k8s")])
        );
        let keep_only = rules_keep();
        let out = apply(
            &keep_only,
            set(&[("job", "a"), ("instance", "b"), ("noise", "c")]),
        )
        .expect("kept");
        assert_eq!(out, set(&[("instance", "b"), ("job", "a")]));
    }

    fn rules_keep() -> Vec<Relabel> {
        rules(serde_json::json!([{"regex": "job|instance", "action": "labelkeep"}]))
    }

    #[test]
    fn bad_rules_name_the_field() {
        let bad = |value: serde_json::Value| {
            Relabel::new(serde_json::from_value(value).expect("parses")).expect_err("invalid")
        };
        assert!(bad(serde_json::json!({"regex": "("})).contains("`regex`"));
        assert!(bad(serde_json::json!({"source_labels": ["a"]})).contains("`target_label`"));
        assert!(bad(serde_json::json!({"source_labels": ["a"], "target_label": "b", "action": "hashmod"})).contains("`modulus`"));
        assert!(
            bad(serde_json::json!({"source_labels": ["a"], "action": "labeldrop"}))
                .contains("labeldrop")
        );
        assert!(
            serde_json::from_value::<RelabelConfig>(serde_json::json!({"action": "rename"}))
                .expect_err("unknown action")
                .to_string()
                .contains("rename")
        );
    }
}
