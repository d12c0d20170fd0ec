//! Concurrent bank transfers: threads move money between accounts in
//! transactions (reads then writes, so lock upgrades and deadlocks happen),
//! some abort, some roll back to a savepoint; a crash strikes in the middle.
//! After recovery the total is unchanged and every acknowledged transfer is there.

mod common;

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ariesdb::storage::Fault;
use ariesdb::{Db, Error, Options};
use common::*;
use rand::{Rng, SeedableRng};

const ACCOUNTS: u32 = 40;
const START: u64 = 1000;

fn acct(i: u32) -> Vec<u8> {
    format!("acct:{i:03}").into_bytes()
}

fn balance(v: Option<Vec<u8>>) -> u64 {
    u64::from_le_bytes(v.expect("account exists").try_into().expect("8 bytes"))
}

fn setup(db: &Db) {
    let mut tx = db.begin().unwrap();
    for i in 0..ACCOUNTS {
        tx.put(acct(i), START.to_le_bytes()).unwrap();
    }
    tx.commit().unwrap();
}

/// One transfer; Ok(true) if committed.
fn transfer(db: &Db, rng: &mut rand::rngs::StdRng, marker: &[u8]) -> Result<bool, Error> {
    let (a, b) = (rng.gen_range(0..ACCOUNTS), rng.gen_range(0..ACCOUNTS));
    if a == b {
        return Ok(false);
    }
    let amount = rng.gen_range(1..50u64);
    let mut tx = db.begin()?;
    let ba = balance(tx.get(acct(a))?);
    let bb = balance(tx.get(acct(b))?);
    if ba < amount {
        tx.abort()?;
        return Ok(false);
    }
    if rng.gen_bool(0.2) {
        // A detour rolled back to a savepoint.
        let sp = tx.savepoint()?;
        tx.put(acct(a), 0u64.to_le_bytes())?;
        tx.rollback_to(&sp)?;
    }
    tx.put(acct(a), (ba - amount).to_le_bytes())?;
    tx.put(acct(b), (bb + amount).to_le_bytes())?;
    tx.put(marker, amount.to_le_bytes())?;
    if rng.gen_bool(0.1) {
        tx.abort()?;
        return Ok(false);
    }
    tx.commit()?;
    Ok(true)
}

fn total(db: &Db) -> (u64, usize) {
    let all = read_all(db).unwrap();
    let sum = all.iter().filter(|(k, _)| k.starts_with(b"acct:")).map(|(_, v)| balance(Some(v.clone()))).sum();
    let markers = all.keys().filter(|k| k.starts_with(b"xfer:")).count();
    (sum, markers)
}

fn run_threads(db: &Db, threads: u64, per_thread: u64, seed: u64) -> (Vec<Vec<u8>>, u64) {
    let acked = Mutex::new(Vec::new());
    let deadlocks = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (acked, deadlocks) = (&acked, &deadlocks);
            s.spawn(move || {
                let mut rng = rng(seed * 100 + t);
                for n in 0..per_thread {
                    let marker = format!("xfer:{seed}:{t}:{n}").into_bytes();
                    loop {
                        match transfer(db, &mut rng, &marker) {
                            Ok(true) => {
                                acked.lock().unwrap().push(marker);
                                break;
                            }
                            Ok(false) => break,
                            Err(e) if e.is_retryable() => {
                                deadlocks.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => return, // the injected crash
                        }
                    }
                }
            });
        }
    });
    (acked.into_inner().unwrap(), deadlocks.load(Ordering::Relaxed))
}

#[test]
fn concurrent_transfers_conserve_money_across_a_crash() {
    for seed in 0..4u64 {
        let sim = new_sim(seed);
        let opts = Options::default().buffer_pool_pages(24).checkpoint_interval_bytes(128 << 10);
        let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
        setup(&db);
        let (acked, _) = run_threads(&db, 4, 60, seed);
        assert_eq!(total(&db).0, START * ACCOUNTS as u64);
        // Second phase: a crash strikes while the threads run.
        sim.inject(Fault::CrashAtOp(sim.op_count() + 400 + seed * 150));
        let (acked2, _) = run_threads(&db, 4, 200, seed + 1000);
        drop(db);
        sim.power_loss();
        let db = Db::open_with(sim.clone(), opts).unwrap();
        let (sum, markers) = total(&db);
        assert_eq!(sum, START * ACCOUNTS as u64, "seed {seed}: money created or destroyed");
        let all = read_all(&db).unwrap();
        for m in acked.iter().chain(acked2.iter()) {
            assert!(all.contains_key(m), "seed {seed}: acknowledged transfer {} lost", String::from_utf8_lossy(m));
        }
        assert!(markers >= acked.len() + acked2.len());
    }
}

#[test]
fn concurrent_transfers_on_real_files() {
    let dir = std::env::temp_dir().join(format!("ariesdb-bank-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Arc::new(Db::open(&dir).unwrap());
    setup(&db);
    let (acked, deadlocks) = run_threads(&db, 4, 100, 7);
    let (sum, markers) = total(&db);
    assert_eq!(sum, START * ACCOUNTS as u64);
    assert_eq!(markers, acked.len());
    eprintln!("{} transfers committed, {deadlocks} deadlocks retried, {:?}", acked.len(), db.stats());
    Arc::try_unwrap(db).expect("no other owner").close().unwrap();
    let db = Db::open(&dir).unwrap();
    assert_eq!(total(&db), (sum, markers));
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Many threads miss in a tiny pool at once: snapshot readers fetch pages
/// that other readers and a writer are evicting (the page table's shards
/// are locked one at a time, and an eviction only tries another shard).
/// Every read sees a value that belongs to its key, and the pool's frames
/// are never handed out twice.
#[test]
fn snapshot_readers_and_a_writer_thrash_a_small_pool() {
    const KEYS: u32 = 3000;
    let key = |i: u32| format!("pool:{i:05}").into_bytes();
    let value = |i: u32, round: u32| {
        let mut v = format!("{i:05}/{round:04}/").into_bytes();
        v.resize(100, b'v');
        v
    };
    let db = Db::open_with(new_sim(11), Options::default().buffer_pool_pages(24)).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..KEYS {
        tx.put(key(i), value(i, 0)).unwrap();
    }
    tx.commit().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for round in 1..=30u32 {
                let mut tx = db.begin().unwrap();
                for i in (round % 7..KEYS).step_by(37) {
                    tx.put(key(i), value(i, round)).unwrap();
                }
                tx.commit().unwrap();
            }
        });
        for t in 0..3u32 {
            let (db, key) = (&db, &key);
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(t));
                for _ in 0..40 {
                    let snap = db.begin_read().unwrap();
                    for _ in 0..50 {
                        let i = rng.gen_range(0..KEYS);
                        let v = snap.get(key(i)).unwrap().expect("every key stays");
                        assert!(v.starts_with(format!("{i:05}/").as_bytes()), "key {i} read {:?}", &v[..12]);
                    }
                    let from = rng.gen_range(0..KEYS);
                    let mut expect = from;
                    let from_key = key(from);
                    let range = (Bound::Included(from_key.as_slice()), Bound::Unbounded);
                    for item in snap.scan(range).unwrap().take(200) {
                        let (k, v) = item.unwrap();
                        assert_eq!(k, key(expect));
                        assert!(v.starts_with(format!("{expect:05}/").as_bytes()));
                        expect += 1;
                    }
                    assert_eq!(expect, (from + 200).min(KEYS));
                }
            });
        }
    });
    assert!(db.stats().evictions > 1000, "the pool was meant to thrash: {:?}", db.stats());
    db.check().unwrap();
}
