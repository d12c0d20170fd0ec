//! Pass 3, undo: roll back every loser together in one backward sweep,
//! always taking the largest LSN still to undo, with CLRs (`txn::undo_step`);
//! then an END record for each. A crash during undo is followed by the same
//! recovery, which finds the CLRs already written and never undoes anything
//! twice. Recovery holds no latch; the log is flushed between steps when its
//! buffer passes its threshold (`Wal::flush_if_over`), so it stays bounded as
//! in normal operation.

use std::collections::BinaryHeap;

use super::{Analysis, Progress, RecoveryReport};
use crate::btree::{BTree, TxnCtx};
use crate::error::Result;

use crate::txn::{undo_step, TxnTable};
use crate::types::{Lsn, TxnId};
use crate::wal::{Body, Wal};

/// Pass 3: roll back every loser in one backward sweep; END for every winner.
pub fn undo(
    tree: &BTree<'_>,
    wal: &Wal,
    table: &mut TxnTable,
    a: &Analysis,
    report: &mut RecoveryReport,
) -> Result<()> {
    let mut heap: BinaryHeap<(Lsn, TxnId)> = BinaryHeap::new();
    for (&id, e) in &a.active_txns {
        if e.committed {
            report.winners += 1;
            TxnCtx::new(id, e.last_lsn).log_outcome(wal, Body::End)?;
            wal.flush_if_over()?;
        } else {
            report.losers += 1;
            table.active_txns.insert(id, *e);
            heap.push((e.undo_next_lsn, id));
        }
    }
    let top = heap.peek().map_or(Lsn::NONE, |&(l, _)| l);
    let bottom = heap.iter().map(|&(_, id)| a.active_txns[&id].first_lsn).min().unwrap_or(Lsn::NONE);
    let mut progress = Progress::new("undo", bottom);
    let mut last_undone = Lsn::MAX;
    while let Some((cur, id)) = heap.pop() {
        progress.tick(cur, top.saturating_sub(cur), top.saturating_sub(bottom));
        // One backward sweep: every step undoes a record below the previous one.
        assert!(cur < last_undone || cur.is_none(), "undo went forward: {cur} after {last_undone}");
        last_undone = cur;
        let entry = table.get_mut(id)?;
        let mut ctx = TxnCtx::new(id, entry.last_lsn);
        let next = if cur.is_none() { Lsn::NONE } else { undo_step(tree, wal, &mut ctx, cur)? };
        report.undone += 1;
        let entry = table.get_mut(id)?;
        entry.last_lsn = ctx.last_lsn;
        if next.is_none() {
            ctx.log_outcome(wal, Body::End)?;
            table.active_txns.remove(&id);
        } else {
            heap.push((next, id));
        }
        wal.flush_if_over()?;
    }
    Ok(())
}
