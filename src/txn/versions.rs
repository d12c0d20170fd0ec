//! The version store: what read-only snapshots need to see the database as it
//! was when they began, while writers go on changing the tree in place.
//!
//! The tree holds the newest version of every key, committed or not (ARIES
//! updates in place). For each key a transaction changed, the store keeps the
//! key's value from before that transaction's first change (its before-image)
//! and who made the change, oldest first. A snapshot reads a key as: the
//! before-image of the oldest version it must not see, else the tree. Small
//! before-images are kept in memory; large ones by the LSN of the Update
//! record whose logical undo holds them (the log already has them).
//!
//! Each acknowledged commit gets the next commit sequence number (`seq`); a
//! snapshot sees the commits with `seq` at or below the one current at its
//! begin (`read_seq`). Versions of transactions not yet committed are never
//! seen.
//!
//! Invariants (each upheld by the callers named):
//! - A change and its version are made under one hold of the exclusive tree
//!   latch (`note_change`), and a snapshot reads the tree and the store under
//!   one hold of the shared latch, so it never sees one without the other.
//! - A commit is published (`publish_commit`) only once it is acknowledged
//!   (under `Durability::Immediate`, after its commit record is durable), and
//!   before its key locks are released, so that per key the versions are in
//!   commit order.
//! - A rolled-back transaction's versions are dropped (`forget_aborted`) only
//!   after its rollback restored the tree, before its locks are released.
//! - A committed version is kept while some open snapshot began before its
//!   commit; the bytes so kept are capped (`cap_bytes`): past the cap the
//!   oldest snapshots expire (their next call fails with
//!   `Error::SnapshotTooOld`) rather than memory or the log growing without
//!   bound or a writer waiting.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result, SnapshotTooOld};
use crate::txn_log::{KeyChange, OldValue};
use crate::types::{IdMap, Lsn, TxnId};

/// A key's value before a transaction's first change to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// The key did not exist.
    Absent,
    /// The value, held here.
    Value(Arc<[u8]>),
    /// The value is the old value in the undo part of the Update record at
    /// `lsn` (of `len` bytes).
    Logged {
        /// The Update record.
        lsn: Lsn,
        /// The value's length.
        len: usize,
    },
}

impl Before {
    fn of(change: &KeyChange) -> Before {
        match &change.old {
            None => Before::Absent,
            Some(OldValue::Small(v)) => Before::Value(v.as_slice().into()),
            Some(OldValue::Large(len)) => Before::Logged { lsn: change.lsn, len: *len },
        }
    }

    /// Bytes this version stands for: the memory it holds, or the log it
    /// keeps from truncation.
    fn bytes(&self, key: &[u8]) -> usize {
        key.len()
            + 48
            + match self {
                Before::Absent => 0,
                Before::Value(v) => v.len(),
                Before::Logged { len, .. } => *len,
            }
    }
}

#[derive(Debug)]
struct Version {
    txn: TxnId,
    before: Before,
}

/// A key a snapshot does not read from the tree, and what it reads instead.
pub type Changed = (Box<[u8]>, Before);

/// The smallest and largest key of a set.
type KeySpan = (Box<[u8]>, Box<[u8]>);

