//! Structure modifications: splits, merges, redistributions, shares with a
//! sibling and root changes, planned in memory and logged in the same record
//! as the key change that caused them.
//!
//! A key change that leaves its leaf over-full or under-full loads the pages
//! it must reshape into a `Plan`, fixes the tree bottom-up along the path it
//! descended (`Plan::fix_up`), and emits the page parts of one log record:
//! for each page it loaded, ops on the page as it was (truncate, delete,
//! replace, insert, set link) or a whole-page `Init`, whichever logs fewer
//! bytes (`Node::page_parts`); an `Init` for each new page, `Free` inits for
//! pages given back, one-cell ops for pages it changed without loading them
//! (a split's or a share's parent, a share's sibling), and the meta page. The
//! record is an Update (or a CLR during rollback) whose undo is logical: undo
//! finds the key again from the root and reshapes the tree as it needs, so no
//! structure change is ever undone page by page, and a crash can never leave
//! a split without the insert that needed it (ARIES/IM, Mohan and Levine,
//! SIGMOD 1992, section 3, where the same property is reached with nested top
//! actions; one record gives it here with no dummy CLR).
//!
//! Shape invariants kept after every record (checked by `BTree::check`):
//! - every leaf except the root holds at least `leaf_min_fill` bytes of cells
//!   and slots (about a third of the page);
//! - every inner page except the root has at least one separator and at least
//!   `inner_min_fill` bytes (half the page less two of the longest possible
//!   cells);
//! - an inner root has at least one separator (a root with one child is
//!   collapsed).
//!
//! Splits and redistributions choose the boundary that makes the smaller side
//! as large as possible; with every cell at most a third of the page this is
//! what makes the bounds above hold (see docs/design.md, section 5.1). A
//! share (`shift_to_sibling`) keeps both leaves within them too, and leaves
//! each with room for about two more cells.
//!
//! The ops of a patched page are ordered so that every step fits the page
//! (`Node::into_patch_ops`): redo applies them one by one.

use super::*;
use crate::alloc::PageAllocator;
use crate::page::{PageOp, INNER_CELL_HEADER, LEAF_CELL_HEADER};
use crate::wal::PagePart;

/// The largest footprint (cell plus slot) of an inner cell.
pub(crate) const INNER_CELL_MAX: usize = INNER_CELL_HEADER + MAX_KEY_LEN + 2;

/// Bytes a cell takes on its page: the cell and its slot.
fn footprint(c: &[u8]) -> usize {
    c.len() + 2
}

fn used(cells: &[Vec<u8>]) -> usize {
    cells.iter().map(|c| footprint(c)).sum()
}

/// The largest footprint of a leaf cell on pages of `page_size` bytes.
fn leaf_cell_max(page_size: usize) -> usize {
    page::max_cell(page_size) + 2
}

/// The fewest bytes of cells and slots a leaf other than the root holds.
/// A split or redistribution of more than a page's worth of cells leaves
/// each side at least (total - largest cell) / 2 of it.
pub(crate) fn leaf_min_fill(page_size: usize) -> usize {
    (page::usable_space(page_size) + 1 - leaf_cell_max(page_size)) / 2
}

/// The fewest bytes of cells and slots an inner page other than the root
/// holds. Pushing one cell up costs the split up to two cells of balance.
pub(crate) fn inner_min_fill(page_size: usize) -> usize {
    (page::usable_space(page_size) + 1 - 2 * INNER_CELL_MAX) / 2
}

/// Below this, an inner page is rebalanced: half the page less two of its own
/// largest cells. For the short separators of most trees this keeps inner
/// pages about half full (so fanout, and the height bound, follow the
/// separators actually present); it is never below `inner_min_fill`.
fn inner_rebalance_fill(page_size: usize, cells: &[Vec<u8>]) -> usize {
    rebalance_fill(page_size, cells.iter().map(|c| footprint(c)).max().unwrap_or(INNER_CELL_MAX))
}

/// `inner_rebalance_fill` of an inner page whose largest cell footprint is
/// `largest`.
fn rebalance_fill(page_size: usize, largest: usize) -> usize {
    (page::usable_space(page_size) + 1).saturating_sub(2 * largest) / 2
}

/// Key of an encoded cell of a page of type `ty`.
fn key_of(ty: PageType, c: &[u8]) -> &[u8] {
    let klen = u16::from_le_bytes([c[0], c[1]]) as usize;
    let hdr = if ty == PageType::Leaf { LEAF_CELL_HEADER } else { INNER_CELL_HEADER };
    &c[hdr..hdr + klen]
}

/// Child page of an encoded inner cell.
fn child_of(c: &[u8]) -> PageId {
    PageId(u32::from_le_bytes([c[2], c[3], c[4], c[5]]))
}

fn inner_cell(key: &[u8], child: PageId) -> Vec<u8> {
    let mut c = Vec::with_capacity(INNER_CELL_HEADER + key.len());
    page::encode_inner(key, child, &mut c);
    c
}

/// The shortest separator `s` with `left < s <= right`: the shortest prefix of
/// `right` that is greater than `left` (suffix truncation, as in the prefix
/// B-trees of Bayer and Unterauer, TODS 1977).
pub(crate) fn separator<'k>(left: &[u8], right: &'k [u8]) -> &'k [u8] {
    assert!(left < right, "separator of keys out of order");
    let common = left.iter().zip(right).take_while(|(a, b)| a == b).count();
    // left < right, so either left is a proper prefix of right (common =
    // left.len() < right.len()) or they differ at `common` < both lengths.
    let s = &right[..common + 1];
    debug_assert!(left < s && s <= right);
    s
}

/// Where to cut `cells` into `[..b]` and `[b..]` so that the smaller side
/// holds as many bytes as possible; both sides non-empty.
fn leaf_split_point(cells: &[Vec<u8>]) -> usize {
    debug_assert!(cells.len() >= 2);
    let total = used(cells);
    let (mut best, mut best_at, mut acc) = (0, 1, 0);
    for (b, c) in cells.iter().enumerate().take(cells.len() - 1) {
        acc += footprint(c);
        let smaller = acc.min(total - acc);
        if smaller > best {
            (best, best_at) = (smaller, b + 1);
        }
    }
    best_at
}

