//! Read-only snapshots (`Db::begin_read`): a snapshot reads exactly the state
//! at its begin, for point reads and scans, whatever writers do meanwhile
//! (commits of single puts and of big transactions, deletes of whole ranges,
//! values moving in and out of overflow pages, splits and merges,
//! checkpoints and log truncation); it never waits for a writer's locks;
//! a commit whose fsync fails is never seen; past the cap a snapshot expires
//! with a retryable error and writers never wait.

mod common;

use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ariesdb::storage::Fault;
use ariesdb::{Db, Error, Options, Snapshot, SnapshotTooOld};
use common::*;
use rand::{Rng, SeedableRng};

/// Everything the snapshot sees, by a full scan, and key by key.
fn snapshot_state(snap: &Snapshot, expect: &Model, ctx: &str) {
    let got: Model = snap.scan(..).unwrap().map(|x| x.unwrap()).collect();
    assert_eq!(got.len(), expect.len(), "{ctx}: scan length");
    assert!(got == *expect, "{ctx}: scan differs from the state at begin");
    let mut buf = b"left over".to_vec();
    for (k, v) in expect.iter().step_by(7) {
        assert_eq!(snap.get(k).unwrap().as_ref(), Some(v), "{ctx}: get {}", String::from_utf8_lossy(k));
        assert!(snap.get_into(k, &mut buf).unwrap(), "{ctx}: get_into {}", String::from_utf8_lossy(k));
        assert_eq!(&buf, v, "{ctx}: get_into {}", String::from_utf8_lossy(k));
    }
    // Keys the snapshot must not see (deleted since, or never there).
    for i in (0..2000u32).step_by(13) {
        let k = key_at(i);
        if !expect.contains_key(&k) {
            assert_eq!(snap.get(&k).unwrap(), None, "{ctx}: get {}", String::from_utf8_lossy(&k));
            assert!(!snap.get_into(&k, &mut buf).unwrap(), "{ctx}: get_into {}", String::from_utf8_lossy(&k));
        }
    }
    // A sub-range, and keys the snapshot must not see.
    let lo = b"k000100".to_vec();
    let hi = b"k000300".to_vec();
    let sub: Model = snap.scan(ariesdb::range(&lo, &hi)).unwrap().map(|x| x.unwrap()).collect();
    let want: Model = expect.range(lo.clone()..hi.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(sub == want, "{ctx}: sub-range scan");
    // Backward, whole and in a sub-range, with both kinds of bounds.
    let back: Vec<(Vec<u8>, Vec<u8>)> = snap.scan_rev(..).unwrap().map(|x| x.unwrap()).collect();
    assert!(
        back.iter().rev().eq(expect.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>().iter()),
        "{ctx}: reverse scan"
    );
    let back_sub: Vec<Vec<u8>> = snap.scan_rev(ariesdb::range(&lo, &hi)).unwrap().map(|x| x.unwrap().0).collect();
    let want_back: Vec<Vec<u8>> = want.keys().rev().cloned().collect();
    assert!(back_sub == want_back, "{ctx}: reverse sub-range scan");
    let incl: Vec<Vec<u8>> = snap
        .scan_rev((Bound::Included(lo.as_slice()), Bound::Included(hi.as_slice())))
        .unwrap()
        .map(|x| x.unwrap().0)
        .collect();
    let want_incl: Vec<Vec<u8>> = expect.range(lo.clone()..=hi.clone()).rev().map(|(k, _)| k.clone()).collect();
    assert!(incl == want_incl, "{ctx}: reverse inclusive scan");
    assert_eq!(snap.get(b"never-written").unwrap(), None);
}

fn opts() -> Options {
    Options::default()
        .buffer_pool_pages(64)
        .wal_segment_bytes(64 << 10)
        .checkpoint_interval_bytes(256 << 10)
        .durability(ariesdb::Durability::Eventual)
}

/// Writers change everything in every way while snapshots taken along the
/// way keep reading their own state.
#[test]
fn snapshots_read_the_state_at_their_begin_while_writers_change_everything() {
    for seed in seed_start()..seed_start() + seed_count(2) {
        let db = Db::open_with(new_sim(seed), opts()).unwrap();
        let mut r = rng(seed);
        let mut model = Model::new();
        let mut snaps: Vec<(Snapshot, Model, String)> = Vec::new();
        for round in 0..12 {
            let mut tx = db.begin().unwrap();
            let mut pending = Pending::new();
            match round % 4 {
                // A big transaction of inserts and overwrites, some long values.
                0 => {
                    for _ in 0..400 {
                        let (k, v) = (key(&mut r, 600), value(&mut r));
                        tx.put(&k, &v).unwrap();
                        pending.insert(k, Some(v));
                    }
                }
                // Delete a whole range (merges).
                1 => {
                    let lo = r.gen_range(0..500);
                    for i in lo..lo + 150 {
                        let k = key_at(i);
                        if model.contains_key(&k) || pending.contains_key(&k) {
                            tx.delete(&k).unwrap();
                            pending.insert(k, None);
                        }
                    }
                }
                // Values move in and out of overflow pages.
                2 => {
                    for (i, k) in model.keys().take(60).cloned().collect::<Vec<_>>().into_iter().enumerate() {
                        let v = vec![i as u8; if i % 2 == 0 { 9000 } else { 10 }];
                        tx.put(&k, &v).unwrap();
                        pending.insert(k, Some(v));
                    }
                }
                // Single puts, each its own commit, then a checkpoint.
                _ => {
                    tx.abort().unwrap();
                    for _ in 0..50 {
                        let (k, v) = (key(&mut r, 600), value(&mut r));
                        let mut t = db.begin().unwrap();
                        t.put(&k, &v).unwrap();
                        t.commit().unwrap();
                        model.insert(k, v);
                    }
                    db.checkpoint().unwrap();
                    snaps.push((db.begin_read().unwrap(), model.clone(), format!("seed {seed} round {round}")));
                    continue;
                }
            }
            // An uncommitted change is not seen by a snapshot begun now.
            let during = db.begin_read().unwrap();
            let before = model.clone();
            tx.commit().unwrap();
            apply(&mut model, &pending);
            snaps.push((during, before, format!("seed {seed} round {round} (during)")));
            snaps.push((db.begin_read().unwrap(), model.clone(), format!("seed {seed} round {round}")));
            for (s, m, ctx) in snaps.iter().step_by(3) {
                snapshot_state(s, m, ctx);
            }
        }
        for (s, m, ctx) in &snaps {
            snapshot_state(s, m, ctx);
        }
        assert!(db.stats().snapshots_open as usize == snaps.len());
        drop(snaps);
        let st = db.stats();
        assert_eq!((st.snapshots_open, st.snapshot_version_keys, st.snapshot_held_bytes), (0, 0, 0), "{st:?}");
        db.check().unwrap();
    }
}

fn key_at(i: u32) -> Vec<u8> {
    let pad = (i % 7) as usize * 9;
    format!("k{i:06}{}", "-".repeat(pad)).into_bytes()
}

/// A snapshot reads committed versions of keys a writer holds exclusive
/// locks on, at once, and sees nothing of that writer, including its
/// deletes of a whole range; the writer then commits unhindered.
#[test]
fn a_snapshot_never_waits_for_a_writer_and_never_sees_its_changes() {
    let db = Db::open_with(new_sim(11), opts()).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..10u32 {
        tx.put(key_at(i), b"committed").unwrap();
    }
    tx.commit().unwrap();
    let mut writer = db.begin().unwrap();
    for i in 0..10u32 {
        writer.delete(key_at(i)).unwrap();
    }
    writer.put(key_at(20), b"uncommitted insert").unwrap();
    let t = Instant::now();
    let snap = db.begin_read().unwrap();
    let seen: Vec<_> = snap.scan(..).unwrap().map(|x| x.unwrap()).collect();
    assert_eq!(seen.len(), 10, "the uncommitted deletes and insert are invisible");
    assert!(seen.iter().all(|(_, v)| v == b"committed"));
    assert_eq!(snap.get(key_at(3)).unwrap(), Some(b"committed".to_vec()));
    assert_eq!(snap.get(key_at(20)).unwrap(), None);
    // Not a timing assertion of speed: a wait for the writer would last
    // forever, since it commits only below.
    assert!(t.elapsed() < Duration::from_secs(60));
    writer.commit().unwrap();
    assert_eq!(snap.scan(..).unwrap().count(), 10, "still the state at its begin");
    let after = db.begin_read().unwrap();
    assert_eq!(after.scan(..).unwrap().map(|x| x.unwrap().0).collect::<Vec<_>>(), vec![key_at(20)]);
    // A writer that rolls back leaves nothing behind for anyone.
    let mut w = db.begin().unwrap();
    w.put(key_at(30), b"x").unwrap();
    let mid = db.begin_read().unwrap();
    w.abort().unwrap();
    assert_eq!(mid.get(key_at(30)).unwrap(), None);
    assert_eq!(db.begin_read().unwrap().get(key_at(30)).unwrap(), None);
}

/// A commit whose log fsync fails is never seen: the database stops, and
/// snapshots opened before either see the old state or report the stop.
#[test]
fn a_commit_whose_fsync_fails_is_never_seen() {
    let sim = new_sim(12);
    let db = Db::open_with(sim.clone(), Options::default().background_writer(false)).unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"a", b"1").unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"a", b"2").unwrap();
    sim.inject(Fault::IoErrorFromOp(sim.op_count()));
    assert!(tx.commit().is_err());
    match snap.get(b"a") {
        Ok(v) => assert_eq!(v, Some(b"1".to_vec())),
        Err(e) => assert!(matches!(e, Error::Failed { .. }), "{e:?}"),
    }
    assert!(db.begin_read().is_err(), "a stopped database begins no snapshot");
}

