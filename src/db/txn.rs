//! The read-write transaction of the facade: `Txn` (strict two-phase key
//! locks, next-key locking for scans, rollback on a deadlock or a lock
//! timeout), its savepoints and its scans. The work on the engine goes
//! through `txn::TxnEnv` (`Inner::txn_env`); the version store hears of
//! commits and rollbacks here (see `txn::versions`).
//!
//! Invariant: every call on a `Txn` holds its `state` mutex for the whole
//! call, so the calls of one transaction run one at a time even when reads
//! (`&self`) come from several threads or interleave with an open `Scan`.

use std::ops::{Bound, RangeBounds};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use super::snapshot::Batch;
use super::{as_ref, check_key, owned_bounds, owned_slice_bounds, prefix_bounds, Inner, KeyRange, SCAN_BATCH};
use crate::btree::{BTree, MAX_VALUE_LEN};
use crate::error::{Error, Result};
use crate::options::Durability;
use crate::page::{self, LeafCell};
use crate::txn::lock::LockMode;
use crate::txn::{gap_lock, lock, lock_key};
use crate::types::{Lsn, TxnId};
use crate::wal::Body;

/// A partial rollback point of a transaction. A plain value: it does not
/// borrow the transaction.
///
/// As in SQL, a rollback to a savepoint ends the savepoints taken after it:
/// `Txn::rollback_to` refuses them. A savepoint may be rolled back to any
/// number of times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Savepoint {
    txn_id: TxnId,
    lsn: Lsn,
    /// Its place among the transaction's savepoints (1 for the first).
    seq: u64,
}

/// Why a lock wait rolled the transaction back: kept so that
/// `Db::transaction` can retry a transaction whose closure swallowed the
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RolledBack {
    Deadlock,
    LockTimeout { waited: Duration },
}

impl RolledBack {
    pub(crate) fn error(self) -> Error {
        match self {
            RolledBack::Deadlock => Error::Deadlock,
            RolledBack::LockTimeout { waited } => Error::LockTimeout { waited },
        }
    }
}

/// The mutable part of a transaction, behind `Txn::state`.
#[derive(Debug, Default)]
struct TxnState {
    /// Key locks newly taken (for release, and counted for escalation).
    locks: Vec<u64>,
    /// Some key lock was taken in Exclusive mode (escalation takes X then).
    exclusive: bool,
    /// The lock table may hold locks of this transaction (a key or the root).
    holds_locks: bool,
    ended: bool,
    /// Set when a deadlock or a lock timeout rolled the transaction back.
    rolled_back: Option<RolledBack>,
    /// A rollback failed before its versions were forgotten, and the
    /// failure did not stop the database: the locks stay held, so that no
    /// other transaction writes these keys over versions that are neither
    /// committed nor gone (the version store's invariant: the writers of a
    /// key follow one another).
    keep_locks: bool,
    /// Savepoints taken so far (the `seq` of the latest).
    savepoints: u64,
    /// The savepoints a `rollback_to` has rolled back past: those whose
    /// `seq` lies in one of these ranges `(after, upto]`, kept in ascending
    /// disjoint order. A rollback to the savepoint `after` adds
    /// `(after, savepoints]`, swallowing the ranges above `after`; a
    /// savepoint taken later gets a `seq` above them all.
    rolled_past: Vec<(u64, u64)>,
}

impl TxnState {
    /// Whether a rollback to an earlier savepoint ended the savepoint `seq`.
    fn rolled_past(&self, seq: u64) -> bool {
        self.rolled_past.iter().any(|&(after, upto)| after < seq && seq <= upto)
    }

    /// A rollback to the savepoint `seq` ended every savepoint taken after it.
    fn roll_past_after(&mut self, seq: u64) {
        while self.rolled_past.last().is_some_and(|&(after, _)| after >= seq) {
            self.rolled_past.pop();
        }
        if self.savepoints > seq {
            self.rolled_past.push((seq, self.savepoints));
        }
    }
}

