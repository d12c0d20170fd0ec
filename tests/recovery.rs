//! Restart recovery, case by case: winners and losers, steal, splits rolled
//! back, savepoints, crashes at every storage call of a recovery, torn pages
//! and torn log tails, large databases, bounded logs.

mod common;

use std::sync::{Arc, Barrier};

use ariesdb::storage::{Fault, SimStorage};
use ariesdb::{Db, Error, Options};
use common::*;

fn k(i: u32) -> Vec<u8> {
    format!("key{i:07}").into_bytes()
}
fn v(i: u32, tag: u8) -> Vec<u8> {
    let mut x = vec![tag; 20 + (i % 50) as usize];
    x.extend_from_slice(&i.to_le_bytes());
    x
}

fn reopen(sim: &Arc<SimStorage>, opts: &Options) -> Db {
    sim.power_loss();
    Db::open_with(sim.clone(), opts.clone()).expect("recovery")
}

#[test]
fn interleaved_winners_and_losers() {
    let sim = new_sim(1);
    let opts = small_opts();
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut winners = vec![db.begin().unwrap(), db.begin().unwrap()];
    let mut losers = vec![db.begin().unwrap(), db.begin().unwrap()];
    for i in 0..400u32 {
        let lane = (i % 4) as usize;
        let (tx, tag) = if lane < 2 { (&mut winners[lane], b'w') } else { (&mut losers[lane - 2], b'l') };
        tx.put(k(i), v(i, tag)).unwrap();
    }
    for tx in winners.drain(..) {
        tx.commit().unwrap();
    }
    // Losers never commit: the crash comes first.
    std::mem::forget(losers);
    drop(db);
    let db = reopen(&sim, &opts);
    let report = db.recovery_report();
    assert_eq!(report.losers, 2, "{report:?}");
    let all = read_all(&db).unwrap();
    assert_eq!(all.len(), 200);
    for i in 0..400u32 {
        let lane = i % 4;
        assert_eq!(all.contains_key(&k(i)), lane < 2, "key {i}");
    }
}

#[test]
fn steal_uncommitted_pages_are_undone() {
    let sim = new_sim(2);
    let opts = Options::default().buffer_pool_pages(24).background_writer(false);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..300u32 {
        tx.put(k(i), v(i, 1)).unwrap();
    }
    tx.commit().unwrap();
    let mut long = db.begin().unwrap();
    for i in 0..3000u32 {
        long.put(k(i), v(i, 2)).unwrap();
    }
    let stats = db.stats();
    assert!(stats.pages_written > 20, "uncommitted pages must have been stolen: {stats:?}");
    // No background writer keeps the log durable here; tree changes flush the
    // log before taking the tree latch whenever the pool runs short of frames
    // it could write at once, so no eviction waited for the log under it.
    assert_eq!(stats.eviction_log_waits, 0, "{stats:?}");
    std::mem::forget(long);
    drop(db);
    let db = reopen(&sim, &opts);
    let all = read_all(&db).unwrap();
    assert_eq!(all.len(), 300);
    for i in 0..300u32 {
        assert_eq!(all[&k(i)], v(i, 1));
    }
}

#[test]
fn abort_after_splits_leaves_a_valid_tree() {
    let sim = new_sim(3);
    let opts = small_opts();
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut tx = db.begin().unwrap();
    for i in (0..2000u32).step_by(2) {
        tx.put(k(i), v(i, 1)).unwrap();
    }
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    for i in (1..2000u32).step_by(2) {
        tx.put(k(i), vec![9u8; 300]).unwrap();
    }
    tx.put(b"big", vec![5u8; 50_000]).unwrap();
    for i in (0..200u32).step_by(2) {
        tx.delete(k(i)).unwrap();
    }
    tx.abort().unwrap();
    let all = read_all(&db).unwrap();
    assert_eq!(all.len(), 1000);
    for i in (0..2000u32).step_by(2) {
        assert_eq!(all[&k(i)], v(i, 1));
    }
    drop(db);
    let db = reopen(&sim, &opts);
    assert_eq!(read_all(&db).unwrap(), all);
}

