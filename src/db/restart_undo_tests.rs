//! The background undo of losers after an instant restart: their keys stay
//! locked and snapshots see the state without them until the rollback is
//! done; `close` finishes it; a crash at any storage call of it recovers the
//! same state.
//!
//! More crash points, and more random losers stepped through:
//! `ARIESDB_SEEDS=20 cargo test --lib restart_undo`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Db;
use crate::error::Error;
use crate::options::Options;
use crate::storage::{Fault, SimStorage};

fn k(i: u32) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn v(i: u32, tag: u8) -> Vec<u8> {
    // Every 10th value is long: its old value lives in the log only
    // (`Before::Logged`) for the snapshots.
    let len = if i % 10 == 5 { 700 } else { 20 + (i % 40) as usize };
    let mut x = vec![tag; len];
    x.extend_from_slice(&i.to_le_bytes());
    x
}

use super::test_support::{read_all_txn, small_opts as opts, Model};

/// Instant restart with the background undo held until `release`.
fn held(lock_timeout_ms: u64) -> Options {
    let mut o = opts(true).lock_timeout(Duration::from_millis(lock_timeout_ms));
    o.hold_restart_undo = true;
    o
}

fn release(db: &Db) {
    db.inner.undo.held.store(false, Ordering::Release);
}

/// Wait (at most a minute: the machine may be loaded) until no loser is left.
fn wait_for_undo(db: &Db) {
    let t = Instant::now();
    while db.stats().losers_owing_undo > 0 {
        assert!(t.elapsed() < Duration::from_secs(60), "the background undo did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read_all_snapshot(db: &Db) -> crate::error::Result<Model> {
    let snap = db.begin_read()?;
    let mut m = Model::new();
    for item in snap.scan(..)? {
        let (key, value) = item?;
        m.insert(key, value);
    }
    let back: Vec<_> = snap.scan_rev(..)?.collect::<crate::error::Result<_>>()?;
    assert!(back.into_iter().rev().eq(m.clone()), "a backward scan disagrees with the forward one");
    Ok(m)
}

/// A database on a new `SimStorage` from `seed`, with `keys` committed
/// (each set to "committed").
fn committed(seed: u64, keys: &[&str]) -> (Arc<SimStorage>, Db) {
    let sim = Arc::new(SimStorage::new(seed));
    let db = Db::open_with(sim.clone(), opts(false)).unwrap();
    db.transaction(|tx| {
        for key in keys {
            tx.put(key, "committed")?;
        }
        Ok::<(), Error>(())
    })
    .unwrap();
    (sim, db)
}

/// The crash: the log made durable (the losers' records with it), then a
/// power loss; the old process's transactions `open` and its `db` go with
/// it, writing nothing.
fn power_loss(sim: &SimStorage, db: Db, open: Vec<crate::Txn>) {
    db.sync().unwrap();
    sim.power_loss();
    drop(open);
    drop(db);
}

/// A crashed database with one committed load and `losers` open
/// transactions, loser `t` changing keys `t*1000 + 0..keys` (each: an
/// update, an insert of a new key, a delete or an update to a long value,
/// by turns), the first loser partly rolled back to a savepoint. Returns the
/// disk and the committed state.
fn crashed(seed: u64, losers: u32, keys: u32) -> (Arc<SimStorage>, Model) {
    let sim = Arc::new(SimStorage::new(seed));
    let db = Db::open_with(sim.clone(), opts(false)).unwrap();
    let mut model = Model::new();
    let mut tx = db.begin().unwrap();
    for t in 0..losers.max(1) {
        for i in (0..keys).filter(|i| i % 4 != 1) {
            let key = t * 1000 + i;
            tx.put(k(key), v(key, 1)).unwrap();
            model.insert(k(key), v(key, 1));
        }
    }
    // Keys nobody left open touches.
    for i in 0..50 {
        tx.put(k(900_000 + i), v(i, 1)).unwrap();
        model.insert(k(900_000 + i), v(i, 1));
    }
    tx.commit().unwrap();
    let mut open = Vec::new();
    for t in 0..losers {
        let mut tx = db.begin().unwrap();
        if t == 0 {
            tx.put(k(999), v(999, 7)).unwrap();
            let sp = tx.savepoint().unwrap();
            tx.put(k(998), v(998, 7)).unwrap();
            tx.delete(k(0)).unwrap();
            tx.rollback_to(&sp).unwrap();
        }
        for i in 0..keys {
            let key = t * 1000 + i;
            match i % 4 {
                0 | 1 => tx.put(k(key), v(key + 1, 2)).unwrap(),
                2 => assert!(tx.delete(k(key)).unwrap()),
                _ => tx.put(k(key), v(5, 3)).unwrap(),
            }
        }
        open.push(tx);
    }
    power_loss(&sim, db, open);
    (sim, model)
}

#[test]
fn a_losers_keys_stay_locked_and_snapshots_see_the_state_before_it() {
    let (sim, model) = crashed(1, 2, 40);
    let db = Db::open_with(sim.clone(), held(150)).unwrap();
    let r = db.recovery_report();
    assert_eq!((r.losers, r.undo_deferred_losers, r.losers_rolled_back_in_background), (2, 2, 0), "{r:?}");
    assert_eq!(db.stats().losers_owing_undo, 2);
    // The tree still holds the losers' changes; snapshots see around them.
    assert_eq!(read_all_snapshot(&db).unwrap(), model);
    let snap = db.begin_read().unwrap();
    for i in [0u32, 1, 2, 3, 5, 1002] {
        assert_eq!(snap.get(k(i)).unwrap(), model.get(&k(i)).cloned(), "key {i}");
    }
    // Reads and writes of a loser's keys wait, and time out (retryable).
    let tx = db.begin().unwrap();
    let e = tx.get(k(0)).unwrap_err();
    assert!(matches!(e, Error::LockTimeout { .. }) && e.is_retryable(), "{e:?}");
    let mut tx = db.begin().unwrap();
    let e = tx.put(k(1), b"x").unwrap_err();
    assert!(matches!(e, Error::LockTimeout { .. }), "inserted by a loser: {e:?}");
    // A scan over the gap a loser's delete left (key 2 is gone) waits too.
    let tx = db.begin().unwrap();
    let e = tx.scan_range(k(2)..k(4)).unwrap().collect::<crate::error::Result<Vec<_>>>().unwrap_err();
    assert!(matches!(e, Error::LockTimeout { .. }), "the deleted key's gap: {e:?}");
    // Keys no loser touched work as usual.
    let mut tx = db.begin().unwrap();
    assert_eq!(tx.get(k(900_003)).unwrap(), model.get(&k(900_003)).cloned());
    tx.put(k(900_003), b"new").unwrap();
    tx.commit().unwrap();
    let mut model = model;
    model.insert(k(900_003), b"new".to_vec());

    release(&db);
    wait_for_undo(&db);
    let r = db.recovery_report();
    assert_eq!((r.undo_deferred_losers, r.losers_rolled_back_in_background), (2, 2), "{r:?}");
    assert!(r.deferred_undo_us > 0 && r.undone >= 80, "{r:?}");
    assert_eq!(read_all_txn(&db).unwrap(), model);
    // The snapshot begun before the undo, and a new one, read the same.
    assert_eq!(snap.get(k(1)).unwrap(), None);
    assert_eq!(read_all_snapshot(&db).unwrap(), model);
    assert_eq!(db.stats().snapshot_version_keys, 1, "only the committed change of a key the snapshot holds");
    db.check().unwrap();
    drop(snap);
    closed_and_reopened_clean(db, sim, false, &model);
}

/// Found by the crash_ops fuzz target: a loser deleted "b" and then
/// inserted "c" in the gap its delete widened. Its rollback removes "c"
/// first: the gap before "e" must stay locked until "b" is back, or a scan
/// passing then reads the database without "b".
#[test]
fn the_gap_a_losers_delete_widened_stays_locked_past_its_own_inserts() {
    let (sim, db) = committed(5, &["a", "b", "e"]);
    let mut loser = db.begin().unwrap();
    assert!(loser.delete("b").unwrap());
    loser.put("c", "uncommitted").unwrap();
    power_loss(&sim, db, vec![loser]);
    let db = Db::open_with(sim.clone(), held(150)).unwrap();
    let tx = db.begin().unwrap();
    let e = tx.scan_range("d".."f").unwrap().collect::<crate::error::Result<Vec<_>>>().unwrap_err();
    assert!(matches!(e, Error::LockTimeout { .. }), "the gap before e: {e:?}");
    let snap = db.begin_read().unwrap();
    let keys: Vec<Vec<u8>> = snap.scan(..).unwrap().map(|x| x.unwrap().0).collect();
    assert_eq!(keys, [b"a".to_vec(), b"b".to_vec(), b"e".to_vec()]);
    release(&db);
    wait_for_undo(&db);
    let tx = db.begin().unwrap();
    assert_eq!(tx.scan_range("a".."z").unwrap().count(), 3);
}

/// A loser of more keys than `lock_escalation_keys`: one lock on every key
/// while it is rolled back in the background, and snapshots read around
/// it from its versions (old values by LSN, read from the log).
#[test]
fn an_escalated_loser_locks_every_key_while_snapshots_read_around_it() {
    let (sim, model) = crashed(2, 1, 60);
    let db = Db::open_with(sim.clone(), held(150).lock_escalation_keys(20)).unwrap();
    let r = db.recovery_report();
    assert_eq!((r.losers, r.undo_deferred_losers), (1, 1), "{r:?}");
    assert_eq!(read_all_snapshot(&db).unwrap(), model);
    let e = db.begin().unwrap().get(k(900_001)).unwrap_err();
    assert!(matches!(e, Error::LockTimeout { .. }), "a key the loser did not touch: {e:?}");
    release(&db);
    wait_for_undo(&db);
    assert_eq!(read_all_snapshot(&db).unwrap(), model);
    assert_eq!(read_all_txn(&db).unwrap(), model);
}

/// A loser of more keys than its versions may take memory for (about 128
/// bytes a key, within `snapshot_cap_bytes`): the open rolls it back itself.
#[test]
fn a_loser_too_large_to_list_is_rolled_back_before_the_open_returns() {
    let (sim, model) = crashed(2, 1, 60);
    let db = Db::open_with(sim.clone(), held(150).snapshot_cap_bytes(128 * 20)).unwrap();
    let r = db.recovery_report();
    assert_eq!((r.losers, r.undo_deferred_losers), (1, 0), "{r:?}");
    assert!(r.undone >= 60, "{r:?}");
    assert_eq!(db.stats().losers_owing_undo, 0);
    assert_eq!(read_all_snapshot(&db).unwrap(), model);
    assert_eq!(read_all_txn(&db).unwrap(), model);
}

#[test]
fn close_finishes_the_undo_and_a_drop_leaves_it_to_the_next_open() {
    let (sim, model) = crashed(3, 2, 30);
    let db = Db::open_with(sim.clone(), held(10_000)).unwrap();
    // Dropped with the undo held: the losers stay in the log.
    drop(db);
    let db = Db::open_with(sim.clone(), held(10_000)).unwrap();
    let r = db.recovery_report();
    assert_eq!((r.losers, r.undo_deferred_losers), (2, 2), "{r:?}");
    db.close().unwrap();
    let db = Db::open_with(sim.clone(), opts(true)).unwrap();
    let r = db.recovery_report();
    assert_eq!((r.losers, r.undone), (0, 0), "close rolled them back: {r:?}");
    assert_eq!(read_all_txn(&db).unwrap(), model);
}

#[test]
fn a_checkpoint_during_the_undo_keeps_the_losers_and_a_crash_then_recovers() {
    let (sim, model) = crashed(4, 2, 40);
    let db = Db::open_with(sim.clone(), held(10_000)).unwrap();
    db.checkpoint().unwrap();
    db.sync().unwrap();
    sim.power_loss();
    drop(db);
    let db = Db::open_with(sim.clone(), opts(false)).unwrap();
    assert_eq!(db.recovery_report().losers, 2, "{:?}", db.recovery_report());
    assert_eq!(read_all_txn(&db).unwrap(), model);
}

/// After the open: a snapshot and a transaction that waits for the losers'
/// keys, then five commits. Returns the commits acknowledged and the one in
/// doubt.
fn work_after_open(db: Db, model: &Model) -> (Vec<u32>, Option<u32>) {
    let mut acked = Vec::new();
    let Ok(snap) = db.begin_read() else { return (acked, None) };
    release(&db);
    match read_all_snapshot(&db) {
        Ok(m) => assert_eq!(&m, model, "a snapshot during the undo"),
        Err(_) => return (acked, None),
    }
    drop(snap);
    if read_all_txn(&db).is_err() {
        return (acked, None);
    }
    for i in 0..5u32 {
        let r = db.begin().and_then(|mut tx| {
            tx.put(k(500_000 + i), v(i, 9))?;
            Ok(tx)
        });
        let Ok(tx) = r else { return (acked, None) };
        match tx.commit() {
            Ok(()) => acked.push(i),
            Err(_) => return (acked, Some(i)),
        }
    }
    let _ = db.close();
    (acked, None)
}

#[test]
fn a_crash_at_every_storage_call_of_the_background_undo_recovers_the_same_state() {
    let seeds: u64 = std::env::var("ARIESDB_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    for seed in 0..seeds {
        let (sim, model) = crashed(10 + seed, 2, 24);
        let base = sim.op_count();
        let db = Db::open_with(sim.clone(), held(10_000)).unwrap();
        let (acked, _) = work_after_open(db, &model);
        assert_eq!(acked.len(), 5);
        let ops = sim.op_count() - base;
        let step = (ops / 400).max(1);
        for n in (0..ops).step_by(step as usize) {
            let (sim, mut expect) = crashed(10 + seed, 2, 24);
            sim.inject(Fault::CrashAtOp(sim.op_count() + n));
            let (acked, in_doubt) = match Db::open_with(sim.clone(), held(10_000)) {
                Ok(db) => work_after_open(db, &expect),
                Err(_) => (Vec::new(), None),
            };
            sim.power_loss();
            let instant = n % 2 == 0;
            let db = Db::open_with(sim.clone(), opts(instant)).unwrap_or_else(|e| {
                panic!("seed {seed}, crash at call {n}: recovery failed: {e}\nreproduce: ARIESDB_SEEDS={} cargo test --lib restart_undo", seed + 1)
            });
            let mut got = read_all_txn(&db).unwrap();
            for i in acked {
                expect.insert(k(500_000 + i), v(i, 9));
            }
            if let Some(i) = in_doubt {
                if got.get(&k(500_000 + i)) == Some(&v(i, 9)) {
                    got.remove(&k(500_000 + i));
                }
            }
            assert!(
                got == expect,
                "seed {seed}, crash at call {n} (recovered {}): the state differs\nreproduce: ARIESDB_SEEDS={} cargo \
                 test --lib restart_undo",
                if instant { "instant" } else { "classic" },
                seed + 1
            );
            db.check().unwrap_or_else(|e| panic!("seed {seed}, crash at call {n}: {e}"));
        }
    }
}

/// A crashed database holding the committed `keys`, with one loser that ran
/// `loser` (left open at the crash). Returns the disk and the loser's id.
fn crashed_with(seed: u64, keys: &[&str], loser: impl FnOnce(&mut crate::Txn)) -> (Arc<SimStorage>, u64) {
    let (sim, db) = committed(seed, keys);
    let mut tx = db.begin().unwrap();
    loser(&mut tx);
    let id = tx.id();
    power_loss(&sim, db, vec![tx]);
    (sim, id)
}

/// Take `n` steps of the rollback of loser `id` here (the thread is held),
/// as the thread would between two holds of the tree latch.
fn undo_steps(db: &Db, id: u64, n: u64) {
    let mut at = None;
    let done = db.inner.txn_env().rollback_steps(crate::types::TxnId(id), crate::types::Lsn::NONE, &mut at, n).unwrap();
    assert!(!done, "the loser was rolled back whole");
}

fn keys_of_txn_scan(db: &Db) -> crate::error::Result<Vec<String>> {
    let tx = db.begin()?;
    let keys = tx.scan(..)?.map(|x| x.map(|(k, _)| String::from_utf8(k).unwrap())).collect::<crate::error::Result<_>>();
    drop(tx);
    keys
}

fn keys_of_snapshot(db: &Db) -> Vec<String> {
    let snap = db.begin_read().unwrap();
    let fwd: Vec<String> = snap.scan(..).unwrap().map(|x| String::from_utf8(x.unwrap().0).unwrap()).collect();
    let mut back: Vec<String> = snap.scan_rev(..).unwrap().map(|x| String::from_utf8(x.unwrap().0).unwrap()).collect();
    back.reverse();
    assert_eq!(fwd, back, "a backward scan disagrees with the forward one");
    fwd
}

/// A loser deleted "b" and put it back: "b" is in the tree at the open, but
/// its rollback first removes it again (undoing the insert) and only then
/// restores the committed value. Between those two steps a scan must not
/// pass over the place of "b" (it would read the database without a
/// committed key), nor may an insert enter the gap the delete widened.
#[test]
fn a_key_a_loser_deleted_and_put_back_keeps_its_gaps_locked() {
    let (sim, id) = crashed_with(6, &["a", "b", "e"], |tx| {
        assert!(tx.delete("b").unwrap());
        tx.put("b", "uncommitted").unwrap();
    });
    let db = Db::open_with(sim.clone(), held(100)).unwrap();
    assert_eq!(keys_of_snapshot(&db), ["a", "b", "e"]);
    // The first step undoes the put: "b" is gone from the tree for a while.
    undo_steps(&db, id, 1);
    let r = keys_of_txn_scan(&db);
    assert!(matches!(r, Err(Error::LockTimeout { .. })), "a scan mid-rollback: {r:?}");
    // As the loser held it: the gap before "e", which its delete widened.
    let mut tx = db.begin().unwrap();
    let e = tx.put("c", "x").unwrap_err();
    assert!(matches!(e, Error::LockTimeout { .. }), "an insert next to the deleted key: {e:?}");
    let e = db.begin().unwrap().scan_rev(..).unwrap().collect::<crate::error::Result<Vec<_>>>().unwrap_err();
    assert!(matches!(e, Error::LockTimeout { .. }), "a backward scan mid-rollback: {e:?}");
    assert_eq!(keys_of_snapshot(&db), ["a", "b", "e"]);
    release(&db);
    wait_for_undo(&db);
    assert_eq!(keys_of_txn_scan(&db).unwrap(), ["a", "b", "e"]);
    assert_eq!(db.begin().unwrap().get("b").unwrap().as_deref(), Some(&b"committed"[..]));
    db.close().unwrap();
}

/// A loser inserted "c" and then deleted "b", the key before it: the gap
/// its delete widened runs from "a" to its own "c", and stays so until the
/// rollback puts "b" back. An insert into it (say "bb") must wait, as it
/// waited for the loser before the crash: else a scan reads "a", "bb"
/// without the committed "b".
#[test]
fn the_gap_before_a_losers_own_insert_that_its_delete_widened_stays_locked() {
    let (sim, _) = crashed_with(7, &["a", "b", "e"], |tx| {
        tx.put("c", "uncommitted").unwrap();
        assert!(tx.delete("b").unwrap());
    });
    let db = Db::open_with(sim.clone(), held(100)).unwrap();
    assert_eq!(keys_of_snapshot(&db), ["a", "b", "e"]);
    let mut tx = db.begin().unwrap();
    let e = tx.put("bb", "x").unwrap_err();
    assert!(matches!(e, Error::LockTimeout { .. }), "an insert into the widened gap: {e:?}");
    let mut tx = db.begin().unwrap();
    let e = tx.put("d", "x").unwrap_err();
    assert!(matches!(e, Error::LockTimeout { .. }), "an insert after the loser's insert: {e:?}");
    release(&db);
    wait_for_undo(&db);
    assert_eq!(keys_of_txn_scan(&db).unwrap(), ["a", "b", "e"]);
    db.close().unwrap();
}

/// A loser that had begun its abort (its Abort record and the first CLRs
/// are in the log) when the crash hit: only what its rollback has not
/// undone yet stays locked and hidden, and the background finishes it.
#[test]
fn a_loser_caught_in_its_abort_is_finished_in_the_background() {
    let (sim, db) = committed(8, &["a", "b", "d", "f"]);
    let mut tx = db.begin().unwrap();
    tx.put("a", vec![b'u'; 700]).unwrap();
    assert!(tx.delete("b").unwrap());
    tx.put("c", "uncommitted").unwrap();
    assert!(tx.delete("d").unwrap());
    tx.put("e", "uncommitted").unwrap();
    let id = crate::types::TxnId(tx.id());
    // The abort as `Txn::abort` begins it: its record, then three steps
    // (past the Abort record, then the undo of "e" and of "d").
    let env = db.inner.txn_env();
    env.log_txn_record(id, crate::wal::Body::Abort).unwrap();
    let mut at = None;
    assert!(!env.rollback_steps(id, crate::types::Lsn::NONE, &mut at, 3).unwrap());
    power_loss(&sim, db, vec![tx]);
    let db = Db::open_with(sim.clone(), held(100)).unwrap();
    assert_eq!(db.recovery_report().undo_deferred_losers, 1);
    assert_eq!(keys_of_snapshot(&db), ["a", "b", "d", "f"]);
    // "e" and "d" are undone: nothing of them is locked.
    let mut tx = db.begin().unwrap();
    assert_eq!(tx.get("d").unwrap().as_deref(), Some(&b"committed"[..]));
    tx.put("e", "new").unwrap();
    tx.commit().unwrap();
    // "c" and what comes before it still are.
    for key in ["a", "b", "c"] {
        let e = db.begin().unwrap().get(key).unwrap_err();
        assert!(matches!(e, Error::LockTimeout { .. }), "{key}: {e:?}");
    }
    release(&db);
    wait_for_undo(&db);
    assert_eq!(keys_of_txn_scan(&db).unwrap(), ["a", "b", "d", "e", "f"]);
    assert_eq!(db.begin().unwrap().get("a").unwrap().as_deref(), Some(&b"committed"[..]));
    db.close().unwrap();
    let db = Db::open_with(sim, opts(true)).unwrap();
    assert_eq!(db.recovery_report().losers, 0);
}

/// Two losers, both past the escalation limit: the second cannot get the
/// lock on every key the first holds, so both are rolled back before the
/// open returns.
#[test]
fn losers_whose_locks_cannot_all_be_rebuilt_are_rolled_back_in_the_open() {
    let (sim, model) = crashed(9, 2, 60);
    let db = Db::open_with(sim.clone(), held(100).lock_escalation_keys(20)).unwrap();
    let r = db.recovery_report();
    assert_eq!((r.losers, r.undo_deferred_losers), (2, 0), "{r:?}");
    assert_eq!(db.stats().losers_owing_undo, 0);
    assert_eq!(read_all_snapshot(&db).unwrap(), model);
    assert_eq!(read_all_txn(&db).unwrap(), model);
    db.close().unwrap();
}

/// A long value (its old value in the log only) that a loser deleted and
/// put back short: a snapshot begun mid-rollback reads it from the log,
/// across checkpoints that truncate the log, until the undo is done.
#[test]
fn a_snapshot_reads_a_long_value_a_loser_replaced_across_checkpoints() {
    let long = vec![b'L'; 3000];
    let sim = Arc::new(SimStorage::new(10));
    let db = Db::open_with(sim.clone(), opts(false)).unwrap();
    db.transaction(|tx| {
        tx.put("a", "committed")?;
        tx.put("b", &long)?;
        tx.put("e", "committed")
    })
    .unwrap();
    let mut tx = db.begin().unwrap();
    assert!(tx.delete("b").unwrap());
    tx.put("b", "short").unwrap();
    let id = tx.id();
    power_loss(&sim, db, vec![tx]);
    let db = Db::open_with(sim.clone(), held(100)).unwrap();
    let snap = db.begin_read().unwrap();
    undo_steps(&db, id, 1);
    // Enough log for checkpoints to remove segments.
    for i in 0..300u32 {
        let mut tx = db.begin().unwrap();
        tx.put(k(i), v(5, 4)).unwrap();
        tx.commit().unwrap();
        if i % 50 == 0 {
            db.checkpoint().unwrap();
        }
    }
    assert_eq!(snap.get("b").unwrap(), Some(long.clone()));
    assert_eq!(db.begin_read().unwrap().get("b").unwrap(), Some(long.clone()));
    release(&db);
    wait_for_undo(&db);
    db.checkpoint().unwrap();
    assert_eq!(snap.get("b").unwrap(), Some(long.clone()));
    assert_eq!(db.begin().unwrap().get("b").unwrap(), Some(long));
    drop(snap);
    db.close().unwrap();
}

/// Two losers: B deleted "b" and inserted "d"; A, older, then inserted "c"
/// into the gap before "d" (which B did not hold before the insert of a key
/// into a gap its own delete widened locked the gap before the key: its
/// delete locked the gap before "e"). A's rollback removes "c", B's first step removes "d": the
/// place of "b" is then under the gap before "e", which must still be B's,
/// though the walk from "b" to the key its rollback keeps passes another
/// loser's insert.
#[test]
fn the_gap_a_losers_delete_widened_stays_locked_past_other_losers_inserts() {
    let (sim, db) = committed(11, &["a", "b", "e"]);
    let mut older = db.begin().unwrap();
    let mut younger = db.begin().unwrap();
    assert!(younger.delete("b").unwrap());
    younger.put("d", "uncommitted").unwrap();
    // As an engine that did not lock the gap before an insert into a gap its
    // inserter's own delete widened let it happen: the log holds this.
    let gap_d = crate::txn::gap_lock(Some(b"d"));
    db.inner.locks.release_one(crate::types::TxnId(younger.id()), gap_d);
    older.put("c", "uncommitted").unwrap();
    let (a, b) = (older.id(), younger.id());
    power_loss(&sim, db, vec![older, younger]);
    let db = Db::open_with(sim.clone(), held(100)).unwrap();
    assert_eq!(db.recovery_report().undo_deferred_losers, 2);
    undo_steps(&db, a, 1);
    undo_steps(&db, b, 1);
    let r = keys_of_txn_scan(&db);
    assert!(matches!(r, Err(Error::LockTimeout { .. })), "a scan mid-rollback: {r:?}");
    assert_eq!(keys_of_snapshot(&db), ["a", "b", "e"]);
    release(&db);
    wait_for_undo(&db);
    assert_eq!(keys_of_txn_scan(&db).unwrap(), ["a", "b", "e"]);
    db.close().unwrap();
}

/// A small xorshift generator, seeded.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn small_key(i: u64) -> Vec<u8> {
    format!("k{i}").into_bytes()
}

/// A crashed database: a committed load on a few keys, then random work
/// of three lanes of transactions on them (puts of short and long values,
/// deletes, savepoints and rollbacks to them, commits), those open at the
/// end left open (losers). Deterministic in `case`. Returns the disk, the
/// number of keys and the generator, to go on with.
fn random_losers(case: u64) -> (Arc<SimStorage>, u64, Rng) {
    let mut rng = Rng(case.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let keys = 3 + rng.below(5);
    let sim = Arc::new(SimStorage::new(100 + case));
    let db = Db::open_with(sim.clone(), opts(false).lock_timeout(Duration::from_millis(1))).unwrap();
    let mut tx = db.begin().unwrap();
    for i in (0..keys).filter(|_| rng.below(2) == 0) {
        tx.put(small_key(i), b"c0").unwrap();
    }
    tx.commit().unwrap();
    let value = |rng: &mut Rng, tag: u8| vec![tag; if rng.below(4) == 0 { 600 } else { 3 }];
    let mut lanes: Vec<Option<(crate::Txn, Vec<crate::Savepoint>)>> = vec![None, None, None];
    for step in 0..24u8 {
        let lane = rng.below(3) as usize;
        let (tx, sps) = lanes[lane].get_or_insert_with(|| (db.begin().unwrap(), Vec::new()));
        let key = small_key(rng.below(keys));
        let r = match rng.below(12) {
            0..=4 => tx.put(&key, value(&mut rng, step)),
            5..=8 => tx.delete(&key).map(|_| ()),
            9 => tx.savepoint().map(|sp| sps.push(sp)),
            10 => match sps.last().copied() {
                Some(sp) => tx.rollback_to(&sp),
                None => Ok(()),
            },
            _ => lanes[lane].take().unwrap().0.commit(),
        };
        if r.is_err() {
            // A lock wait on another lane: this one was rolled back.
            lanes[lane] = None;
        }
    }
    power_loss(&sim, db, lanes.into_iter().flatten().map(|(tx, _)| tx).collect());
    (sim, keys, rng)
}

/// Random losers on a few shared keys (`random_losers`), then their
/// rollback one step at a time, and after each step: a read-write scan
/// forward and backward, and reads of every key, either wait (and time
/// out) or read the committed state; a snapshot reads it; and an insert or
/// delete of another transaction that gets its locks commits.
#[test]
fn every_step_of_the_background_undo_shows_only_the_committed_state() {
    let cases: u64 = std::env::var("ARIESDB_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1) * 40;
    for case in 0..cases {
        // The committed state, as the classic recovery makes it.
        let mut model = {
            let (sim, _, _) = random_losers(case);
            let db = Db::open_with(sim, opts(false)).unwrap();
            read_all_txn(&db).unwrap()
        };
        let (sim, keys, mut rng) = random_losers(case);
        // Every third case, losers of more than 2 keys lock every key.
        let escalation = if case % 3 == 2 { 2 } else { 0 };
        let db = Db::open_with(sim.clone(), held(1).lock_escalation_keys(escalation)).unwrap();
        let mut losers: Vec<u64> = db.inner.txns.lock().active_txns.keys().map(|id| id.get()).collect();
        losers.sort_unstable();
        // Where the rollback of the first loser left goes on.
        let mut at = None;
        let mut turn = 0u32;
        loop {
            turn += 1;
            let ctx = format!("case {case}, turn {turn}");
            match read_all_snapshot(&db) {
                Ok(m) => assert_eq!(m, model, "{ctx}: a snapshot"),
                Err(e) => assert!(escalation > 0 && matches!(e, Error::SnapshotTooOld { .. }), "{ctx}: {e:?}"),
            }
            // A range, forward and backward.
            let (lo, hi) = (small_key(rng.below(keys + 1)), small_key(rng.below(keys + 1)));
            if lo < hi {
                let want: Vec<_> = model.range(lo.clone()..hi.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
                let tx = db.begin().unwrap();
                match tx.scan_range(lo.clone()..hi.clone()).unwrap().collect::<crate::error::Result<Vec<_>>>() {
                    Ok(m) => assert_eq!(m, want, "{ctx}: a range scan"),
                    Err(e) => assert!(matches!(e, Error::LockTimeout { .. }), "{ctx}: {e:?}"),
                }
                let tx = db.begin().unwrap();
                match tx.scan_range_rev(lo..hi).unwrap().collect::<crate::error::Result<Vec<_>>>() {
                    Ok(m) => assert!(m.into_iter().rev().eq(want), "{ctx}: a backward range scan"),
                    Err(e) => assert!(matches!(e, Error::LockTimeout { .. }), "{ctx}: {e:?}"),
                }
            }
            if turn.is_multiple_of(4) {
                db.checkpoint().unwrap();
            }
            match read_all_txn(&db) {
                Ok(m) => assert_eq!(m, model, "{ctx}: a scan"),
                Err(e) => assert!(matches!(e, Error::LockTimeout { .. }), "{ctx}: {e:?}"),
            }
            match db.begin().unwrap().scan_rev(..).unwrap().collect::<crate::error::Result<Vec<_>>>() {
                Ok(m) => assert!(m.into_iter().rev().eq(model.clone()), "{ctx}: a backward scan"),
                Err(e) => assert!(matches!(e, Error::LockTimeout { .. }), "{ctx}: {e:?}"),
            }
            for i in 0..keys + 1 {
                match db.begin().unwrap().get(small_key(i)) {
                    Ok(v) => assert_eq!(v.as_ref(), model.get(&small_key(i)), "{ctx}: a get of k{i}"),
                    Err(e) => assert!(matches!(e, Error::LockTimeout { .. }), "{ctx}: {e:?}"),
                }
            }
            // Another transaction writes where it gets the locks.
            let key = format!("k{}{}", rng.below(keys), ["", "5"][rng.below(2) as usize]).into_bytes();
            let mut tx = db.begin().unwrap();
            let r = match rng.below(2) {
                0 => tx.put(&key, b"other").map(|()| Some(b"other".to_vec())),
                _ => tx.delete(&key).map(|_| None),
            };
            if let Ok(v) = r {
                tx.commit().unwrap();
                match v {
                    Some(v) => model.insert(key, v),
                    None => model.remove(&key),
                };
            }
            // One step of the oldest loser left.
            let Some(&id) = losers.first() else { break };
            let env = db.inner.txn_env();
            if env.rollback_steps(crate::types::TxnId(id), crate::types::Lsn::NONE, &mut at, 1).unwrap() {
                losers.remove(0);
                at = None;
            }
        }
        release(&db);
        wait_for_undo(&db);
        assert_eq!(read_all_txn(&db).unwrap(), model, "case {case}: after the undo");
        assert_eq!(read_all_snapshot(&db).unwrap(), model, "case {case}: after the undo");
        db.check().unwrap();
        db.close().unwrap();
        let db = Db::open_with(sim, opts(true)).unwrap();
        assert_eq!(db.recovery_report().losers, 0, "case {case}");
        assert_eq!(read_all_txn(&db).unwrap(), model, "case {case}: reopened");
    }
}

/// An I/O error at a storage call of the background undo stops the
/// database (later calls fail, the losers' keys are never handed out), and
/// the next open finishes the rollback.
#[test]
fn an_io_error_in_the_background_undo_stops_the_database_and_the_next_open_finishes_it() {
    // The undo takes about 50 storage calls.
    for n in (0..60).step_by(2) {
        let (sim, model) = crashed(20, 2, 24);
        let db = Db::open_with(sim.clone(), held(10_000)).unwrap();
        sim.inject(Fault::IoErrorFromOp(sim.op_count() + n));
        release(&db);
        let t = Instant::now();
        while db.stats().losers_owing_undo > 0 && db.inner.check_ok().is_ok() {
            assert!(t.elapsed() < Duration::from_secs(60), "call {n}: the undo neither ended nor stopped");
            std::thread::sleep(Duration::from_millis(2));
        }
        if db.stats().losers_owing_undo > 0 {
            let e = db.begin().and_then(|tx| tx.get(k(0))).unwrap_err();
            assert!(matches!(e, Error::Failed { .. }), "call {n}: {e:?}");
        }
        drop(db);
        sim.power_loss();
        sim.clear_faults();
        let db = Db::open_with(sim.clone(), opts(n % 12 == 0)).unwrap();
        wait_for_undo(&db);
        assert_eq!(read_all_txn(&db).unwrap(), model, "call {n}");
        db.close().unwrap();
    }
}

/// The background undo and the background redo pass (its sweeps of the log)
/// run at once, with readers: the result is the classic restart's.
#[test]
fn the_background_undo_and_redo_pass_run_together_and_leave_the_classic_state() {
    for seed in [40u64, 41] {
        let (sim, model) = crashed(seed, 3, 400);
        let db = Db::open_with(sim.clone(), held(10_000).background_writer(true)).unwrap();
        assert_eq!(db.stats().losers_owing_undo, 3);
        let deferred = db.recovery_report().redo_deferred_pages;
        assert!(deferred > 50, "seed {seed}: only {deferred} pages deferred");
        release(&db);
        // Readers meanwhile: snapshots at once, a transaction once the keys are free.
        assert_eq!(read_all_snapshot(&db).unwrap(), model, "seed {seed}: a snapshot during both passes");
        assert_eq!(read_all_txn(&db).unwrap(), model, "seed {seed}: a transaction during both passes");
        wait_for_undo(&db);
        let t = Instant::now();
        while db.stats().pages_owing_redo > 0 {
            assert!(t.elapsed() < Duration::from_secs(60), "the background redo pass did not finish");
            std::thread::sleep(Duration::from_millis(2));
        }
        let (classic, _) = crashed(seed, 3, 400);
        let db_b = Db::open_with(classic, opts(false)).unwrap();
        let (ca, cb) = (db.check().unwrap(), db_b.check().unwrap());
        assert_eq!(format!("{ca:?}"), format!("{cb:?}"), "seed {seed}: the trees differ");
        assert_eq!(read_all_txn(&db_b).unwrap(), model);
        closed_and_reopened_clean(db, sim, true, &model);
    }
}

/// Two losers whose rebuilt gap locks overlap: loser A deleted "b" (its
/// delete locked the gaps before "b" and before "d"), and loser B then
/// deleted "d", which a lock table without A's lock on the gap before "d"
/// let it do (dropped here by hand). At the open both want the gap before
/// "e": the locks cannot all be rebuilt, so the open rolls both back
/// itself, and every reader sees the committed state at once.
#[test]
fn losers_whose_rebuilt_gap_locks_overlap_are_rolled_back_in_the_open() {
    let (sim, db) = committed(42, &["a", "b", "d", "e"]);
    let mut a = db.begin().unwrap();
    assert!(a.delete("b").unwrap());
    db.inner.locks.release_one(crate::types::TxnId(a.id()), crate::txn::gap_lock(Some(b"d")));
    let mut b = db.begin().unwrap();
    assert!(b.delete("d").unwrap());
    power_loss(&sim, db, vec![a, b]);
    let db = Db::open_with(sim.clone(), held(100)).unwrap();
    let r = db.recovery_report();
    assert_eq!((r.losers, r.undo_deferred_losers), (2, 0), "{r:?}");
    assert_eq!(db.stats().losers_owing_undo, 0);
    assert_eq!(keys_of_snapshot(&db), ["a", "b", "d", "e"]);
    assert_eq!(keys_of_txn_scan(&db).unwrap(), ["a", "b", "d", "e"]);
    db.check().unwrap();
}

/// Close `db`, reopen `sim` (instantly or not): nothing is left to roll
/// back, and the committed state is `model`.
fn closed_and_reopened_clean(db: Db, sim: Arc<SimStorage>, instant: bool, model: &Model) {
    db.close().unwrap();
    let db = Db::open_with(sim, opts(instant)).unwrap();
    assert_eq!(db.recovery_report().losers, 0);
    assert_eq!(&read_all_txn(&db).unwrap(), model);
}
