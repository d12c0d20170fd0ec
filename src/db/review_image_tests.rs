//! Review tests of full page images at write-back (be84534).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Db;
use crate::page::PageRef;
use crate::storage::{Fault, SimStorage};
use crate::types::{Lsn, PageId};

use super::test_support::{read_all_txn, small_opts as opts, Model};

fn key(i: u32) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

/// 120 keys with 1000-byte values (about 40 leaves, more than the pool
/// holds), everything written back and a checkpoint after it: every page
/// is clean and its last image older than the horizon. Then the keys
/// around `k` get new values of the same size, committed: the leaves
/// there are dirty, still with their old images.
fn setup(seed: u64, instant: bool, k: u32) -> (Arc<SimStorage>, Db, Model) {
    let sim = Arc::new(SimStorage::new(seed));
    let db = Db::open_with(sim.clone(), opts(instant)).unwrap();
    let mut model = Model::new();
    let mut tx = db.begin().unwrap();
    for i in 0..120 {
        let v = vec![i as u8; 1000];
        tx.put(key(i), &v).unwrap();
        model.insert(key(i), v);
    }
    tx.commit().unwrap();
    db.inner.pool.flush_dirty(Lsn::MAX, usize::MAX).unwrap();
    db.checkpoint().unwrap();
    let mut tx = db.begin().unwrap();
    for i in k.saturating_sub(6)..(k + 7).min(120) {
        let v = vec![i as u8 ^ 0x5a; 1000];
        tx.put(key(i), &v).unwrap();
        model.insert(key(i), v);
    }
    tx.commit().unwrap();
    (sim, db, model)
}

/// The value that moves key `k` to overflow pages: its leaf falls below
/// its fill bound and merges with a sibling.
fn long_value() -> Vec<u8> {
    vec![0xee; 6000]
}

/// A put whose record frees a leaf (a merge) that is dirty with its last
/// image older than the horizon, and allocates overflow pages at the end
/// of the file. While that record is applied, a write-back of the freed
/// leaf (the background writer's, say) finds it in the `defining` set and
/// writes it without an image (`Image::Busy`); its page_lsn is durable, so
/// the log is not flushed. Power fails before the record is durable: the
/// leaf is torn, and the log holds no image of it and no record that
/// defines it. Recovery must still bring back the committed state.
#[test]
fn busy_write_back_without_its_defining_record_durable() {
    for instant in [false, true] {
        let mut torn_seen = false;
        for seed in 1..=6u64 {
            // Find a key whose long put frees a page, and which page (a dry
            // run: SimStorage runs are deterministic).
            let mut found = None;
            for k in (10..110).step_by(3) {
                let (_sim, db, _) = setup(seed, instant, k);
                let before = db.inner.tree().meta().unwrap();
                let mut tx = db.begin().unwrap();
                tx.put(key(k), long_value()).unwrap();
                let after = db.inner.tree().meta().unwrap();
                drop(tx);
                if after.free_count > before.free_count {
                    found = Some((k, after.free_head));
                    break;
                }
            }
            let (k, freed) = found.expect("no put frees a page");
            let (sim, db, model) = setup(seed, instant, k);
            {
                let h = db.inner.pool.fetch(freed).unwrap();
                assert!(h.is_dirty(), "page {freed} is not dirty before the put");
                assert_eq!(h.read().page_type(), Some(crate::page::PageType::Leaf));
            }
            let fired = Arc::new(AtomicBool::new(false));
            let (sim2, fired2) = (sim.clone(), fired.clone());
            db.inner.pool.set_claim_hook(Box::new(move |pool, _| {
                if !pool.is_defining(freed) {
                    return false;
                }
                // The record that frees `freed` is appended and not yet
                // applied to it: a write-back of it now.
                let written = pool.write_back_for_test(freed).unwrap();
                assert!(written, "page {freed} was not written back");
                fired2.store(true, Ordering::SeqCst);
                // The power fails at the next storage call.
                sim2.inject(Fault::CrashAtOp(sim2.op_count()));
                true
            }));
            let mut tx = db.begin().unwrap();
            let r = tx.put(key(k), long_value()).and_then(|_| tx.commit());
            assert!(fired.load(Ordering::SeqCst), "the hook did not run");
            assert!(r.is_err(), "the commit cannot be durable");
            drop(db);
            sim.power_loss();
            let stored = sim.file_contents(crate::recovery::DATA_FILE).unwrap();
            let off = freed.get() as usize * 4096;
            let torn = crate::page::verify(&stored[off..off + 4096], freed) != crate::page::PageState::Valid;
            eprintln!("instant {instant} seed {seed}: key {k}, page {freed} freed; stored copy torn: {torn}");
            torn_seen |= torn;
            let db = Db::open_with(sim.clone(), opts(instant))
                .unwrap_or_else(|e| panic!("instant {instant} seed {seed}: recovery failed: {e}"));
            let got = (|| -> crate::error::Result<Model> {
                db.check()?;
                read_all_txn(&db)
            })()
            .unwrap_or_else(|e| panic!("instant {instant} seed {seed}: reading after recovery failed: {e}"));
            assert!(got == model, "instant {instant} seed {seed}: wrong data after recovery");
        }
        assert!(torn_seen, "no run tore the page: the test shows nothing");
    }
}

