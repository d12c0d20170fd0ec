//! Compaction and check() under concurrent writers: bank transfers between
//! accounts with 1000-byte shared-prefix keys and values that move between
//! inline and overflow, filler inserts/deletes that split and merge, lock
//! upgrades and deadlock victims rolled back; one thread compacts in a loop,
//! another checks. Money is conserved; then compact, crash, reopen.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ariesdb::{Db, Error, Options};
use common::*;
use rand::Rng;

const ACCOUNTS: u32 = 30;
const START: u64 = 1000;

fn acct(i: u32) -> Vec<u8> {
    let mut k = vec![b'a'; 1000];
    k.extend(format!("{i:03}").into_bytes());
    k.resize(1000 + (i as usize % 22) + 3, b'z');
    k
}

fn filler(t: u64, n: u64) -> Vec<u8> {
    let mut k = vec![b'f'; ((t * 131 + n * 7) % 1000) as usize + 1];
    k.extend(format!("{t}:{n:05}").into_bytes());
    k
}

fn enc(bal: u64, pad: usize) -> Vec<u8> {
    let mut v = bal.to_le_bytes().to_vec();
    v.resize(8 + pad, 0x5a);
    v
}

fn balance(v: Option<Vec<u8>>) -> u64 {
    u64::from_le_bytes(v.expect("account exists")[..8].try_into().unwrap())
}

fn pad(r: &mut rand::rngs::StdRng) -> usize {
    match r.gen_range(0..4) {
        0 => r.gen_range(0..50),
        1 => r.gen_range(50..1400),
        2 => r.gen_range(3000..12000),
        _ => r.gen_range(0..400),
    }
}

fn transfer(db: &Db, r: &mut rand::rngs::StdRng, t: u64, n: u64) -> Result<bool, Error> {
    let (a, b) = (r.gen_range(0..ACCOUNTS), r.gen_range(0..ACCOUNTS));
    if a == b {
        return Ok(false);
    }
    let amount = r.gen_range(1..50u64);
    let mut tx = db.begin()?;
    let ba = balance(tx.get(acct(a))?);
    let bb = balance(tx.get(acct(b))?);
    if ba < amount {
        tx.abort()?;
        return Ok(false);
    }
    if r.gen_bool(0.3) {
        let sp = tx.savepoint()?;
        tx.put(acct(a), enc(0, pad(r)))?;
        for i in 0..r.gen_range(1..10) {
            tx.put(filler(t, n * 100 + i), vec![1u8; pad(r)])?;
        }
        tx.rollback_to(&sp)?;
    }
    tx.put(acct(a), enc(ba - amount, pad(r)))?;
    tx.put(acct(b), enc(bb + amount, pad(r)))?;
    // filler: insert some, delete older ones
    for i in 0..r.gen_range(0..6) {
        tx.put(filler(t, n * 100 + 50 + i), vec![2u8; pad(r)])?;
    }
    if n >= 3 {
        for i in 0..6 {
            tx.delete(filler(t, (n - 3) * 100 + 50 + i))?;
        }
    }
    if r.gen_bool(0.15) {
        tx.abort()?;
        return Ok(false);
    }
    tx.commit()?;
    Ok(true)
}

fn total(db: &Db) -> u64 {
    let all = read_all(db).unwrap();
    all.iter().filter(|(k, _)| k.starts_with(&[b'a'; 1000])).map(|(_, v)| balance(Some(v.clone()))).sum()
}

#[test]
fn compact_and_check_under_concurrent_transfers() {
    for seed in 0..seed_count(3) {
        let sim = new_sim(seed);
        let opts = Options::default().page_size(4096).buffer_pool_pages(24).checkpoint_interval_bytes(256 << 10);
        let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..ACCOUNTS {
            tx.put(acct(i), enc(START, i as usize * 300)).unwrap();
        }
        tx.commit().unwrap();
        let stop = AtomicBool::new(false);
        let (deadlocks, compactions, checks) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|s| {
            let mut workers = Vec::new();
            for t in 0..3u64 {
                let (db, deadlocks) = (&db, &deadlocks);
                workers.push(s.spawn(move || {
                    let mut r = rng(seed * 100 + t);
                    for n in 0..150 {
                        loop {
                            match transfer(db, &mut r, t, n) {
                                Ok(_) => break,
                                Err(e) if e.is_retryable() => {
                                    deadlocks.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => panic!("seed {seed} thread {t}: {e}"),
                            }
                        }
                    }
                }));
            }
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    db.compact().unwrap_or_else(|e| panic!("seed {seed}: compact: {e}"));
                    compactions.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            });
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    db.check().unwrap_or_else(|e| panic!("seed {seed}: check: {e}"));
                    checks.fetch_add(1, Ordering::Relaxed);
                }
            });
            for w in workers {
                w.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(total(&db), START * ACCOUNTS as u64, "seed {seed}");
        let pages = db.compact().unwrap();
        let before = read_all(&db).unwrap();
        sim.power_loss();
        drop(db);
        let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
        let after = read_all(&db).unwrap();
        assert!(before == after, "seed {seed}: compact then crash lost data");
        assert_eq!(total(&db), START * ACCOUNTS as u64);
        eprintln!(
            "seed {seed}: {} deadlocks, {} compactions, {} checks, {pages} pages after compact",
            deadlocks.load(Ordering::Relaxed),
            compactions.load(Ordering::Relaxed),
            checks.load(Ordering::Relaxed)
        );
        db.close().unwrap();
    }
}
