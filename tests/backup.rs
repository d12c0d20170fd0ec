//! Online backup (`Db::backup`) and `Db::open_existing`, on real directories.
//!
//! A backup taken while writer threads move money between accounts must be a
//! database that opens, passes `check()`, keeps the total, and holds exactly
//! the transfers of one instant: replaying the markers it holds from the
//! initial balances gives every balance it holds. A backup of a quiet
//! database equals it. A destination that holds anything is refused, and a
//! failed backup leaves nothing behind.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use ariesdb::storage::{Fault, SimStorage, Storage};
use ariesdb::{Db, Error, Options, SnapshotTooOld};
use common::bank::Bank;
use common::*;
use rand::Rng;

const ACCOUNTS: u32 = 50;
const START: u64 = 1000;
/// Filler entries, so the copy takes long enough for writers to commit meanwhile.
const FILLER: u32 = 8000;

/// A fresh directory under the system temp dir, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("ariesdb-backup-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The bank: an account's value is its balance alone.
const BANK: Bank = Bank { accounts: ACCOUNTS, start: START, value_len: 8 };

fn setup(db: &Db) {
    let mut tx = db.begin().unwrap();
    BANK.open_accounts(&mut tx).unwrap();
    tx.commit().unwrap();
    for chunk in 0..FILLER / 1000 {
        let mut tx = db.begin().unwrap();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            let len = if i % 500 == 7 { 9000 } else { 40 + (i % 90) as usize };
            tx.put(format!("fill:{i:06}").as_bytes(), vec![(i % 251) as u8; len]).unwrap();
        }
        tx.commit().unwrap();
    }
    let mut tx = db.begin().unwrap();
    for i in (0..FILLER).step_by(13) {
        assert!(tx.delete(format!("fill:{i:06}").as_bytes()).unwrap());
    }
    tx.commit().unwrap();
}

/// One transfer (`Bank::transfer`), one in ten of them aborted after its
/// marker is put.
fn transfer(db: &Db, rng: &mut rand::rngs::StdRng, marker: &[u8]) -> Result<bool, Error> {
    BANK.transfer(db, rng, marker, |_, rng| Ok(!rng.gen_bool(0.1)))
}

/// Run transfer threads until `stop`; the markers acknowledged, in order.
fn writers(db: &Db, threads: u64, stop: &AtomicBool, acked: &Mutex<Vec<Vec<u8>>>, started: &AtomicU64) {
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut rng = rng(77 + t);
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let marker = format!("xfer:{t}:{n:06}").into_bytes();
                    n += 1;
                    match transfer(db, &mut rng, &marker) {
                        Ok(true) => {
                            acked.lock().unwrap().push(marker);
                            started.fetch_add(1, Ordering::Release);
                        }
                        Ok(false) => {}
                        Err(e) if e.is_retryable() => {}
                        Err(e) => panic!("transfer failed: {e}"),
                    }
                }
            });
        }
    });
}

/// The copy's state is one instant of the bank (`Bank::check`).
fn check_bank(m: &Model) -> BTreeSet<Vec<u8>> {
    BANK.check(m, "the copy")
}

/// Every entry the database holds, read through a snapshot.
fn contents(db: &Db) -> Model {
    let snap = db.begin_read().unwrap();
    snap.scan(..).unwrap().map(|r| r.unwrap()).collect()
}

/// The names in a directory.
fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// Every file of a directory with its contents.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn backup_of_a_quiet_database_equals_it() {
    let t = Tmp::new("quiet");
    let db = Db::open(t.join("live")).unwrap();
    setup(&db);
    // Writers ran and stopped: the copy must equal the database exactly.
    let stop = AtomicBool::new(false);
    let (acked, started) = (Mutex::new(Vec::new()), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| writers(&db, 3, &stop, &acked, &started));
        while started.load(Ordering::Acquire) < 100 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Release);
    });
    // A transaction left open is not in the copy.
    let mut open_tx = db.begin().unwrap();
    open_tx.put(b"uncommitted", b"x").unwrap();
    let expected = contents(&db);
    let report = db.backup(t.join("copy")).unwrap();
    open_tx.abort().unwrap();
    assert_eq!(report.entries, expected.len() as u64);
    assert_eq!(report.bytes, expected.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum::<u64>());
    assert!(report.transactions >= expected.len() as u64 / 1000, "{report:?}");
    assert_eq!(names(&t.0), BTreeSet::from(["live".to_string(), "copy".to_string()]), "a staging directory was left");
    db.close().unwrap();

    let copy = Db::open_existing(t.join("copy")).unwrap();
    assert_eq!(copy.recovery_report().redone, 0, "the copy was not closed cleanly");
    let r = copy.check_report().unwrap();
    assert_eq!(r.keys, expected.len() as u64);
    let got = read_all(&copy).unwrap();
    assert!(got == expected, "the copy differs from the database");
    assert!(!got.contains_key(&b"uncommitted"[..]));
    let markers = check_bank(&got);
    assert_eq!(markers, acked.into_inner().unwrap().into_iter().collect::<BTreeSet<_>>());
    copy.close().unwrap();
}

