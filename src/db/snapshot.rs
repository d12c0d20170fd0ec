//! Read-only snapshots (`Db::begin_read`): the database as it was when the
//! snapshot began, read without key locks while writers go on.
//!
//! Each read takes the tree latch shared for the span of one lookup or one
//! batch of a scan, reads the tree and asks the version store
//! (`txn::versions`) in that same hold what the snapshot sees instead of the
//! tree for the keys that changed since it began. Before-images too large to
//! be held in memory are read back from the log after the latch is
//! released, under the `LogPins` the store handed out with them: their
//! versions may go before the read (the transaction that made one rolls
//! back), and a checkpoint must not cut their log meanwhile.

use std::ops::{Bound, Range, RangeBounds};
use std::sync::Arc;

use super::{as_ref, check_key, owned_bounds, owned_slice_bounds, prefix_bounds, Inner, KeyRange, SCAN_BATCH};
use crate::btree::{BTree, LeafPos, ScanEnd, ScanStart};
use crate::error::{Error, Result};
use crate::page::{LeafCell, PageRef};
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
    /// The buffers of the last scan dropped, for the next scan to reuse (a
    /// snapshot's scans then allocate once, not per scan).
    spare: parking_lot::Mutex<Option<ScanBuffers>>,
}

/// A scan's buffers: what it hands out, and what it read from the tree.
#[derive(Default)]
struct ScanBuffers {
    batch: Batch,
    from_tree: Vec<[usize; 4]>,
}

impl ScanBuffers {
    /// Bytes of a new scan's buffer, before it has to grow: a batch of
    /// `SCAN_BATCH` entries copies the parts of their leaves that hold them.
    const BATCH_BYTES: usize = 32 << 10;
    /// The most buffer bytes a snapshot keeps between scans.
    const KEEP_BYTES: usize = 1 << 20;

