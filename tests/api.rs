//! The public API: limits, bad arguments, locking of the directory, fail-stop
//! after an I/O error, and damage reported as corruption.

mod common;

use std::sync::Arc;

use ariesdb::storage::{Fault, SimStorage, Storage};
use ariesdb::{range, Db, Durability, Error, Options, MAX_KEY_LEN, MAX_VALUE_LEN};
use common::*;

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ariesdb-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn basic_use_on_real_files() {
    let dir = tmp_dir("basic");
    {
        let db = Db::open(&dir).unwrap();
        let mut tx = db.begin().unwrap();
        tx.put(b"a", b"1").unwrap();
        tx.put(b"b", b"2").unwrap();
        tx.put(b"c", b"3").unwrap();
        assert_eq!(tx.get(b"b").unwrap(), Some(b"2".to_vec()));
        assert!(tx.delete(b"c").unwrap());
        assert!(!tx.delete(b"zz").unwrap());
        tx.commit().unwrap();
        // A second opener of the same directory gets a clear error.
        match Db::open(&dir) {
            Err(Error::Locked { .. }) => {}
            other => panic!("second open: {:?}", other.map(|_| ())),
        }
        db.close().unwrap();
    }
    let db = Db::open(&dir).unwrap();
    let tx = db.begin().unwrap();
    let got: Vec<_> = tx.scan(range(b"a", b"z")).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(got, vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
    drop(tx);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn limits_and_bad_arguments() {
    let db = Db::open_with(new_sim(1), small_opts()).unwrap();
    let mut tx = db.begin().unwrap();
    assert!(matches!(tx.put(b"", b"x"), Err(Error::InvalidArgument(_))));
    let long_key = vec![1u8; MAX_KEY_LEN + 1];
    assert!(matches!(tx.put(&long_key, b"x"), Err(Error::TooLarge { what: "key", .. })));
    assert!(matches!(tx.get(&long_key), Err(Error::TooLarge { .. })));
    let big = vec![0u8; MAX_VALUE_LEN + 1];
    assert!(matches!(tx.put(b"k", &big), Err(Error::TooLarge { what: "value", .. })));
    // The largest key and a large value work.
    let max_key = vec![7u8; MAX_KEY_LEN];
    tx.put(&max_key, vec![3u8; 1 << 20]).unwrap();
    assert_eq!(tx.get(&max_key).unwrap().unwrap().len(), 1 << 20);
    tx.commit().unwrap();
    db.check().unwrap();
    for bad in [
        Options::default().page_size(1000),
        Options::default().page_size(2048),
        Options::default().buffer_pool_pages(2),
    ] {
        assert!(matches!(Db::open_with(new_sim(2), bad.clone()), Err(Error::InvalidArgument(_))));
        // A regular file where the directory should be: the error names it.
        let file = tmp_dir("a-file");
        std::fs::write(&file, b"not a database").unwrap();
        match Db::open(&file) {
            Err(Error::InvalidArgument(msg)) => assert!(msg.contains("is not a directory"), "{msg}"),
            other => panic!("open of a file: {:?}", other.map(|_| ())),
        }
        std::fs::remove_file(&file).unwrap();
        // On real files, a refused open creates nothing, not even the directory.
        let dir = tmp_dir("refused-options");
        assert!(matches!(Db::open_path_with(&dir, bad), Err(Error::InvalidArgument(_))));
        assert!(!dir.exists(), "a refused open created {}", dir.display());
    }
}

fn refusal(opts: Options) -> String {
    match Db::open_with(new_sim(30), opts) {
        Err(Error::InvalidArgument(msg)) => msg,
        Err(e) => panic!("expected InvalidArgument, got {e}"),
        Ok(_) => panic!("expected a refusal, the open succeeded"),
    }
}

#[test]
fn log_segments_below_the_minimum_are_refused() {
    for bytes in [0, 4096, 8192, ariesdb::MIN_WAL_SEGMENT_BYTES - 8] {
        let msg = refusal(Options::default().wal_segment_bytes(bytes));
        assert!(msg.contains("wal_segment_bytes") && msg.contains("64 KiB"), "{msg}");
        assert!(msg.contains("fsync"), "the message says why: {msg}");
    }
    let msg = refusal(Options::default().wal_segment_bytes(ariesdb::MAX_WAL_SEGMENT_BYTES + 1));
    assert!(msg.contains("wal_segment_bytes"), "{msg}");
    let db = Db::open_with(new_sim(31), Options::default().wal_segment_bytes(ariesdb::MIN_WAL_SEGMENT_BYTES)).unwrap();
    db.close().unwrap();
}

#[test]
fn page_sizes_and_checkpoint_intervals_that_make_no_sense_are_refused() {
    for size in [0, 1000, 2048, 65536] {
        let msg = refusal(Options::default().page_size(size));
        assert!(msg.contains("page_size") && msg.contains("4096 to 32768"), "{msg}");
    }
    for bytes in [1, 100, ariesdb::MIN_WAL_SEGMENT_BYTES - 1] {
        let msg = refusal(Options::default().checkpoint_interval_bytes(bytes));
        assert!(msg.contains("checkpoint_interval_bytes") && msg.contains("64 KiB"), "{msg}");
    }
    let o = Options::default().checkpoint_interval_bytes(ariesdb::MIN_WAL_SEGMENT_BYTES).page_size(8192);
    Db::open_with(new_sim(33), o).unwrap().close().unwrap();
}

#[test]
fn a_pool_smaller_than_one_operation_pins_is_refused() {
    for pages in [0, 1, 8, 16, ariesdb::MIN_BUFFER_POOL_PAGES - 1] {
        let msg = refusal(Options::default().buffer_pool_pages(pages));
        assert!(msg.contains("buffer_pool_pages") && msg.contains("24"), "{msg}");
        assert!(msg.contains("tree change"), "the message says why: {msg}");
    }
    let db = Db::open_with(new_sim(32), Options::default().buffer_pool_pages(ariesdb::MIN_BUFFER_POOL_PAGES)).unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..2000u32 {
        tx.put(format!("k{i:05}").as_bytes(), [1u8; 300]).unwrap();
    }
    tx.commit().unwrap();
    db.check().unwrap();
    db.close().unwrap();
}

#[test]
fn ended_transactions_refuse_work() {
    let db = Db::open_with(new_sim(3), small_opts()).unwrap();
    let mut a = db.begin().unwrap();
    a.put(b"x", b"1").unwrap();
    let mut b = db.begin().unwrap();
    b.put(b"y", b"1").unwrap();
    b.abort().unwrap();
    a.commit().unwrap();
    let c = db.begin().unwrap();
    assert_eq!(c.get(b"x").unwrap(), Some(b"1".to_vec()));
    assert_eq!(c.get(b"y").unwrap(), None);
}

#[test]
fn failed_sync_is_fail_stop_and_reopen_recovers() {
    let sim = new_sim(4);
    let opts = small_opts();
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"before", b"1").unwrap();
    tx.commit().unwrap();
    sim.inject(Fault::SyncFailsFromOp(sim.op_count()));
    let mut tx = db.begin().unwrap();
    tx.put(b"doomed", b"2").unwrap();
    assert!(tx.commit().is_err(), "a commit whose fsync failed must not succeed");
    // Every later call fails.
    assert!(matches!(db.begin(), Err(Error::Failed { .. })));
    assert!(db.checkpoint().is_err());
    drop(db);
    sim.clear_faults();
    sim.power_loss();
    let db = Db::open_with(sim, opts).unwrap();
    let all = read_all(&db).unwrap();
    assert_eq!(all.get(&b"before"[..]), Some(&b"1".to_vec()));
}

#[test]
fn drop_without_close_after_storage_failure_does_not_panic() {
    let sim = new_sim(5);
    let db = Db::open_with(sim.clone(), small_opts().background_writer(true)).unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"k", b"v").unwrap();
    sim.inject(Fault::CrashAtOp(sim.op_count()));
    let _ = tx.commit();
    drop(db);
    sim.power_loss();
    Db::open_with(sim, small_opts()).unwrap();
}

