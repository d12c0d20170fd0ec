//! Torn-page protection logs a page's full image when the page is written
//! back, not with its first change after a checkpoint (docs/design.md,
//! section 7): a commit into a page a checkpoint wrote back carries no image,
//! the write-back that follows logs one, and a power loss that tears the
//! written pages is recovered from those images.

mod common;

use ariesdb::Db;
use common::*;

fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

#[test]
fn a_change_logs_no_image_and_the_write_back_logs_one() {
    let sim = new_sim(41);
    let db = Db::open_with(sim.clone(), small_opts()).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..300 {
        tx.put(key(i), [7u8; 100]).unwrap();
    }
    tx.commit().unwrap();
    // Every page written back; the next checkpoint's horizon is past every
    // image logged so far.
    db.checkpoint().unwrap();
    db.checkpoint().unwrap();
    let before = db.stats();
    let mut tx = db.begin().unwrap();
    tx.put(key(5), [8u8; 100]).unwrap();
    tx.commit().unwrap();
    let after_commit = db.stats();
    assert_eq!(after_commit.full_page_images, before.full_page_images, "a change logged an image: {after_commit:?}");
    // The checkpoint after the next writes the changed pages back (they were
    // dirty before it began), each imaged first.
    db.checkpoint().unwrap();
    db.checkpoint().unwrap();
    let after = db.stats();
    assert!(after.pages_written > after_commit.pages_written, "{after:?}");
    assert!(after.full_page_images > after_commit.full_page_images, "a write-back logged no image: {after:?}");
    drop(db);
    let db = Db::open_with(sim, small_opts()).unwrap();
    assert_eq!(db.begin().unwrap().get(key(5)).unwrap().unwrap(), vec![8u8; 100]);
}

#[test]
fn pages_torn_by_a_power_loss_come_back_from_write_back_images() {
    let mut rebuilt = 0;
    for seed in 0..12 {
        let sim = new_sim(500 + seed);
        // A small pool: evictions write pages back between checkpoints.
        let opts = small_opts();
        let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..2000 {
            tx.put(key(i), [1u8; 120]).unwrap();
        }
        tx.commit().unwrap();
        db.checkpoint().unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..2000 {
            tx.put(key(i), [2u8; 120]).unwrap();
        }
        tx.commit().unwrap();
        drop(db);
        sim.power_loss();
        let db = Db::open_with(sim, opts.clone().instant_restart(seed % 2 == 0)).unwrap();
        let tx = db.begin().unwrap();
        for i in 0..2000 {
            assert_eq!(tx.get(key(i)).unwrap().unwrap(), vec![2u8; 120], "seed {seed} key {i}");
        }
        drop(tx);
        db.check().unwrap();
        rebuilt += db.recovery_report().pages_rebuilt;
    }
    assert!(rebuilt > 0, "no page was rebuilt from an image or init in any seed: the test lost its point");
}
