//! After a failure the `Db` stops, and every later call, including a lock
//! wait the stop interrupts, returns `Error::Failed` carrying the first cause
//! as a typed `StopCause`: corruption, I/O error with its kind, out of space.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ariesdb::storage::{Fault, SimStorage, Storage};
use ariesdb::{Db, Error, Options, StopCause, DATA_FILE};
use common::*;

fn opts() -> Options {
    small_opts().buffer_pool_pages(32)
}

fn fill(db: &Db, n: u32) {
    let mut tx = db.begin().unwrap();
    for i in 0..n {
        tx.put(format!("key{i:05}").as_bytes(), [i as u8; 100]).unwrap();
    }
    tx.commit().unwrap();
}

fn cause_of(r: Result<impl Sized, Error>) -> StopCause {
    match r {
        Err(Error::Failed { cause }) => cause,
        Err(e) => panic!("expected Error::Failed, got {e}"),
        Ok(_) => panic!("expected Error::Failed, got Ok"),
    }
}

/// A transaction holds a lock on "w"; another waits for it on a thread while
/// `trigger` makes the database stop. Returns the stop cause seen by the
/// waiter and by a later call, which must be the same.
fn stop_with_waiter(db: &Db, trigger: impl FnOnce()) -> StopCause {
    let holder = db.begin().unwrap();
    // The lock is taken before the tree is read, so it is held even if the
    // read fails (on a corrupted page).
    let _ = holder.get(b"w");
    let waiter_cause = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut tx = db.begin().unwrap();
            tx.put(b"w", b"waiting").map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!h.is_finished(), "the waiter must be waiting for the lock");
        trigger();
        cause_of(h.join().unwrap())
    });
    let later = cause_of(db.begin());
    assert_eq!(waiter_cause, later, "the waiter and later calls see the same first cause");
    let msg = Error::Failed { cause: later.clone() }.to_string();
    assert!(msg.contains("again") || msg.contains("restore"), "the message says what to do: {msg}");
    drop(holder);
    later
}

#[test]
fn corruption_stops_with_a_typed_corruption_cause() {
    let sim = new_sim(1);
    let db = Db::open_with(sim.clone(), opts()).unwrap();
    fill(&db, 3000);
    db.close().unwrap();
    // Damage every tree page on disk (the meta page, page 1, stays intact so
    // the open succeeds): the first page a writer reads is corrupt.
    let pages = sim.file_contents(DATA_FILE).unwrap().len() / 4096;
    assert!(pages > 40);
    for p in 2..pages {
        sim.flip_bit(DATA_FILE, (p * 4096 + 100) as u64, 3).unwrap();
    }
    let db = Db::open_with(sim.clone(), opts()).unwrap();
    let cause = stop_with_waiter(&db, || {
        let mut tx = db.begin().unwrap();
        assert!(matches!(tx.put(b"x", b"1"), Err(Error::Corruption { .. })));
    });
    match &cause {
        StopCause::Corruption { file, detail } => assert!(!file.is_empty() && !detail.is_empty()),
        other => panic!("expected a corruption cause, got {other:?}"),
    }
    let msg = Error::Failed { cause }.to_string();
    assert!(!msg.contains("I/O error"), "a corruption is not called an I/O error: {msg}");
    assert!(msg.contains("Db::check"), "{msg}");
}

#[test]
fn io_error_stops_with_a_typed_io_cause() {
    let sim = new_sim(2);
    let db = Db::open_with(sim.clone(), opts()).unwrap();
    fill(&db, 100);
    let cause = stop_with_waiter(&db, || {
        sim.inject(Fault::IoErrorFromOp(sim.op_count()));
        let mut tx = db.begin().unwrap();
        tx.put(b"x", b"1").unwrap();
        assert!(matches!(tx.commit(), Err(Error::Io(_))));
    });
    match cause {
        StopCause::Io { kind, message } => {
            assert_eq!(kind, std::io::ErrorKind::Other);
            assert!(message.contains("simulated"), "{message}");
        }
        other => panic!("expected an I/O cause, got {other:?}"),
    }
    // Reopening recovers.
    drop(db);
    sim.clear_faults();
    let db = Db::open_with(sim as Arc<SimStorage>, opts()).unwrap();
    assert_eq!(read_all(&db).unwrap().len(), 100);
}

#[test]
fn full_disk_stops_with_an_out_of_space_cause() {
    let sim = new_sim(3);
    let db = Db::open_with(sim.clone(), opts()).unwrap();
    fill(&db, 100);
    db.checkpoint().unwrap();
    let used: u64 = sim.list().unwrap().iter().map(|n| sim.file_contents(n).map_or(0, |c| c.len() as u64)).sum();
    let cause = stop_with_waiter(&db, || {
        sim.inject(Fault::NoSpaceAbove(used + 4096));
        let mut tx = db.begin().unwrap();
        let big = vec![9u8; 100_000];
        let mut failed = false;
        for i in 0..40 {
            match tx.put(format!("big{i}").as_bytes(), &big) {
                Ok(()) => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            assert!(tx.commit().is_err());
        }
    });
    assert!(matches!(cause, StopCause::OutOfSpace { .. }), "{cause:?}");
    drop(db);
    sim.clear_faults();
    let db = Db::open_with(sim, opts()).unwrap();
    assert_eq!(read_all(&db).unwrap().len(), 100);
}