#[test]
fn backup_under_concurrent_transfers_is_one_instant() {
    let t = Tmp::new("live");
    let db = Db::open_path_with(t.join("live"), Options::default().durability(ariesdb::Durability::Eventual)).unwrap();
    setup(&db);
    let stop = AtomicBool::new(false);
    let (acked, started) = (Mutex::new(Vec::new()), AtomicU64::new(0));
    let (before, during, report) = std::thread::scope(|s| {
        s.spawn(|| writers(&db, 3, &stop, &acked, &started));
        while started.load(Ordering::Acquire) < 50 {
            std::thread::yield_now();
        }
        let before: BTreeSet<Vec<u8>> = acked.lock().unwrap().iter().cloned().collect();
        let at_start = started.load(Ordering::Acquire);
        let report = db.backup(t.join("copy")).unwrap();
        let during = started.load(Ordering::Acquire) - at_start;
        stop.store(true, Ordering::Release);
        (before, during, report)
    });
    let all: BTreeSet<Vec<u8>> = acked.into_inner().unwrap().into_iter().collect();
    eprintln!("{report:?}; {during} transfers committed during the backup");
    assert!(during > 0, "no transfer committed while the backup ran: the test tested nothing");
    let live = read_all(&db).unwrap();
    assert_eq!(check_bank(&live), all);
    db.close().unwrap();

    let copy = Db::open_existing(t.join("copy")).unwrap();
    copy.check().unwrap();
    let got = read_all(&copy).unwrap();
    assert_eq!(report.entries, got.len() as u64);
    let markers = check_bank(&got);
    // Every transfer acknowledged before the backup began is in it, and only
    // committed ones are.
    assert!(markers.is_superset(&before), "the copy lacks transfers acknowledged before the backup");
    assert!(markers.is_subset(&all), "the copy holds a transfer that never committed");
    // Every other entry is the database's own (the filler never changes).
    for (k, v) in got.iter().filter(|(k, _)| k.starts_with(b"fill:")) {
        assert_eq!(live.get(k), Some(v), "filler {:?}", String::from_utf8_lossy(k));
    }
    let filler = |m: &Model| m.keys().filter(|k| k.starts_with(b"fill:")).count();
    assert_eq!(filler(&got), filler(&live));
    assert_eq!(got.len(), ACCOUNTS as usize + filler(&live) + markers.len(), "the copy holds unknown keys");
    copy.close().unwrap();
}

#[test]
fn an_expired_snapshot_fails_the_backup_and_leaves_nothing() {
    let t = Tmp::new("expired");
    // A cap that the first commit during the copy exceeds.
    let db = Db::open_path_with(t.join("live"), Options::default().snapshot_cap_bytes(64)).unwrap();
    setup(&db);
    let stop = AtomicBool::new(false);
    let (acked, started) = (Mutex::new(Vec::new()), AtomicU64::new(0));
    let dest = t.join("backups").join("copy");
    let r = std::thread::scope(|s| {
        s.spawn(|| writers(&db, 2, &stop, &acked, &started));
        while started.load(Ordering::Acquire) < 10 {
            std::thread::yield_now();
        }
        let r = db.backup(&dest);
        stop.store(true, Ordering::Release);
        r
    });
    match r {
        Err(e @ Error::SnapshotTooOld { cause: SnapshotTooOld::CapReached { .. } }) => assert!(e.is_retryable()),
        other => panic!("expected SnapshotTooOld, got {other:?}"),
    }
    // Neither the copy, nor its staging directory, nor the parent made for it.
    assert_eq!(names(&t.0), BTreeSet::from(["live".to_string()]));
    // The database goes on, and a quiet backup succeeds.
    check_bank(&read_all(&db).unwrap());
    db.backup(&dest).unwrap();
    db.close().unwrap();
    Db::open_existing(&dest).unwrap().close().unwrap();
}

