//! The engine's core types, each defined once: `Lsn`, `PageId`, `TxnId` and
//! the transaction-table entry `TxnEntry` (ARIES's vocabulary: Mohan et al.,
//! TODS 1992, section 2).
//!
//! `Lsn`, `PageId` and `TxnId` are newtypes, not aliases: an LSN and a
//! transaction id are both 64-bit numbers, and a call that swapped them
//! (`TxnCtx::new(last_lsn, txn_id)`) would compile with aliases and corrupt
//! the log's chains. Arithmetic is only what the log needs: an LSN plus a
//! byte length is an LSN, the distance between two LSNs is a byte count.
//!
//! Invariants:
//! - `Lsn::NONE` (0) is never a record's LSN (the log starts at
//!   `wal::LSN_START`), so it stands for "no record" in `prev_lsn`,
//!   `undo_next_lsn`, `first_lsn` and a page never logged.
//! - `TxnId::SYSTEM` (0) is never handed to a transaction: it marks the
//!   redo-only records that belong to none.
//! - This module depends on nothing in the crate.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Add, AddAssign, Sub};
use std::sync::atomic::{AtomicU64, Ordering};

/// A log sequence number: the byte position of a log record in the log
/// stream (it grows without bound across segments; 0 means "none").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// No record: an empty chain, a page never logged.
    pub const NONE: Lsn = Lsn(0);
    /// The largest LSN (an upper bound in searches).
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// The byte position as a number.
    pub const fn get(self) -> u64 {
        self.0
    }
    /// True for `Lsn::NONE`.
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
    /// Bytes from `earlier` to `self`, or None if `earlier` is later.
    pub fn checked_sub(self, earlier: Lsn) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }
    /// Bytes from `earlier` to `self`, 0 if `earlier` is later.
    pub fn saturating_sub(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Add<u64> for Lsn {
    type Output = Lsn;
    fn add(self, bytes: u64) -> Lsn {
        Lsn(self.0 + bytes)
    }
}

impl AddAssign<u64> for Lsn {
    fn add_assign(&mut self, bytes: u64) {
        self.0 += bytes;
    }
}

/// The distance in bytes (panics in debug builds if `rhs` is later).
impl Sub for Lsn {
    type Output = u64;
    fn sub(self, rhs: Lsn) -> u64 {
        self.0 - rhs.0
    }
}

/// An LSN `bytes` before this one.
impl Sub<u64> for Lsn {
    type Output = Lsn;
    fn sub(self, bytes: u64) -> Lsn {
        Lsn(self.0 - bytes)
    }
}

/// An `Lsn` shared between threads: stores publish (Release), loads see
/// what was published before (Acquire).
#[derive(Debug, Default)]
pub struct AtomicLsn(AtomicU64);

impl AtomicLsn {
    /// Holding `lsn`.
    pub const fn new(lsn: Lsn) -> AtomicLsn {
        AtomicLsn(AtomicU64::new(lsn.0))
    }
    /// The LSN last stored.
    pub fn load(&self) -> Lsn {
        Lsn(self.0.load(Ordering::Acquire))
    }
    /// Publish `lsn`.
    pub fn store(&self, lsn: Lsn) {
        self.0.store(lsn.0, Ordering::Release)
    }
}

/// A page number in the data file. Page 0 holds the master record, page 1
/// the meta page; 0 also stands for "no page" in links (a chain's end, an
/// empty free list), since page 0 is never linked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageId(pub u32);

impl PageId {
    /// No page (the end of a chain or list; page 0 is never linked).
    pub const NONE: PageId = PageId(0);

    /// The page number.
    pub const fn get(self) -> u32 {
        self.0
    }
    /// True for `PageId::NONE`.
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
    /// The page's byte offset in a data file of `page_size`-byte pages.
    pub const fn offset(self, page_size: usize) -> u64 {
        self.0 as u64 * page_size as u64
    }
    /// The page number as an index (into a page count, a bitmap).
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A transaction id, handed out in increasing order; 0 is the system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId(pub u64);

impl TxnId {
    /// Redo-only records that belong to no transaction.
    pub const SYSTEM: TxnId = TxnId(0);

    /// The id as a number.
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The id handed out after this one.
    pub fn next(self) -> TxnId {
        TxnId(self.0 + 1)
    }
}

impl TxnEntry {
    /// A transaction that has written nothing yet.
    pub fn new(txn_id: TxnId) -> TxnEntry {
        TxnEntry { txn_id, committed: false, last_lsn: Lsn::NONE, undo_next_lsn: Lsn::NONE, first_lsn: Lsn::NONE }
    }
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A transaction's row in the transaction table (`active_txns`), as kept in
/// memory and copied into a checkpoint's end record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnEntry {
    /// The transaction.
    pub txn_id: TxnId,
    /// True once its commit record was written.
    pub committed: bool,
    /// Its most recent record.
    pub last_lsn: Lsn,
    /// The next record to undo (for a rollback in progress), else `last_lsn`.
    pub undo_next_lsn: Lsn,
    /// Its first record (the log must be kept from here while it is active).
    pub first_lsn: Lsn,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_arithmetic_is_byte_distance() {
        let a = Lsn(4096);
        let b = a + 56;
        assert_eq!(b, Lsn(4152));
        assert_eq!(b - a, 56);
        assert_eq!(b - 56u64, a);
        assert_eq!(a.checked_sub(b), None);
        assert_eq!(a.saturating_sub(b), 0);
        assert!(Lsn::NONE.is_none() && !a.is_none());
        assert_eq!(format!("LSN {b}"), "LSN 4152");
    }

    #[test]
    fn page_offsets_and_txn_ids() {
        assert_eq!(PageId(3).offset(8192), 24576);
        assert_eq!(PageId(3).index(), 3);
        assert!(PageId::NONE.is_none());
        assert_eq!(TxnId(7).next(), TxnId(8));
        assert_eq!(TxnId::SYSTEM.get(), 0);
    }
}

/// A hasher for page and transaction ids, small integers: one multiply by
/// the golden ratio and a shift per word, far cheaper than the standard
/// library's SipHash; the high bits are folded into the low ones, which a
/// map uses to pick buckets (and the page table's shards split ids by their
/// low bits). Used by the page table and by analysis, which hash an
/// id for every fetch and every log record, and by the lock table, the
/// transaction table and the version store, which hash lock and
/// transaction ids for every key change (SipHash there cost about 600
/// instructions a put). It does not resist chosen collisions; ids come
/// from the engine itself (a lock id is already a 64-bit hash of its key,
/// `txn::lock_key`) or from log records whose checksum held, and a crafted
/// log could only make analysis slower.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        let h = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by page or transaction ids (`IdHasher`).
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