/// Which inner cell `k` to push up, leaving `[..k]` and `[k + 1..]`, so that
/// the smaller side holds as many bytes as possible; both sides non-empty.
fn inner_split_point(cells: &[Vec<u8>]) -> usize {
    debug_assert!(cells.len() >= 3);
    let total = used(cells);
    let (mut best, mut best_at, mut before) = (0, 1, footprint(&cells[0]));
    for (k, c) in cells.iter().enumerate().take(cells.len() - 1).skip(1) {
        let smaller = before.min(total - before - footprint(c));
        if smaller > best {
            (best, best_at) = (smaller, k);
        }
        before += footprint(c);
    }
    best_at
}

/// Where a leaf split should put its boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SplitBias {
    /// As even as the bytes allow.
    Even,
    /// The insert that overflowed the leaf went to the end of the last leaf
    /// (keys arriving in ascending order): leave the right page as small as
    /// the fill bound allows, so the left one stays about two thirds full.
    Append,
    /// The insert went to the start of the first leaf (descending order): the
    /// mirror image.
    Prepend,
}

/// A cut of a leaf's cells for `bias`, if one keeps both sides within the
/// fill bounds; None: use the even cut.
fn biased_split_point(cells: &[Vec<u8>], bias: SplitBias, min: usize, usable: usize) -> Option<usize> {
    let total = used(cells);
    let fits = |left: usize| left >= min && total - left >= min && left <= usable && total - left <= usable;
    let mut prefix = 0;
    let mut cuts = Vec::with_capacity(cells.len());
    for c in &cells[..cells.len() - 1] {
        prefix += footprint(c);
        cuts.push(prefix);
    }
    match bias {
        SplitBias::Even => None,
        SplitBias::Append => cuts.iter().rposition(|&l| fits(l)).map(|i| i + 1),
        SplitBias::Prepend => cuts.iter().position(|&l| fits(l)).map(|i| i + 1),
    }
}

/// Where a node's cell came from: a slot of a page as the plan loaded it,
/// unchanged or replaced in place (with the length the cell had there), or
/// nowhere (a new cell). Cells keep their origin when they move between
/// nodes; a cell counts as already on a page only on the page it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Kept(PageId, u16),
    Replaced(PageId, u16, usize),
    New,
}

impl Origin {
    /// The slot this cell held on page `pid` as loaded, if it came from there.
    fn slot_on(self, pid: PageId) -> Option<u16> {
        match self {
            Origin::Kept(p, s) | Origin::Replaced(p, s, _) if p == pid => Some(s),
            _ => None,
        }
    }
}

/// A page being reshaped: its cells in memory, where each came from, and
/// what the page held when the plan loaded it, so that `finish` can log the
/// change as ops on the old page or as a whole new page, whichever is less.
#[derive(Clone)]
pub(crate) struct Node {
    pub pid: PageId,
    pub ty: PageType,
    pub link: PageId,
    pub level: u32,
    pub cells: Vec<Vec<u8>>,
    /// Parallel to `cells`.
    origin: Vec<Origin>,
    /// The slot count and link of the page as loaded; None for a page this
    /// plan made (always written whole).
    loaded: Option<(usize, PageId)>,
    freed: bool,
}

impl Node {
    fn used(&self) -> usize {
        used(&self.cells)
    }

    fn key(&self, i: usize) -> &[u8] {
        key_of(self.ty, &self.cells[i])
    }

    /// Child at position `pos` (0 = the leftmost, `link`).
    fn child_at(&self, pos: usize) -> PageId {
        debug_assert_eq!(self.ty, PageType::Inner);
        if pos == 0 {
            self.link
        } else {
            child_of(&self.cells[pos - 1])
        }
    }

    pub fn insert(&mut self, slot: usize, cell: Vec<u8>) {
        self.cells.insert(slot, cell);
        self.origin.insert(slot, Origin::New);
    }

    pub fn replace(&mut self, slot: usize, cell: Vec<u8>) {
        let old_len = self.cells[slot].len();
        self.origin[slot] = match self.origin[slot] {
            Origin::Kept(p, s) => Origin::Replaced(p, s, old_len),
            other => other,
        };
        self.cells[slot] = cell;
    }

    pub fn remove(&mut self, slot: usize) {
        self.cells.remove(slot);
        self.origin.remove(slot);
    }

    /// Cells `[at..]` and their origins, taken off the node.
    fn split_off(&mut self, at: usize) -> (Vec<Vec<u8>>, Vec<Origin>) {
        (self.cells.split_off(at), self.origin.split_off(at))
    }

    /// Every cell and its origin, taken off the node.
    fn take_all(&mut self) -> (Vec<Vec<u8>>, Vec<Origin>) {
        (std::mem::take(&mut self.cells), std::mem::take(&mut self.origin))
    }

    fn set_cells(&mut self, (cells, origin): (Vec<Vec<u8>>, Vec<Origin>)) {
        debug_assert_eq!(cells.len(), origin.len());
        self.cells = cells;
        self.origin = origin;
    }

    /// Whether the page as loaded can be patched into this node: it was
    /// loaded, and its cells still here are in their old order (no change
    /// here reorders them; otherwise the page is written whole).
    fn patchable(&self) -> bool {
        let Some((count, _)) = self.loaded else { return false };
        let mut next = 0usize;
        for o in &self.origin {
            if let Some(s) = o.slot_on(self.pid) {
                if (s as usize) < next || s as usize >= count {
                    return false;
                }
                next = s as usize + 1;
            }
        }
        true
    }

    /// About how many bytes the patch of a `patchable` node logs: each op
    /// adds its cell and about 12 bytes (page id, tag, slot, length). The
    /// old cells that left are one `Truncate` for the suffix past the last
    /// one kept and a `Delete` for each of the others (`into_patch_ops`).
    fn patch_len(&self) -> usize {
        let (count, old_link) = self.loaded.expect("patchable");
        let kept = self.origin.iter().filter(|o| o.slot_on(self.pid).is_some()).count();
        let end = self.origin.iter().filter_map(|o| o.slot_on(self.pid)).max().map_or(0, |s| s as usize + 1);
        let removals = (end - kept) + usize::from(end < count);
        let changed: usize = (self.origin.iter().zip(&self.cells))
            .filter(|(o, _)| !matches!(o, Origin::Kept(p, _) if *p == self.pid))
            .map(|(_, c)| c.len() + 12)
            .sum();
        changed + removals * 12 + if self.link != old_link { 12 } else { 0 }
    }

