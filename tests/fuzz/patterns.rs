//! Log template mining (`GET /_lookout/patterns`, `new_pattern` rules): generated and
//! mutated log lines — ids, numbers, durations, addresses, quotes left open, hostile
//! unicode, very long lines and lines of many tokens — mined into one small miner. It
//! must never panic and stay within its bounds: at most `max_clusters` templates, each of
//! at most `max_tokens` tokens; every line just mined is covered by a template (`find`
//! finds what `add` made or widened), and mining is deterministic.

use std::sync::Arc;

use lookout::patterns::mask::{LineLimits, tokens};
use lookout::patterns::{Miner, MinerOptions};
use proptest::prelude::*;

use crate::harness::{self, Grammar, HOSTILE, mutated, run_case};

fn grammar() -> Arc<Grammar> {
    Arc::new(Grammar::new(
        &[
            "GET /api/v1/cart/2989 returned 200 in 329.1ms for user 2989",
            "user 4021 logged in from 10.0.0.7:8080",
            "payment declined for order 6f1c2a44-5b7e-4c1d-9a2b-3c4d5e6f9d1e: \"card expired\"",
            "trace=4bf92f3577b34da6a3ce929d0e0e4736 span 0x1f2e retry (3 of 5), backoff=2.5s",
            "query='select 1' took 1h30m on ::1",
            "",
        ],
        &[
            " ", "\"", "'", "=", "/", ":", ",", ".", "<*>", "<NUM>", "0x", "1e", "-", "ms", "%",
            "\t", "é", "😀",
        ],
        &[("\"", "\""), ("'", "'"), ("(", ")"), ("<", ">")],
    ))
}

fn line() -> BoxedStrategy<String> {
    let word = prop_oneof![
        "[a-z]{1,8}",
        "[0-9]{1,12}",
        "[0-9a-f]{8,32}",
        "[a-z]{1,4}-[0-9a-z]{3,9}",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?",
        "[0-9]{1,4}(\\.[0-9]{1,2})?(ms|s|m|h|µs)",
        "/[a-z0-9/]{1,20}",
        proptest::sample::select(HOSTILE.to_vec()).prop_map(String::from),
    ];
    prop_oneof![
        8 => proptest::collection::vec(word, 0..24).prop_map(|words| words.join(" ")),
        // many tokens, and a very long line
        1 => (1usize..400).prop_map(|count| "x ".repeat(count)),
        1 => (1usize..20_000).prop_map(|length| "9".repeat(length)),
    ]
    .boxed()
}

fn lines() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![3 => line(), 1 => mutated(grammar(), line(), 6).boxed()],
        1..40,
    )
}

#[test]
fn mining_any_lines_never_panics_and_stays_within_its_bounds() {
    harness::check(lines, |lines| {
        run_case("patterns", format!("{lines:?}"), move || {
            let options = MinerOptions {
                limits: LineLimits {
                    max_line_bytes: 512,
                    max_tokens: 16,
                },
                max_children: 4,
                max_clusters: 8,
                ..MinerOptions::default()
            };
            let mine = |lines: &[String]| {
                let mut miner = Miner::new(options);
                let mut templates = Vec::new();
                for (at, line) in lines.iter().enumerate() {
                    let added = miner.add(line, at as i64);
                    let covered = miner.find(line);
                    if covered.is_none() {
                        return Err(format!("{line:?} is covered by no template once mined"));
                    }
                    if miner.len() > options.max_clusters {
                        return Err(format!("{} templates kept", miner.len()));
                    }
                    let cluster = miner
                        .cluster(added.cluster)
                        .ok_or("the line's template is kept")?;
                    if cluster.tokens.len() > options.limits.max_tokens {
                        return Err(format!("a template of {} tokens", cluster.tokens.len()));
                    }
                    templates.push(cluster.template());
                }
                Ok(templates)
            };
            let first = mine(&lines)?;
            if mine(&lines)? != first {
                return Err("mining the same lines twice differed".into());
            }
            for line in &lines {
                let masked = tokens(line, options.limits);
                if masked.len() > options.limits.max_tokens
                    || masked.iter().map(String::len).sum::<usize>() > 512 * 2
                {
                    return Err(format!("{line:?} masked past its limits: {masked:?}"));
                }
            }
            Ok(())
        })
    });
}
