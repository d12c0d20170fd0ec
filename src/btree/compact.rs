//! Compaction: move the pages at the end of the data file into free pages
//! below, so that the file can be cut to the pages in use (as SQLite's
//! incremental vacuum relocates pages before truncating).
//!
//! With `live = page_count - free_count`, every page the tree uses at or past
//! `live` moves to a free page below `live`; there are exactly as many of
//! those. Each move is one redo-only record, so a crash between moves leaves
//! a whole tree: the page's image at its new place, every pointer to it (the
//! parent's cell or leftmost link, the left sibling leaf's link, the leaf cell
//! or overflow page that starts or continues a chain, or the meta page's
//! root) changed to the new place, the target taken off the free list and the
//! old place put on it. A last record sets `page_count = live` with an empty
//! free list: the pages past it are all free and are no longer counted. The
//! caller (`Db::compact`) then makes those records need no redo (a
//! checkpoint after writing every dirty page) and only then cuts the file.
//!
//! The moves run in rounds (`compact_in_rounds`), one hold of the tree latch
//! each, ended when the log's buffer passes its flush threshold, so the log
//! is flushed between rounds without the latch. Between rounds the tree is
//! whole (every move is), other writers may run, and `page_count -
//! free_count` is unchanged by the moves; a round after someone else's change
//! plans again from the tree as it is.

use std::collections::HashMap;

use super::*;
use crate::page::PageOp;
use crate::types::{Lsn, TxnId};
use crate::wal::{PagePart, Wal};

/// A place that holds a pointer to a page.
#[derive(Clone, Copy, Debug)]
enum Site {
    /// The meta page's root.
    Root,
    /// The link field of a page: an inner page's leftmost child, a leaf's
    /// right sibling, an overflow page's next page.
    Link(PageId),
    /// The pointer in cell `slot` of a page: an inner cell's child, a leaf
    /// cell's first overflow page.
    Cell(PageId, usize),
}

/// A compaction in progress: the moves still to make, found by one walk of
/// the tree. It stays valid only while nobody else changes the tree: the
/// caller plans again when anything was logged between two steps.
pub struct Compaction {
    /// `page_count - free_count`: where the file will end.
    live: u32,
    /// Nothing is free: nothing to move, nothing to log.
    nothing_free: bool,
    free_list: Vec<PageId>,
    sites: HashMap<PageId, Vec<Site>>,
    /// Pages still to move, the lowest last (taken by `pop`).
    movers: Vec<PageId>,
    /// Free pages below `live`, the next target last.
    targets: Vec<PageId>,
    /// Pages moved by this compaction: old place to new.
    moved: HashMap<PageId, PageId>,
}

/// Compact the tree in rounds, each under one hold of the tree latch, so that
/// no log flush happens under it: a round stops once the log's buffer is past
/// its flush threshold, and the next `TreeLatch::for_change` flushes it
/// without the latch. A round reuses the plan of the previous one when
/// nothing was logged in between (every tree change is logged), else plans
/// again. Returns the new page count; the caller writes back, checkpoints and
/// cuts the file (`Db::compact`).
///
/// # Errors
/// `Error::Corruption` for damage found on the way; an I/O error.
pub fn compact_in_rounds(latch: &TreeLatch, pool: &BufferPool, wal: &Wal) -> Result<u32> {
    let mut ctx = TxnCtx::new(TxnId::SYSTEM, Lsn::NONE);
    let mut plan: Option<(Compaction, Lsn)> = None;
    loop {
        let _w = latch.for_change(pool, wal, CHANGE_HEADROOM_PAGES)?;
        let tree = BTree::new(pool);
        let mut c = match plan.take() {
            Some((c, end)) if end == wal.end_lsn() => c,
            _ => tree.plan_compaction()?,
        };
        if let Some(live) = tree.compact_step(&mut ctx, &mut c, || wal.wants_flush())? {
            return Ok(live);
        }
        plan = Some((c, wal.end_lsn()));
    }
}