#[test]
fn backup_refuses_a_destination_that_holds_anything() {
    let t = Tmp::new("refuse");
    let db = Db::open(t.join("live")).unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"k", b"v").unwrap();
    tx.commit().unwrap();
    // An existing database: refused, untouched.
    let other = Db::open(t.join("other")).unwrap();
    let mut tx = other.begin().unwrap();
    tx.put(b"mine", b"1").unwrap();
    tx.commit().unwrap();
    other.close().unwrap();
    let before = files(&t.join("other"));
    let e = db.backup(t.join("other")).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("already holds"), "{e}");
    assert_eq!(files(&t.join("other")), before);
    // Backing up onto itself is the same case.
    assert!(matches!(db.backup(t.join("live")), Err(Error::InvalidArgument(_))));
    // Inside its own directory, however written: refused, nothing created.
    let live_before = names(&t.join("live"));
    for inside in [t.join("live").join("sub"), t.join("live").join("a").join("b"), t.join("other/../live/sub")] {
        let e = db.backup(&inside).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("inside the database's own directory"),
            "{}: {e}",
            inside.display()
        );
    }
    assert_eq!(names(&t.join("live")), live_before);
    // A directory with anything in it, and a file: refused, untouched.
    std::fs::create_dir(t.join("notes")).unwrap();
    std::fs::write(t.join("notes").join("a.txt"), b"keep").unwrap();
    let e = db.backup(t.join("notes")).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("not empty"), "{e}");
    assert_eq!(files(&t.join("notes")), vec![("a.txt".to_string(), b"keep".to_vec())]);
    std::fs::write(t.join("file"), b"f").unwrap();
    assert!(matches!(db.backup(t.join("file")), Err(Error::InvalidArgument(_))));
    assert!(matches!(db.backup("/"), Err(Error::InvalidArgument(_))));
    assert_eq!(
        names(&t.0),
        ["file", "live", "notes", "other"].into_iter().map(String::from).collect::<BTreeSet<_>>(),
        "a refused backup created something"
    );
    // An empty directory is fine: it becomes the copy.
    std::fs::create_dir(t.join("empty")).unwrap();
    let r = db.backup(t.join("empty")).unwrap();
    assert_eq!((r.entries, r.bytes, r.transactions), (1, 2, 1));
    db.close().unwrap();
    let copy = Db::open_existing(t.join("empty")).unwrap();
    assert_eq!(read_all(&copy).unwrap().into_iter().collect::<Vec<_>>(), vec![(b"k".to_vec(), b"v".to_vec())]);
    copy.close().unwrap();
}

#[test]
fn backup_of_an_empty_database_is_an_empty_database() {
    let t = Tmp::new("empty-db");
    let db = Db::open_path_with(t.join("live"), Options::default().page_size(8192)).unwrap();
    let r = db.backup(t.join("copy")).unwrap();
    assert_eq!((r.entries, r.bytes, r.transactions), (0, 0, 0));
    db.close().unwrap();
    let copy = Db::open_existing(t.join("copy")).unwrap();
    assert!(read_all(&copy).unwrap().is_empty());
    copy.close().unwrap();
    // It kept the page size: the data file is a whole number of 8 KiB pages.
    assert_eq!(std::fs::metadata(t.join("copy").join(ariesdb::DATA_FILE)).unwrap().len() % 8192, 0);
}

