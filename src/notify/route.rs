//! Alertmanager's routing tree with its field names (DESIGN §6): `[routing]` is the root
//! route, `[[routing.routes]]` its children, each with `routes` of its own. An alert
//! enters at the root; a child whose `matchers` (and today's `match` / `match_re`) all
//! hold takes it, and its children are tried in turn; the deepest matching routes
//! deliver to their receivers (`receiver` or the `notify` list, inherited from the parent
//! when unset). A route stops the search among its siblings unless it has
//! `continue = true`. `group_by`, `group_wait`, `group_interval` and `repeat_interval`
//! are inherited from the parent like Alertmanager's; `mute_time_intervals` and
//! `active_time_intervals` are not (as in Alertmanager). Ported from Alertmanager's
//! `dispatch/route.go` (`Route.Match`, `NewRoute`'s inheritance) with its test cases.
//!
//! Lookout's defaults keep a config without routes working as it always did: the root
//! groups by `alertname` (one notification per rule), `group_wait` and `group_interval`
//! are 0 (the changes of a tick go out at once — the "Slack POST ≤ 1 s after the tick"
//! of the seed holds), and without a `repeat_interval` a rule's own `repeat_interval`
//! decides its reminders.
//!
//! Also `[[inhibit_rules]]` (Alertmanager's `inhibit/inhibit.go` semantics): a firing
//! alert matching `source_matchers` mutes the alerts matching `target_matchers` that
//! have the same values of the `equal` labels (a label both lack counts as equal); an
//! alert matching both sides is never muted by another alert matching both sides, so an
//! alert never inhibits itself.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::matcher::{Matcher, MatcherError, all_match, parse_matchers};
use super::time_interval::TimeIntervals;

/// Routes nested deeper than this are refused (a tree is read from untrusted files by
/// `lookout check`).
pub const MAX_ROUTE_DEPTH: usize = 32;

/// `[routing]`: the root route.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Notifiers for alerts no route matches (empty: `slack` when configured, else
    /// `console`).
    pub default: Vec<String>,
    /// Labels that make a group (`["..."]`: every label; `[]`: one group for all, as in
    /// Alertmanager).
    pub group_by: Vec<String>,
    /// How long a new group waits for more alerts before its first notification.
    #[serde(with = "crate::duration_serde")]
    pub group_wait: Duration,
    /// How long a group waits after a notification before sending its changes (0: at
    /// once).
    #[serde(with = "crate::duration_serde")]
    pub group_interval: Duration,
    /// How often a group still firing is sent again (default: the rules' own
    /// `repeat_interval`).
    #[serde(with = "crate::duration_serde::option")]
    pub repeat_interval: Option<Duration>,
    pub routes: Vec<Route>,
}

impl Default for RoutingConfig {
    /// Lookout's defaults: one group per rule, sent at once, reminders by the rules.
    fn default() -> Self {
        RoutingConfig {
            default: Vec::new(),
            group_by: vec!["alertname".into()],
            group_wait: Duration::ZERO,
            group_interval: Duration::ZERO,
            repeat_interval: None,
            routes: Vec::new(),
        }
    }
}

impl RoutingConfig {
    /// Every notifier name the tree names, with the field naming it
    /// (`routing.default`, `routing.routes[1].routes[0].receiver`).
    pub fn receiver_names(&self) -> Vec<(String, String)> {
        fn walk(routes: &[Route], parent: &str, out: &mut Vec<(String, String)>) {
            for (number, route) in routes.iter().enumerate() {
                let field = format!("{parent}.routes[{number}]");
                for name in route.notify.iter().flatten() {
                    out.push((format!("{field}.notify"), name.clone()));
                }
                if let Some(name) = &route.receiver {
                    out.push((format!("{field}.receiver"), name.clone()));
                }
                walk(&route.routes, &field, out);
            }
        }
        let mut out: Vec<(String, String)> = self
            .default
            .iter()
            .map(|name| ("routing.default".to_string(), name.clone()))
            .collect();
        walk(&self.routes, "routing", &mut out);
        out
    }
}

