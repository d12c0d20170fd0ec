//! Shared by the integration tests: a seeded workload over several open
//! transactions, and an oracle of committed state.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use ariesdb::storage::SimStorage;
use ariesdb::{Db, Error, Options, Txn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub mod bank;
pub mod hooked;

/// A path under the system's temporary directory for case `name` of test
/// file `test`, with this process's id; whatever was there is removed.
pub fn tmp_dir(test: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ariesdb-{test}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Every entry of a directory: name -> (modification time, bytes).
pub fn dir_state(dir: &Path) -> BTreeMap<String, (SystemTime, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let modified = e.metadata().unwrap().modified().unwrap();
            (e.file_name().to_string_lossy().into_owned(), (modified, std::fs::read(e.path()).unwrap()))
        })
        .collect()
}

pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Options for crash tests: the smallest pool accepted, so uncommitted pages
/// are stolen, no background thread so runs are deterministic.
pub fn small_opts() -> Options {
    Options::default()
        .buffer_pool_pages(ariesdb::MIN_BUFFER_POOL_PAGES)
        .background_writer(false)
        .checkpoint_interval_bytes(0)
        .wal_segment_bytes(256 << 10)
}

/// Read everything committed: a full scan in a fresh transaction, plus `check()`.
pub fn read_all(db: &Db) -> Result<Model, Error> {
    db.check()?;
    let tx = db.begin()?;
    let mut m = Model::new();
    for item in tx.scan(..)? {
        let (k, v) = item?;
        m.insert(k, v);
    }
    tx.commit()?;
    Ok(m)
}

/// A random key from a small space, so that operations collide.
pub fn key(rng: &mut StdRng, space: u32) -> Vec<u8> {
    let k = rng.gen_range(0..space);
    // Vary key lengths, keep them sortable and distinct.
    let pad = (k % 7) as usize * 9;
    format!("k{k:06}{}", "-".repeat(pad)).into_bytes()
}

/// A random value: mostly small, sometimes large enough for overflow pages.
pub fn value(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.gen_range(0..100) {
        0..=79 => rng.gen_range(0..120),
        80..=96 => rng.gen_range(120..1500),
        _ => rng.gen_range(1500..20_000),
    };
    let b: u8 = rng.gen();
    (0..len).map(|i| b.wrapping_add(i as u8)).collect()
}

/// One transaction's pending changes (None = delete).
pub type Pending = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

pub fn apply(model: &mut Model, pending: &Pending) {
    for (k, v) in pending {
        match v {
            Some(v) => model.insert(k.clone(), v.clone()),
            None => model.remove(k),
        };
    }
}

/// Outcome of running a workload until it stops (by a crash or the op budget).
pub struct Outcome {
    /// Committed state acknowledged to the caller.
    pub model: Model,
    /// A commit that was in flight when the crash hit: it may or may not be durable.
    pub in_doubt: Vec<Pending>,
    /// The committed state after each acknowledged commit, in order (the
    /// first entry is the state before the workload).
    pub history: Vec<Model>,
}

