//! Shutdown without `close()`: dropping a `Db` (plainly, by an early return,
//! or by a panic unwinding through its owner) makes every acknowledged commit
//! durable; `Db::sync` does the same without closing; a `Txn` that outlives
//! its `Db` gets well-defined errors. Durability is checked the hard way: a
//! simulated power loss between the drop and the reopen.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use ariesdb::storage::Fault;
use ariesdb::{Db, Durability, Error, Options};
use common::*;

const COMMITS: u32 = 1000;

fn eventual(background: bool) -> Options {
    Options::default().durability(Durability::Eventual).background_writer(background)
}

fn commit_many(db: &Db, n: u32) {
    for i in 0..n {
        let mut tx = db.begin().unwrap();
        tx.put(format!("key{i:06}").as_bytes(), format!("value{i}").as_bytes()).unwrap();
        tx.commit().unwrap();
    }
}

fn assert_all_there(db: &Db, n: u32, ctx: &str) {
    let m = read_all(db).unwrap();
    assert_eq!(m.len(), n as usize, "{ctx}: {} of {n} commits survived", m.len());
    for i in 0..n {
        assert_eq!(m.get(format!("key{i:06}").as_bytes()), Some(&format!("value{i}").into_bytes()), "{ctx}");
    }
}

#[test]
fn eventual_commits_survive_drop_then_power_loss() {
    for background in [true, false] {
        let sim = new_sim(1);
        let db = Db::open_with(sim.clone(), eventual(background)).unwrap();
        commit_many(&db, COMMITS);
        drop(db);
        sim.power_loss();
        let db = Db::open_with(sim, eventual(background)).unwrap();
        assert_all_there(&db, COMMITS, &format!("background_writer({background})"));
    }
}

#[test]
fn eventual_commits_survive_drop_on_real_files() {
    let dir = std::env::temp_dir().join(format!("ariesdb-shutdown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for background in [true, false] {
        {
            let db = Db::open_path_with(&dir, eventual(background)).unwrap();
            commit_many(&db, COMMITS);
        }
        let db = Db::open_path_with(&dir, eventual(background)).unwrap();
        assert_all_there(&db, COMMITS, &format!("real files, background_writer({background})"));
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_panic_unwinding_through_the_owner_loses_no_commit() {
    let sim = new_sim(2);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let db = Db::open_with(sim.clone(), eventual(false)).unwrap();
        commit_many(&db, COMMITS);
        // An open transaction at the panic: a loser, rolled back by recovery.
        let mut tx = db.begin().unwrap();
        tx.put(b"uncommitted", b"x").unwrap();
        panic!("the application failed");
    }));
    assert!(r.is_err());
    sim.power_loss();
    let db = Db::open_with(sim, eventual(false)).unwrap();
    assert_all_there(&db, COMMITS, "after the panic");
}

#[test]
fn sync_makes_eventual_commits_durable_without_closing() {
    let sim = new_sim(3);
    let db = Db::open_with(sim.clone(), eventual(false)).unwrap();
    commit_many(&db, COMMITS);
    db.sync().unwrap();
    // Power fails while the Db is still open: its handles die, so its drop's
    // flush fails, quietly.
    sim.power_loss();
    drop(db);
    let db = Db::open_with(sim, eventual(false)).unwrap();
    assert_all_there(&db, COMMITS, "after sync and power loss");
    db.sync().unwrap();
    db.close().unwrap();
}

#[test]
fn drop_on_failing_storage_gives_up_quietly() {
    for background in [true, false] {
        let sim = new_sim(4);
        let db = Db::open_with(sim.clone(), eventual(background)).unwrap();
        commit_many(&db, 100);
        db.sync().unwrap();
        sim.inject(Fault::IoErrorFromOp(sim.op_count()));
        // Commits may or may not be acknowledged now; none may panic.
        for i in 0..20 {
            if let Ok(mut tx) = db.begin() {
                let _ = tx.put(format!("late{i}").as_bytes(), b"v");
                let _ = tx.commit();
            }
        }
        drop(db);
        sim.clear_faults();
        sim.power_loss();
        let db = Db::open_with(sim, eventual(background)).unwrap();
        let m = read_all(&db).unwrap();
        assert!(m.len() >= 100, "synced commits lost: {}", m.len());
    }
}

#[test]
fn a_txn_that_outlives_its_db_gets_closed_errors_and_is_a_loser() {
    let dir = std::env::temp_dir().join(format!("ariesdb-outlive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Db::open_path_with(&dir, eventual(true)).unwrap();
    commit_many(&db, 10);
    let mut tx = db.begin().unwrap();
    tx.put(b"open-at-drop", b"x").unwrap();
    let idle = db.begin().unwrap();
    drop(db);
    // Every call is an error, never a panic.
    assert!(matches!(tx.put(b"more", b"y"), Err(Error::Closed)));
    assert!(matches!(tx.get(b"key000001"), Err(Error::Closed)));
    assert!(matches!(tx.delete(b"key000001"), Err(Error::Closed)));
    assert!(matches!(tx.savepoint(), Err(Error::Closed)));
    assert!(matches!(tx.scan(..).map(|_| ()), Err(Error::Closed)));
    assert!(matches!(idle.get(b"key000001"), Err(Error::Closed)));
    assert!(matches!(idle.commit(), Err(Error::Closed)));
    // The transaction keeps the directory locked until it is dropped.
    assert!(matches!(Db::open_path_with(&dir, eventual(true)), Err(Error::Locked { .. })));
    assert!(matches!(tx.commit(), Err(Error::Closed)));
    let db = Db::open_path_with(&dir, eventual(true)).unwrap();
    let m = read_all(&db).unwrap();
    assert_eq!(m.len(), 10);
    assert!(!m.contains_key(b"open-at-drop".as_slice()));
    assert_eq!(db.recovery_report().losers, 1);
    drop(db);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every file's bytes, by name.
fn disk(sim: &ariesdb::storage::SimStorage) -> Vec<(String, Option<Vec<u8>>)> {
    let mut names = ariesdb::storage::Storage::list(sim).unwrap();
    names.sort();
    names.into_iter().map(|n| (n.clone(), sim.file_contents(&n))).collect()
}

#[test]
fn a_db_from_before_a_simulated_crash_writes_nothing() {
    for (power, background) in [(true, true), (true, false), (false, true), (false, false)] {
        let sim = new_sim(5);
        let opts = eventual(background).wal_segment_bytes(64 << 10);
        let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
        commit_many(&db, 300);
        db.sync().unwrap();
        // Unsynced commits in the log buffer, more than a segment holds (the
        // flush would first create the next segment file), and a transaction
        // open: a drop would flush the one and roll back the other, if it could.
        commit_many(&db, 1000);
        let mut open = db.begin().unwrap();
        open.put(b"uncommitted", [7; 5000]).unwrap();
        if power {
            sim.power_loss();
        } else {
            sim.process_crash();
        }
        let before = disk(&sim);
        drop(open);
        drop(db);
        assert!(disk(&sim) == before, "a dead process's Db changed the disk (power loss: {power})");
        let db = Db::open_with(sim, opts).unwrap();
        db.check().unwrap();
        let m = read_all(&db).unwrap();
        assert!(m.len() >= 300 && !m.contains_key(&b"uncommitted"[..]), "{} keys", m.len());
    }
}
