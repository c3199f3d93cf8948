//! The Drain parse tree (He et al. 2017, "Drain: An Online Log Parsing Approach with
//! Fixed Depth Tree"), following drain3's `Drain` class: a line's masked tokens go down
//! a fixed-depth tree — by token count, then by its first `prefix_tokens` tokens (a
//! token with digits, or one past `max_children` siblings, goes down the `<*>` branch) —
//! to a leaf of clusters; the most similar cluster (share of equal tokens, wildcards not
//! counted) takes the line if the similarity reaches the threshold, its template getting
//! `<*>` where they differ; otherwise the line starts a cluster.
//!
//! Hand-written: the Rust ports on crates.io (`drain3`, `drainrs`, `logdrain`) are young
//! single-author crates, none a standard of the field, and the algorithm is small.
//!
//! Bounded: a line's bytes and tokens ([`super::mask::LineLimits`]), the children of a
//! node (`max_children`), and the clusters kept (`max_clusters`: past it the least
//! recently seen tenth is forgotten, as drain3's LRU cache does). No IO, no clock: times
//! are the caller's (event times in microseconds, or a line counter).

use std::collections::HashMap;

use super::mask::{self, LineLimits};

/// The wildcard of a template position where its lines differ.
pub const WILDCARD: &str = "<*>";

/// How the miner parses and what it keeps.
#[derive(Debug, Clone, Copy)]
pub struct MinerOptions {
    pub limits: LineLimits,
    /// Leading tokens the tree branches on after the token count (1 is drain3's `depth` 4).
    pub prefix_tokens: usize,
    /// Share of equal tokens (0..=1) a line needs to join a cluster (drain3's `sim_th`).
    pub similarity: f64,
    /// Children a tree node has at most; more distinct tokens share the `<*>` branch.
    pub max_children: usize,
    /// Clusters kept at most.
    pub max_clusters: usize,
}

impl Default for MinerOptions {
    fn default() -> Self {
        MinerOptions {
            limits: LineLimits {
                max_line_bytes: 4096,
                max_tokens: 64,
            },
            prefix_tokens: 1,
            similarity: 0.4,
            max_children: 100,
            max_clusters: 10_000,
        }
    }
}

/// A template and what the miner knows of its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub id: u64,
    pub tokens: Vec<Box<str>>,
    /// Lines it took.
    pub size: u64,
    /// The time of the first and of the latest line it took (the caller's unit).
    pub first_seen: i64,
    pub last_seen: i64,
}

impl Cluster {
    /// The template as text: its tokens joined by single spaces.
    pub fn template(&self) -> String {
        self.tokens.join(" ")
    }
}

/// What [`Miner::add`] did with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub cluster: u64,
    /// The line started this cluster.
    pub created: bool,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    clusters: Vec<u64>,
}

/// An online Drain miner.
#[derive(Debug)]
pub struct Miner {
    options: MinerOptions,
    /// The first layer: by token count.
    root: HashMap<usize, Node>,
    clusters: HashMap<u64, Cluster>,
    next_id: u64,
    forgotten: u64,
}

impl Miner {
    pub fn new(options: MinerOptions) -> Miner {
        Miner {
            options: MinerOptions {
                prefix_tokens: options.prefix_tokens.max(1),
                max_children: options.max_children.max(2),
                max_clusters: options.max_clusters.max(1),
                similarity: options.similarity.clamp(0.0, 1.0),
                ..options
            },
            root: HashMap::new(),
            clusters: HashMap::new(),
            next_id: 1,
            forgotten: 0,
        }
    }

    pub fn options(&self) -> &MinerOptions {
        &self.options
    }