#[derive(Default)]
struct State {
    /// The versions of each key, oldest first.
    by_key: BTreeMap<Box<[u8]>, Vec<Version>>,
    /// Transactions that changed more keys than a version each is kept for
    /// (`escalate_keys`): the smallest and largest key they changed. A
    /// snapshot that must not see one cannot read inside its range.
    untracked: IdMap<TxnId, KeySpan>,
    /// Keys each transaction has a version of.
    keys_of: IdMap<TxnId, Vec<Box<[u8]>>>,
    /// Commit sequence numbers of the committed transactions that still
    /// have versions, and the transactions by seq.
    seq_of: IdMap<TxnId, u64>,
    by_seq: BTreeMap<u64, TxnId>,
    /// The last published commit.
    last_seq: u64,
    /// Open snapshots: how many began at each read_seq.
    snapshots: BTreeMap<u64, usize>,
    /// Bytes of committed versions kept for snapshots.
    kept_bytes: usize,
    /// The LSNs of the `Before::Logged` versions in `by_key`, each with its
    /// count: the log must be kept from the first (`oldest_logged_lsn`,
    /// asked by every checkpoint and, while a past checkpoint was held back,
    /// by committers, so not a walk of every version).
    logged: BTreeMap<Lsn, usize>,
    /// The LSNs of the `Before::Logged` values handed to readers that have
    /// not read them yet (`LogPins`), each with its count: the log is kept
    /// from the first too, since their versions may go before the read (a
    /// rollback's `forget_aborted`, `untrack`).
    pinned: BTreeMap<Lsn, usize>,
    /// How many snapshots expired so far.
    expired: u64,
}

/// The version store (see the module doc).
pub struct VersionStore {
    state: Mutex<State>,
    cap_bytes: usize,
    /// Past this many keys changed, a transaction keeps only their range
    /// (0: never).
    escalate_keys: usize,
    /// `state.by_key.len() + state.untracked.len()`, readable without the
    /// mutex: a reader that finds it 0 under the shared tree latch reads the
    /// tree without asking.
    busy: AtomicUsize,
    /// Snapshots with a read_seq below this have expired. Written only
    /// under the state mutex; read with or without it.
    expired_below: AtomicU64,
}

/// The `Before::Logged` values a reader was handed under the tree latch and
/// reads from the log after releasing it: until this drops, the log is kept
/// from them (`oldest_logged_lsn`) whatever happens to their versions
/// meanwhile, so a checkpoint never cuts a before-image a live snapshot is
/// entitled to.
#[must_use = "the pins keep the log of the before-images still to be read"]
pub struct LogPins<'a> {
    store: &'a VersionStore,
    lsns: Vec<Lsn>,
}

impl LogPins<'_> {
    /// Pin the log of each `Before::Logged` in `befores`; call under the
    /// state mutex that found them, so that their versions still hold the
    /// log.
    fn pin<'b>(&mut self, st: &mut State, befores: impl IntoIterator<Item = &'b Before>) {
        for b in befores {
            if let Before::Logged { lsn, .. } = *b {
                count(&mut st.pinned, lsn, true);
                self.lsns.push(lsn);
            }
        }
    }
}

impl Drop for LogPins<'_> {
    fn drop(&mut self) {
        if self.lsns.is_empty() {
            return;
        }
        let mut st = self.store.state.lock();
        for &lsn in &self.lsns {
            count(&mut st.pinned, lsn, false);
        }
    }
}

/// What a snapshot reads for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The tree's value is the one the snapshot sees.
    Tree,
    /// The snapshot sees this before-image instead.
    Before(Before),
}

/// Counters for `Stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionStats {
    /// Keys with versions.
    pub keys: usize,
    /// Bytes of committed versions kept for open snapshots.
    pub kept_bytes: usize,
    /// Open snapshots.
    pub snapshots: usize,
    /// Snapshots expired past the cap.
    pub expired: u64,
}

impl VersionStore {
    /// A store that keeps at most about `cap_bytes` of committed versions
    /// for open snapshots, and a version per key for transactions of at most
    /// `escalate_keys` keys (0: any number).
    pub fn new(cap_bytes: usize, escalate_keys: usize) -> VersionStore {
        VersionStore {
            state: Mutex::new(State::default()),
            cap_bytes,
            escalate_keys,
            busy: AtomicUsize::new(0),
            expired_below: AtomicU64::new(0),
        }
    }

    /// `txn` made `change`. Call under the exclusive tree latch, in the same
    /// hold as the change. Only the transaction's first change of a key is
    /// kept: its old value is the key's value before the transaction.
    pub fn note_change(&self, txn: TxnId, change: &KeyChange) {
        self.note(txn, change, self.escalate_keys);
    }