/// One `[[routing.routes]]` entry (or a nested `routes` entry).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Labels that must be equal.
    #[serde(default, rename = "match")]
    pub equal: BTreeMap<String, String>,
    /// Labels that must match these regexes (anchored, as in Alertmanager).
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    /// Alertmanager's matcher strings: `severity="critical"`, `service=~"check.*"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// The notifiers (unset: the parent's).
    #[serde(default)]
    pub notify: Option<Vec<String>>,
    /// One notifier, Alertmanager's name for it (unset: the parent's).
    #[serde(default)]
    pub receiver: Option<String>,
    /// Keep looking at later sibling routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default, with = "crate::duration_serde::option")]
    pub group_wait: Option<Duration>,
    #[serde(default, with = "crate::duration_serde::option")]
    pub group_interval: Option<Duration>,
    #[serde(default, with = "crate::duration_serde::option")]
    pub repeat_interval: Option<Duration>,
    /// Names of `[[time_intervals]]` during which this route sends nothing.
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    /// Names of `[[time_intervals]]` outside which this route sends nothing.
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// One `[[inhibit_rules]]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InhibitRuleConfig {
    /// Matchers a firing alert must satisfy to mute others.
    pub source_matchers: Vec<String>,
    /// Matchers of the alerts it mutes.
    pub target_matchers: Vec<String>,
    /// Labels whose values must be equal in both.
    pub equal: Vec<String>,
}

/// Which labels make a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// `...`: every label (each alert its own group).
    All,
    Labels(Vec<String>),
}

impl GroupBy {
    fn from_config(labels: &[String]) -> GroupBy {
        if labels.iter().any(|label| label == "...") {
            GroupBy::All
        } else {
            GroupBy::Labels(labels.to_vec())
        }
    }

    /// The group labels of an alert with `labels` (a missing label is left out).
    pub fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match self {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|name| Some((name.clone(), labels.get(name)?.clone())))
                .collect(),
        }
    }
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct RouteNode {
    /// Its config path: `routing`, `routing.routes[1].routes[0]`.
    pub path: String,
    /// Alertmanager's route key: the matchers from the root, `{}/{severity="critical"}`.
    pub key: String,
    matchers: Vec<Matcher>,
    pub receivers: Vec<String>,
    pub continue_matching: bool,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Option<Duration>,
    pub mute_time_intervals: Vec<String>,
    pub active_time_intervals: Vec<String>,
    children: Vec<RouteNode>,
}

impl RouteNode {
    /// Whether notifications of this route wait (for `group_wait` or `group_interval`),
    /// listing every firing alert of the group each time, as Alertmanager's; otherwise
    /// each tick's changes go out at once, as they always did.
    pub fn batches(&self) -> bool {
        !self.group_wait.is_zero() || !self.group_interval.is_zero()
    }

    /// The routes an alert with `labels` takes below (and including) this one, in order
    /// (Alertmanager's `Route.Match`).
    fn matching<'a>(&'a self, labels: &BTreeMap<String, String>, found: &mut Vec<&'a RouteNode>) {
        if !all_match(&self.matchers, labels) {
            return;
        }
        let before = found.len();
        for child in &self.children {
            let count = found.len();
            child.matching(labels, found);
            if found.len() > count && !child.continue_matching {
                break;
            }
        }
        if found.len() == before {
            found.push(self);
        }
    }

    fn find(&self, path: &str) -> Option<&RouteNode> {
        if self.path == path {
            return Some(self);
        }
        self.children.iter().find_map(|child| child.find(path))
    }
}

/// The routing tree and the inhibit rules of a config.
#[derive(Debug, Clone)]
pub struct RouteTree {
    root: RouteNode,
    /// Where alerts of a rule with its own `notify` go: no route, no waiting.
    rule_notify: RouteNode,
}

/// Where one alert goes: a route's receiver, and its group there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Destination {
    pub notifier: String,
    /// The route's config path (`rule notify` for a rule's own `notify`).
    pub route: String,
    /// Alertmanager's group key: `{route key}:{group labels}`.
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
}

/// The path of the pseudo-route of a rule's own `notify`.
pub const RULE_NOTIFY: &str = "rule notify";

