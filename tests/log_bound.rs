//! With a non-zero `checkpoint_interval_bytes`, the log stays within about
//! twice the interval (plus segment rounding) even when commits come faster
//! than the background thread looks at the log: a commit that passes the
//! bound takes (or waits for) a checkpoint itself.

mod common;

use ariesdb::{Db, Durability, Options, Stats};
use common::*;

const INTERVAL: u64 = 1 << 20;

/// The bound: two intervals, the segment being filled and the one the
/// truncation cannot remove yet (whole segments only), and slack for the
/// records one transaction appends while the checkpoint runs.
fn bound(seg: u64) -> u64 {
    2 * INTERVAL + 2 * seg + (128 << 10)
}

fn run(opts: Options, ctx: &str) {
    let seg = opts_segment_bytes();
    let db = Db::open_with(new_sim(1), opts).unwrap();
    let value = vec![5u8; 200];
    let mut max = 0;
    for t in 0..6000u32 {
        let mut tx = db.begin().unwrap();
        for i in 0..5u32 {
            tx.put(format!("key{:05}", (t * 5 + i) % 20_000).as_bytes(), &value).unwrap();
        }
        tx.commit().unwrap();
        max = max.max(db.stats().wal_disk_bytes);
    }
    let stats = db.stats();
    eprintln!("{ctx}: log peaked at {max} bytes (bound {}), {stats:?}", bound(seg));
    assert!(stats.wal_bytes_written > 10 * INTERVAL, "{ctx}: the workload must write many intervals of log");
    assert!(max <= bound(seg), "{ctx}: the log reached {max} bytes, beyond the bound {}", bound(seg));
    db.close().unwrap();
}

/// Options: the 1 MiB interval, `Durability::Eventual`, the background
/// thread on or off.
fn eventual(background: bool) -> Options {
    Options::default()
        .checkpoint_interval_bytes(INTERVAL)
        .durability(Durability::Eventual)
        .background_writer(background)
}

/// The default segment size for a 1 MiB interval: a quarter of it.
fn opts_segment_bytes() -> u64 {
    INTERVAL / 4
}

#[test]
fn log_stays_bounded_when_commits_outpace_the_background_thread() {
    let opts = eventual(true);
    run(opts, "background writer on");
}

#[test]
fn log_stays_bounded_without_the_background_thread() {
    let opts = eventual(false);
    run(opts, "background writer off");
}

/// The stats after a holder of the log went: back within the bound at once
/// (the ending transaction, or the next commit, takes a release checkpoint;
/// with the background thread too, which may also take it, then the ending
/// transaction waits for it).
fn back_within_bound(db: &Db, ctx: &str) -> Stats {
    let limit = bound(opts_segment_bytes());
    let s = db.stats();
    assert!(
        s.wal_disk_bytes <= limit,
        "{ctx}: the log kept {} bytes after its holder went, beyond the bound {limit}: {s:?}",
        s.wal_disk_bytes
    );
    s
}

/// `n` transactions of one put each (200 bytes, over 1,000 keys `key*`).
fn small_commits(db: &Db, n: u32) {
    for t in 0..n {
        let mut tx = db.begin().unwrap();
        tx.put(format!("key{:05}", t % 1000).as_bytes(), [1u8; 200]).unwrap();
        tx.commit().unwrap();
    }
}