#[test]
fn savepoint_rollback_commit_survives_crash() {
    let sim = new_sim(4);
    let opts = small_opts();
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..100u32 {
        tx.put(k(i), v(i, 1)).unwrap();
    }
    let sp = tx.savepoint().unwrap();
    for i in 50..400u32 {
        tx.put(k(i), v(i, 2)).unwrap();
    }
    tx.delete(k(3)).unwrap();
    tx.rollback_to(&sp).unwrap();
    assert_eq!(tx.get(k(3)).unwrap(), Some(v(3, 1)));
    assert_eq!(tx.get(k(300)).unwrap(), None);
    tx.put(k(1000), b"after").unwrap();
    tx.commit().unwrap();
    drop(db);
    let db = reopen(&sim, &opts);
    let all = read_all(&db).unwrap();
    assert_eq!(all.len(), 101);
    assert_eq!(all[&k(60)], v(60, 1));
    assert_eq!(all[&k(1000)], b"after".to_vec());
    // A savepoint of another transaction is refused.
    let mut a = db.begin().unwrap();
    let mut b = db.begin().unwrap();
    let sp = a.savepoint().unwrap();
    assert!(matches!(b.rollback_to(&sp), Err(Error::InvalidArgument(_))));
}

/// Build the same small crashed database from a seed.
fn crashed_case(seed: u64) -> (Arc<SimStorage>, Model) {
    let sim = new_sim(seed);
    let opts = small_opts();
    let db = Db::open_with(sim.clone(), opts).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..150u32 {
        tx.put(k(i), v(i, 1)).unwrap();
    }
    tx.commit().unwrap();
    db.checkpoint().unwrap();
    let mut tx = db.begin().unwrap();
    for i in 100..200u32 {
        tx.put(k(i), v(i, 2)).unwrap();
    }
    tx.commit().unwrap();
    let mut loser = db.begin().unwrap();
    for i in 0..250u32 {
        loser.put(k(i), v(i, 3)).unwrap();
    }
    loser.delete(k(7)).unwrap();
    std::mem::forget(loser);
    drop(db);
    sim.power_loss();
    let mut model = Model::new();
    for i in 0..200u32 {
        model.insert(k(i), v(i, if i < 100 { 1 } else { 2 }));
    }
    (sim, model)
}

#[test]
fn crash_at_every_storage_call_of_recovery() {
    let opts = small_opts();
    let (sim, model) = crashed_case(5);
    let base = sim.op_count();
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let ops = sim.op_count() - base;
    drop(db);
    assert!(ops > 10, "recovery made {ops} storage calls");
    for n in 0..ops {
        let (sim, model2) = crashed_case(5);
        assert_eq!(model, model2);
        // First recovery dies at its n-th storage call ...
        sim.inject(Fault::CrashAtOp(sim.op_count() + n));
        let first = Db::open_with(sim.clone(), opts.clone());
        drop(first);
        sim.power_loss();
        // ... and a second one, also interrupted, then a third that completes.
        sim.inject(Fault::CrashAtOp(sim.op_count() + n / 2));
        drop(Db::open_with(sim.clone(), opts.clone()));
        sim.power_loss();
        let db = Db::open_with(sim.clone(), opts.clone()).unwrap_or_else(|e| panic!("crash at call {n}: {e}"));
        assert_eq!(read_all(&db).unwrap(), model, "crash at recovery call {n} of {ops}");
    }
}

#[test]
fn torn_data_page_is_rebuilt() {
    // Many seeds: torn page writes happen when a power loss hits unsynced
    // data-file writes; each must be rebuilt from its full page image.
    let mut rebuilt = 0;
    for seed in 0..20 {
        let sim = new_sim(100 + seed);
        let opts = Options::default().buffer_pool_pages(24).background_writer(false);
        let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..2400u32 {
            tx.put(k(i), v(i, 1)).unwrap();
        }
        tx.commit().unwrap();
        db.checkpoint().unwrap();
        // Changes after the checkpoint reach the data file by eviction but are
        // never synced: the power loss tears them.
        let mut tx = db.begin().unwrap();
        for i in 0..2400u32 {
            tx.put(k(i), v(i, 2)).unwrap();
        }
        tx.commit().unwrap();
        drop(db);
        let db = reopen(&sim, &opts);
        let all = read_all(&db).unwrap();
        assert_eq!(all.len(), 2400);
        for i in 0..2400u32 {
            assert_eq!(all[&k(i)], v(i, 2), "seed {seed} key {i}");
        }
        rebuilt += db.recovery_report().pages_rebuilt;
    }
    assert!(rebuilt > 0, "no seed tore a data page: the test lost its point");
}