    /// The ops that turn the page as loaded into this node (which must be
    /// `patchable`), taking its cells. Each op leaves the page no fuller
    /// than the larger of the page as loaded and the node, so every step
    /// fits: first the old cells that left (a suffix by one `Truncate`, the
    /// rest from the highest slot down), then the replacements that shrink
    /// a cell, then those that grow one, then the new cells from the lowest
    /// slot up.
    fn into_patch_ops(mut self) -> Vec<PageOp> {
        let (count, old_link) = self.loaded.expect("patchable");
        let mut present = vec![false; count];
        for o in &self.origin {
            if let Some(s) = o.slot_on(self.pid) {
                present[s as usize] = true;
            }
        }
        let mut ops = Vec::new();
        let end = present.iter().rposition(|&p| p).map_or(0, |s| s + 1);
        if end < count {
            ops.push(PageOp::Truncate { from: end as u16 });
        }
        for s in (0..end).rev().filter(|&s| !present[s]) {
            ops.push(PageOp::Delete { slot: s as u16 });
        }
        // Replacements at their slots among the old cells still here.
        let mut grow = Vec::new();
        let mut rank = 0u16;
        for (i, o) in self.origin.iter().enumerate() {
            if let Origin::Replaced(p, _, old_len) = *o {
                if p == self.pid {
                    let shrinks = self.cells[i].len() <= old_len;
                    let op = PageOp::Replace { slot: rank, cell: std::mem::take(&mut self.cells[i]) };
                    if shrinks {
                        ops.push(op);
                    } else {
                        grow.push(op);
                    }
                }
            }
            if o.slot_on(self.pid).is_some() {
                rank += 1;
            }
        }
        ops.append(&mut grow);
        for (i, o) in self.origin.iter().enumerate() {
            if o.slot_on(self.pid).is_none() {
                ops.push(PageOp::Insert { slot: i as u16, cell: std::mem::take(&mut self.cells[i]) });
            }
        }
        if self.link != old_link {
            ops.push(PageOp::SetLink(self.link));
        }
        ops
    }

    /// The parts that log this node's page: nothing if it did not change,
    /// else its patch ops or one whole-page `Init`, whichever logs fewer
    /// bytes.
    fn page_parts(self, parts: &mut Vec<PagePart>) {
        let pid = self.pid;
        if self.patchable() {
            let patch_len = self.patch_len();
            if patch_len == 0 {
                return;
            }
            if patch_len < used(&self.cells) + 16 {
                parts.extend(self.into_patch_ops().into_iter().map(|op| PagePart { page_id: pid, op }));
                return;
            }
        }
        parts.push(PagePart {
            page_id: pid,
            op: PageOp::Init { ty: self.ty as u8, link: self.link, aux: self.level, cells: self.cells },
        });
    }
}

/// `Plan::shift_to_sibling` leaves each of the two leaves about this many
/// average cells of room: fewer fill pages more but move cells more often.
const SHIFT_SLACK_CELLS: usize = 2;

/// What `Plan::shift_to_sibling` did.
enum Shift {
    /// Nothing: no sibling under the same parent had room.
    NoRoom,
    /// The cells were shared and the parent took its new separator unloaded.
    Done,
    /// The cells were shared; the parent (this node) changed and is fixed next.
    Parent(usize),
}

/// The pages one record reshapes, and its page allocation.
pub(crate) struct Plan<'t, 'p> {
    tree: &'t BTree<'p>,
    page_size: usize,
    usable: usize,
    pub alloc: PageAllocator,
    nodes: Vec<Node>,
    /// One-cell inserts into parents that took a split's separator without
    /// being loaded (`insert_into_unloaded_parent`); such a page is never
    /// loaded into the plan afterwards.
    unloaded: Vec<PagePart>,
    /// How to cut the first leaf split of the plan.
    pub bias: SplitBias,
}

impl<'t, 'p> Plan<'t, 'p> {
    pub fn new(tree: &'t BTree<'p>, alloc: PageAllocator) -> Plan<'t, 'p> {
        let page_size = tree.pool.page_size();
        Plan {
            tree,
            page_size,
            usable: page::usable_space(page_size),
            alloc,
            nodes: Vec::new(),
            unloaded: Vec::new(),
            bias: SplitBias::Even,
        }
    }

    pub fn node(&mut self, idx: usize) -> &mut Node {
        &mut self.nodes[idx]
    }

    /// Load page `pid` (once per plan), which must be a tree page of `level`.
    pub fn load(&mut self, pid: PageId, level: u32) -> Result<usize> {
        if let Some(i) = self.nodes.iter().position(|n| n.pid == pid && !n.freed) {
            if self.nodes[i].level != level {
                return Err(corrupt(format!("page {pid} reached at level {level} and {}", self.nodes[i].level)));
            }
            return Ok(i);
        }
        if !self.alloc.meta.holds(pid) {
            return Err(corrupt(format!("child pointer to page {pid} outside the file")));
        }
        assert!(
            !self.unloaded.iter().any(|p| p.page_id == pid),
            "page {pid} patched without being loaded, then loaded: the patch would be lost"
        );
        let h = self.tree.pool.fetch(pid)?;
        let g = h.read();
        let ty = match g.page_type() {
            Some(PageType::Leaf) if level == 0 => PageType::Leaf,
            Some(PageType::Inner) if level > 0 && g.aux() == level => PageType::Inner,
            other => {
                return Err(corrupt(format!(
                    "page {pid} of type {other:?}, level {} where level {level} was expected",
                    g.aux()
                )))
            }
        };
        let count = g.slot_count();
        let cells = page::cells(&g);
        let origin = (0..count).map(|i| Origin::Kept(pid, i as u16)).collect();
        self.nodes.push(Node {
            pid,
            ty,
            link: g.link(),
            level,
            cells,
            origin,
            loaded: Some((count, g.link())),
            freed: false,
        });
        Ok(self.nodes.len() - 1)
    }

