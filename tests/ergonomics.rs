//! The API as Rust users expect it: keys and values as `impl AsRef<[u8]>`,
//! reads by `&self`, `a..b` ranges and prefix scans (checked against a
//! `BTreeMap`), lending iteration, and `Db::transaction` retrying on
//! deadlocks and lock timeouts.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ariesdb::storage::SimStorage;
use ariesdb::{prefix_range, Db, Error, Options, Scan, Snapshot, SnapshotScan, Txn};

fn sim_db(opts: Options) -> Db {
    Db::open_with(Arc::new(SimStorage::new(7)), opts).unwrap()
}

#[test]
fn keys_and_values_are_anything_as_ref_bytes() {
    let db = sim_db(Options::default());
    let mut tx = db.begin().unwrap();
    tx.put("str", "text").unwrap();
    tx.put(String::from("string"), String::from("owned")).unwrap();
    tx.put(vec![1u8, 2], vec![3u8]).unwrap();
    tx.put([9u8; 4], []).unwrap();
    tx.put(b"bytes", b"lit").unwrap();
    let k = b"slice".to_vec();
    tx.put(&k[..], &k).unwrap();
    assert_eq!(tx.get("str").unwrap().as_deref(), Some(&b"text"[..]));
    assert_eq!(tx.get(String::from("string")).unwrap().as_deref(), Some(&b"owned"[..]));
    assert_eq!(tx.get([1u8, 2]).unwrap().as_deref(), Some(&[3u8][..]));
    assert_eq!(tx.get_for_update([9u8; 4]).unwrap().as_deref(), Some(&[][..]));
    assert!(tx.delete("bytes").unwrap());
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.get("slice").unwrap().as_deref(), Some(&b"slice"[..]));
    let mut buf = Vec::new();
    assert!(snap.get_into(String::from("str"), &mut buf).unwrap());
    assert_eq!(buf, b"text");
    assert_eq!(snap.get("bytes").unwrap(), None);
    // Bad input still fails cleanly, whatever the key's type.
    assert!(matches!(snap.get(""), Err(Error::InvalidArgument(_))));
    let mut tx = db.begin().unwrap();
    assert!(matches!(tx.put("", "v"), Err(Error::InvalidArgument(_))));
    assert!(matches!(tx.put(vec![0u8; 2000], "v"), Err(Error::TooLarge { .. })));
    tx.put("still", "open").unwrap();
    tx.commit().unwrap();
}

/// Reads through a shared reference: a helper takes `&Txn`.
fn count_from(tx: &Txn, start: &str) -> usize {
    tx.scan_range(start..).unwrap().count()
}

