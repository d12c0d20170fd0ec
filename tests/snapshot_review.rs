//! Read-only snapshots and serializable reads, probed where `snapshot.rs` and
//! `serializable.rs` do not reach: reads while a log fsync hangs, the cap
//! crossed one commit at a time, a scan in flight when its snapshot
//! expires, savepoints and aborts, snapshots outliving their `Db`, commits
//! racing `begin_read` on several threads (checked against what each
//! writer had acknowledged and started), odd scan bounds, and the edges of
//! a reverse scan's next-key locks.

mod common;

use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ariesdb::storage::{SimStorage, Storage};
use ariesdb::{Db, Durability, Error, Options, Snapshot, SnapshotTooOld};
use common::hooked::{Hooked, LogHooks};
use common::*;
use rand::Rng;

/// Long enough for any wait that must end on a loaded machine: a call still
/// blocked after it is taken to wait forever.
const HANG: Duration = Duration::from_secs(60);

/// A gate on the log's fsyncs (or reads): once armed, every `sync_data` of
/// a log segment (with `once`, only the first read after arming) blocks
/// until the gate opens.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    once: bool,
    /// Fsyncs blocked now, and whether the gate is open.
    state: Mutex<(usize, bool)>,
    cv: Condvar,
}

impl Gate {
    fn pass(&self) {
        let armed = match self.once {
            true => self.armed.swap(false, Ordering::SeqCst),
            false => self.armed.load(Ordering::SeqCst),
        };
        if !armed {
            return;
        }
        let mut st = self.state.lock().unwrap();
        st.0 += 1;
        self.cv.notify_all();
        while !st.1 {
            st = self.cv.wait(st).unwrap();
        }
        st.0 -= 1;
    }
    /// Wait until an fsync is blocked at the gate.
    fn wait_blocked(&self) {
        let st = self.state.lock().unwrap();
        let (st, t) = self.cv.wait_timeout_while(st, HANG, |s| s.0 == 0).unwrap();
        assert!(!t.timed_out() && st.0 > 0, "no fsync reached the gate");
    }
    fn open(&self) {
        self.armed.store(false, Ordering::SeqCst);
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

/// Log fsyncs pass through `syncs`, log reads through `reads`.
struct Gates {
    syncs: Gate,
    reads: Gate,
}

impl LogHooks for Gates {
    fn before_read(&self) {
        self.reads.pass();
    }
    fn before_sync(&self) {
        self.syncs.pass();
    }
}

/// A `SimStorage` with `Gates` on its log, and the two.
fn gated(seed: u64) -> (Arc<SimStorage>, Arc<Gates>, Arc<Hooked<Gates>>) {
    let sim = Arc::new(SimStorage::new(seed));
    let gates = Arc::new(Gates { syncs: Gate::default(), reads: Gate { once: true, ..Gate::default() } });
    (sim.clone(), gates.clone(), Arc::new(Hooked { inner: sim, hooks: gates }))
}

fn k(i: u32) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

/// Everything a snapshot sees, by a forward scan.
fn all(snap: &Snapshot) -> Model {
    snap.scan(..).unwrap().map(|x| x.unwrap()).collect()
}

/// Run `f` on another thread; fail if it has not returned within `HANG`.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HANG).unwrap_or_else(|_| panic!("{what}: still waiting after {HANG:?}"))
}

/// While a committer's log fsync hangs, snapshots begin and read (point
/// reads, scans both ways, a long before-image still in the log that is
/// being synced), and read-write transactions read and write other keys;
/// nobody sees the commit in flight. Once the fsync returns, the commit is
/// acknowledged and seen by snapshots begun after.
#[test]
fn snapshots_never_wait_for_a_hanging_log_fsync() {
    let (_, gates, storage) = gated(41);
    let gate = &gates.syncs;
    let opts = Options::default().durability(Durability::Immediate).background_writer(false);
    let db = Arc::new(Db::open_with(storage, opts).unwrap());
    let mut model = Model::new();
    let mut tx = db.begin().unwrap();
    for i in 0..300 {
        // Every 10th value is long: a snapshot reads its before-image from the log.
        let v = vec![i as u8; if i % 10 == 0 { 3000 } else { 20 }];
        tx.put(k(i), &v).unwrap();
        model.insert(k(i), v);
    }
    tx.commit().unwrap();
    let old = db.begin_read().unwrap();

    gate.armed.store(true, Ordering::SeqCst);
    let committer = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut tx = db.begin().unwrap();
            for i in (0..300).step_by(10) {
                tx.put(k(i), b"in flight").unwrap();
            }
            tx.delete(k(5)).unwrap();
            tx.put(b"new-key", b"in flight").unwrap();
            tx.commit()
        })
    };
    gate.wait_blocked();

    let (db2, model2) = (db.clone(), model.clone());
    let old = within("snapshot reads during the fsync", move || {
        for snap in [&old, &db2.begin_read().unwrap()] {
            assert!(all(snap) == model2, "a snapshot sees the commit whose fsync has not returned");
            let back: Vec<_> = snap.scan_rev(..).unwrap().map(|x| x.unwrap().0).collect();
            assert!(back.iter().rev().eq(model2.keys()));
            assert_eq!(snap.get(k(10)).unwrap(), Some(vec![10; 3000]), "long before-image");
            assert_eq!(snap.get(k(5)).unwrap(), Some(vec![5; 20]));
            assert_eq!(snap.get(b"new-key").unwrap(), None);
        }
        // Other keys, read and written by a read-write transaction.
        let mut tx = db2.begin().unwrap();
        assert_eq!(tx.get(k(7)).unwrap(), Some(vec![7; 20]));
        tx.put(b"other", b"1").unwrap();
        drop(tx);
        old
    });
    assert!(!committer.is_finished(), "the commit returned before its fsync did");

    gate.open();
    committer.join().unwrap().unwrap();
    assert!(all(&old) == model, "the old snapshot still sees its state");
    let new = db.begin_read().unwrap();
    assert_eq!(new.get(k(10)).unwrap(), Some(b"in flight".to_vec()));
    assert_eq!(new.get(k(5)).unwrap(), None);
    assert_eq!(new.get(b"new-key").unwrap(), Some(b"in flight".to_vec()));
    assert_eq!(new.get(b"other").unwrap(), None, "the dropped transaction rolled back");
}

