//! A clean close records where the log ends, and the next open reads the log
//! only up to there: no look-ahead through the rest of a 16 MiB segment. The
//! open rewrites the master record without that mark before appending, so a
//! crash later recovers the long way and loses nothing.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ariesdb::storage::SimStorage;
use ariesdb::{Db, Durability, Options};
use common::hooked::{Hooked, LogHooks};
use common::*;

/// Counts the bytes read from log segments.
struct Counting(AtomicU64);

impl LogHooks for Counting {
    fn after_read(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn opts() -> Options {
    // Default 16 MiB segments; no background thread, for a deterministic log.
    Options::default().background_writer(false).durability(Durability::Immediate)
}

fn commit_keys(db: &Db, from: u32, to: u32, model: &mut Model) {
    for i in from..to {
        let mut tx = db.begin().unwrap();
        let k = format!("key{i:06}").into_bytes();
        tx.put(&k, [i as u8; 100]).unwrap();
        tx.commit().unwrap();
        model.insert(k, vec![i as u8; 100]);
    }
}

/// Open `sim` through the counter; the log bytes the open read.
fn open_counting(sim: &Arc<SimStorage>) -> (Db, u64) {
    let counter = Arc::new(Counting(AtomicU64::new(0)));
    let storage = Arc::new(Hooked { inner: sim.clone(), hooks: counter.clone() });
    let db = Db::open_with(storage, opts()).unwrap();
    (db, counter.0.load(Ordering::Relaxed))
}

#[test]
fn a_clean_open_reads_the_log_only_to_its_end() {
    let sim = new_sim(31);
    let mut model = Model::new();
    let db = Db::open_with(sim.clone(), opts()).unwrap();
    commit_keys(&db, 0, 300, &mut model);
    db.close().unwrap();

    let (db, read_clean) = open_counting(&sim);
    assert!(read_all(&db).unwrap() == model);
    // From the last checkpoint to the end: one window of the reader at most.
    assert!(read_clean <= 2 << 20, "a clean open read {read_clean} bytes of log");

    // Not closed: the next open finds the end the long way, through the
    // rest of the 16 MiB segment, and loses nothing.
    commit_keys(&db, 300, 400, &mut model);
    drop(db);
    sim.power_loss();
    let (db, read_after_crash) = open_counting(&sim);
    assert!(read_all(&db).unwrap() == model);
    assert!(read_after_crash > 8 << 20, "after a crash the open read {read_after_crash} bytes of log");
    eprintln!("log bytes read by a clean open: {read_clean}; by the open after a crash: {read_after_crash}");
    db.close().unwrap();
}

#[test]
fn a_crash_after_a_clean_open_recovers_everything() {
    let sim = new_sim(32);
    let mut model = Model::new();
    let db = Db::open_with(sim.clone(), opts()).unwrap();
    commit_keys(&db, 0, 100, &mut model);
    db.close().unwrap();
    for round in 0..3 {
        // A clean open, more commits, then a power loss: the master record
        // must no longer claim the old end.
        let db = Db::open_with(sim.clone(), opts()).unwrap();
        commit_keys(&db, 100 + round * 50, 150 + round * 50, &mut model);
        drop(db);
        sim.power_loss();
        let db = Db::open_with(sim.clone(), opts()).unwrap();
        assert!(read_all(&db).unwrap() == model, "round {round}");
        db.close().unwrap();
    }
}
