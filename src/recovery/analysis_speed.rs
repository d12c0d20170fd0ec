//! Not a test: times analysis over an existing database's log, read-only,
//! to measure recovery speed on a realistic log (say the crashed database
//! that the benchmark runner's `w8-writer` leaves):
//! `ARIESDB_ANALYSIS_DIR=DIR cargo test --release --lib recovery::analysis_speed::analysis_speed -- --ignored --nocapture`
//! (`ARIESDB_ANALYSIS_RUNS`: how many times, 5 unless set). Prints each
//! run's time and the median, for analysis and for the bare scan (records
//! as views, then decoded).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{analysis, DATA_FILE};
use crate::page::{Master, MASTER_COPY_LEN};
use crate::storage::{read_full_at, FsStorage, Storage};
use crate::wal::reader::{scan, scan_views};
use crate::wal::segments::Segments;
use crate::wal::LSN_START;

#[test]
#[ignore = "a timing, not a check: needs a database directory in ARIESDB_ANALYSIS_DIR; run: ARIESDB_ANALYSIS_DIR=DIR/db cargo test --release --lib recovery::analysis_speed::analysis_speed -- --ignored --nocapture (docs/testing.md)"]
fn analysis_speed() {
    let Ok(dir) = std::env::var("ARIESDB_ANALYSIS_DIR") else {
        println!("ARIESDB_ANALYSIS_DIR is not set: nothing to time");
        return;
    };
    let runs: usize = std::env::var("ARIESDB_ANALYSIS_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::open_read_only(&dir).unwrap());
    let segments = Segments::discover(storage.clone()).unwrap();
    let mut head = [0u8; 2 * MASTER_COPY_LEN];
    read_full_at(&*storage.open(DATA_FILE).unwrap(), &mut head, 0).unwrap();
    let master = Master::pick(&head).unwrap().expect("a master record");
    let from = if master.checkpoint_lsn.is_none() { LSN_START } else { master.checkpoint_lsn };
    // Run `f` `runs` times, printing each run's time and what `f` says, then the median.
    let time_runs = |what: &str, f: &dyn Fn() -> String| {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let said = f();
                let took = t.elapsed();
                println!("{what}: {took:?} ({said})");
                took
            })
            .collect();
        times.sort();
        println!("{what}, median of {runs}: {:?}", times[times.len() / 2]);
    };
    time_runs("analysis", &|| {
        let a = analysis(&segments, from, master.durable_lsn, None).unwrap();
        format!(
            "{} records, {} bytes, {} active, {} dirty pages, {}",
            a.end.records,
            a.end.bytes,
            a.active_txns.len(),
            a.dirty_pages.len(),
            a.end.how
        )
    });
    time_runs("bare scan, views", &|| {
        let end = scan_views(&segments, from, master.durable_lsn, None, |_| Ok(())).unwrap();
        format!("{} records", end.records)
    });
    time_runs("bare scan, decoded", &|| {
        let end = scan(&segments, from, master.durable_lsn, None, |_| Ok(())).unwrap();
        format!("{} records", end.records)
    });
}
