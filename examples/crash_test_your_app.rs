//! How an application crash-tests itself on ariesdb's SimStorage: run your
//! own logic on the simulated disk, cut the power at a random storage call,
//! reopen, and check your application's invariants. Deterministic per seed,
//! so a failing seed reproduces exactly.
//!
//! cargo run --release --example crash_test_your_app [SEEDS]

use std::sync::Arc;

use ariesdb::storage::{Fault, SimStorage};
use ariesdb::{Db, Options};

/// The application: an inventory where moving stock between two bins must
/// never create or destroy items.
fn move_stock(db: &Db, from: u32, to: u32, qty: u64) -> ariesdb::Result<bool> {
    if from == to {
        return Ok(false);
    }
    let mut tx = db.begin()?;
    let key = |b: u32| format!("bin:{b:02}").into_bytes();
    let get = |v: Option<Vec<u8>>| v.map(|v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8]))).unwrap_or(0);
    let have = get(tx.get(key(from))?);
    if have < qty {
        tx.abort()?;
        return Ok(false);
    }
    let other = get(tx.get(key(to))?);
    tx.put(key(from), (have - qty).to_le_bytes())?;
    tx.put(key(to), (other + qty).to_le_bytes())?;
    tx.commit()?;
    Ok(true)
}

fn total(db: &Db) -> ariesdb::Result<u64> {
    let tx = db.begin()?;
    let mut sum = 0;
    for item in tx.scan(ariesdb::range(b"bin:", b"bin;"))? {
        let (_, v) = item?;
        sum += u64::from_le_bytes(v.try_into().unwrap_or([0; 8]));
    }
    tx.commit()?;
    Ok(sum)
}

fn main() {
    let seeds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let opts = Options::default().buffer_pool_pages(24).background_writer(false);
    for seed in 0..seeds {
        let sim = Arc::new(SimStorage::new(seed));
        let db = Db::open_with(sim.clone(), opts.clone()).expect("open");
        let mut tx = db.begin().unwrap();
        for b in 0..20u32 {
            tx.put(format!("bin:{b:02}").as_bytes(), 100u64.to_le_bytes()).unwrap();
        }
        tx.commit().unwrap();
        // Cut the power at a storage call chosen by the seed.
        sim.inject(Fault::CrashAtOp(sim.op_count() + seed * 7 % 300));
        let mut x = seed | 1;
        for _ in 0..200 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            if move_stock(&db, (x >> 33) as u32 % 20, (x >> 40) as u32 % 20, (x >> 50) % 30).is_err() {
                break; // the simulated machine died
            }
        }
        drop(db);
        sim.power_loss();
        let db = Db::open_with(sim, opts.clone()).expect("recovery");
        db.check().expect("integrity");
        let t = total(&db).expect("read");
        assert_eq!(t, 2000, "seed {seed}: stock was created or destroyed (reproduce: this example with seed {seed})");
    }
    println!("{seeds} seeds: every power loss recovered with the stock intact");
}