/// A scan whose batch fails reading a before-image back from the log (an
/// I/O error: the database stops) is over: the next call hands out nothing
/// of the half-read batch, whose entries still lack those values.
#[test]
fn a_scan_that_fails_reading_a_logged_before_image_hands_out_nothing_after() {
    for lending in [true, false] {
        let sim = new_sim(15);
        let db = Db::open_with(sim.clone(), Options::default().background_writer(false)).unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..10u32 {
            // Past `SMALL_OLD_VALUE`: a snapshot's before-image stays in the log.
            tx.put(key_at(i), [7; 1000]).unwrap();
        }
        tx.commit().unwrap();
        let snap = db.begin_read().unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..10u32 {
            tx.put(key_at(i), b"new").unwrap();
        }
        tx.commit().unwrap();
        let mut scan = snap.scan(..).unwrap();
        sim.inject(Fault::IoErrorFromOp(sim.op_count()));
        let after = if lending {
            assert!(scan.next_entry().is_err(), "the log read failed");
            scan.next_entry().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
        } else {
            assert!(scan.next().unwrap().is_err(), "the log read failed");
            scan.next().transpose()
        };
        match after {
            Ok(None) | Err(_) => {}
            Ok(Some((k, v))) => panic!(
                "lending {lending}: after the error the scan handed out {} = {} bytes (its value at begin: 1000)",
                String::from_utf8_lossy(&k),
                v.len()
            ),
        }
    }
}

