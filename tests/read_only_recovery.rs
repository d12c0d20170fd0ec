//! `Db::open_read_only` of a database that lost power under the torn-page
//! rule of write-back (docs/design.md, section 7): pages written back since
//! the last checkpoint's data sync were imaged first (or defined anew by a
//! record flushed before them), and the power loss tore some of them. The
//! read-only open must rebuild them from the log in memory, show exactly the
//! committed state, write nothing to the directory, and recover just as the
//! classic recovery of a normal open of the same files does.
//!
//! The crash is built on `SimStorage` (deterministic per seed), and its
//! files are then copied to a real directory, since `open_read_only` opens
//! a directory.
//!
//! More seeds: `ARIESDB_SEEDS=200 cargo test --release --test read_only_recovery`.
//! One seed:  `ARIESDB_SEED_START=17 ARIESDB_SEEDS=1 cargo test --release --test read_only_recovery`.

mod common;

use std::path::Path;
use std::sync::Arc;

use ariesdb::storage::{Fault, SimStorage, Storage};
use ariesdb::{Db, Options, RecoveryReport, MIN_BUFFER_POOL_PAGES};
use common::*;
use rand::Rng;

/// Write the files of `sim` (as a read sees them now) into a new directory.
fn sim_to_dir(sim: &SimStorage, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for name in sim.list().unwrap() {
        std::fs::write(dir.join(&name), sim.file_contents(&name).unwrap()).unwrap();
    }
}

/// Everything a snapshot of `db` sees.
fn scan_all(db: &Db) -> Model {
    let snap = db.begin_read().unwrap();
    snap.scan::<std::ops::RangeFull>(..).unwrap().map(|r| r.unwrap()).collect()
}

/// A recovery report without its timings.
fn untimed(mut r: RecoveryReport) -> RecoveryReport {
    (r.analysis_us, r.redo_us, r.undo_us) = (0, 0, 0);
    r
}

/// `got` is the committed state: the acknowledged commits, plus all or
/// nothing of each commit in flight at the crash.
fn is_committed_state(got: &Model, outcome: &Outcome) -> bool {
    let mut with = outcome.model.clone();
    if *got == with {
        return true;
    }
    outcome.in_doubt.iter().any(|p| {
        apply(&mut with, p);
        *got == with
    })
}

