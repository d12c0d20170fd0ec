//! Strict two-phase key locks with deadlock detection, in a two-level
//! hierarchy (Gray et al.'s granularity of locks): the whole key space (the
//! root) above the keys.
//!
//! Invariants:
//! - A key is held either by any number of transactions in Shared mode or by
//!   one in Exclusive mode. Locks are released only by `release_all`, at the
//!   end of a transaction (strict 2PL).
//! - Before a key lock, a transaction holds an intention lock on the root:
//!   IntentShared for a Shared key lock, IntentExclusive for an Exclusive one.
//!   A transaction holding Shared on the root needs no Shared key lock, one
//!   holding Exclusive needs no key lock at all. So a root lock in S or X
//!   conflicts exactly with the key locks it covers (IS, IX, S, X
//!   compatibility matrix; IX together with S is taken as X).
//! - Escalation (`escalate`): a transaction holding many key locks takes S
//!   (only Shared key locks) or X on the root and releases its key locks:
//!   the table then holds O(1) entries for it, whatever the number of keys.
//! - Requests that cannot be granted wait in FIFO order per lock; an upgrade
//!   (by a holder) goes to the front. A new Shared request waits behind
//!   a queued Exclusive one, so writers are not starved.
//! - Every wait adds edges "waiter -> incompatible holders (and earlier
//!   waiters)" to the waits-for graph. Detection runs each time a
//!   transaction is about to wait, from that transaction: a cycle can only be
//!   closed by the edge being added now (holders change only by grants, and a
//!   transaction granted a lock is no longer waiting), so the transaction that
//!   closes it always sees it, and becomes the victim (`Error::Deadlock`).
//! - Every wait is bounded: a `lock` call whose waits (for the root's
//!   intention, then for the key) last longer in all than the manager's
//!   timeout (`Options::lock_timeout`) leaves the queue and the waits-for
//!   graph and fails with `Error::LockTimeout`; the transaction's other locks
//!   are untouched. Leaving only removes edges, so it never closes a cycle
//!   and detection at each new wait stays complete; the waiters it was ahead
//!   of are woken, as one of them may now be grantable.
//! - One mutex guards the whole table; waiting uses a per-manager condvar.
//! - Fail-stop: once the database has stopped (the shared `FailStop`), every
//!   request and every wait ends with `Error::Failed` carrying the first
//!   cause; the stop wakes the waiters (a listener that takes the table's
//!   mutex before notifying, so no waiter misses it). Closing the database
//!   (`close`) does the same with `Error::Closed`: a transaction left open
//!   at a stop or a close keeps its locks (its changes wait for recovery),
//!   so nobody may wait for them.

use std::collections::{HashSet, VecDeque};

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

#[cfg(test)]
use crate::error::StopCause;
use crate::error::{Error, Result};
use crate::failstop::FailStop;
use crate::types::{IdMap, TxnId};

/// The lock id of the root (the whole key space). `crate::txn::lock_key`
/// never returns it.
pub const ROOT: u64 = u64::MAX;

/// The lock id of the end of the key space: the "next key" of the last key,
/// for next-key locking (a scan that reaches the end, an insert or delete
/// past the last key). `crate::txn::lock_key` never returns it.
pub const END_OF_KEYS: u64 = u64::MAX - 1;

/// How long one `lock` call may wait, unless set (`Options::lock_timeout`).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// When a `lock` call began, and when its waits must end.
#[derive(Clone, Copy)]
struct Deadline {
    start: Instant,
    /// None: no limit (a timeout too long to add to `start`).
    at: Option<Instant>,
}

impl Deadline {
    fn after(limit: Duration) -> Deadline {
        let start = Instant::now();
        Deadline { start, at: start.checked_add(limit) }
    }

    fn passed(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    /// Wait on `cv` until notified or until the deadline.
    fn wait(&self, cv: &Condvar, t: &mut parking_lot::MutexGuard<'_, Table>) {
        match self.at {
            Some(at) => {
                let _ = cv.wait_until(t, at);
            }
            None => cv.wait(t),
        }
    }
}

/// Lock modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// On the root only: the holder takes Shared locks on keys.
    IntentShared,
    /// On the root only: the holder takes Exclusive (and Shared) locks on keys.
    IntentExclusive,
    /// For reads; compatible with other Shared holders (and IS on the root).
    Shared,
    /// For writes; compatible with nothing.
    Exclusive,
}