impl RouteTree {
    /// Compiles a validated `[routing]`; `default` is the root's notifiers (the resolved
    /// `routing.default`). Invalid parts (which validation reports) are skipped.
    pub fn build(routing: &RoutingConfig, default: Vec<String>) -> RouteTree {
        let root = RouteNode {
            path: "routing".into(),
            key: "{}".into(),
            matchers: Vec::new(),
            receivers: default,
            continue_matching: false,
            group_by: GroupBy::from_config(&routing.group_by),
            group_wait: routing.group_wait,
            group_interval: routing.group_interval,
            repeat_interval: routing.repeat_interval,
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
            children: Vec::new(),
        };
        let children = compile_children(&routing.routes, &root, 1);
        let rule_notify = RouteNode {
            path: RULE_NOTIFY.into(),
            group_by: GroupBy::Labels(vec!["alertname".into()]),
            group_wait: Duration::ZERO,
            group_interval: Duration::ZERO,
            repeat_interval: None,
            ..root.clone()
        };
        RouteTree {
            root: RouteNode { children, ..root },
            rule_notify,
        }
    }

    /// Where an alert with `labels` goes: each matching route's receivers, with its
    /// group. A rule's own `notify` (non-empty) replaces the routes.
    pub fn destinations(
        &self,
        rule_notify: &[String],
        labels: &BTreeMap<String, String>,
    ) -> Vec<(Destination, &RouteNode)> {
        let routes: Vec<(&RouteNode, Vec<String>)> = if rule_notify.is_empty() {
            let mut found = Vec::new();
            self.root.matching(labels, &mut found);
            found
                .into_iter()
                .map(|route| (route, route.receivers.clone()))
                .collect()
        } else {
            vec![(&self.rule_notify, rule_notify.to_vec())]
        };
        let mut destinations = Vec::new();
        for (route, receivers) in routes {
            let group_labels = route.group_by.group_labels(labels);
            let group_key = format!("{}:{}", route.key, labels_text(&group_labels));
            for notifier in receivers {
                destinations.push((
                    Destination {
                        notifier,
                        route: route.path.clone(),
                        group_key: group_key.clone(),
                        group_labels: group_labels.clone(),
                    },
                    route,
                ));
            }
        }
        destinations
    }

    /// The route at config path `path` (`None`: the config changed since).
    pub fn route(&self, path: &str) -> Option<&RouteNode> {
        if path == RULE_NOTIFY {
            return Some(&self.rule_notify);
        }
        self.root.find(path)
    }

