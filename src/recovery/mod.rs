//! Restart recovery, in three passes (ARIES):
//!
//! 1. Analysis, from the begin record of the checkpoint the master record names
//!    to the end of the log: rebuild the transaction table (`active_txns`) and
//!    the dirty page table (`dirty_pages`, page -> rec_lsn), and find where the
//!    log ends (a torn tail is cut; damage is an error, see `wal::reader`).
//! 2. Redo, from the smallest rec_lsn, repeating history: a page change is
//!    applied only where the page is in the dirty page table, the record is at
//!    or after its rec_lsn, and `page_lsn < lsn` (`redo_part`, THE pageLSN
//!    TEST). A torn page is rebuilt from the first full image or init of it.
//! 3. Undo of every loser together in one backward sweep, always taking the
//!    largest LSN still to undo, with CLRs (`txn::undo_step`); then END records.
//!    With instant restart, redo waits for each page's first load
//!    (`PendingRedo`) and undo runs in the background after the open
//!    (`undo::prepare_background_undo` lists what each loser will change).
//!
//! Recovery writes no master record until its closing checkpoint, so a crash
//! during recovery leads to the same recovery again, which finds the CLRs of
//! the first attempt and never undoes anything twice.
//!
//! Files: the passes (`analysis.rs`, `redo.rs`, `undo.rs`), the driver that
//! runs them at open (`driver.rs`), the master record's I/O (`master.rs`) and
//! the checkpointer (`checkpoint.rs`).
//!
//! Logging (the `log` facade): each pass when it starts and ends, at info when
//! recovery has work (a crash, or transactions left open at a clean close),
//! at debug otherwise; during redo and undo a progress line at most every
//! `PROGRESS_INTERVAL` (`Progress`); checkpoints and truncation at debug.

mod analysis;
#[cfg(test)]
mod analysis_speed;
mod checkpoint;
mod driver;
mod master;
mod pending;
mod redo;
mod undo;

use std::time::{Duration, Instant};

use crate::types::Lsn;

pub use analysis::{analysis, Analysis};
pub use checkpoint::{Checkpointer, Reason as CheckpointReason, Sources};
pub use driver::{recover, OpenParams, Start, DATA_FILE};
pub use pending::PendingRedo;
pub use redo::redo;
pub use undo::{undo, Loser};

/// What the last open did (see `Db::recovery_report`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Begin LSN of the checkpoint recovery started from (0: none). An LSN
    /// is a byte position in the log stream.
    pub checkpoint_lsn: u64,
    /// First LSN redo looked at.
    pub redo_start_lsn: u64,
    /// End of the log found: the LSN where appending continues.
    pub end_lsn: u64,
    /// Log records read by analysis.
    pub records_analyzed: u64,
    /// Committed transactions that only needed an END record.
    pub winners: u64,
    /// Transactions rolled back.
    pub losers: u64,
    /// Entries of the dirty page table after analysis.
    pub dirty_pages: u64,
    /// Page changes redone.
    pub redone: u64,
    /// Page changes redo passed over: the page was not in the dirty page
    /// table or the record is older than its `rec_lsn`, the page already
    /// had the change (`page_lsn` at or past the record's LSN), or the page
    /// was torn and a later record rebuilds it.
    pub skipped: u64,
    /// Torn or never-written pages rebuilt from a full image or init.
    pub pages_rebuilt: u64,
    /// Undo steps: records of losers the backward sweep took, each an
    /// Update undone with a CLR, or a CLR whose `undo_next_lsn` it followed
    /// (after an instant restart, growing while the background undo runs).
    pub undone: u64,
    /// Pages reshaped when a file of an older format version was upgraded
    /// (`BTree::repair_shape`); 0 otherwise.
    pub shape_repairs: u64,
    /// Time spent in each pass, in microseconds.
    pub analysis_us: u64,
    /// Redo time (with instant restart: the time to list what each page
    /// owes; the redo itself comes later).
    pub redo_us: u64,
    /// Instant restart (`Options::instant_restart`): the dirty pages whose
    /// redo was left to their first load or to the background pass when the
    /// open returned (0: redo ran before the open returned).
    pub redo_deferred_pages: u64,
    /// Of those, the pages redone so far at their first load by a reader, a
    /// writer or the engine (undo of the losers at the open included).
    pub pages_redone_on_demand: u64,
    /// Of those, the pages redone so far by the background pass. (A page
    /// freed or reallocated before anyone read it is fully defined anew
    /// without its redo, and counted in neither.)
    pub pages_redone_in_background: u64,
    /// Time from the end of analysis until the last deferred page was
    /// redone, in microseconds (0 while some still owe redo, or when none
    /// was deferred).
    pub deferred_redo_us: u64,
    /// Undo time (with instant restart: the time to list what each loser
    /// changed; the rollback itself comes later).
    pub undo_us: u64,
    /// Instant restart: the losers left to the background undo when the
    /// open returned (0: every loser was rolled back before it returned).
    /// Until each is rolled back, the keys it changed stay locked and
    /// snapshots see their values from before it.
    pub undo_deferred_losers: u64,
    /// Of those, the losers rolled back so far by the background thread
    /// (the others by `close`).
    pub losers_rolled_back_in_background: u64,
    /// Time from the open's listing of the losers until the last of them
    /// was rolled back, in microseconds (0 while some are left, or when
    /// none was deferred).
    pub deferred_undo_us: u64,
}

