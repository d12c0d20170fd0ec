//! Steal at work: loads 20,000 keys with 100-byte values in random order on
//! real files, with a small and a default buffer pool, in small transactions
//! and in one large one, and prints what the buffer pool and the log did:
//! evictions, pages written, log fsyncs, and the evictions that had to wait
//! for the log to become durable before writing their victim (the write-ahead
//! rule; `Stats::eviction_log_waits`).
//!
//! cargo run --release --example steal_stats [DIR]    (default: a temporary directory)

use ariesdb::storage::FsStorage;
use ariesdb::{Db, Options};
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ariesdb-steal-stats-{}", std::process::id())));
    const KEYS: u32 = 20_000;
    for (pool, per_txn) in [(24usize, 100u32), (24, KEYS), (256, 100), (256, KEYS)] {
        let dir = base.join(format!("pool{pool}-txn{per_txn}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let storage = Arc::new(FsStorage::new(&dir)?);
        let db = Db::open_with(storage, Options::default().buffer_pool_pages(pool))?;
        let mut i = 0;
        while i < KEYS {
            let mut tx = db.begin()?;
            for j in i..(i + per_txn).min(KEYS) {
                // A fixed permutation: keys arrive in random order, so leaves split everywhere.
                let key = format!("key{:010}", j.wrapping_mul(2_654_435_761));
                tx.put(key.as_bytes(), [7u8; 100])?;
            }
            tx.commit()?;
            i += per_txn;
        }
        let s = db.stats();
        println!(
            "pool {pool:3} pages, {per_txn:5} keys per transaction: {} evictions, {} waited for the log; \
             {} pages written, {} log fsyncs",
            s.evictions, s.eviction_log_waits, s.pages_written, s.wal_syncs
        );
        db.check()?;
        db.close()?;
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::remove_dir(&base).ok();
    Ok(())
}
