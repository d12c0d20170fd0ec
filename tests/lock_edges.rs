//! Lock edge cases found by trying the engine as a user: escalation must not
//! make a transaction wait for others that hold no key it asked for (two such
//! transactions on one thread hung), and a transaction that was waiting for a
//! lock when its `Db` went away gets `Error::Closed`, not `Ok`.

mod common;

use std::time::Duration;

use ariesdb::{Db, Error};
use common::*;

fn opts() -> ariesdb::Options {
    small_opts().buffer_pool_pages(256).lock_escalation_keys(1000)
}

#[test]
fn escalation_never_waits_for_unrelated_transactions() {
    let db = Db::open_with(new_sim(41), opts()).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..10 {
        tx.put(format!("k{i:04}").as_bytes(), b"v").unwrap();
    }
    tx.commit().unwrap();
    // A reader and a writer on one thread, on different keys.
    let reader = db.begin().unwrap();
    assert!(reader.get(b"k0001").unwrap().is_some());
    let mut writer = db.begin().unwrap();
    for i in 0..3000 {
        writer.put(format!("w{i:06}").as_bytes(), b"x").unwrap();
    }
    assert_eq!(db.stats().lock_escalations, 0, "the reader's lock kept the writer's key locks");
    writer.commit().unwrap();
    reader.commit().unwrap();
    // Alone, a large writer escalates.
    let mut writer = db.begin().unwrap();
    for i in 0..3000 {
        writer.put(format!("x{i:06}").as_bytes(), b"y").unwrap();
    }
    assert_eq!(db.stats().lock_escalations, 1);
    assert!(db.stats().locked_keys <= 1000, "{:?}", db.stats());
    writer.commit().unwrap();
    assert_eq!(read_all(&db).unwrap().len(), 6010);
}

#[test]
fn a_lock_waiter_whose_db_is_dropped_gets_closed() {
    let db = Db::open_with(new_sim(42), opts()).unwrap();
    let mut a = db.begin().unwrap();
    a.put(b"k", b"a").unwrap();
    let mut b = db.begin().unwrap();
    let waiter = std::thread::spawn(move || {
        let r = b.put(b"k", b"b");
        (r, b)
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(db);
    drop(a);
    let (r, b) = waiter.join().unwrap();
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    assert!(matches!(b.commit(), Err(Error::Closed)));
}

/// A transaction left open at a close keeps the locks on the keys it
/// changed (recovery resolves its changes), and so does one dropped after
/// the close: a waiter for such a key must be woken by the close itself,
/// not wait out the lock timeout (here a minute), whether the `Db` is
/// closed or dropped, and whether the holder is dropped or kept.
#[test]
fn a_lock_waiter_is_woken_by_the_close_while_the_holder_stays_open() {
    for (seed, close) in [(43, true), (44, false)] {
        let db = Db::open_with(new_sim(seed), opts().lock_timeout(Duration::from_secs(60))).unwrap();
        let mut a = db.begin().unwrap();
        a.put(b"k", b"a").unwrap();
        let b = db.begin().unwrap();
        let waiter = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let r = b.get(b"k");
            (r, started.elapsed(), b)
        });
        std::thread::sleep(Duration::from_millis(100));
        match close {
            true => db.close().unwrap(),
            false => drop(db),
        }
        let (r, waited, b) = waiter.join().unwrap();
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        assert!(waited < Duration::from_secs(30), "waited {waited:?} for a lock after the close");
        // Neither transaction can take a lock any more, kept or not.
        assert!(matches!(b.get(b"k"), Err(Error::Closed)));
        assert!(matches!(a.put(b"other", b"x"), Err(Error::Closed)));
        drop(a);
        drop(b);
    }
}

/// A transaction deleted "b" (locking the gap before "e", the next key)
/// and then inserted "c" into that gap: the gap before "c" is part of what
/// its delete widened. Another transaction's insert of "bb" must wait for
/// it, or a scan reads "a", "bb", waits at "c", and after the rollback goes
/// on past where "b" is back: the committed "b" is missed.
#[test]
fn an_insert_waits_for_a_delete_that_widened_its_gap_before_the_deleters_own_insert() {
    let db = Db::open_with(new_sim(44), opts().lock_timeout(Duration::from_millis(100))).unwrap();
    let mut tx = db.begin().unwrap();
    for key in ["a", "b", "e"] {
        tx.put(key, "committed").unwrap();
    }
    tx.commit().unwrap();
    let mut deleter = db.begin().unwrap();
    assert!(deleter.delete("b").unwrap());
    deleter.put("c", "uncommitted").unwrap();
    let mut other = db.begin().unwrap();
    let r = other.put("bb", "x");
    assert!(matches!(r, Err(Error::LockTimeout { .. })), "an insert into the widened gap: {r:?}");
    deleter.abort().unwrap();
    let tx = db.begin().unwrap();
    let keys: Vec<Vec<u8>> = tx.scan(..).unwrap().map(|x| x.unwrap().0).collect();
    assert_eq!(keys, [b"a".to_vec(), b"b".to_vec(), b"e".to_vec()]);
}
