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
//! - Log is removed only by a checkpoint, after its master record is written.
//!   A checkpoint is due when the log has grown by the interval since the
//!   last one began; a release checkpoint (no write-back first) when the last
//!   one kept log below what redo needs only for holders (an open
//!   transaction, a snapshot's logged before-image) and enough of them have
//!   gone since that a checkpoint now would remove a segment
//!   (`holder_gone`): the log a large transaction held goes when it ends,
//!   not one interval of later log after.
//! - The master record is written only after the end record is durable and
//!   the data file synced, and its sequence only grows (`MasterFile`).
//! - One checkpoint at a time (`state`'s mutex).
//! - No log flush under the tree latch or the table lock: the begin record is
//!   only appended there; the log is flushed through the end record after
//!   both are released.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::master::MasterFile;
use crate::error::Result;

use crate::txn::TxnEnv;
use crate::types::{AtomicLsn, Lsn, TxnEntry, TxnId};
use crate::wal::{Body, CheckpointData, RecordHeader};

/// Why a checkpoint is taken: said in its log line (debug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The closing checkpoint of recovery, at open.
    Open,
    /// Asked for (`Db::checkpoint`).
    Manual,
    /// The log grew by the checkpoint interval since the last one began.
    Interval,
    /// A release checkpoint: log kept for a transaction or a snapshot that
    /// has ended since can go (`holder_gone`).
    Release,
    /// After the moves of a compaction.
    Compact,
    /// The last checkpoint of a clean close.
    Close,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Open => "end of recovery",
            Reason::Manual => "manual",
            Reason::Interval => "interval: the log grew by checkpoint_interval_bytes",
            Reason::Release => "release: a large transaction or a snapshot that held log has ended",
            Reason::Compact => "compaction",
            Reason::Close => "close",
        })
    }
}

struct State {
    master: MasterFile,
    last_begin: Lsn,
    /// The end of the log when the last checkpoint started (before its
    /// write-back): the next one is due an interval after it.
    last_started: Lsn,
}

/// What the last checkpoint's truncation kept, for `holder_gone`.
#[derive(Clone, Copy)]
struct Kept {
    /// The truncation point: the log was kept from here.
    from: Lsn,
    /// What recovery from that checkpoint needs besides open transactions
    /// and snapshot versions: `min(begin, smallest rec_lsn)`. Below it, the
    /// log was kept only for those holders.
    needed_from: Lsn,
}

/// What a checkpoint reads and writes besides its own state: the engine's
/// shared parts, borrowed for one checkpoint.
pub struct Sources<'a> {
    /// The log; the buffer pool (its dirty page table); the tree latch, held
    /// exclusively for the instant of the begin record; the transaction
    /// table; the pool's full-page-image horizon, advanced to the begin LSN
    /// before the data sync.
    pub env: TxnEnv<'a>,
    /// The next transaction id, recorded in the end record.
    pub next_txn_id: &'a AtomicU64,
}

/// Takes checkpoints, one at a time.
pub struct Checkpointer {
    state: Mutex<State>,
    /// `state.last_started`, readable without the mutex (committers check it).
    started: AtomicLsn,
    /// The last checkpoint's `Kept`, written under the state mutex, readable
    /// without it (a hint there: the two may come from two checkpoints; the
    /// check is repeated under the mutex).
    kept_from: AtomicLsn,
    needed_from: AtomicLsn,
    /// Checkpoints completed.
    count: AtomicU64,
}