/// A transaction. Dropping it without `commit` rolls it back.
///
/// Its reads and writes lock keys until it ends (strict two-phase locking),
/// waiting for conflicting transactions. A wait that would close a cycle
/// (`Error::Deadlock`) or that lasts longer than `Options::lock_timeout`
/// (`Error::LockTimeout`) rolls the transaction back before the call returns
/// the error; it is then ended (every later call returns `Error::TxnEnded`)
/// and can be retried from the start (`Error::is_retryable`, or let
/// `Db::transaction` do it).
///
/// Writes (`put`, `delete`, savepoints, `commit`) take `&mut self`; reads
/// (`get`, `get_for_update`, scans) take `&self`, so a helper that only
/// reads can take `&Txn`, and a point read may run while a scan of the same
/// transaction is open. `Txn` is `Send` and `Sync`; the calls of one
/// transaction run one at a time.
///
/// Keys and values are anything that is `AsRef<[u8]>`: byte strings,
/// `&str`, `String`, `Vec<u8>`, arrays.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-txn-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let db = ariesdb::Db::open(&dir)?;
/// let mut tx = db.begin()?;
/// tx.put("user:1", "ada")?;
/// tx.put("user:2", "grace")?;
/// tx.put(b"other", [0u8, 1, 2])?;
/// let names: Vec<Vec<u8>> = tx.scan_prefix("user:")?.map(|e| e.map(|(_, v)| v)).collect::<Result<_, _>>()?;
/// assert_eq!(names, [b"ada".to_vec(), b"grace".to_vec()]);
/// let sp = tx.savepoint()?;
/// tx.delete("user:1")?;
/// tx.rollback_to(&sp)?; // the delete is undone, the puts stay
/// assert_eq!(tx.get("user:1")?.as_deref(), Some(&b"ada"[..]));
/// tx.commit()?;
/// # db.close()?; let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), ariesdb::Error>(())
/// ```
pub struct Txn {
    inner: Arc<Inner>,
    id: TxnId,
    state: Mutex<TxnState>,
}

impl std::fmt::Debug for Txn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Txn");
        d.field("id", &self.id.get());
        // Never block a Debug print on a call in progress on another thread.
        if let Some(st) = self.state.try_lock() {
            d.field("ended", &st.ended).field("locks_taken", &st.locks.len());
        }
        d.finish_non_exhaustive()
    }
}

/// The state of a transaction, held for one call.
type St<'a> = MutexGuard<'a, TxnState>;

impl Txn {
    /// A transaction `id` that has written nothing and holds no lock.
    pub(super) fn new(inner: Arc<Inner>, id: TxnId) -> Txn {
        Txn { inner, id, state: Mutex::new(TxnState::default()) }
    }

    /// This transaction's id.
    pub fn id(&self) -> u64 {
        self.id.get()
    }

    /// Whether a deadlock or a lock timeout rolled this transaction back,
    /// and which.
    pub(crate) fn rolled_back(&self) -> Option<RolledBack> {
        self.state.lock().rolled_back
    }

    fn check_active(&self, st: &TxnState) -> Result<()> {
        if st.ended {
            return Err(Error::TxnEnded);
        }
        self.inner.check_ok()
    }

    /// Take `mode` on `key`, waiting for other holders. A deadlock or a wait
    /// past `Options::lock_timeout` rolls this transaction back and returns
    /// `Error::Deadlock` or `Error::LockTimeout`.
    fn lock(&self, st: &mut St<'_>, key: &[u8], mode: LockMode) -> Result<()> {
        self.lock_id(st, lock_key(key), mode)
    }

    /// Wait until no other transaction holds a lock on `k` that conflicts
    /// with `mode`, keeping nothing: an instant-duration lock. An insert
    /// takes one, exclusive, on the gap it enters (ARIES/KVL), so that it
    /// never enters a gap a scan or a delete has locked; a delete takes one,
    /// shared, on the key after it, so that it never locks the gap before an
    /// uncommitted insert (see `delete`).
    fn lock_instant(&self, st: &mut St<'_>, k: u64, mode: LockMode) -> Result<()> {
        st.holds_locks = true;
        let r = self.inner.locks.lock(self.id, k, mode).map(|newly| {
            if newly {
                self.inner.locks.release_one(self.id, k);
            }
        });
        self.lock_failure_rolls_back(st, r)
    }

    /// Take `mode` on lock id `k` until the transaction ends.
    fn lock_id(&self, st: &mut St<'_>, k: u64, mode: LockMode) -> Result<()> {
        st.holds_locks = true;
        let r = self.inner.locks.lock(self.id, k, mode).and_then(|newly| {
            if newly {
                st.locks.push(k);
                st.exclusive |= mode == LockMode::Exclusive;
            }
            self.escalate_if_needed(st)
        });
        self.lock_failure_rolls_back(st, r)
    }

