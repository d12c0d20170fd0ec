//! The first thing to run: opens a database in a local directory (default
//! `./ariesdb-data`, or the first argument), writes in transactions, rolls one
//! back, reads everything back, and prints what it did and what the last
//! open's recovery found.
//!
//! cargo run --release --example demo [DIR]

use ariesdb::{range, Db};

fn main() -> Result<(), ariesdb::Error> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "ariesdb-data".to_string());
    let db = Db::open(&dir)?;
    let r = db.recovery_report();
    println!(
        "opened {dir}: log ends at LSN {}, recovery redid {} changes and rolled back {} transactions",
        r.end_lsn, r.redone, r.losers
    );

    let mut tx = db.begin()?;
    let runs = tx.get(b"demo:runs")?.map(|v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8]))).unwrap_or(0) + 1;
    tx.put(b"demo:runs", runs.to_le_bytes())?;
    for i in 0..1000u32 {
        tx.put(format!("account:{i:04}").as_bytes(), format!("{}", 100 + i).as_bytes())?;
    }
    tx.commit()?;
    println!("committed 1001 puts (run number {runs})");

    let mut tx = db.begin()?;
    let sp = tx.savepoint()?;
    tx.delete(b"account:0007")?;
    tx.put(b"account:0008", b"0")?;
    tx.rollback_to(&sp)?;
    tx.put(b"demo:last-message", format!("hello from run {runs}").as_bytes())?;
    tx.commit()?;
    println!("rolled back a delete and an update to a savepoint, kept the rest");

    let mut tx = db.begin()?;
    let loser = tx.delete(b"account:0001")?;
    tx.abort()?;
    println!("aborted a transaction that deleted account:0001 (existed: {loser})");

    let tx = db.begin()?;
    let first: Vec<_> = tx.scan(range(b"account:0000", b"account:0003"))?.collect::<Result<_, _>>()?;
    for (k, v) in &first {
        println!("  {} = {}", String::from_utf8_lossy(k), String::from_utf8_lossy(v));
    }
    let total: u64 = tx
        .scan(range(b"account:", b"account;"))?
        .map(|r| r.map(|(_, v)| String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0)))
        .sum::<Result<u64, _>>()?;
    println!("1000 accounts hold {total} in total (expected {})", (0..1000u64).map(|i| 100 + i).sum::<u64>());
    tx.commit()?;

    let report = db.check_report()?;
    println!("integrity check passed: {} keys in {} leaves, tree height {}", report.keys, report.leaves, report.height);
    let s = db.stats();
    println!(
        "stats: {} commits, {} aborts, {} log fsyncs, {} pages written",
        s.commits, s.aborts, s.wal_syncs, s.pages_written
    );
    db.close()?;
    println!("closed cleanly; run again to reopen it");
    Ok(())
}