    /// As `note_change`, for a loser of an instant restart
    /// (`recovery::Loser`): its versions are kept whatever its number of
    /// keys (the open bounds them), so that snapshots read around it until
    /// its background rollback is done.
    pub fn note_loser_change(&self, txn: TxnId, change: &KeyChange) {
        self.note(txn, change, 0);
    }

    /// `note_change` with a limit of `escalate_keys` keys (0: none).
    fn note(&self, txn: TxnId, change: &KeyChange, escalate_keys: usize) {
        debug_assert!(txn != TxnId::SYSTEM && !change.lsn.is_none());
        let key = change.key.as_slice();
        let mut st = self.state.lock();
        if let Some((lo, hi)) = st.untracked.get_mut(&txn) {
            if key < &**lo {
                *lo = key.into();
            } else if key > &**hi {
                *hi = key.into();
            }
            return;
        }
        if let Some(vs) = st.by_key.get(key) {
            if vs.last().is_some_and(|v| v.txn == txn) {
                return;
            }
            // Key locks serialize the writers of a key: every older version
            // is of a committed transaction.
            debug_assert!(vs.iter().all(|v| st.seq_of.contains_key(&v.txn)), "two open writers of one key");
        }
        let version = Version { txn, before: Before::of(change) };
        note_logged(&mut st, &version.before, true);
        let key: Box<[u8]> = key.into();
        let changed = st.keys_of.entry(txn).or_default();
        changed.push(key.clone());
        let escalate = escalate_keys > 0 && changed.len() > escalate_keys;
        st.by_key.entry(key).or_insert_with(|| Vec::with_capacity(1)).push(version);
        if escalate {
            untrack(&mut st, txn);
        }
        self.note_busy(&st);
    }

    fn note_busy(&self, st: &State) {
        self.busy.store(st.by_key.len() + st.untracked.len(), Ordering::Release);
    }

    /// `txn` committed and the commit is acknowledged: snapshots that begin
    /// from now on see its changes. Call before its key locks are released.
    pub fn publish_commit(&self, txn: TxnId) {
        let mut st = self.state.lock();
        st.last_seq += 1;
        let seq = st.last_seq;
        if !st.keys_of.contains_key(&txn) && !st.untracked.contains_key(&txn) {
            return;
        }
        assert!(st.seq_of.insert(txn, seq).is_none(), "txn {txn} committed twice");
        st.by_seq.insert(seq, txn);
        if !st.snapshots.is_empty() {
            let keys = st.keys_of.get(&txn).map_or(&[][..], |k| k.as_slice());
            let bytes: usize = keys.iter().map(|k| own_version(&st, k, txn).bytes(k)).sum();
            st.kept_bytes += bytes;
        }
        self.purge(&mut st);
    }

    /// `txn` rolled back completely (the tree holds its before-images
    /// again): drop its versions. Call before its key locks are released.
    pub fn forget_aborted(&self, txn: TxnId) {
        let mut st = self.state.lock();
        debug_assert!(!st.seq_of.contains_key(&txn), "txn {txn} aborted after its commit");
        for key in st.keys_of.remove(&txn).unwrap_or_default() {
            let vs = st.by_key.get_mut(&key).expect("a key of the txn has versions");
            let v = vs.pop().expect("the txn's version is the newest");
            assert!(v.txn == txn, "txn {txn}'s version of a key is not the newest");
            if vs.is_empty() {
                st.by_key.remove(&key);
            }
            note_logged(&mut st, &v.before, false);
        }
        st.untracked.remove(&txn);
        self.note_busy(&st);
    }

    /// Begin a snapshot: returns its read_seq.
    pub fn begin_snapshot(&self) -> u64 {
        let mut st = self.state.lock();
        let seq = st.last_seq;
        // Expiry follows commits after the expired snapshot's begin.
        debug_assert!(seq >= self.expired_below.load(Ordering::Acquire), "a new snapshot would begin expired");
        *st.snapshots.entry(seq).or_default() += 1;
        seq
    }