    fn with_room() -> ScanBuffers {
        ScanBuffers {
            batch: Batch {
                bytes: Vec::with_capacity(Self::BATCH_BYTES),
                entries: Vec::with_capacity(SCAN_BATCH),
                next: 0,
            },
            from_tree: Vec::with_capacity(SCAN_BATCH),
        }
    }
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
        Ok(Snapshot { inner, read_seq, spare: parking_lot::Mutex::new(None) })
    }

    /// The value of `key` as of the snapshot's begin.
    ///
    /// # Errors
    /// `Error::SnapshotTooOld` if the snapshot expired (see
    /// `Options::snapshot_cap_bytes`; retryable with a new snapshot);
    /// `Error::InvalidArgument`/`TooLarge` for an empty or too long key;
    /// `Error::Failed`/`Closed` once the database stopped or closed; an I/O
    /// error or `Error::Corruption` from reading a page or the log.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        Ok(self.get_into_bytes(key.as_ref(), &mut out)?.then_some(out))
    }

    /// As `get`, into a buffer the caller keeps (cleared first, then holding
    /// the value): true if the key is present. Saves an allocation per read.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ariesdb-doc-getinto-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let db = ariesdb::Db::open(&dir)?;
    /// let mut tx = db.begin()?;
    /// tx.put(b"k", b"v")?;
    /// tx.commit()?;
    /// let snap = db.begin_read()?;
    /// let mut value = Vec::new();
    /// assert!(snap.get_into(b"k", &mut value)?);
    /// assert_eq!(value, b"v");
    /// assert!(!snap.get_into(b"missing", &mut value)?);
    /// # drop(snap); db.close()?; let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), ariesdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// As `get`.
    pub fn get_into(&self, key: impl AsRef<[u8]>, out: &mut Vec<u8>) -> Result<bool> {
        self.get_into_bytes(key.as_ref(), out)
    }

    fn get_into_bytes(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        check_key(key)?;
        self.inner.check_ok()?;
        let inner = &self.inner;
        let r = (|| {
            let (seen, _pins) = {
                let _r = inner.read_latch()?;
                match inner.versions.seen_pinned(self.read_seq, key)? {
                    (Seen::Tree, _) => return inner.tree().get_into(key, out),
                    (Seen::Before(b), pins) => (b, pins),
                }
            };
            out.clear();
            match seen {
                Before::Absent => Ok(false),
                Before::Value(v) => {
                    out.extend_from_slice(&v);
                    Ok(true)
                }
                Before::Logged { lsn, len } => {
                    *out = self.read_logged(key, lsn, len)?;
                    Ok(true)
                }
            }
        })();
        inner.guard_read(r)
    }

    /// The entries in `range` as of the snapshot's begin, in ascending key
    /// order. The range argument is as for `Txn::scan`.
    ///
    /// # Errors
    /// As `get`; errors of later batches come from the iterator.
    pub fn scan<R: RangeBounds<[u8]>>(&self, range: R) -> Result<SnapshotScan<'_>> {
        let (lo, hi) = owned_slice_bounds(&range);
        self.scan_in(lo, hi, false)
    }

    /// The entries in `range` as of the snapshot's begin, in descending key
    /// order.
    ///
    /// # Errors
    /// As `scan`.
    pub fn scan_rev<R: RangeBounds<[u8]>>(&self, range: R) -> Result<SnapshotScan<'_>> {
        let (lo, hi) = owned_slice_bounds(&range);
        self.scan_in(lo, hi, true)
    }

    /// As `scan`, for a range of anything that is `AsRef<[u8]>` (`"a".."m"`,
    /// `b"k1"..=b"k9"`); see `Txn::scan_range`.
    ///
    /// # Errors
    /// As `scan`.
    pub fn scan_range(&self, range: impl KeyRange) -> Result<SnapshotScan<'_>> {
        let (lo, hi) = owned_bounds(&range);
        self.scan_in(lo, hi, false)
    }

    /// As `scan_range`, in descending key order.
    ///
    /// # Errors
    /// As `scan`.
    pub fn scan_range_rev(&self, range: impl KeyRange) -> Result<SnapshotScan<'_>> {
        let (lo, hi) = owned_bounds(&range);
        self.scan_in(lo, hi, true)
    }

    /// The entries whose keys start with `prefix` as of the snapshot's
    /// begin, in ascending key order (descending:
    /// `scan_range_rev(ariesdb::prefix_range(prefix))`).
    ///
    /// # Errors
    /// As `scan`.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<SnapshotScan<'_>> {
        let (lo, hi) = prefix_bounds(prefix.as_ref());
        self.scan_in(lo, hi, false)
    }

    fn scan_in(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>, reverse: bool) -> Result<SnapshotScan<'_>> {
        self.inner.check_ok()?;
        let mut buffers = self.spare.lock().take().unwrap_or_else(ScanBuffers::with_room);
        buffers.batch.clear();
        Ok(SnapshotScan { snap: self, lo, hi, reverse, resume: None, buffers, done: false })
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

/// The entries of one batch: their bytes in one buffer, each entry the
/// ranges of its key and of its value in it (one allocation per batch, not
/// two per entry).
#[derive(Default)]
pub(super) struct Batch {
    pub(super) bytes: Vec<u8>,
    /// Per entry: key start, key end, value start, value end.
    pub(super) entries: Vec<[usize; 4]>,
    /// The next entry to hand out.
    pub(super) next: usize,
}

/// Append the key and then the value of leaf cell `cell` (whose key is
/// `key`) to `bytes`: an inline value with its key in one copy, since the two
/// are adjacent in the cell; a value in overflow pages read from its chain.
pub(super) fn copy_entry(tree: &BTree<'_>, key: &[u8], cell: &LeafCell<'_>, bytes: &mut Vec<u8>) -> Result<()> {
    if cell.inline.is_some() {
        debug_assert!(cell.key_and_inline.starts_with(key) && cell.key_and_inline.len() == key.len() + cell.val_len);
        bytes.extend_from_slice(cell.key_and_inline);
        Ok(())
    } else {
        bytes.extend_from_slice(key);
        tree.read_value_into(cell, bytes)
    }
}

