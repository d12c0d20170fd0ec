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

/// Key `i` of a space whose keys sort by `i`: 7 to 46 bytes, or with `long`
/// now and then up to 1024 (a 4 KiB leaf then holds few entries).
fn sized_key(i: u32, long: bool) -> Vec<u8> {
    let h = i.wrapping_mul(2_654_435_761) >> 7;
    let pad = match (long, h % 10) {
        (true, 0) => ariesdb::MAX_KEY_LEN - 7,
        (true, 1..=3) => (h % 600) as usize,
        _ => (h % 40) as usize,
    };
    let mut k = format!("k{i:06}").into_bytes();
    k.extend((0..pad).map(|j| b'a' + ((h as usize + j) % 26) as u8));
    k
}

/// A value for pages of `page` bytes: mostly a few bytes, some up to an
/// inline cell's limit, some in overflow pages.
fn sized_value(rng: &mut rand::rngs::StdRng, page: usize) -> Vec<u8> {
    let len = match rng.gen_range(0..100) {
        0..=69 => rng.gen_range(0..60),
        70..=89 => rng.gen_range(60..page / 3),
        _ => rng.gen_range(page / 3..page * 3),
    };
    let b: u8 = rng.gen();
    (0..len).map(|i| b.wrapping_add(i as u8)).collect()
}

/// A scan range over `m`'s keys: each end an existing key (so often a
/// leaf's first or last) or any key of the space, of any kind of bound.
fn random_range(rng: &mut rand::rngs::StdRng, m: &Model, space: u32, long: bool) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let end = |rng: &mut rand::rngs::StdRng| {
        let k = match m.is_empty() || rng.gen_bool(0.3) {
            true => sized_key(rng.gen_range(0..space + 2), long),
            false => m.keys().nth(rng.gen_range(0..m.len())).expect("in the model").clone(),
        };
        match rng.gen_range(0..5) {
            0 | 1 => Bound::Included(k),
            2 | 3 => Bound::Excluded(k),
            _ => Bound::Unbounded,
        }
    };
    loop {
        let (lo, hi) = (end(rng), end(rng));
        // BTreeMap::range panics on an inverted range; a scan of one is empty.
        let ok = match (&lo, &hi) {
            (Bound::Included(a), Bound::Included(b)) => a <= b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a < b,
            _ => true,
        };
        if ok {
            return (lo, hi);
        }
    }
}

/// One committed (or now and then aborted) transaction of puts (inline
/// and overflow values, over either) and deletes: mostly one key, at times
/// dozens (splits, merges). With `near`, most keys fall at or around it.
fn random_commit(
    db: &Db,
    rng: &mut rand::rngs::StdRng,
    model: &mut Model,
    keys: (u32, bool, usize),
    near: Option<&[u8]>,
) {
    let (space, long, page) = keys;
    let mut tx = db.begin().unwrap();
    let mut pending = Pending::new();
    for _ in 0..if rng.gen_bool(0.1) { rng.gen_range(10..80) } else { 1 } {
        let i = match near {
            Some(k) if rng.gen_bool(0.6) => {
                let at: u32 = std::str::from_utf8(&k[1..7]).unwrap().parse().unwrap();
                (at + rng.gen_range(0..6)).saturating_sub(2).min(space - 1)
            }
            _ => rng.gen_range(0..space),
        };
        let k = sized_key(i, long);
        if rng.gen_bool(0.35) {
            tx.delete(&k).unwrap();
            pending.insert(k, None);
        } else {
            let v = sized_value(rng, page);
            tx.put(&k, &v).unwrap();
            pending.insert(k, Some(v));
        }
    }
    if rng.gen_bool(0.1) {
        tx.abort().unwrap();
    } else {
        tx.commit().unwrap();
        apply(model, &pending);
    }
}