    /// End the snapshot that began at `read_seq`.
    pub fn end_snapshot(&self, read_seq: u64) {
        let mut st = self.state.lock();
        if self.check_alive(read_seq).is_err() {
            return; // already forgotten when it expired
        }
        let n = st.snapshots.get_mut(&read_seq).expect("an open snapshot is registered");
        *n -= 1;
        if *n == 0 {
            st.snapshots.remove(&read_seq);
        }
        self.purge(&mut st);
    }

    /// Fail if the snapshot at `read_seq` has expired.
    ///
    /// # Errors
    /// `Error::SnapshotTooOld` once it has.
    pub fn check_alive(&self, read_seq: u64) -> Result<()> {
        match read_seq < self.expired_below.load(Ordering::Acquire) {
            true => Err(Error::SnapshotTooOld { cause: SnapshotTooOld::CapReached { cap_bytes: self.cap_bytes } }),
            false => Ok(()),
        }
    }

    /// As `seen_pinned`, without keeping the log (tests).
    #[cfg(test)]
    pub fn seen(&self, read_seq: u64, key: &[u8]) -> Result<Seen> {
        self.seen_pinned(read_seq, key).map(|(seen, _)| seen)
    }

    /// As `seen_in_range_pinned`, without keeping the log (tests).
    #[cfg(test)]
    pub fn seen_in_range(&self, read_seq: u64, range: (Bound<&[u8]>, Bound<&[u8]>)) -> Result<Vec<Changed>> {
        self.seen_in_range_pinned(read_seq, range).map(|(seen, _)| seen)
    }

    /// What the snapshot at `read_seq` sees for `key`, and the pin of its
    /// log if that is a `Before::Logged` (keep it until the value is read).
    /// Call under the shared tree latch, with the tree read in the same
    /// hold.
    ///
    /// # Errors
    /// `Error::SnapshotTooOld` once the snapshot expired.
    pub fn seen_pinned(&self, read_seq: u64, key: &[u8]) -> Result<(Seen, LogPins<'_>)> {
        // The fast path: no versions at all. A version is added only under
        // the exclusive tree latch, which the caller's shared hold excludes,
        // and removed only once no open snapshot needs it. `busy` is read
        // before the expiry: a purge that emptied the store for an expired
        // snapshot published the expiry first.
        let mut pins = LogPins { store: self, lsns: Vec::new() };
        if self.busy.load(Ordering::Acquire) == 0 {
            return self.check_alive(read_seq).map(|()| (Seen::Tree, pins));
        }
        let mut st = self.state.lock();
        // Under the mutex, which expiry and purges hold.
        self.check_alive(read_seq)?;
        self.check_untracked(&st, read_seq, (Bound::Included(key), Bound::Included(key)))?;
        let seen = match st.by_key.get(key) {
            Some(vs) => seen_in(&st, vs, read_seq),
            None => Seen::Tree,
        };
        if let Seen::Before(b) = &seen {
            pins.pin(&mut st, [b]);
        }
        Ok((seen, pins))
    }

    /// Every key in the range for which the snapshot at `read_seq` does not
    /// see the tree, with what it sees instead, in key order, and the pins
    /// of the `Before::Logged` among them. Same rules as `seen_pinned`.
    ///
    /// # Errors
    /// `Error::SnapshotTooOld` once the snapshot expired.
    pub fn seen_in_range_pinned(
        &self,
        read_seq: u64,
        range: (Bound<&[u8]>, Bound<&[u8]>),
    ) -> Result<(Vec<Changed>, LogPins<'_>)> {
        let mut pins = LogPins { store: self, lsns: Vec::new() };
        if self.busy.load(Ordering::Acquire) == 0 {
            return self.check_alive(read_seq).map(|()| (Vec::new(), pins));
        }
        let mut st = self.state.lock();
        self.check_alive(read_seq)?;
        self.check_untracked(&st, read_seq, range)?;
        let mut out = Vec::new();
        if st.by_key.is_empty() || range_is_empty(range) {
            return Ok((out, pins));
        }
        for (k, vs) in st.by_key.range::<[u8], _>(range) {
            if let Seen::Before(b) = seen_in(&st, vs, read_seq) {
                out.push((k.clone(), b));
            }
        }
        pins.pin(&mut st, out.iter().map(|(_, b)| b));
        Ok((out, pins))
    }