impl Checkpointer {
    /// A checkpointer whose last checkpoint began at `last_begin` (0: none),
    /// writing the master record through `master`.
    pub fn new(master: MasterFile, last_begin: Lsn) -> Checkpointer {
        Checkpointer {
            state: Mutex::new(State { master, last_begin, last_started: last_begin }),
            started: AtomicLsn::new(last_begin),
            kept_from: AtomicLsn::new(Lsn::NONE),
            needed_from: AtomicLsn::new(Lsn::NONE),
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
    pub fn take(&self, s: &Sources<'_>, reason: Reason) -> Result<()> {
        let mut st = self.state.lock();
        self.take_locked(s, &mut st, true, reason)
    }

    /// With a non-zero `interval`: if the log has grown by the interval since
    /// the last checkpoint started (before its write-back, whose full page
    /// images would otherwise stretch the distance between two begins, and
    /// with it the log kept), take a checkpoint now, or, if another thread
    /// is taking one, wait for it and check again. Called by committers, by
    /// transactions that rolled back and by the background thread, so the log
    /// stays within about twice the interval (plus what open transactions and
    /// snapshots still need) however fast commits come.
    ///
    /// Also, if log the last checkpoint kept only for open transactions or
    /// snapshots is no longer held (`holder_gone`), take a release checkpoint:
    /// one without the write-back of its first step, which costs a few syncs
    /// rather than the pages dirtied since the previous checkpoint, so the end
    /// of a large transaction can take it at once; the log it held goes then,
    /// not one interval of later log after.
    ///
    /// # Errors
    /// As `take`.
    pub fn take_if_due(&self, s: &Sources<'_>, interval: u64) -> Result<()> {
        let grown = |begin: Lsn| s.env.wal.end_lsn().saturating_sub(begin) >= interval;
        let kept = || Kept { from: self.kept_from.load(), needed_from: self.needed_from.load() };
        if interval == 0 || !(grown(self.started.load()) || holder_gone(s, kept())) {
            return Ok(());
        }
        let mut st = self.state.lock();
        if grown(st.last_started) {
            self.take_locked(s, &mut st, true, Reason::Interval)
        } else if holder_gone(s, kept()) {
            self.take_locked(s, &mut st, false, Reason::Release)
        } else {
            Ok(())
        }
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

    /// A checkpoint; `write_back`: first write back the pages dirty since
    /// before the previous checkpoint began, so that redo start, and with it
    /// the log, stays bounded. Without it (a release checkpoint, `take_if_due`)
    /// the smallest rec_lsn is still at or past the previous checkpoint's: a
    /// page dirty then has kept its rec_lsn, and a page dirtied since has a
    /// later one. The next checkpoint with the write-back writes back what
    /// was dirty before this one began, so the bound holds from then on.
    fn take_locked(&self, s: &Sources<'_>, st: &mut State, write_back: bool, reason: Reason) -> Result<()> {
        let started = Instant::now();
        let started_at = s.env.wal.end_lsn();
        if write_back {
            s.env.pool.flush_dirty(st.last_begin, usize::MAX)?;
        }
        let (begin, active_txns, dirty_pages) = {
            // Both are no-flush zones: the begin record is only appended;
            // the end record's flush comes after they are released.
            let _w = s.env.latch.exclusive();
            let t = s.env.txns.lock();
            let begin = s.env.wal.append(&RecordHeader::default(), &Body::CkptBegin)?;
            let att: Vec<TxnEntry> = t.active_txns.values().filter(|e| !e.last_lsn.is_none()).copied().collect();
            (begin, att, s.env.pool.dirty_pages())
        };
        assert!(begin > st.last_begin, "a checkpoint begins after the previous one");
        // Pages written back after the data sync below are imaged first
        // unless imaged since `begin` (the torn-page rule); this returns once
        // every write that saw the older horizon has ended.
        s.env.pool.advance_fpi_horizon(begin);
        let redo_start = dirty_pages.iter().map(|&(_, l)| l).min().unwrap_or(begin).min(begin);
        // Kept: what redo and undo need, and the Update records whose old
        // values open snapshots read (`txn::versions`).
        let held = active_txns.iter().map(|e| e.first_lsn).min().unwrap_or(Lsn::MAX);
        let held = s.env.versions.oldest_logged_lsn().map_or(held, |l| l.min(held));
        let keep_from = held.min(redo_start);
        assert!(keep_from <= begin, "log truncation past the checkpoint's begin");
        let (txn_count, dirty_count) = (active_txns.len(), dirty_pages.len());
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
        st.last_started = started_at;
        self.started.store(started_at);
        self.count.fetch_add(1, Ordering::Relaxed);
        log::debug!(
            "checkpoint ({reason}) in {:.1} ms: begin LSN {begin}, {dirty_count} dirty pages, {txn_count} active \
             transactions; redo from it would start at LSN {redo_start}, log kept from LSN {keep_from}",
            super::ms(super::micros(started))
        );
        s.env.wal.truncate_before(keep_from)?;
        self.kept_from.store(keep_from);
        self.needed_from.store(redo_start);
        Ok(())
    }
}

/// The last checkpoint kept log below what recovery needs besides holders
/// (`kept.needed_from`) for holders (open transactions, snapshot versions
/// read from the log), and those of them that are gone since leave at least
/// one segment that a checkpoint now would remove. A new checkpoint's
/// truncation point is at least `min(kept.needed_from, oldest holder now)`,
/// with or without its write-back: its begin comes later, and every page
/// dirty now was dirty at the last checkpoint, with the rec_lsn it had then,
/// or was dirtied since, with a later one.
/// Holders only move forward (a new transaction or version starts at the end
/// of the log), so once a checkpoint has removed what this found, this is
/// false again until another holder goes: no checkpoint follows another for
/// nothing.
fn holder_gone(s: &Sources<'_>, kept: Kept) -> bool {
    if kept.from >= kept.needed_from {
        return false; // kept for no holder (also before the first checkpoint)
    }
    let txns = {
        let t = s.env.txns.lock();
        t.active_txns.values().filter(|e| !e.first_lsn.is_none()).map(|e| e.first_lsn).min()
    };
    let free_to = txns.map_or(kept.needed_from, |l| l.min(kept.needed_from));
    if free_to <= kept.from {
        return false; // the oldest holder is still open: the common case, cheap
    }
    let free_to = s.env.versions.oldest_logged_lsn().map_or(free_to, |l| l.min(free_to));
    free_to > kept.from && s.env.wal.would_truncate_before(free_to)
}