#[test]
fn reads_take_a_shared_reference_and_interleave_with_an_open_scan() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Txn>();
    send_sync::<Snapshot>();
    send::<Scan<'static>>();
    send::<SnapshotScan<'static>>();

    let db = sim_db(Options::default());
    let mut tx = db.begin().unwrap();
    for i in 0..200u32 {
        tx.put(format!("k{i:03}"), i.to_le_bytes()).unwrap();
    }
    let tx = tx;
    assert_eq!(count_from(&tx, "k150"), 50);
    // A point read and a second scan while the first scan is open (past
    // its first batch of 64).
    let mut outer = tx.scan(..).unwrap();
    let mut n = 0;
    while let Some((k, _)) = outer.next_entry().unwrap() {
        let k = k.to_vec();
        if n % 50 == 0 {
            assert_eq!(tx.get(&k).unwrap().unwrap(), (n as u32).to_le_bytes());
            assert_eq!(tx.scan_range(&k[..]..).unwrap().count(), 200 - n);
        }
        n += 1;
    }
    assert_eq!(n, 200);
    // Reads from two threads on one transaction run one at a time.
    std::thread::scope(|s| {
        for t in 0..2u32 {
            let tx = &tx;
            s.spawn(move || {
                for i in (t..200).step_by(2) {
                    assert_eq!(tx.get(format!("k{i:03}")).unwrap().unwrap(), i.to_le_bytes());
                }
            });
        }
    });
    drop(outer);
    tx.commit().unwrap();
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn model_range<R: RangeBounds<Vec<u8>>>(m: &Model, r: R, reverse: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    // Filtered, not `BTreeMap::range`, which panics on an inverted range.
    let mut v: Vec<_> = m.iter().filter(|(k, _)| r.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if reverse {
        v.reverse();
    }
    v
}

fn collect(it: impl Iterator<Item = ariesdb::Result<(Vec<u8>, Vec<u8>)>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(Result::unwrap).collect()
}

fn owned(b: Bound<&str>) -> Bound<Vec<u8>> {
    b.map(|s| s.as_bytes().to_vec())
}

/// Keys with the prefixes the tests ask for, including bytes 0x00 and 0xFF
/// where the end of a prefix range carries.
fn keys() -> Vec<Vec<u8>> {
    let mut ks: Vec<Vec<u8>> = ["a", "ab", "abc", "abd", "ac", "b", "ba", "c", "user:1", "user:2", "user;", "users"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    ks.extend([vec![b'a', 0xFF], vec![b'a', 0xFF, 0], vec![b'a', 0xFF, 0xFF], vec![0xFF], vec![0xFF, 0xFF, 1]]);
    ks.extend([vec![0u8], vec![0u8, 0]]);
    ks
}

#[test]
fn ranges_and_prefixes_match_a_model_for_transactions_and_snapshots() {
    let db = sim_db(Options::default());
    let mut model = Model::new();
    let mut tx = db.begin().unwrap();
    for (i, k) in keys().into_iter().enumerate() {
        let v = format!("v{i}").into_bytes();
        tx.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    tx.commit().unwrap();

    let ranges: Vec<(Bound<&str>, Bound<&str>)> = vec![
        (Bound::Included("ab"), Bound::Excluded("b")),
        (Bound::Included("ab"), Bound::Included("b")),
        (Bound::Excluded("ab"), Bound::Included("ba")),
        (Bound::Included("b"), Bound::Unbounded),
        (Bound::Unbounded, Bound::Excluded("abd")),
        (Bound::Unbounded, Bound::Included("abd")),
        (Bound::Included("zz"), Bound::Unbounded),
        (Bound::Included("c"), Bound::Excluded("a")),
    ];
    let tx = db.begin().unwrap();
    let snap = db.begin_read().unwrap();
    for (lo, hi) in ranges {
        let want = |rev| model_range(&model, (owned(lo), owned(hi)), rev);
        assert_eq!(collect(tx.scan_range((lo, hi)).unwrap()), want(false), "{lo:?}..{hi:?}");
        assert_eq!(collect(tx.scan_range_rev((lo, hi)).unwrap()), want(true), "rev {lo:?}..{hi:?}");
        assert_eq!(collect(snap.scan_range((lo, hi)).unwrap()), want(false), "snap {lo:?}..{hi:?}");
        assert_eq!(collect(snap.scan_range_rev((lo, hi)).unwrap()), want(true), "snap rev {lo:?}..{hi:?}");
    }
    // The std range types themselves.
    let m = |r: (Bound<Vec<u8>>, Bound<Vec<u8>>)| model_range(&model, r, false);
    let inc = |s: &str| Bound::Included(s.as_bytes().to_vec());
    let exc = |s: &str| Bound::Excluded(s.as_bytes().to_vec());
    assert_eq!(collect(tx.scan_range("ab".."b").unwrap()), m((inc("ab"), exc("b"))));
    assert_eq!(collect(tx.scan_range("ab"..="b").unwrap()), m((inc("ab"), inc("b"))));
    assert_eq!(collect(snap.scan_range("b"..).unwrap()), m((inc("b"), Bound::Unbounded)));
    assert_eq!(collect(snap.scan_range(..b"abd").unwrap()), m((Bound::Unbounded, exc("abd"))));
    assert_eq!(collect(tx.scan_range(..=String::from("abd")).unwrap()), m((Bound::Unbounded, inc("abd"))));

    let prefixes: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"ab".to_vec(),
        b"user:".to_vec(),
        b"user".to_vec(),
        b"nothing".to_vec(),
        vec![b'a', 0xFF],
        vec![0xFF],
        vec![0xFF, 0xFF],
        vec![0u8],
        vec![],
    ];
    for p in prefixes {
        let want: Vec<_> =
            model.iter().filter(|(k, _)| k.starts_with(&p)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut rev = want.clone();
        rev.reverse();
        assert_eq!(collect(tx.scan_prefix(&p).unwrap()), want, "prefix {p:?}");
        assert_eq!(collect(snap.scan_prefix(&p).unwrap()), want, "snap prefix {p:?}");
        assert_eq!(collect(tx.scan_range_rev(prefix_range(&p)).unwrap()), rev, "rev prefix {p:?}");
        assert_eq!(collect(snap.scan_range_rev(prefix_range(&p)).unwrap()), rev, "snap rev prefix {p:?}");
    }
    drop(snap);
    tx.commit().unwrap();
}

#[test]
fn a_transaction_scan_lends_the_same_entries_as_its_iterator() {
    let db = sim_db(Options::default());
    let mut tx = db.begin().unwrap();
    for i in 0..300u32 {
        tx.put(format!("k{i:04}"), vec![i as u8; (i % 50) as usize]).unwrap();
    }
    // Own writes, uncommitted, over several batches, both directions.
    for reverse in [false, true] {
        let it = if reverse { tx.scan_rev(..) } else { tx.scan(..) };
        let owned = collect(it.unwrap());
        assert_eq!(owned.len(), 300);
        let mut lent = Vec::new();
        let mut s = if reverse { tx.scan_rev(..) } else { tx.scan(..) }.unwrap();
        while let Some((k, v)) = s.next_entry().unwrap() {
            lent.push((k.to_vec(), v.to_vec()));
        }
        assert_eq!(s.next_entry().unwrap(), None);
        assert_eq!(lent, owned);
    }
    tx.commit().unwrap();
}

fn read_u64(v: Option<Vec<u8>>) -> u64 {
    v.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()))
}

#[test]
fn transaction_retries_deadlocked_read_modify_writes_until_every_increment_lands() {
    // `get` then `put` on a shared counter: two such transactions hold the
    // shared lock and both want the exclusive one, and one is the deadlock
    // victim. Without the retry, increments are lost or errors escape.
    let db = sim_db(Options::default().transaction_attempts(1000));
    let (threads, per_thread) = (4, 50);
    let calls = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    db.transaction(|tx| {
                        calls.fetch_add(1, Ordering::Relaxed);
                        let n = read_u64(tx.get("counter")?);
                        std::thread::yield_now();
                        tx.put("counter", (n + 1).to_le_bytes())
                    })
                    .unwrap();
                }
            });
        }
    });
    let snap = db.begin_read().unwrap();
    assert_eq!(read_u64(snap.get("counter").unwrap()), threads * per_thread);
    let deadlocks = db.stats().deadlocks;
    assert_eq!(calls.load(Ordering::Relaxed) as u64, threads * per_thread + deadlocks);
    eprintln!("{deadlocks} deadlocks retried");
}

