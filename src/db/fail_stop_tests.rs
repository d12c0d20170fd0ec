//! One fail-stop state: a write failure in the data file, in the log, or in a
//! page write-back of the background writer stops the log, the buffer pool,
//! the lock manager and the facade alike, all with the first cause.

use std::sync::Arc;

use super::{background, Db};
use crate::error::{Error, StopCause};
use crate::options::Options;
use crate::page::META_PAGE;
use crate::storage::{Fault, SimStorage};
use crate::txn::lock::LockMode;
use crate::types::{Lsn, TxnId};
use crate::wal::{Body, RecordHeader};
use crate::DATA_FILE;

fn opts() -> Options {
    Options::default()
        .buffer_pool_pages(crate::MIN_BUFFER_POOL_PAGES)
        .background_writer(false)
        .checkpoint_interval_bytes(0)
}

/// A database with committed data and dirty pages in the pool, its log
/// durable through its end.
fn filled(seed: u64) -> (Arc<SimStorage>, Db) {
    let sim = Arc::new(SimStorage::new(seed));
    let db = Db::open_with(sim.clone(), opts()).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..200u32 {
        tx.put(format!("key{i:05}").as_bytes(), [i as u8; 100]).unwrap();
    }
    tx.commit().unwrap();
    db.sync().unwrap();
    sim.set_trace(64);
    (sim, db)
}

/// Make the next storage call fail; returns its index.
fn fail_next_call(sim: &SimStorage) -> u64 {
    fail_call_after(sim, 0)
}

/// Make the storage call after the next `skip` fail; returns its index.
fn fail_call_after(sim: &SimStorage, skip: u64) -> u64 {
    let op = sim.op_count() + skip;
    sim.inject(Fault::IoErrorAtOp(op));
    op
}

/// The failed call was a write to a file whose name satisfies `file`.
fn failed_write_was(sim: &SimStorage, op: u64, file: impl Fn(&str) -> bool) {
    let t = sim.trace();
    let e = t.iter().find(|e| e.op == op).expect("the failed call is traced");
    assert!(!e.ok && e.call == "write" && file(&e.file), "{e:?}");
}

fn cause_of<T>(r: crate::Result<T>) -> StopCause {
    match r {
        Err(Error::Failed { cause }) => cause,
        Err(e) => panic!("expected Error::Failed, got {e}"),
        Ok(_) => panic!("expected Error::Failed, got Ok"),
    }
}

/// Every layer refuses work with `first`, the cause of the failed write.
fn all_refuse(db: &Db, first: &StopCause) {
    assert!(matches!(first, StopCause::Io { message, .. } if message.contains("simulated")), "{first:?}");
    let inner = &db.inner;
    let header = RecordHeader { prev_lsn: Lsn::NONE, txn_id: TxnId::SYSTEM, undo_next_lsn: Lsn::NONE };
    assert_eq!(&cause_of(inner.wal.append(&header, &Body::Redo { parts: vec![] })), first, "log append");
    assert_eq!(&cause_of(inner.wal.read_record(crate::wal::LSN_START)), first, "log read");
    assert_eq!(&cause_of(inner.pool.fetch(META_PAGE).map(|_| ())), first, "pool fetch");
    assert_eq!(&cause_of(inner.pool.flush_dirty(Lsn::MAX, 1)), first, "pool write-back");
    assert_eq!(&cause_of(inner.pool.sync()), first, "pool sync");
    assert_eq!(&cause_of(inner.locks.lock(TxnId(u64::MAX - 1), 7, LockMode::Shared)), first, "lock manager");
    assert_eq!(&cause_of(inner.locks.try_lock(TxnId(u64::MAX - 1), 7, LockMode::Shared)), first, "lock manager");
    assert_eq!(&cause_of(db.begin()), first, "facade");
    assert_eq!(&cause_of(db.checkpoint()), first, "facade");
    assert_eq!(&cause_of(db.check()), first, "facade");
}

#[test]
fn a_data_file_write_failure_stops_every_layer() {
    let (sim, db) = filled(11);
    // The checkpoint's first I/O writes back the dirty pages: first the
    // images they owe (a log write and sync), then the pages.
    let op = fail_call_after(&sim, 2);
    let e = db.checkpoint().unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e}");
    failed_write_was(&sim, op, |f| f == DATA_FILE);
    all_refuse(&db, &StopCause::from_error(&e));
}

#[test]
fn a_log_write_failure_stops_every_layer() {
    let (sim, db) = filled(12);
    let mut tx = db.begin().unwrap();
    tx.put(b"x", b"1").unwrap();
    let op = fail_next_call(&sim);
    // The commit's flush is its first I/O.
    let e = tx.commit().unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e}");
    failed_write_was(&sim, op, |f| f.starts_with("wal-"));
    all_refuse(&db, &StopCause::from_error(&e));
}

#[test]
fn a_background_write_back_failure_stops_every_layer() {
    let (sim, db) = filled(13);
    // Pages dirtied before this checkpoint began are old enough for the
    // background writer; the log is durable through the checkpoint's end.
    db.checkpoint().unwrap();
    assert!(!db.inner.pool.dirty_pages().is_empty());
    sim.set_trace(64);
    // The images the pages owe (a log write and sync), then the pages.
    let op = fail_call_after(&sim, 2);
    let e = background::background_tick(&db.inner).unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e}");
    failed_write_was(&sim, op, |f| f == DATA_FILE);
    all_refuse(&db, &StopCause::from_error(&e));
}