#[test]
fn open_existing_refuses_what_is_not_a_database_and_creates_nothing() {
    let t = Tmp::new("existing");
    let missing = t.join("no-such-dir");
    let e = Db::open_existing(&missing).expect_err("no database there");
    assert!(
        matches!(&e, Error::NotFound { path, reason } if path == &missing.display().to_string()
        && reason.contains("does not exist")),
        "{e:?}"
    );
    assert!(e.to_string().contains("nothing was created"), "{e}");
    assert!(!missing.exists());
    // An empty directory: refused, and still empty (no LOCK file either).
    std::fs::create_dir(t.join("empty")).unwrap();
    let e = Db::open_existing_with(t.join("empty"), Options::default()).expect_err("no database there");
    assert!(matches!(&e, Error::NotFound { reason, .. } if reason.contains("data.db")), "{e:?}");
    assert!(names(&t.join("empty")).is_empty());
    // A file.
    std::fs::write(t.join("file"), b"x").unwrap();
    assert!(matches!(Db::open_existing(t.join("file")), Err(Error::NotFound { .. })));
    assert!(!e.is_retryable());
    // A database opens, with what it holds.
    let db = Db::open(t.join("db")).unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"k", b"v").unwrap();
    tx.commit().unwrap();
    // Open elsewhere: locked, as for Db::open.
    assert!(matches!(Db::open_existing(t.join("db")), Err(Error::Locked { .. })));
    db.close().unwrap();
    let db = Db::open_existing(t.join("db")).unwrap();
    assert_eq!(db.begin_read().unwrap().get(b"k").unwrap(), Some(b"v".to_vec()));
    db.close().unwrap();
}

/// Bytes of the files in a directory: (the data file, the log segments, all).
fn dir_bytes(dir: &Path) -> (u64, u64, u64) {
    let (mut data, mut log, mut all) = (0, 0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let (name, len) = (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len());
        if name == ariesdb::DATA_FILE {
            data += len;
        } else if name.starts_with("wal-") {
            log += len;
        }
        all += len;
    }
    (data, log, all)
}

#[test]
fn a_backup_is_compact_opens_with_nothing_to_recover_and_takes_writes() {
    let t = Tmp::new("compact");
    let db = Db::open(t.join("live")).unwrap();
    // About 2.5 MiB of entries: the copy logs more than that while it is
    // written, and a 16 MiB segment file would dwarf it.
    for chunk in 0..20u32 {
        let mut tx = db.begin().unwrap();
        for i in 0..1000u32 {
            tx.put(format!("key:{chunk:02}:{i:04}"), [b'a' + (i % 26) as u8; 120]).unwrap();
        }
        tx.commit().unwrap();
    }
    let expected = contents(&db);
    let report = db.backup(t.join("copy")).unwrap();
    db.close().unwrap();

    let copy_dir = t.join("copy");
    let (data, log, all) = dir_bytes(&copy_dir);
    eprintln!("{report:?}: data file {data} bytes, log {log} bytes, {all} bytes in all");
    assert!(log <= ariesdb::MIN_WAL_SEGMENT_BYTES, "the backup's log takes {log} bytes");
    assert!(all <= data + ariesdb::MIN_WAL_SEGMENT_BYTES, "the backup takes {all} bytes for a {data}-byte data file");
    assert!(all < 3 * report.bytes, "the backup takes {all} bytes for {} bytes of entries", report.bytes);

    // It opens with nothing to recover, and is the database.
    let copy = Db::open_existing(&copy_dir).unwrap();
    let r = copy.recovery_report();
    assert_eq!((r.redone, r.losers, r.winners, r.dirty_pages), (0, 0, 0, 0), "{r:?}");
    copy.check().unwrap();
    assert!(read_all(&copy).unwrap() == expected, "the copy differs from the database");
    // It takes writes: the short segment grows and the log goes on in new
    // segments (256 KiB each here), across a crash and a clean close.
    copy.close().unwrap();
    let opts = Options::default().wal_segment_bytes(256 << 10).background_writer(false);
    let copy = Db::open_existing_with(&copy_dir, opts.clone()).unwrap();
    let mut model = expected;
    for round in 0..3u32 {
        let mut tx = copy.begin().unwrap();
        for i in 0..2000u32 {
            let (k, v) = (format!("new:{round}:{i:04}").into_bytes(), vec![b'n'; 100]);
            tx.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        tx.commit().unwrap();
    }
    let segments = dir_bytes(&copy_dir).1;
    assert!(segments > 256 << 10, "the log did not grow past its first segment ({segments} bytes)");
    drop(copy); // no close: the next open recovers from the log
    let copy = Db::open_existing_with(&copy_dir, opts).unwrap();
    let r = copy.recovery_report();
    assert!(r.records_analyzed >= 6000 && r.redone > 0, "recovery read or redid too little: {r:?}");
    copy.check().unwrap();
    assert!(read_all(&copy).unwrap() == model, "writes to the copy were lost");
    copy.close().unwrap();
    // And with the default options.
    let copy = Db::open_existing(&copy_dir).unwrap();
    copy.transaction(|tx| tx.put("last", "entry")).unwrap();
    copy.close().unwrap();
    let copy = Db::open_existing(&copy_dir).unwrap();
    copy.check().unwrap();
    assert_eq!(copy.begin_read().unwrap().get("last").unwrap().as_deref(), Some(&b"entry"[..]));
    assert_eq!(read_all(&copy).unwrap().len(), model.len() + 1);
    copy.close().unwrap();
}

/// A simulated disk holding the files of `dir` (but `LOCK`), durably.
fn sim_from_dir(dir: &Path, seed: u64) -> std::sync::Arc<SimStorage> {
    let sim = std::sync::Arc::new(SimStorage::new(seed));
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name == "LOCK" {
            continue;
        }
        let f = sim.open(&name).unwrap();
        f.write_all_at(&std::fs::read(dir.join(&name)).unwrap(), 0).unwrap();
        f.sync_data().unwrap();
    }
    sim.sync_dir().unwrap();
    sim
}

