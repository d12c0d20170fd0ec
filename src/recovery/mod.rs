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
//!
//! Recovery writes no master record until its closing checkpoint, so a crash
//! during recovery leads to the same recovery again, which finds the CLRs of
//! the first attempt and never undoes anything twice.
//!
//! Files: the passes (`analysis.rs`, `redo.rs`, `undo.rs`), the driver that
//! runs them at open (`driver.rs`), the master record's I/O (`master.rs`) and
//! the checkpointer (`checkpoint.rs`).

mod analysis;
mod checkpoint;
mod driver;
mod master;
mod redo;
mod undo;

use std::time::Instant;

pub use analysis::{analysis, Analysis};
pub use checkpoint::{Checkpointer, Sources};
pub use driver::{recover, OpenParams, DATA_FILE};
pub use redo::redo;
pub use undo::undo;

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
    /// Update undone with a CLR, or a CLR whose `undo_next_lsn` it followed.
    pub undone: u64,
    /// Pages reshaped when a file of an older format version was upgraded
    /// (`BTree::repair_shape`); 0 otherwise.
    pub shape_repairs: u64,
    /// Time spent in each pass, in microseconds.
    pub analysis_us: u64,
    /// Redo time.
    pub redo_us: u64,
    /// Undo time.
    pub undo_us: u64,
}

/// Time since `t` in microseconds.
pub fn micros(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}
