//! Instant restart (`Options::instant_restart`): the open returns after
//! analysis, and each page that may be newer in the log than on disk is
//! redone at its first load, by the background pass, or at `close`. The
//! database must serve exactly what the classic three passes give, through a
//! checkpoint taken while pages still owe redo, and through a crash at every
//! storage call after such an open.
//!
//! One seed of the crash loop: `ARIESDB_SEED_START=3 ARIESDB_SEEDS=1 cargo test --test instant_restart`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ariesdb::storage::{Fault, SimStorage};
use ariesdb::{Db, Error, Options};
use common::*;

fn k(i: u32) -> Vec<u8> {
    format!("key{i:07}").into_bytes()
}
fn v(i: u32, tag: u8) -> Vec<u8> {
    let mut x = vec![tag; 30 + (i % 70) as usize];
    x.extend_from_slice(&i.to_le_bytes());
    x
}

fn opts(instant: bool) -> Options {
    small_opts().instant_restart(instant)
}

/// A crashed database whose pages owe redo: a committed load, a checkpoint
/// (so some pages' rec_lsn lies before it), more commits, and a loser that
/// changed many keys. Returns the disk and the committed state.
fn crashed(seed: u64) -> (Arc<SimStorage>, Model) {
    let sim = new_sim(seed);
    let db = Db::open_with(sim.clone(), opts(false)).unwrap();
    let mut model = Model::new();
    let mut tx = db.begin().unwrap();
    for i in 0..1500u32 {
        tx.put(k(i), v(i, 1)).unwrap();
        model.insert(k(i), v(i, 1));
    }
    tx.commit().unwrap();
    db.checkpoint().unwrap();
    let mut tx = db.begin().unwrap();
    for i in (0..2500u32).step_by(3) {
        tx.put(k(i), v(i, 2)).unwrap();
        model.insert(k(i), v(i, 2));
    }
    for i in (0..1500u32).step_by(7) {
        tx.delete(k(i)).unwrap();
        model.remove(&k(i));
    }
    tx.commit().unwrap();
    // The loser changes a few neighbouring keys: its undo at the open
    // touches only their pages, and the rest still owe redo after it.
    let mut loser = db.begin().unwrap();
    for i in 1000..1030u32 {
        loser.put(k(i), v(i, 3)).unwrap();
    }
    db.sync().unwrap();
    // The crash; the old process's handles then refuse every call.
    sim.power_loss();
    drop(loser);
    drop(db);
    (sim, model)
}

#[test]
fn the_open_defers_redo_and_a_read_redoes_only_the_pages_it_touches() {
    let (sim, model) = crashed(1);
    let db = Db::open_with(sim.clone(), opts(true)).unwrap();
    let r = db.recovery_report();
    assert!(r.redo_deferred_pages > 20, "{r:?}");
    assert_eq!(r.losers, 1, "{r:?}");
    let owing = db.stats().pages_owing_redo;
    assert!(owing > 0 && owing <= r.redo_deferred_pages, "owing {owing}, {r:?}");
    let before = db.stats().pages_redone_on_demand;
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.get(k(3)).unwrap(), model.get(&k(3)).cloned());
    drop(snap);
    let s = db.stats();
    assert!(s.pages_redone_on_demand <= before + 4, "one get redid {} pages", s.pages_redone_on_demand - before);
    assert!(s.pages_owing_redo > 0, "a get redid every page");
    assert_eq!(read_all(&db).unwrap(), model);
    db.check().unwrap();
    let r = db.recovery_report();
    assert!(r.redone > 0 && r.pages_redone_on_demand > 0, "{r:?}");
    assert_eq!(r.pages_redone_in_background, 0, "no background pass without the background writer");
    db.close().unwrap();
    let db = Db::open_with(sim.clone(), opts(true)).unwrap();
    let r = db.recovery_report();
    assert_eq!((r.redo_deferred_pages, r.redone, r.losers), (0, 0, 0), "close left redo behind: {r:?}");
    assert_eq!(read_all(&db).unwrap(), model);
}