    /// Past `Options::lock_escalation_keys` key locks, trade them for one lock
    /// on the whole key space (Shared if all were Shared, else Exclusive), so
    /// the lock table stays bounded whatever the number of keys touched.
    /// Only when that lock is granted at once: escalation never makes this
    /// transaction wait for others that hold no key it asked for (two such
    /// transactions driven from one thread would otherwise hang). While
    /// others hold locks, the key locks stay and the next lock retries.
    fn escalate_if_needed(&self, st: &mut TxnState) -> Result<()> {
        let limit = self.inner.opts.lock_escalation_keys;
        if limit == 0 || st.locks.len() <= limit {
            return Ok(());
        }
        let mode = if st.exclusive { LockMode::Exclusive } else { LockMode::Shared };
        if self.inner.locks.try_escalate(self.id, &st.locks, mode)? {
            st.locks = Vec::new();
            self.inner.counters.lock_escalations.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A deadlock or a lock timeout rolls this transaction back (it is then
    /// ended: later calls return `Error::TxnEnded`) and returns the error;
    /// an error of the rollback itself is returned instead.
    fn lock_failure_rolls_back(&self, st: &mut TxnState, r: Result<()>) -> Result<()> {
        let (counter, cause) = match &r {
            Ok(()) => return Ok(()),
            Err(Error::Deadlock) => (&self.inner.counters.deadlocks, RolledBack::Deadlock),
            Err(Error::LockTimeout { waited }) => {
                (&self.inner.counters.lock_timeouts, RolledBack::LockTimeout { waited: *waited })
            }
            Err(_) => return r,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.abort_inner(st)?;
        st.rolled_back = Some(cause);
        debug_assert!(st.ended && !st.holds_locks);
        r
    }

    /// Insert or overwrite. Takes the key's exclusive lock, held until the
    /// transaction ends, waiting while another transaction holds the key.
    ///
    /// # Errors
    /// - `Error::TooLarge` for a key or value past the limits,
    ///   `Error::InvalidArgument` for an empty key; the transaction stays
    ///   open.
    /// - `Error::Deadlock` if waiting for the lock would close a cycle, and
    ///   `Error::LockTimeout` if the wait lasted longer than
    ///   `Options::lock_timeout`: both retryable; this transaction has then
    ///   been rolled back, and every later call on it returns
    ///   `Error::TxnEnded`.
    /// - `Error::TxnEnded` once the transaction has ended; `Error::Failed` or
    ///   `Error::Closed` once the database stopped or closed (a lock wait is
    ///   interrupted by either); an I/O error of the change stops the
    ///   database.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.put_bytes(key.as_ref(), value.as_ref())
    }

    fn put_bytes(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut st = self.state.lock();
        self.check_active(&st)?;
        check_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::TooLarge { what: "value", len: value.len(), max: MAX_VALUE_LEN });
        }
        self.lock(&mut st, key, LockMode::Exclusive)?;
        let overflow_pages = value.len().div_ceil(page::overflow_capacity(self.inner.page_size));
        let (id, inner) = (self.id, &self.inner);
        loop {
            // The Db may have been closed or dropped while this waited.
            inner.check_ok()?;
            // An insert enters the gap before its next key: it waits for a
            // scan or delete holding that key's lock (instant duration).
            //
            // If this transaction holds that gap exclusively already, one
            // of its deletes widened it, and the new key splits it: the part
            // before the key becomes the gap before the key, which must stay
            // locked as well (to the end of the transaction). Else another
            // transaction could insert there while the delete is
            // uncommitted, and a scan would read past the deleted key (in
            // "a", "b", "e": delete "b", insert "c"; another inserts "bb"; a
            // scan reads "a", "bb", waits at "c", and once the rollback has
            // put "b" back goes on after "bb").
            let mut taken = None;
            let r = inner.txn_env().with_txn_ctx(id, overflow_pages, |tree, ctx| {
                let mut blocked = None;
                tree.put_gated(ctx, key, value, |exists, next| {
                    if !exists {
                        let nk = gap_lock(next);
                        match inner.locks.try_lock(id, nk, LockMode::Exclusive)? {
                            None => {
                                blocked = Some((nk, false));
                                return Ok(false);
                            }
                            Some(true) => inner.locks.release_one(id, nk),
                            Some(false) => {
                                let gk = gap_lock(Some(key));
                                match inner.locks.try_lock(id, gk, LockMode::Exclusive)? {
                                    None => {
                                        blocked = Some((gk, true));
                                        return Ok(false);
                                    }
                                    Some(true) => taken = Some(gk),
                                    Some(false) => {}
                                }
                            }
                        }
                    }
                    Ok(true)
                })?;
                Ok(blocked)
            });
            let r = inner.guard(r)?;
            if let Some(gk) = taken.take() {
                st.locks.push(gk);
                st.exclusive = true;
                let e = self.escalate_if_needed(&mut st);
                self.lock_failure_rolls_back(&mut st, e)?;
            }
            match r {
                None => return Ok(()),
                Some((lk, false)) => self.lock_instant(&mut st, lk, LockMode::Exclusive)?,
                Some((lk, true)) => self.lock_id(&mut st, lk, LockMode::Exclusive)?,
            }
        }
    }

    /// Read a key; sees this transaction's own writes. Takes the key's
    /// shared lock, held until the transaction ends, waiting while another
    /// transaction writes the key. To read a key and then write it, use
    /// `get_for_update`: two transactions that both `get` a key and then
    /// `put` it wait for each other, and one fails with `Error::Deadlock`.
    ///
    /// # Errors
    /// - `Error::InvalidArgument` for an empty key, `Error::TooLarge` for a
    ///   key past the limit; the transaction stays open.
    /// - `Error::Deadlock` if waiting for the lock would close a cycle, and
    ///   `Error::LockTimeout` if the wait lasted longer than
    ///   `Options::lock_timeout` (as when another transaction driven from
    ///   this same thread holds the key exclusively): both retryable; this
    ///   transaction has then been rolled back, and every later call on it
    ///   returns `Error::TxnEnded`.
    /// - `Error::TxnEnded` once the transaction has ended; `Error::Failed` or
    ///   `Error::Closed` once the database stopped or closed;
    ///   `Error::Corruption` for a damaged page.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.read(key.as_ref(), LockMode::Shared)
    }

