//! Serializable scans in read-write transactions (next-key locking,
//! ARIES/KVL): a scan never misses a key whose delete is uncommitted, never
//! returns an uncommitted insert, and the same range scanned twice in one
//! transaction gives the same result, forward and backward; with threads
//! moving keys around, every scan counts the same number of keys.

mod common;

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use ariesdb::{Db, Error, Options};
use common::*;
use rand::Rng;

fn k(i: u32) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

fn db_with(n: u32) -> Arc<Db> {
    let db = Db::open_with(new_sim(31), Options::default().lock_timeout(Duration::from_secs(120))).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..n {
        tx.put(k(i * 10), b"v").unwrap();
    }
    tx.commit().unwrap();
    Arc::new(db)
}

fn bref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    b.as_ref().map(|v| v.as_slice())
}

fn keys_of(tx: &mut ariesdb::Txn, range: (Bound<&[u8]>, Bound<&[u8]>), reverse: bool) -> Vec<Vec<u8>> {
    let it = if reverse { tx.scan_rev(range) } else { tx.scan(range) };
    it.unwrap().map(|x| x.unwrap().0).collect()
}

/// A deletes every key of a range and does not commit; B scans the range. B
/// must wait for A: then it sees all 10 keys if A aborts, none if A commits.
#[test]
fn a_scan_waits_for_an_uncommitted_delete_of_its_range() {
    for (reverse, commit) in [(false, false), (true, false), (false, true), (true, true)] {
        let db = db_with(30);
        let (lo, hi) = (k(100), k(200));
        let mut a = db.begin().unwrap();
        for i in 10..20 {
            assert!(a.delete(k(i * 10)).unwrap());
        }
        let (tx_done, rx_done) = mpsc::channel();
        let b = {
            let (db, lo, hi) = (db.clone(), lo.clone(), hi.clone());
            std::thread::spawn(move || {
                let mut b = db.begin().unwrap();
                let got = keys_of(&mut b, (Bound::Included(&lo), Bound::Excluded(&hi)), reverse);
                tx_done.send(()).unwrap();
                b.commit().unwrap();
                got
            })
        };
        // B is blocked until A ends (a generous wait, not a timing claim).
        assert!(rx_done.recv_timeout(Duration::from_millis(300)).is_err(), "B scanned past A's uncommitted deletes");
        if commit {
            a.commit().unwrap();
        } else {
            a.abort().unwrap();
        }
        let got = b.join().unwrap();
        let want = if commit { 0 } else { 10 };
        assert_eq!(got.len(), want, "reverse {reverse} commit {commit}: {got:?}");
    }
}