    /// Fail if a transaction the snapshot must not see changed keys in
    /// `range` without keeping their versions.
    fn check_untracked(&self, st: &State, read_seq: u64, range: (Bound<&[u8]>, Bound<&[u8]>)) -> Result<()> {
        for (txn, (lo, hi)) in &st.untracked {
            let visible = st.seq_of.get(txn).is_some_and(|&seq| seq <= read_seq);
            let overlaps = !range_is_empty((range.0, Bound::Included(&**hi)))
                && !range_is_empty((Bound::Included(&**lo), range.1));
            if !visible && overlaps {
                return Err(Error::SnapshotTooOld {
                    cause: SnapshotTooOld::LargeTransaction { escalation_keys: self.escalate_keys },
                });
            }
        }
        Ok(())
    }

    /// The oldest Update record a kept version, or a reader holding
    /// `LogPins`, reads its value from: the log must be kept from there.
    pub fn oldest_logged_lsn(&self) -> Option<Lsn> {
        let st = self.state.lock();
        debug_assert_eq!(
            st.logged.keys().next().copied(),
            st.by_key
                .values()
                .flatten()
                .filter_map(|v| match v.before {
                    Before::Logged { lsn, .. } => Some(lsn),
                    _ => None,
                })
                .min(),
            "the logged versions' index agrees with the versions"
        );
        let pinned = st.pinned.keys().next().copied();
        st.logged.keys().next().copied().into_iter().chain(pinned).min()
    }

    /// Counters.
    pub fn stats(&self) -> VersionStats {
        let st = self.state.lock();
        VersionStats {
            keys: st.by_key.len(),
            kept_bytes: st.kept_bytes,
            snapshots: st.snapshots.values().sum(),
            expired: st.expired,
        }
    }

    /// Drop committed versions no open snapshot needs; past the cap, expire
    /// the oldest snapshots first.
    fn purge(&self, st: &mut State) {
        loop {
            // A version committed at seq s is needed by snapshots with read_seq < s.
            let min_read = st.snapshots.keys().next().copied().unwrap_or(u64::MAX);
            self.drop_committed_up_to(st, min_read);
            if st.snapshots.is_empty() {
                st.kept_bytes = 0;
            }
            if st.kept_bytes <= self.cap_bytes {
                return;
            }
            let (oldest, n) = st.snapshots.pop_first().expect("kept bytes imply an open snapshot");
            self.expired_below.store(oldest + 1, Ordering::Release);
            st.expired += n as u64;
        }
    }

    /// Drop the versions of transactions committed at seq <= `up_to`.
    fn drop_committed_up_to(&self, st: &mut State, up_to: u64) {
        while let Some((&seq, &txn)) = st.by_seq.iter().next() {
            if seq > up_to {
                break;
            }
            st.by_seq.remove(&seq);
            st.seq_of.remove(&txn);
            st.untracked.remove(&txn);
            for key in st.keys_of.remove(&txn).unwrap_or_default() {
                let vs = st.by_key.get_mut(&key).expect("a key of the txn has versions");
                // Commit order is per-key order: the oldest version is this one.
                let v = vs.remove(0);
                assert!(v.txn == txn, "versions of a key out of commit order");
                let bytes = v.before.bytes(&key);
                if vs.is_empty() {
                    st.by_key.remove(&key);
                }
                note_logged(st, &v.before, false);
                st.kept_bytes = st.kept_bytes.saturating_sub(bytes);
            }
        }
        self.note_busy(st);
    }
}

