//! With a non-zero `checkpoint_interval_bytes`, the log stays within about
//! twice the interval (plus segment rounding) even when commits come faster
//! than the background thread looks at the log: a commit that passes the
//! bound takes (or waits for) a checkpoint itself.

mod common;

use ariesdb::{Db, Durability, Options};
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

/// The default segment size for a 1 MiB interval: a quarter of it.
fn opts_segment_bytes() -> u64 {
    INTERVAL / 4
}

#[test]
fn log_stays_bounded_when_commits_outpace_the_background_thread() {
    let opts = Options::default().checkpoint_interval_bytes(INTERVAL).durability(Durability::Eventual);
    run(opts, "background writer on");
}

#[test]
fn log_stays_bounded_without_the_background_thread() {
    let opts = Options::default()
        .checkpoint_interval_bytes(INTERVAL)
        .durability(Durability::Eventual)
        .background_writer(false);
    run(opts, "background writer off");
}

#[test]
fn an_open_transaction_shows_the_log_it_holds() {
    let opts = Options::default()
        .checkpoint_interval_bytes(INTERVAL)
        .durability(Durability::Eventual)
        .long_txn_log_bytes(INTERVAL);
    let db = Db::open_with(new_sim(2), opts).unwrap();
    assert_eq!(db.stats().log_held_by_oldest_txn_bytes, 0);
    let mut old = db.begin().unwrap();
    assert_eq!(db.stats().log_held_by_oldest_txn_bytes, 0, "nothing written yet");
    old.put(b"old", b"x").unwrap();
    for t in 0..6000u32 {
        let mut tx = db.begin().unwrap();
        tx.put(format!("key{:05}", t % 1000).as_bytes(), &[1u8; 200]).unwrap();
        tx.commit().unwrap();
    }
    db.sync().unwrap();
    let s = db.stats();
    assert!(s.log_held_by_oldest_txn_bytes > 2 * INTERVAL, "{s:?}");
    assert_eq!(s.long_txns, 1, "{s:?}");
    // The held log cannot be removed: the log exceeds the bound by about that much.
    assert!(s.wal_disk_bytes >= s.log_held_by_oldest_txn_bytes, "{s:?}");
    old.commit().unwrap();
    assert_eq!(db.stats().log_held_by_oldest_txn_bytes, 0);
    assert_eq!(db.stats().long_txns, 0);
    db.close().unwrap();
}