    /// Read a key to write it back: like `get`, but takes the key's
    /// exclusive lock at once, as `put` would. A read-modify-write
    /// (read a balance, write it back changed) then never upgrades a shared
    /// lock: two transactions doing it on the same key run one after the
    /// other instead of deadlocking. The lock is held until the transaction
    /// ends, whether or not it writes the key, and it makes every other
    /// transaction's `get` of the key wait (read-only snapshots do not).
    /// Transactions that take several keys this way can still deadlock if
    /// they take them in different orders; take them in one order (sorted,
    /// say) to avoid it.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-gfu-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let db = ariesdb::Db::open(&dir)?;
    /// let mut tx = db.begin()?;
    /// let n = tx.get_for_update(b"counter")?.map_or(0, |v| v[0]);
    /// tx.put(b"counter", [n + 1])?;
    /// tx.commit()?;
    /// # db.close()?; let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// As `get`: `Error::Deadlock` and `Error::LockTimeout` (retryable) roll
    /// this transaction back, and every later call on it returns
    /// `Error::TxnEnded`; a bad key leaves it open; `Error::Failed`,
    /// `Error::Closed`, `Error::Corruption` as for `get`.
    pub fn get_for_update(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.read(key.as_ref(), LockMode::Exclusive)
    }

    /// Take `mode` on `key`, then read it.
    fn read(&self, key: &[u8], mode: LockMode) -> Result<Option<Vec<u8>>> {
        let mut st = self.state.lock();
        self.check_active(&st)?;
        check_key(key)?;
        self.lock(&mut st, key, mode)?;
        self.inner.check_ok()?;
        let r = self.inner.read_latch().and_then(|_r| self.inner.tree().get(key));
        self.inner.guard_read(r)
    }