/// Snapshot scans on 4 to 32 KiB pages, keys up to 1024 bytes, inline and
/// overflow values: forward and backward, lending and owning, over random
/// ranges (ends on existing keys, so often on a leaf's edge), many dropped
/// part-way (the next scan of the snapshot reuses their buffers), with
/// commits between entries, mostly around the scan's position (its leaf
/// changes: it starts again from its next key; the changed keys' versions
/// merge into its batches), and two threads scanning one snapshot while
/// another commits. Each reads exactly the model at the snapshot's begin.
#[test]
fn snapshot_scans_on_every_page_size_match_the_model_while_writers_change_their_leaves() {
    for seed in seed_start()..seed_start() + seed_count(4) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let page = [4096, 8192, 16384, 32768][(seed % 4) as usize];
        let long = seed % 3 == 0;
        let space = if long { 400 } else { 1600 };
        let opts = Options::default()
            .page_size(page)
            .buffer_pool_pages(64)
            .wal_segment_bytes(256 << 10)
            .checkpoint_interval_bytes(512 << 10)
            .durability(ariesdb::Durability::Eventual);
        let db = Db::open_with(new_sim(seed), opts).unwrap();
        let mut model = Model::new();
        let mut tx = db.begin().unwrap();
        for _ in 0..rng.gen_range(space / 4..space) {
            let (k, v) = (sized_key(rng.gen_range(0..space), long), sized_value(&mut rng, page));
            tx.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        tx.commit().unwrap();
        for round in 0..4 {
            let snap = db.begin_read().unwrap();
            let at_begin = model.clone();
            for n in 0..20 {
                let ctx = format!("seed {seed} ({page}-byte pages) round {round} scan {n}");
                let (lo, hi) = random_range(&mut rng, &at_begin, space, long);
                let range = (as_slice(&lo), as_slice(&hi));
                let mut want: Vec<(Vec<u8>, Vec<u8>)> =
                    at_begin.range((lo.clone(), hi.clone())).map(|(k, v)| (k.clone(), v.clone())).collect();
                let reverse = rng.gen_bool(0.15);
                if reverse {
                    want.reverse();
                }
                want.truncate(if rng.gen_bool(0.3) { rng.gen_range(0..want.len() + 1) } else { want.len() });
                let p_commit = [0.0, 0.02, 0.2][rng.gen_range(0..3)];
                let lending = rng.gen_bool(0.5);
                let mut scan = if reverse { snap.scan_rev(range) } else { snap.scan(range) }.unwrap();
                let mut got = Vec::new();
                while got.len() < want.len() {
                    let e = match lending {
                        true => scan.next_entry().unwrap().map(|(k, v)| (k.to_vec(), v.to_vec())),
                        false => scan.next().map(|x| x.unwrap()),
                    };
                    let Some(e) = e else { break };
                    got.push(e);
                    if rng.gen_bool(p_commit) {
                        let at = got.last().map(|(k, _)| k.as_slice());
                        random_commit(&db, &mut rng, &mut model, (space, long, page), at);
                    }
                }
                // A scan read to its end reads nothing more.
                if got.len() == want.len() && want.len() == at_begin.range((lo.clone(), hi.clone())).count() {
                    assert!(scan.next().is_none(), "{ctx}: entries past the range's end");
                }
                drop(scan);
                if got != want {
                    let at = got.iter().zip(&want).position(|(a, b)| a != b);
                    panic!(
                        "{ctx}: scan (reverse {reverse}) of {:?}: {} entries, want {}; first difference at {at:?}",
                        (lo, hi),
                        got.len(),
                        want.len()
                    );
                }
            }
            // Two threads scan the snapshot at once while this one commits.
            let thread_seed: u64 = rng.gen();
            std::thread::scope(|s| {
                let readers: Vec<_> = (1..=2u64)
                    .map(|t| {
                        let (snap, at_begin) = (&snap, &at_begin);
                        s.spawn(move || {
                            let mut r = rand::rngs::StdRng::seed_from_u64(thread_seed ^ t);
                            for n in 0..6 {
                                let (lo, hi) = random_range(&mut r, at_begin, space, long);
                                let want: Vec<_> = at_begin.range((lo.clone(), hi.clone())).take(150).collect();
                                let got: Vec<_> = snap
                                    .scan((as_slice(&lo), as_slice(&hi)))
                                    .unwrap()
                                    .take(150)
                                    .map(|x| x.unwrap())
                                    .collect();
                                assert!(
                                    got.iter().map(|(k, v)| (k, v)).eq(want),
                                    "seed {seed} round {round}: thread {t} scan {n} of {:?}",
                                    (lo, hi)
                                );
                            }
                        })
                    })
                    .collect();
                let mut r = rand::rngs::StdRng::seed_from_u64(thread_seed);
                for _ in 0..30 {
                    random_commit(&db, &mut r, &mut model, (space, long, page), None);
                }
                for h in readers {
                    h.join().unwrap();
                }
            });
            drop(snap);
            db.check().unwrap_or_else(|e| panic!("seed {seed} round {round}: check: {e}"));
            let all: Model = db.begin_read().unwrap().scan(..).unwrap().map(|x| x.unwrap()).collect();
            assert!(all == model, "seed {seed} round {round}: the database differs from the model");
        }
    }
}
