//! A transaction's work on the engine: its tree changes, one per hold of the
//! tree latch, and its outcome records (Commit, Abort, End), each keeping the
//! transaction table's entry in step with the log chain (`TxnCtx`).
//!
//! Invariants:
//! - A tree change runs under the latch taken by `TreeLatch::for_change`
//!   (eviction headroom; the log buffer below its threshold); the entry's
//!   `last_lsn`, `undo_next_lsn` and `first_lsn` are updated under the table
//!   lock, taken inside the latch (latch, then table: the checkpoint's order).
//! - An outcome record is appended and the entry changed under the table
//!   lock, so a checkpoint's copy of the table agrees with its begin record.
//! - Every key change a transaction makes is noted in the version store
//!   (`VersionStore::note_change`) in the latch hold that made it.
//! - No log flush under either: after releasing them, a caller flushes the log
//!   if its buffer passed `wal::BUFFER_FLUSH_BYTES` (`Wal::flush_if_over`).

use super::versions::VersionStore;
use super::SharedTxnTable;
use crate::btree::{BTree, TreeLatch, TxnCtx, CHANGE_HEADROOM_PAGES};
use crate::buffer::BufferPool;
use crate::error::Result;

use crate::types::{Lsn, TxnId};
use crate::wal::{Body, Wal};

/// The engine's parts a transaction's work uses, borrowed for one call.
pub struct TxnEnv<'a> {
    /// The tree latch.
    pub latch: &'a TreeLatch,
    /// The buffer pool the tree lives in.
    pub pool: &'a BufferPool,
    /// The log.
    pub wal: &'a Wal,
    /// The transaction table.
    pub txns: &'a SharedTxnTable,
    /// The versions read-only snapshots see.
    pub versions: &'a VersionStore,
}

impl TxnEnv<'_> {
    /// Run a tree change for transaction `id` under the tree latch, keeping its
    /// table entry's chain up to date. `pages`: how many pages it may dirty
    /// beyond `CHANGE_HEADROOM_PAGES`. After the latch is released, the log
    /// is flushed if its buffer is full.
    ///
    /// # Errors
    /// `f`'s error; `Error::TxnEnded` if `id` has no entry; a log flush's.
    pub fn with_txn_ctx<T>(
        &self,
        id: TxnId,
        pages: usize,
        f: impl FnOnce(&BTree<'_>, &mut TxnCtx) -> Result<T>,
    ) -> Result<T> {
        let r = {
            let _w = self.latch.for_change(self.pool, self.wal, CHANGE_HEADROOM_PAGES + pages)?;
            let start = self.wal.end_lsn();
            let mut ctx = TxnCtx::new(id, self.txns.lock().get(id)?.last_lsn);
            let before = ctx.last_lsn;
            let r = f(&BTree::new(self.pool), &mut ctx);
            // In the same latch hold as the changes: a snapshot never sees a
            // change without its version.
            for change in ctx.take_changes() {
                self.versions.note_change(id, &change);
            }
            // The chain only grows, and a change appended after `start`.
            debug_assert!(ctx.last_lsn >= before && (ctx.last_lsn == before || ctx.last_lsn >= start));
            if ctx.last_lsn != before {
                let mut t = self.txns.lock();
                let e = t.get_mut(id)?;
                e.last_lsn = ctx.last_lsn;
                e.undo_next_lsn = ctx.last_lsn;
                if e.first_lsn.is_none() {
                    e.first_lsn = start;
                }
            }
            r
        };
        let v = r?;
        self.wal.flush_if_over()?;
        Ok(v)
    }

    /// Append a transaction's own record (Commit, Abort, End) and update its
    /// table entry, under the table lock (so checkpoints see both or
    /// neither); End removes the entry. Then, without the lock, flush the log
    /// if its buffer is full.
    ///
    /// # Errors
    /// `Error::TxnEnded` if `id` has no entry; an error of the append or flush.
    pub fn log_txn_record(&self, id: TxnId, body: Body) -> Result<Lsn> {
        let lsn = {
            let mut t = self.txns.lock();
            let e = t.get_mut(id)?;
            let (commit, end) = (body == Body::Commit, body == Body::End);
            assert!(!e.committed || end, "txn {id} wrote {body:?} after its commit");
            let lsn = TxnCtx::new(id, e.last_lsn).log_outcome(self.wal, body)?;
            debug_assert!(lsn > e.last_lsn, "an outcome record precedes the transaction's last record");
            e.last_lsn = lsn;
            e.undo_next_lsn = lsn;
            if commit {
                e.committed = true;
            }
            if end {
                t.active_txns.remove(&id);
            }
            lsn
        };
        self.wal.flush_if_over()?;
        Ok(lsn)
    }
}
