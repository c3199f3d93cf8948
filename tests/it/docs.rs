//! The documentation stays navigable: README.md fits on a screen and links every page of
//! `docs/`, and every relative link in README.md and `docs/` names a file that exists and,
//! with `#anchor`, a heading or `<a id>` that file has (GitHub's anchor rules).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;

const README_MAX_LINES: usize = 200;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file of `docs/`.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The text of `page` outside fenced code blocks.
fn prose(page: &Path) -> String {
    let text = std::fs::read_to_string(page).expect("read page");
    let mut fenced = false;
    let mut kept = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// GitHub's anchor for a heading: lowercased, punctuation dropped, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a link can name in `page`: its headings and its `<a id="…">` tags.
fn anchors(page: &Path) -> BTreeSet<String> {
    let text = prose(page);
    let explicit = Regex::new(r#"<a id="([^"]+)">"#).expect("regex");
    let mut found: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| slug(heading.trim_start_matches('#')))
        .collect();
    found.extend(
        explicit
            .captures_iter(&text)
            .map(|capture| capture[1].to_string()),
    );
    found
}

/// Relative link targets of `page` (no scheme), as written.
fn links(page: &Path) -> Vec<String> {
    let link = Regex::new(r"\]\(([^)\s]+)\)").expect("regex");
    link.captures_iter(&prose(page))
        .map(|capture| capture[1].to_string())
        .filter(|target| !target.contains("://") && !target.starts_with("mailto:"))
        .collect()
}

#[test]
fn the_readme_fits_on_a_screen_and_links_every_page_of_docs() {
    let readme = root().join("README.md");
    let lines = std::fs::read_to_string(&readme)
        .expect("README.md")
        .lines()
        .count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, over {README_MAX_LINES}: move the reference parts to docs/"
    );
    let linked: BTreeSet<String> = links(&readme).into_iter().collect();
    for page in pages().iter().skip(1) {
        let name = format!("docs/{}", page.file_name().expect("name").to_string_lossy());
        assert!(linked.contains(&name), "README.md does not link {name}");
    }
}

#[test]
fn every_relative_link_in_the_docs_resolves_to_a_file_and_anchor() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        for target in links(&page) {
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().expect("directory").join(path)
            };
            let shown = page.strip_prefix(root()).expect("inside the repository");
            if !file.exists() {
                broken.push(format!("{}: `{target}`: no such file", shown.display()));
            } else if !anchor.is_empty() && !anchors(&file).contains(anchor) {
                broken.push(format!(
                    "{}: `{target}`: no heading or <a id> `{anchor}` there",
                    shown.display()
                ));
            }
        }
    }
    assert!(
        checked > 10,
        "only {checked} links found: is the link pattern right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_follow_githubs_rules() {
    assert_eq!(
        slug(" Reliability: limits and degraded modes"),
        "reliability-limits-and-degraded-modes"
    );
    assert_eq!(slug(" Agent: `lookout ship`"), "agent-lookout-ship");
    assert_eq!(slug(" log_matches"), "log_matches");
}