fn build(sim: &Arc<SimStorage>) {
    let db = Db::open_with(sim.clone(), small_opts()).unwrap();
    for t in 0..20u32 {
        let mut tx = db.begin().unwrap();
        for i in 0..30u32 {
            tx.put(format!("k{t:03}{i:03}").as_bytes(), [t as u8; 40]).unwrap();
        }
        tx.commit().unwrap();
    }
    drop(db);
}

#[test]
fn flipped_bit_in_the_durable_log_is_corruption() {
    for offset in [100u64, 5000, 20_000] {
        let sim = new_sim(6);
        build(&sim);
        let seg = sim.list().unwrap().into_iter().find(|n| n.starts_with("wal-")).unwrap();
        sim.flip_bit(&seg, offset, 3).unwrap();
        sim.power_loss();
        match Db::open_with(sim.clone(), small_opts()) {
            Err(Error::Corruption { .. }) => {}
            Err(e) => panic!("offset {offset}: expected corruption, got {e}"),
            Ok(db) => {
                // Only acceptable if the flip hit bytes recovery never reads
                // (before the checkpoint); then the data must still be right.
                assert_eq!(read_all(&db).unwrap().len(), 600, "offset {offset}: a damaged log lost commits silently");
            }
        }
    }
}

#[test]
fn damaged_data_page_is_corruption_not_garbage() {
    let sim = new_sim(7);
    build(&sim);
    let db = Db::open_with(sim.clone(), small_opts()).unwrap();
    db.close().unwrap();
    // After a clean close nothing is in the redo range: damage to a page is
    // caught by its checksum.
    sim.flip_bit(ariesdb::DATA_FILE, 2 * 4096 + 700, 1).unwrap();
    sim.power_loss();
    let r = Db::open_with(sim.clone(), small_opts()).and_then(|db| read_all(&db).map(|_| ()));
    assert!(matches!(r, Err(Error::Corruption { .. })), "{r:?}");
}

