//! Structure modifications: splits, merges, redistributions and root changes,
//! planned in memory and logged in the same record as the key change that
//! caused them.
//!
//! A key change that leaves its leaf over-full or under-full loads the pages
//! it must reshape into a `Plan`, fixes the tree bottom-up along the path it
//! descended (`Plan::fix_up`), and emits the page parts of one log record:
//! patch ops (insert, delete, replace one cell) for pages that only gained or
//! lost a separator, a whole-page `Init` for pages that were split, merged or
//! redistributed, `Free` inits for pages given back, and the meta page. The
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
//! what makes the bounds above hold (see docs/design.md, section 5.1).

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
    let largest = cells.iter().map(|c| footprint(c)).max().unwrap_or(INNER_CELL_MAX);
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

/// A page being reshaped: its cells in memory, and how to log the change.
pub(crate) struct Node {
    pub pid: PageId,
    pub ty: PageType,
    pub link: PageId,
    pub level: u32,
    pub cells: Vec<Vec<u8>>,
    /// The ops that turn the page as read into this node while it only
    /// gained, lost or replaced cells; None once it must be written whole.
    patch: Option<Vec<PageOp>>,
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
        if let Some(p) = &mut self.patch {
            p.push(PageOp::Insert { slot: slot as u16, cell: cell.clone() });
        }
        self.cells.insert(slot, cell);
    }

    pub fn replace(&mut self, slot: usize, cell: Vec<u8>) {
        if let Some(p) = &mut self.patch {
            p.push(PageOp::Replace { slot: slot as u16, cell: cell.clone() });
        }
        self.cells[slot] = cell;
    }

    pub fn remove(&mut self, slot: usize) {
        if let Some(p) = &mut self.patch {
            p.push(PageOp::Delete { slot: slot as u16 });
        }
        self.cells.remove(slot);
    }

    fn rewrite(&mut self) {
        self.patch = None;
    }
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
        let cells = (0..g.slot_count()).map(|i| page::cell(&g, i).to_vec()).collect();
        self.nodes.push(Node { pid, ty, link: g.link(), level, cells, patch: Some(Vec::new()), freed: false });
        Ok(self.nodes.len() - 1)
    }

    /// A new page holding a node, written whole.
    fn new_node(&mut self, ty: PageType, link: PageId, level: u32, cells: Vec<Vec<u8>>) -> Result<usize> {
        let pid = self.alloc.alloc(self.tree.pool)?;
        let node = Node { pid, ty, link, level, cells, patch: None, freed: false };
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
            idx = self.rebalance(idx, path, depth)?;
            depth -= 1;
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
            let right = self.nodes[idx].cells.split_off(b);
            sep = separator(self.nodes[idx].key(b - 1), key_of(ty, &right[0])).to_vec();
            right_idx = self.new_node(PageType::Leaf, link, 0, right)?;
            let right_pid = self.nodes[right_idx].pid;
            let n = &mut self.nodes[idx];
            n.link = right_pid;
            n.rewrite();
        } else {
            let k = inner_split_point(&self.nodes[idx].cells);
            let mut right = self.nodes[idx].cells.split_off(k);
            let up = right.remove(0);
            sep = key_of(ty, &up).to_vec();
            right_idx = self.new_node(PageType::Inner, child_of(&up), level, right)?;
            self.nodes[idx].rewrite();
        }
        assert!(!self.over_full(idx) && !self.over_full(right_idx), "split halves must fit their pages");
        debug_assert!(!self.under_full(idx) || depth == 0 || ty == PageType::Inner);
        let sep_cell = inner_cell(&sep, self.nodes[right_idx].pid);
        if depth == 0 {
            let old_root = self.nodes[idx].pid;
            let root = self.new_node(PageType::Inner, old_root, level + 1, vec![sep_cell])?;
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

    /// A split's common case: the parent of the node at `path.nodes[depth]`
    /// is not in the plan yet and has room for the separator. It then takes
    /// the separator as a one-cell insert without its cells being loaded
    /// (loading copies every cell of an inner page, most of a split's cost),
    /// and the fix-up ends there: a parent that only gained a cell and is
    /// not over-full meets the shape bounds it met before. False (nothing
    /// done) otherwise; checks what `parent_of` checks.
    fn insert_into_unloaded_parent(&mut self, path: &Path, depth: usize, sep_cell: &[u8]) -> Result<bool> {
        let (parent, child) = (path.nodes[depth - 1], path.nodes[depth]);
        if self.nodes.iter().any(|n| n.pid == parent && !n.freed) || self.unloaded.iter().any(|p| p.page_id == parent) {
            return Ok(false);
        }
        let level = self.nodes.iter().find(|n| n.pid == child && !n.freed).map_or(0, |n| n.level) + 1;
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
        // Bytes of cells and slots now: what `Node::used` would count.
        let used_now = page::usable_space(self.page_size) - page::free_space(&g);
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
    /// another length (redistribution).
    fn rebalance(&mut self, idx: usize, path: &Path, depth: usize) -> Result<usize> {
        let (ty, level) = (self.nodes[idx].ty, self.nodes[idx].level);
        let (p, pos) = self.parent_of(path, depth)?;
        let separators = self.nodes[p].cells.len();
        if separators == 0 {
            // An only child (a shape older versions could leave): the parent
            // is under-full too, and is fixed at its own level.
            return Ok(p);
        }
        let (left, right, sep_slot) = if pos < separators {
            let sibling = self.nodes[p].child_at(pos + 1);
            (idx, self.load(sibling, level)?, pos)
        } else {
            let sibling = self.nodes[p].child_at(pos - 1);
            (self.load(sibling, level)?, idx, pos - 1)
        };
        let right_pid = self.nodes[right].pid;
        let mut all = std::mem::take(&mut self.nodes[left].cells);
        if ty == PageType::Leaf {
            if self.nodes[left].link != right_pid {
                return Err(corrupt(format!(
                    "leaf {} does not link to its right sibling {right_pid}",
                    self.nodes[left].pid
                )));
            }
        } else {
            let down = key_of(PageType::Inner, &self.nodes[p].cells[sep_slot]).to_vec();
            all.push(inner_cell(&down, self.nodes[right].link));
        }
        all.append(&mut self.nodes[right].cells);
        self.nodes[left].rewrite();
        self.nodes[right].rewrite();
        if used(&all) <= self.usable {
            // Merge into the left page; the right one is freed.
            let right_link = self.nodes[right].link;
            let l = &mut self.nodes[left];
            l.cells = all;
            if ty == PageType::Leaf {
                l.link = right_link;
            }
            self.free_node(right);
            self.nodes[p].remove(sep_slot);
            return Ok(p);
        }
        let up = if ty == PageType::Leaf {
            let b = leaf_split_point(&all);
            let r = all.split_off(b);
            let sep = separator(key_of(ty, &all[b - 1]), key_of(ty, &r[0])).to_vec();
            self.nodes[right].cells = r;
            sep
        } else {
            let k = inner_split_point(&all);
            let mut r = all.split_off(k);
            let up = r.remove(0);
            self.nodes[right].link = child_of(&up);
            self.nodes[right].cells = r;
            key_of(ty, &up).to_vec()
        };
        self.nodes[left].cells = all;
        assert!(!self.over_full(left) && !self.over_full(right), "redistributed pages must fit");
        self.nodes[p].replace(sep_slot, inner_cell(&up, right_pid));
        Ok(p)
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
            match n.patch {
                Some(ops) => parts.extend(ops.into_iter().map(|op| PagePart { page_id: n.pid, op })),
                None => parts.push(PagePart {
                    page_id: n.pid,
                    op: PageOp::Init { ty: n.ty as u8, link: n.link, aux: n.level, cells: n.cells },
                }),
            }
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
