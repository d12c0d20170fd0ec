//! Lock-wait timeouts (`Options::lock_timeout`): a wait longer than the
//! timeout fails the waiting call with the retryable `Error::LockTimeout`,
//! and its transaction is rolled back as a deadlock victim is; the holder is
//! untouched. Two conflicting transactions driven from one thread now end
//! with the error instead of hanging. Deadlocks are still detected at once.
//!
//! Timing assertions are one-sided or generous: a timed-out call returned no
//! sooner than the timeout and within 30 s (the machine may be busy).

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ariesdb::{Db, Error, Txn};
use common::*;

const TIMEOUT: Duration = Duration::from_millis(200);
const GENEROUS: Duration = Duration::from_secs(30);

fn open(timeout: Duration) -> Arc<Db> {
    let db = Db::open_with(new_sim(91), small_opts().lock_timeout(timeout)).unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"k", b"v0").unwrap();
    tx.put(b"other", b"v0").unwrap();
    tx.commit().unwrap();
    Arc::new(db)
}

/// A database and an open transaction holding `k` exclusively.
fn open_with_holder(timeout: Duration) -> (Arc<Db>, Txn) {
    let db = open(timeout);
    let mut holder = db.begin().unwrap();
    holder.put(b"k", b"holder").unwrap();
    (db, holder)
}

/// The call took at least the timeout and not forever, and its error is a
/// retryable timeout that says how long it waited.
fn assert_timed_out<T: std::fmt::Debug>(r: Result<T, Error>, took: Duration) {
    assert!(took >= TIMEOUT && took < GENEROUS, "returned after {took:?}");
    let e = r.expect_err("the wait should have timed out");
    assert!(e.is_retryable(), "{e}");
    match &e {
        Error::LockTimeout { waited } => assert!(*waited >= TIMEOUT && *waited <= took, "{waited:?} {took:?}"),
        other => panic!("expected a lock timeout, got {other:?}"),
    }
    assert!(e.to_string().contains("lock_timeout"), "{e}");
}

/// The transaction was rolled back: every later call says it ended.
fn assert_ended(mut tx: Txn) {
    assert!(matches!(tx.get(b"other"), Err(Error::TxnEnded)));
    assert!(matches!(tx.put(b"other", b"x"), Err(Error::TxnEnded)));
    assert!(matches!(tx.commit(), Err(Error::TxnEnded)));
}

fn committed(db: &Db, key: &[u8]) -> Option<Vec<u8>> {
    read_all(db).unwrap().get(key).cloned()
}

#[test]
fn a_reader_waiting_past_the_timeout_fails_and_is_rolled_back() {
    let (db, mut holder) = open_with_holder(TIMEOUT);
    let waiter = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut tx = db.begin().unwrap();
            tx.put(b"other", b"waiter").unwrap();
            let began = Instant::now();
            let r = tx.get(b"k");
            (r, began.elapsed(), tx)
        })
    };
    let (r, took, tx) = waiter.join().unwrap();
    assert_timed_out(r, took);
    assert_ended(tx);
    let s = db.stats();
    assert_eq!((s.lock_timeouts, s.deadlocks), (1, 0), "{s:?}");
    // The holder is untouched and commits; the waiter's write is gone.
    holder.put(b"k", b"holder2").unwrap();
    holder.commit().unwrap();
    assert_eq!(committed(&db, b"k").as_deref(), Some(&b"holder2"[..]));
    assert_eq!(committed(&db, b"other").as_deref(), Some(&b"v0"[..]));
    assert_eq!(db.stats().locked_keys, 0);
}

#[test]
fn a_reader_and_a_writer_on_one_thread_end_with_the_timeout_not_a_hang() {
    let (db, a) = open_with_holder(TIMEOUT);
    let b = db.begin().unwrap();
    let began = Instant::now();
    let r = b.get(b"k");
    assert_timed_out(r, began.elapsed());
    assert_ended(b);
    a.commit().unwrap();
    assert_eq!(committed(&db, b"k").as_deref(), Some(&b"holder"[..]));
}