/// Held past the cap, the oldest snapshot fails its next call with the
/// documented retryable error; newer snapshots and writers go on; memory
/// held stays near the cap.
#[test]
fn a_snapshot_held_past_the_cap_expires_with_a_retryable_error() {
    let cap = 200_000;
    let db = Db::open_with(new_sim(13), opts().snapshot_cap_bytes(cap)).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..100u32 {
        tx.put(key_at(i), [1; 100]).unwrap();
    }
    tx.commit().unwrap();
    let old = db.begin_read().unwrap();
    let mut expected_old = Model::new();
    for i in 0..100u32 {
        expected_old.insert(key_at(i), vec![1; 100]);
    }
    // Within the cap the old snapshot reads its state.
    for round in 0..5u8 {
        let mut tx = db.begin().unwrap();
        for i in 0..100u32 {
            tx.put(key_at(i), [round + 2; 100]).unwrap();
        }
        tx.commit().unwrap();
    }
    snapshot_state(&old, &expected_old, "within the cap");
    // Past it, the next call fails, retryably; a new snapshot works.
    let mut round = 10u8;
    while db.stats().snapshots_expired == 0 {
        let mut tx = db.begin().unwrap();
        for i in 0..100u32 {
            tx.put(key_at(i), [round; 1000]).unwrap();
        }
        tx.commit().unwrap();
        round = round.wrapping_add(1);
        assert!(round != 9, "never expired");
    }
    let e = old.get(key_at(1)).unwrap_err();
    assert!(
        matches!(e, Error::SnapshotTooOld { cause: SnapshotTooOld::CapReached { cap_bytes } } if cap_bytes == cap)
            && e.is_retryable(),
        "{e:?}"
    );
    assert!(e.to_string().contains("snapshot_cap_bytes"), "{e}");
    assert!(old.scan(..).unwrap().next().unwrap().is_err());
    assert!(db.stats().snapshot_held_bytes as usize <= cap, "{:?}", db.stats());
    let new = db.begin_read().unwrap();
    assert_eq!(new.get(key_at(1)).unwrap().map(|v| v.len()), Some(1000));
}

