//! Fail-stop: the one state that says the database has stopped, and why.
//!
//! After an error that stops the database (an I/O error anywhere; any error
//! of a write path, see `Db`), nothing is retried: every later call returns
//! `Error::Failed` carrying the first cause. One `FailStop` is shared (an
//! `Arc`) by the log, the buffer pool, the lock manager and the facade; each
//! consults it at its entry points, so no caller has to remember to check.
//! SQLite's pager keeps its error state in the same way.
//!
//! Invariants:
//! - The first cause stays: later stops do not replace it.
//! - Once stopped, never running again (reopening recovers).
//! - The listeners (the lock manager's waiter wake-up) run after the cause
//!   is set (at least once; a listener registered during the stop may run
//!   twice), so a waiter that checks the cause under its own lock and then
//!   waits is always woken.
//! - The first stop logs its cause once, at error level.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result, StopCause};

type Listener = Box<dyn Fn() + Send + Sync>;

/// Whether the database has stopped, and its first cause.
#[derive(Default)]
pub struct FailStop {
    stopped: AtomicBool,
    cause: Mutex<Option<StopCause>>,
    listeners: Mutex<Vec<Listener>>,
}

impl FailStop {
    /// A running database's state, to share.
    pub fn new() -> Arc<FailStop> {
        Arc::new(FailStop::default())
    }

    /// True once stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The first cause, once stopped.
    pub fn cause(&self) -> Option<StopCause> {
        if !self.is_stopped() {
            return None;
        }
        self.cause.lock().clone()
    }

    /// Ok while running.
    ///
    /// # Errors
    /// `Error::Failed` with the first cause once stopped.
    pub fn check(&self) -> Result<()> {
        match self.cause() {
            None => Ok(()),
            Some(cause) => Err(Error::Failed { cause }),
        }
    }

    /// Stop because of `e` (its `StopCause`); returns the first cause.
    pub fn stop(&self, e: &Error) -> StopCause {
        self.stop_with(StopCause::from_error(e))
    }

    /// Stop with `cause`, unless already stopped; returns the first cause.
    pub fn stop_with(&self, cause: StopCause) -> StopCause {
        let (first, newly) = {
            let mut c = self.cause.lock();
            let newly = c.is_none();
            let first = c.get_or_insert(cause).clone();
            self.stopped.store(true, Ordering::Release);
            (first, newly)
        };
        debug_assert!(self.is_stopped());
        if newly {
            log::error!("the database stopped (fail-stop); every later call returns Error::Failed: {first}");
            for l in self.listeners.lock().iter() {
                l();
            }
        }
        first
    }

    /// Run `f` when the database stops (at once if it already has).
    pub fn on_stop(&self, f: impl Fn() + Send + Sync + 'static) {
        let mut ls = self.listeners.lock();
        if self.is_stopped() {
            f();
        }
        ls.push(Box::new(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn the_first_cause_stays_and_listeners_run_once() {
        let fs = FailStop::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        fs.on_stop(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert!(fs.check().is_ok() && fs.cause().is_none());
        let first = StopCause::Other { message: "first".into() };
        assert_eq!(fs.stop_with(first.clone()), first);
        assert_eq!(fs.stop_with(StopCause::Other { message: "later".into() }), first);
        assert!(matches!(fs.check(), Err(Error::Failed { cause }) if cause == first));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
