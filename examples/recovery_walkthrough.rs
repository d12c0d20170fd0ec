//! Leaves a small crashed database on real files for the worked recovery
//! example of docs/design.md (section 8): a committed transaction, a
//! checkpoint, a page written back after it, a loser that rolled back to a
//! savepoint (one CLR), a winner whose commit made the loser's records durable
//! too, and then the process dies without closing or dropping its `Db`.
//!
//! cargo run --release --example recovery_walkthrough -- DIR           (DIR new or empty)
//! ariesdb waldump DIR; ariesdb stats DIR
//! cargo run --release --example recovery_walkthrough -- --reopen DIR  (runs recovery, prints its report)

use std::time::{Duration, Instant};

use ariesdb::{Db, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match &args[..] {
        [flag, dir] if flag == "--reopen" => reopen(dir),
        [dir] if !dir.starts_with('-') => crash(dir),
        _ => Err("usage: recovery_walkthrough DIR (a new or empty directory) | --reopen DIR".into()),
    }
}

/// Open the crashed database (restart recovery runs), print what recovery
/// did and what the database holds, and close it.
fn reopen(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::open_existing(dir)?;
    println!("{:#?}", db.recovery_report());
    for entry in db.begin_read()?.scan(..)? {
        let (k, v) = entry?;
        println!("{} = {}", String::from_utf8_lossy(&k), String::from_utf8_lossy(&v));
    }
    db.close()?;
    Ok(())
}

/// Build the crashed database in `dir`.
fn crash(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    if std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(format!("{dir} is not empty").into());
    }
    // Checkpoints only when asked; the background writer stays on: it writes
    // back pages that were dirty before the last checkpoint began.
    let db = Db::open_path_with(dir, Options::default().checkpoint_interval_bytes(0))?;
    // The pages a new database starts with were dirty before the checkpoint
    // that ends the open: let them be written back first, so that the first
    // change of the leaf below logs a full image of it.
    wait_for_write_back(&db, 0)?;

    let mut first = db.begin()?;
    first.put("alice", "100")?;
    first.put("bob", "50")?;
    let first_id = first.id();
    first.commit()?;
    println!("transaction {first_id} committed alice=100 bob=50");

    // The leaf the first transaction changed was dirty before that checkpoint
    // began: the background writer writes it back within a tick or two
    // (perhaps while the checkpoint is still being taken, so count from
    // before it).
    let before = db.stats().pages_written;
    db.checkpoint()?;
    let n = wait_for_write_back(&db, before)?;
    println!("checkpoint taken; {n} page(s) written back since");

    let mut loser = db.begin()?;
    loser.put("carol", "30")?;
    let sp = loser.savepoint()?;
    loser.put("dave", "20")?;
    loser.rollback_to(&sp)?; // one CLR
    loser.put("alice", "0")?;
    println!("transaction {} (never committed) put carol, rolled dave back, set alice=0", loser.id());

    let mut winner = db.begin()?;
    winner.put("bob", "80")?;
    let winner_id = winner.id();
    winner.commit()?; // flushes the log through its commit record: the loser's records too
    println!("transaction {winner_id} committed bob=80");

    // Die as a killed process would: no close, no drop (a drop would flush
    // the log), the loser still open.
    println!("exiting without closing: recovery is pending in {dir}");
    std::mem::forget(loser);
    std::mem::forget(db);
    std::process::exit(0);
}

/// Wait until the background writer has written back more than `before`
/// pages in all (it writes, every 20 ms, the pages that were dirty before the
/// last checkpoint began); returns how many it wrote past `before`.
fn wait_for_write_back(db: &Db, before: u64) -> Result<u64, Box<dyn std::error::Error>> {
    let start = Instant::now();
    while db.stats().pages_written == before {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("the background writer wrote no page in 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50)); // the rest of its batch
    Ok(db.stats().pages_written - before)
}