#[test]
fn torn_log_tail_is_cut() {
    for seed in 0..20 {
        let sim = new_sim(200 + seed);
        let opts = small_opts().durability(ariesdb::Durability::Eventual);
        let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
        let mut committed = Vec::new();
        for t in 0..30u32 {
            let mut tx = db.begin().unwrap();
            for i in 0..20 {
                tx.put(k(t * 100 + i), v(i, t as u8)).unwrap();
            }
            tx.commit().unwrap();
            committed.push(t);
        }
        drop(db);
        // Eventual: the unsynced tail of the log is torn by the power loss.
        let db = reopen(&sim, &opts);
        let all = read_all(&db).unwrap();
        // What survives is a prefix of the commits, each whole.
        let survivors = committed.iter().take_while(|&&t| all.contains_key(&k(t * 100))).count();
        assert_eq!(all.len(), survivors * 20, "seed {seed}: not a prefix of whole transactions");
    }
}

#[test]
fn deadlock_between_two_threads() {
    let sim = new_sim(6);
    let db = Db::open_with(sim, small_opts()).unwrap();
    let barrier = Barrier::new(2);
    let results: Vec<Result<(), Error>> = std::thread::scope(|s| {
        let hs: Vec<_> = [(b"a", b"b"), (b"b", b"a")]
            .into_iter()
            .map(|(first, second)| {
                let db = &db;
                let barrier = &barrier;
                s.spawn(move || {
                    let mut tx = db.begin()?;
                    tx.put(first, b"1")?;
                    barrier.wait();
                    tx.put(second, b"2")?;
                    tx.commit()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let deadlocks = results.iter().filter(|r| matches!(r, Err(Error::Deadlock))).count();
    let oks = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!((deadlocks, oks), (1, 1), "{results:?}");
    assert!(results.iter().any(|r| r.as_ref().is_err_and(|e| e.is_retryable())));
    let all = read_all(&db).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(db.stats().deadlocks, 1);
}

#[test]
fn database_twenty_times_the_pool_survives_a_crash() {
    let sim = new_sim(7);
    let opts = Options::default().buffer_pool_pages(24).background_writer(false);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut model = Model::new();
    for t in 0..10u32 {
        let mut tx = db.begin().unwrap();
        for i in 0..900u32 {
            let key = k(i * 10 + t);
            let val = vec![t as u8; 200 + (i % 64) as usize];
            tx.put(&key, &val).unwrap();
            model.insert(key, val);
        }
        tx.commit().unwrap();
        if t == 5 {
            db.checkpoint().unwrap();
        }
    }
    let pages = db.check_report().unwrap();
    assert!(pages.leaves + pages.inner >= 20 * 24, "{pages:?}");
    drop(db);
    let db = reopen(&sim, &opts);
    assert_eq!(read_all(&db).unwrap(), model);
}

#[test]
fn steady_workload_keeps_the_log_bounded() {
    let sim = new_sim(8);
    let opts = Options::default()
        .buffer_pool_pages(32)
        .background_writer(false)
        .checkpoint_interval_bytes(256 << 10)
        .wal_segment_bytes(64 << 10);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut max_wal = 0;
    for round in 0..200u32 {
        let mut tx = db.begin().unwrap();
        for i in 0..100u32 {
            tx.put(k(i), v(round, round as u8)).unwrap();
        }
        tx.commit().unwrap();
        if round % 3 == 2 {
            db.checkpoint().unwrap();
        }
        let wal: u64 = sim
            .list()
            .unwrap()
            .iter()
            .filter(|n| n.starts_with("wal-"))
            .map(|n| sim.file_contents(n).map_or(0, |c| c.len() as u64))
            .sum();
        if round > 10 {
            max_wal = max_wal.max(wal);
        }
    }
    let written = db.stats().wal_bytes_written;
    // The log on disk stays within a few checkpoint intervals while far more
    // is written through it.
    assert!(written > 10 * max_wal, "log written {written} bytes but kept up to {max_wal}");
    assert!(max_wal < 4 * (256 << 10), "log kept {max_wal} bytes");
    drop(db);
    let db = reopen(&sim, &opts);
    assert_eq!(read_all(&db).unwrap().len(), 100);
}

#[test]
fn close_leaves_nothing_to_recover() {
    let sim = new_sim(9);
    let opts = small_opts();
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..500u32 {
        tx.put(k(i), v(i, 1)).unwrap();
    }
    tx.commit().unwrap();
    db.close().unwrap();
    let db = reopen(&sim, &opts);
    let r = db.recovery_report();
    assert_eq!((r.redone, r.losers, r.winners, r.dirty_pages), (0, 0, 0, 0), "{r:?}");
    assert_eq!(read_all(&db).unwrap().len(), 500);
}

use ariesdb::storage::Storage;

#[test]
fn deletes_give_empty_leaves_back() {
    let sim = new_sim(10);
    let opts = small_opts();
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..3000u32 {
        tx.put(k(i), v(i, 1)).unwrap();
    }
    tx.commit().unwrap();
    let full = db.check_report().unwrap();
    // Delete all but every 500th key, in two transactions, one of them rolled back.
    let mut tx = db.begin().unwrap();
    for i in (0..3000u32).filter(|i| i % 500 != 0) {
        assert!(tx.delete(k(i)).unwrap());
    }
    tx.abort().unwrap();
    assert_eq!(read_all(&db).unwrap().len(), 3000);
    let mut tx = db.begin().unwrap();
    for i in (0..3000u32).filter(|i| i % 500 != 0) {
        assert!(tx.delete(k(i)).unwrap());
    }
    tx.commit().unwrap();
    let thin = db.check_report().unwrap();
    assert!(thin.leaves <= 8, "empty leaves were not reclaimed: {thin:?} (was {full:?})");
    assert!(thin.free >= full.leaves - 8, "{thin:?}");
    // Freed pages are reused before the file grows.
    let mut tx = db.begin().unwrap();
    for i in 0..1000u32 {
        tx.put(k(i), v(i, 2)).unwrap();
    }
    tx.commit().unwrap();
    let again = db.check_report().unwrap();
    assert!(again.free < thin.free, "{again:?}");
    drop(db);
    let db = reopen(&sim, &opts);
    let all = read_all(&db).unwrap();
    assert_eq!(all.len(), 1000 + 4);
}

#[test]
fn largest_values_survive_overwrite_abort_and_crash() {
    let sim = new_sim(11);
    let opts = small_opts();
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let big = |b: u8| -> Vec<u8> { (0..ariesdb::MAX_VALUE_LEN).map(|i| b.wrapping_add((i / 4096) as u8)).collect() };
    let mut tx = db.begin().unwrap();
    tx.put(b"big", big(1)).unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"big", big(2)).unwrap();
    assert_eq!(tx.get(b"big").unwrap().unwrap(), big(2));
    tx.abort().unwrap();
    let mut loser = db.begin().unwrap();
    loser.put(b"big", big(3)).unwrap();
    std::mem::forget(loser);
    drop(db);
    let db = reopen(&sim, &opts);
    let all = read_all(&db).unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[&b"big"[..]] == big(1), "the committed 16 MiB value did not survive");
}

#[test]
fn recovery_streams_large_segments_and_records_larger_than_its_read_chunk() {
    // Default options: 16 MiB segments, read by recovery 1 MiB at a time; a
    // 3 MiB value makes a log record larger than the chunk.
    let sim = new_sim(9);
    let opts = Options::default().background_writer(false);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut model = Model::new();
    for t in 0..40u32 {
        let mut tx = db.begin().unwrap();
        for i in 0..200u32 {
            let key = k(t * 1000 + i);
            let val = vec![t as u8; 300];
            tx.put(&key, &val).unwrap();
            model.insert(key, val);
        }
        if t % 10 == 3 {
            let key = format!("big{t}").into_bytes();
            let val: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8 ^ t as u8).collect();
            tx.put(&key, &val).unwrap();
            model.insert(key, val);
        }
        tx.commit().unwrap();
    }
    // A loser whose records sit in the middle of the big segment.
    let mut loser = db.begin().unwrap();
    loser.put(b"loser", vec![1u8; 2 << 20]).unwrap();
    db.sync().unwrap();
    sim.power_loss();
    drop(loser);
    drop(db);
    let db = Db::open_with(sim, opts).unwrap();
    let r = db.recovery_report();
    assert!(r.end_lsn > 8 << 20, "{r:?}");
    assert_eq!(r.losers, 1, "{r:?}");
    assert_eq!(read_all(&db).unwrap(), model);
}
