//! `Db::open_read_only` on real files: it recovers a crashed directory in
//! memory and serves the recovered state, while no byte, name or
//! modification time in the directory changes; it refuses every change with
//! `Error::ReadOnly`; it creates nothing where there is no database; it and
//! a writer exclude each other; damage is reported and still nothing is
//! written; and a normal open afterwards recovers as if it had not happened.

mod common;

use std::path::Path;

use ariesdb::{Db, Error, Options, RecoveryReport, DATA_FILE, MIN_BUFFER_POOL_PAGES};
use common::{dir_state, tmp_dir, Model};

/// The writer's options: a small pool, so pages of unfinished work are
/// written back (stolen), and no background writer or automatic checkpoint,
/// so what is on disk at the crash depends on this test only.
fn writer_opts() -> Options {
    Options::default()
        .buffer_pool_pages(MIN_BUFFER_POOL_PAGES)
        .background_writer(false)
        .checkpoint_interval_bytes(0)
        .wal_segment_bytes(256 << 10)
}

fn value(i: u32) -> Vec<u8> {
    let len = if i.is_multiple_of(17) { 5000 } else { 40 + (i % 50) as usize };
    vec![(i % 251) as u8; len]
}

/// A database left as after a crash: committed transactions before and after
/// a checkpoint, a transaction left open with its changes logged (a loser),
/// and the `Db` dropped without `close()`, so pages are missing changes that
/// only the log holds. Returns what was committed.
fn crashed_db(dir: &Path) -> Model {
    let mut model = Model::new();
    let db = Db::open_path_with(dir, writer_opts()).unwrap();
    for t in 0..40u32 {
        let mut tx = db.begin().unwrap();
        for i in 0..30u32 {
            let n = t * 30 + i;
            let k = format!("key{:05}", n % 700).into_bytes();
            if n % 11 == 3 {
                tx.delete(&k).unwrap();
                model.remove(&k);
            } else {
                tx.put(&k, value(n)).unwrap();
                model.insert(k, value(n));
            }
        }
        tx.commit().unwrap();
        if t == 15 {
            db.checkpoint().unwrap();
        }
    }
    let mut loser = db.begin().unwrap();
    for i in 0..200u32 {
        loser.put(format!("key{:05}", i * 3).as_bytes(), vec![0xAB; 300]).unwrap();
    }
    // The drop flushes the log (the loser's records included) and writes back
    // no page; the loser, outliving its Db, logs nothing at its own drop.
    drop(db);
    drop(loser);
    model
}

/// A recovery report without its timings.
fn untimed(mut r: RecoveryReport) -> RecoveryReport {
    (r.analysis_us, r.redo_us, r.undo_us) = (0, 0, 0);
    r
}

fn scan_all(db: &Db) -> Model {
    let snap = db.begin_read().unwrap();
    snap.scan::<std::ops::RangeFull>(..).unwrap().map(|r| r.unwrap()).collect()
}