/// Time since `t` in microseconds.
pub fn micros(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

/// Microseconds as milliseconds, for log lines.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The least time between two progress lines of a recovery pass.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// Records (or undo steps) between two looks at the clock.
const PROGRESS_EVERY: u64 = 4096;

/// Progress lines for a long pass: `tick` is called once per record; it
/// counts, looks at the clock only every `PROGRESS_EVERY` calls, and logs a
/// line (info) when `interval` has passed since the pass began or since the
/// last line. A pass shorter than the interval logs none.
pub(crate) struct Progress {
    pass: &'static str,
    goal: Lsn,
    interval: Duration,
    calls: u64,
    last: Instant,
}

impl Progress {
    /// Progress of `pass`, which works towards LSN `goal` (forward for redo,
    /// backward for undo).
    pub(crate) fn new(pass: &'static str, goal: Lsn) -> Progress {
        Progress::with_interval(pass, goal, PROGRESS_INTERVAL)
    }

    fn with_interval(pass: &'static str, goal: Lsn, interval: Duration) -> Progress {
        Progress { pass, goal, interval, calls: 0, last: Instant::now() }
    }

    /// One more record: the pass is at LSN `at`, with `done` of `total` bytes
    /// of log behind it. Returns true if it logged a line.
    #[inline]
    pub(crate) fn tick(&mut self, at: Lsn, done: u64, total: u64) -> bool {
        self.calls += 1;
        if !self.calls.is_multiple_of(PROGRESS_EVERY) || self.last.elapsed() < self.interval {
            return false;
        }
        self.last = Instant::now();
        let pct = if total == 0 { 100.0 } else { done.min(total) as f64 * 100.0 / total as f64 };
        log::info!(
            "recovery {}: at LSN {at}, {pct:.0}% of the way to LSN {} ({} records so far)",
            self.pass,
            self.goal,
            self.calls
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_looks_at_the_clock_every_4096_records_and_logs_at_most_once_per_interval() {
        let mut p = Progress::with_interval("redo", Lsn(1 << 20), Duration::ZERO);
        let lines = (0..3 * PROGRESS_EVERY).filter(|&i| p.tick(Lsn(i), i, 3 * PROGRESS_EVERY)).count();
        assert_eq!(lines, 3, "a line every 4096 records when the interval has passed");
        let mut p = Progress::new("undo", Lsn(1));
        let lines = (0..3 * PROGRESS_EVERY).filter(|&i| p.tick(Lsn(i), i, 3 * PROGRESS_EVERY)).count();
        assert_eq!(lines, 0, "no line before the interval has passed");
    }
}