    /// Every receiver name the tree uses, with the path of the route naming it.
    pub fn receivers(&self) -> Vec<(String, String)> {
        fn walk(node: &RouteNode, out: &mut Vec<(String, String)>) {
            for name in &node.receivers {
                out.push((node.path.clone(), name.clone()));
            }
            for child in &node.children {
                walk(child, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }
}

/// `{a="1", b="2"}`, Alertmanager's label-set text.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn compile_children(routes: &[Route], parent: &RouteNode, depth: usize) -> Vec<RouteNode> {
    if depth > MAX_ROUTE_DEPTH {
        return Vec::new();
    }
    routes
        .iter()
        .enumerate()
        .map(|(number, route)| {
            let path = if parent.path == "routing" {
                format!("routing.routes[{number}]")
            } else {
                format!("{}.routes[{number}]", parent.path)
            };
            let matchers = route_matchers(route)
                .into_iter()
                .filter_map(|(_, matcher)| matcher.ok())
                .flatten()
                .collect::<Vec<_>>();
            let mut key_parts: Vec<String> = matchers.iter().map(Matcher::to_string).collect();
            key_parts.sort();
            let node = RouteNode {
                key: format!("{}/{{{}}}", parent.key, key_parts.join(",")),
                path,
                matchers,
                receivers: route_receivers(route).unwrap_or_else(|| parent.receivers.clone()),
                continue_matching: route.continue_matching,
                group_by: route
                    .group_by
                    .as_deref()
                    .map_or_else(|| parent.group_by.clone(), GroupBy::from_config),
                group_wait: route.group_wait.unwrap_or(parent.group_wait),
                group_interval: route.group_interval.unwrap_or(parent.group_interval),
                repeat_interval: route.repeat_interval.or(parent.repeat_interval),
                mute_time_intervals: route.mute_time_intervals.clone(),
                active_time_intervals: route.active_time_intervals.clone(),
                children: Vec::new(),
            };
            let children = compile_children(&route.routes, &node, depth + 1);
            RouteNode { children, ..node }
        })
        .collect()
}

/// A route's receivers as written (`None`: inherited).
fn route_receivers(route: &Route) -> Option<Vec<String>> {
    match (&route.notify, &route.receiver) {
        (Some(notify), _) => Some(notify.clone()),
        (None, Some(receiver)) => Some(vec![receiver.clone()]),
        (None, None) => None,
    }
}

type ParsedMatchers = Result<Vec<Matcher>, MatcherError>;

/// A route's matchers with the field each comes from: `match.NAME`, `match_re.NAME`,
/// `matchers[N]`.
fn route_matchers(route: &Route) -> Vec<(String, ParsedMatchers)> {
    let mut out = Vec::new();
    for (label, value) in &route.equal {
        out.push((
            format!("match.{label}"),
            Matcher::new(label, super::matcher::MatchType::Equal, value).map(|m| vec![m]),
        ));
    }
    for (label, pattern) in &route.match_re {
        out.push((
            format!("match_re.{label}"),
            Matcher::new(label, super::matcher::MatchType::Regex, pattern).map(|m| vec![m]),
        ));
    }
    for (index, text) in route.matchers.iter().enumerate() {
        out.push((format!("matchers[{index}]"), parse_matchers(text)));
    }
    out
}

/// Checks the routing tree and the inhibit rules against the named time intervals; each
/// error names its field (`routing.routes[1].routes[0].matchers[2]`).
pub fn validate(
    routing: &RoutingConfig,
    inhibit_rules: &[InhibitRuleConfig],
    intervals: &TimeIntervals,
) -> Vec<String> {
    let mut errors = Vec::new();
    for (name, interval) in [
        ("group_wait", Some(routing.group_wait)),
        ("group_interval", Some(routing.group_interval)),
        ("repeat_interval", routing.repeat_interval),
    ] {
        check_interval(&mut errors, &format!("routing.{name}"), name, interval);
    }
    check_group_by(&mut errors, "routing", Some(&routing.group_by));
    for (number, route) in routing.routes.iter().enumerate() {
        validate_route(
            &mut errors,
            route,
            &format!("routing.routes[{number}]"),
            intervals,
            1,
        );
    }
    for (number, rule) in inhibit_rules.iter().enumerate() {
        let field = format!("inhibit_rules[{number}]");
        for (side, list) in [
            ("source_matchers", &rule.source_matchers),
            ("target_matchers", &rule.target_matchers),
        ] {
            if list.is_empty() {
                errors.push(format!(
                    "`{field}.{side}`: name at least one matcher (`severity=\"critical\"`)"
                ));
            }
            for (index, text) in list.iter().enumerate() {
                if let Err(error) = parse_matchers(text) {
                    errors.push(format!("`{field}.{side}[{index}]`: {error}"));
                }
            }
        }
        for (index, label) in rule.equal.iter().enumerate() {
            if !valid_label_name(label) {
                errors.push(format!(
                    "`{field}.equal[{index}]`: `{label}` is not a label name"
                ));
            }
        }
    }
    errors
}

fn validate_route(
    errors: &mut Vec<String>,
    route: &Route,
    field: &str,
    intervals: &TimeIntervals,
    depth: usize,
) {
    if depth > MAX_ROUTE_DEPTH {
        errors.push(format!(
            "`{field}`: routes nest more than {MAX_ROUTE_DEPTH} deep"
        ));
        return;
    }
    match (&route.notify, &route.receiver) {
        (Some(_), Some(_)) => {
            errors.push(format!("`{field}`: set `receiver` or `notify`, not both"))
        }
        (Some(notify), None) if notify.is_empty() => errors.push(format!(
            "`{field}.notify`: name at least one notifier (\"ui\" to send nothing)"
        )),
        (None, Some(receiver)) if receiver.trim().is_empty() => {
            errors.push(format!("`{field}.receiver`: name a notifier"))
        }
        _ => {}
    }
    for (part, parsed) in route_matchers(route) {
        if let Err(error) = parsed {
            errors.push(format!("`{field}.{part}`: {error}"));
        }
    }
    for (name, interval) in [
        ("group_wait", route.group_wait),
        ("group_interval", route.group_interval),
        ("repeat_interval", route.repeat_interval),
    ] {
        check_interval(errors, &format!("{field}.{name}"), name, interval);
    }
    check_group_by(errors, field, route.group_by.as_deref());
    for (kind, names) in [
        ("mute_time_intervals", &route.mute_time_intervals),
        ("active_time_intervals", &route.active_time_intervals),
    ] {
        for (index, name) in names.iter().enumerate() {
            if !intervals.contains_name(name) {
                errors.push(format!(
                    "`{field}.{kind}[{index}]`: no `[[time_intervals]]` is named `{name}`"
                ));
            }
        }
    }
    for (number, child) in route.routes.iter().enumerate() {
        validate_route(
            errors,
            child,
            &format!("{field}.routes[{number}]"),
            intervals,
            depth + 1,
        );
    }
}

fn check_interval(errors: &mut Vec<String>, field: &str, name: &str, value: Option<Duration>) {
    // Alertmanager refuses a zero repeat_interval; Lookout's zero group timers mean "at once"
    if name == "repeat_interval" && value.is_some_and(|value| value < Duration::from_secs(1)) {
        errors.push(format!("`{field}`: must be at least 1s"));
    }
    if value.is_some_and(|value| value > Duration::from_secs(366 * 86_400)) {
        errors.push(format!("`{field}`: must be at most a year"));
    }
}

fn check_group_by(errors: &mut Vec<String>, field: &str, group_by: Option<&[String]>) {
    let Some(labels) = group_by else { return };
    if labels.iter().any(|label| label == "...") && labels.len() > 1 {
        errors.push(format!(
            "`{field}.group_by`: `...` groups by every label; it cannot be combined with others"
        ));
    }
    for (index, label) in labels.iter().enumerate() {
        if label != "..." && !valid_label_name(label) {
            errors.push(format!(
                "`{field}.group_by[{index}]`: `{label}` is not a label name"
            ));
        }
    }
}

fn valid_label_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
}

/// The compiled `[[inhibit_rules]]`.
#[derive(Debug, Clone, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
}

