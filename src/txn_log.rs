//! A transaction's log chain: the one place that appends a transaction's
//! records. Every record names the transaction's previous one (`prev_lsn`),
//! so rollback and restart undo can walk the chain backward.
//!
//! - A key change is an Update whose undo is logical (the key and its old
//!   value), or, while the transaction is compensating (rolling back), a CLR
//!   whose `undo_next_lsn` is the `prev_lsn` of the Update it compensates:
//!   the next record left to undo, so a CLR is never undone itself (ARIES,
//!   Mohan et al., TODS 1992, section 3.3). Both are applied to their pages
//!   through `BufferPool::log_and_apply` (log first, then the page).
//! - Commit, Abort and End carry no pages (`log_outcome`).
//! - System records (txn 0: a new database's first pages, compaction's page
//!   moves) are redo-only (`log_redo`).
//!
//! The transaction table (in `db`) copies `last_lsn` from here after every
//! operation; Commit, Abort and End are appended under its lock so that a
//! checkpoint's copy of the table agrees with its begin record.

use crate::buffer::BufferPool;
use crate::error::Result;

use crate::types::{Lsn, TxnId};
use crate::wal::{Body, KeyUndo, PagePart, RecordHeader, Wal};

/// A key change logged as an Update: what the version store needs to keep
/// the key's value from before it (see `txn::versions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// The Update record; its undo part holds the old value.
    pub lsn: Lsn,
    /// The key.
    pub key: Vec<u8>,
    /// The old value: None if the key did not exist.
    pub old: Option<OldValue>,
}

/// A key's old value as the version store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldValue {
    /// Small enough to copy (at most `SMALL_OLD_VALUE` bytes).
    Small(Vec<u8>),
    /// Larger: only its length; the bytes stay in the Update record.
    Large(usize),
}

/// Old values up to this many bytes are copied into `KeyChange`.
pub const SMALL_OLD_VALUE: usize = 256;

/// The transaction a change is logged for, and its `prev_lsn` chain.
#[derive(Debug, Clone)]
pub struct TxnCtx {
    /// The transaction (0: a system record outside any transaction).
    pub txn_id: TxnId,
    /// Its most recent record; updated by every record logged.
    pub last_lsn: Lsn,
    /// When set, the change is a compensation: it is logged as a CLR with this
    /// `undo_next_lsn` instead of as an Update.
    pub compensating: Option<Lsn>,
    /// The key changes logged as Updates since the caller last took them
    /// (`take_changes`); compensations are not listed.
    changes: Vec<KeyChange>,
}

impl TxnCtx {
    /// The chain of `txn_id`, whose newest record is `last_lsn` (0: none yet).
    pub fn new(txn_id: TxnId, last_lsn: Lsn) -> TxnCtx {
        TxnCtx { txn_id, last_lsn, compensating: None, changes: Vec::new() }
    }

    fn header(&self, undo_next_lsn: Lsn) -> RecordHeader {
        RecordHeader { prev_lsn: self.last_lsn, txn_id: self.txn_id, undo_next_lsn }
    }

    /// Log a key change and apply its page parts: an Update with its logical
    /// undo, or, while compensating, a CLR (THE place a CLR is made).
    pub fn log_key_change(&mut self, pool: &BufferPool, parts: Vec<PagePart>, undo: KeyUndo) -> Result<()> {
        let lsn = match self.compensating {
            Some(undo_next_lsn) => {
                // The record compensated is after the one to undo next.
                assert!(undo_next_lsn < self.last_lsn || self.last_lsn.is_none(), "a CLR must point back");
                pool.log_and_apply(&self.header(undo_next_lsn), &Body::Clr { parts })?
            }
            None => {
                let old = undo.old.as_deref().map(|v| match v.len() <= SMALL_OLD_VALUE {
                    true => OldValue::Small(v.to_vec()),
                    false => OldValue::Large(v.len()),
                });
                let body = Body::Update { parts, undo };
                let lsn = pool.log_and_apply(&self.header(Lsn::NONE), &body)?;
                // The key moves on from the record logged, not copied.
                let Body::Update { undo, .. } = body else { unreachable!("built as an Update above") };
                self.changes.push(KeyChange { lsn, key: undo.key, old });
                lsn
            }
        };
        debug_assert!(lsn > self.last_lsn);
        self.last_lsn = lsn;
        Ok(())
    }

    /// The key changes logged as Updates since the last call.
    pub fn take_changes(&mut self) -> Vec<KeyChange> {
        std::mem::take(&mut self.changes)
    }

    /// Log a redo-only record and apply its page parts.
    pub fn log_redo(&mut self, pool: &BufferPool, parts: Vec<PagePart>) -> Result<()> {
        let lsn = pool.log_and_apply(&self.header(Lsn::NONE), &Body::Redo { parts })?;
        debug_assert!(lsn > self.last_lsn);
        self.last_lsn = lsn;
        Ok(())
    }

    /// Append the transaction's Commit, Abort or End record.
    pub fn log_outcome(&mut self, wal: &Wal, body: Body) -> Result<Lsn> {
        assert!(matches!(body, Body::Commit | Body::Abort | Body::End), "not an outcome record: {body:?}");
        let lsn = wal.append(&self.header(Lsn::NONE), &body)?;
        self.last_lsn = lsn;
        Ok(lsn)
    }
}
