//! The B+tree: variable-length keys and values on slotted pages, values too
//! long for a cell in overflow chains.
//!
//! Invariants:
//! - Inner node: `link` is the leftmost child; cell i = (key_i, child_i) and
//!   child_i holds keys in [key_i, key_{i+1}). `aux` is the level (leaves are 0).
//!   A separator is the shortest prefix that separates its two children
//!   (suffix truncation), not necessarily a key that exists.
//! - Leaf: cells sorted by key, unique keys; `link` is the right sibling, so the
//!   leaves form one chain in key order.
//! - Every change is logged through `BufferPool::log_and_apply`. A key change is
//!   one Update (or CLR) record whose parts include its overflow pages, every
//!   split, merge or redistribution it causes (`smo`), and the meta page, so
//!   it is atomic in the log and the tree's shape bounds hold after every
//!   record. (Logs of older versions also hold splits as redo-only records
//!   closed by a dummy CLR; recovery still reads them.)
//! - Undo of a key change is logical: the key is found again from the root,
//!   and the undo reshapes the tree as any change does; no structure change
//!   is undone page by page.
//! - Shape: every page but the root is at least as full as `smo` promises,
//!   so the height is bounded by what the tree holds (checked by `check`).
//! - Callers serialize writers with the tree latch (`latch::TreeLatch`, which
//!   also keeps log fsyncs out from under it); readers may run together.
//! - Every page read is checked for its expected type and level; loops over
//!   pages are bounded, so a damaged file gives `Error::Corruption`, not a hang.

mod check;
mod compact;
mod latch;
mod modify;
mod repair;
mod smo;

pub use crate::txn_log::TxnCtx;
pub use check::CheckReport;
pub use compact::compact_in_rounds;
pub use latch::{TreeLatch, TreeReadGuard, CHANGE_HEADROOM_PAGES};

use std::ops::{Bound, Range};

use crate::buffer::BufferPool;
use crate::error::{Error, Result};
use crate::page::{self, LeafCell, Meta, PageRef, PageType, META_PAGE};
use crate::types::{Lsn, PageId};

/// Largest key accepted (a limit of the cell layout, see `page::MAX_KEY_LEN`).
pub const MAX_KEY_LEN: usize = page::MAX_KEY_LEN;
/// Largest value accepted.
pub const MAX_VALUE_LEN: usize = 16 << 20;
/// Deepest tree accepted (a damaged file cannot make descent loop).
const MAX_DEPTH: usize = 40;

// The largest key change fits one log record: the new value in overflow pages
// (with each page's op header), the old value in the undo part, and a split
// or merge of two whole pages at every level of the deepest tree.
const _: () = assert!(
    2 * MAX_VALUE_LEN
        + (MAX_VALUE_LEN / (page::MIN_PAGE_SIZE - page::HEADER_LEN) + 1) * 32
        + 2 * MAX_DEPTH * page::MAX_PAGE_SIZE
        + (1 << 20)
        <= crate::wal::MAX_RECORD_LEN
);

/// A B+tree over the buffer pool.
pub struct BTree<'a> {
    pool: &'a BufferPool,
}

/// A root-to-leaf path: the pages and, for each inner page, the position of
/// the child taken (0 = leftmost, i+1 = cell i).
pub(crate) struct Path {
    pub nodes: Vec<PageId>,
    pub child_pos: Vec<usize>,
}

impl Path {
    pub fn leaf(&self) -> PageId {
        *self.nodes.last().expect("path has a leaf")
    }
}

fn corrupt(detail: impl std::fmt::Display) -> Error {
    Error::corruption("btree", detail)
}

/// Child page at position `pos` of an inner page.
pub(crate) fn child_at(b: &[u8], pos: usize) -> PageId {
    if pos == 0 {
        b.link()
    } else {
        page::inner_child(b, pos - 1)
    }
}

/// What a descent needs of the meta page: the root, and the page count
/// that bounds every page id it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub root: PageId,
    pub page_count: u32,
}