    /// A new page holding a node, written whole.
    fn new_node(
        &mut self,
        ty: PageType,
        link: PageId,
        level: u32,
        cells: (Vec<Vec<u8>>, Vec<Origin>),
    ) -> Result<usize> {
        let pid = self.alloc.alloc(self.tree.pool)?;
        let (cells, origin) = cells;
        debug_assert_eq!(cells.len(), origin.len());
        let node = Node { pid, ty, link, level, cells, origin, loaded: None, freed: false };
        // A page this record freed and now reuses: its old node is gone.
        if let Some(i) = self.nodes.iter().position(|n| n.pid == pid) {
            assert!(self.nodes[i].freed, "page {pid} allocated while in use");
            self.nodes[i] = node;
            return Ok(i);
        }
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    fn free_node(&mut self, idx: usize) {
        let n = &mut self.nodes[idx];
        assert!(!n.freed, "page {} freed twice", n.pid);
        n.freed = true;
        n.cells.clear();
        n.origin.clear();
        self.alloc.free(n.pid);
    }

    fn over_full(&self, idx: usize) -> bool {
        self.nodes[idx].used() > self.usable
    }

    fn under_full(&self, idx: usize) -> bool {
        let n = &self.nodes[idx];
        match n.ty {
            PageType::Leaf => n.used() < leaf_min_fill(self.page_size),
            _ => n.cells.is_empty() || n.used() < inner_rebalance_fill(self.page_size, &n.cells),
        }
    }

    /// Restore the shape invariants after the node `idx`, at `path.nodes[depth]`,
    /// changed: split it if it is over-full, rebalance it with a sibling if it
    /// is under-full, and go on with its parent while that changed too. At the
    /// root: grow a new root above a split one, collapse one with one child.
    pub fn fix_up(&mut self, path: &Path, mut depth: usize, mut idx: usize) -> Result<()> {
        debug_assert_eq!(self.nodes[idx].pid, path.nodes[depth]);
        // Each turn moves one level up: bounded by the path's length.
        loop {
            if self.over_full(idx) {
                if depth > 0 && self.nodes[idx].ty == PageType::Leaf {
                    match self.shift_to_sibling(idx, path, depth)? {
                        Shift::Done => return Ok(()),
                        Shift::Parent(p) => {
                            (idx, depth) = (p, depth - 1);
                            continue;
                        }
                        Shift::NoRoom => {}
                    }
                }
                match self.split(idx, path, depth)? {
                    Some(parent) => {
                        (idx, depth) = (parent, depth - 1);
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            if depth == 0 {
                return self.collapse_root(idx);
            }
            if !self.under_full(idx) {
                return Ok(());
            }
            match self.rebalance(idx, path, depth)? {
                Some(parent) => (idx, depth) = (parent, depth - 1),
                None => return Ok(()),
            }
        }
    }

    /// Load the parent of the node at `path.nodes[depth]` and check that it
    /// points at that node where the path says.
    fn parent_of(&mut self, path: &Path, depth: usize) -> Result<(usize, usize)> {
        let child = path.nodes[depth];
        let level = self.nodes.iter().find(|n| n.pid == child && !n.freed).map_or(0, |n| n.level);
        let p = self.load(path.nodes[depth - 1], level + 1)?;
        let pos = path.child_pos[depth - 1];
        if pos > self.nodes[p].cells.len() || self.nodes[p].child_at(pos) != child {
            return Err(corrupt(format!(
                "inner page {} does not point at page {child} at {pos}",
                path.nodes[depth - 1]
            )));
        }
        Ok((p, pos))
    }

    /// Before an over-full leaf splits: move some of its cells to a sibling
    /// under the same parent that has room for them, so that random inserts
    /// fill leaves to about 80% rather than the 69% of splits alone
    /// (deferred splitting, as in Knuth's B*-tree, TAOCP vol. 3, section
    /// 6.2.4; SQLite's balance_nonroot shares among three siblings).
    ///
    /// The right sibling is asked first, then the left. It has room when the
    /// two hold at most two pages less
    /// `SHIFT_SLACK_CELLS` of the leaf's average cells each. The cut is the
    /// most even one, or, for keys arriving in order (`SplitBias`), the one
    /// that fills the page behind the insert to that mark. Only cells of the
    /// leaf move, so the sibling is not loaded: it takes them as one-cell
    /// inserts, and the new separator lies between two of the leaf's keys.
    /// The parent's separator for the pair is replaced; as in
    /// `insert_into_unloaded_parent`, a parent not in the plan takes it
    /// without being loaded when it still fits and does not shrink below
    /// half a page, else it is loaded and fixed in turn.
    fn shift_to_sibling(&mut self, idx: usize, path: &Path, depth: usize) -> Result<Shift> {
        debug_assert!(depth > 0 && self.nodes[idx].ty == PageType::Leaf);
        let (parent, leaf) = (path.nodes[depth - 1], path.nodes[depth]);
        if self.nodes[idx].cells.len() < 2 {
            return Ok(Shift::NoRoom);
        }
        let pos = path.child_pos[depth - 1];
        let usable = self.usable;
        // What the parent says: the siblings, and the separators around the leaf.
        let parent_says = self.read_unloaded_parent(path, depth, 1, |g| {
            let separators = g.slot_count();
            let left = (pos > 0).then(|| child_at(g, pos - 1));
            let right = (pos < separators).then(|| child_at(g, pos + 1));
            let sep_len = |slot: usize| page::cell(g, slot).len();
            let lens = [pos.checked_sub(1).map_or(0, sep_len), if pos < separators { sep_len(pos) } else { 0 }];
            ([(left, true), (right, false)], usable - page::free_space(g), lens)
        })?;
        let Some((siblings, parent_used, sep_lens)) = parent_says else { return Ok(Shift::NoRoom) };
        // The first sibling, right then left, that needs no image and has
        // room: at most two pages less `slack` between the two.
        let (leaf_used, cells) = (self.nodes[idx].used(), self.nodes[idx].cells.len());
        let room = usable.saturating_sub(SHIFT_SLACK_CELLS * leaf_used / cells);
        let mut found = None;
        for (sib, is_left) in [siblings[1], siblings[0]] {
            let Some(sib) = sib else { continue };
            if !self.alloc.meta.holds(sib) {
                return Err(corrupt(format!("child pointer to page {sib} outside the file")));
            }
            if self.in_plan(sib) {
                continue;
            }
            let h = self.tree.pool.fetch(sib)?;
            let g = h.read();
            if g.page_type() != Some(PageType::Leaf) {
                return Err(corrupt(format!("page {sib} of type {:?} where a leaf was expected", g.page_type())));
            }
            let linked = if is_left { g.link() == leaf } else { self.nodes[idx].link == sib };
            if !linked {
                return Err(corrupt(format!("leaves {sib} and {leaf} are siblings but not linked in key order")));
            }
            let used = usable - page::free_space(&g);
            if leaf_used + used <= 2 * room {
                found = Some((sib, used, g.slot_count(), is_left));
                break;
            }
        }
        let Some((sib, sib_used, sib_count, sib_is_left)) = found else { return Ok(Shift::NoRoom) };
        let node = &self.nodes[idx];
        // The cut: the leaf keeps cells [..b] (sibling on the right) or
        // [b..] (sibling on the left); the rest move. Sides in bytes for
        // each b, as (left page, right page).
        let min = leaf_min_fill(self.page_size);
        let fits = |(l, r): (usize, usize)| l >= min && r >= min && l <= room && r <= room;
        let mut prefix = 0;
        let mut sides = Vec::with_capacity(node.cells.len());
        for c in &node.cells[..node.cells.len() - 1] {
            prefix += footprint(c);
            sides.push(if sib_is_left {
                (sib_used + prefix, leaf_used - prefix)
            } else {
                (prefix, leaf_used - prefix + sib_used)
            });
        }
        let cut = match (self.bias, sib_is_left) {
            (SplitBias::Append, true) => sides.iter().rposition(|&s| fits(s)),
            (SplitBias::Prepend, false) => sides.iter().position(|&s| fits(s)),
            _ => (0..sides.len()).filter(|&i| fits(sides[i])).max_by_key(|&i| sides[i].0.min(sides[i].1)),
        };
        let Some(b) = cut.map(|i| i + 1) else { return Ok(Shift::NoRoom) };
        let sep = separator(node.key(b - 1), node.key(b)).to_vec();
        let (moved, _) = if sib_is_left {
            let rest = self.nodes[idx].split_off(b);
            let moved = self.nodes[idx].take_all();
            self.nodes[idx].set_cells(rest);
            moved
        } else {
            self.nodes[idx].split_off(b)
        };
        let first_slot = if sib_is_left { sib_count } else { 0 };
        for (i, cell) in moved.into_iter().enumerate() {
            self.unloaded.push(PagePart { page_id: sib, op: PageOp::Insert { slot: (first_slot + i) as u16, cell } });
        }
        // The pair's separator: in the parent, at the left page's position.
        let (sep_slot, old_len, right_pid) =
            if sib_is_left { (pos - 1, sep_lens[0], leaf) } else { (pos, sep_lens[1], sib) };
        let sep_cell = inner_cell(&sep, right_pid);
        let used_after = parent_used - old_len + sep_cell.len();
        if used_after <= usable && (used_after >= parent_used || 2 * used_after >= usable) {
            self.unloaded
                .push(PagePart { page_id: parent, op: PageOp::Replace { slot: sep_slot as u16, cell: sep_cell } });
            return Ok(Shift::Done);
        }
        let (p, _) = self.parent_of(path, depth)?;
        self.nodes[p].replace(sep_slot, sep_cell);
        Ok(Shift::Parent(p))
    }

    /// Split an over-full node in two; the separator goes to the parent (or a
    /// new root). Returns the parent, which may now be over-full in turn.
    fn split(&mut self, idx: usize, path: &Path, depth: usize) -> Result<Option<usize>> {
        let (ty, level, link) = (self.nodes[idx].ty, self.nodes[idx].level, self.nodes[idx].link);
        let right_idx;
        let sep;
        if ty == PageType::Leaf {
            let cells = &self.nodes[idx].cells;
            let min = leaf_min_fill(self.page_size);
            let b = biased_split_point(cells, self.bias, min, self.usable).unwrap_or_else(|| leaf_split_point(cells));
            let right = self.nodes[idx].split_off(b);
            sep = separator(self.nodes[idx].key(b - 1), key_of(ty, &right.0[0])).to_vec();
            right_idx = self.new_node(PageType::Leaf, link, 0, right)?;
            self.nodes[idx].link = self.nodes[right_idx].pid;
        } else {
            let k = inner_split_point(&self.nodes[idx].cells);
            let (mut right, mut right_origin) = self.nodes[idx].split_off(k);
            let up = right.remove(0);
            right_origin.remove(0);
            sep = key_of(ty, &up).to_vec();
            right_idx = self.new_node(PageType::Inner, child_of(&up), level, (right, right_origin))?;
        }
        assert!(!self.over_full(idx) && !self.over_full(right_idx), "split halves must fit their pages");
        debug_assert!(!self.under_full(idx) || depth == 0 || ty == PageType::Inner);
        let sep_cell = inner_cell(&sep, self.nodes[right_idx].pid);
        if depth == 0 {
            let old_root = self.nodes[idx].pid;
            let root = self.new_node(PageType::Inner, old_root, level + 1, (vec![sep_cell], vec![Origin::New]))?;
            self.alloc.meta.root = self.nodes[root].pid;
            return Ok(None);
        }
        if self.insert_into_unloaded_parent(path, depth, &sep_cell)? {
            return Ok(None);
        }
        let (p, pos) = self.parent_of(path, depth)?;
        self.nodes[p].insert(pos, sep_cell);
        Ok(Some(p))
    }

    /// True if page `pid` is in the plan: loaded (and not freed), or
    /// changed by a part pushed without loading it.
    fn in_plan(&self, pid: PageId) -> bool {
        self.nodes.iter().any(|n| n.pid == pid && !n.freed) || self.unloaded.iter().any(|p| p.page_id == pid)
    }

    /// Read the parent of the node at `path.nodes[depth]`, an inner page of
    /// `level`, without loading it into the plan: check that it is in the
    /// file, has that type and level, and points at the node where the path
    /// says, then give its bytes to `f`. None (nothing read) if the parent is
    /// in the plan already: its bytes would not be what the record changes.
    fn read_unloaded_parent<T>(
        &self,
        path: &Path,
        depth: usize,
        level: u32,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>> {
        let (parent, child) = (path.nodes[depth - 1], path.nodes[depth]);
        if self.in_plan(parent) {
            return Ok(None);
        }
        if !self.alloc.meta.holds(parent) {
            return Err(corrupt(format!("child pointer to page {parent} outside the file")));
        }
        let h = self.tree.pool.fetch(parent)?;
        let g = h.read();
        if g.page_type() != Some(PageType::Inner) || g.aux() != level {
            return Err(corrupt(format!(
                "page {parent} of type {:?}, level {} where level {level} was expected",
                g.page_type(),
                g.aux()
            )));
        }
        let pos = path.child_pos[depth - 1];
        if pos > g.slot_count() || child_at(&g, pos) != child {
            return Err(corrupt(format!("inner page {parent} does not point at page {child} at {pos}")));
        }
        Ok(Some(f(&g)))
    }

    /// A split's common case: the parent of the node at `path.nodes[depth]`
    /// is not in the plan yet and has room for the separator. It then takes
    /// the separator as a one-cell insert without its cells being loaded
    /// (loading copies every cell of an inner page, most of a split's cost),
    /// and the fix-up ends there: a parent that only gained a cell and is
    /// not over-full meets the shape bounds it met before. False (nothing
    /// done) otherwise; checks what `parent_of` checks.
    fn insert_into_unloaded_parent(&mut self, path: &Path, depth: usize, sep_cell: &[u8]) -> Result<bool> {
        let (parent, child) = (path.nodes[depth - 1], path.nodes[depth]);
        let level = self.nodes.iter().find(|n| n.pid == child && !n.freed).map_or(0, |n| n.level) + 1;
        // Bytes of cells and slots now: what `Node::used` would count.
        let usable = self.usable;
        let Some(used_now) = self.read_unloaded_parent(path, depth, level, |g| usable - page::free_space(g))? else {
            return Ok(false);
        };
        let pos = path.child_pos[depth - 1];
        if used_now + footprint(sep_cell) > self.usable {
            return Ok(false);
        }
        self.unloaded
            .push(PagePart { page_id: parent, op: PageOp::Insert { slot: pos as u16, cell: sep_cell.to_vec() } });
        Ok(true)
    }

    /// Merge an under-full node with a sibling under the same parent, or, if
    /// the two do not fit one page, share their cells evenly. Returns the
    /// parent, which lost a separator (merge) or had one replaced by one of
    /// another length (redistribution), for `fix_up` to go on with; or None
    /// for a leaf whose parent, not loaded, takes that one-cell change as a
    /// patch (as a share's parent does, `shift_to_sibling`) and stays within
    /// its bounds: neither over-full, nor under-full, nor a root left with
    /// one child. Loading the parent copies every one of its cells, a
    /// hundred or more, for a change of one (callgrind: two thirds of the
    /// instructions of deleting half the keys of a tree went to the merges
    /// that loaded their parents).
    fn rebalance(&mut self, idx: usize, path: &Path, depth: usize) -> Result<Option<usize>> {
        let (ty, level) = (self.nodes[idx].ty, self.nodes[idx].level);
        let pos = path.child_pos[depth - 1];
        if ty == PageType::Leaf {
            let usable = self.usable;
            let parent_says = self.read_unloaded_parent(path, depth, 1, |g| {
                let separators = g.slot_count();
                let lens: Vec<usize> = (0..separators).map(|s| page::cell(g, s).len()).collect();
                let sibling = match pos < separators {
                    true => Some(child_at(g, pos + 1)),
                    false => pos.checked_sub(1).map(|p| child_at(g, p)),
                };
                (lens, sibling, usable - page::free_space(g))
            })?;
            if let Some((lens, Some(sibling), parent_used)) = parent_says {
                let (left, right, sep_slot) = match pos < lens.len() {
                    true => (idx, self.load(sibling, level)?, pos),
                    false => (self.load(sibling, level)?, idx, pos - 1),
                };
                let right_pid = self.nodes[right].pid;
                let change = self.merge_or_share(ty, left, right, None)?.map(|up| inner_cell(&up, right_pid));
                // The parent after the change: its cells' count, bytes and largest footprint.
                let new_len = change.as_ref().map(|c| c.len());
                let others = lens.iter().enumerate().filter(|&(s, _)| s != sep_slot).map(|(_, &l)| l);
                let largest = others.chain(new_len).max().map(|l| l + 2);
                let used_after = parent_used - (lens[sep_slot] + 2) + new_len.map_or(0, |l| l + 2);
                let within = match largest {
                    None => false, // no separator left: a root collapses, another page merges
                    Some(_) if depth == 1 => used_after <= usable,
                    Some(largest) => used_after <= usable && used_after >= rebalance_fill(self.page_size, largest),
                };
                if within {
                    let slot = sep_slot as u16;
                    let op = match change {
                        None => PageOp::Delete { slot },
                        Some(cell) => PageOp::Replace { slot, cell },
                    };
                    self.unloaded.push(PagePart { page_id: path.nodes[depth - 1], op });
                    return Ok(None);
                }
                let (p, _) = self.parent_of(path, depth)?;
                match change {
                    None => self.nodes[p].remove(sep_slot),
                    Some(cell) => self.nodes[p].replace(sep_slot, cell),
                }
                return Ok(Some(p));
            }
        }
        let (p, pos) = self.parent_of(path, depth)?;
        let separators = self.nodes[p].cells.len();
        if separators == 0 {
            // An only child (a shape older versions could leave): the parent
            // is under-full too, and is fixed at its own level.
            return Ok(Some(p));
        }
        let (left, right, sep_slot) = if pos < separators {
            let sibling = self.nodes[p].child_at(pos + 1);
            (idx, self.load(sibling, level)?, pos)
        } else {
            let sibling = self.nodes[p].child_at(pos - 1);
            (self.load(sibling, level)?, idx, pos - 1)
        };
        let down = (ty != PageType::Leaf).then(|| key_of(PageType::Inner, &self.nodes[p].cells[sep_slot]).to_vec());
        let right_pid = self.nodes[right].pid;
        match self.merge_or_share(ty, left, right, down)? {
            None => self.nodes[p].remove(sep_slot),
            Some(up) => self.nodes[p].replace(sep_slot, inner_cell(&up, right_pid)),
        }
        Ok(Some(p))
    }

    /// Merge the nodes `left` and `right` (siblings, in key order, of type
    /// `ty`; `down` is the separator between them for inner nodes) into
    /// `left`, freeing `right`: None. If they do not fit one page, share
    /// their cells evenly instead: the key of the new separator.
    fn merge_or_share(
        &mut self,
        ty: PageType,
        left: usize,
        right: usize,
        down: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>> {
        let right_pid = self.nodes[right].pid;
        let (mut all, mut all_origin) = self.nodes[left].take_all();
        if ty == PageType::Leaf {
            if self.nodes[left].link != right_pid {
                return Err(corrupt(format!(
                    "leaf {} does not link to its right sibling {right_pid}",
                    self.nodes[left].pid
                )));
            }
        } else {
            let down = down.expect("an inner pair's separator comes down");
            all.push(inner_cell(&down, self.nodes[right].link));
            all_origin.push(Origin::New);
        }
        let (mut r, mut r_origin) = self.nodes[right].take_all();
        all.append(&mut r);
        all_origin.append(&mut r_origin);
        if used(&all) <= self.usable {
            // Merge into the left page; the right one is freed.
            let right_link = self.nodes[right].link;
            let l = &mut self.nodes[left];
            l.set_cells((all, all_origin));
            if ty == PageType::Leaf {
                l.link = right_link;
            }
            self.free_node(right);
            return Ok(None);
        }
        let up = if ty == PageType::Leaf {
            let b = leaf_split_point(&all);
            let r = (all.split_off(b), all_origin.split_off(b));
            let sep = separator(key_of(ty, &all[b - 1]), key_of(ty, &r.0[0])).to_vec();
            self.nodes[right].set_cells(r);
            sep
        } else {
            let k = inner_split_point(&all);
            let (mut r, mut r_origin) = (all.split_off(k), all_origin.split_off(k));
            let up = r.remove(0);
            r_origin.remove(0);
            self.nodes[right].link = child_of(&up);
            self.nodes[right].set_cells((r, r_origin));
            key_of(ty, &up).to_vec()
        };
        self.nodes[left].set_cells((all, all_origin));
        assert!(!self.over_full(left) && !self.over_full(right), "redistributed pages must fit");
        Ok(Some(up))
    }

    /// A root inner page with no separator has one child: that child becomes
    /// the root and the old root is freed (repeated while it holds).
    fn collapse_root(&mut self, mut idx: usize) -> Result<()> {
        for _ in 0..MAX_DEPTH {
            let n = &self.nodes[idx];
            if n.ty == PageType::Leaf || !n.cells.is_empty() {
                return Ok(());
            }
            let (child, level) = (n.link, n.level);
            self.free_node(idx);
            self.alloc.meta.root = child;
            idx = self.load(child, level - 1)?;
        }
        Err(corrupt("tree deeper than any real tree while collapsing the root"))
    }

    /// The page parts of the plan, then the allocator's (frees and meta).
    pub fn finish(self, parts: &mut Vec<PagePart>) {
        for n in self.nodes {
            if n.freed {
                continue;
            }
            debug_assert!(used(&n.cells) <= self.usable);
            n.page_parts(parts);
        }
        parts.extend(self.unloaded);
        self.alloc.finish(parts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separator_is_shortest_between() {
        assert_eq!(separator(b"abc", b"abd"), b"abd");
        assert_eq!(separator(b"abc", b"abcd"), b"abcd");
        assert_eq!(separator(b"ab", b"b"), b"b");
        assert_eq!(separator(b"apple", b"banana"), b"b");
        assert_eq!(separator(b"a", b"abzzz"), b"ab");
        let long_a = [vec![7u8; 1000], b"aaaa".to_vec()].concat();
        let long_b = [vec![7u8; 1000], b"abaa".to_vec()].concat();
        assert_eq!(separator(&long_a, &long_b).len(), 1002);
    }

    #[test]
    #[should_panic]
    fn separator_rejects_unordered() {
        separator(b"b", b"a");
    }

    #[test]
    fn split_points_balance_bytes() {
        let cells: Vec<Vec<u8>> = [10, 10, 10, 100, 10].iter().map(|&n| vec![0u8; n]).collect();
        let b = leaf_split_point(&cells);
        assert_eq!(b, 3); // 36 | 114 is the best cut: 30+6 vs 110+12 bytes
        let k = inner_split_point(&cells);
        assert!((1..4).contains(&k));
        let equal: Vec<Vec<u8>> = (0..4).map(|_| vec![0u8; 1030]).collect();
        assert_eq!(inner_split_point(&equal), 1);
        assert_eq!(leaf_split_point(&equal), 2);
    }

    #[test]
    fn biased_cuts_keep_the_fill_bounds() {
        let cells: Vec<Vec<u8>> = (0..30).map(|_| vec![0u8; 148]).collect(); // 150 bytes each, 4500 in all
        let (min, usable) = (1351, 4056);
        let b = biased_split_point(&cells, SplitBias::Append, min, usable).unwrap();
        assert_eq!(b, 20); // right keeps 10 cells = 1500 >= 1351
        let b = biased_split_point(&cells, SplitBias::Prepend, min, usable).unwrap();
        assert_eq!(b, 10);
        assert_eq!(biased_split_point(&cells, SplitBias::Even, min, usable), None);
        let two: Vec<Vec<u8>> = (0..2).map(|_| vec![0u8; 1350]).collect();
        assert_eq!(biased_split_point(&two, SplitBias::Append, min, usable), Some(1));
    }

    #[test]
    fn fill_bounds_at_every_page_size() {
        let mut size = page::MIN_PAGE_SIZE;
        while size <= page::MAX_PAGE_SIZE {
            let usable = page::usable_space(size);
            // A full inner page holds at least three of the longest cells.
            assert!(3 * INNER_CELL_MAX <= usable, "page size {size}");
            assert!(inner_min_fill(size) >= INNER_CELL_MAX - 40, "page size {size}");
            assert!(leaf_min_fill(size) * 3 + 3 >= usable, "page size {size}");
            size *= 2;
        }
    }
}

#[cfg(test)]
mod patch_tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE: usize = 4096;

    fn cell(tag: u32, len: usize) -> Vec<u8> {
        let mut c = Vec::new();
        page::LeafCell::encode_inline(&tag.to_be_bytes(), &vec![tag as u8; len], &mut c);
        c
    }

    fn loaded(pid: PageId, link: PageId, cells: Vec<Vec<u8>>) -> Node {
        let origin = (0..cells.len()).map(|i| Origin::Kept(pid, i as u16)).collect();
        let loaded = Some((cells.len(), link));
        Node { pid, ty: PageType::Leaf, link, level: 0, cells, origin, loaded, freed: false }
    }

    fn page_with(pid: PageId, link: PageId, cells: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![0u8; PAGE];
        let init = PageOp::Init { ty: PageType::Leaf as u8, link, aux: 0, cells: cells.to_vec() };
        page::apply(&mut b, pid, &init).unwrap();
        b
    }

    #[derive(Clone, Debug)]
    enum Edit {
        Insert(usize, usize),
        Remove(usize),
        Replace(usize, usize),
        /// Keep only the first cells (a split's left page).
        Cut(usize),
        /// Take a neighbour's cells at the end or the front (a share or merge).
        Take(bool, usize),
        Link,
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<usize>(), 1usize..300).prop_map(|(a, l)| Edit::Insert(a, l)),
            any::<usize>().prop_map(Edit::Remove),
            (any::<usize>(), 1usize..300).prop_map(|(a, l)| Edit::Replace(a, l)),
            any::<usize>().prop_map(Edit::Cut),
            (any::<bool>(), 1usize..8).prop_map(|(f, n)| Edit::Take(f, n)),
            Just(Edit::Link),
        ]
    }

    proptest! {
        /// However a node's cells were edited or moved, its patch ops turn the
        /// page as loaded into the node, every op fitting the page as it
        /// stands, and the parts `finish` logs (patch or Init) do the same.
        #[test]
        fn patch_ops_rebuild_the_node(
            lens in proptest::collection::vec(1usize..300, 0..40),
            edits in proptest::collection::vec(edit(), 0..30),
        ) {
            let (pid, other, link) = (PageId(5), PageId(6), PageId(9));
            let usable = page::usable_space(PAGE);
            // The page as loaded: as many of the cells as fit.
            let mut orig = Vec::new();
            for (i, &l) in lens.iter().enumerate() {
                let c = cell(i as u32, l);
                if used(&orig) + footprint(&c) > usable {
                    break;
                }
                orig.push(c);
            }
            let mut node = loaded(pid, link, orig.clone());
            let mut neighbour = loaded(other, PageId(0), (100..120).map(|t| cell(t, 50)).collect());
            let mut next_tag = 1000;
            for e in edits {
                let n = node.cells.len();
                match e {
                    Edit::Insert(at, l) => {
                        next_tag += 1;
                        node.insert(at % (n + 1), cell(next_tag, l));
                    }
                    Edit::Remove(at) if n > 0 => node.remove(at % n),
                    Edit::Replace(at, l) if n > 0 => {
                        next_tag += 1;
                        node.replace(at % n, cell(next_tag, l));
                    }
                    Edit::Cut(at) => {
                        node.split_off(at % (n + 1));
                    }
                    Edit::Take(front, k) => {
                        let k = k.min(neighbour.cells.len());
                        let (mut cells, mut origin) = if front {
                            let rest = neighbour.split_off(k);
                            let taken = neighbour.take_all();
                            neighbour.set_cells(rest);
                            taken
                        } else {
                            let at = neighbour.cells.len() - k;
                            neighbour.split_off(at)
                        };
                        let (mut mine, mut mine_origin) = node.take_all();
                        if front {
                            cells.append(&mut mine);
                            origin.append(&mut mine_origin);
                            node.set_cells((cells, origin));
                        } else {
                            mine.append(&mut cells);
                            mine_origin.append(&mut origin);
                            node.set_cells((mine, mine_origin));
                        }
                    }
                    Edit::Link => node.link = PageId(node.link.get() + 1),
                    _ => {}
                }
            }
            // A plan leaves every page fitting: drop cells from the end until it does.
            while node.used() > usable {
                let n = node.cells.len();
                node.split_off(n - 1);
            }
            prop_assert!(node.patchable());
            let ops = node.clone().into_patch_ops();
            let mut b = page_with(pid, link, &orig);
            for op in &ops {
                page::apply(&mut b, pid, op).map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?;
            }
            prop_assert_eq!(page::cells(&b), node.cells.clone());
            prop_assert_eq!(b.link(), node.link);
            let (want, want_link) = (node.cells.clone(), node.link);
            let mut parts = Vec::new();
            node.page_parts(&mut parts);
            let mut b = page_with(pid, link, &orig);
            for p in &parts {
                prop_assert_eq!(p.page_id, pid);
                page::apply(&mut b, pid, &p.op).unwrap();
            }
            prop_assert_eq!(page::cells(&b), want);
            prop_assert_eq!(b.link(), want_link);
        }
    }

    fn encoded_len(parts: &[PagePart]) -> usize {
        parts
            .iter()
            .map(|p| {
                let mut b = Vec::new();
                p.op.encode(&mut b);
                4 + b.len()
            })
            .sum()
    }

    /// `page_parts` promises the smaller of the patch and the whole-page
    /// Init. A split's left half of small cells (2-byte keys, empty values:
    /// 11 bytes a cell with its slot) is one Truncate and one SetLink, but
    /// the estimate charges every truncated slot as an op of its own.
    #[test]
    fn a_split_of_small_cells_logs_the_smaller_of_patch_and_init() {
        let (pid, link) = (PageId(5), PageId(9));
        let orig: Vec<Vec<u8>> = (0..360u16)
            .map(|k| {
                let mut c = Vec::new();
                page::LeafCell::encode_inline(&k.to_be_bytes(), &[], &mut c);
                c
            })
            .collect();
        let mut node = loaded(pid, link, orig);
        node.split_off(180);
        node.link = PageId(12);
        let patch: Vec<PagePart> =
            node.clone().into_patch_ops().into_iter().map(|op| PagePart { page_id: pid, op }).collect();
        let mut parts = Vec::new();
        node.page_parts(&mut parts);
        assert!(
            encoded_len(&parts) <= encoded_len(&patch),
            "page_parts logged {} bytes ({} parts) where the patch is {} bytes ({} parts)",
            encoded_len(&parts),
            parts.len(),
            encoded_len(&patch),
            patch.len()
        );
    }

    #[test]
    fn a_split_logs_its_left_page_as_a_truncate() {
        let (pid, link) = (PageId(5), PageId(9));
        let orig: Vec<Vec<u8>> = (0..20).map(|t| cell(t, 150)).collect();
        let mut node = loaded(pid, link, orig);
        node.insert(3, cell(99, 150));
        node.split_off(11);
        node.link = PageId(12);
        assert!(node.patchable());
        let ops = node.into_patch_ops();
        assert_eq!(
            ops,
            vec![
                PageOp::Truncate { from: 10 },
                PageOp::Insert { slot: 3, cell: cell(99, 150) },
                PageOp::SetLink(PageId(12))
            ]
        );
        // An unchanged page logs nothing.
        let mut parts = Vec::new();
        loaded(pid, link, vec![cell(1, 10)]).page_parts(&mut parts);
        assert!(parts.is_empty());
    }
}
