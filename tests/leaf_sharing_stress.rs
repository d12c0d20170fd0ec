//! Stress for leaf sharing (`shift_to_sibling`) and patch-logged
//! structure changes: random puts, deletes, aborts and savepoint rollbacks
//! over long shared-prefix keys and mixed value sizes, at several page
//! sizes, with `check()` and a model comparison after every transaction,
//! then a reopen from the log alone (power loss) compared again.

mod common;

use ariesdb::{Db, Durability, Options};
use common::*;
use rand::rngs::StdRng;
use rand::Rng;

fn random_key(r: &mut StdRng) -> Vec<u8> {
    match r.gen_range(0..4) {
        0 => format!("s{:05}", r.gen_range(0..3000)).into_bytes(),
        1 => {
            let mut k = vec![b'p'; r.gen_range(200..1000)];
            k.extend(format!("{:04}", r.gen_range(0..400)).bytes());
            k
        }
        2 => {
            let mut k = vec![b'q'; 1000];
            k.extend(format!("{:04}", r.gen_range(0..200)).bytes());
            k.truncate(1024);
            k
        }
        _ => format!("t{:04}{}", r.gen_range(0..2000), "x".repeat(r.gen_range(0..60))).into_bytes(),
    }
}

fn random_value(r: &mut StdRng, page_size: usize) -> Vec<u8> {
    let len = match r.gen_range(0..10) {
        0..=5 => r.gen_range(0..200),
        6..=8 => r.gen_range(200..page_size / 3),
        _ => r.gen_range(page_size / 3..3 * page_size),
    };
    let b: u8 = r.gen();
    (0..len).map(|i| b.wrapping_add(i as u8)).collect()
}

/// The command that runs one seed again.
fn reproduce(seed: u64) -> String {
    format!("reproduce: ARIESDB_SEED_START={seed} ARIESDB_SEEDS=1 cargo test --test leaf_sharing_stress")
}

fn run(seed: u64, page_size: usize, txns: usize) {
    run_with(seed, page_size, txns, 64, 256 << 10);
    run_with(seed, page_size, txns, 4096, 0);
}

fn run_with(seed: u64, page_size: usize, txns: usize, pool: usize, ckpt: u64) {
    let sim = new_sim(seed);
    let mut r = rng(seed);
    let opts = Options::default()
        .page_size(page_size)
        .buffer_pool_pages(pool)
        .background_writer(false)
        .durability(Durability::Immediate)
        .checkpoint_interval_bytes(ckpt);
    let mut model = Model::new();
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    for t in 0..txns {
        let ctx = format!("seed {seed} page {page_size} txn {t} ({})", reproduce(seed));
        let mut tx = db.begin().unwrap();
        let mut pending = model.clone();
        let mut sp = None;
        let mut at_sp = None;
        for _ in 0..r.gen_range(1..40) {
            let k = random_key(&mut r);
            if r.gen_bool(0.7) {
                let v = random_value(&mut r, page_size);
                tx.put(&k, &v).unwrap_or_else(|e| panic!("{ctx}: put: {e}"));
                pending.insert(k, v);
            } else {
                tx.delete(&k).unwrap_or_else(|e| panic!("{ctx}: delete: {e}"));
                pending.remove(&k);
            }
            if sp.is_none() && r.gen_bool(0.05) {
                sp = Some(tx.savepoint().unwrap());
                at_sp = Some(pending.clone());
            }
        }
        if let (Some(s), true) = (&sp, r.gen_bool(0.5)) {
            tx.rollback_to(s).unwrap_or_else(|e| panic!("{ctx}: rollback_to: {e}"));
            pending = at_sp.take().unwrap();
        }
        if r.gen_bool(0.2) {
            tx.abort().unwrap_or_else(|e| panic!("{ctx}: abort: {e}"));
        } else {
            tx.commit().unwrap_or_else(|e| panic!("{ctx}: commit: {e}"));
            model = pending;
        }
        let got = read_all(&db).unwrap_or_else(|e| panic!("{ctx}: check/scan: {e}"));
        assert!(got == model, "{ctx}: tree differs from the model");
    }
    drop(db);
    sim.power_loss();
    let ctx = format!("seed {seed} page {page_size} ({})", reproduce(seed));
    let db = Db::open_with(sim.clone(), opts).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    let got = read_all(&db).unwrap_or_else(|e| panic!("{ctx}: after reopen: {e}"));
    assert!(got == model, "{ctx}: after reopen the tree differs from the model");
}

#[test]
fn share_stress_4k() {
    for seed in seed_start()..seed_start() + seed_count(6) {
        run(seed, 4096, 300);
    }
}

#[test]
fn share_stress_8k_32k() {
    for seed in seed_start()..seed_start() + seed_count(3) {
        run(seed, 8192, 200);
        run(seed, 32768, 120);
    }
}

/// Crash at a random storage call of the common workload with a pool large
/// enough that siblings are often dirty (so leaves share), checkpoints on,
/// then recover (instant restart or not) and compare with the oracle.
#[test]
fn share_crash_cycles() {
    use ariesdb::storage::Fault;
    for seed in seed_start()..seed_start() + seed_count(150) {
        for page_size in [4096usize, 8192] {
            let sim = new_sim(seed);
            let mut r = rng(seed);
            let base = Options::default()
                .page_size(page_size)
                .buffer_pool_pages(200)
                .background_writer(false)
                .checkpoint_interval_bytes(128 << 10)
                .wal_segment_bytes(256 << 10);
            let mut outcome = Outcome { model: Model::new(), in_doubt: Vec::new(), history: vec![Model::new()] };
            for round in 0..4 {
                let ctx = format!("seed {seed} page {page_size} round {round} ({})", reproduce(seed));
                let opts = base.clone().instant_restart(r.gen_bool(0.5));
                let db = Db::open_with(sim.clone(), opts).unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
                let model = verify(&db, &outcome, &ctx);
                let at = sim.op_count() + r.gen_range(1..4000);
                sim.inject(Fault::CrashAtOp(at));
                outcome = run_workload(&db, &mut r, model, 40);
                drop(db);
                sim.power_loss();
                sim.clear_faults();
            }
        }
    }
}
