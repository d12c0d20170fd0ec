//! Strict two-phase key locks with deadlock detection.
//!
//! Invariants:
//! - A key is held either by any number of transactions in Shared mode or by
//!   one in Exclusive mode. Locks are released only by `release_all`, at the
//!   end of a transaction (strict 2PL).
//! - Requests that cannot be granted wait in FIFO order per key; an upgrade
//!   (S to X by a holder) goes to the front. A new Shared request waits behind
//!   a queued Exclusive one, so writers are not starved.
//! - Every wait adds edges "waiter -> holders (and earlier waiters)" to the
//!   waits-for graph. Detection runs each time a transaction is about to wait,
//!   from that transaction: a cycle can only be closed by the edge being added
//!   now, so the transaction that closes it always sees it, and becomes the
//!   victim (`Error::Deadlock`).
//! - One mutex guards the whole table; waiting uses a per-manager condvar.

use std::collections::{HashMap, HashSet, VecDeque};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result, StopCause};

/// Transaction id.
pub type TxnId = u64;

/// Lock modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// For reads; compatible with other Shared holders.
    Shared,
    /// For writes; compatible with nothing.
    Exclusive,
}

#[derive(Default)]
struct KeyLock {
    holders: Vec<(TxnId, LockMode)>,
    /// Waiting requests in grant order.
    queue: VecDeque<(TxnId, LockMode)>,
}

impl KeyLock {
    fn held_by(&self, txn: TxnId) -> Option<LockMode> {
        self.holders.iter().find(|(t, _)| *t == txn).map(|&(_, m)| m)
    }

    /// Can `txn` be granted `mode` now, given it is at the head of the queue
    /// (or the queue is empty)?
    fn compatible(&self, txn: TxnId, mode: LockMode) -> bool {
        match mode {
            LockMode::Shared => self.holders.iter().all(|&(t, m)| t == txn || m == LockMode::Shared),
            LockMode::Exclusive => self.holders.iter().all(|&(t, _)| t == txn),
        }
    }

    fn grant(&mut self, txn: TxnId, mode: LockMode) -> bool {
        if let Some(h) = self.holders.iter_mut().find(|(t, _)| *t == txn) {
            if mode == LockMode::Exclusive {
                h.1 = LockMode::Exclusive;
            }
            false
        } else {
            self.holders.push((txn, mode));
            true
        }
    }
}

#[derive(Default)]
struct Table {
    /// Set when the database stopped (fail-stop): every wait ends with an
    /// error carrying this cause.
    failed: Option<StopCause>,
    keys: HashMap<u64, KeyLock>,
    /// What each waiting transaction waits for.
    waiting: HashMap<TxnId, u64>,
}

impl Table {
    /// Transactions that `txn`, waiting on `key`, waits for: the holders, and
    /// the requests queued ahead of it.
    fn blockers(&self, txn: TxnId, key: u64) -> Vec<TxnId> {
        let Some(kl) = self.keys.get(&key) else { return vec![] };
        let mut out: Vec<TxnId> = kl.holders.iter().map(|&(t, _)| t).filter(|&t| t != txn).collect();
        for &(t, _) in &kl.queue {
            if t == txn {
                break;
            }
            out.push(t);
        }
        out
    }

    /// Would `txn` waiting on `key` close a cycle? Iterative DFS.
    fn closes_cycle(&self, txn: TxnId, key: u64) -> bool {
        let mut stack = self.blockers(txn, key);
        let mut seen: HashSet<TxnId> = HashSet::new();
        while let Some(t) = stack.pop() {
            if t == txn {
                return true;
            }
            if !seen.insert(t) {
                continue;
            }
            if let Some(&k) = self.waiting.get(&t) {
                stack.extend(self.blockers(t, k));
            }
        }
        false
    }
}

/// The lock table.
pub struct LockManager {
    table: Mutex<Table>,
    cv: Condvar,
}

impl Default for LockManager {
    fn default() -> Self {
        LockManager::new()
    }
}

impl LockManager {
    /// An empty lock table.
    pub fn new() -> LockManager {
        LockManager { table: Mutex::new(Table::default()), cv: Condvar::new() }
    }