/// The work before the crash, on a small pool (so that evictions write pages
/// back between checkpoints, each imaged first once a checkpoint has passed
/// its last image), with checkpoints in the middle: a large tree committed
/// and checkpointed, then rewritten in part, then the seeded workload of
/// `common` (transactions left open, savepoints, aborts, checkpoints) with a
/// power loss at a random storage call. Returns the disk after the power
/// loss and what was committed.
fn crash(seed: u64, page_size: usize) -> (Arc<SimStorage>, Outcome) {
    let sim = new_sim(seed);
    let mut rng = rng(seed);
    let opts = small_opts().page_size(page_size);
    let db = Db::open_with(sim.clone(), opts).unwrap();
    let mut model = Model::new();
    let fill = |db: &Db, model: &mut Model, rng: &mut rand::rngs::StdRng, round: u8| {
        let mut tx = db.begin().unwrap();
        for i in 0..1500u32 {
            if round > 0 && rng.gen_bool(0.5) {
                continue;
            }
            let k = format!("bulk{i:05}").into_bytes();
            let v = vec![round.wrapping_mul(31).wrapping_add(i as u8); 60 + (i as usize * 7) % 200];
            tx.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        tx.commit().unwrap();
    };
    fill(&db, &mut model, &mut rng, 0);
    db.checkpoint().unwrap();
    // Armed from here: the crash may land in the rewrite's write-backs, in a
    // checkpoint's batches of images, or in the workload.
    let at = sim.op_count() + rng.gen_range(1..4000);
    sim.inject(Fault::CrashAtOp(at));
    let mut outcome = Outcome { model: model.clone(), in_doubt: Vec::new(), history: vec![model.clone()] };
    let rewritten = (|| {
        for round in 1..=2u8 {
            let mut pending = Pending::new();
            let mut tx = db.begin()?;
            for i in 0..1500u32 {
                if rng.gen_bool(0.6) {
                    continue;
                }
                let k = format!("bulk{i:05}").into_bytes();
                let v = vec![round.wrapping_mul(31).wrapping_add(i as u8); 60 + (i as usize * 13) % 300];
                tx.put(&k, &v)?;
                pending.insert(k, Some(v));
            }
            if let Err(e) = tx.commit() {
                outcome.in_doubt.push(pending);
                return Err(e);
            }
            apply(&mut outcome.model, &pending);
            outcome.history.push(outcome.model.clone());
            db.checkpoint()?;
        }
        Ok::<(), ariesdb::Error>(())
    })();
    if rewritten.is_ok() {
        outcome = run_workload(&db, &mut rng, outcome.model, 30);
    }
    // A loser with changes stolen by evictions (if the crash has not hit yet).
    let loser = db.begin().ok().map(|mut tx| {
        for i in (0..1500u32).step_by(7) {
            if tx.put(format!("bulk{i:05}"), [0xEE; 250]).is_err() {
                break;
            }
        }
        tx
    });
    drop(db);
    drop(loser);
    sim.clear_faults();
    sim.power_loss();
    (sim, outcome)
}

/// One seed: crash, open read-only (with a pool of `ro_pool` pages), check
/// the state, the directory and a backup of the read-only `Db`, then open
/// the same files normally with the classic recovery and compare.
/// Returns the pages rebuilt from the log and the pages the read-only open
/// wrote (into memory).
fn one_seed(seed: u64) -> (u64, u64) {
    let mut rng = rng(seed ^ 0xA11CE);
    let page_size = [4096, 8192, 16384][(seed % 3) as usize];
    let ro_pool = [MIN_BUFFER_POOL_PAGES, MIN_BUFFER_POOL_PAGES, 64, 1024][rng.gen_range(0..4)];
    let (sim, outcome) = crash(seed, page_size);
    // Half the seeds: a normal open first, cut by another power loss part way
    // (in its redo batches, which write pages back imaged, in its undo, or
    // in its checkpoint), so that the read-only open finds recovery's own
    // writes and images too.
    let interrupted = rng.gen_bool(0.5);
    if interrupted {
        sim.inject(Fault::CrashAtOp(sim.op_count() + rng.gen_range(0..600)));
        let opts = small_opts().page_size(page_size).instant_restart(rng.gen_bool(0.5));
        drop(Db::open_with(sim.clone(), opts));
        sim.clear_faults();
        sim.power_loss();
    }
    let ctx = format!("seed {seed} (page size {page_size}, read-only pool {ro_pool}, interrupted open {interrupted})");
    let dir = tmp_dir("ro-recovery", &format!("seed{seed}"));
    sim_to_dir(&sim, &dir);
    let before = dir_state(&dir);

    let ro = Db::open_read_only_with(&dir, Options::default().buffer_pool_pages(ro_pool))
        .unwrap_or_else(|e| panic!("{ctx}: the read-only open failed: {e}"));
    let report = ro.recovery_report();
    let got = scan_all(&ro);
    assert!(
        is_committed_state(&got, &outcome),
        "{ctx}: the read-only open shows {} keys, not the committed state ({} keys, {} in doubt); {report:?}",
        got.len(),
        outcome.model.len(),
        outcome.in_doubt.len()
    );
    ro.check().unwrap_or_else(|e| panic!("{ctx}: check of the read-only Db: {e}"));
    let at_open = ro.stats();
    // Read everything again, key by key in a shuffled order and by scans: on
    // a small pool, pages recovery wrote into the overlay (redo's batches,
    // evictions during undo, the open's checkpoint) are read back from it.
    let mut keys: Vec<&Vec<u8>> = got.keys().collect();
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.gen_range(0..=i));
    }
    let snap = ro.begin_read().unwrap();
    for k in keys.iter().take(2000) {
        assert_eq!(snap.get(k).unwrap().as_ref(), got.get(*k), "{ctx}: key {:?}", String::from_utf8_lossy(k));
    }
    drop(snap);
    assert_eq!(scan_all(&ro), got, "{ctx}: a second scan of the read-only Db differs");
    ro.check().unwrap_or_else(|e| panic!("{ctx}: second check of the read-only Db: {e}"));
    if std::env::var("ARIESDB_VERBOSE").is_ok() {
        eprintln!(
            "{ctx}: {} pages rebuilt; the open wrote {} pages, {} images, into memory",
            report.pages_rebuilt, at_open.pages_written, at_open.full_page_images
        );
    }
    // A backup of the read-only Db: the recovered state, as a database.
    if seed.is_multiple_of(3) {
        let copy = tmp_dir("ro-recovery", &format!("seed{seed}-backup"));
        let b = ro.backup(&copy).unwrap_or_else(|e| panic!("{ctx}: backup of the read-only Db: {e}"));
        assert_eq!(b.entries, got.len() as u64, "{ctx}");
        let copy_db = Db::open_existing(&copy).unwrap();
        copy_db.check().unwrap();
        assert_eq!(scan_all(&copy_db), got, "{ctx}: the backup of the read-only Db differs from it");
        copy_db.close().unwrap();
        std::fs::remove_dir_all(&copy).unwrap();
    }
    ro.close().unwrap();
    assert_eq!(dir_state(&dir), before, "{ctx}: the read-only open, its reads, check, backup or close wrote");
    std::fs::remove_dir_all(&dir).unwrap();

    // The classic recovery of a normal open of the same files does the same.
    let opts = small_opts().page_size(page_size).buffer_pool_pages(ro_pool).instant_restart(false);
    let db = Db::open_with(sim, opts).unwrap_or_else(|e| panic!("{ctx}: the normal open failed: {e}"));
    assert_eq!(untimed(db.recovery_report()), untimed(report.clone()), "{ctx}: the normal recovery differs");
    assert_eq!(read_all(&db).unwrap(), got, "{ctx}: the normal open shows another state than the read-only one");
    db.close().unwrap();
    (report.pages_rebuilt, at_open.pages_written)
}

#[test]
fn read_only_open_after_a_power_loss_under_write_back_images() {
    let (start, count) = (seed_start(), seed_count(12));
    let (mut rebuilt, mut written) = (0, 0);
    for seed in start..start + count {
        let r = std::panic::catch_unwind(|| one_seed(seed));
        match r {
            Ok((r, i)) => {
                rebuilt += r;
                written += i;
            }
            Err(e) => {
                eprintln!(
                    "read_only_recovery failed at seed {seed}; reproduce with:\n  ARIESDB_SEED_START={seed} \
                     ARIESDB_SEEDS=1 cargo test --release --test read_only_recovery"
                );
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!(
        "seeds {start}..{}: {rebuilt} pages rebuilt from the log, {written} pages written into memory by the opens",
        start + count
    );
    if count >= 12 {
        assert!(rebuilt > 0, "no seed tore a page written back: the test lost its point");
        assert!(written > 0, "no read-only open wrote a page into memory: the test lost its point");
    }
}