    /// Mines one line seen at `at`: the cluster that took it, and whether it is new.
    pub fn add(&mut self, line: &str, at: i64) -> Added {
        let tokens = mask::tokens(line, self.options.limits);
        if let Some(id) = self.search(&tokens, self.options.similarity, false) {
            let cluster = self
                .clusters
                .get_mut(&id)
                .expect("a cluster found in the tree is kept");
            for (kept, token) in cluster.tokens.iter_mut().zip(&tokens) {
                if **kept != **token && &**kept != WILDCARD {
                    *kept = WILDCARD.into();
                }
            }
            cluster.size += 1;
            cluster.first_seen = cluster.first_seen.min(at);
            cluster.last_seen = cluster.last_seen.max(at);
            return Added {
                cluster: id,
                created: false,
            };
        }
        let id = self.next_id;
        self.next_id += 1;
        self.insert(&tokens, id);
        self.clusters.insert(
            id,
            Cluster {
                id,
                tokens: tokens.into_iter().map(String::into_boxed_str).collect(),
                size: 1,
                first_seen: at,
                last_seen: at,
            },
        );
        if self.clusters.len() > self.options.max_clusters {
            self.forget_least_recent();
        }
        Added {
            cluster: id,
            created: true,
        }
    }

    /// The cluster whose template covers `line` exactly (every token equal or a
    /// wildcard), without changing anything (drain3's `match`).
    pub fn find(&self, line: &str) -> Option<u64> {
        let tokens = mask::tokens(line, self.options.limits);
        self.search(&tokens, 1.0, true)
    }

    pub fn cluster(&self, id: u64) -> Option<&Cluster> {
        self.clusters.get(&id)
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters.values()
    }

    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }

    /// Clusters forgotten so far (past `max_clusters`, or by [`Miner::forget_before`]).
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Forgets the clusters whose latest line is before `at`.
    pub fn forget_before(&mut self, at: i64) {
        let before = self.clusters.len();
        self.clusters.retain(|_, cluster| cluster.last_seen >= at);
        self.forgotten += (before - self.clusters.len()) as u64;
    }

    /// Forgets the least recently seen tenth of the clusters (ties: the oldest ids).
    fn forget_least_recent(&mut self) {
        let mut recency: Vec<(i64, u64)> = self
            .clusters
            .values()
            .map(|cluster| (cluster.last_seen, cluster.id))
            .collect();
        let excess = self.clusters.len() - self.options.max_clusters;
        let count = (self.options.max_clusters / 10).max(1) + excess;
        let count = count.min(recency.len());
        recency.select_nth_unstable(count - 1);
        for (_, id) in &recency[..count] {
            self.clusters.remove(id);
        }
        self.forgotten += count as u64;
    }

    /// The best cluster for `tokens` with a similarity of at least `threshold`
    /// (wildcards count as equal when `wildcards_match`).
    fn search(&self, tokens: &[String], threshold: f64, wildcards_match: bool) -> Option<u64> {
        let mut node = self.root.get(&tokens.len())?;
        for token in tokens.iter().take(self.prefix_depth(tokens.len())) {
            node = node
                .children
                .get(token.as_str())
                .or_else(|| node.children.get(WILDCARD))?;
        }
        let mut best: Option<(f64, usize, u64)> = None;
        for id in &node.clusters {
            let Some(cluster) = self.clusters.get(id) else {
                continue; // forgotten; pruned at the leaf's next insertion
            };
            let (similarity, wildcards) = similarity(&cluster.tokens, tokens, wildcards_match);
            let better = best.is_none_or(|(best_similarity, best_wildcards, _)| {
                similarity > best_similarity
                    || (similarity == best_similarity && wildcards > best_wildcards)
            });
            if better {
                best = Some((similarity, wildcards, *id));
            }
        }
        best.filter(|(similarity, _, _)| *similarity >= threshold)
            .map(|(_, _, id)| id)
    }

    /// The tree levels below the token count a line of `length` tokens goes down.
    fn prefix_depth(&self, length: usize) -> usize {
        // the last token of a line is never a branch, as in drain3
        self.options.prefix_tokens.min(length.saturating_sub(1))
    }

    fn insert(&mut self, tokens: &[String], id: u64) {
        let depth = self.prefix_depth(tokens.len());
        let max_children = self.options.max_children;
        let mut node = self.root.entry(tokens.len()).or_default();
        for token in tokens.iter().take(depth) {
            let key: &str = if node.children.contains_key(token.as_str()) {
                token
            } else if token.bytes().any(|byte| byte.is_ascii_digit())
                || node.children.len() + 1 >= max_children
            {
                // tokens with digits, and tokens past the node's capacity, share `<*>`
                WILDCARD
            } else {
                token
            };
            node = node.children.entry(key.into()).or_default();
        }
        let clusters = &self.clusters;
        node.clusters.retain(|kept| clusters.contains_key(kept));
        node.clusters.push(id);
    }
}