/// An old transaction, left open while others commit, holds the log from its
/// first record; once it ends (committed or rolled back) the log goes back
/// within the bound, not after another interval of log: the checkpoint taken
/// just before its end leaves the interval far from due, so only the
/// released log can make one due.
fn an_open_transaction_holds_the_log_until_it_ends(opts: Options, commit: bool, ctx: &str) {
    let db = Db::open_with(new_sim(2), opts.long_txn_log_bytes(INTERVAL)).unwrap();
    assert_eq!(db.stats().log_held_by_oldest_txn_bytes, 0);
    let mut old = db.begin().unwrap();
    assert_eq!(db.stats().log_held_by_oldest_txn_bytes, 0, "nothing written yet");
    old.put(b"old", b"x").unwrap();
    small_commits(&db, 6000);
    db.sync().unwrap();
    let s = db.stats();
    assert!(s.log_held_by_oldest_txn_bytes > 2 * INTERVAL, "{ctx}: {s:?}");
    assert_eq!(s.long_txns, 1, "{ctx}: {s:?}");
    // The held log cannot be removed: the log exceeds the bound by about that much.
    assert!(s.wal_disk_bytes >= s.log_held_by_oldest_txn_bytes, "{ctx}: {s:?}");
    db.checkpoint().unwrap();
    match commit {
        true => old.commit().unwrap(),
        false => old.abort().unwrap(),
    }
    let s = db.stats();
    assert_eq!(s.log_held_by_oldest_txn_bytes, 0, "{ctx}");
    assert_eq!(s.long_txns, 0, "{ctx}");
    back_within_bound(&db, ctx);
    db.close().unwrap();
}

#[test]
fn an_open_transaction_shows_the_log_it_holds() {
    let opts = eventual(true);
    an_open_transaction_holds_the_log_until_it_ends(opts, true, "committed, background writer on");
}

#[test]
fn a_rolled_back_old_transaction_releases_its_log() {
    let opts = eventual(false);
    an_open_transaction_holds_the_log_until_it_ends(opts, false, "rolled back, background writer off");
}

/// Puts keys `big00000`.. numbered `range` with 200-byte values in `tx`.
fn put_many(tx: &mut ariesdb::Txn, range: std::ops::Range<u32>) {
    for i in range {
        tx.put(format!("big{i:05}").as_bytes(), [7u8; 200]).unwrap();
    }
}

/// A new database on `SimStorage` and an open transaction in it that put
/// `parts * per` keys `big*`, with a checkpoint after each part (as the
/// background thread takes them, they keep what redo needs near the end;
/// the one just before the commit leaves the interval far from due).
fn open_with_large_txn(
    seed: u64,
    opts: &Options,
    parts: u32,
    per: u32,
) -> (std::sync::Arc<ariesdb::storage::SimStorage>, Db, ariesdb::Txn) {
    let sim = new_sim(seed);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut tx = db.begin().unwrap();
    for part in 0..parts {
        put_many(&mut tx, part * per..(part + 1) * per);
        db.checkpoint().unwrap();
    }
    (sim, db, tx)
}

/// Keys `big*` present after a crash (a power loss) and restart recovery.
fn big_keys_after_crash(sim: std::sync::Arc<ariesdb::storage::SimStorage>, db: Db, opts: Options) -> usize {
    drop(db);
    sim.power_loss();
    let db = Db::open_with(sim, opts).unwrap();
    let n = read_all(&db).unwrap().keys().filter(|k| k.starts_with(b"big")).count();
    db.close().unwrap();
    n
}

/// A transaction that writes many intervals of log holds all of it while it
/// is open (every checkpoint keeps the log from its first record). Once it
/// commits the log goes back within the bound, not after another interval
/// of log: only the released log can make a checkpoint due. A crash after
/// that finds everything recovery needs.
fn large_transaction_releases_its_log(opts: Options, ctx: &str) {
    let (sim, db, tx) = open_with_large_txn(3, &opts, 10, 2500);
    let held = db.stats();
    assert!(held.wal_disk_bytes > 5 * INTERVAL, "{ctx}: the transaction must hold many intervals: {held:?}");
    tx.commit().unwrap();
    let after = back_within_bound(&db, ctx);
    eprintln!("{ctx}: log {} bytes while open, {} after the end", held.wal_disk_bytes, after.wal_disk_bytes);
    assert!(after.checkpoints > held.checkpoints, "{ctx}: a checkpoint removed it");
    assert_eq!(big_keys_after_crash(sim, db, opts), 25_000, "{ctx}: after a crash and recovery");
}