/// Run `txns` transactions of random operations, a few open at once
/// (interleaved on one thread, on disjoint key ranges so they never wait on
/// each other), with savepoints, rollbacks, aborts and checkpoints. Stops at
/// the first error (an injected crash).
pub fn run_workload(db: &Db, rng: &mut StdRng, mut model: Model, txns: usize) -> Outcome {
    let mut in_doubt = Vec::new();
    let mut history = vec![model.clone()];
    let lanes = 3u32;
    let mut open: Vec<Option<(Txn, Pending, u32)>> = (0..lanes).map(|_| None).collect();
    let mut done = 0;
    let result: Result<(), Error> = (|| {
        // A key between each two lanes' ranges, committed first and never
        // changed: an insert or a delete also locks the key after it
        // (next-key locking), which then stays in the lane's own range or
        // lands on one of these, so the lanes never wait for each other.
        let separators: Pending =
            (0..lanes - 1).map(|l| (vec![b'a' + l as u8, 0xff], Some(b"lane end".to_vec()))).collect();
        if separators.keys().any(|k| !model.contains_key(k)) {
            let mut tx = db.begin()?;
            for (k, v) in &separators {
                tx.put(k, v.as_ref().expect("a value"))?;
            }
            if let Err(e) = tx.commit() {
                in_doubt.push(separators);
                return Err(e);
            }
            apply(&mut model, &separators);
            history.push(model.clone());
        }
        while done < txns {
            let lane = rng.gen_range(0..lanes) as usize;
            if open[lane].is_none() {
                open[lane] = Some((db.begin()?, Pending::new(), 0));
            }
            let (tx, pending, ops) = open[lane].as_mut().expect("open lane");
            *ops += 1;
            let k = {
                let mut k = key(rng, 400);
                k.insert(0, b'a' + lane as u8);
                k
            };
            match rng.gen_range(0..100) {
                0..=54 => {
                    let v = value(rng);
                    tx.put(&k, &v)?;
                    pending.insert(k, Some(v));
                }
                55..=69 => {
                    let existed = tx.delete(&k)?;
                    let expect = match pending.get(&k) {
                        Some(v) => v.is_some(),
                        None => model.contains_key(&k),
                    };
                    assert_eq!(existed, expect, "delete of {:?} saw the wrong state", String::from_utf8_lossy(&k));
                    pending.insert(k, None);
                }
                70..=79 => {
                    let got = tx.get(&k)?;
                    let expect = match pending.get(&k) {
                        Some(v) => v.clone(),
                        None => model.get(&k).cloned(),
                    };
                    assert_eq!(got, expect, "get saw the wrong value");
                }
                80..=83 => {
                    // Savepoint, a few writes, roll back to it.
                    let sp = tx.savepoint()?;
                    for _ in 0..rng.gen_range(1..6) {
                        let mut k2 = key(rng, 400);
                        k2.insert(0, b'a' + lane as u8);
                        if rng.gen_bool(0.7) {
                            tx.put(&k2, value(rng))?;
                        } else {
                            tx.delete(&k2)?;
                        }
                    }
                    tx.rollback_to(&sp)?;
                }
                84..=85 => db.checkpoint()?,
                _ => {}
            }
            if *ops > rng.gen_range(3..40) {
                let (tx, pending, _) = open[lane].take().expect("open lane");
                if rng.gen_bool(0.8) {
                    match tx.commit() {
                        Ok(()) => {
                            apply(&mut model, &pending);
                            history.push(model.clone());
                        }
                        Err(e) => {
                            in_doubt.push(pending);
                            return Err(e);
                        }
                    }
                } else {
                    tx.abort()?;
                }
                done += 1;
            }
        }
        Ok(())
    })();
    let _ = result;
    // Transactions still open are dropped: they roll back (or the Db is dead).
    drop(open);
    Outcome { model, in_doubt, history }
}

/// Check the recovered state against the oracle: every acknowledged commit is
/// there, nothing uncommitted is, and an in-doubt commit is all or nothing.
/// Returns the new committed model.
pub fn verify(db: &Db, outcome: &Outcome, ctx: &str) -> Model {
    let got = read_all(db).unwrap_or_else(|e| panic!("{ctx}: reading the recovered database failed: {e}"));
    if got == outcome.model {
        return got;
    }
    let mut with = outcome.model.clone();
    for p in &outcome.in_doubt {
        apply(&mut with, p);
        if got == with {
            return got;
        }
    }
    let missing: Vec<_> = outcome.model.keys().filter(|k| !got.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = got.keys().filter(|k| !outcome.model.contains_key(*k)).take(5).collect();
    let differ: Vec<_> =
        got.iter().filter(|(k, v)| outcome.model.get(*k).is_some_and(|m| m != *v)).map(|(k, _)| k).take(5).collect();
    panic!(
        "{ctx}: recovered state differs from the committed model: {} keys vs {} expected; missing {:?}, extra {:?}, different {:?}",
        got.len(),
        outcome.model.len(),
        missing.iter().map(|k| String::from_utf8_lossy(k)).collect::<Vec<_>>(),
        extra.iter().map(|k| String::from_utf8_lossy(k)).collect::<Vec<_>>(),
        differ.iter().map(|k| String::from_utf8_lossy(k)).collect::<Vec<_>>(),
    );
}

/// With `Durability::Eventual`: the recovered state must be the state after
/// some prefix of the acknowledged commits (a suffix may be lost, never a gap),
/// or that plus the commit in flight.
pub fn verify_prefix(db: &Db, outcome: &Outcome, ctx: &str) -> Model {
    let got = read_all(db).unwrap_or_else(|e| panic!("{ctx}: reading the recovered database failed: {e}"));
    let with_in_doubt = outcome.in_doubt.iter().fold(outcome.model.clone(), |mut m, p| {
        apply(&mut m, p);
        m
    });
    assert!(
        outcome.history.contains(&got) || got == with_in_doubt,
        "{ctx}: the recovered state ({} keys) is not the state after any prefix of the commits",
        got.len()
    );
    got
}

pub fn new_sim(seed: u64) -> Arc<SimStorage> {
    Arc::new(SimStorage::new(seed))
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Number of seeds to run: `default`, or ARIESDB_SEEDS from the environment.
pub fn seed_count(default: u64) -> u64 {
    std::env::var("ARIESDB_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// First seed: 0, or ARIESDB_SEED_START.
pub fn seed_start() -> u64 {
    std::env::var("ARIESDB_SEED_START").ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}