impl Batch {
    /// Append the entry of leaf cell `cell`, whose key is `key`.
    pub(super) fn push_cell(&mut self, tree: &BTree<'_>, key: &[u8], cell: &LeafCell<'_>) -> Result<()> {
        let ks = self.bytes.len();
        copy_entry(tree, key, cell, &mut self.bytes)?;
        let vs = ks + key.len();
        self.entries.push([ks, vs, vs, self.bytes.len()]);
        Ok(())
    }
    /// The key of the last entry.
    pub(super) fn last_key(&self) -> Option<&[u8]> {
        self.entries.last().map(|e| self.key(e))
    }
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
        self.next = 0;
    }
    fn key(&self, e: &[usize; 4]) -> &[u8] {
        &self.bytes[e[0]..e[1]]
    }
    /// The next entry, if any is left.
    #[inline]
    pub(super) fn take(&mut self) -> Option<(&[u8], &[u8])> {
        let e = *self.entries.get(self.next)?;
        self.next += 1;
        Some((&self.bytes[e[0]..e[1]], &self.bytes[e[2]..e[3]]))
    }
}

/// A value the merge could not place in the batch under the latch: the
/// before-image at `lsn` (`len` bytes) of entry `entry`, read from the log
/// once the latch is released.
struct LoggedValue {
    entry: usize,
    lsn: Lsn,
    len: usize,
}

/// An iterator over a snapshot's entries in a range, in ascending
/// (`Snapshot::scan`) or descending (`Snapshot::scan_rev`) key order. Reads
/// in batches, one latch hold each; the range left to read shrinks from the
/// start (ascending) or the end (descending). An ascending scan goes on
/// from the leaf where the last batch stopped when that leaf has not
/// changed since, without a descent from the root.
///
/// Besides `Iterator` (an owned key and value per entry), `next_entry`
/// lends each entry without copying it out of the scan's buffer.
pub struct SnapshotScan<'s> {
    snap: &'s Snapshot,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    reverse: bool,
    /// Ascending scans: where the last batch stopped in the tree.
    resume: Option<LeafPos>,
    /// The batch handed out, and the tree entries of the batch being read
    /// (kept for its allocation); back to the snapshot when the scan drops.
    buffers: ScanBuffers,
    done: bool,
}

impl Drop for SnapshotScan<'_> {
    /// Hand the buffers back, unless large values grew them past
    /// `ScanBuffers::KEEP_BYTES`: a snapshot keeps no more than that.
    fn drop(&mut self) {
        if self.buffers.batch.bytes.capacity() <= ScanBuffers::KEEP_BYTES {
            *self.snap.spare.lock() = Some(std::mem::take(&mut self.buffers));
        }
    }
}