#[test]
fn a_crashed_directory_is_recovered_in_memory_and_not_changed() {
    let dir = tmp_dir("read-only", "crashed");
    let model = crashed_db(&dir);
    let before = dir_state(&dir);
    assert!(before.contains_key("LOCK") && before.contains_key(DATA_FILE), "{:?}", before.keys());

    let ro = Db::open_read_only(&dir).unwrap();
    let report = ro.recovery_report();
    assert!(report.redone > 0 && report.losers == 1 && report.undone > 0, "recovery was pending: {report:?}");
    assert_eq!(scan_all(&ro), model, "the read-only open sees every commit and nothing of the loser");
    for (k, v) in model.iter().step_by(37) {
        assert_eq!(ro.begin_read().unwrap().get(k).unwrap().as_ref(), Some(v));
    }
    let check = ro.check_report().unwrap();
    assert_eq!(check.keys, model.len() as u64);
    let stats = ro.stats();
    assert_eq!(stats.commits, 0);
    assert!(format!("{ro:?}").contains("read_only: true"), "{ro:?}");

    // Every change is refused; reads and a sync (nothing to make durable) work.
    assert!(matches!(ro.begin(), Err(Error::ReadOnly)));
    assert!(matches!(ro.checkpoint(), Err(Error::ReadOnly)));
    assert!(matches!(ro.compact(), Err(Error::ReadOnly)));
    ro.sync().unwrap();
    assert!(!Error::ReadOnly.is_retryable());
    // A backup reads only: it copies the recovered state elsewhere.
    let copy = tmp_dir("read-only", "crashed-backup");
    let b = ro.backup(&copy).unwrap();
    assert_eq!(b.entries, model.len() as u64);
    ro.check().unwrap();
    ro.close().unwrap();
    assert_eq!(dir_state(&dir), before, "the read-only open, its reads, check, backup or close changed the directory");

    // Opened again and dropped without close: still nothing written.
    let ro = Db::open_read_only(&dir).unwrap();
    assert_eq!(untimed(ro.recovery_report()), untimed(report.clone()), "the same recovery again: nothing was kept");
    drop(ro);
    assert_eq!(dir_state(&dir), before, "the drop of a read-only Db changed the directory");

    // A normal open recovers for real, as if nothing had happened in between.
    // (The classic three passes, as the read-only open runs them.)
    let db = Db::open_existing_with(&dir, Options::default().instant_restart(false)).unwrap();
    assert_eq!(untimed(db.recovery_report()), untimed(report), "the real recovery did what the read-only one did");
    assert_eq!(scan_all(&db), model);
    db.close().unwrap();
    assert_ne!(dir_state(&dir), before, "the normal open wrote its recovery");

    // After the clean close there is nothing pending.
    let ro = Db::open_read_only(&dir).unwrap();
    let r = ro.recovery_report();
    assert_eq!((r.redone, r.losers, r.winners, r.dirty_pages), (0, 0, 0, 0), "{r:?}");
    let clean = dir_state(&dir);
    assert_eq!(scan_all(&ro), model);
    ro.close().unwrap();
    assert_eq!(dir_state(&dir), clean);

    let copy_db = Db::open_existing(&copy).unwrap();
    assert_eq!(scan_all(&copy_db), model, "the backup of the read-only Db");
    copy_db.close().unwrap();
    std::fs::remove_dir_all(&copy).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn where_there_is_no_database_nothing_is_created() {
    let base = tmp_dir("read-only", "missing");
    let missing = base.join("not-there");
    match Db::open_read_only(&missing) {
        Err(Error::NotFound { reason, .. }) => assert_eq!(reason, "the directory does not exist"),
        other => panic!("a missing directory: {:?}", other.map(|_| ())),
    }
    assert!(!base.exists(), "the open created a directory");

    std::fs::create_dir_all(&base).unwrap();
    let file = base.join("a-file");
    std::fs::write(&file, b"not a database").unwrap();
    assert!(matches!(Db::open_read_only(&file), Err(Error::NotFound { reason: "it is not a directory", .. })));
    let empty = base.join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(Db::open_read_only(&empty), Err(Error::NotFound { .. })));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "the open created a file (LOCK?)");
    // A LOCK file alone (a writer's leftover) is not a database either.
    std::fs::write(empty.join("LOCK"), b"").unwrap();
    assert!(matches!(Db::open_read_only(&empty), Err(Error::NotFound { .. })));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 1);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_writer_and_a_reader_exclude_each_other_and_readers_share() {
    let dir = tmp_dir("read-only", "locked");
    let db = Db::open(&dir).unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"k", b"v").unwrap();
    tx.commit().unwrap();
    assert!(matches!(Db::open_read_only(&dir), Err(Error::Locked { .. })), "a directory open for writing");
    db.close().unwrap();

    let r1 = Db::open_read_only(&dir).unwrap();
    let r2 = Db::open_read_only(&dir).unwrap();
    assert!(matches!(Db::open_existing(&dir), Err(Error::Locked { .. })), "a writer beside readers");
    assert!(matches!(Db::open(&dir), Err(Error::Locked { .. })));
    assert_eq!(r2.begin_read().unwrap().get(b"k").unwrap(), Some(b"v".to_vec()));
    drop(r1);
    assert!(matches!(Db::open_existing(&dir), Err(Error::Locked { .. })), "one reader is left");
    r2.close().unwrap();
    let db = Db::open_existing(&dir).unwrap();
    assert_eq!(db.begin_read().unwrap().get(b"k").unwrap(), Some(b"v".to_vec()));
    db.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_copy_without_a_lock_file_is_opened_without_creating_one() {
    let dir = tmp_dir("read-only", "nolock-src");
    let model = crashed_db(&dir);
    let copy = tmp_dir("read-only", "nolock");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
    }
    let before = dir_state(&copy);
    let ro = Db::open_read_only(&copy).unwrap();
    assert_eq!(scan_all(&ro), model);
    ro.close().unwrap();
    assert_eq!(dir_state(&copy), before, "no LOCK file, nor anything else, was created");
    std::fs::remove_dir_all(&copy).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Flip 16 bytes of `file` at `offset`.
