//! The tree latch and the policy for taking it: writers of the tree hold it
//! exclusively, readers share it, and no log fsync is waited for under it.
//!
//! Invariants:
//! - Every guard holds a `NoLogFlush` zone, so a log flush attempted under
//!   the latch is caught (`wal::no_flush`), eviction's excepted.
//! - A tree change is granted the latch only while the log's append buffer
//!   holds less than `wal::BUFFER_FLUSH_BYTES`; otherwise the writer flushes
//!   the log without the latch and tries again. With `append` never flushing,
//!   the buffer therefore holds at most that plus what one operation under one
//!   latch hold appends (see `wal`).
//! - Eviction headroom: before a change (or a read) begins, the pool should
//!   be able to give up the frames it will need without writing a page that
//!   is ahead of the log (which would wait for a log fsync under the latch).
//!   If it cannot, the log is flushed first, without the latch; a writer does
//!   so at most `HEADROOM_FLUSHES` times, then goes on (other writers keep
//!   dirtying the pool), and an eviction may then wait for the log under the
//!   latch: the one documented exception, `Stats::eviction_log_waits`.
//! - Only writers change frames and they are serialized by this latch, so the
//!   pool's answer holds for the whole operation (`BufferPool::note_change`).

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::buffer::BufferPool;
use crate::error::Result;
use crate::wal::no_flush::NoLogFlush;
use crate::wal::Wal;

/// Frames a tree change may dirty or pin besides its overflow pages: a leaf
/// change plus a split at every level of a deep tree, and the meta page.
pub const CHANGE_HEADROOM_PAGES: usize = 24;
/// Frames a reader may pin at once.
pub const READ_HEADROOM_PAGES: usize = 4;
/// Log flushes a writer makes for eviction headroom before it takes the
/// latch anyway.
const HEADROOM_FLUSHES: usize = 3;

/// The tree latch: one per database.
#[derive(Default)]
pub struct TreeLatch {
    lock: RwLock<()>,
}

/// The latch held exclusively (a writer). Inside a no-flush zone.
pub struct TreeWriteGuard<'a> {
    _guard: RwLockWriteGuard<'a, ()>,
    _zone: NoLogFlush,
}

/// The latch held shared (a reader). Inside a no-flush zone.
pub struct TreeReadGuard<'a> {
    _guard: RwLockReadGuard<'a, ()>,
    _zone: NoLogFlush,
}

impl TreeLatch {
    /// A latch nobody holds.
    pub fn new() -> TreeLatch {
        TreeLatch::default()
    }

    /// Take the latch for a change that dirties about `pages` pages: not
    /// while the log buffer is past its flush threshold, and, up to
    /// `HEADROOM_FLUSHES` log flushes, only when the pool could give up that
    /// many frames without waiting for the log. Every flush happens without
    /// the latch.
    ///
    /// # Errors
    /// An error of a log flush (which stops the database).
    pub fn for_change(&self, pool: &BufferPool, wal: &Wal, pages: usize) -> Result<TreeWriteGuard<'_>> {
        let mut headroom_flushes = 0;
        loop {
            let w = self.exclusive();
            let log_full = wal.wants_flush();
            if !log_full && (headroom_flushes >= HEADROOM_FLUSHES || pool.can_evict_without_log_flush(pages)) {
                return Ok(w);
            }
            drop(w);
            if log_full {
                wal.flush_if_over()?;
            } else {
                headroom_flushes += 1;
                wal.flush_all()?;
            }
        }
    }

    /// Take the latch for reading, with the same care for eviction headroom
    /// as `for_change` (a reader appends nothing).
    ///
    /// # Errors
    /// An error of the log flush (which stops the database).
    pub fn for_read(&self, pool: &BufferPool, wal: &Wal) -> Result<TreeReadGuard<'_>> {
        if !pool.can_evict_without_log_flush(READ_HEADROOM_PAGES) {
            wal.flush_all()?;
        }
        Ok(TreeReadGuard { _guard: self.lock.read(), _zone: NoLogFlush::enter() })
    }

    /// Take the latch exclusively with no headroom policy: for holders that
    /// change no page (a checkpoint's begin, the close, compaction's cut of
    /// the file).
    pub fn exclusive(&self) -> TreeWriteGuard<'_> {
        TreeWriteGuard { _guard: self.lock.write(), _zone: NoLogFlush::enter() }
    }
}