#[test]
fn a_backups_short_log_segment_grows_safely_across_power_losses() {
    let t = Tmp::new("short-seg");
    let db = Db::open(t.join("live")).unwrap();
    db.transaction(|tx| (0..500u32).try_for_each(|i| tx.put(format!("old:{i:04}"), [b'o'; 60]))).unwrap();
    db.backup(t.join("copy")).unwrap();
    db.close().unwrap();
    let copy_dir = t.join("copy");
    let log = dir_bytes(&copy_dir).1;
    assert!(log < 4096, "the backup's log is not short ({log} bytes): the test would test nothing");
    let short_segment = names(&copy_dir).into_iter().find(|n| n.starts_with("wal-")).unwrap();

    // The copy on a simulated disk that tears unsynced writes: transactions of
    // 40 puts each, 64 KiB segments (the short one grows to 64 KiB, then the
    // log rolls), a power loss at each storage call in turn.
    let opts = Options::default().wal_segment_bytes(64 << 10).background_writer(false);
    let round_keys = |r: u32| (0..40u32).map(move |i| format!("new:{r:02}:{i:02}").into_bytes());
    let mut crash_at = 0u64;
    loop {
        let sim = sim_from_dir(&copy_dir, crash_at);
        sim.set_torn_writes(true);
        sim.inject(Fault::CrashAtOp(sim.op_count() + crash_at));
        let mut acked = 0u32;
        if let Ok(db) = Db::open_with(sim.clone(), opts.clone()) {
            for r in 0..20u32 {
                let done = db.transaction(|tx| round_keys(r).try_for_each(|k| tx.put(k, [b'n'; 100])));
                if done.is_err() {
                    break;
                }
                acked = r + 1;
            }
        }
        let crashed = sim.has_crashed();
        sim.clear_faults(); // the crash point may lie past the workload: not in this listing
        let segments: Vec<String> = match crashed {
            true => Vec::new(),
            false => sim.list().unwrap().into_iter().filter(|n| n.starts_with("wal-")).collect(),
        };
        sim.power_loss();
        let db = Db::open_with(sim.clone(), opts.clone())
            .unwrap_or_else(|e| panic!("crash at call {crash_at}: the reopen failed: {e}"));
        let got = read_all(&db).unwrap_or_else(|e| panic!("crash at call {crash_at}: {e}"));
        assert_eq!(got.keys().filter(|k| k.starts_with(b"old:")).count(), 500, "crash at call {crash_at}");
        for r in 0..20u32 {
            let present = round_keys(r).filter(|k| got.contains_key(k)).count();
            assert!(present == 0 || present == 40, "crash at call {crash_at}: transaction {r} is half there");
            assert!(r >= acked || present == 40, "crash at call {crash_at}: acknowledged transaction {r} lost");
        }
        db.close().unwrap();
        if !crashed {
            eprintln!("a power loss at each of {crash_at} storage calls; then the log was in {segments:?}");
            assert!(crash_at > 20, "the workload made only {crash_at} storage calls");
            assert!(
                segments.iter().any(|n| *n > short_segment),
                "the log never left the short segment {short_segment} ({segments:?}): the test tested little"
            );
            break;
        }
        crash_at += 1;
    }
}