fn damage(file: &Path, offset: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    assert!(bytes.len() >= offset + 16, "{} is {} bytes", file.display(), bytes.len());
    for b in &mut bytes[offset..offset + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(file, &bytes).unwrap();
}

/// The read-only open and check of `dir`, which must report corruption.
fn expect_corruption(dir: &Path, what: &str) {
    let r = Db::open_read_only(dir).and_then(|db| {
        let r = db.check();
        db.close()?;
        r
    });
    match r {
        Err(Error::Corruption { .. }) => {}
        other => panic!("{what}: expected corruption, got {other:?}"),
    }
}

#[test]
fn damage_is_reported_and_still_nothing_is_written() {
    // A tree page of a closed database: found by the check.
    let dir = tmp_dir("read-only", "damaged-page");
    let db = Db::open(&dir).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..300u32 {
        tx.put(format!("k{i:04}").as_bytes(), [7u8; 100]).unwrap();
    }
    tx.commit().unwrap();
    db.close().unwrap();
    damage(&dir.join(DATA_FILE), 2 * 4096 + 200);
    let before = dir_state(&dir);
    expect_corruption(&dir, "a damaged tree page");
    assert_eq!(dir_state(&dir), before, "the open or check of a damaged page wrote");
    std::fs::remove_dir_all(&dir).unwrap();

    // Both copies of the master record of a crashed database: found by the open.
    let dir = tmp_dir("read-only", "damaged-master");
    crashed_db(&dir);
    for copy in [0, 512] {
        damage(&dir.join(DATA_FILE), copy + 8);
    }
    let before = dir_state(&dir);
    expect_corruption(&dir, "a damaged master record");
    assert_eq!(dir_state(&dir), before, "the open of a damaged master record wrote");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The memory bound `Db::open_read_only` documents, measured on the same
/// composition built from the public parts (an overlay on a read-only
/// `FsStorage`), with a small pool so that pages recovery changed are also
/// written back into the overlay by evictions while everything is read.
#[test]
fn the_overlay_holds_about_what_recovery_wrote() {
    use ariesdb::storage::{FsStorage, OverlayStorage};
    use std::sync::Arc;
    const BLOCK: u64 = 4096;
    let dir = tmp_dir("read-only", "memory");
    let model = crashed_db(&dir);
    let measure = |dir: &Path| {
        let before = dir_state(dir);
        let overlay = Arc::new(OverlayStorage::new(Arc::new(FsStorage::open_read_only(dir).unwrap())).unwrap());
        let db = Db::open_with(overlay.clone(), writer_opts()).unwrap();
        assert_eq!(scan_all(&db), model);
        let (report, log_bytes) = (db.recovery_report(), db.stats().wal_bytes_written);
        drop(db);
        assert_eq!(dir_state(dir), before);
        (overlay.memory_bytes(), report, log_bytes)
    };
    let (memory, r, log_bytes) = measure(&dir);
    // Data pages: those redo or undo changed; log: what recovery appended,
    // plus a partial block at each end; one block of master record.
    let bound = (r.dirty_pages + r.undone + 1) * BLOCK + log_bytes + 2 * BLOCK;
    assert!(r.redone > 0 && memory > 0 && memory <= bound, "{memory} bytes > {bound}: {r:?}");

    Db::open_existing(&dir).unwrap().close().unwrap();
    let (memory, r, _) = measure(&dir);
    assert_eq!(r.redone, 0);
    assert!(memory <= 4 * BLOCK, "after a clean close: {memory} bytes");
    std::fs::remove_dir_all(&dir).unwrap();
}