impl Shape {
    fn of(meta: &Meta) -> Shape {
        Shape { root: meta.root, page_count: meta.page_count }
    }

    /// True if `pid` may hold a tree page (as `Meta::holds`).
    pub fn holds(&self, pid: PageId) -> bool {
        pid > META_PAGE && pid.get() < self.page_count
    }
}

/// The key after a position in a leaf, as far as that leaf knows it.
pub(crate) enum NextKey {
    /// This key, in the same leaf.
    Key(Vec<u8>),
    /// The first key from this leaf on (the right sibling; none at the end).
    After(PageId),
}

impl NextKey {
    /// The key at slot `at` of leaf `g`, or past its end.
    pub(crate) fn at(g: &[u8], at: usize) -> NextKey {
        if at < g.slot_count() {
            NextKey::Key(page::cell_key(g, at).to_vec())
        } else {
            NextKey::After(g.link())
        }
    }
}

/// Which leaf a descent looks for.
#[derive(Clone, Copy)]
enum Target<'k> {
    /// The leaf whose key range holds this key.
    Covering(&'k [u8]),
    /// The first leaf.
    Leftmost,
    /// The last leaf.
    Rightmost,
}

/// Position of the child that covers `key`.
pub(crate) fn child_pos_for(b: &[u8], key: &[u8]) -> usize {
    match page::search(b, key) {
        Ok(i) => i + 1,
        Err(i) => i,
    }
}

impl<'a> BTree<'a> {
    /// A tree over `pool`.
    pub fn new(pool: &'a BufferPool) -> BTree<'a> {
        BTree { pool }
    }

    /// Read the meta page.
    pub fn meta(&self) -> Result<Meta> {
        let h = self.pool.fetch(META_PAGE)?;
        let g = h.read();
        Meta::read(&g)
    }

    /// The root and page count, from the pool's cache of the meta page
    /// (no fetch) when it is known. Call with the tree latch held, as for
    /// any read of the tree.
    pub(crate) fn shape(&self) -> Result<Shape> {
        let shape = match self.pool.meta_shape() {
            Some((root, page_count)) => Shape { root, page_count },
            None => {
                let meta = self.meta()?;
                self.pool.fill_meta_shape(&meta);
                Shape::of(&meta)
            }
        };
        #[cfg(debug_assertions)]
        {
            let meta = self.meta()?;
            assert_eq!(shape, Shape::of(&meta), "the cached meta shape differs from the meta page");
        }
        Ok(shape)
    }

    /// Descend from the root to the leaf that covers `key`, and run `at_leaf`
    /// on its bytes in the descent's own latch hold (one fetch and one latch
    /// of the leaf serve both the path and what the caller reads there).
    pub(crate) fn find_leaf_with<T>(&self, key: &[u8], at_leaf: impl FnOnce(&[u8]) -> Result<T>) -> Result<(Path, T)> {
        let meta = self.shape()?;
        let path = Path { nodes: Vec::with_capacity(8), child_pos: Vec::with_capacity(8) };
        self.descend_from(&meta, path, meta.root, None, Target::Covering(key), true, |path, _, g| {
            Ok((path, at_leaf(g)?))
        })
    }

    /// Descend from the root to the leaf that covers `key` (or the leftmost leaf
    /// when `key` is None).
    pub(crate) fn find_leaf(&self, key: Option<&[u8]>) -> Result<Path> {
        self.descend(match key {
            Some(k) => Target::Covering(k),
            None => Target::Leftmost,
        })
    }

    /// Descend from the root to the leaf `target` names.
    fn descend(&self, target: Target<'_>) -> Result<Path> {
        let meta = self.shape()?;
        let path = Path { nodes: Vec::with_capacity(8), child_pos: Vec::with_capacity(8) };
        self.descend_from(&meta, path, meta.root, None, target, true, |path, _, _| Ok(path))
    }

    /// Descend from `pid` (at `expect_level`, the end of `path`) to the leaf
    /// `target` names, and give the path and the leaf's bytes (still
    /// latched) to `at_leaf`. With `track` false the pages passed are not
    /// added to `path` (a point lookup needs no path).
    #[allow(clippy::too_many_arguments)]
    fn descend_from<T>(
        &self,
        meta: &Shape,
        mut path: Path,
        mut pid: PageId,
        mut expect_level: Option<u32>,
        target: Target<'_>,
        track: bool,
        at_leaf: impl FnOnce(Path, PageId, &[u8]) -> Result<T>,
    ) -> Result<T> {
        let mut depth = path.nodes.len();
        loop {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(corrupt("tree deeper than any real tree: a cycle of pages"));
            }
            if !meta.holds(pid) {
                return Err(corrupt(format!("child pointer to page {pid} outside the file")));
            }
            let h = self.pool.fetch(pid)?;
            let g = h.read();
            if track {
                path.nodes.push(pid);
            }
            match g.page_type() {
                Some(PageType::Leaf) => {
                    if expect_level.is_some_and(|l| l != 0) {
                        return Err(corrupt(format!("leaf {pid} where level {expect_level:?} was expected")));
                    }
                    return at_leaf(path, pid, &g);
                }
                Some(PageType::Inner) => {
                    let level = g.aux();
                    if level == 0 || expect_level.is_some_and(|l| l != level) {
                        return Err(corrupt(format!("inner page {pid} has level {level}")));
                    }
                    let pos = match target {
                        Target::Covering(k) => child_pos_for(&g, k),
                        Target::Leftmost => 0,
                        Target::Rightmost => g.slot_count(),
                    };
                    if track {
                        path.child_pos.push(pos);
                    }
                    pid = child_at(&g, pos);
                    expect_level = Some(level - 1);
                }
                other => return Err(corrupt(format!("page {pid} of type {other:?} inside the tree"))),
            }
        }
    }

