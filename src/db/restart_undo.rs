//! After an instant restart: the losers' rollback in the background, as
//! InnoDB rolls back after its redo.
//!
//! Recovery lists each loser's remaining changes (`recovery::Loser`). Before
//! the open returns, `Inner::adopt_losers` gives every loser back the
//! exclusive locks it held, rebuilt from that list: the lock of each key it
//! changed and, for a key it deleted last (absent from the tree now) or
//! deleted and put back (absent for a while during the rollback, which
//! undoes the put before the delete), the locks of the gap before the key
//! and of the gap before the next key its rollback keeps (as `Txn::delete`
//! takes them: the gap it widened, which must stay locked while the
//! rollback first removes the loser's own inserts after the key and then
//! puts the key back), and of the gap before each insert of a loser passed
//! on the way there (until a rollback removes one, an insert between the
//! key and it enters that gap); past `Options::lock_escalation_keys` keys,
//! one lock on every key instead. It puts each key's value from before the
//! loser in the version store (by the LSN of its Update only, past
//! `lock_escalation_keys` keys), so that snapshots see the state without the
//! losers, and no transaction reads or overwrites an uncommitted change.
//! The thread `ariesdb-undo` then rolls each loser back with the runtime's
//! rollback (`TxnEnv::rollback_steps`: one step, one CLR, per hold of the
//! tree latch), drops its versions, writes its END record and releases its
//! locks. `close` finishes what is left; a drop leaves it to the next open,
//! which finds the CLRs already written (ARIES never undoes twice).
//!
//! Invariants:
//! - Every loser's locks are granted, and its versions noted, before the
//!   open returns, so before any other transaction or snapshot begins. If a
//!   loser changed more keys than its versions may take memory for (about
//!   128 bytes a key, within `Options::snapshot_cap_bytes`), or a rebuilt
//!   lock cannot be granted (an escalated loser beside another loser; two
//!   losers' rebuilt gap locks that overlap; lock ids that collide), no
//!   loser is left to the background: all are rolled back before the open
//!   returns, as the classic undo pass would.
//! - A loser's versions go only after its rollback restored the tree, and
//!   its locks only after its END record (`Txn::abort`'s order).
//! - One actor rolls losers back at a time: the holder of `queue`'s mutex
//!   (the thread, or `close`, which stops the thread first).

