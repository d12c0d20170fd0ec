//! The library logs through the `log` facade: recovery passes and the open
//! at info, checkpoints and log truncation at debug, the fail-stop cause and
//! background-writer errors at error. A capturing logger checks that the
//! lines come, with the counts of `Db::recovery_report`.
//!
//! The logger is process-wide, so this file has one test that runs the
//! scenarios one after another.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ariesdb::storage::{Fault, SimStorage};
use ariesdb::{Db, Durability, Error};
use common::*;
use log::{Level, LevelFilter, Log, Metadata, Record};

/// One captured log line.
#[derive(Debug, Clone)]
struct Line {
    level: Level,
    target: String,
    msg: String,
}

struct Capture(Mutex<Vec<Line>>);

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &Record<'_>) {
        let line = Line { level: r.level(), target: r.target().to_string(), msg: r.args().to_string() };
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static LOGGER: OnceLock<&'static Capture> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("no other logger in this test binary");
        log::set_max_level(LevelFilter::Trace);
        c
    })
}

/// The lines captured since the last call, from the library only.
fn take() -> Vec<Line> {
    std::mem::take(&mut *capture().0.lock().unwrap()).into_iter().filter(|l| l.target.starts_with("ariesdb")).collect()
}

/// The one line at `level` whose message contains `needle`.
fn one<'a>(lines: &'a [Line], level: Level, needle: &str) -> &'a Line {
    let found: Vec<&Line> = lines.iter().filter(|l| l.level == level && l.msg.contains(needle)).collect();
    assert_eq!(found.len(), 1, "exactly one {level} line with {needle:?} in {lines:#?}");
    found[0]
}

fn errors(lines: &[Line]) -> Vec<&Line> {
    lines.iter().filter(|l| l.level == Level::Error).collect()
}

fn put_many(db: &Db, from: u32, n: u32, len: usize) -> ariesdb::Txn {
    let mut tx = db.begin().unwrap();
    for i in from..from + n {
        tx.put(format!("key{i:07}").as_bytes(), vec![i as u8; len]).unwrap();
    }
    tx
}

/// A crash with a committed transaction and a loser whose pages were
/// stolen; the reopen logs each pass with the report's counts.
fn crash_and_recovery_log_each_pass() {
    let sim = Arc::new(SimStorage::new(7));
    // The classic three passes (instant restart: `instant_restart_logs_what_it_deferred`).
    let opts = small_opts().instant_restart(false);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let lines = take();
    one(&lines, Level::Info, "created a new database on the given storage");
    put_many(&db, 0, 400, 60).commit().unwrap();
    let loser = put_many(&db, 400, 300, 60);
    std::mem::forget(loser);
    drop(db);
    sim.power_loss();
    take();

    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let r = db.recovery_report();
    assert!(r.losers == 1 && r.redone > 0 && r.undone > 0, "recovery has work to show: {r:?}");
    let lines = take();
    let info = |needle: &str| one(&lines, Level::Info, needle).msg.clone();
    let analysis = info("recovery analysis done");
    let redo = info("recovery redo done");
    let undo = info("recovery undo done");
    let open = info("opened the database on the given storage after recovery from an unclean shutdown");
    info(&format!("recovery analysis: reading the log from the checkpoint at LSN {}", r.checkpoint_lsn));
    info(&format!("recovery redo: repeating history from LSN {} to LSN {}", r.redo_start_lsn, r.end_lsn));
    info("recovery undo: rolling back 1 losers");
    for (msg, parts) in [
        (
            &analysis,
            vec![
                format!("{}..{} ({} records", r.checkpoint_lsn, r.end_lsn, r.records_analyzed),
                format!("{} winners, {} losers, {} dirty pages", r.winners, r.losers, r.dirty_pages),
            ],
        ),
        (
            &redo,
            vec![
                format!("{} records applied, {} skipped", r.redone, r.skipped),
                format!("{} torn or never-written pages rebuilt", r.pages_rebuilt),
            ],
        ),
        (&undo, vec![format!("{} records undone", r.undone), format!("{} losers rolled back", r.losers)]),
        (&open, vec![format!("{} records redone, {} losers rolled back", r.redone, r.losers)]),
    ] {
        for p in parts {
            assert!(msg.contains(&p), "{msg:?} should say {p:?} ({r:?})");
        }
    }
    one(&lines, Level::Debug, "checkpoint (end of recovery)");
    assert!(errors(&lines).is_empty(), "{lines:#?}");

    // A clean close and a reopen: one info line each, the passes at debug.
    db.close().unwrap();
    let lines = take();
    one(&lines, Level::Info, "closed cleanly");
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    let lines = take();
    one(&lines, Level::Info, "opened the database on the given storage after a clean close");
    one(&lines, Level::Debug, "recovery redo: no dirty pages, nothing to redo");
    assert_eq!(lines.iter().filter(|l| l.level == Level::Info).count(), 1, "{lines:#?}");
    // A close with a transaction still open says it is left for the next
    // open, not that there is nothing to recover.
    let mut open_txn = db.begin().unwrap();
    open_txn.put(b"left open", b"v").unwrap();
    db.close().unwrap();
    let lines = take();
    one(&lines, Level::Info, "1 transaction(s) left open are rolled back at the next open");
    assert!(!lines.iter().any(|l| l.msg.contains("closed cleanly")), "{lines:#?}");
    drop(open_txn);
    let db = Db::open_with(sim, opts).unwrap();
    let _ = take();
    db.close().unwrap();
    take();
}

