//! The background writer: a thread that, every 20 ms, keeps the log durable
//! close behind its end, writes back a batch of dirty pages and takes a
//! checkpoint when one is due (also when log held by a transaction or a
//! snapshot that has ended can go).
//!
//! Invariants:
//! - It holds only a `Weak` reference between ticks, so it never keeps a
//!   dropped database alive; `Db::close` and `Db::drop` stop and join it.
//! - It does nothing on a stopped or closed database; an error of a tick stops
//!   the database like any write path's (`Inner::guard`), and is logged at
//!   error level with what the writer was doing.
//! - Pages it writes back obey the write-ahead rule (`BufferPool::write_page`);
//!   it flushes the log first so that they need not wait for it.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use super::Inner;
use crate::error::{Error, Result};

/// Pages written back per tick at most.
const PAGES_PER_TICK: usize = 64;
/// Time between ticks.
const TICK: Duration = Duration::from_millis(20);
/// Bytes of pages the background redo pass redoes in memory per sweep of
/// the log (`PendingRedo::sweep`).
const SWEEP_BYTES: usize = 64 << 20;

/// The thread's body: tick until told to stop or the database is gone.
pub(super) fn background_loop(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        {
            let mut stop = inner.bg_stop.lock();
            if *stop {
                return;
            }
            inner.bg_cv.wait_for(&mut stop, TICK);
            if *stop {
                return;
            }
        }
        if inner.stop.is_stopped() || inner.closed.load(Ordering::Acquire) {
            continue;
        }
        let _ = background_tick(&inner);
    }
}

/// One tick: flush the log, write back old dirty pages, checkpoint if due.
pub(super) fn background_tick(inner: &Inner) -> Result<()> {
    let mut step = "";
    let r = (|| {
        // Keep the log durable close behind its end: commits with
        // Durability::Eventual become durable within a tick, and dirty
        // pages can be written back without waiting for a log fsync.
        step = "flushing the log";
        if inner.wal.end_lsn() > inner.wal.durable_lsn() {
            inner.wal.flush_all()?;
        }
        step = "writing back dirty pages";
        inner.pool.flush_dirty_some(inner.pool.fpi_horizon(), PAGES_PER_TICK)?;
        step = "taking a checkpoint";
        inner.checkpoint_if_due()
    })();
    match &r {
        // Stopped or closed by another thread meanwhile: not this tick's error.
        Ok(()) | Err(Error::Failed { .. } | Error::Closed) => {}
        Err(e) => log::error!("background writer: {step} failed: {e}"),
    }
    inner.guard(r)
}

/// After an instant restart, the background redo pass: load every page that
/// still owes redo, a batch at a time (64 MiB of pages), oldest `rec_lsn`
/// first, until none is left (pages readers touch first are redone by
/// them). Each batch is redone in memory by one sweep of the log in order
/// (`PendingRedo::sweep`), then loaded. Stops when told to
/// (`Db::close` and `Db::drop`; `close` finishes what is left) or when the
/// database stops; an error is logged and ends the pass (the pages left are
/// redone at their first read or at `close`, which report it).
pub(super) fn redo_loop(weak: Weak<Inner>) {
    let started = std::time::Instant::now();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if *inner.bg_stop.lock() || inner.stop.is_stopped() || inner.closed.load(Ordering::Acquire) {
            return;
        }
        let Some(pending) = inner.pending.as_ref() else { return };
        let batch = pending.next_batch((SWEEP_BYTES / inner.page_size).max(super::REDO_BATCH));
        if batch.is_empty() {
            inner.pool.clear_load_redo();
            log::debug!("background redo pass done in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
            return;
        }
        let r = crate::recovery::PendingRedo::as_background(|| {
            // One pass over the log for the whole batch; then each page's
            // load takes its redone bytes. If the sweep fails, each load
            // redoes its page itself (and reports what failed).
            if let Err(e) = pending.sweep(&batch, inner.page_size, |p, buf| inner.pool.read_stored(p, buf)) {
                log::warn!("background redo: the sweep of the log failed ({e}); redoing page by page");
            }
            for page_id in batch {
                // Read meanwhile, or redone by `close` or `compact` (which
                // may then have cut the file below it): nothing to do.
                if pending.owes(page_id) {
                    drop(inner.pool.fetch(page_id)?);
                }
            }
            Ok(())
        });
        if let Err(e) = inner.guard_read(r) {
            if !matches!(e, Error::Failed { .. } | Error::Closed) {
                log::error!("background redo: {e}; the pages left are redone at their first read or at close");
            }
            return;
        }
    }
}