#[test]
fn instant_and_classic_restart_give_the_same_tree() {
    for seed in 0..3 {
        let (a, model) = crashed(seed);
        let (b, _) = crashed(seed);
        let db_a = Db::open_with(a.clone(), opts(true)).unwrap();
        let db_b = Db::open_with(b.clone(), opts(false)).unwrap();
        assert!(db_a.recovery_report().redo_deferred_pages > 0);
        assert_eq!(db_b.recovery_report().redo_deferred_pages, 0);
        assert_eq!(read_all(&db_a).unwrap(), model, "seed {seed}, instant");
        assert_eq!(read_all(&db_b).unwrap(), model, "seed {seed}, classic");
        // The same tree, page for page (the page LSNs may differ: the two
        // runs evict, and so log full page images, at different times).
        let (ca, cb) = (db_a.check().unwrap(), db_b.check().unwrap());
        assert_eq!(format!("{ca:?}"), format!("{cb:?}"), "seed {seed}: the trees differ");
        db_a.close().unwrap();
        db_b.close().unwrap();
    }
}

#[test]
fn a_checkpoint_while_pages_owe_redo_keeps_them_recoverable() {
    for instant_again in [true, false] {
        let (sim, mut model) = crashed(2);
        let db = Db::open_with(sim.clone(), opts(true)).unwrap();
        assert!(db.stats().pages_owing_redo > 0);
        let mut tx = db.begin().unwrap();
        tx.put(b"after", b"the restart").unwrap();
        tx.commit().unwrap();
        model.insert(b"after".to_vec(), b"the restart".to_vec());
        db.checkpoint().unwrap();
        db.checkpoint().unwrap();
        assert!(db.stats().pages_owing_redo > 0, "the checkpoints must not need the owed pages redone");
        // A crash now: the checkpoints' dirty page tables must list the
        // pages that still owe redo, or their changes are lost.
        drop(db);
        sim.power_loss();
        let db = Db::open_with(sim.clone(), opts(instant_again)).unwrap();
        assert_eq!(read_all(&db).unwrap(), model, "instant again: {instant_again}");
        db.check().unwrap();
    }
}