/// The share of `tokens` equal to `template`'s (wildcards equal when `wildcards_match`),
/// and the template's wildcard count.
fn similarity(template: &[Box<str>], tokens: &[String], wildcards_match: bool) -> (f64, usize) {
    if template.is_empty() {
        return (1.0, 0);
    }
    let mut equal = 0;
    let mut wildcards = 0;
    for (kept, token) in template.iter().zip(tokens) {
        if &**kept == WILDCARD {
            wildcards += 1;
        } else if **kept == **token {
            equal += 1;
        }
    }
    if wildcards_match {
        equal += wildcards;
    }
    (equal as f64 / template.len() as f64, wildcards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates(miner: &Miner) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = miner
            .clusters()
            .map(|cluster| (cluster.template(), cluster.size))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn lines_of_one_kind_share_a_template_with_wildcards_where_they_differ() {
        let mut miner = Miner::new(MinerOptions::default());
        let lines = [
            "GET /api/v1/cart/2989 returned 200 in 329.1ms for user 2989",
            "GET /api/v1/cart/17 returned 404 in 3ms for user 17",
            "user alice logged in from 10.0.0.1",
            "user bob logged in from 10.0.0.2",
            "disk full on /var",
        ];
        let added: Vec<Added> = lines
            .iter()
            .enumerate()
            .map(|(at, line)| miner.add(line, at as i64))
            .collect();
        assert_eq!(
            added.iter().map(|added| added.created).collect::<Vec<_>>(),
            [true, false, true, false, true]
        );
        assert_eq!(
            templates(&miner),
            [
                (
                    "GET /api/v1/cart/<*> returned <NUM> in <DUR> for user <NUM>".to_string(),
                    2
                ),
                ("disk full on /var".to_string(), 1),
                ("user <*> logged in from <IP>".to_string(), 2),
            ]
        );
        let cluster = miner.cluster(added[3].cluster).expect("kept");
        assert_eq!((cluster.first_seen, cluster.last_seen), (2, 3));
        assert_eq!(
            miner.find("user carol logged in from 10.9.9.9"),
            Some(added[2].cluster)
        );
        assert_eq!(miner.find("user carol logged out from 10.9.9.9"), None);
        assert_eq!(miner.len(), 3, "find changes nothing");
    }

    #[test]
    fn clusters_past_the_cap_forget_the_least_recently_seen() {
        let mut miner = Miner::new(MinerOptions {
            max_clusters: 10,
            ..MinerOptions::default()
        });
        for number in 0..25 {
            let word: String = std::iter::repeat_n('a', number + 1).collect();
            miner.add(&format!("{word} x"), number as i64);
        }
        assert!(miner.len() <= 10, "{}", miner.len());
        assert!(miner.clusters().all(|cluster| cluster.last_seen >= 14));
        assert_eq!(miner.forgotten() as usize + miner.len(), 25);
        miner.forget_before(24);
        assert_eq!(miner.len(), 1);
    }

    #[test]
    fn an_empty_line_is_a_template_of_no_tokens() {
        let mut miner = Miner::new(MinerOptions::default());
        assert!(miner.add("", 0).created);
        assert!(!miner.add("   ", 1).created);
        assert_eq!(
            miner.find(""),
            miner.clusters().next().map(|cluster| cluster.id)
        );
    }
}