use LockMode::*;

impl LockMode {
    /// Can one transaction hold `self` while another holds `other`?
    fn compatible_with(self, other: LockMode) -> bool {
        match (self, other) {
            (Exclusive, _) | (_, Exclusive) => false,
            (IntentShared, _) | (_, IntentShared) => true,
            (IntentExclusive, IntentExclusive) | (Shared, Shared) => true,
            (IntentExclusive, Shared) | (Shared, IntentExclusive) => false,
        }
    }

    /// Does holding `self` give everything `want` gives?
    fn covers(self, want: LockMode) -> bool {
        match self {
            Exclusive => true,
            Shared => matches!(want, Shared | IntentShared),
            IntentExclusive => matches!(want, IntentExclusive | IntentShared),
            IntentShared => want == IntentShared,
        }
    }

    /// The weakest mode covering both (IX with S, that is SIX, is taken as X).
    fn sup(self, other: LockMode) -> LockMode {
        if self.covers(other) {
            self
        } else if other.covers(self) {
            other
        } else {
            Exclusive
        }
    }

    /// The intention a key lock in this mode needs on the root.
    fn intention(self) -> LockMode {
        match self {
            Shared | IntentShared => IntentShared,
            Exclusive | IntentExclusive => IntentExclusive,
        }
    }
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
        self.holders.iter().all(|&(t, m)| t == txn || m.compatible_with(mode))
    }

    fn grant(&mut self, txn: TxnId, mode: LockMode) -> bool {
        if let Some(h) = self.holders.iter_mut().find(|(t, _)| *t == txn) {
            h.1 = h.1.sup(mode);
            false
        } else {
            self.holders.push((txn, mode));
            true
        }
    }
}

#[derive(Default)]
struct Table {
    /// Key locks, and the root at `ROOT`.
    keys: IdMap<u64, KeyLock>,
    /// What each waiting transaction waits for.
    waiting: IdMap<TxnId, u64>,
    /// The database was closed (or its `Db` dropped): see `LockManager::close`.
    closed: bool,
}

impl Table {
    /// Transactions that `txn`, waiting on `key`, waits for: the holders whose
    /// mode conflicts with its request, and the requests queued ahead of it.
    fn blockers(&self, txn: TxnId, key: u64) -> Vec<TxnId> {
        let Some(kl) = self.keys.get(&key) else { return vec![] };
        let want = kl.queue.iter().find(|&&(t, _)| t == txn).map(|&(_, m)| m).unwrap_or(Exclusive);
        let mut out: Vec<TxnId> =
            kl.holders.iter().filter(|&&(t, m)| t != txn && !m.compatible_with(want)).map(|&(t, _)| t).collect();
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
    table: Arc<Mutex<Table>>,
    cv: Arc<Condvar>,
    stop: Arc<FailStop>,
    /// The longest one `lock` call waits in all.
    timeout: Duration,
}

impl Default for LockManager {
    fn default() -> Self {
        LockManager::new()
    }
}

impl LockManager {
    /// An empty lock table with a fail-stop state of its own and the
    /// default timeout.
    pub fn new() -> LockManager {
        LockManager::with_fail_stop(FailStop::new(), DEFAULT_LOCK_TIMEOUT)
    }

    /// An empty lock table that refuses work once `stop` has stopped, and
    /// whose `lock` calls wait at most `timeout` in all (a timeout too long
    /// to add to the clock means no limit).
    pub fn with_fail_stop(stop: Arc<FailStop>, timeout: Duration) -> LockManager {
        assert!(!timeout.is_zero(), "a lock timeout of zero (Options::validate refuses it)");
        let (table, cv) = (Arc::new(Mutex::new(Table::default())), Arc::new(Condvar::new()));
        let (t, c) = (Arc::downgrade(&table), Arc::downgrade(&cv));
        stop.on_stop(move || {
            if let (Some(t), Some(c)) = (t.upgrade(), c.upgrade()) {
                // Under the table's mutex: a waiter has either not yet checked
                // the stop (and will see it) or is waiting (and is woken).
                let _t = t.lock();
                c.notify_all();
            }
        });
        LockManager { table, cv, stop, timeout }
    }