impl std::fmt::Debug for SnapshotScan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotScan")
            .field("read_seq", &self.snap.read_seq)
            .field("reverse", &self.reverse)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl SnapshotScan<'_> {
    /// The next entry, borrowed from the scan until the next call: the same
    /// entries in the same order as the iterator, without an allocation per
    /// entry.
    ///
    /// # Errors
    /// As `Snapshot::get`. After an error the scan is over (`Ok(None)`).
    #[inline]
    pub fn next_entry(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        loop {
            if self.buffers.batch.next < self.buffers.batch.entries.len() {
                return Ok(self.buffers.batch.take());
            }
            if self.done {
                return Ok(None);
            }
            // A batch may be empty (every entry deleted for the snapshot):
            // read on.
            if let Err(e) = self.fill() {
                // A batch that failed may hold entries already (those whose
                // before-images were still to be read from the log): none
                // is handed out.
                self.buffers.batch.clear();
                self.done = true;
                return Err(e);
            }
        }
    }

    /// Read the next batch (stopping the database on an I/O error). Kept out
    /// of line: `next_entry`'s path within a batch stays short.
    #[inline(never)]
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
        let batch = &mut self.buffers.batch;
        batch.clear();
        let mut from_tree = std::mem::take(&mut self.buffers.from_tree);
        from_tree.clear();
        let mut resume_key: Option<Vec<u8>> = None;
        let mut logged: Vec<LoggedValue> = Vec::new();
        // Held until the values in `logged` are read.
        let _pins = {
            let _r = inner.read_latch()?;
            let tree = inner.tree();
            let bytes = &mut batch.bytes;
            let (lo, hi) = (as_ref(&self.lo), as_ref(&self.hi));
            if self.reverse {
                let mut take = |k: &[u8], cell: &LeafCell<'_>| {
                    if from_tree.len() == SCAN_BATCH {
                        resume_key = Some(k.to_vec());
                        return Ok(false);
                    }
                    let ks = bytes.len();
                    copy_entry(&tree, k, cell, bytes)?;
                    let vs = ks + k.len();
                    from_tree.push([ks, vs, vs, bytes.len()]);
                    Ok(true)
                };
                tree.scan_rev(lo, hi, &mut take)?;
            } else {
                let mut take = |_, g: &[u8], slots: Range<usize>| {
                    copy_leaf_entries(&tree, g, slots, bytes, &mut from_tree, &mut resume_key)
                };
                let start = match self.resume.take() {
                    Some(pos) => ScanStart::At(pos),
                    None => ScanStart::Key(lo),
                };
                let mut end = tree.scan_leaves_from(start, hi, &mut take)?;
                if end == ScanEnd::Stale {
                    end = tree.scan_leaves_from(ScanStart::Key(lo), hi, &mut take)?;
                }
                if let ScanEnd::Stopped(pos) = end {
                    self.resume = Some(pos);
                }
            }
            // The interval this batch covers: up to the first key left for
            // the next batch, else to the far end of the range.
            let interval = match (&resume_key, self.reverse) {
                (None, _) => (lo, hi),
                (Some(k), false) => (lo, Bound::Excluded(k.as_slice())),
                (Some(k), true) => (Bound::Excluded(k.as_slice()), hi),
            };
            let (mut changed, pins) = inner.versions.seen_in_range_pinned(snap.read_seq, interval)?;
            if changed.is_empty() {
                std::mem::swap(&mut batch.entries, &mut from_tree);
            } else {
                if self.reverse {
                    changed.reverse();
                }
                merge(&from_tree, changed, self.reverse, batch, &mut logged);
            }
            pins
        };
        self.buffers.from_tree = from_tree;
        for l in logged {
            let key = batch.key(&batch.entries[l.entry]).to_vec();
            let v = snap.read_logged(&key, l.lsn, l.len)?;
            let vs = batch.bytes.len();
            batch.bytes.extend_from_slice(&v);
            let e = &mut batch.entries[l.entry];
            e[2] = vs;
            e[3] = vs + v.len();
        }
        match (resume_key, self.reverse) {
            (Some(k), false) => self.lo = Bound::Included(k),
            (Some(k), true) => self.hi = Bound::Included(k),
            (None, _) => self.done = true,
        }
        Ok(())
    }
}

