//! Real processes: a child process writes to a database on real files and
//! prints every commit it has acknowledged; the parent kills it with SIGKILL at
//! a random moment, reopens the database (recovery), and checks that every
//! acknowledged commit is there and that every transaction is all or nothing.
//! The child is this test binary, re-run with ARIESDB_CHILD_DIR set.
//! More rounds: `ARIESDB_KILL_ROUNDS=100 cargo test --release --test process_kill`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ariesdb::{Db, Options};

const CHILD_ENV: &str = "ARIESDB_CHILD_DIR";

/// The child's workload: transaction n writes keys n:0..n:5 with value n,
/// and, every third one, deletes the keys of transaction n-2. Prints "acked n"
/// after each commit returns.
fn child(dir: &str) {
    let db = Db::open_path_with(dir, Options::default().buffer_pool_pages(24).checkpoint_interval_bytes(256 << 10))
        .expect("child open");
    let start: u64 = {
        let tx = db.begin().unwrap();
        let n = tx.get(b"next").unwrap().map(|v| u64::from_le_bytes(v.try_into().unwrap())).unwrap_or(0);
        tx.commit().unwrap();
        n
    };
    for n in start.. {
        let mut tx = db.begin().unwrap();
        for i in 0..5 {
            tx.put(format!("{n:08}:{i}").as_bytes(), vec![n as u8; 50 + i * 40]).unwrap();
        }
        if n % 3 == 0 && n >= 2 {
            for i in 0..5 {
                tx.delete(format!("{:08}:{i}", n - 2).as_bytes()).unwrap();
            }
        }
        tx.put(b"next", (n + 1).to_le_bytes()).unwrap();
        tx.commit().unwrap();
        println!("acked {n}");
    }
}

fn rounds() -> u64 {
    std::env::var("ARIESDB_KILL_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let dir = std::env::temp_dir().join(format!("ariesdb-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut seed = 0x9E37_79B9u64 ^ std::process::id() as u64;
    let mut last_acked: Option<u64> = None;
    for round in 0..rounds() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "sigkill_at_random_moments_loses_nothing_acknowledged",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let run_for = Duration::from_millis(50 + seed % 400);
        let out = BufReader::new(child.stdout.take().unwrap());
        let started = Instant::now();
        let mut lines = out.lines();
        while started.elapsed() < run_for {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(n) = l.strip_prefix("acked ") {
                        last_acked = Some(n.trim().parse().unwrap());
                    }
                }
                _ => break,
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        // Lines printed before the kill were acknowledged too.
        for l in lines.map_while(Result::ok) {
            if let Some(n) = l.strip_prefix("acked ") {
                last_acked = Some(n.trim().parse().unwrap());
            }
        }
        let db = Db::open(&dir).unwrap_or_else(|e| panic!("round {round}: recovery failed: {e}"));
        db.check().unwrap_or_else(|e| panic!("round {round}: check failed: {e}"));
        let tx = db.begin().unwrap();
        let next = tx.get(b"next").unwrap().map(|v| u64::from_le_bytes(v.try_into().unwrap())).unwrap_or(0);
        if let Some(a) = last_acked {
            assert!(next > a, "round {round}: commit {a} was acknowledged but the database only has {next} commits");
        }
        // Every transaction below `next` is whole: its keys are all there, or all deleted by n+2.
        for n in next.saturating_sub(30)..next {
            let present = (0..5).filter(|i| tx.get(format!("{n:08}:{i}").as_bytes()).unwrap().is_some()).count();
            let deleted_later = (n + 2) % 3 == 0 && n + 2 < next;
            let expect = if deleted_later { 0 } else { 5 };
            assert_eq!(present, expect, "round {round}: transaction {n} is partly there");
        }
        for i in 0..5 {
            assert!(tx.get(format!("{next:08}:{i}").as_bytes()).unwrap().is_none(), "uncommitted work visible");
        }
        tx.commit().unwrap();
        drop(db);
    }
    assert!(last_acked.is_some_and(|a| a > 0), "the child never acknowledged a commit");
    eprintln!("{} rounds, {} commits acknowledged in all", rounds(), last_acked.unwrap() + 1);
    let _ = std::fs::remove_dir_all(&dir);
}
