//! Pass 3, undo: roll back every loser together in one backward sweep,
//! always taking the largest LSN still to undo, with CLRs (`txn::undo_step`);
//! then an END record for each. A crash during undo is followed by the same
//! recovery, which finds the CLRs already written and never undoes anything
//! twice. Recovery holds no latch; the log is flushed between steps when its
//! buffer passes its threshold (`Wal::flush_if_over`), so it stays bounded as
//! in normal operation.
//!
//! With instant restart the losers are instead left to the background
//! (`prepare_background_undo`): their entries go into the transaction table,
//! and each loser's remaining changes are listed, key by key, with the value
//! its rollback will restore, so that the engine can lock those keys and
//! show snapshots the values from before the loser until the rollback (the
//! runtime's, `TxnEnv::rollback_steps`) is done.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::{Analysis, Progress, RecoveryReport};
use crate::btree::{BTree, TxnCtx};
use crate::error::Result;

use crate::error::Error;
use crate::txn::{undo_step, TxnTable};
use crate::txn_log::{KeyChange, OldValue, SMALL_OLD_VALUE};
use crate::types::{Lsn, TxnId};
use crate::wal::{Body, Wal};

/// A loser left to roll back after the open returns (instant restart).
#[derive(Debug)]
pub struct Loser {
    /// The transaction.
    pub txn_id: TxnId,
    /// The keys its remaining Updates (those no CLR compensates yet)
    /// changed, in key order, each with its value before the first of them:
    /// the value the rollback restores (when `escalated`, every old value
    /// by the LSN of its Update only). Empty when `unlisted`.
    pub changes: Vec<KeyChange>,
    /// Keys of `changes` that its rollback removes from the tree on the way
    /// (a remaining Update other than the key's first inserted it: the
    /// loser deleted the key and put it back), whatever the tree holds at
    /// the end. In key order.
    pub absent_midway: Vec<Vec<u8>>,
    /// It changed more keys than `lock_escalation_keys`: the engine locks
    /// the whole key space for it instead of each key.
    pub escalated: bool,
    /// It changed more keys than the open lists (`list_keys`): they are not
    /// listed, and the open rolls the losers back itself.
    pub unlisted: bool,
}

/// Instant restart's undo: END for every winner; every loser into `table`,
/// with what it changed (`Loser`), listed by a walk back along its chain
/// (Updates, and CLRs' `undo_next_lsn` past what is already compensated).
/// A loser of more than `escalate_keys` keys (0: no limit) is `escalated`;
/// one of more than `list_keys` (0: no limit) is `unlisted` as soon as the
/// walk finds that many.
///
/// # Errors
/// `Error::Corruption` for a chain that does not lead back (a record of
/// another transaction, or a step that does not go back); an I/O error.
pub fn prepare_background_undo(
    wal: &Wal,
    table: &mut TxnTable,
    a: &Analysis,
    escalate_keys: usize,
    list_keys: usize,
    report: &mut RecoveryReport,
) -> Result<Vec<Loser>> {
    let mut losers = Vec::new();
    for (&id, e) in &a.active_txns {
        if e.committed {
            report.winners += 1;
            TxnCtx::new(id, e.last_lsn).log_outcome(wal, Body::End)?;
            wal.flush_if_over()?;
            continue;
        }
        report.losers += 1;
        table.active_txns.insert(id, *e);
        losers.push(list_changes(wal, id, e.undo_next_lsn, escalate_keys, list_keys)?);
    }
    losers.sort_by_key(|l| l.txn_id);
    Ok(losers)
}

/// Walk the chain of loser `id` back from `cur`: what its rollback will
/// change (see `Loser`).
fn list_changes(wal: &Wal, id: TxnId, mut cur: Lsn, escalate_keys: usize, list_keys: usize) -> Result<Loser> {
    let mut changes: BTreeMap<Vec<u8>, KeyChange> = BTreeMap::new();
    let mut absent_midway = BTreeSet::new();
    while !cur.is_none() {
        let rec = wal.read_record(cur)?;
        if rec.txn_id != id {
            return Err(Error::corruption(
                "wal",
                format!("record at LSN {cur} belongs to txn {}, not to loser {id}", rec.txn_id),
            ));
        }
        let next = match rec.body {
            Body::Update { undo, .. } => {
                let old = undo.old.map(|v| match v.len() <= SMALL_OLD_VALUE {
                    true => OldValue::Small(v),
                    false => OldValue::Large(v.len()),
                });
                // Walking back, an earlier change of a key replaces a later one.
                let key = undo.key.clone();
                if let Some(later) = changes.insert(key.clone(), KeyChange { lsn: rec.lsn, key: undo.key, old }) {
                    // The later change inserted the key: undone, it removes
                    // the key before this one's undo puts back what it had.
                    if later.old.is_none() {
                        absent_midway.insert(key);
                    }
                }
                if list_keys > 0 && changes.len() > list_keys {
                    let (changes, absent_midway) = (Vec::new(), Vec::new());
                    return Ok(Loser { txn_id: id, changes, absent_midway, escalated: true, unlisted: true });
                }
                rec.prev_lsn
            }
            Body::Clr { .. } => rec.undo_next_lsn,
            _ => rec.prev_lsn,
        };
        if next >= cur {
            return Err(Error::corruption("wal", format!("the chain of loser {id} goes forward at LSN {cur}")));
        }
        cur = next;
    }
    let escalated = escalate_keys > 0 && changes.len() > escalate_keys;
    let mut changes: Vec<KeyChange> = changes.into_values().collect();
    if escalated {
        // Many keys: the versions keep each old value by its LSN only.
        for c in &mut changes {
            if let Some(OldValue::Small(v)) = &c.old {
                c.old = Some(OldValue::Large(v.len()));
            }
        }
    }
    Ok(Loser { txn_id: id, changes, absent_midway: absent_midway.into_iter().collect(), escalated, unlisted: false })
}

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
