//! The integrity check: every page reachable from the root has the right type
//! and level, keys are sorted and inside their parent's bounds, the leaf chain
//! visits the leaves in order, overflow chains hold exactly their values, the
//! free list holds only free pages, and every page is accounted for once; and
//! the shape the tree promises: every page but the root at least as full as
//! `smo` keeps it, no empty page but an empty root, and the height within the
//! bound that those fills give.

use super::*;
use crate::page::MASTER_PAGE;

/// A page to visit: its id, the level expected, and the key bounds its parent gives.
type Visit = (PageId, Option<u32>, Option<Vec<u8>>, Option<Vec<u8>>);

/// What `check` counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// Keys in the tree.
    pub keys: u64,
    /// Leaf pages.
    pub leaves: u64,
    /// Inner pages.
    pub inner: u64,
    /// Overflow pages.
    pub overflow: u64,
    /// Pages on the free list.
    pub free: u64,
    /// Height of the tree (1 = a single leaf).
    pub height: u32,
    /// The most the height may be: `1 + ceil(log_m(leaves))` with
    /// `m = ceil(f / 2)`, where `f` is the number of children a full inner
    /// page holds when every separator has the longest length present.
    pub height_bound: u32,
    /// Length in bytes of the longest separator in an inner page.
    pub longest_separator: u32,
    /// Pages of the database: the meta page's high-water mark, pages 0 and 1
    /// included. After a crash the data file may be shorter: the pages only
    /// the log has count here once recovery has rebuilt them (in memory, for
    /// `Db::open_read_only`), before any is written back.
    pub page_count: u64,
    /// Bytes per page (fixed when the database was created).
    pub page_size: u32,
    /// Bytes of cells and slots on the tree's leaf and inner pages.
    pub tree_bytes_used: u64,
    /// Bytes those pages could hold (usable bytes per page times pages).
    pub tree_bytes_capacity: u64,
}

impl CheckReport {
    /// Average fill of the tree's leaf and inner pages, 0.0 to 1.0.
    pub fn average_fill(&self) -> f64 {
        if self.tree_bytes_capacity == 0 {
            0.0
        } else {
            self.tree_bytes_used as f64 / self.tree_bytes_capacity as f64
        }
    }
}

/// `1 + ceil(log_m(leaves))`, for `m >= 2`.
pub(crate) fn height_bound(leaves: u64, m: u64) -> u32 {
    assert!(m >= 2);
    let (mut bound, mut reach) = (1u32, 1u64);
    while reach < leaves {
        reach = reach.saturating_mul(m);
        bound += 1;
    }
    bound
}

/// A page below the fill the tree promises, or an inner page with one child.
pub(crate) struct ShapeViolation {
    pub level: u32,
    /// The lowest key the page may hold (None: the leftmost page of its level).
    pub low: Option<Vec<u8>>,
    pub detail: String,
}

/// What the walk has seen so far.
pub(crate) struct Walk {
    /// Pages accounted for (tree, overflow chain or free list), by page id.
    seen: Vec<bool>,
    pub report: CheckReport,
    leaves_in_order: Vec<PageId>,
    pub violations: Vec<ShapeViolation>,
}

impl Walk {
    /// Account for `pid` once; twice, or outside the file, is corruption.
    fn mark(&mut self, pid: PageId) -> Result<()> {
        let count = self.seen.len();
        match self.seen.get_mut(pid.index()) {
            Some(s) if !*s => {
                *s = true;
                Ok(())
            }
            Some(_) => Err(corrupt(format!("page {pid} is reachable twice"))),
            None => Err(corrupt(format!("page {pid} is outside the file ({count} pages)"))),
        }
    }
}