/// Append to a forward batch the entries of leaf `g` in `slots`, until the
/// batch holds `SCAN_BATCH`; then stop before the first entry left, whose
/// key goes to `resume_key`. When it takes `AREA_COPY_MIN` entries or more,
/// it copies the leaf's cell area (every cell lies in it: `check_layout`)
/// once and points into the copy, cheaper than a copy per entry; fewer are
/// copied one by one. A value in overflow pages is read after them.
fn copy_leaf_entries(
    tree: &BTree<'_>,
    g: &[u8],
    slots: Range<usize>,
    bytes: &mut Vec<u8>,
    from_tree: &mut Vec<[usize; 4]>,
    resume_key: &mut Option<Vec<u8>>,
) -> Result<Option<usize>> {
    /// Entries from one leaf that make copying its whole cell area pay.
    const AREA_COPY_MIN: usize = 8;
    let room = SCAN_BATCH - from_tree.len();
    let stop = slots.end.min(slots.start + room);
    if stop == slots.start {
        return Ok(match slots.is_empty() {
            true => None,
            false => {
                *resume_key = Some(LeafCell::at(g, stop).key.to_vec());
                Some(stop)
            }
        });
    }
    let first_entry = from_tree.len();
    if stop - slots.start >= AREA_COPY_MIN {
        let area = g.cell_start();
        let base = bytes.len();
        bytes.extend_from_slice(&g[area..]);
        for slot in slots.start..stop {
            let (at, key_len, val_len, in_overflow) = LeafCell::span_at(g, slot);
            debug_assert!(at >= area, "a verified leaf's cells lie in its cell area");
            let ks = base + at - area;
            let ke = ks + key_len;
            from_tree.push(match in_overflow {
                true => [ks, ke, usize::MAX, slot],
                false => [ks, ke, ke, ke + val_len],
            });
        }
    } else {
        for slot in slots.start..stop {
            let c = LeafCell::at(g, slot);
            let ks = bytes.len();
            bytes.extend_from_slice(c.key_and_inline);
            let ke = ks + c.key.len();
            from_tree.push(match c.inline {
                Some(_) => [ks, ke, ke, bytes.len()],
                None => [ks, ke, usize::MAX, slot],
            });
        }
    }
    for e in from_tree[first_entry..].iter_mut().filter(|e| e[2] == usize::MAX) {
        let c = LeafCell::at(g, e[3]);
        let vs = bytes.len();
        tree.read_value_into(&c, bytes)?;
        *e = [e[0], e[1], vs, bytes.len()];
    }
    if stop < slots.end {
        *resume_key = Some(LeafCell::at(g, stop).key.to_vec());
        return Ok(Some(stop));
    }
    Ok(None)
}

/// Merge a batch of tree entries (in `batch.bytes`) with the keys whose
/// snapshot view differs from the tree (both in the scan's order:
/// descending if `reverse`) into what the snapshot sees, in
/// `batch.entries`. Before-images held in memory are appended to
/// `batch.bytes`; those in the log are listed in `logged`.
fn merge(
    from_tree: &[[usize; 4]],
    changed: Vec<(Box<[u8]>, Before)>,
    reverse: bool,
    batch: &mut Batch,
    logged: &mut Vec<LoggedValue>,
) {
    let mut tree = from_tree.iter().copied().peekable();
    let mut changed = changed.into_iter().peekable();
    loop {
        let take_tree = match (tree.peek(), changed.peek()) {
            (None, None) => return,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(e), Some((ck, _))) => {
                let tk = batch.key(e);
                tk != &**ck && (tk < &**ck) != reverse
            }
        };
        if take_tree {
            let e = tree.next().expect("peeked");
            batch.entries.push(e);
            continue;
        }
        let (k, before) = changed.next().expect("peeked");
        if tree.peek().is_some_and(|e| batch.key(e) == &*k) {
            tree.next(); // the snapshot sees the before-image, not this
        }
        let ks = batch.bytes.len();
        batch.bytes.extend_from_slice(&k);
        let ke = batch.bytes.len();
        match before {
            Before::Absent => batch.bytes.truncate(ks),
            Before::Value(v) => {
                batch.bytes.extend_from_slice(&v);
                batch.entries.push([ks, ke, ke, batch.bytes.len()]);
            }
            Before::Logged { lsn, len } => {
                logged.push(LoggedValue { entry: batch.entries.len(), lsn, len });
                batch.entries.push([ks, ke, ke, ke]);
            }
        }
    }
}

impl Iterator for SnapshotScan<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some((k, v))) => Some(Ok((k.to_vec(), v.to_vec()))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