    /// Remove a key; true if it existed. Locks the key as `put` does.
    ///
    /// # Errors
    /// As `put`: `Error::Deadlock` and `Error::LockTimeout` (retryable) roll
    /// this transaction back, and every later call on it returns
    /// `Error::TxnEnded`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.delete_bytes(key.as_ref())
    }

    fn delete_bytes(&self, key: &[u8]) -> Result<bool> {
        let mut st = self.state.lock();
        self.check_active(&st)?;
        check_key(key)?;
        self.lock(&mut st, key, LockMode::Exclusive)?;
        let (id, inner) = (self.id, &self.inner);
        loop {
            inner.check_ok()?;
            // A delete locks the gap before its next key, which it widens, to
            // the end of the transaction (exclusive: a scan cannot pass it
            // until the delete ends), and the gap before the key itself,
            // which it merges into that one: a lock another transaction held
            // there would otherwise guard nothing once the delete commits
            // (delete b, then another transaction deletes c and commits: b's
            // lock on the gap before c no longer stands between a scan and
            // the uncommitted delete of b). A delete of a missing key only
            // reads the gap it would be in (shared).
            //
            // First, the next key must not be another transaction's
            // uncommitted insert: the rollback of that insert would remove
            // the key without a lock, merging the gap locked here into the
            // one after it, and a scan would then pass over this uncommitted
            // delete under that gap's lock (found by the mixed concurrency
            // test). So the delete waits for any writer of the next key
            // (shared, instant duration). Once the next key is committed,
            // only a delete can remove it, and that delete needs the
            // exclusive lock on the gap before it, held here.
            let mut taken: Vec<(u64, LockMode)> = Vec::new();
            let r = inner.txn_env().with_txn_ctx(id, 0, |tree, ctx| {
                let mut blocked = None;
                let done = tree.delete_gated(ctx, key, |exists, next| {
                    if let (true, Some(n)) = (exists, next) {
                        let nk = lock_key(n);
                        match inner.locks.try_lock(id, nk, LockMode::Shared)? {
                            None => {
                                blocked = Some((nk, LockMode::Shared, true));
                                return Ok(false);
                            }
                            Some(true) => inner.locks.release_one(id, nk),
                            Some(false) => {}
                        }
                    }
                    let nk = gap_lock(next);
                    let wanted = match exists {
                        true => vec![(nk, LockMode::Exclusive), (gap_lock(Some(key)), LockMode::Exclusive)],
                        false => vec![(nk, LockMode::Shared)],
                    };
                    for (lk, mode) in wanted {
                        match inner.locks.try_lock(id, lk, mode)? {
                            None => {
                                blocked = Some((lk, mode, false));
                                return Ok(false);
                            }
                            Some(true) => taken.push((lk, mode)),
                            Some(false) => {}
                        }
                    }
                    Ok(true)
                })?;
                Ok(match (done, blocked) {
                    (Some(existed), _) => Ok(existed),
                    (None, Some(b)) => Err(b),
                    (None, None) => unreachable!("the gate refuses only when blocked"),
                })
            });
            let r = inner.guard(r)?;
            if !taken.is_empty() {
                for (lk, mode) in taken {
                    st.locks.push(lk);
                    st.exclusive |= mode == LockMode::Exclusive;
                }
                let r = self.escalate_if_needed(&mut st);
                self.lock_failure_rolls_back(&mut st, r)?;
            }
            match r {
                Ok(existed) => return Ok(existed),
                Err((lk, mode, true)) => self.lock_instant(&mut st, lk, mode)?,
                Err((lk, mode, false)) => self.lock_id(&mut st, lk, mode)?,
            }
        }
    }

    /// Entries in `range`, in ascending key order. Each key returned is locked
    /// (shared) until the transaction ends, and so is the gap before it and
    /// the key after the range (next-key locking), so the same range read
    /// twice gives the same entries. `range` is `..`, `ariesdb::range(a, b)`,
    /// or any pair of `Bound<&[u8]>`; for `a..b` over strings or arrays, see
    /// `scan_range`. Entries are read in batches of 64 under the tree latch
    /// (held shared), so writers are delayed by one batch at most.
    ///
    /// ```
    /// use std::ops::Bound;
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-scan-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let db = ariesdb::Db::open(&dir)?;
    /// let mut tx = db.begin()?;
    /// for (k, v) in [("apple", "1"), ("banana", "2"), ("cherry", "3")] {
    ///     tx.put(k, v)?;
    /// }
    /// // Everything, in key order (bytewise).
    /// let all = tx.scan(..)?.collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(all[0], (b"apple".to_vec(), b"1".to_vec()));
    /// assert_eq!(all.len(), 3);
    /// // [b, c): the half-open range of `ariesdb::range`.
    /// let mut keys = Vec::new();
    /// for entry in tx.scan(ariesdb::range(b"b", b"c"))? {
    ///     let (key, _value) = entry?;
    ///     keys.push(key);
    /// }
    /// assert_eq!(keys, [b"banana".to_vec()]);
    /// // Any pair of bounds; here everything after "banana".
    /// let after: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Excluded(b"banana"), Bound::Unbounded);
    /// assert_eq!(tx.scan(after)?.count(), 1);
    /// tx.commit()?;
    /// # db.close()?; let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Error::TxnEnded` once the transaction has ended, `Error::Failed` or
    /// `Error::Closed` once the database stopped or closed. The scan's items
    /// may be errors too: a lock wait for a key the scan reaches fails with
    /// `Error::Deadlock` or `Error::LockTimeout` as in `get` (the transaction
    /// is rolled back, the scan ends, and later calls return
    /// `Error::TxnEnded`).
    pub fn scan<R: RangeBounds<[u8]>>(&self, range: R) -> Result<Scan<'_>> {
        let (lo, hi) = owned_slice_bounds(&range);
        self.scan_in(lo, hi, false)
    }

    /// Entries in `range`, in descending key order, locked as by `scan`.
    ///
    /// # Errors
    /// As `scan`.
    pub fn scan_rev<R: RangeBounds<[u8]>>(&self, range: R) -> Result<Scan<'_>> {
        let (lo, hi) = owned_slice_bounds(&range);
        self.scan_in(lo, hi, true)
    }

    /// As `scan`, for a range of anything that is `AsRef<[u8]>`:
    /// `"a".."m"`, `b"k1"..=b"k9"`, `start..` over a `Vec<u8>`. (A full range
    /// `..` needs `scan(..)`: it names no key type.)
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-range-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let db = ariesdb::Db::open(&dir)?;
    /// let mut tx = db.begin()?;
    /// for k in ["a", "b", "c", "d"] {
    ///     tx.put(k, "v")?;
    /// }
    /// let keys: Vec<Vec<u8>> = tx.scan_range("b".."d")?.map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    /// assert_eq!(keys, [b"b".to_vec(), b"c".to_vec()]);
    /// # tx.commit()?; db.close()?; let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// As `scan`.
    pub fn scan_range(&self, range: impl KeyRange) -> Result<Scan<'_>> {
        let (lo, hi) = owned_bounds(&range);
        self.scan_in(lo, hi, false)
    }

    /// As `scan_range`, in descending key order.
    ///
    /// # Errors
    /// As `scan`.
    pub fn scan_range_rev(&self, range: impl KeyRange) -> Result<Scan<'_>> {
        let (lo, hi) = owned_bounds(&range);
        self.scan_in(lo, hi, true)
    }

    /// The entries whose keys start with `prefix`, in ascending key order,
    /// locked as by `scan`. For descending order:
    /// `scan_range_rev(ariesdb::prefix_range(prefix))`.
    ///
    /// # Errors
    /// As `scan`.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<Scan<'_>> {
        let (lo, hi) = prefix_bounds(prefix.as_ref());
        self.scan_in(lo, hi, false)
    }

    fn scan_in(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>, reverse: bool) -> Result<Scan<'_>> {
        self.check_active(&self.state.lock())?;
        Ok(Scan { txn: self, lo, hi, reverse, end_locked: false, batch: Batch::default(), done: false })
    }

    /// A point to roll back to later.
    ///
    /// # Errors
    /// `Error::TxnEnded` once the transaction has ended; `Error::Failed` or
    /// `Error::Closed` once the database stopped or closed.
    pub fn savepoint(&mut self) -> Result<Savepoint> {
        let mut st = self.state.lock();
        self.check_active(&st)?;
        let lsn = self.inner.txns.lock().get(self.id)?.last_lsn;
        st.savepoints += 1;
        Ok(Savepoint { txn_id: self.id, lsn, seq: st.savepoints })
    }

    /// Undo everything done after `sp`, keep what came before. Locks stay
    /// held. Undo writes compensation log records (CLRs), so a crash in the
    /// middle of it never undoes anything twice (ARIES, Mohan et al. 1992,
    /// section 7).
    ///
    /// `sp` stays usable: rolling back to it again undoes what was done since.
    /// The savepoints taken after `sp` end (as SQL's `ROLLBACK TO SAVEPOINT`
    /// destroys them): the state they marked is gone.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-sp-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let db = ariesdb::Db::open(&dir)?;
    /// let mut tx = db.begin()?;
    /// tx.put("kept", "1")?;
    /// let sp = tx.savepoint()?;
    /// tx.put("dropped", "2")?;
    /// tx.rollback_to(&sp)?;
    /// tx.put("after", "3")?; // the transaction goes on
    /// tx.commit()?;
    /// let snap = db.begin_read()?;
    /// assert!(snap.get("kept")?.is_some() && snap.get("after")?.is_some());
    /// assert_eq!(snap.get("dropped")?, None);
    /// # drop(snap); db.close()?; let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Error::InvalidArgument`, changing nothing (the transaction stays
    /// open), for a savepoint of another transaction, or for one that an
    /// earlier `rollback_to` rolled back past (taken after the savepoint
    /// that rollback went back to); `Error::TxnEnded`, `Error::Failed` and
    /// `Error::Closed` as for `put`; an I/O error of the undo stops the
    /// database.
    pub fn rollback_to(&mut self, sp: &Savepoint) -> Result<()> {
        let mut st = self.state.lock();
        self.check_active(&st)?;
        if sp.txn_id != self.id {
            return Err(Error::InvalidArgument(format!(
                "savepoint of transaction {} used in transaction {}",
                sp.txn_id, self.id
            )));
        }
        if st.rolled_past(sp.seq) {
            return Err(Error::InvalidArgument(format!(
                "savepoint {} of transaction {} was rolled back past: a rollback_to an earlier savepoint \
                 undid what it marks",
                sp.seq, self.id
            )));
        }
        let r = self.inner.txn_env().rollback_to(self.id, sp.lsn);
        self.inner.guard(r)?;
        st.roll_past_after(sp.seq);
        Ok(())
    }

    /// Commit. With `Durability::Immediate` this returns after the commit is on
    /// stable storage; with `Durability::Eventual`, before.
    ///
    /// Concurrent committers share one log fsync (group commit). The
    /// committer that leads an fsync may first wait for the other threads
    /// that the previous fsync served to commit too: at most half the last
    /// fsync's time and at most 1 ms, and never when it commits alone
    /// (`Stats::wal_group_waits`).
    ///
    /// # Errors
    /// `Error::TxnEnded` if a deadlock or lock timeout already rolled the
    /// transaction back; `Error::Failed` or `Error::Closed` once the
    /// database stopped or closed; an I/O error writing or flushing the
    /// commit record stops the database (the commit is then not
    /// acknowledged: after reopening it is there or not, all or nothing).
    pub fn commit(self) -> Result<()> {
        let mut st = self.state.lock();
        self.check_active(&st)?;
        st.ended = true;
        let wrote = !self.inner.txns.lock().get(self.id)?.last_lsn.is_none();
        if wrote {
            let r = self.inner.txn_env().log_txn_record(self.id, Body::Commit);
            let lsn = self.inner.guard(r)?;
            // Pairs with the fence in `Db::drop`: a commit whose record the
            // drop's flush may have missed sees `closed` and flushes itself.
            std::sync::atomic::fence(Ordering::SeqCst);
            if self.inner.opts.durability == Durability::Immediate || self.inner.closed.load(Ordering::SeqCst) {
                let r = self.inner.wal.flush_commit(lsn);
                self.inner.guard(r)?;
            }
            // Acknowledged: snapshots begun from now on see it. Before the
            // locks go, so that per key versions stay in commit order.
            self.inner.versions.publish_commit(self.id);
        }
        self.inner.locks.release_all(self.id, &st.locks);
        st.locks.clear();
        st.holds_locks = false;
        if wrote {
            let r = self.inner.txn_env().log_txn_record(self.id, Body::End);
            self.inner.guard(r)?;
            // Keep the log bounded when commits outpace the background
            // thread. The commit itself is done: a failed checkpoint stops
            // the database (later calls say why) but does not undo it.
            let r = self.inner.checkpoint_if_due();
            let _ = self.inner.guard(r);
        } else {
            self.inner.txns.lock().active_txns.remove(&self.id);
        }
        self.inner.counters.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Roll back and end the transaction (as dropping it does, but with the
    /// errors reported).
    ///
    /// # Errors
    /// `Error::TxnEnded` if it had already ended; `Error::Failed` or
    /// `Error::Closed` once the database stopped or closed; an I/O error of
    /// the undo stops the database (recovery finishes the rollback at the
    /// next open).
    pub fn abort(self) -> Result<()> {
        let mut st = self.state.lock();
        self.check_active(&st)?;
        self.abort_inner(&mut st)
    }

    fn abort_inner(&self, st: &mut TxnState) -> Result<()> {
        st.ended = true;
        let wrote = self.inner.txns.lock().get(self.id).map(|e| !e.last_lsn.is_none()).unwrap_or(false);
        let mut forgotten = !wrote;
        let r = (|| {
            if wrote {
                let env = self.inner.txn_env();
                env.log_txn_record(self.id, Body::Abort)?;
                env.rollback_to(self.id, Lsn::NONE)?;
                // The tree holds the before-images again.
                self.inner.versions.forget_aborted(self.id);
                forgotten = true;
                env.log_txn_record(self.id, Body::End)?;
            } else {
                self.inner.txns.lock().active_txns.remove(&self.id);
            }
            Ok(())
        })();
        // An I/O error stops the database here, before any lock goes: a
        // transaction that then takes one of these keys finds the database
        // stopped before it changes anything. Released earlier, a waiter
        // could take a key and write over a version of this transaction
        // that is neither committed nor gone (the version store's
        // "two open writers of one key"; seen about once in 200 runs of
        // concurrent_transfers_conserve_money_across_a_crash).
        let r = self.inner.guard(r);
        st.keep_locks = !forgotten && self.inner.check_ok().is_ok();
        if !st.keep_locks {
            self.inner.locks.release_all(self.id, &st.locks);
            st.locks.clear();
            st.holds_locks = false;
        }
        self.inner.counters.aborts.fetch_add(1, Ordering::Relaxed);
        r?;
        if wrote {
            // As after a commit: the log this transaction held may go now.
            // The rollback is done whatever happens.
            let r = self.inner.checkpoint_if_due();
            let _ = self.inner.guard(r);
        }
        Ok(())
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if !st.ended && self.inner.check_ok().is_ok() {
            let _ = self.abort_inner(&mut st);
        }
        // Whatever happened (a failed commit, a stopped or closed database),
        // a dropped transaction holds no locks: once the database stopped or
        // closed, a waiter that gets one finds out before it changes
        // anything. Only a rollback that failed without stopping it keeps
        // them (`TxnState::keep_locks`).
        if st.holds_locks && !st.keep_locks {
            self.inner.locks.release_all(self.id, &st.locks);
            st.locks.clear();
            st.holds_locks = false;
        }
    }
}

/// An iterator over a range of entries, in ascending (`Txn::scan`) or
/// descending (`Txn::scan_rev`) key order; the range left to read shrinks
/// from the start (ascending) or the end (descending).
///
/// Besides `Iterator` (an owned key and value per entry), `next_entry`
/// lends each entry without copying it out of the scan's buffer.
pub struct Scan<'t> {
    txn: &'t Txn,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    reverse: bool,
    /// The gap at the end of the range is locked (next-key locking).
    end_locked: bool,
    batch: Batch,
    done: bool,
}