/// A writer holds a page's latch while it fetches another page (as
/// `log_and_apply` does, for its next part), and the fetch must write back
/// a dirty victim. Meanwhile a write-back pass (`flush_dirty`, the
/// background writer) holds the write gate shared and waits for that
/// latch, and a checkpoint waits for the gate exclusively
/// (`advance_fpi_horizon`). The writer's `write_gate.read()` queues behind
/// the checkpoint (parking_lot's RwLock is fair): none of the three moves.
#[test]
fn eviction_under_a_latch_with_a_checkpoint_waiting_for_the_gate() {
    let sim = Arc::new(SimStorage::new(3));
    let db = Arc::new(Db::open_with(sim, opts(false)).unwrap());
    let pool = &db.inner.pool;
    // Every frame dirty: pages defined anew beyond the tree (the database
    // is thrown away after).
    let frames = pool.frame_count() as u32;
    {
        let _w = db.inner.tree_latch.exclusive();
        // (The meta page and the root leaf are dirty already.)
        for i in 0..frames - 2 {
            let part = crate::wal::PagePart {
                page_id: PageId(1000 + i),
                op: crate::page::PageOp::Init {
                    ty: crate::page::PageType::Leaf as u8,
                    link: PageId::NONE,
                    aux: 0,
                    cells: vec![],
                },
            };
            pool.log_and_apply(&Default::default(), &crate::wal::Body::Redo { parts: vec![part] }).unwrap();
        }
    }
    db.inner.wal.flush_all().unwrap();
    assert_eq!(pool.dirty_frame_count(), frames as usize);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<&'static str>();
    // The writer: latch page 1000, ...
    let (latched_tx, latched_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    {
        let db = db.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let pool = &db.inner.pool;
            let h = pool.fetch(PageId(1000)).unwrap();
            let _g = h.write();
            latched_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            // ... then fetch a page not in the pool: a dirty victim.
            let n = pool.fetch_new(PageId(5000)).unwrap();
            drop(n);
            done.send("writer").unwrap();
        });
    }
    latched_rx.recv().unwrap();
    // The write-back pass: waits for page 1000's latch under the gate.
    {
        let db = db.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            db.inner.pool.flush_dirty(Lsn::MAX, usize::MAX).unwrap();
            done.send("write-back").unwrap();
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    // The checkpoint's horizon advance: waits for the gate.
    {
        let db = db.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let end = db.inner.wal.end_lsn();
            db.inner.pool.advance_fpi_horizon(end);
            done.send("checkpoint").unwrap();
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    go_tx.send(()).unwrap();
    let mut finished = Vec::new();
    while finished.len() < 3 {
        match done_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(who) => finished.push(who),
            Err(_) => panic!("deadlock: only {finished:?} finished in 10 s"),
        }
    }
}
