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
//! - No log flush is waited for under the table lock (its guard is a
//!   `wal::no_flush` zone): committers and the checkpoint's instant wait for
//!   that lock.
//!
//! Files: the table and its lock (here), key locks (`lock.rs`), a
//! transaction's tree changes and outcome records (`env.rs`), rollback
//! (`rollback.rs`: `undo_step` and the driver that runs it one step per
//! tree-latch hold).

mod env;
pub mod lock;
mod rollback;
pub mod versions;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::ops::{Deref, DerefMut};

use parking_lot::{Mutex, MutexGuard};

use crate::error::{Error, Result};

use crate::types::{TxnEntry, TxnId};
use crate::wal::no_flush::NoLogFlush;

pub use env::TxnEnv;
pub use rollback::undo_step;

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

/// A stable 64-bit hash of a key, for the lock table. Never `lock::ROOT` or
/// `lock::END_OF_KEYS`.
pub fn lock_key(key: &[u8]) -> u64 {
    // std's SipHash with fixed keys: deterministic across runs.
    let mut h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    h.write(key);
    h.finish().min(lock::END_OF_KEYS - 1)
}

/// The lock id of the gap before `next` (next-key locking, ARIES/KVL): the
/// keys between `next`'s predecessor and `next`, or, when `next` is None,
/// after the last key. A key has two locks: its own (`lock_key`: reads and
/// writes of the key) and its gap's (inserts into the gap, scans over it,
/// deletes that widen it), so that an insert waits for a scan or a delete of
/// the gap but not for an uncommitted insert next to it.
pub fn gap_lock(next: Option<&[u8]>) -> u64 {
    match next {
        None => lock::END_OF_KEYS,
        Some(k) => {
            let mut h =
                std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
            h.write(b"gap before");
            h.write(k);
            h.finish().min(lock::END_OF_KEYS - 1)
        }
    }
}

/// The transaction table behind its lock, shared by the facade, the
/// transaction layer and the checkpointer.
#[derive(Default)]
pub struct SharedTxnTable {
    table: Mutex<TxnTable>,
}

/// The table, locked. A no-flush zone while held.
pub struct TxnTableGuard<'a> {
    guard: MutexGuard<'a, TxnTable>,
    _zone: NoLogFlush,
}

impl SharedTxnTable {
    /// Share `table`.
    pub fn new(table: TxnTable) -> SharedTxnTable {
        SharedTxnTable { table: Mutex::new(table) }
    }

    /// Lock the table.
    pub fn lock(&self) -> TxnTableGuard<'_> {
        TxnTableGuard { guard: self.table.lock(), _zone: NoLogFlush::enter() }
    }
}

impl Deref for TxnTableGuard<'_> {
    type Target = TxnTable;
    fn deref(&self) -> &TxnTable {
        &self.guard
    }
}

impl DerefMut for TxnTableGuard<'_> {
    fn deref_mut(&mut self) -> &mut TxnTable {
        &mut self.guard
    }
}
