//! The checkpointer: fuzzy checkpoints, the master record that names them,
//! and log truncation.
//!
//! A checkpoint writes back the pages dirty since before the previous one
//! began, appends its begin record and copies the transaction table and the
//! dirty page table (under the tree latch and the table lock, for that
//! instant only: transactions keep running), appends its end record carrying
//! the copies, makes the log durable through it, syncs the data file, writes
//! the master record naming the begin, and cuts the log before the first
//! record a later recovery could need.
//!
//! Invariants:
//! - The copies and the begin record are taken together under both locks,
//!   so the tables agree with the log at the begin LSN.
//! - The truncation point is at or below the checkpoint's begin (asserted):
//!   analysis starts there, redo at the smallest rec_lsn, undo at the oldest
//!   open transaction's first record, all at or above the truncation point.
//! - The master record is written only after the end record is durable and
//!   the data file synced, and its sequence only grows (`MasterFile`).
//! - One checkpoint at a time (`state`'s mutex).
//! - No log flush under the tree latch or the table lock: the begin record is
//!   only appended there; the log is flushed through the end record after
//!   both are released.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::master::MasterFile;
use crate::error::Result;

use crate::txn::TxnEnv;
use crate::types::{AtomicLsn, Lsn, TxnEntry, TxnId};
use crate::wal::{Body, CheckpointData, RecordHeader};

struct State {
    master: MasterFile,
    last_begin: Lsn,
}

/// What a checkpoint reads and writes besides its own state: the engine's
/// shared parts, borrowed for one checkpoint.
pub struct Sources<'a> {
    /// The log; the buffer pool (its dirty page table); the tree latch, held
    /// exclusively for the instant of the begin record; the transaction
    /// table; the full-page-image horizon, set to the begin LSN (changes
    /// after it log a full page image first).
    pub env: TxnEnv<'a>,
    /// The next transaction id, recorded in the end record.
    pub next_txn_id: &'a AtomicU64,
}

/// Takes checkpoints, one at a time.
pub struct Checkpointer {
    state: Mutex<State>,
    /// `state.last_begin`, readable without the mutex (committers check it).
    begin: AtomicLsn,
    /// Checkpoints completed.
    count: AtomicU64,
}

impl Checkpointer {
    /// A checkpointer whose last checkpoint began at `last_begin` (0: none),
    /// writing the master record through `master`.
    pub fn new(master: MasterFile, last_begin: Lsn) -> Checkpointer {
        Checkpointer {
            state: Mutex::new(State { master, last_begin }),
            begin: AtomicLsn::new(last_begin),
            count: AtomicU64::new(0),
        }
    }

    /// Checkpoints completed since open.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Take a checkpoint now (waiting for one in progress first).
    ///
    /// # Errors
    /// An I/O error of the log, the data file or the master record.
    pub fn take(&self, s: &Sources<'_>) -> Result<()> {
        let mut st = self.state.lock();
        self.take_locked(s, &mut st)
    }

    /// With a non-zero `interval`: if the log has grown by the interval since
    /// the last checkpoint began, take a checkpoint now, or, if another thread
    /// is taking one, wait for it and check again. Called by committers and by
    /// the background thread, so the log stays within about twice the
    /// interval (plus what open transactions still need) however fast commits
    /// come.
    ///
    /// # Errors
    /// As `take`.
    pub fn take_if_due(&self, s: &Sources<'_>, interval: u64) -> Result<()> {
        if interval == 0 || s.env.wal.end_lsn().saturating_sub(self.begin.load()) < interval {
            return Ok(());
        }
        let mut st = self.state.lock();
        if s.env.wal.end_lsn().saturating_sub(st.last_begin) < interval {
            return Ok(());
        }
        self.take_locked(s, &mut st)
    }

    /// After the closing checkpoint, with nothing appended since and the log
    /// durable through `end`: record the clean end in the master record, so
    /// the next open reads the log only up to it.
    ///
    /// # Errors
    /// An I/O error of the master record.
    pub fn mark_clean(&self, end: Lsn) -> Result<()> {
        let mut st = self.state.lock();
        let begin = st.last_begin;
        st.master.write_clean(begin, end)?;
        Ok(())
    }

    fn take_locked(&self, s: &Sources<'_>, st: &mut State) -> Result<()> {
        // Write back pages dirty since before the previous checkpoint began, so
        // that redo start, and with it the log, stays bounded.
        s.env.pool.flush_dirty(st.last_begin, usize::MAX)?;
        let (begin, active_txns, dirty_pages) = {
            // Both are no-flush zones: the begin record is only appended;
            // the end record's flush comes after they are released.
            let _w = s.env.latch.exclusive();
            let t = s.env.txns.lock();
            let begin = s.env.wal.append(&RecordHeader::default(), &Body::CkptBegin)?;
            s.env.fpi_horizon.store(begin);
            let att: Vec<TxnEntry> = t.active_txns.values().filter(|e| !e.last_lsn.is_none()).copied().collect();
            (begin, att, s.env.pool.dirty_pages())
        };
        assert!(begin > st.last_begin, "a checkpoint begins after the previous one");
        let redo_start = dirty_pages.iter().map(|&(_, l)| l).min().unwrap_or(begin).min(begin);
        // Kept: what redo and undo need, and the Update records whose old
        // values open snapshots read (`txn::versions`).
        let keep_from = active_txns.iter().map(|e| e.first_lsn).min().unwrap_or(begin).min(redo_start);
        let keep_from = s.env.versions.oldest_logged_lsn().map_or(keep_from, |l| l.min(keep_from));
        assert!(keep_from <= begin, "log truncation past the checkpoint's begin");
        let data = CheckpointData {
            begin_lsn: begin,
            next_txn_id: TxnId(s.next_txn_id.load(Ordering::Relaxed)),
            active_txns,
            dirty_pages,
        };
        let end = s.env.wal.append(&RecordHeader::default(), &Body::CkptEnd(data))?;
        s.env.wal.flush_to(end)?;
        // Every page written before this point is now durable.
        s.env.pool.sync()?;
        st.master.write_next(begin, s.env.wal.durable_lsn())?;
        st.last_begin = begin;
        self.begin.store(begin);
        self.count.fetch_add(1, Ordering::Relaxed);
        s.env.wal.truncate_before(keep_from)?;
        Ok(())
    }
}