impl BTree<'_> {
    /// Check the whole tree. Err(Corruption) names the first problem found.
    pub fn check(&self) -> Result<CheckReport> {
        let walk = self.walk()?;
        if let Some(v) = walk.violations.first() {
            return Err(corrupt(&v.detail));
        }
        let r = walk.report;
        if r.height > r.height_bound {
            return Err(corrupt(format!(
                "tree of height {} over {} leaves exceeds its bound {}",
                r.height, r.leaves, r.height_bound
            )));
        }
        Ok(r)
    }

    /// Walk the whole tree and the free list: Err(Corruption) for damage;
    /// pages below the promised fill are collected in `violations`.
    pub(crate) fn walk(&self) -> Result<Walk> {
        let meta = self.meta()?;
        let mut walk = Walk {
            seen: vec![false; meta.page_count as usize],
            report: CheckReport {
                page_count: meta.page_count as u64,
                page_size: self.pool.page_size() as u32,
                ..CheckReport::default()
            },
            leaves_in_order: Vec::new(),
            violations: Vec::new(),
        };
        walk.mark(MASTER_PAGE)?;
        walk.mark(META_PAGE)?;
        // Depth-first walk with an explicit stack: (page, level expected, low bound, high bound).
        let mut stack: Vec<Visit> = vec![(meta.root, None, None, None)];
        while let Some(visit) = stack.pop() {
            self.check_page(&mut walk, &meta, visit, &mut stack)?;
        }
        walk.report.height_bound = self.height_bound_for(&walk.report);
        self.check_leaf_chain(&walk.leaves_in_order)?;
        self.check_free_list(&mut walk, &meta)?;
        if let Some(lost) = walk.seen.iter().position(|s| !s) {
            return Err(corrupt(format!("page {lost} is neither in the tree nor free (leaked)")));
        }
        Ok(walk)
    }

    /// One page of the tree: its fill, its keys' order and bounds, then the
    /// leaf's overflow chains or the inner page's children (pushed on `stack`).
    fn check_page(&self, walk: &mut Walk, meta: &Meta, visit: Visit, stack: &mut Vec<Visit>) -> Result<()> {
        let (pid, level, lo, hi) = visit;
        walk.mark(pid)?;
        let h = self.pool.fetch(pid)?;
        let g = h.read();
        let n = g.slot_count();
        let usable = page::usable_space(self.pool.page_size());
        let used = usable - page::free_space(&g);
        walk.report.tree_bytes_used += used as u64;
        walk.report.tree_bytes_capacity += usable as u64;
        if let Some(detail) = self.fill_problem(pid, pid == meta.root, g.page_type(), n, used) {
            let level = if g.page_type() == Some(PageType::Inner) { g.aux() } else { 0 };
            walk.violations.push(ShapeViolation { level, low: lo.clone(), detail });
        }
        let in_bounds = |k: &[u8]| lo.as_deref().is_none_or(|l| k >= l) && hi.as_deref().is_none_or(|h| k < h);
        for i in 0..n {
            let k = page::cell_key(&g, i);
            if !in_bounds(k) {
                return Err(corrupt(format!("page {pid}: key {i} outside its parent's range")));
            }
            if i > 0 && page::cell_key(&g, i - 1) >= k {
                return Err(corrupt(format!("page {pid}: keys {} and {i} out of order", i - 1)));
            }
        }
        match g.page_type() {
            Some(PageType::Leaf) => {
                if level.is_some_and(|l| l != 0) {
                    return Err(corrupt(format!("leaf {pid} at level {level:?}")));
                }
                walk.report.height = walk.report.height.max(1);
                walk.report.leaves += 1;
                walk.report.keys += n as u64;
                walk.leaves_in_order.push(pid);
                for i in 0..n {
                    let c = LeafCell::at(&g, i);
                    if let Some(first) = c.overflow {
                        for p in self.overflow_chain(first, c.val_len)? {
                            walk.mark(p)?;
                            walk.report.overflow += 1;
                        }
                        let v = self.read_value(&c)?;
                        debug_assert_eq!(v.len(), c.val_len);
                    }
                }
            }
            Some(PageType::Inner) => {
                let lvl = g.aux();
                if lvl == 0 || level.is_some_and(|l| l != lvl) {
                    return Err(corrupt(format!("inner page {pid} has level {lvl}, expected {level:?}")));
                }
                if level.is_none() {
                    walk.report.height = lvl + 1;
                }
                walk.report.inner += 1;
                for i in 0..n {
                    let len = page::cell_key(&g, i).len() as u32;
                    walk.report.longest_separator = walk.report.longest_separator.max(len);
                }
                // Push children right to left so leaves come out left to right.
                for pos in (0..=n).rev() {
                    let child = child_at(&g, pos);
                    let clo = if pos == 0 { lo.clone() } else { Some(page::cell_key(&g, pos - 1).to_vec()) };
                    let chi = if pos == n { hi.clone() } else { Some(page::cell_key(&g, pos).to_vec()) };
                    stack.push((child, Some(lvl - 1), clo, chi));
                }
            }
            other => return Err(corrupt(format!("page {pid} of type {other:?} in the tree"))),
        }
        Ok(())
    }

    /// The leaf chain visits the leaves in key order and ends.
    fn check_leaf_chain(&self, leaves_in_order: &[PageId]) -> Result<()> {
        for (i, &pid) in leaves_in_order.iter().enumerate() {
            let next = self.pool.fetch(pid)?.read().link();
            let expect = leaves_in_order.get(i + 1).copied().unwrap_or(PageId::NONE);
            if next != expect {
                return Err(corrupt(format!("leaf {pid} links to {next}, expected {expect}")));
            }
        }
        Ok(())
    }

    /// The free list holds free pages only, as many as the meta page says.
    fn check_free_list(&self, walk: &mut Walk, meta: &Meta) -> Result<()> {
        let mut pid = meta.free_head;
        while !pid.is_none() {
            walk.mark(pid)?;
            walk.report.free += 1;
            let h = self.pool.fetch(pid)?;
            let g = h.read();
            if g.page_type() != Some(PageType::Free) {
                return Err(corrupt(format!("free list holds page {pid} of type {:?}", g.page_type())));
            }
            pid = g.link();
        }
        if walk.report.free != meta.free_count as u64 {
            return Err(corrupt(format!("free list has {} pages, meta says {}", walk.report.free, meta.free_count)));
        }
        Ok(())
    }

    /// What is wrong with a page's fill (see `smo`), if anything.
    fn fill_problem(
        &self,
        pid: PageId,
        is_root: bool,
        ty: Option<PageType>,
        cells: usize,
        used: usize,
    ) -> Option<String> {
        let page_size = self.pool.page_size();
        let min = match ty {
            Some(PageType::Inner) if cells == 0 => {
                return Some(format!("inner page {pid} has no separator (one child)"))
            }
            _ if is_root => return None,
            Some(PageType::Leaf) => smo::leaf_min_fill(page_size),
            Some(PageType::Inner) => smo::inner_min_fill(page_size),
            _ => return None, // the type is checked by the caller
        };
        (used < min).then(|| format!("page {pid} holds {used} bytes of {cells} cells, below the {min} the tree keeps"))
    }

    fn height_bound_for(&self, report: &CheckReport) -> u32 {
        let usable = page::usable_space(self.pool.page_size());
        let cell = page::INNER_CELL_HEADER + report.longest_separator as usize + 2;
        let fanout = 1 + usable / cell;
        height_bound(report.leaves.max(1), fanout.div_ceil(2).max(2) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::height_bound;

    #[test]
    fn height_bound_is_one_plus_ceil_log() {
        assert_eq!(height_bound(1, 2), 1);
        assert_eq!(height_bound(2, 2), 2);
        assert_eq!(height_bound(3, 2), 3);
        assert_eq!(height_bound(4, 2), 3);
        assert_eq!(height_bound(64, 64), 2);
        assert_eq!(height_bound(65, 64), 3);
        assert_eq!(height_bound(u64::MAX, 2), 65);
    }
}