/// A page torn by a power loss is rebuilt from its image, with a warning
/// naming it; pages never written are rebuilt without one.
fn a_torn_page_is_a_warning() {
    let mut warned = 0;
    for seed in 0..10 {
        let sim = Arc::new(SimStorage::new(100 + seed));
        let opts = small_opts().buffer_pool_pages(24).instant_restart(false);
        let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
        put_many(&db, 0, 2400, 30).commit().unwrap();
        db.checkpoint().unwrap();
        // Written back by eviction, never synced: the power loss tears them.
        put_many(&db, 0, 2400, 31).commit().unwrap();
        drop(db);
        sim.power_loss();
        take();
        let db = Db::open_with(sim, opts).unwrap();
        let r = db.recovery_report();
        let lines = take();
        let torn: Vec<&Line> = lines.iter().filter(|l| l.level == Level::Warn).collect();
        assert!(torn.len() <= 1, "{lines:#?}");
        if let Some(w) = torn.first() {
            assert!(w.msg.starts_with("recovery redo: ") && w.msg.contains("torn pages"), "{w:?}");
            let n: u64 = w.msg["recovery redo: ".len()..].split(' ').next().unwrap().parse().unwrap();
            assert!(n > 0 && n <= r.pages_rebuilt, "{w:?} {r:?}");
            warned += 1;
        }
        db.close().unwrap();
        take();
    }
    assert!(warned > 0, "no seed tore a data page: the test lost its point");
}

/// A manual checkpoint logs at debug, and one that removes segments logs the
/// truncation.
fn checkpoints_and_truncation_at_debug() {
    let sim = Arc::new(SimStorage::new(8));
    let db = Db::open_with(sim, small_opts()).unwrap();
    put_many(&db, 0, 3000, 300).commit().unwrap();
    take();
    db.checkpoint().unwrap();
    db.checkpoint().unwrap();
    let lines = take();
    let ckpts: Vec<&Line> =
        lines.iter().filter(|l| l.level == Level::Debug && l.msg.starts_with("checkpoint (manual)")).collect();
    assert_eq!(ckpts.len(), 2, "{lines:#?}");
    assert!(ckpts.iter().all(|l| l.msg.contains("begin LSN") && l.msg.contains("dirty pages")), "{ckpts:#?}");
    let cuts: Vec<&Line> =
        lines.iter().filter(|l| l.level == Level::Debug && l.msg.starts_with("log truncated")).collect();
    assert!(!cuts.is_empty(), "{lines:#?}");
    assert!(cuts.iter().all(|l| l.msg.contains("segments removed") && l.msg.contains("bytes")), "{cuts:#?}");
    assert!(lines.iter().all(|l| l.level >= Level::Info), "no warning or error: {lines:#?}");
    db.close().unwrap();
    take();
}

/// A storage failure in a foreground call logs its cause once, at error;
/// the calls refused afterwards log nothing more.
fn a_storage_failure_logs_one_error() {
    let sim = Arc::new(SimStorage::new(9));
    let db = Db::open_with(sim.clone(), small_opts()).unwrap();
    let tx = put_many(&db, 0, 50, 40);
    take();
    sim.inject(Fault::IoErrorFromOp(sim.op_count()));
    assert!(tx.commit().is_err());
    assert!(matches!(db.checkpoint(), Err(Error::Failed { .. })));
    assert!(matches!(db.begin(), Err(Error::Failed { .. })));
    drop(db);
    let lines = take();
    let errs = errors(&lines);
    assert_eq!(errs.len(), 1, "{lines:#?}");
    assert!(errs[0].msg.contains("stopped") && errs[0].msg.contains("simulated"), "{:?}", errs[0]);
}