#[derive(Debug)]
enum AppError {
    Db(Error),
    Overdrawn,
}

impl From<Error> for AppError {
    fn from(e: Error) -> AppError {
        AppError::Db(e)
    }
}

#[test]
fn transaction_returns_an_application_error_at_once_and_rolls_back() {
    let db = sim_db(Options::default());
    let mut calls = 0;
    let r: Result<(), AppError> = db.transaction(|tx| {
        calls += 1;
        tx.put("alice", "-5")?;
        Err(AppError::Overdrawn)
    });
    assert!(matches!(r, Err(AppError::Overdrawn)));
    assert_eq!(calls, 1);
    assert_eq!(db.begin_read().unwrap().get("alice").unwrap(), None);
    // An engine error that is not a rollback is not retried either.
    let mut calls = 0;
    let r: Result<(), AppError> = db.transaction(|tx| {
        calls += 1;
        tx.put("", "v")?;
        Ok(())
    });
    assert!(matches!(r, Err(AppError::Db(Error::InvalidArgument(_)))));
    assert_eq!(calls, 1);
    // A zero attempt count is refused at open.
    let r = Db::open_with(Arc::new(SimStorage::new(1)), Options::default().transaction_attempts(0));
    assert!(matches!(r, Err(Error::InvalidArgument(_))));
}

#[test]
fn transaction_returns_a_lock_timeout_at_once_even_when_the_closure_swallows_it() {
    let db = sim_db(Options::default().lock_timeout(Duration::from_millis(20)).transaction_attempts(3));
    let mut holder = db.begin().unwrap();
    holder.put("hot", "held").unwrap();
    // The closure returns the error: one run (the wait already lasted the
    // timeout; a holder on this same thread would make every run wait).
    let mut calls = 0;
    let r = db.transaction(|tx| {
        calls += 1;
        tx.put("other", "x")?;
        tx.get("hot").map(|_| ())
    });
    assert!(matches!(r, Err(Error::LockTimeout { .. })), "{r:?}");
    assert_eq!(calls, 1);
    // The closure swallows it: the transaction was rolled back all the
    // same, so it is not committed, and the timeout is returned.
    let mut calls = 0;
    let r = db.transaction(|tx| {
        calls += 1;
        tx.put("other", "y")?;
        let _ = tx.get("hot");
        Ok::<_, Error>("done")
    });
    assert!(matches!(r, Err(Error::LockTimeout { .. })), "{r:?}");
    assert_eq!(calls, 1);
    assert_eq!(db.begin_read().unwrap().get("other").unwrap(), None);
    // Once the holder ends, it goes through on the first run.
    holder.commit().unwrap();
    let mut calls = 0;
    let r = db.transaction(|tx| {
        calls += 1;
        tx.put("other", "z")?;
        tx.get("hot")
    });
    assert_eq!(r.unwrap().as_deref(), Some(&b"held"[..]));
    assert_eq!(calls, 1);
    assert_eq!(db.begin_read().unwrap().get("other").unwrap().as_deref(), Some(&b"z"[..]));
}