#[derive(Debug, Clone)]
struct InhibitRule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

impl Inhibitor {
    /// Compiles validated rules (a rule that does not parse is skipped).
    pub fn build(configs: &[InhibitRuleConfig]) -> Inhibitor {
        let parse = |list: &[String]| -> Option<Vec<Matcher>> {
            let mut all = Vec::new();
            for text in list {
                all.extend(parse_matchers(text).ok()?);
            }
            Some(all)
        };
        Inhibitor {
            rules: configs
                .iter()
                .filter_map(|config| {
                    Some(InhibitRule {
                        source: parse(&config.source_matchers)?,
                        target: parse(&config.target_matchers)?,
                        equal: config.equal.clone(),
                    })
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The firing alert (of `firing`, by fingerprint) that mutes an alert with `labels`,
    /// if one does (Alertmanager's `Inhibitor.Mutes`).
    pub fn inhibited_by<'a>(
        &self,
        labels: &BTreeMap<String, String>,
        firing: impl Iterator<Item = (&'a String, &'a BTreeMap<String, String>)> + Clone,
    ) -> Option<&'a BTreeMap<String, String>> {
        for rule in &self.rules {
            if !all_match(&rule.target, labels) {
                continue;
            }
            // an alert matching both sides is not muted by another matching both sides
            let two_sided = all_match(&rule.source, labels);
            let found = firing.clone().find(|(_, source)| {
                all_match(&rule.source, source)
                    && rule
                        .equal
                        .iter()
                        .all(|name| source.get(name) == labels.get(name))
                    && !(two_sided && all_match(&rule.target, source))
            });
            if let Some((_, source)) = found {
                return Some(source);
            }
        }
        None
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

    fn tree(text: &str) -> RouteTree {
        let config: crate::config::Config = toml::from_str(text).expect("parses");
        if let Err(error) = config.validate("lookout.toml") {
            // the trees here name receivers without configuring them
            assert!(
                error
                    .errors
                    .iter()
                    .all(|error| error.contains("no notifier is called")),
                "{:?}",
                error.errors
            );
        }
        RouteTree::build(&config.routing, config.routing.default.clone())
    }

    /// Alertmanager's `TestRouteMatch` tree (dispatch/route_test.go), in TOML.
    #[test]
    fn routes_match_as_alertmanagers_tree_does() {
        let tree = tree(
            r#"
            [routing]
            default = ["notify-def"]
            group_by = ["..."]
            group_wait = "0s"
            [[routing.routes]]
            matchers = ['owner="team-A"']
            receiver = "notify-A"
              [[routing.routes.routes]]
              matchers = ['env="testing"']
              receiver = "notify-testing"
              group_by = ["..."]
              [[routing.routes.routes]]
              matchers = ['env="production"']
              receiver = "notify-productionA"
              group_wait = "1m"
              continue = true
              [[routing.routes.routes]]
              matchers = ['env=~"produ.*"', 'job=~".*"']
              receiver = "notify-productionB"
              group_wait = "30s"
              group_interval = "5m"
              repeat_interval = "1h"
              group_by = ["job"]
            [[routing.routes]]
            matchers = ['owner=~"team-(B|C)"']
            group_by = ["foo", "bar"]
            group_wait = "2m"
            receiver = "notify-BC"
            [[routing.routes]]
            matchers = ['group_by="role"']
            group_by = ["role"]
              [[routing.routes.routes]]
              matchers = ['env="testing"']
              receiver = "notify-testing"
                [[routing.routes.routes.routes]]
                matchers = ['wait="long"']
                group_wait = "2m"
            "#,
        );
        let routed = |pairs: &[(&str, &str)]| -> Vec<(String, String, Duration)> {
            tree.destinations(&[], &labels(pairs))
                .into_iter()
                .map(|(destination, route)| {
                    (destination.notifier, route.path.clone(), route.group_wait)
                })
                .collect()
        };
        let one = |notifier: &str, path: &str, wait: u64| {
            (
                notifier.to_string(),
                path.to_string(),
                Duration::from_secs(wait),
            )
        };
        assert_eq!(
            routed(&[("owner", "team-A")]),
            [one("notify-A", "routing.routes[0]", 0)]
        );
        assert_eq!(
            routed(&[("owner", "team-A"), ("env", "unset")]),
            [one("notify-A", "routing.routes[0]", 0)]
        );
        assert_eq!(
            routed(&[("owner", "team-C")]),
            [one("notify-BC", "routing.routes[1]", 120)]
        );
        assert_eq!(
            routed(&[("owner", "team-A"), ("env", "testing")]),
            [one("notify-testing", "routing.routes[0].routes[0]", 0)]
        );
        assert_eq!(
            routed(&[("owner", "team-A"), ("env", "production")]),
            [
                one("notify-productionA", "routing.routes[0].routes[1]", 60),
                one("notify-productionB", "routing.routes[0].routes[2]", 30),
            ],
            "continue lets the next sibling match too"
        );
        assert_eq!(
            routed(&[("group_by", "role")]),
            [one("notify-def", "routing.routes[2]", 0)],
            "the receiver is inherited"
        );
        assert_eq!(
            routed(&[("group_by", "role"), ("env", "testing")]),
            [one("notify-testing", "routing.routes[2].routes[0]", 0)]
        );
        assert_eq!(
            routed(&[("group_by", "role"), ("env", "testing"), ("wait", "long")]),
            [one(
                "notify-testing",
                "routing.routes[2].routes[0].routes[0]",
                120
            )],
            "the receiver inherited two levels down"
        );
        assert_eq!(
            routed(&[("owner", "nobody")]),
            [one("notify-def", "routing", 0)]
        );
        // group_by: inherited, `...` for every label, and the group key
        let (production_b, route) = tree
            .destinations(
                &[],
                &labels(&[("owner", "team-A"), ("env", "production"), ("job", "x")]),
            )
            .into_iter()
            .nth(1)
            .expect("two routes");
        assert_eq!(route.group_by, GroupBy::Labels(vec!["job".into()]));
        assert_eq!(route.repeat_interval, Some(Duration::from_secs(3600)));
        assert_eq!(route.group_interval, Duration::from_secs(300));
        assert_eq!(
            production_b.group_key,
            "{}/{owner=\"team-A\"}/{env=~\"produ.*\",job=~\".*\"}:{job=\"x\"}"
        );
        let (role, _) = tree
            .destinations(
                &[],
                &labels(&[("group_by", "role"), ("role", "db"), ("x", "y")]),
            )
            .remove(0);
        assert_eq!(role.group_labels, labels(&[("role", "db")]));
        let (all, _) = tree
            .destinations(&[], &labels(&[("owner", "nobody"), ("x", "y")]))
            .remove(0);
        assert_eq!(all.group_labels, labels(&[("owner", "nobody"), ("x", "y")]));
    }

    #[test]
    fn the_default_groups_by_rule_and_sends_at_once() {
        let config = RoutingConfig::default();
        let tree = RouteTree::build(&config, vec!["console".into()]);
        let (destination, route) = tree
            .destinations(
                &[],
                &labels(&[("alertname", "checkout_5xx"), ("service", "a")]),
            )
            .remove(0);
        assert_eq!(destination.notifier, "console");
        assert_eq!(destination.group_key, "{}:{alertname=\"checkout_5xx\"}");
        assert!(!route.batches());
        let (own, _) = tree
            .destinations(&["pager".into()], &labels(&[("alertname", "x")]))
            .remove(0);
        assert_eq!(
            (own.notifier.as_str(), own.route.as_str()),
            ("pager", RULE_NOTIFY)
        );
    }

    #[test]
    fn a_bad_tree_names_the_field_path() {
        let config: crate::config::Config = toml::from_str(
            r#"
            [routing]
            group_by = ["...", "x"]
            [[routing.routes]]
            matchers = ['severity="critical"']
            [[routing.routes]]
            receiver = "a"
            notify = ["b"]
              [[routing.routes.routes]]
              matchers = ['a="1"', 'b="2"', 'c=~"("']
              mute_time_intervals = ["nights"]
              repeat_interval = "0s"
            [[inhibit_rules]]
            source_matchers = ['severity=critical"']
            target_matchers = []
            equal = ["not-a-label"]
            "#,
        )
        .expect("parses");
        let errors = config.validate("lookout.toml").expect_err("invalid").errors;
        let text = errors.join("\n");
        for expected in [
            "`routing.group_by`: `...` groups by every label",
            "`routing.routes[1]`: set `receiver` or `notify`, not both",
            "`routing.routes[1].routes[0].matchers[2]`: invalid regex",
            "`routing.routes[1].routes[0].mute_time_intervals[0]`: no `[[time_intervals]]` is named `nights`",
            "`routing.routes[1].routes[0].repeat_interval`: must be at least 1s",
            "`inhibit_rules[0].source_matchers[0]`: matcher value",
            "`inhibit_rules[0].target_matchers`: name at least one matcher",
            "`inhibit_rules[0].equal[0]`",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    /// Alertmanager's inhibition semantics (inhibit/inhibit_test.go `TestInhibitRuleMatches`
    /// and the self-inhibition case).
    #[test]
    fn a_firing_critical_mutes_the_warning_of_the_same_service_only() {
        let inhibitor = Inhibitor::build(&[InhibitRuleConfig {
            source_matchers: vec!["severity=critical".into()],
            target_matchers: vec!["severity=warning".into()],
            equal: vec!["service".into()],
        }]);
        let critical = labels(&[("severity", "critical"), ("service", "checkout")]);
        let firing = BTreeMap::from([("c".to_string(), critical.clone())]);
        let warning = |service: &str| labels(&[("severity", "warning"), ("service", service)]);
        assert_eq!(
            inhibitor.inhibited_by(&warning("checkout"), firing.iter()),
            Some(&critical)
        );
        assert_eq!(
            inhibitor.inhibited_by(&warning("search"), firing.iter()),
            None
        );
        assert_eq!(
            inhibitor.inhibited_by(&critical, firing.iter()),
            None,
            "a source is not a target"
        );
        // both sides lack `service`: equal
        let bare = labels(&[("severity", "critical")]);
        let firing = BTreeMap::from([("b".to_string(), bare)]);
        assert!(
            inhibitor
                .inhibited_by(&labels(&[("severity", "warning")]), firing.iter())
                .is_some()
        );
        // an alert matching both sides does not inhibit itself (nor another such alert)
        let both = Inhibitor::build(&[InhibitRuleConfig {
            source_matchers: vec!["a=1".into()],
            target_matchers: vec!["b=1".into()],
            equal: Vec::new(),
        }]);
        let itself = labels(&[("a", "1"), ("b", "1")]);
        let firing = BTreeMap::from([("self".to_string(), itself.clone())]);
        assert_eq!(both.inhibited_by(&itself, firing.iter()), None);
        let source_only = labels(&[("a", "1")]);
        let firing = BTreeMap::from([("s".to_string(), source_only.clone())]);
        assert_eq!(
            both.inhibited_by(&itself, firing.iter()),
            Some(&source_only)
        );
    }
}