/// The oldest snapshot expires with the commit that takes the bytes held
/// for it past `snapshot_cap_bytes`, not one commit sooner: every commit
/// before it leaves the snapshot reading its state, and the held bytes grow
/// by the same amount for each equal commit. Open transactions' versions
/// and aborted transactions are not held for it. A newer snapshot survives
/// the expiry while what it needs is within the cap.
#[test]
fn the_oldest_snapshot_expires_exactly_when_its_held_bytes_pass_the_cap() {
    let cap = 20_000;
    let opts = Options::default().snapshot_cap_bytes(cap).background_writer(false);
    let db = Db::open_with(new_sim(42), opts).unwrap();
    let mut model = Model::new();
    let mut tx = db.begin().unwrap();
    for i in 0..400 {
        tx.put(k(i), [1; 100]).unwrap();
        model.insert(k(i), vec![1; 100]);
    }
    tx.commit().unwrap();
    let old = db.begin_read().unwrap();
    let at_old = model.clone();
    let update = |i: u32, model: &mut Model| {
        let mut tx = db.begin().unwrap();
        tx.put(k(i), [2; 100]).unwrap();
        tx.commit().unwrap();
        model.insert(k(i), vec![2; 100]);
    };

    // An open transaction and an aborted one hold nothing for the snapshot.
    let mut open = db.begin().unwrap();
    for i in 300..400 {
        open.put(k(i), [9; 100]).unwrap();
    }
    let mut aborted = db.begin().unwrap();
    for i in 200..300 {
        aborted.put(k(i), [9; 100]).unwrap();
    }
    aborted.abort().unwrap();
    assert_eq!(db.stats().snapshot_held_bytes, 0, "{:?}", db.stats());

    update(0, &mut model);
    let per = db.stats().snapshot_held_bytes as usize;
    let entry = k(0).len() + 100;
    assert!(per >= entry && per <= entry + 128, "one version of {entry} bytes counts {per}");
    let mut i = 1;
    let mut newer = None;
    while db.stats().snapshot_held_bytes as usize + per <= cap {
        update(i, &mut model);
        i += 1;
        assert_eq!(db.stats().snapshot_held_bytes as usize, per * i as usize, "after {i} equal commits");
        assert_eq!(db.stats().snapshots_expired, 0, "expired at {} held bytes, cap {cap}", per * i as usize);
        if i == 10 {
            newer = Some((db.begin_read().unwrap(), model.clone()));
        }
    }
    assert!(all(&old) == at_old, "within the cap the snapshot reads its state");
    assert_eq!(old.get(k(0)).unwrap(), Some(vec![1; 100]));

    // The commit that passes the cap expires the oldest snapshot.
    update(i, &mut model);
    assert_eq!(db.stats().snapshots_expired, 1, "{:?}", db.stats());
    let e = old.get(k(0)).unwrap_err();
    assert!(matches!(e, Error::SnapshotTooOld { cause: SnapshotTooOld::CapReached { .. } }) && e.is_retryable());
    assert!(old.scan(..).unwrap().next().unwrap().is_err());
    assert!(old.scan_rev(..).unwrap().next().unwrap().is_err());
    let (newer, at_newer) = newer.unwrap();
    assert!(all(&newer) == at_newer, "the newer snapshot outlives the older one's expiry");
    assert!((db.stats().snapshot_held_bytes as usize) <= cap);
    open.commit().unwrap();
    drop((old, newer));
    let st = db.stats();
    assert_eq!((st.snapshots_open, st.snapshot_held_bytes, st.snapshot_version_keys), (0, 0, 0), "{st:?}");
}