    /// Point lookup.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        Ok(self.get_into(key, &mut out)?.then_some(out))
    }

    /// Point lookup into `out` (cleared first): true if `key` is present.
    pub fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        let meta = self.shape()?;
        let path = Path { nodes: Vec::new(), child_pos: Vec::new() };
        // The leaf is searched in the descent's own latch hold.
        self.descend_from(&meta, path, meta.root, None, Target::Covering(key), false, |_, _, g| {
            match page::search(g, key) {
                Ok(slot) => {
                    let c = LeafCell::at(g, slot);
                    self.read_value_into(&c, out)?;
                    Ok(true)
                }
                Err(_) => Ok(false),
            }
        })
    }

    /// The key a `NextKey` stands for: past the end of its leaf, the first
    /// key of the next non-empty leaf.
    pub(crate) fn resolve_next(&self, next: NextKey) -> Result<Option<Vec<u8>>> {
        let mut pid = match next {
            NextKey::Key(k) => return Ok(Some(k)),
            NextKey::After(link) => link,
        };
        let meta = self.shape()?;
        for _ in 0..=meta.page_count {
            if pid.is_none() {
                return Ok(None);
            }
            if !meta.holds(pid) {
                return Err(corrupt(format!("leaf link to page {pid} outside the file")));
            }
            let h = self.pool.fetch(pid)?;
            let g = h.read();
            if g.page_type() != Some(PageType::Leaf) {
                return Err(corrupt(format!("leaf chain reaches page {pid} of type {:?}", g.page_type())));
            }
            if g.slot_count() > 0 {
                return Ok(Some(page::cell_key(&g, 0).to_vec()));
            }
            pid = g.link();
        }
        Err(corrupt("leaf chain loops"))
    }

    /// The value of a leaf cell, following its overflow chain if any.
    pub(crate) fn read_value(&self, c: &LeafCell<'_>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_value_into(c, &mut out)?;
        Ok(out)
    }

    /// Append the value of leaf cell `c` to `out` (inline, or from its
    /// overflow chain, checked for type and length).
    pub(crate) fn read_value_into(&self, c: &LeafCell<'_>, out: &mut Vec<u8>) -> Result<()> {
        if let Some(v) = c.inline {
            out.extend_from_slice(v);
            return Ok(());
        }
        let first = c.overflow.expect("overflow cell");
        if c.val_len > MAX_VALUE_LEN {
            return Err(corrupt(format!("value of {} bytes", c.val_len)));
        }
        out.reserve(c.val_len);
        let base = out.len();
        for pid in self.overflow_chain(first, c.val_len)? {
            let h = self.pool.fetch(pid)?;
            let g = h.read();
            let data = page::overflow_data(&g);
            if out.len() - base + data.len() > c.val_len {
                return Err(corrupt(format!("overflow chain at page {pid} longer than its value")));
            }
            out.extend_from_slice(data);
        }
        if out.len() - base != c.val_len {
            return Err(corrupt(format!(
                "overflow chain from page {first} holds {} of {} bytes",
                out.len() - base,
                c.val_len
            )));
        }
        Ok(())
    }

    /// Page ids of an overflow chain of a value of `val_len` bytes, checked for
    /// type and length (no cycles: the count is bounded by the value length).
    pub(crate) fn overflow_chain(&self, first: PageId, val_len: usize) -> Result<Vec<PageId>> {
        let cap = page::overflow_capacity(self.pool.page_size());
        let expect = val_len.div_ceil(cap);
        let mut pages = Vec::with_capacity(expect);
        let mut pid = first;
        while !pid.is_none() {
            if pages.len() >= expect {
                return Err(corrupt(format!("overflow chain from page {first} is longer than its value")));
            }
            let h = self.pool.fetch(pid)?;
            let g = h.read();
            if g.page_type() != Some(PageType::Overflow) {
                return Err(corrupt(format!("page {pid} in an overflow chain is {:?}", g.page_type())));
            }
            pages.push(pid);
            pid = g.link();
        }
        if pages.len() != expect {
            return Err(corrupt(format!(
                "overflow chain from page {first} has {} pages, expected {expect}",
                pages.len()
            )));
        }
        Ok(pages)
    }

    /// The leaf before the one `path` leads to, by the same inner pages: up
    /// to the lowest level where the path did not take the first child, one
    /// child left, then down the last children. None: it was the first leaf.
    fn prev_leaf(&self, meta: &Shape, path: &Path) -> Result<Option<Path>> {
        let Some(level) = path.child_pos.iter().rposition(|&p| p > 0) else { return Ok(None) };
        let pos = path.child_pos[level] - 1;
        let (child, child_level) = {
            let h = self.pool.fetch(path.nodes[level])?;
            let g = h.read();
            (child_at(&g, pos), g.aux().checked_sub(1))
        };
        let mut up = Path { nodes: path.nodes[..=level].to_vec(), child_pos: path.child_pos[..level].to_vec() };
        up.child_pos.push(pos);
        self.descend_from(meta, up, child, child_level, Target::Rightmost, true, |path, _, _| Ok(path)).map(Some)
    }

    /// Visit entries in descending key order from `end` down to `start`,
    /// until `visit` returns false. Leaves link only to the right, so each
    /// leaf is reached by its own descent: the leaf below the smallest key of
    /// the one just visited.
    ///
    /// # Errors
    /// `Error::Corruption` for a damaged tree (a descent that does not move
    /// left ends it rather than loop); an I/O error.
    pub fn scan_rev(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        mut visit: impl FnMut(&[u8], &LeafCell<'_>) -> Result<bool>,
    ) -> Result<()> {
        let meta = self.shape()?;
        let mut path = self.descend(match end {
            Bound::Included(k) | Bound::Excluded(k) => Target::Covering(k),
            Bound::Unbounded => Target::Rightmost,
        })?;
        let mut first = true;
        let mut prev_first: Option<Vec<u8>> = None;
        for _ in 0..=meta.page_count {
            let h = self.pool.fetch(path.leaf())?;
            let g = h.read();
            if g.page_type() != Some(PageType::Leaf) {
                return Err(corrupt(format!(
                    "page {} of type {:?} where a leaf was expected",
                    path.leaf(),
                    g.page_type()
                )));
            }
            let hi = match (first, end) {
                (true, Bound::Included(k)) => page::search(&g, k).map_or_else(|i| i, |i| i + 1),
                (true, Bound::Excluded(k)) => page::search(&g, k).unwrap_or_else(|i| i),
                _ => g.slot_count(),
            };
            first = false;
            for slot in (0..hi).rev() {
                let c = LeafCell::at(&g, slot);
                if prev_first.as_deref().is_some_and(|p| c.key >= p) {
                    return Err(corrupt(format!("leaf {} holds keys out of order with the next leaf", path.leaf())));
                }
                let before_start = match start {
                    Bound::Included(s) => c.key < s,
                    Bound::Excluded(s) => c.key <= s,
                    Bound::Unbounded => false,
                };
                if before_start || !visit(c.key, &c)? {
                    return Ok(());
                }
            }
            if g.slot_count() > 0 {
                prev_first = Some(page::cell_key(&g, 0).to_vec());
            }
            drop(g);
            match self.prev_leaf(&meta, &path)? {
                Some(p) => path = p,
                None => return Ok(()),
            }
        }
        Err(corrupt("a reverse scan visited more leaves than the file has pages"))
    }

    /// Visit entries in key order from `start`, until `end` or until `visit`
    /// returns false. `visit` gets the key and the cell (to read the value).
    pub fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        visit: impl FnMut(&[u8], &LeafCell<'_>) -> Result<bool>,
    ) -> Result<()> {
        self.scan_from(ScanStart::Key(start), end, visit).map(|_| ())
    }

    /// As `scan`, from a key bound or from where an earlier scan stopped;
    /// says where this one stopped, so that the next can go on from there
    /// without a descent.
    ///
    /// # Errors
    /// `Error::Corruption` for a damaged tree; an I/O error.
    pub fn scan_from(
        &self,
        start: ScanStart<'_>,
        end: Bound<&[u8]>,
        mut visit: impl FnMut(&[u8], &LeafCell<'_>) -> Result<bool>,
    ) -> Result<ScanEnd> {
        self.scan_leaves_from(start, end, |_, g, slots| {
            for slot in slots {
                let c = LeafCell::at(g, slot);
                if !visit(c.key, &c)? {
                    return Ok(Some(slot));
                }
            }
            Ok(None)
        })
    }

    /// As `scan_from`, a leaf at a time: `visit` gets each leaf's id, its
    /// bytes (latched) and the slots of its entries within the range, and
    /// says where to stop (`Some(slot)`: before that slot, which must lie in
    /// the slots given or at their end) or to go on (`None`). The range's
    /// end is found once per leaf (a binary search), not per entry.
    ///
    /// # Errors
    /// `Error::Corruption` for a damaged tree; an I/O error; any error of
    /// `visit`.
    pub fn scan_leaves_from(
        &self,
        start: ScanStart<'_>,
        end: Bound<&[u8]>,
        mut visit: impl FnMut(PageId, &[u8], Range<usize>) -> Result<Option<usize>>,
    ) -> Result<ScanEnd> {
        let meta = self.shape()?;
        let first = match start {
            ScanStart::Key(bound) => {
                let key = match bound {
                    Bound::Included(k) | Bound::Excluded(k) => Target::Covering(k),
                    Bound::Unbounded => Target::Leftmost,
                };
                let path = Path { nodes: Vec::new(), child_pos: Vec::new() };
                // The first leaf is read in the descent's own latch hold.
                self.descend_from(&meta, path, meta.root, None, key, false, |_, pid, g| {
                    let from = match bound {
                        Bound::Included(k) => page::search(g, k).unwrap_or_else(|i| i),
                        Bound::Excluded(k) => page::search(g, k).map_or_else(|i| i, |i| i + 1),
                        Bound::Unbounded => 0,
                    };
                    Self::visit_leaf(pid, g, from, end, &mut visit)
                })?
            }
            ScanStart::At(pos) => {
                if !meta.holds(pos.page_id) {
                    return Ok(ScanEnd::Stale);
                }
                let h = self.pool.fetch(pos.page_id)?;
                let g = h.read();
                if g.page_type() != Some(PageType::Leaf) || g.page_lsn() != pos.page_lsn || pos.slot > g.slot_count() {
                    return Ok(ScanEnd::Stale);
                }
                Self::visit_leaf(pos.page_id, &g, pos.slot, end, &mut visit)?
            }
        };
        let mut pid = match first {
            LeafStep::Next(pid) => pid,
            LeafStep::End(e) => return Ok(e),
        };
        for _ in 0..=meta.page_count {
            if pid.is_none() {
                return Ok(ScanEnd::Done);
            }
            if !meta.holds(pid) {
                return Err(corrupt(format!("leaf link to page {pid} outside the file")));
            }
            let h = self.pool.fetch(pid)?;
            let g = h.read();
            if g.page_type() != Some(PageType::Leaf) {
                return Err(corrupt(format!("leaf chain reaches page {pid} of type {:?}", g.page_type())));
            }
            match Self::visit_leaf(pid, &g, 0, end, &mut visit)? {
                LeafStep::Next(next) => pid = next,
                LeafStep::End(e) => return Ok(e),
            }
        }
        Err(corrupt("leaf chain loops: longer than the file has pages"))
    }

    /// Visit leaf `pid` (latched, bytes `g`) from `from` on, up to `end`.
    fn visit_leaf(
        pid: PageId,
        g: &[u8],
        from: usize,
        end: Bound<&[u8]>,
        visit: &mut impl FnMut(PageId, &[u8], Range<usize>) -> Result<Option<usize>>,
    ) -> Result<LeafStep> {
        let count = g.slot_count();
        let to = match end {
            Bound::Included(e) => page::search(g, e).map_or_else(|i| i, |i| i + 1),
            Bound::Excluded(e) => page::search(g, e).unwrap_or_else(|i| i),
            Bound::Unbounded => count,
        };
        let slots = from..to.max(from);
        if let Some(slot) = visit(pid, g, slots.clone())? {
            assert!(slots.contains(&slot) || slot == slots.end, "a leaf visit stopped outside its slots");
            let pos = LeafPos { page_id: pid, page_lsn: g.page_lsn(), slot };
            return Ok(LeafStep::End(ScanEnd::Stopped(pos)));
        }
        if to < count {
            return Ok(LeafStep::End(ScanEnd::Done));
        }
        Ok(LeafStep::Next(g.link()))
    }
}

/// Where a forward scan starts.
#[derive(Clone, Copy, Debug)]
pub enum ScanStart<'k> {
    /// At the first key within this bound.
    Key(Bound<&'k [u8]>),
    /// Where an earlier scan stopped, if that leaf has not changed since.
    At(LeafPos),
}

/// An entry's place in a leaf as the leaf was at `page_lsn`: valid while
/// the page's LSN is unchanged, since every change of a page sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafPos {
    /// The leaf.
    pub page_id: PageId,
    /// Its LSN when the position was taken.
    pub page_lsn: Lsn,
    /// The entry's slot.
    pub slot: usize,
}

/// How a forward scan ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// At `end` or past the last key.
    Done,
    /// `visit` refused the entry at this position.
    Stopped(LeafPos),
    /// `ScanStart::At` named a leaf that has changed since: start again from a key.
    Stale,
}

/// After one leaf: go on to the next (`PageId::NONE`: none), or stop.
enum LeafStep {
    Next(PageId),
    End(ScanEnd),
}