/// `txn` changed too many keys: keep only their range, drop its versions.
fn untrack(st: &mut State, txn: TxnId) {
    let keys = st.keys_of.remove(&txn).unwrap_or_default();
    let (mut lo, mut hi) = (keys[0].clone(), keys[0].clone());
    for key in keys {
        let vs = st.by_key.get_mut(&key).expect("a key of the txn has versions");
        let v = vs.pop().expect("the txn's version is the newest");
        assert!(v.txn == txn, "txn {txn}'s version of a key is not the newest");
        if vs.is_empty() {
            st.by_key.remove(&key);
        }
        note_logged(st, &v.before, false);
        if key < lo {
            lo = key;
        } else if key > hi {
            hi = key;
        }
    }
    st.untracked.insert(txn, (lo, hi));
}

/// A version was added to (`added`) or removed from `by_key`: keep `logged`
/// in step.
fn note_logged(st: &mut State, before: &Before, added: bool) {
    let Before::Logged { lsn, .. } = *before else { return };
    count(&mut st.logged, lsn, added);
}

/// One more (`added`) or one fewer of `lsn` in a count of LSNs (`logged`,
/// `pinned`); a count that reaches zero goes.
fn count(counts: &mut BTreeMap<Lsn, usize>, lsn: Lsn, added: bool) {
    if added {
        *counts.entry(lsn).or_default() += 1;
    } else {
        let n = counts.get_mut(&lsn).expect("an LSN counted down was counted up");
        *n -= 1;
        if *n == 0 {
            counts.remove(&lsn);
        }
    }
}

/// The version of `key` made by `txn`.
fn own_version<'a>(st: &'a State, key: &[u8], txn: TxnId) -> &'a Before {
    let vs = &st.by_key[key];
    &vs.iter().find(|v| v.txn == txn).expect("the txn's version").before
}

/// What a snapshot at `read_seq` sees given a key's versions.
fn seen_in(st: &State, vs: &[Version], read_seq: u64) -> Seen {
    for v in vs {
        match st.seq_of.get(&v.txn) {
            Some(&seq) if seq <= read_seq => continue,
            _ => return Seen::Before(v.before.clone()),
        }
    }
    Seen::Tree
}