impl BTree<'_> {
    /// Find every page in use at or past the live page count and a free page
    /// below it for each. The caller has checked the tree (damage found on
    /// the way is still an error, never a loop).
    pub fn plan_compaction(&self) -> Result<Compaction> {
        let meta = self.meta()?;
        let live = meta.page_count - meta.free_count;
        let mut c = Compaction {
            live,
            nothing_free: meta.free_count == 0,
            free_list: Vec::new(),
            sites: HashMap::new(),
            movers: Vec::new(),
            targets: Vec::new(),
            moved: HashMap::new(),
        };
        if c.nothing_free {
            return Ok(c);
        }
        c.free_list = self.free_list(&meta)?;
        c.sites = self.sites_at_or_past(&meta, PageId(live))?;
        c.movers = c.sites.keys().copied().collect();
        c.movers.sort_unstable_by(|a, b| b.cmp(a));
        c.targets = c.free_list.iter().copied().filter(|&p| p.get() < live).collect();
        if c.movers.len() != c.targets.len() {
            return Err(corrupt(format!(
                "{} pages to move past {live} but {} free below it",
                c.movers.len(),
                c.targets.len()
            )));
        }
        Ok(c)
    }

    /// Relocate the pages of `c`, lowest first, each in one redo-only record,
    /// until all have moved or `pause` says to stop (after at least one move).
    /// Once all have moved, log the shrink of the page count and return the
    /// new page count; None: call again (with `c` if nothing else changed the
    /// tree since). Runs under the tree latch.
    pub fn compact_step(&self, ctx: &mut TxnCtx, c: &mut Compaction, pause: impl Fn() -> bool) -> Result<Option<u32>> {
        if c.nothing_free {
            return Ok(Some(c.live));
        }
        while let Some(old) = c.movers.pop() {
            let new = c.targets.pop().expect("as many targets as movers");
            let parts = self.move_parts(old, new, &c.sites[&old], &c.moved, &mut c.free_list)?;
            self.log_redo(ctx, parts)?;
            c.moved.insert(old, new);
            if !c.movers.is_empty() && pause() {
                return Ok(None);
            }
        }
        let live = c.live;
        let meta = self.meta()?;
        if c.free_list.len() != meta.free_count as usize || c.free_list.iter().any(|&p| p.get() < live) {
            return Err(corrupt("free pages left below the live page count after compaction"));
        }
        let shrunk = Meta { page_count: live, free_head: PageId::NONE, free_count: 0, ..meta };
        self.log_redo(ctx, vec![PagePart { page_id: META_PAGE, op: PageOp::SetMeta(shrunk) }])?;
        Ok(Some(live))
    }

    /// The free list in order, from its head.
    fn free_list(&self, meta: &Meta) -> Result<Vec<PageId>> {
        let mut list = Vec::with_capacity(meta.free_count as usize);
        let mut pid = meta.free_head;
        while !pid.is_none() {
            if list.len() >= meta.free_count as usize {
                return Err(corrupt("free list longer than the meta page says"));
            }
            list.push(pid);
            pid = self.pool.fetch(pid)?.read().link();
        }
        Ok(list)
    }

    /// For every page in use at or past `from`, the places that point at it.
    fn sites_at_or_past(&self, meta: &Meta, from: PageId) -> Result<HashMap<PageId, Vec<Site>>> {
        let mut sites: HashMap<PageId, Vec<Site>> = HashMap::new();
        let mut note = |pid: PageId, site: Site| {
            if pid >= from {
                sites.entry(pid).or_default().push(site);
            }
        };
        note(meta.root, Site::Root);
        let mut stack = vec![meta.root];
        let mut visited = vec![false; meta.page_count as usize];
        while let Some(pid) = stack.pop() {
            match visited.get_mut(pid.index()) {
                Some(v) if !*v => *v = true,
                _ => return Err(corrupt(format!("page {pid} reached twice or outside the file"))),
            }
            let h = self.pool.fetch(pid)?;
            let g = h.read();
            match g.page_type() {
                Some(PageType::Inner) => {
                    for pos in 0..=g.slot_count() {
                        let child = child_at(&g, pos);
                        note(child, if pos == 0 { Site::Link(pid) } else { Site::Cell(pid, pos - 1) });
                        stack.push(child);
                    }
                }
                Some(PageType::Leaf) => {
                    if !g.link().is_none() {
                        note(g.link(), Site::Link(pid));
                    }
                    for slot in 0..g.slot_count() {
                        let c = LeafCell::at(&g, slot);
                        if let Some(first) = c.overflow {
                            let chain = self.overflow_chain(first, c.val_len)?;
                            note(first, Site::Cell(pid, slot));
                            for w in chain.windows(2) {
                                note(w[1], Site::Link(w[0]));
                            }
                        }
                    }
                }
                other => return Err(corrupt(format!("page {pid} of type {other:?} in the tree"))),
            }
        }
        Ok(sites)
    }

    /// The parts of one move of page `old` to the free page `new`.
    fn move_parts(
        &self,
        old: PageId,
        new: PageId,
        sites: &[Site],
        moved: &HashMap<PageId, PageId>,
        free_list: &mut Vec<PageId>,
    ) -> Result<Vec<PagePart>> {
        let here = |p: PageId| moved.get(&p).copied().unwrap_or(p);
        let image = page::relocated_image(&self.pool.fetch(old)?.read(), new);
        let mut parts = vec![PagePart { page_id: new, op: PageOp::Image(image) }];
        let mut meta = self.meta()?;
        for &site in sites {
            match site {
                Site::Root => meta.root = new,
                Site::Link(p) => parts.push(PagePart { page_id: here(p), op: PageOp::SetLink(new) }),
                Site::Cell(p, slot) => {
                    let h = self.pool.fetch(here(p))?;
                    let g = h.read();
                    let mut cell = page::cell(&g, slot).to_vec();
                    // The pointer is the child of an inner cell (bytes 2..6)
                    // or the last four bytes of an overflow leaf cell.
                    let at = if g.page_type() == Some(PageType::Inner) { 2 } else { cell.len() - 4 };
                    let was = PageId(u32::from_le_bytes(cell[at..at + 4].try_into().expect("four bytes")));
                    if was != old {
                        return Err(corrupt(format!("page {} slot {slot} points at {was}, not {old}", here(p))));
                    }
                    cell[at..at + 4].copy_from_slice(&new.get().to_le_bytes());
                    parts.push(PagePart { page_id: here(p), op: PageOp::Replace { slot: slot as u16, cell } });
                }
            }
        }
        // Take `new` off the free list, put `old` on it.
        let at = free_list.iter().position(|&p| p == new).expect("target on the free list");
        let next = free_list.get(at + 1).copied().unwrap_or(PageId::NONE);
        if at == 0 {
            meta.free_head = next;
        } else {
            parts.push(PagePart { page_id: free_list[at - 1], op: PageOp::SetLink(next) });
        }
        free_list.remove(at);
        parts.push(PagePart {
            page_id: old,
            op: PageOp::Init { ty: PageType::Free as u8, link: meta.free_head, aux: 0, cells: vec![] },
        });
        meta.free_head = old;
        free_list.insert(0, old);
        parts.push(PagePart { page_id: META_PAGE, op: PageOp::SetMeta(meta) });
        Ok(parts)
    }
}