#[test]
fn missing_data_file_with_a_log_is_corruption() {
    let sim = new_sim(8);
    build(&sim);
    sim.remove(ariesdb::DATA_FILE).unwrap();
    sim.sync_dir().unwrap();
    assert!(matches!(Db::open_with(sim, small_opts()), Err(Error::Corruption { .. })));
}

#[test]
fn eventual_commits_are_durable_after_close() {
    let sim = new_sim(9);
    let opts = small_opts().durability(Durability::Eventual);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"k", b"v").unwrap();
    tx.commit().unwrap();
    db.close().unwrap();
    sim.power_loss();
    let db = Db::open_with(sim, opts).unwrap();
    assert_eq!(read_all(&db).unwrap().len(), 1);
}

#[test]
fn missing_middle_log_segment_is_corruption() {
    let sim = new_sim(10);
    let opts = small_opts().wal_segment_bytes(ariesdb::MIN_WAL_SEGMENT_BYTES);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    for t in 0..40u32 {
        let mut tx = db.begin().unwrap();
        for i in 0..10u32 {
            tx.put(format!("k{t:03}{i:03}").as_bytes(), [t as u8; 1000]).unwrap();
        }
        tx.commit().unwrap();
    }
    drop(db);
    let segs: Vec<String> = sim.list().unwrap().into_iter().filter(|n| n.starts_with("wal-")).collect();
    assert!(segs.len() >= 4, "{segs:?}");
    sim.remove(&segs[segs.len() / 2]).unwrap();
    sim.sync_dir().unwrap();
    sim.power_loss();
    assert!(matches!(Db::open_with(sim, opts), Err(Error::Corruption { .. })));
}

#[test]
fn db_is_send_and_sync_txn_is_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Db>();
    send_sync::<Arc<Db>>();
    send::<ariesdb::Txn>();
    send_sync::<ariesdb::Savepoint>();
    send_sync::<Error>();
    send_sync::<SimStorage>();
    send_sync::<ariesdb::storage::FsStorage>();
}

#[test]
fn persistent_io_errors_are_fail_stop_and_reopen_recovers() {
    for delay in [0u64, 3, 10, 40] {
        let sim = new_sim(20 + delay);
        let db = Db::open_with(sim.clone(), small_opts()).unwrap();
        let mut acked = Vec::new();
        sim.inject(Fault::IoErrorFromOp(sim.op_count() + delay));
        for t in 0..50u32 {
            let r = (|| {
                let mut tx = db.begin()?;
                tx.put(format!("t{t:03}").as_bytes(), [t as u8; 500])?;
                tx.commit()
            })();
            match r {
                Ok(()) => acked.push(t),
                Err(_) => break,
            }
        }
        assert!(acked.len() < 50, "the I/O errors never surfaced");
        assert!(matches!(db.begin(), Err(Error::Failed { .. })));
        drop(db);
        sim.clear_faults();
        sim.power_loss();
        let db = Db::open_with(sim, small_opts()).unwrap();
        let all = read_all(&db).unwrap();
        for t in acked {
            assert!(all.contains_key(format!("t{t:03}").as_bytes()), "delay {delay}: acknowledged commit {t} lost");
        }
    }
}

#[test]
fn an_escalated_writer_blocks_others_until_it_ends() {
    let db = Db::open_with(new_sim(40), small_opts().lock_escalation_keys(100)).unwrap();
    let mut a = db.begin().unwrap();
    for i in 0..150u32 {
        a.put(format!("a{i:04}").as_bytes(), b"1").unwrap();
    }
    let s = db.stats();
    assert_eq!((s.lock_escalations, s.locked_keys), (1, 0), "{s:?}");
    std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let mut b = db.begin().unwrap();
            b.put(b"zzz", b"2").unwrap();
            b.commit().unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!h.is_finished(), "a write must wait for the escalated writer");
        a.commit().unwrap();
        h.join().unwrap();
    });
    assert_eq!(read_all(&db).unwrap().len(), 151);
}