/// B scans a range twice while C inserts into it (and past its end): C waits
/// for B, and B's two scans agree.
#[test]
fn no_phantoms_within_one_transaction() {
    for (reverse, hi_bound) in [(false, true), (true, true), (false, false), (true, false)] {
        let db = db_with(30);
        let lo = k(50);
        let hi = k(150);
        let range = |lo: &[u8], hi: &[u8]| -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
            (Bound::Included(lo.to_vec()), if hi_bound { Bound::Excluded(hi.to_vec()) } else { Bound::Unbounded })
        };
        let (blo, bhi) = range(&lo, &hi);
        let mut b = db.begin().unwrap();
        let first = keys_of(&mut b, (bref(&blo), bref(&bhi)), reverse);
        let inserted = Arc::new(AtomicBool::new(false));
        let c = {
            let (db, inserted) = (db.clone(), inserted.clone());
            std::thread::spawn(move || {
                let mut c = db.begin().unwrap();
                // Inside the range, and (for the unbounded case) past the last key.
                c.put(k(55), b"phantom").unwrap();
                c.put(b"zzz-last", b"phantom").unwrap();
                inserted.store(true, Ordering::SeqCst);
                c.commit().unwrap();
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        assert!(!inserted.load(Ordering::SeqCst), "an insert entered a range a scan holds");
        let second = keys_of(&mut b, (bref(&blo), bref(&bhi)), reverse);
        assert_eq!(first, second, "reverse {reverse}: a phantom appeared");
        b.commit().unwrap();
        c.join().unwrap();
        let mut after = db.begin().unwrap();
        assert!(keys_of(&mut after, (bref(&blo), bref(&bhi)), reverse).contains(&k(55)));
        after.commit().unwrap();
    }
}

/// Threads move keys (delete one, insert another: the count stays N) while
/// others count every key in a scan, forward or backward, in read-write
/// transactions: every count is N. Without next-key locking a scan can miss
/// a key deleted by a transaction that has not yet inserted its
/// replacement.
#[test]
fn scans_always_count_the_same_number_of_keys_while_keys_move() {
    const N: u32 = 40;
    let db = db_with(N);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(4));
    // Moves committed so far: the counters go on until some happened (on a
    // loaded machine 60 scans can end before a mover gets its locks).
    let moves = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut movers = Vec::new();
    for t in 0..2u64 {
        let (db, stop, start, moves) = (db.clone(), stop.clone(), start.clone(), moves.clone());
        movers.push(std::thread::spawn(move || {
            start.wait();
            let mut r = rng(t);
            let mut moved = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let mut tx = db.begin().unwrap();
                let res = (|| {
                    // Take the first key at or after a random point, move it elsewhere.
                    let from = k(r.gen_range(0..N * 10));
                    let Some((victim, _)) =
                        tx.scan((Bound::Included(from.as_slice()), Bound::Unbounded)).unwrap().next().transpose()?
                    else {
                        return Ok(false);
                    };
                    let dest = format!("k{:04}-{t}-{moved}", r.gen_range(0..N * 10)).into_bytes();
                    if tx.get(&dest)?.is_some() {
                        return Ok(false);
                    }
                    tx.delete(&victim)?;
                    tx.put(&dest, b"v")?;
                    Ok::<_, Error>(true)
                })();
                match res {
                    Ok(true) => {
                        tx.commit().unwrap();
                        moved += 1;
                        moves.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(false) => tx.commit().unwrap(),
                    Err(e) if e.is_retryable() => drop(tx),
                    Err(e) => panic!("{e}"),
                }
            }
            moved
        }));
    }
    let mut counters = Vec::new();
    for t in 0..2u64 {
        let (db, stop, start, moves) = (db.clone(), stop.clone(), start.clone(), moves.clone());
        counters.push(std::thread::spawn(move || {
            start.wait();
            let began = std::time::Instant::now();
            let mut counted = 0;
            while counted < 60 || (moves.load(Ordering::SeqCst) < 5 && began.elapsed() < Duration::from_secs(60)) {
                let tx = db.begin().unwrap();
                let it = if t == 0 { tx.scan(..) } else { tx.scan_rev(..) };
                let n: Result<Vec<_>, Error> = it.unwrap().collect();
                match n {
                    Ok(items) => {
                        assert_eq!(items.len() as u32, N, "scan {counted} (reverse: {})", t == 1);
                        tx.commit().unwrap();
                        counted += 1;
                    }
                    Err(e) if e.is_retryable() => drop(tx),
                    Err(e) => panic!("{e}"),
                }
            }
            stop.store(true, Ordering::SeqCst);
        }));
    }
    for c in counters {
        c.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let moved: u32 = movers.into_iter().map(|m| m.join().unwrap()).sum();
    assert!(moved > 0, "no key moved");
    assert_eq!(db.begin_read().unwrap().scan(..).unwrap().count() as u32, N);
}

/// Keys and gaps have separate locks: an insert next to another
/// transaction's uncommitted insert does not wait for it, nor does a read
/// of another key; an insert into a gap a scan read does.
#[test]
fn inserts_next_to_uncommitted_inserts_do_not_wait() {
    let db = Db::open_with(new_sim(32), Options::default().lock_timeout(Duration::from_millis(500))).unwrap();
    let mut a = db.begin().unwrap();
    a.put(b"m", b"a").unwrap();
    // One thread drives both: a wait would end in the timeout.
    let mut b = db.begin().unwrap();
    b.put(b"l", b"b").unwrap();
    b.put(b"z", b"b").unwrap();
    assert_eq!(b.get(b"n").unwrap(), None);
    b.commit().unwrap();
    a.commit().unwrap();
    // But a scan's gap is guarded.
    let mut s = db.begin().unwrap();
    assert_eq!(keys_of(&mut s, (Bound::Included(b"a"), Bound::Excluded(b"y")), false).len(), 2);
    let mut c = db.begin().unwrap();
    let e = c.put(b"p", b"c").unwrap_err();
    assert!(matches!(e, Error::LockTimeout { .. }), "{e:?}");
    s.commit().unwrap();
}

/// Deleting the key just after a scanned range must wait for the scan:
/// otherwise the gap the scan locked merges into the next one, and an insert
/// into the range passes under the next key's gap lock (a phantom a new
/// user found: scan [b, d) over a, c, e, g; delete e; insert cc).
#[test]
fn deleting_the_key_after_a_scanned_range_waits_for_the_scan() {
    for reverse in [false, true] {
        let db = Db::open_with(new_sim(33), Options::default().lock_timeout(Duration::from_millis(300))).unwrap();
        let mut setup = db.begin().unwrap();
        for k in [b"a", b"c", b"e", b"g"] {
            setup.put(k, b"v").unwrap();
        }
        setup.commit().unwrap();
        let mut a = db.begin().unwrap();
        let range = (Bound::Included(&b"b"[..]), Bound::Excluded(&b"d"[..]));
        let first = keys_of(&mut a, range, reverse);
        let mut b = db.begin().unwrap();
        let e = b.delete(b"e").unwrap_err();
        assert!(matches!(e, Error::LockTimeout { .. }), "reverse {reverse}: {e:?}");
        let mut c = db.begin().unwrap();
        assert!(c.put(b"cc", b"x").is_err(), "reverse {reverse}: an insert into the scanned range");
        assert_eq!(keys_of(&mut a, range, reverse), first, "reverse {reverse}: a phantom");
        a.commit().unwrap();
    }
}

/// A deletes b and does not commit; C deletes c, the key after b. C must
/// wait for A: deleting c merges the gap before c, which A's delete locked,
/// into the gap before d, and a scan would then pass over the uncommitted
/// delete of b (and see b again, a phantom, once A aborts). Both directions.
#[test]
fn deleting_the_key_after_an_uncommitted_delete_waits_for_it() {
    for reverse in [false, true] {
        let db = db_with(4); // k0000, k0010, k0020, k0030
        let mut a = db.begin().unwrap();
        assert!(a.delete(k(10)).unwrap());
        let (tx_granted, rx_granted) = mpsc::channel();
        let c = {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut c = db.begin().unwrap();
                assert!(c.delete(k(20)).unwrap());
                tx_granted.send(()).unwrap();
                c.commit().unwrap();
            })
        };
        assert!(
            rx_granted.recv_timeout(Duration::from_millis(300)).is_err(),
            "the delete of the next key did not wait for the uncommitted delete"
        );
        a.abort().unwrap();
        c.join().unwrap();
        let mut s = db.begin().unwrap();
        let first = keys_of(&mut s, (Bound::Unbounded, Bound::Unbounded), reverse);
        let second = keys_of(&mut s, (Bound::Unbounded, Bound::Unbounded), reverse);
        assert_eq!(first, second);
        let mut want = vec![k(0), k(10), k(30)];
        if reverse {
            want.reverse();
        }
        assert_eq!(first, want);
        s.commit().unwrap();
    }
}

