//! File descriptors stay bounded whatever the log's length: an open
//! transaction holds thousands of log segments (checkpoints cannot remove a
//! segment it still needs), and both the running `Db` and a reopen (restart
//! recovery over all of them) work under a low descriptor limit.
//!
//! The limited run is a child process: this test binary re-run with
//! ARIESDB_FD_CHILD_DIR set, which lowers RLIMIT_NOFILE with `setrlimit`
//! before opening anything.

use std::process::Command;

use ariesdb::{Db, Durability, Options};

const CHILD_ENV: &str = "ARIESDB_FD_CHILD_DIR";
/// Segments the open transaction must hold.
const SEGMENTS: usize = 2000;
/// The child's descriptor limit: far below the segment count.
const FD_LIMIT: u64 = 64;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn segments_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("wal-")))
        .count()
}

fn opts() -> Options {
    Options::default().wal_segment_bytes(64 << 10).checkpoint_interval_bytes(1 << 20).durability(Durability::Eventual)
}

/// Fill the log with `SEGMENTS` segments held by one open transaction, then
/// drop everything and reopen. Returns (descriptors before open, peak while
/// the log grew, after the reopen).
fn workload(dir: &std::path::Path) -> (usize, usize, usize) {
    let _ = std::fs::remove_dir_all(dir);
    let before = open_fds();
    let mut peak = before;
    {
        let db = Db::open_path_with(dir, opts()).unwrap();
        let mut holder = db.begin().unwrap();
        holder.put(b"held", b"by an open transaction").unwrap();
        let value = vec![7u8; 1500];
        let mut i = 0u64;
        while segments_in(dir) < SEGMENTS {
            for _ in 0..200 {
                let mut tx = db.begin().unwrap();
                tx.put(format!("k{:04}", i % 500).as_bytes(), &value).unwrap();
                tx.commit().unwrap();
                i += 1;
            }
            peak = peak.max(open_fds());
        }
        assert!(db.stats().checkpoints > 10, "{:?}", db.stats());
        // The Db goes first: the transaction, still open, is a loser whose
        // first record is thousands of segments back.
        drop(db);
        drop(holder);
    }
    assert!(segments_in(dir) >= SEGMENTS);
    let db = Db::open_path_with(dir, opts()).unwrap();
    assert_eq!(db.recovery_report().losers, 1);
    let after = open_fds();
    peak = peak.max(after);
    let tx = db.begin().unwrap();
    assert_eq!(tx.get(b"held").unwrap(), None, "the open transaction was a loser");
    assert!(tx.get(b"k0000").unwrap().is_some());
    tx.commit().unwrap();
    db.close().unwrap();
    (before, peak, after)
}

#[test]
fn descriptors_stay_bounded_with_thousands_of_segments() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ariesdb-fds-{}", std::process::id()));
    let (before, peak, after) = workload(&dir);
    eprintln!(
        "descriptors: {before} before open, peak {peak} while {SEGMENTS} segments were held, {after} after reopen"
    );
    assert!(peak <= before + 16, "descriptors grew from {before} to {peak}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reopen_with_thousands_of_segments_under_a_low_descriptor_limit() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let lim = libc::rlimit { rlim_cur: FD_LIMIT, rlim_max: FD_LIMIT };
        // SAFETY: setrlimit with a valid pointer to an initialized rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        let (before, peak, after) = workload(std::path::Path::new(&dir));
        println!("child ok: descriptors {before} before, peak {peak}, {after} after reopen");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ariesdb-fds-child-{}", std::process::id()));
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "reopen_with_thousands_of_segments_under_a_low_descriptor_limit", "--nocapture"])
        .env(CHILD_ENV, &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("child ok"),
        "child under RLIMIT_NOFILE={FD_LIMIT} failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{}", stdout.lines().find(|l| l.contains("child ok")).unwrap_or(""));
    let _ = std::fs::remove_dir_all(&dir);
}
