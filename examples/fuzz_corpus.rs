//! Builds the seed corpus of the fuzz targets from real databases and logs
//! made on SimStorage: `cargo run --example fuzz_corpus -- fuzz/corpus`.
//! Deterministic: running it again gives the same files.

use std::path::Path;
use std::sync::Arc;

use ariesdb::fuzzing::encode_files;
use ariesdb::internals::{decode_record, parse_segment_name};
use ariesdb::storage::{SimStorage, Storage};
use ariesdb::{Db, Options};

fn opts() -> Options {
    Options::default()
        .buffer_pool_pages(24)
        .background_writer(false)
        .checkpoint_interval_bytes(0)
        .wal_segment_bytes(64 << 10)
}

fn trim(mut b: Vec<u8>) -> Vec<u8> {
    while b.last() == Some(&0) {
        b.pop();
    }
    b
}

fn files(sim: &SimStorage) -> Vec<(String, Vec<u8>)> {
    sim.list()
        .unwrap()
        .into_iter()
        .map(|n| {
            let c = sim.file_contents(&n).unwrap();
            (n, trim(c))
        })
        .collect()
}

/// A database in one of several states, then a power loss.
fn build(case: u32) -> Arc<SimStorage> {
    let sim = Arc::new(SimStorage::new(case as u64));
    let db = Db::open_with(sim.clone(), opts()).unwrap();
    let n = [0u32, 20, 120, 60, 40, 200][case as usize % 6];
    for t in 0..n / 20 {
        let mut tx = db.begin().unwrap();
        for i in 0..20 {
            let v = if case == 3 && i == 0 { vec![t as u8; 9000] } else { vec![t as u8; 30 + i as usize] };
            tx.put(format!("key{:04}", t * 20 + i).as_bytes(), &v).unwrap();
        }
        if t % 3 == 2 {
            tx.delete(format!("key{:04}", t * 20).as_bytes()).unwrap();
        }
        tx.commit().unwrap();
        if case == 2 && t == 2 {
            db.checkpoint().unwrap();
        }
    }
    if case >= 6 {
        // Long keys sharing a prefix (long separators), then deletes that
        // merge, redistribute and collapse the root; case 7 also compacts.
        let key = |i: u32| format!("{}{i:05}", "p".repeat(900)).into_bytes();
        let mut tx = db.begin().unwrap();
        for i in 0..40 {
            tx.put(key(i), [i as u8; 60]).unwrap();
        }
        tx.commit().unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..36 {
            tx.delete(key(i)).unwrap();
        }
        tx.commit().unwrap();
        if case == 7 {
            db.compact().unwrap();
        }
    }
    if case == 4 {
        let mut loser = db.begin().unwrap();
        for i in 0..30 {
            loser.put(format!("loser{i}").as_bytes(), b"x").unwrap();
        }
        std::mem::forget(loser);
    }
    if case == 5 {
        db.close().unwrap();
    } else {
        drop(db);
    }
    sim.power_loss();
    sim
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".to_string());
    let out = Path::new(&out);
    let mut records = 0;
    let mut pages = 0;
    for case in 0..8 {
        let sim = build(case);
        let fs = files(&sim);
        write(out, "recover", &format!("db-{case}"), &encode_files(&fs));
        for (name, bytes) in &fs {
            if let Some(start) = parse_segment_name(name) {
                // Every record of a few kinds, once each.
                let mut pos = 0usize;
                let mut kinds = std::collections::BTreeSet::new();
                while let Ok(rec) = decode_record(&bytes[pos..], start + pos as u64) {
                    let end = pos + rec.len as usize;
                    if kinds.insert(format!("{:?}", std::mem::discriminant(&rec.body))) && records < 40 {
                        write(out, "wal_record", &format!("rec-{records}"), &bytes[pos..end]);
                        records += 1;
                    }
                    pos = end;
                    if pos >= bytes.len() {
                        break;
                    }
                }
            } else if name == ariesdb::DATA_FILE {
                for (i, p) in bytes.chunks(4096).enumerate().skip(1).take(6) {
                    if pages < 30 {
                        write(out, "page", &format!("page-{case}-{i}"), p);
                        pages += 1;
                    }
                }
            }
        }
    }
    // crash_ops: seeded byte strings (seed, crash point, fault, operations).
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..16 {
        let mut b = Vec::new();
        for _ in 0..(40 + i * 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.push(x as u8);
        }
        write(out, "crash_ops", &format!("ops-{i}"), &b);
    }
    println!("wrote {records} records, {pages} pages, 8 databases and 16 operation streams under {}", out.display());
}