/// Threads commit transfers among hot keys while others take snapshots and
/// check each against the committed state at its begin (tracked by the
/// test from acknowledged commits) and the invariant sum.
#[test]
fn concurrent_snapshots_match_the_committed_state_at_their_begin() {
    const ACCOUNTS: u32 = 40;
    let db = Arc::new(Db::open_with(new_sim(14), opts()).unwrap());
    let mut tx = db.begin().unwrap();
    let mut model = Model::new();
    for i in 0..ACCOUNTS {
        tx.put(key_at(i), 100u64.to_le_bytes()).unwrap();
        model.insert(key_at(i), 100u64.to_le_bytes().to_vec());
    }
    tx.commit().unwrap();
    // Writers update the model in the same critical section as the commit
    // returns; a snapshot begins under the read side and copies the model.
    let committed = Arc::new(RwLock::new(model));
    let stop = Arc::new(Mutex::new(false));
    let mut hs = Vec::new();
    for w in 0..2u64 {
        let (db, committed, stop) = (db.clone(), committed.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            let mut r = rng(100 + w);
            let mut done = 0;
            while !*stop.lock().unwrap() {
                let (a, b) = (r.gen_range(0..ACCOUNTS), r.gen_range(0..ACCOUNTS));
                if a == b {
                    continue;
                }
                let mut tx = db.begin().unwrap();
                let res = (|| {
                    let va = u64::from_le_bytes(tx.get(key_at(a))?.unwrap().try_into().unwrap());
                    let vb = u64::from_le_bytes(tx.get(key_at(b))?.unwrap().try_into().unwrap());
                    let amt = va.min(7);
                    tx.put(key_at(a), (va - amt).to_le_bytes())?;
                    tx.put(key_at(b), (vb + amt).to_le_bytes())?;
                    Ok::<_, Error>((va - amt, vb + amt))
                })();
                match res {
                    Ok((na, nb)) => {
                        let mut m = committed.write().unwrap();
                        tx.commit().unwrap();
                        m.insert(key_at(a), na.to_le_bytes().to_vec());
                        m.insert(key_at(b), nb.to_le_bytes().to_vec());
                        done += 1;
                    }
                    Err(e) if e.is_retryable() => drop(tx),
                    Err(e) => panic!("{e}"),
                }
            }
            done
        }));
    }
    let mut checked = 0;
    let t = Instant::now();
    while checked < 200 || t.elapsed() < Duration::from_millis(300) {
        let (snap, at_begin) = {
            let m = committed.read().unwrap();
            (db.begin_read().unwrap(), m.clone())
        };
        // Let writers run before reading.
        std::thread::yield_now();
        let got: Model = snap.scan(..).unwrap().map(|x| x.unwrap()).collect();
        assert!(got == at_begin, "snapshot {checked} differs from the committed state at its begin");
        let sum: u64 = got.values().map(|v| u64::from_le_bytes(v.as_slice().try_into().unwrap())).sum();
        assert_eq!(sum, 100 * ACCOUNTS as u64);
        checked += 1;
        if checked > 5000 {
            break;
        }
    }
    *stop.lock().unwrap() = true;
    let transfers: u32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(transfers > 0);
    assert_eq!(db.stats().snapshot_version_keys, 0);
}

/// A transaction changing more keys than `lock_escalation_keys` keeps only
/// their range: snapshots that must not see it fail inside that range with
/// the retryable error, read outside it, and a snapshot begun after its
/// commit reads everything.
#[test]
fn a_snapshot_overlapping_a_huge_transaction_fails_only_in_its_range() {
    let db = Db::open_with(new_sim(15), opts().lock_escalation_keys(100)).unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"a-outside", b"1").unwrap();
    tx.put(b"z-outside", b"1").unwrap();
    tx.commit().unwrap();
    let before = db.begin_read().unwrap();
    let mut big = db.begin().unwrap();
    for i in 0..500u32 {
        big.put(key_at(i), b"bulk").unwrap();
    }
    let during = db.begin_read().unwrap();
    for s in [&before, &during] {
        assert_eq!(s.get(b"a-outside").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get(b"z-outside").unwrap(), Some(b"1".to_vec()));
        let e = s.get(key_at(250)).unwrap_err();
        assert!(
            matches!(e, Error::SnapshotTooOld { cause: SnapshotTooOld::LargeTransaction { .. } }) && e.is_retryable(),
            "{e:?}"
        );
        assert!(e.to_string().contains("lock_escalation_keys"), "{e}");
        assert!(s.scan(..).unwrap().any(|x| x.is_err()));
    }
    big.commit().unwrap();
    assert!(during.get(key_at(3)).is_err(), "still must not see it");
    let after = db.begin_read().unwrap();
    assert_eq!(after.scan(..).unwrap().count(), 502);
    drop((before, during));
    assert_eq!(db.stats().snapshot_version_keys, 0);
}

