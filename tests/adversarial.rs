//! Adversarial seeded random test: keys of every length 1..=1024 with long
//! shared prefixes and a small alphabet (long separators), values that move
//! between inline and overflow, heavy deletes, savepoints, aborts,
//! checkpoints, compactions (with transactions open) and power losses, on
//! 4 KiB and 32 KiB pages; `check()` after every operation.

mod common;

use std::collections::BTreeSet;

use ariesdb::{Db, Options, Savepoint, Txn};
use common::*;
use rand::rngs::StdRng;
use rand::Rng;

fn opts(page_size: usize, pool: usize) -> Options {
    Options::default()
        .page_size(page_size)
        .buffer_pool_pages(pool)
        .background_writer(false)
        .checkpoint_interval_bytes(0)
        .wal_segment_bytes(1 << 20)
}

/// A universe of distinct keys: short ones, random lengths over a 2-letter
/// alphabet, and keys sharing 500-, 1000- and 1020-byte prefixes.
fn universe(r: &mut StdRng, n: usize) -> Vec<Vec<u8>> {
    let mut set = BTreeSet::new();
    while set.len() < n {
        let k: Vec<u8> = match r.gen_range(0..6) {
            0 => (0..r.gen_range(1..=3)).map(|_| r.gen_range(b'a'..=b'c')).collect(),
            1 => (0..r.gen_range(1..=1024)).map(|_| r.gen_range(b'a'..=b'b')).collect(),
            2 => {
                let mut k = vec![b'p'; 500];
                k.extend((0..r.gen_range(1..=524)).map(|_| r.gen_range(b'a'..=b'b')));
                k
            }
            3 => {
                let mut k = vec![b'p'; 1000];
                k.extend((0..r.gen_range(1..=24)).map(|_| r.gen_range(b'a'..=b'b')));
                k
            }
            4 => {
                let mut k = vec![b'p'; 1020];
                k.extend((0..r.gen_range(1..=4)).map(|_| r.gen_range(b'a'..=b'b')));
                k
            }
            _ => (0..r.gen_range(1..=1024)).map(|_| r.gen()).collect(),
        };
        set.insert(k);
    }
    set.into_iter().collect()
}

fn value(r: &mut StdRng, page_size: usize) -> Vec<u8> {
    let third = page_size / 3;
    let len = match r.gen_range(0..10) {
        0..=3 => r.gen_range(0..40),
        4..=5 => r.gen_range(40..400),
        // around the inline/overflow boundary
        6..=7 => r.gen_range(third.saturating_sub(1100)..third + 50),
        8 => r.gen_range(page_size..3 * page_size),
        _ => r.gen_range(400..third),
    };
    let b: u8 = r.gen();
    (0..len).map(|i| b.wrapping_add(i as u8)).collect()
}

struct Lane {
    tx: Txn,
    pending: Pending,
    sp: Option<(Savepoint, Pending)>,
}

fn check(db: &Db, ctx: &str) {
    if let Err(e) = db.check_report() {
        panic!("{ctx}: check failed: {e}");
    }
}

