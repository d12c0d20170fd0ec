//! The tree latch and the policy for taking it: writers of the tree hold it
//! exclusively, readers share it, and no log fsync is waited for under it.
//!
//! Invariants:
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

/// The latch held exclusively (a writer).
pub struct TreeWriteGuard<'a> {
    _guard: RwLockWriteGuard<'a, ()>,
}

/// The latch held shared (a reader).
pub struct TreeReadGuard<'a> {
    _guard: RwLockReadGuard<'a, ()>,
}

impl TreeLatch {
    /// A latch nobody holds.
    pub fn new() -> TreeLatch {
        TreeLatch::default()
    }

    /// Take the latch for a change that dirties about `pages` pages: up to
    /// `HEADROOM_FLUSHES` log flushes, only when the pool could give up that
    /// many frames without waiting for the log. Every flush happens without
    /// the latch.
    ///
    /// # Errors
    /// An error of a log flush (which stops the database).
    pub fn for_change(&self, pool: &BufferPool, wal: &Wal, pages: usize) -> Result<TreeWriteGuard<'_>> {
        for _ in 0..HEADROOM_FLUSHES {
            let w = self.exclusive();
            if pool.can_evict_without_log_flush(pages) {
                return Ok(w);
            }
            drop(w);
            wal.flush_all()?;
        }
        // Other writers keep dirtying the pool: go on; an eviction may wait.
        Ok(self.exclusive())
    }

    /// Take the latch for reading, with the same care for eviction headroom
    /// as `for_change`.
    ///
    /// # Errors
    /// An error of the log flush (which stops the database).
    pub fn for_read(&self, pool: &BufferPool, wal: &Wal) -> Result<TreeReadGuard<'_>> {
        if !pool.can_evict_without_log_flush(READ_HEADROOM_PAGES) {
            wal.flush_all()?;
        }
        Ok(TreeReadGuard { _guard: self.lock.read() })
    }

    /// Take the latch exclusively with no headroom policy: for holders that
    /// change no page (a checkpoint's begin, the close, compaction's cut of
    /// the file).
    pub fn exclusive(&self) -> TreeWriteGuard<'_> {
        TreeWriteGuard { _guard: self.lock.write() }
    }
}
