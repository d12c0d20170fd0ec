//! Runs every fuzz target's body over the checked-in corpus
//! (`fuzz/corpus/<target>`, and `fuzz/regressions/<target>` for inputs that
//! once found a bug), plus seeded mutations of each input, on stable Rust.
//! A panic here is a finding: the input that caused it is printed.
//! More mutations: `ARIESDB_FUZZ_MUTATIONS=2000 cargo test --release --test fuzz_corpus`.
//!
//! Needs the `fuzzing` feature, which this repository's dev-dependency on the
//! crate turns on. The crate that `cargo package` makes has neither that
//! dev-dependency nor fuzz/, and skips this file.

#![cfg(feature = "fuzzing")]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use ariesdb::fuzzing;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["fuzz/corpus", "fuzz/regressions"] {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        let mut names: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn mutations() -> u64 {
    std::env::var("ARIESDB_FUZZ_MUTATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000)
}

/// A seeded mutation: flip bytes, overwrite with interesting values, or cut.
fn mutate(input: &[u8], seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut b = input.to_vec();
    if b.is_empty() {
        return vec![next() as u8; (seed % 64) as usize];
    }
    for _ in 0..1 + next() % 4 {
        let i = (next() % b.len() as u64) as usize;
        match next() % 4 {
            0 => b[i] ^= 1 << (next() % 8),
            1 => b[i] = [0x00, 0xff, 0x7f, 0x80][(next() % 4) as usize],
            2 => {
                let v = (next() as u32).to_le_bytes();
                let end = (i + 4).min(b.len());
                b[i..end].copy_from_slice(&v[..end - i]);
            }
            _ => b.truncate(i),
        }
        if b.is_empty() {
            break;
        }
    }
    b
}

fn run(target: &str, f: fn(&[u8]), mutate_too: bool) {
    let all = inputs(target);
    assert!(!all.is_empty(), "no corpus for {target}: run `cargo run --example fuzz_corpus -- fuzz/corpus`");
    for (name, input) in &all {
        let n = if mutate_too { mutations() } else { 0 };
        for m in 0..=n {
            let data = if m == 0 { input.clone() } else { mutate(input, m) };
            if catch_unwind(AssertUnwindSafe(|| f(&data))).is_err() {
                let path = std::env::temp_dir().join(format!("ariesdb-finding-{target}-{m}"));
                std::fs::write(&path, &data).unwrap();
                panic!("fuzz target {target} panicked on {name} (mutation {m}); input saved to {}", path.display());
            }
        }
    }
}

#[test]
fn recover_corpus() {
    run("recover", fuzzing::recover, true);
}

#[test]
fn wal_record_corpus() {
    run("wal_record", fuzzing::wal_record, true);
}

#[test]
fn page_corpus() {
    run("page", fuzzing::page, true);
}

#[test]
fn crash_ops_corpus() {
    run("crash_ops", fuzzing::crash_ops, true);
}