/// One seeded run; returns the number of operations done.
fn run(seed: u64, page_size: usize, pool: usize, steps: usize) -> usize {
    let mut r = rng(seed);
    let sim = new_sim(seed);
    let o = opts(page_size, pool);
    let mut db = Db::open_with(sim.clone(), o.clone()).unwrap();
    let n_keys = r.gen_range(40..400);
    let keys = universe(&mut r, n_keys);
    let mut model = Model::new();
    // Two lanes on the two halves of the sorted key universe, with a key
    // between them that neither changes: the next-key locks a lane takes
    // (the key after one it inserts or deletes) stay in its half or land on
    // that key, so one thread driving both never waits for itself.
    let mid = keys.len() / 2;
    let mut t = db.begin().unwrap();
    t.put(&keys[mid], b"between the lanes").unwrap();
    t.commit().unwrap();
    model.insert(keys[mid].clone(), b"between the lanes".to_vec());
    let mut lanes: Vec<Option<Lane>> = vec![None, None];
    let mut ops = 0;
    for step in 0..steps {
        let ctx = format!("seed {seed}, {page_size} B pages, pool {pool}, step {step}");
        let l = r.gen_range(0..2usize);
        let pick = |r: &mut StdRng| match l {
            0 => keys[r.gen_range(0..mid)].clone(),
            _ => keys[r.gen_range(mid + 1..keys.len())].clone(),
        };
        let roll = r.gen_range(0..100);
        if lanes[l].is_none() && roll < 90 {
            lanes[l] = Some(Lane { tx: db.begin().unwrap(), pending: Pending::new(), sp: None });
        }
        match roll {
            0..=34 => {
                let lane = lanes[l].as_mut().unwrap();
                // a burst of puts
                for _ in 0..r.gen_range(1..8) {
                    let k = pick(&mut r);
                    let v = value(&mut r, page_size);
                    lane.tx.put(&k, &v).unwrap_or_else(|e| panic!("{ctx}: put: {e}"));
                    lane.pending.insert(k, Some(v));
                    ops += 1;
                    check(&db, &ctx);
                }
            }
            35..=59 => {
                let lane = lanes[l].as_mut().unwrap();
                // a burst of deletes (heavy enough to merge)
                for _ in 0..r.gen_range(1..15) {
                    let k = pick(&mut r);
                    let existed = lane.tx.delete(&k).unwrap_or_else(|e| panic!("{ctx}: delete: {e}"));
                    let expect = match lane.pending.get(&k) {
                        Some(v) => v.is_some(),
                        None => model.contains_key(&k),
                    };
                    assert_eq!(existed, expect, "{ctx}: delete result");
                    lane.pending.insert(k, None);
                    ops += 1;
                    check(&db, &ctx);
                }
            }
            60..=64 => {
                let lane = lanes[l].as_mut().unwrap();
                let k = pick(&mut r);
                let got = lane.tx.get(&k).unwrap();
                let expect = match lane.pending.get(&k) {
                    Some(v) => v.clone(),
                    None => model.get(&k).cloned(),
                };
                assert_eq!(got, expect, "{ctx}: get");
            }
            65..=69 => {
                let lane = lanes[l].as_mut().unwrap();
                lane.sp = Some((lane.tx.savepoint().unwrap(), lane.pending.clone()));
            }
            70..=74 => {
                let lane = lanes[l].as_mut().unwrap();
                if let Some((sp, p)) = lane.sp.clone() {
                    lane.tx.rollback_to(&sp).unwrap_or_else(|e| panic!("{ctx}: rollback_to: {e}"));
                    lane.pending = p;
                    check(&db, &ctx);
                }
            }
            75..=82 => {
                if let Some(lane) = lanes[l].take() {
                    lane.tx.commit().unwrap();
                    apply(&mut model, &lane.pending);
                }
            }
            83..=86 => {
                if let Some(lane) = lanes[l].take() {
                    lane.tx.abort().unwrap_or_else(|e| panic!("{ctx}: abort: {e}"));
                    check(&db, &ctx);
                }
            }
            87..=88 => db.checkpoint().unwrap(),
            89..=93 => {
                db.compact().unwrap_or_else(|e| panic!("{ctx}: compact: {e}"));
                check(&db, &ctx);
            }
            94..=96 => {
                // Commit both, compact, then lose power right after (or not).
                for lane in lanes.iter_mut() {
                    if let Some(lane) = lane.take() {
                        lane.tx.commit().unwrap();
                        apply(&mut model, &lane.pending);
                    }
                }
                db.compact().unwrap_or_else(|e| panic!("{ctx}: compact: {e}"));
                sim.power_loss();
                drop(db);
                db = Db::open_with(sim.clone(), o.clone()).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
                let got = read_all(&db).unwrap_or_else(|e| panic!("{ctx}: after compact+crash: {e}"));
                assert!(got == model, "{ctx}: after compact+crash: {} keys vs {}", got.len(), model.len());
            }
            _ => {
                sim.power_loss();
                lanes = vec![None, None];
                drop(db);
                db = Db::open_with(sim.clone(), o.clone()).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
                let got = read_all(&db).unwrap_or_else(|e| panic!("{ctx}: after crash: {e}"));
                assert!(got == model, "{ctx}: after crash: {} keys vs {}", got.len(), model.len());
            }
        }
    }
    for lane in lanes.iter_mut() {
        if let Some(lane) = lane.take() {
            lane.tx.commit().unwrap();
            apply(&mut model, &lane.pending);
        }
    }
    let got = read_all(&db).unwrap();
    assert!(got == model, "seed {seed}: final state");
    db.compact().unwrap();
    check(&db, &format!("seed {seed}: final compact"));
    ops
}

fn seeds(default: u64) -> std::ops::Range<u64> {
    let start = seed_start();
    start..start + seed_count(default)
}

