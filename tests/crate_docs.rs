//! The crate's rustdoc front page and README.md: every link on the front page
//! works where rustdoc puts it (docs.rs): a web address or an intra-doc path,
//! never a path relative to the repository, which rustdoc leaves dangling;
//! README.md's own relative links name files that exist; and README.md's
//! examples still run as doctests.

use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The link targets of markdown `text`: inline `[text](target)` and
/// reference definitions `[name]: target`, outside code blocks and spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop code spans: a `[x](y)` inside backticks is no link.
        let plain: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let t = plain.trim_start();
        if t.starts_with('[') {
            if let Some(end) = t.find("]: ") {
                out.push(t[end + 3..].trim().to_string());
                continue;
            }
        }
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(close) = after.find(')') else { break };
            out.push(after[..close].trim().to_string());
            rest = &after[close..];
        }
    }
    out
}

/// The shortcut links of markdown `text`: `` [`Name`] `` with no target after
/// it, which rustdoc resolves as intra-doc links.
fn shortcut_links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("[`") {
        let after = &rest[i + 2..];
        let Some(close) = after.find("`]") else { break };
        let tail = &after[close + 2..];
        if !tail.starts_with('(') && !tail.starts_with('[') && !tail.starts_with(':') {
            out.push(after[..close].to_string());
        }
        rest = tail;
    }
    out
}

/// The markdown rustdoc renders as the crate's front page: the `//!` lines
/// of src/lib.rs and the files it includes with `#![doc = include_str!(..)]`.
fn crate_root_doc(lib: &str) -> String {
    let mut doc = String::new();
    for line in lib.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("//!") {
            doc.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            doc.push('\n');
        } else if let Some(rest) = t.strip_prefix("#![doc = include_str!(\"") {
            let file = rest.split('"').next().unwrap();
            doc.push_str(&read(&format!("src/{file}")));
            doc.push('\n');
        }
    }
    doc
}

fn is_web(target: &str) -> bool {
    target.starts_with("https://") || target.starts_with("http://")
}

/// An intra-doc link: a Rust path (`Db`, `crate::Db::open`, `Txn::put()`,
/// `storage::SimStorage`, `std::ops::Range`), maybe with a kind prefix.
fn is_intra_doc(target: &str) -> bool {
    let t = target.split_once('@').map_or(target, |(_, path)| path);
    let t = t.strip_suffix("()").or_else(|| t.strip_suffix('!')).unwrap_or(t);
    !t.is_empty() && t.split("::").all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

#[test]
fn the_crate_front_page_links_only_to_the_web_or_to_items() {
    let doc = crate_root_doc(&read("src/lib.rs"));
    assert!(doc.contains("```"), "the front page has no example:\n{doc}");
    let targets = link_targets(&doc);
    let items = shortcut_links(&doc);
    assert!(
        targets.iter().chain(&items).filter(|t| is_intra_doc(t)).count() >= 5,
        "the front page links to few items: {targets:?} {items:?}"
    );
    let bad: Vec<&String> = targets.iter().filter(|t| !is_web(t) && !is_intra_doc(t)).collect();
    assert!(
        bad.is_empty(),
        "links on the crate's rustdoc front page that rustdoc cannot resolve (relative to the repository, \
         they would 404 on docs.rs): {bad:?}"
    );
}

#[test]
fn readme_links_name_files_that_exist_and_its_examples_are_doctested() {
    let readme = read("README.md");
    for target in link_targets(&readme) {
        if is_web(&target) {
            continue;
        }
        let file = target.split('#').next().unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        assert!(path.exists(), "README.md links to {target}, which does not exist");
    }
    // The README's Rust blocks run under `cargo test --doc`: src/lib.rs
    // includes it as the doc of an item that exists only for doctests.
    let lib = read("src/lib.rs");
    let at = lib.find("include_str!(\"../README.md\")").expect("src/lib.rs does not include README.md");
    let before: Vec<&str> = lib[..at].lines().rev().take(3).collect();
    assert!(
        before.iter().any(|l| l.contains("#[cfg(doctest)]")),
        "README.md is not included for doctests only: {before:?}"
    );
    assert!(readme.contains("```rust"), "README.md has no Rust example to doctest");
}
