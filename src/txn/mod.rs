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

use std::ops::{Deref, DerefMut};

use parking_lot::{Mutex, MutexGuard};

use crate::error::{Error, Result};

use crate::types::{IdMap, TxnEntry, TxnId};
use crate::wal::no_flush::NoLogFlush;

pub use env::TxnEnv;
pub use rollback::undo_step;

/// The transaction table: every transaction that has begun and not ended.
#[derive(Default)]
pub struct TxnTable {
    /// Entries by transaction id.
    pub active_txns: IdMap<TxnId, TxnEntry>,
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
    hash_key(0x6b65_7920_6c6f_636b, key).min(lock::END_OF_KEYS - 1)
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
        Some(k) => hash_key(0x6761_7020_6265_666f, k).min(lock::END_OF_KEYS - 1),
    }
}

/// A 64-bit hash of `key` from `seed`: 8 bytes at a time, each word mixed in
/// by a multiply and a rotation, then the final mix of MurmurHash3 (fmix64).
/// Deterministic across runs, and much cheaper than SipHash, which cost 3
/// hashes and about 640 instructions per put. Two ids that collide only make
/// two keys share a lock (a false conflict: a wait, never a lost one), so a
/// keyed hash against chosen collisions is not needed.
fn hash_key(seed: u64, key: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(29);
    let mut h = seed ^ (key.len() as u64).wrapping_mul(K);
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        h = mix(h, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(last));
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
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

#[cfg(test)]
mod hash_tests {
    use super::{gap_lock, lock, lock_key};
    use std::collections::HashSet;

    #[test]
    fn lock_ids_of_distinct_keys_and_gaps_differ() {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for i in 0..100_000u64 {
            keys.push(format!("key{i:08}").into_bytes());
            keys.push(i.to_be_bytes()[(i % 8) as usize..].to_vec());
        }
        // Keys that differ only by trailing zero bytes, which fill the last word.
        for n in 1..=17 {
            keys.push(vec![0u8; n]);
            keys.push(vec![b'a'; n]);
        }
        keys.sort();
        keys.dedup();
        let mut ids = HashSet::new();
        for k in &keys {
            assert!(ids.insert(lock_key(k)), "key id collision at {k:?}");
            assert!(ids.insert(gap_lock(Some(k))), "gap id collision at {k:?}");
        }
        assert!(!ids.contains(&lock::END_OF_KEYS) && !ids.contains(&lock::ROOT));
        assert_eq!(gap_lock(None), lock::END_OF_KEYS);
        // Deterministic: the same key, the same id.
        assert_eq!(lock_key(b"abc"), lock_key(b"abc"));
    }
}