/// A inserts k0030 and does not commit; C deletes k0010, the key before it,
/// and does not commit; A rolls back (as a deadlock victim would), which
/// removes k0030 without a lock. A scan must still wait for C's uncommitted
/// delete. It used to pass over it: C had locked the gap before k0030, and
/// the rollback merged that gap into the one before k0050, which nobody
/// locked (the mixed concurrency test found it: an audit missed a key whose
/// delete was later rolled back). Both scan directions, C aborting or
/// committing.
#[test]
fn a_scan_waits_for_a_delete_whose_next_key_was_an_insert_rolled_back() {
    for (reverse, commit) in [(false, false), (true, false), (false, true), (true, true)] {
        let db = db_with(0);
        let mut setup = db.begin().unwrap();
        for i in [0, 10, 50] {
            setup.put(k(i), b"v").unwrap();
        }
        setup.commit().unwrap();
        let mut a = db.begin().unwrap();
        a.put(k(30), b"uncommitted").unwrap();
        let (tx_deleted, rx_deleted) = mpsc::channel();
        let (tx_end, rx_end) = mpsc::channel::<()>();
        let c = {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut c = db.begin().unwrap();
                assert!(c.delete(k(10)).unwrap());
                tx_deleted.send(()).unwrap();
                rx_end.recv().unwrap();
                if commit {
                    c.commit().unwrap();
                } else {
                    c.abort().unwrap();
                }
            })
        };
        // C's delete may wait for A's insert; give it the time to get
        // through if it does not.
        let early = rx_deleted.recv_timeout(Duration::from_millis(300)).is_ok();
        a.abort().unwrap();
        if !early {
            rx_deleted.recv().unwrap();
        }
        let (tx_scanned, rx_scanned) = mpsc::channel();
        let s = {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut s = db.begin().unwrap();
                let got = keys_of(&mut s, (Bound::Unbounded, Bound::Unbounded), reverse);
                tx_scanned.send(()).unwrap();
                s.commit().unwrap();
                got
            })
        };
        let passed = rx_scanned.recv_timeout(Duration::from_millis(300)).is_ok();
        tx_end.send(()).unwrap();
        c.join().unwrap();
        let got = s.join().unwrap();
        assert!(!passed, "reverse {reverse} commit {commit}: a scan passed over an uncommitted delete: {got:?}");
        let mut want = if commit { vec![k(0), k(50)] } else { vec![k(0), k(10), k(50)] };
        if reverse {
            want.reverse();
        }
        assert_eq!(got, want, "reverse {reverse} commit {commit}");
    }
}