    /// Acquire `mode` (Shared or Exclusive) on `key` for `txn`, first its
    /// intention on the root, waiting while others hold either.
    /// Ok(true): a key lock newly acquired (record it for release, and for
    /// escalation); Ok(false): nothing new to record (already held, possibly
    /// upgraded, or covered by the root lock). Err(Deadlock): waiting would
    /// close a cycle; Err(LockTimeout): the waits lasted longer than the
    /// timeout in all; either way `txn`'s other locks are untouched (an
    /// intention granted on the root stays, released with the rest).
    pub fn lock(&self, txn: TxnId, key: u64, mode: LockMode) -> Result<bool> {
        debug_assert!(key != ROOT && matches!(mode, Shared | Exclusive));
        let deadline = Deadline::after(self.timeout);
        let mut t = self.table.lock();
        let root = t.keys.get(&ROOT).and_then(|kl| kl.held_by(txn));
        if root.is_some_and(|r| r.covers(mode)) {
            return Ok(false);
        }
        if !root.is_some_and(|r| r.covers(mode.intention())) {
            self.lock_one(&mut t, txn, ROOT, mode.intention(), deadline)?;
            // S plus IX is X on the root: that covers the key too.
            if t.keys.get(&ROOT).and_then(|kl| kl.held_by(txn)).is_some_and(|r| r.covers(mode)) {
                return Ok(false);
            }
        }
        self.lock_one(&mut t, txn, key, mode, deadline)
    }

    /// Escalate: take `mode` (Shared if every key lock of `txn` is Shared,
    /// else Exclusive) on the root, waiting for other holders, then release
    /// `txn`'s key locks in `keys`. Err(Deadlock) and Err(LockTimeout) as for
    /// `lock` (the key locks are then still held).
    #[cfg(test)]
    pub fn escalate(&self, txn: TxnId, keys: &[u64], mode: LockMode) -> Result<()> {
        let deadline = Deadline::after(self.timeout);
        let mut t = self.table.lock();
        self.lock_one(&mut t, txn, ROOT, mode, deadline)?;
        Self::release_keys(&mut t, txn, keys);
        drop(t);
        self.cv.notify_all();
        Ok(())
    }

    /// Escalate only if the root lock is granted at once: Ok(false), with the
    /// key locks kept, when another transaction holds an intention or key
    /// lock that conflicts. Escalation then never makes a transaction wait
    /// for locks on keys it did not ask for.
    pub fn try_escalate(&self, txn: TxnId, keys: &[u64], mode: LockMode) -> Result<bool> {
        debug_assert!(matches!(mode, Shared | Exclusive));
        let mut t = self.table.lock();
        self.stop.check()?;
        Self::check_open(&t)?;
        if Self::try_grant(&mut t, txn, ROOT, mode).is_none() {
            return Ok(false);
        }
        Self::release_keys(&mut t, txn, keys);
        drop(t);
        self.cv.notify_all();
        Ok(true)
    }