use std::collections::{BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;
use std::time::Instant;

use parking_lot::Mutex;

use super::Inner;
use crate::btree::BTree;
use crate::error::{Error, Result};
use crate::recovery::{micros, ms, Loser};
use crate::txn::lock::LockMode;
use crate::txn::{gap_lock, lock_key};
use crate::types::{Lsn, TxnId};
use crate::wal::Body;

/// A loser still to roll back, and the lock ids it holds (besides its lock
/// on the root, which `release_all` drops too).
#[derive(Debug)]
struct Adopted {
    txn_id: TxnId,
    locks: Vec<u64>,
}

/// The losers of the last open still to roll back, and the progress.
pub(super) struct RestartUndo {
    /// Oldest transaction first.
    queue: Mutex<VecDeque<Adopted>>,
    /// When the losers were adopted.
    started: Instant,
    /// Losers left to the background when the open returned.
    pub(super) deferred: AtomicU64,
    /// Undo steps taken so far (records undone as CLRs, or CLRs followed).
    pub(super) steps: AtomicU64,
    /// Losers rolled back by the background thread.
    pub(super) in_background: AtomicU64,
    /// Losers not yet rolled back.
    pub(super) left: AtomicU64,
    /// Microseconds from the adoption until the last loser was rolled back
    /// (0 until then, or when none was left to the background).
    pub(super) finished_us: AtomicU64,
    /// Tests: the thread waits while this is set.
    #[cfg(test)]
    pub(super) held: std::sync::atomic::AtomicBool,
}

impl RestartUndo {
    pub(super) fn new(#[cfg(test)] held: bool) -> RestartUndo {
        RestartUndo {
            queue: Mutex::new(VecDeque::new()),
            started: Instant::now(),
            deferred: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            in_background: AtomicU64::new(0),
            left: AtomicU64::new(0),
            finished_us: AtomicU64::new(0),
            #[cfg(test)]
            held: std::sync::atomic::AtomicBool::new(held),
        }
    }
}

/// The locks of the gaps that hold the place of `key` while it is absent
/// during the loser's rollback: the gap before each key after it in the
/// tree, up to and including the first that the rollback keeps (the end
/// of the keys if none). Keys in `inserted` (the losers' inserts, which
/// their rollbacks remove: the loser's own, and those of another loser,
/// which may have gone into the gap before one of them) are passed over,
/// and the gap before each of them is locked too: until a rollback removes
/// it, an insert between `key` and it enters that gap.
fn gaps_after(tree: &BTree<'_>, key: &[u8], inserted: &BTreeSet<&[u8]>) -> Result<Vec<u64>> {
    let mut gaps = Vec::new();
    let mut kept = false;
    tree.scan(Bound::Excluded(key), Bound::Unbounded, |k, _| {
        gaps.push(gap_lock(Some(k)));
        kept = !inserted.contains(k);
        Ok(!kept)
    })?;
    if !kept {
        gaps.push(gap_lock(None));
    }
    Ok(gaps)
}

impl Inner {
    /// Take over the losers recovery left (see the module doc): their locks
    /// and versions, and the queue the thread works through. Call once, in
    /// the open, before anyone else can use the engine.
    ///
    /// # Errors
    /// As a tree read (a page redone at its load may be damaged); as a
    /// rollback, when the losers are rolled back here.
    pub(super) fn adopt_losers(&self, losers: Vec<Loser>) -> Result<()> {
        if losers.is_empty() {
            return Ok(());
        }
        let mut queue = self.undo.queue.lock();
        assert!(queue.is_empty(), "losers adopted twice");
        // A loser of more keys than the open lists would need too much
        // memory for its versions, and snapshots would have nothing to read
        // until its rollback: roll every loser back here, as the classic
        // pass does.
        let unlisted = losers.iter().filter(|l| l.unlisted).count();
        if unlisted > 0 {
            log::info!(
                "recovery undo: {unlisted} of {} losers changed more keys than their versions may take memory for \
                 (snapshot_cap_bytes): rolling every loser back before the open returns",
                losers.len()
            );
            queue.extend(losers.iter().map(|l| Adopted { txn_id: l.txn_id, locks: Vec::new() }));
            self.undo.left.store(queue.len() as u64, Ordering::Relaxed);
            return self.roll_back_queue(&mut queue, &|| true).map(|_| ());
        }
        let mut granted = true;
        {
            let _r = self.read_latch()?;
            let tree = self.tree();
            let inserted: BTreeSet<&[u8]> = losers
                .iter()
                .flat_map(|l| l.changes.iter().filter(|c| c.old.is_none()).map(|c| c.key.as_slice()))
                .collect();
            for l in &losers {
                let mut locks = Vec::new();
                if l.escalated {
                    // One lock on every key: its gaps and keys with it.
                    granted &= self.locks.try_escalate(l.txn_id, &[], LockMode::Exclusive)?;
                } else {
                    for c in &l.changes {
                        locks.push(lock_key(&c.key));
                        // Absent now (deleted by the loser last), or absent
                        // for a while during the rollback (deleted, then put
                        // back): the gaps its delete merged stay locked.
                        let midway = l.absent_midway.binary_search(&c.key).is_ok();
                        if midway || tree.get(&c.key)?.is_none() {
                            locks.push(gap_lock(Some(&c.key)));
                            locks.extend(gaps_after(&tree, &c.key, &inserted)?);
                        }
                    }
                    locks.sort_unstable();
                    locks.dedup();
                    for &id in &locks {
                        granted &= self.locks.try_lock(l.txn_id, id, LockMode::Exclusive)?.is_some();
                    }
                }
                queue.push_back(Adopted { txn_id: l.txn_id, locks });
            }
        }
        self.undo.left.store(queue.len() as u64, Ordering::Relaxed);
        if !granted {
            log::warn!(
                "recovery undo: the locks of {} losers could not all be rebuilt (an escalated loser beside \
                 others, or two losers' rebuilt locks overlap); rolling them back before the open returns",
                queue.len()
            );
            return self.roll_back_queue(&mut queue, &|| true).map(|_| ());
        }
        for l in &losers {
            l.changes.iter().for_each(|c| self.versions.note_loser_change(l.txn_id, c));
        }
        self.undo.deferred.store(queue.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Are losers still to roll back?
    pub(super) fn losers_left(&self) -> bool {
        self.undo.left.load(Ordering::Relaxed) > 0
    }

    /// Roll back every loser left, here and now. `close` calls this (after
    /// stopping the thread).
    ///
    /// # Errors
    /// As a rollback step: an I/O error, or `Error::Corruption` for a log
    /// record that is not what the chain says.
    pub(super) fn finish_undo(&self) -> Result<()> {
        let mut queue = self.undo.queue.lock();
        self.roll_back_queue(&mut queue, &|| true).map(|_| ())
    }

    /// Roll back the losers in `queue`, oldest first, while `keep_going`
    /// says so (asked between steps). Returns how many were rolled back.
    fn roll_back_queue(&self, queue: &mut VecDeque<Adopted>, keep_going: &dyn Fn() -> bool) -> Result<u64> {
        let mut done = 0;
        while let Some(l) = queue.front() {
            if !self.roll_back_loser(l, keep_going)? {
                break;
            }
            queue.pop_front();
            done += 1;
            if self.undo.left.fetch_sub(1, Ordering::Relaxed) == 1 {
                let us = micros(self.undo.started);
                self.undo.finished_us.store(us.max(1), Ordering::Relaxed);
                log::info!(
                    "recovery undo: every loser rolled back ({} undo steps), {:.1} ms after the open",
                    self.undo.steps.load(Ordering::Relaxed),
                    ms(us)
                );
            }
        }
        Ok(done)
    }

    /// Roll loser `l` back, one step per hold of the tree latch, then drop
    /// its versions, write its END record and release its locks. Returns
    /// false, with the loser partly rolled back, if `keep_going` said stop.
    fn roll_back_loser(&self, l: &Adopted, keep_going: &dyn Fn() -> bool) -> Result<bool> {
        let env = self.txn_env();
        let mut at = None;
        loop {
            if !keep_going() {
                return Ok(false);
            }
            if env.rollback_steps(l.txn_id, Lsn::NONE, &mut at, 1)? {
                break;
            }
            self.undo.steps.fetch_add(1, Ordering::Relaxed);
        }
        // The tree holds the before-images again.
        self.versions.forget_aborted(l.txn_id);
        env.log_txn_record(l.txn_id, Body::End)?;
        self.locks.release_all(l.txn_id, &l.locks);
        log::debug!("recovery undo: loser {} rolled back", l.txn_id);
        Ok(true)
    }
}

/// The thread `ariesdb-undo`: roll back the adopted losers, oldest first,
/// then end. Stops between steps when the `Db` closes or drops, or when it
/// stops; an error of a step stops the database (the next open finishes
/// the rollback) and is logged.
pub(super) fn undo_loop(weak: Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let keep_going = || !(*inner.bg_stop.lock() || inner.stop.is_stopped() || inner.closed.load(Ordering::Acquire));
    #[cfg(test)]
    while inner.undo.held.load(Ordering::Acquire) && keep_going() {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let mut queue = inner.undo.queue.lock();
    let r = inner.roll_back_queue(&mut queue, &keep_going);
    if let Ok(n) = r {
        inner.undo.in_background.fetch_add(n, Ordering::Relaxed);
    }
    if let Err(e) = inner.guard(r) {
        if !matches!(e, Error::Failed { .. } | Error::Closed) {
            log::error!("background undo: {e}; the losers left are rolled back at the next open");
        }
    }
}