    /// Acquire `mode` on `key` for `txn`, waiting while others hold it.
    /// Ok(true): newly acquired (record it for release); Ok(false): already
    /// held (possibly upgraded). Err(Deadlock): waiting would close a cycle;
    /// `txn`'s other locks are untouched.
    pub fn lock(&self, txn: TxnId, key: u64, mode: LockMode) -> Result<bool> {
        let mut t = self.table.lock();
        if let Some(cause) = &t.failed {
            return Err(Error::Failed { cause: cause.clone() });
        }
        if let Some(r) = Self::try_grant(&mut t, txn, key, mode) {
            return Ok(r);
        }
        // Enqueue (upgrades to the front) and wait.
        let upgrade = t.keys.get(&key).is_some_and(|kl| kl.held_by(txn).is_some());
        {
            let kl = t.keys.entry(key).or_default();
            if upgrade {
                kl.queue.push_front((txn, mode));
            } else {
                kl.queue.push_back((txn, mode));
            }
        }
        t.waiting.insert(txn, key);
        if t.closes_cycle(txn, key) {
            Self::dequeue(&mut t, txn, key);
            self.cv.notify_all();
            return Err(Error::Deadlock);
        }
        loop {
            self.cv.wait(&mut t);
            if let Some(cause) = t.failed.clone() {
                Self::dequeue(&mut t, txn, key);
                return Err(Error::Failed { cause });
            }
            let kl = t.keys.get(&key).expect("a key with a waiter stays in the table");
            let at_head = kl.queue.front().map(|&(w, _)| w) == Some(txn);
            if at_head && kl.compatible(txn, mode) {
                let kl = t.keys.get_mut(&key).expect("key present");
                kl.queue.pop_front();
                let newly = kl.grant(txn, mode);
                t.waiting.remove(&txn);
                // Others queued behind may now be grantable (shared after shared).
                self.cv.notify_all();
                return Ok(newly);
            }
            // The graph may have changed while waiting (a new waiter can only
            // close a cycle through us by waiting itself, and then it detects
            // it), so no re-check is needed here.
        }
    }

    /// The database stopped because of `cause`: wake every waiter with
    /// `Error::Failed` carrying it, refuse new waits. The first cause stays.
    pub fn fail_all(&self, cause: &StopCause) {
        self.table.lock().failed.get_or_insert_with(|| cause.clone());
        self.cv.notify_all();
    }

    /// Like `lock` but never waits: Ok(None) if it would have to.
    pub fn try_lock(&self, txn: TxnId, key: u64, mode: LockMode) -> Result<Option<bool>> {
        let mut t = self.table.lock();
        Ok(Self::try_grant(&mut t, txn, key, mode))
    }

    fn try_grant(t: &mut Table, txn: TxnId, key: u64, mode: LockMode) -> Option<bool> {
        let kl = t.keys.entry(key).or_default();
        match (kl.held_by(txn), mode) {
            (Some(LockMode::Exclusive), _) | (Some(LockMode::Shared), LockMode::Shared) => return Some(false),
            _ => {}
        }
        let upgrade = kl.held_by(txn).is_some();
        // A new request must also respect the queue (FIFO); an upgrade jumps it.
        if (upgrade || kl.queue.is_empty()) && kl.compatible(txn, mode) {
            return Some(kl.grant(txn, mode));
        }
        if kl.holders.is_empty() && kl.queue.is_empty() {
            t.keys.remove(&key);
        }
        None
    }

    fn dequeue(t: &mut Table, txn: TxnId, key: u64) {
        t.waiting.remove(&txn);
        if let Some(kl) = t.keys.get_mut(&key) {
            kl.queue.retain(|&(w, _)| w != txn);
            if kl.holders.is_empty() && kl.queue.is_empty() {
                t.keys.remove(&key);
            }
        }
    }

    /// Release `txn`'s locks on `keys` and wake waiters.
    pub fn release_all(&self, txn: TxnId, keys: &[u64]) {
        let mut t = self.table.lock();
        for key in keys {
            if let Some(kl) = t.keys.get_mut(key) {
                kl.holders.retain(|&(h, _)| h != txn);
                if kl.holders.is_empty() && kl.queue.is_empty() {
                    t.keys.remove(key);
                }
            }
        }
        drop(t);
        self.cv.notify_all();
    }

    /// Keys with a holder or a waiter.
    pub fn len(&self) -> usize {
        self.table.lock().keys.len()
    }

    /// True when no key is locked.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc, Barrier};
    use std::time::Duration;

