//! A database of format version 1 (whose tree may hold pages far below the
//! fill bounds, and inner pages with one child) opens with this version: the
//! open reshapes the tree once, `check()` then passes, every key is there,
//! the next open finds version 2 and reshapes nothing; a crash at any storage
//! call of the upgrading open recovers to the same keys.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ariesdb::storage::{Fault, SimStorage, Storage};
use ariesdb::{Db, Options};
use common::*;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-tall-tree")
}

fn expected() -> Model {
    let mut m = Model::new();
    for i in 0..30u32 {
        let mut k = format!("{i:04}").into_bytes();
        k.resize(1024, b'x');
        m.insert(k, format!("value {i}").into_bytes());
    }
    for t in 580..600u32 {
        m.insert(format!("q{t:08}").into_bytes(), vec![1u8; 200]);
    }
    m
}

fn opts() -> Options {
    Options::default().background_writer(false).wal_segment_bytes(64 << 10)
}

#[test]
fn a_version_1_database_is_reshaped_once_at_open() {
    let dir = std::env::temp_dir().join(format!("ariesdb-upgrade-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(fixture()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "db" || x == "log") {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let db = Db::open_path_with(&dir, opts()).unwrap();
    let report = db.recovery_report();
    assert!(report.shape_repairs > 0, "{report:?}");
    let shape = db.check_report().unwrap();
    assert!(shape.height <= 3, "{shape:?}");
    assert!(read_all(&db).unwrap() == expected());
    let mut tx = db.begin().unwrap();
    tx.put(b"after the upgrade", b"yes").unwrap();
    tx.commit().unwrap();
    db.compact().unwrap();
    db.close().unwrap();
    let db = Db::open_path_with(&dir, opts()).unwrap();
    assert_eq!(db.recovery_report().shape_repairs, 0, "the upgrade is recorded");
    let mut want = expected();
    want.insert(b"after the upgrade".to_vec(), b"yes".to_vec());
    assert!(read_all(&db).unwrap() == want);
    db.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The fixture's files, written into a simulated disk and made durable.
fn sim_with_fixture(seed: u64) -> Arc<SimStorage> {
    let sim = new_sim(seed);
    for e in std::fs::read_dir(fixture()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "db" || x == "log") {
            let f = sim.open(p.file_name().unwrap().to_str().unwrap()).unwrap();
            f.write_all_at(&std::fs::read(&p).unwrap(), 0).unwrap();
            f.sync_data().unwrap();
        }
    }
    sim.sync_dir().unwrap();
    sim
}

#[test]
fn crash_at_every_storage_call_of_an_upgrade() {
    let sim = sim_with_fixture(21);
    let base = sim.op_count();
    let db = Db::open_with(sim.clone(), opts()).unwrap();
    assert!(db.recovery_report().shape_repairs > 0);
    let calls = sim.op_count() - base;
    drop(db);
    let step = std::env::var("ARIESDB_SHAPE_CRASH_STEP").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    for n in (0..calls).step_by(step) {
        let sim = sim_with_fixture(21);
        sim.inject(Fault::CrashAtOp(sim.op_count() + n));
        if let Ok(db) = Db::open_with(sim.clone(), opts()) {
            drop(db);
        }
        sim.power_loss();
        sim.clear_faults();
        let db = Db::open_with(sim.clone(), opts()).unwrap_or_else(|e| panic!("crash at call {n} of {calls}: {e}"));
        let got = read_all(&db).unwrap_or_else(|e| panic!("crash at call {n} of {calls}: {e}"));
        assert!(got == expected(), "crash at call {n} of {calls}: {} keys", got.len());
        db.close().unwrap();
    }
    eprintln!("crashed at each of {calls} storage calls of an upgrading open; every recovery matched");
}
