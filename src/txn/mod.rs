//! Transactions: the transaction table (`active_txns`), strict two-phase key
//! locks (see `lock`), and rollback.
//!
//! Transaction states: ACTIVE -> (COMMIT record) COMMITTED -> (END) gone;
//! ACTIVE -> (ABORT record, CLRs back along the prev_lsn chain) -> (END) gone.
//! A partial rollback (`rollback_to`) writes CLRs down to the savepoint and the
//! transaction stays ACTIVE.
//!
//! Invariants:
//! - Every record a transaction writes names its previous record (`prev_lsn`);
//!   the table holds the newest (`last_lsn`).
//! - Rollback walks that chain from `last_lsn`: an Update is compensated by a
//!   logical undo logged as a CLR whose `undo_next_lsn` is the Update's
//!   `prev_lsn`; a CLR is never undone, the walk jumps to its `undo_next_lsn`;
//!   redo-only records (structure changes) are skipped. So a rollback that is
//!   interrupted by a crash and resumed never undoes anything twice.
//! - Appending a transaction's COMMIT/ABORT/END and changing its table entry
//!   happen under the table lock, so a checkpoint's snapshot of the table is
//!   consistent with its begin record.

pub mod lock;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use crate::btree::{BTree, TxnCtx};
use crate::error::{Error, Result};

use crate::types::{Lsn, TxnEntry, TxnId};
use crate::wal::{Body, LogRecord, Wal};

/// The transaction table: every transaction that has begun and not ended.
#[derive(Default)]
pub struct TxnTable {
    /// Entries by transaction id.
    pub active_txns: HashMap<TxnId, TxnEntry>,
}

impl TxnTable {
    /// The entry of `txn`, which must exist.
    pub fn get(&self, txn: TxnId) -> Result<&TxnEntry> {
        self.active_txns.get(&txn).ok_or(Error::TxnEnded)
    }
    /// Mutable entry.
    pub fn get_mut(&mut self, txn: TxnId) -> Result<&mut TxnEntry> {
        self.active_txns.get_mut(&txn).ok_or(Error::TxnEnded)
    }
}

/// A stable 64-bit hash of a key, for the lock table. Never `lock::ROOT`.
pub fn lock_key(key: &[u8]) -> u64 {
    // std's SipHash with fixed keys: deterministic across runs.
    let mut h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    h.write(key);
    h.finish().min(lock::ROOT - 1)
}

/// One step of a rollback: look at the record at `cur`, undo it if it is an
/// Update (logging a CLR), and return the next LSN to look at (0: done).
pub fn undo_step(tree: &BTree<'_>, wal: &Wal, ctx: &mut TxnCtx, cur: Lsn) -> Result<Lsn> {
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