    #[test]
    fn shared_locks_coexist_exclusive_waits() {
        let m = Arc::new(LockManager::new());
        assert!(m.lock(1, 7, LockMode::Shared).unwrap());
        assert!(m.lock(2, 7, LockMode::Shared).unwrap());
        assert_eq!(m.try_lock(3, 7, LockMode::Exclusive).unwrap(), None);
        let (tx, rx) = mpsc::channel();
        let m2 = m.clone();
        let h = std::thread::spawn(move || {
            let r = m2.lock(3, 7, LockMode::Exclusive);
            tx.send(()).unwrap();
            r
        });
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "exclusive granted while shared held");
        m.release_all(1, &[7]);
        m.release_all(2, &[7]);
        rx.recv().unwrap();
        assert!(h.join().unwrap().unwrap());
        m.release_all(3, &[7]);
        assert!(m.is_empty());
    }

    #[test]
    fn upgrade_alone_and_repeat_requests() {
        let m = LockManager::new();
        assert!(m.lock(1, 1, LockMode::Shared).unwrap());
        assert!(!m.lock(1, 1, LockMode::Exclusive).unwrap());
        assert!(!m.lock(1, 1, LockMode::Shared).unwrap());
        assert_eq!(m.try_lock(2, 1, LockMode::Shared).unwrap(), None);
        m.release_all(1, &[1]);
        assert!(m.is_empty());
    }

    #[test]
    fn two_upgrades_deadlock_once() {
        let m = Arc::new(LockManager::new());
        m.lock(1, 5, LockMode::Shared).unwrap();
        m.lock(2, 5, LockMode::Shared).unwrap();
        let b = Arc::new(Barrier::new(2));
        let hs: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|t| {
                let (m, b) = (m.clone(), b.clone());
                std::thread::spawn(move || {
                    b.wait();
                    let r = m.lock(t, 5, LockMode::Exclusive);
                    if r.is_err() {
                        m.release_all(t, &[5]);
                    }
                    r.is_err()
                })
            })
            .collect();
        let victims: Vec<bool> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(victims.iter().filter(|v| **v).count(), 1);
    }

    #[test]
    fn classic_and_three_way_deadlocks() {
        for n in [2u64, 3] {
            let m = Arc::new(LockManager::new());
            for t in 0..n {
                m.lock(t, t, LockMode::Exclusive).unwrap();
            }
            let b = Arc::new(Barrier::new(n as usize));
            let hs: Vec<_> = (0..n)
                .map(|t| {
                    let (m, b) = (m.clone(), b.clone());
                    std::thread::spawn(move || {
                        b.wait();
                        let want = (t + 1) % n;
                        let r = m.lock(t, want, LockMode::Exclusive);
                        let victim = matches!(r, Err(Error::Deadlock));
                        let mut held = vec![t];
                        if !victim {
                            held.push(want);
                        }
                        m.release_all(t, &held);
                        victim
                    })
                })
                .collect();
            let victims = hs.into_iter().map(|h| h.join().unwrap()).filter(|v| *v).count();
            assert!(victims >= 1, "{n}-way deadlock not detected");
            assert!(m.is_empty());
        }
    }

    #[test]
    fn fail_all_wakes_waiters_with_an_error() {
        let m = Arc::new(LockManager::new());
        m.lock(1, 9, LockMode::Exclusive).unwrap();
        let m2 = m.clone();
        let h = std::thread::spawn(move || m2.lock(2, 9, LockMode::Shared));
        std::thread::sleep(Duration::from_millis(20));
        let cause = StopCause::Corruption { file: "btree", detail: "a loop".into() };
        m.fail_all(&cause);
        m.fail_all(&StopCause::Other { message: "later".into() });
        assert!(matches!(h.join().unwrap(), Err(Error::Failed { cause: c }) if c == cause));
        assert!(matches!(m.lock(3, 10, LockMode::Shared), Err(Error::Failed { cause: c }) if c == cause));
    }

    #[test]
    fn stress_with_retries_finishes() {
        let m = Arc::new(LockManager::new());
        let hs: Vec<_> = (0..4u64)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    let mut x = t * 7919 + 1;
                    for round in 0..200u64 {
                        let id = t * 1000 + round;
                        let mut held = Vec::new();
                        for _ in 0..3 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                            let key = (x >> 33) % 8;
                            let mode = if x & 1 == 0 { LockMode::Shared } else { LockMode::Exclusive };
                            match m.lock(id, key, mode) {
                                Ok(true) => held.push(key),
                                Ok(false) => {}
                                Err(_) => break,
                            }
                        }
                        m.release_all(id, &held);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(m.is_empty());
    }
}
