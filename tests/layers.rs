//! No import runs upward: every `crate::<module>` reference in src/ names a
//! module at or below its own in the layer order of docs/design.md section 2
//! (core types, error, fail-stop, storage, page, wal, buffer, the transaction's log chain,
//! the page allocator, btree, txn, recovery, and the facade on top).

use std::path::Path;

/// Bottom to top; `options` and the `db` folder belong to the facade.
const ORDER: &[&str] = &[
    "types", "error", "failstop", "storage", "codec", "page", "wal", "buffer", "txn_log", "alloc", "btree", "txn",
    "recovery", "db", "fuzzing", "lib",
];

fn rank(module: &str) -> Option<usize> {
    let m = if module == "options" { "db" } else { module };
    ORDER.iter().position(|&x| x == m)
}

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut upward = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let own = rel.split(['/', '.']).next().unwrap().to_string();
        let own_rank = rank(&own).unwrap_or_else(|| panic!("{rel}: module {own} is not in the layer order"));
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                let after = &rest[i + "crate::".len()..];
                let name: String = after.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if let Some(r) = rank(&name) {
                    if r > own_rank {
                        upward.push(format!("src/{rel}:{}: {own} uses crate::{name}", n + 1));
                    }
                }
                rest = after;
            }
        }
    }
    assert!(upward.is_empty(), "imports that run upward:\n{}", upward.join("\n"));
}