#[test]
fn a_committed_large_transaction_releases_its_log() {
    let opts = Options::default().checkpoint_interval_bytes(INTERVAL).background_writer(false);
    large_transaction_releases_its_log(opts, "background writer off");
    // Not yet durable at the commit: the checkpoint makes it so before the
    // log goes.
    let opts = eventual(true);
    large_transaction_releases_its_log(opts, "background writer on, eventual");
}

/// A snapshot that reads a long before-image from the log keeps the log from
/// that record on; once the snapshot ends, the next commit (or the
/// background thread's next tick) finds the log released and takes a
/// checkpoint.
fn snapshot_releases_the_log_it_held(background: bool, ctx: &str) {
    let opts = Options::default().checkpoint_interval_bytes(INTERVAL).background_writer(background);
    let db = Db::open_with(new_sim(4), opts).unwrap();
    let old = vec![1u8; 1000]; // past the in-memory size: read from the log
    let mut tx = db.begin().unwrap();
    tx.put(b"long", &old).unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"long", [2u8; 1000]).unwrap();
    tx.commit().unwrap();
    small_commits(&db, 15_000);
    db.checkpoint().unwrap();
    let held = db.stats();
    assert!(held.wal_disk_bytes > 5 * INTERVAL, "{ctx}: the snapshot must hold many intervals: {held:?}");
    assert_eq!(snap.get(b"long").unwrap(), Some(old), "{ctx}: read from the log the snapshot held");
    drop(snap);
    let mut tx = db.begin().unwrap();
    tx.put(b"after", b"x").unwrap();
    tx.commit().unwrap();
    back_within_bound(&db, ctx);
    db.close().unwrap();
}

#[test]
fn a_snapshot_releases_the_log_it_held_when_it_ends() {
    snapshot_releases_the_log_it_held(false, "background writer off");
    snapshot_releases_the_log_it_held(true, "background writer on");
}

/// A crash at every storage call of a large transaction's commit and the
/// release checkpoint that follows it (log write and sync, data file sync,
/// master record, segment removals), with torn writes: recovery finds every
/// record it needs, and the transaction is all there or not at all; all
/// there if its commit returned under `Durability::Immediate`.
fn crash_anywhere_in_a_release_checkpoint(durability: Durability) {
    let opts = Options::default()
        .checkpoint_interval_bytes(256 << 10)
        .wal_segment_bytes(64 << 10)
        .background_writer(false)
        .durability(durability);
    for k in 0.. {
        let (sim, db, tx) = open_with_large_txn(100 + k, &opts, 4, 800);
        let before = db.stats();
        sim.inject(ariesdb::storage::Fault::CrashAtOp(sim.op_count() + k));
        let committed = tx.commit().is_ok();
        let released = !sim.has_crashed();
        if released {
            // Every call of the commit and its checkpoint passed.
            let after = db.stats();
            assert!(after.checkpoints > before.checkpoints && after.wal_disk_bytes < before.wal_disk_bytes / 2);
        }
        sim.clear_faults();
        let n = big_keys_after_crash(sim, db, opts.clone());
        let ctx = format!("{durability:?}, crash at call {k} of the commit");
        assert!(n == 0 || n == 3200, "{ctx}: {n} of 3200 keys");
        if durability == Durability::Immediate && committed {
            assert_eq!(n, 3200, "{ctx}: an acknowledged commit lost");
        }
        if released {
            assert!(k > 3, "the commit and its checkpoint take several calls ({k})");
            eprintln!("{durability:?}: crashes at each of the {k} calls of the commit and its checkpoint recovered");
            return;
        }
    }
}

#[test]
fn a_crash_anywhere_in_a_release_checkpoint_recovers() {
    crash_anywhere_in_a_release_checkpoint(Durability::Immediate);
    crash_anywhere_in_a_release_checkpoint(Durability::Eventual);
}