/// A scan interleaved, entry by entry, with commits on the same thread: some
/// change the leaf the scan is in (it must start again from its next key),
/// most change other leaves (it goes on where it stopped). Both the lending
/// `next_entry` and the iterator give exactly the state at begin.
#[test]
fn a_scan_interleaved_with_commits_reads_the_state_at_its_begin() {
    let db = Db::open_with(new_sim(77), opts()).unwrap();
    let mut state = Model::new();
    let mut tx = db.begin().unwrap();
    for i in 0..600u32 {
        let v = format!("v{i}").repeat(1 + (i % 50) as usize).into_bytes();
        tx.put(key_at(i), &v).unwrap();
        state.insert(key_at(i), v);
    }
    tx.commit().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    for lending in [true, false] {
        let snap = db.begin_read().unwrap();
        let expect = state.clone();
        let mut got = Model::new();
        let mut scan = snap.scan(..).unwrap();
        loop {
            let entry = if lending {
                scan.next_entry().unwrap().map(|(k, v)| (k.to_vec(), v.to_vec()))
            } else {
                scan.next().map(|x| x.unwrap())
            };
            let Some((k, v)) = entry else { break };
            got.insert(k, v);
            // A commit between entries: an insert, an update (now and then
            // into overflow pages) or a delete anywhere in the key space.
            let i = rng.gen_range(0..800u32);
            let mut tx = db.begin().unwrap();
            match rng.gen_range(0..3) {
                0 => {
                    tx.delete(key_at(i)).unwrap();
                    state.remove(&key_at(i));
                }
                _ => {
                    let v = vec![b'n'; if rng.gen_bool(0.05) { 5000 } else { 40 }];
                    tx.put(key_at(i), &v).unwrap();
                    state.insert(key_at(i), v);
                }
            }
            tx.commit().unwrap();
        }
        assert_eq!(got.len(), expect.len(), "lending {lending}: entries");
        assert!(got == expect, "lending {lending}: the scan differs from the state at begin");
    }
}

/// A bound on keys `key_at(i)`, of each kind by turns.
fn bound_at(kind: u32, i: u32) -> Bound<Vec<u8>> {
    match kind % 3 {
        0 => Bound::Included(key_at(i)),
        1 => Bound::Excluded(key_at(i)),
        _ => Bound::Unbounded,
    }
}

/// Scans with every kind of bound at each end, starting and ending inside
/// leaves and on their edges, over inline and overflow values and batches
/// that end mid-leaf or on a leaf's last entry, read exactly the range of the
/// model: forward (a leaf at a time) and backward, stopped at any length.
#[test]
fn snapshot_scans_read_exactly_their_range_for_every_kind_of_bound() {
    let db = Db::open_with(Arc::new(ariesdb::storage::SimStorage::new(7)), opts()).unwrap();
    let mut model = Model::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut tx = db.begin().unwrap();
    // Even keys only, so that a bound may fall between two keys.
    for i in (0..1200).step_by(2) {
        let len = if rng.gen_ratio(1, 15) { rng.gen_range(2_000..9_000) } else { rng.gen_range(0..120) };
        let v: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        tx.put(key_at(i), &v).unwrap();
        model.insert(key_at(i), v);
    }
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    for round in 0..300u32 {
        let a = rng.gen_range(0..1202);
        let b = a + rng.gen_range(0..300);
        let (lo, hi) = (bound_at(round, a), bound_at(round / 3, b));
        let range = (lo.clone(), hi.clone());
        let want: Vec<(Vec<u8>, Vec<u8>)> = model.range(range.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
        let as_slices = (as_slice(&lo), as_slice(&hi));
        let take = if round % 4 == 0 { rng.gen_range(0..want.len() + 2) } else { usize::MAX };
        let got: Vec<_> = snap.scan(as_slices).unwrap().take(take).map(|x| x.unwrap()).collect();
        assert!(got[..] == want[..take.min(want.len())], "round {round}: forward scan of {range:?}");
        let mut back: Vec<_> = snap.scan_rev(as_slices).unwrap().map(|x| x.unwrap()).collect();
        back.reverse();
        assert!(back == want, "round {round}: reverse scan of {range:?}");
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