#[test]
fn adversarial_4k() {
    let steps = std::env::var("ARIESDB_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let mut total = 0;
    for seed in seeds(20) {
        total += run(seed, 4096, 64, steps);
    }
    eprintln!("4 KiB: {total} ops");
}

#[test]
fn adversarial_4k_small_pool() {
    let steps = std::env::var("ARIESDB_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let mut total = 0;
    for seed in seeds(20) {
        total += run(seed + 1_000_000, 4096, ariesdb::MIN_BUFFER_POOL_PAGES, steps);
    }
    eprintln!("4 KiB small pool: {total} ops");
}

#[test]
fn adversarial_32k() {
    let steps = std::env::var("ARIESDB_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let mut total = 0;
    for seed in seeds(10) {
        total += run(seed + 2_000_000, 32768, 64, steps);
    }
    eprintln!("32 KiB: {total} ops");
}

/// Long separators later deleted: short keys interleaved with 1024-byte keys
/// that share 1000-byte prefixes (separators of ~1000 bytes in every inner
/// page), then every long key deleted in random order, then short keys
/// deleted down to a few, checking after every transaction; on 4 KiB and
/// 32 KiB pages, one key per transaction and in batches, with aborts of
/// big delete batches.
#[test]
fn long_separators_later_deleted() {
    use rand::seq::SliceRandom;
    for &page_size in &[4096usize, 32768] {
        for &batch in &[1usize, 37] {
            let seed = page_size as u64 + batch as u64;
            let mut r = rng(seed);
            let db = Db::open_with(new_sim(seed), opts(page_size, 256)).unwrap();
            let n = if page_size == 4096 { 1500 } else { 3000 };
            let mut short: Vec<Vec<u8>> = Vec::new();
            let mut long: Vec<Vec<u8>> = Vec::new();
            for i in 0..n {
                // Short keys and long keys sort interleaved: the long key
                // with prefix "s{i}" + 1000 x 'q' sits right after "s{i}".
                let s = format!("s{i:05}").into_bytes();
                let mut l = s.clone();
                l.extend(std::iter::repeat_n(b'q', 1000));
                l.extend((0..(1024 - l.len())).map(|_| r.gen_range(b'a'..=b'b')));
                short.push(s);
                long.push(l.clone());
                let mut l2 = l.clone();
                *l2.last_mut().unwrap() = b'c';
                long.push(l2);
            }
            let mut all: Vec<Vec<u8>> = short.iter().chain(long.iter()).cloned().collect();
            all.shuffle(&mut r);
            let mut model = Model::new();
            for chunk in all.chunks(batch) {
                let mut tx = db.begin().unwrap();
                for k in chunk {
                    let v = vec![7u8; r.gen_range(0..60)];
                    tx.put(k, &v).unwrap();
                    model.insert(k.clone(), v);
                }
                tx.commit().unwrap();
                check(&db, "load");
            }
            let rep = db.check_report().unwrap();
            eprintln!("{page_size} B, batch {batch}: loaded: {rep:?}");
            long.shuffle(&mut r);
            for (i, chunk) in long.chunks(batch).enumerate() {
                let mut tx = db.begin().unwrap();
                for k in chunk {
                    assert!(tx.delete(k).unwrap());
                }
                if i % 5 == 0 {
                    tx.abort().unwrap();
                    check(&db, "abort of long deletes");
                    let mut tx = db.begin().unwrap();
                    for k in chunk {
                        assert!(tx.delete(k).unwrap());
                    }
                    tx.commit().unwrap();
                } else {
                    tx.commit().unwrap();
                }
                for k in chunk {
                    model.remove(k);
                }
                check(&db, &format!("{page_size} B, batch {batch}: deleting long keys, chunk {i}"));
            }
            let rep = db.check_report().unwrap();
            eprintln!("{page_size} B, batch {batch}: long deleted: {rep:?}");
            short.shuffle(&mut r);
            for chunk in short[..short.len() - 5].chunks(batch) {
                let mut tx = db.begin().unwrap();
                for k in chunk {
                    assert!(tx.delete(k).unwrap());
                    model.remove(k);
                }
                tx.commit().unwrap();
                check(&db, &format!("{page_size} B, batch {batch}: deleting short keys"));
            }
            assert!(read_all(&db).unwrap() == model);
            let rep = db.check_report().unwrap();
            eprintln!("{page_size} B, batch {batch}: end: {rep:?}");
            db.compact().unwrap();
            assert!(read_all(&db).unwrap() == model);
        }
    }
}