impl std::fmt::Debug for Scan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("txn", &self.txn.id.get())
            .field("reverse", &self.reverse)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Scan<'_> {
    /// The next entry, borrowed from the scan until the next call: the same
    /// entries in the same order, locked the same way, as the iterator,
    /// without an allocation per entry.
    ///
    /// # Errors
    /// As the iterator's items: see `Txn::scan`. After an error the scan is
    /// over (`Ok(None)`).
    #[inline]
    pub fn next_entry(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        if self.batch.next >= self.batch.entries.len() {
            if self.done {
                return Ok(None);
            }
            if let Err(e) = self.fill() {
                // The entries of the batch read before the error (a lock
                // wait that failed, say) are not handed out.
                self.batch.clear();
                self.done = true;
                return Err(e);
            }
        }
        Ok(self.batch.take())
    }

    /// The bound the scan moves: the start ascending, the end descending.
    fn near_bound(&mut self) -> &mut Bound<Vec<u8>> {
        match self.reverse {
            false => &mut self.lo,
            true => &mut self.hi,
        }
    }

    /// Past the last entry of the batch, which was read: the scan goes on
    /// after it.
    fn move_past_last(&mut self) {
        if let Some(k) = self.batch.last_key().map(<[u8]>::to_vec) {
            *self.near_bound() = Bound::Excluded(k);
        }
    }

    /// The locks at the end of the range (`hi` as given): the gap before the
    /// first key after it, and that key itself, since deleting the key
    /// would merge the gap into the next one and let an insert into the
    /// range pass under another lock (ARIES/KVL locks the next key whole).
    /// Past the last key: the end marker.
    fn end_locks(&self, tree: &BTree<'_>) -> Result<Vec<u64>> {
        let from = match as_ref(&self.hi) {
            Bound::Included(k) => Bound::Excluded(k),
            Bound::Excluded(k) => Bound::Included(k),
            Bound::Unbounded => return Ok(vec![lock::END_OF_KEYS]),
        };
        let mut next = None;
        tree.scan(from, Bound::Unbounded, |k, _| {
            next = Some(k.to_vec());
            Ok(false)
        })?;
        Ok(match next {
            Some(k) => vec![gap_lock(Some(&k)), lock_key(&k)],
            None => vec![lock::END_OF_KEYS],
        })
    }

    /// Try the shared locks at the end of the range, under the latch: None
    /// once all are held, else a lock id to wait for.
    fn try_end_lock(&mut self, st: &mut TxnState, inner: &Inner, tree: &BTree<'_>) -> Result<Option<u64>> {
        for lk in inner.guard_read(self.end_locks(tree))? {
            match inner.locks.try_lock(self.txn.id, lk, LockMode::Shared)? {
                None => return Ok(Some(lk)),
                Some(true) => st.locks.push(lk),
                Some(false) => {}
            }
        }
        self.end_locked = true;
        Ok(None)
    }

    /// Read the next batch, locking (shared, to the end of the transaction)
    /// each key returned, the gap before it, and the gap at the end of the
    /// range (next-key locking, ARIES/KVL): an insert into the range then
    /// needs a lock this scan holds, and so does a delete of a key in it
    /// (which locks the gap it widens). A lock that is not granted at once is waited for
    /// without the tree latch, and the scan then reads again from just after
    /// what it has returned: what changed meanwhile is seen. Kept out of
    /// line: `next_entry`'s path within a batch stays short.
    #[inline(never)]
    fn fill(&mut self) -> Result<()> {
        let txn = self.txn;
        let mut st = txn.state.lock();
        self.batch.clear();
        loop {
            txn.check_active(&st)?;
            let mut blocked: Option<u64> = None;
            {
                let inner = &txn.inner;
                let _r = inner.guard_read(inner.read_latch())?;
                let tree = inner.tree();
                st.holds_locks = true;
                let id = txn.id;
                // Descending, the lock after the range comes first.
                if self.reverse && !self.end_locked {
                    blocked = self.try_end_lock(&mut st, inner, &tree)?;
                }
                if blocked.is_none() {
                    let (locks, batch) = (&mut st.locks, &mut self.batch);
                    let visit = |k: &[u8], cell: &LeafCell<'_>| {
                        // The key, and the gap before it.
                        for lk in [lock_key(k), gap_lock(Some(k))] {
                            match inner.locks.try_lock(id, lk, LockMode::Shared)? {
                                None => {
                                    blocked = Some(lk);
                                    return Ok(false);
                                }
                                Some(true) => locks.push(lk),
                                Some(false) => {}
                            }
                        }
                        batch.push_cell(&tree, k, cell)?;
                        Ok(batch.entries.len() < SCAN_BATCH)
                    };
                    let (lo, hi) = (as_ref(&self.lo), as_ref(&self.hi));
                    let r = match self.reverse {
                        false => tree.scan(lo, hi, visit),
                        true => tree.scan_rev(lo, hi, visit),
                    };
                    inner.guard_read(r)?;
                }
                // Ascending, the lock after the range comes last.
                let at_end = blocked.is_none() && self.batch.entries.len() < SCAN_BATCH;
                if !self.reverse && at_end && !self.end_locked {
                    blocked = self.try_end_lock(&mut st, inner, &tree)?;
                }
            }
            let r = txn.escalate_if_needed(&mut st);
            txn.lock_failure_rolls_back(&mut st, r)?;
            if let Some(lk) = blocked {
                txn.lock_id(&mut st, lk, LockMode::Shared)?;
                self.move_past_last();
                if self.batch.entries.is_empty() {
                    continue;
                }
                return Ok(());
            }
            match self.batch.entries.len() >= SCAN_BATCH {
                true => self.move_past_last(),
                false => self.done = true,
            }
            return Ok(());
        }
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some((k, v))) => Some(Ok((k.to_vec(), v.to_vec()))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