/// True if no key lies in the range (`BTreeMap::range` panics on such).
fn range_is_empty((lo, hi): (Bound<&[u8]>, Bound<&[u8]>)) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &[u8], old: Option<&[u8]>, lsn: u64) -> KeyChange {
        let old = old.map(|v| match v.len() <= crate::txn_log::SMALL_OLD_VALUE {
            true => OldValue::Small(v.to_vec()),
            false => OldValue::Large(v.len()),
        });
        KeyChange { lsn: Lsn(lsn), key: key.to_vec(), old }
    }

    fn val(b: &Before) -> Option<Vec<u8>> {
        match b {
            Before::Absent => None,
            Before::Value(v) => Some(v.to_vec()),
            Before::Logged { .. } => panic!("logged"),
        }
    }

    #[test]
    fn a_snapshot_sees_the_state_at_its_begin() {
        let vs = VersionStore::new(1 << 20, 0);
        let (t1, t2) = (TxnId(1), TxnId(2));
        let s0 = vs.begin_snapshot();
        vs.note_change(t1, &change(b"a", None, 100));
        vs.note_change(t1, &change(b"a", Some(b"x"), 200)); // second change: not kept
        vs.note_change(t1, &change(b"b", Some(b"old-b"), 300));
        // Uncommitted: no snapshot sees it.
        assert_eq!(vs.seen(s0, b"a").unwrap(), Seen::Before(Before::Absent));
        vs.publish_commit(t1);
        let s1 = vs.begin_snapshot();
        assert_eq!(vs.seen(s1, b"a").unwrap(), Seen::Tree);
        assert_eq!(vs.seen(s0, b"a").unwrap(), Seen::Before(Before::Absent));
        assert!(matches!(vs.seen(s0, b"b").unwrap(), Seen::Before(b) if val(&b) == Some(b"old-b".to_vec())));
        vs.note_change(t2, &change(b"a", Some(b"t1-a"), 400));
        // s0 still sees before t1; s1 sees t1's value, from t2's before-image.
        assert_eq!(vs.seen(s0, b"a").unwrap(), Seen::Before(Before::Absent));
        assert!(matches!(vs.seen(s1, b"a").unwrap(), Seen::Before(b) if val(&b) == Some(b"t1-a".to_vec())));
        let range = vs.seen_in_range(s0, (Bound::Unbounded, Bound::Unbounded)).unwrap();
        assert_eq!(range.iter().map(|(k, _)| k.to_vec()).collect::<Vec<_>>(), vec![b"a".to_vec(), b"b".to_vec()]);
        vs.forget_aborted(t2);
        assert_eq!(vs.seen(s1, b"a").unwrap(), Seen::Tree);
        vs.end_snapshot(s0);
        vs.end_snapshot(s1);
        assert_eq!(vs.stats(), VersionStats { keys: 0, kept_bytes: 0, snapshots: 0, expired: 0 });
    }

    #[test]
    fn versions_go_when_no_snapshot_needs_them() {
        let vs = VersionStore::new(1 << 20, 0);
        vs.note_change(TxnId(1), &change(b"k", None, 100));
        assert_eq!(vs.stats().keys, 1);
        vs.publish_commit(TxnId(1));
        assert_eq!(vs.stats().keys, 0, "no snapshot open: dropped at commit");
        let s = vs.begin_snapshot();
        vs.note_change(TxnId(2), &change(b"k", Some(&[7; 1000]), 200));
        assert_eq!(vs.oldest_logged_lsn(), Some(Lsn(200)));
        vs.publish_commit(TxnId(2));
        assert_eq!(vs.stats().keys, 1, "kept for the open snapshot");
        assert!(vs.stats().kept_bytes >= 1000);
        assert_eq!(vs.seen(s, b"k").unwrap(), Seen::Before(Before::Logged { lsn: Lsn(200), len: 1000 }));
        vs.end_snapshot(s);
        assert_eq!(vs.stats().keys, 0);
        assert_eq!(vs.oldest_logged_lsn(), None);
    }

    #[test]
    fn a_transaction_of_many_keys_keeps_only_their_range() {
        let vs = VersionStore::new(1 << 20, 3);
        let before = vs.begin_snapshot();
        let t = TxnId(1);
        for k in [b"m1", b"m2", b"m3", b"m0", b"m9"] {
            vs.note_change(t, &change(k, None, 100));
        }
        assert_eq!(vs.stats().keys, 0, "versions dropped past 3 keys");
        let during = vs.begin_snapshot();
        for s in [before, during] {
            assert!(matches!(vs.seen(s, b"m5"), Err(Error::SnapshotTooOld { .. })));
            assert!(vs.seen_in_range(s, (Bound::Included(b"a"), Bound::Excluded(b"m0"))).unwrap().is_empty());
            assert!(vs.seen_in_range(s, (Bound::Excluded(b"m9"), Bound::Unbounded)).unwrap().is_empty());
            assert!(vs.seen_in_range(s, (Bound::Unbounded, Bound::Included(b"m0"))).is_err());
            assert_eq!(vs.seen(s, b"z").unwrap(), Seen::Tree);
        }
        vs.publish_commit(t);
        let after = vs.begin_snapshot();
        assert_eq!(vs.seen(after, b"m5").unwrap(), Seen::Tree);
        assert!(vs.seen(during, b"m5").is_err(), "still must not see it");
        vs.end_snapshot(before);
        vs.end_snapshot(during);
        vs.end_snapshot(after);
        assert_eq!(vs.busy.load(Ordering::Relaxed), 0);
        // Rolled back: its range goes with it.
        vs.note_change(TxnId(2), &change(b"a", None, 200));
        for k in [b"b", b"c", b"d"] {
            vs.note_change(TxnId(2), &change(k, None, 200));
        }
        let s = vs.begin_snapshot();
        assert!(vs.seen(s, b"b").is_err());
        vs.forget_aborted(TxnId(2));
        assert_eq!(vs.seen(s, b"b").unwrap(), Seen::Tree);
    }

    #[test]
    fn the_oldest_logged_before_image_follows_every_way_a_version_goes() {
        let vs = VersionStore::new(1 << 20, 2);
        let long = [9u8; 1000];
        let s = vs.begin_snapshot();
        vs.note_change(TxnId(1), &change(b"a", Some(&long), 100));
        vs.note_change(TxnId(1), &change(b"b", Some(b"short"), 110));
        vs.publish_commit(TxnId(1)); // kept for s
        vs.note_change(TxnId(2), &change(b"a", Some(&long), 200));
        assert_eq!(vs.oldest_logged_lsn(), Some(Lsn(100)));
        vs.forget_aborted(TxnId(2)); // rolled back
        vs.note_change(TxnId(3), &change(b"c", Some(&long), 300));
        vs.note_change(TxnId(3), &change(b"d", Some(&long), 310));
        assert_eq!(vs.oldest_logged_lsn(), Some(Lsn(100)));
        vs.end_snapshot(s); // txn 1's versions go
        assert_eq!(vs.oldest_logged_lsn(), Some(Lsn(300)));
        vs.note_change(TxnId(3), &change(b"e", Some(&long), 320)); // past 2 keys: untracked
        assert_eq!(vs.oldest_logged_lsn(), None);
        vs.publish_commit(TxnId(3));
        assert_eq!(vs.stats().keys, 0);
    }

    #[test]
    fn a_pinned_before_image_keeps_its_log_after_its_version_goes() {
        let vs = VersionStore::new(1 << 20, 0);
        let s = vs.begin_snapshot();
        vs.note_change(TxnId(1), &change(b"k", Some(&[7; 1000]), 200));
        let (seen, pins) = vs.seen_pinned(s, b"k").unwrap();
        assert_eq!(seen, Seen::Before(Before::Logged { lsn: Lsn(200), len: 1000 }));
        vs.forget_aborted(TxnId(1)); // rolled back before the reader read the log
        assert_eq!(vs.oldest_logged_lsn(), Some(Lsn(200)), "pinned by the reader");
        drop(pins);
        assert_eq!(vs.oldest_logged_lsn(), None);
        vs.end_snapshot(s);
    }

    #[test]
    fn past_the_cap_the_oldest_snapshot_expires_and_writers_go_on() {
        let vs = VersionStore::new(10_000, 0);
        let old = vs.begin_snapshot();
        let mut newer = 0;
        for i in 0..100u64 {
            let t = TxnId(i + 1);
            vs.note_change(t, &change(format!("k{i}").as_bytes(), Some(&[1; 200]), 100 + i * 8));
            vs.publish_commit(t);
            if i == 90 {
                newer = vs.begin_snapshot();
            }
        }
        let e = vs.seen(old, b"k1").unwrap_err();
        assert!(matches!(e, Error::SnapshotTooOld { .. }) && e.is_retryable(), "{e:?}");
        assert!(vs.stats().kept_bytes <= 10_000, "{:?}", vs.stats());
        // The newer snapshot is within the cap and reads fine.
        assert!(vs.seen(newer, b"k95").is_ok());
        vs.end_snapshot(old);
        vs.end_snapshot(newer);
        assert_eq!(vs.stats().snapshots, 0);
        assert_eq!(vs.stats().expired, 1);
    }
}