/// A scan part-way through its snapshot when the snapshot expires hands out
/// only entries of the state at the snapshot's begin, then the retryable
/// error, then nothing: forward and backward.
#[test]
fn a_scan_in_flight_when_its_snapshot_expires_never_hands_out_later_state() {
    for reverse in [false, true] {
        let db = Db::open_with(new_sim(43), Options::default().snapshot_cap_bytes(10_000)).unwrap();
        let mut model = Model::new();
        let mut tx = db.begin().unwrap();
        for i in 0..500 {
            tx.put(k(i), i.to_le_bytes()).unwrap();
            model.insert(k(i), i.to_le_bytes().to_vec());
        }
        tx.commit().unwrap();
        let snap = db.begin_read().unwrap();
        let mut scan = if reverse { snap.scan_rev(..) } else { snap.scan(..) }.unwrap();
        let mut want: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
        if reverse {
            want.reverse();
        }
        let mut got = Vec::new();
        for _ in 0..10 {
            got.push(scan.next().unwrap().unwrap());
        }
        // Overwrite and delete everything, in commits that pass the cap.
        for chunk in 0..10u32 {
            let mut tx = db.begin().unwrap();
            for i in chunk * 50..chunk * 50 + 50 {
                match i % 2 {
                    0 => tx.put(k(i), b"later").map(|_| ()),
                    _ => tx.delete(k(i)).map(|_| ()),
                }
                .unwrap();
            }
            tx.commit().unwrap();
        }
        assert!(db.stats().snapshots_expired >= 1, "{:?}", db.stats());
        let mut failed = None;
        for item in scan.by_ref() {
            match item {
                Ok(e) => got.push(e),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let e = failed.expect("a scan of 500 entries ran past its first batch after expiring");
        assert!(matches!(e, Error::SnapshotTooOld { .. }) && e.is_retryable(), "{e:?}");
        assert!(scan.next().is_none(), "nothing after the error");
        assert!(got[..] == want[..got.len()], "reverse {reverse}: an entry not of the state at begin");
    }
}

/// Savepoints and aborts: a snapshot begun at any point of a transaction
/// that rolls back to savepoints (over long values whose before-images are
/// in the log, deletes, inserts) sees none of it; one begun after its commit
/// sees exactly what was left; an aborted transaction is seen by nobody.
#[test]
fn snapshots_see_only_what_a_transaction_kept_past_its_savepoints() {
    let db = Db::open_with(new_sim(44), Options::default().background_writer(false)).unwrap();
    let mut model = Model::new();
    let mut tx = db.begin().unwrap();
    for i in 0..50 {
        let v = vec![i as u8; if i % 5 == 0 { 4000 } else { 30 }];
        tx.put(k(i), &v).unwrap();
        model.insert(k(i), v);
    }
    tx.commit().unwrap();
    let before = db.begin_read().unwrap();
    let at_begin = model.clone();

    let mut tx = db.begin().unwrap();
    tx.put(k(1), b"kept-1").unwrap();
    let sp1 = tx.savepoint().unwrap();
    tx.put(k(0), b"short now").unwrap(); // a long value made short
    tx.put(k(2), vec![7; 6000]).unwrap(); // a short one made long
    tx.delete(k(10)).unwrap();
    tx.put(b"new-1", b"x").unwrap();
    let during = db.begin_read().unwrap();
    tx.rollback_to(&sp1).unwrap();
    let after_rollback = db.begin_read().unwrap();
    tx.put(k(3), b"kept-3").unwrap();
    let sp2 = tx.savepoint().unwrap();
    tx.delete(k(15)).unwrap();
    tx.put(k(15), vec![3; 5000]).unwrap();
    tx.rollback_to(&sp2).unwrap();
    tx.delete(k(20)).unwrap();
    tx.rollback_to(&sp2).unwrap();
    tx.delete(k(25)).unwrap();
    for s in [&before, &during, &after_rollback] {
        assert!(all(s) == at_begin, "a snapshot sees part of an open transaction");
        assert_eq!(s.get(k(0)).unwrap(), Some(vec![0; 4000]));
    }
    tx.commit().unwrap();
    model.insert(k(1), b"kept-1".to_vec());
    model.insert(k(3), b"kept-3".to_vec());
    model.remove(&k(25));
    let after = db.begin_read().unwrap();
    assert!(all(&after) == model, "a snapshot after the commit sees what the transaction kept");
    for s in [&before, &during, &after_rollback] {
        assert!(all(s) == at_begin);
        let back: Vec<_> = s.scan_rev(..).unwrap().map(|x| x.unwrap()).collect();
        assert!(back.into_iter().rev().eq(at_begin.clone()));
    }

    // Aborted, by `abort` and by a drop, after savepoints: seen by nobody.
    for by_drop in [false, true] {
        let mut tx = db.begin().unwrap();
        let sp = tx.savepoint().unwrap();
        tx.put(k(30), vec![1; 3000]).unwrap();
        tx.rollback_to(&sp).unwrap();
        tx.put(k(31), b"gone").unwrap();
        tx.delete(k(35)).unwrap();
        let mid = db.begin_read().unwrap();
        match by_drop {
            true => drop(tx),
            false => tx.abort().unwrap(),
        }
        for s in [&mid, &db.begin_read().unwrap(), &after] {
            assert!(all(s) == model, "by_drop {by_drop}: an aborted transaction is seen");
        }
    }
    drop((before, during, after_rollback, after));
    let st = db.stats();
    assert_eq!((st.snapshots_open, st.snapshot_held_bytes, st.snapshot_version_keys), (0, 0, 0), "{st:?}");
}

/// A snapshot outlives its `Db`: after `close` or a drop its calls fail with
/// `Error::Closed` (never a wrong value, never a panic), on the thread that
/// holds it too; dropping it afterwards is quiet; the database reopens with
/// every commit.
#[test]
fn a_snapshot_outliving_its_db_fails_with_closed() {
    for close in [true, false] {
        let dir = tmp_dir("snapshot_review", &format!("outlive-{close}"));
        let db = Db::open(&dir).unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..100 {
            tx.put(k(i), vec![i as u8; if i % 9 == 0 { 2000 } else { 10 }]).unwrap();
        }
        tx.commit().unwrap();
        let snap = db.begin_read().unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..100 {
            tx.put(k(i), b"second").unwrap();
        }
        tx.commit().unwrap();
        // A reader on another thread keeps reading through the close, until
        // it is told.
        let reader = {
            let snap2 = db.begin_read().unwrap();
            std::thread::spawn(move || {
                let t = Instant::now();
                loop {
                    match snap2.get(k(9)) {
                        Ok(v) => assert_eq!(v, Some(b"second".to_vec())),
                        Err(Error::Closed) => break,
                        Err(e) => panic!("{e:?}"),
                    }
                    assert!(t.elapsed() < HANG, "the reader never saw the close");
                }
                assert!(matches!(snap2.scan(..).map(|mut s| s.next()), Err(Error::Closed)));
            })
        };
        let mut scan = snap.scan(..).unwrap();
        assert_eq!(scan.next().unwrap().unwrap(), (k(0), vec![0; 2000]));
        match close {
            true => db.close().unwrap(),
            false => drop(db),
        }
        for r in [snap.get(k(9)), snap.get(b"missing")] {
            assert!(matches!(r, Err(Error::Closed)), "close {close}: {r:?}");
        }
        assert!(matches!(snap.scan_rev(..).map(|mut s| s.next()), Err(Error::Closed)));
        // The scan's first batch was read before: its entries are the
        // snapshot's; after that, the error.
        let rest: Vec<_> = scan.collect();
        let ok = rest.iter().take_while(|x| x.is_ok()).count();
        for (i, x) in rest[..ok].iter().enumerate() {
            let want = vec![i as u8 + 1; if (i + 1) % 9 == 0 { 2000 } else { 10 }];
            assert!(x.as_ref().unwrap() == &(k(i as u32 + 1), want), "close {close}: entry {i} after the close");
        }
        assert!(ok < 99 && matches!(rest[ok], Err(Error::Closed)), "close {close}: {:?}", rest.get(ok));
        reader.join().unwrap();
        drop(snap);
        let db = Db::open(&dir).unwrap();
        let s = db.begin_read().unwrap();
        assert_eq!(s.scan(..).unwrap().count(), 100);
        assert!(s.scan(..).unwrap().all(|x| x.unwrap().1 == b"second"));
        drop(s);
        db.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Key `i` of writer `w`'s partition.
fn pk(w: usize, i: u32) -> Vec<u8> {
    format!("p{w}-{i:03}").into_bytes()
}

/// One writer's acknowledged history: `states[j]` is its partition after
/// its `j`-th commit returned (`states[0]`: before any); `started` counts
/// the commits it began (called `commit` for).
struct Writer {
    states: Mutex<Vec<Model>>,
    started: AtomicU64,
}

impl Writer {
    fn acknowledged(&self) -> usize {
        self.states.lock().unwrap().len() - 1
    }
}

/// Which of writer `w`'s states a snapshot's view of its partition is, if
/// any between `lo` and `hi` (waiting for commits in flight to return).
fn which_state(wr: &Writer, view: &Model, lo: usize, hi: usize) -> Option<usize> {
    let t = Instant::now();
    while wr.acknowledged() < hi {
        assert!(t.elapsed() < HANG, "a commit in flight never returned");
        std::thread::yield_now();
    }
    let states = wr.states.lock().unwrap();
    (lo..=hi).find(|&j| states[j] == *view)
}

/// What a snapshot sees of partition `w`: forward, checked against a
/// backward scan and point reads.
fn partition_view(snap: &Snapshot, w: usize) -> Model {
    let prefix = format!("p{w}-");
    let fwd: Model = snap.scan_prefix(&prefix).unwrap().map(|x| x.unwrap()).collect();
    let back: Vec<_> = snap.scan_range_rev(ariesdb::prefix_range(&prefix)).unwrap().map(|x| x.unwrap()).collect();
    assert!(back.into_iter().rev().eq(fwd.clone()), "partition {w}: backward scan differs from forward");
    for i in (0..60).step_by(7) {
        assert_eq!(snap.get(pk(w, i)).unwrap().as_ref(), fwd.get(&pk(w, i)), "partition {w}: get {i}");
    }
    fwd
}

/// Writers commit on their own partitions (puts and deletes, values short,
/// long enough for the log, and in overflow pages; savepoints; aborts)
/// with `Durability::Immediate`, while checkpoints cut the log, and
/// readers begin snapshots at any moment. Each snapshot sees, of each
/// partition, one state its writer acknowledged: at least every commit that
/// returned before `begin_read` was called, at most those begun by the time
/// it returned; and the same state however long it is held (some are read
/// again later, after many commits and checkpoints, and dropped on another
/// thread).
#[test]
fn snapshots_racing_commits_see_each_writers_acknowledged_state() {
    const WRITERS: usize = 2;
    let opts = Options::default()
        .durability(Durability::Immediate)
        .buffer_pool_pages(48)
        .wal_segment_bytes(64 << 10)
        .checkpoint_interval_bytes(128 << 10)
        .snapshot_cap_bytes(256 << 20);
    let db = Arc::new(Db::open_with(new_sim(45), opts).unwrap());
    let writers: Arc<Vec<Writer>> = Arc::new(
        (0..WRITERS).map(|_| Writer { states: Mutex::new(vec![Model::new()]), started: AtomicU64::new(0) }).collect(),
    );
    let run_for = Duration::from_millis(1500);
    let start = Instant::now();
    let mut hs = Vec::new();
    for w in 0..WRITERS {
        let (db, writers) = (db.clone(), writers.clone());
        hs.push(std::thread::spawn(move || {
            let mut r = rng(450 + w as u64);
            let mut state = Model::new();
            while start.elapsed() < run_for {
                let mut tx = db.begin().unwrap();
                let mut next = state.clone();
                for _ in 0..r.gen_range(1..12) {
                    let i = r.gen_range(0..60);
                    if r.gen_bool(0.25) {
                        tx.delete(pk(w, i)).unwrap();
                        next.remove(&pk(w, i));
                    } else {
                        let len = match r.gen_range(0..10) {
                            0 => 5000,
                            1..=2 => 400,
                            _ => 12,
                        };
                        let v = vec![r.gen::<u8>(); len];
                        tx.put(pk(w, i), &v).unwrap();
                        next.insert(pk(w, i), v);
                    }
                    if r.gen_bool(0.1) {
                        let sp = tx.savepoint().unwrap();
                        let i = r.gen_range(0..60);
                        tx.put(pk(w, i), vec![0xEE; 700]).unwrap();
                        tx.delete(pk(w, (i + 1) % 60)).unwrap();
                        tx.rollback_to(&sp).unwrap();
                    }
                }
                if r.gen_bool(0.1) {
                    tx.abort().unwrap();
                    continue;
                }
                let wr = &writers[w];
                wr.started.fetch_add(1, Ordering::SeqCst);
                tx.commit().unwrap();
                state = next;
                wr.states.lock().unwrap().push(state.clone());
            }
        }));
    }
    let ckpt = {
        let db = db.clone();
        std::thread::spawn(move || {
            while start.elapsed() < run_for {
                db.checkpoint().unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let (drop_tx, drop_rx) = mpsc::channel::<Snapshot>();
    let dropper = std::thread::spawn(move || drop_rx.into_iter().count());
    let mut held: Vec<(Snapshot, Vec<usize>)> = Vec::new();
    let mut checked = 0;
    let mut r = rng(459);
    while start.elapsed() < run_for || checked < 20 {
        let lo: Vec<usize> = writers.iter().map(Writer::acknowledged).collect();
        let snap = db.begin_read().unwrap();
        let hi: Vec<usize> = writers.iter().map(|wr| wr.started.load(Ordering::SeqCst) as usize).collect();
        let mut seen = Vec::new();
        for w in 0..WRITERS {
            let view = partition_view(&snap, w);
            let j = which_state(&writers[w], &view, lo[w], hi[w]);
            let j = j.unwrap_or_else(|| {
                panic!("snapshot {checked}, partition {w}: not a state acknowledged in {}..={}", lo[w], hi[w])
            });
            seen.push(j);
        }
        checked += 1;
        if r.gen_bool(0.1) && held.len() < 20 {
            held.push((snap, seen));
        } else {
            drop_tx.send(snap).unwrap();
        }
        // Snapshots held for long read their states again.
        if !held.is_empty() && r.gen_bool(0.2) {
            let (snap, seen) = held.swap_remove(r.gen_range(0..held.len()));
            for (w, &j) in seen.iter().enumerate() {
                let view = partition_view(&snap, w);
                assert!(view == writers[w].states.lock().unwrap()[j], "a held snapshot changed, partition {w}");
            }
            drop_tx.send(snap).unwrap();
        }
    }
    for h in hs {
        h.join().unwrap();
    }
    ckpt.join().unwrap();
    for (snap, seen) in held {
        for (w, &j) in seen.iter().enumerate() {
            assert!(partition_view(&snap, w) == writers[w].states.lock().unwrap()[j], "at the end, partition {w}");
        }
        drop_tx.send(snap).unwrap();
    }
    drop(drop_tx);
    assert_eq!(dropper.join().unwrap(), checked);
    assert!(writers.iter().all(|wr| wr.acknowledged() > 5), "the writers hardly ran");
    let st = db.stats();
    assert_eq!((st.snapshots_open, st.snapshot_version_keys, st.snapshots_expired), (0, 0, 0), "{st:?}");
    db.check().unwrap();
}

/// The entries of `m` within `(lo, hi)`, whatever the bounds (the standard
/// `range` panics on an inverted range).
fn model_range(m: &Model, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.iter().filter(|(k, _)| (lo.as_ref(), hi.as_ref()).contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The entries a scan returned, in its order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A scan of `(lo, hi)`, forward or (`rev`) backward.
type Scanner<'a> = dyn Fn(&Bound<Vec<u8>>, &Bound<Vec<u8>>, bool) -> Entries + 'a;

/// A snapshot's scan of `(lo, hi)`, forward or (`rev`) backward.
fn snap_scanner(snap: &Snapshot) -> impl Fn(&Bound<Vec<u8>>, &Bound<Vec<u8>>, bool) -> Entries + '_ {
    move |lo, hi, rev| {
        let r = (lo.as_ref().map(|v| v.as_slice()), hi.as_ref().map(|v| v.as_slice()));
        let it = if rev { snap.scan_rev(r) } else { snap.scan(r) };
        it.unwrap().map(|x| x.unwrap()).collect()
    }
}

/// Scans with odd bounds: inverted, empty (a key excluded at both ends, or
/// included at one end and excluded at the other), one key, the empty key,
/// keys longer than `MAX_KEY_LEN`, prefixes that are empty or end in 0xFF.
/// With versions for the snapshot in the store (commits after its begin, a
/// writer still open) as in an idle database: snapshots and read-write
/// transactions, forward and backward, return exactly the model's range.
#[test]
fn scans_with_odd_bounds_return_exactly_their_range() {
    let db = Db::open_with(new_sim(46), Options::default().lock_timeout(HANG)).unwrap();
    let mut model = Model::new();
    let mut tx = db.begin().unwrap();
    let mut keys: Vec<Vec<u8>> = (0..100).map(k).collect();
    keys.extend([vec![0xFF], vec![0xFF, 0xFF], vec![0xFF, 0xFF, 1], vec![0], vec![0, 0]]);
    for (i, key) in keys.iter().enumerate() {
        let v = vec![i as u8; if i % 13 == 0 { 3000 } else { 8 }];
        tx.put(key, &v).unwrap();
        model.insert(key.clone(), v);
    }
    tx.commit().unwrap();
    let long = |c: u8| vec![c; ariesdb::MAX_KEY_LEN + 500];
    let mut bounds = vec![Bound::Unbounded, Bound::Included(vec![]), Bound::Excluded(vec![])];
    for key in [k(0), k(50), k(51), k(99), b"k0050x".to_vec(), long(b'k'), long(0xFF), vec![0xFF], vec![0xFF, 0xFF]] {
        bounds.push(Bound::Included(key.clone()));
        bounds.push(Bound::Excluded(key));
    }
    let prefixes: Vec<Vec<u8>> =
        vec![vec![], vec![0xFF], vec![0xFF, 0xFF], vec![0], b"k005".to_vec(), b"k0099".to_vec()];
    let check = |what: &str, model: &Model, scan: &Scanner<'_>| {
        for lo in &bounds {
            for hi in &bounds {
                let want = model_range(model, lo, hi);
                assert!(scan(lo, hi, false) == want, "{what}: forward scan of {lo:?}..{hi:?}");
                let mut back = scan(lo, hi, true);
                back.reverse();
                assert!(back == want, "{what}: backward scan of {lo:?}..{hi:?}");
            }
        }
    };
    let idle = db.begin_read().unwrap();
    check("idle snapshot", &model, &snap_scanner(&idle));
    for p in &prefixes {
        let want = model_range(&model, &ariesdb::prefix_range(p).0, &ariesdb::prefix_range(p).1);
        let got: Vec<_> = idle.scan_prefix(p).unwrap().map(|x| x.unwrap()).collect();
        assert!(got == want, "prefix {p:?}");
        let mut back: Vec<_> = idle.scan_range_rev(ariesdb::prefix_range(p)).unwrap().map(|x| x.unwrap()).collect();
        back.reverse();
        assert!(back == want, "reverse prefix {p:?}");
    }
    // Commits after its begin, and a writer still open: the snapshot
    // merges versions into every scan.
    let at_idle = model.clone();
    let mut tx = db.begin().unwrap();
    for (i, key) in keys.iter().enumerate().step_by(3) {
        tx.delete(key).unwrap();
        model.remove(key);
        let v = vec![0xAB; if i % 2 == 0 { 700 } else { 3 }];
        let new = [key.as_slice(), b"+"].concat();
        tx.put(&new, &v).unwrap();
        model.insert(new, v);
    }
    tx.commit().unwrap();
    let mut open = db.begin().unwrap();
    for key in keys.iter().skip(1).step_by(4) {
        open.put(key, b"uncommitted").unwrap();
    }
    check("snapshot with versions", &at_idle, &snap_scanner(&idle));
    let later = db.begin_read().unwrap();
    check("later snapshot", &model, &snap_scanner(&later));
    for p in &prefixes {
        let want = model_range(&at_idle, &ariesdb::prefix_range(p).0, &ariesdb::prefix_range(p).1);
        assert!(idle.scan_prefix(p).unwrap().map(|x| x.unwrap()).collect::<Vec<_>>() == want, "prefix {p:?}");
    }
    open.abort().unwrap();
    // A read-write transaction: the same bounds, with its next-key locks.
    let tx = db.begin().unwrap();
    check("read-write transaction", &model, &|lo, hi, rev| {
        let r = (lo.as_ref().map(|v| v.as_slice()), hi.as_ref().map(|v| v.as_slice()));
        let it = if rev { tx.scan_rev(r) } else { tx.scan(r) };
        it.unwrap().map(|x| x.unwrap()).collect()
    });
    tx.commit().unwrap();
    drop((idle, later));
    assert_eq!(db.stats().snapshot_version_keys, 0);
}

/// A reverse scan's next-key locks, at the edges of its range: while the
/// scanning transaction is open, no other may insert into the range (at
/// either end or between keys), delete or update a key in it, or delete the
/// key just after it (which would merge the locked gap into the next); a
/// snapshot reads meanwhile. The transaction's scans of the range, both
/// ways, then agree with its first; once it commits the others go through.
#[test]
fn a_reverse_scan_locks_its_range_edges_until_its_transaction_ends() {
    let keys: Vec<&[u8]> = vec![b"b", b"d", b"f", b"h"];
    type Case<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>, Vec<&'a [u8]>, Vec<&'a [u8]>);
    let ranges: Vec<Case> = vec![
        // (lo, hi, keys in range, inserts into the range)
        (Bound::Included(b"c"), Bound::Excluded(b"g"), vec![b"d", b"f"], vec![b"c", b"ca", b"e", b"fa"]),
        (Bound::Excluded(b"b"), Bound::Included(b"f"), vec![b"d", b"f"], vec![b"ba", b"e", b"ea"]),
        (Bound::Included(b"d"), Bound::Unbounded, vec![b"d", b"f", b"h"], vec![b"e", b"g", b"z"]),
        (Bound::Included(b"ba"), Bound::Excluded(b"bz"), vec![], vec![b"ba", b"bb"]),
    ];
    for (n, (lo, hi, inside, inserts)) in ranges.into_iter().enumerate() {
        let opts = Options::default().lock_timeout(Duration::from_millis(100)).background_writer(false);
        let db = Db::open_with(new_sim(47), opts).unwrap();
        let mut tx = db.begin().unwrap();
        for key in &keys {
            tx.put(key, b"v").unwrap();
        }
        tx.commit().unwrap();
        let scanner = db.begin().unwrap();
        let first: Vec<Vec<u8>> = scanner.scan_rev((lo, hi)).unwrap().map(|x| x.unwrap().0).collect();
        let want: Vec<Vec<u8>> = inside.iter().rev().map(|k| k.to_vec()).collect();
        assert_eq!(first, want, "range {n}");
        let must_wait = |what: String, op: &dyn Fn(&mut ariesdb::Txn) -> ariesdb::Result<()>| {
            let mut t = db.begin().unwrap();
            match op(&mut t) {
                Err(e @ Error::LockTimeout { .. }) => assert!(e.is_retryable()),
                other => panic!("range {n}: {what} did not wait for the scan: {other:?}"),
            }
        };
        for key in &inserts {
            must_wait(format!("insert {:?}", String::from_utf8_lossy(key)), &|t| t.put(key, b"phantom"));
        }
        for key in &inside {
            must_wait(format!("delete {:?}", String::from_utf8_lossy(key)), &|t| t.delete(key).map(|_| ()));
            must_wait(format!("update {:?}", String::from_utf8_lossy(key)), &|t| t.put(key, b"changed"));
        }
        // The key just after the range (ARIES/KVL locks it whole).
        let after = keys.iter().find(|k| match hi {
            Bound::Included(h) => **k > h,
            Bound::Excluded(h) => **k >= h,
            Bound::Unbounded => false,
        });
        if let Some(key) = after {
            must_wait(format!("delete {:?} after the range", String::from_utf8_lossy(key)), &|t| {
                t.delete(key).map(|_| ())
            });
        }
        // Far below the range nothing is locked.
        let mut t = db.begin().unwrap();
        t.put(b"a", b"free").unwrap();
        t.commit().unwrap();
        let snap = db.begin_read().unwrap();
        assert_eq!(snap.scan_rev((lo, hi)).unwrap().count(), inside.len(), "range {n}: snapshot");
        let again: Vec<Vec<u8>> = scanner.scan_rev((lo, hi)).unwrap().map(|x| x.unwrap().0).collect();
        let fwd: Vec<Vec<u8>> = scanner.scan((lo, hi)).unwrap().map(|x| x.unwrap().0).collect();
        assert_eq!(again, first, "range {n}: a phantom in the second reverse scan");
        assert!(fwd.iter().rev().eq(first.iter()), "range {n}: the forward scan differs");
        scanner.commit().unwrap();
        let mut t = db.begin().unwrap();
        for key in &inserts {
            t.put(key, b"now").unwrap();
        }
        t.commit().unwrap();
        assert_eq!(db.stats().locked_keys, 0);
    }
}

/// A snapshot scan reads two long before-images from the log, one at a time
/// after the tree latch is released: of "a", from an open transaction, and
/// of "b", from one that rolls back while the first read is slow. Once the
/// rollback is done no version needs the log of "b" any more, and a
/// checkpoint may cut it; the scan must still read the state at its begin,
/// not fail (with `Error::Corruption`, "before the oldest segment") on a
/// before-image it was entitled to.
#[test]
fn a_before_image_being_read_keeps_its_log_through_a_rollback_and_a_checkpoint() {
    let (sim, gates, storage) = gated(48);
    let reads = &gates.reads;
    let opts = Options::default().background_writer(false).wal_segment_bytes(64 << 10).checkpoint_interval_bytes(0);
    let db = Arc::new(Db::open_with(storage, opts).unwrap());
    let mut tx = db.begin().unwrap();
    tx.put(b"a", [b'a'; 3000]).unwrap();
    tx.put(b"b", [b'b'; 3000]).unwrap();
    tx.commit().unwrap();
    let snap = Arc::new(db.begin_read().unwrap());
    let mut rolls_back = db.begin().unwrap();
    rolls_back.put(b"b", b"short").unwrap();
    // Enough log after it that its record lies in an older segment.
    for i in 0..60 {
        let mut tx = db.begin().unwrap();
        tx.put(k(i), [1; 2000]).unwrap();
        tx.commit().unwrap();
    }
    let mut stays_open = db.begin().unwrap();
    stays_open.put(b"a", b"short").unwrap();
    db.sync().unwrap();
    let segments = || sim.list().unwrap().into_iter().filter(|n| n.starts_with("wal-")).collect::<Vec<_>>();
    let first = segments()[0].clone();

    reads.armed.store(true, Ordering::SeqCst);
    let scanner = {
        let snap = snap.clone();
        std::thread::spawn(move || snap.scan(ariesdb::range(b"a", b"c")).unwrap().collect::<Vec<_>>())
    };
    reads.wait_blocked();
    rolls_back.abort().unwrap();
    // Writes back every page and checkpoints: nothing but the scan's read
    // holds the log of "b" now.
    db.compact().unwrap();
    reads.open();
    let got = scanner.join().unwrap();
    let got: Vec<_> = got.into_iter().map(|x| x.unwrap_or_else(|e| panic!("the scan failed: {e:?}"))).collect();
    assert_eq!(got, vec![(b"a".to_vec(), vec![b'a'; 3000]), (b"b".to_vec(), vec![b'b'; 3000])]);
    assert_eq!(snap.get(b"b").unwrap(), Some(vec![b'b'; 3000]), "rolled back: the tree's value");
    // Once read, it holds the log no more.
    db.compact().unwrap();
    assert!(!segments().contains(&first), "the log of the rolled-back change is kept after its read");
    stays_open.abort().unwrap();
}