    fn lock_one(
        &self,
        t: &mut parking_lot::MutexGuard<'_, Table>,
        txn: TxnId,
        key: u64,
        mode: LockMode,
        deadline: Deadline,
    ) -> Result<bool> {
        self.stop.check()?;
        Self::check_open(t)?;
        if let Some(r) = Self::try_grant(t, txn, key, mode) {
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
            Self::dequeue(t, txn, key);
            self.cv.notify_all();
            return Err(Error::Deadlock);
        }
        loop {
            deadline.wait(&self.cv, t);
            if let Some(cause) = self.stop.cause() {
                Self::dequeue(t, txn, key);
                return Err(Error::Failed { cause });
            }
            if t.closed {
                Self::dequeue(t, txn, key);
                return Err(Error::Closed);
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
            if deadline.passed() {
                Self::dequeue(t, txn, key);
                // Those queued behind may now be grantable.
                self.cv.notify_all();
                let waited = deadline.start.elapsed();
                debug_assert!(waited >= self.timeout);
                return Err(Error::LockTimeout { waited });
            }
            // The graph may have changed while waiting (a new waiter can only
            // close a cycle through us by waiting itself, and then it detects
            // it), so no re-check is needed here.
        }
    }

    /// The database stopped because of `cause`: wake every waiter with
    /// `Error::Failed` carrying it, refuse new waits. The first cause stays.
    #[cfg(test)]
    pub fn fail_all(&self, cause: &StopCause) {
        self.stop.stop_with(cause.clone());
    }

    /// The database closed: wake every waiter with `Error::Closed` and refuse
    /// new requests (as a stop does with `Error::Failed`). Releases still
    /// work. A transaction left open at the close keeps the locks on the
    /// keys it changed (recovery resolves the changes at the next open), so
    /// without this a waiter for one of them would wait out the timeout.
    pub fn close(&self) {
        self.table.lock().closed = true;
        self.cv.notify_all();
    }

    fn check_open(t: &Table) -> Result<()> {
        match t.closed {
            true => Err(Error::Closed),
            false => Ok(()),
        }
    }

    /// Like `lock` but never waits: Ok(None) if it would have to.
    pub fn try_lock(&self, txn: TxnId, key: u64, mode: LockMode) -> Result<Option<bool>> {
        let mut t = self.table.lock();
        self.stop.check()?;
        Self::check_open(&t)?;
        let root = t.keys.get(&ROOT).and_then(|kl| kl.held_by(txn));
        if root.is_some_and(|r| r.covers(mode)) {
            return Ok(Some(false));
        }
        if !root.is_some_and(|r| r.covers(mode.intention()))
            && Self::try_grant(&mut t, txn, ROOT, mode.intention()).is_none()
        {
            return Ok(None);
        }
        Ok(Self::try_grant(&mut t, txn, key, mode))
    }

    fn try_grant(t: &mut Table, txn: TxnId, key: u64, mode: LockMode) -> Option<bool> {
        let kl = t.keys.entry(key).or_default();
        let held = kl.held_by(txn);
        if held.is_some_and(|h| h.covers(mode)) {
            return Some(false);
        }
        let upgrade = held.is_some();
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

    /// Release one key lock `txn` holds, keeping its others and its
    /// intention on the root: the end of an instant-duration lock.
    pub fn release_one(&self, txn: TxnId, key: u64) {
        debug_assert!(key != ROOT);
        let mut t = self.table.lock();
        Self::release_keys(&mut t, txn, &[key]);
        drop(t);
        self.cv.notify_all();
    }

    fn release_keys(t: &mut Table, txn: TxnId, keys: &[u64]) {
        for key in keys {
            if let Some(kl) = t.keys.get_mut(key) {
                kl.holders.retain(|&(h, _)| h != txn);
                if kl.holders.is_empty() && kl.queue.is_empty() {
                    t.keys.remove(key);
                }
            }
        }
    }

    /// Release `txn`'s locks on `keys`, and its root lock, and wake waiters.
    pub fn release_all(&self, txn: TxnId, keys: &[u64]) {
        let mut t = self.table.lock();
        Self::release_keys(&mut t, txn, keys);
        Self::release_keys(&mut t, txn, &[ROOT]);
        drop(t);
        self.cv.notify_all();
    }

    /// Keys with a holder or a waiter (the root not counted).
    pub fn len(&self) -> usize {
        let t = self.table.lock();
        t.keys.len() - usize::from(t.keys.contains_key(&ROOT))
    }

    /// True when nothing is locked, the root included.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.table.lock().keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc, Barrier};

    #[test]
    fn shared_locks_coexist_exclusive_waits() {
        let m = Arc::new(LockManager::new());
        assert!(m.lock(TxnId(1), 7, LockMode::Shared).unwrap());
        assert!(m.lock(TxnId(2), 7, LockMode::Shared).unwrap());
        assert_eq!(m.try_lock(TxnId(3), 7, LockMode::Exclusive).unwrap(), None);
        let (tx, rx) = mpsc::channel();
        let m2 = m.clone();
        let h = std::thread::spawn(move || {
            let r = m2.lock(TxnId(3), 7, LockMode::Exclusive);
            tx.send(()).unwrap();
            r
        });
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "exclusive granted while shared held");
        m.release_all(TxnId(1), &[7]);
        m.release_all(TxnId(2), &[7]);
        rx.recv().unwrap();
        assert!(h.join().unwrap().unwrap());
        m.release_all(TxnId(3), &[7]);
        assert!(m.is_empty());
    }

    #[test]
    fn upgrade_alone_and_repeat_requests() {
        let m = LockManager::new();
        assert!(m.lock(TxnId(1), 1, LockMode::Shared).unwrap());
        assert!(!m.lock(TxnId(1), 1, LockMode::Exclusive).unwrap());
        assert!(!m.lock(TxnId(1), 1, LockMode::Shared).unwrap());
        assert_eq!(m.try_lock(TxnId(2), 1, LockMode::Shared).unwrap(), None);
        m.release_all(TxnId(1), &[1]);
        // The failed try_lock left txn 2 its intention lock on the root.
        m.release_all(TxnId(2), &[]);
        assert!(m.is_empty());
    }

    #[test]
    fn two_upgrades_deadlock_once() {
        let m = Arc::new(LockManager::new());
        m.lock(TxnId(1), 5, LockMode::Shared).unwrap();
        m.lock(TxnId(2), 5, LockMode::Shared).unwrap();
        let b = Arc::new(Barrier::new(2));
        let hs: Vec<_> = [TxnId(1), TxnId(2)]
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
                m.lock(TxnId(t), t, LockMode::Exclusive).unwrap();
            }
            let b = Arc::new(Barrier::new(n as usize));
            let hs: Vec<_> = (0..n)
                .map(|t| {
                    let (m, b) = (m.clone(), b.clone());
                    std::thread::spawn(move || {
                        b.wait();
                        let want = (t + 1) % n;
                        let r = m.lock(TxnId(t), want, LockMode::Exclusive);
                        let victim = matches!(r, Err(Error::Deadlock));
                        let mut held = vec![t];
                        if !victim {
                            held.push(want);
                        }
                        m.release_all(TxnId(t), &held);
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
        m.lock(TxnId(1), 9, LockMode::Exclusive).unwrap();
        let m2 = m.clone();
        let h = std::thread::spawn(move || m2.lock(TxnId(2), 9, LockMode::Shared));
        std::thread::sleep(Duration::from_millis(20));
        let cause = StopCause::Corruption { file: "btree", detail: "a loop".into() };
        m.fail_all(&cause);
        m.fail_all(&StopCause::Other { message: "later".into() });
        assert!(matches!(h.join().unwrap(), Err(Error::Failed { cause: c }) if c == cause));
        assert!(matches!(m.lock(TxnId(3), 10, LockMode::Shared), Err(Error::Failed { cause: c }) if c == cause));
    }

    #[test]
    fn close_wakes_waiters_and_refuses_new_requests_with_closed() {
        let m = Arc::new(LockManager::new());
        m.lock(TxnId(1), 9, LockMode::Exclusive).unwrap();
        let m2 = m.clone();
        let h = std::thread::spawn(move || m2.lock(TxnId(2), 9, LockMode::Shared));
        std::thread::sleep(Duration::from_millis(20));
        m.close();
        assert!(matches!(h.join().unwrap(), Err(Error::Closed)));
        assert!(matches!(m.lock(TxnId(3), 10, LockMode::Shared), Err(Error::Closed)));
        assert!(matches!(m.try_lock(TxnId(3), 10, LockMode::Shared), Err(Error::Closed)));
        assert!(matches!(m.try_escalate(TxnId(1), &[9], LockMode::Exclusive), Err(Error::Closed)));
        // Releases still work (the waiter's intention on the root goes with
        // its release, as after any failed wait), and nothing is left.
        m.release_all(TxnId(1), &[9]);
        m.release_all(TxnId(2), &[]);
        assert!(m.is_empty());
    }

    #[test]
    fn intention_modes_follow_the_granularity_matrix() {
        let all = [IntentShared, IntentExclusive, Shared, Exclusive];
        let ok = |a: LockMode, b: LockMode| a.compatible_with(b);
        for a in all {
            assert!(!ok(a, Exclusive));
            assert_eq!(ok(a, IntentShared), a != Exclusive);
            assert_eq!(ok(a, b_sym(a)), ok(b_sym(a), a));
        }
        assert!(ok(IntentExclusive, IntentExclusive) && ok(Shared, Shared));
        assert!(!ok(IntentExclusive, Shared) && !ok(Shared, IntentExclusive));
        assert_eq!(IntentExclusive.sup(Shared), Exclusive);
        assert_eq!(IntentShared.sup(IntentExclusive), IntentExclusive);
        assert!(Shared.covers(IntentShared) && !Shared.covers(IntentExclusive));
    }

    fn b_sym(a: LockMode) -> LockMode {
        match a {
            IntentShared => Shared,
            IntentExclusive => IntentShared,
            Shared => IntentExclusive,
            Exclusive => Shared,
        }
    }

    #[test]
    fn escalation_to_exclusive_replaces_key_locks_and_blocks_others() {
        let m = LockManager::new();
        let keys: Vec<u64> = (1..=100).collect();
        for &k in &keys {
            assert!(m.lock(TxnId(1), k, Exclusive).unwrap());
        }
        assert!(m.lock(TxnId(2), 500, Shared).unwrap());
        assert_eq!(m.len(), 101);
        // Txn 2's IS on the root conflicts with X: escalation must wait.
        m.release_all(TxnId(2), &[500]);
        m.escalate(TxnId(1), &keys, Exclusive).unwrap();
        assert_eq!(m.len(), 0, "the key locks are gone");
        // Covered: no new key lock is recorded.
        assert!(!m.lock(TxnId(1), 7, Shared).unwrap());
        assert!(!m.lock(TxnId(1), 1000, Exclusive).unwrap());
        assert_eq!(m.try_lock(TxnId(2), 500, Shared).unwrap(), None);
        assert_eq!(m.try_lock(TxnId(3), 501, Exclusive).unwrap(), None);
        m.release_all(TxnId(1), &[]);
        m.release_all(TxnId(2), &[]);
        m.release_all(TxnId(3), &[]);
        assert!(m.is_empty());
    }

    #[test]
    fn escalated_reader_blocks_writers_not_readers() {
        let m = LockManager::new();
        let keys: Vec<u64> = (1..=10).collect();
        for &k in &keys {
            m.lock(TxnId(1), k, Shared).unwrap();
        }
        m.escalate(TxnId(1), &keys, Shared).unwrap();
        assert_eq!(m.try_lock(TxnId(2), 3, Shared).unwrap(), Some(true));
        assert_eq!(m.try_lock(TxnId(3), 99, Exclusive).unwrap(), None);
        // The escalated reader may still write: its root lock becomes X once
        // the other reader is gone.
        m.release_all(TxnId(2), &[3]);
        m.release_all(TxnId(3), &[]);
        assert!(!m.lock(TxnId(1), 99, Exclusive).unwrap());
        assert_eq!(m.try_lock(TxnId(2), 3, Shared).unwrap(), None);
        m.release_all(TxnId(1), &[]);
        m.release_all(TxnId(2), &[]);
        assert!(m.is_empty());
    }

    #[test]
    fn two_writers_escalating_at_once_deadlock_once() {
        let m = Arc::new(LockManager::new());
        m.lock(TxnId(1), 1, Exclusive).unwrap();
        m.lock(TxnId(2), 2, Exclusive).unwrap();
        let b = Arc::new(Barrier::new(2));
        let hs: Vec<_> = [TxnId(1), TxnId(2)]
            .into_iter()
            .map(|t| {
                let (m, b) = (m.clone(), b.clone());
                std::thread::spawn(move || {
                    b.wait();
                    let r = m.escalate(t, &[t.get()], Exclusive);
                    let victim = matches!(r, Err(Error::Deadlock));
                    m.release_all(t, &[t.get()]);
                    victim
                })
            })
            .collect();
        let victims = hs.into_iter().map(|h| h.join().unwrap()).filter(|v| *v).count();
        assert_eq!(victims, 1);
        assert!(m.is_empty());
    }

    fn timed(limit: Duration) -> Arc<LockManager> {
        Arc::new(LockManager::with_fail_stop(FailStop::new(), limit))
    }

    #[test]
    fn a_wait_past_the_timeout_fails_and_leaves_the_queue_and_the_graph() {
        let limit = Duration::from_millis(150);
        let m = timed(limit);
        m.lock(TxnId(1), 7, Exclusive).unwrap();
        m.lock(TxnId(2), 8, Exclusive).unwrap();
        let began = Instant::now();
        let r = m.lock(TxnId(2), 7, Shared);
        let took = began.elapsed();
        assert!(matches!(r, Err(Error::LockTimeout { waited }) if waited >= limit && waited <= took), "{r:?}");
        assert!(took >= limit && took < Duration::from_secs(30), "{took:?}");
        {
            let t = m.table.lock();
            assert!(t.waiting.is_empty(), "the timed-out waiter left the waits-for graph");
            assert!(t.keys.get(&7).is_some_and(|kl| kl.queue.is_empty()), "and the queue");
        }
        // Txn 2 keeps key 8. Txn 1 waiting for it closes no cycle (txn 2
        // waits for nothing now): no deadlock, granted once txn 2 is gone.
        let m2 = m.clone();
        let h = std::thread::spawn(move || m2.lock(TxnId(1), 8, Exclusive));
        std::thread::sleep(Duration::from_millis(20));
        m.release_all(TxnId(2), &[8]);
        let r = h.join().unwrap();
        assert!(matches!(r, Ok(true) | Err(Error::LockTimeout { .. })), "{r:?}");
        m.release_all(TxnId(1), &[7, 8]);
        assert!(m.is_empty());
    }

    #[test]
    fn a_timed_out_waiter_lets_those_queued_behind_it_in() {
        let m = timed(Duration::from_millis(500));
        m.lock(TxnId(1), 5, Shared).unwrap();
        let spawn = |txn: TxnId, mode: LockMode| {
            let m = m.clone();
            std::thread::spawn(move || m.lock(txn, 5, mode))
        };
        let writer = spawn(TxnId(2), Exclusive);
        std::thread::sleep(Duration::from_millis(50));
        // Queued behind the writer (FIFO), though compatible with txn 1.
        let reader = spawn(TxnId(3), Shared);
        assert!(matches!(writer.join().unwrap(), Err(Error::LockTimeout { .. })));
        assert!(reader.join().unwrap().unwrap(), "the reader is granted once the writer gave up");
        for t in 1..=3 {
            m.release_all(TxnId(t), &[5]);
        }
        assert!(m.is_empty());
    }

    #[test]
    fn waits_for_the_root_time_out_too() {
        let m = timed(Duration::from_millis(100));
        m.lock(TxnId(1), 1, Exclusive).unwrap();
        m.lock(TxnId(2), 2, Exclusive).unwrap();
        // An escalation waiting for the other's intention lock.
        let r = m.escalate(TxnId(2), &[2], Exclusive);
        assert!(matches!(r, Err(Error::LockTimeout { .. })), "{r:?}");
        assert_eq!(m.try_lock(TxnId(3), 2, Shared).unwrap(), None, "txn 2 still holds its key");
        m.release_all(TxnId(2), &[2]);
        m.release_all(TxnId(3), &[]);
        // A key lock waiting for its intention behind an escalated writer.
        m.escalate(TxnId(1), &[1], Exclusive).unwrap();
        let r = m.lock(TxnId(2), 2, Shared);
        assert!(matches!(r, Err(Error::LockTimeout { .. })), "{r:?}");
        m.release_all(TxnId(1), &[]);
        m.release_all(TxnId(2), &[]);
        assert!(m.is_empty());
    }

    #[test]
    fn a_timeout_too_long_for_the_clock_waits_without_limit() {
        let m = timed(Duration::MAX);
        m.lock(TxnId(1), 3, Exclusive).unwrap();
        let m2 = m.clone();
        let h = std::thread::spawn(move || m2.lock(TxnId(2), 3, Exclusive));
        std::thread::sleep(Duration::from_millis(50));
        m.release_all(TxnId(1), &[3]);
        assert!(h.join().unwrap().unwrap());
        m.release_all(TxnId(2), &[3]);
        assert!(m.is_empty());
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
                            match m.lock(TxnId(id), key, mode) {
                                Ok(true) => held.push(key),
                                Ok(false) => {}
                                Err(_) => break,
                            }
                        }
                        m.release_all(TxnId(id), &held);
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
