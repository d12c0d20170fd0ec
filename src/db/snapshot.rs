//! Read-only snapshots (`Db::begin_read`): the database as it was when the
//! snapshot began, read without key locks while writers go on.
//!
//! Each read takes the tree latch shared for the span of one lookup or one
//! batch of a scan, reads the tree and asks the version store
//! (`txn::versions`) in that same hold what the snapshot sees instead of the
//! tree for the keys that changed since it began. Before-images too large to
//! be held in memory are read back from the log after the latch is
//! released.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::{as_ref, check_key, Inner, SCAN_BATCH};
use crate::error::{Error, Result};
use crate::page::LeafCell;
use crate::txn::versions::{Before, Seen};
use crate::types::Lsn;
use crate::wal::Body;

/// A read-only snapshot of the database: see `Db::begin_read`.
///
/// It holds no key locks and never waits for a transaction or makes one
/// wait. Dropping it ends it. It is `Send` and `Sync`.
pub struct Snapshot {
    inner: Arc<Inner>,
    read_seq: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("read_seq", &self.read_seq).finish()
    }
}

impl Snapshot {
    pub(super) fn begin(inner: Arc<Inner>) -> Result<Snapshot> {
        inner.check_ok()?;
        let read_seq = inner.versions.begin_snapshot();
        Ok(Snapshot { inner, read_seq })
    }

    /// The value of `key` as of the snapshot's begin.
    ///
    /// # Errors
    /// `Error::SnapshotTooOld` if the snapshot expired (see
    /// `Options::snapshot_cap_bytes`; retryable with a new snapshot);
    /// `Error::InvalidArgument`/`TooLarge` for an empty or too long key;
    /// `Error::Failed`/`Closed` once the database stopped or closed; an I/O
    /// error or `Error::Corruption` from reading a page or the log.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        self.inner.check_ok()?;
        let inner = &self.inner;
        let r = (|| {
            let seen = {
                let _r = inner.read_latch()?;
                match inner.versions.seen(self.read_seq, key)? {
                    Seen::Tree => return inner.tree().get(key),
                    Seen::Before(b) => b,
                }
            };
            self.resolve(key, seen)
        })();
        inner.guard_read(r)
    }

    /// The entries in `range` as of the snapshot's begin, in ascending key
    /// order. The range argument is as for `Txn::scan`.
    ///
    /// # Errors
    /// As `get`; errors of later batches come from the iterator.
    pub fn scan<R: RangeBounds<[u8]>>(&self, range: R) -> Result<SnapshotScan<'_>> {
        self.scan_in(range, false)
    }

    /// The entries in `range` as of the snapshot's begin, in descending key
    /// order.
    ///
    /// # Errors
    /// As `scan`.
    pub fn scan_rev<R: RangeBounds<[u8]>>(&self, range: R) -> Result<SnapshotScan<'_>> {
        self.scan_in(range, true)
    }

    fn scan_in<R: RangeBounds<[u8]>>(&self, range: R, reverse: bool) -> Result<SnapshotScan<'_>> {
        self.inner.check_ok()?;
        let lo = range.start_bound().map(|k| k.to_vec());
        let hi = range.end_bound().map(|k| k.to_vec());
        Ok(SnapshotScan { snap: self, lo, hi, reverse, buf: VecDeque::new(), done: false })
    }

    /// The value a before-image stands for.
    fn resolve(&self, key: &[u8], before: Before) -> Result<Option<Vec<u8>>> {
        match before {
            Before::Absent => Ok(None),
            Before::Value(v) => Ok(Some(v.to_vec())),
            Before::Logged { lsn, len } => self.read_logged(key, lsn, len).map(Some),
        }
    }

    /// The old value in the undo part of the Update record at `lsn`.
    fn read_logged(&self, key: &[u8], lsn: Lsn, len: usize) -> Result<Vec<u8>> {
        let rec = match self.inner.wal.read_record(lsn) {
            Ok(rec) => rec,
            // Expired meanwhile: its log may be gone; say so rather than
            // report damage.
            Err(e) => return Err(self.expired_or(e)),
        };
        match rec.body {
            Body::Update { undo, .. } if undo.key == key && undo.old.as_ref().is_some_and(|v| v.len() == len) => {
                Ok(undo.old.expect("checked"))
            }
            _ => Err(Error::corruption("wal", format!("no before-image of the key at LSN {lsn}"))),
        }
    }

    fn expired_or(&self, e: Error) -> Error {
        match self.inner.versions.check_alive(self.read_seq) {
            Err(expired) => expired,
            Ok(()) => e,
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.inner.versions.end_snapshot(self.read_seq);
    }
}