/// The background pass redoes its batches by sweeping the log in order
/// (`PendingRedo::sweep`): the pages it leaves must be those the classic
/// redo pass leaves.
#[test]
fn the_background_pass_redoes_every_page_nobody_reads() {
    for seed in [3, 5, 6] {
        let (sim, model) = crashed(seed);
        let db = Db::open_with(sim.clone(), opts(true).background_writer(true)).unwrap();
        let t = Instant::now();
        while db.stats().pages_owing_redo > 0 {
            assert!(t.elapsed() < Duration::from_secs(60), "the background pass did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = db.recovery_report();
        assert!(r.pages_redone_in_background > 0, "{r:?}");
        assert!(r.deferred_redo_us > 0, "{r:?}");
        assert_eq!(r.pages_redone_on_demand + r.pages_redone_in_background, r.redo_deferred_pages, "{r:?}");
        assert_eq!(read_all(&db).unwrap(), model);
        let (classic, _) = crashed(seed);
        let db_b = Db::open_with(classic, opts(false)).unwrap();
        let (ca, cb) = (db.check().unwrap(), db_b.check().unwrap());
        assert_eq!(format!("{ca:?}"), format!("{cb:?}"), "seed {seed}: the background pass left another tree");
        db.close().unwrap();
    }
}

#[test]
fn an_io_error_during_an_on_demand_redo_stops_the_db_and_the_next_open_recovers() {
    let (sim, model) = crashed(4);
    let db = Db::open_with(sim.clone(), opts(true)).unwrap();
    // The next storage call is a page read or a log read of some page's redo.
    sim.inject(Fault::IoErrorFromOp(sim.op_count()));
    let r = read_all(&db);
    assert!(matches!(r, Err(Error::Io(_))), "{r:?}");
    let again = db.begin_read().and_then(|s| s.get(k(1)));
    assert!(matches!(again, Err(Error::Failed { .. })), "{again:?}");
    drop(db);
    sim.clear_faults();
    sim.power_loss();
    let db = Db::open_with(sim.clone(), opts(true)).unwrap();
    assert_eq!(read_all(&db).unwrap(), model);
}

/// Reads all, writes five committed keys, closes; returns the keys whose
/// commit was acknowledged and the one in doubt (its commit failed).
fn work_after_open(db: Db) -> (Vec<u32>, Option<u32>) {
    let mut acked = Vec::new();
    if read_all(&db).is_err() {
        return (acked, None);
    }
    for i in 0..5u32 {
        let r = db.begin().and_then(|mut tx| {
            tx.put(format!("new{i}"), v(i, 9))?;
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

/// Recover `sim` (instant or classic) and compare with `expect` plus the
/// commits `work_after_open` acknowledged (`acked`) and, whole or absent,
/// the one in doubt.
fn recover_and_compare(
    sim: &Arc<SimStorage>,
    mut expect: Model,
    acked: Vec<u32>,
    in_doubt: Option<u32>,
    instant: bool,
    ctx: &str,
) {
    let how = if instant { "instant" } else { "classic" };
    let db = Db::open_with(sim.clone(), opts(instant)).unwrap_or_else(|e| panic!("{ctx}: {how} recovery failed: {e}"));
    let mut got = read_all(&db).unwrap();
    for i in acked {
        expect.insert(format!("new{i}").into_bytes(), v(i, 9));
    }
    if let Some(i) = in_doubt {
        let key = format!("new{i}").into_bytes();
        if got.get(&key) == Some(&v(i, 9)) {
            got.remove(&key);
        }
    }
    assert!(got == expect, "{ctx} (recovered {how}): the state differs");
    db.check().unwrap_or_else(|e| panic!("{ctx}: {e}"));
}

#[test]
fn a_crash_at_every_storage_call_after_an_instant_open_recovers_the_same_state() {
    let seeds = seed_start()..seed_start() + seed_count(1);
    for seed in seeds {
        let (sim, _) = crashed(10 + seed);
        let base = sim.op_count();
        let db = Db::open_with(sim.clone(), opts(true)).unwrap();
        let open_ops = sim.op_count() - base;
        let (acked, _) = work_after_open(db);
        assert_eq!(acked.len(), 5);
        let ops = sim.op_count() - base - open_ops;
        assert!(ops > 50, "the work after the open made only {ops} storage calls");
        // Every call of the opening's redo and undo, and of the work after it
        // (its on-demand redos included), in steps that cover them all in CI.
        let step = (ops / 150).max(1);
        for n in (0..open_ops + ops).step_by(step as usize) {
            let (sim, expect) = crashed(10 + seed);
            sim.inject(Fault::CrashAtOp(sim.op_count() + n));
            let (acked, in_doubt) = match Db::open_with(sim.clone(), opts(true)) {
                Ok(db) => work_after_open(db),
                Err(_) => (Vec::new(), None),
            };
            sim.power_loss();
            // The recovery after it: instant or classic, by turns.
            let ctx = format!(
                "seed {seed}, crash at call {n} after the open\nreproduce: ARIESDB_SEED_START={seed} ARIESDB_SEEDS=1 \
                 cargo test --test instant_restart"
            );
            recover_and_compare(&sim, expect, acked, in_doubt, n % 2 == 0, &ctx);
        }
    }
}

/// A crash at storage calls spread over the background redo pass (its
/// sweeps of the log, its page loads) and the writes that follow: the
/// background writer is on, so which call a number hits varies from run to
/// run, and every run must recover the same state.
#[test]
fn a_crash_during_the_background_redo_pass_recovers_the_same_state() {
    let bg = || opts(true).background_writer(true);
    let (sim, _) = crashed(20);
    let base = sim.op_count();
    let db = Db::open_with(sim.clone(), bg()).unwrap();
    let t = Instant::now();
    while db.stats().pages_owing_redo > 0 {
        assert!(t.elapsed() < Duration::from_secs(60), "the background pass did not finish");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (acked, _) = work_after_open(db);
    assert_eq!(acked.len(), 5);
    let ops = sim.op_count() - base;
    for n in (0..ops).step_by((ops / 60).max(1) as usize) {
        let (sim, expect) = crashed(20);
        sim.inject(Fault::CrashAtOp(sim.op_count() + n));
        let (acked, in_doubt) = match Db::open_with(sim.clone(), bg()) {
            Ok(db) => {
                // Until the pass is done, or the crash stopped the database.
                let t = Instant::now();
                while db.stats().pages_owing_redo > 0 && db.begin().is_ok() {
                    assert!(t.elapsed() < Duration::from_secs(60), "the background pass did not finish");
                    std::thread::sleep(Duration::from_millis(1));
                }
                work_after_open(db)
            }
            Err(_) => (Vec::new(), None),
        };
        sim.power_loss();
        let ctx = format!("crash at call {n} during the background pass");
        recover_and_compare(&sim, expect, acked, in_doubt, n % 2 == 0, &ctx);
    }
}

/// Review: pages that still owe redo are freed (emptied by deletes) and
/// reallocated (by inserts of new keys) by new transactions, then a
/// checkpoint and an eviction-heavy workload run before another crash. The
/// reopened database, instant or classic, must hold every committed change.
#[test]
fn owed_pages_freed_and_reallocated_then_checkpoint_and_crash() {
    for (seed, second_instant) in [(11u64, true), (12, false)] {
        let (sim, mut model) = crashed(seed);
        let db = Db::open_with(sim.clone(), opts(true)).unwrap();
        assert!(db.stats().pages_owing_redo > 0);
        // Delete a long run of keys without reading them first through a
        // scan: the tree frees the emptied leaves.
        let mut tx = db.begin().unwrap();
        for i in 1500..2500u32 {
            if tx.delete(k(i)).unwrap() {
                model.remove(&k(i));
            }
        }
        tx.commit().unwrap();
        // New keys elsewhere: pages come off the free list.
        let mut tx = db.begin().unwrap();
        for i in 5000..5600u32 {
            tx.put(k(i), v(i, 4)).unwrap();
            model.insert(k(i), v(i, 4));
        }
        tx.commit().unwrap();
        db.checkpoint().unwrap();
        let mut tx = db.begin().unwrap();
        for i in (5000..5600u32).step_by(2) {
            tx.put(k(i), v(i, 5)).unwrap();
            model.insert(k(i), v(i, 5));
        }
        tx.commit().unwrap();
        db.sync().unwrap();
        sim.power_loss();
        drop(db);
        let db = Db::open_with(sim.clone(), opts(second_instant)).unwrap();
        assert_eq!(read_all(&db).unwrap(), model, "seed {seed}");
        db.close().unwrap();
        let db = Db::open_with(sim.clone(), opts(false)).unwrap();
        assert_eq!(read_all(&db).unwrap(), model, "seed {seed} after close");
        db.close().unwrap();
    }
}

/// Review: compaction right after an instant open, while the background
/// pass runs (it may still hold a batch taken before `finish_redo`), then a
/// crash.
#[test]
fn compact_while_the_background_pass_runs_then_crash() {
    for seed in [21u64, 22, 23] {
        let (sim, mut model) = crashed(seed);
        let db = Db::open_with(sim.clone(), opts(true).background_writer(true)).unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..2500u32 {
            if tx.delete(k(i)).unwrap() {
                model.remove(&k(i));
            }
            if i % 5 == 0 {
                tx.put(k(i), v(i, 6)).unwrap();
                model.insert(k(i), v(i, 6));
            }
        }
        tx.commit().unwrap();
        db.compact().unwrap();
        assert_eq!(read_all(&db).unwrap(), model, "seed {seed}");
        let mut tx = db.begin().unwrap();
        for i in 7000..7400u32 {
            tx.put(k(i), v(i, 7)).unwrap();
            model.insert(k(i), v(i, 7));
        }
        tx.commit().unwrap();
        db.sync().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(db.stats().pages_owing_redo == 0);
        sim.power_loss();
        drop(db);
        let db = Db::open_with(sim.clone(), opts(true)).unwrap();
        assert_eq!(read_all(&db).unwrap(), model, "seed {seed} after crash");
        db.close().unwrap();
    }
}

/// Work after an instant open that writes and checkpoints while most pages
/// still owe redo (it reads nothing first). `model` follows the
/// acknowledged commits; a commit that fails leaves in `in_doubt` the state
/// it would have made (a crash during a commit may or may not keep it).
fn work_while_pages_owe_redo(db: &Db, model: &mut Model, in_doubt: &mut Option<Model>) -> Result<(), Error> {
    let steps: Vec<Vec<(u32, Option<u8>)>> = vec![
        (0..400u32).step_by(4).map(|i| (i, None)).collect(),
        (2500..2700u32).map(|i| (i, Some(5))).collect(),
        vec![],
        (1600..2200u32).step_by(2).map(|i| (i, None)).collect(),
        (3000..3300u32).map(|i| (i, Some(6))).collect(),
        vec![],
        (100..1400u32).step_by(9).map(|i| (i, Some(7))).collect(),
    ];
    for step in steps {
        if step.is_empty() {
            db.checkpoint()?;
            continue;
        }
        let mut tx = db.begin()?;
        let mut m = model.clone();
        for (i, what) in step {
            match what {
                None => {
                    tx.delete(k(i))?;
                    m.remove(&k(i));
                }
                Some(t) => {
                    tx.put(k(i), v(i, t))?;
                    m.insert(k(i), v(i, t));
                }
            }
        }
        if let Err(e) = tx.commit() {
            *in_doubt = Some(m);
            return Err(e);
        }
        *model = m;
    }
    Ok(())
}

#[test]
fn a_crash_at_every_call_of_writes_and_checkpoints_while_pages_owe_redo() {
    let seed = 40u64;
    let (sim, _) = crashed(seed);
    let base = sim.op_count();
    let db = Db::open_with(sim.clone(), opts(true)).unwrap();
    let mut m = Model::new();
    work_while_pages_owe_redo(&db, &mut m, &mut None).unwrap();
    assert!(db.stats().pages_owing_redo > 0, "the work redid every page");
    let ops = sim.op_count() - base;
    drop(db);
    let step = (ops / 300).max(1);
    for n in (0..ops).step_by(step as usize) {
        let (sim, expect) = crashed(seed);
        sim.inject(Fault::CrashAtOp(sim.op_count() + n));
        let mut before = expect.clone();
        let mut in_doubt = None;
        if let Ok(db) = Db::open_with(sim.clone(), opts(true)) {
            let _ = work_while_pages_owe_redo(&db, &mut before, &mut in_doubt);
            drop(db);
        }
        sim.power_loss();
        sim.clear_faults();
        for instant in [true, n % 2 == 0] {
            let db = Db::open_with(sim.clone(), opts(instant))
                .unwrap_or_else(|e| panic!("crash at call {n}: recovery failed: {e}"));
            let got = read_all(&db).unwrap_or_else(|e| panic!("crash at call {n}: {e}"));
            // The state is the committed prefix: `before` holds every
            // acknowledged commit; the one in doubt may or may not be there.
            // Every acknowledged commit, and the one in doubt whole or not at all.
            if got != before && Some(&got) != in_doubt.as_ref() {
                panic!(
                    "crash at call {n} (then {} recovery): the state differs: {} keys vs {} expected",
                    if instant { "instant" } else { "classic" },
                    got.len(),
                    before.len()
                );
            }
            db.check().unwrap_or_else(|e| panic!("crash at call {n}: {e}"));
            // The next recovery must find exactly this state.
            before = got;
            in_doubt = None;
            drop(db);
            sim.power_loss();
        }
    }
}

/// Review: the background pass, readers, writers and frequent checkpoints
/// race after an instant open; a power loss at a random moment; the next
/// open (instant, then classic) must hold every acknowledged commit.
#[test]
fn the_background_pass_races_writers_and_checkpoints_then_power_loss() {
    for seed in 50u64..56 {
        let (sim, model) = crashed(seed);
        let o = opts(true).background_writer(true).checkpoint_interval_bytes(64 << 10);
        let db = Arc::new(Db::open_with(sim.clone(), o).unwrap());
        let acked = Arc::new(parking_lot::Mutex::new(Vec::<(u32, u8)>::new()));
        // A commit that failed at the power loss may still have reached the
        // disk: (key, tag) of each thread's last one, in doubt.
        let in_doubt = Arc::new(parking_lot::Mutex::new(Vec::<(u32, u8)>::new()));
        let mut hs = Vec::new();
        for t in 0..2u32 {
            let (db, acked, in_doubt) = (db.clone(), acked.clone(), in_doubt.clone());
            hs.push(std::thread::spawn(move || {
                for r in 0..200u32 {
                    let i = (r * 37 + t * 1013) % 3000;
                    let tag = 10 + (r % 100) as u8;
                    let Ok(mut tx) = db.begin() else { return };
                    if tx.put(k(i), v(i, tag)).is_err() {
                        return;
                    }
                    let _ = tx.get(k((i * 7) % 2500));
                    if tx.commit().is_err() {
                        in_doubt.lock().push((i, tag));
                        return;
                    }
                    acked.lock().push((i, tag));
                    if r % 50 == 0 {
                        let _ = db.checkpoint();
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(5 + seed % 7 * 3));
        sim.power_loss();
        for h in hs {
            h.join().unwrap();
        }
        drop(db);
        let mut expect = model.clone();
        for (i, tag) in acked.lock().iter().copied() {
            expect.insert(k(i), v(i, tag));
        }
        for instant in [true, false] {
            let db = Db::open_with(sim.clone(), opts(instant)).unwrap();
            let got = read_all(&db).unwrap();
            for (key, val) in &expect {
                let doubt = in_doubt.lock().iter().find(|&&(i, _)| k(i) == *key).map(|&(i, tag)| v(i, tag));
                if doubt.is_some() && got.get(key) == doubt.as_ref() {
                    continue;
                }
                assert_eq!(
                    got.get(key),
                    Some(val),
                    "seed {seed} instant {instant}: key {:?}",
                    String::from_utf8_lossy(key)
                );
            }
            drop(db);
            sim.power_loss();
        }
    }
}