#[test]
fn every_kind_of_lock_wait_times_out() {
    let (db, holder) = open_with_holder(TIMEOUT);
    type Op = fn(&mut Txn) -> Result<(), Error>;
    let ops: [(&str, Op); 5] = [
        ("get", |tx| tx.get(b"k").map(drop)),
        ("get_for_update", |tx| tx.get_for_update(b"k").map(drop)),
        ("put", |tx| tx.put(b"k", b"x")),
        ("delete", |tx| tx.delete(b"k").map(drop)),
        ("scan", |tx| tx.scan(..)?.try_for_each(|item| item.map(drop))),
    ];
    for (name, op) in ops {
        let mut tx = db.begin().unwrap();
        tx.put(b"new", name.as_bytes()).unwrap();
        let began = Instant::now();
        let r = op(&mut tx);
        assert_timed_out(r, began.elapsed());
        assert_ended(tx);
    }
    assert_eq!(db.stats().lock_timeouts, ops.len() as u64);
    holder.commit().unwrap();
    assert_eq!(committed(&db, b"new"), None, "every waiter was rolled back");
}

/// A scan that times out waiting for a key's lock is over (`Ok(None)`, as
/// `Scan::next_entry` says): it hands out nothing of the batch it was
/// reading, not the entries read before the blocked key either, whose locks
/// went with the rollback.
#[test]
fn a_scan_that_timed_out_hands_out_nothing_after() {
    for lending in [true, false] {
        let (db, holder) = open_with_holder(TIMEOUT);
        let mut tx = db.begin().unwrap();
        tx.put(b"a", b"before k").unwrap();
        tx.put(b"b", b"before k").unwrap();
        tx.commit().unwrap();
        let tx = db.begin().unwrap();
        let mut scan = tx.scan(..).unwrap();
        let after = if lending {
            assert!(matches!(scan.next_entry(), Err(Error::LockTimeout { .. })));
            scan.next_entry().map(|e| e.map(|(k, _)| k.to_vec()))
        } else {
            assert!(matches!(scan.next(), Some(Err(Error::LockTimeout { .. }))));
            scan.next().transpose().map(|e| e.map(|(k, _)| k))
        };
        assert!(
            matches!(after, Ok(None)),
            "lending {lending}: after the timeout the scan gave {:?}",
            after.map(|k| k.map(|k| String::from_utf8_lossy(&k).into_owned()))
        );
        drop(scan);
        assert_ended(tx);
        holder.commit().unwrap();
    }
}

#[test]
fn a_wait_shorter_than_the_timeout_is_granted() {
    let (db, holder) = open_with_holder(GENEROUS);
    let waiter = {
        let db = db.clone();
        std::thread::spawn(move || {
            let tx = db.begin().unwrap();
            let v = tx.get(b"k");
            tx.commit().unwrap();
            v
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    holder.commit().unwrap();
    assert_eq!(waiter.join().unwrap().unwrap().as_deref(), Some(&b"holder"[..]));
    assert_eq!(db.stats().lock_timeouts, 0);
}

#[test]
fn deadlocks_are_still_detected_at_once_under_a_long_timeout() {
    let db = open(Duration::from_secs(600));
    let barrier = Arc::new(Barrier::new(2));
    let began = Instant::now();
    let hs: Vec<_> = [(&b"k"[..], &b"other"[..]), (&b"other"[..], &b"k"[..])]
        .into_iter()
        .map(|(first, second)| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut tx = db.begin().unwrap();
                tx.put(first, b"x").unwrap();
                barrier.wait();
                match tx.put(second, b"x") {
                    Ok(()) => tx.commit().map(|()| false),
                    Err(Error::Deadlock) => Ok(true),
                    Err(e) => Err(e),
                }
            })
        })
        .collect();
    let victims = hs.into_iter().map(|h| h.join().unwrap().unwrap()).filter(|v| *v).count();
    assert_eq!(victims, 1);
    assert!(began.elapsed() < GENEROUS, "{:?}", began.elapsed());
    let s = db.stats();
    assert_eq!((s.deadlocks, s.lock_timeouts), (1, 0), "{s:?}");
}

#[test]
fn a_zero_lock_timeout_is_refused() {
    let r = Db::open_with(new_sim(92), small_opts().lock_timeout(Duration::ZERO));
    match r {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains("lock_timeout"), "{msg}"),
        Err(e) => panic!("expected InvalidArgument, got {e:?}"),
        Ok(_) => panic!("a zero lock timeout was accepted"),
    }
    // The largest duration means no limit, and opens.
    let db = Db::open_with(new_sim(93), small_opts().lock_timeout(Duration::MAX)).unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"k", b"v").unwrap();
    tx.commit().unwrap();
}
