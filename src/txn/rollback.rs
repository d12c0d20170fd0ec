//! Rollback: `undo_step`, one step back along a transaction's chain, and the
//! driver that rolls a live transaction back to a savepoint (or to its
//! start) one step per hold of the tree latch (`TxnEnv::rollback_to`).
//! Restart undo (`recovery::undo`) runs the same step for every loser.
//!
//! Invariants:
//! - An Update is compensated by its logical undo, logged as a CLR whose
//!   `undo_next_lsn` is the Update's `prev_lsn`; a CLR is never undone, the
//!   walk jumps to its `undo_next_lsn`; other records are skipped along
//!   their `prev_lsn`. So an interrupted rollback resumed (after a crash, by
//!   restart undo) never undoes anything twice.
//! - One step per latch hold: other transactions go on between steps, each
//!   step gets the latch's eviction headroom, and the log is flushed between
//!   steps when its buffer is full, never under the latch (reading the
//!   record to undo never waits for a flush: `Wal::read_record`).

use super::TxnEnv;
use crate::btree::{BTree, TxnCtx};
use crate::error::{Error, Result};

use crate::types::{Lsn, TxnId};
use crate::wal::{Body, LogRecord, Wal};

/// One step of a rollback: look at the record at `cur`, undo it if it is an
/// Update (logging a CLR), and return the next LSN to look at (0: done).
pub fn undo_step(tree: &BTree<'_>, wal: &Wal, ctx: &mut TxnCtx, cur: Lsn) -> Result<Lsn> {
    debug_assert!(ctx.compensating.is_none(), "a rollback step begins outside a compensation");
    let rec: LogRecord = wal.read_record(cur)?;
    if rec.txn_id != ctx.txn_id {
        return Err(Error::corruption(
            "wal",
            format!("record at LSN {cur} belongs to txn {}, not to txn {}", rec.txn_id, ctx.txn_id),
        ));
    }
    match rec.body {
        Body::Update { undo, .. } => {
            ctx.compensating = Some(rec.prev_lsn);
            let result = match &undo.old {
                Some(v) => tree.put(ctx, &undo.key, v),
                None => match tree.delete(ctx, &undo.key) {
                    Ok(true) => Ok(()),
                    Ok(false) => tree.log_empty_clr(ctx),
                    Err(e) => Err(e),
                },
            };
            ctx.compensating = None;
            result?;
            // The CLR just logged follows everything it compensates.
            debug_assert!(ctx.last_lsn > cur, "a CLR precedes the record it compensates");
            Ok(rec.prev_lsn)
        }
        Body::Clr { .. } => {
            // A CLR points back past what it compensated (checked on decode).
            debug_assert!(rec.undo_next_lsn < rec.lsn);
            Ok(rec.undo_next_lsn)
        }
        _ => Ok(rec.prev_lsn),
    }
}

impl TxnEnv<'_> {
    /// Roll transaction `id` back to just after `target` (0: everything),
    /// one `undo_step` per hold of the tree latch (`with_txn_ctx`). The
    /// caller appends Abort before a full rollback and End after it.
    ///
    /// # Errors
    /// An error of a step (the caller stops the database).
    pub fn rollback_to(&self, id: TxnId, target: Lsn) -> Result<()> {
        let mut at = None;
        while !self.rollback_steps(id, target, &mut at, u64::MAX)? {}
        Ok(())
    }

    /// At most `max_steps` steps of the rollback of `id` to just after
    /// `target`, going on from `at` (None: from the transaction's last
    /// record, where a rollback begins or, after its CLRs, resumes; each
    /// call leaves in `at` where the next goes on). Returns true once the
    /// rollback is done. The background undo of losers after an instant
    /// restart runs a loser this way, a few steps between looks at whether
    /// the database is closing.
    ///
    /// # Errors
    /// As `rollback_to`.
    pub fn rollback_steps(&self, id: TxnId, target: Lsn, at: &mut Option<Lsn>, max_steps: u64) -> Result<bool> {
        for _ in 0..max_steps {
            let done = self.with_txn_ctx(id, 0, |tree, ctx| {
                let cur = at.unwrap_or(ctx.last_lsn);
                if cur <= target {
                    return Ok(true);
                }
                let after = undo_step(tree, self.wal, ctx, cur)?;
                // Each step moves back along the chain: a rollback ends.
                assert!(after < cur, "rollback of txn {id} went forward: {after} after {cur}");
                *at = Some(after);
                Ok(false)
            })?;
            if done {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
