//! Where a thread must not wait for a log flush: while it holds the tree latch
//! or the transaction table's mutex. A flush there would make every other
//! writer (latch) or every committer and checkpoint (table) wait for an
//! fsync.
//!
//! Invariants:
//! - The guards that hold those locks (`btree::TreeLatch`'s guards,
//!   `txn::SharedTxnTable`'s guard) each hold a `NoLogFlush`, so
//!   `log_flush_forbidden` is true exactly while the current thread holds one
//!   of them.
//! - `Wal::flush_to` and the flushes built on it count a flush they would
//!   have to wait for in such a zone (`WalCounters::flushes_in_no_flush_zone`)
//!   and fail a debug assertion: the one exception, an eviction that must
//!   write a page ahead of the log (the write-ahead rule), goes through
//!   `Wal::flush_for_eviction` and is counted by the pool
//!   (`Stats::eviction_log_waits`).

use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    /// How many no-flush zones the current thread is in.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Held while the current thread holds a lock under which no log flush may
/// be waited for. Not `Send`: it marks the thread that made it.
#[must_use = "the zone ends when this is dropped"]
pub struct NoLogFlush {
    _not_send: PhantomData<*const ()>,
}

impl NoLogFlush {
    /// Enter a zone (zones nest).
    pub fn enter() -> NoLogFlush {
        DEPTH.with(|d| d.set(d.get() + 1));
        NoLogFlush { _not_send: PhantomData }
    }
}

impl Drop for NoLogFlush {
    fn drop(&mut self) {
        DEPTH.with(|d| {
            debug_assert!(d.get() > 0, "no-flush zone left more often than entered");
            d.set(d.get().saturating_sub(1));
        });
    }
}

/// True while the current thread is in a no-flush zone.
pub fn log_flush_forbidden() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_nest_and_end_with_their_guards() {
        assert!(!log_flush_forbidden());
        let a = NoLogFlush::enter();
        let b = NoLogFlush::enter();
        assert!(log_flush_forbidden());
        drop(a);
        assert!(log_flush_forbidden());
        drop(b);
        assert!(!log_flush_forbidden());
        // Per thread: another thread is not in this one's zone.
        let _z = NoLogFlush::enter();
        assert!(!std::thread::spawn(log_flush_forbidden).join().unwrap());
    }
}
