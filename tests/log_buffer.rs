//! The log's append buffer stays bounded, and no log flush happens under the
//! tree latch or the transaction table's lock: appends never flush; a buffer
//! past 4 MiB is flushed by a caller after it released its latches, and no
//! tree change begins while the buffer is past it. So the buffer holds at
//! most 4 MiB plus one operation's records (plus small records of other
//! threads), however much one transaction writes or rolls back.

mod common;

use std::sync::Arc;

use ariesdb::storage::SimStorage;
use ariesdb::{Db, Options, Stats};
use common::*;
use rand::Rng;

const FLUSH_BYTES: u64 = 4 << 20;
/// Record headers, overflow page op headers (13 bytes per 4 KiB page), full
/// page images of the few tree pages one put changes, and other threads'
/// Commit and End records.
const SLACK: u64 = 256 << 10;

fn opts() -> Options {
    Options::default().background_writer(false).checkpoint_interval_bytes(0)
}

fn value(i: u32, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

/// The buffer never held more than 4 MiB plus the largest operation's log
/// (`largest_op`: its new value and the old one its undo keeps), and no
/// log flush was waited for under the latch or the table.
fn assert_bounded(s: &Stats, largest_op: u64, ctx: &str) {
    let bound = FLUSH_BYTES + largest_op + SLACK;
    assert!(
        s.wal_buffer_high_water_bytes <= bound,
        "{ctx}: buffer reached {} > {bound}: {s:?}",
        s.wal_buffer_high_water_bytes
    );
    assert_eq!(s.log_flushes_under_latch, 0, "{ctx}: {s:?}");
}

/// A power loss now, then reopen: the database holds exactly `model`.
fn power_loss_keeps(sim: &Arc<SimStorage>, db: Db, opts: Options, model: &Model) {
    sim.power_loss();
    drop(db);
    let db = Db::open_with(sim.clone(), opts).unwrap();
    assert_eq!(&read_all(&db).unwrap(), model);
    db.close().unwrap();
}

/// A pool large enough that no put needs a log flush for eviction headroom:
/// only the buffer's size makes the log flush.
const LARGE_POOL: usize = 16 << 10;

#[test]
fn one_transaction_of_20_mib_and_its_rollback_keep_the_log_buffer_bounded() {
    for (seed, pool) in [(1, LARGE_POOL), (2, 256)] {
        let ctx = format!("pool of {pool} pages");
        let sim: Arc<SimStorage> = new_sim(seed);
        let opts = opts().buffer_pool_pages(pool);
        let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
        // Committed first: 8 values of 512 KiB, overwritten below, so the
        // rollback puts 4 MiB of old values back.
        let mut tx = db.begin().unwrap();
        for i in 0..8u32 {
            tx.put(format!("k{i:03}").as_bytes(), value(i, 512 << 10)).unwrap();
        }
        tx.commit().unwrap();
        let committed = read_all(&db).unwrap();

        let mut tx = db.begin().unwrap();
        for i in 0..40u32 {
            tx.put(format!("k{i:03}").as_bytes(), value(i + 100, 512 << 10)).unwrap();
        }
        tx.put(b"big", value(7, 3 << 20)).unwrap();
        let s = db.stats();
        eprintln!("{ctx}: after 23 MiB in one transaction: {s:?}");
        if pool == LARGE_POOL {
            assert!(s.wal_size_flushes >= 4, "{ctx}: {s:?}");
            assert!(s.wal_buffer_high_water_bytes >= FLUSH_BYTES, "{ctx}: {s:?}");
        }
        assert_bounded(&s, 3 << 20, &ctx);
        tx.abort().unwrap();
        let s = db.stats();
        eprintln!("{ctx}: after its rollback: {s:?}");
        assert_bounded(&s, 3 << 20, &ctx);
        assert_eq!(read_all(&db).unwrap(), committed);
        power_loss_keeps(&sim, db, opts, &committed);
    }
}

#[test]
fn a_restart_undo_of_20_mib_keeps_the_log_buffer_bounded() {
    let sim: Arc<SimStorage> = new_sim(3);
    let opts = opts().buffer_pool_pages(LARGE_POOL);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..40u32 {
        tx.put(format!("k{i:03}").as_bytes(), value(i, 512 << 10)).unwrap();
    }
    db.sync().unwrap();
    // A loser: recovery's undo removes its 20 MiB, logging CLRs.
    std::mem::forget(tx);
    sim.power_loss();
    drop(db);
    let db = Db::open_with(sim.clone(), opts).unwrap();
    assert_eq!(db.recovery_report().losers, 1);
    assert!(read_all(&db).unwrap().is_empty());
    assert_bounded(&db.stats(), 512 << 10, "restart undo");
    db.close().unwrap();
}

#[test]
fn concurrent_writers_flush_the_log_outside_the_latch() {
    let sim: Arc<SimStorage> = new_sim(4);
    let opts = Options::default().durability(ariesdb::Durability::Eventual).checkpoint_interval_bytes(2 << 20);
    let db = Db::open_with(sim.clone(), opts).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let db = &db;
            s.spawn(move || {
                let mut r = rng(t as u64);
                for n in 0..40u32 {
                    let mut tx = db.begin().unwrap();
                    for i in 0..4u32 {
                        let k = format!("t{t}-{}", (n * 4 + i) % 50);
                        tx.put(k.as_bytes(), value(n + i, r.gen_range(1..64 << 10))).unwrap();
                        if r.gen_bool(0.2) {
                            let sp = tx.savepoint().unwrap();
                            tx.put(k.as_bytes(), value(n, 64 << 10)).unwrap();
                            tx.rollback_to(&sp).unwrap();
                        }
                    }
                    if r.gen_bool(0.2) {
                        tx.abort().unwrap();
                    } else {
                        tx.commit().unwrap();
                    }
                }
            });
        }
        s.spawn(|| {
            for _ in 0..3 {
                db.compact().unwrap();
                db.checkpoint().unwrap();
            }
        });
    });
    let s = db.stats();
    eprintln!("{s:?}");
    assert!(s.wal_bytes_written > 4 * FLUSH_BYTES, "{s:?}");
    assert_bounded(&s, 2 * (64 << 10), "concurrent");
    db.close().unwrap();
}