#[test]
fn the_simulated_disk_trace_has_a_type_users_can_name() {
    let sim = Arc::new(SimStorage::new(3));
    let db = Db::open_with(sim.clone(), Options::default()).unwrap();
    sim.set_trace(64);
    db.transaction(|tx| tx.put("k", "v")).unwrap();
    let trace: Vec<ariesdb::storage::TraceEntry> = sim.trace();
    // An Immediate commit syncs the log.
    assert!(trace.iter().any(|e| e.call == "sync" && e.ok && e.file.starts_with("wal")), "{trace:?}");
    db.close().unwrap();
}

#[test]
fn public_types_have_debug() {
    fn debug<T: std::fmt::Debug>(t: &T) -> String {
        format!("{t:?}")
    }
    let sim = Arc::new(SimStorage::new(5));
    assert!(debug(&sim).contains("op_count"));
    let db = Db::open_with(sim.clone(), Options::default()).unwrap();
    let overlay = ariesdb::storage::OverlayStorage::new(sim.clone()).unwrap();
    assert!(debug(&overlay).contains("memory_bytes"));
    let dir = std::env::temp_dir().join(format!("ariesdb-test-debug-{}", std::process::id()));
    let fs = ariesdb::storage::FsStorage::new(&dir).unwrap();
    assert!(debug(&fs).contains("FsStorage"));
    drop(fs);
    let _ = std::fs::remove_dir_all(&dir);
    let tx = db.begin().unwrap();
    let snap = db.begin_read().unwrap();
    for s in [debug(&db), debug(&tx), debug(&snap), debug(&tx.scan(..).unwrap()), debug(&snap.scan(..).unwrap())] {
        assert!(!s.is_empty());
    }
    for s in [debug(&db.stats()), debug(&db.recovery_report()), debug(&Options::default()), debug(&sim.stats())] {
        assert!(!s.is_empty());
    }
}

/// Every key of the transaction's view, with its value.
fn view(tx: &Txn) -> Vec<(Vec<u8>, Vec<u8>)> {
    collect(tx.scan(..).unwrap())
}

#[test]
fn rollback_to_a_savepoint_already_rolled_past_is_refused_and_changes_nothing() {
    let db = sim_db(Options::default());
    let mut tx = db.begin().unwrap();
    tx.put("a", "1").unwrap();
    let sp1 = tx.savepoint().unwrap();
    tx.put("b", "2").unwrap();
    let sp2 = tx.savepoint().unwrap();
    tx.put("c", "3").unwrap();
    let sp3 = tx.savepoint().unwrap();
    tx.put("d", "4").unwrap();

    // Back to sp2: sp3 is rolled past (the state it marks is gone).
    tx.rollback_to(&sp2).unwrap();
    let after_sp2 = view(&tx);
    assert_eq!(after_sp2.len(), 2);
    match tx.rollback_to(&sp3) {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains("rolled back past"), "{msg}"),
        other => panic!("rollback_to a rolled-past savepoint: {other:?}"),
    }
    assert_eq!(view(&tx), after_sp2);

    // The same savepoint twice is fine, also after new writes.
    tx.put("e", "5").unwrap();
    tx.rollback_to(&sp2).unwrap();
    tx.rollback_to(&sp2).unwrap();
    assert_eq!(view(&tx), after_sp2);

    // New writes and a new savepoint after the rollback do not revive sp3:
    // a rollback to it now would land on sp2's state plus "x", never on sp3's.
    tx.put("x", "9").unwrap();
    let sp4 = tx.savepoint().unwrap();
    tx.put("y", "9").unwrap();
    let before = view(&tx);
    assert!(matches!(tx.rollback_to(&sp3), Err(Error::InvalidArgument(_))));
    assert_eq!(view(&tx), before, "a refused rollback_to changed the transaction");

    // The new savepoint works; then back to sp1 rolls past sp2 and sp4.
    tx.rollback_to(&sp4).unwrap();
    assert_eq!(view(&tx).len(), 3);
    tx.rollback_to(&sp1).unwrap();
    assert_eq!(view(&tx), [(b"a".to_vec(), b"1".to_vec())]);
    for sp in [&sp2, &sp3, &sp4] {
        assert!(matches!(tx.rollback_to(sp), Err(Error::InvalidArgument(_))));
    }
    tx.rollback_to(&sp1).unwrap();

    // A savepoint taken before any write, rolled back to, stays usable; the
    // transaction goes on and commits what it holds.
    tx.put("z", "26").unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(collect(snap.scan(..).unwrap()).len(), 2);
    drop(snap);

    let mut tx = db.begin().unwrap();
    let sp0 = tx.savepoint().unwrap();
    tx.put("q", "1").unwrap();
    tx.rollback_to(&sp0).unwrap();
    tx.rollback_to(&sp0).unwrap();
    tx.put("q", "2").unwrap();
    tx.commit().unwrap();
    db.close().unwrap();
}