/// An error of the background writer is logged with what it was doing,
/// beside the one fail-stop line.
fn a_background_writer_error_is_logged() {
    let sim = Arc::new(SimStorage::new(10));
    let opts = small_opts().background_writer(true).durability(Durability::Eventual);
    let db = Db::open_with(sim.clone(), opts).unwrap();
    take();
    // An Eventual commit leaves its log for the writer's next tick to flush.
    put_many(&db, 0, 20, 40).commit().unwrap();
    sim.inject(Fault::IoErrorFromOp(sim.op_count()));
    let t = Instant::now();
    while db.begin().is_ok() {
        assert!(t.elapsed() < Duration::from_secs(10), "the background writer never hit the failure");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(db);
    let lines = take();
    let bg: Vec<&Line> = errors(&lines).into_iter().filter(|l| l.target.ends_with("background")).collect();
    assert_eq!(bg.len(), 1, "{lines:#?}");
    assert!(bg[0].msg.contains("flushing the log failed") && bg[0].msg.contains("simulated"), "{:?}", bg[0]);
    assert_eq!(errors(&lines).iter().filter(|l| l.msg.contains("stopped")).count(), 1, "{lines:#?}");
}

/// Instant restart: the open says how many pages' redo it deferred, and
/// the line when the last of them is redone says how.
fn instant_restart_logs_what_it_deferred() {
    let sim = Arc::new(SimStorage::new(8));
    let opts = small_opts().instant_restart(true);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    put_many(&db, 0, 600, 60).commit().unwrap();
    drop(db);
    sim.power_loss();
    take();
    let db = Db::open_with(sim.clone(), opts).unwrap();
    let r = db.recovery_report();
    assert!(r.redo_deferred_pages > 0, "{r:?}");
    let mut lines = take();
    one(&lines, Level::Info, &format!("recovery redo: instant restart, {} dirty pages", r.redo_deferred_pages));
    one(&lines, Level::Info, &format!("redo of {} pages deferred", r.redo_deferred_pages));
    db.close().unwrap();
    // The background pass may have finished before the first take: the
    // line comes once, before the close returns.
    lines.extend(take());
    let done = one(&lines, Level::Info, "recovery redo: every deferred page redone");
    assert!(done.msg.contains("at their first load"), "{done:?}");
    assert!(errors(&lines).is_empty(), "{lines:#?}");
}

/// Instant restart with a loser: the undo line says the loser is rolled
/// back in the background, in one readable sentence (no run of spaces
/// left by a line break in the source).
fn instant_restart_logs_the_background_undo() {
    let sim = Arc::new(SimStorage::new(9));
    let opts = small_opts().instant_restart(true);
    let db = Db::open_with(sim.clone(), opts.clone()).unwrap();
    put_many(&db, 0, 200, 60).commit().unwrap();
    let loser = put_many(&db, 0, 20, 70);
    db.sync().unwrap();
    sim.power_loss();
    drop(loser);
    drop(db);
    take();
    let db = Db::open_with(sim.clone(), opts).unwrap();
    assert_eq!(db.recovery_report().undo_deferred_losers, 1, "{:?}", db.recovery_report());
    let mut lines = take();
    let undo = one(&lines, Level::Info, "recovery undo: 1 losers are rolled back in the background");
    assert!(undo.msg.contains("their keys locked until then (0 escalated to a lock on every key)"), "{undo:?}");
    db.close().unwrap();
    // The background undo may have finished before the first take.
    lines.extend(take());
    one(&lines, Level::Info, "recovery undo: every loser rolled back");
    for l in &lines {
        assert!(!l.msg.contains("  "), "a run of spaces in {l:?}");
    }
    assert!(errors(&lines).is_empty(), "{lines:#?}");
}

#[test]
fn the_library_logs_recovery_checkpoints_and_failures() {
    capture();
    crash_and_recovery_log_each_pass();
    instant_restart_logs_what_it_deferred();
    instant_restart_logs_the_background_undo();
    checkpoints_and_truncation_at_debug();
    a_torn_page_is_a_warning();
    a_storage_failure_logs_one_error();
    a_background_writer_error_is_logged();
}