/// Fill the file, then delete the first half of the keys: the pages of the
/// second half (about 2,000, their overflow pages included) must move.
fn fill_then_free_the_front(db: &Db) -> Model {
    let mut model = Model::new();
    let mut tx = db.begin().unwrap();
    for i in 0..4000u32 {
        let (k, v) = (format!("c{i:05}").into_bytes(), value(i, 3000));
        tx.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..2000u32 {
        let k = format!("c{i:05}").into_bytes();
        assert!(tx.delete(&k).unwrap());
        model.remove(&k);
    }
    tx.commit().unwrap();
    model
}

#[test]
fn a_compaction_of_many_pages_moves_them_in_rounds_flushing_between() {
    let sim: Arc<SimStorage> = new_sim(5);
    let opts = opts().buffer_pool_pages(LARGE_POOL);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let model = fill_then_free_the_front(&db);
    db.sync().unwrap();
    let before = db.stats();
    let pages = db.compact().unwrap();
    let s = db.stats();
    eprintln!("compacted to {pages} pages: {s:?}");
    assert!(s.wal_bytes_written - before.wal_bytes_written > 2 * FLUSH_BYTES, "{s:?}");
    assert!(s.wal_size_flushes > before.wal_size_flushes, "{s:?}");
    // One move logs a page image and a few pointer changes.
    assert_bounded(&s, 8 << 10, "compaction");
    assert_eq!(read_all(&db).unwrap(), model);
    power_loss_keeps(&sim, db, opts, &model);
}

#[test]
fn writers_between_compaction_rounds_make_it_plan_again() {
    let sim: Arc<SimStorage> = new_sim(6);
    let opts = opts().buffer_pool_pages(LARGE_POOL);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut model = fill_then_free_the_front(&db);
    let written = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut written = Model::new();
            for i in 0..300u32 {
                let (k, v) = (format!("w{i:05}").into_bytes(), value(i, 5000));
                let mut tx = db.begin().unwrap();
                tx.put(&k, &v).unwrap();
                tx.commit().unwrap();
                written.insert(k, v);
            }
            written
        });
        db.compact().unwrap();
        writer.join().unwrap()
    });
    model.extend(written);
    assert_eq!(read_all(&db).unwrap(), model);
    assert_bounded(&db.stats(), 16 << 10, "compaction with writers");
    db.compact().unwrap();
    assert_eq!(read_all(&db).unwrap(), model);
    power_loss_keeps(&sim, db, opts, &model);
}