#[test]
fn an_escalated_reader_lets_readers_in_and_keeps_writers_out() {
    let db = Db::open_with(new_sim(41), small_opts().lock_escalation_keys(100)).unwrap();
    let mut w = db.begin().unwrap();
    for i in 0..150u32 {
        w.put(format!("k{i:04}").as_bytes(), b"1").unwrap();
    }
    w.commit().unwrap();
    let r = db.begin().unwrap();
    let n = r.scan(..).unwrap().count();
    assert_eq!(n, 150);
    r.get(b"k0001").unwrap();
    assert_eq!(db.stats().lock_escalations, 2, "{:?}", db.stats());
    let r2 = db.begin().unwrap();
    assert_eq!(r2.get(b"k0002").unwrap(), Some(b"1".to_vec()));
    r2.commit().unwrap();
    std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let mut b = db.begin().unwrap();
            b.put(b"k0003", b"2").unwrap();
            b.commit().unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!h.is_finished(), "a write must wait for the escalated reader");
        r.commit().unwrap();
        h.join().unwrap();
    });
}

/// `Txn::scan_rev` and `Snapshot::scan_rev`: descending order over a tree of
/// several levels, every kind of bound, a transaction's own uncommitted
/// writes, and empty or inverted ranges.
#[test]
fn reverse_scans_return_descending_keys_within_their_bounds() {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let db = Db::open_with(new_sim(21), small_opts()).unwrap();
    let mut tx = db.begin().unwrap();
    let keys: Vec<Vec<u8>> = (0..3000u32).map(|i| format!("key{:05}", i * 2).into_bytes()).collect();
    for k in &keys {
        tx.put(k, [7; 40]).unwrap();
    }
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(b"key00001", b"own").unwrap();
    tx.delete(b"key00004").unwrap();
    let mut model: Vec<Vec<u8>> = keys.clone();
    model.push(b"key00001".to_vec());
    model.retain(|k| k != b"key00004");
    model.sort();
    let (a, b) = (b"key00100".as_slice(), b"key03001".as_slice());
    type Range<'a> = (std::ops::Bound<&'a [u8]>, std::ops::Bound<&'a [u8]>);
    let cases: Vec<Range> = vec![
        (Unbounded, Unbounded),
        (Included(a), Excluded(b)),
        (Excluded(a), Included(b)),
        (Included(b"key00000"), Included(b"key00004")),
        (Unbounded, Excluded(b"key00000")),
        (Included(b"zzz"), Unbounded),
        (Included(b), Excluded(a)),
    ];
    for (lo, hi) in cases {
        let want: Vec<Vec<u8>> =
            model.iter().filter(|k| std::ops::RangeBounds::contains(&(lo, hi), k.as_slice())).rev().cloned().collect();
        let got: Vec<Vec<u8>> = tx.scan_rev((lo, hi)).unwrap().map(|x| x.unwrap().0).collect();
        assert!(got == want, "txn {lo:?}..{hi:?}: {} keys, want {}", got.len(), want.len());
    }
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    let got: Vec<Vec<u8>> = snap.scan_rev(..).unwrap().map(|x| x.unwrap().0).collect();
    assert!(got.iter().eq(model.iter().rev()), "snapshot: {} keys", got.len());
}

/// Every handle a user holds prints something useful with `{:?}`.
#[test]
fn public_handles_implement_debug() {
    let db = Db::open_with(new_sim(5), Options::default()).unwrap();
    let shown = format!("{db:?}");
    assert!(
        shown.starts_with("Db {") && shown.contains("page_size: 4096") && shown.contains("stopped: false"),
        "{shown}"
    );
    let mut tx = db.begin().unwrap();
    tx.put(b"k", b"v").unwrap();
    let shown = format!("{tx:?}");
    assert!(shown.starts_with("Txn {") && shown.contains("ended: false"), "{shown}");
    let shown = format!("{:?}", tx.scan(..).unwrap());
    assert!(shown.starts_with("Scan {") && shown.contains("reverse: false"), "{shown}");
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert!(format!("{snap:?}").starts_with("Snapshot {"));
    assert!(format!("{:?}", snap.scan_rev(..).unwrap()).contains("reverse: true"));
    assert!(format!("{:?}", db.stats()).starts_with("Stats {"));
    assert!(format!("{:?}", db.recovery_report()).starts_with("RecoveryReport {"));
}