/// An entry read in a batch: its value, or where to find it once the latch
/// is released.
enum Pending {
    Ready(Vec<u8>),
    Logged(Lsn, usize),
}

/// An iterator over a snapshot's entries in a range, in ascending
/// (`Snapshot::scan`) or descending (`Snapshot::scan_rev`) key order. Reads
/// in batches, one latch hold each; the range left to read shrinks from the
/// start (ascending) or the end (descending).
pub struct SnapshotScan<'s> {
    snap: &'s Snapshot,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    reverse: bool,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl SnapshotScan<'_> {
    /// Read the next batch (stopping the database on an I/O error).
    fn fill(&mut self) -> Result<()> {
        let r = self.fill_batch();
        self.snap.inner.guard_read(r)
    }

    /// Read the next batch: up to `SCAN_BATCH` tree entries from `next`,
    /// merged with what the version store says for the same key interval.
    fn fill_batch(&mut self) -> Result<()> {
        let snap = self.snap;
        let inner = &snap.inner;
        inner.check_ok()?;
        let mut batch: Vec<(Vec<u8>, Pending)> = Vec::new();
        let mut resume: Option<Vec<u8>> = None;
        {
            let _r = inner.read_latch()?;
            let tree = inner.tree();
            let mut from_tree: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let take = |k: &[u8], cell: &LeafCell<'_>| {
                if from_tree.len() == SCAN_BATCH {
                    resume = Some(k.to_vec());
                    return Ok(false);
                }
                from_tree.push((k.to_vec(), tree.read_value(cell)?));
                Ok(true)
            };
            let (lo, hi) = (as_ref(&self.lo), as_ref(&self.hi));
            match self.reverse {
                false => tree.scan(lo, hi, take)?,
                true => tree.scan_rev(lo, hi, take)?,
            }
            // The interval this batch covers: up to the first key left for
            // the next batch, else to the far end of the range.
            let interval = match (&resume, self.reverse) {
                (None, _) => (lo, hi),
                (Some(k), false) => (lo, Bound::Excluded(k.as_slice())),
                (Some(k), true) => (Bound::Excluded(k.as_slice()), hi),
            };
            let mut changed = inner.versions.seen_in_range(snap.read_seq, interval)?;
            if self.reverse {
                changed.reverse();
            }
            merge(from_tree, changed, self.reverse, &mut batch);
        }
        for (k, p) in batch {
            let v = match p {
                Pending::Ready(v) => v,
                Pending::Logged(lsn, len) => snap.read_logged(&k, lsn, len)?,
            };
            self.buf.push_back((k, v));
        }
        match (resume, self.reverse) {
            (Some(k), false) => self.lo = Bound::Included(k),
            (Some(k), true) => self.hi = Bound::Included(k),
            (None, _) => self.done = true,
        }
        Ok(())
    }
}

/// Merge a batch of tree entries with the keys whose snapshot view differs
/// from the tree (both in the scan's order: descending if `reverse`) into
/// what the snapshot sees.
fn merge(
    from_tree: Vec<(Vec<u8>, Vec<u8>)>,
    changed: Vec<(Box<[u8]>, Before)>,
    reverse: bool,
    out: &mut Vec<(Vec<u8>, Pending)>,
) {
    let mut tree = from_tree.into_iter().peekable();
    let mut changed = changed.into_iter().peekable();
    loop {
        let take_tree = match (tree.peek(), changed.peek()) {
            (None, None) => return,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((tk, _)), Some((ck, _))) => tk.as_slice() != &**ck && (tk.as_slice() < &**ck) != reverse,
        };
        if take_tree {
            let (k, v) = tree.next().expect("peeked");
            out.push((k, Pending::Ready(v)));
            continue;
        }
        let (k, before) = changed.next().expect("peeked");
        if tree.peek().is_some_and(|(tk, _)| tk.as_slice() == &*k) {
            tree.next(); // the snapshot sees the before-image, not this
        }
        match before {
            Before::Absent => {}
            Before::Value(v) => out.push((k.into_vec(), Pending::Ready(v.to_vec()))),
            Before::Logged { lsn, len } => out.push((k.into_vec(), Pending::Logged(lsn, len))),
        }
    }
}

impl Iterator for SnapshotScan<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.buf.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            // A batch may be empty (every entry deleted for the snapshot):
            // read on.
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}
